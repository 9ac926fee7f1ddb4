"""The exception tree.

Every error the router raises is an `InterlockError`. Provider errors carry the HTTP
`status_code`, the `deployment_id` that produced them and, where the provider said,
`retry_after` (seconds). Router-level errors say why nothing could serve a request.
`attempts` lists every attempt the router made before giving up.

Messages never contain an API key: transports scrub the key out of upstream error
text before building an error (`scrub`). Keys shorter than `MIN_SECRET_LENGTH` are not
treated as secrets there (see `scrub`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "APIConnectionError",
    "APITimeoutError",
    "AccountError",
    "AttemptRecord",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigError",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "DeadlineExceededError",
    "DeploymentNotFoundError",
    "InterlockError",
    "InternalServerError",
    "MalformedResponseError",
    "NoDeploymentAvailableError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "StreamInterruptedError",
    "UnknownModelError",
    "UnsupportedParamsError",
    "WrongEventLoopError",
    "scrub",
]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try at one deployment: where, what went wrong, how long it took."""

    group: str
    deployment_id: str
    error: str
    """The error's class name and message (never a key)."""
    duration: float
    """Seconds from send to failure."""


class InterlockError(Exception):
    """Base class of every error interlock raises."""

    status_code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        deployment_id: str | None = None,
        retry_after: float | None = None,
        attempts: Sequence[AttemptRecord] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.deployment_id = deployment_id
        self.retry_after = retry_after
        self.attempts: tuple[AttemptRecord, ...] = tuple(attempts)
        self.request_id: str | None = None
        """The id of the router call that raised it (as on its result and events);
        None for an error raised before the call had one (an unknown model, a bad
        argument) or outside a call."""

    def __str__(self) -> str:
        parts = [self.message]
        if self.deployment_id is not None:
            parts.append(f"deployment={self.deployment_id}")
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after:.3g}s")
        if self.attempts:
            parts.append(f"attempts={len(self.attempts)}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ConfigError(InterlockError, ValueError):
    """The configuration is invalid; each line names a field and what is wrong with it.

    `fields` holds ``(path, problem)`` pairs relative to the object being built;
    `problems` the same as display lines, prefixed with `where`.
    """

    def __init__(self, fields: Sequence[tuple[str, str]], where: str = "") -> None:
        self.fields: tuple[tuple[str, str], ...] = tuple(fields)
        self.problems: tuple[str, ...] = tuple(
            f"{join_path(where, path)}: {problem}" if join_path(where, path) else problem
            for path, problem in self.fields
        )
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"invalid interlock configuration ({len(self.problems)} {noun}):\n  "
            + "\n  ".join(self.problems)
        )

    def __str__(self) -> str:
        return self.message


def join_path(outer: str, inner: str) -> str:
    """``deployments[2]`` + ``rpm`` -> ``deployments[2].rpm``; ``a`` + ``[0]`` -> ``a[0]``."""
    if not outer:
        return inner
    if not inner:
        return outer
    return outer + inner if inner.startswith("[") else f"{outer}.{inner}"


# --- errors caused by the request ---------------------------------------------------


class BadRequestError(InterlockError):
    """The provider rejected the request itself (400, 422); retrying will not help."""

    status_code = 400


class ContextWindowExceededError(BadRequestError):
    """The prompt plus `max_tokens` does not fit the model's context window."""


class ContentPolicyViolationError(BadRequestError):
    """The provider refused the content under its usage policy."""


