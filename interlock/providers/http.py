"""HTTP plumbing shared by the aiohttp transports: the session (and the one resend of
a request whose pooled connection the server had closed), sending a request within
its timeout, and dependency exceptions to typed errors that hold no key or body.
What an error *response* means (status, body, Retry-After) is in http_errors.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from contextvars import ContextVar
from ssl import SSLContext
from typing import Any, Protocol, TypeVar, overload

import aiohttp
import orjson
from aiohttp import ClientRequest
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from interlock.config import Deployment
from interlock.deadline import DeadlineWheel
from interlock.errors import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    ConfigError,
    InterlockError,
    MalformedResponseError,
    StreamInterruptedError,
    WrongEventLoopError,
)
from interlock.errors import scrub as scrub_secret
from interlock.providers.direct import SUPPORTED as DIRECT_SUPPORTED
from interlock.providers.direct import DirectSend
from interlock.types import InvalidCount

__all__ = [
    "READ_BUFSIZE",
    "ErrorMapper",
    "HttpClient",
    "connection_error",
    "dumps_body",
    "is_stale_connection",
    "malformed",
    "open_sse",
    "post_bytes",
    "send",
    "typed_error",
]

ErrorMapper = Callable[[Deployment, int, Mapping[str, str], bytes, "str | None"], InterlockError]
"""``(deployment, status, headers, body, secret) -> error``: a provider's error mapping."""


class FirstRead(Protocol):
    """An opened stream `open_sse` reads the first item of: a `ChunkSource`, or any
    other reader of a streamed body (the Responses API's events)."""

    first: Any

    async def next(self) -> Any: ...


S = TypeVar("S", bound=FirstRead)
T = TypeVar("T")


_made: ContextVar[int] = ContextVar("interlock_connection_made", default=0)
"""The serial number (`_PoolConnector.made`) of the last connection the sending task
opened: a request that failed without raising it went out on a pooled connection."""


class _PoolConnector(aiohttp.TCPConnector):
    """aiohttp's pooled connector, numbering the connections it opens and telling the
    task that opened one (through `_made`, a context variable of the task).

    Only the opening of a new connection is hooked, not every `connect`: a request on
    a pooled connection (the common case) pays nothing, and `send` reads one class
    attribute before the request to tell afterwards whether it went out on a new
    connection or on one taken from the keep-alive pool.
    """

    made = 0
    """Connections opened by every `_PoolConnector` so far (grows only)."""

    async def _create_connection(self, req: ClientRequest, *args: Any, **kwargs: Any) -> Any:
        proto = await super()._create_connection(req, *args, **kwargs)
        _PoolConnector.made += 1
        _made.set(_PoolConnector.made)
        return proto


