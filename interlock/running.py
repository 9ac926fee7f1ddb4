"""The task running on a loop, asked on the hot paths that need it once per streamed
chunk (a stream's reader and its idle timer).

On CPython 3.11 `asyncio.current_task` is a Python function that looks up the running
loop and then its current task; per chunk that call is a visible share of the
router's work. A stream already knows its loop, so it needs only the lookup:
`task_on(loop)` is that lookup itself, one C call (from 3.12 on,
`asyncio.current_task(loop)`, which is C there). It answers for `loop` only: call it
with the loop the caller runs on.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["task_on"]

task_on: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]
"""``task_on(loop)``: the task running on `loop` now, or None; what
``asyncio.current_task(loop)`` returns."""

if sys.version_info >= (3, 12):
    task_on = asyncio.current_task
else:
    # The table `asyncio.current_task` reads on 3.11 (the C one when asyncio's C
    # accelerator is loaded), keyed by loop.
    task_on = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
