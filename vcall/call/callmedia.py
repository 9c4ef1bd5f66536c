"""One call's media, as call control sees it: open, connect, sending on/off, close with stats.

With a media factory, :class:`CallMedia` drives a ``MediaSession``: every operation runs on one
single-thread executor, so they happen in the order call control issued them and never block
the event loop. Without one, a UDP socket that counts and discards datagrams stands in, so the
port declared in CALLING / CALL_ACCEPTED is real. ``close()`` is idempotent and safe while
``open()`` is still running (whatever was opened is closed once it is).

``CallMedia`` carries out what the call session decides and decides nothing itself: whether
video is sent is the session's call (:func:`vcall.call.media.sending`), and the peer's
``PeerEndpoint`` arrives whole from the session and goes whole to the media session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from pipeline.control import PeerEndpoint
from vcall.call.media import MediaLike
from vcall.call.transport import DiscardSink

logger = logging.getLogger(__name__)


class CallMedia:
    def __init__(
        self,
        factory: Callable[[], MediaLike] | None,
        pool: concurrent.futures.Executor,
        bind_ip: str,
    ) -> None:
        self._factory = factory
        self._pool = pool
        self._bind_ip = bind_ip
        self.session: MediaLike | None = None
        self.rx_port = 0
        self._sink: DiscardSink | None = None
        self._sink_transport: asyncio.BaseTransport | None = None
        self._closed = False

    @property
    def real(self) -> bool:
        """A media pipeline runs (not the discarding placeholder)."""
        return self._factory is not None

    async def open(self) -> int:
        """Bind the UDP receive port (start the pipeline); returns the port to declare."""
        loop = asyncio.get_running_loop()
        if self._factory is None:
            transport, sink = await loop.create_datagram_endpoint(
                DiscardSink, local_addr=(self._bind_ip, 0)
            )
            self._sink_transport, self._sink = transport, sink
            self.rx_port = transport.get_extra_info("sockname")[1]
        else:
            self.session = session = await loop.run_in_executor(self._pool, self._factory)
            self.rx_port = await loop.run_in_executor(self._pool, session.open)
        if self._closed:  # closed while opening: release what was just opened
            await self._release()
        return self.rx_port

    def connect(self, peer: PeerEndpoint) -> None:
        """Start sending to and accepting from ``peer`` (queued behind earlier operations)."""
        self._submit(lambda m: m.connect(peer))

    def set_sending(self, enabled: bool) -> None:
        """Send video or not (queued behind earlier operations); the session decides which."""
        self._submit(lambda m: m.set_sending(enabled))

    def set_audio_sending(self, enabled: bool) -> None:
        """Send audio or not (queued); media without audio ignore it."""
        self._submit(lambda m: getattr(m, "set_audio_sending", lambda _enabled: None)(enabled))

    def _submit(self, fn: Callable[[MediaLike], None]) -> None:
        session = self.session
        if session is None or self._closed:
            return

        def run() -> None:
            try:
                fn(session)
            except Exception:
                logger.exception("media operation failed")

        self._pool.submit(run)

    async def close(self) -> dict[str, Any] | None:
        """Stop the media; returns its final stats as JSON-ready data (``MediaStats.to_dict()``;
        None if nothing was open). Idempotent."""
        if self._closed:
            return None
        self._closed = True
        return await self._release()

    async def _release(self) -> dict[str, Any] | None:
        stats: dict[str, Any] | None = None
        session, self.session = self.session, None
        if session is not None:
            loop = asyncio.get_running_loop()
            try:
                snapshot = await loop.run_in_executor(self._pool, session.stats)
                stats = snapshot.to_dict()
            except Exception:
                logger.exception("media stats failed")
            try:
                await loop.run_in_executor(self._pool, session.close)
            except Exception:
                logger.exception("media close failed")
        transport, self._sink_transport = self._sink_transport, None
        if transport is not None and self._sink is not None:
            transport.close()
            stats = {
                "media": False,
                "rx_datagrams": self._sink.datagrams,
                "rx_bytes": self._sink.bytes,
            }
        return stats
