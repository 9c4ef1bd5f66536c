"""Receiver-side, delay-based bandwidth estimation (draft-ietf-rmcat-gcc-02 sections 5.1-5.5,
after libwebrtc's InterArrival, TrendlineEstimator, OveruseDetector and AimdRateControl; written
from the draft, not copied). Its result goes back to the sender as REMB
(draft-alvestrand-rmcat-remb). Pure: times are passed in.

API::

    class DelayBasedEstimator:
        def __init__(self, *, start_bps: int | None = None, min_bps: int = MIN_BPS,
                     max_bps: int = MAX_BPS) -> None
        def on_packet(self, send_time: int, arrival: float, size: int) -> None
            # send_time: the 24-bit abs-send-time (6.18 fixed-point s); arrival: s; size: bytes
        def remb_due(self, now: float) -> int | None   # the estimate to report now, or None
        estimate_bps: int | None; incoming_bps(now) -> int; state: str ("normal", ...)
        stats -> BweStats

Why receiver-side with abs-send-time rather than transport-wide feedback: the receiver sees the
arrival times, so the feedback is one small REMB every REMB_INTERVAL_S (and at once on a drop of
more than REMB_DROP_FRACTION) instead of a per-packet report; a 1:1 call has one stream per
direction, so the sender loses nothing by not seeing per-packet arrivals. This is how libwebrtc
ran GCC before transport-cc (draft-ietf-rmcat-gcc-02 5 describes exactly this split).

Groups: packets sent within BURST_S of the first packet of a group form one group (a frame's
paced packets). For two consecutive groups, the one-way delay variation is
d = (arrival_i - arrival_{i-1}) - (send_i - send_{i-1}) (section 5.1). The trendline estimator
accumulates d, smooths it (TRENDLINE_SMOOTHING) and fits a line to the last TRENDLINE_WINDOW
points; its slope, scaled, is compared with an adaptive threshold (section 5.4) to say
overusing / normal / underusing. The rate controller (section 5.5): overuse -> decrease to BETA
x the incoming rate, the lower of its rate over RATE_WINDOW_S and over the last
DECREASE_WINDOW_S (overuse is found ~0.3 s after a link's capacity drops, when half of the
longer window still holds what came before: at the lab's 5 -> 1.5 Mbit/s step the first cut
went to 1.43 Mbit/s, 95% of the new link, and its queue stayed full); normal -> increase
(multiplicative: INCREASE_PER_S in the CALM_AFTER_S after a decrease, INCREASE_CALM_PER_S
later, so a link that got better is found within seconds without probe packets); underuse ->
hold. The estimate never exceeds 1.5 x the incoming rate (an application-limited sender cannot
prove more).
There is no estimate (and no REMB) until the path first shows queueing: a sender that stays
below the path's capacity is never held back by a guess.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from pipeline.wire.rtp import ABS_SEND_TIME_MOD

MIN_BPS = 150_000
MAX_BPS = 50_000_000
BURST_S = 0.005
TRENDLINE_WINDOW = 20
TRENDLINE_SMOOTHING = 0.9
TRENDLINE_GAIN = 4.0
MAX_DELTAS = 60
THRESHOLD_INIT_MS = 12.5
THRESHOLD_MIN_MS, THRESHOLD_MAX_MS = 6.0, 600.0
K_UP, K_DOWN = 0.0087, 0.039
OVERUSE_TIME_MS = 10.0
BETA = 0.85
INCREASE_PER_S = 0.08  # section 5.5's multiplicative increase, right after a decrease
INCREASE_CALM_PER_S = 0.25  # after CALM_AFTER_S without one (libwebrtc probes instead)
CALM_AFTER_S = 2.0
RATE_WINDOW_S = 0.5
DECREASE_WINDOW_S = 0.25  # 7-8 frames at 30 fps: the bottleneck's rate while its queue grows
REMB_INTERVAL_S = 0.5
REMB_DROP_FRACTION = 0.03
_TICKS_PER_S = 1 << 18


@dataclass(frozen=True, slots=True)
class BweStats:
    estimate_bps: int | None
    incoming_bps: int
    state: str
    threshold_ms: float
    overuses: int
    groups: int
    rembs: int


class _Trendline:
    def __init__(self) -> None:
        self.accumulated = 0.0
        self.smoothed = 0.0
        self.points: deque[tuple[float, float]] = deque(maxlen=TRENDLINE_WINDOW)
        self.first_arrival: float | None = None
        self.deltas = 0
        self.trend = 0.0

    def update(self, delta_ms: float, arrival: float) -> float:
        """Add one group's delay variation; -> the modified trend (section 5.3)."""
        if self.first_arrival is None:
            self.first_arrival = arrival
        self.deltas = min(self.deltas + 1, MAX_DELTAS)
        self.accumulated += delta_ms
        a = TRENDLINE_SMOOTHING
        self.smoothed = a * self.smoothed + (1 - a) * self.accumulated
        self.points.append(((arrival - self.first_arrival) * 1000, self.smoothed))
        if len(self.points) == TRENDLINE_WINDOW:
            xs = [p[0] for p in self.points]
            ys = [p[1] for p in self.points]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            den = sum((x - mx) ** 2 for x in xs)
            if den > 0:
                self.trend = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
        return self.deltas * self.trend * TRENDLINE_GAIN


