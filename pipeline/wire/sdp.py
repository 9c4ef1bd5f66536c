"""SDP (RFC 4566) description of the RTP streams vcall sends, for ffmpeg/GStreamer.

API::

    def build_sdp(dest_ip: str, port: int, *, payload_type: int = 26,
                  rtpmap: str = "JPEG/90000", fmtp: str | None = None,
                  session_name: str = "vcall", origin_ip: str | None = None,
                  session_id: int = 0, ssrc: int | None = None, cname: str | None = None,
                  framerate: float | None = None, audio: SdpAudioLine | None = None,
                  srtp_key: bytes | None = None) -> str
    @dataclass(frozen=True, slots=True)
    class SdpAudioLine: port; payload_type = 111; rtpmap = "opus/48000/2";
                        fmtp = "minptime=10;useinbandfec=1"; ssrc: int | None = None
    def crypto_attribute(key: bytes, tag: int = 1) -> str   # "crypto:1 AES_CM_... inline:..."
    def write_sdp(path: str | os.PathLike[str], text: str) -> None   # mode 0600, atomic
    class SdpError(RemoteProtocolError)        # a description we cannot use (from a file or a peer)
    @dataclass(frozen=True, slots=True)
    class SdpVideo: address: str; port: int; payload_type: int; encoding: str;
                    srtp_key: bytes | None      # RTP/SAVP: the a=crypto key (repr hides it)
    def parse_sdp(text: str, encodings=("JPEG",)) -> SdpVideo   # the first RTP/AVP (or RTP/SAVP
                                            # with a usable a=crypto) video stream whose rtpmap
                                            # names one of ``encodings`` at 90 kHz

The text describes what a receiver at ``dest_ip`` gets: ``m=video PORT RTP/AVP PT``,
``c=IN IP4 dest_ip``, ``a=rtpmap:PT <rtpmap>`` (the codec's ``CodecInfo.rtpmap``, e.g.
``JPEG/90000``) and ``a=fmtp:PT <fmtp>`` when the codec has format parameters; RTCP goes to
port + 1 (the RTP/AVP default). ``ffplay -protocol_whitelist file,udp,rtp -i stream.sdp`` opens
it. Lines end in CRLF as RFC 4566 says. ValueError on arguments that would make an invalid
description.

``audio`` adds an Opus m-line (RFC 7587 7: ``m=audio PORT RTP/AVP 111``, ``a=rtpmap:111
opus/48000/2``, ``a=fmtp:111 minptime=10;useinbandfec=1``). Its port must differ from the video
port and from both RTCP ports (ValueError): ffmpeg 5.1's SDP reader (libavformat's sdp demuxer)
binds one UDP socket per m-line, so two m-lines on one port fail with "bind failed: Address
already in use" and neither stream plays (measured, docs/interop.md). A call between vcall peers
carries both streams on one port, told apart by payload type, which only a hand-built GStreamer
pipeline (``rtpptdemux``) takes apart.

``srtp_key`` (the 30-byte master key + salt the streams are protected with,
AES_CM_128_HMAC_SHA1_80, RFC 3711) turns every m-line into ``RTP/SAVP`` with ``a=crypto:1
AES_CM_128_HMAC_SHA1_80 inline:<base64 key||salt>`` (RFC 4568 6.1, 9.2); libavformat decrypts
such a description. The text then holds the call's key: ``write_sdp`` writes it readable by its
owner only (0600).

``parse_sdp`` reads what ffmpeg (``-sdp_file``), GStreamer or vcall write, leniently (LF or CRLF,
unknown lines ignored, media-level ``c=`` over session-level): the first ``m=video`` stream over
RTP/AVP whose payload type is 26 or has ``a=rtpmap:<pt> JPEG/90000``; audio m-lines are skipped.
An RTP/SAVP stream counts only with an ``a=crypto`` line vcall's SRTP can use (the suite above,
one inline key of 30 bytes, no MKI): its key is returned in ``srtp_key`` for the reader to
decrypt with. It raises nothing but SdpError on any text.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import os
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field

from pipeline.errors import RemoteProtocolError

logger = logging.getLogger(__name__)

SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"  # RFC 4568 6.2.1: the one suite vcall protects with
SRTP_KEY_LEN = 30  # bytes: 16 of master key + 14 of master salt (RFC 4568 6.2.1)
OPUS_PT = 111  # vcall's dynamic payload type for Opus (RFC 7587)


def _clean(text: str) -> str:
    # SDP fields are single lines; a CR/LF in a name would inject extra lines.
    return "".join(c if c.isprintable() else "_" for c in text).strip() or "-"


@dataclass(frozen=True, slots=True)
class SdpAudioLine:
    """The audio m-line of a description: Opus (RFC 7587) sent to ``port`` of the same address.

    ``ssrc`` (0..2^32-1) adds ``a=ssrc:<ssrc> cname:...`` (RFC 5576), e.g. a vcall peer's video
    SSRC + 2 (``pipeline.control.audio_ssrc_of``)."""

    port: int
    payload_type: int = OPUS_PT
    rtpmap: str = "opus/48000/2"  # RFC 7587 7: always 48000 Hz and 2 channels
    fmtp: str | None = "minptime=10;useinbandfec=1"
    ssrc: int | None = None


def crypto_attribute(key: bytes, tag: int = 1) -> str:
    """The value of an SDES ``a=crypto`` attribute (RFC 4568 9.1) for one master key + salt:
    ``crypto:<tag> AES_CM_128_HMAC_SHA1_80 inline:<base64 of the 30 bytes>`` (the key-salt of
    RFC 4568 6.1, base64 of RFC 4648 4). ValueError unless ``key`` is 30 bytes and ``tag`` in
    1..999999999 (RFC 4568 9.1: at most 9 digits)."""
    if len(key) != SRTP_KEY_LEN:
        raise ValueError(f"an SRTP master key + salt is {SRTP_KEY_LEN} bytes, not {len(key)}")
    if not 0 < tag < 10**9:
        raise ValueError(f"bad crypto tag {tag}")
    return f"crypto:{tag} {SRTP_SUITE} inline:{base64.b64encode(key).decode('ascii')}"


def _ssrc_line(ssrc: int, cname: str | None) -> str:
    if not 0 <= ssrc < 1 << 32:
        raise ValueError(f"bad SSRC {ssrc}")
    return f"a=ssrc:{ssrc} cname:{_clean(cname or 'vcall')}"


def _media(
    kind: str, port: int, payload_type: int, rtpmap: str, *, fmtp: str | None, crypto: str | None
) -> list[str]:
    if not 0 < port < 65535 or not 0 <= payload_type < 128:
        raise ValueError(f"bad port {port} or payload type {payload_type}")
    profile = "RTP/AVP" if crypto is None else "RTP/SAVP"
    lines = [
        f"m={kind} {port} {profile} {payload_type}",
        f"a=rtpmap:{payload_type} {_clean(rtpmap)}",
    ]
    if fmtp:
        lines.append(f"a=fmtp:{payload_type} {_clean(fmtp)}")
    if crypto is not None:
        lines.append(f"a={crypto}")
    lines.append("a=recvonly")
    return lines


def build_sdp(
    dest_ip: str,
    port: int,
    *,
    payload_type: int = 26,
    rtpmap: str = "JPEG/90000",
    fmtp: str | None = None,
    session_name: str = "vcall",
    origin_ip: str | None = None,
    session_id: int = 0,
    ssrc: int | None = None,
    cname: str | None = None,
    framerate: float | None = None,
    audio: SdpAudioLine | None = None,
    srtp_key: bytes | None = None,
) -> str:
    """The SDP text (CRLF line ends) for the RTP video stream sent to ``dest_ip:port`` and, with
    ``audio``, the Opus stream sent to ``dest_ip:audio.port``; with ``srtp_key`` both are
    RTP/SAVP with an ``a=crypto`` line (RFC 4568). ValueError on a bad address, port, payload
    type, SSRC or key, or an audio port that meets the video port or an RTCP port."""
    addr = ipaddress.ip_address(dest_ip)
    origin = ipaddress.ip_address(origin_ip) if origin_ip else addr
    crypto = crypto_attribute(srtp_key) if srtp_key is not None else None
    family = "IP4" if addr.version == 4 else "IP6"
    lines = [
        "v=0",
        f"o=- {session_id} 0 IN IP{origin.version} {origin}",
        f"s={_clean(session_name)}",
        f"c=IN {family} {addr}",
        "t=0 0",
        *_media("video", port, payload_type, rtpmap, fmtp=fmtp, crypto=crypto),
    ]
    if framerate:
        lines.append(f"a=framerate:{framerate:g}")
    if ssrc is not None:
        lines.append(_ssrc_line(ssrc, cname))
    if audio is not None:
        if abs(audio.port - port) < 2:  # RTP and RTCP (port + 1) of the two must not meet
            raise ValueError(f"audio port {audio.port} meets the video ports {port}/{port + 1}")
        lines += _media(
            "audio", audio.port, audio.payload_type, audio.rtpmap, fmtp=audio.fmtp, crypto=crypto
        )
        if audio.ssrc is not None:
            lines.append(_ssrc_line(audio.ssrc, cname))
    return "\r\n".join(lines) + "\r\n"


def write_sdp(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` as is (UTF-8, CRLF kept), readable and writable by its owner
    only (mode 0600: an SRTP description holds the call's key), atomically: a temporary file
    in the same directory (created 0600 by ``tempfile.mkstemp``), then ``os.replace``. OSError
    as the file system raises it; nothing is left behind on failure."""
    target = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".sdp-", dir=os.path.dirname(os.path.abspath(target)))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


