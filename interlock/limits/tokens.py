"""Token estimates for reservations made before the provider reports usage.

The default is a characters-based heuristic: cheap (one pass over the message
contents, no allocation) and close enough, because every reservation is reconciled
with the provider's `usage` afterwards. An exact tokenizer can be asked for
(`TokenCounter.tiktoken()` when ``tiktoken`` is installed, or any ``str -> int``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "TokenCounter",
    "estimate_embedding_tokens",
    "estimate_input_tokens",
    "estimate_text_tokens",
]

# Roughly 4 characters per token for English text with OpenAI's tokenizers; a few
# tokens per message cover role and framing. Reconciliation with `usage` fixes the rest.
_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4


def estimate_text_tokens(text: str) -> int:
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def _check_message(messages: Sequence[object], m: object) -> None:
    """Raise TypeError naming `m`'s index in `messages` when it is not a mapping."""
    if not isinstance(m, Mapping):
        i = next(i for i, x in enumerate(messages) if x is m)
        raise TypeError(
            f"messages[{i}] must be a mapping like {{'role': ..., 'content': ...}},"
            f" not {type(m).__name__}"
        )


def estimate_input_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Tokens in a chat prompt, estimated from characters. Raises TypeError naming the
    first message that is not a mapping."""
    return _HEURISTIC.messages(messages)


def estimate_embedding_tokens(value: Any) -> int:
    """Tokens in an embedding input (a string, strings, or token arrays)."""
    return _count_embedding_input(value, estimate_text_tokens)


def _count_embedding_input(value: Any, count: Callable[[str], int]) -> int:
    if isinstance(value, str):
        return count(value)
    if isinstance(value, Sequence):
        total = 0
        for item in value:
            if isinstance(item, str):
                total += count(item)
            elif isinstance(item, int):
                total += 1
            elif isinstance(item, Sequence):
                total += len(item)
        return total
    return 0


class TokenCounter:
    """Counts prompt tokens with a ``count(text) -> int`` function.

    ``TokenCounter()`` is the heuristic (4 characters per token, the fastest);
    ``TokenCounter(fn)`` uses any exact counter; ``TokenCounter.tiktoken(encoding)``
    uses tiktoken's BPE when that package is installed. Each message adds
    `per_message` tokens of framing, as OpenAI's chat format does.
    """

    __slots__ = ("count", "name", "per_message")

    def __init__(
        self,
        count: Callable[[str], int] | None = None,
        *,
        per_message: int = _PER_MESSAGE,
        name: str | None = None,
    ) -> None:
        self.count: Callable[[str], int] | None = count
        self.per_message = per_message
        self.name = name or ("heuristic" if count is None else getattr(count, "__name__", "fn"))

    @classmethod
    def tiktoken(cls, encoding: str = "o200k_base") -> TokenCounter:
        """An exact counter for OpenAI models. Raises ImportError with a hint when
        tiktoken is not installed (it is not a dependency of interlock)."""
        try:
            tiktoken: Any = importlib.import_module("tiktoken")
        except ImportError:
            raise ImportError(
                "TokenCounter.tiktoken() needs the 'tiktoken' package: pip install tiktoken"
            ) from None
        enc = tiktoken.get_encoding(encoding)

        def count(text: str) -> int:
            return len(enc.encode(text, disallowed_special=()))

        return cls(count, name=f"tiktoken:{encoding}")

    def messages(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Tokens in a chat prompt. Raises TypeError naming the first message that is
        not a mapping."""
        # hot path: one walk for both ways of counting, in this frame (it runs for every
        # request); with no `count`, characters are summed and divided once.
        count = self.count
        total = 0
        for m in messages:
            # `type(...) is` first: isinstance against an ABC costs more than the rest.
            # (No `enumerate`: the index is looked up only for the error.)
            if type(m) is not dict:
                _check_message(messages, m)
            content = m.get("content")
            if type(content) is str:
                total += len(content) if count is None else count(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, Mapping):
                        text = part.get("text")
                        if isinstance(text, str):
                            total += len(text) if count is None else count(text)
        if count is None:
            total = (total + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN
        return total + self.per_message * len(messages)

    def embedding_input(self, value: Any) -> int:
        return _count_embedding_input(value, self.count or estimate_text_tokens)

    def __repr__(self) -> str:
        return f"TokenCounter({self.name})"


_HEURISTIC = TokenCounter()
