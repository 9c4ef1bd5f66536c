"""`vcall` / `vcall gui`: the Tk client.

:class:`ClientApp` ties the screens to the worker. The Tk thread only posts commands and renders
events: the worker's wake pipe and the media session's notify fd are Tk file handlers, so the
event loop sleeps until there is something to show and never waits on the network or the
pipeline. Video goes into one persistent PhotoImage per view, updated in place.

With no server configured (config file or ``--server``) the client starts an embedded discovery
server on loopback, so it works out of the box on a fresh machine.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import select
import signal
import time
import tkinter as tk
from dataclasses import dataclass
from pathlib import Path
from tkinter import ttk
from typing import Any

import numpy as np

from vcall.config import (
    Config,
    ConfigError,
    State,
    apply_overrides,
    format_server,
    load_config,
    load_state,
    parse_server,
    save_state,
    state_path,
)
from vcall.gui import events as ev
from vcall.gui.call_screen import SHORTCUTS, CallScreen
from vcall.gui.incoming import IncomingDialog
from vcall.gui.logic import summarize_stats
from vcall.gui.login import LoginScreen
from vcall.gui.main_screen import MainScreen
from vcall.gui.model import Phase, Screen, UiModel, reduce, status_line
from vcall.gui.worker import ClientWorker

logger = logging.getLogger(__name__)

STATUS_TICK_MS = 500
EXIT_GRACE_MS = 8000  # how long exit waits for the worker to hang up and unregister


@dataclass(frozen=True, slots=True)
class AppOptions:
    """Start-up behaviour beyond the config (the demo's autopilot uses these)."""

    nick: str = ""
    password: str = ""
    server_text: str = ""  # prefilled server field; overrides the remembered one
    auto_login: bool = False
    auto_accept: bool = False
    auto_call: str = ""
    title: str = "vcall"
    state_file: Path | None = None  # None: the default state file


def frame_pixels(frame: Any) -> np.ndarray | None:
    """The RGB pixels of a ``MediaSession.latest()`` frame (an array or an object with one)."""
    if frame is None:
        return None
    if isinstance(frame, np.ndarray):
        return frame
    for name in ("rgb", "pixels", "image", "array", "data"):
        value = getattr(frame, name, None)
        if isinstance(value, np.ndarray):
            return value
    return None


def _frame_key(frame: Any) -> object:
    """Identity of a frame, to skip re-showing one already on screen."""
    for name in ("frame_id", "seq", "id"):
        value = getattr(frame, name, None)
        if isinstance(value, int):
            return value
    return id(frame)


class ClientApp:
    def __init__(
        self,
        root: tk.Tk,
        config: Config,
        options: AppOptions = AppOptions(),
        *,
        worker: ClientWorker | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.options = options
        self.model = UiModel(preset=config.preset, source=config.source)
        self.worker = worker if worker is not None else ClientWorker(config)
        self._state_file = options.state_file if options.state_file else state_path()
        self._pending_login: tuple[str, str, tuple[str, int], bool] | None = None
        self._auto_called = False
        self._exiting = False
        self._media: Any = None
        self._media_fd: int | None = None
        self._shown: tuple[object, object] = (None, None)
        self.incoming: IncomingDialog | None = None
        self.frames_handled = 0
        # Durations (ms) of the last frame handler runs, for `vcall bench ui`.
        self.handler_ms: collections.deque[float] = collections.deque(maxlen=4096)
        self.last_stats: dict[str, Any] = {}  # the newest MediaSession.stats() snapshot
        from pipeline.sources import list_cameras  # noqa: PLC0415 - imports OpenCV

        try:
            cameras = list_cameras()
        except OSError:
            cameras = []

        root.title(options.title)
        root.minsize(640, 420)
        ttk.Style(root).theme_use("clam")
        self.container = ttk.Frame(root)
        self.container.pack(fill="both", expand=True)
        self.login = LoginScreen(self.container, on_submit=self._submit_login)
        self.main = MainScreen(
            self.container,
            on_call=lambda nick: self.worker.post(ev.Dial(nick)),
            on_refresh=lambda: self.worker.post(ev.Refresh()),
            on_logout=lambda: self.worker.post(ev.Logout()),
            on_exit=self.exit,
        )
        self.call = CallScreen(
            self.container,
            on_hangup=lambda: self.worker.post(ev.Hangup()),
            on_hold=lambda hold: self.worker.post(ev.Hold() if hold else ev.Resume()),
            on_pause=lambda pause: self.worker.post(ev.SetSending(not pause)),
            on_preset=lambda name: self.worker.post(ev.SetPreset(name)),
            on_source=lambda spec: self.worker.post(ev.SetSource(spec)),
            on_display_size=lambda peer, me: self.worker.post(ev.SetDisplaySize(peer, me)),
            cameras=cameras,
        )
        self._screens = {Screen.LOGIN: self.login, Screen.MAIN: self.main, Screen.CALL: self.call}
        self._shown_screen: Screen | None = None
        self._tick_id = ""
        self._bind_shortcuts()
        root.protocol("WM_DELETE_WINDOW", self.exit)

        state = load_state(self._state_file)
        server_text = options.server_text or state.server
        if config.server is not None and not options.server_text:
            server_text = format_server(*config.server)
        self.login.fill(
            options.nick or state.nick,
            server_text,
            options.password or state.password,
            state.remember_password,
        )
        self.worker.start()
        root.tk.createfilehandler(self.worker.wake_fd, tk.READABLE, self._on_wake)
        self._render()
        self.login.focus_first_empty()
        self._tick()
        if options.auto_login:
            root.after_idle(self.login.submit)

    # ------------------------------------------------------------------- user actions

    def _submit_login(
        self, nick: str, password: str, server: tuple[str, int], remember: bool
    ) -> None:
        self._pending_login = (nick, password, server, remember)
        self.login.set_busy(True)
        self.worker.post(ev.Login(nick, password, server))

    def exit(self) -> None:
        """Hang up, unregister and close; the window goes away at once."""
        if self._exiting:
            return
        self._exiting = True
        self.root.withdraw()
        self.worker.post(ev.Shutdown())
        self.root.after(EXIT_GRACE_MS, self._finish_exit)

    def _finish_exit(self) -> None:
        with contextlib.suppress(tk.TclError):
            self.root.after_cancel(self._tick_id)
        self._close_incoming()
        self._detach_media()
        with contextlib.suppress(tk.TclError, ValueError, OSError):
            self.root.tk.deletefilehandler(self.worker.wake_fd)
        with contextlib.suppress(tk.TclError):
            self.root.quit()

    def _bind_shortcuts(self) -> None:
        actions = {
            "<Control-e>": lambda: self.worker.post(ev.Hangup()),
            "<Control-h>": self.call.toggle_hold,
            "<Control-p>": self.call.toggle_pause,
            "<Control-q>": self.call.next_quality,
            "<Control-s>": self.call.toggle_stats,
        }
        assert set(actions) == set(SHORTCUTS)
        for sequence, action in actions.items():

            def handler(_event: tk.Event[tk.Misc], action: Any = action) -> str:
                if self.model.screen is Screen.CALL:
                    action()
                return "break"

            self.root.bind_all(sequence, handler)

    # ------------------------------------------------------------------------ events

    def _on_wake(self, _fd: int, _mask: int) -> None:
        for event in self.worker.drain():
            try:
                self.handle(event)
            except Exception:  # a rendering bug must not kill the event loop
                logger.exception("handling %r failed", event)

    def handle(self, event: ev.Event) -> None:
        """Fold one worker event into the model and the widgets."""
        self.model = reduce(self.model, event, time.monotonic())
        match event:
            case ev.LoggedIn(nick=nick, server=server):
                self._remember_login()
                self.main.set_identity(nick, format_server(*server))
                self.root.title(f"{self.options.title} — {nick}")
                if self.options.auto_call and not self._auto_called:
                    self._auto_called = True
                    self.worker.post(ev.Dial(self.options.auto_call))
            case ev.LoginFailed(message=message):
                self.login.set_busy(False)
                self.login.show_message(message)
            case ev.LoggedOut():
                self.root.title(self.options.title)
                self.login.set_busy(False)
                self.login.show_message("Logged out.", error=False)
            case ev.UsersListed(users=users):
                self.main.set_users(users)
            case ev.Ringing(peer=peer, timeout=timeout):
                self._open_incoming(peer, timeout)
            case ev.Connected() | ev.Ended():
                self._close_incoming()
                if isinstance(event, ev.Connected):
                    self.call.stats.reset()
            case ev.MediaAttached(session=session, notify_fd=fd):
                self._attach_media(session, fd)
            case ev.MediaDetached():
                self._detach_media()
            case ev.StatsUpdate(stats=stats):
                self.last_stats = stats
                view = summarize_stats(stats)
                self.call.stats.add(view)
                if view.source_error:
                    self.model = reduce(
                        self.model, ev.Notice(f"Video source: {view.source_error}", True), 0.0
                    )
            case ev.WorkerStopped():
                if self._exiting:
                    self._finish_exit()
            case _:
                pass
        self._render()

    def _remember_login(self) -> None:
        if self._pending_login is None:
            return
        nick, password, server, remember = self._pending_login
        self._pending_login = None
        try:
            save_state(
                State(nick, format_server(*server), remember, password if remember else ""),
                self._state_file,
            )
        except OSError as exc:
            logger.warning("cannot save %s: %s", self._state_file, exc)

    def _open_incoming(self, peer: str, timeout: float) -> None:
        self._close_incoming()
        self.incoming = IncomingDialog(
            self.root,
            peer=peer,
            timeout=timeout,
            on_accept=lambda: self.worker.post(ev.Accept()),
            on_deny=lambda: self.worker.post(ev.Deny()),
        )
        if self.options.auto_accept:
            dialog = self.incoming
            # A moment's ring so that the demo shows the dialog.
            self.root.after(700, lambda: dialog.accept() if dialog.winfo_exists() else None)

    def _close_incoming(self) -> None:
        if self.incoming is not None:
            with contextlib.suppress(tk.TclError):
                self.incoming.close()
            self.incoming = None

    # ------------------------------------------------------------------------- video

    def _attach_media(self, session: Any, fd: int) -> None:
        self._detach_media()
        self._media, self._media_fd = session, fd
        self._shown = (None, None)
        self.root.tk.createfilehandler(fd, tk.READABLE, self._on_frame)
        # Ask for frames at the size of the views now on screen.
        self.worker.post(ev.SetDisplaySize(self.call.peer_view.area, self.call.self_view.area))

    def _detach_media(self) -> None:
        fd, self._media_fd, self._media = self._media_fd, None, None
        if fd is not None:
            with contextlib.suppress(tk.TclError, ValueError):
                self.root.tk.deletefilehandler(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self.call.peer_view.clear("Waiting for video…")
        self.call.self_view.clear()

    def _on_frame(self, fd: int, mask: int) -> None:
        start = time.perf_counter()
        self._show_frames(fd)
        self.handler_ms.append((time.perf_counter() - start) * 1000.0)

    def _show_frames(self, fd: int) -> None:
        # Drain the notification without ever blocking (the fd may be in blocking mode, and
        # latest() may already have consumed it).
        with contextlib.suppress(OSError):
            if select.select([fd], [], [], 0)[0]:
                os.read(fd, 8)
        media = self._media
        if media is None:
            return
        try:
            peer, me = media.latest()
        except Exception:
            logger.debug("latest() failed", exc_info=True)
            return
        self.frames_handled += 1
        keys = (
            _frame_key(peer) if peer is not None else self._shown[0],
            _frame_key(me) if me is not None else self._shown[1],
        )
        for frame, key, old, view in (
            (peer, keys[0], self._shown[0], self.call.peer_view),
            (me, keys[1], self._shown[1], self.call.self_view),
        ):
            pixels = frame_pixels(frame)
            if pixels is not None and key != old:
                view.show(pixels)
        self._shown = keys

    # ------------------------------------------------------------------------ render

    def _tick(self) -> None:
        if self.model.screen is Screen.CALL:
            self.call.status.configure(text=status_line(self.model, time.monotonic()))
        self._tick_id = self.root.after(STATUS_TICK_MS, self._tick)

    def _render(self) -> None:
        model = self.model
        screen = model.screen
        if screen is not self._shown_screen:
            for widget in self._screens.values():
                widget.pack_forget()
            self._screens[screen].pack(fill="both", expand=True)
            self._shown_screen = screen
        if screen is Screen.CALL:
            self.call.render(model, status_line(model, time.monotonic()))
        elif screen is Screen.MAIN and model.message:
            self.main.show_message(model.message, model.message_error)
        elif screen is Screen.LOGIN and model.message and model.message_error:
            self.login.show_message(model.message)
        if screen is Screen.MAIN and model.phase is Phase.RINGING:
            self.main.show_message(model.message)


# ------------------------------------------------------------------------------ command


def _remote(server_text: str) -> bool:
    """A remembered server that is not on this machine (an embedded one's port is stale)."""
    try:
        host, _port = parse_server(server_text)
    except ConfigError:
        return False
    return host not in {"localhost", "::1"} and not host.startswith("127.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default: the user's)")
    parser.add_argument("--server", help="discovery server HOST[:PORT] (default: embedded)")
    parser.add_argument("--nick", default="", help="prefill the nick")
    parser.add_argument("--password", default="", help="prefill the password")
    parser.add_argument("--listen-port", type=int, help="TCP call-control port")
    parser.add_argument("--media-port", type=int, help="UDP port video is received on")
    parser.add_argument("--advertise-ip", help="address registered with the server")
    parser.add_argument("--source", help='video source: "pattern", "camera:0", "file:PATH"')
    parser.add_argument("--preset", help="quality: low, medium, high, max")
    parser.add_argument("--ring-timeout", type=float, help="seconds an incoming call rings")
    parser.add_argument("--auto-login", action="store_true", help="log in at start")
    parser.add_argument("--auto-accept", action="store_true", help="accept incoming calls")
    parser.add_argument("--call", default="", metavar="NICK", help="call NICK once logged in")
    parser.add_argument("--geometry", help="Tk window geometry, e.g. 1100x640+0+0")
    parser.add_argument("--title", default="vcall", help="window title")
    parser.add_argument("--state-file", type=Path, help=argparse.SUPPRESS)
    # The demo's clients: exit when the demo (this pid) dies, even by SIGKILL.
    parser.add_argument("--die-with-parent", type=int, default=0, help=argparse.SUPPRESS)


def build_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    host = port = None
    if args.server:
        host, port = parse_server(args.server)
    return apply_overrides(
        config,
        server_host=host,
        server_port=port,
        listen_port=args.listen_port,
        media_port=args.media_port,
        advertise_ip=args.advertise_ip,
        source=args.source,
        preset=args.preset,
        ring_timeout=args.ring_timeout,
    )


def run(args: argparse.Namespace) -> int:
    if args.die_with_parent:
        from pipeline.lifecycle import set_parent_death_signal  # noqa: PLC0415

        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != args.die_with_parent:  # the parent died before prctl
            return 1
    try:
        config = build_config(args)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    embedded = None
    server_text = ""
    remembered = load_state(args.state_file).server
    if config.server is None and not _remote(remembered):
        from vcall.discovery.embedded import EmbeddedServer  # noqa: PLC0415

        embedded = EmbeddedServer()
        server_text = format_server(*embedded.start())
        logger.info("no server configured: embedded discovery server at %s", server_text)
    try:
        root = tk.Tk(className="vcall")
    except tk.TclError as exc:
        logger.error("cannot open a window (is DISPLAY set?): %s", exc)
        if embedded is not None:
            embedded.stop()
        return 1
    if args.geometry:
        root.geometry(args.geometry)
    options = AppOptions(
        nick=args.nick,
        password=args.password,
        server_text=server_text,
        auto_login=args.auto_login,
        auto_accept=args.auto_accept,
        auto_call=args.call,
        title=args.title,
        state_file=args.state_file,
    )
    app = ClientApp(root, config, options)
    # SIGTERM closes the window properly (hang up, unregister, stop the pipeline). Python runs
    # the handler between Tk events; the handler only schedules the exit.
    signal.signal(signal.SIGTERM, lambda _s, _f: root.after(0, app.exit))
    try:
        root.mainloop()
    except KeyboardInterrupt:
        pass
    finally:
        app.worker.stop()
        with contextlib.suppress(tk.TclError):
            root.destroy()
        if embedded is not None:
            embedded.stop()
    return 0
