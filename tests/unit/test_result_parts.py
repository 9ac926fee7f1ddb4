"""`interlock/result_parts.py`: `Usage` (its details and defaults), and numbers from a
provider validated where they enter: `Usage.from_dict` and `token_count` take counts
(integers >= 0) and refuse anything else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.result_parts import Usage
from interlock.types import MAX_COUNT, ChatCompletion, InvalidCount, token_count
from tests.unit.test_types import USAGE


def test_counts_are_taken_as_sent() -> None:
    assert Usage.from_dict(
        {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9}
    ) == Usage(3, 4, 9)
    assert Usage.from_dict({"prompt_tokens": 3, "completion_tokens": 4}) == Usage(3, 4, 7)
    assert Usage.from_dict({"prompt_tokens": 3}) == Usage(3, 0, 3)
    assert Usage.from_dict({"prompt_tokens": 3.0, "completion_tokens": 4}) == Usage(3, 4, 7)
    assert token_count(None, "x") == 0


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"prompt_tokens": "10", "completion_tokens": 5}, "usage.prompt_tokens"),
        ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": "15"}, "usage.total_tokens"),
        ({"prompt_tokens": -1000, "completion_tokens": 5}, "usage.prompt_tokens"),
        ({"prompt_tokens": 1, "completion_tokens": -5}, "usage.completion_tokens"),
        ({"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": -1}, "usage.total_tokens"),
        ({"prompt_tokens": 1.5}, "usage.prompt_tokens"),
        ({"prompt_tokens": True}, "usage.prompt_tokens"),
        (
            {"prompt_tokens": 1.2345678901234568e29},
            "usage.prompt_tokens",
        ),  # a huge int, as orjson reads it
        ({"prompt_tokens": MAX_COUNT}, "usage.prompt_tokens"),
        ({"prompt_tokens": [1]}, "usage.prompt_tokens"),
    ],
)
def test_anything_but_a_count_is_refused_by_name(usage: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidCount) as exc:
        Usage.from_dict(usage)
    assert str(exc.value) == f"{field} is not a count (an integer >= 0)"
    assert isinstance(exc.value, ValueError)  # the transports' parse errors include it


def test_a_completion_with_bad_usage_is_refused_as_a_whole() -> None:
    body = {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": "sk-x"}}
    with pytest.raises(InvalidCount) as exc:
        ChatCompletion.from_dict(body)
    assert "sk-x" not in str(exc.value)


counts = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)


# max_examples=500, derandomize=True: every JSON-shaped value (and bools, NaN, huge
# numbers) in each field; a fixed seed keeps the run the same everywhere (< 1 s).
@settings(max_examples=500, derandomize=True, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens"]), counts)
)
def test_usage_is_counts_or_invalid_count(usage: dict[str, Any]) -> None:
    try:
        u = Usage.from_dict(usage)
    except InvalidCount:
        return
    for n in (u.prompt_tokens, u.completion_tokens, u.total_tokens):
        assert type(n) is int
        assert 0 <= n < 2 * MAX_COUNT


@pytest.mark.parametrize(
    "details",
    [
        {"prompt_tokens_details": {"cached_tokens": "80"}},
        {"prompt_tokens_details": {"cached_tokens": -1}},
        {"completion_tokens_details": {"reasoning_tokens": 1.5}},
    ],
)
def test_detail_counts_are_validated_too(details: dict[str, Any]) -> None:
    # Cached reads are priced apart, so a bad detail count would corrupt spend too.
    with pytest.raises(InvalidCount, match="details"):
        Usage.from_dict({"prompt_tokens": 100, "completion_tokens": 10, **details})


def test_usage_details_and_defaults() -> None:
    u = Usage.from_dict(USAGE)
    assert u.prompt_tokens_details is not None
    assert u.prompt_tokens_details.extra == {"audio_tokens": 0}
    assert u.to_dict() == USAGE
    plain = Usage.from_dict({"prompt_tokens": 3, "completion_tokens": 4})
    assert (plain.total_tokens, plain.cached_tokens, plain.cache_creation_tokens) == (7, 0, 0)
    assert plain.to_dict() == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    # Anthropic-style cache writes, under the openai SDK's name for them.
    written = Usage.from_dict(
        {**plain.to_dict(), "prompt_tokens_details": {"cache_write_tokens": 2}}
    )
    assert written.cache_creation_tokens == 2
    assert written.to_dict()["prompt_tokens_details"] == {
        "cached_tokens": 0,
        "cache_write_tokens": 2,
    }
