"""Voice in a call between two real `vcall agent` processes (issue 12): a real discovery
server, call control over TCP, the media pipeline with its audio stage; the audio rides on the
video's UDP port. No sound card here: tone sources and WAV sinks (the PortAudio path itself is
tested against a real PulseAudio in tests/audio)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.audio_call import dominant_hz
from pipeline.audio.sources import read_wav
from tests.call.agents import AgentFactory

MEDIA = ("--preset", "low", "--source", "pattern")


def _stats(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_two_agents_hear_each_other(agents: AgentFactory, tmp_path: Path) -> None:
    bob_json, alice_json = tmp_path / "bob.json", tmp_path / "alice.json"
    bob_wav, alice_wav = tmp_path / "bob_hears.wav", tmp_path / "alice_hears.wav"
    bob = agents(
        "bob", *MEDIA, "--auto-answer", "--once", "--stats-json", str(bob_json),
        "--audio-in", "tone:660", "--audio-out", f"wav:{bob_wav}", "--no-echo-cancel",
    )  # fmt: skip
    alice = agents(
        "alice", *MEDIA, "--call", "bob", "--seconds", "3", "--stats-json", str(alice_json),
        "--audio-in", "tone:880", "--audio-out", f"wav:{alice_wav}",
    )  # fmt: skip
    alice.wait("started", timeout=20)
    assert alice.wait("ended", timeout=30)["reason"] == "hangup"
    assert bob.wait("ended", timeout=30)["reason"] == "peer_hangup"
    assert alice.exit_code() == 0 and bob.exit_code() == 0
    for path, wav, heard_hz in ((bob_json, bob_wav, 880), (alice_json, alice_wav, 660)):
        stats = _stats(path)
        audio = stats["audio"]
        assert audio["active"] is True and audio["error"] == "", audio
        assert audio["packets_received"] > 50 and audio["packets_sent"] > 50, audio
        assert stats["stages"]["receive"]["counters"]["audio_packets"] > 50
        pcm = read_wav(str(wav))
        assert abs(dominant_hz(pcm[-48000:]) - heard_hz) < 10
    # Voice is encrypted like the video (SRTP with the call's keys, issue 14): nothing failed
    # authentication at either edge.
    for path in (bob_json, alice_json):
        stats = _stats(path)
        assert stats["protection"] == "srtp+tls, verified"
        assert stats["stages"]["receive"]["edge"]["unprotect_failed"] == 0
    # alice asked for echo cancellation, bob did not
    assert _stats(alice_json)["audio"]["processing"] != "none"
    assert _stats(bob_json)["audio"]["processing"] == "none"


def test_without_audio_flags_a_call_is_video_only(agents: AgentFactory, tmp_path: Path) -> None:
    bob_json = tmp_path / "bob.json"
    bob = agents("bob", *MEDIA, "--auto-answer", "--once", "--stats-json", str(bob_json))
    alice = agents("alice", *MEDIA, "--call", "bob", "--seconds", "1.5")
    alice.wait("started", timeout=20)
    assert bob.wait("ended", timeout=30)["reason"] == "peer_hangup"
    assert bob.exit_code() == 0
    stats = _stats(bob_json)
    assert stats["audio"]["active"] is False and "audio" not in stats["stages"]
