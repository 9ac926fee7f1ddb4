"""`FakeVertex`: a loopback server speaking Vertex AI for Gemini and Claude models, with
an OAuth token endpoint, and checking the access token of every request.

Written from Google's public documentation: ``POST /v1/projects/{project}/locations/
{location}/publishers/google/models/{model}:generateContent`` (and
``:streamGenerateContent?alt=sse``, ``:predict`` for text embeddings) with Gemini's
bodies; ``.../publishers/anthropic/models/{model}:rawPredict`` (and
``:streamRawPredict``) with Anthropic's Messages body, minus ``model`` and plus
``anthropic_version: vertex-2023-10-16``. Every call needs ``Authorization: Bearer``
with a token the fake issued (and that has not expired) or one given in
`access_tokens`; anything else is a 401 ``UNAUTHENTICATED``.

Tokens are issued by ``POST /token`` (`token_uri`), the OAuth 2.0 JWT-bearer grant a
service account uses (https://developers.google.com/identity/protocols/oauth2/
service-account#httprest): the assertion must be signed by a key made with
`service_account()`, which writes a service-account file pointing at this fake, so
google-auth itself does the signing. `token_faults` scripts failures of that endpoint.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from interlock.testing.fake_anthropic import (
    FakeAnthropic,
    ToolReply,
    _check_fields,
    _check_messages,
)
from interlock.testing.fake_gemini import FakeGemini, gemini_error
from interlock.testing.fake_upstream import FakeUpstream
from interlock.testing.faults import Fault, FaultScript, _apply, _positive_int
from interlock.testing.wire import (
    JSON_HEADERS,
    BadRequest,
    Endpoint,
    Json,
    Record,
    Request,
    Response,
    tokens_for,
    unit_vector,
)

__all__ = ["FakeVertex"]

_PATH = re.compile(
    r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/(google|anthropic)/models/"
    r"([^/:]+):([A-Za-z]+)$"
)
_GOOGLE = frozenset(("generateContent", "streamGenerateContent", "predict"))
_ANTHROPIC = frozenset(("rawPredict", "streamRawPredict"))
_STREAMS = (":streamGenerateContent", ":streamRawPredict")
_GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential."
)


class _VertexClaude(FakeAnthropic):
    def _check(self, request: Request, body: Json) -> None:
        # On Vertex the version travels in the body (FakeVertex checks it), not a header.
        _check_fields(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: Field required (a non-empty list)")
        _check_messages(messages)
        for i, tool in enumerate(body.get("tools") or ()):
            if not (isinstance(tool, dict) and tool.get("name") and "input_schema" in tool):
                raise BadRequest(f"tools.{i}: name and input_schema are required")


class FakeVertex(FakeUpstream):
    """A Vertex AI server on loopback; options as `FakeUpstream` (`api_key` is not used:
    see `access_tokens`), plus `tool_calls` (a `ToolReply`), `access_tokens` (bearer
    tokens always accepted) and `token_ttl` (seconds an issued token lives, on `clock`).
    `url` is the `api_base` of a ``vertex`` deployment."""

    def __init__(
        self,
        *,
        tool_calls: ToolReply | None = None,
        access_tokens: Iterable[str] = (),
        token_ttl: float = 3600.0,
        **options: Any,
    ) -> None:
        if not token_ttl > 0:
            raise ValueError(f"FakeVertex: token_ttl must be > 0, got {token_ttl!r}")
        options.setdefault("name", "vertex")
        if options.pop("api_key", None) is not None:
            raise ValueError("FakeVertex: give access_tokens, not api_key")
        inner = {k: v for k, v in options.items() if k not in ("host", "port", "log_limit")}
        super().__init__(**options)
        self._gemini = FakeGemini(tool_calls=tool_calls, **inner)
        self._claude = _VertexClaude(tool_calls=tool_calls, **inner)
        self._static = frozenset(access_tokens)
        self._ttl = float(token_ttl)
        self._issued: dict[str, float] = {}  # token -> expiry on `clock`
        self._keys: dict[str, str] = {}  # service-account email -> public key (PEM)
        self._token_ids = itertools.count(1)
        self._rejected = 0
        self.token_faults = FaultScript()
        """Faults for ``POST /token`` only (the API's faults are scripted as usual)."""

    @property
    def url(self) -> str:
        """The `api_base`: ``http://host:port``."""
        return self.base_url

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint written into service-account files."""
        return self.base_url + "/token"

    @property
    def tokens_issued(self) -> int:
        """Access tokens issued by ``POST /token``."""
        return len(self._issued)

    @property
    def tokens_rejected(self) -> int:
        """Requests refused for a missing, unknown or expired token."""
        return self._rejected

    def service_account(self, path: str | Path, *, project: str = "fake-project") -> Path:
        """Write a service-account key file (a fresh throwaway RSA key) whose
        ``token_uri`` is this fake, and accept assertions signed with it. Call after
        `start()`."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        n = len(self._keys) + 1
        email = f"fake-sa-{n}@{project}.iam.gserviceaccount.com"
        self._keys[email] = public
        info = {
            "type": "service_account", "project_id": project, "private_key_id": f"key-{n}",
            "private_key": private, "client_email": email, "client_id": str(100 + n),
            "token_uri": self.token_uri,
        }  # fmt: skip
        target = Path(path)
        target.write_text(json.dumps(info), encoding="utf-8")
        return target

    # -- routing and auth ---------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[Endpoint, bool] | None:
        if method != "POST":
            return None
        if path == "/token":
            return (self._token, False)
        match = _PATH.match(path)
        if match is None:
            return None
        publisher, verb = match.group(3), match.group(5)
        if publisher == "google" and verb in _GOOGLE:
            return (self._embed if verb == "predict" else self._generate, True)
        if publisher == "anthropic" and verb in _ANTHROPIC:
            return (self._raw_predict, True)
        return None

    def _authorized(self, request: Request, api_key: str | None) -> bool:
        if request.path == "/token":
            return True
        if api_key is not None and (
            api_key in self._static or self._clock() < self._issued.get(api_key, float("-inf"))
        ):
            return True
        self._rejected += 1
        return False

    def _wants_stream(self, request: Request, body: Json) -> bool:
        return request.path.endswith(_STREAMS)

    def _unauthorized(self, record: Record) -> Response:
        return self._error_response(record, 401, _UNAUTHENTICATED)

    def _error_response(self, record: Record, status: int, message: str, **_: Any) -> Response:
        record.status = status
        return web.Response(body=gemini_error(status, message), status=status, headers=JSON_HEADERS)

    async def _apply_fault(self, fault: Fault, request: Request) -> Response | None:
        # Quota errors come from the platform (Google's shape) for every model; Claude's
        # other errors are Anthropic's, passed through.
        if "/publishers/anthropic/" in request.path and fault.kind != "rate_limit":
            return await self._claude._apply_fault(fault, request)
        return await self._gemini._apply_fault(fault, request)

    # -- endpoints ----------------------------------------------------------------

    async def _token(self, request: Request, record: Record, body: Json) -> Response:
        fault = self.token_faults.take()
        if fault is not None:
            response = await _apply(fault, request)
            if response is not None:
                record.status = response.status
                return response
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if form.get("grant_type") != _JWT_BEARER or not self._valid_assertion(
            form.get("assertion", "")
        ):
            record.status = 400
            error = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return web.Response(body=orjson.dumps(error), status=400, headers=JSON_HEADERS)
        token = f"ya29.fake-{self.name}-{next(self._token_ids)}"
        self._issued[token] = self._clock() + self._ttl
        record.status = 200
        ttl: float = int(self._ttl) if self._ttl == int(self._ttl) else self._ttl
        answer = {"access_token": token, "expires_in": ttl, "token_type": "Bearer"}
        return web.Response(body=orjson.dumps(answer), headers=JSON_HEADERS)

    def _valid_assertion(self, assertion: str) -> bool:
        from google.auth import exceptions, jwt

        try:
            claims = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]
            public = self._keys.get(str(claims.get("iss")))
            if public is None:
                return False
            # google-auth addresses the assertion to Google's token endpoint whatever
            # token_uri it posts it to.
            audience = [self.token_uri, _GOOGLE_TOKEN_URI]
            jwt.decode(assertion, certs=public, audience=audience)  # type: ignore[no-untyped-call]
        except (exceptions.GoogleAuthError, ValueError):
            return False
        return True

    async def _generate(self, request: Request, record: Record, body: Json) -> Response:
        return await self._gemini._generate(request, record, body)

    async def _raw_predict(self, request: Request, record: Record, body: Json) -> Response:
        version = body.get("anthropic_version")
        if version != "vertex-2023-10-16":
            raise BadRequest(f"anthropic_version: expected 'vertex-2023-10-16', got {version!r}")
        if "model" in body:
            raise BadRequest("model: not allowed in the body on Vertex (it is in the URL)")
        match = _PATH.match(request.path)
        model = match.group(4) if match else "fake-model"
        rest = {k: v for k, v in body.items() if k != "anthropic_version"}
        return await self._claude._messages(request, record, {**rest, "model": model})

    async def _embed(self, request: Request, record: Record, body: Json) -> Response:
        instances = body.get("instances")
        if not isinstance(instances, list) or not instances:
            raise BadRequest("instances: must be a non-empty list")
        dim = (body.get("parameters") or {}).get("outputDimensionality", self._embedding_dim)
        if not _positive_int(dim):
            raise BadRequest("parameters.outputDimensionality: must be >= 1")
        predictions = []
        for i, item in enumerate(instances):
            text = item.get("content") if isinstance(item, dict) else None
            if not isinstance(text, str):
                raise BadRequest(f"instances[{i}].content: a string is required")
            stats = {"token_count": tokens_for(len(text)), "truncated": False}
            values = list(unit_vector(b"s:" + text.encode(), dim))
            predictions.append({"embeddings": {"values": values, "statistics": stats}})
        record.status = 200
        return web.Response(body=orjson.dumps({"predictions": predictions}), headers=JSON_HEADERS)
