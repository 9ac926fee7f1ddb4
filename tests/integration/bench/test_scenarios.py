"""The benchmark scenarios end to end on loopback, with tiny workloads.

Only behaviour is asserted (counts, success, accounting, file output), never speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from benchmarks.faults import measure_faults
from benchmarks.instructions import count_instructions
from benchmarks.instructions_wire import count_wire_instructions
from benchmarks.observability import VARIANTS, measure_observability
from benchmarks.scale import measure_scale
from benchmarks.streaming import measure_streaming
from benchmarks.upstream import upstreams_process

ROOT = Path(__file__).resolve().parents[3]


async def test_upstreams_process_counts_requests_and_fails_on_request() -> None:
    with upstreams_process([{}, {"fail_status": 503}]) as group:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as s:
            for url, expected in zip(group.urls, (200, 503), strict=True):
                async with s.post(f"{url}/chat/completions", json=body) as resp:
                    assert resp.status == expected
        assert group.request_counts() == [1, 1]
        group.reset()
        assert group.request_counts() == [0, 0]


def test_faults_scenario_counts_attempts_at_the_upstreams() -> None:
    r = measure_faults(requests=40, deployments=2, failing_pct=(0, 50, 100), concurrency=2)
    none, half, every = r.rows
    assert (none.success_rate, none.attempts_per_request) == (1.0, 1.0)
    # One of two failing: a retry always reaches the healthy one.
    assert half.success_rate == 1.0
    assert 1.0 <= half.attempts_per_request <= 2.0
    assert every.success_rate == 0.0
    # Never more than max_attempts (3) per request; cooldowns make it far fewer.
    assert 0.0 < every.attempts_per_request <= 3.0


def test_streaming_scenario_sees_every_frame() -> None:
    r = measure_streaming(streams=3, rounds=1, chunks=8)
    # role frame + 8 content frames + finish frame + usage frame
    assert r.chunks == 11
    assert r.raw_ttft_us > 0
    assert r.router_ttft_us > 0


def test_observability_scenario_reports_both_denominators() -> None:
    r = measure_observability(requests=40, rounds=2, wire_requests=64, wire_rounds=1)
    assert set(r.us_per_request) == set(VARIANTS)
    # `tracing` is measured where the otel extra is installed (the dev environment).
    assert set(r.added_us) == {"metrics", "hook", "both", "fail_hook", "tracing"}
    # Tiny workloads: only the arithmetic is checked, never the figures.
    if r.wire_overhead_us > 0:
        assert r.wire_cost_both == r.added_us["both"] / r.wire_overhead_us
    else:
        assert r.wire_cost_both is None
    assert (r.wire_requests, r.wire_rounds) == (64, 1)


def test_scale_scenario_reports_pools_in_flight_and_memory() -> None:
    r = measure_scale(sizes=(1, 10), seconds=0.01, in_flight=(1, 50), long_run=100)
    assert [p.deployments for p in r.pools] == [1, 10]
    assert [f.in_flight for f in r.in_flight] == [1, 50]
    assert all(f.bytes_per_request > 0 for f in r.in_flight)
    assert [m.requests for m in r.memory] == list(range(10, 101, 10))
    assert r.long_run_requests == 100


def test_interlock_bench_writes_valid_json_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    plots = tmp_path / "img"
    proc = subprocess.run(
        [sys.executable, "-m", "interlock", "bench", "--quick", "--only", "faults",
         "--json", str(out), "--plot", str(plots)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "faults" in proc.stdout
    assert "[1/1 faults]" in proc.stderr  # progress
    doc = json.loads(out.read_text())
    entry = doc["scenarios"]["faults"]
    assert "error" not in entry
    assert [row["failing_pct"] for row in entry["result"]["rows"]] == [0, 10, 50, 100]
    assert doc["environment"]["quick"] is True
    assert (plots / "faults.png").stat().st_size > 0


def test_interlock_bench_rejects_an_unknown_scenario() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "interlock", "bench", "--only", "nope"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "unknown scenario(s) nope" in proc.stderr


def test_overhead_module_still_runs_on_its_own() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.overhead", "--requests", "20", "--concurrency", "4",
         "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "ratio" in proc.stdout


def test_instruction_counts_under_callgrind(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("valgrind") is None:
        # Not a dependency of the project: the tool says what it needs.
        monkeypatch.setattr(shutil, "which", lambda name: None)
        with pytest.raises(RuntimeError, match="needs valgrind"):
            count_instructions("weighted", 4, picks=100)
        return
    # A pick is thousands of instructions; the count is per pick, not per run.
    n = count_instructions("weighted", 4, picks=200)
    assert 1_000 < n < 1_000_000
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs valgrind"):
        count_instructions("weighted", 4, picks=100)


def test_wire_instruction_counts_under_callgrind(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="side"):
        count_wire_instructions("litellm")
    if shutil.which("valgrind") is None:
        monkeypatch.setattr(shutil, "which", lambda name: None)
        with pytest.raises(RuntimeError, match="needs valgrind"):
            count_wire_instructions("router", requests=10, concurrency=1)
        return
    # A request over loopback is hundreds of thousands of client instructions; the
    # count is per request, not per run.
    n = count_wire_instructions("router", requests=20, concurrency=2)
    assert 50_000 < n < 5_000_000
