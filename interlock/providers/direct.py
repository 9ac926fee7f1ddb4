"""Sending a request on aiohttp's connection pool without `ClientSession.request`'s
per-call generality: what the router's keep-alive session does for every request.

`ClientSession.request` serves every caller: it merges default headers, resolves
proxies, redirects, cookies, authentication, trace hooks, middlewares and upload
trackers, and makes a timeout handle and a closure on each call. The router uses none
of them on its hot path (no default headers, proxy or cookies on its session; each
attempt runs under the router's own deadline), so `DirectSend.request` does only what
is left: it takes a connection from the session's connector, writes the request, and
reads the status line and headers with aiohttp's own `ClientResponse` and parser.

A POST with a body (every chat, embedding and stream request) is written in one
``transport.write``: the request line and headers are the ones `aiohttp.ClientRequest`
makes for that URL and those headers, serialized once per URL and header set
(`_Head`), then ``Content-Length`` and the body. That skips building a
`ClientRequest`, its payload and stream writer, and the task that writes the body
(on Python 3.11 a task and a loop callback per request): about 1,500 Python bytecodes
less per request than `ClientRequest.send` (docs/benchmarks.md). Any other request
(another method, no body, headers aiohttp would add to at send time) is sent through
`ClientRequest.send`, as aiohttp sends it.

What it does not do, it hands back to the session: a redirect (a 3xx with a
``Location``) is released and the request sent again through ``session.request``,
which follows it as before. It is used only with the aiohttp versions it was
checked against (`SUPPORTED`); with any other version every request takes
``session.request``, which is correct, only slower. A hand-written piece on purpose:
aiohttp has no public call below ``ClientSession.request``, and that call costs more
than the rest of the router's work per request.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import ClientRequest, ClientResponse, ClientTimeout, HttpVersion11, RequestInfo
from aiohttp.client_proto import ResponseHandler
from aiohttp.helpers import TimerNoop
from multidict import CIMultiDictProxy
from yarl import URL

__all__ = ["SUPPORTED", "DirectSend"]


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


SUPPORTED = (3, 12) <= _version(aiohttp.__version__) < (3, 15)
"""Whether this aiohttp is one `DirectSend` was checked against (3.12 to 3.14): it
calls `ClientRequest`, `BaseConnector.connect`, `ResponseHandler.set_response_params`,
`ClientRequest.send` and `ClientResponse.start` as `ClientSession.request` does, and
for a POST it writes itself, makes the `ClientResponse` as `ClientRequest.send`
would after a body was written."""

_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_NO_TRACES: list[Any] = []  # read, never appended to, by the calls below
_TIMER = TimerNoop()  # no total timeout, as the session has none (see `DirectSend`)
_RESPONSE_PARAMS = inspect.signature(ResponseHandler.set_response_params).parameters
_HAS_MAX_HEADERS = "max_headers" in _RESPONSE_PARAMS  # newer aiohttp only
_HAS_STREAM_WRITER = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters
"""aiohttp 3.14's `ClientResponse` takes the request's writer, for `output_size`."""
_response: Callable[..., ClientResponse] = ClientResponse
"""`ClientResponse` for a request written here: its signature differs between the
aiohttp versions in `SUPPORTED` (`_HAS_STREAM_WRITER`), and the 3.14 one's
``stream_writer`` is only read for its ``output_size`` (`_Written`)."""
_MAX_HEADS = 256
"""Prepared heads kept per session (one per URL); past that the cache starts over."""


class DirectSend:
    """Sends requests for one keep-alive `aiohttp.ClientSession` (made by `HttpClient`
    without a proxy, cookies, default headers or timeout) the way its ``request``
    would, without the parts of ``request`` that session never uses."""

    __slots__ = ("_connector", "_heads", "_loop", "_params", "_session", "_timeout")

    def __init__(self, session: aiohttp.ClientSession, read_bufsize: int) -> None:
        connector = session.connector
        if connector is None:
            raise ValueError("the session has no connector")
        self._session = session
        self._connector = connector
        self._loop = asyncio.get_running_loop()
        self._timeout = ClientTimeout(total=None)
        params: dict[str, Any] = {
            "timer": _TIMER,
            "read_until_eof": True,
            "auto_decompress": session.auto_decompress,
            "read_timeout": None,
            "read_bufsize": read_bufsize,
            # The session's defaults, which `HttpClient` does not change.
            "timeout_ceil_threshold": getattr(connector, "_timeout_ceil_threshold", 5),
            "max_line_size": getattr(session, "_max_line_size", 8190),
            "max_field_size": getattr(session, "_max_field_size", 8190),
        }
        if _HAS_MAX_HEADERS:
            params["max_headers"] = getattr(session, "_max_headers", 128)
        self._params = params
        self._heads: dict[URL, _Head] = {}
        """The latest request head prepared for each URL (see `_Head`)."""

    async def request(
        self, method: str, url: URL, body: bytes | None, headers: Mapping[str, str]
    ) -> ClientResponse:
        """The response to `method` `url` once its status and headers have arrived;
        raises what ``session.request`` would raise."""
        # hot path: a POST with a body is written here in one piece, from its prepared
        # head (see the module's docstring); the rest goes through `ClientRequest.send`.
        head: _Head | None = None
        if body is not None and method == "POST":
            head = self._heads.get(url)
            if head is None or head.headers != headers:
                head = self._prepare(url, headers)
            if head.wire is None:
                head = None
        if head is None:
            req = ClientRequest(
                method,
                url,
                headers=headers,
                data=body,
                loop=self._loop,
                session=self._session,
                timer=_TIMER,
                traces=_NO_TRACES,
            )
        else:
            req = head.req
        try:
            conn = await self._connector.connect(req, traces=_NO_TRACES, timeout=self._timeout)
            protocol = conn.protocol
            assert protocol is not None  # a connection from `connect` has one
            protocol.set_response_params(skip_payload=method == "HEAD", **self._params)
            try:
                if head is None:
                    resp = await req.send(conn)
                else:
                    transport = protocol.transport
                    if transport is None or transport.is_closing():
                        # What aiohttp's writer raises here: a pooled connection the
                        # server closed (the caller's stale-connection retry knows it).
                        raise aiohttp.ClientConnectionResetError(
                            "Cannot write to closing transport"
                        )
                    wire = head.wire
                    assert wire is not None  # a head without one was set to None above
                    assert body is not None
                    size = len(body)
                    transport.write(b"%b%d\r\n\r\n%b" % (wire, size, body))
                    if _HAS_STREAM_WRITER:
                        resp = _response(
                            method, url, writer=None, continue100=None, timer=_TIMER,
                            request_info=head.info, traces=_NO_TRACES, loop=self._loop,
                            session=self._session, stream_writer=_Written(size),
                        )  # fmt: skip
                    else:
                        resp = _response(
                            method, url, writer=None, continue100=None, timer=_TIMER,
                            request_info=head.info, traces=_NO_TRACES, loop=self._loop,
                            session=self._session,
                        )  # fmt: skip
                try:
                    await resp.start(conn)
                except BaseException:
                    resp.close()
                    raise
            except BaseException:
                conn.close()
                raise
        except aiohttp.ClientError:
            raise
        except OSError as exc:
            # As `ClientSession.request`: an OS error is a connection error.
            if exc.errno is None and isinstance(exc, asyncio.TimeoutError):
                raise
            raise aiohttp.ClientOSError(*exc.args) from exc
        if resp.status in _REDIRECTS and "Location" in resp.headers:
            resp.release()
            return await self._session.request(method, url, data=body, headers=headers)
        return resp

    def _prepare(self, url: URL, headers: Mapping[str, str]) -> _Head:
        """The head of a POST to `url` with `headers`, as `ClientRequest` would write
        it, kept as the URL's latest (a URL whose headers change per request, such as
        a signed one, prepares each time: about what `ClientRequest.send` costs)."""
        heads = self._heads
        if len(heads) >= _MAX_HEADS:
            heads.clear()
        head = heads[url] = _Head(
            url,
            headers,
            ClientRequest(
                "POST",
                url,
                headers=headers,
                data=b"",
                loop=self._loop,
                session=self._session,
                timer=_TIMER,
                traces=_NO_TRACES,
            ),
            self._connector.force_close,
        )
        return head


class _Written:
    """What aiohttp 3.14's `ClientResponse` reads of a request already written."""

    __slots__ = ("output_size",)

    def __init__(self, size: int) -> None:
        self.output_size = size


