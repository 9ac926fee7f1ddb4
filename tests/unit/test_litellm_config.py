"""LiteLLM proxy/Router configs read as interlock configs.

The documents follow LiteLLM's config format as documented at
https://docs.litellm.ai/docs/proxy/configs (model_list, litellm_params, model_info,
router_settings, litellm_settings, general_settings, environment_variables),
https://docs.litellm.ai/docs/router/api_reference/configuration (router_settings:
routing_strategy, num_retries, fallbacks as a list of {group: [groups]} mappings,
model_group_alias with its {"model": group, "hidden": true} form, allowed_fails,
cooldown_time, retry_policy, allowed_fails_policy) and
https://docs.litellm.ai/docs/proxy/reliability (fallbacks, context_window_fallbacks,
content_policy_fallbacks, default_fallbacks).
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import pytest

from interlock import ConfigError, LiteLLMImport, Router, Unmapped, read_litellm_config

AZURE_KEY = "az-key-5d1c0a9e8f7b6a5c"
OPENAI_KEY = "sk-openai-2b3c4d5e6f7a8b9c"
ANTHROPIC_KEY = "sk-ant-7e6d5c4b3a291807"
ENV = {
    "AZURE_API_KEY": AZURE_KEY,
    "OPENAI_API_KEY": OPENAI_KEY,
    "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    "AWS_SECRET": "aws-secret-0a1b2c3d4e5f",
}

# A proxy config of the kind LiteLLM's docs show: two Azure regions and OpenAI behind
# one group, Anthropic and Bedrock as fallbacks, a local Ollama model, a provider
# interlock has no transport for, and the proxy's own settings.
REALISTIC = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: https://my-endpoint-europe.openai.azure.com/
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-10-21"
      rpm: 600
      timeout: 30
      temperature: 0.2
    model_info:
      id: gpt-4o-eu
      base_model: azure/gpt-4o
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
      max_input_tokens: 128000
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-ca
      api_base: https://my-endpoint-canada.openai.azure.com
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-10-21"
      tpm: 200000
      order: 2
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      weight: 2
      max_parallel_requests: 64
      organization: org-123
      tags: ["eu", "default"]
  - model_name: claude-sonnet
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: ${ANTHROPIC_API_KEY}
      max_tokens: 2048
      stream_timeout: 10
  - model_name: bedrock-claude
    litellm_params:
      model: bedrock/converse/anthropic.claude-3-5-sonnet-20240620-v1:0
      aws_region_name: us-east-1
      aws_access_key_id: AKIAEXAMPLE
      aws_secret_access_key: os.environ/AWS_SECRET
    model_info:
      mode: chat
  - model_name: local-llama
    litellm_params:
      model: ollama/llama3.1
      api_base: http://localhost:11434
  - model_name: command-r
    litellm_params:
      model: cohere/command-r
      api_key: os.environ/COHERE_API_KEY

router_settings:
  routing_strategy: usage-based-routing-v2
  num_retries: 2
  timeout: 45
  allowed_fails: 2
  cooldown_time: 30
  fallbacks: [{"gpt-4o": ["claude-sonnet", "command-r"]}, {"claude-sonnet": ["bedrock-claude"]}]
  context_window_fallbacks: [{"gpt-4o": ["claude-sonnet"]}]
  model_group_alias: {"gpt-4": "gpt-4o", "claude": {"model": "claude-sonnet", "hidden": true}}
  retry_policy: {"TimeoutErrorRetries": 3, "BadRequestErrorRetries": 0}
  allowed_fails_policy: {"InternalServerErrorAllowedFails": 5}
  enable_pre_call_checks: true

litellm_settings:
  drop_params: true
  num_retries: 5
  success_callback: ["langfuse"]

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
  database_url: os.environ/DATABASE_URL
"""

