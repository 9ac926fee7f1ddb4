"""Built-in prices and context windows, from the genai-prices package.

A deployment that gives no price of its own is priced from genai-prices' data by its
provider and model name (`base_model` when set: an Azure deployment name or a Bedrock
inference-profile ARN is not a model name). The lookup runs once per deployment, when
the router builds its `DeploymentState`; the state keeps plain per-token floats, so
pricing a response costs a few multiplications and never calls the library.

genai-prices is imported on the first lookup, not with interlock: loading its data
takes a few tenths of a second, paid once per process by routers that need it.
See docs/operations.md, "Prices and context windows".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from interlock.config import Deployment

__all__ = [
    "PROVIDER_IDS",
    "BuiltinModel",
    "DeploymentPrices",
    "PriceTier",
    "builtin_model",
    "resolve_prices",
]

# The package logger itself: a price warning is about configuration, like a
# deployment problem, and belongs with the router's own lines.
log = logging.getLogger("interlock")

PROVIDER_IDS: dict[str, str | None] = {
    "openai": "openai",
    "azure": "azure",  # falls back to OpenAI's (and other vendors') models in the data
    "anthropic": "anthropic",
    "gemini": "google",
    "vertex": "google",  # Gemini, and Claude on Vertex through the data's fallback
    "bedrock": "aws",
    "groq": "groq",
    "together": "together",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "fireworks": "fireworks",
    "openrouter": "openrouter",
    # Self-hosted servers have no list price.
    "vllm": None,
    "ollama": None,
}
"""interlock's provider names -> genai-prices provider ids (None: no built-in prices).
Another name is passed to genai-prices as it is (its own ids and aliases, such as
``x-ai`` or ``cerebras``, then match)."""

_PER_MTOK = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Prices (USD per token) that apply to a whole request whose prompt has more than
    `above` tokens (genai-prices' tiers: crossing a threshold reprices every token)."""

    above: int
    input: float
    output: float
    cache_read: float
    cache_write: float


@dataclass(frozen=True, slots=True)
class BuiltinModel:
    """What genai-prices knows about one model at one provider, in USD per token."""

    provider_id: str
    model_id: str
    """The data's id of the matched model (``gpt-4o`` for ``gpt-4o-2024-08-06``)."""
    input: float
    output: float
    cache_read: float | None
    cache_write: float | None
    tiers: tuple[PriceTier, ...]
    """Highest threshold first; empty for a flat price."""
    context_window: int | None


@dataclass(frozen=True, slots=True)
class DeploymentPrices:
    """A deployment's resolved prices (USD per token) and context window."""

    known: bool
    """False when neither the deployment nor the data gives a price: its cost is None."""
    source: Literal["config", "genai-prices", "none"]
    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0
    tiers: tuple[PriceTier, ...] = ()
    context_window: int | None = None
    model: BuiltinModel | None = None
    """The matched model, when the data has it (for its context window or prices)."""


def builtin_model(provider: str, model: str) -> BuiltinModel | None:
    """The built-in entry for `model` at `provider` (interlock's provider names), or
    None when genai-prices has no price for it. Cached per (provider, model) for as
    long as genai-prices serves the same data (`UpdatePrices` replaces it)."""
    provider_id = PROVIDER_IDS.get(provider, provider)
    if provider_id is None:
        return None
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    if _cache.snapshot is not snapshot:
        _cache.snapshot = snapshot
        _cache.entries.clear()
    key = (provider_id, model)
    if key not in _cache.entries:
        if len(_cache.entries) >= _CACHE_SIZE:
            _cache.entries.clear()
        _cache.entries[key] = _lookup(snapshot, provider_id, model)
    return _cache.entries[key]


class _Cache:
    __slots__ = ("entries", "snapshot")

    def __init__(self) -> None:
        self.snapshot: object = None
        self.entries: dict[tuple[str, str], BuiltinModel | None] = {}


_cache = _Cache()
_CACHE_SIZE = 4096


def _lookup(snapshot: Any, provider_id: str, model: str) -> BuiltinModel | None:
    try:
        found_provider, info = snapshot.find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    price = _standard_price(info.prices)
    if price is None:
        return None
    base = {k: _base(getattr(price, k + "_mtok", None)) for k in _UNITS}
    if base["input"] is None and base["output"] is None:
        return None  # priced in other units only (images, audio, requests)
    return BuiltinModel(
        found_provider.id,
        info.id,
        base["input"] or 0.0,
        base["output"] or 0.0,
        base["cache_read"],
        base["cache_write"],
        _tiers(price, base),
        info.context_window,
    )


_UNITS = ("input", "output", "cache_read", "cache_write")


