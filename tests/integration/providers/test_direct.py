"""The direct send (interlock/providers/direct.py) against a real socket on 127.0.0.1:
the bytes it puts on the wire are the ones ``ClientSession.request`` puts there (a
POST written from its prepared head, and any other request through
`ClientRequest.send`), a compressed reply is decompressed, a redirect is followed with
its body, no cookie is kept, and the installed aiohttp is one it was checked against.

The upstream is a plain asyncio server that records each request's raw bytes and
answers with a chat completion object as
https://platform.openai.com/docs/api-reference/chat/object documents it.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from interlock import Deployment, RetryPolicy, Router
from interlock.providers import direct as direct_module
from interlock.providers import http
from interlock.providers.direct import SUPPORTED, DirectSend

USER = [{"role": "user", "content": "hi"}]
ONCE = RetryPolicy(max_attempts=1, max_wait=0)
KEY = "sk-direct-test"

# https://platform.openai.com/docs/api-reference/chat/object
COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}

Reply = Callable[[bytes, bytes], bytes]
"""``(request line and headers, body) -> the whole HTTP response``."""


def reply(
    body: bytes, *, status: str = "200 OK", headers: tuple[str, ...] = (), gzipped: bool = False
) -> bytes:
    if gzipped:
        body = gzip.compress(body)
        headers = (*headers, "Content-Encoding: gzip")
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    if body:
        head.append("Content-Type: application/json")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Upstream:
    """Records every request as (head, body) and answers it with `answer`."""

    def __init__(self, answer: Reply) -> None:
        self.answer = answer
        self.requests: list[tuple[bytes, bytes]] = []
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                writer.write(self.answer(head, body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Reply], Awaitable[Upstream]]]:
    servers: list[tuple[asyncio.Server, Upstream]] = []

    async def start(answer: Reply) -> Upstream:
        up = Upstream(answer)
        server = await asyncio.start_server(up._serve, "127.0.0.1", 0)
        up.port = server.sockets[0].getsockname()[1]
        servers.append((server, up))
        return up

    yield start
    for server, up in servers:
        server.close()
        for w in list(up.writers):
            w.close()
        await server.wait_closed()


def router_for(port: int, host: str = "127.0.0.1") -> Router:
    return Router(
        [
            Deployment(
                group="g",
                model="gpt-4o",
                api_base=f"http://{host}:{port}/v1",
                api_key=KEY,
            )
        ],
        retry=ONCE,
    )


def test_the_installed_aiohttp_is_one_the_direct_send_was_checked_against() -> None:
    # Otherwise every test of the suite would run the session's path only.
    assert SUPPORTED, f"aiohttp {aiohttp.__version__} is outside direct.SUPPORTED"


async def test_the_direct_send_puts_the_sessions_bytes_on_the_wire(
    serve: Callable[[Reply], Awaitable[Upstream]], monkeypatch: pytest.MonkeyPatch
) -> None:
    up = await serve(lambda head, body: reply(orjson.dumps(COMPLETION), gzipped=True))
    async with router_for(up.port) as router:
        direct = await router.acompletion("g", USER, temperature=0.5)
        direct_again = await router.acompletion("g", USER, temperature=0.5)
        assert router.parts.http.direct is not None  # the path the requests took
    monkeypatch.setattr(http, "DIRECT_SUPPORTED", False)
    async with router_for(up.port) as router:
        await router.acompletion("g", USER, temperature=0.5)
        session = await router.acompletion("g", USER, temperature=0.5)
        assert router.parts.http.direct is None
    # The first request of each router opens the session and goes out through it; the
    # second is the direct send's (or the session's again).
    assert up.requests[1] == up.requests[3]
    assert up.requests[0] == up.requests[1]
    assert b"Authorization: Bearer " + KEY.encode() in up.requests[1][0]
    assert b"gzip" in up.requests[1][0]  # Accept-Encoding, as aiohttp sends it
    assert direct.choices[0].message.content == "Hello there."  # decompressed
    assert direct_again.to_dict() == session.to_dict()


@pytest.mark.parametrize("status", ["307 Temporary Redirect", "308 Permanent Redirect"])
async def test_a_redirect_is_followed_with_the_request_body(
    serve: Callable[[Reply], Awaitable[Upstream]], status: str
) -> None:
    def answer(head: bytes, body: bytes) -> bytes:
        if head.startswith(b"POST /v1/"):
            return reply(b"", status=status, headers=("Location: /v2/chat/completions",))
        return reply(orjson.dumps(COMPLETION))

    up = await serve(answer)
    async with router_for(up.port) as router:
        for _ in range(2):  # the session's path, then the direct send's
            result = await router.acompletion("g", USER)
            assert result.choices[0].message.content == "Hello there."
    # The direct send hands a redirect back to the session, which sends the request
    # again (the 3xx did nothing upstream) and follows it as aiohttp always does.
    paths = [head.split(b" ")[1] for head, _ in up.requests]
    v1, v2 = b"/v1/chat/completions", b"/v2/chat/completions"
    assert paths == [v1, v2, v1, v1, v2]
    assert len({body for _, body in up.requests}) == 1
    assert orjson.loads(up.requests[-1][1])["messages"] == USER


@pytest.mark.parametrize("direct", [True, False])
async def test_no_cookie_a_reply_sets_is_sent_back(
    serve: Callable[[Reply], Awaitable[Upstream]],
    monkeypatch: pytest.MonkeyPatch,
    direct: bool,
) -> None:
    monkeypatch.setattr(http, "DIRECT_SUPPORTED", direct)
    # A load balancer's cookie, as APIs behind one set it.
    cookie = ("Set-Cookie: __cf_bm=abc123; path=/; HttpOnly",)
    up = await serve(lambda head, body: reply(orjson.dumps(COMPLETION), headers=cookie))
    # By name: aiohttp's cookie jar ignores cookies from an IP address.
    async with router_for(up.port, "localhost") as router:
        for _ in range(3):
            await router.acompletion("g", USER)
    assert len(up.requests) == 3
    assert all(b"cookie:" not in head.lower() for head, _ in up.requests)


# --- DirectSend itself, against the session it belongs to -----------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # As `HttpClient` makes its keep-alive session: no cookies, no default headers.
    s = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    yield s
    await s.close()


HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


async def both_ways(
    session: aiohttp.ClientSession,
    up: Upstream,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """The request as the direct send wrote it, and as ``session.request`` did."""
    url = URL(f"http://127.0.0.1:{up.port}/v1/chat/completions")
    resp = await DirectSend(session, http.READ_BUFSIZE).request(method, url, body, headers)
    assert resp.status == 200
    await resp.read()
    resp.release()
    async with session.request(method, url, data=body, headers=headers) as r:
        await r.read()
    assert len(up.requests) == 2
    return up.requests[0], up.requests[1]


async def test_a_post_is_written_from_its_prepared_head(
    serve: Callable[[Reply], Awaitable[Upstream]],
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    up = await serve(lambda head, body: reply(orjson.dumps(COMPLETION)))
    made: list[object] = []
    real = aiohttp.ClientRequest  # what direct.py builds requests with

    def counted(*args: Any, **kwargs: Any) -> aiohttp.ClientRequest:
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(direct_module, "ClientRequest", counted)
    send = DirectSend(session, http.READ_BUFSIZE)
    url = URL(f"http://127.0.0.1:{up.port}/v1/chat/completions")
    bodies = [orjson.dumps({"n": i, "pad": "x" * i}) for i in range(0, 3000, 1000)]
    for body in bodies:
        resp = await send.request("POST", url, body, dict(HEADERS))  # equal, not the same
        assert orjson.loads(await resp.read()) == COMPLETION
        resp.release()
        assert resp.request_info.headers["Authorization"] == HEADERS["Authorization"]
    # One `ClientRequest`, for the head; each request only adds its length and body.
    assert len(made) == 1
    assert [body for _, body in up.requests] == bodies
    heads = {
        head.replace(str(len(b)).encode(), b"N")
        for (head, _), b in zip(up.requests, bodies, strict=True)
    }
    assert len(heads) == 1
    monkeypatch.setattr(direct_module, "ClientRequest", real)
    async with session.post(url, data=bodies[-1], headers=HEADERS) as r:
        await r.read()
    assert up.requests[-1] == up.requests[-2]  # what ``session.post`` writes


async def test_new_headers_for_the_same_url_are_the_ones_sent(
    serve: Callable[[Reply], Awaitable[Upstream]], session: aiohttp.ClientSession
) -> None:
    up = await serve(lambda head, body: reply(orjson.dumps(COMPLETION)))
    send = DirectSend(session, http.READ_BUFSIZE)
    url = URL(f"http://127.0.0.1:{up.port}/v1/chat/completions")
    for headers in (
        HEADERS,
        {**HEADERS, "X-Request-Tag": "a"},
        HEADERS,
        {**HEADERS, "X-Request-Tag": "b"},
    ):
        resp = await send.request("POST", url, b"{}", headers)
        resp.release()
    tags = [
        [line for line in head.split(b"\r\n") if line.startswith(b"X-Request-Tag")]
        for head, _ in up.requests
    ]
    assert tags == [[], [b"X-Request-Tag: a"], [], [b"X-Request-Tag: b"]]


@pytest.mark.parametrize(
    ("method", "body", "headers"),
    [
        ("POST", b'{"a": 1}', HEADERS),
        # aiohttp adds a Content-Type at send time: sent through `ClientRequest.send`.
        ("POST", b'{"a": 1}', {"Authorization": f"Bearer {KEY}"}),
        ("GET", None, {"Authorization": f"Bearer {KEY}"}),
    ],
    ids=["prepared", "no-content-type", "get"],
)
async def test_every_kind_of_request_is_written_as_the_session_writes_it(
    serve: Callable[[Reply], Awaitable[Upstream]],
    session: aiohttp.ClientSession,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
) -> None:
    up = await serve(lambda head, body: reply(orjson.dumps(COMPLETION)))
    direct, via_session = await both_ways(session, up, method, body, headers)
    assert direct == via_session


async def test_a_large_body_arrives_whole(
    serve: Callable[[Reply], Awaitable[Upstream]], session: aiohttp.ClientSession
) -> None:
    up = await serve(lambda head, body: reply(orjson.dumps(COMPLETION)))
    # Far more than a socket takes at once; under the 1 MiB past which aiohttp's own
    # path warns about a bytes body.
    body = orjson.dumps({"messages": [{"role": "user", "content": "y" * 1_000_000}]})
    direct, via_session = await both_ways(session, up, "POST", body, HEADERS)
    assert direct == via_session
    assert direct[1] == body


async def test_a_header_with_a_line_break_is_refused_and_nothing_is_sent(
    serve: Callable[[Reply], Awaitable[Upstream]], session: aiohttp.ClientSession
) -> None:
    up = await serve(lambda head, body: reply(orjson.dumps(COMPLETION)))
    url = URL(f"http://127.0.0.1:{up.port}/v1/chat/completions")
    bad = {**HEADERS, "X-Note": "a\r\nX-Injected: 1"}
    send = DirectSend(session, http.READ_BUFSIZE)
    with pytest.raises(ValueError, match=r"(?i)header injection"):
        await send.request("POST", url, b"{}", bad)
    with pytest.raises(ValueError, match=r"(?i)header injection"):  # as the session does
        await session.post(url, data=b"{}", headers=bad)
    resp = await send.request("POST", url, b"{}", HEADERS)  # the connection is still good
    resp.release()
    assert len(up.requests) == 1
    assert b"X-Injected" not in up.requests[0][0]
