"""Log lines and error messages from real upstream errors: keys are removed from the
text that came from the upstream, and nothing else is altered (issue 15, point 7)."""

from __future__ import annotations

import logging

import pytest

from interlock import Deployment, HealthPolicy, InternalServerError, RetryPolicy, Router
from interlock.testing import FakeClock, FakeUpstream, Fault

MESSAGES = [{"role": "user", "content": "hi"}]
# What Ollama answers when it fails without a more specific message (api/types.go,
# StatusError.Error), through its OpenAI-compatible /v1.
OLLAMA_500 = "something went wrong, please see the ollama server logs for details"
ONE_TRY = RetryPolicy(max_attempts=1)
EJECT_AT_ONCE = HealthPolicy(allowed_fails=1, panic_threshold=0.0)


def cooldown_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "cooldown"]


async def test_ollamas_placeholder_key_alters_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="interlock")
    async with FakeUpstream(name="ollama") as up:
        up.always(Fault.status(500, OLLAMA_500, error_type="api_error"))
        router = Router(
            [
                Deployment(
                    group="llama3",
                    provider="ollama",
                    model="llama3",
                    id="ollama-llama3-0",
                    api_base=up.url,
                    api_key="ollama",
                )
            ],
            clock=FakeClock(),
            retry=ONE_TRY,
            health=EJECT_AT_ONCE,
        )
        async with router:
            with pytest.raises(InternalServerError) as exc:
                await router.acompletion("llama3", MESSAGES)
    expected = f"ollama returned HTTP 500: {OLLAMA_500} (deployment=ollama-llama3-0, status=500"
    assert str(exc.value).startswith(expected)
    (line,) = cooldown_lines(caplog)
    assert line.getMessage() == (
        "cooldown: ollama-llama3-0 (group llama3) out of rotation for 10 s (ejection #1) after "
        f"InternalServerError (status 500): {expected})"
    )
    assert "[redacted]" not in caplog.text
    assert (line.group, line.deployment) == ("llama3", "ollama-llama3-0")  # type: ignore[attr-defined]


async def test_a_real_key_in_upstream_text_is_removed_and_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="interlock")
    key = "sk-proj-Qm8vX2kLr7TzP4nW"
    async with FakeUpstream(name="gw") as up:
        # a gateway that echoes the key it was given (OpenAI itself masks it)
        up.always(Fault.status(500, f"upstream rejected key {key} for model gpt-4o"))
        router = Router(
            [
                Deployment(
                    group="gpt-4o", model="gpt-4o", id="gw-gpt-4o", api_base=up.url, api_key=key
                )
            ],
            clock=FakeClock(),
            retry=ONE_TRY,
            health=EJECT_AT_ONCE,
        )
        async with router:
            with pytest.raises(InternalServerError) as exc:
                await router.acompletion("gpt-4o", MESSAGES)
    expected = (
        "openai returned HTTP 500: upstream rejected key [redacted] for model "
        "gpt-4o (deployment=gw-gpt-4o, status=500"
    )
    assert str(exc.value).startswith(expected)
    (line,) = cooldown_lines(caplog)
    assert expected in line.getMessage()
    assert key not in caplog.text
    assert key not in repr([r.__dict__ for r in caplog.records])
