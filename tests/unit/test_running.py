"""`interlock.running.task_on`: what `asyncio.current_task(loop)` answers, for the
loop it is given, inside a task, outside one, and for another loop."""

from __future__ import annotations

import asyncio

from interlock.running import task_on


async def test_inside_a_task_it_is_that_task() -> None:
    loop = asyncio.get_running_loop()
    assert task_on(loop) is asyncio.current_task()

    async def inner() -> asyncio.Task[object] | None:
        return task_on(asyncio.get_running_loop())

    task = asyncio.create_task(inner())
    assert await task is task  # the task running now, not the one that started it


async def test_outside_a_task_it_is_none() -> None:
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[object] = loop.create_future()
    # A plain loop callback runs in no task.
    loop.call_soon(lambda: seen.set_result(task_on(loop)))
    assert await seen is None


async def test_another_loop_has_no_task_running() -> None:
    other = asyncio.new_event_loop()
    try:
        assert task_on(other) is None
    finally:
        other.close()
