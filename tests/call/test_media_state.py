"""Peer media state (docs/protocol.md 4.1, "Peer media state"): the ``features=`` token and
CALL_MEDIA as bytes, liberal parsing with counted discards, property tests over arbitrary
bytes, and two real call managers (and raw peers over real sockets) telling each other their
mute and pause; a peer that did not announce the feature never receives CALL_MEDIA."""

from __future__ import annotations

import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import LocalProtocolError
from tests.call.agents import register_raw
from tests.call.test_manager import Peer, _read_line, connect
from tests.fixtures.discovery import DiscoveryProcess
from vcall.call import session
from vcall.call.codec import (
    FEATURE_NAME_RE,
    MAX_FEATURES,
    AudioState,
    CallAccepted,
    Calling,
    Extension,
    MediaState,
    PeerProtocolError,
    VideoState,
    decode,
    encode,
    is_extension_only,
)
from vcall.call.events import (
    CallEnded,
    CallStarted,
    HoldChanged,
    IncomingCall,
    PeerMediaChanged,
)
from vcall.call.policy import terminated_for
from vcall.discovery.client import DiscoveryClient

pytestmark = pytest.mark.usefixtures("no_leaks")

ON, MUTED = AudioState.ON, AudioState.MUTED
VON, PAUSED = VideoState.ON, VideoState.PAUSED


# -- bytes ----------------------------------------------------------------------------------


def test_golden_bytes() -> None:
    assert encode(MediaState("alice", MUTED, VON), terminated=True) == (
        b"CALL_MEDIA alice audio=muted video=on\n"
    )
    assert encode(MediaState("bob", None, PAUSED)) == b"CALL_MEDIA bob video=paused"
    ext = Extension(0x1A2B3C4D, ("H264", "JPEG"), features=("media-state",))
    assert encode(Calling("alice", 40002, ext), terminated=True) == (
        b"CALLING alice 40002 V2435 1a2b3c4d codecs=H264,JPEG features=media-state\n"
    )
    assert decode(b"CALLING alice 40002 V2435 1a2b3c4d codecs=H264,JPEG features=media-state") == (
        Calling("alice", 40002, ext)
    )


@pytest.mark.parametrize(
    "msg",
    [MediaState("a", None, None), MediaState("", MUTED, VON), MediaState("a b", MUTED, VON)],
)
def test_what_vcall_must_not_send_is_a_local_error(msg: MediaState) -> None:
    with pytest.raises(LocalProtocolError):
        encode(msg)


def test_extension_only_and_never_for_a_classic_peer() -> None:
    msg = MediaState("a", MUTED, VON)
    assert is_extension_only(msg)
    with pytest.raises(ValueError, match="classic"):
        terminated_for(msg, peer_ext=False, negotiated=False)
    assert terminated_for(msg, peer_ext=True, negotiated=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"CALL_MEDIA bob audio=muted video=paused", MediaState("bob", MUTED, PAUSED)),
        (b"call_media bob audio=muted", None),  # the verb is case-sensitive, as every verb
        (b"CALL_MEDIA  bob  AUDIO=Muted\r\n", MediaState("bob", MUTED, None)),  # liberal case
        (b"CALL_MEDIA audio=on", MediaState("", ON, None)),  # no nick
        (b"CALL_MEDIA bob", MediaState("bob")),  # nothing said: nothing changes
        # unknown value, unknown key, a repeat, a token without '=': each counted
        (b"CALL_MEDIA bob audio=loud video=on", MediaState("bob", None, VON, 1)),
        (b"CALL_MEDIA bob colour=red audio=muted", MediaState("bob", MUTED, None, 1)),
        (b"CALL_MEDIA bob audio=muted audio=on", MediaState("bob", MUTED, None, 1)),
        (b"CALL_MEDIA bob audio=muted junk", MediaState("bob", MUTED, None, 1)),
        # fields past the cap are not read, only counted
        (b"CALL_MEDIA bob" + b" x=1" * 8 + b" audio=muted", MediaState("bob", None, None, 9)),
    ],
)
def test_liberal_parsing_counts_what_it_ignores(raw: bytes, expected: MediaState | None) -> None:
    if expected is None:
        with pytest.raises(PeerProtocolError):
            decode(raw)
    else:
        assert decode(raw) == expected


