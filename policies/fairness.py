"""Token-weighted fairness across tenants: CFS's "who has been most shorted", counted in tokens.

Temporal's fairness shares a task queue's dispatches between fairness keys (tenants) in proportion to
their weights: it counts *tasks*. A model call is a task, but calls differ in tokens, and tokens are
what a provider bills and rate-limits: a tenant whose calls are four times larger would get four
times the tokens at equal weights. So harness gives Temporal, per tenant, the weight that makes
*tokens* come out in proportion to the tenants' own weights:

    weight_i = base_i / cost_i x correction_i

where ``cost_i`` is the tenant's tokens per call in the recent window (its calls of a queue), so
dispatches in proportion to ``base_i / cost_i`` serve tokens in proportion to ``base_i``; and
``correction_i`` (virtual time, as CFS keeps it) nudges a tenant that is behind its token share so
far up and one ahead of it down, by the square root of the ratio of its target share to its actual
share, within ``CORRECTION`` (the root keeps the catch-up from overshooting into an oscillation).
Weights are scaled so the lightest tenant's is 1 and kept within Temporal's range.

Limits, stated so they are not mistaken for guarantees: it acts on dispatch only (a call already
running is never preempted); it learns a tenant's cost from its served calls, so a tenant's first
calls go out at its base weight, and a tenant whose call sizes swing widely is served by its recent
average; weights change only as often as they are written (``changed``), so the token shares of a
short burst can differ from the target by the calls dispatched before the first write.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

__all__ = [
    "CORRECTION",
    "MAX_WEIGHT",
    "MIN_WEIGHT",
    "TenantTally",
    "changed",
    "decayed",
    "token_weights",
    "tpm_rate",
]

MIN_WEIGHT = 0.001
MAX_WEIGHT = 1000.0
"""Temporal's range of fairness weights."""
SERVED = 1e-6
"""Decayed calls and tokens below this count as nothing served (and keep the arithmetic finite)."""
CORRECTION = (0.5, 2.0)
"""How far the share correction may move a weight, down and up."""


class TenantTally(BaseModel):
    """What one tenant was served on a queue in the recent window (decayed sums)."""

    base_weight: float = Field(default=1.0, gt=0, description="The tenant's own weight (account, spec).")
    calls: float = Field(default=0.0, ge=0)
    tokens: float = Field(default=0.0, ge=0)

    def served(self, tokens: int, base_weight: float) -> TenantTally:
        """This tally with one more call of ``tokens`` (the tenant's weight as the call carried it)."""
        return TenantTally(base_weight=base_weight, calls=self.calls + 1, tokens=self.tokens + tokens)


def decayed(tally: TenantTally, elapsed_s: float, half_life_s: float) -> TenantTally:
    """``tally`` after ``elapsed_s`` seconds of exponential decay (old calls count less)."""
    factor = 0.5 ** (max(0.0, elapsed_s) / half_life_s)
    return tally.model_copy(update={"calls": tally.calls * factor, "tokens": tally.tokens * factor})


def token_weights(tallies: Mapping[str, TenantTally]) -> dict[str, float]:
    """The fairness weight of each tenant with served calls (see the module doc), the lightest 1."""
    served = {tenant: t for tenant, t in tallies.items() if t.calls >= SERVED and t.tokens >= SERVED}
    if not served:
        return {}
    total_tokens = sum(t.tokens for t in served.values())
    total_base = sum(t.base_weight for t in served.values())
    raw: dict[str, float] = {}
    for tenant, tally in served.items():
        cost = tally.tokens / tally.calls
        target, actual = tally.base_weight / total_base, tally.tokens / total_tokens
        low, high = CORRECTION
        correction = min(high, max(low, (target / actual) ** 0.5))
        raw[tenant] = tally.base_weight / cost * correction
    lightest = min(raw.values())
    return {
        tenant: min(MAX_WEIGHT, max(MIN_WEIGHT, weight / lightest)) for tenant, weight in sorted(raw.items())
    }


def tpm_rate(rps: float, tpm: int | None, tokens_per_call: float | None) -> float | None:
    """The request rate that holds ``tpm`` (tokens per minute) at calls of ``tokens_per_call``, never
    above ``rps``; None: no tpm, or no call served yet to size."""
    if tpm is None or not tokens_per_call:
        return None
    return min(rps, tpm / 60 / tokens_per_call)


def changed(old: Mapping[str, float], new: Mapping[str, float], tolerance: float = 0.1) -> bool:
    """Whether ``new`` differs enough from ``old`` to be written: a tenant added or gone, or a
    weight moved by more than ``tolerance`` (relative): writes stay rare while shares hold."""
    if set(old) != set(new):
        return True
    return any(abs(new[t] - old[t]) > tolerance * max(old[t], MIN_WEIGHT) for t in new)
