"""Checks of Responses API wire shapes against the openai SDK's own types
(https://platform.openai.com/docs/api-reference/responses): request bodies strictly
(`ResponseCreateParams`, unknown fields rejected), responses and stream events as the
SDK reads them (`Response`, the `ResponseStreamEvent` union). Counted in
`sdk_contract.COUNTS` like the other checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.responses.response_create_params import (
    ResponseCreateParamsNonStreaming,
    ResponseCreateParamsStreaming,
)

from tests.sdk_contract import COUNTS, _lax, _strict

__all__ = ["openai_response", "openai_response_event", "openai_responses_request"]


def openai_responses_request(body: Mapping[str, Any]) -> None:
    """A ``POST /responses`` body, as openai's `ResponseCreateParams` (the streaming
    variant when it asks for a stream)."""
    kind = ResponseCreateParamsStreaming if body.get("stream") else ResponseCreateParamsNonStreaming
    _strict(kind, body)
    COUNTS["openai request (ResponseCreateParams)"] += 1


def openai_response(payload: Any) -> Response:
    """A ``response`` object (a fake's body, or a result's `to_dict()`)."""
    COUNTS["openai response (Response)"] += 1
    return Response.model_validate_json(_json(payload))


def openai_response_event(payload: Any) -> Any:
    """One stream event, as the SDK's `ResponseStreamEvent` union reads it; the event
    must match the member its ``type`` names (not fall through to another)."""
    data = orjson.loads(payload) if isinstance(payload, bytes) else payload
    COUNTS["openai stream event (ResponseStreamEvent)"] += 1
    event = _lax(ResponseStreamEvent).validate_json(_json(data))
    assert event.type == data["type"], (event.type, data["type"])
    return event


def _json(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)
