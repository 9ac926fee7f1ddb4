"""One set of limits for several router processes: rate windows and cooldowns in Redis.

Each process keeps its in-memory ledger (it still decides eligibility, concurrency
and budgets locally), and before sending it asks Redis to *admit* the request: one
Lua script checks the deployment's shared cooldown and its global RPM/TPM windows and
reserves the request there atomically. That is the only Redis round trip on the hot
path. Everything else is off it: token reconciliation and cooldowns are batched into
one pipelined write per event-loop turn, and a background task reads the shared
cooldowns every `SharedState.sync_interval`.

If Redis cannot be reached (an error or `SharedState.timeout`), the router logs it
once, keeps serving on local accounting (each limit scaled by `local_share`), pings
every `retry_interval` and rejoins when Redis answers again. Redis' own clock
(``TIME``) times the shared windows, so processes need not agree on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from interlock.clock import Clock
from interlock.config import SharedState
from interlock.errors import ConfigError
from interlock.limits.ledger import Reservation

if TYPE_CHECKING:
    from interlock.records.state import DeploymentState

__all__ = ["RedisLedger", "SharedLedger"]

log = logging.getLogger("interlock.limits")

_SPAN_MS = 60_000
_BUCKETS = 60  # as the local RateWindow: 1 s buckets, held 60-61 s

# Shared by every script: the sliding window of RateWindow, as a Redis hash with
# fields h (newest tick), t (total) and one field per bucket (tick mod m).
_PRELUDE = """
local T = redis.call('TIME')
local now = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)
local width = tonumber(ARGV[1])
local m = tonumber(ARGV[2]) + 1
local tick = math.floor(now / width)
local function advance(key)
  local h = redis.call('HGET', key, 'h')
  if not h then return 0 end
  h = tonumber(h)
  local total = tonumber(redis.call('HGET', key, 't') or '0')
  if tick > h then
    if tick - h >= m then
      redis.call('DEL', key)
      return 0
    end
    for x = h + 1, tick do
      local f = tostring(x % m)
      local v = redis.call('HGET', key, f)
      if v then
        total = total - tonumber(v)
        redis.call('HDEL', key, f)
      end
    end
    redis.call('HSET', key, 'h', tick, 't', total)
  end
  return total
end
"""

# KEYS: rpm, tpm, cooldown. ARGV: width_ms, buckets, rpm_limit, tpm_limit, tokens.
# Returns {1, tick} (admitted), {0, 1, ms} (cooling), {0, 2|3, ms} (over rpm|tpm).
_ADMIT = (
    _PRELUDE
    + """
local cool = redis.call('PTTL', KEYS[3])
if cool > 0 then return {0, 1, cool} end
local function wait_ms(key)
  local h = tonumber(redis.call('HGET', key, 'h') or tick)
  for age = m - 1, 0, -1 do
    local x = h - age
    local v = redis.call('HGET', key, tostring(x % m))
    if v and tonumber(v) > 0 then return (x + m) * width - now end
  end
  return width
end
local rl, tl, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local r, t = 0, 0
if rl > 0 then
  r = advance(KEYS[1])
  if r + 1 > rl then return {0, 2, wait_ms(KEYS[1])} end
end
if tl > 0 then
  t = advance(KEYS[2])
  if t + tokens > tl then return {0, 3, wait_ms(KEYS[2])} end
end
local f = tostring(tick % m)
local ttl = (m + 1) * width
if rl > 0 then
  redis.call('HINCRBY', KEYS[1], f, 1)
  redis.call('HSET', KEYS[1], 'h', tick, 't', r + 1)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if tl > 0 then
  redis.call('HINCRBY', KEYS[2], f, tokens)
  redis.call('HSET', KEYS[2], 'h', tick, 't', t + tokens)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {1, tick}
"""
)

# KEYS: tpm. ARGV: width_ms, buckets, tick, delta. Reconciles an admitted estimate.
_ADJUST = (
    _PRELUDE
    + """
advance(KEYS[1])
local h = redis.call('HGET', KEYS[1], 'h')
local at = tonumber(ARGV[3])
if not h or tonumber(h) - at >= m then return 0 end
local f = tostring(at % m)
local delta = tonumber(ARGV[4])
local new = tonumber(redis.call('HGET', KEYS[1], f) or '0') + delta
if new < 0 then
  delta = delta - new
  new = 0
