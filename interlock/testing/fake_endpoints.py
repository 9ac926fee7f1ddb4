"""`FakeUpstream`'s images, audio, moderations and rerank routes, in their real wire
shapes (each handler cites the API reference it follows). Registered by `add_routes`;
faults apply to them as to chat (``Fault.cut_stream(n)`` cuts the speech audio after
n chunks)."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import hashlib
import itertools
import time
from typing import Any, Protocol

import orjson
from aiohttp import web

from interlock.testing.faults import _drop
from interlock.testing.wire import (
    JSON_HEADERS,
    BadRequest,
    Endpoint,
    Json,
    Record,
    Request,
    Response,
    tokens_for,
)


class _Fake(Protocol):
    # What the routes read of their FakeUpstream.
    _stream_chunks: int
    _chunk_interval: float
    _ids: itertools.count[int]

    @property
    def name(self) -> str: ...

    def _model_for(self, body: Json) -> str: ...


__all__ = ["BYTE_STREAMS", "SPEECH_CHUNK", "add_routes", "is_multipart", "transcript_of"]

SPEECH_CHUNK = 1024
"""Bytes per chunk of the fake's speech audio."""
BYTE_STREAMS = frozenset(("/v1/audio/speech",))
"""Paths whose response is a byte stream (a cut_stream fault cuts it)."""

# A few bytes of a real MP3 frame header, then a pattern: enough for a client to
# tell audio from JSON, and deterministic per input.
_MP3_HEAD = b"\xff\xfb\x90\x64"
_MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip
_FLAG_WORDS = ("kill", "hate", "attack")


def is_multipart(request: Request) -> bool:
    return request.content_type == "multipart/form-data"


def transcript_of(filename: str, data: bytes) -> str:
    """The fake's transcript of an upload (deterministic, names the upload)."""
    return f"Transcript of {filename} ({len(data)} bytes)."


def add_routes(fake: _Fake) -> dict[tuple[str, str], tuple[Endpoint, bool]]:
    """The routes, keyed as `FakeUpstream._endpoints` keys them (every one takes faults)."""
    r = _Routes(fake)
    return {
        ("POST", "/v1/images/generations"): (r.images, True),
        ("POST", "/v1/audio/transcriptions"): (r.transcriptions, True),
        ("POST", "/v1/audio/speech"): (r.speech, True),
        ("POST", "/v1/moderations"): (r.moderations, True),
        ("POST", "/v1/rerank"): (r.rerank, True),
    }


