"""SRTP and SRTCP (RFC 3711) at the datagram edge, through libsrtp 2 (``pylibsrtp``).

API::

    SUITE = "AES_CM_128_HMAC_SHA1_80"      # the one suite vcall offers (RFC 3711 4.1.1, 4.2.1)
    MASTER_KEY_LEN = 30                    # bytes: 16 of master key + 14 of master salt
    AUTH_TAG_LEN = 10                      # bytes appended to each SRTP packet (SRTCP: + 4 index)
    def new_master_key() -> bytes          # 30 bytes from os.urandom (a fresh one per call and
                                           # direction, RFC 3711 9.1: never reuse a key)
    class SrtpProtection:                  # the edge's ``Protection`` (pipeline/transport/edge.py)
        def __init__(self, *, tx_key: bytes | None, rx_key: bytes | None,
                     rtcp: bool = False, replay_window: int = REPLAY_WINDOW) -> None
        def protect(self, datagram: bytes) -> bytes     # LocalProtocolError: no tx key, too long,
                                                        # not RTP/RTCP
        def unprotect(self, datagram: bytes) -> bytes   # ReplayError (a replay, RFC 3711
                                                        # 3.3.2) or RemoteProtocolError (failed
                                                        # authentication, garbage, no rx key)
        keys: tuple[bytes | None, bytes | None, bool]
    def protection_for(current: Protection, *, tx_key: bytes | None, rx_key: bytes | None,
                       rtcp: bool = False) -> Protection   # IDENTITY when both keys are None

One object per socket: RTP sockets use SRTP (``rtcp=False``), the RTCP socket SRTCP
(``rtcp=True``). Each direction has its own master key (``tx_key`` is ours, ``rx_key`` the
peer's), exchanged inside the TLS call control (docs/protocol.md 4.1); a side that only sends
(the send stage) has no ``rx_key`` and one that only receives no ``tx_key``.

Suite: AES_CM_128_HMAC_SHA1_80 rather than AEAD_AES_128_GCM (RFC 7714) because it is the suite
every SRTP implementation has (mandatory in RFC 3711 and for WebRTC, RFC 8827 6.5) and the only
family ffmpeg's ``srtp`` protocol and GStreamer's ``srtpdec`` both decrypt, so a call can still be
watched with ffplay given the key; its 10-byte tag costs 6 bytes less per packet than GCM's 16,
and the per-packet cost (``python -m benchmarks.srtp``) is a few microseconds either way.

Replay protection (RFC 3711 3.3.2) is on: libsrtp keeps a window of ``REPLAY_WINDOW`` packet
indices per SSRC (its default of 128 is under a second of 720p video; a reordering network can
exceed it). RTX retransmissions carry their own SSRC and sequence numbers (RFC 4588) so they are
never replays. Outbound, the same index may be protected twice (``allow_repeat_tx``: a resend of
the identical packet leaks nothing with a counter-mode cipher as long as the payload is the
same, which holds for vcall's retransmission buffer).
"""

from __future__ import annotations

import os

import pylibsrtp

from pipeline.errors import LocalProtocolError, RemoteProtocolError
from pipeline.transport.edge import IDENTITY, Protection, ReplayError

SUITE = "AES_CM_128_HMAC_SHA1_80"
MASTER_KEY_LEN = 30
AUTH_TAG_LEN = 10
REPLAY_WINDOW = 1024  # packets per SSRC (libsrtp accepts 64..32768)
# pylibsrtp works in a 1500-byte buffer: room for the SRTCP trailer (index + tag).
MAX_PLAIN = 1500 - pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN
_MIN_RTP = 12  # RTP fixed header (RFC 3550 5.1)
_MIN_RTCP = 8  # RTCP header + sender SSRC (RFC 3550 6.4)
_REPLAY_ERRORS = frozenset(
    {
        pylibsrtp.ERRORS[9],  # replay check failed (bad index)
        pylibsrtp.ERRORS[10],  # replay check failed (index too old)
    }
)


def new_master_key() -> bytes:
    """A fresh master key + salt: ``MASTER_KEY_LEN`` random bytes (os.urandom)."""
    return os.urandom(MASTER_KEY_LEN)


def _check_key(name: str, key: bytes | None) -> None:
    if key is not None and len(key) != MASTER_KEY_LEN:
        raise LocalProtocolError(f"{name} must be {MASTER_KEY_LEN} bytes, got {len(key)}")


