"""A discovery server inside the current process, on its own thread and event loop.

For the GUI's "no server configured" mode, demos and tests: the real :class:`DiscoveryServer`,
not a fake. ``start()`` returns once it accepts connections; ``stop()`` closes it and joins
the thread; both are idempotent and safe to call from any thread but the server's own.

Like ``vcall-discovery``, it also listens with TLS for vcall clients (``tls_port``: 0 = any
free port, None = none) on a key kept in ``identity_dir`` (default: next to the database, or
the user data dir for ``:memory:``; see server.identity_dir_for); ``tls_port`` and
``fingerprint`` tell where and which key once started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import replace
from types import TracebackType

from vcall.discovery.server import DiscoveryServer, ServerConfig

logger = logging.getLogger(__name__)


class EmbeddedServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str = ":memory:",
        config: ServerConfig | None = None,
        *,
        tls_port: int | None = 0,
        identity_dir: str | None = None,
    ) -> None:
        self._config = replace(
            config or ServerConfig(), host=host, port=port, db=db, tls_port=tls_port
        )
        if identity_dir is not None:
            self._config = replace(self._config, identity_dir=identity_dir)
        self.tls_port: int | None = None
        self.fingerprint: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.address: tuple[str, int] | None = None

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> tuple[str, int]:
        """Start serving; returns the (host, port) it listens on (port 0 picks a free one)."""
        if self.address is not None:
            return self.address
        self._started.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="vcall-discovery", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("embedded discovery server did not start")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        assert self.address is not None
        return self.address

    def stop(self, timeout: float = 10.0) -> None:
        thread = self._thread
        if thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already finished
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None
        self.address = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(), which re-raises it
            if not self._started.is_set():
                self._error = exc
                self._started.set()
            else:
                logger.exception("embedded discovery server failed")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = DiscoveryServer(self._config)
        try:
            self.address = await server.start()
            self.tls_port = server.tls_port
            self.fingerprint = server.identity.fingerprint if server.identity else None
            self._started.set()
            await self._stop.wait()
        finally:
            await server.close()
