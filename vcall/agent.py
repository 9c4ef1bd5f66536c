"""``vcall agent``: a headless peer that registers, answers or places a call, and prints events.

Each call event is printed on stdout as one JSON object per line (flushed at once), so tests and
scripts can follow a call. Commands can be given on stdin, one per line: ``call NICK``,
``accept``, ``deny``, ``hold``, ``resume``, ``hangup``, ``quit``, and in a call ``mute``,
``unmute``, ``pause``, ``unpause`` (the peer's own mute and pause arrive as ``peer_media``).
The agent ends the call with CALL_END and exits 0 on SIGTERM, SIGINT or ``quit``; a caller
(``--call``) exits when its call ends, with a code that says how (:func:`caller_exit_code`:
0 the call took place and was hung up, 3 denied, 4 busy, 5 not answered, 6 could not be set
up, 7 it took place but the connection was lost). A registration failure exits 1
with a message on stderr; bad options exit 2. The password comes
from ``--password`` or, so that it does not show in ``ps``, from ``$VCALL_PASSWORD``.
``--codec h264|jpeg`` restricts the video codecs offered and accepted to that one (the
``started`` event's ``codec`` says what the call negotiated).

``--stats-json FILE`` writes the media statistics (``MediaStats.to_dict()``) when each call ends
(only that call's: the statistics are reset when a call starts),
as one indented JSON document. With ``--stats-interval S`` the file is JSON Lines instead,
started afresh by each call: while a call with media runs, one line every S seconds
(``{"t": seconds since the call started, ...}``: the statistics without the bulky per-stage
``stages``), then, when the call ends, the final document on one line (with ``stages``: the
same figures as without ``--stats-interval``). The sampling runs in a thread of its own (the
session's ``stats()`` waits while the session closes; neither the manager's loop nor the main
thread may wait with it), which is stopped and joined when the call ends or the agent exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from pipeline.wire.sdp import write_sdp
from vcall import CLASSIC_VERSION, PROTOCOLS
from vcall.call.events import CallEnded, CallEvent, CallStarted, IncomingCall, Outgoing
from vcall.call.heartbeat import (
    DEFAULT_GRACE,
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    HeartbeatConfig,
)
from vcall.call.manager import CallManager, CallUsageError
from vcall.call.media import MediaLike
from vcall.call.policy import DEFAULT_CODECS, local_codecs, parse_codec_choice
from vcall.config import delay_arg, port_arg, seconds_arg
from vcall.discovery.cli import servers_arg
from vcall.discovery.client import DiscoveryError, use_servers

logger = logging.getLogger(__name__)

DEFAULT_SERVER = "127.0.0.1:8000"
PASSWORD_ENV = "VCALL_PASSWORD"
SDP_WAIT = 5.0  # s to wait for the media session to be connected
COMMANDS: tuple[str, ...] = ("call", "accept", "deny", "hold", "resume", "hangup", "quit")
COMMANDS += ("mute", "unmute", "pause", "unpause")
# stdin commands that set one of the user's choices for the call: (manager method, value)
_CHOICES = {
    "mute": ("mute", True),
    "unmute": ("mute", False),
    "pause": ("pause", True),
    "unpause": ("pause", False),
}
STATS_WAIT = 5.0  # s to wait for an ended call's final stats (they come from its cleanup)
SAMPLER_JOIN = 10.0  # s to wait for the stats sampler (a stats() call waits for a closing session)

# How a caller's agent exits (``--call``): its call's EndReason -> exit code. A call that took
# place and was hung up by either side is a success; registration failure is 1, bad options 2.
EXIT_OK = 0
EXIT_DENIED = 3
EXIT_BUSY = 4
EXIT_UNANSWERED = 5
EXIT_FAILED = 6
EXIT_LOST = 7
EXIT_CODES = {
    "hangup": EXIT_OK,
    "peer_hangup": EXIT_OK,
    "peer_denied": EXIT_DENIED,
    "busy": EXIT_BUSY,
    "answer_timeout": EXIT_UNANSWERED,
    "failed": EXIT_FAILED,
    "connection_lost": EXIT_LOST,  # before the call started: EXIT_FAILED
    "heartbeat_timeout": EXIT_LOST,
    "identity_mismatch": EXIT_FAILED,  # the callee's key is not the directory's (issue 14)
}
EXIT_HELP = (
    "exit status of a caller (--call): 0 the call took place, 3 denied, 4 busy, 5 not "
    "answered, 6 failed (could not be set up), 7 lost (the connection dropped during the "
    "call); 1 registration failed, 2 bad options"
)


def caller_exit_code(reason: str, started: bool = True) -> int:
    """The exit code of a caller whose call ended with ``reason`` (an EndReason value);
    ``started``: the call was connected (a connection lost before that is a failure)."""
    code = EXIT_CODES.get(reason, EXIT_FAILED)
    return EXIT_FAILED if code == EXIT_LOST and not started else code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_HELP
    parser.add_argument("--nick", required=True, help="nick to register")
    parser.add_argument(
        "--password",
        help=f"its password, fixed at first use (default: ${PASSWORD_ENV}; visible in ps)",
    )
    parser.add_argument(
        "--server", type=servers_arg, default=DEFAULT_SERVER,
        help="HOST[:PORT], or several (A:P,B:P): tried in order, on to the next on failure",
    )  # fmt: skip
    parser.add_argument("--listen-ip", default="0.0.0.0", help="call-control listen address")
    parser.add_argument(
        "--listen-port", type=port_arg, default=0, help="TCP call-control port (0: any free one)"
    )
    parser.add_argument("--advertise-ip", help="IP to register (default: towards the server)")
    parser.add_argument("--auto-answer", action="store_true", help="accept incoming calls")
    parser.add_argument("--answer-delay", type=delay_arg, default=0.0, help="s before auto-answer")
    parser.add_argument("--auto-deny", action="store_true", help="deny incoming calls")
    parser.add_argument("--call", metavar="NICK", help="call NICK after registering")
    parser.add_argument("--source", default="pattern", help="video source (media only)")
    parser.add_argument("--preset", default="medium", help="quality preset (media only)")
    parser.add_argument(
        "--audio-in",
        metavar="SPEC",
        help="audio source between vcall peers: device[:NAME], tone:HZ[:ON_MS/PERIOD_MS], "
        "file:PATH.wav or silence (default: no audio; vcall devices lists devices)",
    )
    parser.add_argument(
        "--audio-out",
        metavar="SPEC",
        help="audio sink: device[:NAME], wav:PATH or null (default: null when --audio-in is given)",
    )
    parser.add_argument(
        "--no-echo-cancel", action="store_true", help="no echo cancellation / noise suppression"
    )
    parser.add_argument("--seconds", type=delay_arg, help="hang up S seconds after the call starts")
    parser.add_argument("--hold-after", type=delay_arg, help="hold S seconds after the call starts")
    parser.add_argument("--stats-json", type=Path, help="write media stats here at call end")
    parser.add_argument(
        "--stats-interval",
        type=_interval_arg,
        metavar="S",
        help="also sample the stats every S s during a call (--stats-json becomes JSON Lines)",
    )
    parser.add_argument(
        "--sdp",
        type=Path,
        help="write the SDP of the RTP stream we send (rtp calls, media; mode 0600: with SRTP it "
        "holds the call's key)",
    )
    parser.add_argument("--no-media", action="store_true", help="call control only")
    parser.add_argument("--once", action="store_true", help="exit after the first call ends")
    parser.add_argument("--classic", action="store_true", help="register V0 only")
    parser.add_argument(
        "--identity-dir",
        type=Path,
        help="this installation's key pair (default: vcall's data directory); its fingerprint "
        "is registered over TLS and calls with keyed peers use TLS and SRTP",
    )
    parser.add_argument(
        "--no-identity",
        action="store_true",
        help="no key pair: plain discovery, classic call control only (as --classic does)",
    )
    names = [n.lower() for n in DEFAULT_CODECS]
    parser.add_argument(
        "--codec",
        type=_codec_arg,
        metavar="|".join(names),
        help=f"use only this video codec, any case (default: {' then '.join(names)})",
    )
    parser.add_argument(
        "--ring-timeout", type=seconds_arg, default=30.0, help="s, then CALL_DENIED"
    )
    parser.add_argument("--answer-timeout", type=seconds_arg, help="default: ring timeout + 5 s")
    parser.add_argument(
        "--connect-timeout", type=seconds_arg, default=3.0, help="s to reach a callee"
    )
    parser.add_argument(
        "--heartbeat", type=float, nargs=2, metavar=("INTERVAL", "TIMEOUT"),
        help=f"s between CALL_ALIVE heartbeats, and s of silence before 'reconnecting' "
        f"(default: {DEFAULT_INTERVAL:g} {DEFAULT_TIMEOUT:g}; vcall peers only)",
    )  # fmt: skip
    parser.add_argument(
        "--grace",
        type=delay_arg,
        default=None,
        metavar="S",
        help="seconds a silent peer may stay silent before the call ends (15; after TIMEOUT "
        "the call is 'reconnecting')",
    )


def _codec_arg(text: str) -> str:
    try:
        return parse_codec_choice(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interval_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def sample_line(t: float, stats: dict[str, Any]) -> str:
    """One ``--stats-interval`` line: ``t`` (s since the call started) and the stats, less the
    per-stage snapshots (``stages``, kept for the final document only)."""
    sample = {"t": round(t, 3), **{k: v for k, v in stats.items() if k != "stages"}}
    return json.dumps(sample) + "\n"


class _StatsSampler:
    """Appends one :func:`sample_line` to ``out`` every ``interval`` seconds of a call.

    A thread of its own: ``MediaSession.stats()`` takes the session's lock, which ``close()``
    holds while the stages stop, and neither the manager's loop nor the agent's main thread may
    wait for that. It writes nothing after :meth:`stop` and nothing from a session no longer
    open, so the final document the main thread appends after :meth:`stop` is the last line.
    """

    def __init__(self, media: MediaLike, out: TextIO, interval: float, started: float) -> None:
        self._media = media
        self._out = out
        self._interval = interval
        self._started = started  # time.monotonic() when the call started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        """Stop sampling and wait for the thread (a stats() call in progress ends first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(SAMPLER_JOIN)
            if self._thread.is_alive():
                logger.warning("stats sampler still busy after %.0f s", SAMPLER_JOIN)

    def _run(self) -> None:
        tick = 1
        while not self._stop.wait(self._started + tick * self._interval - time.monotonic()):
            try:
                stats = self._media.stats().to_dict()
            except Exception:  # MediaSessionError before connect() has run, or while closing
                logger.debug("stats() failed", exc_info=True)
                stats = None
            now = time.monotonic()
            if self._stop.is_set():
                return
            if stats is not None and stats.get("state") == "open":
                try:
                    self._out.write(sample_line(now - self._started, stats))
                    self._out.flush()
                except (OSError, ValueError) as exc:  # disk full; ValueError: file closed
                    logger.warning("stats sampling stopped: %s", exc)
                    return
            # The next tick still ahead: a slow stats() skips ticks rather than bunching them.
            tick = max(tick + 1, math.floor((now - self._started) / self._interval) + 1)


def _media_factory(args: argparse.Namespace) -> Callable[[], MediaLike] | None:
    if args.no_media:
        return None
    # Imported here: a control-only agent does not pay for loading the media pipeline.
    from pipeline.control import AudioSpec  # noqa: PLC0415
    from pipeline.presets import get_preset  # noqa: PLC0415
    from pipeline.session import MediaSession  # noqa: PLC0415
    from pipeline.sources.video import parse_spec  # noqa: PLC0415

    get_preset(args.preset)  # a bad preset or source is the user's mistake: say so at once
    parse_spec(args.source)
    audio = None
    if args.audio_in is not None or args.audio_out is not None:
        audio = AudioSpec(
            source=args.audio_in or "silence",
            sink=args.audio_out or "null",
            processing=not args.no_echo_cancel,
        )

    def factory() -> MediaLike:
        return MediaSession(
            source=args.source, preset=args.preset, bind_ip=args.listen_ip, audio=audio
        )

    return factory


class _Agent:
    """Main-thread logic: reacts to events and commands; never blocks the manager's thread."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._timers: list[tuple[float, str]] = []
        self.calls_ended = 0
        self._sampler: _StatsSampler | None = None
        self._stats_out: TextIO | None = None  # the --stats-interval file of the current call
        self._stats_written: dict[str, Any] | None = None  # the last call's, not to write again
        # manager.last_stats when the current call began: an earlier call's (reset per call)
        self._stats_before: dict[str, Any] | None = None
        self.exit_code = EXIT_OK
        self._call_started = False  # the current call was connected

    def print(self, obj: dict[str, Any]) -> None:  # main thread only
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def on_event(self, event: CallEvent) -> None:
        # The manager's thread only hands over: all printing happens on the main thread, so no
        # other thread holds stdout's lock when the media pipeline forks its stage processes.
        self.inbox.put(("event", event))

    def drain(self, manager: CallManager) -> None:
        """Print the events still queued (those emitted while closing); a call ended by the
        closing still gets its --stats-json."""
        while True:
            try:
                kind, item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "event":
                self.print(item.to_dict())
                if isinstance(item, CallEnded) and self.args.stats_json is not None:
                    self._write_stats(manager)
        self._close_stats()

    def read_stdin(self) -> None:  # daemon thread
        for line in sys.stdin:
            if line.strip():
                self.inbox.put(("command", line.strip()))
        self.inbox.put(("stdin_eof", None))

    def run(self, manager: CallManager) -> int:
        args = self.args
        if args.call:
            self.inbox.put(("command", f"call {args.call}"))
        while True:
            timeout = 0.2
            if self._timers:
                timeout = max(0.0, min(timeout, self._timers[0][0] - time.monotonic()))
            try:
                kind, item = self.inbox.get(timeout=timeout)
            except queue.Empty:
                kind, item = "tick", None
            if kind == "quit":
                return 0
            if kind == "command" and self._command(manager, str(item)):
                return 0
            if kind == "event":
                self.print(item.to_dict())
                if self._event(manager, item):
                    return self.exit_code
            while self._timers and self._timers[0][0] <= time.monotonic():
                _, cmd = self._timers.pop(0)
                self._command(manager, cmd)

    def _schedule(self, delay: float, command: str) -> None:
        self._timers.append((time.monotonic() + delay, command))
        self._timers.sort()

    def _event(self, manager: CallManager, event: CallEvent) -> bool:
        args = self.args
        if isinstance(event, IncomingCall | Outgoing):
            # A new call: whatever statistics are there now are an earlier call's, even ones
            # that arrived too late to be written for it.
            self._stats_before = manager.last_stats
        if isinstance(event, IncomingCall):
            if args.auto_deny:
                self._schedule(args.answer_delay, "deny")
            elif args.auto_answer:
                self._schedule(args.answer_delay, "accept")
        elif isinstance(event, CallStarted):
            self._call_started = True
            if args.stats_interval is not None and event.media:
                self._start_sampling(manager)
            if args.sdp is not None and event.media and event.mode == "rtp":
                self._write_sdp(manager)
            if args.hold_after is not None:
                self._schedule(args.hold_after, "hold")
            if args.seconds is not None:
                self._schedule(args.seconds, "hangup")
        elif isinstance(event, CallEnded):
            self._timers.clear()
            self.calls_ended += 1
            if args.stats_json is not None:
                self._write_stats(manager)
            if args.call:
                self.exit_code = caller_exit_code(event.reason, self._call_started)
            self._call_started = False
            return bool(args.once or args.call)
        return False

    def _write_sdp(self, manager: CallManager) -> None:
        # CallStarted is emitted as the media session's connect() is queued: wait for it.
        deadline = time.monotonic() + SDP_WAIT
        while True:
            media = manager.media
            try:
                text = media.sdp() if media is not None else None
            except Exception as exc:  # MediaSessionError until connect() has run
                if time.monotonic() > deadline:
                    self.print({"event": "error", "message": f"no SDP: {exc}"})
                    return
                time.sleep(0.05)
                continue
            if text is None:
                return
            write_sdp(self.args.sdp, text)  # 0600: with SRTP it holds the call's key
            self.print({"event": "sdp", "path": str(self.args.sdp)})
            return

    def _start_sampling(self, manager: CallManager) -> None:
        started = time.monotonic()
        self._close_stats()  # a previous call's, should its end have gone unseen
        media = manager.media
        if media is None:  # ended already
            return
        try:
            self._stats_out = open(self.args.stats_json, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            self.print({"event": "error", "message": f"cannot write stats: {exc}"})
            return
        self._sampler = _StatsSampler(media, self._stats_out, self.args.stats_interval, started)
        self._sampler.start()

    def stop_sampling(self) -> None:
        """Ask the sampler to write nothing more (it is joined when the call's end is seen)."""
        if self._sampler is not None:
            self._sampler.request_stop()

    def _close_stats(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if self._stats_out is not None:
            self._stats_out.close()
            self._stats_out = None

    def _write_stats(self, manager: CallManager) -> None:
        # The stats arrive from the cleanup a moment after CallEnded; the previous call's
        # (still in last_stats until then) are not this call's.
        deadline = time.monotonic() + STATS_WAIT

        def stale(stats: dict[str, Any] | None) -> bool:
            return stats is None or stats is self._stats_written or stats is self._stats_before

        while stale(manager.last_stats) and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = manager.last_stats
        if stats is None or stale(stats):
            stats = {}
        self._stats_written = stats
        if self.args.stats_interval is None:
            self.args.stats_json.write_text(json.dumps(stats, indent=2))
            return
        # JSON Lines: the samples (if the call had media), then the final document.
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        out = self._stats_out
        self._stats_out = None
        if out is None:
            self.args.stats_json.write_text(json.dumps(stats) + "\n")
            return
        with out:
            out.write(json.dumps(stats) + "\n")

    def _command(self, manager: CallManager, line: str) -> bool:
        verb, _, rest = line.partition(" ")
        if verb == "quit":
            return True
        if verb not in COMMANDS:
            self.print({"event": "error", "message": f"unknown command {line!r}"})
            return False
        try:
            if verb == "call":
                self._stats_before = manager.last_stats  # an earlier call's, if any
                manager.call(rest.strip())
            elif verb in _CHOICES:
                method, value = _CHOICES[verb]
                getattr(manager, method)(value)
            else:
                getattr(manager, verb)()
        except CallUsageError as exc:
            self.print({"event": "error", "message": str(exc), "command": line})
        return False


def run(args: argparse.Namespace) -> int:
    if args.stats_interval is not None and args.stats_json is None:
        print("vcall agent: --stats-interval needs --stats-json FILE", file=sys.stderr)
        return 2
    password = args.password or os.environ.get(PASSWORD_ENV)
    if not password:
        print(f"vcall agent: give --password or set {PASSWORD_ENV}", file=sys.stderr)
        return 2
    agent = _Agent(args)
    try:
        interval, timeout = args.heartbeat or (DEFAULT_INTERVAL, DEFAULT_TIMEOUT)
        grace = DEFAULT_GRACE if args.grace is None else args.grace
        hb = HeartbeatConfig(interval, timeout, grace)
        media_factory = _media_factory(args)
    except ValueError as exc:  # bad heartbeat figures, unknown preset, malformed source
        print(f"vcall agent: {exc}", file=sys.stderr)
        return 2
    identity = None
    if not (args.classic or args.no_identity):
        # Imported here: --classic agents do not load cryptography.
        from vcall.discovery.tls import PinStore, use_tls  # noqa: PLC0415
        from vcall.identity import IdentityError, load_or_create_identity  # noqa: PLC0415

        try:
            identity = load_or_create_identity(args.identity_dir)
        except (IdentityError, OSError) as exc:
            print(f"vcall agent: {exc}", file=sys.stderr)
            return 1
        use_tls(PinStore())  # the discovery server's key, pinned on first use
    manager = CallManager(
        nick=args.nick,
        password=password,
        server=use_servers(args.server).current,  # the others: failover (discovery/client.py)
        listen=(args.listen_ip, args.listen_port),
        advertise_ip=args.advertise_ip,
        media_factory=media_factory,
        on_event=agent.on_event,
        ring_timeout=args.ring_timeout,
        answer_timeout=args.answer_timeout,
        connect_timeout=args.connect_timeout,
        heartbeat=hb,
        protocols=(CLASSIC_VERSION,) if args.classic else PROTOCOLS,
        codecs=local_codecs(args.codec),
        identity=identity,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.inbox.put(("quit", signum))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        manager.start()
    except (DiscoveryError, OSError) as exc:
        print(f"vcall agent: registration failed: {exc}", file=sys.stderr)
        agent.print({"event": "error", "message": f"registration failed: {exc}"})
        return 1
    threading.Thread(target=agent.read_stdin, name="stdin", daemon=True).start()
    try:
        return agent.run(manager)
    finally:
        agent.stop_sampling()  # no sample of a closing session
        manager.close()  # ends a call in progress with CALL_END (or CALL_DENIED if ringing)
        agent.drain(manager)  # joins the sampler
        agent.print({"event": "exit"})
