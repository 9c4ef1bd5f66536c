"""The one rule for what a call sends (vcall/call/media.py ``sending``): video and audio flow in
a call neither side holds; the pause stops only the video, the mute only the audio."""

from __future__ import annotations

import itertools

from vcall.call.media import Sending, UserChoices, sending
from vcall.call.state import CallState


def test_pause_and_mute_are_independent_and_a_hold_stops_both() -> None:
    flowing = [s for s in CallState if sending(s, UserChoices()).video]
    assert flowing, "some state carries media"
    for state in flowing:
        for paused, muted in itertools.product((False, True), repeat=2):
            now = sending(state, UserChoices(paused=paused, muted=muted))
            assert now == Sending(video=not paused, audio=not muted)
    for state in set(CallState) - set(flowing):  # held, ringing, idle...
        for paused, muted in itertools.product((False, True), repeat=2):
            assert sending(state, UserChoices(paused=paused, muted=muted)) == Sending(False, False)
