"""`interlock/records/window.py`: `RateWindow`, the sliding request and token counts."""

from __future__ import annotations

import pytest

from interlock.records.window import RateWindow

# --- RateWindow ------------------------------------------------------------------------


def test_window_holds_a_request_between_span_and_span_plus_one_bucket() -> None:
    w = RateWindow(60.0, 60)
    w.add(100.5, 3)  # bucket [100, 101)
    assert w.totals(160.4) == (1, 3)  # 59.9 s later: still inside
    assert w.totals(160.99) == (1, 3)  # the bucket is held until 101 + 60
    assert w.next_expiry(160.5, "requests") == pytest.approx(0.5)
    assert w.next_expiry(160.5, "tokens") == pytest.approx(0.5)
    assert w.totals(161.0) == (0, 0)


def test_window_counts_read_inline_are_current_before_the_edge() -> None:
    """What the hot paths do: advance only at `edge`, then read the counts."""
    w = RateWindow(60.0, 60)
    w.add(10.2, 7)
    w.add(69.5, 1)
    # The first request's bucket [10, 11) is held until 71; the second's until 130.
    expected = {69.9: (2, 8), 70.0: (2, 8), 70.99: (2, 8), 71.0: (1, 1), 131.0: (0, 0)}
    for now, counts in expected.items():
        if now >= w.edge:
            w.advance(now)
        assert (w.requests, w.tokens) == counts, now


def test_window_adjust_reconciles_and_never_goes_negative() -> None:
    w = RateWindow()
    tick = w.add(10.0, 100)
    w.add(11.0, 5)
    w.adjust(12.0, tick, 0, -30)
    assert w.totals(12.0) == (2, 75)
    w.adjust(12.0, tick, -5, -500)
    assert w.totals(12.0) == (1, 5)
    w.adjust(200.0, tick, 1, 1000)  # expired: dropped
    assert w.totals(200.0) == (0, 0)


def test_window_long_idle_clears_everything() -> None:
    w = RateWindow()
    for t in range(50):
        w.add(float(t), 2)
    assert w.totals(49.0) == (50, 100)
    assert w.totals(10_000.0) == (0, 0)
    assert w.next_expiry(10_000.0, "requests") == 0.0
