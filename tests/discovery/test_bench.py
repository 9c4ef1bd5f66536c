"""The discovery benchmark runs end to end with tiny numbers and reports sane figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Every server process and load generator a test starts is gone when it ends.
pytestmark = pytest.mark.usefixtures("no_leaks")


def test_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.discovery", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "closed-loop" in done.stdout and "p99 ms" in done.stdout
    report = json.loads(out.read_text())
    results = {r["scenario"]: r for r in report["results"]}
    assert set(results) == {"closed-loop", "open-loop", "open-loop+slow"}
    for r in results.values():
        assert r["errors"] == 0, r
        assert r["achieved_rps"] > 0
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert math.isfinite(r["max_ms"])
        assert r["server_cpu_pct"] is not None and r["server_cpu_pct"] >= 0
        assert r["server_lag_max_ms"] is not None and r["server_lag_max_ms"] >= 0
    # The open loop offers 200 QUERY/s: what it achieves must be near that (a loaded box
    # may delay some replies past the end of the short window).
    assert 100 <= results["open-loop"]["achieved_rps"] <= 300
    assert results["open-loop+slow"]["slow"] == 20
    assert results["closed-loop"]["gen_stall_max_ms"] is None  # no schedule in a closed loop
    assert results["open-loop"]["gen_stall_max_ms"] >= 0


def test_benchmark_quick_run_on_a_shared_redis(tmp_path: Path, redis_server: Any) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.discovery", "--quick", "--json", str(out),
         "--store", redis_server.url, "--instances", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "propagation between instances" in done.stdout
    report = json.loads(out.read_text())
    results = {r["scenario"]: r for r in report["results"]}
    for name in ("query x1", "register x1", "query x2", "register x2"):
        assert results[name]["errors"] == 0, results[name]
        assert results[name]["achieved_rps"] > 0
    prop = report["propagation"]
    assert prop["samples"] == 20
    assert 0 <= prop["p50_ms"] <= prop["p99_ms"] <= prop["max_ms"]
