"""Call history: who called whom, when, how it ended and for how long; persisted as JSON.

:class:`HistoryTracker` turns the GUI's call events (``Dialing``, ``Ringing``, ``Connected``,
``Ended`` with its reason, a :class:`vcall.call.state.EndReason` value) into one
:class:`CallRecord` per call; :class:`CallLog` keeps the newest :data:`MAX_RECORDS` in
``history.json`` beside ``state.json``, newest first. Times are passed in: ``wall`` is
``time.time()`` (for the dates shown), ``mono`` is ``time.monotonic()`` (for durations).

Outcomes follow what Linphone and Jitsi show: an incoming call nobody answered (it rang out,
or the caller gave up) is *missed*; one we turned down is *declined*; an outgoing call the peer
turned down is *denied*, a busy peer is *busy*, no answer is *no answer*, one we hung up
before the answer is *cancelled*; a call that could not be set up is *failed*. A call that came
while we were in another one (answered busy by call control) is *missed (busy)*:
:func:`missed_while_busy`, unseen until the user looks, as a missed call.

Guarantees: :meth:`CallLog.load` never raises on a malformed, oversized or missing file (it
starts empty or skips bad records, counted in ``skipped``); writes replace the file atomically.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcall.gui.logic import format_duration

logger = logging.getLogger(__name__)

HISTORY_NAME = "history.json"
MAX_RECORDS = 200
MAX_FILE_BYTES = 256 * 1024


class Direction(enum.Enum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class Outcome(enum.Enum):
    ANSWERED = "answered"
    MISSED = "missed"
    DECLINED = "declined"  # we declined an incoming call
    DENIED = "denied"  # the peer declined our call
    BUSY = "busy"
    NO_ANSWER = "no answer"
    CANCELLED = "cancelled"  # we hung up before the peer answered
    FAILED = "failed"
    MISSED_BUSY = "missed (busy)"  # it came while we were in another call


@dataclass(frozen=True, slots=True)
class CallRecord:
    peer: str
    direction: Direction
    outcome: Outcome
    started_at: float  # time.time() when it began to ring or we dialled
    duration_s: float = 0.0  # connected time; 0 for a call never answered
    seen: bool = True  # False: a missed call the user has not looked at yet

    def to_json(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "direction": self.direction.value,
            "outcome": self.outcome.value,
            "at": dt.datetime.fromtimestamp(self.started_at, dt.UTC).isoformat(),
            "duration_s": round(self.duration_s, 1),
            "seen": self.seen,
        }

    @classmethod
    def from_json(cls, data: object) -> CallRecord:
        """Raises ValueError (or a subclass) when ``data`` is not a record."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        peer, at, duration, seen = data["peer"], data["at"], data["duration_s"], data["seen"]
        if not isinstance(peer, str) or not isinstance(at, str) or not isinstance(seen, bool):
            raise ValueError("bad field types")
        if not isinstance(duration, int | float) or not 0 <= duration < 1e9:
            raise ValueError("bad duration")
        when = dt.datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("a time without its zone")
        return cls(
            peer=peer,
            direction=Direction(data["direction"]),
            outcome=Outcome(data["outcome"]),
            started_at=when.timestamp(),
            duration_s=float(duration),
            seen=seen,
        )


def outcome_of(direction: Direction, reason: str, answered: bool) -> Outcome:
    """How a call ended, from its direction, its EndReason value and whether it connected."""
    if answered:
        return Outcome.ANSWERED
    incoming = direction is Direction.INCOMING
    match reason:
        case "denied":
            return Outcome.DECLINED
        case "peer_denied":
            return Outcome.DENIED
        case "busy":
            return Outcome.BUSY
        case "answer_timeout":
            return Outcome.NO_ANSWER
        case "ring_timeout" | "peer_hangup":
            return Outcome.MISSED if incoming else Outcome.CANCELLED
        case "hangup":
            # We hung up while it rang: for a call to us that is a decline.
            return Outcome.DECLINED if incoming else Outcome.CANCELLED
        case _:
            return Outcome.MISSED if incoming else Outcome.FAILED


