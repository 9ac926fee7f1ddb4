"""Instructions per request over loopback: raw aiohttp vs the Router, counted by valgrind.

    python -m benchmarks.instructions_wire [--requests 2000] [--concurrency 1,32]
                                           [--sides raw,router] [--stream]
                                           [--chunks K] [--interval SECONDS]

The client runs under ``valgrind --tool=callgrind`` with instrumentation off; the
FakeUpstream runs in another process (not instrumented). After a warm-up the client
switches instrumentation on around `requests` calls at the given concurrency and
divides the instructions collected by the calls. The Router's figure minus raw
aiohttp's is what the Router adds per request, and unlike CPU time on a shared VM it
moves by well under 1% between runs, so it is the figure to prove a hot-path change
by. With ``--stream`` each call is one streamed reply of `chunks` frames and the
figure is per chunk. With ``--interval`` the upstream pauses that long between two
frames of a stream, so each frame comes on its own (as from a model generating
tokens) rather than several per read. Needs valgrind; roughly 20-40 s per cell.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable

__all__ = ["count_wire_instructions", "main"]


def count_wire_instructions(
    side: str,
    requests: int = 2000,
    concurrency: int = 32,
    stream: bool = False,
    chunks: int = 32,
    interval: float = 0.0,
) -> float:
    """Client instructions per request (per chunk with `stream`) for `side` ("raw" or
    "router"), counted by callgrind, the upstream in another process (pausing
    `interval` seconds between two frames of a stream)."""
    if side not in ("raw", "router"):
        raise ValueError(f"side must be 'raw' or 'router', got {side!r}")
    if interval < 0:
        raise ValueError(f"interval must be >= 0, got {interval!r}")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise RuntimeError(f"{__spec__.name} needs valgrind (callgrind) on the PATH")
    from .upstream import upstream_process

    reply = " ".join(f"w{i}" for i in range(chunks))
    with (
        upstream_process(reply=reply, stream_chunks=chunks, chunk_interval=interval) as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={os.path.join(tmp, 'out')}",
                sys.executable,
                "-m",
                __spec__.name,
                "--child",
                url,
                side,
                str(requests),
                str(concurrency),
                "1" if stream else "0",
            ],
            capture_output=True,
            text=True,
            check=False,
            # Fixed string hashing: set and dict layouts (and so instruction counts)
            # otherwise vary from run to run by a few thousand per request.
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the counted client failed: {proc.stderr[-1500:]}")
    found = re.search(r"Collected : (\d+)", proc.stderr)
    per = re.search(r"units=(\d+)", proc.stdout)
    if found is None or per is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {proc.stderr[-500:]}")
    return int(found.group(1)) / int(per.group(1))


async def _child_main(url: str, side: str, n: int, concurrency: int, stream: bool) -> int:
    from interlock import Deployment, Router

    from .common import MESSAGES, RawClient, drive

    raw = RawClient(url, connection_limit=max(1000, concurrency + 64))
    # Valgrind runs the client about 50x slower: a long timeout, or streams opened
    # together would time out before their first chunk.
    router = Router(
        [Deployment(group="bench", model="bench", api_base=url, api_key="sk-bench", timeout=600)],
        connection_limit=max(1000, concurrency + 64),
        timeout=3600,
    )
    units = 0

    async def router_chat() -> object:
        r = await router.acompletion("bench", MESSAGES)
        return r.choices[0].message.content

    async def raw_stream() -> object:
        nonlocal units
        _, k = await raw.stream()
        units += k
        return k

    async def router_stream() -> object:
        nonlocal units
        s = await router.acompletion("bench", MESSAGES, stream=True)
        async for _ in s:
            pass
        units += s.chunks
        return s.chunks

    one: Callable[[], Awaitable[object]]
    if stream:
        one = raw_stream if side == "raw" else router_stream
    else:
        one = raw.chat if side == "raw" else router_chat
    # One far-off timer on both sides, as a service's loop always holds some (and
    # streaming-scale's ticker): without one, raw aiohttp's loop would skip the timer
    # bookkeeping of every iteration that the Router's per-stream timers bring in.
    pending = asyncio.get_running_loop().call_later(86400.0, _nothing)
    try:
        await drive(min(n, 300), concurrency, one)  # connections, caches, estimates
        units = 0
        _instrument("on")
        await drive(n, concurrency, one)
        _instrument("off")
    finally:
        pending.cancel()
        await raw.aclose()
        await router.aclose()
    return units if stream else n


def _nothing() -> None:
    pass


def _instrument(flag: str) -> None:
    subprocess.run(
        ["callgrind_control", "-i", flag, str(os.getpid())], check=True, capture_output=True
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        url, side, n, conc, flag = args[1:6]
        units = asyncio.run(_child_main(url, side, int(n), int(conc), flag == "1"))
        print(f"units={units}", flush=True)
        return 0
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", default="1,32")
    p.add_argument("--sides", default="raw,router")
    p.add_argument("--stream", action="store_true", help="per chunk of streamed replies")
    p.add_argument("--chunks", type=int, default=32)
    p.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds the upstream waits between two frames of a stream (default 0)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="count each cell this many times and keep the lowest (how many loop "
        "iterations a response takes varies a little with the machine's load)",
    )
    ns = p.parse_args(args)
    unit = "chunk" if ns.stream else "request"
    for c in (int(x) for x in ns.concurrency.split(",")):
        counts = {
            side: min(
                count_wire_instructions(side, ns.requests, c, ns.stream, ns.chunks, ns.interval)
                for _ in range(max(1, ns.repeat))
            )
            for side in ns.sides.split(",")
        }
        cells = ", ".join(f"{k} {v:,.0f}" for k, v in counts.items())
        added = (
            f"; added {counts['router'] - counts['raw']:,.0f}"
            if {"raw", "router"} <= counts.keys()
            else ""
        )
        print(f"concurrency {c}: instructions per {unit}: {cells}{added}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
