"""Writing AWS event-stream messages (``application/vnd.amazon.eventstream``), for fakes.

The framing (https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream,
the same for every AWS service): a 12-byte prelude (total length, headers length, both
big-endian uint32, then the CRC32 of those 8 bytes), the headers (name length as one
byte, the name, a type byte, then the value; strings are type 7 with a uint16 length),
the payload, and a CRC32 of everything before it. botocore has a parser but no writer.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["encode_event", "event_frame", "exception_frame"]

_STRING = 7


def encode_event(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message with string `headers` and `payload`."""
    parts = []
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        parts.append(
            struct.pack(">B", len(raw_name)) + raw_name
            + struct.pack(">BH", _STRING, len(raw_value)) + raw_value
        )  # fmt: skip
    header_bytes = b"".join(parts)
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(header_bytes))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + header_bytes + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event_type: str, data: Mapping[str, Any]) -> bytes:
    """An ``event`` message with a JSON payload, as ConverseStream sends them (the ``p``
    field is the padding Bedrock adds to hide payload sizes)."""
    headers = {":event-type": event_type, ":content-type": "application/json",
               ":message-type": "event"}  # fmt: skip
    return encode_event(headers, orjson.dumps({**data, "p": "abcdefghijkl"}))


def exception_frame(exception_type: str, message: str) -> bytes:
    """An ``exception`` message (``throttlingException``, ``modelStreamErrorException``, ...)
    as sent in place of the next event when a stream fails."""
    headers = {":exception-type": exception_type, ":content-type": "application/json",
               ":message-type": "exception"}  # fmt: skip
    return encode_event(headers, orjson.dumps({"message": message}))
