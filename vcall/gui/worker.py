"""The client's worker: owns the call manager and its media session, off the Tk thread.

Tk callbacks only :meth:`ClientWorker.post` commands (never blocks: a bounded deque that drops
the oldest, with display-size commands coalesced). One worker thread runs them against the
:class:`~vcall.call.manager.CallManager` (whose methods return promptly; progress arrives as its
events) and the discovery client.
Results come back as :mod:`vcall.gui.events` in a bounded outbox; :attr:`ClientWorker.wake_fd`
becomes readable whenever the outbox has something, for a Tk file handler.

The worker decides nothing about the call: pause and hold are requests to the manager, whose
call session alone decides whether video is sent; the GUI learns the outcome from its events
(``PauseChanged`` becomes :class:`~vcall.gui.events.SendingChanged`).

The video codec preference (:class:`~vcall.gui.events.SetCodecPreference`) is the worker's to
keep: it goes to the manager (``set_codecs``: for the calls that begin afterwards) or, before
login, into the next manager; it is remembered in the state file (:func:`vcall.config.update_state`,
off the Tk thread) when the worker has one.

The microphone and speaker (issue 12) are kept the same way:
:class:`~vcall.gui.events.SetAudioDevices` is remembered in the state file and read when each
call's media starts (its ``AudioSpec``: :func:`vcall.config.start_audio` decides between it and
the flags / config file). A chosen device that is gone at that moment (PortAudio is asked
again) gives way to the system default, and a Notice says so.
:class:`~vcall.gui.events.ListAudioDevices` lists the devices in a short-lived thread of its
own, through a child ``vcall devices --json`` (PortAudio can take a while to start, and must
not start in this process: :func:`list_audio_devices`), answered by
:class:`~vcall.gui.events.AudioDevicesListed`.

Guarantees: no method called from Tk touches the network or the pipeline; every failure of a
command becomes a :class:`~vcall.gui.events.Notice`, :class:`~vcall.gui.events.LoginFailed` or
:class:`~vcall.gui.events.Ended` with the user's words, never an exception in Tk; :meth:`stop`
hangs up, closes the manager and joins the thread.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import ipaddress
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.wire.sdp import write_sdp
from vcall.call import events as call_events
from vcall.call.codec import validate_codecs
from vcall.call.policy import local_codecs
from vcall.config import Config, audio_choice_ok, format_server, start_audio, update_state
from vcall.gui import events as ev
from vcall.gui import presence
from vcall.gui.accounts import AccountFinder, account_spelling, differs_only_in_case
from vcall.gui.i18n import _
from vcall.gui.logic import describe_end, describe_error

if TYPE_CHECKING:
    from vcall.discovery.tls import PinStore

logger = logging.getLogger(__name__)

STATS_INTERVAL = 0.5  # seconds between statistics snapshots during a call
_MAX_COMMANDS = 256
_MAX_EVENTS = 1024


class ManagerLike(Protocol):
    """The part of CallManager the worker uses (a fake in unit tests)."""

    def start(self) -> None: ...
    def call(self, nick: str) -> None: ...
    def accept(self) -> None: ...
    def deny(self) -> None: ...
    def hold(self) -> None: ...
    def resume(self) -> None: ...
    def pause(self, paused: bool) -> None: ...

    def mute(self, muted: bool) -> None: ...
    def hangup(self) -> None: ...
    def close(self) -> None: ...
    def set_codecs(self, codecs: tuple[str, ...]) -> None: ...

    @property
    def media(self) -> Any: ...


# (nick, password, server, listen, advertise_ip, media_factory, on_event, ring_timeout, codecs)
# -> manager
ManagerFactory = Callable[..., ManagerLike]
# (host, port) -> list of (nick, ip, port)
UserLister = Callable[[tuple[str, int]], list[ev.UserRow]]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _default_manager_factory(**kwargs: Any) -> ManagerLike:
    from vcall.call.manager import CallManager  # noqa: PLC0415 - heavy; only when logging in

    manager: ManagerLike = CallManager(**kwargs)
    return manager


def _default_lister(server: tuple[str, int]) -> list[ev.UserRow]:
    return presence.list_rows(server)  # with presence (VCALL_PRESENCE), else LIST_USERS


LIST_TIMEOUT_S = 15.0  # for `vcall devices --json` (PortAudio starting on a loaded machine)
MAX_LIST_BYTES = 1 << 20  # of its output; a real list is a few kB


class DeviceListError(Exception):
    """The sound devices cannot be listed; the message says why, in words."""


def parse_device_list(raw: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (capture, playback) device names in the JSON that ``vcall devices --json`` prints
    (vcall/devices.py: a list of objects with ``name``, ``inputs``, ``outputs``), each name
    once, in order. Raises only ValueError, whatever the bytes."""
    try:
        rows = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"not a device list: {exc}") from exc
    if not isinstance(rows, list):
        raise ValueError("not a device list")
    inputs: dict[str, None] = {}
    outputs: dict[str, None] = {}
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError("not a device list")
        name, ins, outs = row.get("name"), row.get("inputs"), row.get("outputs")
        if not isinstance(name, str) or type(ins) is not int or type(outs) is not int:
            raise ValueError(f"not a device: {row!r:.100}")
        if ins > 0:
            inputs[name] = None
        if outs > 0:
            outputs[name] = None
    return tuple(inputs), tuple(outputs)


