"""The impairer's control protocol, without I/O: one JSON object per line, each way.

The lab writes commands on the impairer's stdin and reads one reply line per command from its
stdout. Using the process's own pipes (rather than a socket) needs no address that would have
to be reachable from inside the router's namespace, and makes the owner's death visible: the
impairer sees end-of-file on stdin and exits.

Commands::

    {"op": "configure", "direction": "a_to_b", "impairment": {"loss": 0.1, ...}}
    {"op": "cut", "directions": ["a_to_b", "b_to_a"], "seconds": 3.0}
    {"op": "stats"}
    {"op": "quit"}

Replies are ``{"ok": true, ...}`` (``cut`` adds ``start`` and ``end``, CLOCK_MONOTONIC seconds,
the same clock as ``time.monotonic()`` in every namespace; ``stats`` adds ``stats``) or
``{"ok": false, "error": "..."}``. The impairer's first line, once it owns the TUN device, is
``{"ok": true, "ready": "<device>"}``.

Guarantees:
- ``decode_command`` and ``decode_reply`` raise nothing but :class:`ControlError` on any input:
  garbage from the other side is that side's fault, and is never mistaken for a local misuse.
- Framing is bounded: :class:`LineReader` raises :class:`ControlError` for a line longer than
  ``MAX_LINE`` bytes instead of buffering without end.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from benchmarks.netlab.profiles import Direction, Impairment, Jitter

MAX_LINE = 16_384


class ControlError(ValueError):
    """The other end of the control pipe sent something malformed."""


class Op(StrEnum):
    CONFIGURE = "configure"
    CUT = "cut"
    STATS = "stats"
    QUIT = "quit"


@dataclass(frozen=True, slots=True)
class Configure:
    direction: Direction
    impairment: Impairment


@dataclass(frozen=True, slots=True)
class CutLink:
    directions: tuple[Direction, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class StatsRequest:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


Command = Configure | CutLink | StatsRequest | Quit


def encode_command(cmd: Command) -> bytes:
    body: dict[str, Any]
    if isinstance(cmd, Configure):
        body = {
            "op": Op.CONFIGURE,
            "direction": cmd.direction,
            "impairment": asdict(cmd.impairment),
        }
    elif isinstance(cmd, CutLink):
        body = {"op": Op.CUT, "directions": list(cmd.directions), "seconds": cmd.seconds}
    elif isinstance(cmd, StatsRequest):
        body = {"op": Op.STATS}
    else:
        body = {"op": Op.QUIT}
    return _line(body)


def encode_reply(fields: dict[str, Any]) -> bytes:
    return _line(fields)


def _line(body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
    if len(data) > MAX_LINE:
        raise ValueError(f"control line of {len(data)} bytes exceeds {MAX_LINE}")
    return data


def _object(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ControlError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ControlError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _direction(value: Any) -> Direction:
    try:
        return Direction(value)
    except (ValueError, TypeError):
        raise ControlError(f"unknown direction {value!r}") from None


def decode_impairment(value: Any) -> Impairment:
    if not isinstance(value, dict):
        raise ControlError(f"impairment must be an object, got {value!r}")
    fields: dict[str, Any] = {}
    for key, item in value.items():
        if key == "distribution":
            try:
                fields[key] = Jitter(item)
            except (ValueError, TypeError):
                raise ControlError(f"unknown jitter distribution {item!r}") from None
        elif key in Impairment.__dataclass_fields__:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise ControlError(f"impairment {key} must be a number, got {item!r}")
            fields[key] = float(item)
        else:
            raise ControlError(f"unknown impairment field {key!r}")
    try:
        return Impairment(**fields)
    except ValueError as exc:
        raise ControlError(str(exc)) from None


def decode_command(line: bytes) -> Command:
    obj = _object(line)
    op = obj.get("op")
    if op == Op.CONFIGURE:
        return Configure(_direction(obj.get("direction")), decode_impairment(obj.get("impairment")))
    if op == Op.CUT:
        directions = obj.get("directions")
        seconds = obj.get("seconds")
        if not isinstance(directions, list) or not directions:
            raise ControlError(f"cut needs a non-empty list of directions, got {directions!r}")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds >= 0)
        ):
            raise ControlError(f"cut needs seconds >= 0, got {seconds!r}")
        return CutLink(tuple(_direction(d) for d in directions), float(seconds))
    if op == Op.STATS:
        return StatsRequest()
    if op == Op.QUIT:
        return Quit()
    raise ControlError(f"unknown op {op!r}")


def decode_reply(line: bytes) -> dict[str, Any]:
    obj = _object(line)
    if not isinstance(obj.get("ok"), bool):
        raise ControlError(f"a reply needs a boolean 'ok': {obj!r}")
    return obj


class LineReader:
    """Splits a byte stream into lines (without the newline), each at most MAX_LINE bytes."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buffer = bytearray()
        self._max = max_line

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines: list[bytes] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            if end > self._max:
                break
            lines.append(bytes(self._buffer[:end]))
            del self._buffer[: end + 1]
        if len(self._buffer) > self._max and b"\n" not in self._buffer[: self._max + 1]:
            self._buffer.clear()
            raise ControlError(f"control line longer than {self._max} bytes")
        return lines
