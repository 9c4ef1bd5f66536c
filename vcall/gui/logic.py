"""Pure helpers of the Tk client: no Tk, no sockets, no clocks (time is passed in).

Filtering the user list, the words shown for errors and call endings, durations, fitting video
into a widget, PPM encoding of frames for Tk's PhotoImage, and the statistics panel's figures and
chart. Everything here is tested without a display.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from vcall.call.policy import DEFAULT_CODECS
from vcall.gui.events import UserRow

if TYPE_CHECKING:  # importing pipeline.stats loads psutil and the shared-memory rings
    from pipeline.stats import MediaStats

# ------------------------------------------------------------------------------- user list


def filter_users(users: Iterable[UserRow], text: str, exclude: str = "") -> list[UserRow]:
    """Users whose nick contains ``text`` (case-insensitive), sorted by nick; not ``exclude``."""
    needle = text.strip().casefold()
    rows = [u for u in users if needle in u.nick.casefold() and u.nick != exclude]
    return sorted(rows, key=lambda u: (u.nick.casefold(), u.nick))


def valid_nick(nick: str) -> str | None:
    """None when ``nick`` can be registered; otherwise why not (shown under the field)."""
    if not nick:
        return "Enter a nick."
    if len(nick) > 64:
        return "A nick has at most 64 characters."
    if any(c.isspace() or c == "#" or not c.isprintable() for c in nick):
        return "A nick cannot contain spaces or '#'."
    return None


def valid_password(password: str) -> str | None:
    if not password:
        return "Enter a password."
    if any(c.isspace() or c == "#" or not c.isprintable() for c in password):
        return "A password cannot contain spaces or '#'."
    return None


# ----------------------------------------------------------------------------- video codec

_CODEC_NAMES = {"H264": "H.264"}  # registry name -> the user's name, where they differ


def _codec_name(name: str) -> str:
    return _CODEC_NAMES.get(name, name)


# The main screen's "Video codec" selector: label -> preference (best first).
CODEC_CHOICES: dict[str, tuple[str, ...]] = {
    f"Automatic ({', else '.join(map(_codec_name, DEFAULT_CODECS))})": DEFAULT_CODECS,
    **{_codec_name(name): (name,) for name in DEFAULT_CODECS},
}


def codec_label(codecs: Sequence[str]) -> str:
    """The selector's label for a preference; one it does not offer reads "JPEG, then H.264"."""
    wanted = tuple(codecs)
    label = next((label for label, choice in CODEC_CHOICES.items() if choice == wanted), None)
    return label if label is not None else ", then ".join(map(_codec_name, wanted))


# ---------------------------------------------------------------------------------- words

# Discovery errors by class name: the GUI shows words, not tracebacks. Matching on the class
# hierarchy's names keeps this module free of the discovery package (and of its import cost).
_DISCOVERY_MESSAGES = {
    "WrongPassword": "Wrong password for {nick}: this nick is registered with another password.",
    "ServerUnreachable": "The discovery server at {server} is down or unreachable.",
    "DiscoveryTimeout": "The discovery server at {server} did not answer in time.",
    "ProtocolError": "The server at {server} does not speak the discovery protocol.",
    "UserUnknown": "No user called {peer} is registered.",
    "RequestRejected": "The server at {server} refused the request ({detail}).",
}


def describe_error(exc: BaseException, *, nick: str = "", server: str = "", peer: str = "") -> str:
    """The user's words for a failure of login, list or call set-up."""
    for cls in type(exc).__mro__:
        template = _DISCOVERY_MESSAGES.get(cls.__name__)
        if template is not None:
            return template.format(nick=nick, server=server, peer=peer, detail=exc)
    if isinstance(exc, ConnectionRefusedError | TimeoutError | OSError) and peer:
        return f"Cannot reach {peer}: {exc.strerror or exc}."
    detail = str(exc) or type(exc).__name__
    return f"{detail[0].upper()}{detail[1:]}" if detail else "Unknown error."


