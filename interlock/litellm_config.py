"""Read a LiteLLM proxy or Router config (``model_list``, ``router_settings``,
``litellm_settings``) as a `RouterConfig`.

The format is LiteLLM's (https://docs.litellm.ai/docs/proxy/configs and
https://docs.litellm.ai/docs/router/api_reference/configuration). What has a meaning
here is mapped; everything else is collected as one `Unmapped` line each (its path in
the LiteLLM document and why), returned on `LiteLLMImport.unmapped` and logged at
WARNING by `Router.from_litellm_config`; ``strict=True`` fails on them instead.
Secret references are resolved only in the values that are mapped, so a variable the
LiteLLM proxy needs for something interlock ignores (``general_settings.master_key``)
need not be set. ``environment_variables`` of the document are read as variables
(over the process environment), as the proxy does, without changing ``os.environ``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from interlock.config import RouterConfig
from interlock.errors import ConfigError
from interlock.litellm_format import (
    ALWAYS,
    CHAINS,
    FAIL_KINDS,
    HEALTH_SETTINGS,
    IGNORED_SETTINGS,
    INFO,
    NEEDS_BASE,
    PARAMS,
    PROVIDERS,
    REDIS,
    RETRY_KINDS,
    SETTINGS,
    STRATEGIES,
    fix_base,
    infer_provider,
    info_reason,
    param_reason,
)
from interlock.sources import ConfigDocument, read_config, resolve_references

__all__ = ["LiteLLMImport", "Unmapped", "read_litellm_config"]

log = logging.getLogger("interlock.config")


@dataclass(frozen=True, slots=True)
class Unmapped:
    """One key of a LiteLLM config that has no equivalent here."""

    path: str
    """Where it sits in the LiteLLM document (``model_list[2].litellm_params.temperature``)."""
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, slots=True)
class LiteLLMImport:
    """A LiteLLM config read as a `RouterConfig`, with what could not be mapped."""

    config: RouterConfig
    unmapped: tuple[Unmapped, ...]

    def warn(self, logger: logging.Logger = log) -> None:
        """Log each unmapped key at WARNING."""
        for item in self.unmapped:
            logger.warning("LiteLLM config: %s", item)


def read_litellm_config(
    source: object, *, strict: bool = False, env: Mapping[str, str] | None = None
) -> LiteLLMImport:
    """Translate a LiteLLM config (a mapping, or the path of its YAML or JSON file).

    Raises `ConfigError` (paths and YAML lines of the LiteLLM document) for what is
    invalid, and with ``strict=True`` for every key that cannot be mapped."""
    doc = read_config(source, what="a LiteLLM config", resolve=False)
    t = _Translator(doc, env)
    try:
        cfg = t.translate()
        if strict and t.unmapped:
            raise ConfigError([(u.path, f"cannot be mapped: {u.reason}") for u in t.unmapped])
    except ConfigError as exc:
        error = doc.locate(exc)  # raised below, not chained to what holds the input
    else:
        return LiteLLMImport(cfg, tuple(t.unmapped))
    raise error


class _Translator:
    def __init__(self, doc: ConfigDocument, env: Mapping[str, str] | None) -> None:
        self.doc = doc
        base = dict(os.environ if env is None else env)
        extra = doc.data.get("environment_variables")
        if isinstance(extra, Mapping):
            base.update({str(k): str(v) for k, v in extra.items() if v is not None})
        self.env = base
        self.unmapped: list[Unmapped] = []
        self.problems: list[tuple[str, str]] = []
        self.fields: dict[str, str] = {}
        """The current deployment's field -> its LiteLLM path."""
        self.origin: dict[str, str] = {}
        """interlock path prefix -> LiteLLM path, to report validation errors there."""

    def skip(self, path: str, reason: str) -> None:
        self.unmapped.append(Unmapped(path, reason))

    def value(self, path: str, raw: Any) -> Any:
        try:
            return resolve_references(raw, self.env, path)
        except ConfigError as exc:
            self.problems.extend(exc.fields)
            return None

    def translate(self) -> RouterConfig:
        data = self.doc.data
        for key in data:
            if key not in ("model_list", "router_settings", "litellm_settings", *SETTINGS):
                self._skip_section(key, data[key])
        deployments = self._model_list(data.get("model_list"))
        settings = self._settings(deployments)
        if self.problems:
            raise ConfigError(self.problems)
        if not deployments:
            raise ConfigError([("model_list", "no deployment could be mapped")])
        try:
            return RouterConfig(deployments=deployments, **settings)
        except ConfigError as exc:
            fields = [(self._source_path(p), m) for p, m in exc.fields]
        raise ConfigError(fields)

    def _skip_section(self, key: str, value: Any) -> None:
        if key == "environment_variables":
            return  # read as variables for the references
        if key == "general_settings" and isinstance(value, Mapping):
            for name in value:
                self.skip(f"{key}.{name}", "a proxy server setting; interlock is a library")
            return
        self.skip(str(key), "not a section interlock reads")

    def _source_path(self, path: str) -> str:
        best = ""
        for prefix in self.origin:
            if (path == prefix or path.startswith((prefix + ".", prefix + "["))) and len(
                prefix
            ) > len(best):
                best = prefix
        return self.origin[best] + path[len(best) :] if best else path

    # --- model_list ---------------------------------------------------------------

    def _model_list(self, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list):
            self.problems.append(("model_list", "is required: a list of deployments"))
            return []
        out: list[dict[str, Any]] = []
        for i, entry in enumerate(raw):
            path = f"model_list[{i}]"
            if not isinstance(entry, Mapping):
                self.problems.append((path, "must be a mapping"))
                continue
            self.fields = {}
            d = self._deployment(path, entry)
            if d is not None:
                k = len(out)
                self.origin[f"deployments[{k}]"] = path
                for field, where in self.fields.items():
                    self.origin[f"deployments[{k}].{field}"] = where
                for key, field in PARAMS.items():  # fields it did not give
                    self.origin.setdefault(
                        f"deployments[{k}].{field}", f"{path}.litellm_params.{key}"
                    )
                self.origin[f"deployments[{k}].group"] = f"{path}.model_name"
                out.append(d)
        return out

    def _deployment(self, path: str, entry: Mapping[str, Any]) -> dict[str, Any] | None:
        group = entry.get("model_name")
        params = entry.get("litellm_params")
        if not isinstance(group, str) or not group:
            self.problems.append((f"{path}.model_name", "is required: the group's name"))
            return None
        if not isinstance(params, Mapping) or not isinstance(params.get("model"), str):
            self.problems.append((f"{path}.litellm_params.model", "is required"))
            return None
        if "*" in group:
            self.skip(f"{path}.model_name", "wildcard routing has no equivalent; name each model")
            return None
        target = self._provider(f"{path}.litellm_params", params)
        if target is None:
            return None
        provider, model, default_base = target
        d: dict[str, Any] = {"group": group, "provider": provider, "model": model}
        if default_base is not None:
            d["api_base"] = default_base
        self._params(f"{path}.litellm_params", params, d)
        for key in ("rpm", "tpm"):  # LiteLLM also takes them next to litellm_params
            if key in entry and key not in d:
                d[key] = self.value(f"{path}.{key}", entry[key])
                self.fields[key] = f"{path}.{key}"
        self._info(f"{path}.model_info", entry.get("model_info"), d)
        for key in entry:
            if key not in ("model_name", "litellm_params", "model_info", "rpm", "tpm"):
                self.skip(f"{path}.{key}", "not a deployment field interlock reads")
        return d

    def _provider(self, path: str, params: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
        spec: str = params["model"]
        custom = params.get("custom_llm_provider")
        prefix, _, model = spec.partition("/")
        if isinstance(custom, str):
            prefix, model = custom, spec
        elif not model:
            prefix, model = infer_provider(spec), spec
            if not prefix:
                self.skip(f"{path}.model", "no provider prefix; write it as provider/model")
                return None
        known = PROVIDERS.get(prefix)
        if known is None:
            self.skip(f"{path}.model", f"provider {prefix!r} has no transport here; not imported")
            return None
        if prefix in NEEDS_BASE and not params.get("api_base"):
            self.problems.append((f"{path}.api_base", f"is required for {prefix}/"))
            return None
        if prefix == "bedrock":
            model = model.removeprefix("converse/").removeprefix("invoke/")
        return known[0], model, known[1]

    def _params(self, path: str, params: Mapping[str, Any], d: dict[str, Any]) -> None:
        for key, raw in params.items():
            where = f"{path}.{key}"
            field = PARAMS.get(key)
            if key in ("model", "custom_llm_provider"):
                continue
            if field is not None:
                value = self.value(where, raw)
                if field == "headers" and isinstance(value, Mapping):
                    value = {**d.get("headers", {}), **value}
                d[field] = value
                self.fields[field] = where
            elif key == "organization" and d["provider"] == "openai":
                d["headers"] = {
                    **d.get("headers", {}),
                    "OpenAI-Organization": self.value(where, raw),
                }
            elif key == "max_tokens" and d["provider"] == "anthropic":
                d["max_output_tokens"] = self.value(where, raw)
            elif key == "vertex_credentials" and str(raw).lstrip().startswith("{"):
                self.skip(where, "inline credentials JSON; interlock takes the file's path")
            else:
                self.skip(where, param_reason(key))
        fix_base(d)

    def _info(self, path: str, info: Any, d: dict[str, Any]) -> None:
        if info is None:
            return
        if not isinstance(info, Mapping):
            self.problems.append((path, "must be a mapping"))
            return
        for key, raw in info.items():
            field = INFO.get(key)
            if field is not None and field not in d:
                d[field] = self.value(f"{path}.{key}", raw)
                self.fields[field] = f"{path}.{key}"
            elif key == "base_model" and "base_model" not in d:
                # LiteLLM writes it provider-prefixed ("azure/gpt-4o"); the price lookup
                # takes the model name under the deployment's own provider.
                value = self.value(f"{path}.{key}", raw)
                d["base_model"] = (
                    value.partition("/")[2] or value if isinstance(value, str) else value
                )
                self.fields["base_model"] = f"{path}.{key}"
            elif key == "mode" and raw in ("chat", "embedding"):
                continue
            elif field is None:
                self.skip(f"{path}.{key}", info_reason(key))

    # --- router_settings and litellm_settings ----------------------------------------

    def _settings(self, deployments: list[dict[str, Any]]) -> dict[str, Any]:
        groups = {d["group"] for d in deployments}
        merged: dict[str, tuple[str, Any]] = {}
        # litellm.Router(...) takes the settings as keywords: a mapping given in that
        # shape has them at the top level.
        flat = {k: (k, v) for k, v in self.doc.data.items() if k in SETTINGS}
        merged.update(flat)
        for section in ("litellm_settings", "router_settings"):  # the router's win
            raw = self.doc.data.get(section)
            if raw is None:
                continue
            if not isinstance(raw, Mapping):
                self.problems.append((section, "must be a mapping"))
                continue
            for key, value in raw.items():
                merged[str(key)] = (f"{section}.{key}", value)
        out: dict[str, Any] = {}
        retry: dict[str, Any] = {}
        health: dict[str, Any] = {}
        for key, (where, raw) in merged.items():
            self._setting(key, where, raw, out, retry, health, groups)
        if retry:
            out["retry"] = retry
        if health:
            if health.get("cooldown", 0) > 300:
                health["cooldown_max"] = health["cooldown"]
            out["health"] = health
        self._timeouts(merged, deployments, out)
        self._redis(merged, out)
        return out

    def _setting(
        self,
        key: str,
        where: str,
        raw: Any,
        out: dict[str, Any],
        retry: dict[str, Any],
        health: dict[str, Any],
        groups: set[str],
    ) -> None:
        if key in IGNORED_SETTINGS or key in ALWAYS:
            return  # read by _timeouts and _redis, or always on here
        if key not in SETTINGS and key != "drop_params":
            # Not resolved: a variable only LiteLLM needs (a callback's key) need not be set.
            self.skip(where, "no equivalent setting here")
            return
        value = self.value(where, raw)
        if key in HEALTH_SETTINGS:
            self._health_setting(key, where, value, health)
        elif key == "routing_strategy":
            name = STRATEGIES.get(str(value))
            if name is None:
                self.skip(where, f"strategy {value!r} has no equivalent; p2c-ewma is used")
            else:
                out["strategy"] = name
                self.origin["strategy"] = where
        elif key == "num_retries":
            retry["max_attempts"] = value + 1 if isinstance(value, int) else value
            self.origin["retry.max_attempts"] = where
        elif key in CHAINS or key == "default_fallbacks":
            self._chains(key, where, value, out, groups)
        elif key == "retry_policy" and isinstance(value, Mapping):
            self._kinds(where, value, RETRY_KINDS, retry, "attempts_by_kind", 1)
        elif key == "model_group_alias":
            self._aliases(where, value, out, groups)
        elif key == "max_fallbacks":
            out["max_fallback_depth"] = value
            self.origin["max_fallback_depth"] = where
        elif key == "drop_params":
            out["unsupported_params"] = "drop" if value else "raise"
        else:
            self.problems.append((where, "must be a mapping"))  # a *_policy that is not one

    def _health_setting(self, key: str, where: str, value: Any, health: dict[str, Any]) -> None:
        if key == "allowed_fails":
            health["allowed_fails"] = value
            self.origin["health.allowed_fails"] = where
        elif key == "cooldown_time":
            # LiteLLM cools a deployment this long after a 429 too.
            health["cooldown"] = value
            health["rate_limit_cooldown"] = value
            self.origin["health.cooldown"] = where
            self.origin["health.rate_limit_cooldown"] = where
        elif isinstance(value, Mapping):  # allowed_fails_policy
            self._kinds(where, value, FAIL_KINDS, health, "allowed_fails_by_kind", 0)
        else:
            self.problems.append((where, "must be a mapping"))

    def _kinds(
        self,
        where: str,
        value: Mapping[str, Any],
        table: Mapping[str, str],
        into: dict[str, Any],
        field: str,
        extra: int,
    ) -> None:
        kinds: dict[str, Any] = {}
        for name, n in value.items():
            kind = table.get(str(name))
            if kind is None:
                self.skip(f"{where}.{name}", "that failure is never retried or counted here")
            else:
                kinds[kind] = n + extra if isinstance(n, int) else n
        if kinds:
            into[field] = kinds

    def _chains(
        self, key: str, where: str, value: Any, out: dict[str, Any], groups: set[str]
    ) -> None:
        field = "fallbacks" if key == "default_fallbacks" else key
        chains: dict[str, list[str]] = out.setdefault(field, {})
        if key == "default_fallbacks":
            items: list[tuple[str, Any, str]] = [("*", value, where)]
        elif isinstance(value, list):
            items = []
            for j, entry in enumerate(value):
                if not isinstance(entry, Mapping):
                    self.problems.append((f"{where}[{j}]", "must be a {group: [groups]} mapping"))
                    continue
                items += [(str(g), c, f"{where}[{j}].{g}") for g, c in entry.items()]
        elif isinstance(value, Mapping):
            items = [(str(g), c, f"{where}.{g}") for g, c in value.items()]
        else:
            self.problems.append((where, "must be a list of {group: [groups]} mappings"))
            return
        for group, chain, at in items:
            if not isinstance(chain, str | list):
                self.problems.append((at, "must be a list of groups"))
                continue
            chain_list = [chain] if isinstance(chain, str) else chain
            if group != "*" and group not in groups:
                self.skip(at, f"group {group!r} has no imported deployment")
                continue
            kept = []
            for k, target in enumerate(chain_list):
                if target in groups:
                    kept.append(target)
                else:
                    self.skip(f"{at}[{k}]", f"group {target!r} has no imported deployment")
            chains[group] = kept
            self.origin[f"{field}.{group}"] = at

    def _aliases(self, where: str, value: Any, out: dict[str, Any], groups: set[str]) -> None:
        if not isinstance(value, Mapping):
            self.problems.append((where, "must be a mapping of alias -> group"))
            return
        aliases: dict[str, str] = {}
        for name, target in value.items():
            group = target.get("model") if isinstance(target, Mapping) else target
            if isinstance(target, Mapping) and target.get("hidden"):
                self.skip(f"{where}.{name}.hidden", "interlock lists no models; the alias works")
            if not isinstance(group, str):
                self.problems.append((f"{where}.{name}", "must name a group"))
                continue
            if group not in groups:
                self.skip(f"{where}.{name}", f"group {group!r} has no imported deployment")
                continue
            aliases[str(name)] = str(group)
            self.origin[f"aliases.{name}"] = f"{where}.{name}"
        out["aliases"] = aliases

    def _timeouts(
        self, merged: Mapping[str, tuple[str, Any]], deps: list[dict[str, Any]], out: dict[str, Any]
    ) -> None:
        """`timeout` (router_settings) and `request_timeout` (litellm_settings) are the
        default timeout of one LiteLLM call to a provider: a deployment's `timeout`."""
        for key in ("request_timeout", "timeout"):
            if key in merged:
                where, raw = merged[key]
                value = self.value(where, raw)
                for d in deps:
                    d.setdefault("timeout", value)
        longest = max(
            (d["timeout"] for d in deps if isinstance(d.get("timeout"), int | float)), default=0
        )
        if longest > 120:  # the call's deadline must leave room for one whole attempt
            out["timeout"] = float(longest)

    def _redis(self, merged: Mapping[str, tuple[str, Any]], out: dict[str, Any]) -> None:
        """``redis_host``/``redis_port``/``redis_password`` (or ``redis_url``) share
        rate usage and cooldowns between LiteLLM instances, as `shared` does here."""
        parts = {k: self.value(merged[k][0], merged[k][1]) for k in REDIS if k in merged}
        if not parts:
            return
        url = parts.get("redis_url")
        if url is None:
            password = parts.get("redis_password")
            auth = f":{quote(str(password), safe='')}@" if password else ""
            host, port = parts.get("redis_host", "127.0.0.1"), parts.get("redis_port", 6379)
            url = f"redis://{auth}{host}:{port}/0"
        out["shared"] = {"url": url}
        self.origin["shared"] = merged[next(k for k in REDIS if k in merged)][0]
