"""FakeUpstream over real loopback sockets, driven by a plain aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import json
import math
import struct
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import pytest

from interlock.testing import FakeClock, FakeUpstream, Fault

Json = dict[str, Any]
Session = aiohttp.ClientSession
REPLY = "Hello from FakeUpstream."
DISCONNECTS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)


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
    session: Session, up: FakeUpstream, path: str = "/chat/completions",
    body: Json | None = None, **kwargs: Any,
) -> tuple[int, Json, Mapping[str, str]]:  # fmt: skip
    async with session.post(up.url + path, json=body or chat_body(), **kwargs) as r:
        return r.status, await r.json(), r.headers


async def read_sse(r: aiohttp.ClientResponse) -> tuple[list[Json], bool]:
    """The data frames before [DONE], and whether [DONE] came; a cut ends the read."""
    frames: list[Json] = []
    done = False
    try:
        async for raw in r.content:
            if line := raw.strip():
                assert line.startswith(b"data: "), line
                assert not done, "data after [DONE]"
                if line == b"data: [DONE]":
                    done = True
                else:
                    frames.append(json.loads(line[6:]))
    except aiohttp.ClientPayloadError:
        assert not done
    return frames, done


def usage(prompt: int, completion: int) -> dict[str, int]:
    total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def assert_error(body: Json, type_: str | None = None, code: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert type_ is None or body["error"]["type"] == type_
    assert code is None or body["error"]["code"] == code


# -- normal responses -------------------------------------------------------------


async def test_chat_completion_shape_and_usage(up: FakeUpstream, session: Session) -> None:
    messages = [
        {"role": "system", "content": "x" * 10},
        {"role": "user", "content": [{"type": "text", "text": "y" * 7}, {"type": "image_url"}]},
        {"role": "assistant", "content": None},
    ]
    status, body, headers = await post(
        session, up, body={"model": "gpt-test", "messages": messages}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body["id"].startswith("chatcmpl-fake-")
    assert isinstance(body["created"], int)
    assert (body["object"], body["model"]) == ("chat.completion", "gpt-test")
    assert body["system_fingerprint"] == "fp_fake"
    message = {"role": "assistant", "content": REPLY}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    assert body["choices"] == [choice]
    prompt, completion = math.ceil(17 / 4), math.ceil(len(REPLY) / 4)
    assert body["usage"] == usage(prompt, completion)


async def test_chat_n_choices_model_override_reply_callable_and_ids(session: Session) -> None:
    def shout(body: Json) -> str:
        return str(body["messages"][-1]["content"]).upper()

    async with FakeUpstream(model="served", reply=shout, name="east") as up:
        _, body, _ = await post(session, up, body=chat_body(n=3))
        ids = {(await post(session, up))[1]["id"] for _ in range(3)} | {body["id"]}
        status, error, _ = await post(session, up, body=chat_body(n=0))
    assert body["model"] == "served"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in body["choices"]} == {"HI"}
    assert body["usage"] == usage(1, 3)
    assert len(ids) == 4
    assert all(i.startswith("chatcmpl-east-") for i in ids)
    assert status == 400
    assert error["error"]["param"] == "n"


async def test_stream_frames_in_order_end_with_done(up: FakeUpstream, session: Session) -> None:
    async with session.post(up.url + "/chat/completions", json=chat_body(stream=True)) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        frames, done = await read_sse(r)
    assert done
    assert len(frames) == 1 + 4 + 1
    assert len({(f["id"], f["created"], f["object"]) for f in frames}) == 1
    assert frames[0]["object"] == "chat.completion.chunk"
    assert all("usage" not in f for f in frames)
    assert frames[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [f["choices"][0]["delta"]["content"] for f in frames[1:-1]]
    assert "".join(pieces) == REPLY
    assert all(pieces)
    assert all(f["choices"][0]["finish_reason"] is None for f in frames[:-1])
    last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert frames[-1]["choices"] == [last]
    assert (up.received[0].stream, up.received[0].status) == (True, 200)


async def test_stream_usage_chunk_only_with_include_usage(session: Session) -> None:
    async with FakeUpstream(stream_chunks=2, chunk_interval=0.001) as up:
        body = chat_body(stream=True, stream_options={"include_usage": True})
        async with session.post(up.url + "/chat/completions", json=body) as r:
            frames, done = await read_sse(r)
    assert done
    assert len(frames) == 1 + 2 + 1 + 1
    assert all(f["usage"] is None for f in frames[:-1])
    assert frames[-1]["choices"] == []
    completion = math.ceil(len(REPLY) / 4)
    assert frames[-1]["usage"] == usage(1, completion)


async def test_embeddings_shape_and_determinism(up: FakeUpstream, session: Session) -> None:
    _, first, _ = await post(session, up, "/embeddings", {"model": "e", "input": ["a", "bcdef"]})
    assert (first["object"], first["model"]) == ("list", "e")
    assert [(d["object"], d["index"]) for d in first["data"]] == [("embedding", i) for i in (0, 1)]
    vectors = [d["embedding"] for d in first["data"]]
    assert all(len(v) == 8 and all(isinstance(x, float) for x in v) for v in vectors)
    assert vectors[0] != vectors[1]
    assert first["usage"] == {"prompt_tokens": 1 + 2, "total_tokens": 1 + 2}
    _, single, _ = await post(session, up, "/embeddings", {"model": "e", "input": "a"})
    assert single["data"][0]["embedding"] == vectors[0]
    _, tokens, _ = await post(session, up, "/embeddings", {"input": [[1, 2, 3], [4]]})
    assert [len(d["embedding"]) for d in tokens["data"]] == [8, 8]
    assert tokens["usage"]["prompt_tokens"] == 4
    _, flat, _ = await post(session, up, "/embeddings", {"input": [1, 2, 3]})
    assert flat["data"][0]["embedding"] == tokens["data"][0]["embedding"]


async def test_embeddings_options_and_bad_input(session: Session) -> None:
    async with FakeUpstream(embedding_dim=4) as up:
        _, plain, _ = await post(session, up, "/embeddings", {"input": "x"})
        packed_body = {"input": "x", "encoding_format": "base64"}
        _, packed, _ = await post(session, up, "/embeddings", packed_body)
        _, wide, _ = await post(session, up, "/embeddings", {"input": "x", "dimensions": 16})
        status, error, _ = await post(session, up, "/embeddings", {"input": [1.5]})
    decoded = struct.unpack("<4f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(plain["data"][0]["embedding"], rel=1e-6)
    assert len(wide["data"][0]["embedding"]) == 16
    assert status == 400
    assert_error(error, type_="invalid_request_error")
    assert error["error"]["param"] == "input"


async def test_models_unknown_path_invalid_json_and_large_body(session: Session) -> None:
    async with FakeUpstream(name="west") as up:
        async with session.get(up.url + "/models") as r:
            entry = {"id": "fake-model", "object": "model", "created": 0, "owned_by": "west"}
            assert await r.json() == {"object": "list", "data": [entry]}
        async with session.post(up.url + "/completions/nope", json={}) as r:
            assert r.status == 404
            assert_error(await r.json(), type_="invalid_request_error")
        headers = {"Content-Type": "application/json"}
        async with session.post(up.url + "/chat/completions", data=b"{no", headers=headers) as r:
            assert r.status == 400
            assert_error(await r.json(), type_="invalid_request_error")
        big = json.dumps(chat_body(pad="p" * 3_000_000)).encode()
        big_post = session.post(up.url + "/chat/completions", data=io.BytesIO(big), headers=headers)
        async with big_post as r:
            assert r.status == 200, "bodies beyond aiohttp's 1 MiB default are accepted"
    assert [e.status for e in up.received] == [200, 404, 400, 200]
    assert up.received[2].body is None


async def test_auth(session: Session) -> None:
    async with FakeUpstream(api_key="sk-right") as up:
        up.push(Fault.status(500))
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
            status, body, _ = await post(session, up, headers=headers)
            assert status == 401
            assert_error(body, code="invalid_api_key")
        assert up.pending_faults == 1, "a rejected request must not consume a fault"
        ok = {"Authorization": "Bearer sk-right"}
        async with session.get(up.url + "/models", headers=ok) as r:
            assert r.status == 200
        assert (await post(session, up, headers=ok))[0] == 500
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
    up: FakeUpstream, session: Session, fault: Fault, name: str, value: str
) -> None:
    up.push(fault)
    status, body, headers = await post(session, up)
    assert status == 429
    assert_error(body, type_="requests", code="rate_limit_exceeded")
    assert headers[name] == value


async def test_rate_limit_http_date_and_none(up: FakeUpstream, session: Session) -> None:
    up.push(Fault.rate_limit(30, header="http-date"))
    up.push(Fault.rate_limit(None))
    before = time.time()
    _, _, dated = await post(session, up)
    when = email.utils.parsedate_to_datetime(dated["Retry-After"]).timestamp()
    assert before + 30 - 1 <= when <= time.time() + 30 + 1
    status, _, bare = await post(session, up)
    assert status == 429
    assert "Retry-After" not in bare
    assert "retry-after-ms" not in bare


@pytest.mark.parametrize("code", [500, 503, 401, 404, 400])
async def test_status_fault(up: FakeUpstream, session: Session, code: int) -> None:
    type_ = "server_error" if code >= 500 else "invalid_request_error"
    up.push(Fault.status(code, headers={"x-custom": "1"}))
    status, body, headers = await post(session, up)
    assert (status, headers["x-custom"]) == (code, "1")
    assert_error(body, type_=type_)
    up.push(Fault.status(code, "boom", error_type="t", error_code="c"))
    _, body, _ = await post(session, up, "/embeddings", {"input": "x"})
    assert body["error"] == {"message": "boom", "type": "t", "param": None, "code": "c"}


async def test_context_window_and_content_policy(up: FakeUpstream, session: Session) -> None:
    up.push(Fault.context_window())
    up.push(Fault.content_policy())
    status, body, _ = await post(session, up)
    assert status == 400
    assert_error(body, type_="invalid_request_error", code="context_length_exceeded")
    assert "maximum context length is 8192 tokens" in body["error"]["message"]
    status, body, _ = await post(session, up)
    assert status == 400
    assert_error(body, code="content_policy_violation")
    assert "content policy" in body["error"]["message"]


async def test_delay(up: FakeUpstream, session: Session) -> None:
    up.push(Fault.delay(0.2))
    status, body, _ = await post(session, up)
    assert status == 200
    assert body["choices"][0]["message"]["content"] == REPLY
    (entry,) = up.received
    assert entry.fault == Fault.delay(0.2)
    assert entry.elapsed is not None
    assert entry.elapsed >= 0.2 - 0.005


async def test_hang_until_client_timeout_then_stop_is_prompt(session: Session) -> None:
    up = FakeUpstream()
    await up.start()
    up.always(Fault.hang())
    with pytest.raises(asyncio.TimeoutError):
        await post(session, up, timeout=aiohttp.ClientTimeout(total=0.2))
    pending = asyncio.create_task(post(session, up))
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


@pytest.mark.parametrize("fault", [Fault.drop(), Fault.cut_stream(2)], ids=["drop", "cut"])
async def test_drop_and_cut_of_a_plain_request(
    up: FakeUpstream, session: Session, fault: Fault
) -> None:
    up.push(fault)
    with pytest.raises(DISCONNECTS):
        await post(session, up)
    assert (await post(session, up))[0] == 200
    assert [e.status for e in up.received] == [None, 200]


async def test_malformed(up: FakeUpstream, session: Session) -> None:
    up.push(Fault.malformed())
    async with session.post(up.url + "/chat/completions", json=chat_body()) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/json")
        raw = await r.read()
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


@pytest.mark.parametrize("k", [0, 1, 3])
async def test_cut_stream(up: FakeUpstream, session: Session, k: int) -> None:
    up.push(Fault.cut_stream(k))
    async with session.post(up.url + "/chat/completions", json=chat_body(stream=True)) as r:
        assert r.status == 200
        frames, done = await read_sse(r)
    assert len(frames) == k
    assert not done
    assert all(f["choices"][0]["finish_reason"] is None for f in frames)
    assert up.received[0].status is None


def test_argument_validation() -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: Fault.rate_limit(-1), "retry_after"),
        (lambda: Fault.delay(-0.1), "seconds"),
        (lambda: Fault.delay(math.inf), "seconds"),
        (lambda: Fault.cut_stream(-1), "after_chunks"),
        (lambda: Fault.status(200), "code"),
        (lambda: Fault.context_window(limit=0), "limit"),
        (lambda: FakeUpstream(latency=-1), "latency"),
        (lambda: FakeUpstream(stream_chunks=0), "stream_chunks"),
        (lambda: FakeUpstream().push(Fault.drop(), times=0), "times"),
    ]
    for make, arg in cases:
        with pytest.raises(ValueError, match=arg):
            make()
    assert repr(Fault.delay(0.5)) == "Fault(kind='delay', seconds=0.5)"
    with pytest.raises(RuntimeError):
        _ = FakeUpstream().url


# -- scripting --------------------------------------------------------------------


async def test_push_order_and_times(up: FakeUpstream, session: Session) -> None:
    up.push(Fault.status(500))
    up.push(Fault.status(503), times=2)
    up.push(Fault.rate_limit(0))
    assert up.pending_faults == 4
    async with session.get(up.url + "/models") as r:
        assert r.status == 200
    assert up.pending_faults == 4, "GET /v1/models takes no fault"
    assert [(await post(session, up))[0] for _ in range(5)] == [500, 503, 503, 429, 200]
    assert up.pending_faults == 0


async def test_concurrent_arrivals_take_faults_in_arrival_order(
    up: FakeUpstream, session: Session
) -> None:
    for code in (500, 501, 502, 503, 504):
        up.push(Fault.status(code))
    await asyncio.gather(*(post(session, up) for _ in range(5)))
    log = up.received
    assert [e.seq for e in log] == [0, 1, 2, 3, 4]
    assert [e.status for e in log] == [500, 501, 502, 503, 504]
    assert [e.at for e in log] == sorted(e.at for e in log)


async def test_always_and_clear(up: FakeUpstream, session: Session) -> None:
    up.always(Fault.status(503))
    up.push(Fault.status(500))
    assert [(await post(session, up))[0] for _ in range(3)] == [500, 503, 503]
    up.always(None)
    assert (await post(session, up))[0] == 200
    up.always(Fault.status(502))
    up.push(Fault.status(500), times=3)
    up.clear()
    assert up.pending_faults == 0
    assert (await post(session, up))[0] == 200


# -- the log ----------------------------------------------------------------------


async def test_log_fields_and_reset(session: Session) -> None:
    clock = FakeClock(50.0)
    async with FakeUpstream(clock=clock.now) as up:
        up.push(Fault.status(500))
        await post(session, up)
        clock.advance(2.0)
        key = {"Authorization": "Bearer sk-1"}
        await post(session, up, "/embeddings", {"input": "x"}, headers=key)
        first, second = up.received
        assert (first.seq, first.method, first.path) == (0, "POST", "/v1/chat/completions")
        assert (first.body, first.stream, first.api_key) == (chat_body(), False, None)
        assert (first.at, first.finished_at, first.elapsed) == (50.0, 50.0, 0.0)
        assert (first.fault, first.status) == (Fault.status(500), 500)
        assert (second.seq, second.path, second.at, second.status) == (1, "/v1/embeddings", 52, 200)
        assert (second.fault, second.api_key) == (None, "sk-1")
        assert second.headers["authorization"] == "Bearer sk-1"
        assert "sk-1" not in repr(second)
        assert up.request_count == 2
        up.reset_log()
        assert (up.received, up.request_count) == ([], 0)
        await post(session, up)
        assert up.received[0].seq == 0


async def test_log_limit_keeps_the_newest(session: Session) -> None:
    async with FakeUpstream(log_limit=2) as up:
        for _ in range(5):
            await post(session, up)
        assert [e.seq for e in up.received] == [3, 4]
        assert up.request_count == 5


async def test_max_in_flight_under_concurrency(up: FakeUpstream, session: Session) -> None:
    up.push(Fault.delay(0.3), times=10)
    results = await asyncio.gather(*(post(session, up) for _ in range(10)))
    assert [status for status, _, _ in results] == [200] * 10
    assert (up.max_in_flight, up.in_flight) == (10, 0)
    up.reset_log()
    assert up.max_in_flight == 0


# -- lifecycle --------------------------------------------------------------------


async def test_several_upstreams_and_restart(session: Session) -> None:
    async with FakeUpstream(name="a") as a, FakeUpstream(name="b", reply="B") as b:
        assert a.port != b.port
        assert a.url == f"http://127.0.0.1:{a.port}/v1"
        assert a.base_url == f"http://127.0.0.1:{a.port}"
        assert (await post(session, b))[1]["choices"][0]["message"]["content"] == "B"
        port = a.port
        await a.stop()
        assert not a.running
        with pytest.raises(aiohttp.ClientConnectorError):
            await post(session, a)
        await a.start()
        assert a.port == port
        assert (await post(session, a))[0] == 200
        with pytest.raises(RuntimeError):
            await a.start()
