"""The Router facade, its pools, the request pipeline and streams."""

from interlock.records.state import DeploymentState
from interlock.router.pool import DeploymentPool
from interlock.router.router import Router
from interlock.router.stream import ChatStream

__all__ = ["ChatStream", "DeploymentPool", "DeploymentState", "Router"]
