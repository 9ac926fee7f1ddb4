"""FakeUpstreams in a child process, so a benchmark's client side has its own core.

The child prints the URLs as one JSON line on stdout, answers ``stats`` and ``reset``
lines on stdin (request counts per upstream, as JSON), and serves until its stdin
closes, so it cannot outlive the benchmark that started it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["UpstreamGroup", "upstream_process", "upstreams_process"]


async def _serve(specs: list[dict[str, Any]]) -> None:
    from interlock.testing import FakeUpstream, Fault

    ups: list[FakeUpstream] = []
    try:
        for spec in specs:
            fail = spec.pop("fail_status", None)
            up = FakeUpstream(log_limit=0, **spec)
            if fail is not None:
                up.always(Fault.status(int(fail)))
            await up.start()
            ups.append(up)
        print(json.dumps([up.url for up in ups]), flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):  # "" at EOF
            command = line.strip()
            if command == "reset":
                for up in ups:
                    up.reset_log()
            print(json.dumps([up.request_count for up in ups]), flush=True)
    finally:
        for up in ups:
            await up.stop()


class UpstreamGroup:
    """Handle on the upstreams of a child process started by `upstreams_process`."""

    def __init__(self, urls: list[str], stdin: IO[str], stdout: IO[str]) -> None:
        self.urls = urls
        self._stdin, self._stdout = stdin, stdout

    def _ask(self, command: str) -> list[int]:
        self._stdin.write(command + "\n")
        self._stdin.flush()
        return [int(n) for n in json.loads(self._stdout.readline())]

    def request_counts(self) -> list[int]:
        """Requests each upstream has received since it started or was last reset."""
        return self._ask("stats")

    def reset(self) -> None:
        """Set every upstream's request count back to 0."""
        self._ask("reset")


@contextmanager
def upstreams_process(specs: Sequence[Mapping[str, Any]]) -> Iterator[UpstreamGroup]:
    """Start one FakeUpstream per spec in a single child process.

    A spec holds JSON-serializable `FakeUpstream` arguments, plus ``fail_status``: an
    HTTP status that upstream answers every request with. Stopped on exit.
    """
    # This module's own name, because the suite is `benchmarks` in a checkout and
    # `interlock.bench` in an installed wheel, and only one of them is importable.
    proc = subprocess.Popen(
        [sys.executable, "-m", __spec__.name, json.dumps([dict(s) for s in specs])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("["):
            raise RuntimeError(f"the upstream process did not start (exit code {proc.poll()})")
        yield UpstreamGroup(json.loads(line), proc.stdin, proc.stdout)
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


@contextmanager
def upstream_process(**kwargs: Any) -> Iterator[str]:
    """Start ``FakeUpstream(**kwargs)`` (JSON-serializable arguments) in a child
    process; yields its `url` and stops it on exit."""
    with upstreams_process([kwargs]) as group:
        yield group.urls[0]


if __name__ == "__main__":
    arg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else [{}]
    asyncio.run(_serve(arg if isinstance(arg, list) else [arg]))
