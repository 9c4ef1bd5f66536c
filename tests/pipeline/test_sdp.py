"""SDP for vcall's RTP streams: the video, the audio m-line, SRTP (a=crypto), the 0600 file."""

from __future__ import annotations

import base64
import contextlib
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.wire.sdp import (
    SdpAudioLine,
    SdpError,
    SdpVideo,
    build_sdp,
    crypto_attribute,
    parse_sdp,
    write_sdp,
)

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


# -- audio m-line and SRTP (issues 12 and 14) ---------------------------------------------------
KEY = bytes(range(30))


def test_audio_line_follows_rfc_7587() -> None:
    text = build_sdp("127.0.0.1", 5004, ssrc=7, audio=SdpAudioLine(5006, ssrc=9))
    lines = text.split("\r\n")
    audio = lines[lines.index("m=audio 5006 RTP/AVP 111") :]
    assert audio[:5] == [
        "m=audio 5006 RTP/AVP 111",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=recvonly",
        "a=ssrc:9 cname:vcall",
    ]
    assert lines.index("a=ssrc:7 cname:vcall") < lines.index("m=audio 5006 RTP/AVP 111")
    assert "a=crypto" not in text
    # The video stream is still what parse_sdp finds, whichever m-line comes first.
    assert parse_sdp(text) == SdpVideo("127.0.0.1", 5004, 26)
    audio_first = (
        "v=0\r\nc=IN IP4 10.0.0.1\r\n" + "\r\n".join(audio) + "\r\nm=video 5004 RTP/AVP 26\r\n"
    )
    assert parse_sdp(audio_first) == SdpVideo("10.0.0.1", 5004, 26)


def test_srtp_makes_every_m_line_savp_with_the_key() -> None:
    text = build_sdp("127.0.0.1", 5004, audio=SdpAudioLine(6000), srtp_key=KEY)
    inline = base64.b64encode(KEY).decode()
    assert "m=video 5004 RTP/SAVP 26" in text and "m=audio 6000 RTP/SAVP 111" in text
    assert text.count(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n") == 2
    assert "RTP/AVP" not in text
    video = parse_sdp(text)
    assert video == SdpVideo("127.0.0.1", 5004, 26, "JPEG", KEY)
    assert inline not in repr(video) and "protection=srtp" in repr(video)


INLINE = base64.b64encode(KEY).decode()


@pytest.mark.parametrize(
    ("crypto", "usable"),
    [
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}", True),
        (f"7 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20 UNENCRYPTED_SRTCP", True),
        (f"1 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}", False),  # another suite
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20|1:4", False),  # an MKI
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE};inline:{INLINE}", False),  # two keys
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE[:-4]}", False),  # 27 bytes
        ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", False),
        (f"x AES_CM_128_HMAC_SHA1_80 inline:{INLINE}", False),  # tag not a number
        (f"1 AES_CM_128_HMAC_SHA1_80 key:{INLINE}", False),
        ("1 AES_CM_128_HMAC_SHA1_80", False),
    ],
)
def test_parse_reads_only_keys_vcall_can_use(crypto: str, usable: bool) -> None:
    text = f"v=0\r\nc=IN IP4 127.0.0.1\r\nm=video 5004 RTP/SAVP 26\r\na=crypto:{crypto}\r\n"
    if usable:
        assert parse_sdp(text).srtp_key == KEY
    else:
        with pytest.raises(SdpError):
            parse_sdp(text)
    # An unusable encrypted stream is passed over for a plain one that follows.
    assert parse_sdp(text + "m=video 6000 RTP/AVP 26\r\n").port == (5004 if usable else 6000)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"audio": SdpAudioLine(5004)},  # the video port
        {"audio": SdpAudioLine(5005)},  # the video's RTCP port
        {"audio": SdpAudioLine(5003)},  # audio RTCP on the video port
        {"audio": SdpAudioLine(0)},
        {"audio": SdpAudioLine(6000, payload_type=128)},
        {"audio": SdpAudioLine(6000, ssrc=1 << 32)},
        {"srtp_key": KEY[:16]},
        {"srtp_key": KEY + b"x"},
    ],
)
def test_bad_audio_or_key(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_sdp("127.0.0.1", 5004, **kwargs)


def test_crypto_attribute() -> None:
    assert crypto_attribute(KEY, 3) == (
        "crypto:3 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY).decode()
    )
    with pytest.raises(ValueError):
        crypto_attribute(KEY, 0)


def test_write_sdp_is_private_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "call.sdp"
    target.write_text("old")
    target.chmod(0o644)
    text = build_sdp("127.0.0.1", 5004, srtp_key=KEY)
    write_sdp(target, text)
    assert target.read_bytes() == text.encode()  # CRLF kept
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["call.sdp"]  # no temporary left
    with pytest.raises(OSError):
        write_sdp(tmp_path / "missing" / "x.sdp", text)
    assert [p.name for p in tmp_path.iterdir()] == ["call.sdp"]


@settings(deadline=None)
@given(
    st.integers(1, 65534),
    st.integers(1, 65534),
    st.one_of(st.none(), st.binary(min_size=30, max_size=30)),
    st.one_of(st.none(), st.integers(0, (1 << 32) - 1)),
    st.text(max_size=40),
)
def test_built_sdp_round_trips_or_value_error(
    port: int, audio_port: int, key: bytes | None, ssrc: int | None, name: str
) -> None:
    try:
        text = build_sdp(
            "127.0.0.1",
            port,
            session_name=name,
            cname=name,
            ssrc=ssrc,
            audio=SdpAudioLine(audio_port, ssrc=ssrc),
            srtp_key=key,
        )
    except ValueError:
        assert abs(port - audio_port) < 2
        return
    lines = text.split("\r\n")
    assert lines[-1] == "" and all(line.isprintable() for line in lines)
    assert sum(line.startswith("m=") for line in lines) == 2
    assert parse_sdp(text) == SdpVideo("127.0.0.1", port, 26, "JPEG", key)
    if key is not None:
        assert text.count(base64.b64encode(key).decode()) == 2


@settings(deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_audio_and_crypto_lines_with_any_text_only_sdp_error(head: str, tail: str) -> None:
    own = build_sdp("127.0.0.1", 5004, audio=SdpAudioLine(5006), srtp_key=KEY)
    for candidate in (
        head + own + tail,
        own.replace("a=crypto:1", "a=crypto:" + head),
        "m=audio " + head + "\r\nm=video 5004 RTP/AVP 26\r\n" + tail,
        "m=video 5004 RTP/SAVP 26\r\na=crypto:" + head + "\r\n" + tail,
    ):
        with contextlib.suppress(SdpError):
            parse_sdp(candidate)
