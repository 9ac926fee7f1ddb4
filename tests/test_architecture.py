"""Guards on the shape of the whole package, read from the source (nothing is imported).

* No import circles between modules of interlock/.
* Every module sits in a layer (LAYERS below) and imports only from its own layer or lower ones.
* No function is too branchy or too long to review, unless it says why it must stay whole.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
from radon.complexity import cc_visit_ast

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "interlock"
PACKAGE_DIR = ROOT / PACKAGE

# Bottom to top: a module may import from its own layer and the layers below it.
# "pkg.*" is the package pkg and every module under it; an exact name beats a pattern and a
# longer pattern beats a shorter one. A module that matches nothing fails test_layers, so a new
# module is placed here deliberately.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # 0
    (
        "values & records",
        (
            "interlock.errors",
            "interlock.clock",
            "interlock.deadline",
            "interlock.running",
            "interlock.models",
            "interlock.policies",
            "interlock.config",
            "interlock.types",
            "interlock.responses_types",
            "interlock.endpoint_types",
            "interlock.result_parts",
            "interlock.request",
            "interlock.failures",
            "interlock.presets",
            "interlock.sources",
            "interlock.litellm_format",
            "interlock.litellm_config",
            "interlock.prices",
            "interlock.records.*",
        ),
    ),
    # 1
    (
        "rules",
        (
            "interlock.health.*",
            "interlock.limits.*",
            "interlock.strategies.*",
            "interlock.cache.*",
            "interlock.observability.*",
        ),
    ),
    # 2
    ("transports", ("interlock.providers.*",)),
    # 3
    ("pipeline", ("interlock.router.*",)),
    # 4
    (
        "facade",
        (
            "interlock",
            "interlock.router",
            "interlock.router.constructors",
            "interlock.router.diff",
            "interlock.router.router",
            "interlock.router.responses_api",
            "interlock.router.runtime",
            "interlock.router.wiring",
            "interlock.router.endpoint_methods",
            "interlock.router.health_check",
            "interlock.router.introspection",
        ),
    ),
    # 5
    (
        "tools",
        (
            "interlock.cli",
            "interlock.demo",
            "interlock.__main__",
            "interlock.testing.*",
            "interlock.bench.*",
        ),
    ),
)

# The root interlock/__init__.py is the public facade: it re-exports everything, so it runs
# whenever any interlock.x is imported from outside. Counting that implicit run as an edge would
# put every module in one circle with the facade; only an explicit `from interlock import ...`
# makes an edge to it.
IMPLICIT_INIT_EXCLUDED = frozenset({PACKAGE})

MAX_COMPLEXITY = 20  # the upper bound of radon's grade C
MAX_CODE_LINES = 80
EXEMPTION = "hot path:"


# --- the import graph ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    # The module the statement names, when `imported` is a package __init__ that importing it
    # runs; empty when the statement names `imported` itself.
    via: str = ""

    def describe(self) -> str:
        how = f" (runs its __init__ by importing {self.via})" if self.via else ""
        return (
            f"{module_path(self.importer)}:{self.line} {self.importer} imports {self.imported}{how}"
        )


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_files() -> dict[str, Path]:
    files = sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    return {module_name(path): path for path in files}


MODULES = module_files()


def module_path(name: str) -> str:
    return MODULES[name].relative_to(ROOT).as_posix()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def ancestors(name: str) -> list[str]:
    """The packages above `name`, outermost first (not `name` itself)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def known_module(dotted: str) -> str | None:
    """The longest prefix of `dotted` that is a module of the package (None if outside it)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def resolve_from(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    # A package's own __init__ is the anchor of its relative imports; a module's is its package.
    anchor = importer.split(".") if is_package(importer) else importer.split(".")[:-1]
    base = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def named_modules(importer: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules of the package that one import statement names."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            found = known_module(alias.name)
            if found:
                yield found
        return
    source = resolve_from(importer, node)
    for alias in node.names:
        # `from x import y` imports the module x.y when there is one, else a name from x.
        found = known_module(f"{source}.{alias.name}") if alias.name != "*" else None
        found = found or known_module(source)
        if found:
            yield found


def imports_of(importer: str) -> Iterator[Edge]:
    """Every import in the module: at module level, in functions and under TYPE_CHECKING."""
    tree = ast.parse(MODULES[importer].read_text(encoding="utf-8"))
    # A module already runs inside its own packages, so importing a sibling runs nothing new.
    own = {*ancestors(importer), importer}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for target in named_modules(importer, node):
            if target != importer:
                yield Edge(importer, target, node.lineno)
            for package in ancestors(target):
                if package not in own and package not in IMPLICIT_INIT_EXCLUDED:
                    yield Edge(importer, package, node.lineno, via=target)


def import_graph() -> dict[str, dict[str, Edge]]:
    """importer -> imported -> the first statement that makes the edge."""
    graph: dict[str, dict[str, Edge]] = {name: {} for name in MODULES}
    for importer in MODULES:
        for edge in imports_of(importer):
            graph[importer].setdefault(edge.imported, edge)
    return graph


def strongly_connected(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the import chains may be deeper than the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def shortest_cycle(graph: dict[str, dict[str, Edge]], component: list[str]) -> list[str]:
    """A shortest circle inside one strongly connected component, as a path back to its start."""
    members = set(component)
    best: list[str] = []
    for start in component:
        previous: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if start in graph[node]:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                cycle = [*reversed(path), start]
                if not best or len(cycle) < len(best):
                    best = cycle
                break
            for succ in sorted(graph[node]):
                if succ in members and succ not in previous and succ != start:
                    previous[succ] = node
                    queue.append(succ)
    return best


def circles(graph: dict[str, dict[str, Edge]]) -> Iterator[list[str]]:
    """Circles that between them cover every strongly connected component.

    One shortest circle per component; its first edge is then set aside and the rest searched
    again, so a big tangle is reported as the few circles that make it rather than as one list
    of everything in it.
    """
    remaining = {name: dict(edges) for name, edges in graph.items()}
    while True:
        tangles = [
            component
            for component in strongly_connected(remaining)
            if len(component) > 1 or component[0] in remaining[component[0]]
        ]
        if not tangles:
            return
        for component in tangles:
            cycle = shortest_cycle(remaining, component)
            yield cycle
            del remaining[cycle[0]][cycle[1]]


def test_no_import_circles() -> None:
    graph = import_graph()
    found = []
    for cycle in circles(graph):
        steps = [graph[a][b].describe() for a, b in pairwise(cycle)]
        found.append(" -> ".join(cycle) + "".join(f"\n      {step}" for step in steps))
    if found:
        pytest.fail("import circles in interlock/:\n  " + "\n  ".join(found), pytrace=False)


# --- layers ---------------------------------------------------------------------------------------


def layer_of(name: str) -> int | None:
    best: tuple[int, int] | None = None  # (specificity, layer)
    for layer, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern == name:
                specificity = 1_000  # an exact name beats every pattern
            elif pattern.endswith(".*") and (name == pattern[:-2] or name.startswith(pattern[:-1])):
                specificity = pattern.count(".")
            else:
                continue
            if best is None or specificity > best[0]:
                best = (specificity, layer)
    return None if best is None else best[1]


def layer_label(layer: int) -> str:
    return f"layer {layer} ({LAYERS[layer][0]})"


def test_layers() -> None:
    problems = [
        f"{module_path(name)} ({name}) is in no layer: add it to LAYERS in this file"
        for name in MODULES
        if layer_of(name) is None
    ]
    for edges in import_graph().values():
        for edge in edges.values():
            low, high = layer_of(edge.importer), layer_of(edge.imported)
            if low is not None and high is not None and high > low:
                problems.append(
                    f"{edge.describe()}: {edge.importer} is in {layer_label(low)}, "
                    f"{edge.imported} in {layer_label(high)}"
                )
    if problems:
        pytest.fail(
            "layering (LAYERS in tests/test_architecture.py):\n  " + "\n  ".join(problems),
            pytrace=False,
        )


def test_layer_table_patterns_are_well_formed() -> None:
    # A pattern with a typo would silently place nothing; every exact name must exist, and a
    # pattern may name a package that is yet to be written (interlock.bench.*).
    for _, patterns in LAYERS:
        for pattern in patterns:
            assert pattern == PACKAGE or pattern.startswith(f"{PACKAGE}."), pattern
            if not pattern.endswith(".*"):
                assert pattern in MODULES, f"LAYERS names {pattern}, which is no module"


# --- function size --------------------------------------------------------------------------------

Function = ast.FunctionDef | ast.AsyncFunctionDef
COMMENT = re.compile(r"^\s*#")


def functions(scope: ast.AST, prefix: str = "") -> Iterator[tuple[str, Function]]:
    """Every def at any depth, with its qualified name (Class.method, outer.inner)."""
    for node in ast.iter_child_nodes(scope):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            qualname = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield qualname, node
            yield from functions(node, f"{qualname}.")
        else:
            yield from functions(node, prefix)


def body_statements(function: Function) -> list[ast.stmt]:
    body = function.body
    first = body[0]
    has_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    return body[1:] if has_docstring and len(body) > 1 else body


def code_lines(function: Function, lines: list[str]) -> int:
    """Lines of the body, less blank lines, comment-only lines and the docstring."""
    body = body_statements(function)
    start, end = body[0].lineno, function.end_lineno or body[-1].lineno
    return sum(1 for text in lines[start - 1 : end] if text.strip() and not COMMENT.match(text))


def is_exempt(function: Function, lines: list[str]) -> bool:
    """A `hot path:` comment right above the def (or its decorators) or first in its body."""
    top = min([function.lineno, *(d.lineno for d in function.decorator_list)])
    above = top - 2  # 0-based index of the line above
    while above >= 0 and COMMENT.match(lines[above]):
        if EXEMPTION in lines[above]:
            return True
        above -= 1
    # Between the def line and the first statement after the docstring: the signature, the
    # docstring and the comments that open the body.
    opening = lines[function.lineno - 1 : body_statements(function)[0].lineno - 1]
    return any(COMMENT.match(text) and EXEMPTION in text for text in opening)


def complexity(function: Function) -> int:
    # radon's own measure, taken for each def on its own: cc_visit of a whole file reports only
    # top-level functions and methods (nested defs hide in `closures`), and scores classes too,
    # which this rule does not limit.
    (block,) = cc_visit_ast(function)
    return int(block.complexity)


def test_functions_are_small() -> None:
    offenders = []
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for qualname, function in functions(ast.parse(source)):
            score, length = complexity(function), code_lines(function, lines)
            if score <= MAX_COMPLEXITY and length <= MAX_CODE_LINES:
                continue
            if is_exempt(function, lines):
                continue
            offenders.append(
                f"{module_path(name)}:{function.lineno} {qualname} "
                f"(complexity {score} / {length} lines)"
            )
    if offenders:
        pytest.fail(
            f"functions over complexity {MAX_COMPLEXITY} or {MAX_CODE_LINES} code lines; split"
            f" them, or put a `# {EXEMPTION} <why>` comment above the def:\n  "
            + "\n  ".join(offenders),
            pytrace=False,
        )