class _Routes:
    """The handlers, reading the options of their `FakeUpstream`."""

    def __init__(self, fake: _Fake) -> None:
        self.fake = fake

    async def images(self, request: Request, record: Record, body: Json) -> Response:
        # https://platform.openai.com/docs/api-reference/images/create
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("Missing required parameter: 'prompt'.", "prompt")
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
            raise BadRequest(f"Invalid 'n': expected an integer in 1-10, got {n!r}.", "n")
        url = body.get("response_format") == "url"
        data = []
        for i in range(n):
            digest = hashlib.sha256(f"{prompt}:{i}".encode()).hexdigest()
            if url:
                data.append({"url": f"https://images.example/{digest[:16]}.png"})
            else:
                png = b"\x89PNG\r\n\x1a\n" + bytes.fromhex(digest)
                data.append({"b64_json": base64.b64encode(png).decode()})
        text = tokens_for(len(prompt))
        out = 272 * n  # gpt-image-1, low quality, 1024x1024
        payload = {
            "created": int(time.time()),
            "data": data,
            "usage": {
                "input_tokens": text,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": text},
                "output_tokens": out,
                "total_tokens": text + out,
            },
        }
        record.status = 200
        return web.Response(body=orjson.dumps(payload), headers=JSON_HEADERS)

    async def transcriptions(self, request: Request, record: Record, body: Json) -> Response:
        # https://platform.openai.com/docs/api-reference/audio/createTranscription
        if not is_multipart(request):
            raise BadRequest("Expected multipart/form-data with a 'file' part.", "file")
        fields, files = _form(await request.read(), request.headers["Content-Type"])
        record.body = {**fields, "file": {k: len(v[1]) for k, v in files.items()}}
        if "file" not in files or not files["file"][1]:
            raise BadRequest("Missing required parameter: 'file'.", "file")
        if not fields.get("model"):
            raise BadRequest("Missing required parameter: 'model'.", "model")
        name, data = files["file"]
        text = transcript_of(name, data)
        fmt = fields.get("response_format", "json")
        record.status = 200
        if fmt in ("text", "srt", "vtt"):
            return web.Response(text=text, content_type="text/plain")
        audio = max(1, len(data) // 100)
        out = tokens_for(len(text))
        payload: dict[str, Any] = {
            "text": text,
            "usage": {
                "type": "tokens",
                "input_tokens": audio,
                "input_token_details": {"audio_tokens": audio, "text_tokens": 0},
                "output_tokens": out,
                "total_tokens": audio + out,
            },
        }
        if fmt == "verbose_json":
            payload = {"task": "transcribe", "language": "english", "duration": 1.0,
                       "text": text, "segments": [], "usage": {"type": "duration",
                                                               "seconds": 1.0}}  # fmt: skip
        return web.Response(body=orjson.dumps(payload), headers=JSON_HEADERS)

    async def speech(self, request: Request, record: Record, body: Json) -> Response:
        # https://platform.openai.com/docs/api-reference/audio/createSpeech: the body
        # is the audio file, sent with chunked transfer encoding.
        text, voice = body.get("input"), body.get("voice")
        if not isinstance(text, str) or not text:
            raise BadRequest("Missing required parameter: 'input'.", "input")
        if not voice:
            raise BadRequest("Missing required parameter: 'voice'.", "voice")
        seed = hashlib.sha256(f"{voice}:{text}".encode()).digest()
        chunks = [(_MP3_HEAD + seed * 40)[:SPEECH_CHUNK] for _ in range(self.fake._stream_chunks)]
        fault = record.fault
        cut = fault.after_chunks if fault is not None and fault.kind == "cut_stream" else None
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i, chunk in enumerate(chunks if cut is None else chunks[:cut]):
            if i and self.fake._chunk_interval > 0:
                await asyncio.sleep(self.fake._chunk_interval)
            await response.write(chunk)
        if cut is not None:
            return _drop(request)
        record.status = 200
        await response.write_eof()
        return response

    async def moderations(self, request: Request, record: Record, body: Json) -> Response:
        # https://platform.openai.com/docs/api-reference/moderations/create
        given = body.get("input")
        if not given:
            raise BadRequest("Missing required parameter: 'input'.", "input")
        items = [given] if isinstance(given, str) else list(given)
        results = []
        for item in items:
            text = item if isinstance(item, str) else str(item.get("text", ""))
            flagged = any(w in text.lower() for w in _FLAG_WORDS)
            cats = {c: flagged and c == "violence" for c in _MODERATION_CATEGORIES}
            scores = {c: (0.91 if cats[c] else 0.0001) for c in _MODERATION_CATEGORIES}
            applied = {c: ["text"] for c in _MODERATION_CATEGORIES}
            results.append({"flagged": flagged, "categories": cats, "category_scores": scores,
                            "category_applied_input_types": applied})  # fmt: skip
        payload = {
            "id": f"modr-{self.fake.name}-{next(self.fake._ids)}",
            "model": self.fake._model_for(body),
            "results": results,
        }
        record.status = 200
        return web.Response(body=orjson.dumps(payload), headers=JSON_HEADERS)

    async def rerank(self, request: Request, record: Record, body: Json) -> Response:
        # https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html#re-rank-api
        # (the shape of https://jina.ai/reranker/ and https://docs.cohere.com/v2/reference/rerank)
        query, docs = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not query:
            raise BadRequest("Missing required parameter: 'query'.", "query")
        if not isinstance(docs, list) or not docs:
            raise BadRequest("Missing required parameter: 'documents'.", "documents")
        words = set(query.lower().split())
        scored = []
        for i, doc in enumerate(docs):
            text = doc if isinstance(doc, str) else str(doc.get("text", ""))
            hits = len(words & set(text.lower().split()))
            scored.append((hits / (len(words) or 1), i, text))
        scored.sort(key=lambda t: (-t[0], t[1]))
        top = body.get("top_n")
        if isinstance(top, int) and not isinstance(top, bool):
            scored = scored[:top]
        back = body.get("return_documents", True) is not False
        results = [
            {"index": i, "relevance_score": round(score, 6),
             **({"document": {"text": text}} if back else {})}
            for score, i, text in scored
        ]  # fmt: skip
        total = tokens_for(len(query)) * len(docs) + sum(
            tokens_for(len(d if isinstance(d, str) else str(d))) for d in docs
        )
        payload = {
            "id": f"rerank-{self.fake.name}-{next(self.fake._ids)}",
            "model": self.fake._model_for(body),
            "usage": {"total_tokens": total},
            "results": results,
        }
        record.status = 200
        return web.Response(body=orjson.dumps(payload), headers=JSON_HEADERS)


def _form(raw: bytes, content_type: str) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    """A multipart/form-data body's text fields (``name[]`` fields as lists) and files."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    fields: dict[str, Any] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if not msg.is_multipart():
        raise BadRequest("Could not parse multipart form.")
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part.get_payload(decode=True)
        payload = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, payload)
        elif name.endswith("[]"):
            fields.setdefault(name[:-2], []).append(payload.decode())
        else:
            fields[name] = payload.decode()
    return fields, files
