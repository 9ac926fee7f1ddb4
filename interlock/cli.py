"""The `interlock` command line."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Sequence

__all__ = ["main", "version"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interlock", description="interlock command line")
    p.add_argument("--version", action="version", version=f"interlock {version()}")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="route a few hundred requests over three local fake "
        "upstreams and print a per-deployment table",
    )
    demo.add_argument("--requests", type=int, default=300)
    demo.add_argument("--concurrency", type=int, default=16)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--strategy",
        default="p2c-ewma",
        help="a built-in strategy name (default: the router default, p2c-ewma)",
    )
    # Its options belong to the suite (see _bench_suite_main), which parses them itself.
    sub.add_parser(
        "bench",
        add_help=False,
        help="run the benchmark suite against local fake upstreams "
        "(interlock bench --help for its options)",
    )
    return p


def version() -> str:
    """The installed distribution's version, from its metadata (a checkout is installed
    editable by dev.py, so it has metadata too)."""
    try:
        return importlib.metadata.version("interlock")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _bench_suite_main() -> Callable[[Sequence[str]], int] | None:
    # The suite's source lives in the checkout's top-level benchmarks/ folder, and the
    # wheel ships it as interlock.bench (pyproject.toml). Looking for `bench` only
    # next to the interlock that was imported keeps the suite and the code it
    # measures from the same tree: an installed wheel never reaches for whatever
    # `benchmarks` is on sys.path, and a checkout (plain or editable, where the
    # wheel's rename does not apply) uses its own benchmarks/. importlib because
    # neither name is importable in both layouts, so neither can be a static import.
    if importlib.util.find_spec("interlock.bench") is not None:
        package = "interlock.bench"
    elif importlib.util.find_spec("benchmarks") is not None:
        package = "benchmarks"
    else:
        return None
    suite_main: Callable[[Sequence[str]], int] = importlib.import_module(f"{package}.suite").main
    return suite_main


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "bench":
        bench_main = _bench_suite_main()
        if bench_main is None:
            print(
                "interlock bench: the benchmark suite is not installed "
                "(it ships in interlock's wheel, or run it from a checkout)",
                file=sys.stderr,
            )
            return 2
        return bench_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        if args.requests < 1 or args.concurrency < 1:
            print("interlock demo: --requests and --concurrency must be >= 1", file=sys.stderr)
            return 2
        from interlock.demo import main as demo_main
        from interlock.errors import ConfigError

        try:
            return demo_main(args.requests, args.concurrency, args.seed, args.strategy)
        except ConfigError as exc:
            print(f"interlock demo: {exc}", file=sys.stderr)
            return 2
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
