"""CallMedia: ordered media operations, close during open, the discarding placeholder socket,
the PeerEndpoint passed whole; and the rule of what a call sends (vcall.call.media.sending)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.control import MediaMode, PeerEndpoint
from vcall.call.callmedia import CallMedia
from vcall.call.media import Sending, UserChoices, sending
from vcall.call.state import CallState


@dataclass(frozen=True)
class _Snapshot:
    """A stand-in for pipeline.stats.MediaStats: call control only needs to_dict()."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


class SlowMedia:
    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.calls: list[str] = []
        self.peers: list[Any] = []

    def open(self) -> int:
        self.gate.wait(5)
        self.calls.append("open")
        return 40000

    def connect(self, peer: Any) -> None:
        self.peers.append(peer)
        self.calls.append(f"connect {peer.mode} {peer.rx_port}")

    def set_sending(self, enabled: bool) -> None:
        self.calls.append(f"sending {enabled}")

    def sdp(self) -> str:
        return ""

    def stats(self) -> _Snapshot:
        self.calls.append("stats")
        return _Snapshot({"ok": 1})

    def close(self) -> None:
        self.calls.append("close")


def test_close_while_opening_releases_after_the_open() -> None:
    gate = threading.Event()
    media = SlowMedia(gate)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:

        async def scenario() -> Any:
            cm = CallMedia(lambda: media, pool, "127.0.0.1")
            opening = asyncio.ensure_future(cm.open())
            await asyncio.sleep(0.05)  # the factory ran; open() is blocked on the gate
            closing = asyncio.ensure_future(cm.close())
            await asyncio.sleep(0.05)
            gate.set()
            return await opening, await closing, await cm.close()

        port, stats, again = asyncio.run(scenario())
    assert port == 40000
    assert media.calls == ["open", "stats", "close"]
    assert again is None  # idempotent
    assert stats in (None, {"ok": 1})


def test_operations_keep_their_order_and_the_endpoint_travels_whole() -> None:
    gate = threading.Event()
    gate.set()
    media = SlowMedia(gate)
    peer = PeerEndpoint("127.0.0.1", 40002, MediaMode.RTP, local_ssrc=1, peer_ssrc=2)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:

        async def scenario() -> Any:
            cm = CallMedia(lambda: media, pool, "127.0.0.1")
            await cm.open()
            cm.connect(peer)
            for flag in (False, True, False):
                cm.set_sending(flag)
            return await cm.close()

        stats = asyncio.run(scenario())
    assert media.calls == [
        "open", "connect rtp 40002", "sending False", "sending True", "sending False",
        "stats", "close",
    ]  # fmt: skip
    assert stats == {"ok": 1}
    assert len(media.peers) == 1 and media.peers[0] is peer  # not unpacked and rebuilt


def test_without_a_factory_a_real_port_counts_and_discards() -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:

        async def scenario() -> Any:
            cm = CallMedia(None, pool, "127.0.0.1")
            port = await cm.open()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for _ in range(3):
                    s.sendto(b"x" * 100, ("127.0.0.1", port))
            await asyncio.sleep(0.1)
            assert cm.session is None and not cm.real
            return await cm.close()

        stats = asyncio.run(scenario())
    assert stats == {"media": False, "rx_datagrams": 3, "rx_bytes": 300}


# What a call sends, written out by hand: video only in a call nobody holds and the user has not
# paused. Every other state (set-up, held by either side, ended) sends nothing.
VIDEO_SENT = {(CallState.IN_CALL, False)}


@pytest.mark.parametrize("paused", [False, True])
@pytest.mark.parametrize("state", list(CallState))
def test_what_a_call_sends(state: CallState, paused: bool) -> None:
    # Audio flows where video could: a pause is not a mute (tests/call/test_mute.py).
    expected = Sending(video=(state, paused) in VIDEO_SENT, audio=(state, False) in VIDEO_SENT)
    assert sending(state, UserChoices(paused=paused)) == expected


def test_a_new_call_starts_unpaused() -> None:
    assert UserChoices() == UserChoices(paused=False)
    assert sending(CallState.IN_CALL, UserChoices()).video
