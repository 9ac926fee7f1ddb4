"""A router used from a second event loop fails with an error naming the cause, not
aiohttp's "Event loop is closed" (or a hang); closed on its loop, it can be reused.

Bodies: https://platform.openai.com/docs/api-reference/chat/create (FakeUpstream).
"""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from interlock import Deployment, RetryPolicy, Router, WrongEventLoopError
from interlock.testing import FakeUpstream

USER = [{"role": "user", "content": "hi"}]


class UpstreamThread:
    """A FakeUpstream on a loop of its own (in a thread), so that the test's loops can
    come and go around it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.up = FakeUpstream()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeUpstream:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.up.start(), self.loop).result(10)
        return self.up

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.up.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def make(up: FakeUpstream) -> Router:
    return Router(
        [Deployment(group="g", model="m", api_base=up.url)],
        retry=RetryPolicy(max_attempts=3, max_wait=0),
    )


async def ask(router: Router) -> str:
    r = await router.acompletion("g", USER)
    return str(r.choices[0].message.content)


# The router below is never closed, on purpose (its loop is gone): collect it here so
# that aiohttp's "unclosed" warnings are this test's, and expected.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_second_loop_gets_a_clear_error_while_the_first_loops_session_is_open() -> None:
    with UpstreamThread() as up:
        router = make(up)
        assert asyncio.run(ask(router)) == "Hello from FakeUpstream."  # never closed
        with pytest.raises(WrongEventLoopError, match="another event loop, which is closed"):
            asyncio.run(ask(router))
        # The error is the caller's, not the deployment's: nothing was counted.
        (stats,) = router.statistics().deployments
        assert stats.failures == 0
        assert stats.in_flight == 0
        assert up.request_count == 1
        del router
        gc.collect()


def test_the_same_holds_for_streams_and_a_running_first_loop() -> None:
    with UpstreamThread() as up:
        router = make(up)
        other = asyncio.new_event_loop()
        try:
            assert other.run_until_complete(ask(router)) == "Hello from FakeUpstream."

            async def stream() -> None:
                await router.acompletion("g", USER, stream=True)

            with pytest.raises(WrongEventLoopError, match="which is still open"):
                asyncio.run(stream())
            other.run_until_complete(router.aclose())
        finally:
            other.close()


def test_a_router_closed_on_its_loop_works_on_the_next() -> None:
    with UpstreamThread() as up:
        router = make(up)

        async def lifespan() -> str:
            async with router:
                return await ask(router)

        assert asyncio.run(lifespan()) == "Hello from FakeUpstream."
        assert asyncio.run(lifespan()) == "Hello from FakeUpstream."
        assert up.request_count == 2


def test_the_error_is_a_runtime_error_not_an_upstream_error() -> None:
    from interlock import InterlockError

    assert issubclass(WrongEventLoopError, RuntimeError)
    assert not issubclass(WrongEventLoopError, InterlockError)
