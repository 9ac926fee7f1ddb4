"""The pipeline with a trace around each call, used in its place when tracing is on.

The Router calls ``run`` of whichever it was built with, so a router without tracing
runs the plain `Pipeline.run` and pays nothing for this module; with tracing, each
call opens its span here and ends it however the call ends (a result, an error, a
cancellation), or hands it to the `ChatStream` it returns, which ends it with the
stream.
"""

from __future__ import annotations

from typing import TypeVar

from interlock.observability.tracing import Tracing
from interlock.router.attempt import Send
from interlock.router.pipeline import Complete, Pipeline
from interlock.types import Request

__all__ = ["TracedPipeline"]

R = TypeVar("R")
T = TypeVar("T")


class TracedPipeline:
    """`Pipeline.run` inside a call span (see interlock/observability/tracing.py)."""

    __slots__ = ("pipeline", "tracing")

    def __init__(self, pipeline: Pipeline, tracing: Tracing) -> None:
        self.pipeline = pipeline
        self.tracing = tracing

    async def run(
        self, request: Request, timeout: float, send: Send[R], complete: Complete[R, T]
    ) -> T:
        trace = request.trace = self.tracing.start(request)
        try:
            result = await self.pipeline.run(request, timeout, send, complete)
        except BaseException as exc:
            trace.end(exc)
            raise
        if not request.stream:  # a stream ends the trace when it ends
            trace.end(None, result)
        return result

    def __repr__(self) -> str:
        return f"<TracedPipeline {self.pipeline!r}>"
