"""The response cache's parts, without sockets: keys, stores, entries, streams, policy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from interlock import CacheConfig, ChatCompletion, ConfigError, EmbeddingResponse
from interlock.cache import (
    CachedStream,
    Flight,
    MemoryStore,
    ResponseCache,
    StreamRecorder,
    cache_key,
    decode,
    encode,
    replay_chunks,
)
from interlock.testing import FakeClock
from interlock.types import ChatCompletionChunk

MSGS = [{"role": "user", "content": "hi", "name": "u1"}]


def key(params: dict[str, Any] | None = None, **kw: Any) -> str | None:
    args: dict[str, Any] = {"namespace": "ns", "kind": "chat", "group": "g", "payload": MSGS}
    args.update(kw)
    return cache_key(args["namespace"], args["kind"], args["group"], args["payload"], params or {})


# --- keys ---------------------------------------------------------------------------


def test_key_ignores_dict_order_and_non_answer_params() -> None:
    reordered = [{"name": "u1", "content": "hi", "role": "user"}]
    base = key({"temperature": 0.2, "max_tokens": 10})
    assert base is not None
    assert base.startswith("ns:v1:chat:")
    assert key({"max_tokens": 10, "temperature": 0.2}, payload=reordered) == base
    ignored = {"user": "bob", "metadata": {"a": "b"}, "stream": True, "stream_options": {}}
    assert key({"temperature": 0.2, "max_tokens": 10, **ignored}) == base


@pytest.mark.parametrize(
    "change",
    [
        {"params": {"temperature": 0.3, "max_tokens": 10}},
        {"params": {"temperature": 0.2, "max_tokens": 11}},
        {"params": {"temperature": 0.2, "max_tokens": 10, "seed": 1}},
        {"params": {"temperature": 0.2, "max_tokens": 10, "response_format": {"type": "x"}}},
        {"group": "other"},
        {"kind": "embedding"},
        {"namespace": "ns2"},
        {"payload": [{"role": "user", "content": "hi!", "name": "u1"}]},
        {"payload": [{"role": "system", "content": "hi", "name": "u1"}]},
    ],
)
def test_key_changes_with_what_changes_the_answer(change: dict[str, Any]) -> None:
    base = key({"temperature": 0.2, "max_tokens": 10})
    params = change.pop("params", {"temperature": 0.2, "max_tokens": 10})
    assert key(params, **change) != base


def test_key_normalizes_equivalent_spellings() -> None:
    assert key({"temperature": 0}) == key({"temperature": 0.0})
    assert key({"stop": "END"}) == key({"stop": ["END"]})
    assert key({"seed": 1}) != key({"seed": True})
    assert key(payload=(("a", 1),)) == key(payload=[["a", 1]])


def test_key_of_unserializable_request_is_none() -> None:
    assert key({"temperature": object()}) is None


def test_key_is_stable_across_processes() -> None:
    code = (
        "from interlock.cache import cache_key;"
        "print(cache_key('ns', 'chat', 'g', [{'role': 'user', 'content': 'hi'}], {'n': 2}))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("12345",)  # this process runs with another (random) seed
    }
    assert outs == {cache_key("ns", "chat", "g", [{"role": "user", "content": "hi"}], {"n": 2})}


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


# --- entries ----------------------------------------------------------------------------


def completion() -> ChatCompletion:
    return ChatCompletion.from_dict(
        {
            "id": "c1",
            "model": "m",
            "created": 7,
            "system_fingerprint": "fp",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris is the capital."},
                    "finish_reason": "stop",
                    "logprobs": {"content": [{"token": "Paris", "logprob": -0.1}]},
                },
                {
                    "index": 1,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "t1",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                },
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        },
        deployment_id="d-0",
        group="g",
    )


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


# --- streams ----------------------------------------------------------------------------


def test_replay_then_record_reassembles_the_response() -> None:
    original = completion()
    chunks = replay_chunks(original, {0: [5, 16]})
    assert all(c.cached for c in chunks)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].index == 0]
    assert [t for t in texts if t] == ["Paris", " is the capital."]
    rec = StreamRecorder()
    for c in chunks:
        rec.add(c)
    assert rec.complete
    assert rec.pieces()[0] == [5, 16]
    rebuilt = rec.build()
    want = original.to_dict()
    want.pop("system_fingerprint")  # chunks do not carry it
    assert rebuilt.to_dict() == want


def test_replay_without_recorded_pieces_splits_long_text() -> None:
    c = completion()
    c.choices[0].message.content = "x" * 70
    pieces = [
        ch.choices[0].delta.content
        for ch in replay_chunks(c, {0: [1, 2]})  # lengths that do not fit are ignored
        if ch.choices and ch.choices[0].index == 0 and ch.choices[0].delta.content
    ]
    assert "".join(pieces) == "x" * 70
    assert len(pieces) == 3


def test_recorder_of_a_cut_stream_is_incomplete() -> None:
    rec = StreamRecorder()
    assert not rec.complete
    for c in replay_chunks(completion())[:2]:  # role and content, no finish
        rec.add(c)
    assert not rec.complete
    with pytest.raises(ValueError, match="no chunk"):
        StreamRecorder().build()


def test_recorder_merges_tool_call_fragments() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk.from_dict(
            {
                "id": "x",
                "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    rec = StreamRecorder()
    call = {"index": 0, "id": "t", "type": "function", "function": {"name": "f"}}
    rec.add(chunk({"role": "assistant", "tool_calls": [call]}))
    rec.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}))
    rec.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}))
    rec.add(chunk({}, "tool_calls"))
    msg = rec.build().choices[0].message
    assert msg.content is None
    assert msg.tool_calls == [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]


async def test_cached_stream_replays_and_closes() -> None:
    s = CachedStream.from_completion(completion())
    assert s.cached
    assert s.ttft == 0.0
    first = await s.__anext__()
    assert first.choices[0].delta.role == "assistant"
    await s.aclose()
    assert [c async for c in s] == []
    assert s.chunks == 1
    with pytest.raises(ValueError, match="exactly one"):
        CachedStream()


# --- coalescing -------------------------------------------------------------------------


async def test_flight_waiters_share_and_leave_cleanly() -> None:
    flight = Flight()
    waiters = [asyncio.create_task(flight.wait(10)) for _ in range(3)]
    await asyncio.sleep(0)
    assert flight.waiters == 3
    waiters[0].cancel()
    await asyncio.sleep(0)
    assert flight.waiters == 2
    assert not flight.done
    flight.succeed(b"data")
    assert await asyncio.gather(*waiters[1:]) == [True, True]
    assert flight.waiters == 0
    assert await flight.wait(0) is True


async def test_flight_wait_times_out() -> None:
    flight = Flight()
    assert await flight.wait(0.001) is False
    assert flight.waiters == 0
    flight.abandon()
    assert flight.abandoned


# --- configuration and policy -----------------------------------------------------------


def test_config_errors_name_the_field_and_hide_the_url() -> None:
    with pytest.raises(ConfigError, match=r"ttl: must be > 0"):
        CacheConfig(ttl=0)
    with pytest.raises(ConfigError, match="needs redis_url"):
        CacheConfig(backend="redis")
    with pytest.raises(ConfigError) as info:
        CacheConfig(redis_url="http://user:hunter2@host")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(CacheConfig(redis_url="redis://:hunter2@h:1/0"))
    with pytest.raises(ConfigError, match=r"cache.groups.nope: is not a group"):
        ResponseCache(CacheConfig(groups={"nope": {}}), ["g"], FakeClock())


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
