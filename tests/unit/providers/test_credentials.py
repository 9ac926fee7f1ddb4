"""CredentialCache: fresh, stale and expired credentials, one fetch at a time, failures
as AuthenticationError; token providers and the azure-identity provider."""

from __future__ import annotations

import asyncio
import base64
import traceback
from typing import Any, NamedTuple

import orjson
import pytest

from interlock.errors import AuthenticationError, ConfigError
from interlock.providers.credentials import (
    AZURE_OPENAI_SCOPE,
    AzureIdentityTokenProvider,
    CredentialCache,
    Lease,
    TokenCaches,
    jwt_expiry,
    require,
    timed_lease,
    token_fetcher,
)

SECRET = "tok-very-secret-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


class Counter:
    """A fetch that hands out tok-1, tok-2, ... living `ttl` seconds each."""

    def __init__(self, clock: Clock, ttl: float = 3600.0, delay: float = 0.0) -> None:
        self.clock, self.ttl, self.delay, self.calls = clock, ttl, delay, 0
        self.fail: BaseException | None = None

    async def __call__(self) -> Lease[str]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return timed_lease(f"tok-{self.calls}", self.clock() + self.ttl, self.clock)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_timed_lease_margins_scale_with_lifetime() -> None:
    clock = Clock()
    long = timed_lease("a", clock() + 3600, clock)
    short = timed_lease("b", clock() + 10, clock)
    forever = timed_lease("c", None, clock)
    clock.now += 3600 - 301
    assert not long.stale()
    clock.now += 2  # 299 s left: refresh in the background
    assert long.stale()
    assert not long.expired()
    clock.now += 299 - 59  # 59 s left: no longer sent
    assert long.expired()
    clock.now = 1_000_000.0 + 4  # 6 s of 10 left
    assert not short.stale()
    clock.now += 1.5  # 4.5 s left: under half the lifetime
    assert short.stale()
    assert not short.expired()
    clock.now += 3.6  # 0.9 s left: under a tenth
    assert short.expired()
    assert not forever.stale()
    assert not forever.expired()
    assert "b" not in repr(short)


async def test_fresh_credential_is_reused_without_fetching() -> None:
    clock = Clock()
    fetch = Counter(clock)
    cache = CredentialCache("test token", fetch, clock=clock)
    assert cache.peek() is None
    assert await cache.get("d") == "tok-1"
    for _ in range(10):
        assert await cache.get("d") == "tok-1"
    assert fetch.calls == 1
    assert cache.peek() == "tok-1"


async def test_concurrent_first_requests_share_one_fetch() -> None:
    clock = Clock()
    fetch = Counter(clock, delay=0.01)
    cache = CredentialCache("test token", fetch, clock=clock)
    tokens = await asyncio.gather(*(cache.get("d") for _ in range(50)))
    assert set(tokens) == {"tok-1"}
    assert fetch.calls == 1


async def test_stale_credential_is_refreshed_in_the_background() -> None:
    clock = Clock()
    fetch = Counter(clock, delay=0.01)
    cache = CredentialCache("test token", fetch, clock=clock)
    await cache.get("d")
    clock.now += 3600 - 200  # stale, not expired
    # Requests keep the current token at once while one refresh runs.
    assert [await cache.get("d") for _ in range(20)] == ["tok-1"] * 20
    await settle()
    assert fetch.calls == 2
    await asyncio.sleep(0.05)
    assert await cache.get("d") == "tok-2"
    assert fetch.calls == 2


async def test_expired_credential_makes_requests_wait_for_the_next() -> None:
    clock = Clock()
    fetch = Counter(clock, delay=0.01)
    cache = CredentialCache("test token", fetch, clock=clock)
    await cache.get("d")
    clock.now += 3600 - 30
    assert cache.peek() is None
    tokens = await asyncio.gather(*(cache.get("d") for _ in range(10)))
    assert set(tokens) == {"tok-2"}
    assert fetch.calls == 2


async def test_failed_fetch_is_an_authentication_error_without_secrets() -> None:
    clock = Clock()
    fetch = Counter(clock)
    cache = CredentialCache("vertex credentials (sa.json)", fetch, clock=clock)
    await cache.get("d")
    clock.now += 3600  # expired
    fetch.fail = RuntimeError(f"token endpoint said no to {SECRET[:4]}... and tok-1")
    with pytest.raises(AuthenticationError) as info:
        await cache.get("vertex-0")
    err = info.value
    assert err.deployment_id == "vertex-0"
    assert "vertex credentials (sa.json) could not be loaded or refreshed" in str(err)
    assert "RuntimeError" in str(err)
    assert "tok-1" not in str(err)  # the last token is scrubbed from the message
    text = "".join(traceback.format_exception(err))
    assert "RuntimeError(" not in text
    assert err.__cause__ is None
    assert err.__suppress_context__


