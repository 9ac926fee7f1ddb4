"""The Gemini generateContent request body for an OpenAI-shaped chat request.

Reference: https://ai.google.dev/api/generate-content. Turns are ``contents`` of
``parts`` with roles ``user`` and ``model``; the system prompt is
``systemInstruction``. OpenAI's JSON Schemas (tools, ``response_format``) go in the
fields that take JSON Schema as it is (``parametersJsonSchema``,
``responseJsonSchema``), not in the OpenAPI subset of ``parameters`` and
``responseSchema``. Function calls go back with their ``id`` and, when Gemini signed
them, their ``thoughtSignature`` (https://ai.google.dev/gemini-api/docs/thought-signatures).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from interlock.config import Deployment
from interlock.errors import BadRequestError
from interlock.providers.params import (
    REASONING_BUDGETS,
    check_unsupported,
    content_text,
    guess_media_type,
    image_url_of,
    merge_extra,
    parse_data_url,
    reasoning_blocks_for,
    split_extra,
    tool_arguments,
)
from interlock.types import Request

__all__ = ["build_body", "embedding_texts", "model_path"]

_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "n": "candidateCount",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
}
_MAPPED = frozenset((*_GENERATION, "stop", "tools", "tool_choice", "response_format",
                     "stream_options", "reasoning_effort"))  # fmt: skip
_NOOP: dict[str, Any] = {"parallel_tool_calls": True}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def model_path(model: str) -> str:
    return model if model.startswith("models/") else f"models/{model}"


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        return [{"text": content_text(content)}]
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            parts.append({"text": str(part.get("text") or "")})
        elif kind == "image_url":
            url = image_url_of(part)
            data = parse_data_url(url)
            if data is not None:
                parts.append({"inlineData": {"mimeType": data[0], "data": data[1]}})
            else:
                parts.append({"fileData": {"mimeType": guess_media_type(url), "fileUri": url}})
        else:
            raise BadRequestError(f"content part type {kind!r} is not supported by gemini")
    return parts


def _call_signature(call: Mapping[str, Any], signed: Mapping[str, str]) -> str | None:
    # Ours (a reasoning block naming the call), or Google's own OpenAI-compatible
    # shape (`extra_content.google.thought_signature` on the tool call).
    sig = signed.get(str(call.get("id")))
    if sig:
        return sig
    google = (call.get("extra_content") or {}).get("google") or {}
    value = google.get("thought_signature") if isinstance(google, Mapping) else None
    return str(value) if value else None


def _model_parts(m: Mapping[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    blocks = reasoning_blocks_for(m, "gemini")
    signed = {str(b["tool_call_id"]): str(b["signature"])
              for b in blocks if b.get("tool_call_id") and b.get("signature")}  # fmt: skip
    loose = [
        str(b["signature"]) for b in blocks if b.get("signature") and not b.get("tool_call_id")
    ]
    parts: list[dict[str, Any]] = []
    text = content_text(m.get("content"))
    if text:
        parts.append({"text": text})
    if loose and parts:
        # A signature Gemini put on a text part goes back on the text.
        parts[-1]["thoughtSignature"] = loose[-1]
    for call in m.get("tool_calls") or ():
        fn = call.get("function") or {}
        names[str(call.get("id"))] = str(fn.get("name"))
        fc: dict[str, Any] = {"name": fn.get("name"), "args": tool_arguments(fn.get("arguments"))}
        if call.get("id"):
            fc["id"] = str(call["id"])
        part: dict[str, Any] = {"functionCall": fc}
        sig = _call_signature(call, signed)
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts or [{"text": ""}]


def _tool_response(m: Mapping[str, Any], names: Mapping[str, str], i: int, d: Deployment) -> Any:
    text = content_text(m.get("content"))
    try:
        response = orjson.loads(text)
    except orjson.JSONDecodeError:
        response = None
    if not isinstance(response, dict):
        response = {"content": text}
    call_id = m.get("tool_call_id")
    name = names.get(str(call_id)) or m.get("name")
    if not name:
        raise BadRequestError(
            f"messages[{i}] answers a tool call gemini cannot match to a function",
            deployment_id=d.id,
        )
    # The id pairs the answer with its call: parallel calls to one function are
    # otherwise matched by position.
    fr: dict[str, Any] = {"name": name, "response": response}
    if call_id:
        fr["id"] = str(call_id)
    return {"functionResponse": fr}


def _contents(messages: Any, d: Deployment) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, for functionResponse

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})

    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise BadRequestError(f"messages[{i}] must be an object", deployment_id=d.id)
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            system.append(content_text(content))
        elif role == "user":
            add("user", _parts(content))
        elif role == "assistant":
            add("model", _model_parts(m, names))
        elif role == "tool":
            add("user", [_tool_response(m, names, i, d)])
        else:
            raise BadRequestError(
                f"messages[{i}].role {role!r} is not one of system, developer, user, "
                "assistant, tool",
                deployment_id=d.id,
            )
    return system, out


def build_body(d: Deployment, request: Request) -> dict[str, Any]:
    """The generateContent body for an OpenAI-shaped chat request."""
    params, extra = split_extra(request.params)
    unsupported = [
        k for k, v in params.items() if k not in _MAPPED and not (k in _NOOP and v == _NOOP[k])
    ]
    config = _format_config(params.get("response_format"))
    if config is None:
        unsupported.append("response_format")
        config = {}
    check_unsupported("gemini", unsupported, request.unsupported_params, d.id)
    system, contents = _contents(request.messages, d)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config.update(_sampling_config(params))
    if params.get("reasoning_effort") is not None:
        config["thinkingConfig"] = _thinking_config(params["reasoning_effort"])
    if config:
        body["generationConfig"] = config
    body.update(_tool_fields(params))
    return merge_extra(body, extra, deep=True)


def _thinking_config(effort: Any) -> dict[str, Any]:
    """``thinkingConfig`` for a ``reasoning_effort``: the budget from the shared table,
    with thought summaries (they become ``reasoning_content``)."""
    if effort == "none":
        return {"thinkingBudget": 0}
    budget = REASONING_BUDGETS.get(str(effort))
    if budget is None:
        known = ", ".join(REASONING_BUDGETS)
        raise BadRequestError(f"reasoning_effort must be one of none, {known}")
    return {"thinkingBudget": budget, "includeThoughts": True}


def _format_config(fmt: Any) -> dict[str, Any] | None:
    """The generationConfig fields for an OpenAI ``response_format``; None when gemini has
    no equivalent."""
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        config: dict[str, Any] = {"responseMimeType": "application/json"}
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
        return config
    if fmt is None or kind == "text":
        return {}
    return None


def _sampling_config(params: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for ours, theirs in _GENERATION.items():
        if params.get(ours) is not None:
            config[theirs] = params[ours]
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _tool_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    tools = params.get("tools")
    if not tools:
        return {}
    declarations = []
    for t in tools:
        fn = t.get("function") or {}
        decl = {"name": fn.get("name"), "description": fn.get("description", "")}
        if fn.get("parameters"):
            decl["parametersJsonSchema"] = fn["parameters"]
        declarations.append(decl)
    fields: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    choice = params.get("tool_choice")
    if choice is not None:
        fields["toolConfig"] = {"functionCallingConfig": _calling_config(choice)}
    return fields


def _calling_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
    if choice in _MODES:
        return {"mode": _MODES[choice]}
    raise BadRequestError("tool_choice must be auto, none, required or a function")


def embedding_texts(
    provider: str, d: Deployment, request: Request
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """The texts of a Google embedding request (Gemini or Vertex), its parameters and
    its ``extra_body``; only `dimensions` (and ``encoding_format="float"``) map."""
    params, extra = split_extra(request.params)
    unsupported = [
        k for k, v in params.items()
        if k != "dimensions" and not (k == "encoding_format" and v == "float")
    ]  # fmt: skip
    check_unsupported(provider, unsupported, request.unsupported_params, d.id)
    items = [request.input] if isinstance(request.input, str) else request.input
    if not isinstance(items, list | tuple) or not all(isinstance(t, str) for t in items):
        raise BadRequestError(
            f"{provider} embeddings take a string or a list of strings, not token ids",
            deployment_id=d.id,
        )
    return list(items), params, extra
