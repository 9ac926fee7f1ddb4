"""The benchmark suite's plumbing: registry, rendering, JSON, the pick path (no I/O)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from benchmarks.common import (
    fake_deployments,
    median,
    percentile,
    progress,
    progress_to,
)
from benchmarks.pick import pick_cost
from benchmarks.report import format_value, render, to_jsonable
from benchmarks.suite import SCENARIOS, Scenario, _load, _select, main, run_scenario
from interlock import Router
from interlock.testing import InstantTransport


@dataclass(frozen=True)
class _Row:
    name: str
    rps: float


@dataclass(frozen=True)
class _Result:
    count: int
    ratio: float
    rows: tuple[_Row, ...]
    headline: str


def test_to_jsonable_turns_dataclasses_into_objects_and_nan_into_null() -> None:
    r = _Result(3, float("nan"), (_Row("a", 1.5), _Row("b", math.inf)), "h")
    doc = to_jsonable(r)
    assert doc == {
        "count": 3,
        "ratio": None,
        "rows": [{"name": "a", "rps": 1.5}, {"name": "b", "rps": None}],
        "headline": "h",
    }
    json.dumps(doc, allow_nan=False)  # strict JSON


def test_render_prints_scalars_and_a_table_per_row_sequence() -> None:
    text = render(_Result(1234, 0.9, (_Row("raw", 1500.0), _Row("router", 1400.25)), "x"))
    lines = text.splitlines()
    assert any(line.split() == ["count", "1,234"] for line in lines)
    assert any(line.split() == ["name", "rps"] for line in lines)
    assert any(line.split() == ["router", "1,400"] for line in lines)
    assert "headline" not in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "-"), (True, "yes"), (12345, "12,345"), (0.0, "0"), (2.5, "2.50"), (0.01234, "0.0123"),
     (150.25, "150.2"), (float("nan"), "-")],
)  # fmt: skip
def test_format_value(value: object, shown: str) -> None:
    assert format_value(value) == shown


def test_percentile_and_median() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == 50.0
    assert percentile(xs, 99) == 99.0
    assert percentile(xs, 100) == 100.0
    assert math.isnan(percentile([], 50))
    assert median([3.0, 1.0, 2.0]) == 2.0


def test_progress_reaches_the_sink_only_inside_the_block() -> None:
    seen: list[str] = []
    progress("before")
    with progress_to(seen.append):
        progress("inside")
    progress("after")
    assert seen == ["inside"]


def test_registry_names_are_unique_and_targets_resolve() -> None:
    names = [s.name for s in SCENARIOS]
    assert len(names) == len(set(names))
    assert {"overhead", "pick", "scale", "streaming", "faults", "vs-litellm"} <= set(names)
    import importlib.util

    for s in SCENARIOS:
        for spec in filter(None, (s.target, s.plot)):
            if all(importlib.util.find_spec(m) for m in s.requires):
                assert callable(_load(spec)), spec


def test_select_rejects_unknown_names() -> None:
    assert [s.name for s in _select("faults,pick", None)] == ["faults", "pick"]
    assert "pick" not in [s.name for s in _select(None, "pick")]
    with pytest.raises(SystemExit, match="unknown scenario"):
        _select("nope", None)


def test_a_failing_scenario_is_reported_not_raised() -> None:
    o = run_scenario(
        Scenario("broken", "t", "benchmarks.common:percentile", full={"values": [1.0], "q": "x"}),
        quick=False,
        plot_dir=None,
    )
    assert o.error is not None
    assert "TypeError" in o.error
    assert o.result is None


def test_a_scenario_whose_requirement_is_missing_is_skipped() -> None:
    sc = Scenario("x", "t", "benchmarks.common:median", requires=("no_such_module_xyz",))
    o = run_scenario(sc, quick=True, plot_dir=None)
    assert o.skipped == "no_such_module_xyz not installed"
    assert o.error is None


def test_list_prints_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for s in SCENARIOS:
        assert s.name in out


def test_pick_runs_the_real_pipeline_and_settles_every_reservation() -> None:
    router = Router(
        fake_deployments(4, rpm=10**9, tpm=10**12),
        strategy="least-busy",
        transports={"fake": InstantTransport(log=False)},
        seed=3,
    )
    cpu_us, wall_us, picks, chosen = pick_cost(router, 0.01)
    stats = router.statistics()
    assert picks >= 16
    assert cpu_us > 0
    assert wall_us > 0
    assert stats.in_flight == 0
    assert stats.requests == picks
    assert sum(d.successes for d in stats.deployments) == picks
    # least-busy with every deployment idle breaks ties at random: all get picks.
    assert chosen == {d.id for d in stats.deployments}


def test_streaming_scale_is_registered_and_its_quick_variant_is_small() -> None:
    sc = next(s for s in SCENARIOS if s.name == "streaming-scale")
    assert sc.full == {}  # the defaults: 2,000 streams of 200 chunks, 20 ms apart
    # CI runs --quick: a few seconds at most.
    assert sc.quick["streams"] * sc.quick["chunks"] <= 2_000
    assert sc.quick["chunks"] * sc.quick["interval"] <= 0.5


def test_with_litellm_installs_it_with_this_interpreters_pip_only_when_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util
    import sys

    from benchmarks import suite

    calls: list[list[str]] = []

    def pip(status: int) -> Callable[[list[str]], int]:
        def run(cmd: list[str]) -> int:
            calls.append(cmd)
            return status

        return run

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert suite.ensure_litellm(pip(0)) is True
    assert calls == []  # already there: nothing installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert suite.ensure_litellm(pip(1)) is False
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet", "litellm"]]


def test_docs_and_readme_refuse_a_quick_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--only", "faults", "--docs", "docs/benchmarks.md"]) == 2
    assert "full run" in capsys.readouterr().err


def test_litellm_is_not_a_dependency_of_interlock() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())[
        "project"
    ]
    extras = project["optional-dependencies"].values()
    deps = [*project["dependencies"], *(d for ds in extras for d in ds)]
    assert not [d for d in deps if d.lower().startswith("litellm")]
