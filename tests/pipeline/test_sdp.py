"""SDP for one RTP/JPEG stream."""

from __future__ import annotations

import pytest

from pipeline.sdp import build_sdp


def test_minimal_sdp() -> None:
    text = build_sdp("127.0.0.1", 5004)
    lines = text.split("\r\n")
    assert lines[0] == "v=0"
    assert "m=video 5004 RTP/AVP 26" in lines
    assert "c=IN IP4 127.0.0.1" in lines
    assert "a=rtpmap:26 JPEG/90000" in lines
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")


def test_options_and_injection() -> None:
    text = build_sdp(
        "::1", 6000, session_name="evil\r\na=x", ssrc=0xDEADBEEF, cname="me", framerate=29.97
    )
    assert "c=IN IP6 ::1" in text
    assert "a=ssrc:3735928559 cname:me" in text
    assert "a=framerate:29.97" in text
    assert "s=evil__a=x" in text


@pytest.mark.parametrize("args", [("not-an-ip", 5004), ("127.0.0.1", 0), ("127.0.0.1", 70000)])
def test_bad_arguments(args: tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        build_sdp(*args)
