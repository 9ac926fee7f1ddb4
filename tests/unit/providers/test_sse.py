"""`OpenChoices`: when a stream of chat chunks holds a complete answer."""

from __future__ import annotations

from interlock.providers.sse import OpenChoices
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


def test_a_stream_without_any_choice_is_not_complete() -> None:
    c = OpenChoices()
    c.note(ChatCompletionChunk("c", "m", []))
    assert not c.complete
