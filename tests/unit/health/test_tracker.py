"""`interlock/health/tracker.py`: ejection, recovery, panic and slow start, on fake time."""

from __future__ import annotations

import random

import pytest

from interlock import Deployment, HealthPolicy
from interlock.errors import (
    AccountError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    DeploymentNotFoundError,
    InterlockError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)
from interlock.failures import FailureKind
from interlock.health import (
    HealthTracker,
    health_state,
    is_available,
)
from interlock.providers.openai import OpenAITransport
from interlock.records.state import DeploymentState, Ejection

T0 = 1000.0


def states(n: int, policy: HealthPolicy) -> tuple[HealthTracker, list[DeploymentState]]:
    transport = OpenAITransport.__new__(OpenAITransport)
    ss = [
        DeploymentState(Deployment(group="g", model="m", id=f"d{i}"), transport) for i in range(n)
    ]
    tracker = HealthTracker(policy, random.Random(1))
    tracker.attach(ss)
    return tracker, ss


def policy(**kw: object) -> HealthPolicy:
    base: dict[str, object] = {
        "allowed_fails": 3,
        "cooldown": 10.0,
        "cooldown_max": 35.0,
        "failure_rate_threshold": None,
        "half_open_successes": 2,
        "max_ejected_share": 1.0,
        "panic_threshold": 0.0,
    }
    base.update(kw)
    return HealthPolicy(**base)


def test_consecutive_failures_eject_and_success_resets() -> None:
    tracker, (s,) = states(1, policy())
    for _ in range(2):
        assert tracker.failure(s, InternalServerError("x"), T0) == 0
    tracker.success(s, 0.1, T0)
    for _ in range(2):
        tracker.failure(s, InternalServerError("x"), T0)
    assert is_available(s, T0)
    assert tracker.failure(s, APITimeoutError("x"), T0) == 10.0
    assert not is_available(s, T0 + 9.9)
    assert health_state(s, T0 + 5) == "cooling"


def test_caller_errors_are_not_held_against_a_deployment() -> None:
    tracker, (s,) = states(1, policy(allowed_fails=1))
    for e in (BadRequestError("x"), NotFoundError("x"), ContextWindowExceededError("x")):
        assert tracker.failure(s, e, T0) == 0
    assert s.failures == 0
    assert is_available(s, T0)


def test_per_kind_allowance_is_counted_apart() -> None:
    tracker, (s,) = states(1, policy(allowed_fails=2, allowed_fails_by_kind={"timeout": 4}))
    for _ in range(3):
        assert tracker.failure(s, APITimeoutError("x"), T0) == 0
    assert tracker.failure(s, InternalServerError("x"), T0) == 0
    assert tracker.failure(s, APITimeoutError("x"), T0) > 0


def test_failure_rate_trigger_needs_minimum_requests() -> None:
    p = policy(
        allowed_fails=100,
        failure_rate_threshold=0.5,
        failure_rate_min_requests=10,
        failure_rate_window=60,
    )
    tracker, (s,) = states(1, p)
    for i in range(4):  # alternating: consecutive count never builds up
        tracker.success(s, 0.1, T0 + i)
        assert tracker.failure(s, InternalServerError("x"), T0 + i) == 0
    tracker.success(s, 0.1, T0 + 5)
    # 10 outcomes, 5 failures: the rate trips only now.
    assert tracker.failure(s, InternalServerError("x"), T0 + 5) > 0


def test_retry_after_sets_a_429_cooldown_and_nothing_shortens_it() -> None:
    tracker, (s,) = states(1, policy())
    assert tracker.failure(s, RateLimitError("x", retry_after=30), T0) == 30
    tracker.failure(s, RateLimitError("x", retry_after=1), T0 + 1)
    assert s.cooldown_until == T0 + 30
    tracker.failure(s, RateLimitError("x", retry_after=5000), T0 + 2)
    assert s.cooldown_until == T0 + 2 + 600  # max_retry_after caps a broken header


