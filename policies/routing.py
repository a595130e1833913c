"""Cost-aware model routing: the cheapest model that meets a precision need, under a budget.

Pure decision code (standard library and pydantic only): no I/O, no clock, no randomness, so it
runs unchanged inside a Temporal workflow. Every input and output is a pydantic model that
round-trips through JSON.

Vocabulary:

- A *need* is a named precision (:class:`Precision`) or an explicit minimum quality in [0, 1].
  Named needs map to minimum expected quality by :data:`NEED_QUALITY`: draft 0.60, standard 0.80,
  critical 0.95.
- *Quality* is the probability that a call of a model on a kind of task passes its check. Its
  estimate comes from the catalog prior (:attr:`Candidate.quality`) updated by the check outcomes
  recorded in :class:`RoutingStats` (a Beta posterior). By default the router uses the posterior
  mean; pass ``quantile=0.1`` (say) to use that lower quantile of the posterior instead, which
  keeps an untried or thinly-tried model from looking better than the evidence shows.
- *Expected cost* = input tokens * input price + expected output tokens * output price.
  *Worst case* = input tokens * input price + max output tokens * output price; a model is
  *affordable* only when its worst case fits the remaining budget, so a choice never overdraws.

:func:`route` picks one model; :func:`cascade` plans a ladder of models, cheapest first, that
escalates only when a check fails; :func:`escalate` moves a cascade one rung up. Both record a
:class:`RoutingDecision` whose :meth:`~RoutingDecision.summary` is shown to users.
"""

from __future__ import annotations

import math
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "NEED_QUALITY",
    "Beta",
    "CallEstimate",
    "Candidate",
    "CandidateEstimate",
    "Escalation",
    "PassCounts",
    "Precision",
    "RoutingDecision",
    "RoutingStats",
    "cascade",
    "escalate",
    "min_quality",
    "route",
]

_MTOK = Decimal(1_000_000)
# Expected costs mix Decimal prices with float probabilities; quantizing keeps them short and exact
# through JSON (a picodollar is far below any price step).
_COST_STEP = Decimal("1e-12")


# Prior P(check passes) by catalog tier, for models the step's ``priors`` do not name. Deliberately
# rough (the learned stats correct them): a cheap model is right more often than not, a top model
# usually is.
TIER_PRIOR: dict[int, float] = {0: 0.6, 1: 0.8, 2: 0.92}
TOP_PRIOR = 0.95  # tiers above those listed


class Precision(StrEnum):
    """Named precision needs; :data:`NEED_QUALITY` gives the minimum quality each one asks."""

    draft = "draft"
    standard = "standard"
    critical = "critical"


NEED_QUALITY: dict[Precision, float] = {
    Precision.draft: 0.60,  # a first pass someone will rework: wrong 2 times in 5 is tolerable
    Precision.standard: 0.80,
    Precision.critical: 0.95,  # feeds a decision or a user directly
}


def min_quality(need: Precision | float) -> float:
    """The minimum expected quality a need asks for; explicit values must lie in [0, 1]."""
    if isinstance(need, Precision):
        return NEED_QUALITY[need]
    value = float(need)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"need: minimum quality must lie in [0, 1], got {value}")
    return value


def _need_label(need: Precision | float) -> str:
    return need.value if isinstance(need, Precision) else f"min {float(need):.2f}"


