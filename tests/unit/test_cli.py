"""The command line's own options (the demo and bench commands are tested in
tests/integration/test_demo.py and tests/integration/bench)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import interlock
from interlock.cli import main, version

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"interlock {importlib.metadata.version('interlock')}"
    assert version() == importlib.metadata.version("interlock")
    # The literal in the package (read without the metadata) says the same.
    assert interlock.__version__ == version()


def test_version_from_the_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "interlock", "--version"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("interlock ")
    assert proc.stdout.split()[1][0].isdigit()


def test_a_missing_distribution_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert version() == "unknown (not installed)"
