"""`FakeAzure`: OpenAI's wire format at Azure OpenAI's paths.

``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` (and
``/embeddings``) with an ``api-key`` header (or ``Authorization: Bearer`` with a
Microsoft Entra ID token); a missing ``api-version`` is a 400 and an
unknown deployment a 404 ``DeploymentNotFound``. The Responses API at
``/openai/v1/responses`` (v1 API, no ``api-version``) and
``/openai/responses?api-version=...`` (preview), the deployment named by ``model``.
A content-policy fault answers with Azure's ``content_filter`` code.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from interlock.testing.fake_upstream import FakeUpstream
from interlock.testing.faults import Fault, _apply, _error_body
from interlock.testing.wire import (
    Endpoint,
    Json,
    Record,
    Request,
    Response,
    error_response,
)

__all__ = ["FakeAzure"]

_PATH = re.compile(
    r"^/openai/deployments/([^/]+)/"
    r"(chat/completions|embeddings|images/generations|audio/transcriptions|audio/speech)$"
)
_RESPONSES = frozenset(("/openai/v1/responses", "/openai/responses"))


class FakeAzure(FakeUpstream):
    """An Azure OpenAI server on loopback; options as `FakeUpstream`, plus
    `deployments` (names served; None serves any). `url` is the resource endpoint
    (``http://host:port``), the `api_base` of an ``azure`` deployment."""

    def __init__(self, *, deployments: frozenset[str] | None = None, **options: Any) -> None:
        options.setdefault("name", "azure")
        super().__init__(**options)
        self._deployments = deployments

    @property
    def url(self) -> str:
        return self.base_url

    def _route(self, method: str, path: str) -> tuple[Endpoint, bool] | None:
        if method == "POST" and path in _RESPONSES:
            return (self._responses, True)
        match = _PATH.match(path)
        if method != "POST" or match is None:
            return None
        if self._deployments is not None and match.group(1) not in self._deployments:
            return (self._missing, True)
        # The same handlers as OpenAI's paths (images and audio: fake_endpoints.py).
        return self._endpoints.get(("POST", f"/v1/{match.group(2)}"))

    def _api_key_of(self, request: Request) -> str | None:
        # A Microsoft Entra ID token comes as a bearer token instead of the key; `api_key`
        # then names the token the fake accepts.
        return request.headers.get("api-key") or super()._api_key_of(request)

    def _unauthorized(self, record: Record) -> Response:
        message = ("Access denied due to invalid subscription key or wrong API endpoint. Make "
                   "sure to provide a valid key for an active subscription.")  # fmt: skip
        return error_response(record, 401, message, code="401")

    async def _respond(self, request: Request, record: Record, target: Any,
                       authorized: bool) -> Response:  # fmt: skip
        versioned = not request.path.startswith("/openai/v1/")
        if target is not None and authorized and versioned and not request.query.get("api-version"):
            await request.read()
            message = "The api-version query parameter (?api-version=) is required."
            return error_response(record, 400, message, code="MissingApiVersionParameter")
        return await super()._respond(request, record, target, authorized)

    def _annotate(self, completion: dict[str, Any]) -> None:
        # Azure's content filtering results on every completion: per prompt and per
        # choice, one entry per category ("Chat completions" response in the Azure
        # OpenAI REST reference, https://learn.microsoft.com/en-us/azure/ai-services/
        # openai/reference#chat-completions).
        completion["prompt_filter_results"] = [
            {"prompt_index": 0, "content_filter_results": _safe()}
        ]
        for choice in completion["choices"]:
            choice["content_filter_results"] = _safe()

    async def _responses(self, request: Request, record: Record, body: Json) -> Response:
        deployments = self._deployments
        if deployments is not None and body.get("model") not in deployments:
            return await self._missing(request, record, body)
        return await self.responses.serve(request, record, body)

    async def _missing(self, request: Request, record: Record, body: Json) -> Response:
        message = "The API deployment for this resource does not exist."
        return error_response(record, 404, message, code="DeploymentNotFound")

    async def _apply_fault(self, fault: Fault, request: Request) -> Response | None:
        if fault.kind != "content_policy":
            return await _apply(fault, request)
        message = ("The response was filtered due to the prompt triggering Azure OpenAI's "
                   "content management policy.")  # fmt: skip
        body = _error_body(message, "invalid_request_error", "prompt", "content_filter")
        return web.Response(body=body, status=400, headers={"Content-Type": "application/json"})


def _safe() -> dict[str, Any]:
    return {
        category: {"filtered": False, "severity": "safe"}
        for category in ("hate", "self_harm", "sexual", "violence")
    }