def _standard_price(prices: Any) -> Any:
    """The model's list price today. Of date-conditional prices the latest one in force;
    time-of-day discounts (DeepSeek's off-peak hours) are left out: the price is
    resolved once, and a discount for part of the day would then apply all day."""
    from genai_prices.types import ConditionalPrice, ModelPrice, StartDateConstraint

    if isinstance(prices, ModelPrice):
        return prices
    now = datetime.now(UTC)
    chosen = None
    for cp in prices:
        if not isinstance(cp, ConditionalPrice):
            continue
        c = cp.constraint
        if c is None or (isinstance(c, StartDateConstraint) and c.active(now)):
            chosen = cp.prices
    if chosen is None and prices:
        chosen = prices[0].prices
    return chosen


def _base(value: Any) -> float | None:
    """A price in USD per token from the data's USD per million (flat, or a tier's base)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value / _PER_MTOK)
    return float(value.base / _PER_MTOK)


def _tiers(price: Any, base: dict[str, float | None]) -> tuple[PriceTier, ...]:
    """Every threshold of the four units as one row of prices each, highest first."""
    from genai_prices.types import TieredPrices

    tiered = {
        k: v for k in _UNITS if isinstance(v := getattr(price, k + "_mtok", None), TieredPrices)
    }
    starts = sorted({t.start for v in tiered.values() for t in v.tiers}, reverse=True)
    rows: list[PriceTier] = []
    for start in starts:
        row: dict[str, float] = {}
        for k in _UNITS:
            row[k] = _at(tiered.get(k), start, base[k])
        inp = row["input"] if base["input"] is not None else 0.0
        read = row["cache_read"] if base["cache_read"] is not None else inp
        write = row["cache_write"] if base["cache_write"] is not None else inp
        rows.append(PriceTier(start, inp, row["output"], read, write))
    return tuple(rows)


def _at(value: Any, start: int, base: float | None) -> float:
    """One unit's price for prompts above `start` tokens."""
    if value is None:
        return base or 0.0
    price = value.base
    for t in value.tiers:  # sorted by start
        if t.start <= start:
            price = t.price
    return float(price / _PER_MTOK)


def resolve_prices(d: Deployment) -> DeploymentPrices:
    """`d`'s prices and context window: its own values where it gives them, else the
    built-in ones. A deployment priced by neither gets ``known=False`` and one WARNING
    on the ``interlock`` logger (per call, so per deployment: the router calls
    this once for each when it is built)."""
    own = d.input_cost_per_token is not None or d.output_cost_per_token is not None
    local = PROVIDER_IDS.get(d.provider, d.provider) is None
    model = None
    if not (own and d.context_window is not None) and not local:
        model = builtin_model(d.provider, d.base_model or d.model)
    window = d.context_window if d.context_window is not None else _window(model)
    if own:
        inp = d.input_cost_per_token or 0.0
        return DeploymentPrices(
            True,
            "config",
            inp,
            d.output_cost_per_token or 0.0,
            _or(d.cache_read_cost_per_token, inp),
            _or(d.cache_write_cost_per_token, inp),
            (),
            window,
            model,
        )
    if model is None:
        _warn_unpriced(d, local)
        return DeploymentPrices(False, "none", context_window=window)
    read = _or(d.cache_read_cost_per_token, _or(model.cache_read, model.input))
    write = _or(d.cache_write_cost_per_token, _or(model.cache_write, model.input))
    tiers = model.tiers
    if d.cache_read_cost_per_token is not None or d.cache_write_cost_per_token is not None:
        tiers = tuple(
            PriceTier(t.above, t.input, t.output, _or(d.cache_read_cost_per_token, t.cache_read),
                      _or(d.cache_write_cost_per_token, t.cache_write))
            for t in tiers
        )  # fmt: skip
    return DeploymentPrices(
        True, "genai-prices", model.input, model.output, read, write, tiers, window, model
    )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _window(model: BuiltinModel | None) -> int | None:
    return model.context_window if model is not None else None


def _warn_unpriced(d: Deployment, local: bool) -> None:
    if local:
        why = f"provider {d.provider!r} is self-hosted and has no list price"
    else:
        looked_up = d.base_model or d.model
        why = f"genai-prices has no price for model {looked_up!r} at provider {d.provider!r}"
    log.warning(
        "deployment %s (provider %r, model %r): %s; its results carry cost=None and it "
        "adds nothing to spend or budgets. Set input_cost_per_token and "
        "output_cost_per_token (0 for free), or base_model to the model it serves.",
        d.id,
        d.provider,
        d.model,
        why,
        extra={"event": "unpriced", "group": d.group, "deployment": d.id},
    )
