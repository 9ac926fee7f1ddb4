"""Public test helpers: a fake OpenAI-compatible upstream with scripted faults, and a
manual clock. See docs/testing.md."""

from interlock.testing.clock import FakeClock
from interlock.testing.fake_upstream import FakeUpstream, ReceivedRequest, Reply
from interlock.testing.faults import Fault, FaultKind, FaultScript, RetryAfterFormat
from interlock.testing.instant import InstantTransport

__all__ = [
    "FakeClock",
    "FakeUpstream",
    "Fault",
    "FaultKind",
    "FaultScript",
    "InstantTransport",
    "ReceivedRequest",
    "Reply",
    "RetryAfterFormat",
]
