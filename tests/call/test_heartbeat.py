"""Heartbeat timing (pure): beats are due every interval; silence past the timeout expires."""

from __future__ import annotations

import pytest

from vcall.call.heartbeat import Heartbeat, HeartbeatConfig


def test_beats_and_expiry() -> None:
    hb = Heartbeat(100.0, HeartbeatConfig(interval=0.5, timeout=2.0))
    assert hb.send_due(100.0)  # first beat at once
    hb.on_sent(100.0)
    assert not hb.send_due(100.4) and hb.send_due(100.5)
    assert hb.next_deadline() == pytest.approx(100.5)
    assert not hb.expired(101.9) and hb.expired(102.0)
    hb.on_heard(101.5)
    hb.on_heard(90.0)  # an older timestamp never moves the clock back
    assert not hb.expired(103.4) and hb.expired(103.5)
    assert hb.silence(103.0) == pytest.approx(1.5)


@pytest.mark.parametrize(("interval", "timeout"), [(0, 1), (1, 1), (2, 1), (-1, 1)])
def test_bad_config(interval: float, timeout: float) -> None:
    with pytest.raises(ValueError):
        HeartbeatConfig(interval, timeout)


def test_silence_past_the_timeout_is_reconnecting_and_past_the_grace_is_gone() -> None:
    hb = Heartbeat(100.0, HeartbeatConfig(interval=0.5, timeout=2.0, grace=15.0))
    hb.on_sent(100.0)
    assert hb.expired(102.0) and not hb.gone(114.9) and hb.gone(115.0)
    # While reconnecting, the passed timeout deadline is skipped: no busy loop.
    hb.on_sent(103.0)
    assert hb.next_deadline(103.2) == pytest.approx(103.5)
    hb.on_sent(114.8)
    assert hb.next_deadline(114.9) == pytest.approx(115.0)
    hb.on_heard(110.0)  # heard again: the grace starts over
    assert not hb.expired(111.9) and not hb.gone(124.9) and hb.gone(125.0)
    with pytest.raises(ValueError):
        HeartbeatConfig(0.5, 2.0, 1.0)  # a grace shorter than the timeout
