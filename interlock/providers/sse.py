"""Server-sent events over an aiohttp response, and what a stream of chat chunks
says about its own end."""

from __future__ import annotations

import asyncio
import contextvars

import aiohttp

from interlock.config import Deployment
from interlock.errors import InterlockError, StreamInterruptedError
from interlock.providers.http import READ_BUFSIZE, malformed
from interlock.running import task_on
from interlock.types import ChatCompletionChunk

__all__ = ["EventTooLong", "OpenChoices", "SSEReader", "read_error"]

MAX_LINE = 2 * READ_BUFSIZE
"""The longest line `SSEReader` takes (aiohttp's limit for the session's buffer)."""


_TIMER_CONTEXT = contextvars.Context()
"""The context the idle timers run in. They read no context variable, and without
one the loop copies the current context for every timer: an object more per open
stream, for the cyclic collector to walk."""


class EventTooLong(Exception):
    """A line of the stream is longer than `MAX_LINE` bytes."""


class SSEReader:
    """Yields the `data` of each event; an event's several data lines are joined with
    newlines, comments and other fields are skipped.

    `read()` returns None at a clean end of the body and raises `EventTooLong` for a
    line over `MAX_LINE`; transport failures propagate as aiohttp/OS errors (and a
    read that waited `idle_timeout` seconds without an event as TimeoutError) for
    `read_error` to map. Call `close()` when done with the stream.

    The idle timeout is one lazy loop timer per stream, not one per read: each read
    notes when it started, and the timer, when it fires, cancels a read that has been
    waiting for `idle_timeout` or sets itself again for when the current read would
    reach it. `asyncio.timeout()` per read scheduled and cancelled a timer handle per
    chunk: with thousands of open streams the loop's timer heap held as many
    cancelled handles, and every chunk paid for pushing one more onto it.
    """

    __slots__ = (
        "_buf",
        "_cancelling",
        "_content",
        "_expired",
        "_idle_timeout",
        "_loop",
        "_pos",
        "_since",
        "_task",
        "_timer",
    )

    def __init__(self, response: aiohttp.ClientResponse, idle_timeout: float | None) -> None:
        self._content = response.content
        self._buf = b""
        """The latest block read from the body (with what was left of the one before)."""
        self._pos = 0
        """Where the unparsed part of `_buf` starts."""
        self._idle_timeout = idle_timeout
        self._task: asyncio.Task[object] | None = None
        """The task in `read()`, while it waits."""
        self._since = 0.0
        self._cancelling = 0
        self._expired = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def read(self) -> bytes | None:
        # hot path: runs for every chunk of every stream, so the idle timer's upkeep
        # and the line loop share one coroutine (a frame less on every resumption).
        idle = self._idle_timeout
        task: asyncio.Task[object] | None = None
        if idle is not None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            task = task_on(loop)  # `asyncio.current_task()` without its Python call
            if task is None:
                raise RuntimeError("SSEReader.read() must be awaited inside an asyncio task")
            self._since = now = loop.time()
            self._cancelling = task.cancelling()
            self._task = task
            if self._timer is None:
                self._timer = loop.call_at(now + idle, self._check, context=_TIMER_CONTEXT)
        # One event: its first data line on its own (the common case: one line, no
        # list), the others, if any, in `more`. The body is read in blocks
        # (`readany`: whatever has arrived) and split here with `bytes.find`: an event
        # already received costs no await and no aiohttp call, where `readuntil` cost
        # a coroutine and a walk of aiohttp's buffer per line. Each line's ending is
        # cut off by the slice that takes its value (one copy of it).
        data: bytes | None = None
        more: list[bytes] | None = None
        buf = self._buf
        pos = self._pos
        try:
            while True:
                nl = buf.find(b"\n", pos)
                if nl - pos > MAX_LINE:
                    break  # however much of the line has come (a miss is -1, never here)
                if nl >= 0:
                    at = pos
                    pos = nl + 1
                    if buf.startswith(b"data:", at):
                        start = at + 6 if buf[at + 5] == 32 else at + 5  # one space
                        end = nl
                        while end > start and buf[end - 1] == 13:
                            end -= 1
                    elif data is not None and (nl == at or (nl == at + 1 and buf[at] == 13)):
                        return data if more is None else b"\n".join((data, *more))  # its end
                    else:
                        continue  # "event:", "id:", "retry:" and ":" comments: unused
                elif len(buf) - pos > MAX_LINE:
                    break  # the line so far, with no end in sight
                else:
                    block = await self._content.readany()
                    if block:
                        # Only a line's beginning is left to carry over: a short copy.
                        buf = buf[pos:] + block if pos < len(buf) else block
                        pos = 0
                        continue
                    if pos < len(buf):
                        # The body's last line came without its ending: end it, and
                        # the event it belongs to (one read of the end of the body).
                        buf = buf[pos:] + b"\n\n"
                        pos = 0
                        continue
                    buf, pos = b"", 0  # the end of the body
                    if data is None:
                        return None
                    return data if more is None else b"\n".join((data, *more))
                if data is None:
                    data = buf[start:end]
                elif more is None:
                    more = [buf[start:end]]
                else:
                    more.append(buf[start:end])
        except asyncio.CancelledError:
            expired, self._expired = self._expired, False
            # Like asyncio.timeout: only our own cancel becomes a TimeoutError.
            if task is not None and expired and task.uncancel() <= self._cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._task = None
            self._buf = buf
            self._pos = pos
        raise EventTooLong(f"a line of the stream is longer than {MAX_LINE} bytes")

    def _check(self) -> None:
        """The timer fired: time out a read waiting for `idle_timeout`, else set the
        timer for when the waiting read would reach it (none waiting: stop; the next
        read starts it again)."""
        task, loop, idle = self._task, self._loop, self._idle_timeout
        if task is None or loop is None or idle is None:
            self._timer = None
            return
        due = self._since + idle
        if loop.time() >= due:
            self._timer = None
            self._expired = True
            task.cancel()
        else:
            self._timer = loop.call_at(due, self._check, context=_TIMER_CONTEXT)

    def close(self) -> None:
        """Stop the idle timer (it holds this reader until it fires)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def read_error(d: Deployment, exc: Exception, chunks: int) -> InterlockError | None:
    """The error for an exception from `SSEReader.read` after `chunks` chunks; None for
    one that is neither aiohttp's nor the socket's. Raise it outside the ``except``
    block, so the dependency's exception (which may quote the stream) is not kept on
    its ``__context__``."""
    if isinstance(exc, TimeoutError):
        return StreamInterruptedError(
            f"no chunk for {d.timeout:.3g} s after {chunks} chunk(s)", deployment_id=d.id
        )
    if isinstance(exc, EventTooLong):
        return malformed(d, str(exc))
    if isinstance(exc, aiohttp.ClientError | OSError):
        return StreamInterruptedError(
            f"stream cut after {chunks} chunk(s): {type(exc).__name__}", deployment_id=d.id
        )
    return None


class OpenChoices:
    """The choices of a chat stream that have not sent their `finish_reason` yet.

    Once every choice has sent one the answer is complete: a body that then ends
    without the provider's end marker (OpenAI's ``data: [DONE]``, Anthropic's
    ``message_stop``) lost nothing the caller needs.
    """

    __slots__ = ("finished", "unfinished")

    def __init__(self) -> None:
        self.unfinished: set[int] = set()
        """The indexes of the choices seen without a `finish_reason` so far. A stream
        may add to it directly for a chunk whose choice has none (`note`, inline)."""
        self.finished = False
        """Some choice has finished."""

    def note(self, chunk: ChatCompletionChunk) -> None:
        for c in chunk.choices:
            if c.finish_reason is None:
                self.unfinished.add(c.index)
            else:
                self.finish(c.index)

    def finish(self, index: int) -> None:
        """The choice `index` sent its `finish_reason`."""
        self.unfinished.discard(index)
        self.finished = True

    @property
    def complete(self) -> bool:
        """Every choice seen so far has finished."""
        return self.finished and not self.unfinished
