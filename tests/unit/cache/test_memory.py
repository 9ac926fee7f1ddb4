"""`interlock/cache/memory.py`: `MemoryStore`, the in-process store bounded by entries and bytes."""

from __future__ import annotations

import pytest

from interlock.cache import MemoryStore
from interlock.testing import FakeClock

# --- the memory store -----------------------------------------------------------------


def test_memory_ttl_is_per_entry_on_the_clock() -> None:
    clock = FakeClock()
    store = MemoryStore(clock, max_entries=10, max_bytes=1000)
    store.set_nowait("a", b"A", 5)
    store.set_nowait("b", b"B", 10)
    clock.advance(4.9)
    assert store.get_nowait("a") == b"A"
    clock.advance(0.2)
    assert store.get_nowait("a") is None
    assert store.get_nowait("b") == b"B"
    assert store.usage() == (1, 1)
    clock.advance(5)
    assert store.get_nowait("b") is None
    assert store.usage() == (0, 0)


def test_memory_bounds_evict_least_recently_used() -> None:
    clock = FakeClock()
    store = MemoryStore(clock, max_entries=2, max_bytes=1000)
    for k in "abc":
        store.set_nowait(k, k.encode(), 60)
    assert [store.get_nowait(k) for k in "abc"] == [None, b"b", b"c"]
    store.get_nowait("b")  # now c is the least recently used
    store.set_nowait("d", b"d", 60)
    assert store.get_nowait("c") is None
    assert store.get_nowait("b") == b"b"

    sized = MemoryStore(clock, max_entries=100, max_bytes=10)
    sized.set_nowait("x", b"1234", 60)
    sized.set_nowait("y", b"1234", 60)
    sized.set_nowait("z", b"1234", 60)
    assert sized.get_nowait("x") is None
    assert sized.usage() == (2, 8)
    assert not sized.set_nowait("big", b"x" * 11, 60)
    assert sized.get_nowait("big") is None
    assert sized.usage() == (2, 8)


def test_memory_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(FakeClock(), max_entries=0, max_bytes=1)
