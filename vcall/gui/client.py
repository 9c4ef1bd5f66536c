"""The Tk client's application object: screens, model, worker and video feed tied together.

:class:`ClientApp` ties the screens to the worker. The Tk thread only posts commands and renders
events: the worker's wake pipe and the media session's notify fd are Tk file handlers, so the
event loop sleeps until there is something to show and never waits on the network or the
pipeline. Video goes into one persistent PhotoImage per view, updated in place.

Ring tones (:mod:`pipeline.audio.ring`): an incoming call rings, and an outgoing one plays the
ringback while the callee rings, through the audio output (the flag or config file, else the
speaker chosen in Settings: :func:`vcall.config.start_audio`), in a child process that
stops on answer, deny, cancel or timeout; with no output device (or ``[audio] output = "off"``)
the terminal bell rings instead, every ``RING_EVERY_S``. ``rings`` counts the alerts either way.
"""

from __future__ import annotations

import contextlib
import logging
import time
import tkinter as tk
from dataclasses import dataclass
from pathlib import Path
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from pipeline.audio.ring import RingPlayer
from vcall.config import (
    Config,
    config_path,
    format_server,
    load_state,
    start_audio,
    start_codecs,
    start_theme,
    state_path,
    update_state,
)
from vcall.discovery.mdns import DirectoryBrowser
from vcall.gui import dialogs, i18n, settings
from vcall.gui import events as ev
from vcall.gui.call_screen import CallScreen, ask_video_file, source_label
from vcall.gui.feed import VideoFeed
from vcall.gui.history import (
    HISTORY_NAME,
    CallLog,
    HistoryTracker,
    describe_record,
    missed_while_busy,
)
from vcall.gui.icons import Icons, apply_scaling
from vcall.gui.incoming import IncomingDialog
from vcall.gui.logic import QUALITY_WORDS, connection_quality, summarize_stats
from vcall.gui.login import LoginScreen
from vcall.gui.main_screen import PREVIEW_SIZE, MainScreen
from vcall.gui.menubar import MenuBar
from vcall.gui.model import (
    Phase,
    Screen,
    UiModel,
    busy_missed_detail,
    busy_missed_words,
    peer_mark,
    peer_notice,
    reconnect_banner,
    reduce,
    self_mark,
    self_notice,
    status_line,
    window_title,
)
from vcall.gui.notify import Notifier
from vcall.gui.preview import SourcePreview
from vcall.gui.shortcuts import help_rows
from vcall.gui.theme import apply_theme, colour
from vcall.gui.worker import ClientWorker

if TYPE_CHECKING:
    from pipeline.stats import MediaStats

logger = logging.getLogger(__name__)

