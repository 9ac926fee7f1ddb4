"""`Router.from_config` and `Router.from_litellm_config`: a router built from a config
source (a mapping, a `RouterConfig`, a JSON or YAML file, a LiteLLM config). A mixin of
`Router`, apart from it to keep router.py to the request path."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Self

from interlock.clock import Clock
from interlock.config import RouterConfig
from interlock.errors import ConfigError
from interlock.limits.tokens import TokenCounter
from interlock.litellm_config import read_litellm_config
from interlock.observability.hooks import Hook
from interlock.observability.metrics import PrometheusMetrics
from interlock.records.transport import Transport
from interlock.router.wiring import RouterParts, build_parts
from interlock.sources import ConfigDocument, read_config

__all__ = ["ConfigConstructors"]


class ConfigConstructors:
    """The classmethods that build a `Router` from a config source."""

    __slots__ = ()

    def _start(self, parts: RouterParts) -> None:
        raise NotImplementedError  # Router's

    @classmethod
    def from_config(
        cls,
        source: RouterConfig | Mapping[str, Any] | str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        transports: Mapping[str, Transport] | None = None,
        seed: int | None = None,
        hooks: Sequence[Hook] | None = None,
        metrics: PrometheusMetrics | None = None,
        tokenizer: TokenCounter | None = None,
        connection_limit: int = 1000,
        tracing: bool | object | None = None,
    ) -> Self:
        """A Router from a `RouterConfig`, a mapping or a JSON or YAML file holding its
        keys, secret references resolved (docs/configuration.md); the keywords are the
        objects a file cannot hold (`tracing`: as for ``Router(...)``, see
        docs/operations.md). Errors name the file's line where they can."""
        doc = ConfigDocument({}) if isinstance(source, RouterConfig) else read_config(source)
        try:
            cfg = source if isinstance(source, RouterConfig) else RouterConfig(**doc.data)
            parts = build_parts(
                cfg,
                clock=clock,
                transports=transports,
                seed=seed,
                connection_limit=connection_limit,
                hooks=hooks,
                metrics=metrics,
                tokenizer=tokenizer,
                tracing=tracing,
            )
        except ConfigError as exc:
            error = doc.locate(exc)  # raised below, not chained to what holds the input
        else:
            router = cls.__new__(cls)
            router._start(parts)
            return router
        raise error

    @classmethod
    def from_litellm_config(
        cls,
        source: Mapping[str, Any] | str | os.PathLike[str],
        *,
        strict: bool = False,
        clock: Clock | None = None,
        transports: Mapping[str, Transport] | None = None,
        seed: int | None = None,
        hooks: Sequence[Hook] | None = None,
        metrics: PrometheusMetrics | None = None,
        tokenizer: TokenCounter | None = None,
        connection_limit: int = 1000,
        tracing: bool | object | None = None,
    ) -> Self:
        """A Router from a LiteLLM proxy/Router config (docs/migrating-from-litellm.md).
        What cannot be mapped is logged at WARNING, one line each, or with ``strict``
        raised as a ConfigError; `interlock.read_litellm_config` returns it as data."""
        imported = read_litellm_config(source, strict=strict)
        imported.warn()
        return cls.from_config(
            imported.config,
            clock=clock,
            transports=transports,
            seed=seed,
            hooks=hooks,
            metrics=metrics,
            tokenizer=tokenizer,
            connection_limit=connection_limit,
            tracing=tracing,
        )