@pytest.mark.parametrize(
    ("tail", "features"),
    [
        (b"", None),
        (b" features=media-state", ("media-state",)),
        (b" FEATURES=Media-State,future-1,media-state", ("media-state", "future-1")),
        (b" features=", None),  # malformed: as if absent
        (b" features=a,,b", None),
        (b" features=a_b", None),
        (b" features=" + b",".join(b"f%d" % i for i in range(MAX_FEATURES + 1)), None),
        (b" features=x features=y", ("x",)),  # the first token only
    ],
)
def test_features_token_is_parsed_liberally(tail: bytes, features: tuple[str, ...] | None) -> None:
    msg = decode(b"CALLING a 5 V2435 00000001" + tail)
    assert isinstance(msg, Calling) and msg.ext is not None
    assert msg.ext.features == features


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_after_the_verb_give_a_media_state_or_a_peer_error(tail: bytes) -> None:
    try:
        msg = decode(b"CALL_MEDIA " + tail)
    except PeerProtocolError:
        return
    assert isinstance(msg, MediaState)
    assert msg.audio is None or isinstance(msg.audio, AudioState)
    assert msg.video is None or isinstance(msg.video, VideoState)
    assert msg.ignored >= 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_features_token_parses_to_valid_names_or_none(tail: bytes) -> None:
    try:
        msg = decode(b"CALL_ACCEPTED b 5 V2435 00000001 features=" + tail)
    except PeerProtocolError:
        return
    assert isinstance(msg, CallAccepted) and msg.ext is not None
    features = msg.ext.features
    if features is not None:
        assert 1 <= len(features) <= MAX_FEATURES
        assert all(FEATURE_NAME_RE.fullmatch(name) for name in features)


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        MediaState,
        st.just("alice"),
        st.none() | st.sampled_from(AudioState),
        st.none() | st.sampled_from(VideoState),
    ).filter(lambda m: m.audio is not None or m.video is not None),
    st.booleans(),
)
def test_round_trip(msg: MediaState, terminated: bool) -> None:
    assert decode(encode(msg, terminated=terminated)) == msg


# -- two real call managers -------------------------------------------------------------------


def peer_media(peer: Peer) -> list[tuple[bool, bool]]:
    return [(e.muted, e.paused) for e in peer.log if isinstance(e, PeerMediaChanged)]


def test_mute_and_pause_reach_the_peer_in_order_and_die_with_the_call(
    discovery_server: DiscoveryProcess,
) -> None:
    alice = Peer("alice", discovery_server.address)
    bob = Peer("bob", discovery_server.address)
    try:
        alice.manager.start()
        bob.manager.start()
        connect(alice, bob)
        alice.manager.mute(True)
        assert bob.wait(PeerMediaChanged) == PeerMediaChanged("alice", True, False)
        alice.manager.pause(True)
        alice.manager.mute(False)  # two changes back to back arrive in their order
        assert bob.wait(PeerMediaChanged) == PeerMediaChanged("alice", True, True)
        assert bob.wait(PeerMediaChanged) == PeerMediaChanged("alice", False, True)
        bob.manager.mute(True)  # the other way round too
        assert alice.wait(PeerMediaChanged) == PeerMediaChanged("bob", True, False)
        alice.manager.hold()  # a hold is CALL_HOLD, never a media state
        bob.wait(HoldChanged)
        alice.manager.hangup()
        bob.wait(CallEnded)
        assert peer_media(bob) == [(True, False), (True, True), (False, True)]
        # a new call starts with the peer neither muted nor paused, and says nothing of it
        connect(alice, bob)
        alice.manager.pause(True)
        assert bob.wait(PeerMediaChanged) == PeerMediaChanged("alice", False, True)
        alice.manager.hangup()
        bob.wait(CallEnded)
    finally:
        alice.manager.close()
        bob.manager.close()
    assert peer_media(alice) == [(True, False)]


