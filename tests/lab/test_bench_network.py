"""`vcall bench network` end to end: the real CLI runs a real call through the lab and reports
sane figures for both directions (marker ``lab``; skipped, saying why, without root/iproute2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab


def _bench(tmp_path: Path, profile: str, seconds: int) -> dict[str, Any]:
    out = tmp_path / f"{profile}.json"
    argv = [
        sys.executable, "-m", "vcall", "bench", "network", "--profile", profile,
        "--preset", "low", "--codec", "H264", "--seconds", str(seconds), "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    assert "a_to_b" in done.stdout and "survived" in done.stdout, done.stdout
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["config"]["profile"] == profile and result["problems"] == []
    assert set(result["directions"]) == {"a_to_b", "b_to_a"}
    return result


def test_clean_call_shows_smooth_video_both_ways(lab_machine: None, tmp_path: Path) -> None:
    result = _bench(tmp_path, "clean", 5)
    for name, d in result["directions"].items():
        assert d["survived"], (name, d["end_reason"])
        assert d["fps_shown"] > 5, (name, d)
        assert d["freeze_count"] <= 2, (name, d)
        assert d["c2d_p50_ms"] is not None and 0 < d["c2d_p50_ms"] < 500, (name, d)
        assert len(d["samples"]) >= 3, (name, d["samples"])
        assert d["samples"][-1]["frames_shown"] > d["samples"][0]["frames_shown"]
    counts = result["impairer"]
    assert counts["a_to_b"]["released"] > 50 and counts["b_to_a"]["released"] > 50, counts


def test_a_call_with_one_percent_loss_survives(lab_machine: None, tmp_path: Path) -> None:
    result = _bench(tmp_path, "loss1_20ms", 4)
    for name, d in result["directions"].items():
        assert d["survived"], (name, d["end_reason"])
        assert d["frames_shown"] > 10, (name, d)
    assert result["impairer"]["a_to_b"]["lost"] + result["impairer"]["b_to_a"]["lost"] > 0
