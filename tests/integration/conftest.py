"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from interlock.testing import RedisServer
from tests.integration.loopback import started


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free port of 127.0.0.1 (see `started`)."""
    server = started(RedisServer())
    try:
        yield server
    finally:
        server.stop()
