"""Checks of the images, audio and moderation wire shapes against the openai SDK's own
types (the pattern of tests/sdk_contract.py, whose helpers these share). Rerank has no
type in the openai SDK: its shape is checked against the documented fields (vLLM,
Jina, Cohere v2) by `rerank_request` and `rerank_response`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_type_hints

from openai.types import ImageGenerateParams, ImagesResponse, ModerationCreateResponse
from openai.types.audio import SpeechCreateParams, Transcription
from openai.types.audio.transcription_create_params import TranscriptionCreateParamsNonStreaming
from openai.types.moderation_create_params import ModerationCreateParams
from typing_extensions import TypedDict

from tests.sdk_contract import COUNTS, _json, _lax, _strict

__all__ = [
    "image_request",
    "images_response",
    "moderation_request",
    "moderation_response",
    "rerank_request",
    "rerank_response",
    "speech_request",
    "transcription_fields",
    "transcription_response",
]


def image_request(body: Mapping[str, Any]) -> None:
    """An images/generations body, as openai's `ImageGenerateParams`."""
    _strict(ImageGenerateParams, body)
    COUNTS["openai request (ImageGenerateParams)"] += 1


def speech_request(body: Mapping[str, Any]) -> None:
    _strict(SpeechCreateParams, body)
    COUNTS["openai request (SpeechCreateParams)"] += 1


def moderation_request(body: Mapping[str, Any]) -> None:
    rest = dict(body)
    _lax(str | list[str] | list[dict[str, Any]]).validate_json(_json(rest.pop("input")))
    _strict(ModerationCreateParams, {**rest, "input": "x"})
    COUNTS["openai request (ModerationCreateParams)"] += 1


# The SDK's type without `file` (an upload, which pydantic cannot describe): the
# other fields, with their own types and required markers.
_TRANSCRIPTION_FIELDS: Any = TypedDict(  # type: ignore[misc]
    "_TranscriptionFields",
    {
        k: v
        for k, v in get_type_hints(
            TranscriptionCreateParamsNonStreaming, include_extras=True
        ).items()
        if k != "file"
    },
    total=False,
)


def transcription_fields(fields: Mapping[str, Any]) -> None:
    """The text fields of a transcriptions form (the file checked apart), as openai's
    `TranscriptionCreateParams` with the values the form carries as text parsed back."""
    typed: dict[str, Any] = dict(fields)
    if "temperature" in typed:
        typed["temperature"] = float(typed["temperature"])
    _strict(_TRANSCRIPTION_FIELDS, typed)
    COUNTS["openai request (TranscriptionCreateParams)"] += 1


def images_response(payload: Any) -> ImagesResponse:
    COUNTS["openai response (ImagesResponse)"] += 1
    return ImagesResponse.model_validate_json(_json(payload))


def transcription_response(payload: Any) -> Transcription:
    COUNTS["openai response (Transcription)"] += 1
    return Transcription.model_validate_json(_json(payload))


def moderation_response(payload: Any) -> ModerationCreateResponse:
    COUNTS["openai response (ModerationCreateResponse)"] += 1
    return ModerationCreateResponse.model_validate_json(_json(payload))


# https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html#re-rank-api,
# https://jina.ai/reranker/ (the API section), https://docs.cohere.com/v2/reference/rerank
_RERANK_REQUEST = {"model", "query", "documents", "top_n", "return_documents",
                   "max_tokens_per_doc"}  # fmt: skip


def rerank_request(body: Mapping[str, Any]) -> None:
    unknown = set(body) - _RERANK_REQUEST
    assert not unknown, f"fields no rerank API documents: {sorted(unknown)}"
    assert isinstance(body["model"], str)
    assert isinstance(body["query"], str)
    assert isinstance(body["documents"], list)
    assert all(isinstance(d, str) for d in body["documents"])
    if "top_n" in body:
        assert type(body["top_n"]) is int
    COUNTS["rerank request (vLLM/Jina/Cohere)"] += 1


def rerank_response(payload: Mapping[str, Any]) -> None:
    results = payload["results"]
    assert isinstance(results, list)
    for r in results:
        assert type(r["index"]) is int
        assert isinstance(r["relevance_score"], float | int)
        if "document" in r:
            assert isinstance(r["document"]["text"], str)
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True), "results are ordered best first"
    COUNTS["rerank response (vLLM/Jina/Cohere)"] += 1
