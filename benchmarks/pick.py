"""µs per pick: the router's synchronous decision path, with no I/O.

    python -m benchmarks.pick [--quick]

One pick is one `Pipeline.run` of a request whose send completes at once: the
eligibility filter (cooldown, headroom against rpm/tpm windows, tags, order tier),
the strategy's choice, the ledger's reserve, then settle and the health/strategy
feedback. The coroutine is driven by hand (`send(None)`), so no event loop and no
socket is involved: what is timed is the router's own work per request. Deployments
carry rpm and tpm limits so the rate windows are read and written as in production.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from interlock import Router
from interlock.config import Deployment
from interlock.records.state import DeploymentState
from interlock.router.attempt import Attempt
from interlock.strategies import builtin_strategies
from interlock.testing import InstantTransport
from interlock.types import Request

from .common import fake_deployments, median, progress

__all__ = ["PickResult", "PickRow", "measure_pick", "pick_cost"]


@dataclass(frozen=True)
class PickRow:
    strategy: str
    deployments: int
    us_per_pick: float
    """Median over rounds of CPU µs per pick (immune to time lost waiting for a core
    on a shared machine)."""
    wall_us_per_pick: float
    """The same in wall-clock time."""
    picks: int
    """Picks timed, all rounds together."""
    distinct: int
    """Deployments chosen at least once (a strategy must spread the load)."""


@dataclass(frozen=True)
class PickResult:
    rounds: int
    rows: tuple[PickRow, ...]
    headline: str


async def _send_now(state: DeploymentState, request: Request, timeout: float) -> None:
    return None


def _complete(result: None, attempt: Attempt) -> None:
    # What Router.call's completion does: settle without usage, record the success.
    attempt.succeeded(None)


def pick_cost(
    router: Router, seconds: float, group: str = "bench"
) -> tuple[float, float, int, set[str]]:
    """CPU and wall µs per pick over about `seconds` (CPU) of picks through `router`'s
    pipeline, the number of picks, and the ids chosen."""
    pipeline = router.parts.pipeline
    request = Request("call", group, est_input_tokens=100, est_output_tokens=100, requested=group)
    chosen: set[str] = set()

    def one() -> None:
        coro = pipeline.run(request, 60.0, _send_now, _complete)
        try:
            coro.send(None)
        except StopIteration:
            return
        coro.close()
        raise RuntimeError("a pick suspended: the send was expected to complete at once")

    # Which deployment served a pick is read from the states, not timed.
    states = router.parts.states
    before = [s.requests for s in states]
    clock = time.process_time
    n = 0
    batch = 16
    wall0 = time.perf_counter()
    t0 = clock()
    deadline = t0 + seconds
    while True:
        for _ in range(batch):
            one()
        n += batch
        now = clock()
        if now >= deadline:
            break
        batch = min(batch * 2, 4096)
    elapsed = clock() - t0
    wall = time.perf_counter() - wall0
    chosen.update(s.id for s, b in zip(states, before, strict=True) if s.requests > b)
    if router.statistics().in_flight != 0:
        raise RuntimeError("a pick left a reservation open")
    return elapsed / n * 1e6, wall / n * 1e6, n, chosen


def _router(size: int, strategy: str) -> Router:
    deployments: list[Deployment] = fake_deployments(size, rpm=10**9, tpm=10**12)
    return Router(
        deployments,
        strategy=strategy,
        transports={"fake": InstantTransport(log=False)},
        seed=1,
    )


def measure_pick(
    sizes: tuple[int, ...] = (4, 100, 1_000, 10_000),
    strategies: tuple[str, ...] | None = None,
    seconds: float = 0.3,
    rounds: int = 7,
) -> PickResult:
    """µs per pick for every built-in strategy (or `strategies`) at each pool size;
    strategies alternate round by round."""
    names = tuple(strategies or builtin_strategies())
    rows: list[PickRow] = []
    for size in sizes:
        routers = {name: _router(size, name) for name in names}
        per: dict[str, list[float]] = {name: [] for name in names}
        walls: dict[str, list[float]] = {name: [] for name in names}
        counts = dict.fromkeys(names, 0)
        chosen: dict[str, set[str]] = {name: set() for name in names}
        for r in range(rounds):
            progress(f"{size} deployments, round {r + 1}/{rounds}")
            for name in names if r % 2 == 0 else reversed(names):
                us, wall, n, ids = pick_cost(routers[name], seconds)
                per[name].append(us)
                walls[name].append(wall)
                counts[name] += n
                chosen[name] |= ids
        rows.extend(
            PickRow(
                name,
                size,
                median(per[name]),
                median(walls[name]),
                counts[name],
                len(chosen[name]),
            )
            for name in names
        )
    small = [r for r in rows if r.deployments == min(sizes)]
    large = [r for r in rows if r.deployments == max(sizes)]
    head = ", ".join(
        f"{a.strategy} {a.us_per_pick:.1f} µs at {a.deployments} / "
        f"{b.us_per_pick:.0f} µs at {b.deployments:,}"
        for a, b in zip(small, large, strict=True)
    )
    return PickResult(rounds, tuple(rows), f"CPU per pick: {head}")


def main(argv: list[str] | None = None) -> int:
    from .report import render

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    print(render(measure_pick(seconds=0.05, rounds=3) if args.quick else measure_pick()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
