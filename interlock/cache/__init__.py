"""The response cache: identical requests answered once, in memory or through Redis.

See docs/caching.md.
"""

from interlock.cache.coalesce import Flight
from interlock.cache.codec import CacheEntry, decode, encode
from interlock.cache.key import IGNORED_PARAMS, cache_key
from interlock.cache.memory import MemoryStore
from interlock.cache.redis import RedisStore
from interlock.cache.response import CacheMode, CachePlan, CacheStore, ResponseCache
from interlock.cache.stats import CacheStatistics
from interlock.cache.stream import CachedStream, StreamRecorder, replay_chunks
from interlock.policies import CacheConfig, GroupCachePolicy

__all__ = [
    "IGNORED_PARAMS",
    "CacheConfig",
    "CacheEntry",
    "CacheMode",
    "CachePlan",
    "CacheStatistics",
    "CacheStore",
    "CachedStream",
    "Flight",
    "GroupCachePolicy",
    "MemoryStore",
    "RedisStore",
    "ResponseCache",
    "StreamRecorder",
    "cache_key",
    "decode",
    "encode",
    "replay_chunks",
]
