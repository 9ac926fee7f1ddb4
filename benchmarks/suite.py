"""`interlock bench`: the benchmark suite, a registry of scenarios run in one process.

    interlock bench [--quick] [--only NAMES] [--skip NAMES] [--json PATH] [--plot DIR]
                    [--with-litellm] [--with-uvloop] [--docs docs/benchmarks.md]
                    [--readme README.md]
    interlock bench --list

Each scenario is a function in a module of this package that returns a dataclass of
figures; the suite runs the selected ones in order, shows progress on stderr, prints
each result as a table, and writes every figure to JSON and charts to PNG on request.
A scenario that fails is reported (in the table and the JSON) and makes the command
exit 1; the others still run.

To add a scenario, append one line to `SCENARIOS`:

    Scenario("soak", "Soak: memory and latency over time", ".soak:measure_soak",
             quick={"seconds": 5}),
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import progress_to
from .report import render, to_jsonable

__all__ = [
    "SCENARIOS",
    "Outcome",
    "Scenario",
    "ensure_litellm",
    "ensure_package",
    "main",
    "run_suite",
]


@dataclass(frozen=True)
class Scenario:
    """One entry of the suite.

    `target` and `plot` are ``"module:function"`` strings, imported only when the
    scenario runs (so an optional dependency costs nothing when skipped); a module
    name with a leading dot is relative to this package, which is `benchmarks` in a
    checkout and `interlock.bench` in an installed wheel. The target
    is called with `full` or, under ``--quick``, `quick` as keyword arguments and
    returns a dataclass. `plot(result, directory)` returns the PNG paths it wrote.
    `requires` names modules that must be importable, else the scenario is skipped.
    """

    name: str
    title: str
    target: str
    full: Mapping[str, Any] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)
    plot: str | None = None
    requires: tuple[str, ...] = ()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "overhead",
        "Overhead: raw aiohttp vs the Router, same upstream",
        ".overhead:measure_overhead_suite",
        quick={"requests": (60, 200, 400), "latency_requests": 60, "rounds": 2, "uvloop": False},
        plot=".plots:plot_overhead",
    ),
    Scenario(
        "pick",
        "Strategies: µs per pick (eligibility + strategy + reserve + settle, no I/O)",
        ".pick:measure_pick",
        quick={"sizes": (4, 100, 1_000), "seconds": 0.02, "rounds": 2},
        plot=".plots:plot_pick",
    ),
    Scenario(
        "strategies",
        "Strategies: µs and eligibility checks per pick, part of the pool cooling",
        ".strategies:measure_strategies",
        quick={"sizes": (4, 100, 1_000), "picks": 500, "rounds": 2},
    ),
    Scenario(
        "scale",
        "Scale: deployments, requests in flight, memory over many requests",
        ".scale:measure_scale",
        quick={
            "sizes": (1, 100, 1_000),
            "in_flight": (1, 1_000, 5_000),
            "seconds": 0.2,
            "long_run": 20_000,
        },
        plot=".plots:plot_scale",
    ),
    Scenario(
        "streaming",
        "Streaming: added time to first token and per-chunk overhead",
        ".streaming:measure_streaming",
        quick={"streams": 40, "rounds": 2},
        plot=".plots:plot_streaming",
    ),
    Scenario(
        "streaming-scale",
        "Streaming at scale: thousands of paced streams at once, CPU, memory, loop lag",
        ".streaming_scale:measure_streaming_scale",
        quick={"streams": 50, "chunks": 20, "interval": 0.01, "rounds": 1},
        plot=".plots:plot_streaming_scale",
    ),
    Scenario(
        "faults",
        "Faults: success, attempts and p99 with failing deployments",
        ".faults:measure_faults",
        quick={"requests": 300},
        plot=".plots:plot_faults",
    ),
    Scenario(
        "cache",
        "Response cache: µs per lookup (hit, miss, stored miss), memory and Redis",
        ".cache:measure_cache",
        quick={"iterations": 500, "rounds": 2},
    ),
    Scenario(
        "observability",
        "Instrumentation: metrics and a no-op hook on vs off, against the router's overhead",
        ".observability:measure_observability",
        quick={"requests": 300, "rounds": 6, "wire_requests": 300, "wire_rounds": 2},
    ),
    Scenario(
        "vs-litellm",
        "Side by side: interlock.Router vs litellm.Router, same upstream and run",
        ".versus:measure_versus",
        quick={"requests": 40, "rounds": 2, "uvloop": False},
        plot=".plots:plot_versus",
        requires=("litellm",),
    ),
)


@dataclass(frozen=True)
class Outcome:
    """What running one scenario gave."""

    scenario: Scenario
    seconds: float
    result: Any = None
    error: str | None = None
    skipped: str | None = None
    plots: tuple[str, ...] = ()


def _load(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    fn = getattr(importlib.import_module(module, __package__), name)
    if not callable(fn):
        raise TypeError(f"{spec} is not callable")
    return fn  # type: ignore[no-any-return]


def _stderr_progress(prefix: str) -> Callable[[str], None]:
    tty = sys.stderr.isatty()
    last = [0.0]

    def sink(message: str) -> None:
        now = time.monotonic()
        if tty:
            sys.stderr.write(f"\r\x1b[K{prefix} {message}")
        elif now - last[0] >= 1.0:  # a log file gets a line a second at most
            sys.stderr.write(f"{prefix} {message}\n")
            last[0] = now
        sys.stderr.flush()

    return sink


def run_scenario(
    scenario: Scenario, *, quick: bool, plot_dir: Path | None, prefix: str = ""
) -> Outcome:
    """Run one scenario; a failure becomes an `Outcome` with `error` set."""
    missing = [m for m in scenario.requires if importlib.util.find_spec(m) is None]
    if missing:
        return Outcome(scenario, 0.0, skipped=f"{', '.join(missing)} not installed")
    t0 = time.perf_counter()
    try:
        fn = _load(scenario.target)
        with progress_to(_stderr_progress(prefix)):
            result = fn(**(scenario.quick if quick else scenario.full))
    except Exception:
        return Outcome(scenario, time.perf_counter() - t0, error=traceback.format_exc())
    finally:
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[K")
    seconds = time.perf_counter() - t0
    plots: tuple[str, ...] = ()
    if plot_dir is not None and scenario.plot is not None:
        try:
            plots = tuple(str(p) for p in _load(scenario.plot)(result, plot_dir))
        except Exception:
            return Outcome(scenario, seconds, result, error=traceback.format_exc())
    return Outcome(scenario, seconds, result, plots=plots)


def _environment(quick: bool) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "interlock": ver("interlock"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "aiohttp": ver("aiohttp"),
        "litellm": ver("litellm"),
        "uvloop": ver("uvloop"),
        "quick": quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_suite(
    scenarios: Sequence[Scenario],
    *,
    quick: bool = False,
    plot_dir: Path | None = None,
    out: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[Outcome]]:
    """Run `scenarios` in order, printing each table as it completes; returns the
    JSON document and the outcomes."""
    doc: dict[str, Any] = {"environment": _environment(quick), "scenarios": {}}
    outcomes: list[Outcome] = []
    t0 = time.perf_counter()
    for i, sc in enumerate(scenarios, 1):
        prefix = f"[{i}/{len(scenarios)} {sc.name}]"
        sys.stderr.write(f"{prefix} running ({time.perf_counter() - t0:.0f} s so far)\n")
        sys.stderr.flush()
        o = run_scenario(sc, quick=quick, plot_dir=plot_dir, prefix=prefix)
        outcomes.append(o)
        entry: dict[str, Any] = {"title": sc.title, "seconds": round(o.seconds, 3)}
        out(f"\n== {sc.name}: {sc.title}  ({o.seconds:.1f} s)")
        if o.skipped is not None:
            entry["skipped"] = o.skipped
            out(f"  skipped: {o.skipped}")
        if o.result is not None:
            entry["result"] = to_jsonable(o.result)
            out(render(o.result))
        if o.error is not None:
            entry["error"] = o.error
            out("  FAILED:\n" + "\n".join("    " + line for line in o.error.splitlines()))
        if o.plots:
            entry["plots"] = list(o.plots)
        doc["scenarios"][sc.name] = entry
    headlines = [
        f"  {o.scenario.name}: {o.result.headline}"
        for o in outcomes
        if isinstance(getattr(o.result, "headline", None), str)
    ]
    if headlines:
        out("\n== summary\n" + "\n".join(headlines))
    doc["seconds"] = round(time.perf_counter() - t0, 3)
    return doc, outcomes


LITELLM_REQUIREMENT = "litellm"
"""What ``--with-litellm`` installs (the newest release: the comparison is with
litellm as users get it; the version run is in the JSON's environment)."""

UVLOOP_REQUIREMENT = "uvloop"
"""What ``--with-uvloop`` installs (the `overhead` and `vs-litellm` rows under uvloop)."""


def _default_run(cmd: list[str]) -> int:
    return subprocess.call(cmd)


def ensure_package(
    module: str, requirement: str, run: Callable[[list[str]], int] = _default_run
) -> bool:
    """Install `requirement` with this interpreter's pip unless `module` is importable;
    False (with a message on stderr) when pip fails. Benchmark dependencies only:
    nothing interlock itself needs is installed this way."""
    if importlib.util.find_spec(module) is not None:
        return True
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", requirement]
    sys.stderr.write(f"interlock bench: installing {requirement} ({' '.join(cmd)})\n")
    if run(cmd) != 0:
        sys.stderr.write(
            f"interlock bench: could not install {requirement}; the scenarios or rows "
            f"that need it will be skipped. Install it yourself (pip install "
            f"{requirement}) or run without --with-{module}.\n"
        )
        return False
    importlib.invalidate_caches()
    return importlib.util.find_spec(module) is not None


def ensure_litellm(run: Callable[[list[str]], int] = _default_run) -> bool:
    """`ensure_package` for litellm (``--with-litellm``: the `vs-litellm` scenario)."""
    return ensure_package("litellm", LITELLM_REQUIREMENT, run)


def _select(names: str | None, skip: str | None) -> list[Scenario]:
    known = {s.name: s for s in SCENARIOS}
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else list(known)
    dropped = {n.strip() for n in skip.split(",") if n.strip()} if skip else set()
    unknown = [n for n in [*wanted, *dropped] if n not in known]
    if unknown:
        raise SystemExit(
            f"interlock bench: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return [known[n] for n in wanted if n not in dropped]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="interlock bench",
        description="Run interlock's benchmark suite against local fake upstreams "
        "(no keys, no network) and print the figures.",
    )
    p.add_argument("--quick", action="store_true", help="small workloads (CI smoke, < 1 min)")
    p.add_argument("--json", metavar="PATH", type=Path, help="write every figure to PATH")
    p.add_argument("--plot", metavar="DIR", type=Path, help="write PNG charts into DIR")
    p.add_argument("--only", metavar="NAMES", help="comma-separated scenarios to run")
    p.add_argument("--skip", metavar="NAMES", help="comma-separated scenarios to leave out")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument(
        "--docs",
        metavar="MD",
        type=Path,
        help="write this full run's figures between the bench-results markers of MD "
        "(docs/benchmarks.md)",
    )
    p.add_argument(
        "--readme",
        metavar="MD",
        type=Path,
        help="write this full run's headlines between the bench-readme markers of MD",
    )
    p.add_argument(
        "--with-litellm",
        action="store_true",
        help="pip-install litellm into this environment first if it is missing, so that "
        "vs-litellm runs (a benchmark dependency only, never one of interlock's)",
    )
    p.add_argument(
        "--with-uvloop",
        action="store_true",
        help="pip-install uvloop into this environment first if it is missing, so that "
        "the overhead and vs-litellm scenarios add rows under uvloop",
    )
    args = p.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.list:
        for s in SCENARIOS:
            extra = f"  (needs {', '.join(s.requires)})" if s.requires else ""
            print(f"{s.name:16} {s.title}{extra}")
        return 0
    selected = _select(args.only, args.skip)
    if (args.docs or args.readme) and args.quick:
        print("interlock bench: --docs/--readme take a full run, not --quick", file=sys.stderr)
        return 2
    if args.with_litellm and not ensure_litellm():
        return 2
    if args.with_uvloop and not ensure_package("uvloop", UVLOOP_REQUIREMENT):
        return 2
    if args.plot is not None:
        if importlib.util.find_spec("matplotlib") is None:
            print(
                "interlock bench: --plot needs matplotlib: pip install 'interlock[plot]'",
                file=sys.stderr,
            )
            return 2
        args.plot.mkdir(parents=True, exist_ok=True)
    doc, outcomes = run_suite(selected, quick=args.quick, plot_dir=args.plot)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        print(f"\nfigures written to {args.json}")
    if args.docs is not None or args.readme is not None:
        from .docs_results import update_docs, update_readme

        if args.docs is not None:
            update_docs(args.docs, doc, outcomes)
            print(f"results section of {args.docs} rewritten")
        if args.readme is not None:
            update_readme(args.readme, doc, outcomes)
            print(f"performance paragraph of {args.readme} rewritten")
    return 1 if any(o.error is not None for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