MAX_SDP = 64 * 1024


class SdpError(RemoteProtocolError):
    """An SDP text without a usable RTP/JPEG video stream."""


@dataclass(frozen=True, slots=True)
class SdpVideo:
    address: str  # where the stream is sent (the c= line), "" if none was given
    port: int
    payload_type: int
    encoding: str = "JPEG"  # the rtpmap encoding name, upper case (JPEG, H264)
    srtp_key: bytes | None = None  # RTP/SAVP: the a=crypto master key + salt (30 bytes)

    def __repr__(self) -> str:  # never log the key
        key = "srtp" if self.srtp_key is not None else "none"
        return (
            f"SdpVideo(address={self.address!r}, port={self.port}, "
            f"payload_type={self.payload_type}, encoding={self.encoding!r}, protection={key})"
        )


def _small_number(text: str, digits: int) -> int | None:
    """A decimal of at most ``digits`` ASCII digits, else None (int() of a 5000-digit string
    raises a plain ValueError, not SdpError)."""
    if len(text) > digits or not (text.isascii() and text.isdecimal()):
        return None
    return int(text)


def _payload(
    formats: list[str], rtpmaps: dict[str, str], encodings: Collection[str]
) -> tuple[int, str] | None:
    for fmt in formats:
        if _small_number(fmt, 3) is None:
            continue
        encoding = rtpmaps.get(fmt, "").upper()
        name, _, clock = encoding.partition("/")
        if name in encodings and clock.startswith("90000"):
            return int(fmt), name
        if fmt == "26" and not encoding and "JPEG" in encodings:  # static, RFC 3551
            return 26, "JPEG"
    return None


