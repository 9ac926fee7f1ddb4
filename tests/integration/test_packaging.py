"""The wheel carries the benchmark suite as interlock.bench, and it runs from there.

The wheels are built offline with hatchling's PEP 517 hooks (the ones pip calls),
in a child process because the hooks build whatever project is in the working
directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _build(hook: str, directory: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys, hatchling.build as b; print(getattr(b, sys.argv[1])(sys.argv[2]))",
         hook, str(directory)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return directory / proc.stdout.split()[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build("build_wheel", tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_the_suite_inside_the_package_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"interlock", "interlock-0.1.0.dist-info"}
    shipped = {n for n in names if n.startswith("interlock/bench/")}
    sources = {f"interlock/bench/{p.name}" for p in (ROOT / "benchmarks").glob("*.py")}
    assert "interlock/bench/suite.py" in sources
    assert shipped == sources


def test_editable_install_exposes_the_checkout(tmp_path: Path) -> None:
    # What dev.py's `pip install -e` gets: the checkout on sys.path (where the
    # suite is `benchmarks`) and no copied files to go stale.
    editable = zipfile.ZipFile(_build("build_editable", tmp_path))
    pth = [n for n in editable.namelist() if n.endswith(".pth")]
    assert len(pth) == 1
    assert editable.read(pth[0]).decode().split() == [str(ROOT)]
    assert not [n for n in editable.namelist() if n.startswith("interlock/")]


def test_interlock_bench_runs_from_the_unpacked_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # A user's own top-level `benchmarks` package in the working directory, which
    # `python -m` puts first on sys.path: the installed suite must never reach it,
    # in this process or in the upstream process it starts.
    work = tmp_path / "work"
    (work / "benchmarks").mkdir(parents=True)
    (work / "benchmarks" / "__init__.py").write_text(
        "raise ImportError('the installed suite imported the top-level benchmarks package')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import interlock; print(interlock.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(site), where.stderr
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "interlock", "bench", "--quick", "--only", "faults",
         "--json", str(out)],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = json.loads(out.read_text())["scenarios"]["faults"]
    assert "error" not in entry
    assert [row["failing_pct"] for row in entry["result"]["rows"]] == [0, 10, 50, 100]
