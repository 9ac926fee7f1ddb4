"""Credentials that expire (cloud access tokens, temporary keys), shared by the
deployments that use them and refreshed before they expire.

A `CredentialCache` holds one credential. Requests read it without awaiting while it is
fresh; when it gets old, one background task fetches the next while requests go on
with the current one; only a credential too close to expiry (or none yet) makes
requests wait, all of them on the same fetch. Fetches that block (cloud libraries'
synchronous HTTP) run in a worker thread, never on the event loop. A fetch that fails
is an `AuthenticationError` for the deployment that asked: the router routes around it
like a 401, and nothing from the cloud library escapes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, TypeVar

import orjson

from interlock.config import Deployment
from interlock.deadline import DeadlineWheel
from interlock.errors import AuthenticationError, ConfigError

__all__ = [
    "AZURE_OPENAI_SCOPE",
    "AzureIdentityTokenProvider",
    "CredentialCache",
    "Lease",
    "TokenCaches",
    "credential_within",
    "describe_failure",
    "jwt_expiry",
    "require",
    "timed_lease",
    "token_fetcher",
]

T = TypeVar("T")

AZURE_OPENAI_SCOPE = "https://cognitiveservices.azure.com/.default"
"""The OAuth scope of Azure OpenAI (Azure AI services) for Microsoft Entra ID tokens."""

REFRESH_BEFORE = 300.0
"""Seconds before expiry at which a background refresh starts (at most half the
credential's lifetime)."""
MIN_VALID = 60.0
"""A credential with less than this left (at most a tenth of its lifetime) is not sent:
requests wait for the next one."""
DEFAULT_TOKEN_TTL = 300.0
"""How long a token of unknown expiry (neither a JWT nor an object with `expires_on`)
is reused."""
RETRY_PAUSE = 5.0
"""Seconds between background refresh attempts after one failed."""


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or fail with a ConfigError naming its extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            [("provider", f"needs {module}: pip install 'interlock[{extra}]'")]
        ) from None


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Lease(Generic[T]):
    """A credential and when to replace it."""

    value: T
    stale: Callable[[], bool] = _never
    """True once a replacement should be fetched in the background."""
    expired: Callable[[], bool] = _never
    """True once the credential must no longer be sent."""

    def __repr__(self) -> str:
        return f"Lease(stale={self.stale()}, expired={self.expired()})"


def timed_lease(value: T, expires_at: float | None, clock: Callable[[], float]) -> Lease[T]:
    """A lease on a credential that expires at `expires_at` (`clock` time; None: never).

    The margins shrink with short lifetimes, so a token that lives a minute is still
    used for most of it."""
    if expires_at is None:
        return Lease(value)
    life = max(0.0, expires_at - clock())
    refresh_at = expires_at - min(REFRESH_BEFORE, life / 2)
    unusable_at = expires_at - min(MIN_VALID, life / 10)
    return Lease(value, lambda: clock() >= refresh_at, lambda: clock() >= unusable_at)


