"""`interlock/cache/key.py`: `cache_key`, a stable hash of what determines the answer."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from interlock.cache import cache_key

MSGS = [{"role": "user", "content": "hi", "name": "u1"}]


def key(params: dict[str, Any] | None = None, **kw: Any) -> str | None:
    args: dict[str, Any] = {"namespace": "ns", "kind": "chat", "group": "g", "payload": MSGS}
    args.update(kw)
    return cache_key(args["namespace"], args["kind"], args["group"], args["payload"], params or {})


# --- keys ---------------------------------------------------------------------------


def test_key_ignores_dict_order_and_non_answer_params() -> None:
    reordered = [{"name": "u1", "content": "hi", "role": "user"}]
    base = key({"temperature": 0.2, "max_tokens": 10})
    assert base is not None
    assert base.startswith("ns:v1:chat:")
    assert key({"max_tokens": 10, "temperature": 0.2}, payload=reordered) == base
    ignored = {"user": "bob", "metadata": {"a": "b"}, "stream": True, "stream_options": {}}
    assert key({"temperature": 0.2, "max_tokens": 10, **ignored}) == base


@pytest.mark.parametrize(
    "change",
    [
        {"params": {"temperature": 0.3, "max_tokens": 10}},
        {"params": {"temperature": 0.2, "max_tokens": 11}},
        {"params": {"temperature": 0.2, "max_tokens": 10, "seed": 1}},
        {"params": {"temperature": 0.2, "max_tokens": 10, "response_format": {"type": "x"}}},
        {"group": "other"},
        {"kind": "embedding"},
        {"namespace": "ns2"},
        {"payload": [{"role": "user", "content": "hi!", "name": "u1"}]},
        {"payload": [{"role": "system", "content": "hi", "name": "u1"}]},
    ],
)
def test_key_changes_with_what_changes_the_answer(change: dict[str, Any]) -> None:
    base = key({"temperature": 0.2, "max_tokens": 10})
    params = change.pop("params", {"temperature": 0.2, "max_tokens": 10})
    assert key(params, **change) != base


def test_key_normalizes_equivalent_spellings() -> None:
    assert key({"temperature": 0}) == key({"temperature": 0.0})
    assert key({"stop": "END"}) == key({"stop": ["END"]})
    assert key({"seed": 1}) != key({"seed": True})
    assert key(payload=(("a", 1),)) == key(payload=[["a", 1]])


def test_key_of_unserializable_request_is_none() -> None:
    assert key({"temperature": object()}) is None


def test_key_is_stable_across_processes() -> None:
    code = (
        "from interlock.cache import cache_key;"
        "print(cache_key('ns', 'chat', 'g', [{'role': 'user', 'content': 'hi'}], {'n': 2}))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("12345",)  # this process runs with another (random) seed
    }
    assert outs == {cache_key("ns", "chat", "g", [{"role": "user", "content": "hi"}], {"n": 2})}
