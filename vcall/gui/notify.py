"""Desktop notifications ("bob is calling") without ever blocking the Tk thread.

:class:`Notifier` hands each notification to one daemon thread of its own, which sends it
through ``desktop-notifier`` (the freedesktop.org Desktop Notifications Specification over the
D-Bus session bus on Linux; Notification Center on macOS; WinRT toasts on Windows) with an
asyncio loop of its own and a timeout. A missing library, no session bus or no notification
server are logged, never fatal: the ring and the raised window still tell the user.

Guarantees: :meth:`Notifier.notify` never blocks (a bounded queue; a full one drops, counted);
every outcome is counted (``attempted``, ``sent``, ``failed``, ``dropped``, ``unavailable``);
:meth:`Notifier.close` stops the thread within its timeout.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

QUEUE_SIZE = 8  # notifications waiting to be sent; more are dropped (counted)
SEND_TIMEOUT_S = 5.0  # for one notification, the bus connection included


@dataclass(frozen=True, slots=True)
class Notification:
    title: str
    message: str


class Notifier:
    def __init__(self, app_name: str = "vcall", timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.app_name = app_name
        self.timeout_s = timeout_s
        self._queue: queue.Queue[Notification | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.attempted = 0  # handed to desktop-notifier (which logs its own failures)
        self.sent = 0  # dispatched to the notification server
        self.failed = 0  # not dispatched: no bus, no server, a timeout
        self.dropped = 0  # the queue was full, or the notifier closed
        self.unavailable = 0  # desktop-notifier is not installed
        self._closed = False

    def notify(self, title: str, message: str) -> None:
        """Queue a notification; returns at once (Tk thread)."""
        if self._closed:
            self.dropped += 1
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(Notification(title, message))
        except queue.Full:
            self.dropped += 1
            logger.warning("desktop notification dropped (queue full): %s", title)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the sending thread (waits at most ``timeout`` s); later notifications drop."""
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        while True:  # make room for the stop mark: what is left unsent is dropped
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                try:
                    if self._queue.get_nowait() is not None:
                        self.dropped += 1
                except queue.Empty:
                    pass
        thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            sender = self._sender()
            while (item := self._queue.get()) is not None:
                if sender is None:
                    self.unavailable += 1
                    continue
                self.attempted += 1
                dispatched: list[bool] = []  # desktop-notifier logs its failures, never raises
                try:
                    loop.run_until_complete(
                        asyncio.wait_for(
                            sender.send(
                                title=item.title,
                                message=item.message,
                                on_dispatched=functools.partial(dispatched.append, True),
                            ),
                            self.timeout_s,
                        )
                    )
                except Exception as exc:  # a timeout, or a library that does raise
                    logger.warning("desktop notification: %s", exc or type(exc).__name__)
                if dispatched:
                    self.sent += 1
                else:
                    self.failed += 1
                    # Once at WARNING (a headless session has no bus: every ring would repeat
                    # it), then at DEBUG; the count keeps them all.
                    level = logging.WARNING if self.failed == 1 else logging.DEBUG
                    logger.log(
                        level,
                        "desktop notification failed (%d so far; no D-Bus session bus or "
                        "notification server?): %s",
                        self.failed,
                        item.title,
                    )
        finally:
            loop.close()

    def _sender(self) -> Any:  # a DesktopNotifier, or None
        try:
            from desktop_notifier import DesktopNotifier  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            logger.info("no desktop notifications (desktop-notifier not installed): %s", exc)
            return None
        # desktop-notifier logs each failure with a traceback at WARNING; ours says it once.
        logging.getLogger("desktop_notifier").setLevel(logging.ERROR)
        try:
            # No icon rather than desktop-notifier's default (the Python logo).
            return DesktopNotifier(app_name=self.app_name, app_icon=None)
        except Exception as exc:  # an unsupported platform
            logger.warning("no desktop notifications: %s", exc)
            return None
