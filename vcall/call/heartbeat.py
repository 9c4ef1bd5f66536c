"""Extension heartbeat timing (V2435), pure: time is passed in.

Both extension peers send ``CALL_ALIVE <nick>`` every ``interval`` seconds on the control
connection; any byte received from the peer counts as a sign of life. A peer silent for
``timeout`` seconds is declared gone. Defaults (0.5 s / 2.0 s) notice a silently vanished peer
within about 2.5 s while tolerating a few lost beats on a loaded machine.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_INTERVAL = 0.5
DEFAULT_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not 0 < self.interval < self.timeout:
            raise ValueError(f"need 0 < interval < timeout, got {self.interval}/{self.timeout}")


class Heartbeat:
    """When to send the next beat, and whether the peer has been silent too long."""

    def __init__(self, now: float, config: HeartbeatConfig | None = None) -> None:
        self.config = config or HeartbeatConfig()
        self._last_sent = now - self.config.interval  # first beat is due at once
        self._last_heard = now

    def on_sent(self, now: float) -> None:
        self._last_sent = now

    def on_heard(self, now: float) -> None:
        self._last_heard = max(self._last_heard, now)

    def send_due(self, now: float) -> bool:
        return now - self._last_sent >= self.config.interval

    def expired(self, now: float) -> bool:
        return now - self._last_heard >= self.config.timeout

    def silence(self, now: float) -> float:
        return now - self._last_heard

    def next_deadline(self) -> float:
        """The earliest time at which send_due() or expired() may change."""
        return min(self._last_sent + self.config.interval, self._last_heard + self.config.timeout)