class Candidate(BaseModel):
    """A model the router may choose, as the catalog describes it."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Model reference, e.g. 'openai:gpt-4o-mini'; unique in a catalog.")
    tier: int = Field(ge=0, description="0 is cheapest; breaks cost ties (lower first).")
    input_per_mtok: Decimal = Field(ge=0, description="USD per million input tokens.")
    output_per_mtok: Decimal = Field(ge=0, description="USD per million output tokens.")
    max_output_tokens: int | None = Field(
        default=None, ge=1, description="The model's own output cap; bounds the worst case."
    )
    quality: dict[str, float] = Field(
        default_factory=dict, description="Prior P(check passes) per task kind, each in [0, 1]."
    )
    default_quality: float = Field(default=0.5, ge=0, le=1, description="Prior for kinds not listed.")

    def prior(self, kind: str) -> float:
        """The catalog's prior quality of this model on ``kind``."""
        return min(1.0, max(0.0, self.quality.get(kind, self.default_quality)))

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """USD for a call of this many tokens."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / _MTOK


class CallEstimate(BaseModel):
    """The shape of a call to be routed: its task kind and token estimates."""

    kind: str = Field(default="general", description="Task kind; selects priors and learned stats.")
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0, description="Expected output tokens.")
    max_output_tokens: int = Field(ge=0, description="Output cap of the call; sets the worst case.")

    @model_validator(mode="after")
    def _cap_covers_expected(self) -> CallEstimate:
        if self.max_output_tokens < self.output_tokens:
            raise ValueError("max_output_tokens: must be at least output_tokens")
        return self


class Beta(BaseModel):
    """A Beta(alpha, beta) distribution over a pass rate."""

    alpha: float = Field(ge=0)
    beta: float = Field(ge=0)

    @property
    def mean(self) -> float:
        """Posterior mean alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    def quantile(self, p: float) -> float:
        """The value below which the pass rate lies with probability ``p`` (bisection on the CDF)."""
        if self.beta == 0:
            return 1.0
        if self.alpha == 0:
            return 0.0
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if _beta_cdf(self.alpha, self.beta, mid) < p:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


def _beta_cdf(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), by Lentz's continued fraction."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


class PassCounts(BaseModel):
    """Check outcomes observed for one (task kind, model)."""

    passes: int = Field(default=0, ge=0)
    failures: int = Field(default=0, ge=0)


class RoutingStats(BaseModel):
    """Learned check pass rates per (task kind, model): Beta posteriors over catalog priors.

    The prior of a model on a kind is Beta(q * s, (1 - q) * s), with q the catalog prior and s
    :attr:`prior_strength` (worth s observed checks). Only outcome counts are stored, so the
    catalog's priors may change without invalidating history, and :meth:`merge` is a plain sum.
    Small enough to carry through continue-as-new: one entry per (kind, model) actually observed.
    """

    prior_strength: float = Field(default=10.0, gt=0, description="Pseudo-observations the prior is worth.")
    counts: dict[str, dict[str, PassCounts]] = Field(
        default_factory=dict, description="kind -> model name -> observed outcomes."
    )

    def record(self, kind: str, model: str, passed: bool) -> None:
        """Count one check outcome of ``model`` on ``kind``."""
        counts = self.counts.setdefault(kind, {}).setdefault(model, PassCounts())
        if passed:
            counts.passes += 1
        else:
            counts.failures += 1

    def posterior(self, kind: str, candidate: Candidate) -> Beta:
        """The Beta posterior of ``candidate``'s pass rate on ``kind``."""
        q = candidate.prior(kind)
        seen = self.counts.get(kind, {}).get(candidate.name, PassCounts())
        return Beta(
            alpha=q * self.prior_strength + seen.passes,
            beta=(1.0 - q) * self.prior_strength + seen.failures,
        )

    def estimate(self, kind: str, candidate: Candidate, quantile: float | None = None) -> float:
        """Posterior mean of the pass rate, or its lower ``quantile`` when given."""
        if quantile is None and candidate.name not in self.counts.get(kind, {}):
            return candidate.prior(kind)  # exactly the prior (q*s / (q*s + (1-q)*s) may miss it by an ulp)
        post = self.posterior(kind, candidate)
        return post.mean if quantile is None else post.quantile(quantile)

    def merge(self, other: RoutingStats) -> RoutingStats:
        """A new stats holding both sets of observations (this one's prior strength).

        Counts add, so merge observation sets that are disjoint: merging a fork with its own
        parent counts the parent's observations twice.
        """
        merged = self.model_copy(deep=True)
        for kind, per_model in other.counts.items():
            for model, seen in per_model.items():
                mine = merged.counts.setdefault(kind, {}).setdefault(model, PassCounts())
                mine.passes += seen.passes
                mine.failures += seen.failures
        return merged


class CandidateEstimate(BaseModel):
    """One candidate as the router saw it for one call."""

    name: str
    tier: int
    quality: float = Field(description="Estimated P(pass) used for the decision.")
    expected_cost: Decimal
    worst_case_cost: Decimal
    meets_need: bool
    affordable: bool = Field(description="Worst case fits the remaining budget.")


class Escalation(BaseModel):
    """A cascade step after a failed check: up one rung, or a stop (``to_model`` None)."""

    from_model: str
    to_model: str | None
    reason: str


