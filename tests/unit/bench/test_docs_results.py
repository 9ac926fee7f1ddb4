"""`benchmarks/docs_results.py`: one run's figures written between markers, nothing else touched."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.docs_results import (
    DOCS_MARKERS,
    README_MARKERS,
    replace_between,
    update_docs,
    update_readme,
)
from benchmarks.suite import Outcome, Scenario


@dataclass(frozen=True)
class _Result:
    ratio: float
    headline: str


def _run(quick: bool = False) -> dict[str, Any]:
    env = {
        "started_at": "2026-12-06T21:00:00+0000",
        "platform": "Linux-test",
        "cpu_count": 2,
        "implementation": "CPython",
        "python": "3.11.7",
        "aiohttp": "3.14.5",
        "litellm": "1.110.2",
        "uvloop": None,
        "load_average": [0.4, 0.3, 0.2],
        "quick": quick,
    }
    return {"environment": env, "scenarios": {}, "seconds": 321.0}


def _outcomes(img: Path) -> list[Outcome]:
    png = img / "overhead.png"
    return [
        Outcome(
            Scenario("overhead", "Overhead", "x:y"),
            12.5,
            _Result(0.93, "Router 0.93x raw"),
            plots=(str(png),),
        ),
        Outcome(Scenario("vs-litellm", "Versus", "x:y"), 0.0, skipped="litellm not installed"),
        Outcome(Scenario("faults", "Faults", "x:y"), 1.0, error="Traceback ..."),
    ]


def test_replace_between_replaces_only_the_marked_region() -> None:
    text = f"before\n{DOCS_MARKERS[0]}\nold figures\n{DOCS_MARKERS[1]}\nafter\n"
    out = replace_between(text, DOCS_MARKERS, "new figures")
    assert out == f"before\n{DOCS_MARKERS[0]}\nnew figures\n{DOCS_MARKERS[1]}\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        replace_between("no markers here", DOCS_MARKERS, "x")


def test_update_docs_writes_every_scenario_of_the_run(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    doc.write_text(f"# Benchmarks\n\n{DOCS_MARKERS[0]}\nstale\n{DOCS_MARKERS[1]}\n\nkept\n")
    update_docs(doc, _run(), _outcomes(tmp_path / "docs" / "img"))
    text = doc.read_text()
    assert "stale" not in text
    assert text.startswith("# Benchmarks")
    assert text.rstrip().endswith("kept")
    assert "2026-12-06T21:00:00+0000" in text
    assert "litellm 1.110.2" in text
    assert "uvloop not installed" in text
    assert "overhead: Router 0.93x raw" in text  # the summary
    assert any(line.split() == ["ratio", "0.93"] for line in text.splitlines())  # the table
    assert "![overhead](img/overhead.png)" in text  # relative to the page
    assert "Skipped: litellm not installed." in text
    assert "Failed in this run" in text


def test_update_readme_quotes_the_headlines_with_date_machine_and_charts(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_MARKERS[0]}\nold\n{README_MARKERS[1]}\nrest\n")
    update_readme(readme, _run(), _outcomes(tmp_path / "docs" / "img"))
    text = readme.read_text()
    assert "old" not in text
    assert "2026-12-06T21:00:00+0000" in text
    assert "2-CPU Linux-test" in text
    assert "- overhead: Router 0.93x raw" in text
    assert "[overhead](docs/img/overhead.png)" in text


def test_a_quick_run_is_never_written_into_the_docs(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text(f"{DOCS_MARKERS[0]}\n{DOCS_MARKERS[1]}\n")
    with pytest.raises(ValueError, match="full run"):
        update_docs(doc, _run(quick=True), [])
    readme = tmp_path / "R.md"
    readme.write_text(f"{README_MARKERS[0]}\n{README_MARKERS[1]}\n")
    with pytest.raises(ValueError, match="full run"):
        update_readme(readme, _run(quick=True), [])
