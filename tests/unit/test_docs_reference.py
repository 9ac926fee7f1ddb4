"""docs/configuration.md documents every configuration field and Router keyword.

Each model's fields must appear as `` `name` `` in the section of the reference whose
heading names the model, so a field added later without documentation fails here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from interlock import (
    Budget,
    CacheConfig,
    Deployment,
    GroupCachePolicy,
    HealthPolicy,
    HedgePolicy,
    QueuePolicy,
    RetryPolicy,
    Router,
    RouterConfig,
    SharedState,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

MODELS: tuple[type[BaseModel], ...] = (
    Deployment,
    RetryPolicy,
    HealthPolicy,
    HedgePolicy,
    Budget,
    QueuePolicy,
    SharedState,
    CacheConfig,
    GroupCachePolicy,
    RouterConfig,
)


def _sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text up to the next ``## `` heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _section_of(name: str) -> str:
    """The text of every section whose heading names `name` in backticks."""
    found = [
        body
        for head, body in _sections(DOC.read_text(encoding="utf-8")).items()
        if f"`{name}`" in head
    ]
    assert found, f"docs/configuration.md has no section whose heading names `{name}`"
    return "\n".join(found)


def _missing(names: list[str], text: str) -> list[str]:
    return [n for n in names if f"`{n}`" not in text]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_model_field_is_documented(model: type[BaseModel]) -> None:
    section = _section_of(model.__name__)
    missing = _missing(list(model.model_fields), section)
    assert not missing, f"{model.__name__} fields missing from docs/configuration.md: {missing}"


def _keyword_only(fn: object) -> list[str]:
    assert callable(fn)
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def test_every_router_keyword_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    router_sections = "\n".join(
        body for head, body in _sections(text).items() if "Router(...)" in head
    )
    names = _keyword_only(Router.__init__)
    assert names, "Router.__init__ has no keyword-only parameters?"
    missing = _missing(names, router_sections)
    assert not missing, f"Router(...) keywords missing from docs/configuration.md: {missing}"


def test_from_config_parameters_are_documented() -> None:
    section = _section_of("Router.from_config")
    names = _keyword_only(Router.from_config)
    missing = [n for n in names if f"{n}=" not in section]
    assert not missing, f"Router.from_config parameters missing from its section: {missing}"
