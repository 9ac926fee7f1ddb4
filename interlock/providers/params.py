"""Shared rules for translating OpenAI-shaped requests to other providers.

Parameters fall into three sets per provider: mapped (translated to the provider's
own name and shape), harmless no-ops (a value that asks for the provider's default,
such as ``n=1``), and unsupported. What happens to an unsupported one is the call's
choice: ``"drop"`` leaves it out, ``"raise"`` raises `UnsupportedParamsError` before
anything is sent. ``extra_body`` is never checked: its keys go into the provider's
native body as they are (see docs/providers.md for what that means per provider).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson

from interlock.errors import BadRequestError, UnsupportedParamsError

__all__ = [
    "MEANINGFUL_PARAMS",
    "REASONING_BUDGETS",
    "UNSUPPORTED_MODES",
    "UnsupportedParams",
    "call_headers",
    "check_unsupported",
    "content_text",
    "merge_extra",
    "parse_data_url",
    "reasoning_blocks_for",
    "split_extra",
    "tool_arguments",
]

UnsupportedParams = Literal["drop", "raise"]
UNSUPPORTED_MODES: frozenset[str] = frozenset(("drop", "raise"))


def split_extra(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(common parameters, extra_body)``; ``extra_headers`` is neither (see
    `call_headers`)."""
    common = dict(params)
    extra = common.pop("extra_body", None)
    common.pop("extra_headers", None)
    return common, dict(extra) if extra else {}


def call_headers(base: dict[str, str], params: Mapping[str, Any]) -> dict[str, str]:
    """`base` (the deployment's headers) with the call's ``extra_headers`` over them."""
    extra = params.get("extra_headers")
    if not extra:
        return base
    if not isinstance(extra, Mapping):
        raise BadRequestError("extra_headers must be a mapping of header names to strings")
    for name, value in extra.items():
        if (
            not isinstance(name, str)
            or not isinstance(value, str)
            or "\n" in value
            or ("\r" in value)
        ):
            raise BadRequestError(f"extra_headers: {name!r} must be a string without line breaks")
    return {**base, **extra}


MEANINGFUL_PARAMS: frozenset[str] = frozenset(("response_format", "n", "tools", "tool_choice"))
"""Parameters that change what the answer means: never dropped, whatever the mode."""

REASONING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 32768,
}
"""``reasoning_effort`` -> thinking budget in tokens (Anthropic ``budget_tokens``,
Gemini ``thinkingBudget``); ``"none"`` turns thinking off (docs/providers.md)."""


def check_unsupported(
    provider: str, names: Iterable[str], mode: str, deployment_id: str | None
) -> None:
    """Raise `UnsupportedParamsError` for `names` when `mode` is ``"raise"``, and for the
    meaningful ones (`MEANINGFUL_PARAMS`) in any mode: a dropped ``n`` or
    ``response_format`` would return an answer of another shape, silently."""
    found = sorted(names)
    if not found:
        return
    if mode == "raise":
        raise UnsupportedParamsError(
            f"{provider} has no equivalent for parameter(s) {', '.join(found)}; "
            "remove them, or pass unsupported_params='drop' to leave them out",
            params=found,
            deployment_id=deployment_id,
        )
    meaningful = [name for name in found if name in MEANINGFUL_PARAMS]
    if meaningful:
        raise UnsupportedParamsError(
            f"{provider} has no equivalent for parameter(s) {', '.join(meaningful)}, which "
            "change the answer, so they are never dropped; remove them or route the call "
            "to a provider that has them",
            params=meaningful,
            deployment_id=deployment_id,
        )


def reasoning_blocks_for(message: Mapping[str, Any], provider: str) -> list[Mapping[str, Any]]:
    """The reasoning blocks of a replayed assistant message that `provider` produced
    (blocks of another provider mean nothing to it; one without a provider is taken
    as ours)."""
    blocks = message.get("reasoning_blocks")
    if not isinstance(blocks, list):
        return []
    return [b for b in blocks if isinstance(b, Mapping) and b.get("provider", provider) == provider]


def merge_extra(body: dict[str, Any], extra: Mapping[str, Any], *, deep: bool) -> dict[str, Any]:
    """`body` with `extra` merged in; with `deep`, mapping values merge one level down
    (so ``{"generationConfig": {"topK": 3}}`` adds to the mapped generationConfig)."""
    for key, value in extra.items():
        old = body.get(key)
        if deep and isinstance(old, dict) and isinstance(value, Mapping):
            body[key] = {**old, **value}
        else:
            body[key] = value
    return body


def content_text(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text") or "")
            for p in content
            if isinstance(p, Mapping) and p.get("type", "text") == "text"
        )
    raise BadRequestError(f"message content must be a string or a list, got {type(content)}")


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media type, base64 data)`` of a ``data:<type>;base64,<data>`` URL; None for
    any other URL. A broken data URL is a `BadRequestError`."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    media, _, encoding = head.partition(";")
    if not sep or encoding != "base64" or not media:
        raise BadRequestError("image data URLs must look like data:<media-type>;base64,<data>")
    try:
        base64.b64decode(data[:64].ljust(4 * ((min(len(data), 64) + 3) // 4), "="))
    except (binascii.Error, ValueError):
        raise BadRequestError("image data URL does not hold base64 data") from None
    return media, data


def guess_media_type(url: str) -> str:
    """A media type for an image URL from its extension; ``image/jpeg`` when unknown."""
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    return guessed or "image/jpeg"


def tool_arguments(raw: Any) -> Any:
    """A tool call's ``arguments`` (a JSON string in OpenAI's shape) as an object."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequestError("tool call arguments must be a JSON object") from None


def image_url_of(part: Mapping[str, Any]) -> str:
    """The URL of an OpenAI ``image_url`` content part."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise BadRequestError("an image_url content part needs image_url.url")
    return url