class RoutingDecision(BaseModel):
    """Everything a routing choice was based on; shown to users and kept in the job's history."""

    mode: Literal["route", "cascade"]
    kind: str
    need: str = Field(description="The need as given: 'draft', 'standard', 'critical' or 'min 0.85'.")
    min_quality: float
    budget_left: Decimal | None = Field(description="Remaining USD at decision time; None is unlimited.")
    candidates: list[CandidateEstimate] = Field(description="Every candidate, cheapest expected first.")
    choice: str | None = Field(description="Model to call now; None when refused or the cascade stopped.")
    plan: list[str] = Field(default_factory=list, description="Cascade ladder, cheapest first.")
    plan_expected_cost: Decimal | None = Field(default=None, description="Calls and checks, expected.")
    plan_pass_probability: float | None = None
    check_cost: Decimal = Decimal(0)
    check_final: bool = False
    degraded: bool = False
    reason: str
    escalations: list[Escalation] = Field(default_factory=list)

    def summary(self) -> str:
        """One readable line: what was chosen, for which need, at what expected cost, and why."""
        need = f"{self.need} (q>={self.min_quality:.2f})"
        budget = "unlimited budget" if self.budget_left is None else f"{_usd(self.budget_left)} left"
        if self.mode == "route":
            if self.choice is None:
                return f"route {self.kind}: REFUSED, need {need}, {budget}: {self.reason}"
            est = self._estimate(self.choice)
            flag = "DEGRADED " if self.degraded else ""
            return (
                f"route {self.kind}: {flag}{self.choice} (q={est.quality:.2f}, "
                f"~{_usd(est.expected_cost)}, worst {_usd(est.worst_case_cost)}) for need {need}, "
                f"{budget}: {self.reason}"
            )
        ladder = " -> ".join(self.plan) if self.plan else "(empty)"
        flag = "DEGRADED " if self.degraded else ""
        head = f"cascade {self.kind}: {flag}{ladder} for need {need}, {budget}"
        if self.plan_expected_cost is not None and self.plan_pass_probability is not None:
            head += f", P(pass)={self.plan_pass_probability:.2f}, ~{_usd(self.plan_expected_cost)}"
        if self.escalations:
            last = self.escalations[-1]
            where = f"now {self.choice}" if self.choice is not None else "stopped"
            return f"{head}; {len(self.escalations)} escalation(s), {where}: {last.reason}"
        if self.choice is None:
            return f"{head}: REFUSED: {self.reason}"
        return f"{head}: {self.reason}"

    def _estimate(self, name: str) -> CandidateEstimate:
        return next(c for c in self.candidates if c.name == name)


def _usd(value: Decimal) -> str:
    return f"${value:.3g}" if value < 1 else f"${value:.2f}"


def _estimates(
    candidates: list[Candidate],
    call: CallEstimate,
    need_q: float,
    budget_left: Decimal | None,
    stats: RoutingStats,
    quantile: float | None,
    extra_worst: Decimal = Decimal(0),
) -> list[CandidateEstimate]:
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidates: names must be unique, got {sorted(names)}")
    out = []
    for c in candidates:
        quality = stats.estimate(call.kind, c, quantile)
        max_out = call.max_output_tokens
        if c.max_output_tokens is not None:
            max_out = min(max_out, c.max_output_tokens)
        worst = c.cost(call.input_tokens, max_out)
        out.append(
            CandidateEstimate(
                name=c.name,
                tier=c.tier,
                quality=quality,
                expected_cost=c.cost(call.input_tokens, call.output_tokens),
                worst_case_cost=worst,
                meets_need=quality >= need_q,
                affordable=budget_left is None or worst + extra_worst <= budget_left,
            )
        )
    out.sort(key=lambda e: (e.expected_cost, e.tier, e.name))
    return out


