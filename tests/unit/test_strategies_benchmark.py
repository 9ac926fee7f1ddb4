"""The selection-cost benchmark runs end to end (figures are not asserted: speed is
measured by the benchmark, never by tests)."""

from __future__ import annotations

import pytest

from benchmarks.strategies import BASELINE, STRATEGIES, format_table, main, measure_strategies


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
