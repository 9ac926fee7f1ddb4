"""Every python block of docs/endpoints.md runs as written against the fakes (each in
its own interpreter, as a reader would run it), apart from the sections of other
features that test their own blocks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "endpoints.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
OWN = ("Images", "Audio", "Moderations", "Rerank", "Passthrough")


def blocks() -> list[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    out = []
    for m in BLOCK.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: m.start()], re.M)
        if headings and headings[-1].startswith(OWN):
            out.append((f"{headings[-1]} (line {text.count(chr(10), 0, m.start()) + 1})",
                        m.group(1)))  # fmt: skip
    return out


def test_every_endpoint_section_has_an_example() -> None:
    sections = {where.split(" (")[0].split(":")[0] for where, _ in blocks()}
    for name in OWN:
        assert any(s.startswith(name) for s in sections), f"no example under {name}"


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[w for w, _ in blocks()])
def test_block_runs(where: str, code: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{where} printed nothing"