class HttpClient:
    """Owns the `aiohttp.ClientSession` a router uses: keep-alive, pooled, created on
    first use inside the running loop and closed by `aclose()`.

    A second session, without keep-alive, is made only when needed: `send` re-sends
    there a request whose pooled connection turned out to be closed (see `send`).
    """

    __slots__ = (
        "_children",
        "_closed",
        "_fresh",
        "_limit",
        "_loop",
        "_proxy",
        "_session",
        "_ssl",
        "direct",
        "networks",
    )

    def __init__(
        self,
        *,
        connection_limit: int = 1000,
        proxy: str | None = None,
        ssl: SSLContext | bool = True,
    ) -> None:
        if (
            isinstance(connection_limit, bool)
            or not isinstance(connection_limit, int)
            or connection_limit < 1
        ):
            raise ConfigError(
                [("connection_limit", f"must be an int >= 1, got {connection_limit!r}")]
            )
        self._limit = connection_limit
        self._proxy = proxy
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._children: dict[Hashable, HttpClient] = {}
        self.direct: DirectSend | None = None
        """How requests go out on the keep-alive session once it is open, when it can
        be used (direct.py); None before, or with a proxy, or an unchecked aiohttp."""
        self.networks: dict[str, HttpClient] | None = None
        """Deployment id -> the client of its own network settings (proxy, TLS), for
        the deployments that have some; None when none has (`network_for`)."""

    def route(
        self, deployment_id: str, key: Hashable, *, proxy: str | None, ssl: SSLContext | bool
    ) -> None:
        """Send `deployment_id`'s requests through a client with `proxy` and `ssl`: one
        session (and connection pool) per distinct network setting `key`, made here at
        construction so that a request only picks it (`network_for`)."""
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HttpClient(
                connection_limit=self._limit, proxy=proxy, ssl=ssl
            )
        if self.networks is None:
            self.networks = {}
        self.networks[deployment_id] = child

    def check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Raise `WrongEventLoopError` if a session is open on a loop other than `loop`
        (aiohttp would fail later, with "Event loop is closed" or a hang)."""
        for c in (self, *self._children.values()):
            live = [s for s in (c._session, c._fresh) if s is not None and not s.closed]
            if c._loop is not None and c._loop is not loop and live:
                state = "is closed now" if c._loop.is_closed() else "is still open"
                raise WrongEventLoopError(
                    "this Router's HTTP session was opened on another event loop, which "
                    f"{state}; a Router belongs to the loop it is used on: make one Router "
                    "per event loop, or close it on its loop (`async with router:` or "
                    "`await router.aclose()`) before using it on another"
                )

    def _open(self, *, keepalive: bool) -> aiohttp.ClientSession:
        if self._closed:
            # A session made now would never be closed: refuse instead of leaking.
            raise RuntimeError(
                "this Router was closed with aclose(); enter `async with router:` again "
                "to reopen it"
            )
        self._loop = asyncio.get_running_loop()
        connector = (
            _PoolConnector(
                limit=self._limit, limit_per_host=0, keepalive_timeout=30.0, ssl=self._ssl
            )
            if keepalive
            else aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=0, force_close=True, ssl=self._ssl
            )
        )
        # No session-wide timeout: each attempt runs under its own deadline. No
        # skip_auto_headers either: aiohttp's slow path for it costs more per request
        # than sending its default User-Agent. read_bufsize is pinned because it sets
        # the longest line a stream may send (twice this), which aiohttp's default
        # changed across versions (docs/resilience.md#faults-and-bad-input). No
        # cookies: an API answers by key, and a cookie one deployment's reply set must
        # not ride along on another's requests to the same host.
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            raise_for_status=False,
            read_bufsize=READ_BUFSIZE,
            proxy=self._proxy,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        s = self._session
        if s is None or s.closed:
            s = self._session = self._open(keepalive=True)
            if DIRECT_SUPPORTED and self._proxy is None:
                self.direct = DirectSend(s, READ_BUFSIZE)
        return s

    def request(
        self, method: str, url: URL, body: bytes | None, headers: Mapping[str, str]
    ) -> Awaitable[aiohttp.ClientResponse]:
        """Send on the keep-alive session: by the direct send once the session is open
        and allows it (direct.py), else by ``ClientSession.request`` (which opens it).
        Not a coroutine function: it hands back the coroutine that sends, so a request
        runs through no extra frame."""
        direct = self.direct
        if direct is not None:
            return direct.request(method, url, body, headers)
        return self.session.request(method, url, data=body, headers=headers)

    @property
    def fresh_session(self) -> aiohttp.ClientSession:
        """A session whose every request opens a new connection (and closes it after)."""
        s = self._fresh
        if s is None or s.closed:
            s = self._fresh = self._open(keepalive=False)
        return s

    @property
    def is_open(self) -> bool:
        return self._session is not None and not self._session.closed

    def reopen(self) -> None:
        """Allow a new session after `aclose()` (entering the router again)."""
        self._closed = False
        for c in self._children.values():
            c.reopen()

    async def aclose(self) -> None:
        self._closed = True
        for s in (self._session, self._fresh):
            if s is not None and not s.closed:
                await s.close()
        self._session = self._fresh = None
        self.direct = None
        for c in self._children.values():
            await c.aclose()


READ_BUFSIZE = 2**18
"""aiohttp's read buffer per response: a stream line longer than twice this (512 KiB)
is refused (`MalformedResponseError`)."""


def is_stale_connection(exc: BaseException) -> bool:
    """Whether `exc` says the connection was closed or reset after it was made and
    before the response began: what a pooled connection that the server closed while
    idle looks like to the request sent on it (a refused connection or a timeout is
    something else)."""
    return isinstance(
        exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionResetError)
    ) and not isinstance(exc, (aiohttp.ClientConnectorError, TimeoutError))


async def send(
    client: HttpClient,
    url: URL,
    body: bytes | None,
    headers: Mapping[str, str],
    method: str = "POST",
) -> aiohttp.ClientResponse:
    """Send `body` (a POST unless `method` says otherwise) and wait for the response's
    status and headers.

    A request sent on a pooled keep-alive connection that is closed or reset before
    any of the response arrives is sent once more, on a new connection: the server
    closed the idle connection as it was reused, which says nothing about the
    deployment (aiohttp does the same for idempotent methods; a chat completion that
    produced no answer can be asked again). On a new connection the same failure is
    the deployment's, and is not repeated.
    """
    before = _PoolConnector.made
    try:
        return await client.request(method, url, body, headers)
    except aiohttp.ClientError as exc:
        # The task opened no connection since `before`: the request used a pooled one.
        if not (_made.get() <= before and is_stale_connection(exc)):
            raise
    return await resend(client, url, body, headers, method)


async def resend(
    client: HttpClient,
    url: URL,
    body: bytes | None,
    headers: Mapping[str, str],
    method: str = "POST",
) -> aiohttp.ClientResponse:
    """`send`'s second try, on a new connection: called outside the ``except`` block
    that saw the first failure, so a second failure does not carry the first."""
    return await client.fresh_session.request(method, url, data=body, headers=headers)


def dumps_body(payload: dict[str, Any]) -> bytes:
    """The request body; a value JSON cannot hold is the caller's error."""
    try:
        return orjson.dumps(payload)
    except TypeError as exc:
        err = BadRequestError(f"the request is not JSON-serializable: {exc}")
    raise err  # off the chain: orjson's exception holds the request's values


