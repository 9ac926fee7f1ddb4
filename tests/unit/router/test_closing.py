"""EndsEarly: every way of stopping a stream early settles it through `_abandon`."""

from __future__ import annotations

import gc

from interlock.router.closing import EndsEarly


class _Stream(EndsEarly):
    __slots__ = ("abandoned", "settled")

    def __init__(self, log: list[str]) -> None:
        self.settled = False
        self.abandoned = log

    def _abandon(self) -> None:
        self.abandoned.append("abandon")
        self.settled = True

    def _open(self) -> bool:
        return not self.settled


async def test_aclose_and_async_with_end_the_stream() -> None:
    log: list[str] = []
    s = _Stream(log)
    await s.aclose()
    async with _Stream(log) as t:
        assert isinstance(t, _Stream)
    assert log == ["abandon", "abandon"]


def test_a_dropped_open_stream_is_ended_once_and_a_settled_one_not_again() -> None:
    log: list[str] = []
    _Stream(log)  # dropped while open
    gc.collect()
    assert log == ["abandon"]
    s = _Stream(log)
    s._abandon()
    del s
    gc.collect()
    assert log == ["abandon", "abandon"]
