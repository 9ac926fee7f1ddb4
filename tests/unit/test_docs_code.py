"""Every ```python block in README.md and docs/ is valid Python (top-level ``await``
allowed, as the examples use it inside a running router).

This compiles the blocks; it does not run them: many need a router and a model
group set up by the surrounding text. Running them against the fakes is what
issue #17 asks for next.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    out = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for n, m in enumerate(BLOCK.finditer(text), 1):
            line = text.count("\n", 0, m.start()) + 1
            out.append((f"{path.relative_to(ROOT)}:{line} (block {n})", m.group(1)))
    return out


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[w for w, _ in blocks()])
def test_python_blocks_compile(where: str, code: str) -> None:
    try:
        compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        pytest.fail(f"{where}: {exc.msg} (line {exc.lineno} of the block)")
