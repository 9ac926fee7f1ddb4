"""Instructions per pick, counted by valgrind: the strategies benchmark without the noise.

    python -m benchmarks.instructions [--sizes 4,10000] [--strategies p2c-ewma,weighted]

Wall-clock figures on a shared VM move by 2x from one hour to the next; the number
of CPU instructions a pick executes does not (to well under 1%). For each strategy
and pool size this runs the `strategies` scenario's pick loop (the same setup, see
`benchmarks.strategies`) in a child process under ``valgrind --tool=callgrind`` with
instrumentation off, switches it on around the timed picks only (with
``callgrind_control``), and divides the instructions collected by the picks. Needs
valgrind (not a dependency of the project; ``apt install valgrind``); about 15 s per
cell. The count reflects this interpreter's build: compare counts from one Python.
Cache misses, which dominate at 10,000 deployments, are not in it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from .strategies import BASELINE, STRATEGIES, _deployments, _setup

__all__ = ["count_instructions", "main"]

_PICKS = 3_000


def count_instructions(strategy: str, deployments: int, picks: int = _PICKS) -> int:
    """Instructions per pick for `strategy` at `deployments`, counted by callgrind."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise RuntimeError(f"{__spec__.name} needs valgrind (callgrind) on the PATH")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={os.path.join(tmp, 'out')}",
                sys.executable,
                "-m",
                # Not a fixed name: `benchmarks` in a checkout, `interlock.bench` installed.
                __spec__.name,
                "--child",
                strategy,
                str(deployments),
                str(picks),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {proc.stderr[-500:]}")
    return int(found.group(1)) // picks


def _child(strategy: str, deployments: int, picks: int) -> None:
    run = _setup(_deployments(deployments), strategy, 0.1)
    run(2_000)  # caches and estimates as in the timed benchmark

    def instrument(flag: str) -> None:
        subprocess.run(
            ["callgrind_control", "-i", flag, str(os.getpid())], check=True, capture_output=True
        )

    instrument("on")
    run(picks)
    instrument("off")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        _child(args[1], int(args[2]), int(args[3]))
        return 0
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--sizes", default="4,10000")
    p.add_argument("--strategies", default=",".join((*STRATEGIES, BASELINE)))
    p.add_argument("--picks", type=int, default=_PICKS)
    ns = p.parse_args(args)
    sizes = [int(s) for s in ns.sizes.split(",")]
    print("| strategy | " + " | ".join(f"{n:,} deployments" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name in ns.strategies.split(","):
        cells = [f"{count_instructions(name, n, ns.picks):,}" for n in sizes]
        print(f"| `{name}` | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
