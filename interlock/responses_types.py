"""Types of OpenAI's Responses API as interlock routes it: the result, the streamed
events, the usage, the call's parameters and the affinity error.

Results keep the provider's JSON whole (`to_dict()` gives it back unchanged) and read
the fields callers and the ledger need from it: the output items are plain dicts in
the wire shape, so a new output item type (a new built-in tool) passes through
without a release of interlock. Reference:
https://platform.openai.com/docs/api-reference/responses
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from interlock.errors import NoDeploymentAvailableError
from interlock.result_parts import CompletionTokensDetails, PromptTokensDetails, token_count
from interlock.types import Usage

__all__ = [
    "RESPONSES_PARAM_NAMES",
    "TERMINAL_EVENTS",
    "ResponseAffinityError",
    "ResponseEvent",
    "ResponseResult",
    "ResponseUsage",
    "ResponsesParams",
    "estimate_responses_input",
]

TERMINAL_EVENTS = frozenset(("response.completed", "response.incomplete", "response.failed"))
"""The events that end a response stream with the final `Response` object."""


@dataclass(slots=True)
class ResponseUsage:
    """The Responses API's ``usage``: input and output tokens, with the cached input
    and the reasoning output broken out (both are part of the totals)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: dict[str, Any] | None = None
    """As sent: ``cached_tokens`` and, on newer models, ``cache_write_tokens``."""
    output_tokens_details: dict[str, Any] | None = None
    """As sent: ``reasoning_tokens``."""

    @property
    def cached_tokens(self) -> int:
        """Input tokens read from the prompt cache (0 when not reported)."""
        d = self.input_tokens_details
        value = d.get("cached_tokens") if d else None
        return value if type(value) is int else 0

    @property
    def reasoning_tokens(self) -> int:
        """Output tokens spent reasoning (0 when not reported)."""
        d = self.output_tokens_details
        value = d.get("reasoning_tokens") if d else None
        return value if type(value) is int else 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResponseUsage:
        """From the ``usage`` object; raises `InvalidCount` for a count that is not one
        (accounting must never see it)."""
        inp = token_count(d.get("input_tokens"), "usage.input_tokens")
        out = token_count(d.get("output_tokens"), "usage.output_tokens")
        total = d.get("total_tokens")
        total = inp + out if total is None else token_count(total, "usage.total_tokens")
        inp_details = d.get("input_tokens_details")
        out_details = d.get("output_tokens_details")
        # The detail counts feed spend (cached input is billed apart): checked too; a
        # detail that is not an object is left out rather than failing the response.
        if isinstance(inp_details, dict):
            token_count(
                inp_details.get("cached_tokens"), "usage.input_tokens_details.cached_tokens"
            )
        else:
            inp_details = None
        if isinstance(out_details, dict):
            name = "usage.output_tokens_details.reasoning_tokens"
            token_count(out_details.get("reasoning_tokens"), name)
        else:
            out_details = None
        return cls(inp, out, total, inp_details, out_details)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "input_tokens_details": self.input_tokens_details
            or {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": self.output_tokens_details or {"reasoning_tokens": 0},
            "total_tokens": self.total_tokens,
        }
        return out

    def as_usage(self) -> Usage:
        """The same counts as a chat `Usage`, as the ledger and the observer take it."""
        usage = Usage(self.input_tokens, self.output_tokens, self.total_tokens)
        cached = self.cached_tokens
        if cached or self.input_tokens_details is not None:
            write = (self.input_tokens_details or {}).get("cache_write_tokens")
            usage.prompt_tokens_details = PromptTokensDetails(
                cached, write if type(write) is int else 0
            )
        if self.output_tokens_details is not None:
            usage.completion_tokens_details = CompletionTokensDetails(self.reasoning_tokens)
        return usage


