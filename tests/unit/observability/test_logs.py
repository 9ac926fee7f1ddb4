"""Log lines: one per retry/fallback/cooldown/recovery at INFO, none per success, no keys."""

from __future__ import annotations

import logging

import pytest

from interlock import (
    Deployment,
    HealthPolicy,
    InterlockError,
    InternalServerError,
    RateLimitError,
    Router,
)
from interlock.errors import MIN_SECRET_LENGTH
from interlock.observability.logs import Redactor
from interlock.testing import FakeClock, InstantTransport

MSG = [{"role": "user", "content": "hi"}]
KEY_A = "sk-log-secret-AAAA1111"
KEY_B = "sk-log-secret-BBBB2222"

# These tests are about events and metrics, not panic mode or the ejection cap
# (docs/resilience.md): with one-deployment pools those would keep a down deployment
# in rotation. Keep the plain "N failures cool it" behaviour.
CLASSIC: dict[str, float] = {"panic_threshold": 0.0, "max_ejected_share": 1.0}


# Priced (free) so that no price warning joins the lines under test (docs/operations.md).
FREE: dict[str, float] = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}


def make(clock: FakeClock, transport: InstantTransport) -> Router:
    return Router(
        [
            Deployment(group="a", model="m", provider="instant", id="a-0", api_key=KEY_A, **FREE),
            Deployment(group="b", model="m", provider="instant", id="b-0", api_key=KEY_B, **FREE),
        ],
        transports={"instant": transport},
        clock=clock,
        fallbacks={"a": ["b"]},
        retry={"max_attempts": 2, "max_wait": 0},
        health=HealthPolicy(allowed_fails=1, cooldown=10.0, **CLASSIC),
    )


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(r, "event", "?") for r in caplog.records if r.name.startswith("interlock")]


async def test_one_info_line_per_event_none_per_success(caplog: pytest.LogCaptureFixture) -> None:
    clock, transport = FakeClock(), InstantTransport()
    router = make(clock, transport)
    caplog.set_level(logging.DEBUG, logger="interlock")
    try:
        for _ in range(5):
            await router.acompletion("a", MSG)
        assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []

        # a-0 fails (cooldown), the request falls back to b.
        transport.fail("a-0", InternalServerError("boom", status_code=502))
        await router.acompletion("a", MSG)
        assert events(caplog) == ["cooldown", "fallback"]
        cool, fb = caplog.records
        assert cool.levelno == fb.levelno == logging.INFO
        assert cool.name == "interlock.health"
        assert fb.name == "interlock.router"
        assert (cool.deployment, cool.group, cool.cooldown_seconds) == ("a-0", "a", 10.0)  # type: ignore[attr-defined]
        assert (cool.error_type, cool.status_code) == ("InternalServerError", 502)  # type: ignore[attr-defined]
        assert (fb.group, fb.to_group, fb.attempt) == ("a", "b", 1)  # type: ignore[attr-defined]
        assert "a -> b" in fb.getMessage()

        caplog.clear()
        clock.advance(11.0)
        await router.acompletion("a", MSG)
        assert events(caplog) == ["recovery"]
        assert caplog.records[0].down_for == pytest.approx(11.0)  # type: ignore[attr-defined]
    finally:
        await router.aclose()


async def test_retry_and_refusal_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock, transport = FakeClock(), InstantTransport()
    router = Router(
        [
            Deployment(group="g", model="m", provider="instant", id=f"g-{i}", **FREE)
            for i in range(2)
        ],
        transports={"instant": transport},
        clock=clock,
        seed=1,
        retry={"max_attempts": 2, "max_wait": 0},
        health=HealthPolicy(allowed_fails=5, **CLASSIC),
    )
    caplog.set_level(logging.INFO, logger="interlock")
    try:
        first = InternalServerError("boom", status_code=500)
        transport.fail("g-0", first)
        transport.fail("g-1", first)
        with pytest.raises(InternalServerError):
            await router.acompletion("g", MSG)
        assert events(caplog) == ["retry"]
        assert caplog.records[0].attempt == 2  # type: ignore[attr-defined]

        caplog.clear()
        router2 = Router(
            [Deployment(group="z", model="m", provider="instant", max_concurrency=1, **FREE)],
            transports={"instant": transport},
            clock=clock,
        )
        router2.parts.states[0].in_flight = 1  # at its cap: nothing can serve the request
        with pytest.raises(RateLimitError):
            await router2.acompletion("z", MSG)
        assert events(caplog) == ["refused"]
        assert "concurrency cap" in caplog.records[0].getMessage()
        router2.parts.states[0].in_flight = 0
        await router2.aclose()
    finally:
        await router.aclose()


async def test_keys_never_reach_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """Even when a user's call function puts the key into an error message."""
    clock, transport = FakeClock(), InstantTransport()
    router = make(clock, transport)
    caplog.set_level(logging.DEBUG, logger="interlock")

    async def leaky(d: Deployment) -> str:
        raise InternalServerError(f"upstream said: bad key {d.api_key_value()}", status_code=500)

    try:
        with pytest.raises(InterlockError):
            await router.call("a", leaky)
        assert events(caplog) == ["cooldown", "fallback", "cooldown"]
        for r in caplog.records:
            text = r.getMessage() + " " + repr(r.__dict__)
            assert KEY_A not in text
            assert KEY_B not in text
            if getattr(r, "error", None):
                assert "[redacted]" in r.error  # type: ignore[attr-defined]
    finally:
        await router.aclose()


def test_redactor_replaces_every_secret_longest_first() -> None:
    r = Redactor(["sk-abcdefgh", "sk-abcdefgh-1234", None, ""])
    assert r("x sk-abcdefgh-1234 y sk-abcdefgh") == "x [redacted] y [redacted]"
    assert "sk-hidden" not in repr(Redactor(["sk-hidden"]))


def test_keys_shorter_than_eight_characters_are_not_secrets() -> None:
    # Ollama's usual placeholder key is also its name, and vLLM's is a plain word.
    r = Redactor(["ollama", "EMPTY"])
    line = (
        "ollama returned HTTP 500: something went wrong, please see the ollama server logs "
        "for details (deployment=ollama-llama3-0, status=500) EMPTY"
    )
    assert r(line) == line
    assert MIN_SECRET_LENGTH == 8
    assert Redactor(["12345678"])("key 12345678") == "key [redacted]"


def test_the_routers_own_names_are_never_altered() -> None:
    key = "team-a-key-0001"
    # a deployment named after its key (an odd choice, but the name is the router's)
    r = Redactor([key], keep=["eu-team-a-key-0001", "http://127.0.0.1:8000/v1"])
    assert r(f"upstream echoed {key} (deployment=eu-team-a-key-0001)") == (
        "upstream echoed [redacted] (deployment=eu-team-a-key-0001)"
    )
    # outside the name, the same key is removed
    assert r(f"{key}-east") == "[redacted]-east"


def test_the_interlock_logger_has_a_null_handler() -> None:
    # An application that configured no logging must not get logging's last-resort
    # handler printing the router's warnings to stderr.
    import logging
    import subprocess
    import sys

    import interlock  # noqa: F401  (the package sets it up on import)

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("interlock").handlers)
    code = (
        "import logging, interlock\n"
        "logging.getLogger('interlock.router').warning('should not be printed')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0
    assert "should not be printed" not in proc.stderr
