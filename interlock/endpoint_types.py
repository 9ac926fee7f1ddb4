"""Results of the endpoints beyond chat and embeddings (docs/endpoints.md): images,
audio transcriptions, moderations, rerank and the passthrough, and the error for an
endpoint a provider does not have.

Each result keeps the decoded body it was read from (`to_dict()` gives it back, fields
interlock does not know included) and says which deployment served it. Typed fields
are read from the body once, when the result is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from interlock.errors import BadRequestError
from interlock.result_parts import token_count
from interlock.types import Usage

__all__ = [
    "ENDPOINTS",
    "Endpoint",
    "Image",
    "ImagesResponse",
    "Moderation",
    "ModerationResponse",
    "PassthroughResponse",
    "RerankResponse",
    "RerankResult",
    "Transcription",
    "UnsupportedEndpointError",
    "usage_of",
]

Endpoint = Literal["images", "transcription", "speech", "moderation", "rerank", "passthrough"]
ENDPOINTS: tuple[Endpoint, ...] = (
    "images",
    "transcription",
    "speech",
    "moderation",
    "rerank",
    "passthrough",
)


class UnsupportedEndpointError(BadRequestError):
    """No deployment of the group can serve this endpoint (its provider has no such
    API, or interlock does not speak it there). Raised at the call, before anything is
    sent; `endpoint`, `group` and `providers` (those of the group) say what was asked."""

    def __init__(
        self, endpoint: str, group: str, providers: tuple[str, ...], detail: str = ""
    ) -> None:
        names = ", ".join(providers) or "none"
        super().__init__(
            f"no deployment of group {group!r} supports the {endpoint} endpoint "
            f"(its providers: {names}; see docs/endpoints.md for what each supports)"
            + (f": {detail}" if detail else ""),
            status_code=400,
        )
        self.endpoint = endpoint
        self.group = group
        self.providers = providers


def usage_of(body: object) -> Usage | None:
    """The token usage a body reports, as a `Usage`: OpenAI's chat shape
    (``prompt_tokens``/``completion_tokens``), the images and audio shape
    (``input_tokens``/``output_tokens``), or a lone ``total_tokens`` (Jina and vLLM
    rerank). None when it reports none (or counts that are not counts)."""
    if not isinstance(body, Mapping):
        return None
    u = body.get("usage")
    if not isinstance(u, Mapping):
        return None
    try:
        if "prompt_tokens" in u or "completion_tokens" in u:
            if "completion_tokens" not in u:
                prompt = token_count(u.get("prompt_tokens"), "usage.prompt_tokens")
                total = token_count(u.get("total_tokens", prompt), "usage.total_tokens")
                return Usage(prompt, 0, total)
            return Usage.from_dict(u)
        if "input_tokens" in u:
            inp = token_count(u.get("input_tokens"), "usage.input_tokens")
            out = token_count(u.get("output_tokens", 0), "usage.output_tokens")
            total = token_count(u.get("total_tokens", inp + out), "usage.total_tokens")
            return Usage(inp, out, total)
        if "total_tokens" in u:
            total = token_count(u.get("total_tokens"), "usage.total_tokens")
            return Usage(total, 0, total)
    except ValueError:
        return None
    return None


@dataclass(slots=True)
class Image:
    """One generated image: a URL or base64 data (which one, the request decides)."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


@dataclass(slots=True)
class ImagesResponse:
    """OpenAI's image generation result (``images.generate``)."""

    created: int
    data: list[Image]
    usage: Usage | None = None
    """Token usage, when the model reports it (GPT image models do; DALL·E does not)."""
    deployment_id: str = ""
    group: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    request_id: str = ""
    """The id of the router call that returned it (the call's ``request_id=`` or one the
    router made): also on its hook events, spans and errors. Not in `to_dict()`."""

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> ImagesResponse:
        created = d["created"]
        if not isinstance(created, int):
            raise TypeError("created")
        data = [Image(i.get("url"), i.get("b64_json"), i.get("revised_prompt")) for i in d["data"]]
        return cls(created, data, usage_of(d), deployment_id, group, dict(d))

    def to_dict(self) -> dict[str, Any]:
        """The body as the provider sent it."""
        return dict(self.raw)


@dataclass(slots=True)
class Transcription:
    """The text of an audio file (``audio.transcriptions.create``). With a
    ``response_format`` of ``text``, ``srt`` or ``vtt`` the body is that text, and
    `raw` holds just ``{"text": ...}``."""

    text: str
    usage: Usage | None = None
    deployment_id: str = ""
    group: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    request_id: str = ""
    """The id of the router call that returned it (the call's ``request_id=`` or one the
    router made): also on its hook events, spans and errors. Not in `to_dict()`."""

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> Transcription:
        text = d["text"]
        if not isinstance(text, str):
            raise TypeError("text")
        return cls(text, usage_of(d), deployment_id, group, dict(d))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass(slots=True)
class Moderation:
    """One input's verdict."""

    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]


@dataclass(slots=True)
class ModerationResponse:
    """OpenAI's moderation result (``moderations.create``): one `Moderation` per input."""

    id: str
    model: str
    results: list[Moderation]
    deployment_id: str = ""
    group: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    request_id: str = ""
    """The id of the router call that returned it (the call's ``request_id=`` or one the
    router made): also on its hook events, spans and errors. Not in `to_dict()`."""

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> ModerationResponse:
        results = [
            Moderation(bool(r["flagged"]), dict(r["categories"]), dict(r["category_scores"]))
            for r in d["results"]
        ]
        return cls(str(d["id"]), str(d["model"]), results, deployment_id, group, dict(d))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass(slots=True)
class RerankResult:
    """One document's place: its `index` in the request's ``documents`` and its score."""

    index: int
    relevance_score: float
    document: Any = None
    """The document, when the request asked for it back (``return_documents``)."""


@dataclass(slots=True)
class RerankResponse:
    """The ``/rerank`` result shared by Cohere (v1/v2), Jina, vLLM and Together:
    ``results`` ordered by relevance, best first."""

    results: list[RerankResult]
    id: str | None = None
    model: str | None = None
    usage: Usage | None = None
    deployment_id: str = ""
    group: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    request_id: str = ""
    """The id of the router call that returned it (the call's ``request_id=`` or one the
    router made): also on its hook events, spans and errors. Not in `to_dict()`."""

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> RerankResponse:
        results = []
        for r in d["results"]:
            index, score = r["index"], r["relevance_score"]
            if type(index) is not int or not isinstance(score, int | float):
                raise TypeError("results")
            results.append(RerankResult(index, float(score), r.get("document")))
        ident, model = d.get("id"), d.get("model")
        return cls(
            results,
            ident if isinstance(ident, str) else None,
            model if isinstance(model, str) else None,
            usage_of(d),
            deployment_id,
            group,
            dict(d),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass(slots=True)
class PassthroughResponse:
    """What a deployment answered to `Router.arequest`: any status below 500 other than
    408 and 429 (those, 5xx and deployment faults are retried elsewhere and raised
    only when no deployment answers; docs/endpoints.md)."""

    status: int
    headers: dict[str, str]
    body: bytes
    usage: Usage | None = None
    """The token usage the body reported (OpenAI's ``usage``), if any."""
    deployment_id: str = ""
    group: str = ""
    request_id: str = ""
    """The id of the router call that returned it (the call's ``request_id=`` or one the
    router made): also on its hook events, spans and errors."""

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body decoded as JSON (raises `ValueError` when it is not)."""
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        return (
            f"<PassthroughResponse {self.status} {len(self.body)} bytes "
            f"deployment={self.deployment_id}>"
        )
