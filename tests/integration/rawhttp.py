"""A raw HTTP/1.1 server on 127.0.0.1 for faults aiohttp's server cannot stage:
closing a kept-alive connection as the client reuses it, resetting it, answering
with bytes that are not HTTP.

Each connection is handled by `script(conn)`, which reads requests with
`conn.request()` and answers with `conn.send(...)` (or closes, resets, or writes
anything). The server counts connections and requests.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import orjson

__all__ = [
    "HELLO_REPLY",
    "Conn",
    "RawServer",
    "chat_body",
    "raw_server",
    "redis_answering",
    "resp_command",
    "sse_body",
]


class Conn:
    """One accepted connection: its reader and writer, and requests read so far."""

    def __init__(
        self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.requests = 0
        """Requests read on this connection (1 after the first `request()`)."""

    async def request(self) -> bytes | None:
        """Read one request; its body, or None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await self.reader.readexactly(length) if length else b""
        self.requests += 1
        self.server.requests += 1
        return body

    async def send(
        self, body: bytes, *, content_type: str = "application/json", status: str = "200 OK"
    ) -> None:
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()

    def close(self) -> None:
        """FIN, no response."""
        self.writer.close()

    def reset(self) -> None:
        """RST, no response (SO_LINGER 0, then close)."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Script = Callable[[Conn], Awaitable[None]]


class RawServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests = 0
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.script(Conn(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # raw_server cancels the handlers still running when it stops; ending
            # normally keeps asyncio's stream callback from logging each one.
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[RawServer]:
    server = RawServer(script)
    srv = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    server.port = srv.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        srv.close()
        for task in list(server._tasks):
            task.cancel()
        await asyncio.gather(*server._tasks, return_exceptions=True)
        await srv.wait_closed()


def chat_body(text: str = "hi", usage: object = None) -> bytes:
    """A chat.completion body (OpenAI's documented shape)."""
    body: dict[str, object] = {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage or {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    return orjson.dumps(body)


def sse_body(text: str = "hi", *, done: bool = True) -> bytes:
    """An SSE body of chat.completion.chunk events: role, content, finish, [DONE]."""
    head = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas = [
        ({"role": "assistant", "content": ""}, None),
        ({"content": text}, None),
        ({}, "stop"),
    ]
    frames = [
        b"data: "
        + orjson.dumps({**head, "choices": [{"index": 0, "delta": d, "finish_reason": f}]})
        + b"\n\n"
        for d, f in deltas
    ]
    if done:
        frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


async def resp_command(conn: Conn) -> list[bytes] | None:
    """One RESP command (an array of bulk strings) from a Redis client, or None at EOF."""
    try:
        head = await conn.reader.readuntil(b"\r\n")
        args = []
        for _ in range(int(head[1:-2])):
            size = await conn.reader.readuntil(b"\r\n")
            args.append((await conn.reader.readexactly(int(size[1:-2]) + 2))[:-2])
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return args


HELLO_REPLY = b"%1\r\n$5\r\nproto\r\n:3\r\n"
"""What Redis answers to ``HELLO 3`` (a RESP3 map; redis-py asks for RESP3)."""


def redis_answering(reply: bytes, hello: bytes = HELLO_REPLY) -> Script:
    """A server that takes Redis commands and answers ``HELLO`` with `hello`, the other
    handshake commands with ``+OK`` and every other command with `reply`: a Redis (or
    a proxy) whose answers are not what the client asked for."""

    async def script(conn: Conn) -> None:
        while (args := await resp_command(conn)) is not None:
            name = args[0].upper() if args else b""
            if name == b"HELLO":
                conn.writer.write(hello)
            else:
                conn.writer.write(b"+OK\r\n" if name in (b"AUTH", b"CLIENT", b"SELECT") else reply)
            await conn.writer.drain()

    return script
