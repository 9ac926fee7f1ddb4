"""Sending a request on aiohttp's connection pool without `ClientSession.request`'s
per-call generality: what the router's keep-alive session does for every request.

`ClientSession.request` serves every caller: it merges default headers, resolves
proxies, redirects, cookies, authentication, trace hooks, middlewares and upload
trackers, and makes a timeout handle and a closure on each call. The router uses none
of them on its hot path (no default headers, proxy or cookies on its session; each
attempt runs under the router's own deadline), so `DirectSend.request` does only what
is left: it builds the same `aiohttp.ClientRequest`, takes a connection from the
session's connector, sets the same response parameters, writes the request and reads
the status line and headers with aiohttp's own code. That is about 700 Python
bytecodes less per request than ``session.post`` (measured with
``python -m benchmarks.instructions_wire``; docs/benchmarks.md).

What it does not do, it hands back to the session: a redirect (a 3xx with a
``Location``) is released and the request sent again through ``session.request``,
which follows it as before. It is used only with the aiohttp versions it was
checked against (`SUPPORTED`); with any other version every request takes
``session.request``, which is correct, only slower. A hand-written piece on purpose:
aiohttp has no public call below ``ClientSession.request``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import ClientRequest, ClientResponse, ClientTimeout
from aiohttp.client_proto import ResponseHandler
from aiohttp.helpers import TimerNoop
from yarl import URL

__all__ = ["SUPPORTED", "DirectSend"]


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


SUPPORTED = (3, 12) <= _version(aiohttp.__version__) < (3, 15)
"""Whether this aiohttp is one `DirectSend` was checked against (3.12 to 3.14): it
calls `ClientRequest`, `BaseConnector.connect`, `ResponseHandler.set_response_params`,
`ClientRequest.send` and `ClientResponse.start` as `ClientSession.request` does."""

_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_NO_TRACES: list[Any] = []  # read, never appended to, by the calls below
_TIMER = TimerNoop()  # no total timeout, as the session has none (see `DirectSend`)
_RESPONSE_PARAMS = inspect.signature(ResponseHandler.set_response_params).parameters
_HAS_MAX_HEADERS = "max_headers" in _RESPONSE_PARAMS  # newer aiohttp only


class DirectSend:
    """Sends requests for one keep-alive `aiohttp.ClientSession` (made by `HttpClient`
    without a proxy, cookies, default headers or timeout) the way its ``request``
    would, without the parts of ``request`` that session never uses."""

    __slots__ = ("_connector", "_loop", "_params", "_session", "_timeout")

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

    async def request(
        self, method: str, url: URL, body: bytes | None, headers: Mapping[str, str]
    ) -> ClientResponse:
        """The response to `method` `url` once its status and headers have arrived;
        raises what ``session.request`` would raise."""
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
        try:
            conn = await self._connector.connect(req, traces=_NO_TRACES, timeout=self._timeout)
            protocol = conn.protocol
            assert protocol is not None  # a connection from `connect` has one
            protocol.set_response_params(skip_payload=method == "HEAD", **self._params)
            try:
                resp = await req.send(conn)
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
