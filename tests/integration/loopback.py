"""Helpers for router tests against real FakeUpstream servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from interlock import (
    CachedStream,
    ChatCompletionChunk,
    ChatStream,
    Deployment,
    DeploymentState,
    Request,
    Router,
)
from interlock.testing import FakeUpstream

__all__ = [
    "KEY",
    "MESSAGES",
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
