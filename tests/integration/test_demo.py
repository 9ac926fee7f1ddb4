"""The main job: `interlock demo` over three local fake upstreams."""

from __future__ import annotations

import pytest

from interlock.cli import main
from interlock.demo import run_demo


async def test_demo_serves_every_request_and_prints_the_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await run_demo(requests=60, concurrency=8, seed=3)
    out = capsys.readouterr().out
    assert code == 0  # in flight returned to 0
    for name in ("demo-healthy", "demo-flaky", "demo-slow"):
        assert name in out
    assert "60/60 requests succeeded" in out
    assert "in flight at the end: 0" in out
    assert "sk-demo" not in out  # the demo's key never reaches the output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--requests", "0"], "--requests and --concurrency must be >= 1"),
        (["demo", "--strategy", "nope"], "unknown strategy 'nope'"),
    ],
)
def test_demo_rejects_bad_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
