"""Wire types of token-weighted fairness (``workflows.fairness``, ``policies.fairness``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from policies.fairness import TenantTally

__all__ = ["FairnessState", "ServedCall", "SetWeightsRequest"]


class ServedCall(BaseModel):
    """Signal ``served``: a model call of ``tenant`` finished on model queue ``queue``."""

    queue: str = Field(description="The model queue the call ran on (its fairness weights are set there).")
    tenant: str = Field(description="The call's fairness key.")
    weight: float = Field(default=1.0, gt=0, description="The tenant's own weight, as the call carried it.")
    tokens: int = Field(ge=0, description="Input plus output tokens the call was charged.")


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
    signals: int = Field(default=0, description="Calls counted by this run (continue-as-new after many).")
    writes: int = Field(default=0, description="Weight writes so far, all runs.")


class SetWeightsRequest(BaseModel):
    """Activity ``set_fairness_weights``: the fairness weight overrides of one activity task queue."""

    queue: str
    weights: dict[str, float] = Field(default_factory=dict, description="Tenant -> weight to set.")
    unset: list[str] = Field(default_factory=list, description="Tenants whose override is removed.")
