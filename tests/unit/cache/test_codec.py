"""`interlock/cache/codec.py`: cache entries encoded once and decoded afresh for every hit."""

from __future__ import annotations

import pytest

from interlock import ChatCompletion, EmbeddingResponse
from interlock.cache import decode, encode
from tests.unit.cache.helpers import completion

# --- entries ----------------------------------------------------------------------------


def test_entry_round_trip_gives_fresh_objects_marked_cached() -> None:
    original = completion()
    data = encode(original)
    a, b = decode(data, "chat"), decode(data, "chat")
    assert a is not None
    assert b is not None
    assert isinstance(a.result, ChatCompletion)
    assert isinstance(b.result, ChatCompletion)
    assert a.result.cached
    assert not original.cached
    assert a.result.to_dict() == original.to_dict()
    assert (a.result.deployment_id, a.result.group) == ("d-0", "g")
    tools = a.result.choices[1].message.tool_calls
    assert tools is not None
    tools[0]["id"] = "mutated"
    assert b.result.choices[1].message.tool_calls == original.choices[1].message.tool_calls


def test_embedding_entry_round_trip() -> None:
    r = EmbeddingResponse.from_dict(
        {"model": "e", "data": [{"index": 0, "embedding": [0.1, -0.25, 1e-9]}]},
        deployment_id="d",
        group="g",
    )
    entry = decode(encode(r), "embedding")
    assert entry is not None
    assert isinstance(entry.result, EmbeddingResponse)
    assert entry.result.data[0].embedding == [0.1, -0.25, 1e-9]
    assert entry.result.cached


@pytest.mark.parametrize("data", [b"", b"not json", b"{}", b'{"kind": "chat"}', b"[1]"])
def test_broken_entries_are_misses(data: bytes) -> None:
    assert decode(data, "chat") is None


def test_entry_of_another_kind_is_a_miss() -> None:
    assert decode(encode(completion()), "embedding") is None
