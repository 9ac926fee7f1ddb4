"""Vertex URLs and the Claude body.

References: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference,
https://docs.anthropic.com/en/api/claude-on-vertex-ai
"""

from __future__ import annotations

from interlock import Deployment
from interlock.providers.vertex import _model_base, claude_body, is_claude
from interlock.types import Request


def test_urls_per_publisher_and_location() -> None:
    g = Deployment(group="g", model="gemini-2.0-flash", provider="vertex", vertex_project="p",
                   vertex_location="europe-west4")  # fmt: skip
    c = Deployment(group="g", model="claude-sonnet-4@20250514", provider="vertex",
                   vertex_project="p", vertex_location="global")  # fmt: skip
    assert _model_base(g) == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4"
        "/publishers/google/models/gemini-2.0-flash"
    )
    assert _model_base(c) == (
        "https://aiplatform.googleapis.com/v1/projects/p/locations/global"
        "/publishers/anthropic/models/claude-sonnet-4@20250514"
    )
    assert is_claude(c)
    assert not is_claude(g)


def test_claude_body_has_the_vertex_version_and_no_model() -> None:
    d = Deployment(group="g", model="claude-x", provider="vertex", vertex_project="p",
                   vertex_location="us-east5")  # fmt: skip
    request = Request(kind="chat", group="g", messages=[{"role": "user", "content": "hi"}])
    body = claude_body(d, request, True)
    assert body["anthropic_version"] == "vertex-2023-10-16"
    assert "model" not in body
    assert body["stream"] is True
    assert body["max_tokens"] == 4096
