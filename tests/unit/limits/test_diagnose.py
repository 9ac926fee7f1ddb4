"""`diagnose()`: why no deployment of a group can take a request (the one slow-path
classifier the pipeline and its errors use)."""

from __future__ import annotations

import pytest

from interlock import Budget, Deployment
from interlock.limits import Ledger, attach_budgets, diagnose
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


def test_cooling_deployments_wait_for_their_cooldown_even_when_tried() -> None:
    s = state()
    s.cooldown_until = 7.0
    d = diagnose([s], 10, 2.0, exclude={s})
    assert d.kind == "other"
    assert d.wait == pytest.approx(5.0)  # the pipeline may sleep until then
    assert d.reasons == ("g-0: cooling down for 5.00 s more",)


def test_tags_leave_a_deployment_out_with_a_reason() -> None:
    eu, us = state("eu", tags=["eu"]), state("us", tags=["us"])
    d = diagnose([eu, us], 10, 0.0, tags=frozenset({"eu"}), exclude={eu})
    assert d.kind == "other"
    assert d.reasons == ("eu: already tried", "us: lacks tags ['eu']")
