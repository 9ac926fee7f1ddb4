"""Fixtures of the observability tests: a fake clock, an instant transport, and a router with a
hook that records every event."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from interlock import Router
from interlock.testing import FakeClock, InstantTransport
from tests.unit.observability.helpers import Recorder, make_router


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport() -> InstantTransport:
    return InstantTransport()


@pytest.fixture
async def recorder_router(
    transport: InstantTransport, clock: FakeClock
) -> AsyncIterator[tuple[Router, Recorder]]:
    rec = Recorder()
    router = make_router(transport, clock, [rec])
    yield router, rec
    await router.aclose()