@dataclass(slots=True)
class ResponseResult:
    """A Responses API ``response`` object, plus where it came from.

    `output` holds the output items as the provider sent them (``message``,
    ``function_call``, ``reasoning``, ``web_search_call``, ...); `output_text` joins
    the text of every ``output_text`` part, as the openai SDK's property does.
    """

    id: str
    model: str
    status: str | None
    output: list[dict[str, Any]]
    usage: ResponseUsage | None
    incomplete_details: dict[str, Any] | None
    error: dict[str, Any] | None
    previous_response_id: str | None
    body: dict[str, Any]
    """The whole ``response`` object as sent (what `to_dict()` returns)."""
    deployment_id: str = ""
    """The deployment that served (and, with ``store``, holds) this response."""
    group: str = ""
    request_id: str = ""
    """The id of the router call that returned it (`Router.aresponses`'s
    ``request_id=``, or one the router made): also on that call's hook events, spans
    and errors. A routing field like `deployment_id`: not in `to_dict()`; not the
    provider's response `id`."""
    cost: float | None = None
    """US dollars this response cost at the deployment's prices (its own or built in:
    docs/operations.md), cached input tokens priced apart; None when unknown. A routing
    field: not in `to_dict()`."""

    @property
    def output_text(self) -> str:
        return "".join(_texts(self.output))

    @property
    def function_calls(self) -> list[dict[str, Any]]:
        """The ``function_call`` output items: run each and send back a
        ``function_call_output`` item with its ``call_id``."""
        return [item for item in self.output if item.get("type") == "function_call"]

    @property
    def stored(self) -> bool:
        """The provider keeps this response (``store``, true unless set false), so a
        later call may name it as ``previous_response_id``."""
        return self.body.get("store") is not False

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, deployment_id: str = "", group: str = ""
    ) -> ResponseResult:
        """Build from the ``response`` JSON; raises KeyError/TypeError/ValueError (or
        `InvalidCount`) when it is not one."""
        rid = d["id"]
        output = d["output"]
        if not isinstance(rid, str) or not isinstance(output, list):
            raise TypeError("a response needs a string id and an output list")
        u = d.get("usage")
        return cls(
            rid,
            str(d.get("model") or ""),
            d.get("status"),
            output,
            ResponseUsage.from_dict(u) if u else None,
            d.get("incomplete_details"),
            d.get("error"),
            d.get("previous_response_id"),
            dict(d),
            deployment_id,
            group,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``response`` JSON as the provider sent it (without the routing fields)."""
        return dict(self.body)


def _texts(items: Sequence[Any]) -> Iterator[str]:
    for item in items:
        if isinstance(item, Mapping) and item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, Mapping) and part.get("type") == "output_text":
                    text = part.get("text")
                    if isinstance(text, str):
                        yield text


@dataclass(slots=True)
class ResponseEvent:
    """One server-sent event of a streamed response, in its wire shape (`data`).

    `type` is the event's type (``response.created``, ``response.output_text.delta``,
    ``response.function_call_arguments.delta``, ``response.completed``, ``error``, ...);
    `response` is the ``Response`` that the lifecycle events carry.
    """

    type: str
    data: dict[str, Any]
    deployment_id: str = ""
    group: str = ""

    @property
    def sequence_number(self) -> int | None:
        value = self.data.get("sequence_number")
        return value if type(value) is int else None

    @property
    def delta(self) -> str | None:
        """The text of a ``*.delta`` event (output text, function-call arguments,
        reasoning summary, ...); None for other events."""
        value = self.data.get("delta")
        return value if isinstance(value, str) else None

    @property
    def response(self) -> ResponseResult | None:
        """The response a ``response.created``/``in_progress``/``completed``/
        ``incomplete``/``failed`` event carries."""
        body = self.data.get("response")
        if not isinstance(body, Mapping):
            return None
        return ResponseResult.from_dict(body, deployment_id=self.deployment_id, group=self.group)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


class ResponseAffinityError(NoDeploymentAvailableError):
    """A call continuing a stored response (``previous_response_id``) cannot reach the
    deployment that stored it, and no other deployment can see that response.

    `response_id` is the response named; `deployment_id` the deployment holding it;
    `reason` why it cannot take the call now; `retry_after`, when known, how long
    until it can.
    """

    def __init__(
        self,
        message: str,
        *,
        response_id: str,
        deployment_id: str,
        reason: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, deployment_id=deployment_id, retry_after=retry_after)
        self.response_id = response_id
        self.reason = reason


class ResponsesParams(TypedDict, total=False):
    """Responses API parameters passed to the provider (only those set are sent);
    https://platform.openai.com/docs/api-reference/responses/create.

    `previous_response_id` continues a stored response (the router sends it to the
    deployment that stored it); anything else the provider takes (OpenAI's
    ``metadata`` included) goes in `extra_body`, merged into the request body;
    `extra_headers` are sent as HTTP headers with this call only.
    """

    instructions: str
    previous_response_id: str
    store: bool
    tools: Sequence[Mapping[str, Any]]
    tool_choice: str | Mapping[str, Any]
    parallel_tool_calls: bool
    max_output_tokens: int
    max_tool_calls: int
    temperature: float
    top_p: float
    top_logprobs: int
    reasoning: Mapping[str, Any]
    text: Mapping[str, Any]
    truncation: str
    include: Sequence[str]
    # No `metadata`: that keyword is interlock's own (handed to hooks, as on
    # `acompletion`); OpenAI's ``metadata`` goes in ``extra_body={"metadata": {...}}``.
    user: str
    safety_identifier: str
    prompt_cache_key: str
    service_tier: str
    prompt: Mapping[str, Any]
    stream_options: Mapping[str, Any]
    extra_body: Mapping[str, Any]
    extra_headers: Mapping[str, str]


RESPONSES_PARAM_NAMES: frozenset[str] = frozenset(ResponsesParams.__annotations__)

_TEXT_KEYS = ("text", "output", "arguments", "refusal")


def estimate_responses_input(value: Any, instructions: object, count: Callable[[str], int]) -> int:
    """Input tokens of a Responses call (its `input` and `instructions`), counted
    with `count` over the text they hold, for the reservation before the call."""
    total = count(instructions) if isinstance(instructions, str) else 0
    if isinstance(value, str):
        return total + count(value)
    for item in value if isinstance(value, Sequence) else ():
        if not isinstance(item, Mapping):
            continue
        total += 4  # an item's framing, as a chat message's
        content = item.get("content")
        if isinstance(content, str):
            total += count(content)
        elif isinstance(content, Sequence):
            for part in content:
                if isinstance(part, Mapping) and isinstance(text := part.get("text"), str):
                    total += count(text)
        for key in _TEXT_KEYS:
            text = item.get(key)
            if isinstance(text, str):
                total += count(text)
    return total