class _Head:
    """A POST's request line and headers for one URL and header set, as
    `ClientRequest.send` writes them, up to the value of its last header,
    ``Content-Length`` (the body's size, written per request).

    `wire` is None when `ClientRequest.send` would add to or change the headers at
    send time (no ``Content-Type``, ``Expect``, chunked or compressed bodies, a
    connector that closes every connection) or when a header is not one line: those
    requests go through `ClientRequest.send`, which also raises aiohttp's own error
    for a header with a line break."""

    __slots__ = ("headers", "info", "req", "wire")

    def __init__(
        self, url: URL, headers: Mapping[str, str], req: ClientRequest, force_close: bool
    ) -> None:
        self.headers = dict(headers)
        """A copy of the headers it was made for: a later request matches by value."""
        self.req = req
        """A request to the same URL, for the connector (which reads only where it
        goes: host, port, TLS)."""
        made = req.headers
        shown = made.copy()
        shown.popall("Content-Length", None)  # the template's is 0; each request's own
        self.info = RequestInfo(url, "POST", CIMultiDictProxy(shown), url)
        """``resp.request_info``: the headers sent, but ``Content-Length``."""
        self.wire: bytes | None = None
        items = list(made.items())
        if (
            force_close
            or req.version != HttpVersion11
            or req.chunked
            or req.compress
            or "Content-Type" not in made
            or "Expect" in made
            or not items
            or items[-1][0] != "Content-Length"
        ):
            return
        lines = [f"POST {url.raw_path_qs} HTTP/1.1"]
        for name, value in items[:-1]:
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                return
            lines.append(f"{name}: {value}")
        lines.append("Content-Length: ")
        self.wire = "\r\n".join(lines).encode()
