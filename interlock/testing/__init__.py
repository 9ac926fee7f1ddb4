"""Public test helpers: fake upstreams speaking the OpenAI, Azure OpenAI, Anthropic,
Gemini, Bedrock and Vertex AI wire formats with scripted faults, and a manual clock.
See docs/testing.md and docs/providers.md."""

from interlock.testing.clock import FakeClock
from interlock.testing.fake_anthropic import FakeAnthropic, ToolReply
from interlock.testing.fake_azure import FakeAzure
from interlock.testing.fake_bedrock import FakeBedrock
from interlock.testing.fake_gemini import FakeGemini
from interlock.testing.fake_upstream import FakeUpstream, ReceivedRequest, Reply
from interlock.testing.fake_vertex import FakeVertex
from interlock.testing.faults import Fault, FaultKind, FaultScript, RetryAfterFormat
from interlock.testing.instant import InstantTransport
from interlock.testing.redis_server import RedisServer, RedisServerError

__all__ = [
    "FakeAnthropic",
    "FakeAzure",
    "FakeBedrock",
    "FakeClock",
    "FakeGemini",
    "FakeUpstream",
    "FakeVertex",
    "Fault",
    "FaultKind",
    "FaultScript",
    "InstantTransport",
    "ReceivedRequest",
    "RedisServer",
    "RedisServerError",
    "Reply",
    "RetryAfterFormat",
    "ToolReply",
]