def describe_failure(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """A short text for a credential failure: the type and message of what a cloud
    library raised (without its traceback or cause), with known secrets removed."""
    text = f"{type(exc).__name__}: {exc}"[:300]
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text


class _FetchFailed(Exception):
    pass


class CredentialCache(Generic[T]):
    """One credential, fetched by `fetch` on demand and refreshed before it expires.

    `what` names it in errors (``"vertex credentials (service-account.json)"``)."""

    __slots__ = ("_clock", "_fetch", "_lease", "_retry_at", "_task", "what")

    def __init__(
        self,
        what: str,
        fetch: Callable[[], Awaitable[Lease[T]]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.what = what
        self._fetch = fetch
        self._clock = clock
        self._lease: Lease[T] | None = None
        self._task: asyncio.Task[Lease[T]] | None = None
        self._retry_at = float("-inf")

    def peek(self) -> T | None:
        """The credential if it may be sent now, without fetching."""
        lease = self._lease
        return lease.value if lease is not None and not lease.expired() else None

    async def get(self, deployment_id: str | None = None) -> T:
        """A credential that may be sent now; raises AuthenticationError when none can
        be had."""
        lease = self._lease
        if lease is not None and not lease.expired():
            if lease.stale() and self._task is None and self._clock() >= self._retry_at:
                self._start()
            return lease.value
        task = self._task or self._start()
        try:
            # Shielded: a request that gives up does not cancel the fetch others wait on.
            lease = await asyncio.shield(task)
        except _FetchFailed as exc:
            raise AuthenticationError(
                f"{self.what} could not be loaded or refreshed ({exc})",
                deployment_id=deployment_id,
            ) from None
        return lease.value

    def invalidate(self, value: T | None) -> None:
        """Forget the credential if it is still `value` (the upstream refused it), so the
        next request fetches a new one."""
        if self._lease is not None and self._lease.value == value:
            self._lease = None

    def close(self) -> None:
        """Cancel a fetch in progress."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    def _start(self) -> asyncio.Task[Lease[T]]:
        task = asyncio.get_running_loop().create_task(self._run())
        self._task = task
        task.add_done_callback(self._done)
        return task

    async def _run(self) -> Lease[T]:
        previous = self._lease
        try:
            lease = await self._fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            value = previous.value if previous is not None else None
            secret = value if isinstance(value, str) else None
            raise _FetchFailed(describe_failure(exc, [secret])) from None
        self._lease = lease
        return lease

    def _done(self, task: asyncio.Task[Lease[T]]) -> None:
        if self._task is task:
            self._task = None
        # Reading the exception marks it retrieved: a failed background refresh is not
        # an error by itself (the current credential is still good), only a pause.
        if not task.cancelled() and task.exception() is not None:
            self._retry_at = self._clock() + RETRY_PAUSE

    def __repr__(self) -> str:
        state = "empty" if self._lease is None else repr(self._lease)
        return f"CredentialCache({self.what!r}, {state}, refreshing={self._task is not None})"


async def credential_within(
    cache: CredentialCache[T], d: Deployment, timeout: float, deadlines: DeadlineWheel
) -> T:
    """The deployment's credential within the attempt's `timeout`; a fetch that takes
    longer is an AuthenticationError (it goes on for the next attempt)."""
    try:
        with deadlines.timeout(timeout):
            return await cache.get(d.id)
    except TimeoutError:
        raise AuthenticationError(
            f"{cache.what} did not arrive within {timeout:.3g} s", deployment_id=d.id
        ) from None


# --- bearer tokens from a callable (Azure Entra ID) ---------------------------------


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying it: only to
    know when to fetch the next token. None when `token` is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _token_lease(result: Any, clock: Callable[[], float]) -> Lease[str]:
    if isinstance(result, str):
        token, expires_at = result, jwt_expiry(result)
    elif isinstance(getattr(result, "token", None), str):
        # azure-identity's AccessToken (and AccessTokenInfo): token, expires_on.
        token, on = result.token, getattr(result, "expires_on", None)
        expires_at = float(on) if isinstance(on, int | float) else jwt_expiry(token)
    else:
        raise TypeError(f"the token provider returned a {type(result).__name__}, not a token")
    if not token:
        raise ValueError("the token provider returned an empty token")
    if expires_at is None:
        expires_at = clock() + DEFAULT_TOKEN_TTL
    return timed_lease(token, expires_at, clock)


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


def token_fetcher(
    provider: Callable[[], Any], clock: Callable[[], float] = time.time
) -> Callable[[], Awaitable[Lease[str]]]:
    """A fetch for `CredentialCache` from a token provider: a callable or async callable
    returning a token string or an object with ``token`` and ``expires_on``. A plain
    callable runs in a worker thread, since it may do network I/O."""

    async def fetch() -> Lease[str]:
        if _is_async(provider):
            result = await provider()
        else:
            result = await asyncio.to_thread(provider)
            if inspect.isawaitable(result):
                result = await result
        return _token_lease(result, clock)

    return fetch


class TokenCaches:
    """One `CredentialCache` per token provider object, shared by the deployments that
    use the same provider."""

    __slots__ = ("_caches", "_clock")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._caches: dict[int, tuple[object, CredentialCache[str]]] = {}

    def for_provider(self, provider: Callable[[], Any], what: str) -> CredentialCache[str]:
        entry = self._caches.get(id(provider))
        if entry is None or entry[0] is not provider:
            cache = CredentialCache(what, token_fetcher(provider, self._clock), clock=self._clock)
            # The provider is kept so its id cannot be reused by another object.
            entry = self._caches[id(provider)] = (provider, cache)
        return entry[1]

    def close(self) -> None:
        for _, cache in self._caches.values():
            cache.close()

    def __repr__(self) -> str:
        return f"TokenCaches({len(self._caches)} provider(s))"


class AzureIdentityTokenProvider:
    """An `azure_ad_token_provider` over an azure-identity credential (``interlock[azure]``).

    `credential` is any object with ``get_token(scope)``, sync (run in a worker thread)
    or async (``azure.identity.aio``); None builds ``DefaultAzureCredential()`` on first
    use (environment, workload identity, managed identity, Azure CLI, ...). Tokens are
    returned with their expiry, so the transport caches them and refreshes them before
    they expire.
    """

    __slots__ = ("_credential", "_scope")

    def __init__(self, credential: Any = None, *, scope: str = AZURE_OPENAI_SCOPE) -> None:
        self._credential = credential
        self._scope = scope

    async def __call__(self) -> Any:
        credential = self._credential
        if credential is None:
            identity = require("azure.identity", "azure")
            credential = self._credential = await asyncio.to_thread(identity.DefaultAzureCredential)
        get_token = credential.get_token
        if inspect.iscoroutinefunction(get_token):
            return await get_token(self._scope)
        return await asyncio.to_thread(get_token, self._scope)

    def __repr__(self) -> str:
        kind = "default" if self._credential is None else type(self._credential).__name__
        return f"AzureIdentityTokenProvider(credential={kind}, scope={self._scope!r})"