class UnsupportedParamsError(BadRequestError):
    """The deployment's provider has no equivalent for parameters the call set, and the
    call asked for ``unsupported_params="raise"``. `params` names them."""

    def __init__(self, message: str, *, params: Sequence[str] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        self.params: tuple[str, ...] = tuple(params)


class NotFoundError(InterlockError):
    """The provider does not know the model or path (404)."""

    status_code = 404


# --- errors caused by the deployment ------------------------------------------------


class DeploymentNotFoundError(NotFoundError):
    """The provider does not know the model or deployment that this deployment names: a
    404, or a 400 naming the model or deployment ("does not exist", "not found",
    Azure's ``DeploymentNotFound``). Its configuration is wrong, not the request: the
    router takes that deployment out and moves on (`status_code` is what was sent)."""


class AccountError(InterlockError):
    """The deployment's account cannot be used: a 402, or a 4xx naming the account
    (credit balance too low, billing, quota used up; for Gemini a failed precondition
    such as billing not enabled in the account's region). The router takes that
    deployment out and moves on."""

    status_code = 402


class AuthenticationError(InterlockError):
    """The deployment's key was rejected (401)."""

    status_code = 401


class PermissionDeniedError(InterlockError):
    """The deployment's key lacks access (403)."""

    status_code = 403


class RateLimitError(InterlockError):
    """Too many requests (429), from a provider or from the router's own limits."""

    status_code = 429


class APITimeoutError(InterlockError):
    """One attempt took longer than its timeout."""


class APIConnectionError(InterlockError):
    """The connection failed: refused, reset, or closed before a response."""


class StreamInterruptedError(APIConnectionError):
    """A stream ended after its first chunk but before it was complete."""


class MalformedResponseError(InterlockError):
    """The provider answered with a body that is not what its API promises."""


class InternalServerError(InterlockError):
    """The provider failed (5xx)."""

    status_code = 500


class ServiceUnavailableError(InternalServerError):
    """The provider is overloaded or down (503, 529)."""

    status_code = 503


# --- router-level -------------------------------------------------------------------


class UnknownModelError(InterlockError, LookupError):
    """No group or alias has that name."""


class NoDeploymentAvailableError(InterlockError):
    """Every deployment of the group (and its fallbacks) is unavailable.

    The message says why for each: cooling down, at its concurrency cap, over its
    rate limits. `retry_after` is how long until the first one is available again,
    when that is known.
    """


class DeadlineExceededError(InterlockError, TimeoutError):
    """The call's overall deadline passed before any attempt succeeded."""


class BudgetExceededError(InterlockError):
    """A spend budget is used up until its period resets."""


class WrongEventLoopError(RuntimeError):
    """A router was used on an event loop other than the one its HTTP session was
    opened on. A programming error, not an upstream's: it is never retried, counted
    against a deployment or turned into another error. Not an `InterlockError` for that
    reason."""


# --- keeping keys out of text -------------------------------------------------------

MIN_SECRET_LENGTH = 8
"""Keys shorter than this are not looked for in text. Short placeholders such as
Ollama's ``"ollama"`` or vLLM's ``"EMPTY"`` are words that also occur in provider names,
deployment ids and upstream messages; replacing them there would mangle the text and
hide nothing secret. Real provider keys are much longer."""

REDACTED = "[redacted]"


def scrub(text: str, secret: str | None, keep: Iterable[str] = ()) -> str:
    """`text` with every occurrence of `secret` replaced by ``[redacted]``.

    A secret shorter than `MIN_SECRET_LENGTH` is left alone. An occurrence that lies
    inside one of `keep` (the router's own names: ids, groups, models, URLs) is left
    alone too, so those are never altered.
    """
    if not secret or len(secret) < MIN_SECRET_LENGTH or secret not in text:
        return text
    shields = [k for k in keep if secret in k]
    if not shields:
        return text.replace(secret, REDACTED)
    kept = _spans(text, shields)
    out: list[str] = []
    done = 0
    at = text.find(secret)
    while at != -1:
        end = at + len(secret)
        if any(a <= at and end <= b for a, b in kept):
            at = text.find(secret, at + 1)
            continue
        out += (text[done:at], REDACTED)
        done = end
        at = text.find(secret, end)
    out.append(text[done:])
    return "".join(out)


def _spans(text: str, names: Iterable[str]) -> list[tuple[int, int]]:
    """Where each of `names` occurs in `text`, as ``(start, end)``."""
    spans: list[tuple[int, int]] = []
    for name in names:
        at = text.find(name)
        while at != -1:
            spans.append((at, at + len(name)))
            at = text.find(name, at + 1)
    return spans
