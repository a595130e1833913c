"""Local model simulator speaking the OpenAI Chat Completions and Anthropic Messages APIs.

Replies are deterministic per request (see ``_scenarios``); token counts follow ``count_tokens``;
``GET /_sim/tally`` is an independent witness of what was delivered; faults are injectable.
"""

from activities.catalog import SIM_PRICES, SIM_TIERS
from harness.sim._server import SimConfig, SimServer
from harness.sim._tokens import count_tokens, prompt_tokens
from harness.sim.faults import FAULT_KINDS, Fault, FaultKind

__all__ = [
    "FAULT_KINDS",
    "SIM_PRICES",
    "SIM_TIERS",
    "Fault",
    "FaultKind",
    "SimConfig",
    "SimServer",
    "count_tokens",
    "prompt_tokens",
]
