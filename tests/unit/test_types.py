"""Results: OpenAI's JSON in, the same JSON out (`to_dict()`), usage details and
reasoning included, and fields interlock does not model kept rather than dropped.

Payloads are OpenAI's documented shapes
(https://platform.openai.com/docs/api-reference/chat/object,
https://platform.openai.com/docs/api-reference/chat/streaming,
https://platform.openai.com/docs/api-reference/embeddings/object), each checked by the
openai SDK's own types as well.
"""

from __future__ import annotations

from typing import Any

from interlock.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    Embedding,
    EmbeddingResponse,
    Usage,
)
from tests import sdk_contract as sdk

USAGE: dict[str, Any] = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 256,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "See https://example.com.",
                "refusal": None,
                "annotations": [
                    {
                        "type": "url_citation",
                        "url_citation": {
                            "start_index": 4,
                            "end_index": 23,
                            "url": "https://example.com",
                            "title": "Example",
                        },
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "stop",
            # Azure OpenAI's per-choice filter verdicts
            # (https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-filter)
            "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
        }
    ],
    "usage": USAGE,
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
}


def test_completion_round_trips_known_and_unknown_fields() -> None:
    sdk.openai_chat(COMPLETION)
    r = ChatCompletion.from_dict(COMPLETION)
    assert r.service_tier == "default"
    assert r.choices[0].message.annotations == COMPLETION["choices"][0]["message"]["annotations"]
    assert r.usage is not None
    assert (r.usage.cached_tokens, r.usage.reasoning_tokens) == (1920, 256)
    out = r.to_dict()
    sdk.openai_chat(out)
    # A null refusal is left out, as before; everything else comes back as it came.
    expected = {**COMPLETION, "choices": [dict(COMPLETION["choices"][0])]}
    expected["choices"][0]["message"] = {
        k: v for k, v in COMPLETION["choices"][0]["message"].items() if k != "refusal"
    }
    assert out == expected


def test_reasoning_content_of_compatible_servers_is_kept() -> None:
    # DeepSeek's reasoner: https://api-docs.deepseek.com/guides/reasoning_model
    body = {
        **COMPLETION,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "42", "reasoning_content": "6*7"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }
    message = ChatCompletion.from_dict(body).choices[0].message
    assert message.reasoning_content == "6*7"
    assert message.to_dict() == {"role": "assistant", "content": "42", "reasoning_content": "6*7"}
    assert ChatMessage.from_dict(message.to_dict()) == message


def test_chunk_round_trip() -> None:
    chunk = {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "deepseek-reasoner",
        "system_fingerprint": "fp_44709d6fcb",
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "delta": {"reasoning_content": "Hmm", "content": None},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        "obfuscation": "x1",
    }
    sdk.openai_chunk(chunk)
    c = ChatCompletionChunk.from_dict(chunk)
    assert c.choices[0].delta.reasoning_content == "Hmm"
    out = c.to_dict()
    sdk.openai_chunk(out)
    assert out["obfuscation"] == "x1"
    assert out["choices"][0]["delta"] == {"reasoning_content": "Hmm"}
    usage_only = ChatCompletionChunk("c", "m", [], Usage(1, 2, 3)).to_dict()
    sdk.openai_chunk(usage_only)
    assert usage_only["choices"] == []


def test_chunk_from_dict_sets_every_field_as_the_constructors_do() -> None:
    # from_dict builds chunks without their __init__: a field it forgot would be unset
    # (AttributeError in ==) or differ from the constructors' default.
    delta = {"content": "hi"}
    plain = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    made = ChatCompletionChunk.from_dict(plain, deployment_id="d", group="g")
    choice = ChunkChoice(0, ChoiceDelta(content="hi"))
    assert made == ChatCompletionChunk("c1", "m", [choice], None, 7, deployment_id="d", group="g")
    first = {
        "index": 1,
        "delta": {"role": "assistant", "refusal": "no", "x": 1},
        "finish_reason": "stop",
        "logprobs": {"content": []},
        "y": 2,
    }
    full = {
        **plain,
        "system_fingerprint": "fp",
        "service_tier": "default",
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "choices": [first, {"delta": {}}],
        "z": 3,
    }
    extra_delta = ChoiceDelta(role="assistant", refusal="no", extra={"x": 1})
    expected = ChatCompletionChunk(
        "c1",
        "m",
        [
            ChunkChoice(1, extra_delta, "stop", {"content": []}, {"y": 2}),
            ChunkChoice(1, ChoiceDelta()),
        ],
        Usage(1, 2, 3),
        7,
        system_fingerprint="fp",
        service_tier="default",
        extra={"z": 3},
    )
    assert ChatCompletionChunk.from_dict(full) == expected


def test_completion_from_dict_sets_every_field_as_the_constructors_do() -> None:
    # from_dict builds the completion, its choices, messages and usage without their
    # __init__: a field it forgot would be unset (AttributeError in ==) or differ from
    # the constructors' default. Body shapes: the Chat Completions object
    # (https://platform.openai.com/docs/api-reference/chat/object).
    plain = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 7,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    made = ChatCompletion.from_dict(plain, deployment_id="d", group="g")
    expected = ChatCompletion(
        "chatcmpl-1",
        "gpt-4o",
        [Choice(0, ChatMessage("assistant", "hi"), "stop")],
        Usage(1, 2, 3),
        7,
        deployment_id="d",
        group="g",
    )
    assert made == expected
    full = {
        **plain,
        "system_fingerprint": "fp",
        "service_tier": "default",
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
        "choices": [
            {
                "index": 1,
                "message": {"role": "assistant", "content": None, "refusal": "no", "x": 1},
                "finish_reason": "stop",
                "logprobs": {"content": []},
                "y": 2,
            },
            {"message": {"content": "second"}},
        ],
        "z": 3,
    }
    expected_full = ChatCompletion(
        "chatcmpl-1",
        "gpt-4o",
        [
            Choice(
                1,
                ChatMessage("assistant", None, refusal="no", extra={"x": 1}),
                "stop",
                {"content": []},
                {"y": 2},
            ),
            Choice(1, ChatMessage("assistant", "second")),
        ],
        Usage(1, 2, 3),
        7,
        system_fingerprint="fp",
        service_tier="default",
        extra={"z": 3},
    )
    assert ChatCompletion.from_dict(full) == expected_full


def test_embedding_to_dict() -> None:
    e = EmbeddingResponse([Embedding(0, [0.5, -0.5])], "text-embedding-3-small", Usage(2, 0, 2))
    out = e.to_dict()
    sdk.openai_embedding(out)
    assert out["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    # Gemini reports no usage; the openai type requires one.
    sdk.openai_embedding(EmbeddingResponse([Embedding(0, [1.0])], "g").to_dict())
