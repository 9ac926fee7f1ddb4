"""`interlock/limits/tokens.py`: `TokenCounter` and the heuristic token estimate."""

from __future__ import annotations

from typing import Any, cast

import pytest

from interlock.limits import TokenCounter
from interlock.limits.tokens import estimate_input_tokens

# --- tokens -------------------------------------------------------------------------------


def test_token_counter_heuristic_and_exact_function() -> None:
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "abcdefgh"},
        {"role": "user", "content": [{"text": "xy"}]},
    ]
    assert TokenCounter().messages(msgs) == 2 + 1 + 8
    words = TokenCounter(lambda text: len(text.split()), per_message=0)
    assert words.messages([{"role": "user", "content": "one two three"}]) == 3
    assert words.embedding_input(["a b", [1, 2, 3], 7]) == 2 + 3 + 1
    with pytest.raises(TypeError, match=r"messages\[0\] must be a mapping"):
        words.messages(cast(Any, ["hi"]))


def test_tiktoken_counter_when_installed() -> None:
    pytest.importorskip("tiktoken")
    try:
        counter = TokenCounter.tiktoken("cl100k_base")
    except Exception as exc:  # the BPE file cannot be fetched offline
        pytest.skip(f"tiktoken data unavailable: {type(exc).__name__}")
    assert counter.messages([{"role": "user", "content": "hello world"}]) == 2 + 4


def test_heuristic_counter_honours_per_message_and_matches_the_estimate() -> None:
    msgs = [{"role": "system", "content": "abcd"}, {"role": "user", "content": "abcdefgh"}]
    # 12 characters -> 3 tokens, plus framing per message.
    assert estimate_input_tokens(msgs) == 3 + 4 * 2
    assert TokenCounter().messages(msgs) == estimate_input_tokens(msgs)
    assert TokenCounter(per_message=1).messages(msgs) == 3 + 1 * 2
    assert TokenCounter(len).messages(msgs) == 12 + 4 * 2
