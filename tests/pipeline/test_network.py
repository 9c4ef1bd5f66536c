"""The pipeline against a bad network and hostile senders, on real loopback sockets: a lossy
relay between two sessions (loss reported by both sides through RTCP), garbage datagrams from
the peer's own address, and the SDP of the stream we send."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest

from benchmarks.relay import LossyRelay
from pipeline.session import MediaSession, PeerEndpoint
from tests.pipeline.test_session import LOCAL, call, peer_frame, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def lossy_call() -> Iterator[tuple[MediaSession, MediaSession, LossyRelay]]:
    a = MediaSession(bind_ip=LOCAL, preset="low")
    b = MediaSession(bind_ip=LOCAL, preset="low")
    relay: LossyRelay | None = None
    try:
        port_a, port_b = a.open(), b.open()
        relay = LossyRelay(port_b, drop_every=25)
        a.connect(PeerEndpoint(LOCAL, relay.port, "rtp", local_ssrc=1, peer_ssrc=2))
        b.connect(PeerEndpoint(LOCAL, port_a, "rtp", local_ssrc=2, peer_ssrc=1))
        yield a, b, relay
    finally:
        if relay is not None:
            relay.close()
        a.close()
        b.close()


def test_loss_is_counted_by_the_receiver_and_reported_to_the_sender(
    lossy_call: tuple[MediaSession, MediaSession, LossyRelay],
) -> None:
    a, b, relay = lossy_call
    wait_for(lambda: relay.dropped >= 10)
    wait_for(lambda: (b.stats().to_dict()["loss"]["lost_packets"] or 0) > 0)
    # The sender learns it from the receiver's RTCP report blocks.
    wait_for(lambda: (a.stats().to_dict()["loss"]["remote_cumulative_lost"] or 0) > 0)
    # A frame that lost a fragment is repaired (NACK/RTX; on loopback nearly always) or not
    # shown (incomplete): never shown broken (the stamps below must read).
    wait_for(
        lambda: (
            (d := b.stats().to_dict())["repair"]["recovered"] + d["drops"]["incomplete_frames"] > 0
        )
    )
    st_b = b.stats().to_dict()
    assert st_b["dead_stages"] == []
    first = peer_frame(b)
    assert first is not None
    wait_for(lambda: (f := peer_frame(b)) is not None and f.frame_id > first.frame_id)
    wait_for(lambda: a.stats().to_dict()["rtt_ms"] is not None)


@pytest.mark.parametrize("mode", ["v0", "rtp"])
def test_garbage_from_the_peer_address_is_counted_and_survived(mode: str) -> None:
    rng = random.Random(4)
    with call(mode) as (_a, b):
        wait_for(lambda: peer_frame(b))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for i in range(300):
                size = rng.choice([0, 1, 7, 12, 13, 20, 100, 1500, 9000])
                data = bytes(rng.getrandbits(8) for _ in range(size))
                if i % 3 == 0 and size >= 12:  # plausible RTP/V0 starts
                    data = (b"\x80\x1a" if mode == "rtp" else b"1#2#3x4#5#\xff\xd8") + data[2:]
                sock.sendto(data, (LOCAL, b.rx_port))
                sock.sendto(data, (LOCAL, b.rx_port + 1))  # RTCP port too
            wait_for(
                lambda: (
                    b.stats().to_dict()["drops"]["malformed"]
                    + b.stats().to_dict()["drops"]["wrong_source"]
                    > 10
                )
            )
        finally:
            sock.close()
        st = b.stats().to_dict()
        assert st["dead_stages"] == []
        first = peer_frame(b)
        assert first is not None
        wait_for(lambda: (f := peer_frame(b)) is not None and f.frame_id > first.frame_id)


def test_sdp_describes_the_rtp_stream_we_send() -> None:
    with call("rtp") as (a, b):
        text = a.sdp()
        assert f"m=video {b.rx_port} RTP/AVP 26" in text
        assert "a=rtpmap:26 JPEG/90000" in text
        assert f"c=IN IP4 {LOCAL}" in text


def test_rtcp_from_another_ssrc_is_dropped() -> None:
    """A forged receiver report claiming heavy loss, from the peer's address but not its SSRC."""
    from pipeline.wire.rtcp import ReceiverReport, ReportBlock, serialize_rtcp

    with call("rtp") as (_a, b):
        wait_for(lambda: b.stats().to_dict()["rtt_ms"] is not None)
        forged = serialize_rtcp(
            [ReceiverReport(0xBAD, (ReportBlock(0x2222, 255, 100_000, 0, 0, 0, 0),))]
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _ in range(5):
                sock.sendto(forged, (LOCAL, b.rx_port + 1))
            wait_for(lambda: b.stats().to_dict()["drops"]["wrong_source"] >= 5)
        finally:
            sock.close()
        assert (b.stats().to_dict()["loss"]["remote_cumulative_lost"] or 0) < 100_000
