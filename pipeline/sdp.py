"""SDP (RFC 4566) description of one RTP/JPEG (RFC 2435) video stream, for ffmpeg/GStreamer.

API::

    def build_sdp(dest_ip: str, port: int, *, payload_type: int = 26,
                  session_name: str = "vcall", origin_ip: str | None = None,
                  session_id: int = 0, ssrc: int | None = None, cname: str | None = None,
                  framerate: float | None = None) -> str

The text describes what a receiver at ``dest_ip:port`` gets: ``m=video PORT RTP/AVP 26``,
``c=IN IP4 dest_ip`` and ``a=rtpmap:26 JPEG/90000``; RTCP goes to port + 1 (the RTP/AVP
default). ``ffplay -protocol_whitelist file,udp,rtp -i stream.sdp`` opens it. Lines end in
CRLF as RFC 4566 says. ValueError on arguments that would make an invalid description.
"""

from __future__ import annotations

import ipaddress
import logging

logger = logging.getLogger(__name__)


def _clean(text: str) -> str:
    # SDP fields are single lines; a CR/LF in a name would inject extra lines.
    return "".join(c if c.isprintable() else "_" for c in text).strip() or "-"


def build_sdp(
    dest_ip: str,
    port: int,
    *,
    payload_type: int = 26,
    session_name: str = "vcall",
    origin_ip: str | None = None,
    session_id: int = 0,
    ssrc: int | None = None,
    cname: str | None = None,
    framerate: float | None = None,
) -> str:
    """The SDP text (CRLF line ends) for one RTP/JPEG stream sent to ``dest_ip:port``."""
    addr = ipaddress.ip_address(dest_ip)
    origin = ipaddress.ip_address(origin_ip) if origin_ip else addr
    if not 0 < port < 65535 or not 0 <= payload_type < 128:
        raise ValueError(f"bad port {port} or payload type {payload_type}")
    family = "IP4" if addr.version == 4 else "IP6"
    lines = [
        "v=0",
        f"o=- {session_id} 0 IN IP{origin.version} {origin}",
        f"s={_clean(session_name)}",
        f"c=IN {family} {addr}",
        "t=0 0",
        f"m=video {port} RTP/AVP {payload_type}",
        f"a=rtpmap:{payload_type} JPEG/90000",
        "a=recvonly",
    ]
    if framerate:
        lines.append(f"a=framerate:{framerate:g}")
    if ssrc is not None:
        if not 0 <= ssrc < 1 << 32:
            raise ValueError(f"bad SSRC {ssrc}")
        lines.append(f"a=ssrc:{ssrc} cname:{_clean(cname or 'vcall')}")
    return "\r\n".join(lines) + "\r\n"
