"""`Call`: the route a call takes through its fallback chain, and its per-group state."""

from __future__ import annotations

from interlock.health.retry_budget import RetryBudget
from interlock.router.call_state import Call
from interlock.types import Request


def call(chain: tuple[str, ...], max_depth: int = 3) -> Call:
    request = Request("chat", chain[0], requested=chain[0])
    return Call(request, 10.0, 10.0, RetryBudget(0.2, 10, 10.0), chain, max_depth)


def test_groups_come_in_chain_order_once_each_within_the_depth() -> None:
    c = call(("a", "b", "a", "c", "d"), max_depth=2)
    seen = []
    while (g := c.next_group()) is not None:
        seen.append((g, c.previous, c.request.group, c.has_next))
    # "a" again is skipped; after two fallbacks ("b", "c") the depth is used up.
    assert seen == [("a", None, "a", True), ("b", "a", "b", True), ("c", "b", "c", False)]
    assert c.first_group == "a"


def test_a_new_group_starts_with_nothing_tried() -> None:
    c = call(("a", "b"))
    assert c.next_group() == "a"
    c.tried.add(object())  # type: ignore[arg-type]
    c.group_attempts, c.waits, c.queued_at, c.woken = 2, 1, 5.0, True
    assert c.next_group() == "b"
    assert not c.tried
    assert (c.group_attempts, c.waits, c.woken) == (0, 0, False)
    assert c.queued_at is None


def test_a_redirect_switches_to_its_chain_from_the_start() -> None:
    c = call(("small", "other"))
    assert c.next_group() == "small"
    c.switch(("big",), "context_window")
    assert (c.chain_kind, c.chain_done) == ("context_window", False)
    assert c.next_group() == "big"
    assert c.chain_done
    assert c.next_group() is None
