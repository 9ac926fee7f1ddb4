#!/usr/bin/env python3
"""Project tasks that work on a fresh machine with only Python >= 3.11.

    python3 dev.py demo        the main job: a Router over three local fake upstreams
    python3 dev.py test        the whole test suite (unit + integration)
    python3 dev.py lint        ruff
    python3 dev.py typecheck   mypy --strict
    python3 dev.py bench ...   the benchmark suite (arguments go to `interlock bench`;
                               --with-litellm / --with-uvloop install those into .venv)

The first run creates ./.venv and installs the package with its dev extras into it;
later runs reuse it (reinstalling when pyproject.toml changes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".interlock-installed"


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - a clear message on an old Python
        sys.exit(f"interlock needs Python >= 3.11; this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    extras = "dev,redis,plot,bedrock,vertex,azure,otel"
    print(f"dev.py: installing interlock[{extras}] into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", f"{ROOT}[{extras}]"], check=True)
    STAMP.write_text(digest)


def run(*cmd: str) -> int:
    return subprocess.call(list(cmd), cwd=ROOT)


def main(argv: list[str]) -> int:
    task = argv[0] if argv else "help"
    rest = argv[1:]
    if task in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    ensure_env()
    py = str(BIN / "python")
    if task == "demo":
        return run(py, "-m", "interlock", "demo", *rest)
    if task == "bench":
        return run(py, "-m", "interlock", "bench", *rest)
    if task == "test":
        return run(py, "-m", "pytest", *rest)
    if task == "lint":
        return run(py, "-m", "ruff", "check", ".") or run(
            py, "-m", "ruff", "format", "--check", "."
        )
    if task == "typecheck":
        return run(py, "-m", "mypy")
    print(f"dev.py: unknown task {task!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
