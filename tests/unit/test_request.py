"""interlock.request: the request record, its id and the call parameters."""

from __future__ import annotations

import multiprocessing
import re
import sys

import pytest

from interlock.request import (
    CHAT_PARAM_NAMES,
    EMBEDDING_PARAM_NAMES,
    NO_METADATA,
    Request,
    new_request_id,
)

ID = re.compile(r"^[0-9a-f]{12}-[0-9a-f]+$")


def test_ids_are_a_process_prefix_and_a_counter() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert all(ID.match(i) for i in ids)
    assert len(set(ids)) == 1000
    assert len({i.split("-")[0] for i in ids}) == 1  # one prefix per process


def _child_id(queue: multiprocessing.Queue[str]) -> None:
    queue.put(new_request_id())


@pytest.mark.skipif(sys.platform == "win32", reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_request_id()  # the parent has given out ids before the fork
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    child = ctx.Process(target=_child_id, args=(queue,))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(timeout=30)
    mine = new_request_id()
    assert theirs.split("-")[0] != mine.split("-")[0]


def test_no_metadata_is_one_empty_read_only_mapping() -> None:
    assert len(NO_METADATA) == 0
    assert list(NO_METADATA) == []
    assert NO_METADATA.get("tenant") is None
    with pytest.raises(KeyError):
        NO_METADATA["tenant"]
    assert not hasattr(NO_METADATA, "__setitem__")
    assert Request("chat", "g").metadata is NO_METADATA


def test_each_request_gets_its_own_id_unless_the_caller_gives_one() -> None:
    a, b = Request("chat", "g"), Request("chat", "g")
    assert a.id != b.id
    assert Request("chat", "g", id="mine-1").id == "mine-1"


def test_estimated_tokens_add_input_and_output() -> None:
    assert Request("chat", "g", est_input_tokens=12, est_output_tokens=30).est_tokens == 42


def test_metadata_is_interlocks_own_keyword_not_a_provider_parameter() -> None:
    # OpenAI's `metadata` goes in extra_body (docs/observability.md).
    assert "metadata" not in CHAT_PARAM_NAMES
    assert {"temperature", "tools", "extra_body"} <= CHAT_PARAM_NAMES
    assert {"dimensions", "extra_body"} <= EMBEDDING_PARAM_NAMES
