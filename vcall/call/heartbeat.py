"""Extension heartbeat timing (V2435), pure: time is passed in.

Both extension peers send ``CALL_ALIVE <nick>`` every ``interval`` seconds on the control
connection; any byte received from the peer counts as a sign of life. A peer silent for
``timeout`` seconds is *unreachable*: the call is "reconnecting" (a network outage, a laptop
changing Wi-Fi) and keeps its media and control link; if the silence lasts ``grace`` seconds the
peer is declared gone and the call ends. Defaults (0.5 s / 2.0 s / 15 s) show a silent peer
within about 2.5 s, tolerate a few lost beats on a loaded machine, and let a 3 s outage pass
without ending the call. A peer that hangs up or dies closes the TCP connection: that is
noticed at once, independently of the heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_INTERVAL = 0.5
DEFAULT_TIMEOUT = 2.0
DEFAULT_GRACE = 15.0


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    grace: float = DEFAULT_GRACE

    def __post_init__(self) -> None:
        if not 0 < self.interval < self.timeout <= self.grace:
            raise ValueError(
                "need 0 < interval < timeout <= grace, got "
                f"{self.interval}/{self.timeout}/{self.grace}"
            )


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
        """Silent for ``timeout``: the peer is unreachable (the call is reconnecting)."""
        return now - self._last_heard >= self.config.timeout

    def gone(self, now: float) -> bool:
        """Silent for ``grace``: the call ends."""
        return now - self._last_heard >= self.config.grace

    def silence(self, now: float) -> float:
        return now - self._last_heard

    def next_deadline(self, now: float | None = None) -> float:
        """The earliest time after ``now`` at which send_due(), expired() or gone() may change
        (a deadline already passed, such as the timeout while reconnecting, is skipped)."""
        heard, c = self._last_heard, self.config
        deadlines = [self._last_sent + c.interval, heard + c.timeout, heard + c.grace]
        future = [d for d in deadlines if now is None or d > now]
        return min(future) if future else self._last_sent + c.interval
