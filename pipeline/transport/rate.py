"""The sender's target bitrate: the smaller of what the receiver estimates (REMB, delay-based)
and a loss-based controller on RTCP receiver reports (draft-ietf-rmcat-gcc-02 section 6),
clamped to the codec's range. Pure: times are passed in.

API::

    class SendRateController:
        def __init__(self, *, min_bps: int, max_bps: int, start_bps: int) -> None
        def on_remb(self, bps: int, now: float) -> None
        def on_loss(self, fraction_lost: float, now: float) -> None   # 0..1, one RR block
        def on_sent(self, bps: float) -> None     # what we actually sent lately
        def set_range(self, *, min_bps: int, max_bps: int) -> None
        target_bps: int; reason: str; stats -> RateStats

Loss-based (section 6): above LOSS_HIGH the rate falls by half the loss fraction, from what we
actually sent when that is lower than the allowance (an encoder below its ceiling); below
LOSS_LOW it rises LOSS_INCREASE per second, LOSS_INCREASE_CALM per second after CALM_REPORTS
clean reports in a row (a link that cleared is found in seconds); between, it holds (NACK/RTX
repairs that much); decreases at most every LOSS_DECREASE_INTERVAL_S under severe loss (reports
come early then), at most once a regular report interval under moderate loss, and never on a
report of LOSS_OUTAGE or more (a cut link, which the call's reconnect logic handles, is not
congestion). The call starts at START_BPS, not at the ceiling: like every WebRTC
call, it sharpens over the first seconds instead of flooding an unknown path.
A REMB is a peer's hint, never obeyed beyond sane bounds: 0, negative or more than
MAX_PLAUSIBLE_BPS is counted as ``absurd`` and ignored; anything else is clamped into
[min_bps, max_bps]. A REMB older than REMB_TIMEOUT_S stops limiting (the peer went quiet; the
loss-based side still protects the link).
"""

from __future__ import annotations

from dataclasses import dataclass

LOSS_HIGH, LOSS_LOW = 0.10, 0.02
LOSS_INCREASE = 1.08
LOSS_INCREASE_CALM = 1.5
CALM_REPORTS = 2
START_BPS = 2_500_000
LOSS_DECREASE_INTERVAL_S = 0.3
LOSS_SEVERE = 0.25  # early reports (RFC 4585 3.5) act only above this; regular ones above HIGH
LOSS_OUTAGE = 0.9  # nearly everything lost: the link was cut, not congested (hold)
REGULAR_REPORT_S = 0.9
MAX_PLAUSIBLE_BPS = 10_000_000_000
REMB_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class RateStats:
    target_bps: int
    remb_bps: int | None
    loss_based_bps: int
    reason: str  # why the target is what it is: "max", "remb", "loss", "min"
    rembs: int
    absurd: int


class SendRateController:
    def __init__(self, *, min_bps: int, max_bps: int, start_bps: int) -> None:
        self.min_bps, self.max_bps = min_bps, max(max_bps, min_bps)
        self._loss_based = float(min(max(start_bps, min_bps), self.max_bps))
        self._remb: tuple[float, int] | None = None
        self._rembs = 0
        self._absurd = 0
        self._sent_bps: float | None = None
        self._clean = 0
        self._last_loss: float | None = None
        self._decreased = float("-inf")
        self._now: float | None = None  # the time of the last event (set_range has none)
        self.target_bps = int(self._loss_based)
        self.reason = "start"

    def set_range(self, *, min_bps: int, max_bps: int) -> None:
        """A new codec range (a preset change)."""
        self.min_bps, self.max_bps = min_bps, max(max_bps, min_bps)
        self._loss_based = min(max(self._loss_based, self.min_bps), self.max_bps)
        self._update(self._now)

    def on_remb(self, bps: int, now: float) -> None:
        if bps <= 0 or bps > MAX_PLAUSIBLE_BPS:
            self._absurd += 1
            return
        self._rembs += 1
        self._remb = (now, bps)
        self._update(now)

    def on_sent(self, bps: float) -> None:
        """What we sent over the last report interval, bit/s."""
        if bps >= 0:
            self._sent_bps = bps

    def on_loss(self, fraction_lost: float, now: float) -> None:
        p = min(max(fraction_lost, 0.0), 1.0)
        dt = 1.0 if self._last_loss is None else min(max(now - self._last_loss, 0.0), 2.0)
        self._last_loss = now
        if p >= LOSS_OUTAGE:
            self._clean = 0
            return
        if p > LOSS_HIGH:
            self._clean = 0
            since = now - self._decreased
            if since < LOSS_DECREASE_INTERVAL_S or (p < LOSS_SEVERE and since < REGULAR_REPORT_S):
                return  # the last decrease has not shown yet; moderate loss: once a report
            self._decreased = now
            base = self._loss_based
            if self._sent_bps is not None and self._sent_bps > 0:
                base = min(base, self._sent_bps)
            self._loss_based = base * (1 - 0.5 * p)
        elif p < LOSS_LOW:
            self._clean += 1
            calm = self._clean > CALM_REPORTS
            self._loss_based *= (LOSS_INCREASE_CALM if calm else LOSS_INCREASE) ** dt
        else:
            self._clean = 0
        self._loss_based = min(max(self._loss_based, self.min_bps), self.max_bps)
        self._update(now)

    def _remb_limit(self, now: float | None) -> int | None:
        if self._remb is None:
            return None
        if now is not None and now - self._remb[0] > REMB_TIMEOUT_S:
            return None
        return self._remb[1]

    def _update(self, now: float | None) -> None:
        if now is not None:
            self._now = now
        target, reason = self._loss_based, "loss" if self._loss_based < self.max_bps else "max"
        remb = self._remb_limit(now)
        if remb is not None and remb < target:
            target, reason = remb, "remb"
        if target <= self.min_bps:
            target, reason = self.min_bps, "min"
        self.target_bps = int(target)
        self.reason = reason

    @property
    def stats(self) -> RateStats:
        return RateStats(
            target_bps=self.target_bps,
            remb_bps=None if self._remb is None else self._remb[1],
            loss_based_bps=int(self._loss_based),
            reason=self.reason,
            rembs=self._rembs,
            absurd=self._absurd,
        )
