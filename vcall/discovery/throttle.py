"""Throttle of failed password attempts, per nick and per client address. Pure; time passed in.

After ``max_failures`` wrong passwords within ``window`` seconds for one key (a nick or an
address), that key is locked for ``lockout`` seconds: the server answers ``NOK WRONG_PASS``
at once without doing any scrypt work, so guessing is slow and cannot burn the CPU.

Trade-off, by design: a nick lock also delays its real owner (for at most ``lockout`` seconds
after the attacker stops); the alternative, locking only addresses, lets a botnet guess freely.
Memory is bounded: at most ``max_keys`` keys are tracked, the stalest dropped first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_failures: int = 5
    window: float = 60.0
    lockout: float = 30.0
    max_keys: int = 100_000


class FailureThrottle:
    def __init__(self, policy: ThrottlePolicy = ThrottlePolicy()) -> None:
        self._policy = policy
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def blocked(self, keys: tuple[str, ...], now: float) -> bool:
        """True if any key is locked now."""
        for key in keys:
            until = self._locked_until.get(key)
            if until is not None:
                if now < until:
                    return True
                del self._locked_until[key]
        return False

    def failure(self, keys: tuple[str, ...], now: float) -> None:
        p = self._policy
        for key in keys:
            times = self._failures.get(key)
            if times is None:
                times = self._failures[key] = deque(maxlen=p.max_failures)
                if len(self._failures) > p.max_keys:
                    stale, _ = self._failures.popitem(last=False)
                    self._locked_until.pop(stale, None)
            else:
                self._failures.move_to_end(key)
            times.append(now)
            while times and now - times[0] > p.window:
                times.popleft()
            if len(times) >= p.max_failures:
                self._locked_until[key] = now + p.lockout
                times.clear()

    def success(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._failures.pop(key, None)
