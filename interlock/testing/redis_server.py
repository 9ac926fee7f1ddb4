"""A real `redis-server` on 127.0.0.1, for tests and benchmarks of shared state."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Self

__all__ = ["RedisServer", "RedisServerError"]


class RedisServerError(RuntimeError):
    """redis-server is not installed or did not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """Starts ``redis-server`` on a free port of 127.0.0.1 with persistence off, and
    stops exactly that process (by its pid).

        with RedisServer() as server:
            url = server.url   # redis://127.0.0.1:<port>/0

    `start()` raises `RedisServerError` when the binary is missing or the server does
    not answer PING within `startup_timeout` seconds (three ports are tried, in case
    another process takes the free port first). After `stop()`, `start()` again uses
    the same port, so "Redis went away and came back" is easy to test.
    """

    def __init__(
        self, binary: str | None = None, *, port: int = 0, startup_timeout: float = 10.0
    ) -> None:
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.startup_timeout = startup_timeout
        self.port = port
        """The port; 0 (the default) picks a free one, kept across stop() and start()."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        if self._proc is None:
            raise RedisServerError("the server is not running")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self._proc is not None:
            return
        last = "no attempt made"
        for _ in range(1 if self.port else 3):
            port = self.port or _free_port()
            self._dir = tempfile.TemporaryDirectory(prefix="interlock-redis-")
            try:
                proc = subprocess.Popen(
                    [
                        self.binary,
                        "--port", str(port),
                        "--bind", "127.0.0.1",
                        "--save", "",
                        "--appendonly", "no",
                        "--dir", self._dir.name,
                        "--loglevel", "warning",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )  # fmt: skip
            except OSError as exc:
                self._dir.cleanup()
                raise RedisServerError(f"cannot run {self.binary}: {exc}") from None
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if _ping(port):
                    self._proc, self.port = proc, port
                    return
                time.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate()
            last = err.decode(errors="replace").strip()[-300:] or f"exit {proc.returncode}"
            self._dir.cleanup()
        raise RedisServerError(f"redis-server did not start: {last}")

    def stop(self) -> None:
        """Stop the server this object started; idempotent."""
        self._end(crash=False)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would: no clean shutdown, open
        connections simply break. `start()` brings it back on the same port."""
        self._end(crash=True)

    def _end(self, *, crash: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if crash:
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on port {self.port}" if self._proc is not None else "stopped"
        return f"<RedisServer {state}>"
