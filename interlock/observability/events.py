"""The events hooks receive: one immutable, typed record per kind of event.

They are built only when some hook listens for that kind, so a router without hooks
never allocates one. Times are on the router's clock (`at`), durations in seconds.
Nothing on an event is a secret: deployments are named by id, never by key.

Events are `typing.NamedTuple`s: immutable, slotted (no per-instance dict) and typed
like a frozen dataclass, but about three times cheaper to build (a frozen dataclass
sets each field through ``object.__setattr__``), which matters because a hook on
``on_success`` gets one per request. Read them by attribute name; field order is
not part of the API.

Every event of one call (start, success, failure, retry, fallback, hedge, rate-limit
wait) carries the call's `request_id` (also on its result and on the error it
raises), its `tags` and the caller's `metadata` mapping, handed on as it was given
(the same object on every event: never copied, never read by interlock). Cooldown and
recovery are per deployment; they carry the id of the request whose outcome caused
them, None when a health probe or another router process did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from interlock.errors import InterlockError
from interlock.types import NO_METADATA

if TYPE_CHECKING:
    from interlock.types import Request

__all__ = [
    "CooldownEvent",
    "Event",
    "FailureEvent",
    "FailureKindName",
    "FallbackEvent",
    "HedgeEvent",
    "RateLimitWaitEvent",
    "RecoveryEvent",
    "RequestStartEvent",
    "RetryEvent",
    "SuccessEvent",
]

FailureKindName = Literal[
    "caller",
    "context_window",
    "content_policy",
    "rate_limited",
    "bad_credentials",
    "unusable",
    "timeout",
    "connection",
    "server_error",
    "malformed",
    "deadline",
    "refused",
]
"""Why an attempt failed: a `FailureKind` value; ``"deadline"`` for an attempt cut by
the call's own deadline (not held against the deployment); ``"refused"`` when the
router gave up on the request without (another) attempt."""


class RequestStartEvent(NamedTuple):
    """A request entered the router (before any deployment was chosen)."""

    group: str
    """The group it was routed to (aliases resolved)."""
    requested: str
    """The name the caller asked for."""
    kind: str
    """``"chat"``, ``"embedding"``, ``"responses"``, ``"call"``, or the endpoint of
    docs/endpoints.md (``"images"``, ``"transcription"``, ``"speech"``,
    ``"moderation"``, ``"rerank"``, ``"passthrough"``)."""
    stream: bool
    request_id: str
    """The call's id (see `Request.id`)."""
    tags: frozenset[str]
    """The call's ``tags=``."""
    metadata: Mapping[str, Any]
    """The call's ``metadata=`` as given (an empty mapping when none was)."""
    at: float


class SuccessEvent(NamedTuple):
    """An attempt succeeded (for a stream: it ended cleanly)."""

    group: str
    deployment_id: str
    attempt: int
    """1 for the first attempt of the request, counting across fallback groups."""
    latency: float
    """Seconds from send to the complete response (for a stream: to its end)."""
    ttft: float | None
    """Seconds to the first chunk, for streams; None otherwise."""
    input_tokens: int | None
    """As the provider reported them; None when it reported no usage."""
    output_tokens: int | None
    cached_tokens: int | None
    """Input tokens read from the provider's prompt cache; None when not reported."""
    reasoning_tokens: int | None
    """Output tokens spent reasoning; None when not reported."""
    cost: float
    """US dollars by the deployment's per-token prices (0 without usage or prices)."""
    request_id: str
    """The call's id (see `Request.id`)."""
    tags: frozenset[str]
    """The call's ``tags=``."""
    metadata: Mapping[str, Any]
    """The call's ``metadata=`` as given (an empty mapping when none was)."""
    at: float


