"""Where a configuration comes from: a mapping, or a JSON or YAML file; secret
references inside it; and the line each field sits on, for error messages.

A file is read once. References (``os.environ/NAME`` and ``${NAME}``) are resolved
when the source is read, so a missing variable fails at start-up, naming the
variable and the field, never the value. Line numbers are worked out only when an
error is reported (composing the YAML node tree again), so a valid config pays
nothing for them. This module imports only `errors`, so `config` can use it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from interlock.errors import ConfigError, join_path

__all__ = [
    "ConfigDocument",
    "line_map",
    "read_config",
    "resolve_references",
]

Format = Literal["json", "yaml", "mapping"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ENV_PREFIX = "os.environ/"
# ``$${`` is a literal ``${``; ``${NAME}`` and ``${NAME:-default}`` are references.
_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_BODY = re.compile(rf"^(?P<name>{_NAME})(?::-(?P<default>.*))?$", re.S)
_ENV_NAME = re.compile(rf"^{_NAME}$")


@dataclass(frozen=True, slots=True)
class ConfigDocument:
    """A config source read once: its data (references resolved), and where it came
    from, to put line numbers on the errors it leads to."""

    data: dict[str, Any]
    where: str = ""
    """The file's path as given; empty for a mapping."""
    format: Format = "mapping"
    text: str = field(default="", repr=False)

    def locate(self, exc: ConfigError) -> ConfigError:
        """`exc` with ``(file, line N)`` after each problem found in the file (`exc`
        itself when there is nothing to add). Raise the result outside the ``except``
        block that caught `exc`, so no exception holding input values is chained."""
        if self.format == "mapping" or not exc.fields:
            return exc
        lines = line_map(self.text)
        fields = []
        for field_path, problem in exc.fields:
            path = field_path or self.where  # a problem with the whole document
            line = _line_of(field_path, lines) if field_path else None
            fields.append((path, f"{problem} ({self.where}, line {line})" if line else problem))
        return ConfigError(fields)


def read_config(
    source: object,
    *,
    env: Mapping[str, str] | None = None,
    what: str = "a RouterConfig",
    resolve: bool = True,
) -> ConfigDocument:
    """Read a mapping, or the path of a JSON or YAML file holding one, and resolve its
    secret references against `env` (default: ``os.environ``) unless `resolve` is
    false."""
    if isinstance(source, Mapping):
        doc = ConfigDocument(dict(source))
    elif isinstance(source, str | os.PathLike):
        doc = _read_file(Path(source), str(source))
    else:
        problem = f"must be a mapping, {what} or a JSON or YAML file's path"
        raise ConfigError([("", f"{problem}, not a {_kind(source)}")])
    keys = [k for k in doc.data if not isinstance(k, str)]
    if keys:
        # The key itself is not shown: a config may hold secrets.
        raise ConfigError([("", f"keys must be field names (strings), not a {_kind(keys[0])}")])
    if not resolve:
        return doc
    try:
        data = resolve_references(doc.data, os.environ if env is None else env)
    except ConfigError as exc:
        error = doc.locate(exc)
    else:
        return ConfigDocument(data, doc.where, doc.format, doc.text)
    raise error


def _kind(value: object) -> str:
    return type(value).__name__


def _read_file(path: Path, where: str) -> ConfigDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    except ValueError:  # not UTF-8, or a NUL in the path
        problem = "cannot be read as UTF-8 text"
    else:
        problem = ""
    if problem:
        raise ConfigError([(where, problem)])
    fmt = _format_of(path, text)
    data = _parse_yaml(text, where) if fmt == "yaml" else _parse_json(text, where)
    if not isinstance(data, dict):
        kind = "JSON object" if fmt == "json" else "YAML mapping"
        raise ConfigError([(where, f"must hold a {kind} at the top level")])
    return ConfigDocument(data, where, fmt, text)


