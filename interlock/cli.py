"""The `interlock` command line."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interlock", description="interlock command line")
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
    # Its options belong to the suite (benchmarks.suite), which parses them itself.
    sub.add_parser(
        "bench",
        add_help=False,
        help="run the benchmark suite against local fake upstreams "
        "(interlock bench --help for its options)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "bench":
        from benchmarks.suite import main as bench_main

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
