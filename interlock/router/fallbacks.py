"""Fallback chains: which groups a call moves through, and in what order.

Three maps, each keyed by group or ``"*"`` (the default for groups without an entry):
`fallbacks` when a group is exhausted by deployment failures, `context_window` when a
deployment says the prompt does not fit, `content_policy` when it refuses the content.
The config rejects cycles; `max_depth` bounds the groups one call may move through
after the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from interlock.config import expand_wildcard

__all__ = ["FallbackTable"]


class FallbackTable:
    """Precomputed chains (tuples), so choosing the next group costs a dict lookup."""

    __slots__ = ("chains", "content_policy", "context_window", "max_depth")

    def __init__(
        self,
        groups: Iterable[str],
        fallbacks: Mapping[str, Sequence[str]],
        *,
        context_window: Mapping[str, Sequence[str]] | None = None,
        content_policy: Mapping[str, Sequence[str]] | None = None,
        max_depth: int = 3,
    ) -> None:
        names = tuple(groups)
        self.max_depth = max_depth
        graph = expand_wildcard(fallbacks, names)
        self.chains = {g: _flatten(g, graph, max_depth) for g in names}
        """Group -> the group then its fallbacks, depth-first, each once."""
        self.context_window = expand_wildcard(context_window or {}, names)
        self.content_policy = expand_wildcard(content_policy or {}, names)

    def chain(self, group: str) -> tuple[str, ...]:
        return self.chains[group]

    def special(self, kind: str, group: str) -> tuple[str, ...]:
        """The context-window or content-policy fallbacks of `group`."""
        table = self.context_window if kind == "context_window" else self.content_policy
        return table.get(group, ())

    def __repr__(self) -> str:
        return f"<FallbackTable groups={len(self.chains)} max_depth={self.max_depth}>"


def _flatten(group: str, graph: Mapping[str, Sequence[str]], max_depth: int) -> tuple[str, ...]:
    """`group`, then its fallbacks depth-first, each once, at most `max_depth` of them.
    An explicit stack (children pushed in reverse, so the first is walked first), so a
    chain of any length needs no recursion."""
    out: list[str] = []
    seen: set[str] = set()
    todo = [group]
    while todo and len(out) <= max_depth:
        g = todo.pop()
        if g not in seen:
            seen.add(g)
            out.append(g)
            todo.extend(reversed(graph.get(g, ())))
    return tuple(out)
