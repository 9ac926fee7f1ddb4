"""The python blocks of docs/endpoints.md's "Responses API" section run as written
against the fakes (each is a whole program ending in ``asyncio.run(main())``)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "endpoints.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def section_blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Responses API")
    end = text.find("\n## ", start + 1)
    return BLOCK.findall(text[start : end if end != -1 else len(text)])


@pytest.mark.parametrize("code", section_blocks(), ids=lambda c: c.split("async def main")[0][-40:])
def test_block_runs(code: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    assert out.getvalue().strip()


def test_the_section_has_its_examples() -> None:
    assert len(section_blocks()) == 4