EXPECTED_UNMAPPED = (
    "general_settings.master_key: a proxy server setting; interlock is a library",
    "general_settings.database_url: a proxy server setting; interlock is a library",
    "model_list[0].litellm_params.temperature: a default call parameter; interlock sends"
    " what each call passes",
    "model_list[3].litellm_params.stream_timeout: no separate stream timeout; `timeout` also"
    " bounds each wait for a chunk",
    "model_list[6].litellm_params.model: provider 'cohere' has no transport here; not imported",
    "litellm_settings.success_callback: no equivalent setting here",
    "router_settings.fallbacks[0].gpt-4o[1]: group 'command-r' has no imported deployment",
    "router_settings.model_group_alias.claude.hidden: interlock lists no models; the alias works",
    "router_settings.retry_policy.BadRequestErrorRetries: that failure is never retried or"
    " counted here",
)


def line_of(text: str, nth: int = 1) -> int:
    """The 1-based line of the nth line of REALISTIC containing `text`."""
    hits = [i for i, line in enumerate(REALISTIC.splitlines(), 1) if text in line]
    return hits[nth - 1]


@pytest.fixture
def realistic(tmp_path: Path) -> Path:
    path = tmp_path / "litellm.yaml"
    path.write_text(REALISTIC, encoding="utf-8")
    return path


def test_a_realistic_config_is_translated(realistic: Path) -> None:
    imported = read_litellm_config(realistic, env=ENV)
    assert isinstance(imported, LiteLLMImport)
    cfg = imported.config
    eu, ca, oai, claude, bedrock, llama = cfg.deployments
    assert (eu.group, eu.provider, eu.model, eu.id) == ("gpt-4o", "azure", "gpt-4o-eu", "gpt-4o-eu")
    assert eu.api_base == "https://my-endpoint-europe.openai.azure.com"
    assert eu.api_key_value() == AZURE_KEY
    assert (eu.api_version, eu.rpm, eu.timeout) == ("2024-10-21", 600, 30)
    assert (eu.input_cost_per_token, eu.output_cost_per_token) == (2.5e-6, 1e-5)
    assert eu.context_window == 128_000
    assert (ca.model, ca.tpm, ca.order, ca.timeout) == ("gpt-4o-ca", 200_000, 2, 45)
    assert (oai.provider, oai.api_base, oai.weight) == ("openai", "https://api.openai.com/v1", 2)
    assert oai.api_key_value() == OPENAI_KEY
    assert oai.max_concurrency == 64
    assert oai.headers == {"OpenAI-Organization": "org-123"}
    assert oai.tags == {"eu", "default"}
    assert (claude.provider, claude.model, claude.max_output_tokens) == (
        "anthropic",
        "claude-sonnet-4-5",
        2048,
    )
    assert claude.api_key_value() == ANTHROPIC_KEY
    assert (bedrock.provider, bedrock.model, bedrock.aws_region) == (
        "bedrock",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "us-east-1",
    )
    assert bedrock.aws_secret_access_key is not None
    assert bedrock.aws_secret_access_key.get_secret_value() == ENV["AWS_SECRET"]
    # LiteLLM's ollama/ speaks Ollama's native API at the server's root; the same
    # server's OpenAI-compatible API is under /v1.
    assert (llama.provider, llama.api_base) == ("ollama", "http://localhost:11434/v1")

    assert cfg.strategy == "usage"
    assert cfg.retry.max_attempts == 3  # router_settings.num_retries wins over litellm_settings
    assert cfg.retry.attempts_by_kind == {"timeout": 4}
    assert (cfg.health.allowed_fails, cfg.health.cooldown) == (2, 30)
    assert cfg.health.rate_limit_cooldown == 30
    assert cfg.health.allowed_fails_by_kind == {"server_error": 5}
    assert cfg.fallbacks == {"gpt-4o": ("claude-sonnet",), "claude-sonnet": ("bedrock-claude",)}
    assert cfg.context_window_fallbacks == {"gpt-4o": ("claude-sonnet",)}
    assert cfg.aliases == {"gpt-4": "gpt-4o", "claude": "claude-sonnet"}
    assert cfg.unsupported_params == "drop"
    assert tuple(map(str, imported.unmapped)) == EXPECTED_UNMAPPED
    assert imported.unmapped[0] == Unmapped(
        "general_settings.master_key", "a proxy server setting; interlock is a library"
    )
    # No secret in any repr or report.
    text = repr(imported) + repr(cfg) + "".join(map(str, imported.unmapped))
    for secret in ENV.values():
        assert secret not in text


