"""What call control needs from a media session (``pipeline.session.MediaSession``).

A structural protocol, so that call control depends on the contract in docs/architecture.md and
not on the pipeline's internals; unit tests can pass a fake.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, Protocol


class MediaLike(Protocol):
    def open(self) -> int: ...

    def connect(self, peer: Any) -> None: ...

    def set_sending(self, enabled: bool) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def make_endpoint(
    ip: str, rx_port: int, mode: Literal["v0", "rtp"], local_ssrc: int, peer_ssrc: int
) -> Any:
    """A ``pipeline.session.PeerEndpoint`` (imported lazily: call control loads no media code
    unless a media session is in use)."""
    session = importlib.import_module("pipeline.session")
    return session.PeerEndpoint(
        ip=ip, rx_port=rx_port, mode=mode, local_ssrc=local_ssrc, peer_ssrc=peer_ssrc
    )
