"""The python blocks of docs/operations.md's sections on runtime changes run as
written (each in a fresh interpreter, against the fakes and a redis-server)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "operations.md"
SECTIONS = ("Changing deployments at runtime", "Rolling a change out to several processes")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    out = []
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        title = part.splitlines()[0].strip()
        if title in SECTIONS:
            out += [
                (f"{title} (block {n})", m.group(1)) for n, m in enumerate(BLOCK.finditer(part), 1)
            ]
    return out


def test_both_sections_have_blocks() -> None:
    assert {w.split(" (block")[0] for w, _ in blocks()} == set(SECTIONS)


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[w for w, _ in blocks()])
async def test_block_runs(where: str, code: str, tmp_path: Path) -> None:
    if "RedisServer" in code and shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"{where}:\n{err.decode()[-3000:]}"