def route(
    candidates: list[Candidate],
    call: CallEstimate,
    need: Precision | float,
    budget_left: Decimal | None,
    *,
    stats: RoutingStats | None = None,
    on_shortfall: Literal["degrade", "refuse"] = "degrade",
    quantile: float | None = None,
) -> RoutingDecision:
    """Pick the cheapest model that meets ``need`` and whose worst case fits ``budget_left``.

    Among adequate affordable models the lowest expected cost wins; at equal cost the higher
    quality, then the lower tier, then the name. When none is adequate, ``on_shortfall='degrade'``
    picks the best affordable model (highest quality, then cheapest) flagged ``degraded``, and
    ``'refuse'`` chooses nothing; both say why in ``reason``.
    """
    need_q = min_quality(need)
    est = _estimates(candidates, call, need_q, budget_left, stats or RoutingStats(), quantile)
    affordable = [e for e in est if e.affordable]
    adequate = [e for e in affordable if e.meets_need]
    base = RoutingDecision(
        mode="route",
        kind=call.kind,
        need=_need_label(need),
        min_quality=need_q,
        budget_left=budget_left,
        candidates=est,
        choice=None,
        reason=_shortfall(est, need_q, budget_left),
    )
    if adequate:
        best = min(adequate, key=lambda e: (e.expected_cost, -e.quality, e.tier, e.name))
        reason = f"cheapest of {len(adequate)} adequate model(s) within budget"
        return base.model_copy(update={"choice": best.name, "plan": [best.name], "reason": reason})
    if on_shortfall == "degrade" and affordable:
        best = min(affordable, key=lambda e: (-e.quality, e.expected_cost, e.tier, e.name))
        update = {"choice": best.name, "plan": [best.name], "degraded": True}
        return base.model_copy(update={**update, "reason": f"{base.reason}; best affordable instead"})
    return base


def _shortfall(est: list[CandidateEstimate], need_q: float, budget_left: Decimal | None) -> str:
    if not est:
        return "no candidate models"
    if not any(e.affordable for e in est):
        return f"no model's worst case fits {_usd(budget_left or Decimal(0))}"
    if any(e.meets_need for e in est):
        return f"no model meeting q>={need_q:.2f} fits the budget"
    best = max(e.quality for e in est)
    return f"no model reaches q>={need_q:.2f} (best estimate {best:.2f})"


def _ladder(est: list[CandidateEstimate], floor: float) -> list[CandidateEstimate]:
    """Models worth a call, in cost order, up to the best one (any dearer model is no better).

    Rungs between are kept whatever their quality relative to each other: after a failed check
    the next rung is another independent chance, and judging a middle tier "worse" than a cheaper
    one on a few observations would stop it from ever being tried again.
    """
    worth = [e for e in est if e.quality >= floor and e.quality > 0]
    if not worth:
        return []
    top = max(range(len(worth)), key=lambda i: (worth[i].quality, -i))
    return worth[: top + 1]


def _plan_from(
    rungs: list[CandidateEstimate],
    need_q: float,
    budget_left: Decimal | None,
    check_cost: Decimal,
    check_final: bool,
    until: Literal["top", "need"],
) -> tuple[list[CandidateEstimate], Decimal, float]:
    """The affordable prefix of ``rungs``, its expected cost (calls and checks) and P(pass)."""
    plan: list[CandidateEstimate] = []
    spent_worst = Decimal(0)
    p_fail = 1.0
    for rung in rungs:
        # Reaching this rung means the previous one was checked; this one is checked if it is
        # not the last, which we only know later, so budget its check when check_final is set.
        worst = spent_worst + (check_cost if plan else Decimal(0)) + rung.worst_case_cost
        final_check = check_cost if check_final else Decimal(0)
        if budget_left is not None and worst + final_check > budget_left:
            break
        plan.append(rung)
        spent_worst = worst
        p_fail *= 1.0 - rung.quality
        if until == "need" and 1.0 - p_fail >= need_q:
            break
    expected = Decimal(0)
    reach = 1.0  # P(this rung is called) = P(every earlier rung failed its check)
    for i, rung in enumerate(plan):
        checked = i < len(plan) - 1 or check_final
        step = rung.expected_cost + (check_cost if checked else Decimal(0))
        expected += step * Decimal(repr(reach))
        reach *= 1.0 - rung.quality
    return plan, expected.quantize(_COST_STEP), 1.0 - p_fail


