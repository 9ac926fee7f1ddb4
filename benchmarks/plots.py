"""PNG charts of the suite's results (matplotlib, the `plot` extra).

Each function takes a scenario's result and a directory and returns the paths it
wrote. The Agg backend is used so no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import FaultsResult
    from .overhead import OverheadSuiteResult
    from .pick import PickResult
    from .scale import ScaleResult
    from .streaming import StreamingResult
    from .streaming_scale import StreamingScaleResult
    from .versus import VersusResult

__all__ = [
    "plot_faults",
    "plot_overhead",
    "plot_pick",
    "plot_scale",
    "plot_streaming",
    "plot_streaming_scale",
    "plot_versus",
]

RAW, ROUTER, OTHER = "#8c8c8c", "#1f77b4", "#d62728"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path


def _bars(ax: Any, labels: list[str], series: list[tuple[str, list[float], str]]) -> None:
    width = 0.8 / len(series)
    for i, (name, values, color) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, values, width, label=name, color=color)
    ax.set_xticks(range(len(labels)), labels)
    ax.legend(fontsize=8)


def plot_overhead(result: OverheadSuiteResult, directory: Path) -> list[Path]:
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    rows = [r for r in result.throughput if r.loop == "asyncio"]
    labels = [f"c={r.concurrency}\n{r.ratio:.2f}x" for r in rows]
    _bars(
        a,
        labels,
        [
            ("raw aiohttp", [r.raw_rps for r in rows], RAW),
            ("Router", [r.router_rps for r in rows], ROUTER),
        ],
    )
    a.set_title("Throughput, same upstream (req/s)", fontsize=10)
    lat = result.latency
    if lat:
        lrow = lat[0]
        _bars(
            b,
            ["p50", "p99"],
            [
                ("raw aiohttp", [lrow.raw_p50_us / 1e3, lrow.raw_p99_us / 1e3], RAW),
                ("Router", [lrow.router_p50_us / 1e3, lrow.router_p99_us / 1e3], ROUTER),
            ],
        )
        b.set_title("Latency at concurrency 1 (ms)", fontsize=10)
    return [_save(fig, directory, "overhead.png")]


def plot_pick(result: PickResult, directory: Path) -> list[Path]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in dict.fromkeys(r.strategy for r in result.rows):
        rows = [r for r in result.rows if r.strategy == name]
        ax.plot([r.deployments for r in rows], [r.us_per_pick for r in rows], "o-", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("deployments in the group")
    ax.set_ylabel("CPU µs per pick")
    ax.set_title("Selection + accounting per request (no I/O)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return [_save(fig, directory, "pick.png")]


def plot_scale(result: ScaleResult, directory: Path) -> list[Path]:
    plt = _pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(12, 3.6))
    a.plot([p.deployments for p in result.pools], [p.rps for p in result.pools], "o-")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("deployments")
    a.set_title("req/s (in-memory transport)", fontsize=10)
    b.plot([f.in_flight for f in result.in_flight], [f.rps for f in result.in_flight], "o-")
    b.set_xscale("log")
    b.set_xlabel("requests in flight")
    b.set_ylim(bottom=0)
    b.set_title("req/s vs concurrency", fontsize=10)
    xs = [m.requests for m in result.memory]
    c.plot(xs, [m.heap_blocks / 1e3 for m in result.memory], "o-", label="heap blocks (k)")
    c.plot(xs, [m.rss_mib for m in result.memory], "s--", label="RSS (MiB)")
    c.set_xlabel("requests served")
    c.set_ylim(bottom=0)
    c.set_title("memory over the long run", fontsize=10)
    c.legend(fontsize=8)
    for ax in (a, b, c):
        ax.grid(True, alpha=0.3)
    return [_save(fig, directory, "scale.png")]


def plot_streaming(result: StreamingResult, directory: Path) -> list[Path]:
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4))
    _bars(
        a,
        ["TTFT"],
        [("raw", [result.raw_ttft_us], RAW), ("Router", [result.router_ttft_us], ROUTER)],
    )
    a.set_title("time to first token (µs)", fontsize=10)
    _bars(
        b,
        ["wall", "CPU"],
        [
            ("raw", [result.raw_chunk_us, result.raw_cpu_per_chunk_us], RAW),
            ("Router", [result.router_chunk_us, result.router_cpu_per_chunk_us], ROUTER),
        ],
    )
    b.set_title("per chunk (µs)", fontsize=10)
    return [_save(fig, directory, "streaming.png")]


def plot_streaming_scale(result: StreamingScaleResult, directory: Path) -> list[Path]:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    panels = [
        ("CPU per chunk (µs)", result.raw_cpu_per_chunk_us, result.router_cpu_per_chunk_us),
        (
            "memory per open stream (KiB)",
            result.raw_mem_per_stream_kib,
            result.router_mem_per_stream_kib,
        ),
        ("event-loop lag p99 (ms)", result.raw_lag_p99_ms, result.router_lag_p99_ms),
        ("time to first token p50 (ms)", result.raw_ttft_p50_ms, result.router_ttft_p50_ms),
    ]
    for ax, (title, raw, routed) in zip(axes, panels, strict=True):
        ax.bar(["raw aiohttp", "Router"], [raw, routed], color=[RAW, ROUTER])
        ax.set_title(title, fontsize=10)
    fig.suptitle(
        f"{result.streams:,} streams x {result.chunks} chunks, {result.interval_ms:.0f} ms apart",
        fontsize=10,
    )
    return [_save(fig, directory, "streaming_scale.png")]


def plot_faults(result: FaultsResult, directory: Path) -> list[Path]:
    plt = _pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(11, 3.4))
    labels = [f"{r.failing_pct}%" for r in result.rows]
    a.bar(labels, [r.success_rate * 100 for r in result.rows], color=ROUTER)
    a.set_title("success rate (%)", fontsize=10)
    b.bar(labels, [r.attempts_per_request for r in result.rows], color=OTHER)
    b.axhline(1.0, color="k", lw=0.8, ls=":")
    b.set_title("upstream calls per request", fontsize=10)
    c.bar(labels, [r.p99_ms for r in result.rows], color=RAW)
    c.set_title("p99 latency (ms)", fontsize=10)
    for ax in (a, b, c):
        ax.set_xlabel("deployments failing")
    return [_save(fig, directory, "faults.png")]


def plot_versus(result: VersusResult, directory: Path) -> list[Path]:
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    rows = [r for r in result.rows if r.loop == "asyncio"]
    colors = [RAW, ROUTER, OTHER][: len(rows)]
    a.bar([r.client for r in rows], [r.rps for r in rows], color=colors)
    a.set_title(f"req/s at concurrency {result.concurrency}", fontsize=10)
    b.bar([r.client for r in rows], [r.cpu_us_per_request for r in rows], color=colors)
    b.set_yscale("log")
    b.set_title("client CPU µs per request (log)", fontsize=10)
    return [_save(fig, directory, "versus.png")]