def list_audio_devices() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of PortAudio's capture devices and of its playback devices (see
    :func:`parse_device_list`), asked of a child ``vcall devices --json``: PortAudio must
    never start in the client's process, whose media stages are forked from it (a child that
    inherits a started PortAudio cannot open a device: "Illegal combination of I/O devices",
    measured with Debian 12's 19.6 and PulseAudio); and a new process lists afresh, so a
    device plugged in since shows. DeviceListError after LIST_TIMEOUT_S, or when the child
    fails or prints more than MAX_LIST_BYTES or no list. Blocks: never call it on Tk's thread.
    """
    command = [sys.executable, "-m", "vcall", "devices", "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        except OSError as exc:
            raise DeviceListError(f"cannot run vcall devices: {exc}") from exc
        try:
            code = child.wait(LIST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise DeviceListError(f"PortAudio gave no list in {LIST_TIMEOUT_S:g} s") from None
        out.seek(0)
        raw = out.read(MAX_LIST_BYTES + 1)
        err.seek(0)
        said = err.read(4096).decode("utf-8", "replace").strip().splitlines()
    if code != 0:
        reason = said[-1] if said else f"exit status {code}"
        raise DeviceListError(reason.removeprefix("vcall devices: "))
    if len(raw) > MAX_LIST_BYTES:
        raise DeviceListError("the device list is too long")
    try:
        return parse_device_list(raw)
    except ValueError as exc:
        raise DeviceListError(str(exc)) from exc


def _default_media_factory(**kwargs: Any) -> Any:
    # Imported when a call starts: logging in does not pay for the pipeline's imports.
    session = importlib.import_module("pipeline.session")
    return session.MediaSession(**kwargs)


@dataclass(frozen=True, slots=True)
class _Internal:
    """A call-manager event handed from an I/O thread to the worker thread."""

    event: object


class ClientWorker:
    def __init__(
        self,
        config: Config,
        *,
        manager_factory: ManagerFactory = _default_manager_factory,
        lister: UserLister = _default_lister,
        media_factory: Callable[..., Any] = _default_media_factory,
        clock: Callable[[], float] = time.monotonic,
        codecs: tuple[str, ...] | None = None,
        state_file: Path | None = None,
        account_finder: AccountFinder = account_spelling,
        audio: tuple[str, str] = ("", ""),
        device_lister: Callable[[], tuple[tuple[str, ...], tuple[str, ...]]] = list_audio_devices,
    ) -> None:
        """``codecs``: the video codec preference to start with (None: ``config.codec``'s, see
        :func:`vcall.config.start_codecs`); ``state_file``: where a new preference is
        remembered (None: nowhere); ``account_finder``: which account a typed nick reaches
        (vcall/gui/accounts.py), asked before each login; ``audio``: the microphone and
        speaker chosen in the Settings window (``State.audio_in``/``audio_out``, "" for none);
        ``device_lister``: :func:`list_audio_devices` or a stand-in for logic tests."""
        self._config = config
        self._codecs = validate_codecs(codecs) if codecs is not None else local_codecs(config.codec)
        self._state_file = state_file
        self._manager_factory = manager_factory
        self._lister = lister
        self._account_finder = account_finder
        # Presence (issue 15): list and keep-alive thread of this login, and its goodbye.
        self._keeper: presence.PresenceKeeper | None = None
        self._registration: presence.Registration | None = None
        # Why the list is paused ("hidden": the window; "call"), for this keeper and the next.
        self._list_paused: set[str] = set()
        self._pause_lock = threading.Lock()
        self._media_factory = media_factory
        self._clock = clock
        self._preset = config.preset
        self._source = config.source
        self._display: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._manager: ManagerLike | None = None
        self._server: tuple[str, int] | None = None
        self._nick = ""
        self._peer = ""
        self._media: Any = None
        self._volume = config.audio_volume  # the speaker volume of calls (ev.SetVolume)
        self._audio_choice = audio  # (input, output) chosen in Settings; "": none
        self._device_lister = device_lister
        self._listers: list[threading.Thread] = []  # device listings under way
        self._next_stats = 0.0
        self._commands: collections.deque[ev.Command | _Internal] = collections.deque(
            maxlen=_MAX_COMMANDS
        )
        self._cond = threading.Condition()
        self._outbox: collections.deque[ev.Event] = collections.deque(maxlen=_MAX_EVENTS)
        self._out_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name="vcall-gui-worker", daemon=True)
        self._closed = False

    # ------------------------------------------------------------------ Tk-thread side

    @property
    def wake_fd(self) -> int:
        """Readable while events wait in the outbox (drained by :meth:`drain`)."""
        return self._wake_r

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def post(self, command: ev.Command) -> None:
        """Queue ``command`` for the worker; never blocks."""
        with self._cond:
            if isinstance(command, ev.SetDisplaySize):
                # Only the newest size matters: a resize drag sends dozens.
                pending = [c for c in self._commands if not isinstance(c, ev.SetDisplaySize)]
                self._commands.clear()
                self._commands.extend(pending)
            if len(self._commands) == self._commands.maxlen:
                logger.warning("command queue full: dropping %r", self._commands[0])
            self._commands.append(command)
            self._cond.notify()

    def set_window_shown(self, shown: bool) -> None:
        """The window is on screen (False: iconified or withdrawn): the presence list pauses
        while it is not (vcall/gui/presence.py). Never blocks: sets a flag."""
        self._pause_list("hidden", not shown)

    def _pause_list(self, reason: str, paused: bool) -> None:
        with self._pause_lock:
            if paused:
                self._list_paused.add(reason)
            else:
                self._list_paused.discard(reason)
            if self._keeper is not None:
                self._keeper.pause(reason, paused)

    def drain(self) -> list[ev.Event]:
        """All events waiting, oldest first."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        with self._out_lock:
            events = list(self._outbox)
            self._outbox.clear()
        return events

    def stop(self, timeout: float = 10.0) -> None:
        """Hang up, unregister the manager and join the worker; idempotent."""
        if self._thread.is_alive():
            self.post(ev.Shutdown())
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("worker did not stop within %.1f s", timeout)
        for lister in self._listers:
            lister.join(timeout)  # PortAudio answers or fails; nothing outlives the worker
        if not self._closed:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)

    # ----------------------------------------------------------------- any-thread side

    def _emit(self, event: ev.Event) -> None:
        with self._out_lock:
            if len(self._outbox) == self._outbox.maxlen:
                logger.warning("event outbox full: dropping %r", self._outbox[0])
            self._outbox.append(event)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def _on_manager_event(self, event: object) -> None:
        """CallManager's callback (its I/O threads): hand over to the worker thread."""
        with self._cond:
            self._commands.append(_Internal(event))
            self._cond.notify()

    # ------------------------------------------------------------------- worker thread

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._commands:
                        wait = self._next_stats - self._clock() if self._media else None
                        if wait is not None and wait <= 0:
                            break
                        self._cond.wait(wait)
                    command = self._commands.popleft() if self._commands else None
                if command is None:
                    self._poll_stats()
                    continue
                if isinstance(command, ev.Shutdown):
                    break
                try:
                    self._handle(command)
                except Exception as exc:  # a command must never kill the worker
                    logger.exception("command %r failed", command)
                    self._emit(ev.Notice(describe_error(exc, peer=self._peer), error=True))
                if self._media is not None and self._clock() >= self._next_stats:
                    self._poll_stats()
        finally:
            self._logout()
            self._emit(ev.WorkerStopped())

    def _handle(self, command: ev.Command | _Internal) -> None:
        match command:
            case _Internal(event=event):
                self._translate(event)
            case ev.Login():
                self._login(command)
            case ev.Logout():
                self._logout()
                self._emit(ev.LoggedOut())
            case ev.Refresh():
                self._refresh()
            case ev.Dial(nick=nick):
                self._dial(nick)
            case ev.Accept():
                self._need_manager().accept()
            case ev.Deny():
                self._need_manager().deny()
            case ev.Hold():
                self._need_manager().hold()
            case ev.Resume():
                self._need_manager().resume()
            case ev.Hangup():
                self._need_manager().hangup()
            case ev.SetSending(enabled=enabled):
                # SendingChanged follows from the manager's PauseChanged event.
                self._need_manager().pause(not enabled)
            case ev.SetMuted(muted=muted):
                self._need_manager().mute(muted)  # MutedChanged follows from MuteChanged
            case ev.SetVolume(volume=volume):
                self._volume = max(0.0, min(1.5, volume))
                # The running call's playout gain; the next call starts at it (its AudioSpec).
                if self._media is not None:
                    self._media.set_audio_volume(self._volume)
            case ev.SetPreset(name=name):
                if self._media is not None:
                    self._media.set_preset(name)
                self._preset = name
                self._emit(ev.PresetChanged(name))
            case ev.SetSource(spec=spec):
                if self._media is not None:
                    self._media.set_source(spec)
                self._source = spec
                self._emit(ev.SourceChanged(spec))
            case ev.SetCodecPreference(codecs=codecs):
                self._set_codecs(codecs)
            case ev.SaveSdp(path=path):
                self._save_sdp(path)
            case ev.ListAudioDevices():
                self._list_audio()
            case ev.SetAudioDevices(audio_in=audio_in, audio_out=audio_out):
                self._set_audio(audio_in, audio_out)
            case ev.SetDisplaySize(peer=peer, self_view=self_view):
                self._display = (peer, self_view)
                if self._media is not None:
                    self._media.set_display_size(peer, self_view)

    def _set_codecs(self, codecs: tuple[str, ...]) -> None:
        # Validated first (a bad list raises: a Notice), so that nothing half-applies.
        codecs = validate_codecs(codecs)
        if self._manager is not None:
            self._manager.set_codecs(codecs)  # the call in progress, if any, keeps its codec
        self._codecs = codecs  # and the manager of the next login starts with it
        if self._state_file is not None:
            try:
                update_state(self._state_file, codecs=codecs)
            except (OSError, ValueError) as exc:  # a convenience: the choice still applies
                logger.warning("cannot remember the video codecs in %s: %s", self._state_file, exc)
        self._emit(ev.CodecPreferenceChanged(codecs))  # applied and remembered

    def _list_audio(self) -> None:
        def work() -> None:
            try:
                inputs, outputs = self._device_lister()
            except Exception as exc:  # AudioError, or PortAudio's own: said in words
                logger.info("cannot list the audio devices: %s", exc)
                self._emit(ev.AudioDevicesListed((), (), str(exc) or type(exc).__name__))
                return
            self._emit(ev.AudioDevicesListed(inputs, outputs))

        self._listers = [t for t in self._listers if t.is_alive()]
        thread = threading.Thread(target=work, name="vcall-audio-devices", daemon=True)
        self._listers.append(thread)
        thread.start()

    def _set_audio(self, audio_in: str, audio_out: str) -> None:
        for choice in (audio_in, audio_out):
            if not choice or not audio_choice_ok(choice):
                raise ValueError(f"not a device choice: {choice!r}")
        self._audio_choice = (audio_in, audio_out)  # the next call's AudioSpec reads it
        if self._state_file is not None:
            try:
                update_state(self._state_file, audio_in=audio_in, audio_out=audio_out)
            except (OSError, ValueError) as exc:  # a convenience: the choice still applies
                logger.warning("cannot remember the audio devices in %s: %s", self._state_file, exc)
        self._emit(ev.AudioDevicesChanged(audio_in, audio_out))

    def _save_sdp(self, path: str) -> None:
        if self._media is None:
            self._emit(ev.Notice("No call in progress: there is no stream to describe.", True))
            return
        try:
            text = self._media.sdp()
        except Exception as exc:  # MediaSessionError: not an RTP call
            logger.info("sdp() refused: %s", exc)
            self._emit(ev.Notice("An SDP exists only for RTP calls (both peers run vcall).", True))
            return
        try:
            # Mode 0600, atomically, through a temporary file of an unpredictable name: with
            # SRTP the description holds the call's send key (a=crypto, docs/interop.md).
            write_sdp(path, text)
        except OSError as exc:
            self._emit(ev.Notice(f"Cannot write {path}: {exc.strerror or exc}.", True))
            return
        self._emit(ev.Notice(f"SDP saved to {path}."))

    def _need_manager(self) -> ManagerLike:
        if self._manager is None:
            raise RuntimeError("not logged in")
        return self._manager

    def _login(self, command: ev.Login) -> None:
        self._logout()
        account = self._account_finder(command.server, command.nick)
        if differs_only_in_case(command.nick, account):
            assert account is not None
            self._emit(ev.NickCaseDiffers(command.nick, account))  # the user decides
            return
        host, _port = command.server
        if command.server == self._config.server and self._config.server_fallbacks:
            # Every discovery client of this server (manager, lister) fails over to these.
            from vcall.discovery.client import use_servers  # noqa: PLC0415

            use_servers([command.server, *self._config.server_fallbacks])
        pins = self._use_tls()
        local = _is_loopback(host)
        bind_ip = "127.0.0.1" if local else "0.0.0.0"
        advertise = self._config.advertise_ip or ("127.0.0.1" if local else None)

        def media() -> Any:
            audio = self._audio_spec()  # the devices chosen by the time this call starts
            with_volume = None if audio is None else dataclasses.replace(audio, volume=self._volume)
            return self._media_factory(
                source=self._source, preset=self._preset, bind_ip=bind_ip,
                rx_port=self._config.media_port, audio=with_volume,
            )  # fmt: skip

        manager = self._manager_factory(
            nick=command.nick,
            password=command.password,
            server=command.server,
            listen=(bind_ip, self._config.listen_port),
            advertise_ip=advertise,
            media_factory=media,
            on_event=self._on_manager_event,
            ring_timeout=self._config.ring_timeout,
            codecs=self._codecs,
            identity=self._identity(),
        )
        try:
            manager.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                manager.close()
            logger.info("login as %s at %s failed: %r", command.nick, command.server, exc)
            self._emit(
                ev.LoginFailed(
                    describe_error(exc, nick=command.nick, server=format_server(*command.server))
                )
            )
            return
        self._manager, self._server, self._nick = manager, command.server, command.nick
        self._emit(ev.LoggedIn(command.nick, command.server))
        self._tell_server_key(pins, command.server)
        self._refresh()
        self._registration = presence.registration_of(
            manager, command.nick, command.password, command.server
        )
        with self._pause_lock:
            self._keeper = presence.PresenceKeeper(
                command.server, self._registration, self._emit, lister=self._lister,
                paused=frozenset(self._list_paused),
            )  # fmt: skip
        self._keeper.start()

    def _audio_spec(self) -> Any:
        """The next call's audio: --audio-in/--audio-out, [audio] input/output and the Settings
        choice (:func:`vcall.config.start_audio`); None: "off". Runs when a call's media starts
        (a call-control thread, never Tk)."""
        source = start_audio(self._config.audio_in, self._audio_choice[0])
        sink = start_audio(self._config.audio_out, self._audio_choice[1])
        if "off" in (source, sink):
            return None
        from pipeline.control import AudioSpec  # noqa: PLC0415

        if source == self._audio_choice[0]:
            source = self._present(source, 0)
        if sink == self._audio_choice[1]:
            sink = self._present(sink, 1)
        return AudioSpec(source=source, sink=sink)

    def _present(self, spec: str, kind: int) -> str:
        """``spec`` if it is the default or its device is there now; else "device" (the
        system default), with a Notice. A list that fails keeps ``spec``: the audio stage
        then says why (pipeline/stages/audio.py)."""
        name = spec.removeprefix("device:")
        if not spec.startswith("device:"):
            return spec
        try:
            found = self._device_lister()[kind]
        except Exception as exc:  # no PortAudio: the audio stage will say so
            logger.info("cannot check the audio device %s: %s", name, exc)
            return spec
        if name in found:
            return spec
        if kind == 0:
            words = _("Microphone {name} is not connected: this call uses the system default.")
        else:
            words = _("Speaker {name} is not connected: this call uses the system default.")
        words = words.format(name=name)
        logger.warning("%s", words)
        self._emit(ev.Notice(words, error=True))
        return "device"

    def _identity(self) -> Any:
        """This installation's key pair (vcall/identity.py): calls between vcall peers over TLS,
        verified against the directory, with SRTP media. None when it cannot be loaded (said
        in the log): calls then go in clear, and peers with keys refuse them."""
        from vcall.identity import IdentityError, load_or_create_identity  # noqa: PLC0415

        folder = self._state_file.parent / "identity" if self._state_file is not None else None
        try:
            return load_or_create_identity(folder)
        except (IdentityError, OSError) as exc:
            logger.warning("no identity, calls will not be encrypted: %s", exc)
            return None

    def _use_tls(self) -> PinStore:
        """Every discovery client of this process talks TLS to servers that offer it, pinning
        their keys in ``servers.json`` beside the state file (vcall/discovery/tls.py)."""
        from vcall.discovery.tls import PinStore, default_pins_path, use_tls  # noqa: PLC0415

        folder = self._state_file.parent if self._state_file is not None else None
        pins = PinStore(folder / "servers.json" if folder else default_pins_path())
        use_tls(pins)
        return pins

    def _tell_server_key(self, pins: PinStore, server: tuple[str, int]) -> None:
        try:
            pin = pins.get(*server)
        except Exception as exc:  # an unreadable pin file was already a login error
            logger.warning("cannot read the pinned server keys: %s", exc)
            return
        where = format_server(*server)
        if pin is None:
            text = f"{where} offers no encryption (a classic server): the login went in clear."
            self._emit(ev.Notice(text, True))
        else:
            logger.info("discovery %s over TLS, server key %s", where, pin.fingerprint)
            self._emit(ev.Notice(f"{where}: encrypted, server key {pin.fingerprint}."))

    def _logout(self) -> None:
        manager, self._manager = self._manager, None
        self._server = None
        with self._pause_lock:
            keeper, self._keeper = self._keeper, None
            self._list_paused.discard("call")  # a call ends with its login
        token = None
        if keeper is not None:
            keeper.stop()
            token = keeper.token
        if manager is None:
            return
        self._detach_media()
        try:
            manager.close()  # hangs up a call in progress
        except Exception:
            logger.exception("closing the call manager failed")
        registration, self._registration = self._registration, None
        if registration is not None:
            presence.say_goodbye(registration, token)  # shown offline at once (VCALL_OFFLINE)

    def _refresh(self) -> None:
        if self._server is None or self._manager is None:
            return  # logged out meanwhile: nothing to list
        try:
            users = self._lister(self._server)
        except Exception as exc:
            self._emit(ev.Notice(describe_error(exc, server=format_server(*self._server)), True))
            return
        self._emit(ev.UsersListed(tuple(users)))

    def _dial(self, nick: str) -> None:
        manager = self._need_manager()
        self._peer = nick
        self._emit(ev.Dialing(nick))
        try:
            manager.call(nick)  # returns at once; progress and failure arrive as events
        except Exception as exc:
            logger.info("call to %s failed: %r", nick, exc)
            server = format_server(*self._server) if self._server else ""
            message = describe_error(exc, peer=nick, server=server)
            self._emit(ev.Ended(message, error=True, reason="failed"))

    def _translate(self, event: object) -> None:
        """One CallManager event -> GUI events (and media attach/detach)."""
        match event:
            case call_events.IncomingCall(peer=peer):
                self._peer = peer
                self._emit(ev.Ringing(peer, self._config.ring_timeout))
            case call_events.Outgoing(peer=peer):
                self._peer = peer
            case call_events.CallStarted(peer=peer, mode=mode, codec=codec, protection=protection):
                self._peer = peer
                self._attach_media()
                self._pause_list("call", True)  # no presence lists during a call
                self._emit(ev.Connected(peer, mode, codec, protection))
            case call_events.HoldChanged(local=local, remote=remote):
                self._emit(ev.HoldState(local, remote))
            case call_events.PauseChanged(paused=paused):
                self._emit(ev.SendingChanged(not paused))
            case call_events.MuteChanged(muted=muted):
                self._emit(ev.MutedChanged(muted))
            case call_events.PeerMediaChanged(muted=muted, paused=paused):
                self._emit(ev.PeerMedia(muted, paused))
            case call_events.MissedWhileBusy(peer=peer):
                self._emit(ev.MissedBusy(peer))
            case call_events.LinkChanged(peer=peer, reconnecting=True, silence_s=silence):
                self._emit(ev.LinkState(True, silence))  # the banner over the peer's video
                self._emit(ev.Notice(f"No answer from {peer}: reconnecting…", error=True))
            case call_events.LinkChanged(peer=peer, reconnecting=False, silence_s=silence):
                self._emit(ev.LinkState(False, silence))
                self._emit(ev.Notice(f"{peer} is back."))
            case call_events.CallEnded(peer=peer, reason=reason, detail=detail):
                self._detach_media()
                self._pause_list("call", False)
                message, error = describe_end(reason, peer or self._peer, detail)
                # The model drops the pause (per call); the history keeps the reason.
                self._emit(ev.Ended(message, error, reason))
                self._peer = ""
            case _:
                logger.debug("call event %r", event)

    def _attach_media(self) -> None:
        media = self._manager.media if self._manager is not None else None
        if media is None or media is self._media:
            return
        self._media = media
        if self._display is not None:
            media.set_display_size(*self._display)
        # Tk gets its own duplicate of the fd: it stays valid until Tk has removed its file
        # handler, even when the session closes its own copy first.
        self._emit(ev.MediaAttached(media, os.dup(media.notify_fd())))
        self._next_stats = self._clock()

    def _detach_media(self) -> None:
        if self._media is not None:
            self._media = None
            self._emit(ev.MediaDetached())

    def _poll_stats(self) -> None:
        self._next_stats = self._clock() + STATS_INTERVAL
        media = self._media
        if media is None:
            return
        try:
            stats = media.stats()
        except Exception:
            logger.debug("stats() failed", exc_info=True)
            return
        self._emit(ev.StatsUpdate(stats, self._clock()))