def cascade(
    candidates: list[Candidate],
    call: CallEstimate,
    need: Precision | float,
    budget_left: Decimal | None,
    *,
    check_cost: Decimal,
    stats: RoutingStats | None = None,
    floor: float = 0.05,
    until: Literal["top", "need"] = "top",
    check_final: bool = False,
    on_shortfall: Literal["degrade", "refuse"] = "degrade",
    quantile: float | None = None,
) -> RoutingDecision:
    """Plan a cascade: call the cheapest worthwhile model, escalate up the ladder on a failed check.

    The ladder holds the candidates whose quality estimate is at least ``floor`` (and above zero),
    in expected-cost order, up to the top rung: the one with the highest quality estimate (dearer
    models are no better, so they are left out). A plan starting at rung i climbs from there and
    stops at the top rung (``until='top'``) or at the first rung where the plan's P(pass) reaches
    the need (``until='need'``), and earlier where the remaining budget could not pay the next
    call's worst case plus the checks before it (``check_cost`` each, worst case; the last rung's
    check counts only with ``check_final``). The start is the rung whose plan meets the need with
    the lowest expected total cost (calls and checks, each weighted by the probability of getting
    that far); ties go to the cheaper start. The plan may thus start below
    the need: the check catches the failures. Rungs are assumed to fail independently and the
    check to be reliable; the learned stats of the upper rungs, recorded after escalations, absorb
    part of the correlation. If no plan meets the need: degrade to the plan with the highest
    P(pass), or refuse.
    """
    need_q = min_quality(need)
    est = _estimates(candidates, call, need_q, budget_left, stats or RoutingStats(), quantile)
    ladder = _ladder(est, floor)
    options = []
    for i in range(len(ladder)):
        plan, expected, p_pass = _plan_from(ladder[i:], need_q, budget_left, check_cost, check_final, until)
        if plan:
            options.append((plan, expected, p_pass))
    base = RoutingDecision(
        mode="cascade",
        kind=call.kind,
        need=_need_label(need),
        min_quality=need_q,
        budget_left=budget_left,
        candidates=est,
        choice=None,
        check_cost=check_cost,
        check_final=check_final,
        reason="",
    )
    adequate = [o for o in options if o[2] >= need_q]
    if adequate:
        plan, expected, p_pass = min(adequate, key=lambda o: (o[1], o[0][0].expected_cost, o[0][0].tier))
        reason = f"start at {plan[0].name}: lowest expected total of {len(adequate)} adequate plan(s)"
        degraded = False
    elif options and on_shortfall == "degrade":
        plan, expected, p_pass = min(options, key=lambda o: (-o[2], o[1], o[0][0].tier))
        reason = f"no plan reaches P(pass)>={need_q:.2f} within budget; most likely plan instead"
        degraded = True
    else:
        why = "no model above the floor fits the budget" if not options else "no plan meets the need"
        return base.model_copy(update={"reason": why})
    return base.model_copy(
        update={
            "choice": plan[0].name,
            "plan": [p.name for p in plan],
            "plan_expected_cost": expected,
            "plan_pass_probability": p_pass,
            "degraded": degraded,
            "reason": reason,
        }
    )


def escalate(
    decision: RoutingDecision, budget_left: Decimal | None, reason: str = "check failed"
) -> RoutingDecision:
    """After the current rung failed its check: the decision moved one rung up, or stopped.

    Stops (``choice`` None) at the top of the plan, or when ``budget_left`` (what remains now)
    cannot pay the next rung's worst case plus its check when one will follow.
    """
    if decision.choice is None:
        return decision
    current = decision.choice
    at = decision.plan.index(current)
    if at + 1 >= len(decision.plan):
        return _stop(decision, current, f"{reason} at {current}, top of the plan")
    nxt = decision.plan[at + 1]
    checked = at + 2 < len(decision.plan) or decision.check_final
    worst = decision._estimate(nxt).worst_case_cost + (decision.check_cost if checked else Decimal(0))
    if budget_left is not None and worst > budget_left:
        return _stop(decision, current, f"{reason} at {current}; {_usd(budget_left)} left cannot pay {nxt}")
    return decision.model_copy(
        update={
            "choice": nxt,
            "escalations": [
                *decision.escalations,
                Escalation(from_model=current, to_model=nxt, reason=reason),
            ],
        }
    )


def _stop(decision: RoutingDecision, current: str, reason: str) -> RoutingDecision:
    step = Escalation(from_model=current, to_model=None, reason=reason)
    return decision.model_copy(update={"choice": None, "escalations": [*decision.escalations, step]})