def _raw_callee(discovery_server: DiscoveryProcess) -> tuple[socket.socket, Peer]:
    """A registered V2435 nick "old" whose port is a bare listening socket, and alice."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)
    register_raw(discovery_server.address, "old", srv.getsockname()[1], ["V0", "V2435"])
    alice = Peer("alice", discovery_server.address)
    alice.manager.start()
    return srv, alice


def test_a_peer_without_the_feature_never_gets_call_media(
    discovery_server: DiscoveryProcess,
) -> None:
    srv, alice = _raw_callee(discovery_server)
    try:
        alice.manager.call("old")
        conn, _ = srv.accept()
        conn.settimeout(5)
        with conn, conn.makefile("rb") as reader:
            assert b" features=media-state\n" in _read_line(reader)
            # an older vcall callee: its answer names no features
            conn.sendall(b"CALL_ACCEPTED old 40010 V2435 0000abcd codecs=H264\n")
            alice.wait(CallStarted)
            alice.manager.mute(True)
            alice.manager.pause(True)
            alice.manager.hangup()  # CALL_END is queued after any CALL_MEDIA would have been
            assert _read_line(reader) == b"CALL_END alice\n"
    finally:
        alice.manager.close()
        srv.close()


def test_a_peer_with_the_feature_gets_call_media_and_its_garbage_is_counted(
    discovery_server: DiscoveryProcess,
) -> None:
    before = dict(session.PEER_STATE_DISCARDS)
    srv, alice = _raw_callee(discovery_server)
    try:
        alice.manager.call("old")
        conn, _ = srv.accept()
        conn.settimeout(5)
        with conn, conn.makefile("rb") as reader:
            _read_line(reader)
            conn.sendall(b"CALL_ACCEPTED old 40010 V2435 0000abcd features=media-state,x-1\n")
            alice.wait(CallStarted)
            alice.manager.mute(True)
            assert _read_line(reader) == b"CALL_MEDIA alice audio=muted video=on\n"
            conn.sendall(b"CALL_MEDIA old audio=muted video=sideways colour=red\n")
            assert alice.wait(PeerMediaChanged) == PeerMediaChanged("old", True, False)
            conn.sendall(b"CALL_MEDIA old video=paused\n")  # audio unsaid: stays muted
            assert alice.wait(PeerMediaChanged) == PeerMediaChanged("old", True, True)
            assert alice.manager.state.value == "in_call"  # no garbage closed anything
            alice.manager.hangup()
            assert _read_line(reader) == b"CALL_END alice\n"
    finally:
        alice.manager.close()
        srv.close()
    assert session.PEER_STATE_DISCARDS["unknown_field"] == before["unknown_field"] + 2


def test_the_callee_agrees_only_to_features_both_have(discovery_server: DiscoveryProcess) -> None:
    bob = Peer("bob", discovery_server.address)
    try:
        bob.manager.start()
        with DiscoveryClient(*discovery_server.address) as client:
            client.register("old", "127.0.0.1", 40012, "pw-old", ["V0", "V2435"])
        for offer, reply in [
            (b" features=future-2,media-state", b" features=media-state"),
            (b" features=future-2", b""),
            (b"", b""),  # an older vcall caller gets the answer it knows
        ]:
            with (
                socket.create_connection(("127.0.0.1", bob.manager.registered_port), 5) as conn,
                conn.makefile("rb") as reader,
            ):
                conn.sendall(b"CALLING old 40012 V2435 0000abcd" + offer + b"\n")
                bob.wait(IncomingCall)
                bob.manager.accept()
                accepted = _read_line(reader)
                assert re.fullmatch(rb"CALL_ACCEPTED bob \d+ V2435 [0-9a-f]{8}" + reply + b"\n",
                                    accepted), accepted  # fmt: skip
                bob.wait(CallStarted)
                bob.manager.mute(True)
                bob.manager.hangup()
                line = _read_line(reader)
                if reply:
                    assert line == b"CALL_MEDIA bob audio=muted video=on\n"
                    line = _read_line(reader)
                assert line == b"CALL_END bob\n"
            bob.wait(CallEnded)
    finally:
        bob.manager.close()
