"""The selection-cost benchmark runs end to end (figures are not asserted: speed is
measured by the benchmark, never by tests)."""

from __future__ import annotations

import pytest

from benchmarks.strategies import (
    BASELINE,
    STRATEGIES,
    StrategyCost,
    format_table,
    main,
    measure_strategies,
    targets_headline,
)


def test_measure_strategies_covers_every_strategy_and_size() -> None:
    result = measure_strategies(sizes=(4, 50), picks=200, rounds=1)
    assert {(r.strategy, r.deployments) for r in result.rows} == {
        (name, n) for name in (*STRATEGIES, BASELINE) for n in (4, 50)
    }
    assert all(r.us_per_pick > 0 for r in result.rows)
    assert result.reference_ns > 0
    table = format_table(result)
    assert "| `p2c-ewma` |" in table
    assert "50 deployments" in table


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sizes", "4", "--picks", "100", "--rounds", "1", "--strategies", "cost"]) == 0
    out = capsys.readouterr().out
    assert "| `cost` |" in out
    assert "(accounting only)" in out


def test_targets_headline_names_the_slowest_and_who_missed() -> None:
    rows = [
        StrategyCost("weighted", 4, 1.9, 1.0),
        StrategyCost("latency", 4, 3.0, 1.0),
        StrategyCost(BASELINE, 4, 9.0, 0.0),  # not a strategy: never the "slowest"
        StrategyCost("weighted", 10_000, 3.8, 1.1),
        StrategyCost("latency", 10_000, 10.5, 3.2),
        StrategyCost("weighted", 100, 50.0, 1.1),  # no target at 100
    ]
    assert targets_headline(rows) == (
        "at 4: slowest latency 3.00 µs (target <= 5 µs: all met); "
        "at 10,000: slowest latency 10.50 µs (target <= 10 µs: missed by latency)"
    )
    assert "no target pool size" in targets_headline(rows[-1:])


def test_main_prints_the_targets_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sizes", "4", "--picks", "100", "--rounds", "1", "--strategies", "cost"]) == 0
    assert "targets: at 4: slowest cost" in capsys.readouterr().out
