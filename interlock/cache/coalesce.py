"""Request coalescing: identical requests in flight at once share one provider call.

The first request for a key becomes the leader and calls the provider; requests for
the same key that arrive before it finishes become followers and wait for its
outcome instead of calling. What followers get:

- the leader succeeded: its response, serialized once and decoded afresh for each
  follower (no shared mutable objects);
- the leader failed with an `InterlockError`: the same error (they asked the same
  question of the same providers), except `DeadlineExceededError`, which says only
  that the leader's deadline passed;
- the leader was cancelled, its deadline passed, or its response could not be
  serialized: the flight is *abandoned* and each follower looks again, so the first
  to wake leads a new provider call and the rest follow it. A cancelled leader never
  strands its followers.

A follower waits no longer than its own deadline; a follower that is cancelled
leaves the flight without affecting it.
"""

from __future__ import annotations

import asyncio

from interlock.errors import InterlockError

__all__ = ["Flight"]


class Flight:
    """One provider call that identical requests are waiting on."""

    __slots__ = ("_done", "data", "error", "waiters")

    def __init__(self) -> None:
        self._done = asyncio.Event()
        self.data: bytes | None = None
        """The serialized response, when the leader succeeded."""
        self.error: InterlockError | None = None
        """The leader's error, to be raised by every follower."""
        self.waiters = 0
        """Followers currently waiting."""

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def abandoned(self) -> bool:
        """Done with neither a response nor an error: followers must call themselves."""
        return self._done.is_set() and self.data is None and self.error is None

    def succeed(self, data: bytes | None) -> None:
        """Hand `data` to every follower (None abandons the flight)."""
        self.data = data
        self._done.set()

    def fail(self, error: InterlockError) -> None:
        self.error = error
        self._done.set()

    def abandon(self) -> None:
        self._done.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for the outcome; False if `timeout` seconds passed first."""
        if self._done.is_set():
            return True
        self.waiters += 1
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError:
            return False
        finally:
            self.waiters -= 1
        return True

    def __repr__(self) -> str:
        if not self.done:
            state = "in flight"
        elif self.error is not None:
            state = f"failed ({type(self.error).__name__})"
        else:
            state = "abandoned" if self.data is None else "succeeded"
        return f"<Flight {state} waiters={self.waiters}>"
