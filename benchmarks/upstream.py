"""A FakeUpstream in a child process, so a benchmark's client side has its own core.

The child prints its URL on stdout and serves until its stdin closes, so it cannot
outlive the benchmark that started it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["upstream_process"]


async def _serve(kwargs: dict[str, Any]) -> None:
    from interlock.testing import FakeUpstream

    async with FakeUpstream(log_limit=0, **kwargs) as up:
        print(up.url, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # returns at EOF


@contextmanager
def upstream_process(**kwargs: Any) -> Iterator[str]:
    """Start ``FakeUpstream(**kwargs)`` (JSON-serializable arguments) in a child
    process; yields its `url` and stops it on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.upstream", json.dumps(kwargs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the upstream process did not start (exit code {proc.poll()})")
        yield url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    asyncio.run(_serve(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
