"""The base of every configuration model: frozen, strict, and failing with ConfigError.

A problem is reported as a `ConfigError` whose lines name the field and what is wrong
with it (``deployments[2].rpm: must be > 0``); input values are never echoed, so a
key cannot leak through an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from interlock.errors import ConfigError, join_path

__all__ = ["ConfigModel", "non_string_key", "validation_problems"]


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(path, problem)`` for each error, never the input value. A nested model's
    ConfigError is expanded under the path where it sits."""
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_input=False):
        loc = ""
        for part in err["loc"]:
            loc = join_path(loc, f"[{part}]" if isinstance(part, int) else str(part))
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):
            out.extend((join_path(loc, path), problem) for path, problem in inner.fields)
        else:
            out.append((loc, _describe(err)))
    # pydantic counts only the items that validated, so a list whose only items are
    # invalid is also reported as too short; the item errors already say what is wrong.
    return [
        (path, problem)
        for path, problem in out
        if not (
            problem.startswith(_TOO_SHORT) and any(p != path and p.startswith(path) for p, _ in out)
        )
    ]


_TOO_SHORT = "too short:"


def _describe(err: ErrorDetails) -> str:
    if err["type"] == "too_short":
        return f"{_TOO_SHORT} needs at least {(err.get('ctx') or {}).get('min_length', 1)} item(s)"
    ctx = err.get("ctx") or {}
    kind = err["type"]
    simple = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "missing": "is required",
        "extra_forbidden": "is not a known field",
        "string_too_short": "must not be empty",
    }
    if kind in simple:
        return simple[kind].format(**ctx)
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


class ConfigModel(BaseModel):
    """Frozen, strict about unknown fields, and raising ConfigError instead of pydantic's
    ValidationError (whose text would include the offending input, keys included)."""

    # allow_inf_nan: an infinite or NaN number of seconds (or anything else) is never
    # meant, and would fail later, in every call, instead of here.
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )
    _where: ClassVar[str | None] = None
    """Where the model sits, for error lines; None: the class name."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = validation_problems(exc)
        except TypeError:
            # pydantic builds a nested model by calling its __init__ with the mapping
            # it was given as keywords, so a key that is not a string fails there, as
            # a bare TypeError, before any validator runs.
            where = non_string_key(data)
            if where is None:
                raise
            problems = [(where, "keys must be strings")]
        else:
            return
        # Raised outside the except block so the ValidationError, which holds the
        # input values (keys included), is not kept as __context__.
        raise ConfigError(problems, type(self).__name__ if self._where is None else self._where)


def non_string_key(data: object) -> str | None:
    """The path of the first mapping inside `data` with a key that is not a string
    (``""`` for `data` itself), or None. Iterative, and safe on cyclic input."""
    todo: list[tuple[str, object]] = [("", data)]
    seen: set[int] = set()
    while todo:
        path, value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Mapping):
            if not all(isinstance(k, str) for k in value):
                return path
            todo.extend((join_path(path, k), v) for k, v in value.items())
        elif isinstance(value, list | tuple):
            todo.extend((join_path(path, f"[{i}]"), v) for i, v in enumerate(value))
    return None
