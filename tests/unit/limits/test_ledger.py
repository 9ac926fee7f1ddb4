"""`interlock/limits/ledger.py`: `Ledger` headroom, reservations, settling and blocks."""

from __future__ import annotations

import pytest

from interlock import Usage
from interlock.limits import Ledger, diagnose
from tests.unit.limits.helpers import state

# --- Ledger -------------------------------------------------------------------------------


def test_rpm_headroom_and_reason() -> None:
    s = state(rpm=2)
    for _ in range(2):
        assert Ledger.has_headroom(s, 10, 0.0)
        Ledger.reserve(s, 10, 0.0)
    assert not Ledger.has_headroom(s, 10, 0.0)
    blocked = Ledger.block(s, 10, 0.0)
    why, wait = blocked.why, blocked.wait
    assert "rpm" in why
    assert wait == pytest.approx(61.0)


def test_request_larger_than_the_whole_tpm_is_never_admitted() -> None:
    s = state(tpm=1000)
    assert not Ledger.has_headroom(s, 1001, 0.0)  # even when idle
    assert Ledger.block(s, 1001, 0.0).kind == "oversize"
    assert Ledger.has_headroom(s, 1000, 0.0)


def test_context_window_is_checked() -> None:
    s = state(context_window=100)
    assert not Ledger.has_headroom(s, 101, 0.0)
    assert Ledger.block(s, 101, 0.0).kind == "context"
    ex = diagnose([s], 101, 0.0)
    assert ex.kind == "context"


def test_settle_reconciles_tokens_and_prices_usage() -> None:
    s = state(tpm=10_000, input_cost_per_token=0.001, output_cost_per_token=0.002)
    r = Ledger.reserve(s, 300, 0.0)
    assert s.rate_window is not None
    assert s.rate_window.totals(0.0) == (1, 300)
    cost = Ledger.settle(r, 120, 1.0, Usage(100, 20, 120))
    assert s.rate_window.totals(1.0) == (1, 120)
    assert s.spend == cost == pytest.approx(100 * 0.001 + 20 * 0.002)
    assert (s.input_tokens, s.output_tokens, s.in_flight) == (100, 20, 0)
    assert Ledger.settle(r, 999, 2.0, Usage(1, 1, 2)) is None  # settled once only
    assert s.rate_window.totals(2.0) == (1, 120)
    assert Ledger.settle(Ledger.reserve(s, 10, 3.0), None, 3.0) is None  # no usage, no cost


def test_release_keeps_the_request_and_cancel_undoes_it() -> None:
    s = state(rpm=10, tpm=1000)
    w = s.rate_window
    assert w is not None
    r = Ledger.reserve(s, 50, 0.0)
    Ledger.release(r, 0.5)
    assert (*w.totals(0.5), s.in_flight) == (1, 0, 0)
    r = Ledger.reserve(s, 50, 1.0)
    Ledger.cancel(r, 1.0)
    assert (*w.totals(1.0), s.requests) == (1, 0, 1)


def test_concurrency_cap() -> None:
    s = state(max_concurrency=1)
    r = Ledger.reserve(s, 0, 0.0)
    assert not Ledger.has_headroom(s, 0, 0.0)
    assert Ledger.block(s, 0, 0.0).kind == "concurrency"
    Ledger.settle(r, None, 0.0)
    assert Ledger.has_headroom(s, 0, 0.0)