# CallEnded reasons (vcall.call.state.EndReason values) -> (message, is_error).
_END_MESSAGES: dict[str, tuple[str, bool]] = {
    "identity_mismatch": (
        "Call to {peer} stopped: {peer}'s key is not the one the directory has{detail}. "
        "Someone may be impersonating {peer}.",
        True,
    ),
    "hangup": ("Call with {peer} ended.", False),
    "peer_hangup": ("{peer} hung up.", False),
    "denied": ("You declined the call from {peer}.", False),
    "peer_denied": ("{peer} declined the call.", True),
    "busy": ("{peer} is busy in another call.", True),
    "ring_timeout": ("Missed call from {peer}.", False),
    "answer_timeout": ("{peer} did not answer.", True),
    "connection_lost": ("Lost the connection to {peer}.", True),
    "heartbeat_timeout": ("{peer} stopped responding; the call was ended.", True),
}


def describe_end(reason: str, peer: str, detail: str = "") -> tuple[str, bool]:
    """(message, is_error) for a call that ended with ``reason`` (an EndReason value)."""
    who = peer or "the peer"
    key = reason.strip().lower()
    if key == "failed":
        return _describe_failure(who, detail), True
    if key in _END_MESSAGES:
        template, error = _END_MESSAGES[key]
        text = template.format(peer=who, detail=f": {detail}" if detail else "")
        # Capitalise a sentence, never a nick.
        return (text[0].upper() + text[1:] if not peer else text), error
    extra = f" ({detail})" if detail else ""
    return (f"Call ended: {reason}{extra}." if reason else "Call ended."), False


def _describe_failure(peer: str, detail: str) -> str:
    """A failed call set-up; ``detail`` is call control's sentence (lookup / connect / media)."""
    low = detail.lower()
    if "unknown" in low or "user_unknown" in low:
        return f"No user called {peer} is registered."
    if low.startswith("connect"):
        why = detail.split(":", 1)[-1].strip().rstrip(".")
        return f"Cannot reach {peer}: the user seems to be offline ({why})."
    if low.startswith("lookup"):
        return f"Cannot look {peer} up on the discovery server ({detail.rstrip('.')})."
    return f"Could not call {peer}: {detail.rstrip('.')}." if detail else f"Could not call {peer}."


def fit_text(variants: Sequence[str], width: int, measure: Callable[[str], int]) -> str:
    """The first of ``variants`` (longest first) whose ``measure`` (pixels) fits in ``width``;
    "" when none does, so a label in a narrow window shrinks instead of being cut off."""
    for text in variants:
        if measure(text) <= width:
            return text
    return ""


