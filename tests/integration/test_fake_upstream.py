"""FakeUpstream over real loopback sockets, driven by a plain aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import math
import struct
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from interlock.testing import FakeClock, FakeUpstream, Fault

REPLY = "Hello from FakeUpstream."
DISCONNECTS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientPayloadError,
)

Json = dict[str, Any]


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def chat_body(**extra: Any) -> Json:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], **extra}


async def post(
    session: aiohttp.ClientSession, up: FakeUpstream, path: str, body: Json
) -> tuple[int, Json, Mapping[str, str]]:
    async with session.post(up.url + path, json=body) as r:
        return r.status, await r.json(), r.headers


async def read_sse(r: aiohttp.ClientResponse) -> tuple[list[Json], bool, BaseException | None]:
    """Data frames before [DONE], whether [DONE] came, and the error that ended the read."""
    frames: list[Json] = []
    done = False
    error: BaseException | None = None
    try:
        async for raw in r.content:
            line = raw.strip()
            if not line:
                continue
            assert line.startswith(b"data: "), line
            data = line[len(b"data: ") :]
            if data == b"[DONE]":
                done = True
            else:
                assert not done, "data after [DONE]"
                frames.append(json.loads(data))
    except aiohttp.ClientPayloadError as exc:
        error = exc
    return frames, done, error


def assert_error_body(body: Json, *, type_: str | None = None, code: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if type_ is not None:
        assert body["error"]["type"] == type_
    if code is not None:
        assert body["error"]["code"] == code


# -- normal responses -------------------------------------------------------------


async def test_chat_completion_shape_and_usage(
    up: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    messages = [
        {"role": "system", "content": "x" * 10},
        {"role": "user", "content": [{"type": "text", "text": "y" * 7}, {"type": "image_url"}]},
        {"role": "assistant", "content": None},
    ]
    status, body, headers = await post(
        session, up, "/chat/completions", {"model": "gpt-test", "messages": messages}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body["id"].startswith("chatcmpl-fake-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-test"
    assert body["system_fingerprint"] == "fp_fake"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": REPLY},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    prompt, completion = math.ceil(17 / 4), math.ceil(len(REPLY) / 4)
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def test_chat_n_choices_model_override_and_reply_callable(
    session: aiohttp.ClientSession,
) -> None:
    def reply(body: Json) -> str:
        return str(body["messages"][-1]["content"]).upper()

    async with FakeUpstream(model="served-model", reply=reply) as up:
        status, body, _ = await post(session, up, "/chat/completions", chat_body(n=3))
    assert status == 200
    assert body["model"] == "served-model"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in body["choices"]} == {"HI"}
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


async def test_ids_are_unique_and_carry_the_name(session: aiohttp.ClientSession) -> None:
    async with FakeUpstream(name="east") as up:
        ids = {(await post(session, up, "/chat/completions", chat_body()))[1]["id"] for _ in "abc"}
    assert len(ids) == 3
    assert all(i.startswith("chatcmpl-east-") for i in ids)


async def test_stream_frames_in_order_end_with_done(
    up: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    async with session.post(up.url + "/chat/completions", json=chat_body(stream=True)) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        frames, done, error = await read_sse(r)
    assert done
    assert error is None
    assert len(frames) == 1 + 4 + 1
    assert {f["id"] for f in frames} == {frames[0]["id"]}
    assert {f["created"] for f in frames} == {frames[0]["created"]}
    assert all(f["object"] == "chat.completion.chunk" for f in frames)
    assert all("usage" not in f for f in frames)
    assert frames[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [f["choices"][0]["delta"]["content"] for f in frames[1:-1]]
    assert "".join(pieces) == REPLY
    assert all(pieces)
    assert all(f["choices"][0]["finish_reason"] is None for f in frames[:-1])
    assert frames[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert up.received[0].stream
    assert up.received[0].status == 200


async def test_stream_usage_chunk_only_with_include_usage(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeUpstream(stream_chunks=2, chunk_interval=0.001) as up:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        async with session.post(up.url + "/chat/completions", json=body) as r:
            frames, done, error = await read_sse(r)
    assert done
    assert error is None
    assert len(frames) == 1 + 2 + 1 + 1
    assert all(f["usage"] is None for f in frames[:-1])
    assert frames[-1]["choices"] == []
    completion = math.ceil(len(REPLY) / 4)
    assert frames[-1]["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": completion,
        "total_tokens": 1 + completion,
    }


async def test_embeddings_shape_and_determinism(
    up: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    _, first, _ = await post(session, up, "/embeddings", {"model": "emb", "input": ["a", "bcdef"]})
    assert first["object"] == "list"
    assert first["model"] == "emb"
    assert [d["index"] for d in first["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in first["data"])
    vectors = [d["embedding"] for d in first["data"]]
    assert all(len(v) == 8 and all(isinstance(x, float) for x in v) for v in vectors)
    assert vectors[0] != vectors[1]
    assert first["usage"] == {"prompt_tokens": 1 + 2, "total_tokens": 1 + 2}

    _, single, _ = await post(session, up, "/embeddings", {"model": "emb", "input": "a"})
    assert single["data"][0]["embedding"] == vectors[0]

    _, tokens, _ = await post(session, up, "/embeddings", {"input": [[1, 2, 3], [4]]})
    assert [len(d["embedding"]) for d in tokens["data"]] == [8, 8]
    assert tokens["usage"]["prompt_tokens"] == 4
    _, flat, _ = await post(session, up, "/embeddings", {"input": [1, 2, 3]})
    assert flat["data"][0]["embedding"] == tokens["data"][0]["embedding"]


async def test_embeddings_dimensions_base64_and_bad_input(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeUpstream(embedding_dim=4) as up:
        _, plain, _ = await post(session, up, "/embeddings", {"input": "x"})
        _, packed, _ = await post(
            session, up, "/embeddings", {"input": "x", "encoding_format": "base64"}
        )
        _, wide, _ = await post(session, up, "/embeddings", {"input": "x", "dimensions": 16})
        status, error, _ = await post(session, up, "/embeddings", {"input": [1.5]})
    decoded = struct.unpack("<4f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(plain["data"][0]["embedding"], rel=1e-6)
    assert len(wide["data"][0]["embedding"]) == 16
    assert status == 400
    assert_error_body(error, type_="invalid_request_error")
    assert error["error"]["param"] == "input"


async def test_models_endpoint(session: aiohttp.ClientSession) -> None:
    async with FakeUpstream(name="west") as up, session.get(up.url + "/models") as r:
        body = await r.json()
    assert body == {
        "object": "list",
        "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "west"}],
    }


async def test_unknown_path_and_invalid_json(
    up: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    async with session.post(up.url + "/completions/nope", json={}) as r:
        assert r.status == 404
        assert_error_body(await r.json(), type_="invalid_request_error")
    async with session.post(
        up.url + "/chat/completions",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as r:
        assert r.status == 400
        assert_error_body(await r.json(), type_="invalid_request_error")
    assert [e.status for e in up.received] == [404, 400]
    assert up.received[1].body is None


async def test_auth(session: aiohttp.ClientSession) -> None:
    async with FakeUpstream(api_key="sk-right") as up:
        up.push(Fault.status(500))
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
            async with session.post(
                up.url + "/chat/completions", json=chat_body(), headers=headers
            ) as r:
                assert r.status == 401
                assert_error_body(await r.json(), code="invalid_api_key")
        assert up.pending_faults == 1, "a rejected request must not consume a fault"
        ok = {"Authorization": "Bearer sk-right"}
        async with session.get(up.url + "/models", headers=ok) as r:
            assert r.status == 200
        async with session.post(up.url + "/chat/completions", json=chat_body(), headers=ok) as r:
            assert r.status == 500
    log = up.received
    assert [e.api_key for e in log] == [None, "sk-wrong", "sk-right", "sk-right"]
    assert all("sk-" not in repr(e) for e in log)
    assert "sk-right" not in repr(up)


# -- faults -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "name", "value"),
    [
        (Fault.rate_limit(), "Retry-After", "1"),
        (Fault.rate_limit(0.5), "Retry-After", "0.5"),
        (Fault.rate_limit(2.5, header="ms"), "retry-after-ms", "2500"),
    ],
)
async def test_rate_limit_headers(
    up: FakeUpstream, session: aiohttp.ClientSession, fault: Fault, name: str, value: str
) -> None:
    up.push(fault)
    status, body, headers = await post(session, up, "/chat/completions", chat_body())
    assert status == 429
    assert_error_body(body, type_="requests", code="rate_limit_exceeded")
    assert headers[name] == value


async def test_rate_limit_http_date_and_none(
    up: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    up.push(Fault.rate_limit(30, header="http-date"))
    up.push(Fault.rate_limit(None))
    before = time.time()
    _, _, dated = await post(session, up, "/chat/completions", chat_body())
    when = email.utils.parsedate_to_datetime(dated["Retry-After"]).timestamp()
    assert before + 30 - 1 <= when <= time.time() + 30 + 1
    status, _, bare = await post(session, up, "/chat/completions", chat_body())
    assert status == 429
    assert "Retry-After" not in bare
    assert "retry-after-ms" not in bare


@pytest.mark.parametrize(
    ("code", "type_"),
    [
        (500, "server_error"),
        (503, "server_error"),
        (401, "invalid_request_error"),
        (404, "invalid_request_error"),
        (400, "invalid_request_error"),
    ],
)
async def test_status_fault(
    up: FakeUpstream, session: aiohttp.ClientSession, code: int, type_: str
) -> None:
    up.push(Fault.status(code, headers={"x-custom": "1"}))
    status, body, headers = await post(session, up, "/chat/completions", chat_body())
    assert status == code
    assert_error_body(body, type_=type_)
    assert headers["x-custom"] == "1"
    up.push(Fault.status(code, "boom", error_type="t", error_code="c"))
    _, body, _ = await post(session, up, "/embeddings", {"input": "x"})
    assert body["error"] == {"message": "boom", "type": "t", "param": None, "code": "c"}


async def test_context_window_and_content_policy(
    up: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    up.push(Fault.context_window())
    up.push(Fault.content_policy())
    status, body, _ = await post(session, up, "/chat/completions", chat_body())
    assert status == 400
    assert_error_body(body, type_="invalid_request_error", code="context_length_exceeded")
    assert "maximum context length is 8192 tokens" in body["error"]["message"]
    status, body, _ = await post(session, up, "/chat/completions", chat_body())
    assert status == 400
    assert_error_body(body, code="content_policy_violation")
    assert "content policy" in body["error"]["message"]


async def test_delay(up: FakeUpstream, session: aiohttp.ClientSession) -> None:
    up.push(Fault.delay(0.2))
    status, body, _ = await post(session, up, "/chat/completions", chat_body())
    assert status == 200
    assert body["choices"][0]["message"]["content"] == REPLY
    (entry,) = up.received
    assert entry.fault == Fault.delay(0.2)
    assert entry.elapsed is not None
    assert entry.elapsed >= 0.2 - 0.005


async def test_hang_then_stop_is_prompt(session: aiohttp.ClientSession) -> None:
    up = FakeUpstream()
    await up.start()
    up.always(Fault.hang())
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            up.url + "/chat/completions",
            json=chat_body(),
            timeout=aiohttp.ClientTimeout(total=0.2),
        ):
            pass
    pending = asyncio.create_task(session.post(up.url + "/chat/completions", json=chat_body()))
    for _ in range(500):
        if up.request_count == 2 and up.in_flight == 1:
            break
        await asyncio.sleep(0.01)
    assert up.in_flight == 1
    started = time.monotonic()
    await up.stop()
    assert time.monotonic() - started < 1.0
    with pytest.raises(DISCONNECTS):
        await pending
    await up.stop()  # idempotent
    assert up.in_flight == 0
    assert [e.status for e in up.received] == [None, None]


async def test_drop(up: FakeUpstream, session: aiohttp.ClientSession) -> None:
    up.push(Fault.drop())
    with pytest.raises(DISCONNECTS):
        await post(session, up, "/chat/completions", chat_body())
    status, _, _ = await post(session, up, "/chat/completions", chat_body())
    assert status == 200
    assert [e.status for e in up.received] == [None, 200]


async def test_malformed(up: FakeUpstream, session: aiohttp.ClientSession) -> None:
    up.push(Fault.malformed())
    async with session.post(up.url + "/chat/completions", json=chat_body()) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/json")
        raw = await r.read()
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


@pytest.mark.parametrize("k", [0, 1, 3])
async def test_cut_stream(up: FakeUpstream, session: aiohttp.ClientSession, k: int) -> None:
    up.push(Fault.cut_stream(k))
    async with session.post(up.url + "/chat/completions", json=chat_body(stream=True)) as r:
        assert r.status == 200
        frames, done, _ = await read_sse(r)
    assert len(frames) == k
    assert not done
    assert all(f["choices"][0]["finish_reason"] is None for f in frames)
    assert up.received[0].status is None


async def test_cut_stream_on_plain_request_drops(
    up: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    up.push(Fault.cut_stream(2))
    with pytest.raises(DISCONNECTS):
        await post(session, up, "/chat/completions", chat_body())


def test_fault_validation() -> None:
    for make, arg in [
        (lambda: Fault.rate_limit(-1), "retry_after"),
        (lambda: Fault.delay(-0.1), "seconds"),
        (lambda: Fault.delay(math.inf), "seconds"),
        (lambda: Fault.cut_stream(-1), "after_chunks"),
        (lambda: Fault.status(200), "code"),
        (lambda: Fault.context_window(limit=0), "limit"),
    ]:
        with pytest.raises(ValueError, match=arg):
            make()
    with pytest.raises(ValueError, match="latency"):
        FakeUpstream(latency=-1)
    with pytest.raises(ValueError, match="stream_chunks"):
        FakeUpstream(stream_chunks=0)
    with pytest.raises(ValueError, match="times"):
        FakeUpstream().push(Fault.drop(), times=0)
    assert repr(Fault.delay(0.5)) == "Fault(kind='delay', seconds=0.5)"


# -- scripting --------------------------------------------------------------------


async def test_push_order_and_times(up: FakeUpstream, session: aiohttp.ClientSession) -> None:
    up.push(Fault.status(500))
    up.push(Fault.status(503), times=2)
    up.push(Fault.rate_limit(0))
    assert up.pending_faults == 4
    async with session.get(up.url + "/models") as r:
        assert r.status == 200
    assert up.pending_faults == 4, "GET /v1/models takes no fault"
    statuses = []
    for _ in range(5):
        async with session.post(up.url + "/chat/completions", json=chat_body()) as r:
            statuses.append(r.status)
    assert statuses == [500, 503, 503, 429, 200]
    assert up.pending_faults == 0


async def test_concurrent_arrivals_take_faults_in_arrival_order(
    up: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    for code in (500, 501, 502, 503, 504):
        up.push(Fault.status(code))
    await asyncio.gather(*(post(session, up, "/chat/completions", chat_body()) for _ in range(5)))
    log = up.received
    assert [e.seq for e in log] == [0, 1, 2, 3, 4]
    assert [e.status for e in log] == [500, 501, 502, 503, 504]
    assert [e.at for e in log] == sorted(e.at for e in log)


async def test_always_and_clear(up: FakeUpstream, session: aiohttp.ClientSession) -> None:
    up.always(Fault.status(503))
    up.push(Fault.status(500))
    codes = [(await post(session, up, "/chat/completions", chat_body()))[0] for _ in range(3)]
    assert codes == [500, 503, 503]
    up.always(None)
    assert (await post(session, up, "/chat/completions", chat_body()))[0] == 200
    up.always(Fault.status(502))
    up.push(Fault.status(500), times=3)
    up.clear()
    assert up.pending_faults == 0
    assert (await post(session, up, "/chat/completions", chat_body()))[0] == 200


# -- the log ----------------------------------------------------------------------


async def test_log_fields_and_reset(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(50.0)
    async with FakeUpstream(clock=clock.now) as up:
        up.push(Fault.status(500))
        await post(session, up, "/chat/completions", chat_body())
        clock.advance(2.0)
        async with session.post(
            up.url + "/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer sk-1"}
        ) as r:
            await r.read()
        first, second = up.received
        assert (first.seq, first.method, first.path) == (0, "POST", "/v1/chat/completions")
        assert first.body == chat_body()
        assert first.stream is False
        assert (first.at, first.finished_at, first.elapsed) == (50.0, 50.0, 0.0)
        assert first.fault == Fault.status(500)
        assert first.status == 500
        assert first.api_key is None
        assert (second.seq, second.path, second.at, second.status) == (
            1,
            "/v1/embeddings",
            52.0,
            200,
        )
        assert second.fault is None
        assert second.api_key == "sk-1"
        assert second.headers["authorization"] == "Bearer sk-1"
        assert "sk-1" not in repr(second)
        assert up.request_count == 2
        up.reset_log()
        assert up.received == []
        assert up.request_count == 0
        await post(session, up, "/chat/completions", chat_body())
        assert up.received[0].seq == 0


async def test_log_limit_keeps_the_newest(session: aiohttp.ClientSession) -> None:
    async with FakeUpstream(log_limit=2) as up:
        for _ in range(5):
            await post(session, up, "/chat/completions", chat_body())
        assert [e.seq for e in up.received] == [3, 4]
        assert up.request_count == 5


async def test_max_in_flight_under_concurrency(
    up: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    up.push(Fault.delay(0.3), times=10)
    results = await asyncio.gather(
        *(post(session, up, "/chat/completions", chat_body()) for _ in range(10))
    )
    assert [status for status, _, _ in results] == [200] * 10
    assert up.max_in_flight == 10
    assert up.in_flight == 0
    up.reset_log()
    assert up.max_in_flight == 0


# -- lifecycle --------------------------------------------------------------------


async def test_several_upstreams_and_restart(session: aiohttp.ClientSession) -> None:
    async with FakeUpstream(name="a") as a, FakeUpstream(name="b", reply="B") as b:
        assert a.port != b.port
        assert a.url == f"http://127.0.0.1:{a.port}/v1"
        assert a.base_url == f"http://127.0.0.1:{a.port}"
        _, body_b, _ = await post(session, b, "/chat/completions", chat_body())
        assert body_b["choices"][0]["message"]["content"] == "B"
        port = a.port
        await a.stop()
        assert not a.running
        with pytest.raises(aiohttp.ClientConnectorError):
            await post(session, a, "/chat/completions", chat_body())
        await a.start()
        assert a.port == port
        assert (await post(session, a, "/chat/completions", chat_body()))[0] == 200
        with pytest.raises(RuntimeError):
            await a.start()


def test_url_before_start() -> None:
    with pytest.raises(RuntimeError):
        _ = FakeUpstream().url