def malformed(d: Deployment, exc: BaseException | str) -> MalformedResponseError:
    """The error for a body that is not what the API promises. `exc` (the parser's
    exception) is named by its class alone, since its text may quote the body, unless
    it is an `InvalidCount` (whose text names the field, never the value). Raise the
    result outside the ``except`` block that caught `exc` (see `typed_error`)."""
    if isinstance(exc, InvalidCount):
        return MalformedResponseError(f"invalid response: {exc}", deployment_id=d.id)
    what = exc if isinstance(exc, str) else type(exc).__name__
    return MalformedResponseError(f"unreadable response body ({what})", deployment_id=d.id)


def connection_error(d: Deployment, secret: str | None, exc: BaseException) -> APIConnectionError:
    # An OS error's text names the address and the errno; other aiohttp errors may
    # quote what the server sent, so only their class is named.
    detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else type(exc).__name__
    # The text names the deployment's own host, which is never altered.
    own = (d.api_base or "", d.id or "", d.model, d.group)
    text = scrub_secret(f"connection failed: {detail}", secret, own)
    return APIConnectionError(text, deployment_id=d.id)


def typed_error(
    d: Deployment, secret: str | None, exc: Exception, timeout: float, waiting_for: str
) -> InterlockError | None:
    """The `InterlockError` for an exception from aiohttp while sending a request or
    reading its response; None for an exception that is not aiohttp's or the
    socket's (a bug, to be raised as it is).

    Callers raise the result outside their ``except`` block: raised inside it, the
    dependency's exception would stay on its ``__context__``, and that exception may
    hold the upstream's bytes.
    """
    if isinstance(exc, InterlockError):
        return exc
    if isinstance(exc, TimeoutError):
        return APITimeoutError(f"no {waiting_for} within {timeout:.3g} s", deployment_id=d.id)
    if isinstance(exc, aiohttp.ClientResponseError | HttpProcessingError):
        # The server's bytes are not HTTP (a bad status line, oversized headers, ...).
        return malformed(d, exc)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return connection_error(d, secret, exc)
    return None


