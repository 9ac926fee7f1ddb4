"""Routing state of the Responses API: the bounded affinity map, the pinned
strategy's choice, and which accounts deployments share."""

from __future__ import annotations

import random

from interlock import Deployment
from interlock.records.state import DeploymentState
from interlock.router.responses_route import PinnedStrategy, ResponseAffinity, account_of
from interlock.strategies.candidates import Candidates, NoEligible, Tier
from interlock.types import Request


def state(
    i: str, base: str = "http://127.0.0.1:1/v1", key: str = "sk-aaaaaaaaaaaa"
) -> DeploymentState:
    d = Deployment(id=i, group="g", model="m", provider="openai", api_base=base, api_key=key)
    return DeploymentState(d, transport=None)  # type: ignore[arg-type]


def test_affinity_forgets_the_least_recently_used() -> None:
    a = ResponseAffinity(maxsize=2)
    a.remember("r1", "d1")
    a.remember("r2", "d2")
    assert a.get("r1") == "d1"  # r1 is now the most recent
    a.remember("r3", "d3")
    assert (a.get("r1"), a.get("r2"), a.get("r3")) == ("d1", None, "d3")
    assert len(a) == 2
    a.remember("", "d")  # nothing to remember
    assert len(a) == 2


def test_accounts_are_address_and_key_and_never_show_the_key() -> None:
    a, b = state("a"), state("b")
    other_key = state("c", key="sk-bbbbbbbbbbbb")
    other_base = state("d", base="http://127.0.0.1:2/v1")
    assert account_of(a) == account_of(b)
    assert account_of(a) != account_of(other_key)
    assert account_of(a) != account_of(other_base)
    assert "sk-" not in account_of(a)


def test_pinned_strategy_takes_the_first_eligible_of_its_states() -> None:
    a, b, c = state("a"), state("b"), state("c")
    tier = Tier([a, b, c], 0)
    request = Request("responses", "g")
    view = Candidates(tier, request, 0.0, set(), random.Random(1))
    assert PinnedStrategy([b, a]).choose(view, request) is b
    view.reset(tier, request, 0.0, {b})
    assert PinnedStrategy([b, a]).choose(view, request) is a
    view.reset(tier, request, 0.0, {a, b})
    try:
        PinnedStrategy([b, a]).choose(view, request)
    except NoEligible:
        pass
    else:
        raise AssertionError("a pinned strategy never picks outside its states")
