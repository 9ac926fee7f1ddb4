"""Server-sent events over an aiohttp response."""

from __future__ import annotations

import asyncio

import aiohttp

__all__ = ["SSEReader"]


class SSEReader:
    """Yields the `data` of each event; an event's several data lines are joined with
    newlines, comments and other fields are skipped.

    `read()` returns None at a clean end of the body; transport failures propagate as
    aiohttp/OS errors for the caller to map.
    """

    __slots__ = ("_content", "_idle_timeout")

    def __init__(self, response: aiohttp.ClientResponse, idle_timeout: float | None) -> None:
        self._content = response.content
        self._idle_timeout = idle_timeout

    async def read(self) -> bytes | None:
        if self._idle_timeout is None:
            return await self._read_event()
        async with asyncio.timeout(self._idle_timeout):
            return await self._read_event()

    async def _read_event(self) -> bytes | None:
        data: list[bytes] = []
        readline = self._content.readline
        while True:
            line = await readline()
            if not line:
                return b"\n".join(data) if data else None
            line = line.rstrip(b"\r\n")
            if not line:
                if data:
                    return b"\n".join(data)
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # "event:", "id:", "retry:" and ":" comments carry nothing we use.
