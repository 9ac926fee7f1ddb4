"""Images, audio, moderations, rerank and the passthrough through a Router over real
FakeUpstreams: success (with the openai SDK's types checking interlock's requests and
results), failover, streams cut before and after their first bytes, accounting, and
what a provider without the endpoint does.

Wire shapes: https://platform.openai.com/docs/api-reference/images/create,
/audio/createTranscription, /audio/createSpeech, /moderations/create; rerank as
https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html#re-rank-api.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from interlock import (
    AuthenticationError,
    ByteStream,
    DeadlineExceededError,
    Deployment,
    InternalServerError,
    PassthroughResponse,
    Router,
    StreamInterruptedError,
    UnsupportedEndpointError,
)
from interlock.testing import FakeAnthropic, FakeAzure, FakeUpstream, Fault
from interlock.testing.fake_endpoints import SPEECH_CHUNK, transcript_of
from tests import sdk_contract_endpoints as sdk
from tests.integration.loopback import KEY, assert_clean, first_candidate, router_over, upstreams


def served(router: Router) -> dict[str, tuple[int, int, int]]:
    """Per deployment: (requests, successes, failures)."""
    return {s.id: (s.requests, s.successes, s.failures) for s in router.statistics().deployments}


def in_flight(router: Router) -> int:
    return sum(s.in_flight for s in router.parts.states)


async def test_images_success_failover_and_tokens() -> None:
    async with upstreams(2) as ups:
        ups[0].push(Fault.status(500))
        async with router_over(ups, strategy=first_candidate) as router:
            r = await router.aimage_generation("g", "a red fox", size="1024x1024", n=2)
        assert r.deployment_id == "u1"
        assert len(r.data) == 2
        assert r.data[0].b64_json
        sdk.images_response(r.to_dict())
        body = ups[1].received[0].body or {}
        sdk.image_request(body)
        assert body == {"model": "gpt-test", "prompt": "a red fox", "size": "1024x1024", "n": 2}
        assert served(router) == {"u0": (1, 0, 1), "u1": (1, 1, 0)}
        state = router.parts.states[1]
        assert r.usage is not None
        assert r.usage.completion_tokens == 544
        assert (state.input_tokens, state.output_tokens) == (r.usage.prompt_tokens, 544)
        assert in_flight(router) == 0


@pytest.mark.parametrize("form", ["bytes", "path", "fileobj", "tuple"])
async def test_transcription_uploads(form: str, tmp_path: Path) -> None:
    audio = b"ID3" + bytes(297)
    file: Any
    kw: dict[str, Any]
    if form == "bytes":
        file, kw = audio, {"filename": "clip.mp3"}
    elif form == "path":
        (tmp_path / "clip.mp3").write_bytes(audio)
        file, kw = tmp_path / "clip.mp3", {}
    elif form == "fileobj":
        file, kw = io.BytesIO(audio), {"filename": "clip.mp3"}
    else:
        file, kw = ("clip.mp3", audio, "audio/mpeg"), {}
    async with upstreams(1) as ups, router_over(ups) as router:
        t = await router.atranscription("g", file, language="en", temperature=0.2, **kw)
    assert t.text == transcript_of("clip.mp3", audio)
    sdk.transcription_response(t.to_dict())
    body = ups[0].received[0].body or {}
    assert body.pop("file") == {"file": len(audio)}
    sdk.transcription_fields(body)
    assert t.usage is not None
    assert router.parts.states[0].output_tokens == t.usage.completion_tokens


async def test_transcription_text_format_and_failover() -> None:
    async with upstreams(2) as ups:
        ups[0].push(Fault.rate_limit(retry_after=30))
        async with router_over(ups, strategy=first_candidate) as router:
            t = await router.atranscription("g", ("a.wav", b"RIFF"), response_format="text")
        assert t.text == transcript_of("a.wav", b"RIFF")
        assert t.usage is None
        assert t.deployment_id == "u1"
        assert router.parts.states[0].cooldown_until > router.parts.clock.now()


async def test_speech_streams_and_settles() -> None:
    async with upstreams(1, stream_chunks=3) as ups, router_over(ups) as router:
        stream = await router.aspeech("g", "Hello there", "alloy", response_format="mp3")
        assert isinstance(stream, ByteStream)
        assert stream.status == 200
        assert in_flight(router) == 1
        audio = await stream.read()
    assert len(audio) == 3 * SPEECH_CHUNK
    assert audio.startswith(b"\xff\xfb")
    assert stream.headers["content-type"] == "audio/mpeg"
    sdk.speech_request(ups[0].received[0].body or {})
    assert served(router) == {"u0": (1, 1, 0)}
    assert in_flight(router) == 0


async def test_speech_cut_before_first_bytes_fails_over() -> None:
    async with upstreams(2, stream_chunks=3) as ups:
        ups[0].push(Fault.cut_stream(0))
        async with router_over(ups, strategy=first_candidate) as router:
            stream = await router.aspeech("g", "Hello", "alloy")
            audio = await stream.read()
        assert stream.deployment_id == "u1"
        assert len(audio) == 3 * SPEECH_CHUNK
        assert served(router) == {"u0": (1, 0, 1), "u1": (1, 1, 0)}


async def test_speech_cut_after_first_bytes_raises_and_counts() -> None:
    async with upstreams(2, stream_chunks=3) as ups:
        ups[0].push(Fault.cut_stream(1))
        async with router_over(ups, strategy=first_candidate) as router:
            stream = await router.aspeech("g", "Hello", "alloy")
            first = await stream.__anext__()
            with pytest.raises(StreamInterruptedError) as info:
                await stream.__anext__()
        assert first.startswith(b"\xff\xfb")
        assert stream.deployment_id == "u0"
        assert_clean(info.value, KEY)
        assert served(router)["u0"] == (1, 0, 1)
        assert in_flight(router) == 0


async def test_speech_closed_early_settles() -> None:
    async with upstreams(1, stream_chunks=3) as ups, router_over(ups) as router:
        async with await router.aspeech("g", "Hello", "alloy") as stream:
            assert (await stream.__anext__()).startswith(b"\xff\xfb")
        assert in_flight(router) == 0
        assert served(router)["u0"] == (1, 0, 0)


async def test_moderation_success_and_failover() -> None:
    async with upstreams(2) as ups:
        ups[0].push(Fault.status(503))
        async with router_over(ups, strategy=first_candidate) as router:
            m = await router.amoderation("g", ["I will kill you", "hello"])
        assert [x.flagged for x in m.results] == [True, False]
        assert m.results[0].categories["violence"]
        assert m.deployment_id == "u1"
        sdk.moderation_response(m.to_dict())
        sdk.moderation_request(ups[1].received[0].body or {})
        assert served(router) == {"u0": (1, 0, 1), "u1": (1, 1, 0)}


def vllm(up: FakeUpstream, ident: str, group: str = "rr") -> Deployment:
    return Deployment(group=group, provider="vllm", model="bge-reranker-v2-m3", id=ident,
                      api_base=up.url)  # fmt: skip


async def test_rerank_success_failover_and_tokens() -> None:
    async with upstreams(2) as ups:
        ups[0].push(Fault.drop())
        router = Router([vllm(ups[0], "r0"), vllm(ups[1], "r1")], strategy=first_candidate)
        async with router:
            r = await router.arerank("rr", "red fox", ["blue sky", "a red fox", "red car"], top_n=2)
        assert [x.index for x in r.results] == [1, 2]
        assert r.deployment_id == "r1"
        assert r.results[0].document == {"text": "a red fox"}
        sdk.rerank_response(r.to_dict())
        sdk.rerank_request(ups[1].received[0].body or {})
        assert r.usage is not None
        assert router.parts.states[1].input_tokens == r.usage.total_tokens
        assert served(router) == {"r0": (1, 0, 1), "r1": (1, 1, 0)}


async def test_unsupported_endpoint_is_a_clear_error_at_the_call() -> None:
    async with upstreams(1) as ups, router_over(ups) as router:
        with pytest.raises(UnsupportedEndpointError) as info:
            await router.arerank("g", "q", ["d"])
    assert "rerank" in str(info.value)
    assert "'g'" in str(info.value)
    assert "openai" in str(info.value)
    assert ups[0].request_count == 0


async def test_mixed_group_uses_only_capable_deployments() -> None:
    async with upstreams(2) as ups:
        # The first candidate would be the OpenAI deployment, which has no rerank.
        openai = Deployment(group="rr", provider="openai", model="m", id="o", api_base=ups[0].url,
                            api_key=KEY)  # fmt: skip
        router = Router([openai, vllm(ups[1], "v")], strategy=first_candidate)
        async with router:
            for _ in range(3):
                r = await router.arerank("rr", "fox", ["fox", "dog"])
                assert r.deployment_id == "v"
            chat = await router.acompletion("rr", [{"role": "user", "content": "hi"}])
        assert chat.deployment_id == "o"
        assert ups[0].request_count == 1


async def test_azure_images_and_speech() -> None:
    async with FakeAzure(stream_chunks=2, api_key=KEY) as az:
        d = Deployment(group="g", provider="azure", model="dalle", api_base=az.url, api_key=KEY)
        async with Router([d]) as router:
            r = await router.aimage_generation("g", "a fox")
            audio = await (await router.aspeech("g", "hi", "alloy")).read()
            with pytest.raises(UnsupportedEndpointError):
                await router.amoderation("g", "hi")
        assert len(r.data) == 1
        assert len(audio) == 2 * SPEECH_CHUNK
        paths = [x.path for x in az.received]
        assert paths == ["/openai/deployments/dalle/images/generations",
                         "/openai/deployments/dalle/audio/speech"]  # fmt: skip
        assert "model" not in (az.received[0].body or {})


# --- the passthrough ----------------------------------------------------------------


async def test_passthrough_get_and_post_with_usage() -> None:
    async with upstreams(1) as ups, router_over(ups) as router:
        models = await router.arequest("g", "GET", "/models")
        assert isinstance(models, PassthroughResponse)
        assert models.ok
        assert models.json()["object"] == "list"
        # https://platform.openai.com/docs/api-reference/chat/create
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
        chat = await router.arequest("g", "POST", "chat/completions", json=body,
                                     headers={"X-Trace": "1"})  # fmt: skip
        assert isinstance(chat, PassthroughResponse)
        assert chat.usage is not None
        state = router.parts.states[0]
        assert state.output_tokens == chat.usage.completion_tokens
        sent = ups[0].received[1]
        assert sent.headers["X-Trace"] == "1"
        assert sent.api_key == KEY
        assert served(router) == {"u0": (2, 2, 0)}


async def test_passthrough_4xx_is_an_answer_5xx_moves_on() -> None:
    async with upstreams(2) as ups:
        ups[0].push(Fault.status(502))
        async with router_over(ups, strategy=first_candidate) as router:
            # An unknown path takes no fault in the fake: the 502 goes to the second call.
            missing = await router.arequest("g", "GET", "/nothing-here")
            assert isinstance(missing, PassthroughResponse)
            assert missing.status == 404
            assert missing.deployment_id == "u0"
            bad = await router.arequest("g", "POST", "/moderations", json={})
            assert isinstance(bad, PassthroughResponse)
            assert bad.status == 400
            assert bad.deployment_id == "u1"
            assert bad.usage is None
        assert served(router) == {"u0": (2, 1, 1), "u1": (1, 1, 0)}


async def test_passthrough_bad_key_moves_on_and_last_failure_raises() -> None:
    async with upstreams(2) as ups:
        ups[0].always(Fault.status(401))
        ups[1].always(Fault.status(500))
        async with router_over(ups, strategy=first_candidate) as router:
            with pytest.raises(InternalServerError) as info:
                # https://platform.openai.com/docs/api-reference/embeddings/create
                await router.arequest("g", "POST", "/embeddings", json={"input": "x"})
        assert_clean(info.value, KEY)
        assert [a.deployment_id for a in info.value.attempts][:2] == ["u0", "u1"]
        assert served(router)["u0"][2] == 1


async def test_passthrough_auth_error_alone() -> None:
    async with upstreams(1) as ups:
        ups[0].always(Fault.status(401))
        async with router_over(ups) as router:
            with pytest.raises(AuthenticationError):
                # https://platform.openai.com/docs/api-reference/embeddings/create
                await router.arequest("g", "POST", "/embeddings", json={"input": "x"})


async def test_passthrough_stream_cut_before_and_after_first_bytes() -> None:
    speech = {"model": "tts-1", "input": "hello", "voice": "alloy"}
    async with upstreams(2, stream_chunks=2) as ups:
        ups[0].push(Fault.cut_stream(0))
        ups[0].push(Fault.cut_stream(1))
        async with router_over(ups, strategy=first_candidate) as router:
            s = await router.arequest("g", "POST", "/audio/speech", json=speech, stream=True)
            assert isinstance(s, ByteStream)
            assert s.deployment_id == "u1"
            assert len(await s.read()) == 2 * SPEECH_CHUNK
            s = await router.arequest("g", "POST", "/audio/speech", json=speech, stream=True)
            assert isinstance(s, ByteStream)
            with pytest.raises(StreamInterruptedError):
                await s.read()
            assert s.deployment_id == "u0"
            assert in_flight(router) == 0


async def test_passthrough_refuses_paths_outside_the_base() -> None:
    async with upstreams(1) as ups, router_over(ups) as router:
        for path in ("http://evil.example/x", "//evil.example/x", "../admin", "a/../../b"):
            with pytest.raises(ValueError, match="relative"):
                await router.arequest("g", "GET", path)
        with pytest.raises(ValueError, match="method"):
            await router.arequest("g", "FETCH", "/models")
        with pytest.raises(TypeError):
            await router.arequest("g", "POST", "/x", json={}, data=b"")
    assert ups[0].request_count == 0


async def test_hedging_applies_to_whole_bodies_not_to_audio_streams() -> None:
    async with upstreams(2) as ups:
        hedging = {"g": {"delay": 0.05}}
        async with router_over(ups, strategy=first_candidate, hedging=hedging) as router:
            ups[0].push(Fault.delay(0.5))
            image = await router.aimage_generation("g", "a fox")
            assert image.deployment_id == "u1"  # the hedge answered first
            ups[0].push(Fault.delay(0.2))
            stream = await router.aspeech("g", "hi", "alloy")
            await stream.read()
        assert stream.deployment_id == "u0"
        assert ups[1].request_count == 1  # the image's hedge only


async def test_speech_past_the_calls_deadline_is_not_the_deployments_fault() -> None:
    async with upstreams(1, stream_chunks=3, chunk_interval=2.0) as ups:
        async with router_over(ups) as router:
            stream = await router.aspeech("g", "Hello", "alloy", timeout=0.3)
            await stream.__anext__()  # the first chunk comes at once
            with pytest.raises(DeadlineExceededError):
                await stream.__anext__()
        assert served(router)["u0"] == (1, 0, 0)
        assert in_flight(router) == 0


async def test_passthrough_to_anthropic_with_its_own_credentials() -> None:
    # https://docs.anthropic.com/en/api/messages: x-api-key and anthropic-version headers.
    async with FakeAnthropic(api_key=KEY) as up:
        d = Deployment(group="c", provider="anthropic", model="claude-x", api_base=up.url,
                       api_key=KEY)  # fmt: skip
        body = {"model": "claude-x", "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        async with Router([d]) as router:
            r = await router.arequest("c", "POST", "/messages", json=body)
        assert isinstance(r, PassthroughResponse)
        assert r.status == 200
        assert r.json()["type"] == "message"
        assert up.received[0].api_key == KEY