def test_strict_refuses_what_cannot_be_mapped(realistic: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        read_litellm_config(realistic, env=ENV, strict=True)
    assert len(exc.value.problems) == len(EXPECTED_UNMAPPED)
    first = exc.value.problems[0]
    assert first == (
        "general_settings.master_key: cannot be mapped: a proxy server setting; interlock is a"
        f" library ({realistic}, line {line_of('master_key:')})"
    )


def test_router_from_litellm_config_logs_each_unmapped_line(
    realistic: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="interlock.config"):
        router = Router.from_litellm_config(realistic, seed=1)
    assert router.groups == ("gpt-4o", "claude-sonnet", "bedrock-claude", "local-llama")
    mine = [r for r in caplog.records if r.name == "interlock.config"]
    assert [r.getMessage() for r in mine] == [
        f"LiteLLM config: {line}" for line in EXPECTED_UNMAPPED
    ]
    assert all(r.levelno == logging.WARNING for r in mine)
    with pytest.raises(ConfigError):
        Router.from_litellm_config(realistic, strict=True)


def test_references_resolve_only_where_a_value_is_mapped(realistic: Path) -> None:
    # COHERE_API_KEY, LITELLM_MASTER_KEY and DATABASE_URL are not set: the deployment
    # and the settings that use them are not imported, so they are not needed.
    env = dict(ENV)
    del env["OPENAI_API_KEY"]
    with pytest.raises(ConfigError) as exc:
        read_litellm_config(realistic, env=env)
    assert exc.value.problems == (
        "model_list[2].litellm_params.api_key: environment variable OPENAI_API_KEY is not set"
        f" ({realistic}, line {line_of('api_key: os.environ/OPENAI_API_KEY')})",
    )
    assert "".join(traceback.format_exception(exc.value)).count("sk-") == 0


def test_environment_variables_section_is_read_like_the_proxy_does() -> None:
    doc = {
        "environment_variables": {"MY_KEY": "from-the-file"},
        "model_list": [
            {
                "model_name": "g",
                "litellm_params": {"model": "openai/m", "api_key": "os.environ/MY_KEY"},
            }
        ],
    }
    imported = read_litellm_config(doc, env={"MY_KEY": "from-the-process"})
    assert imported.config.deployments[0].api_key_value() == "from-the-file"
    assert imported.unmapped == ()


def test_validation_errors_use_litellm_paths_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: a\n"
        "    litellm_params:\n"
        "      model: openai/m\n"
        "      rpm: 0\n"
        "    model_info:\n"
        "      id: same\n"
        "  - model_name: a\n"
        "    litellm_params: {model: azure/x}\n"
        "    model_info: {id: same}\n"
        "router_settings:\n"
        "  num_retries: -1\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as exc:
        read_litellm_config(path)
    assert exc.value.problems == (
        f"model_list[0].litellm_params.rpm: must be > 0 ({path}, line 5)",
        f"model_list[1].litellm_params.api_base: is required for provider 'azure' ({path}, line 9)",
        f"router_settings.num_retries: must be >= 1 ({path}, line 12)",
    )


def test_fallback_forms_and_default_fallbacks() -> None:
    def entry(name: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": f"openai/{name}"}}

    doc = {
        "model_list": [entry("a"), entry("b"), entry("c")],
        "router_settings": {
            "fallbacks": [{"a": ["b"]}, {"b": "c"}],
            "default_fallbacks": ["c"],
            "content_policy_fallbacks": [{"a": ["c"]}],
            "max_fallbacks": 2,
        },
    }
    cfg = read_litellm_config(doc, env={}).config
    assert cfg.fallbacks == {"a": ("b",), "b": ("c",), "*": ("c",)}
    assert cfg.content_policy_fallbacks == {"a": ("c",)}
    assert cfg.max_fallback_depth == 2


@pytest.mark.parametrize(
    ("model", "provider", "sent", "base"),
    [
        ("openai/gpt-4o-mini", "openai", "gpt-4o-mini", "https://api.openai.com/v1"),
        ("gpt-4o-mini", "openai", "gpt-4o-mini", "https://api.openai.com/v1"),
        ("claude-3-5-haiku-latest", "anthropic", "claude-3-5-haiku-latest", None),
        ("gemini/gemini-2.0-flash", "gemini", "gemini-2.0-flash", None),
        ("groq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant", None),
        ("mistral/mistral-small-latest", "mistral", "mistral-small-latest", None),
        ("together_ai/meta-llama/Llama-3-8b", "together", "meta-llama/Llama-3-8b", None),
        ("deepseek/deepseek-chat", "deepseek", "deepseek-chat", None),
        ("fireworks_ai/accounts/x/models/y", "fireworks", "accounts/x/models/y", None),
        ("openrouter/openai/gpt-4o", "openrouter", "openai/gpt-4o", None),
        ("xai/grok-2", "openai", "grok-2", "https://api.x.ai/v1"),
    ],
)
def test_provider_prefixes(model: str, provider: str, sent: str, base: str | None) -> None:
    doc = {"model_list": [{"model_name": "g", "litellm_params": {"model": model}}]}
    (d,) = read_litellm_config(doc, env={}).config.deployments
    assert (d.provider, d.model) == (provider, sent)
    if base is not None:
        assert d.api_base == base


def test_vertex_and_local_servers() -> None:
    doc = {
        "model_list": [
            {
                "model_name": "v",
                "litellm_params": {
                    "model": "vertex_ai/gemini-1.5-pro",
                    "vertex_project": "my-project",
                    "vertex_location": "us-central1",
                },
            },
            {
                "model_name": "vllm",
                "litellm_params": {
                    "model": "hosted_vllm/meta-llama/Llama-3.1-8B",
                    "api_base": "http://10.0.0.5:8000/v1",
                },
            },
            {
                "model_name": "anth",
                "litellm_params": {
                    "model": "anthropic/claude-x",
                    "api_base": "https://gw.example/anthropic",
                },
            },
        ]
    }
    pytest.importorskip("google.auth")
    v, vllm, anth = read_litellm_config(doc, env={}).config.deployments
    assert (v.provider, v.vertex_project, v.vertex_location) == (
        "vertex",
        "my-project",
        "us-central1",
    )
    assert (vllm.provider, vllm.model, vllm.api_base) == (
        "vllm",
        "meta-llama/Llama-3.1-8B",
        "http://10.0.0.5:8000/v1",
    )
    # LiteLLM appends /v1/messages to an Anthropic api_base; interlock appends /messages.
    assert anth.api_base == "https://gw.example/anthropic/v1"


def test_redis_settings_become_shared_state() -> None:
    doc = {
        "model_list": [{"model_name": "g", "litellm_params": {"model": "openai/m"}}],
        "router_settings": {
            "redis_host": "cache.internal",
            "redis_port": 6380,
            "redis_password": "os.environ/REDIS_PASSWORD",
        },
    }
    cfg = read_litellm_config(doc, env={"REDIS_PASSWORD": "p@ss/word"}).config
    assert cfg.shared is not None
    assert cfg.shared.url == "redis://:p%40ss%2Fword@cache.internal:6380/0"
    assert "p@ss" not in repr(cfg)


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({}, "model_list: is required: a list of deployments"),
        ({"model_list": [5]}, "model_list[0]: must be a mapping"),
        ({"model_list": [{"litellm_params": {"model": "openai/m"}}]},
         "model_list[0].model_name: is required: the group's name"),
        ({"model_list": [{"model_name": "g"}]}, "model_list[0].litellm_params.model: is required"),
        ({"model_list": [{"model_name": "g", "litellm_params": {"model": "cohere/c"}}]},
         "model_list: no deployment could be mapped"),
        ({"model_list": [{"model_name": "g", "litellm_params": {"model": "litellm_proxy/m"}}]},
         "model_list[0].litellm_params.api_base: is required for litellm_proxy/"),
        ({"model_list": [{"model_name": "g", "litellm_params": {"model": "openai/m"}}],
          "router_settings": {"fallbacks": [{"g": 5}]}},
         "router_settings.fallbacks[0].g: must be a list of groups"),
        ({"model_list": [{"model_name": "g", "litellm_params": {"model": "openai/m"}}],
          "router_settings": {"model_group_alias": {"x": ["g"]}}},
         "router_settings.model_group_alias.x: must name a group"),
        ({"model_list": [{"model_name": "g", "litellm_params": {"model": "openai/m"}}],
          "router_settings": {"retry_policy": 3}},
         "router_settings.retry_policy: must be a mapping"),
    ],
)  # fmt: skip
def test_documents_of_the_wrong_shape(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        read_litellm_config(doc, env={})
    assert exc.value.problems == (problem,)


def test_wildcards_and_unknown_strategies_are_reported() -> None:
    doc = {
        "model_list": [
            {"model_name": "*", "litellm_params": {"model": "openai/*"}},
            {"model_name": "g", "litellm_params": {"model": "openai/m"}, "extra": 1},
        ],
        "router_settings": {"routing_strategy": "provider-budget-routing"},
        "include": ["other.yaml"],
    }
    imported = read_litellm_config(doc, env={})
    assert tuple(map(str, imported.unmapped)) == (
        "include: not a section interlock reads",
        "model_list[0].model_name: wildcard routing has no equivalent; name each model",
        "model_list[1].extra: not a deployment field interlock reads",
        "router_settings.routing_strategy: strategy 'provider-budget-routing' has no"
        " equivalent; p2c-ewma is used",
    )
    assert imported.config.strategy == "p2c-ewma"


def test_a_mapping_in_litellm_router_keyword_shape() -> None:
    # litellm.Router(model_list=..., routing_strategy=..., fallbacks=...) as one mapping.
    imported = read_litellm_config(
        {
            "model_list": [
                {"model_name": "a", "litellm_params": {"model": "openai/a"}},
                {"model_name": "b", "litellm_params": {"model": "openai/b"}},
            ],
            "routing_strategy": "latency-based-routing",
            "fallbacks": [{"a": ["b"]}],
            "num_retries": 0,
            "set_verbose": True,
        },
        env={},
    )
    assert imported.config.strategy == "latency"
    assert imported.config.fallbacks == {"a": ("b",)}
    assert imported.config.retry.max_attempts == 1
    assert tuple(map(str, imported.unmapped)) == ("set_verbose: not a section interlock reads",)


def test_settings_that_are_not_mapped_need_no_variables() -> None:
    doc = {
        "model_list": [{"model_name": "g", "litellm_params": {"model": "openai/m"}}],
        "litellm_settings": {
            "cache": True,
            "cache_params": {"type": "redis", "password": "os.environ/UNSET_CACHE_PASSWORD"},
        },
    }
    imported = read_litellm_config(doc, env={})
    assert tuple(map(str, imported.unmapped)) == (
        "litellm_settings.cache: no equivalent setting here",
        "litellm_settings.cache_params: no equivalent setting here",
    )


def test_model_info_base_model_prices_an_azure_deployment_by_the_model_it_serves(
    realistic: Path,
) -> None:
    # LiteLLM writes base_model provider-prefixed ("azure/gpt-4o"); the deployment
    # keeps the model name, which the built-in price lookup takes.
    imported = read_litellm_config(realistic, env=ENV)
    first = imported.config.deployments[0]
    assert first.model == "gpt-4o-eu"
    assert first.base_model == "gpt-4o"
