"""Rendering any scenario result (a dataclass) as text tables and as JSON.

A result's scalar fields print as ``name  value`` lines; each field holding a
sequence of dataclasses prints as a table with one column per field. Nested
dataclasses are shown under their field name. JSON follows the same shape
(`dataclasses.asdict`), with NaN and infinities written as null so that any JSON
parser reads the file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_value", "render", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON types: dataclasses become objects, NaN/inf become null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def format_value(value: Any) -> str:
    """A short human form: thousands separators, 3-4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        a = abs(value)
        if a >= 1000:
            return f"{value:,.0f}"
        if a >= 100:
            return f"{value:.1f}"
        if a == 0:
            return "0"
        if a >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _is_rows(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(dataclasses.is_dataclass(v) and not isinstance(v, type) for v in value)
    )


def _table(rows: Sequence[Any], indent: str) -> list[str]:
    names: list[str] = []
    for row in rows:
        for f in dataclasses.fields(row):
            if f.name not in names and not _is_rows(getattr(row, f.name)):
                names.append(f.name)
    cells = [[format_value(getattr(row, n, None)) for n in names] for row in rows]
    widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]

    def line(parts: Sequence[str]) -> str:
        # Text left, numbers right, as a reader scans them.
        out = []
        for i, p in enumerate(parts):
            numeric = p[:1].isdigit() or (p[:1] in "-." and p[1:2].isdigit())
            out.append(p.rjust(widths[i]) if numeric else p.ljust(widths[i]))
        return (indent + "  ".join(out)).rstrip()

    return [line(names), indent + "  ".join("-" * w for w in widths), *map(line, cells)]


def render(result: Any, indent: str = "  ") -> str:
    """A result dataclass as aligned text (anything else as its `str`)."""
    if not (dataclasses.is_dataclass(result) and not isinstance(result, type)):
        return indent + str(result)
    scalars: list[tuple[str, str]] = []
    blocks: list[str] = []
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if _is_rows(value):
            blocks.append(f"{indent}{f.name}:")
            blocks.extend(_table(value, indent + "  "))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            blocks.append(f"{indent}{f.name}:")
            blocks.append(render(value, indent + "  "))
        elif f.name != "headline":
            scalars.append((f.name, format_value(value)))
    width = max((len(k) for k, _ in scalars), default=0)
    lines = [f"{indent}{k.ljust(width)}  {v}" for k, v in scalars]
    return "\n".join(lines + blocks)
