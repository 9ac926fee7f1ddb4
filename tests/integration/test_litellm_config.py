"""A Router built from a LiteLLM proxy config file serves requests through real
loopback servers speaking each provider's wire format.

The YAML follows LiteLLM's documented config format
(https://docs.litellm.ai/docs/proxy/configs,
https://docs.litellm.ai/docs/router/api_reference/configuration). Chat requests are
OpenAI chat completions (https://platform.openai.com/docs/api-reference/chat/create).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from interlock import ChatCompletion, Router
from interlock.testing import FakeAnthropic, FakeAzure, FakeUpstream, Fault

AZURE_KEY = "az-loopback-3c2b1a09f8e7"
OPENAI_KEY = "sk-loopback-6e5d4c3b2a19"
ANTHROPIC_KEY = "sk-ant-loopback-0f1e2d3c"
USER = [{"role": "user", "content": "Say hello."}]

CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: {azure}
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-10-21"
      rpm: 600
    model_info:
      id: azure-eu
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {openai}
      api_key: os.environ/OPENAI_API_KEY
      temperature: 0.1
    model_info:
      id: openai-1
  - model_name: claude-sonnet
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {anthropic}
      api_key: os.environ/ANTHROPIC_API_KEY
    model_info:
      id: claude-1
  - model_name: local
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
      api_base: {vllm}

router_settings:
  routing_strategy: simple-shuffle
  num_retries: 1
  allowed_fails: 1
  cooldown_time: 30
  fallbacks: [{{"gpt-4o": ["claude-sonnet"]}}]
  model_group_alias: {{"gpt-4": "gpt-4o"}}

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_API_KEY", AZURE_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.delenv("LITELLM_MASTER_KEY", raising=False)


@pytest.mark.usefixtures("keys")
async def test_a_litellm_yaml_config_serves_through_every_provider(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        FakeAzure(api_key=AZURE_KEY, deployments=frozenset({"gpt-4o-eu"})) as azure,
        FakeUpstream(api_key=OPENAI_KEY, name="openai") as openai,
        FakeAnthropic(api_key=ANTHROPIC_KEY) as anthropic,
        FakeUpstream(name="vllm") as vllm,
    ):
        path = tmp_path / "litellm.yaml"
        path.write_text(
            CONFIG.format(
                azure=azure.url, openai=openai.url, anthropic=anthropic.url, vllm=vllm.url
            ),
            encoding="utf-8",
        )
        with caplog.at_level(logging.WARNING, logger="interlock.config"):
            router = Router.from_litellm_config(path, seed=3)
        assert [r.getMessage() for r in caplog.records if r.name == "interlock.config"] == [
            "LiteLLM config: general_settings.master_key: a proxy server setting; interlock is"
            " a library",
            "LiteLLM config: model_list[1].litellm_params.temperature: a default call"
            " parameter; interlock sends what each call passes",
        ]
        async with router:
            served: dict[str, int] = {}
            for _ in range(8):
                r = await router.acompletion(model="gpt-4", messages=USER)  # the alias
                assert isinstance(r, ChatCompletion)
                assert r.group == "gpt-4o"
                assert r.choices[0].message.content == "Hello from FakeUpstream."
                served[r.deployment_id or ""] = served.get(r.deployment_id or "", 0) + 1
            # simple-shuffle became `weighted`: both deployments of the group serve.
            assert set(served) == {"azure-eu", "openai-1"}
            assert azure.received[-1].path == "/openai/deployments/gpt-4o-eu/chat/completions"
            assert openai.received[-1].api_key == OPENAI_KEY

            r = await router.acompletion(model="local", messages=USER)
            assert vllm.received[-1].body is not None
            assert vllm.received[-1].body["model"] == "meta-llama/Llama-3.1-8B-Instruct"

            # The group fails: one retry (num_retries: 1), then the fallback group.
            azure.always(Fault.status(503))
            openai.always(Fault.status(503))
            r = await router.acompletion(model="gpt-4o", messages=USER)
            assert r.group == "claude-sonnet"
            assert anthropic.received[-1].path == "/v1/messages"
            # allowed_fails: 1 and cooldown_time: 30 -> a failed deployment cools for 30 s
            # (at most half of a pool is ejected at once: HealthPolicy.max_ejected_share).
            stats = {s.id: s for s in router.statistics().deployments}
            assert stats["claude-1"].successes == 1
            cooling = [stats[i].cooldown_remaining for i in ("azure-eu", "openai-1")]
            assert 25 < max(cooling) <= 30


@pytest.mark.usefixtures("keys")
def test_the_migration_guide_runs_as_written() -> None:
    """Every python block of docs/migrating-from-litellm.md, in order, each on its own."""
    guide = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-litellm.md"
    blocks = re.findall(r"^```python\n(.*?)^```", guide.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) >= 2
    for n, code in enumerate(blocks, 1):
        namespace: dict[str, Any] = {"__name__": f"guide_block_{n}"}
        exec(compile(code, f"guide block {n}", "exec"), namespace)  # each runs asyncio.run
