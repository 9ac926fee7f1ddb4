"""Results of the endpoints beyond chat, read from bodies in their documented shapes.

Shapes: https://platform.openai.com/docs/api-reference/images/object,
https://platform.openai.com/docs/api-reference/audio/json-object,
https://platform.openai.com/docs/api-reference/moderations/object, and rerank as
https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html#re-rank-api and
https://docs.cohere.com/v2/reference/rerank.
"""

from __future__ import annotations

from typing import Any

import pytest

from interlock import (
    BadRequestError,
    ImagesResponse,
    InterlockError,
    ModerationResponse,
    PassthroughResponse,
    RerankResponse,
    Transcription,
    UnsupportedEndpointError,
    Usage,
)
from interlock.endpoint_types import usage_of
from tests import sdk_contract_endpoints as sdk

IMAGES: dict[str, Any] = {
    "created": 1713833628,
    "data": [{"b64_json": "iVBORw0KGgo="}],
    "usage": {"total_tokens": 100, "input_tokens": 50, "output_tokens": 50,
              "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}},
    "background": "opaque",
}  # fmt: skip


def test_images_keep_the_body_and_read_usage() -> None:
    r = ImagesResponse.from_dict(IMAGES, deployment_id="d", group="g")
    assert r.data[0].b64_json == "iVBORw0KGgo="
    assert r.usage == Usage(50, 50, 100)
    assert r.to_dict() == IMAGES
    sdk.images_response(r.to_dict())


def test_dalle_images_have_no_usage() -> None:
    body = {"created": 1, "data": [{"url": "https://x/y.png", "revised_prompt": "p"}]}
    r = ImagesResponse.from_dict(body)
    assert r.usage is None
    assert r.data[0].revised_prompt == "p"


def test_transcription_usage_shapes() -> None:
    tokens = {"text": "hi", "usage": {"type": "tokens", "input_tokens": 14,
                                      "output_tokens": 45, "total_tokens": 59}}  # fmt: skip
    assert Transcription.from_dict(tokens).usage == Usage(14, 45, 59)
    seconds = {"text": "hi", "usage": {"type": "duration", "seconds": 3.2}}
    t = Transcription.from_dict(seconds)
    assert t.usage is None
    sdk.transcription_response(t.to_dict())


def test_moderation_results() -> None:
    cats = {"violence": True, "hate": False}
    body = {"id": "modr-1", "model": "omni-moderation-latest",
            "results": [{"flagged": True, "categories": cats,
                         "category_scores": {"violence": 0.9, "hate": 0.01}}]}  # fmt: skip
    m = ModerationResponse.from_dict(body)
    assert m.results[0].flagged
    assert m.results[0].categories == cats
    assert m.to_dict() == body


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"total_tokens": 30}, 30),  # vLLM, Jina
        ({"prompt_tokens": 30, "total_tokens": 30}, 30),  # vLLM's newer servers
        (None, None),  # Cohere: meta.billed_units.search_units, not tokens
    ],
)
def test_rerank_shapes(usage: dict[str, int] | None, tokens: int | None) -> None:
    body: dict[str, Any] = {
        "id": "r-1",
        "results": [{"index": 2, "relevance_score": 0.9, "document": {"text": "b"}},
                    {"index": 0, "relevance_score": 0.1}],
    }  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    else:
        body["meta"] = {"billed_units": {"search_units": 1}}
    r = RerankResponse.from_dict(body)
    assert [x.index for x in r.results] == [2, 0]
    assert (r.usage.total_tokens if r.usage else None) == tokens
    sdk.rerank_response(r.to_dict())


def test_rerank_refuses_a_result_that_is_not_one() -> None:
    with pytest.raises(TypeError):
        RerankResponse.from_dict({"results": [{"index": "0", "relevance_score": 1}]})


@pytest.mark.parametrize(
    "body",
    [{"usage": {"prompt_tokens": -1, "completion_tokens": 0}}, {"usage": {"input_tokens": "x"}},
     {"usage": "lots"}, [], {"usage": {"total_tokens": 1.5}}],
)  # fmt: skip
def test_usage_that_is_not_a_count_is_none(body: Any) -> None:
    assert usage_of(body) is None


def test_passthrough_response() -> None:
    r = PassthroughResponse(201, {"content-type": "application/json"}, b'{"a": 1}')
    assert r.ok
    assert r.json() == {"a": 1}
    assert r.text == '{"a": 1}'
    assert "201" in repr(r)
    assert not PassthroughResponse(404, {}, b"").ok


def test_unsupported_endpoint_error_names_what_was_asked() -> None:
    err = UnsupportedEndpointError("rerank", "chat", ("anthropic", "openai"))
    assert isinstance(err, BadRequestError)
    assert isinstance(err, InterlockError)
    text = str(err)
    assert "rerank" in text
    assert "'chat'" in text
    assert "anthropic, openai" in text
    assert err.endpoint == "rerank"
