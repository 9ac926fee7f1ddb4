"""`Attempts` and `Attempt`: one attempt opened, ended exactly once, and recorded."""

from __future__ import annotations

import random

import pytest

from interlock import APITimeoutError, Deployment, HealthPolicy, InternalServerError, Usage
from interlock.health.retry_budget import RetryBudget
from interlock.health.tracker import HealthTracker
from interlock.observability.observer import Observer
from interlock.records.state import OPEN, DeploymentState
from interlock.router.attempt import Attempt, Attempts
from interlock.router.call_state import Call
from interlock.router.pool import DeploymentPool
from interlock.strategies import resolve_strategy
from interlock.testing import FakeClock
from interlock.types import Request

START = 100.0


def setup(timeout: float = 10.0) -> tuple[Attempts, DeploymentState, FakeClock]:
    clock = FakeClock(START)
    d = Deployment(group="g", model="m", id="g-0", timeout=timeout)
    state = DeploymentState(d, transport=None)  # type: ignore[arg-type]
    rng = random.Random(1)
    pool = DeploymentPool("g", [state], resolve_strategy("weighted", rng), rng)
    health = HealthTracker(HealthPolicy(), rng)
    health.attach([state])
    attempts = Attempts(clock, health, Observer(clock), {"g": pool}, {}, None)
    return attempts, state, clock


def call_of(clock: FakeClock, seconds: float) -> Call:
    request = Request("chat", "g", est_input_tokens=30, est_output_tokens=20, requested="g")
    now = clock.now()
    return Call(request, now + seconds, seconds, RetryBudget(0.2, 10, 10.0), ("g",), 3)


def test_begin_reserves_and_bounds_the_attempt_by_the_shorter_limit() -> None:
    attempts, state, clock = setup(timeout=10.0)
    long_call = attempts.begin(call_of(clock, 60.0), state, clock.now())
    assert isinstance(long_call, Attempt)
    assert (long_call.timeout, long_call.cut_by_deadline) == (10.0, False)
    assert (long_call.tokens, state.in_flight, state.requests) == (50, 1, 1)
    short_call = attempts.begin(call_of(clock, 4.0), state, clock.now())
    assert (short_call.timeout, short_call.cut_by_deadline) == (4.0, True)
    assert state.in_flight == 2


def test_succeeded_settles_once_and_records_one_success() -> None:
    attempts, state, clock = setup()
    attempt = attempts.begin(call_of(clock, 60.0), state, clock.now())
    clock.advance(0.25)
    attempt.succeeded(40, Usage(30, 10, 40))
    attempt.succeeded(40, Usage(30, 10, 40))  # a second end is a no-op
    assert (state.in_flight, state.successes, state.output_tokens) == (0, 1, 10)
    assert state.latency_ewma == pytest.approx(0.25)
    assert not attempt.open


def test_failed_releases_records_and_notes_it_on_the_call() -> None:
    attempts, state, clock = setup()
    call = call_of(clock, 60.0)
    attempt = attempts.begin(call, state, clock.now())
    clock.advance(0.5)
    error = InternalServerError("upstream 500", status_code=500, deployment_id="g-0")
    attempts.failed(call, attempt, error)
    assert (state.in_flight, state.failures) == (0, 1)
    assert call.last_error is error
    [record] = call.attempts
    assert record.deployment_id == "g-0"
    assert record.duration == pytest.approx(0.5)
    assert record.error.startswith("InternalServerError: upstream 500")


def test_a_timeout_cut_by_the_calls_deadline_is_not_held_against_the_deployment() -> None:
    attempts, state, clock = setup(timeout=10.0)
    call = call_of(clock, 2.0)
    attempt = attempts.begin(call, state, clock.now())
    assert attempt.cut_by_deadline
    clock.advance(2.0)
    attempts.failed(call, attempt, APITimeoutError("timed out", deployment_id="g-0"))
    assert (state.in_flight, state.failures, len(call.attempts)) == (0, 0, 1)


def test_aborted_releases_and_counts_nothing() -> None:
    attempts, state, clock = setup()
    attempt = attempts.begin(call_of(clock, 60.0), state, clock.now())
    attempts.aborted(attempt)
    assert (state.in_flight, state.failures, state.successes) == (0, 0, 0)
    assert state.requests == 1  # the request may have reached the provider


def test_a_half_open_deployment_gives_its_trial_slot_back_however_the_attempt_ends() -> None:
    attempts, state, clock = setup()
    state.circuit_mode = OPEN  # ejected, cooldown over: half-open
    for end in ("sent", "failed", "aborted"):
        call = call_of(clock, 60.0)
        attempt = attempts.begin(call, state, clock.now())
        assert attempt.trial
        assert state.circuit.trials == 1
        if end == "sent":
            attempts.sent(attempt)
            attempt.succeeded(None)
        elif end == "failed":
            attempts.failed(call, attempt, InternalServerError("500", status_code=500))
            state.circuit_mode = OPEN
            state.cooldown_until = 0.0
        else:
            attempts.aborted(attempt)
        assert state.circuit.trials == 0, end