async def test_failed_background_refresh_keeps_the_current_token_and_pauses() -> None:
    clock = Clock()
    fetch = Counter(clock)
    cache = CredentialCache("test token", fetch, clock=clock)
    await cache.get("d")
    clock.now += 3600 - 200
    fetch.fail = OSError("unreachable")
    assert await cache.get("d") == "tok-1"
    await settle()
    assert fetch.calls == 2
    assert await cache.get("d") == "tok-1"  # within the pause: no new attempt
    await settle()
    assert fetch.calls == 2
    clock.now += 6
    fetch.fail = None
    assert await cache.get("d") == "tok-1"
    await settle()
    assert fetch.calls == 3
    assert await cache.get("d") == "tok-3"


async def test_invalidate_forgets_only_the_refused_token() -> None:
    clock = Clock()
    fetch = Counter(clock)
    cache = CredentialCache("test token", fetch, clock=clock)
    await cache.get("d")
    cache.invalidate("tok-0")  # an older token: nothing changes
    assert cache.peek() == "tok-1"
    cache.invalidate("tok-1")
    assert cache.peek() is None
    assert await cache.get("d") == "tok-2"


async def test_close_cancels_a_fetch_in_progress() -> None:
    clock = Clock()
    cache = CredentialCache("test token", Counter(clock, delay=10), clock=clock)
    waiter = asyncio.create_task(cache.get("d"))
    await settle()
    cache.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter


def test_jwt_expiry() -> None:
    assert jwt_expiry(jwt({"exp": 1_700_000_000, "aud": "x"})) == 1_700_000_000
    assert jwt_expiry(jwt({"aud": "x"})) is None
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None
    assert jwt_expiry(jwt({"exp": True})) is None


class AccessToken(NamedTuple):
    token: str
    expires_on: int


async def test_token_fetcher_takes_sync_async_strings_and_access_tokens() -> None:
    clock = Clock()

    async def async_provider() -> AccessToken:
        return AccessToken("at-async", int(clock() + 100))

    def sync_provider() -> str:
        return jwt({"exp": clock() + 7200})

    lease = await token_fetcher(async_provider, clock)()
    assert lease.value == "at-async"
    clock.now += 49
    assert not lease.stale()
    clock.now += 2
    assert lease.stale()
    lease = await token_fetcher(sync_provider, clock)()
    assert lease.value.endswith(".sig")
    clock.now += 7200 - 400
    assert not lease.stale()
    plain = await token_fetcher(lambda: "opaque", clock)()  # no expiry known: 5 minutes
    clock.now += 151
    assert plain.stale()
    with pytest.raises(TypeError):
        await token_fetcher(lambda: 42, clock)()
    with pytest.raises(ValueError, match="empty"):
        await token_fetcher(lambda: "", clock)()


async def test_token_caches_share_one_cache_per_provider() -> None:
    caches = TokenCaches()

    def a() -> str:
        return "a"

    def b() -> str:
        return "b"

    assert caches.for_provider(a, "x") is caches.for_provider(a, "x")
    assert caches.for_provider(a, "x") is not caches.for_provider(b, "x")
    assert await caches.for_provider(b, "x").get() == "b"
    assert "b" not in repr(caches)
    caches.close()


class SyncCredential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(SECRET, 2_000_000_000)


class AsyncCredential(SyncCredential):
    async def get_token(self, *scopes: str) -> AccessToken:  # type: ignore[override]
        return super().get_token(*scopes)


@pytest.mark.parametrize("credential_cls", [SyncCredential, AsyncCredential])
async def test_azure_identity_provider_over_a_credential(credential_cls: type) -> None:
    credential = credential_cls()
    provider = AzureIdentityTokenProvider(credential)
    token = await provider()
    assert token.token == SECRET
    assert credential.scopes == [AZURE_OPENAI_SCOPE]
    assert SECRET not in repr(provider)
    cache = CredentialCache("azure", token_fetcher(provider))
    assert await cache.get() == SECRET
    assert SECRET not in repr(cache)


async def test_azure_identity_provider_default_credential_fails_typed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With nothing configured, DefaultAzureCredential fails; the cache turns that into
    # an AuthenticationError (never azure's own exception).
    for var in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(var, raising=False)

    class Failing(SyncCredential):
        def get_token(self, *scopes: str) -> AccessToken:
            raise RuntimeError("ClientAuthenticationError: no credential")

    cache = CredentialCache("azure", token_fetcher(AzureIdentityTokenProvider(Failing())))
    with pytest.raises(AuthenticationError, match="could not be loaded"):
        await cache.get("az-0")


def test_require_names_the_extra() -> None:
    with pytest.raises(ConfigError, match=r"pip install 'interlock\[nope\]'"):
        require("interlock_no_such_module", "nope")
    assert require("json", "x").dumps({}) == "{}"
