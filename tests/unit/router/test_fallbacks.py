"""`FallbackTable`: chains flattened depth-first, each group once, without recursion."""

from __future__ import annotations

import itertools
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.router.fallbacks import FallbackTable, _flatten


def reference_flatten(group: str, graph: dict[str, list[str]], max_depth: int) -> tuple[str, ...]:
    """The recursive walk `_flatten` replaced, as the reference it must match."""
    out: list[str] = []

    def walk(g: str) -> None:
        if g in out or len(out) > max_depth:
            return
        out.append(g)
        for fb in graph.get(g, ()):
            walk(fb)

    walk(group)
    return tuple(out[: max_depth + 1])


GROUPS = [f"g{i}" for i in range(7)]


# max_examples=300, derandomize=True: small graphs (cycles, diamonds, self-loops) and
# every depth bound up to past their size; a fixed seed keeps the run the same (< 1 s).
@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    st.dictionaries(st.sampled_from(GROUPS), st.lists(st.sampled_from(GROUPS), max_size=4)),
    st.sampled_from(GROUPS),
    st.integers(0, 8),
)
def test_flatten_matches_the_recursive_walk(
    graph: dict[str, list[str]], group: str, max_depth: int
) -> None:
    assert _flatten(group, graph, max_depth) == reference_flatten(group, graph, max_depth)


def test_a_chain_longer_than_the_recursion_limit() -> None:
    n = sys.getrecursionlimit() * 3
    names = [f"g{i}" for i in range(n)]
    table = FallbackTable(names, {a: [b] for a, b in itertools.pairwise(names)}, max_depth=n)
    assert table.chain("g0") == tuple(names)
    assert table.chain(names[-2]) == (names[-2], names[-1])
    assert len(FallbackTable(names, {"g0": names[1:]}, max_depth=3).chain("g0")) == 4
