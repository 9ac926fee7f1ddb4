"""Log lines for operators, under the ``interlock`` logger.

One INFO line per retry, fallback, refusal, cooldown (ejection) and recovery; nothing
per successful request above DEBUG. Every line carries its facts as structured fields
(``extra``) for JSON formatters: ``event``, ``group``, ``deployment``, ``attempt``,
``error_type``, ``status_code``, ``error``, and per event ``to_group``,
``cooldown_seconds``, ``down_for``, ``wait_seconds``. Error text is passed through a
`Redactor` holding every configured API key, so a key never reaches a log line even
when a user's ``call`` function put one into an exception message; the router's own
names in it (ids, groups, models, URLs) are never altered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from interlock.errors import MIN_SECRET_LENGTH, InterlockError, scrub

__all__ = [
    "Redactor",
    "health_logger",
    "hooks_logger",
    "logger",
    "router_logger",
]

logger = logging.getLogger("interlock")
router_logger = logging.getLogger("interlock.router")
"""Retries, fallbacks, refusals, hedges and rate-limit waits."""
health_logger = logging.getLogger("interlock.health")
"""Cooldowns (ejections) and recoveries."""
hooks_logger = logging.getLogger("interlock.hooks")
"""Hooks that raised or timed out."""

INFO = logging.INFO
WARNING = logging.WARNING


class Redactor:
    """Removes every configured secret from a text with ``[redacted]``.

    Keys shorter than `MIN_SECRET_LENGTH` are not looked for (placeholders such as
    Ollama's ``"ollama"`` are ordinary words). An occurrence inside one of `keep`, the
    router's own names (deployment ids, groups, models, URLs, provider names), is left
    alone: those are never altered.
    """

    __slots__ = ("_keep", "_secrets")

    def __init__(self, secrets: Iterable[str | None] = (), keep: Iterable[str] = ()) -> None:
        # Longest first, so a key that contains another is replaced whole.
        found = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        self._secrets = tuple(sorted(found, key=len, reverse=True))
        self._keep = tuple({k for k in keep if k})

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets looked for (for building a redactor with more of them)."""
        return self._secrets

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = scrub(text, s, self._keep)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secret(s))"


def _error_fields(error: InterlockError | None, redact: Redactor) -> dict[str, object]:
    if error is None:
        return {"error_type": None, "status_code": None, "error": None}
    return {
        "error_type": type(error).__name__,
        "status_code": error.status_code,
        "error": redact(str(error)),
    }


def _describe(fields: dict[str, object]) -> str:
    if fields["error_type"] is None:
        return ""
    status = f" (status {fields['status_code']})" if fields["status_code"] is not None else ""
    return f" after {fields['error_type']}{status}: {fields['error']}"


def log_retry(
    group: str, deployment: str, attempt: int, error: InterlockError | None, redact: Redactor
) -> None:
    if not router_logger.isEnabledFor(INFO):
        return
    f = _error_fields(error, redact)
    router_logger.info(
        "retry: group %s attempt %d on %s%s",
        group,
        attempt,
        deployment,
        _describe(f),
        extra={"event": "retry", "group": group, "deployment": deployment, "attempt": attempt} | f,
    )


def log_retry_refused(
    budget_group: str,
    group: str,
    deployment: str | None,
    attempts: int,
    error: InterlockError | None,
    redact: Redactor,
) -> None:
    """WARNING: a retry the call could have made was not sent (the retry budget of
    `budget_group` is spent); the call moves on to its fallbacks or fails."""
    if not router_logger.isEnabledFor(WARNING):
        return
    f = _error_fields(error, redact)
    router_logger.warning(
        "retry refused: the retry budget of group %s is spent; no attempt %d in group %s%s%s",
        budget_group,
        attempts + 1,
        group,
        f" (on {deployment})" if deployment else "",
        _describe(f),
        extra={
            "event": "retry_refused",
            "group": group,
            "budget_group": budget_group,
            "deployment": deployment,
            "attempt": attempts + 1,
        }
        | f,
    )


def log_fallback(
    group: str, to_group: str, attempt: int, error: InterlockError | None, redact: Redactor
) -> None:
    if not router_logger.isEnabledFor(INFO):
        return
    f = _error_fields(error, redact)
    why = _describe(f) or " (no eligible deployment)"
    router_logger.info(
        "fallback: group %s -> %s after %d attempt(s)%s",
        group,
        to_group,
        attempt,
        why,
        extra={
            "event": "fallback",
            "group": group,
            "to_group": to_group,
            "deployment": None,
            "attempt": attempt,
        }
        | f,
    )


def log_refused(
    group: str, attempts: int, elapsed: float, error: InterlockError, redact: Redactor
) -> None:
    if not router_logger.isEnabledFor(INFO):
        return
    f = _error_fields(error, redact)
    router_logger.info(
        "refused: group %s after %d attempt(s) in %.3f s: %s: %s",
        group,
        attempts,
        elapsed,
        f["error_type"],
        f["error"],
        extra={
            "event": "refused",
            "group": group,
            "deployment": None,
            "attempt": attempts,
            "elapsed_seconds": elapsed,
        }
        | f,
    )


def log_cooldown(
    group: str,
    deployment: str,
    seconds: float,
    ejections: int,
    error: InterlockError,
    redact: Redactor,
) -> None:
    if not health_logger.isEnabledFor(INFO):
        return
    f = _error_fields(error, redact)
    health_logger.info(
        "cooldown: %s (group %s) out of rotation for %.3g s (ejection #%d)%s",
        deployment,
        group,
        seconds,
        ejections,
        _describe(f),
        extra={
            "event": "cooldown",
            "group": group,
            "deployment": deployment,
            "cooldown_seconds": seconds,
            "ejections": ejections,
        }
        | f,
    )


def log_recovery(group: str, deployment: str, down_for: float) -> None:
    if not health_logger.isEnabledFor(INFO):
        return
    health_logger.info(
        "recovery: %s (group %s) served again %.3g s after its cooldown started",
        deployment,
        group,
        down_for,
        extra={"event": "recovery", "group": group, "deployment": deployment, "down_for": down_for},
    )


def log_hedge(group: str, deployment: str, attempt: int, after: float) -> None:
    if not router_logger.isEnabledFor(INFO):
        return
    router_logger.info(
        "hedge: group %s attempt %d on %s after %.3g s",
        group,
        attempt,
        deployment,
        after,
        extra={
            "event": "hedge",
            "group": group,
            "deployment": deployment,
            "attempt": attempt,
            "after_seconds": after,
        },
    )


def log_rate_limit_wait(group: str, deployment: str | None, seconds: float) -> None:
    if not router_logger.isEnabledFor(INFO):
        return
    router_logger.info(
        "rate-limit wait: group %s%s waits %.3g s for headroom",
        group,
        f" ({deployment})" if deployment else "",
        seconds,
        extra={
            "event": "rate_limit_wait",
            "group": group,
            "deployment": deployment,
            "wait_seconds": seconds,
        },
    )
