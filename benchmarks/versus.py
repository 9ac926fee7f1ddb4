"""Side by side: interlock's Router, litellm's Router and raw aiohttp, same upstream,
same workload, same run.

    python -m benchmarks.versus [--quick]

litellm is not a dependency: this scenario runs only when it is installed. It talks
to the FakeUpstream (in a child process) as an OpenAI-compatible `api_base`, with
``LITELLM_LOCAL_MODEL_COST_MAP=True`` so that it reads its bundled model price list
instead of downloading one: the comparison needs no network beyond loopback. The three
clients take turns round by round (the order rotates); throughput ratios are medians
of per-round ratios and CPU is the client process's `time.process_time` per request.
Under uvloop too when it is installed.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from interlock import Deployment, Router

from .common import (
    MESSAGES,
    RawClient,
    drive,
    loop_names,
    median,
    progress,
    run_on,
    timed,
)
from .upstream import upstream_process

__all__ = ["VersusResult", "VersusRow", "measure_versus"]

CLIENTS = ("raw aiohttp", "interlock", "litellm")


@dataclass(frozen=True)
class VersusRow:
    loop: str
    client: str
    rps: float
    cpu_us_per_request: float
    vs_raw: float
    """Median over rounds of this client's rate / raw aiohttp's."""


@dataclass(frozen=True)
class VersusResult:
    requests: int
    rounds: int
    concurrency: int
    litellm_version: str
    rows: tuple[VersusRow, ...]
    throughput_ratio: float
    """interlock rate / litellm rate (median of per-round ratios, asyncio loop)."""
    cpu_ratio: float
    """litellm CPU per request / interlock CPU per request (asyncio loop)."""
    headline: str


def _import_litellm() -> Any:
    # Before the import: use the price list bundled with the package, not a download.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return litellm


async def _measure(
    url: str, loop: str, requests: int, rounds: int, concurrency: int
) -> tuple[list[VersusRow], list[float], float]:
    litellm = _import_litellm()
    raw = RawClient(url)
    router = Router(
        [Deployment(group="bench", model="bench", api_base=url, api_key="sk-bench", timeout=30)]
    )
    lite = litellm.Router(
        model_list=[
            {
                "model_name": "bench",
                "litellm_params": {"model": "openai/bench", "api_base": url, "api_key": "sk-bench"},
            }
        ],
        num_retries=0,
    )

    async def interlock_one() -> object:
        r = await router.acompletion("bench", MESSAGES)
        return r.choices[0].message.content

    async def litellm_one() -> object:
        r = await lite.acompletion(model="bench", messages=MESSAGES)
        return r.choices[0].message.content

    ones: dict[str, Callable[[], Awaitable[object]]] = {
        "raw aiohttp": raw.chat,
        "interlock": interlock_one,
        "litellm": litellm_one,
    }
    got: dict[str, list[tuple[float, float]]] = {c: [] for c in CLIENTS}
    try:
        for c in CLIENTS:
            await drive(min(requests, 50), concurrency, ones[c])
        for i in range(rounds):
            progress(f"{loop}: round {i + 1}/{rounds}")
            for c in CLIENTS[i % 3 :] + CLIENTS[: i % 3]:
                got[c].append(await timed(requests, concurrency, ones[c]))
    finally:
        await raw.aclose()
        await router.aclose()
    rows = [
        VersusRow(
            loop,
            c,
            median([r for r, _ in got[c]]),
            median([cpu for _, cpu in got[c]]) * 1e6,
            median([a[0] / b[0] for a, b in zip(got[c], got["raw aiohttp"], strict=True)]),
        )
        for c in CLIENTS
    ]
    ratios = [a[0] / b[0] for a, b in zip(got["interlock"], got["litellm"], strict=True)]
    cpu_ratio = median([cpu for _, cpu in got["litellm"]]) / median(
        [cpu for _, cpu in got["interlock"]]
    )
    return rows, ratios, cpu_ratio


def measure_versus(
    requests: int = 600, rounds: int = 5, concurrency: int = 32, uvloop: bool = True
) -> VersusResult:
    """Throughput and CPU per request of each client at `concurrency`."""
    from importlib.metadata import version

    litellm_version = version("litellm")
    rows: list[VersusRow] = []
    ratio = cpu_ratio = float("nan")
    with upstream_process() as url:
        for loop in loop_names() if uvloop else ["asyncio"]:

            def job(loop: str = loop) -> Awaitable[tuple[list[VersusRow], list[float], float]]:
                return _measure(url, loop, requests, rounds, concurrency)

            r, ratios, cpu = run_on(loop, job)
            rows.extend(r)
            if loop == "asyncio":
                ratio, cpu_ratio = median(ratios), cpu
    by = {row.client: row for row in rows if row.loop == "asyncio"}
    head = (
        f"interlock {ratio:.1f}x litellm.Router's throughput at concurrency {concurrency}; "
        f"CPU per request {by['interlock'].cpu_us_per_request:.0f} µs vs "
        f"{by['litellm'].cpu_us_per_request:.0f} µs ({cpu_ratio:.0f}x less)"
    )
    return VersusResult(
        requests, rounds, concurrency, litellm_version, tuple(rows), ratio, cpu_ratio, head
    )


def main(argv: list[str] | None = None) -> int:
    from .report import render

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    result = measure_versus(40, 2, uvloop=False) if args.quick else measure_versus()
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