def _policy(key: bytes, ssrc_type: int, window: int) -> pylibsrtp.Policy:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=ssrc_type,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    policy.window_size = window
    policy.allow_repeat_tx = True
    return policy


class SrtpProtection:
    """SRTP (``rtcp=False``) or SRTCP (``rtcp=True``) for one UDP socket; see the module doc.

    ``tx_key`` / ``rx_key``: ``MASTER_KEY_LEN`` bytes or None (that direction is unused; using it
    raises). ``replay_window``: packets, 64..32768. LocalProtocolError on a wrong key length.
    """

    __slots__ = ("_rtcp", "_rx", "_tx", "keys")

    def __init__(
        self,
        *,
        tx_key: bytes | None,
        rx_key: bytes | None,
        rtcp: bool = False,
        replay_window: int = REPLAY_WINDOW,
    ) -> None:
        _check_key("tx_key", tx_key)
        _check_key("rx_key", rx_key)
        if not 64 <= replay_window <= 0x8000:
            raise LocalProtocolError(f"replay_window must be 64..32768, got {replay_window}")
        self._rtcp = rtcp
        self.keys = (tx_key, rx_key, rtcp)
        self._tx = (
            None
            if tx_key is None
            else pylibsrtp.Session(
                _policy(tx_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, replay_window)
            )
        )
        self._rx = (
            None
            if rx_key is None
            else pylibsrtp.Session(
                _policy(rx_key, pylibsrtp.Policy.SSRC_ANY_INBOUND, replay_window)
            )
        )

    def protect(self, datagram: bytes) -> bytes:
        """The SRTP/SRTCP packet for one RTP/RTCP packet (+10 bytes; SRTCP +14).

        LocalProtocolError: no tx key, a packet over ``MAX_PLAIN`` bytes or shorter than an
        RTP/RTCP header, or libsrtp refusing it (a bug of ours, not the peer's)."""
        if self._tx is None:
            raise LocalProtocolError("SrtpProtection.protect without a tx key")
        if len(datagram) > MAX_PLAIN or len(datagram) < (_MIN_RTCP if self._rtcp else _MIN_RTP):
            raise LocalProtocolError(f"cannot protect a {len(datagram)}-byte packet")
        try:
            if self._rtcp:
                return self._tx.protect_rtcp(datagram)
            return self._tx.protect(datagram)
        except (pylibsrtp.Error, ValueError) as exc:
            raise LocalProtocolError(f"srtp protect: {exc}") from None

    def unprotect(self, datagram: bytes) -> bytes:
        """The RTP/RTCP packet inside one SRTP/SRTCP packet, authenticated and decrypted.

        ReplayError (a RemoteProtocolError) for an index already seen or older than the
        replay window; RemoteProtocolError for anything else the peer's key did not
        authenticate (forged, altered, truncated, too long), or when there is no rx key."""
        if self._rx is None:
            raise RemoteProtocolError("srtp: a datagram on a socket that only sends")
        if len(datagram) > 1500 or len(datagram) < (_MIN_RTCP if self._rtcp else _MIN_RTP):
            raise RemoteProtocolError(f"srtp: {len(datagram)}-byte datagram")
        try:
            if self._rtcp:
                return self._rx.unprotect_rtcp(datagram)
            return self._rx.unprotect(datagram)
        except pylibsrtp.Error as exc:
            if str(exc) in _REPLAY_ERRORS:
                raise ReplayError(f"srtp: {exc}") from None
            raise RemoteProtocolError(f"srtp: {exc}") from None
        except ValueError as exc:
            raise RemoteProtocolError(f"srtp: {exc}") from None


def protection_for(
    current: Protection, *, tx_key: bytes | None, rx_key: bytes | None, rtcp: bool = False
) -> Protection:
    """The protection a socket should have for a call's keys: ``IDENTITY`` when both keys are
    None (a classic peer, a tool), ``current`` when it already uses these keys (a repeated
    ``Connect`` must not restart the rollover counter and replay window), else a new
    ``SrtpProtection``. LocalProtocolError on a wrong key length."""
    if tx_key is None and rx_key is None:
        return IDENTITY
    if isinstance(current, SrtpProtection) and current.keys == (tx_key, rx_key, rtcp):
        return current
    return SrtpProtection(tx_key=tx_key, rx_key=rx_key, rtcp=rtcp)
