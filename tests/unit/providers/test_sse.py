"""`OpenChoices`: when a stream of chat chunks holds a complete answer; `SSEReader`'s
idle timeout (one lazy timer per stream)."""

from __future__ import annotations

import asyncio

import pytest

from interlock.providers.sse import MAX_LINE, EventTooLong, OpenChoices, SSEReader
from interlock.types import ChatCompletionChunk, ChoiceDelta, ChunkChoice


def chunk(*choices: tuple[int, str | None]) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        "c", "m", [ChunkChoice(i, ChoiceDelta(content="x"), finish) for i, finish in choices]
    )


def test_one_choice_is_complete_once_it_finished() -> None:
    c = OpenChoices()
    assert not c.complete
    c.note(chunk((0, None)))
    assert not c.complete
    c.note(chunk((0, "stop")))
    assert c.complete
    c.note(ChatCompletionChunk("c", "m", []))  # the usage chunk
    assert c.complete


def test_every_choice_must_have_finished() -> None:
    c = OpenChoices()
    c.note(chunk((0, None), (1, None)))
    c.note(chunk((0, "stop")))
    assert not c.complete
    c.note(chunk((1, "length")))
    assert c.complete


def test_noting_a_choice_by_hand_says_what_note_says() -> None:
    # The OpenAI stream does `note`'s work inline for a single choice: `unfinished`
    # for a choice without finish_reason, `finish` for one with it.
    by_hand, noted = OpenChoices(), OpenChoices()
    for index, finish in ((0, None), (1, None), (0, "stop")):
        noted.note(chunk((index, finish)))
        if finish is None:
            by_hand.unfinished.add(index)
        else:
            by_hand.finish(index)
        assert (by_hand.complete, by_hand.finished) == (noted.complete, noted.finished)
    assert not by_hand.complete  # choice 1 is still open
    by_hand.finish(1)
    assert by_hand.complete


def test_a_stream_without_any_choice_is_not_complete() -> None:
    c = OpenChoices()
    c.note(ChatCompletionChunk("c", "m", []))
    assert not c.complete


# --- SSEReader's idle timeout: one lazy timer per stream -------------------------------


class _Lines:
    """A response whose body arrives in the blocks the test puts (b"": its end)."""

    def __init__(self) -> None:
        self.content = self
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.ended = False

    async def readany(self) -> bytes:
        # As aiohttp's: once the body has ended, every read says so at once.
        if self.ended:
            return b""
        block = await self.queue.get()
        self.ended = not block
        return block


def _reader(idle: float | None) -> tuple[SSEReader, _Lines]:
    lines = _Lines()
    return SSEReader(lines, idle_timeout=idle), lines  # type: ignore[arg-type]


async def test_reads_spaced_under_the_idle_timeout_never_time_out_however_long_the_stream() -> None:
    reader, lines = _reader(0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(8):  # 8 x 20 ms: the stream lasts over three idle timeouts
        loop.call_later(0.02, lines.queue.put_nowait, f"data: {i}\n".encode())
        loop.call_later(0.02, lines.queue.put_nowait, b"\n")
        assert await reader.read() == str(i).encode()
    assert loop.time() - start > 0.1
    reader.close()


async def test_a_read_waiting_past_the_idle_timeout_raises_timeout_error() -> None:
    reader, lines = _reader(0.03)
    lines.queue.put_nowait(b"data: 1\n")
    lines.queue.put_nowait(b"\n")
    assert await reader.read() == b"1"
    with pytest.raises(TimeoutError):
        await reader.read()  # nothing more comes


async def test_time_between_reads_is_the_callers_and_does_not_count() -> None:
    reader, lines = _reader(0.03)
    for _ in range(2):
        lines.queue.put_nowait(b"data: x\n")
        lines.queue.put_nowait(b"\n")
    assert await reader.read() == b"x"
    await asyncio.sleep(0.08)  # the caller is slow; the idle timer fires meanwhile
    assert await reader.read() == b"x"
    reader.close()


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    reader, _ = _reader(10.0)
    task = asyncio.create_task(reader.read())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reader.close()


async def test_close_stops_the_timer_and_no_timer_without_an_idle_timeout() -> None:
    reader, lines = _reader(10.0)
    lines.queue.put_nowait(b"data: 1\n\n")
    lines.queue.put_nowait(b"\n")
    assert await reader.read() == b"1"
    assert reader._timer is not None
    reader.close()
    assert reader._timer is None
    plain, lines = _reader(None)
    lines.queue.put_nowait(b"")
    assert await plain.read() is None
    assert plain._timer is None


# --- SSEReader's parsing: what an event's data is ---------------------------------------


async def _events(*lines: bytes) -> list[bytes | None]:
    reader, body = _reader(None)
    for line in (*lines, b"", b""):  # b"": the end of the body (read again after it)
        body.queue.put_nowait(line)
    out: list[bytes | None] = []
    while (data := await reader.read()) is not None:
        out.append(data)
    return out


async def test_lines_end_with_lf_or_crlf_and_one_space_after_the_colon_is_dropped() -> None:
    assert await _events(b"data: a\n", b"\n", b"data:b\r\n", b"\r\n", b"data:  c \n", b"\n") == [
        b"a",
        b"b",
        b" c ",
    ]


async def test_several_data_lines_are_joined_with_newlines() -> None:
    lines = (b"data: 1\n", b"data: 2\n", b"data: 3\n", b"\n", b"data: 4\n", b"data:\n", b"\n")
    assert await _events(*lines) == [b"1\n2\n3", b"4\n"]


async def test_comments_other_fields_and_events_without_data_are_skipped() -> None:
    lines = (b": ping\n", b"\n", b"event: x\n", b"id: 7\n", b"data: {}\n", b"retry: 9\n", b"\n")
    assert await _events(*lines) == [b"{}"]


async def test_empty_data_is_an_event_and_data_pending_at_the_end_is_the_last() -> None:
    assert await _events(b"data:\n", b"\n", b"data: x\n", b"data: y") == [b"", b"x\ny"]
    assert await _events(b"data: z") == [b"z"]
    assert await _events(b"\n", b"\r\n") == []


async def _events_in_blocks(body: bytes, size: int) -> list[bytes | None]:
    reader, lines = _reader(None)
    for i in range(0, len(body), size):
        lines.queue.put_nowait(body[i : i + size])
    lines.queue.put_nowait(b"")
    out: list[bytes | None] = []
    while (data := await reader.read()) is not None:
        out.append(data)
    return out


async def test_events_read_the_same_however_the_body_is_cut_into_blocks() -> None:
    # Events as https://html.spec.whatwg.org/multipage/server-sent-events.html parses
    # them: a blank line ends one, data lines join with newlines, comments are skipped.
    body = b"data: a\n\ndata: bb\r\n\r\n: c\n\nevent: e\ndata: 1\ndata: 2\n\ndata: {}\n\n"
    want = [b"a", b"bb", b"1\n2", b"{}"]
    for size in range(1, len(body) + 1):
        assert await _events_in_blocks(body, size) == want, size
    # The last event may lack its blank line, and its last line its ending.
    assert await _events_in_blocks(body[:-2], 5) == want


async def test_a_line_longer_than_the_limit_is_refused() -> None:
    reader, lines = _reader(None)
    lines.queue.put_nowait(b"data: " + b"x" * MAX_LINE)
    with pytest.raises(EventTooLong):
        await reader.read()
