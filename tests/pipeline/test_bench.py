"""The pipeline benchmarks run from the real command line and write sane JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("no_leaks")

REPO = Path(__file__).resolve().parents[2]


def vcall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vcall", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_bench_e2e_runs_and_writes_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    proc = vcall("bench", "e2e", "--seconds", "2", "--warmup", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "capture_to_display" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "e2e"
    assert doc["config"]["resolution"] == [1280, 720]
    assert doc["dead_stages"] == []
    for direction in doc["directions"].values():
        c2d = direction["latency_ms"]["capture_to_display"]
        assert c2d["count"] > 0
        assert 0 < c2d["p50"] <= c2d["p99"] < 5000
        assert 0 < direction["fps_shown"] < 100
        assert direction["bitrate_bps"] > 0
        assert direction["latency_ms"]["encode"]["count"] > 0
    assert 0 < doc["cpu_percent"]["total"] < 100 * doc["host"]["cpus"]
    assert set(doc["targets_met"]) == set(doc["targets"])


def test_bench_handoff_runs_and_writes_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "handoff.json"
    proc = vcall("bench", "handoff", "--frames", "30", "--fps", "60", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    methods = {r["method"]: r for r in doc["results"]}
    assert set(methods) == {"shm_ring", "shm_ring_copy_in", "mp_queue_pickle"}
    for r in methods.values():
        assert r["frames"] > 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] < 5000


def test_bench_codec_compares_the_codecs_with_sane_numbers(tmp_path: Path) -> None:
    out = tmp_path / "codec.json"
    proc = vcall("bench", "codec", "--presets", "low", "--frames", "10", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PSNR-Y" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "codec"
    assert doc["config"]["presets"] == ["low"]
    assert len(doc["host"]["loadavg_before"]) == 3
    rows = {(r["source"], r["codec"]): r for r in doc["results"]}
    assert set(rows) == {(s, c) for s in ("pattern", "camera") for c in ("JPEG", "H264")}
    for r in rows.values():
        assert r["frames"] == 10
        assert r["kbps"] > 0
        assert r["psnr_y_db"]["mean"] > 25
        for op in ("encode_ms", "decode_ms"):
            assert 0 < r[op]["p50"] <= r[op]["p99"] < 5000
    # On camera-like noise JPEG at q50 costs several times what H.264 needs at its target.
    assert rows[("camera", "H264")]["kbps"] < rows[("camera", "JPEG")]["kbps"]
