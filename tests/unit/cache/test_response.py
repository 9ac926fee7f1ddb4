"""`interlock/cache/response.py`: `ResponseCache.plan`, whether and how long a request is cached."""

from __future__ import annotations

import pytest

from interlock import CacheConfig
from interlock.cache import ResponseCache
from interlock.testing import FakeClock

# --- configuration and policy -----------------------------------------------------------


def test_plan_precedence() -> None:
    cfg = CacheConfig(ttl=100, groups={"on": {"ttl": 5}, "off": {"enabled": False}})
    cache = ResponseCache(cfg, ["on", "off", "plain"], FakeClock())
    on = cache.plan("on", None, None)
    assert on is not None
    assert (on.store, on.ttl) == (True, 5)
    assert cache.plan("plain", None, None) is None
    assert cache.plan("off", None, None) is None
    forced = cache.plan("off", True, 7)
    assert forced is not None
    assert (forced.store, forced.ttl) == (True, 7)
    no_store = cache.plan("plain", "no-store", None)
    assert no_store is not None
    assert (no_store.store, no_store.ttl) == (False, 100)
    assert cache.plan("on", False, None) is None
    everywhere = ResponseCache(CacheConfig(enabled=True), ["g"], FakeClock())
    assert everywhere.plan("g", None, None) is not None
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="cache_ttl"):
            cache.plan("on", None, bad)
