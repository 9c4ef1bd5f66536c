"""The client's keyboard shortcuts, as one table: keys, menu labels, help words and scope.

The conventions are those of the call apps people know (Jitsi Meet, Google Meet, Zoom,
Linphone): Ctrl+Q quits and Ctrl+W closes the window, V turns one's video on and off, M mutes
(reserved until vcall has audio), F11 and a double-click on the video toggle full screen,
Escape only leaves full screen (it never hangs up), F1 lists the shortcuts. Plain keys (V, M,
Escape) are ignored while the user types into an entry, and with Ctrl or Alt held.

Pure: no Tk here; the app binds :data:`SHORTCUTS` and lists them in its menus and F1 window.

Guarantees: every shortcut has one action name, one or more Tk sequences and one key text;
no sequence belongs to two shortcuts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Scope(enum.Enum):
    ANY = "any"  # whatever the screen
    CALL = "call"  # on the call screen only


@dataclass(frozen=True, slots=True)
class Shortcut:
    """One shortcut: ``action`` names what it does (the app maps names to callables)."""

    action: str
    sequences: tuple[str, ...]  # Tk event sequences, e.g. ("<Control-q>", "<Control-Q>")
    key: str  # as shown in menus and help, e.g. "Ctrl+Q"
    label: str  # menu label / F1 list, e.g. "Quit"
    word: str  # short word for the call screen's help line
    scope: Scope
    plain: bool = False  # no modifier: ignored while typing and with Ctrl/Alt held


def _ctrl(letter: str) -> tuple[str, ...]:
    # Both cases: with Caps Lock on, Tk reports the upper-case keysym.
    return (f"<Control-{letter}>", f"<Control-{letter.upper()}>")


def _plain(letter: str) -> tuple[str, ...]:
    return (f"<KeyPress-{letter}>", f"<KeyPress-{letter.upper()}>")


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("hangup", _ctrl("e"), "Ctrl+E", "Hang up", "hang up", Scope.CALL),
    Shortcut("hold", _ctrl("h"), "Ctrl+H", "Hold / resume", "hold", Scope.CALL),
    Shortcut("video", _plain("v"), "V", "Video on / off", "video", Scope.CALL, plain=True),
    Shortcut("mute", _plain("m"), "M", "Mute / unmute", "mute", Scope.CALL, plain=True),
    Shortcut("quality", _ctrl("l"), "Ctrl+L", "Next quality", "quality", Scope.CALL),
    Shortcut("stats", _ctrl("s"), "Ctrl+S", "Statistics panel", "stats", Scope.CALL),
    Shortcut("fullscreen", ("<F11>",), "F11", "Full screen", "full screen", Scope.CALL),
    Shortcut(
        "leave_fullscreen", ("<Escape>",), "Esc", "Leave full screen", "", Scope.CALL, plain=True
    ),
    Shortcut("help", ("<F1>",), "F1", "Keyboard shortcuts", "", Scope.ANY),
    Shortcut("close", _ctrl("w"), "Ctrl+W", "Close window", "", Scope.ANY),
    Shortcut("quit", _ctrl("q"), "Ctrl+Q", "Quit", "", Scope.ANY),
)

BY_ACTION = {shortcut.action: shortcut for shortcut in SHORTCUTS}

# The call screen's help line, longest first (the status bar shows the longest that fits).
_HELPED = [s for s in SHORTCUTS if s.scope is Scope.CALL and s.word]
HELP_VARIANTS = (
    " · ".join(f"{s.key} {s.label.lower()}" for s in _HELPED),
    " · ".join(f"{s.key} {s.word}" for s in _HELPED),
    "F1: shortcuts",
)

# Tk event state bits (X11): Control and Mod1 (Alt).
CONTROL_MASK = 0x0004
ALT_MASK = 0x0008


def plain_key_applies(state: int, typing: bool) -> bool:
    """Whether a plain-key shortcut should act: not while the user types into an entry
    (``typing``), not with Ctrl or Alt held (``state``: the Tk event's modifier bits)."""
    return not typing and not state & (CONTROL_MASK | ALT_MASK)


def help_rows() -> list[tuple[str, str]]:
    """(key, what it does) for the F1 window, in table order."""
    return [(s.key, s.label + (" (in a call)" if s.scope is Scope.CALL else "")) for s in SHORTCUTS]
