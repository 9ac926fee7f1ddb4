"""`interlock/policies.py`: `Budget`, `SharedState`, `QueuePolicy`, `CacheConfig` validation."""

from __future__ import annotations

import pytest

from interlock import Budget, CacheConfig, ConfigError, QueuePolicy, SharedState
from interlock.cache import ResponseCache
from interlock.testing import FakeClock

# --- budgets ------------------------------------------------------------------------------


def test_budget_period_parsing_and_errors() -> None:
    assert Budget(scope="group", name="g", limit_usd=1, period="1d").period == 86400
    assert Budget(scope="group", name="g", limit_usd=1, period="90s").period == 90
    assert Budget(scope="group", name="g", limit_usd=1, period=30).period == 30
    with pytest.raises(ConfigError, match=r"period: must be seconds or a number with a unit"):
        Budget(scope="group", name="g", limit_usd=1, period="1 fortnight")
    with pytest.raises(ConfigError, match=r"limit_usd: must be > 0"):
        Budget(scope="group", name="g", limit_usd=0, period="1h")


def test_shared_state_config_never_echoes_the_url() -> None:
    with pytest.raises(ConfigError) as info:
        SharedState(url="http://user:secret@host")
    assert "secret" not in str(info.value)
    assert "secret" not in repr(SharedState(url="redis://:secret@127.0.0.1:1/0"))
    with pytest.raises(ConfigError, match="max_wait: must be >= 0"):
        QueuePolicy(max_wait=-1)


# --- configuration and policy -----------------------------------------------------------


def test_config_errors_name_the_field_and_hide_the_url() -> None:
    with pytest.raises(ConfigError, match=r"ttl: must be > 0"):
        CacheConfig(ttl=0)
    with pytest.raises(ConfigError, match="needs redis_url"):
        CacheConfig(backend="redis")
    with pytest.raises(ConfigError) as info:
        CacheConfig(redis_url="http://user:hunter2@host")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(CacheConfig(redis_url="redis://:hunter2@h:1/0"))
    with pytest.raises(ConfigError, match=r"cache.groups.nope: is not a group"):
        ResponseCache(CacheConfig(groups={"nope": {}}), ["g"], FakeClock())
