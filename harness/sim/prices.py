"""Prices and routing tiers of the simulated models (USD per million tokens, never zero).

Only the simulator's own models are priced here; real models are priced from ``genai-prices``.
"""

from __future__ import annotations

from decimal import Decimal

from harness.contracts import ModelPrice


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
}
"""Routing tier of each simulated model: 0 is cheapest, higher is stronger and dearer."""


def prices_json() -> dict[str, dict[str, str]]:
    """The price table as JSON, decimals as strings so no precision is lost."""
    return {
        name: {"input_per_mtok": str(p.input_per_mtok), "output_per_mtok": str(p.output_per_mtok)}
        for name, p in SIM_PRICES.items()
    }
