"""The call controls' icons and the window icon, drawn at the size the screen needs (HiDPI).

API::

    ICON_NAMES = ("hangup", "hold", "video", "mic", "mic_off", "stats", "app")
    ui_scale(widget) -> float                  # 1.0 at 96 dpi, 2.0 at 192 dpi (at least 1.0),
                                               # or the desktop's scale (env_scale) if larger
    env_scale(environ) -> float | None         # VCALL_SCALE, GDK_SCALE x GDK_DPI_SCALE,
                                               # QT_SCALE_FACTOR; None when none is set
    apply_scaling(root) -> float               # tk scaling to match ui_scale; the scale
    draw(name: str, size: int) -> np.ndarray   # (size, size, 4) uint8 BGRA, transparent ground
    photo(master, name, size) -> tk.PhotoImage # the same as a Tk image (PNG data)
    class Icons(master)                        # .get(name) at 20 px x ui_scale; .app(): 32/64/128

Drawn here rather than shipped: vectors rendered with anti-aliasing at 4x and shrunk (INTER_AREA),
so every size is sharp, a HiDPI screen gets bigger icons from the same code, and there is no
binary file to keep in sync. Colours are mid-tones that read on sv-ttk's light and dark themes
(hang up is red, as in every call app).

HiDPI: a desktop that scales its UI (GNOME, KDE) on an X server that reports 96 dpi says so in
the environment (GDK_SCALE, GDK_DPI_SCALE, QT_SCALE_FACTOR; the user can set VCALL_SCALE to
override): ``apply_scaling`` then sets Tk's scaling (pixels per point) to match, so every font
given in points (all of vcall's) grows with it, and the icons and the fixed pixel sizes (the
self view) use ``ui_scale``. Unreadable or absurd values are ignored (scale kept in 1..4).

Guarantees: ``draw`` returns exactly (size, size, 4) for 8 <= size <= 512 (ValueError outside,
or for an unknown name); pixels outside the shape are fully transparent.
"""

from __future__ import annotations

import base64
import os
import tkinter as tk
from collections.abc import Callable, Mapping

import cv2
import numpy as np
import numpy.typing as npt

ICON_NAMES = ("hangup", "hold", "video", "mic", "mic_off", "stats", "app")
BASE_ICON_PX = 20  # at 96 dpi
APP_ICON_SIZES = (32, 64, 128)
_SUPERSAMPLE = 4
_RED = (40, 40, 215)  # BGR
_BLUE = (200, 110, 40)
_GREEN = (90, 150, 40)
_PURPLE = (170, 80, 130)
_WHITE = (255, 255, 255)
_TEAL = (150, 140, 30)

BGRA = npt.NDArray[np.uint8]


MAX_SCALE = 4.0


