"""Small helpers shared by the tests of interlock/limits."""

from __future__ import annotations

from interlock import Deployment
from interlock.records.state import DeploymentState


def state(**kw: object) -> DeploymentState:
    d = Deployment(group="g", model="m", id=str(kw.pop("id", "g-0")), **kw)
    return DeploymentState(d, transport=None)  # type: ignore[arg-type]
