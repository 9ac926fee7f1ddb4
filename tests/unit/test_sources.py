"""Config sources: YAML files next to JSON, line numbers on errors, secret references.

Every error names the field path (and, for a file, its line); no test value that
stands for a secret may appear in an error message, a repr or a traceback.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

from interlock import ConfigError, Router
from interlock.sources import line_map, read_config, resolve_references
from interlock.testing import FakeClock
from tests.unit.scripted_transport import MESSAGES, ScriptedTransport
from tests.unit.test_config import CONFIG, KEY, check_built_from_config

SECRET = "sk-test-9f8e7d6c5b4a3210"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(source: Any, **kw: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as exc:
        Router.from_config(source, **kw)
    assert exc.value.__context__ is None
    return exc.value.problems


# --- YAML ------------------------------------------------------------------------

YAML_CONFIG = f"""\
# the same router as tests.unit.test_config.CONFIG
deployments:
  - {{group: chat, model: m1, provider: fake, id: c1, rpm: 60}}
  - group: chat
    model: m2
    provider: fake
    id: c2
    api_key: {KEY}
  - {{group: backup, model: m3, provider: fake, id: b1}}
strategy: least-busy
fallbacks:
  chat: [backup]
aliases: {{gpt: chat}}
retry: {{max_attempts: 2, backoff_base: 0}}
health:
  allowed_fails: 5
  cooldown: 7
timeout: 9
expected_output_tokens: 12
"""


@pytest.mark.parametrize("name", ["router.yaml", "router.yml", "router.conf"])
async def test_a_yaml_file_builds_the_same_router_as_json(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, YAML_CONFIG)
    t = ScriptedTransport()
    router = Router.from_config(path, transports={"fake": t}, clock=FakeClock(), seed=1)
    check_built_from_config(router)
    assert router.config == Router.from_config(CONFIG, transports={"fake": t}).config
    r = await router.acompletion("gpt", MESSAGES)
    assert r.group == "chat"


def test_yaml_validation_errors_name_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "router.yaml",
        """\
deployments:
  - group: chat
    model: m1
  - group: chat
    model: m2
    rpm: 0
    api_kye: x
  - model: m3
retry:
  backoff_base: -1
