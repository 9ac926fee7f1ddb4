"""`EndsEarly`: the ways a caller stops reading a stream before its end (`aclose()`,
leaving ``async with``, dropping the object), shared by the router's streams so each
settles its attempt the same way, exactly once."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["EndsEarly"]


class EndsEarly:
    """A stream that is ended early through its `_abandon`; `_open` says whether its
    attempt is still unsettled."""

    __slots__ = ()

    def _abandon(self) -> None:
        raise NotImplementedError

    def _open(self) -> bool:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop reading; releases the connection and settles the attempt."""
        self._abandon()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._abandon()

    def __del__(self) -> None:
        # A caller that drops the stream without closing it must not leak in-flight.
        try:
            if self._open():
                self._abandon()
        except Exception:
            pass