def format_duration(seconds: float) -> str:
    """``m:ss`` below an hour, ``h:mm:ss`` from then on; negative counts as zero."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# ---------------------------------------------------------------------------------- video


def fit_size(src: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest even (width, height) inside ``box`` with ``src``'s aspect ratio."""
    sw, sh = src
    bw, bh = box
    if sw <= 0 or sh <= 0 or bw < 2 or bh < 2:
        return (max(2, bw - bw % 2), max(2, bh - bh % 2))
    scale = min(bw / sw, bh / sh)
    w = max(2, int(sw * scale) // 2 * 2)
    h = max(2, int(sh * scale) // 2 * 2)
    return (w, h)


def to_ppm(rgb: npt.NDArray[np.uint8]) -> bytes:
    """A binary PPM (P6) of an (H, W, 3) uint8 RGB image, for ``PhotoImage(data=...)``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    return b"P6 %d %d 255\n" % (width, height) + np.ascontiguousarray(rgb).tobytes()


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class StatsView:
    """The figures the statistics panel shows; None when the session does not report one."""

    fps_in: float | None = None
    fps_out: float | None = None
    kbps_in: float | None = None
    kbps_out: float | None = None
    loss_pct: float | None = None  # of what we send, as the peer reports it (RTCP)
    lost_packets: float | None = None  # of what we receive
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    c2d_p50_ms: float | None = None
    c2d_p95_ms: float | None = None
    # The peer's video by the webrtc-stats rules (MediaStats.freezes); None before its first frame.
    freezes: int | None = None
    freezes_s: float | None = None  # their total duration
    longest_gap_ms: float | None = None  # between two frames shown (None: fewer than two)
    stages: tuple[tuple[str, float], ...] = ()  # (stage, p50 ms), pipeline order
    # Repair and congestion control (MediaStats.repair, .congestion): packets of the peer's
    # video that came back by retransmission, and the rate congestion control lets us send.
    recovered: int | None = None
    requested: int | None = None
    target_kbps: float | None = None
    target_reason: str = ""  # max | remb | loss | min | start
    adaptation: str = ""  # what the encoder does with the target, in words
    sending: str = ""  # "high 1280x720 q70"
    mode: str = ""
    cpu_pct: float | None = None
    source_error: str = ""

    def _freezes(self) -> str:
        """How many, with their total duration when there are any: "2 (0.8 s)"."""
        if self.freezes is None:
            return "–"
        if self.freezes == 0 or self.freezes_s is None:
            return str(self.freezes)
        return f"{self.freezes} ({self.freezes_s:.1f} s)"

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for the panel, with units."""

        def num(v: float | None, unit: str = "", digits: int = 1) -> str:
            return "–" if v is None else f"{v:.{digits}f}{unit}"

        rows = [
            ("frames/s in / out", f"{num(self.fps_in)} / {num(self.fps_out)}"),
            (
                "kbit/s in / out / target",
                f"{num(self.kbps_in, '', 0)} / {num(self.kbps_out, '', 0)}"
                f" / {num(self.target_kbps, '', 0)}",
            ),
            (
                "loss (peer) / lost / RTX",
                f"{num(self.loss_pct, ' %')} / {num(self.lost_packets, '', 0)}"
                f" / {num(self.recovered, '', 0)}",
            ),
            ("RTT / jitter", f"{num(self.rtt_ms)} / {num(self.jitter_ms, ' ms')}"),
            (
                "capture→display p50/p95",
                f"{num(self.c2d_p50_ms, '', 0)} / {num(self.c2d_p95_ms, ' ms', 0)}",
            ),
            # After the headline latency and before the per-stage rows: a short window drops
            # the stages first, then media / CPU, and only then this.
            ("freezes / longest gap", f"{self._freezes()} / {num(self.longest_gap_ms, ' ms', 0)}"),
        ]
        if self.adaptation:
            reason = TARGET_REASONS.get(self.target_reason, self.target_reason)
            rows.append(("encoder", self.adaptation + (f", {reason}" if reason else "")))
        rows += [(f"  {STAGE_LABELS.get(name, name)}", num(ms, " ms")) for name, ms in self.stages]
        if self.mode or self.cpu_pct is not None:
            rows.append(
                ("media / CPU", f"{self.mode.upper() or '–'} / {num(self.cpu_pct, ' %', 0)}")
            )
        if self.source_error:
            rows.append(("source error", self.source_error))
        return rows


def fit_rows(rows: Sequence[tuple[str, str]], room: int) -> list[tuple[str, str]]:
    """At most ``room`` of ``rows``, in order. When they do not all fit, the per-stage rows
    (indented) go first, as a group, so a short window keeps the headline figures."""
    kept = list(rows)
    if len(kept) > room:
        kept = [row for row in kept if not row[0].startswith(" ")]
    return kept[: max(0, room)]


def _finite(value: float | None) -> float | None:
    """``value`` as a float, or None when it is missing or not finite (a NaN would break the
    chart's scale and show as "nan")."""
    return None if value is None or not math.isfinite(value) else float(value)


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else _finite(value * factor)  # finite, after scaling too


# Per-stage latencies (MediaStats.latency_ms) shown, in the order a frame meets them: the stages
# that do work; the waits between them are in capture→display.
STAGE_ORDER = ("capture", "encode", "send", "network_and_receive", "jitter_buffer", "decode")
STAGE_LABELS = {"network_and_receive": "network + receive", "jitter_buffer": "jitter buffer"}
# Why the send target is what it is (CongestionStats.target_reason), in the user's words.
TARGET_REASONS = {"max": "clear", "remb": "estimate", "loss": "loss", "min": "floor", "start": ""}


def summarize_stats(stats: MediaStats) -> StatsView:
    """Pick the panel's figures out of a ``MediaSession.stats()`` snapshot.

    A figure the session does not report (None) or that is not finite shows as "–".
    """
    latency = stats.latency_ms

    def p50(name: str) -> float | None:
        summary = latency.get(name)
        return None if summary is None else _finite(summary.p50)

    stages = tuple((name, value) for name in STAGE_ORDER if (value := p50(name)) is not None)
    c2d = latency.get("capture_to_display")
    preset = stats.info.preset
    shown = stats.freezes
    rtp = stats.info.mode == "rtp"  # repair exists only in RTP mode
    return StatsView(
        fps_in=_finite(stats.fps_shown),
        fps_out=_finite(stats.fps_sent),
        kbps_in=_scaled(stats.bitrate_received_bps, 1e-3),
        kbps_out=_scaled(stats.bitrate_sent_bps, 1e-3),
        loss_pct=_scaled(stats.loss.remote_fraction_lost, 100.0),
        lost_packets=_finite(stats.loss.lost_packets),
        rtt_ms=_finite(stats.rtt_ms),
        jitter_ms=_finite(stats.jitter_ms),
        c2d_p50_ms=None if c2d is None else _finite(c2d.p50),
        c2d_p95_ms=None if c2d is None else _finite(c2d.p95),
        freezes=shown.freeze_count if shown.frames_shown else None,
        freezes_s=_finite(shown.total_freezes_duration_s) if shown.frames_shown else None,
        longest_gap_ms=_finite(shown.longest_gap_ms) if shown.frames_shown > 1 else None,
        stages=stages,
        recovered=stats.repair.recovered if rtp else None,
        requested=stats.repair.packets_requested if rtp else None,
        target_kbps=_scaled(stats.congestion.target_bps, 1e-3),
        target_reason=stats.congestion.target_reason,
        adaptation=stats.congestion.adaptation,
        sending=f"{preset.name} {preset.width}x{preset.height} q{preset.quality}",
        mode=stats.info.mode or "",
        cpu_pct=_finite(stats.cpu_percent.get("total")),
        source_error=stats.source_error,
    )


class History:
    """The last ``length`` samples of a few series, for the chart (a bounded deque each)."""

    SERIES = ("fps_in", "kbps_in", "c2d_p50_ms", "rtt_ms")

    def __init__(self, length: int = 120) -> None:
        self.length = length
        self._data: dict[str, deque[float | None]] = {s: deque(maxlen=length) for s in self.SERIES}

    def add(self, view: StatsView) -> None:
        for name in self.SERIES:
            self._data[name].append(getattr(view, name))

    def series(self, name: str) -> list[float | None]:
        return list(self._data[name])

    def clear(self) -> None:
        for values in self._data.values():
            values.clear()


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k not below ``value`` (a chart's top line); 1 for <= 0."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        top = step * 10.0**exponent
        if top >= value * (1 - 1e-12):
            return top
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop always returns


def chart_segments(
    values: Sequence[float | None], width: int, height: int, length: int, top: float
) -> list[list[float]]:
    """Polylines (flat x0, y0, x1, y1, ... lists) of ``values`` in a width x height box.

    The newest sample is at the right edge; ``length`` samples span the width; a None breaks the
    line; values are clipped to [0, top]. Lines of a single point are dropped.
    """
    if width < 2 or height < 2 or length < 2 or not top > 0:
        return []
    step = (width - 1) / (length - 1)
    first_x = (width - 1) - step * (len(values) - 1)
    segments: list[list[float]] = []
    current: list[float] = []
    for index, value in enumerate(values):
        if value is None:
            if len(current) >= 4:
                segments.append(current)
            current = []
            continue
        clipped = min(max(value, 0.0), top)
        current += [first_x + step * index, (height - 1) * (1 - clipped / top)]
    if len(current) >= 4:
        segments.append(current)
    return segments


# ------------------------------------------------------------------------ picture-in-picture

PIP_MARGIN = 8  # pixels between the picture-in-picture and the edge of the large view


def pip_size(area: tuple[int, int]) -> tuple[int, int]:
    """The picture-in-picture's (width, height) over a large view of ``area`` pixels: a fifth
    of its width (128 to 320 px), 16:9, even, and never larger than the area."""
    width = max(128, min(320, area[0] // 5)) // 2 * 2
    height = width * 9 // 16 // 2 * 2
    return (max(2, min(width, area[0])), max(2, min(height, area[1])))


def pip_box(
    area: tuple[int, int], position: tuple[float, float], margin: int = PIP_MARGIN
) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the picture-in-picture inside the large view.

    ``position`` is where it sits between the view's edges, each in [0, 1] (clamped): (0, 0)
    top left, (1, 1) bottom right; it stays whole and ``margin`` px inside when the view
    resizes."""
    width, height = pip_size(area)
    fx = min(1.0, max(0.0, position[0]))
    fy = min(1.0, max(0.0, position[1]))
    free_x = max(0, area[0] - width - 2 * margin)
    free_y = max(0, area[1] - height - 2 * margin)
    return (margin + round(fx * free_x), margin + round(fy * free_y), width, height)


def pip_position(
    area: tuple[int, int], x: float, y: float, margin: int = PIP_MARGIN
) -> tuple[float, float]:
    """The ``position`` (see :func:`pip_box`) that puts the picture-in-picture's top left
    corner nearest to (``x``, ``y``) px, clamped so it stays whole inside the view."""
    width, height = pip_size(area)
    free_x = area[0] - width - 2 * margin
    free_y = area[1] - height - 2 * margin
    fx = 0.0 if free_x <= 0 else (x - margin) / free_x
    fy = 0.0 if free_y <= 0 else (y - margin) / free_y
    return (min(1.0, max(0.0, fx)), min(1.0, max(0.0, fy)))


# ---------------------------------------------------------------------- connection quality

QUALITY_WORDS = {
    0: "Connection: measuring…",
    1: "Poor connection",
    2: "Fair connection",
    3: "Good connection",
    4: "Excellent connection",
}


def _cap(value: float | None, limits: tuple[float, float, float]) -> int:
    """4 bars below ``limits[0]``, 3 below ``limits[1]``, 2 below ``limits[2]``, else 1."""
    if value is None:
        return 4
    for bars, limit in zip((4, 3, 2), limits, strict=True):
        if value < limit:
            return bars
    return 1


def connection_quality(view: StatsView) -> tuple[int, str]:
    """(bars 0-4, plain words) for the call view's indicator, from the statistics.

    The weakest figure decides. Loss of what we send as the peer reports it (RTCP RR, RFC 3550
    6.4.1): under 1 % excellent, 3 % good, 8 % fair. Round-trip time: under 150 ms, 300 ms
    (ITU-T G.114's 150 ms one-way mouth-to-ear limit for good interaction), 600 ms. Interarrival
    jitter (RFC 3550 A.8): under 20, 50, 100 ms. Frozen video in the last samples is for the
    no-video notice, not for this: a paused peer is not a bad network. 0 bars until the first
    figure arrives."""
    figures = (view.loss_pct, view.rtt_ms, view.jitter_ms)
    if all(value is None for value in figures):
        return 0, QUALITY_WORDS[0]
    bars = min(
        _cap(view.loss_pct, (1.0, 3.0, 8.0)),
        _cap(view.rtt_ms, (150.0, 300.0, 600.0)),
        _cap(view.jitter_ms, (20.0, 50.0, 100.0)),
    )
    return bars, QUALITY_WORDS[bars]