""",
    )
    assert problems_of(path) == (
        f"deployments[1].rpm: must be > 0 ({path}, line 6)",
        f"deployments[1].api_kye: is not a known field ({path}, line 7)",
        # A missing field is reported where its mapping starts.
        f"deployments[2].group: is required ({path}, line 8)",
        f"retry.backoff_base: must be >= 0.0 ({path}, line 10)",
    )


def test_cross_field_and_build_errors_name_the_line_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "router.yaml",
        "deployments:\n  - {group: a, model: m}\nfallbacks:\n  a: [nope]\n",
    )
    assert problems_of(path) == (f"fallbacks.a[0]: names unknown group 'nope' ({path}, line 4)",)
    path = write(tmp_path, "s.yaml", "deployments:\n  - {group: a, model: m}\nstrategy: zigzag\n")
    (line,) = problems_of(path)
    assert line.startswith("strategy: unknown strategy 'zigzag'")
    assert line.endswith(f"({path}, line 3)")


def test_json_validation_errors_name_the_line(tmp_path: Path) -> None:
    doc = {"deployments": [{"group": "a", "model": "m"}, {"group": "a", "model": "m", "tpm": 0}]}
    path = write(tmp_path, "router.json", json.dumps(doc, indent=2))
    assert problems_of(path) == (f"deployments[1].tpm: must be > 0 ({path}, line 10)",)


def test_a_mapping_has_no_lines() -> None:
    assert problems_of({"deployments": [{"group": "a", "model": "m", "rpm": 0}]}) == (
        "deployments[0].rpm: must be > 0",
    )


def test_invalid_yaml_names_line_and_column_but_not_the_text(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", f"deployments:\n  - group: a\n   api_key: {SECRET}: x\n")
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: not valid YAML (line 3, column ")
    assert SECRET not in line


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    # PyYAML would keep the second silently: a limit or key written twice is a mistake.
    path = write(tmp_path, "dup.yaml", "deployments:\n  - group: a\n    model: m\n    group: b\n")
    assert problems_of(path) == (
        f"{path}: not valid YAML (line 4, column 5: key 'group' appears twice in one mapping)",
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [("", "YAML mapping"), ("- a\n- b\n", "YAML mapping"), ("just text\n", "YAML mapping")],
)
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, "x.yaml", text)
    assert problems_of(path) == (f"{path}: must hold a {kind} at the top level",)


def test_without_pyyaml_a_yaml_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "router.yaml", YAML_CONFIG)
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
    assert problems_of(path) == (f"{path}: reading YAML needs PyYAML: pip install PyYAML",)


def test_line_map_paths() -> None:
    lines = line_map("a:\n  b: [1,\n    2]\n  c:\n    - d: 1\n      e: 2\n")
    assert lines == {"a": 1, "a.b": 2, "a.b[0]": 2, "a.b[1]": 3, "a.c": 4, "a.c[0]": 5,
                     "a.c[0].d": 5, "a.c[0].e": 6}  # fmt: skip
    assert line_map("{not: [valid") == {}


# --- secret references -----------------------------------------------------------


def deployment(**fields: Any) -> dict[str, Any]:
    return {"group": "g", "model": "m", **fields}


def test_references_resolve_in_every_string_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KEY", SECRET)
    monkeypatch.setenv("T_HOST", "gw.internal")
    monkeypatch.setenv("T_REDIS_PW", "pw-1234567890")
    monkeypatch.delenv("T_UNSET", raising=False)
    router = Router.from_config(
        {
            "deployments": [
                deployment(
                    api_key="os.environ/T_KEY",
                    api_base="https://${T_HOST}:8443/v1",
                    headers={"x-gateway-key": "${T_KEY}", "x-lit": "$${T_KEY}"},
                    api_version="${T_UNSET:-2024-10-21}",
                )
            ],
            "shared": {"url": "redis://:${T_REDIS_PW}@127.0.0.1:6390/0"},
        }
    )
    (d,) = router.deployments
    assert d.api_key_value() == SECRET
    assert d.api_base == "https://gw.internal:8443/v1"
    assert d.headers == {"x-gateway-key": SECRET, "x-lit": "${T_KEY}"}
    assert d.api_version == "2024-10-21"
    assert router.config.shared is not None
    assert router.config.shared.url == "redis://:pw-1234567890@127.0.0.1:6390/0"
    for text in (repr(d), repr(router.config), str(router.config)):
        assert SECRET not in text
        assert "pw-1234567890" not in text


def test_a_missing_variable_names_the_variable_and_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("T_MISSING", raising=False)
    monkeypatch.setenv("T_PRESENT", SECRET)
    path = write(
        tmp_path,
        "router.yaml",
        "deployments:\n"
        "  - group: g\n"
        "    model: m\n"
        "    api_key: os.environ/T_MISSING\n"
        "    headers: {x-a: 'Bearer ${T_PRESENT}', x-b: '${T_MISSING}'}\n",
    )
    with pytest.raises(ConfigError) as exc:
        Router.from_config(path)
    assert exc.value.problems == (
        f"deployments[0].api_key: environment variable T_MISSING is not set ({path}, line 4)",
        f"deployments[0].headers.x-b: environment variable T_MISSING is not set ({path}, line 5)",
    )
    assert SECRET not in "".join(traceback.format_exception(exc.value))


def test_a_resolved_value_never_reaches_a_later_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KEY", SECRET)
    with pytest.raises(ConfigError) as exc:
        Router.from_config({"deployments": [deployment(api_key="${T_KEY}", rpm=-1)]})
    assert exc.value.problems == ("deployments[0].rpm: must be > 0",)
    assert SECRET not in "".join(traceback.format_exception(exc.value))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("os.environ/", "os.environ/ must be followed by a variable name only"),
        ("os.environ/A-B", "os.environ/ must be followed by a variable name only"),
        ("${}", "malformed reference: write ${NAME} or ${NAME:-default} ($${ for a '${')"),
        ("x${1A}", "malformed reference: write ${NAME} or ${NAME:-default} ($${ for a '${')"),
        ("${OPEN", "malformed reference: write ${NAME} or ${NAME:-default} ($${ for a '${')"),
    ],
)
def test_malformed_references(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        resolve_references({"a": [value]}, {})
    assert exc.value.problems == (f"a[0]: {problem}",)


def test_reference_rules() -> None:
    env = {"A": "1", "EMPTY": "", "LOOP": "${A}"}
    assert resolve_references(
        {
            "whole": "${A}",
            "inside": "x-${A}-${A}",
            "empty": "${EMPTY}",
            "default_if_empty": "${EMPTY:-d}",
            "default_if_unset": "${NOPE:-}",
            "not_again": "${LOOP}",  # a resolved value is not expanded again
            "bare_dollar": "$A and $ and $$",
            "escaped": "$${A}",
            "prefix_only_at_start": "see os.environ/A",
            "numbers": 5,
            "${A}": "keys stay",
        },
        env,
    ) == {
        "whole": "1",
        "inside": "x-1-1",
        "empty": "",
        "default_if_empty": "d",
        "default_if_unset": "",
        "not_again": "${A}",
        "bare_dollar": "$A and $ and $$",
        "escaped": "${A}",
        "prefix_only_at_start": "see os.environ/A",
        "numbers": 5,
        "${A}": "keys stay",
    }


def test_read_config_resolves_against_a_given_environment() -> None:
    doc = read_config({"deployments": [{"api_key": "os.environ/K"}]}, env={"K": "v"})
    assert doc.data == {"deployments": [{"api_key": "v"}]}
    raw = read_config({"x": "os.environ/K"}, resolve=False)
    assert raw.data == {"x": "os.environ/K"}


def test_a_document_that_holds_itself_is_an_error(tmp_path: Path) -> None:
    # YAML anchors can build a list that contains itself; so can a Python mapping.
    path = write(tmp_path, "loop.yaml", "deployments: &d [*d]\n")
    assert problems_of(path) == (f"{path}: nested too deeply, or holds itself",)
    doc: dict[str, Any] = {"deployments": []}
    doc["deployments"].append(doc)
    assert problems_of(doc) == ("nested too deeply, or holds itself",)
