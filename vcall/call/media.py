"""What call control needs from a media session (``pipeline.session.MediaSession``).

A structural protocol, so that call control depends on the contract in docs/architecture.md and
unit tests can pass a fake. ``pipeline.session`` is imported lazily: a control-only peer
(``vcall agent --no-media``) never loads the media pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from pipeline.session import PeerEndpoint


class MediaLike(Protocol):
    def open(self) -> int: ...

    def connect(self, peer: PeerEndpoint) -> None: ...

    def set_sending(self, enabled: bool) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def sdp(self) -> str: ...

    def close(self) -> None: ...


def make_endpoint(
    ip: str, rx_port: int, mode: Literal["v0", "rtp"], local_ssrc: int, peer_ssrc: int
) -> PeerEndpoint:
    from pipeline.session import PeerEndpoint  # noqa: PLC0415 (lazy, see module docstring)

    return PeerEndpoint(
        ip=ip, rx_port=rx_port, mode=mode, local_ssrc=local_ssrc, peer_ssrc=peer_ssrc
    )
