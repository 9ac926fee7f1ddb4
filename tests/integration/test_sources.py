"""The configuration.md examples for YAML files and secret references run as written,
against a real FakeUpstream on 127.0.0.1 (OpenAI chat completions,
https://platform.openai.com/docs/api-reference/chat/create)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def section_blocks(heading: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)


@pytest.mark.parametrize("heading", ["### JSON and YAML files", "### Secret references"])
def test_configuration_examples_run(
    heading: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("EXAMPLE_KEY", "EXAMPLE_BASE", "EXAMPLE_TEAM"):
        # setenv first, so the variables the block sets are removed again afterwards.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    (code,) = section_blocks(heading)
    namespace: dict[str, Any] = {"__name__": "example"}
    exec(compile(code, heading, "exec"), namespace)  # the block runs asyncio.run itself
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Hello from FakeUpstream."
    if heading.endswith("files"):
        assert re.fullmatch(r"deployments\[0\]\.rpm: must be > 0 \(.*bad\.yaml, line 4\)", out[1])
    else:
        assert out[1] == "search"