@overload
async def post_bytes(
    client: HttpClient,
    deadlines: DeadlineWheel,
    d: Deployment,
    url: URL,
    body: bytes,
    headers: Mapping[str, str],
    secret: str | None,
    timeout: float,
    error: ErrorMapper,
) -> bytes: ...


@overload
async def post_bytes(
    client: HttpClient,
    deadlines: DeadlineWheel,
    d: Deployment,
    url: URL,
    body: bytes,
    headers: Mapping[str, str],
    secret: str | None,
    timeout: float,
    error: ErrorMapper,
    parse: Callable[[Deployment, bytes, str | None], T],
) -> T: ...


async def post_bytes(
    client: HttpClient,
    deadlines: DeadlineWheel,
    d: Deployment,
    url: URL,
    body: bytes,
    headers: Mapping[str, str],
    secret: str | None,
    timeout: float,
    error: ErrorMapper,
    parse: Callable[[Deployment, bytes, str | None], Any] | None = None,
) -> Any:
    """POST `body` within `timeout`; the response body, or a typed error. With `parse`,
    ``parse(d, body, secret)`` instead (outside the timeout): a transport can then
    return this coroutine as its own, one coroutine frame less per request."""
    if client.networks is not None:  # a deployment with a proxy or TLS settings
        client = client.networks.get(d.id or "", client)
    try:
        with deadlines.timeout(timeout):
            # `send`, inlined: one coroutine frame less on every resumption of a request.
            before = _PoolConnector.made
            try:
                resp = await client.request("POST", url, body, headers)
            except aiohttp.ClientError as exc:
                if not (_made.get() <= before and is_stale_connection(exc)):
                    raise
                resp = None
            if resp is None:
                resp = await resend(client, url, body, headers)
            # `release()` rather than ``async with resp``: its __aenter__ and __aexit__
            # are two coroutines, and __aexit__ awaits a third (`wait_for_close`) that,
            # once the whole reply is read, only waits for a request writer that
            # `release()` has already cancelled if it was still running.
            try:
                raw = await resp.read()
            finally:
                resp.release()
            if resp.status >= 400:
                raise error(d, resp.status, resp.headers, raw, secret)
    except Exception as exc:  # typed below, or raised as it is
        err = typed_error(d, secret, exc, timeout, "response")
        if err is None or err is exc:
            raise
    else:
        return raw if parse is None else parse(d, raw, secret)
    raise err


async def open_sse(
    client: HttpClient,
    deadlines: DeadlineWheel,
    d: Deployment,
    url: URL,
    body: bytes,
    headers: Mapping[str, str],
    secret: str | None,
    timeout: float,
    error: ErrorMapper,
    make: Callable[[aiohttp.ClientResponse], S],
    item: str = "chunk",
) -> S:
    """POST a streaming request and read up to its first `item` within `timeout`, so a
    failure before any output is an ordinary (retryable) attempt failure."""
    resp: aiohttp.ClientResponse | None = None
    if client.networks is not None:  # a deployment with a proxy or TLS settings
        client = client.networks.get(d.id or "", client)
    try:
        with deadlines.timeout(timeout):
            resp = await send(client, url, body, headers)
            if resp.status >= 400:
                raw = await resp.read()
                raise error(d, resp.status, resp.headers, raw, secret)
            stream = make(resp)
            first = await stream.next()
            if first is None:
                raise StreamInterruptedError(
                    f"the stream ended before its first {item}", deployment_id=d.id
                )
            stream.first = first
            return stream
    except BaseException as exc:
        if resp is not None:
            resp.close()
        if not isinstance(exc, Exception):
            raise
        err = typed_error(d, secret, exc, timeout, f"first {item}")
        if err is None or err is exc:
            raise
    raise err