def _srtp_key(value: str) -> bytes | None:
    """The master key + salt of an ``a=crypto`` value (after ``crypto:``) that vcall can use:
    suite AES_CM_128_HMAC_SHA1_80, one ``inline:`` key of 30 bytes in base64, an optional
    lifetime, no MKI (RFC 4568 9.1, 6.1); else None."""
    fields = value.split()
    if len(fields) < 3 or _small_number(fields[0], 9) is None or fields[1] != SRTP_SUITE:
        return None
    if not fields[2].startswith("inline:") or ";" in fields[2]:  # one key only
        return None
    parts = fields[2][len("inline:") :].split("|")
    if len(parts) > 2:  # an MKI (RFC 4568 6.1): vcall's SRTP does not use one
        return None
    try:
        key = base64.b64decode(parts[0], validate=True)
    except ValueError:  # binascii.Error: not base64
        return None
    return key if len(key) == SRTP_KEY_LEN else None


@dataclass(slots=True)
class _Media:
    fields: list[str]  # of the m= line
    address: str = ""  # of a media-level c= line
    rtpmaps: dict[str, str] = field(default_factory=dict)
    keys: list[bytes] = field(default_factory=list)  # usable a=crypto keys, in order


def parse_sdp(text: str, encodings: Collection[str] = ("JPEG",)) -> SdpVideo:
    """The first video stream over RTP/AVP, or over RTP/SAVP with a usable ``a=crypto`` key,
    whose rtpmap names one of ``encodings`` at 90 kHz (or static payload type 26 for JPEG).
    SdpError otherwise."""
    if len(text) > MAX_SDP:
        raise SdpError("SDP text too long")
    session_addr = ""
    media: list[_Media] = []
    for raw in text.splitlines():
        line = raw.strip()
        kind, sep, value = line.partition("=")
        if not sep or len(kind) != 1:
            continue
        if kind == "m":
            media.append(_Media(value.split()))
        elif kind == "c":
            parts = value.split()
            addr = parts[2].split("/")[0] if len(parts) >= 3 else ""
            if media:
                media[-1].address = addr
            else:
                session_addr = addr
        elif kind == "a" and value.startswith("rtpmap:") and media:
            fmt, _, encoding = value[len("rtpmap:") :].partition(" ")
            media[-1].rtpmaps[fmt.strip()] = encoding.strip()
        elif kind == "a" and value.startswith("crypto:") and media:
            key = _srtp_key(value[len("crypto:") :])
            if key is not None:
                media[-1].keys.append(key)
    for m in media:
        fields = m.fields
        if len(fields) < 4 or fields[0] != "video":
            continue
        profile = fields[2].upper()
        if profile != "RTP/AVP" and not (profile == "RTP/SAVP" and m.keys):
            continue
        found = _payload(fields[3:], m.rtpmaps, {e.upper() for e in encodings})
        if found is None or not 0 <= found[0] < 128:
            continue
        pt, name = found
        port = _small_number(fields[1].split("/")[0], 5)
        if port is None or not 0 < port < 65536:
            raise SdpError(f"bad port in m=video line: {fields[1][:20]!r}")
        key = m.keys[0] if profile == "RTP/SAVP" else None
        return SdpVideo(m.address or session_addr, port, pt, name, key)
    raise SdpError(
        f"no RTP/AVP video stream (or RTP/SAVP with an {SRTP_SUITE} key) with "
        f"{'/'.join(encodings)} at 90 kHz in the SDP"
    )
