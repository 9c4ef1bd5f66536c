"""SDP for one RTP/JPEG stream."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.wire.sdp import SdpError, SdpVideo, build_sdp, parse_sdp

# Written by ffmpeg 5.1: ffmpeg ... -payload_type 96 -f rtp -sdp_file out.sdp rtp://127.0.0.1:5040
FFMPEG_SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "a=tool:libavformat LIBAVFORMAT_VERSION\r\nm=video 5040 RTP/AVP 96\r\nb=AS:200\r\n"
    "a=rtpmap:96 JPEG/90000\r\n"
)


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


def test_parse_own_and_ffmpeg_sdp() -> None:
    assert parse_sdp(build_sdp("127.0.0.1", 5004)) == SdpVideo("127.0.0.1", 5004, 26)
    assert parse_sdp(FFMPEG_SDP) == SdpVideo("127.0.0.1", 5040, 96)
    # Static payload type 26 without an rtpmap, LF line ends, media-level address.
    text = (
        "v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 0\n"
        "m=video 6000 RTP/AVP 26\nc=IN IP4 10.0.0.2/127\n"
    )
    assert parse_sdp(text) == SdpVideo("10.0.0.2", 6000, 26)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "v=0\nm=video 5004 RTP/AVP 96\n",  # dynamic type without rtpmap
        "v=0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n",
        "v=0\nm=video x RTP/AVP 26\n",
        "v=0\nm=video 5004 RTP/AVP x\na=rtpmap:x JPEG/90000\n",
        "v=0\nm=video ² RTP/AVP 26\n",
        "v=0\nm=video 5004 RTP/SAVP 26\n",
        "x" * 70000,
        "v=0\nm=video " + "1" * 5000 + " RTP/AVP 26\n",  # int() would refuse 4300+ digits
        "v=0\nm=video 5004 RTP/AVP " + "2" * 5000 + "\n",
    ],
)
def test_unusable_sdp(text: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(text)


@settings(deadline=None)  # a loaded 2-core box: no per-example deadline
@given(st.text(max_size=300))
def test_any_text_only_sdp_error(text: str) -> None:
    for candidate in (text, "m=video " + text, "m=video 5004 RTP/AVP " + text):
        with contextlib.suppress(SdpError):
            parse_sdp(candidate)


@settings(deadline=None)
@given(st.integers(1, 6000), st.sampled_from("0123456789"))
def test_numbers_of_any_length_only_sdp_error(digits: int, digit: str) -> None:
    number = digit * digits
    for candidate in (
        f"m=video {number} RTP/AVP 26",
        f"m=video 5004 RTP/AVP {number}\na=rtpmap:{number} JPEG/90000",
        f"m=video {number}/2 RTP/AVP {number}",
    ):
        with contextlib.suppress(SdpError):
            video = parse_sdp(candidate)
            assert 0 < video.port < 65536 and 0 <= video.payload_type < 128