end
redis.call('HSET', KEYS[1], f, new)
redis.call('HINCRBY', KEYS[1], 't', delta)
return 1
"""
)

# KEYS: cooldown. ARGV: ms. A cooldown is never shortened.
_COOL = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""

# KEYS: every cooldown key. Returns their PTTLs.
_SYNC = """
local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('PTTL', k) end
return out
"""


class SharedLedger(Protocol):
    """What the pipeline needs from a ledger shared between processes."""

    @property
    def active(self) -> bool:
        """False while the shared store is unreachable (local accounting only)."""
        ...

    async def admit(self, r: Reservation) -> bool:
        """Admit `r` against the shared limits; False (with the state blocked for as
        long as it will be) when they refuse it. Never raises for an outage."""
        ...

    def publish_cooldown(self, s: DeploymentState, seconds: float) -> None:
        """Tell the other processes that `s` cools for `seconds`."""
        ...

    async def aclose(self) -> None: ...


class _Ticket:
    __slots__ = ("keys", "ledger", "tick")

    def __init__(self, ledger: RedisLedger, keys: list[str], tick: int) -> None:
        self.ledger = ledger
        self.keys = keys
        self.tick = tick

    def settle(self, delta_tokens: int) -> None:
        if delta_tokens:
            self.ledger._write("adjust", self.keys[1:2], [self.tick, delta_tokens])


class RedisLedger:
    """A `SharedLedger` on Redis (``redis.asyncio``, from the ``redis`` extra)."""

    def __init__(
        self, config: SharedState, states: Sequence[DeploymentState], clock: Clock
    ) -> None:
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            missing = True
        else:
            missing = False
        if missing:  # a configuration problem, raised off the ImportError's chain
            raise ConfigError(
                [("shared", "needs the 'redis' package: pip install 'interlock[redis]'")]
            )
        self.config = config
        self._clock = clock
        self._states = tuple(states)
        u = urlsplit(config.url)
        self._where = f"{u.hostname or 'localhost'}:{u.port or 6379}"  # never the password
        try:
            client: Any = Redis.from_url(
                config.url,
                socket_timeout=config.timeout,
                socket_connect_timeout=config.timeout,
                retry=Retry(NoBackoff(), 0),  # an outage must not stall the hot path
            )
        except ValueError:  # e.g. an option in the query string redis does not take
            client = None
        if client is None:
            # Raised here, off the chain: redis' message may quote the URL.
            raise ConfigError(
                [("shared.url", "is not a URL redis accepts (not shown: it may hold a password)")]
            )
        self._client = client
        self._keys: dict[str, list[str]] = {}
        self._cool_keys: list[str] = []
        self._active = True
        self.track(states)
        self._scripts = {
            "admit": self._client.register_script(_ADMIT),
            "adjust": self._client.register_script(_ADJUST),
            "cool": self._client.register_script(_COOL),
            "sync": self._client.register_script(_SYNC),
        }
        self._pending: list[tuple[str, list[str], list[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False
        self.round_trips = 0
        """Redis calls made on the hot path (admissions)."""
        self.write_batches = 0
        """Pipelined background writes (reconciliations and cooldowns)."""
        self.outages = 0
        """Times Redis became unreachable."""

    @property
    def active(self) -> bool:
        return self._active

    def track(self, states: Sequence[DeploymentState]) -> None:
        """Serve these deployments from now on (a runtime change; construction).

        Redis keys are named by deployment id, so a deployment that keeps its id keeps
        its shared windows and cooldown; keys of removed ones are left to expire (every
        key has a TTL of about a minute). While Redis is unreachable the limits of new
        or changed deployments are scaled to `local_share` like the others'.
        A deployment no longer in `states` keeps its keys until `forget`: its requests
        still in flight settle their tokens and publish their cooldowns."""
        p = self.config.prefix
        self._states = tuple(states)
        for s in self._states:
            if s.id not in self._keys:
                self._keys[s.id] = [f"{p}:{{{s.id}}}:{k}" for k in ("rpm", "tpm", "cool")]
        self._cool_keys = [self._keys[s.id][2] for s in self._states]
        if not self._active:
            self._scale_down()

    # --- hot path -------------------------------------------------------------------

    async def admit(self, r: Reservation) -> bool:
        if self._loop_task is None and not self._closed:
            self._loop_task = asyncio.ensure_future(self._background())
        s = r.state
        keys = self._keys[s.id]
        d = s.deployment
        args = (1000, _BUCKETS, d.rpm or 0, d.tpm or 0, r.tokens)
        try:
            reply = await self._scripts["admit"](keys=keys, args=args)
            # Read inside the try: a reply of another shape (not our script's, say a
            # proxy's) is an outage too, not an error for the caller.
            admitted, code, ms = int(reply[0]) == 1, int(reply[1]), int(reply[-1])
        except Exception as exc:
            self._lost(exc)
            return True
        self.round_trips += 1
        if admitted:
            if d.tpm is not None:
                r.remote = _Ticket(self, keys, code)
            return True
        until = self._clock.now() + max(ms, 1) / 1000.0
        if code == 1:
            s.cooldown_until = max(s.cooldown_until, until)
        else:
            s.blocked_until = max(s.blocked_until, until)
        return False

    def publish_cooldown(self, s: DeploymentState, seconds: float) -> None:
        if seconds > 0:
            self._write("cool", self._keys[s.id][2:3], [max(1, int(seconds * 1000))])

    # --- off the hot path -----------------------------------------------------------

    def _write(self, script: str, keys: list[str], args: list[int]) -> None:
        if not self._active or self._closed:
            return  # what Redis lost in an outage is not replayed
        self._pending.append((script, keys, args))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        while self._pending and self._active:
            batch, self._pending = self._pending, []
            try:
                pipe = self._client.pipeline(transaction=False)
                for name, keys, args in batch:
                    script = self._scripts[name]
                    if name == "adjust":
                        args = [1000, _BUCKETS, *args]
                    await script(keys=keys, args=args, client=pipe)
                await pipe.execute()
            except Exception as exc:
                self._lost(exc)
                return
            self.write_batches += 1

    async def flush(self) -> None:
        """Wait until the writes queued so far have reached Redis (or failed)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def sync_once(self) -> None:
        """Read every shared cooldown now (the background task does it periodically)."""
        # Read before the await: a runtime change may replace them meanwhile.
        states, keys = self._states, self._cool_keys
        try:
            ttls = await self._scripts["sync"](keys=keys)
            ms_left = [int(ms) for ms in ttls]
            if len(ms_left) != len(states):
                raise ValueError("a reply of another shape")
        except Exception as exc:
            self._lost(exc)
            return
        now = self._clock.now()
        for s, ms in zip(states, ms_left, strict=True):
            if ms > 0:
                s.cooldown_until = max(s.cooldown_until, now + ms / 1000.0)

    async def _background(self) -> None:
        cfg = self.config
        while not self._closed:
            if self._active:
                await asyncio.sleep(cfg.sync_interval)
                await self.sync_once()
            else:
                await asyncio.sleep(cfg.retry_interval)
                try:
                    # Connections pooled before the outage are dead: drop them all.
                    await self._client.connection_pool.disconnect()
                    await self._client.ping()
                except Exception:
                    continue
                self._rejoin()

    def _lost(self, exc: BaseException) -> None:
        if not self._active:
            return
        self._active = False
        self.outages += 1
        self._pending.clear()
        self._scale_down()
        log.warning(
            "interlock: shared state at %s unreachable (%s); serving on local accounting",
            self._where,
            type(exc).__name__,
        )
        if self._loop_task is None and not self._closed:
            self._loop_task = asyncio.ensure_future(self._background())

    def forget(self, ids: Iterable[str]) -> None:
        """Drop the keys of deployments removed at runtime (their last request settled)."""
        serving = {s.id for s in self._states}
        for i in ids:
            if i not in serving:
                self._keys.pop(i, None)

    def _scale_down(self) -> None:
        share = self.config.local_share
        for s in self._states:
            d = s.deployment
            s.rpm_limit = max(1, int(d.rpm * share)) if d.rpm is not None else None
            s.tpm_limit = max(1, int(d.tpm * share)) if d.tpm is not None else None

    def _rejoin(self) -> None:
        self._active = True
        for s in self._states:
            s.rpm_limit = s.deployment.rpm
            s.tpm_limit = s.deployment.tpm
        log.warning("interlock: shared state at %s reachable again; rejoined", self._where)

    async def aclose(self) -> None:
        """Stop the background task, send queued writes, close the connections."""
        if self._closed:
            return
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await self._flusher
        # Closing a connection Redis already dropped can fail; the router is closing.
        with contextlib.suppress(Exception):
            await self._client.aclose()

    def __repr__(self) -> str:
        state = "active" if self._active else "local-only"
        return f"<RedisLedger {self._where} {state} round_trips={self.round_trips}>"
