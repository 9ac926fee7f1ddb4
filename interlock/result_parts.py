"""The parts of results that providers report in their own ways: usage (with its
cached, cache-write and reasoning tokens), reasoning blocks to send back, and the
capture of fields this package does not model so `to_dict()` can return them.

Kept apart from `interlock.types` (which re-exports them) to keep each module small;
it imports nothing from the rest of interlock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict

__all__ = [
    "MAX_COUNT",
    "CompletionTokensDetails",
    "InvalidCount",
    "PromptTokensDetails",
    "ReasoningBlock",
    "Usage",
    "UsageLike",
    "extra_fields",
    "read_usage_details",
    "token_count",
]


def extra_fields(d: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any] | None:
    """The fields of `d` this module does not model, kept so `to_dict()` returns them."""
    if type(d) is dict and known.issuperset(d):
        return None  # the common case, checked in C: nothing unknown
    out: dict[str, Any] | None = None
    for key in d:
        if key not in known:
            if out is None:
                out = {}
            out[key] = d[key]
    return out


@dataclass(slots=True)
class PromptTokensDetails:
    """What the prompt tokens were made of (OpenAI's ``prompt_tokens_details``).

    Both counts are part of `Usage.prompt_tokens`, which counts every input token
    whatever the provider calls them.
    """

    cached_tokens: int = 0
    """Read from the provider's prompt cache (usually billed at a lower rate)."""
    cache_creation_tokens: int = 0
    """Written to the prompt cache (Anthropic bills these at a higher rate); on the
    wire ``cache_write_tokens``, the openai SDK's name for it."""
    extra: dict[str, Any] | None = None
    """Other fields the provider sent (``audio_tokens``, ...)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cached_tokens": self.cached_tokens}
        if self.cache_creation_tokens:
            out["cache_write_tokens"] = self.cache_creation_tokens
        if self.extra:
            out.update(self.extra)
        return out


_PROMPT_DETAILS = frozenset(("cached_tokens", "cache_write_tokens", "cache_creation_tokens"))


@dataclass(slots=True)
class CompletionTokensDetails:
    """What the completion tokens were made of (``completion_tokens_details``)."""

    reasoning_tokens: int = 0
    """Spent thinking; part of `Usage.completion_tokens` (billed as output)."""
    extra: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reasoning_tokens": self.reasoning_tokens}
        if self.extra:
            out.update(self.extra)
        return out


class UsageLike(Protocol):
    """What `read_usage_details` fills in (`interlock.types.Usage`)."""

    prompt_tokens_details: PromptTokensDetails | None
    completion_tokens_details: CompletionTokensDetails | None
    extra: dict[str, Any] | None


_USAGE = frozenset(
    ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
     "completion_tokens_details")
)  # fmt: skip


MAX_COUNT = 2**53
"""Counts from a provider are below this: integers a float holds exactly, so costs
and JSON round trips stay exact (and an absurd number is refused, not priced). A
power of two (`Usage.from_dict` checks three counts against it at once)."""


class InvalidCount(ValueError):
    """A number from a provider is not a count (an integer in ``[0, MAX_COUNT)``). The
    message names the field, never the value; a transport turns this into a
    `MalformedResponseError`."""


def token_count(value: object, name: str) -> int:
    """`value` as a count of tokens (None is 0): an int, or a float with an integral
    value; anything else (a string, a bool, a negative or fractional number) raises
    `InvalidCount`."""
    if value is None:
        return 0
    if type(value) is int and 0 <= value < MAX_COUNT:
        return value
    if type(value) is float and value.is_integer() and 0 <= value < MAX_COUNT:
        return int(value)
    raise InvalidCount(f"{name} is not a count (an integer >= 0)")


def read_usage_details(usage: UsageLike, d: Mapping[str, Any]) -> None:
    """OpenAI's detail objects (and any other field) onto `usage`; a detail that is not
    an object is left out rather than failing the response, a count that is not one
    raises `InvalidCount` (as the main counts do)."""
    prompt = d.get("prompt_tokens_details")
    if isinstance(prompt, Mapping):
        usage.prompt_tokens_details = PromptTokensDetails(
            token_count(prompt.get("cached_tokens"), "usage.prompt_tokens_details.cached_tokens"),
            token_count(
                prompt.get("cache_write_tokens") or prompt.get("cache_creation_tokens"),
                "usage.prompt_tokens_details.cache_write_tokens",
            ),
            extra_fields(prompt, _PROMPT_DETAILS),
        )
    completion = d.get("completion_tokens_details")
    if isinstance(completion, Mapping):
        usage.completion_tokens_details = CompletionTokensDetails(
            token_count(
                completion.get("reasoning_tokens"),
                "usage.completion_tokens_details.reasoning_tokens",
            ),
            extra_fields(completion, _REASONING_DETAILS),
        )
    usage.extra = extra_fields(d, _USAGE)


_REASONING_DETAILS = frozenset(("reasoning_tokens",))


class ReasoningBlock(TypedDict, total=False):
    """One piece of a model's reasoning, kept so it can be sent back.

    Providers that sign their reasoning need it back, unchanged, when the
    conversation goes on (Anthropic thinking blocks after a tool call; Gemini thought
    signatures). Results carry these in `ChatMessage.reasoning_blocks`; replaying the
    assistant message (as `to_dict()` gives it) sends each block back to the provider
    named by `provider`, and other providers leave it out.
    """

    type: Literal["thinking", "redacted_thinking"]
    thinking: str
    """The reasoning text (``thinking``); may be empty when only a signature came."""
    signature: str
    """The provider's signature over the reasoning (opaque)."""
    data: str
    """``redacted_thinking``: the encrypted reasoning (opaque)."""
    provider: str
    """The wire format that produced it: ``anthropic``, ``gemini`` or ``bedrock``."""
    tool_call_id: str
    """Gemini: the tool call whose part carried the signature."""


_new = object.__new__


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    """Every input token, cached or not (as OpenAI counts them)."""
    completion_tokens: int = 0
    """Every output token, reasoning included."""
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    extra: dict[str, Any] | None = None
    """Other fields the provider sent with the usage."""

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens read from the prompt cache (0 when not reported)."""
        d = self.prompt_tokens_details
        return d.cached_tokens if d is not None else 0

    @property
    def cache_creation_tokens(self) -> int:
        """Prompt tokens written to the prompt cache (0 when not reported)."""
        d = self.prompt_tokens_details
        return d.cache_creation_tokens if d is not None else 0

    @property
    def reasoning_tokens(self) -> int:
        """Completion tokens spent reasoning (0 when not reported)."""
        d = self.completion_tokens_details
        return d.reasoning_tokens if d is not None else 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Usage:
        """From OpenAI's ``usage`` object; raises `InvalidCount` for a count that is
        not one (accounting must never see it)."""
        prompt = d.get("prompt_tokens")
        completion = d.get("completion_tokens")
        total = d.get("total_tokens")
        # Three ints, each in [0, MAX_COUNT): as MAX_COUNT is a power of two, that is
        # their bitwise or in that range (one comparison, not three).
        if not (
            type(prompt) is int
            and type(completion) is int
            and type(total) is int
            and 0 <= prompt | completion | total < MAX_COUNT
        ):  # the slow path: a missing total, missing fields, floats, or something to refuse
            prompt = token_count(prompt, "usage.prompt_tokens")
            completion = token_count(completion, "usage.completion_tokens")
            if total is not None:
                total = token_count(total, "usage.total_tokens")
        usage = _new(cls)
        usage.prompt_tokens = prompt
        usage.completion_tokens = completion
        usage.total_tokens = prompt + completion if total is None else total
        usage.prompt_tokens_details = usage.completion_tokens_details = usage.extra = None
        # Anything beyond the three counts (details, other fields) is read apart.
        if len(d) > 3 or (total is None and len(d) > 2):
            read_usage_details(usage, d)
        return usage

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's ``usage`` object."""
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.prompt_tokens_details is not None:
            out["prompt_tokens_details"] = self.prompt_tokens_details.to_dict()
        if self.completion_tokens_details is not None:
            out["completion_tokens_details"] = self.completion_tokens_details.to_dict()
        if self.extra:
            out.update(self.extra)
        return out
