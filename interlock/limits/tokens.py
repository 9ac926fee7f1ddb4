"""A fast token estimate for reservations made before the provider reports usage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["estimate_embedding_tokens", "estimate_input_tokens", "estimate_text_tokens"]

# Roughly 4 characters per token for English text with OpenAI's tokenizers; a few
# tokens per message cover role and framing. Reconciliation with `usage` fixes the rest.
_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4


def estimate_text_tokens(text: str) -> int:
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def estimate_input_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Tokens in a chat prompt, estimated from characters. Raises TypeError naming the
    first message that is not a mapping."""
    chars = 0
    for i, m in enumerate(messages):
        # `type(...) is` first: isinstance against an ABC costs more than the rest.
        if type(m) is not dict and not isinstance(m, Mapping):
            raise TypeError(
                f"messages[{i}] must be a mapping like {{'role': ..., 'content': ...}},"
                f" not {type(m).__name__}"
            )
        content = m.get("content")
        if type(content) is str:
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping):
                    text = part.get("text")
                    if isinstance(text, str):
                        chars += len(text)
    return (chars + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN + _PER_MESSAGE * len(messages)


def estimate_embedding_tokens(value: Any) -> int:
    """Tokens in an embedding input (a string, strings, or token arrays)."""
    if isinstance(value, str):
        return estimate_text_tokens(value)
    if isinstance(value, Sequence):
        total = 0
        for item in value:
            if isinstance(item, str):
                total += estimate_text_tokens(item)
            elif isinstance(item, int):
                total += 1
            elif isinstance(item, Sequence):
                total += len(item)
        return total
    return 0
