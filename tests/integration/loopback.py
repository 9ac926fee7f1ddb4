"""Helpers for router tests against real FakeUpstream servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from interlock import (
    CachedStream,
    ChatCompletionChunk,
    ChatStream,
    Deployment,
    DeploymentState,
    FailureEvent,
    Hook,
    InterlockError,
    Request,
    RequestStartEvent,
    Router,
    SuccessEvent,
)
from interlock.testing import FakeUpstream, RedisServer, RedisServerError

__all__ = [
    "KEY",
    "MESSAGES",
    "assert_clean",
    "deployment",
    "drain_into",
    "eventually",
    "first_candidate",
    "router_over",
    "upstreams",
]

KEY = "sk-loopback-4fJ9qQx2ZpL7"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Say hello, please."}]


@asynccontextmanager
async def upstreams(n: int, **options: Any) -> AsyncIterator[list[FakeUpstream]]:
    """`n` running FakeUpstreams named u0..u{n-1}, stopped on exit."""
    async with AsyncExitStack() as stack:
        ups = [
            await stack.enter_async_context(FakeUpstream(name=f"u{i}", **options)) for i in range(n)
        ]
        yield ups


class Recorder(Hook):
    """Keeps the start, success and failure events a router sends its hooks."""

    def __init__(self) -> None:
        self.starts: list[RequestStartEvent] = []
        self.successes: list[SuccessEvent] = []
        self.failures: list[FailureEvent] = []

    def on_request_start(self, event: RequestStartEvent) -> None:
        self.starts.append(event)

    def on_success(self, event: SuccessEvent) -> None:
        self.successes.append(event)

    def on_failure(self, event: FailureEvent) -> None:
        self.failures.append(event)


def deployment(up: FakeUpstream, group: str = "g", **fields: Any) -> Deployment:
    fields.setdefault("api_key", KEY)
    return Deployment(group=group, model="gpt-test", id=up.name, api_base=up.url, **fields)


def first_candidate(candidates: Sequence[DeploymentState], request: Request) -> DeploymentState:
    """Always the first eligible deployment, so a test knows which one is tried."""
    return candidates[0]


def router_over(ups: Sequence[FakeUpstream], **options: Any) -> Router:
    per_deployment = options.pop("deployment", {})
    options.setdefault("seed", 2024)
    return Router([deployment(up, **per_deployment) for up in ups], **options)


async def drain_into(stream: ChatStream | CachedStream, got: list[ChatCompletionChunk]) -> None:
    """Read `stream` to its end (or its error) into `got`; a stall fails after 10 s."""
    async with asyncio.timeout(10):
        async for chunk in stream:
            got.append(chunk)


async def eventually(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait for something another party does over a socket (bounded, never timed)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - the condition changes on a socket's far side
            await asyncio.sleep(0.005)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything on its __cause__/__context__ chain."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """Only interlock errors on the chain of `exc` (nothing of aiohttp's, orjson's or
    redis', which may hold what the upstream sent), and no secret in any of them or in
    the rendered traceback."""
    for e in chain(exc):
        assert isinstance(e, InterlockError), f"{type(e).__name__} on the chain of {exc!r}"
        for s in secrets:
            assert s not in repr(e.args)
            assert s not in str(e)
    text = "".join(traceback.format_exception(exc))
    for s in secrets:
        assert s not in text


def started(server: RedisServer) -> RedisServer:
    """`server` started; a test that cannot start it fails under ``CI=true`` (CI must
    test the Redis paths) and is skipped elsewhere."""
    try:
        server.start()
    except RedisServerError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs a working redis-server: {exc}")
        pytest.skip(f"redis-server unavailable: {exc}")
    return server
