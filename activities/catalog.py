"""The model catalog: what a model reference in a spec means, and what the model costs.

A reference is either ``provider:model`` (providers: ``sim``, ``openai``, ``anthropic``,
``openai-compatible``) or an alias from a catalog. A catalog is YAML::

    models:
      cheap:
        model: "openai:gpt-4o-mini"
        tier: 0
        context_window: 128000
        max_output_tokens: 16384
        token_scale: 0.8   # optional: tokens per token of harness's conservative estimate
        price: {input_per_mtok: 0.15, output_per_mtok: 0.60}
    providers:             # optional: rate limits held cluster-wide (see ProviderLimits)
      openai: {rps: 50, tenant_rps: 10, tpm: 200000}

Where a price comes from, first match wins:

1. the catalog entry (an alias, or an entry whose ``model`` is the reference itself);
2. for ``sim:`` models, the simulator's own table (``SIM_PRICES`` below; the simulator serves these);
3. ``genai-prices`` for ``openai:`` and ``anthropic:`` models;
4. otherwise the reference is refused: with ``UnknownModelError`` and the nearest known references
   when nothing knows the model (a ``sim:`` model the simulator does not serve, a model genai-prices
   does not list), else with ``UnknownPriceError``: an unknown price is never free.

The genai-prices lookup is reproducible: it takes the model's base price (the first of its dated
prices, or the one in force at an explicit ``at`` timestamp), never "whatever applies right now".
Tiered prices (dearer above a context length) are taken at their base tier.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from activities.config import PROVIDERS, ProviderName
from contracts.models import ModelInfo, ModelPrice, ProviderLimits

__all__ = [
    "CatalogEntry",
    "ModelCatalog",
    "ProviderLimits",
    "UnknownModelError",
    "UnknownPriceError",
    "genai_price",
    "load_catalog",
    "resolve",
    "split_ref",
]

# genai-prices names providers the way we do, except that we route "sim" and
# "openai-compatible" ourselves: they have no upstream price list.
_GENAI_PROVIDER_IDS: dict[str, str] = {"openai": "openai", "anthropic": "anthropic"}


# ----- the simulator's models (``harness sim`` serves them and reads their prices from here) ----


def _price(input_per_mtok: str, output_per_mtok: str) -> ModelPrice:
    return ModelPrice(input_per_mtok=Decimal(input_per_mtok), output_per_mtok=Decimal(output_per_mtok))


SIM_PRICES: dict[str, ModelPrice] = {
    "writer": _price("0.50", "1.50"),
    "editor": _price("0.50", "1.50"),
    "editor-livelock": _price("0.50", "1.50"),
    "planner": _price("1.00", "4.00"),
    "judge": _price("0.20", "0.80"),
    "selector": _price("0.10", "0.40"),
    "echo": _price("0.10", "0.30"),
    "tier-small": _price("0.15", "0.60"),
    "tier-medium": _price("1.00", "4.00"),
    "tier-large": _price("5.00", "15.00"),
    "tool-user": _price("0.20", "0.80"),
    "tool-parallel": _price("0.20", "0.80"),
    "tool-loop": _price("0.20", "0.80"),
    "tool-rogue": _price("0.20", "0.80"),
    "tool-bad-args": _price("0.20", "0.80"),
}
"""Price of each simulated model, by the bare model name the simulator serves."""

SIM_TIERS: dict[str, int] = {
    "writer": 1,
    "editor": 1,
    "editor-livelock": 1,
    "planner": 1,
    "judge": 0,
    "selector": 0,
    "echo": 0,
    "tier-small": 0,
    "tier-medium": 1,
    "tier-large": 2,
    "tool-user": 0,
    "tool-parallel": 0,
    "tool-loop": 0,
    "tool-rogue": 0,
    "tool-bad-args": 0,
}
"""Routing tier of each simulated model: 0 is cheapest, higher is stronger and dearer."""


class UnknownModelError(ValueError):
    """A model reference that names no provider we know and no catalog alias."""


class UnknownPriceError(LookupError):
    """A model whose price is unknown: refused rather than counted as free."""


class CatalogEntry(BaseModel):
    """One catalog entry: the model an alias stands for, and optionally its limits and price."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str
    """The ``provider:model`` reference the alias stands for."""
    tier: int | None = Field(default=None, ge=0)
    """Routing tier: 0 is cheapest, higher is stronger and dearer."""
    context_window: int | None = Field(default=None, gt=0)
    """Input tokens the model accepts."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """Cap on the tokens of one reply."""
    token_scale: float | None = Field(default=None, gt=0)
    """Tokens the model's tokenizer counts per token of harness's conservative estimate on your text
    (0.75: a quarter fewer), for estimating usage a server does not report; a job calibrates its own
    figure from calls whose usage was reported."""
    price: ModelPrice | None = None
    """USD per million tokens; overrides genai-prices."""
    price_source: str = "catalog"
    """Where ``price`` came from: 'catalog' for user entries, 'simulator' for the built-in ones."""


class ModelCatalog(BaseModel):
    """Aliases and price overrides, by alias name; rate limits by provider."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    models: dict[str, CatalogEntry] = Field(default_factory=dict)
    """Entries by alias."""
    providers: dict[ProviderName, ProviderLimits] = Field(default_factory=dict)
    """Rate limits by provider (``sim``, ``openai``, ``anthropic``, ``openai-compatible``)."""

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "catalog") -> ModelCatalog:
        """Parse a catalog from YAML text; errors name ``source`` and the bad field."""
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{source}: not valid YAML: {err}") from err
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ValueError(f"{source}: {err}") from err

    @classmethod
    def from_file(cls, path: Path | str) -> ModelCatalog:
        """Load a catalog from a YAML file."""
        path = Path(path)
        return cls.from_yaml(path.read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def builtin(cls) -> ModelCatalog:
        """Entries for the simulated models, keyed ``sim:<name>``, priced by the simulator."""
        # Imported here: the simulator package is only needed once a catalog is built.
        return cls(
            models={
                f"sim:{name}": CatalogEntry(
                    model=f"sim:{name}", tier=SIM_TIERS.get(name), price=price, price_source="simulator"
                )
                for name, price in SIM_PRICES.items()
            }
        )

    def merged(self, other: ModelCatalog) -> ModelCatalog:
        """This catalog with ``other``'s entries added; ``other`` wins on the same alias (and on the
        same provider's limits)."""
        return ModelCatalog(
            models={**self.models, **other.models}, providers={**self.providers, **other.providers}
        )

    def lookup(self, ref: str) -> CatalogEntry | None:
        """The entry for alias ``ref``, else the first entry whose ``model`` is ``ref``."""
        if ref in self.models:
            return self.models[ref]
        for entry in self.models.values():
            if entry.model == ref:
                return entry
        return None


def load_catalog(path: Path | str | None = None) -> ModelCatalog:
    """The built-in simulator entries plus the YAML catalog at ``path`` (``HARNESS_CATALOG``)."""
    catalog = ModelCatalog.builtin()
    if path is not None:
        catalog = catalog.merged(ModelCatalog.from_file(path))
    return catalog


def split_ref(ref: str) -> tuple[ProviderName, str]:
    """Split ``provider:model``; raises ``UnknownModelError`` naming the allowed providers."""
    provider, sep, model = ref.partition(":")
    if not sep or not model.strip():
        raise UnknownModelError(
            f"model reference {ref!r} is neither 'provider:model' nor a catalog alias; "
            f"providers: {', '.join(PROVIDERS)}; aliases come from the catalog file named by "
            "HARNESS_CATALOG (e.g. HARNESS_CATALOG=examples/catalog.yaml)"
        )
    if provider not in get_args(ProviderName):
        raise UnknownModelError(
            f"unknown provider {provider!r} in model reference {ref!r}; use one of: {', '.join(PROVIDERS)}"
        )
    return cast(ProviderName, provider), model.strip()


def resolve(ref: str, catalog: ModelCatalog | None = None, *, at: datetime | None = None) -> ModelInfo:
    """Resolve ``ref`` (``provider:model`` or an alias) to a priced ``ModelInfo``.

    ``catalog`` defaults to the built-in simulator entries. ``at`` picks genai-prices' dated price
    in force then; without it, the model's base price (reproducible). Raises ``UnknownModelError``
    or ``UnknownPriceError``.
    """
    catalog = catalog if catalog is not None else ModelCatalog.builtin()
    ref = ref.strip()
    entry = catalog.lookup(ref)
    target = entry.model if entry is not None else ref
    try:
        provider, model = split_ref(target)
    except UnknownModelError as error:
        near = _nearest(target, catalog)
        raise UnknownModelError(f"{error}" + (f"; did you mean {near}?" if near else "")) from None
    # An alias may point at a reference that has its own entry (a built-in sim price, say).
    base = catalog.lookup(target) if entry is not None and entry.model != ref else None

    price: ModelPrice | None = None
    source = "catalog"
    context_window: int | None = None
    for candidate in (entry, base):
        if candidate is not None and candidate.price is not None:
            price, source = candidate.price, candidate.price_source
            break
    if price is None and provider in _GENAI_PROVIDER_IDS:
        found = genai_price(provider, model, at=at)
        if found is not None:
            price, context_window = found
            source = "genai-prices"
    if price is None and not _model_exists(provider, model):
        raise _unknown_model(ref, target, provider, catalog)
    if price is None:
        raise UnknownPriceError(
            f"no known price for {target}"
            + (f" (alias {ref!r})" if target != ref else "")
            + "; add a price to the catalog (HARNESS_CATALOG), e.g. models: {my-model: {model: "
            f"'{target}', price: {{input_per_mtok: 0.5, output_per_mtok: 1.5}}}}. "
            "An unknown price is never counted as free."
        )

    def pick(field: str, default: int) -> int:
        for candidate in (entry, base):
            value = getattr(candidate, field, None) if candidate is not None else None
            if value is not None:
                return cast(int, value)
        return default

    if source not in ("genai-prices", "catalog", "simulator"):
        source = "catalog"
    return ModelInfo(
        ref=ref,
        provider=provider,
        model=model,
        tier=pick("tier", 1),
        context_window=pick("context_window", context_window or 128_000),
        max_output_tokens=pick("max_output_tokens", 4_096),
        token_scale=next(
            (c.token_scale for c in (entry, base) if c is not None and c.token_scale is not None),
            None,
        ),
        price=price,
        price_source=cast(Any, source),
        own_queue=provider in catalog.providers,
    )


def _model_exists(provider: ProviderName, model: str) -> bool:
    """Whether anything knows ``provider``'s ``model``, priced or not: for ``sim`` the simulator's
    table, for ``openai`` and ``anthropic`` genai-prices; any model an ``openai-compatible`` server
    may serve."""
    if provider == "sim":
        return model in SIM_PRICES
    if provider in _GENAI_PROVIDER_IDS:
        return _genai_model(provider, model) is not None
    return True


def _unknown_model(ref: str, target: str, provider: ProviderName, catalog: ModelCatalog) -> UnknownModelError:
    """The refusal of a model nothing knows: the nearest known references, else what there is."""
    message = f"unknown model {target!r}" + (f" (alias {ref!r})" if target != ref else "")
    near = _nearest(target, catalog)
    if provider == "sim":
        served = ", ".join(f"sim:{name}" for name in SIM_PRICES)
        return UnknownModelError(
            f"{message}: did you mean {near}?" if near else f"{message}: the simulator serves {served}"
        )
    if near:
        return UnknownModelError(
            f"{message}: did you mean {near}? If it is a model genai-prices does not list yet, give "
            "it a price in the catalog (HARNESS_CATALOG)"
        )
    return UnknownModelError(
        f"{message}: genai-prices does not list it; if it exists, give it a price in the catalog "
        f"(HARNESS_CATALOG), e.g. models: {{my-model: {{model: '{target}', price: "
        "{input_per_mtok: 0.5, output_per_mtok: 1.5}}}"
    )


def _nearest(ref: str, catalog: ModelCatalog) -> str:
    """The known references nearest ``ref`` ('a or b'), or '' when none is near."""
    known = [*catalog.models, *(entry.model for entry in catalog.models.values() if entry.price)]
    known += [f"sim:{name}" for name in SIM_PRICES]
    known += [f"{provider}:{model}" for provider in _GENAI_PROVIDER_IDS for model in _genai_models(provider)]
    known = [other for other in dict.fromkeys(known) if other != ref]
    return " or ".join(difflib.get_close_matches(ref, known, n=3, cutoff=0.6))


def _genai_model(provider: str, model: str) -> Any:
    """genai-prices' entry for ``provider``/``model`` (a ``types.ModelInfo``), or None."""
    # Imported here: the price data is a large module, and only resolving needs it.
    from genai_prices import data_snapshot

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(
            model, None, _GENAI_PROVIDER_IDS[provider], None
        )
    except LookupError:
        return None
    return info


def _genai_models(provider: str) -> list[str]:
    """The model names genai-prices lists for ``provider`` that one would write in a reference (not
    the prefixes it matches fine-tuned models by, such as 'ft:gpt-4o')."""
    from genai_prices import data_snapshot

    listed = data_snapshot.get_snapshot().find_provider("", _GENAI_PROVIDER_IDS[provider], None).models
    return [info.id for info in listed if re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?", info.id)]


def genai_price(
    provider: str, model: str, *, at: datetime | None = None
) -> tuple[ModelPrice, int | None] | None:
    """The per-Mtok price and context window genai-prices knows for ``provider``/``model``, or None."""
    if provider not in _GENAI_PROVIDER_IDS:
        return None
    info = _genai_model(provider, model)
    if info is None:
        return None
    from genai_prices import types

    prices = _dated_price(info.prices, at, types)
    input_price = _base_decimal(getattr(prices, "input_mtok", None))
    output_price = _base_decimal(getattr(prices, "output_mtok", None))
    if input_price is None or output_price is None:
        return None
    price = ModelPrice(
        input_per_mtok=input_price,
        output_per_mtok=output_price,
        cache_read_per_mtok=_base_decimal(getattr(prices, "cache_read_mtok", None)),
        cache_write_per_mtok=_base_decimal(getattr(prices, "cache_write_mtok", None)),
    )
    context_window = info.context_window if isinstance(info.context_window, int) else None
    return price, context_window


def _dated_price(prices: Any, at: datetime | None, types: Any) -> Any:
    """The base price, or the newest dated price in force at ``at``; time-of-day discounts ignored."""
    if isinstance(prices, types.ModelPrice):
        return prices
    conditional = list(prices)
    if not conditional:
        return None
    if at is not None:
        for item in reversed(conditional):
            constraint = item.constraint
            if constraint is None or (
                isinstance(constraint, types.StartDateConstraint) and constraint.active(at)
            ):
                return item.prices
    return conditional[0].prices


def _base_decimal(value: Any) -> Decimal | None:
    """A price value as a Decimal; a tiered price at its base tier."""
    if value is None:
        return None
    base = getattr(value, "base", value)
    return base if isinstance(base, Decimal) else Decimal(str(base))