def test_repeated_ejections_last_longer_up_to_the_cap() -> None:
    tracker, (s,) = states(1, policy(allowed_fails=1, half_open_successes=1))
    now = T0
    lengths = []
    for _ in range(5):
        lengths.append(tracker.failure(s, InternalServerError("x"), now))
        now = s.cooldown_until
        assert health_state(s, now) == "half_open"
    assert lengths == [10, 20, 30, 35, 35]
    # A success closes it; after cooldown_max of health the multiplier starts over.
    assert tracker.begin_attempt(s, now)
    tracker.end_trial(s)
    tracker.success(s, 0.1, now)
    assert health_state(s, now) == "healthy"
    assert tracker.failure(s, InternalServerError("x"), now + 36) == 10


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("x", status_code=401),
        DeploymentNotFoundError("x", status_code=404),
        AccountError("x", status_code=400),
    ],
    ids=["401", "404", "credit"],
)
def test_a_deployment_scoped_4xx_ejects_at_once_for_longer_each_time(
    error: InterlockError,
) -> None:
    p = policy(
        allowed_fails=1,
        auth_cooldown=60.0,
        cooldown_max=150.0,
        max_ejected_share=0.5,
        half_open_successes=1,
    )
    tracker, (s, other) = states(2, p)
    # the other half of the pool is out already: the ejection cap is reached, and still
    # the provider's word takes this one out too
    assert tracker.failure(other, InternalServerError("x"), T0) == 10
    now = T0
    lengths = []
    for _ in range(4):
        lengths.append(tracker.failure(s, error, now))
        assert not is_available(s, now)
        now = s.cooldown_until
        assert health_state(s, now) == "half_open"  # a trial decides whether it is fixed
    assert lengths == [60, 120, 150, 150]  # auth_cooldown x n, up to cooldown_max
    assert s.failures == 4
    # a fixed deployment: one good trial closes it, and after cooldown_max the count
    # starts over
    assert tracker.begin_attempt(s, now)
    tracker.end_trial(s)
    tracker.success(s, 0.1, now)
    assert health_state(s, now) == "healthy"
    assert tracker.failure(s, error, now + 151) == 60


def test_a_late_deployment_scoped_answer_does_not_stretch_the_ejection() -> None:
    tracker, (s,) = states(1, policy(auth_cooldown=60.0))
    assert tracker.failure(s, AuthenticationError("x", status_code=401), T0) == 60
    # a request sent before the ejection comes back with the same 401
    assert tracker.failure(s, AuthenticationError("x", status_code=401), T0 + 1) == 0
    assert s.cooldown_until == T0 + 60
    assert s.circuit.streak == 1


def test_each_ejection_records_its_error_without_the_message() -> None:
    tracker, (s,) = states(1, policy(allowed_fails=1, auth_cooldown=60.0))
    assert s.ejected_by is None
    tracker.failure(s, InternalServerError("boom sk-secret", status_code=502), T0)
    assert s.ejected_by == Ejection(
        "InternalServerError", 502, FailureKind.SERVER_ERROR, T0, T0 + 10
    )
    tracker.failure(s, AuthenticationError("bad key", status_code=401), T0 + 1)
    assert s.ejected_by == Ejection(
        "AuthenticationError", 401, FailureKind.BAD_CREDENTIALS, T0 + 1, T0 + 61
    )
    assert s.ejected_by is not None
    assert s.ejected_by.describe() == "AuthenticationError (401)"
    # a 429 whose cooldown ends earlier than the running one leaves the record alone
    tracker.failure(s, RateLimitError("slow down", retry_after=5), T0 + 2)
    assert (s.ejected_by.error_type, s.ejected_by.at) == ("AuthenticationError", T0 + 1)
    # it outlives the cooldown: statistics still say what happened last
    tracker.success(s, 0.1, T0 + 100)
    assert (s.ejected_by.error_type, s.ejected_by.at) == ("AuthenticationError", T0 + 1)


def test_half_open_limits_trials_and_needs_k_successes() -> None:
    tracker, (s,) = states(1, policy(allowed_fails=1))
    tracker.failure(s, InternalServerError("x"), T0)
    now = T0 + 10
    assert is_available(s, now)
    assert tracker.begin_attempt(s, now)
    assert not is_available(s, now)  # one trial in flight
    tracker.end_trial(s)
    tracker.success(s, 0.1, now)
    assert health_state(s, now) == "half_open"  # 1 of 2
    tracker.failure(s, InternalServerError("x"), now)  # a failed trial re-opens
    assert health_state(s, now) == "cooling"
    assert s.cooldown_until == now + 20
    now += 20
    tracker.success(s, 0.1, now)
    tracker.success(s, 0.1, now)
    assert health_state(s, now) == "healthy"


