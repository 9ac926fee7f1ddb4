"""Runtime changes: add, update and remove deployments, or apply a whole new config,
while requests run, without losing what the router has learnt (docs/operations.md).
`RuntimeChanges` is the part of `Router` that does it; the diff itself is diff.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

from interlock.config import Deployment, RouterConfig
from interlock.errors import ConfigError
from interlock.observability.logs import router_logger
from interlock.providers.http import HttpClient
from interlock.providers.network import configure_networks
from interlock.router.diff import ConfigChange, Plan, apply_plan, drain, plan_change
from interlock.router.wiring import RouterParts
from interlock.sources import read_config

__all__ = ["RuntimeChanges"]


def load_config(source: RouterConfig) -> RouterConfig:
    """`source` validated (one made with ``model_copy(update=...)`` skipped
    validation: it is validated here)."""
    return with_deployments(source, source.deployments)


def with_deployments(cfg: RouterConfig, deployments: Sequence[Deployment]) -> RouterConfig:
    """`cfg` with other deployments, validated as a whole."""
    fields = {name: getattr(cfg, name) for name in RouterConfig.model_fields}
    fields["deployments"] = tuple(deployments)
    return RouterConfig(**fields)


def as_deployment(deployment: object) -> Deployment:
    if isinstance(deployment, Deployment):
        return deployment
    if isinstance(deployment, Mapping):
        return Deployment(**deployment)
    raise TypeError(
        f"deployment must be a Deployment or a mapping of its fields, not a "
        f"{type(deployment).__name__}"
    )


class RuntimeChanges:
    """`Router`'s runtime changes (docs/operations.md, "Changing deployments at
    runtime"). Each validates the whole new configuration as construction does and
    raises its `ConfigError`, leaving the router as it was; otherwise it applies at
    once for new picks, and returns once removed deployments have drained.

    Changes are local to this router (with Redis shared state too: see "Rolling a
    change out to several processes")."""

    __slots__ = ()

    parts: RouterParts
    _closed: bool

    def _assemble(self, parts: RouterParts) -> None:
        raise NotImplementedError  # Router's

    async def add_deployment(self, deployment: Deployment | Mapping[str, Any]) -> Deployment:
        """Add a deployment (to a group that exists or a new one); returns it with its
        id (``group-n`` when it has none, as at construction)."""
        d = as_deployment(deployment)
        cfg = with_deployments(self.parts.config, (*self._deployments(), d))
        change = await self._apply(cfg)
        return next(s.deployment for s in self.parts.states if s.id == change.added[0])

    async def update_deployment(self, deployment: Deployment | Mapping[str, Any]) -> Deployment:
        """Replace the settings of the deployment with `deployment`'s id; it keeps
        its state (health, estimates, windows, spend, requests in flight)."""
        d = as_deployment(deployment)
        if d.id is None:
            raise ConfigError([("id", "update_deployment needs the id of the deployment")])
        self._index(d.id)
        cfg = with_deployments(
            self.parts.config, [d if x.id == d.id else x for x in self._deployments()]
        )
        await self._apply(cfg)
        return next(s.deployment for s in self.parts.states if s.id == d.id)

    async def remove_deployment(self, id: str) -> None:
        """Remove a deployment: it takes no new request from now on; returns once
        its requests in flight have settled (normally: successes count, failures
        count against it), and then releases its state."""
        self._index(id)
        cfg = with_deployments(self.parts.config, [x for x in self._deployments() if x.id != id])
        await self._apply(cfg)

    async def reconfigure(
        self, config: RouterConfig | Mapping[str, Any] | str | os.PathLike[str]
    ) -> ConfigChange:
        """Apply a whole configuration (what `Router.from_config` takes) as a diff:
        deployments matched by id (``group-n`` for those without one, as at
        construction), groups by name. Settings that need a new router: ``shared``
        and ``cache``. Returns what changed, once removed deployments have drained."""
        if isinstance(config, RouterConfig):
            return await self._apply(load_config(config))
        # Read as `Router.from_config` reads it: JSON or YAML, secret references
        # resolved, errors naming the file's lines.
        doc = read_config(config)
        try:
            cfg = RouterConfig(**doc.data)
            plan = plan_change(self.parts, cfg)
        except ConfigError as exc:
            error = doc.locate(exc)  # raised below, not chained to what holds the input
        else:
            return await self._carry_out(plan, cfg)
        raise error

    def _deployments(self) -> list[Deployment]:
        return [s.deployment for s in self.parts.states]

    def _index(self, id: str) -> int:
        for i, s in enumerate(self.parts.states):
            if s.id == id:
                return i
        raise ConfigError([("id", f"no deployment has id {id!r}")])

    async def _apply(self, cfg: RouterConfig) -> ConfigChange:
        return await self._carry_out(plan_change(self.parts, cfg), cfg)

    async def _carry_out(self, plan: Plan, cfg: RouterConfig) -> ConfigChange:
        # Proxy and TLS settings are checked (a CA bundle is read) before anything
        # changes, on a client that opens nothing; then routed on the router's own.
        configure_networks(HttpClient(), cfg.deployments, cfg.trust_env)
        new, removed = apply_plan(self.parts, plan, running=not self._closed)
        http = new.http
        http.networks = None
        configure_networks(http, [s.deployment for s in new.states], cfg.trust_env)
        self._assemble(new)
        _log(plan.change)
        if cfg.health.probe_interval is None and new.prober.running:
            await new.prober.stop()
        # Shielded: a caller that stops waiting does not stop the release.
        await asyncio.shield(drain(lambda: self.parts, removed))
        return plan.change


def _log(change: ConfigChange) -> None:
    """One INFO line per applied change (ids and group names only: never a key)."""
    router_logger.info(
        "interlock: configuration changed: added %s, updated %s, removed %s; "
        "groups added %s, removed %s",
        list(change.added),
        list(change.updated),
        list(change.removed),
        list(change.groups_added),
        list(change.groups_removed),
        extra={"event": "config_change"},
    )
