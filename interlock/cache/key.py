"""Cache keys: a stable hash of what determines the answer.

The key covers the request kind, the group asked for (after aliases), the messages or
embedding input, and every provider parameter except those that cannot change the
answer: ``user`` (attribution), ``metadata`` (stored-completion tags), ``stream`` and
``stream_options`` (a cached response can be replayed as a stream). Deadlines and
tags are not parameters and are not part of it. Serialization uses orjson with sorted
keys, so ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` give the same key, in every
process (the hash is BLAKE2b, not Python's salted ``hash()``), which lets several
routers share entries through Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Set
from typing import Any

import orjson

__all__ = ["IGNORED_PARAMS", "cache_key"]

IGNORED_PARAMS: frozenset[str] = frozenset({"user", "metadata", "stream", "stream_options"})
"""Parameters that never change the answer and so are left out of the key."""

_FLOAT_PARAMS = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})
_VERSION = "v1"  # bump when the key scheme or the entry format changes


def _default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Set):
        return sorted(value, key=repr)
    if isinstance(value, (list, tuple)):
        return list(value)
    # Other sequences (a user's Sequence type) serialize like lists.
    if hasattr(value, "__len__") and hasattr(value, "__getitem__"):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _normalize(name: str, value: Any) -> Any:
    # Spellings the provider treats alike: temperature=0 and 0.0, stop="x" and ["x"].
    if name in _FLOAT_PARAMS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if name == "stop" and isinstance(value, str):
        return [value]
    return value


def cache_key(
    namespace: str, kind: str, group: str, payload: Any, params: Mapping[str, Any]
) -> str | None:
    """The key for a request, or None if it cannot be serialized (then it is not
    cached; the provider call reports the problem).

    `payload` is the chat messages or the embedding input; `params` the provider
    parameters as sent (``extra_body`` already merged in).
    """
    norm = {k: _normalize(k, v) for k, v in params.items() if k not in IGNORED_PARAMS}
    try:
        raw = orjson.dumps(
            [kind, group, payload, norm],
            default=_default,
            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
        )
    except TypeError:
        return None
    digest = hashlib.blake2b(raw, digest_size=20).hexdigest()
    return f"{namespace}:{_VERSION}:{kind}:{digest}"
