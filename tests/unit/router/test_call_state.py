"""`Call`: the route a call takes through its fallback chain, and its per-group state."""

from __future__ import annotations

from datetime import UTC, datetime

from interlock import AuthenticationError, Deployment, HealthPolicy, NoDeploymentAvailableError
from interlock.health import HealthTracker
from interlock.health.retry_budget import RetryBudget
from interlock.limits import diagnose
from interlock.records.state import DeploymentState
from interlock.router.call_state import Call, refusal_error
from interlock.types import Request


def call(chain: tuple[str, ...], max_depth: int = 3) -> Call:
    request = Request("chat", chain[0], requested=chain[0])
    return Call(request, 10.0, 10.0, RetryBudget(0.2, 10, 10.0), chain, max_depth)


def test_groups_come_in_chain_order_once_each_within_the_depth() -> None:
    c = call(("a", "b", "a", "c", "d"), max_depth=2)
    # A call starts on the first group of its chain; `next_group` moves on.
    seen = [(c.request.group, c.previous, c.request.group, c.has_next)]
    while (g := c.next_group()) is not None:
        seen.append((g, c.previous, c.request.group, c.has_next))
    # "a" again is skipped; after two fallbacks ("b", "c") the depth is used up.
    assert seen == [("a", None, "a", True), ("b", "a", "b", True), ("c", "b", "c", False)]
    assert c.first_group == "a"


def test_a_new_group_starts_with_nothing_tried() -> None:
    c = call(("a", "b"))
    assert c.request.group == "a"
    assert not c.tried
    assert c.kind_counts is None
    c.mark_tried(object())  # type: ignore[arg-type]
    c.mark_tried(DeploymentState(Deployment(group="a", model="m", id="d1"), transport=None))  # type: ignore[arg-type]
    assert len(c.tried) == 2
    c.group_attempts, c.waits, c.queued_at, c.woken = 2, 1, 5.0, True
    assert c.next_group() == "b"
    assert not c.tried
    assert (c.group_attempts, c.waits, c.woken) == (0, 0, False)
    assert c.queued_at is None


def test_a_redirect_switches_to_its_chain_from_the_start() -> None:
    c = call(("small", "other"))
    assert c.request.group == "small"
    c.switch(("big",), "context_window")
    assert (c.chain_kind, c.chain_done) == ("context_window", False)
    assert c.next_group() == "big"
    assert c.chain_done
    assert c.next_group() is None


def test_a_refusal_names_each_deployments_cause_and_when_the_first_is_back() -> None:
    s = DeploymentState(Deployment(group="a", model="m", id="d1"), transport=None)  # type: ignore[arg-type]
    tracker = HealthTracker(HealthPolicy(auth_cooldown=60.0, panic_threshold=0.0))
    tracker.attach([s])
    tracker.failure(s, AuthenticationError("no", status_code=401), 100.0)
    wall = datetime(2025, 1, 1, 12, 2, 27, tzinfo=UTC).timestamp()  # the router's 120.0
    c = call(("a",))
    diagnosis = diagnose([s], 10, 120.0, wall=wall)
    c.blocked = (diagnosis,)
    c.unavailable = ("group 'a': " + "; ".join(diagnosis.reasons),)
    c.soonest = diagnosis.wait
    err = refusal_error(c, 120.0, wall)
    assert isinstance(err, NoDeploymentAvailableError)
    assert err.message == (
        "no deployment can serve 'a': group 'a': d1: cooling until 12:03:07 UTC (in 40.0 s) "
        "after AuthenticationError (401) at 12:02:07 UTC; the first may be usable at "
        "12:03:07 UTC (in 40.0 s)"
    )
    assert err.retry_after == 40.0