def _factor(environ: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(environ.get(name, ""))
    except ValueError:
        return None
    return value if 0.5 <= value <= MAX_SCALE else None


def env_scale(environ: Mapping[str, str] | None = None) -> float | None:
    """The UI scale the desktop asks for through the environment, or None: VCALL_SCALE, else
    GDK_SCALE x GDK_DPI_SCALE (GTK's), else QT_SCALE_FACTOR (Qt's); each 0.5..4, others
    ignored."""
    env = os.environ if environ is None else environ
    explicit = _factor(env, "VCALL_SCALE")
    if explicit is not None:
        return explicit
    gdk, gdk_dpi = _factor(env, "GDK_SCALE"), _factor(env, "GDK_DPI_SCALE")
    if gdk is not None or gdk_dpi is not None:
        return min((gdk or 1.0) * (gdk_dpi or 1.0), MAX_SCALE)
    return _factor(env, "QT_SCALE_FACTOR")


def ui_scale(widget: tk.Misc, environ: Mapping[str, str] | None = None) -> float:
    """How many times bigger than at 96 dpi things should be drawn on this screen: the screen's
    dpi / 96 or the desktop's scale (``env_scale``), whichever is larger; 1..MAX_SCALE."""
    try:
        dpi_scale = float(widget.winfo_fpixels("1i")) / 96.0
    except tk.TclError:
        dpi_scale = 1.0
    return min(max(1.0, dpi_scale, env_scale(environ) or 1.0), MAX_SCALE)


def apply_scaling(root: tk.Misc, environ: Mapping[str, str] | None = None) -> float:
    """Set Tk's scaling (pixels per point) to ``ui_scale`` x 96 / 72 when the desktop asks for
    more than the screen's dpi gives, before any widget is built; returns the scale."""
    scale = ui_scale(root, environ)
    try:
        if scale * 96.0 / 72.0 > float(root.tk.call("tk", "scaling")) + 0.01:
            root.tk.call("tk", "scaling", scale * 96.0 / 72.0)
    except (tk.TclError, ValueError):
        pass
    return scale


def draw(name: str, size: int) -> BGRA:
    """The icon ``name`` as a (size, size, 4) BGRA image on a transparent ground."""
    if not 8 <= size <= 512:
        raise ValueError(f"icon size {size} not in 8..512")
    painter = _PAINTERS.get(name)
    if painter is None:
        raise ValueError(f"no icon {name!r}: one of {', '.join(ICON_NAMES)}")
    big = size * _SUPERSAMPLE
    colour = np.zeros((big, big, 3), np.uint8)
    alpha = np.zeros((big, big), np.uint8)
    painter(colour, alpha, big)
    # Premultiplied while shrinking, so edges do not take the black of the empty ground.
    weights = alpha.astype(np.float32) / 255.0
    premul = colour.astype(np.float32) * weights[..., None]
    small_premul = cv2.resize(premul, (size, size), interpolation=cv2.INTER_AREA)
    small_alpha = cv2.resize(weights, (size, size), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size, 4), np.uint8)
    safe = np.maximum(small_alpha, 1e-6)[..., None]
    out[..., :3] = np.clip(small_premul / safe, 0, 255).astype(np.uint8)
    out[..., 3] = np.clip(small_alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out[out[..., 3] == 0, :3] = 0
    return out


def photo(master: tk.Misc, name: str, size: int) -> tk.PhotoImage:
    """``draw(name, size)`` as a Tk image (PNG, alpha kept)."""
    ok, png = cv2.imencode(".png", draw(name, size))
    if not ok:  # pragma: no cover - encoding a small array does not fail
        raise ValueError(f"cannot encode icon {name}")
    return tk.PhotoImage(master=master, data=base64.b64encode(png.tobytes()), format="png")


class Icons:
    """The icons of one window, made once at its screen's scale (Tk images must be kept)."""

    def __init__(self, master: tk.Misc) -> None:
        self._master = master
        self.scale = ui_scale(master)
        self.size = round(BASE_ICON_PX * self.scale)
        self._images: dict[tuple[str, int], tk.PhotoImage] = {}

    def get(self, name: str, size: int | None = None) -> tk.PhotoImage:
        key = (name, size or self.size)
        if key not in self._images:
            self._images[key] = photo(self._master, name, key[1])
        return self._images[key]

    def app(self) -> list[tk.PhotoImage]:
        """The window icon at the sizes window managers and task bars ask for."""
        return [self.get("app", size) for size in APP_ICON_SIZES]


# --- the shapes (drawn at 4x on an s x s canvas; colour and alpha painted together) ----------


def _paint(
    colour: BGRA, alpha: BGRA, shape: Callable[[BGRA], object], bgr: tuple[int, int, int]
) -> None:
    """``shape`` draws white on a mask; the mask becomes ``bgr`` and opaque."""
    mask = np.zeros(alpha.shape, np.uint8)
    shape(mask)
    colour[mask > 0] = bgr
    np.maximum(alpha, mask, out=alpha)


def _hangup(colour: BGRA, alpha: BGRA, s: int) -> None:
    _paint(colour, alpha, lambda m: cv2.circle(m, (s // 2, s // 2), s // 2 - 1, 255, -1), _RED)
    # A handset lying down: a thick bar with an earpiece and a mouthpiece, in white.
    w = max(2, s // 9)
    y = s // 2 + s // 16

    def handset(m: BGRA) -> None:
        cv2.ellipse(m, (s // 2, y), (s * 5 // 16, s // 5), 0, 200, 340, 255, w, cv2.LINE_AA)
        for x in (s // 2 - s * 5 // 16 + w // 2, s // 2 + s * 5 // 16 - w // 2):
            cv2.rectangle(m, (x - w, y - w // 2), (x + w, y + w), 255, -1)

    mask = np.zeros(alpha.shape, np.uint8)
    handset(mask)
    colour[mask > 0] = _WHITE


def _hold(colour: BGRA, alpha: BGRA, s: int) -> None:
    w, top, bottom = s // 5, s // 6, s - s // 6

    def bars(m: BGRA) -> None:
        for x in (s // 2 - w - w // 3, s // 2 + w // 3):
            cv2.rectangle(m, (x, top), (x + w, bottom), 255, -1)

    _paint(colour, alpha, bars, _BLUE)


def _video(colour: BGRA, alpha: BGRA, s: int) -> None:
    def camera(m: BGRA) -> None:
        cv2.rectangle(m, (s // 12, s // 4), (s * 2 // 3, s * 3 // 4), 255, -1)
        lens = np.array([[s * 2 // 3, s // 2], [s - s // 12, s // 4], [s - s // 12, s * 3 // 4]])
        cv2.fillConvexPoly(m, lens.astype(np.int32), 255, cv2.LINE_AA)

    _paint(colour, alpha, camera, _GREEN)


def _microphone(m: BGRA, s: int) -> None:
    """A microphone: a capsule, the U of its holder and a stand with a foot."""
    w = max(2, s // 10)
    cx, r = s // 2, s // 6
    cv2.rectangle(m, (cx - r, s // 16 + r), (cx + r, s // 2), 255, -1)
    for cy in (s // 16 + r, s // 2):
        cv2.circle(m, (cx, cy), r, 255, -1, cv2.LINE_AA)
    cv2.ellipse(m, (cx, s // 2), (s * 5 // 16, s // 4), 0, 0, 180, 255, w, cv2.LINE_AA)
    cv2.line(m, (cx, s * 3 // 4), (cx, s - s // 8), 255, w, cv2.LINE_AA)
    cv2.line(m, (cx - s // 6, s - s // 8), (cx + s // 6, s - s // 8), 255, w, cv2.LINE_AA)


def _mic(colour: BGRA, alpha: BGRA, s: int) -> None:
    _paint(colour, alpha, lambda m: _microphone(m, s), _TEAL)


def _mic_off(colour: BGRA, alpha: BGRA, s: int) -> None:
    """The microphone crossed out in red: the call is muted (the button unmutes)."""
    _paint(colour, alpha, lambda m: _microphone(m, s), _TEAL)
    w = max(2, s // 10)
    slash = (s // 5, s // 5), (s - s // 5, s - s // 5)
    _paint(colour, alpha, lambda m: cv2.line(m, *slash, 255, w, cv2.LINE_AA), _RED)


def _stats(colour: BGRA, alpha: BGRA, s: int) -> None:
    w = s // 5

    def bars(m: BGRA) -> None:
        for i, height in enumerate((0.35, 0.6, 0.85)):
            x = s // 10 + i * (w + s // 10)
            cv2.rectangle(m, (x, round(s * (0.92 - height))), (x + w, s * 92 // 100), 255, -1)

    _paint(colour, alpha, bars, _PURPLE)


def _app(colour: BGRA, alpha: BGRA, s: int) -> None:
    r = s // 5

    def rounded(m: BGRA) -> None:
        cv2.rectangle(m, (r, 0), (s - 1 - r, s - 1), 255, -1)
        cv2.rectangle(m, (0, r), (s - 1, s - 1 - r), 255, -1)
        for cx in (r, s - 1 - r):
            for cy in (r, s - 1 - r):
                cv2.circle(m, (cx, cy), r, 255, -1, cv2.LINE_AA)

    _paint(colour, alpha, rounded, _BLUE)
    inner = np.zeros(alpha.shape, np.uint8)
    pad = s // 6
    cv2.rectangle(inner, (pad, s * 5 // 16), (s * 5 // 8, s * 11 // 16), 255, -1)
    lens = np.array([[s * 5 // 8, s // 2], [s - pad, s * 5 // 16], [s - pad, s * 11 // 16]])
    cv2.fillConvexPoly(inner, lens.astype(np.int32), 255, cv2.LINE_AA)
    colour[inner > 0] = _WHITE


_PAINTERS = {
    "hangup": _hangup,
    "hold": _hold,
    "video": _video,
    "mic": _mic,
    "mic_off": _mic_off,
    "stats": _stats,
    "app": _app,
}
