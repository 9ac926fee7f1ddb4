"""Request ids, tags and metadata on the endpoints beyond chat (images, audio,
moderations, rerank, the passthrough) against real FakeUpstreams: a hook sees the
call's id, group, tags and `metadata=` on its start, success and failure events, the
result carries the same id, and an error raised carries it too.

Request bodies follow the API references:
https://platform.openai.com/docs/api-reference/images/create,
https://platform.openai.com/docs/api-reference/audio/createTranscription,
https://platform.openai.com/docs/api-reference/audio/createSpeech,
https://platform.openai.com/docs/api-reference/moderations/create,
rerank as https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html#re-rank-api,
the passthrough's as https://platform.openai.com/docs/api-reference/embeddings/create.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from interlock import (
    ByteStream,
    Deployment,
    InterlockError,
    PassthroughResponse,
    Router,
    StreamInterruptedError,
    UnsupportedEndpointError,
)
from interlock.testing import FakeUpstream, Fault
from tests.integration.loopback import KEY, Recorder, deployment, upstreams

Call = Callable[..., Awaitable[Any]]


async def _images(r: Router, **kw: Any) -> Any:
    return await r.aimage_generation("g", "a red fox", size="1024x1024", **kw)


async def _transcription(r: Router, **kw: Any) -> Any:
    return await r.atranscription("g", ("clip.mp3", b"ID3" + bytes(61)), language="en", **kw)


async def _speech(r: Router, **kw: Any) -> Any:
    return await r.aspeech("g", "Hello there", "alloy", response_format="mp3", **kw)


async def _moderation(r: Router, **kw: Any) -> Any:
    return await r.amoderation("g", ["hello", "I will kill you"], **kw)


async def _rerank(r: Router, **kw: Any) -> Any:
    return await r.arerank("rr", "red fox", ["blue sky", "a red fox"], top_n=1, **kw)


EMBED = {"model": "gpt-test", "input": "hello"}


async def _passthrough(r: Router, **kw: Any) -> Any:
    return await r.arequest("g", "POST", "/embeddings", json=EMBED, **kw)


async def _passthrough_stream(r: Router, **kw: Any) -> Any:
    return await r.arequest("g", "POST", "/embeddings", json=EMBED, stream=True, **kw)


CALLS: dict[str, tuple[Call, str, str]] = {
    # name: (call, group, the request kind its events say)
    "images": (_images, "g", "images"),
    "transcription": (_transcription, "g", "transcription"),
    "speech": (_speech, "g", "speech"),
    "moderation": (_moderation, "g", "moderation"),
    "rerank": (_rerank, "rr", "rerank"),
    "passthrough": (_passthrough, "g", "passthrough"),
    "passthrough_stream": (_passthrough_stream, "g", "passthrough"),
}


def router_for(up: FakeUpstream, hook: Recorder, **options: Any) -> Router:
    # A call's tags select deployments that have them all: these have the tests' tags.
    tags = ["batch", "eu", "t"]
    reranker = Deployment(group="rr", provider="vllm", model="bge-reranker-v2-m3", id="rr0",
                          api_base=up.url, tags=tags)  # fmt: skip
    return Router([deployment(up, tags=tags), reranker], hooks=[hook], seed=3, **options)


async def finish(result: Any) -> Any:
    """A `ByteStream` read to its end (its success event comes then)."""
    if isinstance(result, ByteStream):
        await result.read()
    return result


@pytest.mark.parametrize("name", list(CALLS))
async def test_events_and_result_carry_the_callers_id_tags_and_metadata(name: str) -> None:
    call, group, kind = CALLS[name]
    hook = Recorder()
    meta = {"tenant": "acme", "user": object()}
    async with upstreams(1, stream_chunks=2) as ups, router_for(ups[0], hook) as router:
        result = await finish(
            await call(router, tags=["batch", "eu"], metadata=meta, request_id=f"req-{name}")
        )
        other = await finish(await call(router))
    assert result.request_id == f"req-{name}"
    assert other.request_id
    assert other.request_id != result.request_id
    start, start2 = hook.starts
    assert (start.request_id, start.group, start.requested, start.kind) == (
        f"req-{name}",
        group,
        group,
        kind,
    )
    assert start.tags == {"batch", "eu"}
    assert start.metadata is meta  # handed on as it is, never copied
    ok, ok2 = hook.successes
    assert (ok.request_id, ok.group, ok.tags) == (f"req-{name}", group, frozenset({"batch", "eu"}))
    assert ok.metadata is meta
    # Without the keywords: a fresh id, the same on events and result; empty metadata.
    assert start2.request_id == ok2.request_id == other.request_id
    assert dict(ok2.metadata) == {}
    assert hook.failures == []
    if not isinstance(result, ByteStream | PassthroughResponse):
        assert "request_id" not in result.to_dict()  # the provider's body, as sent


@pytest.mark.parametrize("name", list(CALLS))
async def test_an_error_and_its_failure_event_carry_the_id(name: str) -> None:
    call, group, _ = CALLS[name]
    hook = Recorder()
    async with upstreams(1) as ups, router_for(ups[0], hook) as router:
        # 401: the deployment's failure for every endpoint (the passthrough answers a
        # 400 as it is); with one deployment it is the call's error.
        ups[0].always(Fault.status(401))
        with pytest.raises(InterlockError) as info:
            await call(router, tags=["t"], metadata={"tenant": "acme"}, request_id="req-err")
    assert info.value.request_id == "req-err"
    (failure,) = hook.failures
    assert (failure.request_id, failure.group, failure.tags) == ("req-err", group, frozenset({"t"}))
    assert failure.metadata == {"tenant": "acme"}
    assert hook.successes == []


async def test_a_byte_stream_cut_after_its_first_bytes_carries_the_id() -> None:
    hook = Recorder()
    async with upstreams(1, stream_chunks=3) as ups, router_for(ups[0], hook) as router:
        ups[0].push(Fault.cut_stream(1))
        stream = await router.aspeech("g", "Hello", "alloy", metadata={"k": 1}, request_id="r-cut")
        assert stream.request_id == "r-cut"
        await stream.__anext__()
        with pytest.raises(StreamInterruptedError) as info:
            await stream.__anext__()
    assert info.value.request_id == "r-cut"
    (failure,) = hook.failures
    assert (failure.request_id, failure.metadata) == ("r-cut", {"k": 1})


async def test_unsupported_endpoint_error_carries_the_id() -> None:
    async with upstreams(1) as ups, Router([deployment(ups[0])]) as router:
        with pytest.raises(UnsupportedEndpointError) as info:
            await router.arerank("g", "q", ["d"], request_id="req-unsupported")
    assert info.value.request_id == "req-unsupported"


@pytest.mark.parametrize("name", list(CALLS))
async def test_bad_ids_and_metadata_are_refused_before_anything_is_sent(name: str) -> None:
    call = CALLS[name][0]
    hook = Recorder()
    async with upstreams(1) as ups, router_for(ups[0], hook) as router:
        with pytest.raises(TypeError, match="request_id must be a str"):
            await call(router, request_id=7)
        with pytest.raises(ValueError, match="request_id must be 1 to 256 printable"):
            await call(router, request_id="a\nb")
        with pytest.raises(TypeError, match="metadata must be a mapping"):
            await call(router, metadata=["tenant"])
    assert ups[0].request_count == 0
    assert hook.starts == []


def test_key_stays_out_of_reprs() -> None:
    # The recorded events hold the metadata object, never a deployment's key.
    assert KEY not in repr(Recorder().starts)
