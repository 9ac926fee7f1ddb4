"""`diagnose()`: why no deployment of a group can take a request (the one slow-path
classifier the pipeline and its errors use)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from interlock import AuthenticationError, Budget, Deployment, HealthPolicy
from interlock.health import HealthTracker
from interlock.limits import Ledger, attach_budgets, diagnose
from interlock.limits.diagnose import clock_time
from interlock.records.state import DeploymentState


def state(id: str = "g-0", **kw: object) -> DeploymentState:
    d = Deployment(group="g", model="m", id=id, **kw)
    return DeploymentState(d, transport=None)  # type: ignore[arg-type]


def test_a_deployment_with_headroom_makes_the_group_free() -> None:
    busy = state("busy", max_concurrency=1)
    Ledger.reserve(busy, 10, 0.0)
    d = diagnose([busy, state("idle")], 10, 0.0)
    assert d.kind == "free"
    assert d.reasons == ("busy: at its concurrency cap (1/1 in flight)", "idle: can take it now")
    assert d.wait is None


def test_limits_that_free_up_with_time_say_when() -> None:
    s = state(rpm=1)
    Ledger.reserve(s, 10, 5.5)  # counted in the bucket [5, 6): held until 66
    d = diagnose([s], 10, 10.0)
    assert d.kind == "limits"
    assert d.wait == pytest.approx(56.0)
    assert d.reasons == ("g-0: over its rpm limit (1)",)


def test_a_request_no_deployment_can_ever_take() -> None:
    assert diagnose([state(context_window=100)], 101, 0.0).kind == "context"
    mixed = [state("a", context_window=100), state("b", tpm=50)]
    d = diagnose(mixed, 101, 0.0)
    assert d.kind == "oversize"
    assert d.wait is None


def test_budgets_name_the_counter_that_resets_first() -> None:
    a, b = state("a"), state("b")
    counters, problems = attach_budgets(
        [
            Budget(scope="deployment", name="a", limit_usd=1.0, period=60.0),
            Budget(scope="deployment", name="b", limit_usd=1.0, period=10.0),
        ],
        [a, b],
        0.0,
    )
    assert problems == []
    for c in counters:
        c.add(2.0, 1.0)
    d = diagnose([a, b], 10, 2.0)
    assert d.kind == "budget"
    assert d.budget is counters[1]  # resets in 8 s, before the other's 58 s


# 2025-01-01 12:02:07 UTC, the wall-clock time the router's clock reads as `now`
WALL = datetime(2025, 1, 1, 12, 2, 7, tzinfo=UTC).timestamp()


def test_cooling_deployments_wait_for_their_cooldown_even_when_tried() -> None:
    s = state()
    s.cooldown_until = 7.0
    d = diagnose([s], 10, 2.0, exclude={s}, wall=WALL)
    assert d.kind == "other"
    assert d.wait == pytest.approx(5.0)  # the pipeline may sleep until then
    # no ejection of this router's: another router instance shared the cooldown
    assert d.reasons == (
        "g-0: cooling until 12:02:12 UTC (in 5.0 s), a cooldown shared by another router",
    )


def test_a_cooling_deployment_says_after_which_error_and_when_it_comes_back() -> None:
    s = state("d1")
    tracker = HealthTracker(HealthPolicy(auth_cooldown=60.0, panic_threshold=0.0))
    tracker.attach([s])
    tracker.failure(s, AuthenticationError("bad key sk-not-shown", status_code=401), 100.0)
    d = diagnose([s], 10, 100.0, wall=WALL)
    assert d.reasons == (
        "d1: cooling until 12:03:07 UTC (in 60.0 s) after AuthenticationError (401) at "
        "12:02:07 UTC",
    )
    assert d.wait == pytest.approx(60.0)
    # 20 s later, on both clocks
    later = diagnose([s], 10, 120.0, wall=WALL + 20)
    assert later.reasons == (
        "d1: cooling until 12:03:07 UTC (in 40.0 s) after AuthenticationError (401) at "
        "12:02:07 UTC",
    )
    # past the cooldown, a half-open deployment with its trial slot taken says why too
    tracker.begin_attempt(s, 160.0)
    half = diagnose([s], 10, 160.0, wall=WALL + 60)
    assert half.reasons == (
        "d1: half-open after AuthenticationError (401) at 12:02:07 UTC, trial request in flight",
    )


def test_wall_clock_times_render_in_utc() -> None:
    assert clock_time(WALL) == "12:02:07 UTC"
    assert clock_time(WALL + 0.999) == "12:02:07 UTC"
    assert clock_time(WALL, date=True) == "2025-01-01 12:02:07 UTC"
    assert clock_time(math.inf) == "an unknown time"


def test_far_and_endless_cooldowns() -> None:
    far, endless = state("far"), state("endless")
    far.cooldown_until = 2.0 + 86_400.0
    endless.cooldown_until = math.inf
    d = diagnose([far, endless], 10, 2.0, wall=WALL)
    assert d.reasons == (
        "far: cooling until 2025-01-02 12:02:07 UTC (in 86400.0 s), a cooldown shared by "
        "another router",
        "endless: cooling with no end set, a cooldown shared by another router",
    )


def test_tags_leave_a_deployment_out_with_a_reason() -> None:
    eu, us = state("eu", tags=["eu"]), state("us", tags=["us"])
    d = diagnose([eu, us], 10, 0.0, tags=frozenset({"eu"}), exclude={eu})
    assert d.kind == "other"
    assert d.reasons == ("eu: already tried", "us: lacks tags ['eu']")