def _format_of(path: Path, text: str) -> Format:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json" or text.lstrip().startswith(("{", "[")):
        return "json"
    return "yaml"


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    except RecursionError:
        problem = "nested too deeply"
    raise ConfigError([(where, problem)])


def _parse_yaml(text: str, where: str) -> Any:
    if _module_missing("yaml"):  # installed without its dependencies
        raise ConfigError([(where, "reading YAML needs PyYAML: pip install PyYAML")])
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # Not str(exc): its excerpt of the file could show a secret.
        mark = exc.problem_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = f"not valid YAML ({at}{exc.problem or exc.context or 'parse error'})"
    except yaml.YAMLError:
        problem = "not valid YAML"
    except RecursionError:
        problem = "nested too deeply"
    raise ConfigError([(where, problem)])


def _module_missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None
        return True


_LOADER: type[Any] | None = None


def _loader() -> type[Any]:
    """PyYAML's safe loader (the C one when built with libyaml) refusing a key given
    twice in one mapping: PyYAML would keep the last one silently."""
    global _LOADER
    if _LOADER is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class _Loader(base):  # type: ignore[misc,valid-type]
            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                seen: set[str] = set()
                for key_node, _ in node.value:
                    if not isinstance(key_node, yaml.ScalarNode):
                        continue
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"key {key_node.value!r} appears twice in one mapping",
                            key_node.start_mark,
                        )
                    seen.add(key_node.value)
                return super().construct_mapping(node, deep=deep)

        _LOADER = _Loader
    return _LOADER


# --- secret references ------------------------------------------------------------


def resolve_references(data: Any, env: Mapping[str, str], path: str = "") -> Any:
    """A copy of `data` with every string value's references replaced from `env`:
    a whole value ``os.environ/NAME`` (LiteLLM's form), and ``${NAME}`` or
    ``${NAME:-default}`` anywhere in a value; ``$${`` stands for a literal ``${``.
    Keys are left as they are; a resolved value is not resolved again. A missing
    variable or a malformed reference is a ConfigError naming the field (and the
    variable), never a value."""
    problems: list[tuple[str, str]] = []
    try:
        out = _resolve(data, env, path, problems)
    except RecursionError:  # a mapping that holds itself (a YAML alias can make one)
        problems = [(path, "nested too deeply, or holds itself")]
    if problems:
        raise ConfigError(problems)
    return out


def _resolve(value: Any, env: Mapping[str, str], path: str, problems: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        if "$" not in value and not value.startswith(_ENV_PREFIX):
            return value
        return _resolve_string(value, env, path, problems)
    if isinstance(value, Mapping):
        return {k: _resolve(v, env, join_path(path, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(v, env, join_path(path, f"[{i}]"), problems) for i, v in enumerate(value)]
    return value


def _resolve_string(
    value: str, env: Mapping[str, str], path: str, problems: list[tuple[str, str]]
) -> str:
    if value.startswith(_ENV_PREFIX):
        name = value[len(_ENV_PREFIX) :]
        if not _ENV_NAME.match(name):
            problems.append((path, "os.environ/ must be followed by a variable name only"))
            return value
        if name not in env:
            problems.append((path, f"environment variable {name} is not set"))
            return value
        return env[name]

    def substitute(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        body = m.group("body")
        parsed = _BODY.match(body) if body is not None else None
        if parsed is None:
            problems.append(
                (path, "malformed reference: write ${NAME} or ${NAME:-default} ($${ for a '${')")
            )
            return ""
        name, default = parsed.group("name"), parsed.group("default")
        found = env.get(name)
        if found is None or (found == "" and default is not None):
            if default is not None:
                return default
            problems.append((path, f"environment variable {name} is not set"))
            return ""
        return found

    return _REFERENCE.sub(substitute, value)


# --- line numbers -----------------------------------------------------------------


def line_map(text: str) -> dict[str, int]:
    """Field path (``deployments[2].rpm``) -> 1-based line, for a YAML or JSON text; empty
    when the text cannot be composed as YAML (JSON is read as YAML for this)."""
    try:
        import yaml

        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception:  # best effort: the errors are reported without lines
        return {}
    lines: dict[str, int] = {}
    todo: list[tuple[str, Any]] = [("", root)]
    seen: set[int] = set()  # an alias can make a node its own descendant
    while todo:
        path, node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    sub = join_path(path, str(key.value))
                    lines.setdefault(sub, key.start_mark.line + 1)
                    todo.append((sub, value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = join_path(path, f"[{i}]")
                lines.setdefault(sub, item.start_mark.line + 1)
                todo.append((sub, item))
    return lines


_PARENT = re.compile(r"(\[\d+\]|\.[^.\[]*)$")


def _line_of(path: str, lines: Mapping[str, int]) -> int | None:
    """The line of `path`, or of its nearest enclosing field that is in the file (a
    missing field is reported where its parent is)."""
    while path:
        if path in lines:
            return lines[path]
        parent = _PARENT.sub("", path)
        if parent == path:
            return None
        path = parent
    return None
