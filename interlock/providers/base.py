"""What a provider transport must do (the protocols live in `interlock.records.transport`,
below the rules and transports that use them)."""

from interlock.records.transport import ChunkSource, Transport

__all__ = ["ChunkSource", "Transport"]
