"""Shared by the tests of interlock/cache: a chat completion with text, logprobs and a tool call."""

from __future__ import annotations

from interlock import ChatCompletion


def completion() -> ChatCompletion:
    return ChatCompletion.from_dict(
        {
            "id": "c1",
            "model": "m",
            "created": 7,
            "system_fingerprint": "fp",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris is the capital."},
                    "finish_reason": "stop",
                    "logprobs": {"content": [{"token": "Paris", "logprob": -0.1}]},
                },
                {
                    "index": 1,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "t1",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                },
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        },
        deployment_id="d-0",
        group="g",
    )