STATUS_TICK_MS = 500
RING_EVERY_S = 2.0  # the terminal bell repeats while an incoming call rings
EXIT_GRACE_MS = 8000  # how long exit waits for the worker to hang up and unregister
PREVIEW_POLL_MS = 100  # the preview before a call shows up to 10 frames a second


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
        self._state_file = options.state_file if options.state_file else state_path()
        state = load_state(self._state_file)
        # --codec > [media] codec > the choice remembered from the selector > automatic.
        codecs = start_codecs(config, state)
        self.model = UiModel(preset=config.preset, source=config.source, codec_preference=codecs)
        # The microphone and speaker chosen in Settings (flags and config file win: start_audio).
        self.audio_choice = (state.audio_in, state.audio_out)
        self.worker = (
            worker
            if worker is not None
            else ClientWorker(
                config, codecs=codecs, state_file=self._state_file, audio=self.audio_choice
            )
        )
        self._pending_login: tuple[str, str, tuple[str, int], bool] | None = None
        self._auto_called = False
        self._exiting = False
        self.incoming: IncomingDialog | None = None
        self.last_stats: MediaStats | None = None  # the newest MediaSession.stats() snapshot
        from pipeline.sources.video import list_cameras  # noqa: PLC0415 - imports OpenCV

        self._list_cameras = list_cameras

        # The language before any widget: strings are looked up when widgets are built.
        self.language = i18n.install(i18n.choose_language(config.language))
        root.title(options.title)
        # HiDPI: Tk's scaling follows the desktop's before any widget or font is made.
        self.scale = apply_scaling(root)
        root.minsize(round(640 * self.scale), round(420 * self.scale))
        # The window icon (task bar, window list), drawn at the sizes window managers ask for.
        self.icons = Icons(root)
        with contextlib.suppress(tk.TclError):
            root.iconphoto(True, *self.icons.app())
        theme = start_theme(config, state)
        self.theme = apply_theme(root, theme)  # "light", "dark" (sv-ttk) or "clam"
        self.container = ttk.Frame(root)
        self.container.pack(fill="both", expand=True)
        # Directories announced on the network (mDNS, issue 15): browsed off the Tk thread,
        # offered in the login screen's server choice.
        self.lan = DirectoryBrowser()
        self.lan.start()
        self.login = LoginScreen(
            self.container, on_submit=self._submit_login, directories=self.lan.found
        )
        self.main = MainScreen(
            self.container,
            on_call=lambda nick: self.worker.post(ev.Dial(nick)),
            on_refresh=lambda: self.worker.post(ev.Refresh()),
            on_logout=lambda: self.worker.post(ev.Logout()),
            on_exit=self.exit,
            on_codecs=lambda codecs: self.worker.post(ev.SetCodecPreference(codecs)),
            on_source=self.choose_source,
            ask_file=lambda: ask_video_file(self.root, "Video source"),
        )
        # The self view before any call: runs only on the main screen with no call going.
        self.preview = SourcePreview(PREVIEW_SIZE)
        self._preview_shown = 0  # the preview frame number on screen
        self._preview_failed = ""  # the source whose preview failed (not retried by itself)
        self._preview_id = ""
        self.call = CallScreen(
            self.container,
            on_hangup=lambda: self.worker.post(ev.Hangup()),
            on_hold=lambda hold: self.worker.post(ev.Hold() if hold else ev.Resume()),
            on_pause=lambda pause: self.worker.post(ev.SetSending(not pause)),
            on_preset=lambda name: self.worker.post(ev.SetPreset(name)),
            on_source=lambda spec: self.worker.post(ev.SetSource(spec)),
            on_display_size=lambda peer, me: self.worker.post(ev.SetDisplaySize(peer, me)),
            on_save_sdp=lambda path: self.worker.post(ev.SaveSdp(path)),
            on_mute=lambda muted: self.worker.post(ev.SetMuted(muted)),
            on_volume=lambda volume: self.worker.post(ev.SetVolume(volume)),
            volume=config.audio_volume,
            cameras=self.cameras(),
        )
        self.call.on_fullscreen = self.toggle_fullscreen
        self.feed = VideoFeed(root, self.call.peer_view, self.call.self_view)
        # The call history beside state.json; desktop notifications off the Tk thread.
        self.call_log = CallLog(self._state_file.with_name(HISTORY_NAME))
        self.call_log.load()
        self._tracker = HistoryTracker()
        self.main.on_history_seen = self._history_seen
        self.notifier = Notifier()
        self.rings = 0  # alerts for incoming calls: the first, then one per RING_EVERY_S
        # The ring and ringback through the speaker; None: the bell alone (output "off", a file).
        self.ringer: RingPlayer | None = None
        self._spare_ringer: RingPlayer | None = None  # one switched off in Settings
        self._set_ringer(start_audio(config.audio_out, state.audio_out))
        self._belled = False  # the bell rang for the call now ringing
        self._last_ring = 0.0
        # The F1 / settings / about window.
        self.info_window: dialogs.InfoWindow | settings.SettingsWindow | None = None
        self._geometry_before_fullscreen = ""
        self._screens = {Screen.LOGIN: self.login, Screen.MAIN: self.main, Screen.CALL: self.call}
        self._shown_screen: Screen | None = None
        self._tick_id = ""
        self._exit_id = ""
        self._window_shown = True  # told to the worker: presence lists pause while hidden
        self.menus = MenuBar(
            root, self._actions(),
            on_call_screen=lambda: self.model.screen is Screen.CALL,
            on_pip=self.call.set_pip_visible, on_theme=self.set_theme, theme=theme,
        )  # fmt: skip
        root.protocol("WM_DELETE_WINDOW", self.exit)

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
        self._poll_preview()
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
        self._exit_id = self.root.after(EXIT_GRACE_MS, self._finish_exit)

    def shutdown(self, timeout: float = 15.0) -> None:
        """:meth:`exit` for callers without ``mainloop`` (tests, benchmarks): pumps Tk events
        until the worker has hung up and stopped, then releases everything."""
        self.exit()
        deadline = time.monotonic() + timeout
        while self.worker.running and time.monotonic() < deadline:
            self.root.update()
            time.sleep(0.01)
        self._finish_exit()
        self.worker.stop()
        self.preview.join(5.0)

    def _finish_exit(self) -> None:
        # Both timers go: one left pending would fire into a destroyed window.
        self.preview.stop()
        for timer in (self._tick_id, self._exit_id, self._preview_id):
            with contextlib.suppress(tk.TclError, ValueError):
                self.root.after_cancel(timer)
        self._close_incoming()
        self.feed.detach()
        self.notifier.close()
        self.lan.close()
        for ringer in (self.ringer, self._spare_ringer):
            if ringer is not None:
                ringer.close(1.0)  # the window is gone: a short wait for the child to leave
        with contextlib.suppress(tk.TclError, ValueError, OSError):
            self.root.tk.deletefilehandler(self.worker.wake_fd)
        with contextlib.suppress(tk.TclError):
            self.root.quit()

    def choose_source(self, spec: str) -> None:
        """The source of the calls to come (and of the one going on), from a picker."""
        self.worker.post(ev.SetSource(spec))
        self._preview_failed = ""
        self.model = reduce(self.model, ev.SourceChanged(spec), time.monotonic())

    def _poll_preview(self) -> None:
        """Show the newest preview frame; start, switch or stop the preview as the screen and
        the call say (a call's capture process needs the camera)."""
        model, preview = self.model, self.preview
        wanted = (
            model.screen is Screen.MAIN
            and model.phase is Phase.IDLE
            and self.main.preview_visible
            and not self._exiting
        )
        if not wanted:
            if preview.spec:
                preview.stop()
        elif model.source == self._preview_failed:
            pass  # said on screen; picking a source again retries
        elif preview.spec != model.source:
            self.main.set_sources(self.cameras(), model.source)
            self.main.preview.clear("Starting preview…")
            preview.start(model.source)
            self._preview_shown = 0
        elif preview.error:
            self._preview_failed = model.source
            self.main.show_preview_error(f"No preview: {preview.error}")
            preview.stop()
        elif (latest := preview.latest()) is not None and latest[0] != self._preview_shown:
            self._preview_shown = latest[0]
            self.main.preview.show(latest[1])
        self._preview_id = self.root.after(PREVIEW_POLL_MS, self._poll_preview)

    def cameras(self) -> list[str]:
        """The cameras now plugged in (a glob of /dev/video*: cheap enough for the Tk thread)."""
        try:
            return self._list_cameras()
        except OSError:
            return []

    def _actions(self) -> dict[str, Any]:
        """Action names (shortcuts and menu entries, :mod:`vcall.gui.menubar`) -> callables."""
        return {
            "hangup": lambda: self.worker.post(ev.Hangup()),
            "hold": self.call.toggle_hold,
            "video": self.call.toggle_pause,
            "mute": self.mute,
            "quality": self.call.next_quality,
            "stats": self.call.toggle_stats,
            "fullscreen": self.toggle_fullscreen,
            "leave_fullscreen": lambda: self.set_fullscreen(False),
            "help": self.show_shortcuts,
            "close": self.exit,
            "quit": self.exit,
            "settings": self.show_settings,
            "about": self.show_about,
            "swap": self.swap_views,
        }

    # ---------------------------------------------------------------- view and dialogs

    def mute(self) -> None:
        """M: mute or unmute the microphone in a call (the worker asks the call manager)."""
        if self.model.screen is not Screen.CALL or self.model.connected_at is None:
            self.handle(ev.Notice("Mute works in a call."))
            return
        self.worker.post(ev.SetMuted(not self.model.muted))

    def toggle_fullscreen(self) -> None:
        if self.model.screen is Screen.CALL:
            self.set_fullscreen(not self.call.fullscreen)

    def set_fullscreen(self, on: bool) -> None:
        """The call's video fills the screen (F11, a double-click on the video); Escape, F11
        or the end of the call go back. The window manager is asked (EWMH fullscreen); the
        geometry is set too, for a display without one."""
        if on == self.call.fullscreen:
            return
        root = self.root
        if on:
            self._geometry_before_fullscreen = root.geometry()
            self.menus.show(False)  # no menu bar in full screen
            self.call.set_fullscreen(True)
            with contextlib.suppress(tk.TclError):
                root.attributes("-fullscreen", True)
            root.geometry(f"{root.winfo_screenwidth()}x{root.winfo_screenheight()}+0+0")
        else:
            with contextlib.suppress(tk.TclError):
                root.attributes("-fullscreen", False)
            self.call.set_fullscreen(False)
            self.menus.show(True)
            if self._geometry_before_fullscreen:
                root.geometry(self._geometry_before_fullscreen)

    def set_theme(self, choice: str) -> None:
        """Light, dark or the desktop's ("system") from now on; remembered for the next start
        (:func:`vcall.config.start_theme`: a theme pinned by ``--theme`` or the config file
        still wins there)."""
        self.theme = apply_theme(self.root, choice)
        try:
            update_state(self._state_file, theme=choice)
        except OSError as exc:
            logger.warning("cannot save %s: %s", self._state_file, exc)
        self.menus.theme_choice.set(choice)
        self.main.history.tag_configure("missed", foreground=colour("error"))
        self.call.help.configure(foreground=colour("muted"))
        self.login.hint.configure(foreground=colour("muted"))
        self._render()

    def swap_views(self) -> None:
        """The peer in the picture-in-picture and ourselves large, or back."""
        self.call.set_swapped(not self.call.swapped)
        self.feed.set_views(self.call.peer_target, self.call.self_target)

    def _show_info(self, window: dialogs.InfoWindow | settings.SettingsWindow) -> None:
        if self.info_window is not None:
            with contextlib.suppress(tk.TclError):
                self.info_window.destroy()
        self.info_window = window

    def show_shortcuts(self) -> None:
        self._show_info(dialogs.shortcuts_window(self.root, help_rows()))

    def show_about(self) -> None:
        self._show_info(dialogs.about_window(self.root))

    def show_settings(self) -> None:
        """The Settings window: microphone and speaker (listed by the worker, off this
        thread), and the settings in use."""
        _ = i18n._
        config = self.config
        server = format_server(*config.server) if config.server else _("embedded (this machine)")
        any_port = _("any free port")
        rows = [
            (_("Discovery server"), server),
            (_("Call-control port"), str(config.listen_port or any_port)),
            (_("Video port (UDP)"), str(config.media_port or any_port)),
            (_("Video source"), source_label(self.model.source)),
            (_("Quality"), self.model.preset),
            (_("Video codec"), ", ".join(self.model.codec_preference)),
            (_("Ring timeout"), f"{config.ring_timeout:g} s"),
            (_("State file"), str(self._state_file)),
        ]
        pinned = tuple(
            spec if spec != "device" else "" for spec in (config.audio_in, config.audio_out)
        )
        window = settings.SettingsWindow(
            self.root, rows=rows, config_file=str(config_path()),
            audio=(self.audio_choice[0] or "device", self.audio_choice[1] or "device"),
            pinned=(pinned[0], pinned[1]),
            on_list=lambda: self.worker.post(ev.ListAudioDevices()),
            on_apply=lambda a_in, a_out: self.worker.post(ev.SetAudioDevices(a_in, a_out)),
        )  # fmt: skip
        self._show_info(window)

    def _set_ringer(self, out: str) -> None:
        """Ring through ``out`` from the next ring on; the bell alone unless it is a device."""
        if out.startswith("device"):
            self.ringer = self.ringer or self._spare_ringer or RingPlayer(out)
            self.ringer.sink_spec = out  # read when the next tone starts
        elif self.ringer is not None:
            self.ringer.stop()  # its child is reaped by close() at exit
            self._spare_ringer, self.ringer = self.ringer, None

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
                self._show_history()
                if self.options.auto_call and not self._auto_called:
                    self._auto_called = True
                    self.worker.post(ev.Dial(self.options.auto_call))
            case ev.LoginFailed(message=message):
                self.login.set_busy(False)
                self.login.show_message(message)
            case ev.NickCaseDiffers(typed=typed, account=account):
                self.login.ask_account(typed, account)  # yes submits again as `account`
            case ev.LoggedOut():
                self.login.set_busy(False)
                self.login.show_message("Logged out.", error=False)
            case ev.UsersListed(users=users):
                self.main.set_users(users)
            case ev.Ringing(peer=peer, timeout=timeout):
                self._tracker.ringing(peer, time.time())
                self._ring(peer)
                self._open_incoming(peer, timeout)
            case ev.Dialing(peer=peer):
                self._tone("ringback")
                self._tracker.dialing(peer, time.time())
                self.call.set_cameras(self.cameras())  # one plugged in since the start
                self.call.peer_view.clear(f"Calling {peer}…")
            case ev.Connected():
                self._tone("")
                self._tracker.connected(time.monotonic())
                self.call.set_cameras(self.cameras())
                self._close_incoming()
                self.call.stats.reset()
                self.call.set_quality(0, QUALITY_WORDS[0])
                self.call.peer_view.clear("Waiting for video…")
            case ev.Ended(reason=reason):
                self._tone("")
                self._close_incoming()
                self.set_fullscreen(False)
                record = self._tracker.ended(reason, time.monotonic())
                if record is not None:
                    self.call_log.add(record)
                    self._show_history()
                self.worker.post(ev.Refresh())  # who is there may have changed meanwhile
            case ev.MissedBusy(peer=peer):
                # A busy callee learns that someone tried: the history, and the desktop.
                self.call_log.add(missed_while_busy(peer, time.time()))
                self._show_history()
                self.notifier.notify(busy_missed_words(peer), busy_missed_detail())
            case ev.MediaAttached(session=session, notify_fd=fd):
                self.feed.attach(session, fd)
                # Ask for frames at the size of the views now on screen.
                self.worker.post(
                    ev.SetDisplaySize(self.call.peer_view.area, self.call.self_view.area)
                )
            case ev.MediaDetached():
                self.feed.detach()
            case ev.StatsUpdate(stats=stats):
                self.last_stats = stats
                audio = stats.audio
                level = audio.input_dbfs if audio.active else None
                self.call.audio_controls.set_level(level, muted=self.model.muted)
                view = summarize_stats(stats)
                self.call.stats.add(view)
                self.call.set_quality(*connection_quality(view))
                if view.source_error:
                    self.model = reduce(
                        self.model, ev.Notice(f"Video source: {view.source_error}", True), 0.0
                    )
            case ev.AudioDevicesListed(inputs=inputs, outputs=outputs, error=error):
                if isinstance(self.info_window, settings.SettingsWindow):
                    with contextlib.suppress(tk.TclError):  # closed meanwhile
                        self.info_window.fill(inputs, outputs, error)
            case ev.AudioDevicesChanged(audio_in=audio_in, audio_out=audio_out):
                self.audio_choice = (audio_in, audio_out)
                self._set_ringer(start_audio(self.config.audio_out, audio_out))
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
        try:  # the other fields (the remembered video codecs) stay as they are
            update_state(
                self._state_file,
                nick=nick,
                server=format_server(*server),
                remember_password=remember,
                password=password if remember else "",
            )
        except OSError as exc:
            logger.warning("cannot save %s: %s", self._state_file, exc)

    def _open_incoming(self, peer: str, timeout: float) -> None:
        self._close_incoming()
        self.incoming = IncomingDialog(
            self.root,
            peer=peer,
            timeout=timeout,
            on_accept=lambda: self._answer(ev.Accept()),
            on_deny=lambda: self._answer(ev.Deny()),
        )
        if self.options.auto_accept:
            dialog = self.incoming
            # A moment's ring so that the demo shows the dialog.
            self.root.after(700, lambda: dialog.accept() if dialog.winfo_exists() else None)

    def _ring(self, peer: str) -> None:
        """An incoming call: raise the window, ring, and notify the desktop (off this thread).
        The ring tone plays through the speaker; without one, the terminal bell rings."""
        root = self.root
        with contextlib.suppress(tk.TclError):
            if root.state() == "iconic":
                root.deiconify()
            root.lift()  # before the dialog opens: it goes on top (lifting it unmapped moves it)
        self._tone("ring")
        self._belled = False
        self._alert()
        self.notifier.notify(f"{peer} is calling", "Open vcall to answer or decline.")

    def _answer(self, command: ev.Accept | ev.Deny) -> None:
        self._tone("")  # silence at the click, not when the call layer has answered
        self.worker.post(command)

    def _tone(self, name: str) -> None:
        """Play the ring tone ``name`` ("ring", "ringback"), or stop it (""). Never blocks:
        the tone is a child process (pipeline/audio/ring.py)."""
        if self.ringer is None:
            return
        if name:
            self.ringer.start(name)
        else:
            self.ringer.stop()

    def _alert(self) -> None:
        """One ring: counted; the terminal bell when no ring tone can be heard."""
        self._last_ring = time.monotonic()
        self.rings += 1
        if self._bell_needed():
            self._bell()

    def _bell_needed(self) -> bool:
        return self.ringer is None or self.ringer.fallback is not None

    def _bell(self) -> None:
        self._belled = True
        with contextlib.suppress(tk.TclError):
            self.root.bell()

    def _show_history(self) -> None:
        now = time.time()
        rows = [describe_record(record, now) for record in self.call_log.records]
        self.main.set_history(rows, self.call_log.unseen_missed)

    def _history_seen(self) -> None:
        if self.call_log.mark_seen():
            self._show_history()

    def _close_incoming(self) -> None:
        if self.incoming is not None:
            with contextlib.suppress(tk.TclError):
                self.incoming.close()
            self.incoming = None

    # ------------------------------------------------------------------------ render

    def _tick(self) -> None:
        self._watch_window()
        if self.model.phase is Phase.RINGING:
            if time.monotonic() - self._last_ring >= RING_EVERY_S:
                self._alert()
            elif not self._belled and self._bell_needed():
                self._bell()  # the tone turned out to have no device: the bell, at once
        if self.model.screen is Screen.CALL:
            now = time.monotonic()
            self.call.set_status(status_line(self.model, now))
            self._render_notices(now)
        self._tick_id = self.root.after(STATUS_TICK_MS, self._tick)

    def _watch_window(self) -> None:
        """Tell the worker when the window is iconified or withdrawn, or shown again (the
        presence list pauses meanwhile). ``wm state`` is local to Tk: no blocking call."""
        try:
            shown = self.root.state() not in ("iconic", "withdrawn")
        except tk.TclError:
            return
        if shown != self._window_shown:
            self._window_shown = shown
            self.worker.set_window_shown(shown)

    def _render(self) -> None:
        model = self.model
        screen = model.screen
        if screen is not self._shown_screen:
            for widget in self._screens.values():
                widget.pack_forget()
            self._screens[screen].pack(fill="both", expand=True)
            self._shown_screen = screen
            self.menus.set_call_screen(screen is Screen.CALL)
        title = window_title(self.options.title, model)
        if title != self.root.title():
            self.root.title(title)
            if self.incoming is not None:
                with contextlib.suppress(tk.TclError):
                    self.incoming.title(title)
        self.main.set_codec_preference(model.codec_preference)  # a no-op when unchanged
        if screen is Screen.CALL:
            now = time.monotonic()
            self.call.render(model, status_line(model, now))
            self._render_notices(now)
        elif screen is Screen.MAIN and model.message:
            self.main.show_message(model.message, model.message_error)
        elif screen is Screen.LOGIN and model.message and model.message_error:
            self.login.show_message(model.message)
        if screen is Screen.MAIN and model.phase is Phase.RINGING:
            self.main.show_message(model.message)

    def _render_notices(self, now: float) -> None:
        self.call.set_peer_notice(peer_notice(self.model, now))
        self.call.set_self_notice(self_notice(self.model))
        self.call.set_marks(peer_mark(self.model), self_mark(self.model))
        self.call.set_banner(reconnect_banner(self.model, now))
