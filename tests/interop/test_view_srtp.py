"""``vcall view --sdp`` of an encrypted call (issue 14): the SDP's a=crypto key (RFC 4568)
authenticates and decrypts the real SRTP stream of a MediaSession, and packets the key does not
authenticate (a flipped bit) or already seen (a replay) are counted by name, never shown."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from pipeline.control import MediaMode
from pipeline.session import MediaSession, PeerEndpoint
from pipeline.transport.srtp import new_master_key
from pipeline.wire.sdp import write_sdp
from tests.interop.tools import free_port, running, wait_bound

pytestmark = pytest.mark.interop
LOCAL = "127.0.0.1"
FRAMES = 15


def test_vcall_view_decrypts_an_srtp_stream_with_the_sdp_key(tmp_path: Path) -> None:
    port = free_port()
    tap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the sender's packets pass here
    tap.bind((LOCAL, 0))
    tap.settimeout(0.2)
    tx_key = new_master_key()
    session = MediaSession(bind_ip=LOCAL, preset="low")
    stats_file = tmp_path / "stats.json"
    sdp = tmp_path / "call.sdp"
    try:
        session.open()
        # The session sends to the tap; the test forwards each datagram to the viewer, and
        # before that a forged copy (one bit flipped) and, later, a replay of the first one.
        session.connect(
            PeerEndpoint(LOCAL, tap.getsockname()[1], MediaMode.RTP, local_ssrc=0x5EC,
                         tx_key=tx_key, rx_key=new_master_key())
        )  # fmt: skip
        text = session.sdp().replace(f"m=video {tap.getsockname()[1]} ", f"m=video {port} ")
        write_sdp(sdp, text)
        view = [
            sys.executable, "-m", "vcall", "view", "--sdp", str(sdp), "--bind", LOCAL,
            "--frames", str(FRAMES), "--seconds", "30", "--headless",
            "--stats-json", str(stats_file),
        ]  # fmt: skip
        with running(view) as viewer:
            wait_bound(port, viewer)
            out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            first: bytes | None = None
            forged = replayed = 0
            deadline = time.monotonic() + 25
            while viewer.poll() is None and time.monotonic() < deadline:
                try:
                    data = tap.recv(65536)
                except TimeoutError:
                    continue
                if forged < 5:
                    bad = bytearray(data)
                    bad[-1] ^= 0x01  # the authentication tag no longer matches
                    out.sendto(bytes(bad), (LOCAL, port))
                    forged += 1
                out.sendto(data, (LOCAL, port))
                if first is None:
                    first = data
                elif replayed < 3:
                    out.sendto(first, (LOCAL, port))
                    replayed += 1
            viewer.wait(10)
            out.close()
            assert viewer.stdout is not None
            printed = viewer.stdout.read().decode()
        assert viewer.returncode == 0, printed
    finally:
        session.close()
        tap.close()
    stats = json.loads(stats_file.read_text())
    assert stats["frames"] >= FRAMES and stats["decode_errors"] == 0
    assert stats["discards"]["SRTP authentication failed"] == forged == 5
    assert stats["discards"]["SRTP replayed"] == replayed == 3
    assert "SRTP authentication failed 5" in printed.splitlines()[-1]