def missed_while_busy(peer: str, wall: float) -> CallRecord:
    """The record of ``peer``'s call that came at ``wall`` (``time.time()``) while we were busy."""
    return CallRecord(peer, Direction.INCOMING, Outcome.MISSED_BUSY, wall, seen=False)


class HistoryTracker:
    """One :class:`CallRecord` per call, from the GUI's events (pure; times passed in)."""

    def __init__(self) -> None:
        self._peer = ""
        self._direction: Direction | None = None
        self._started_at = 0.0
        self._connected_at: float | None = None

    def dialing(self, peer: str, wall: float) -> None:
        self._begin(peer, Direction.OUTGOING, wall)

    def ringing(self, peer: str, wall: float) -> None:
        self._begin(peer, Direction.INCOMING, wall)

    def connected(self, mono: float) -> None:
        if self._direction is not None:
            self._connected_at = mono

    def ended(self, reason: str, mono: float) -> CallRecord | None:
        """The finished call's record (None when no call was under way)."""
        direction = self._direction
        if direction is None:
            return None
        answered = self._connected_at is not None
        duration = 0.0 if self._connected_at is None else max(0.0, mono - self._connected_at)
        outcome = outcome_of(direction, reason, answered)
        record = CallRecord(
            peer=self._peer,
            direction=direction,
            outcome=outcome,
            started_at=self._started_at,
            duration_s=duration,
            seen=outcome is not Outcome.MISSED,
        )
        self._direction, self._connected_at = None, None
        return record

    def _begin(self, peer: str, direction: Direction, wall: float) -> None:
        self._peer, self._direction, self._started_at = peer, direction, wall
        self._connected_at = None


class CallLog:
    """The newest calls, newest first, kept in ``path`` (a JSON list)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[CallRecord] = []
        self.skipped = 0  # records in the file that could not be read

    def load(self) -> None:
        self.records = []
        try:
            with open(self.path, "rb") as file:
                raw = file.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("cannot read the call history %s: %s", self.path, exc)
            return
        if len(raw) > MAX_FILE_BYTES:
            logger.warning("call history %s is over %d bytes: ignored", self.path, MAX_FILE_BYTES)
            return
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            logger.warning("call history %s is not JSON: %s", self.path, exc)
            return
        if not isinstance(data, list):
            logger.warning("call history %s is not a list: ignored", self.path)
            return
        for item in data[:MAX_RECORDS]:
            try:
                self.records.append(CallRecord.from_json(item))
            except (ValueError, KeyError, TypeError, OverflowError, OSError):
                self.skipped += 1

    def add(self, record: CallRecord) -> None:
        self.records = [record, *self.records][:MAX_RECORDS]
        self.save()

    def mark_seen(self) -> bool:
        """Mark every missed call seen; True when something changed (and was saved)."""
        if all(r.seen for r in self.records):
            return False
        self.records = [dataclasses.replace(r, seen=True) for r in self.records]
        self.save()
        return True

    @property
    def unseen_missed(self) -> int:
        return sum(1 for r in self.records if not r.seen)

    def save(self) -> None:
        """Write the file atomically (a temporary file renamed over it); logs a failure."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".history-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    json.dump([r.to_json() for r in self.records], file, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            logger.warning("cannot save the call history %s: %s", self.path, exc)


def describe_record(record: CallRecord, now: float) -> tuple[str, str, str, str]:
    """(when, who, what, duration) for the history list: a date or today's time, not an epoch;
    e.g. ("14:05", "bob", "↗ answered", "2:31") or ("2026-11-29 18:40", "carol", "↙ missed", "")."""
    when = dt.datetime.fromtimestamp(record.started_at)
    today = dt.datetime.fromtimestamp(now).date()
    shown = when.strftime("%H:%M") if when.date() == today else when.strftime("%Y-%m-%d %H:%M")
    arrow = "↙" if record.direction is Direction.INCOMING else "↗"
    what = f"{arrow} {record.outcome.value}"
    if not record.seen:
        what += " ●"
    duration = format_duration(record.duration_s) if record.outcome is Outcome.ANSWERED else ""
    return shown, record.peer, what, duration
