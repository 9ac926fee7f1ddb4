"""Every code block in README.md and docs/*.md runs as written.

- ```` ```python ```` blocks are run: each file's blocks in one subprocess (started
  in a fresh temporary directory, with a timeout), each block in a fresh namespace as
  a script of its own (``__name__ == "__main__"``), so a block must be complete: its
  imports, its fakes from `interlock.testing`, its ``asyncio.run(main())``.
- ```` ```json ```` blocks must parse; a JSON object with ``deployments`` is a full
  router configuration and is built with `Router.from_config` (not entered: no I/O),
  one with ``group`` and ``model`` is built as a `Deployment`. ```` ```yaml ```` blocks
  likewise, when PyYAML is installed.
- Shell (``bash``, ``sh``), ``text`` and untagged blocks are not run: they show
  commands and output.
- A python block that cannot run as written is marked ```` ```python notest ````
  (the marker pytest-markdown-docs uses) and must say why in the text around it.
  Blocks that need Redis start a throwaway `interlock.testing.RedisServer`; on a
  machine without ``redis-server`` they are skipped, like the suite's Redis tests.

A failure names the block by file and line (``docs/x.md:120``), and tracebacks point
at the markdown lines themselves.

Why not pytest-markdown-docs itself: it runs the blocks inside the test process.
Blocks here set environment variables (proxies), register strategies in the global
registry and start servers; a subprocess per file keeps all of that out of the suite
and lets a hung block be killed by a timeout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from interlock import Deployment, Router

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
TIMEOUT = 60.0
"""Seconds one file's blocks may take together."""

# Runs in the subprocess: argv = [file, first line, ...]; reads the blocks as JSON on
# stdin, runs each, prints one JSON line per block.
_DRIVER = r"""
import json, sys, traceback
blocks = json.load(sys.stdin)
for path, line, code in blocks:
    ns = {"__name__": "__main__", "__file__": path}
    try:
        # Padding puts each statement on its markdown line in tracebacks.
        exec(compile("\n" * line + code, path, "exec"), ns)
    except BaseException as exc:
        if type(exc).__name__ == "RedisServerError":  # no redis-server on this machine
            result = {"line": line, "ok": True, "skip": str(exc)}
        else:
            result = {"line": line, "ok": False, "error": traceback.format_exc(limit=-8)}
    else:
        result = {"line": line, "ok": True}
    sys.stdout.write("\x1e" + json.dumps(result) + "\n")
    sys.stdout.flush()
"""


def fences(path: Path) -> list[tuple[str, int, str]]:
    """``(info string, line of the opening fence, code)`` of each fenced block."""
    text = path.read_text(encoding="utf-8")
    return [
        (m.group(1).strip(), text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in FENCE.finditer(text)
    ]


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def python_blocks() -> list[tuple[Path, int]]:
    return [
        (path, line)
        for path in FILES
        for info, line, _ in fences(path)
        if info.split()[:1] == ["python"] and "notest" not in info.split()
    ]


def data_blocks() -> list[tuple[Path, int, str, str]]:
    return [
        (path, line, info, code)
        for path in FILES
        for info, line, code in fences(path)
        if info in ("json", "yaml", "yml")
    ]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    # The checkout's package first, whatever the current directory is.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HOME"] = str(tmp)
    return env


@cache
def run_all() -> dict[Path, dict[int, dict[str, Any]]]:
    """Every file's blocks, files side by side (each waits mostly on its own
    interpreter's start and imports)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(FILES, pool.map(run_file, FILES), strict=True))


def run_file(path: Path) -> dict[int, dict[str, Any]]:
    """Run every python block of `path` in one fresh interpreter; results by line."""
    blocks = [
        (_name(path), line, code)
        for info, line, code in fences(path)
        if info.split()[:1] == ["python"] and "notest" not in info.split()
    ]
    with tempfile.TemporaryDirectory(prefix="interlock-docs-") as tmp:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _DRIVER],
                input=json.dumps(blocks),
                capture_output=True,
                text=True,
                cwd=tmp,
                env=_env(Path(tmp)),
                timeout=TIMEOUT,
            )
            out, err = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = f"the blocks of this file took more than {TIMEOUT:g} s"
    results: dict[int, dict[str, Any]] = {}
    for chunk in out.split("\x1e")[1:]:
        record = json.loads(chunk.splitlines()[0])
        results[record["line"]] = record
    died = f"this block hung or ended the interpreter:\n{err[-3000:]}"
    for _, line, _ in blocks:
        if line not in results:
            results[line] = {"ok": False, "error": died}
            died = "not run: an earlier block of this file hung or ended the interpreter"
    return results


@pytest.mark.parametrize(
    ("path", "line"),
    python_blocks(),
    ids=[f"{_name(p)}:{n}" for p, n in python_blocks()],
)
def test_python_block_runs(path: Path, line: int) -> None:
    result = run_all()[path][line]
    if result.get("skip"):
        pytest.skip(f"{_name(path)}:{line}: {result['skip']}")
    if not result["ok"]:
        pytest.fail(f"{_name(path)}:{line}: the python block failed\n{result['error']}")


@pytest.mark.parametrize(
    ("path", "line", "info", "code"),
    data_blocks(),
    ids=[f"{_name(p)}:{n}" for p, n, _, _ in data_blocks()],
)
def test_data_block_loads(
    path: Path, line: int, info: str, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = f"{_name(path)}:{line}"
    # Config examples name their secrets by reference, as real configs should; the
    # reader only needs each variable to exist.
    for name in re.findall(r"os\.environ/(\w+)|\$\{(\w+)", code):
        monkeypatch.setenv(name[0] or name[1], "placeholder-secret")
    if info == "json":
        try:
            data = json.loads(code)
        except json.JSONDecodeError as exc:
            pytest.fail(f"{where}: not valid JSON: {exc}")
    else:
        yaml = pytest.importorskip("yaml")
        data = yaml.safe_load(code)
    if isinstance(data, dict) and "deployments" in data:
        Router.from_config(data)
    elif isinstance(data, dict) and {"group", "model"} <= data.keys():
        Deployment.model_validate(data)


def test_fences_are_found() -> None:
    """The extraction itself: a changed fence style must not make the suite vacuous."""
    assert len(python_blocks()) >= 30
    assert all(path.exists() for path in FILES)


def test_a_failing_block_is_named_by_file_and_line(tmp_path: Path) -> None:
    """The runner itself: results by line, the traceback on the markdown's own lines,
    later blocks still run, a ``notest`` block is left out."""
    doc = tmp_path / "x.md"
    doc.write_text(
        "# x\n\n```python\nx = 1\n```\n\ntext\n\n```python\n"
        "y = 2\nraise ValueError('boom')\n```\n\n```python notest\nnot python\n```\n"
        "\n```python\nimport os\nprint(os.getcwd())\n```\n",
        encoding="utf-8",
    )
    results = run_file(doc)
    assert sorted(results) == [3, 9, 18]  # the lines of the opening fences
    assert results[3]["ok"]
    assert results[18]["ok"]
    assert not results[9]["ok"]
    assert f'File "{doc}", line 11' in results[9]["error"]
    assert "ValueError: boom" in results[9]["error"]