class DelayBasedEstimator:
    def __init__(
        self, *, start_bps: int | None = None, min_bps: int = MIN_BPS, max_bps: int = MAX_BPS
    ) -> None:
        self.min_bps, self.max_bps = min_bps, max_bps
        self.estimate_bps: int | None = start_bps
        self.state = "normal"
        self._trend = _Trendline()
        self._threshold = THRESHOLD_INIT_MS
        self._threshold_at: float | None = None
        self._over_ms = -1.0
        self._over_count = 0
        self._prev_trend = 0.0
        # The group being filled and the last complete one: (first send, last send, last arrival)
        self._group: list[float] | None = None
        self._prev: list[float] | None = None
        self._send_base: int | None = None  # unwrapping of the 24-bit send time
        self._send_unwrapped = 0
        self._arrivals: deque[tuple[float, int]] = deque()
        self._arrived_bytes = 0
        self._last_change: float | None = None
        self._decreased_at: float | None = None
        self._rate_state = "hold"
        self._last_remb: tuple[float, int] | None = None
        self._overuses = 0
        self._groups = 0
        self._rembs = 0

    # --- input ---------------------------------------------------------------------------

    def _unwrap(self, send_time: int) -> float:
        if self._send_base is None:
            self._send_base = send_time
        else:
            step = (send_time - self._send_base) % ABS_SEND_TIME_MOD
            if step >= ABS_SEND_TIME_MOD // 2:
                step -= ABS_SEND_TIME_MOD  # reordered: a little behind
            self._send_unwrapped += step
            self._send_base = send_time
        return self._send_unwrapped / _TICKS_PER_S

    def on_packet(self, send_time: int, arrival: float, size: int) -> None:
        """One media packet (not a retransmission) with its abs-send-time."""
        self._arrivals.append((arrival, size))
        self._arrived_bytes += size
        self.incoming_bps(arrival)  # keeps the window RATE_WINDOW_S long whatever the groups do
        sent = self._unwrap(send_time & 0xFFFFFF)
        group = self._group
        if group is None:
            self._group = [sent, sent, arrival]
            return
        if sent < group[0]:
            return  # reordered into an earlier group: not a sample
        if sent - group[0] <= BURST_S:
            group[1] = max(group[1], sent)
            group[2] = max(group[2], arrival)
            return
        if self._prev is not None:
            self._on_group_delta(group, self._prev, arrival)
        self._prev = group
        self._group = [sent, sent, arrival]

    def _on_group_delta(self, group: list[float], prev: list[float], now: float) -> None:
        send_delta = group[1] - prev[1]
        arrival_delta = group[2] - prev[2]
        if send_delta <= 0 or arrival_delta < 0 or arrival_delta > 3.0:
            return  # reordered group, or a gap of seconds (an outage): not congestion
        self._groups += 1
        m = self._trend.update((arrival_delta - send_delta) * 1000, group[2])
        self._detect(m, send_delta * 1000, now)
        self._control(now)

    # --- section 5.4: over-use detector with an adaptive threshold ------------------------

    def _detect(self, m: float, ts_delta_ms: float, now: float) -> None:
        trend = self._trend.trend
        if self._trend.deltas < 2:
            self.state = "normal"
        elif m > self._threshold:
            self._over_ms = ts_delta_ms / 2 if self._over_ms < 0 else self._over_ms + ts_delta_ms
            self._over_count += 1
            if (
                self._over_ms > OVERUSE_TIME_MS
                and self._over_count > 1
                and trend >= self._prev_trend
            ):
                self._over_ms, self._over_count = 0.0, 0
                self.state = "overusing"
                self._overuses += 1
        elif m < -self._threshold:
            self._over_ms, self._over_count = -1.0, 0
            self.state = "underusing"
        else:
            self._over_ms, self._over_count = -1.0, 0
            self.state = "normal"
        self._prev_trend = trend
        if self._threshold_at is None:
            self._threshold_at = now
        if abs(m) > self._threshold + 15:
            self._threshold_at = now  # a spike (a keyframe, a route change): do not adapt to it
            return
        k = K_DOWN if abs(m) < self._threshold else K_UP
        dt_ms = min((now - self._threshold_at) * 1000, 100.0)
        self._threshold += k * (abs(m) - self._threshold) * dt_ms
        self._threshold = min(max(self._threshold, THRESHOLD_MIN_MS), THRESHOLD_MAX_MS)
        self._threshold_at = now

    # --- section 5.5: rate control ---------------------------------------------------------

    def incoming_bps(self, now: float) -> int:
        """Bits per second received over the last RATE_WINDOW_S."""
        while self._arrivals and now - self._arrivals[0][0] > RATE_WINDOW_S:
            self._arrived_bytes -= self._arrivals.popleft()[1]
        return int(self._arrived_bytes * 8 / RATE_WINDOW_S)

    def _recent_bps(self, now: float) -> int:
        """Bits per second received over the last DECREASE_WINDOW_S (the bottleneck's rate
        while its queue grows; the longer window still holds what arrived before a drop)."""
        total = 0
        for at, size in reversed(self._arrivals):
            if now - at > DECREASE_WINDOW_S:
                break
            total += size
        return int(total * 8 / DECREASE_WINDOW_S)

    def _control(self, now: float) -> None:
        incoming = self.incoming_bps(now)
        if self.estimate_bps is None:
            # Nothing limits the sender until the path first shows queueing: no estimate, no
            # REMB (a first estimate from the incoming rate of an application-limited sender
            # would hold it there, rising only INCREASE_PER_S).
            if self.state != "overusing" or incoming <= 0:
                return
            self.estimate_bps = incoming
            self._last_change = now
        current = float(self.estimate_bps)
        if self.state == "overusing":
            if self._rate_state != "decrease":
                current = min(current, BETA * min(incoming, self._recent_bps(now)))
                self._decreased_at = now
                self._rate_state = "decrease"
        elif self.state == "underusing":
            self._rate_state = "hold"
        else:
            if self._rate_state in ("hold", "decrease"):
                self._rate_state = "increase"
            # Cautious right after a decrease (the link just said where its limit is), bolder
            # the longer it stays quiet: a link that got better is found within seconds.
            dt = 0.0 if self._last_change is None else min(now - self._last_change, 1.0)
            calm = self._decreased_at is None or now - self._decreased_at > CALM_AFTER_S
            current *= math.pow(1 + (INCREASE_CALM_PER_S if calm else INCREASE_PER_S), dt)
        current = min(current, 1.5 * incoming + 10_000)
        self._last_change = now
        self.estimate_bps = int(min(max(current, self.min_bps), self.max_bps))

    def remb_due(self, now: float) -> int | None:
        """The estimate to send in a REMB now: every REMB_INTERVAL_S, and at once when it fell
        by more than REMB_DROP_FRACTION since the last one sent."""
        est = self.estimate_bps
        if est is None:
            return None
        last = self._last_remb
        if (
            last is None
            or now - last[0] >= REMB_INTERVAL_S
            or est < last[1] * (1 - REMB_DROP_FRACTION)
        ):
            self._last_remb = (now, est)
            self._rembs += 1
            return est
        return None

    @property
    def stats(self) -> BweStats:
        return BweStats(
            estimate_bps=self.estimate_bps,
            incoming_bps=int(self._arrived_bytes * 8 / RATE_WINDOW_S),
            state=self.state,
            threshold_ms=round(self._threshold, 2),
            overuses=self._overuses,
            groups=self._groups,
            rembs=self._rembs,
        )
