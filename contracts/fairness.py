"""Wire types of token-weighted fairness (``workflows.fairness``, ``policies.fairness``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from contracts.models import ProviderLimits
from policies.fairness import TenantTally

__all__ = ["FairnessState", "ServedCall", "SetRateRequest", "SetWeightsRequest"]


class ServedCall(BaseModel):
    """Signal ``served``: a model call of ``tenant`` finished on model queue ``queue``."""

    queue: str = Field(description="The model queue the call ran on (its fairness weights are set there).")
    tenant: str | None = Field(description="The call's fairness key; None: none (counted for tpm only).")
    weight: float = Field(default=1.0, gt=0, description="The tenant's own weight, as the call carried it.")
    tokens: int = Field(ge=0, description="Input plus output tokens the call was charged.")
    limits: ProviderLimits | None = Field(
        default=None,
        description="The provider's limits when they have a ``tpm``, as the reporting worker's catalog says.",
    )


class FairnessState(BaseModel):
    """The ``TokenFairness`` workflow's whole state, carried across continue-as-new."""

    tallies: dict[str, dict[str, TenantTally]] = Field(
        default_factory=dict, description="Per model queue, per tenant: the decayed window of calls served."
    )
    at: dict[str, datetime] = Field(
        default_factory=dict, description="Per queue: when its tallies were decayed."
    )
    written: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Per queue: the weights last written to Temporal."
    )
    sizes: dict[str, TenantTally] = Field(
        default_factory=dict, description="Per queue with a tpm: all its calls, decayed (their size)."
    )
    limits: dict[str, ProviderLimits] = Field(
        default_factory=dict, description="Per queue with a tpm: the provider's limits."
    )
    rates: dict[str, float] = Field(
        default_factory=dict, description="Per queue with a tpm: the request rate last written."
    )
    signals: int = Field(default=0, description="Calls counted by this run (continue-as-new after many).")
    writes: int = Field(default=0, description="Weight writes so far, all runs.")


class SetRateRequest(BaseModel):
    """Activity ``set_queue_rate``: a rate-limited model queue's request rate (and per tenant)."""

    queue: str
    limits: ProviderLimits


class SetWeightsRequest(BaseModel):
    """Activity ``set_fairness_weights``: the fairness weight overrides of one activity task queue."""

    queue: str
    weights: dict[str, float] = Field(default_factory=dict, description="Tenant -> weight to set.")
    unset: list[str] = Field(default_factory=list, description="Tenants whose override is removed.")
