"""Serve ``/metrics`` from aiohttp, on the router's own event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["MetricsServer", "add_metrics_route", "metrics_handler", "serve_metrics"]


def metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler answering with `registry` in the Prometheus text format."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return handle


def add_metrics_route(
    app: web.Application, registry: CollectorRegistry, path: str = "/metrics"
) -> None:
    """Add ``GET path`` serving `registry` to an existing aiohttp application."""
    app.router.add_get(path, metrics_handler(registry))


class MetricsServer:
    """A small aiohttp server for ``/metrics``; use `serve_metrics` to start one."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, path: str) -> None:
        self._runner = runner
        self.host = host
        self.port = port
        self.path = path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    async def aclose(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}>"


async def serve_metrics(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0, path: str = "/metrics"
) -> MetricsServer:
    """Start serving `registry` at ``http://host:port/path``; ``port=0`` picks a free
    port (read it from `.port`). Close it with ``await server.aclose()`` or
    ``async with``."""
    app = web.Application()
    add_metrics_route(app, registry, path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return MetricsServer(runner, host, bound, path)
