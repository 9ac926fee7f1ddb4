"""Active probes ask a deployment in its own `mode`: a one-token chat completion, or
the embedding of one word (a chat request to an embedding model would fail forever)."""

from __future__ import annotations

from interlock import ChatCompletion, Deployment, EmbeddingResponse, Request, Router
from interlock.health.probe import HealthProber, deployment_probe
from interlock.testing import InstantTransport


class Recording(InstantTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    async def chat(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> ChatCompletion:
        self.requests.append(request)
        return await super().chat(deployment, request, timeout)

    async def embed(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> EmbeddingResponse:
        self.requests.append(request)
        return await super().embed(deployment, request, timeout)


async def test_the_probe_follows_the_deployment_mode() -> None:
    t = Recording()
    router = Router(
        [
            Deployment(group="chat", model="m", provider="instant"),
            Deployment(group="emb", model="m", provider="instant", mode="embedding"),
        ],
        transports={"instant": t},
    )
    chat, emb = router.parts.states
    assert isinstance(await deployment_probe(chat, 1.0), ChatCompletion)
    assert isinstance(await deployment_probe(emb, 1.0), EmbeddingResponse)
    first, second = t.requests
    assert first.kind == "chat"
    assert first.params == {"max_tokens": 1}
    assert second.kind == "embedding"
    assert second.input == ["ping"]


def test_the_prober_uses_it_by_default() -> None:
    assert HealthProber.__init__.__defaults__ == (deployment_probe,)
    assert Deployment(group="g", model="m").mode == "chat"
