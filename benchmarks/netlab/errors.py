"""The lab's errors: one vocabulary for "the lab could not do what it was asked".

Every failure to build, drive or remove a lab (an ``ip``/``tc`` command, the impairer, a
timeline event) is a :class:`LabError` whose message names the command or process and its
output, so a failing test says what broke. None of them is a peer's garbage: the impairer's
replies that make no sense are wrapped too, since the lab and the impairer are one program.

Guarantees: the lab's public methods raise :class:`LabError` (or ``ValueError`` for an invalid
profile value, a local misuse) and nothing else of their own.
"""

from __future__ import annotations


class LabError(RuntimeError):
    """The lab could not be built, driven or removed (the message says what and why)."""


class LabUnavailableError(LabError):
    """This machine cannot run the lab at all (not root, or no iproute2)."""
