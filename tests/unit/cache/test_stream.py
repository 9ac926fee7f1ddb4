"""`interlock/cache/stream.py`: replaying a cached response as a stream, recording a live one."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.cache import CachedStream, StreamRecorder, replay_chunks
from interlock.types import ChatCompletion, ChatCompletionChunk
from tests.unit.cache.helpers import completion

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


def test_reasoning_annotations_and_usage_details_survive_record_and_replay() -> None:
    # A cached answer replayed as a stream must still carry what the next turn sends
    # back (signed reasoning) and what spend is priced by (usage details). Shapes: an
    # Anthropic thinking block as interlock returns it, OpenAI's url_citation
    # annotation (https://platform.openai.com/docs/api-reference/chat/object).
    original = ChatCompletion.from_dict(
        {
            "id": "c2",
            "model": "m",
            "created": 7,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "42",
                        "reasoning_content": "Six times seven.",
                        "reasoning_blocks": [
                            {
                                "type": "thinking",
                                "thinking": "Six times seven.",
                                "signature": "sig-1",
                                "provider": "anthropic",
                            }
                        ],
                        "annotations": [
                            {
                                "type": "url_citation",
                                "url_citation": {
                                    "url": "https://example.com",
                                    "title": "Example",
                                    "start_index": 0,
                                    "end_index": 2,
                                },
                            }
                        ],
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 80},
                "completion_tokens_details": {"reasoning_tokens": 12},
            },
        },
        deployment_id="d-0",
        group="g",
    )
    rec = StreamRecorder()
    for c in replay_chunks(original):
        rec.add(c)
    rebuilt = rec.build()
    message = rebuilt.choices[0].message
    assert message.reasoning_content == "Six times seven."
    assert message.reasoning_blocks == original.choices[0].message.reasoning_blocks
    assert message.annotations == original.choices[0].message.annotations
    assert rebuilt.usage is not None
    assert original.usage is not None
    assert rebuilt.usage.to_dict() == original.usage.to_dict()


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
