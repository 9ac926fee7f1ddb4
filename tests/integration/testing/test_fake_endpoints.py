"""FakeUpstream's images, audio, moderations and rerank routes, read by the official
openai SDK itself (its client parses every response into its own types) and checked
against the documented shapes.

Shapes: https://platform.openai.com/docs/api-reference/images/create,
/audio/createTranscription, /audio/createSpeech, /moderations/create; rerank:
https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html#re-rank-api
"""

from __future__ import annotations

import aiohttp
import openai
import pytest

from interlock.testing import FakeUpstream, Fault
from interlock.testing.fake_endpoints import SPEECH_CHUNK, transcript_of
from tests import sdk_contract_endpoints as sdk

KEY = "sk-fake-endpoints-9QpL2"


def client(up: FakeUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=up.url, api_key=KEY, max_retries=0)


async def test_images_as_the_sdk_reads_them() -> None:
    async with FakeUpstream() as up, client(up) as c:
        r = await c.images.generate(model="gpt-image-1", prompt="a red fox", n=2)
        assert len(r.data or []) == 2
        assert r.usage is not None
        assert r.usage.total_tokens == r.usage.input_tokens + 544
        url = await c.images.generate(prompt="x", response_format="url")
        assert (url.data or [])[0].url
        sdk.image_request(up.received[0].body or {})


async def test_transcription_json_and_text() -> None:
    async with FakeUpstream() as up, client(up) as c:
        audio = b"RIFF" + bytes(396)
        r = await c.audio.transcriptions.create(
            model="whisper-1", file=("clip.wav", audio), language="en"
        )
        assert r.text == transcript_of("clip.wav", audio)
        text = await c.audio.transcriptions.create(
            model="whisper-1", file=("clip.wav", audio), response_format="text"
        )
        assert text == transcript_of("clip.wav", audio)
        body = up.received[0].body or {}
        assert body["file"] == {"file": 400}
        sdk.transcription_fields({k: v for k, v in body.items() if k != "file"})


async def test_speech_streams_audio_bytes() -> None:
    async with FakeUpstream(stream_chunks=3) as up, client(up) as c:
        r = await c.audio.speech.create(model="tts-1", input="Hello", voice="alloy")
        audio = r.read()
        assert len(audio) == 3 * SPEECH_CHUNK
        assert audio.startswith(b"\xff\xfb")
        sdk.speech_request(up.received[0].body or {})


async def test_speech_cut_mid_body() -> None:
    async with FakeUpstream(stream_chunks=3) as up, aiohttp.ClientSession() as s:
        up.push(Fault.cut_stream(1))
        body = {"model": "tts-1", "input": "Hello", "voice": "alloy"}
        headers = {"Authorization": f"Bearer {KEY}"}
        async with s.post(f"{up.url}/audio/speech", json=body, headers=headers) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()


async def test_moderations_as_the_sdk_reads_them() -> None:
    async with FakeUpstream() as up, client(up) as c:
        r = await c.moderations.create(
            model="omni-moderation-latest", input=["I will kill you", "hello"]
        )
        assert [x.flagged for x in r.results] == [True, False]
        assert r.results[0].categories.violence
        sdk.moderation_request(up.received[0].body or {})


async def test_rerank_in_the_documented_shape() -> None:
    async with FakeUpstream() as up, aiohttp.ClientSession() as s:
        body = {"model": "bge-reranker", "query": "red fox",
                "documents": ["blue sky", "a red fox", "red car"], "top_n": 2}  # fmt: skip
        async with s.post(f"{up.url}/rerank", json=body) as resp:
            payload = await resp.json()
        sdk.rerank_request(body)
        sdk.rerank_response(payload)
        assert [r["index"] for r in payload["results"]] == [1, 2]
        assert payload["usage"]["total_tokens"] > 0


async def test_bad_requests_are_400s_in_openais_error_shape() -> None:
    async with FakeUpstream() as up, client(up) as c:
        with pytest.raises(openai.BadRequestError):
            await c.images.generate(prompt="")
        with pytest.raises(openai.BadRequestError):
            await c.moderations.create(input=[])


async def test_faults_apply_to_the_new_routes() -> None:
    async with FakeUpstream() as up, client(up) as c:
        up.push(Fault.status(503))
        with pytest.raises(openai.InternalServerError):
            await c.moderations.create(input="hi")
        up.push(Fault.rate_limit(retry_after=1))
        with pytest.raises(openai.RateLimitError):
            await c.audio.transcriptions.create(model="w", file=("a.mp3", b"x"))