class FailureEvent(NamedTuple):
    """An attempt failed, or (``deployment_id is None``) the router refused the request."""

    group: str
    deployment_id: str | None
    """None when no deployment was tried for this failure (kind ``"refused"``)."""
    attempt: int
    """The failed attempt's number; for a refusal, the attempts made before it."""
    latency: float
    """Seconds the attempt took; for a refusal, since the request started."""
    error: InterlockError
    kind: FailureKindName
    counted: bool
    """Whether it was held against the deployment's health."""
    cooldown: float
    """Seconds of cooldown it started (0 if none)."""
    request_id: str
    """The call's id (see `Request.id`)."""
    tags: frozenset[str]
    """The call's ``tags=``."""
    metadata: Mapping[str, Any]
    """The call's ``metadata=`` as given (an empty mapping when none was)."""
    at: float

    @property
    def error_type(self) -> str:
        return type(self.error).__name__

    @property
    def status_code(self) -> int | None:
        return self.error.status_code


class RetryEvent(NamedTuple):
    """Another attempt in the same group after a failed one."""

    group: str
    deployment_id: str
    """The deployment this attempt goes to."""
    attempt: int
    """Its number (>= 2)."""
    error: InterlockError | None
    """The failure that caused it."""
    request_id: str
    """The call's id (see `Request.id`)."""
    tags: frozenset[str]
    """The call's ``tags=``."""
    metadata: Mapping[str, Any]
    """The call's ``metadata=`` as given (an empty mapping when none was)."""
    at: float


class FallbackEvent(NamedTuple):
    """The request gave up on `group` and moves on to `to_group` (its fallback)."""

    group: str
    to_group: str
    attempt: int
    """Attempts made so far."""
    error: InterlockError | None
    """The last failure, None when `group` had no eligible deployment at all."""
    request_id: str
    """The call's id (see `Request.id`)."""
    tags: frozenset[str]
    """The call's ``tags=``."""
    metadata: Mapping[str, Any]
    """The call's ``metadata=`` as given (an empty mapping when none was)."""
    at: float


class CooldownEvent(NamedTuple):
    """A deployment was taken out of rotation (ejected) for `seconds`."""

    group: str
    deployment_id: str
    seconds: float
    until: float
    """Router-clock time the cooldown ends (a longer running one is kept)."""
    ejections: int
    """Times this deployment has been cooled so far, this one included."""
    error: InterlockError
    request_id: str | None
    """The id of the request whose outcome caused it; None when a health probe or
    another router process (a shared cooldown) did."""
    at: float


class RecoveryEvent(NamedTuple):
    """A deployment that had been cooled served a request successfully again."""

    group: str
    deployment_id: str
    down_for: float
    """Seconds since its last cooldown started."""
    request_id: str | None
    """The id of the request whose outcome caused it; None when a health probe or
    another router process (a shared cooldown) did."""
    at: float


class HedgeEvent(NamedTuple):
    """A hedged (duplicate) attempt was sent while an earlier one was still running."""

    group: str
    deployment_id: str
    attempt: int
    after: float
    """Seconds the request had been running when the hedge was sent."""
    request_id: str
    """The call's id (see `Request.id`)."""
    tags: frozenset[str]
    """The call's ``tags=``."""
    metadata: Mapping[str, Any]
    """The call's ``metadata=`` as given (an empty mapping when none was)."""
    at: float


class RateLimitWaitEvent(NamedTuple):
    """The router waited for rate-limit headroom instead of failing the request."""

    group: str
    deployment_id: str | None
    """The deployment waited for, None when the wait was for the group as a whole."""
    seconds: float
    request_id: str
    """The call's id (see `Request.id`)."""
    tags: frozenset[str]
    """The call's ``tags=``."""
    metadata: Mapping[str, Any]
    """The call's ``metadata=`` as given (an empty mapping when none was)."""
    at: float


Event = (
    RequestStartEvent
    | SuccessEvent
    | FailureEvent
    | RetryEvent
    | FallbackEvent
    | CooldownEvent
    | RecoveryEvent
    | HedgeEvent
    | RateLimitWaitEvent
)


_NO_TAGS: frozenset[str] = frozenset()


def call_fields(request: Request | None) -> tuple[str, frozenset[str], Mapping[str, Any]]:
    """What every event of a call says about it: its id, tags and metadata (empty for
    an attempt outside a call, such as a health probe)."""
    if request is None:
        return ("", _NO_TAGS, NO_METADATA)
    return (request.id, request.tags, request.metadata)