def test_ejection_cap_and_panic_mode() -> None:
    tracker, ss = states(4, policy(allowed_fails=1, max_ejected_share=0.5, panic_threshold=0.6))
    pool = tracker.pools["g"]
    assert tracker.failure(ss[0], InternalServerError("x"), T0) > 0
    assert tracker.failure(ss[1], InternalServerError("x"), T0) > 0
    assert pool.unhealthy == 2
    assert tracker.failure(ss[2], InternalServerError("x"), T0) == 0  # capped
    assert is_available(ss[2], T0)
    assert pool.cooling_now(T0) == 2
    # Two of four healthy is below 60%: panic routes to the ejected ones too...
    assert pool.panic
    assert is_available(ss[0], T0 + 1)
    # ...but never to one inside its 429 Retry-After.
    tracker.failure(ss[3], RateLimitError("x", retry_after=5), T0)
    assert not is_available(ss[3], T0 + 1)
    assert is_available(ss[0], T0 + 1)
    # Once the first two are half-open they no longer fill the cap.
    assert pool.cooling_now(T0 + 10) == 0
    assert tracker.failure(ss[2], InternalServerError("x"), T0 + 10) > 0
    assert pool.cooling_now(T0 + 10) == 1


def test_slow_start_ramps_share() -> None:
    tracker, (s,) = states(1, policy(allowed_fails=1, half_open_successes=1, slow_start=100))
    tracker.failure(s, InternalServerError("x"), T0)
    tracker.success(s, 0.1, T0 + 10)
    assert health_state(s, T0 + 10) == "healthy"
    n = 4000
    early = sum(tracker.admit(s, T0 + 10 + 5) for _ in range(n)) / n  # floor 10%
    half = sum(tracker.admit(s, T0 + 10 + 50) for _ in range(n)) / n
    # Seeded rng; binomial sd at n=4000 is < 0.008, tolerance 0.03.
    assert early == pytest.approx(0.10, abs=0.03)
    assert half == pytest.approx(0.50, abs=0.03)
    assert tracker.admit(s, T0 + 10 + 100)


def test_probe_success_ends_failure_ejection_but_not_a_retry_after() -> None:
    tracker, (a, b) = states(2, policy(allowed_fails=1, half_open_successes=1))
    tracker.failure(a, InternalServerError("x"), T0)
    tracker.failure(b, RateLimitError("x", retry_after=30), T0)
    tracker.probe_success(a, T0 + 1)
    tracker.probe_success(b, T0 + 1)
    assert health_state(a, T0 + 1) == "healthy"
    assert health_state(b, T0 + 1) == "cooling"


def test_a_429_cools_without_opening_the_circuit_and_ends_at_full_share() -> None:
    # A rate limit is not ill health (docs/resilience.md): the deployment cools for its
    # Retry-After, binding even in panic mode, and is back at once when that is over:
    # no half-open trial, nothing counted against its health, the pool's health counts
    # untouched.
    tracker, (s, other) = states(2, policy(allowed_fails=3, panic_threshold=0.9, slow_start=100))
    pool = tracker.pools["g"]
    tracker.failure(s, InternalServerError("x"), T0)  # one failure of its allowance
    assert tracker.failure(s, RateLimitError("x", retry_after=2), T0) == 2
    assert health_state(s, T0 + 1) == "cooling"
    assert not is_available(s, T0 + 1)
    assert pool.unhealthy == 0
    assert not pool.panic
    assert pool.cooling_now(T0 + 1) == 1  # out of rotation for the ejection cap
    assert s.ejections == 1
    assert s.consecutive_failures == 1  # the 500 still counts, the 429 does not
    now = T0 + 2
    assert health_state(s, now) == "healthy"
    assert is_available(s, now)
    assert not tracker.begin_attempt(s, now)  # not a trial: any number may be in flight
    assert is_available(s, now)
    assert tracker.admit(s, now)  # no slow start either
    # A 5xx ejection is still recovered through half-open trials.
    tracker.failure(other, InternalServerError("x"), T0)
    tracker.failure(other, InternalServerError("x"), T0)
    assert tracker.failure(other, InternalServerError("x"), T0) == 10
    assert health_state(other, T0 + 10) == "half_open"
    assert pool.unhealthy == 1


def test_a_429_during_a_half_open_trial_keeps_the_circuit_open() -> None:
    tracker, (s,) = states(1, policy(allowed_fails=1))
    tracker.failure(s, InternalServerError("x"), T0)
    now = T0 + 10
    assert health_state(s, now) == "half_open"
    assert tracker.begin_attempt(s, now)
    tracker.end_trial(s)
    tracker.failure(s, RateLimitError("x", retry_after=5), now)
    assert health_state(s, now + 1) == "cooling"
    # The health question is still open: after the Retry-After it is half-open again.
    assert health_state(s, now + 5) == "half_open"
