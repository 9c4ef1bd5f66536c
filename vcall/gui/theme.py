"""The client's look: the Sun Valley ttk theme (``sv-ttk``) in light or dark, following the
desktop's setting (``darkdetect``) unless the user chose one; Tk's "clam" when sv-ttk is not
installed. Widgets take their text colours from :func:`colour`, so messages stay readable on
either background.

Guarantees: :func:`apply_theme` never raises for a missing library or a Tcl error (it falls
back to "clam" and says so in the log); :func:`resolve` is pure.
"""

from __future__ import annotations

import logging
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

logger = logging.getLogger(__name__)

# Text colours by mode: (error, ok, muted). The dark ones are the light ones lifted for
# contrast on sv-ttk's dark background (#1c1c1c); both pairs are at least 4.5:1 (WCAG AA).
_PALETTES = {
    "light": {"error": "#b00020", "ok": "#1b5e20", "muted": "#666666"},
    "dark": {"error": "#ff8a80", "ok": "#9ccc65", "muted": "#a0a0a0"},
}
_current = {"mode": "light"}


def resolve(choice: str, detect: Callable[[], str | None]) -> str:
    """ "light" or "dark" for a user's ``choice`` ("system", "light", "dark"); "system" asks
    ``detect`` (darkdetect.theme: "Dark", "Light" or None when it cannot tell: light)."""
    if choice in ("light", "dark"):
        return choice
    try:
        detected = detect()
    except Exception:  # a desktop query that fails is no reason to fail the client
        logger.debug("cannot detect the desktop theme", exc_info=True)
        detected = None
    return "dark" if (detected or "").lower() == "dark" else "light"


def _detect() -> str | None:
    try:
        import darkdetect  # type: ignore[import-untyped]  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    theme: str | None = darkdetect.theme()
    return theme


def apply_theme(root: tk.Tk, choice: str = "system") -> str:
    """Set the ttk theme for ``choice``; returns the mode in use ("light", "dark"), or
    "clam" without sv-ttk."""
    mode = resolve(choice, _detect)
    try:
        import sv_ttk  # noqa: PLC0415 - optional dependency

        sv_ttk.set_theme(mode, root)
    except (ImportError, tk.TclError, RuntimeError, TypeError) as exc:
        logger.info("sv-ttk theme unavailable (%s): using clam", exc)
        ttk.Style(root).theme_use("clam")
        _current["mode"] = "light"
        return "clam"
    _current["mode"] = mode
    return mode


def mode() -> str:
    """The mode in use: "light" or "dark"."""
    return _current["mode"]


def colour(role: str) -> str:
    """The text colour for ``role`` ("error", "ok", "muted") in the mode in use."""
    return _PALETTES[_current["mode"]][role]
