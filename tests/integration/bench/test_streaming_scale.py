"""`benchmarks/streaming_scale.py` end to end on loopback, with a tiny bounded workload.

Only behaviour is asserted (every stream read to its end on both sides, the figures
present and of the right sign, the chart written), never speed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.plots import plot_streaming_scale
from benchmarks.streaming_scale import measure_streaming_scale


def test_streaming_scale_reads_every_stream_on_both_sides_and_reports_each_figure(
    tmp_path: Path,
) -> None:
    r = measure_streaming_scale(
        streams=6, chunks=4, interval=0.002, rounds=1, tick=0.001, hold_interval=0.01
    )
    # role frame + 4 content frames + finish frame + usage frame, per stream
    assert (r.streams, r.chunks, r.rounds) == (6, 7, 1)
    assert r.interval_ms == pytest.approx(2.0)
    for value in (
        r.raw_cpu_per_chunk_us,
        r.router_cpu_per_chunk_us,
        r.raw_mem_per_stream_kib,
        r.router_mem_per_stream_kib,
        r.saturated_raw_mem_per_stream_kib,
        r.saturated_router_mem_per_stream_kib,
        r.raw_ttft_p50_ms,
        r.router_ttft_p50_ms,
        r.raw_chunks_per_s,
        r.router_chunks_per_s,
    ):
        assert value > 0
    assert r.mem_ratio == pytest.approx(r.router_mem_per_stream_kib / r.raw_mem_per_stream_kib)
    assert r.saturated_mem_ratio == pytest.approx(
        r.saturated_router_mem_per_stream_kib / r.saturated_raw_mem_per_stream_kib
    )
    for value in (r.raw_lag_p99_ms, r.router_lag_p99_ms, r.added_cpu_per_chunk_us):
        assert math.isfinite(value)
    assert "6 streams" in r.headline
    (png,) = plot_streaming_scale(r, tmp_path)
    assert png.stat().st_size > 0


def test_streaming_scale_refuses_a_workload_that_measures_nothing() -> None:
    with pytest.raises(ValueError, match="streams"):
        measure_streaming_scale(streams=0)
    with pytest.raises(ValueError, match="interval"):
        measure_streaming_scale(interval=-1.0)
    with pytest.raises(ValueError, match="hold_interval"):
        measure_streaming_scale(hold_interval=-1.0)
