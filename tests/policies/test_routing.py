"""Cost-aware routing: router, cascades, learned pass rates, recorded decisions."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies.routing import (
    NEED_QUALITY,
    Beta,
    CallEstimate,
    Candidate,
    Precision,
    RoutingDecision,
    RoutingStats,
    cascade,
    escalate,
    min_quality,
    route,
)

D = Decimal
CHECK = D("0.000072")
CALL = CallEstimate(kind="code", input_tokens=300, output_tokens=200, max_output_tokens=800)


def tiers(small: float = 0.6, medium: float = 0.8, large: float = 0.92) -> list[Candidate]:
    """The bench's three tiers with one prior each."""
    return [
        Candidate(
            name="tier-small",
            tier=0,
            input_per_mtok=D("0.15"),
            output_per_mtok=D("0.60"),
            default_quality=small,
        ),
        Candidate(
            name="tier-medium",
            tier=1,
            input_per_mtok=D("1.00"),
            output_per_mtok=D("4.00"),
            default_quality=medium,
        ),
        Candidate(
            name="tier-large",
            tier=2,
            input_per_mtok=D("5.00"),
            output_per_mtok=D("15.00"),
            default_quality=large,
        ),
    ]


def worst(c: Candidate, call: CallEstimate) -> Decimal:
    cap = (
        call.max_output_tokens
        if c.max_output_tokens is None
        else min(call.max_output_tokens, c.max_output_tokens)
    )
    return c.cost(call.input_tokens, cap)


prices = st.decimals(min_value=D("0.01"), max_value=D("30"), places=2)
qualities = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def catalogs(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.integers(min_value=1, max_value=5))
    return [
        Candidate(
            name=f"m{i}",
            tier=draw(st.integers(min_value=0, max_value=3)),
            input_per_mtok=draw(prices),
            output_per_mtok=draw(prices),
            quality={"code": draw(qualities)},
        )
        for i in range(n)
    ]


calls = st.builds(
    lambda i, o, extra: CallEstimate(
        kind="code", input_tokens=i, output_tokens=o, max_output_tokens=o + extra
    ),
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=0, max_value=2000),
    st.integers(min_value=0, max_value=4000),
)
needs = st.one_of(st.sampled_from(list(Precision)), qualities)
budgets = st.one_of(st.none(), st.decimals(min_value=D("0"), max_value=D("0.2"), places=6))


def test_named_needs_map_to_documented_quality() -> None:
    """Named needs ask draft 0.6, standard 0.8, critical 0.95; explicit values outside [0, 1] fail."""
    assert dict(NEED_QUALITY) == {"draft": 0.6, "standard": 0.8, "critical": 0.95}
    assert min_quality(0.7) == 0.7
    with pytest.raises(ValueError, match="need"):
        min_quality(1.5)


@settings(max_examples=300, deadline=None)
@given(catalogs(), calls, needs, budgets)
@example(  # found in CI: the posterior mean of a 0.995 prior came out a hair under 0.995
    [
        Candidate(
            name="m0", tier=0, input_per_mtok=D("0.01"), output_per_mtok=D("0.01"), quality={"code": 0.995}
        )
    ],
    CallEstimate(kind="code", input_tokens=0, output_tokens=0, max_output_tokens=0),
    0.995,
    None,
)
def test_router_picks_an_adequate_model_when_an_affordable_one_exists(
    cat: list[Candidate], call: CallEstimate, need: Precision | float, budget: Decimal | None
) -> None:
    """Whenever some affordable model meets the need, the router picks the cheapest such model, undegraded."""
    need_q = min_quality(need)
    ok = [c for c in cat if c.prior("code") >= need_q and (budget is None or worst(c, call) <= budget)]
    decision = route(cat, call, need, budget, on_shortfall="degrade")
    if ok:
        chosen = next(c for c in cat if c.name == decision.choice)
        assert not decision.degraded
        assert chosen.prior("code") >= need_q
        assert chosen.cost(call.input_tokens, call.output_tokens) == min(
            c.cost(call.input_tokens, call.output_tokens) for c in ok
        )
    else:
        assert decision.choice is None or decision.degraded


@settings(max_examples=300, deadline=None)
@given(catalogs(), calls, needs, budgets, st.sampled_from(["degrade", "refuse"]))
def test_router_never_exceeds_the_remaining_budget(
    cat: list[Candidate], call: CallEstimate, need: Precision | float, budget: Decimal | None, mode: str
) -> None:
    """The chosen model's worst case (max output tokens) always fits the remaining budget."""
    decision = route(cat, call, need, budget, on_shortfall=mode)  # type: ignore[arg-type]
    if decision.choice is not None and budget is not None:
        chosen = next(c for c in cat if c.name == decision.choice)
        assert worst(chosen, call) <= budget


@settings(max_examples=200, deadline=None)
@given(catalogs(), calls, needs, budgets, st.randoms(use_true_random=False))
def test_router_is_deterministic_whatever_the_catalog_order(
    cat: list[Candidate], call: CallEstimate, need: Precision | float, budget: Decimal | None, rnd: object
) -> None:
    """Shuffling the catalog never changes the choice or the recorded decision."""
    shuffled = list(cat)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert route(shuffled, call, need, budget) == route(cat, call, need, budget)


@given(qualities, prices, prices)
def test_router_prefers_cheaper_at_equal_quality(q: float, p1: Decimal, p2: Decimal) -> None:
    """Of two models with the same expected quality the cheaper wins, and on a price tie the lower tier."""
    a = Candidate(name="a", tier=1, input_per_mtok=p1, output_per_mtok=p1, default_quality=q)
    b = Candidate(name="b", tier=0, input_per_mtok=p2, output_per_mtok=p2, default_quality=q)
    decision = route([a, b], CALL, 0.0, None)
    expected = "b" if p2 <= p1 else "a"
    assert decision.choice == expected


def test_router_degrades_or_refuses_when_no_model_meets_the_need() -> None:
    """With no adequate model, degrade returns the best affordable, flagged with a reason; refuse, None."""
    cat = tiers()
    degraded = route(cat, CALL, Precision.critical, D("0.01"), on_shortfall="degrade")
    assert degraded.choice == "tier-medium"  # tier-large's worst case ($0.0135) does not fit $0.01
    assert degraded.degraded and "0.95" in degraded.reason
    refused = route(cat, CALL, Precision.critical, D("0.01"), on_shortfall="refuse")
    assert refused.choice is None and not refused.degraded and "0.95" in refused.reason
    broke = route(cat, CALL, Precision.draft, D("0.0001"), on_shortfall="degrade")
    assert broke.choice is None and "fits" in broke.reason


def test_router_avoids_an_adequate_model_it_cannot_afford() -> None:
    """An adequate model whose worst case exceeds the budget is skipped for an affordable adequate one."""
    decision = route(tiers(), CALL, Precision.standard, D("0.004"))
    assert decision.choice == "tier-medium"
    large = next(c for c in decision.candidates if c.name == "tier-large")
    assert large.meets_need and not large.affordable


def test_cascade_escalates_in_cost_order_and_stops_at_the_top() -> None:
    """A cascade climbs cheapest first on each failed check and stops after the top tier."""
    decision = cascade(tiers(), CALL, Precision.critical, None, check_cost=CHECK)
    assert decision.plan == ["tier-small", "tier-medium", "tier-large"]
    assert decision.choice == "tier-small" and not decision.degraded
    seen: list[str | None] = [decision.choice]
    while decision.choice is not None:
        decision = escalate(decision, None)
        seen.append(decision.choice)
    assert seen == ["tier-small", "tier-medium", "tier-large", None]
    assert decision.escalations[-1].to_model is None
    assert "top of the plan" in decision.escalations[-1].reason


def test_cascade_plan_is_cut_where_the_budget_cannot_pay_the_next_call() -> None:
    """A plan holds only the rungs whose worst cases plus the checks before them fit the budget."""
    cat = tiers()
    small, medium = worst(cat[0], CALL), worst(cat[1], CALL)
    budget = small + CHECK + medium  # not enough for tier-large on top
    decision = cascade(cat, CALL, 0.5, budget, check_cost=CHECK)
    assert decision.plan == ["tier-small", "tier-medium"]
    stopped = escalate(escalate(decision, budget - small - CHECK), medium)
    assert stopped.choice is None


def test_escalate_stops_when_the_remaining_budget_shrank() -> None:
    """Escalation re-checks the budget left now and stops with a reason when the next rung no longer fits."""
    decision = cascade(tiers(), CALL, Precision.critical, D("1"), check_cost=CHECK)
    stopped = escalate(decision, D("0.001"))
    assert stopped.choice is None
    assert "cannot pay tier-medium" in stopped.escalations[-1].reason


@settings(max_examples=300, deadline=None)
@given(catalogs(), calls, needs, budgets, st.sampled_from(["top", "need"]), st.booleans())
def test_cascade_plans_climb_in_cost_and_quality_within_budget(
    cat: list[Candidate],
    call: CallEstimate,
    need: Precision | float,
    budget: Decimal | None,
    until: str,
    check_final: bool,
) -> None:
    """Every plan rises in expected cost up to the best model; its worst case with checks fits the budget."""
    decision = cascade(cat, call, need, budget, check_cost=CHECK, until=until, check_final=check_final)  # type: ignore[arg-type]
    by_name = {c.name: c for c in decision.candidates}
    rungs = [by_name[n] for n in decision.plan]
    assert [r.expected_cost for r in rungs] == sorted(r.expected_cost for r in rungs)
    assert all(a.name != b.name for a, b in itertools.pairwise(rungs))
    if rungs and until == "top" and budget is None:
        assert rungs[-1].quality == max(c.quality for c in decision.candidates)
    checks = len(rungs) - 1 + (1 if check_final and rungs else 0)
    total_worst = sum((r.worst_case_cost for r in rungs), D(0)) + checks * CHECK
    if budget is not None:
        assert total_worst <= budget
    if decision.choice is not None and not decision.degraded:
        assert decision.plan_pass_probability is not None
        assert decision.plan_pass_probability >= min_quality(need)


def test_cascade_may_start_below_the_need() -> None:
    """A cheap model below the need starts the cascade when its check makes the expected total lowest."""
    decision = cascade(tiers(small=0.5), CALL, Precision.critical, None, check_cost=CHECK)
    assert decision.choice == "tier-small"
    assert decision.plan_pass_probability is not None and decision.plan_pass_probability >= 0.95


def test_cascade_skips_a_hopeless_cheap_model() -> None:
    """A cheap model that seldom passes does not start the plan: trying it first costs more on average."""
    decision = cascade(tiers(small=0.06), CALL, Precision.standard, None, check_cost=CHECK)
    assert decision.plan == ["tier-medium", "tier-large"]


def test_cascade_leaves_models_below_the_floor_out() -> None:
    """A model whose quality estimate is under the floor is never part of the ladder."""
    decision = cascade(tiers(small=0.3), CALL, Precision.standard, None, check_cost=CHECK, floor=0.5)
    assert "tier-small" not in decision.plan


def test_cascade_keeps_a_middle_tier_that_looks_worse_than_a_cheaper_one() -> None:
    """A dearer middle tier stays on the ladder even if its estimate is below a cheaper model's."""
    decision = cascade(tiers(small=0.85, medium=0.75), CALL, Precision.critical, None, check_cost=CHECK)
    assert decision.plan == ["tier-small", "tier-medium", "tier-large"]


def test_cascade_until_need_stops_at_the_first_adequate_rung() -> None:
    """With until='need' the ladder ends once the plan's P(pass) reaches the need."""
    decision = cascade(tiers(), CALL, Precision.standard, None, check_cost=CHECK, until="need")
    assert decision.plan == ["tier-small", "tier-medium"]


def test_cascade_refuses_or_degrades_when_no_plan_meets_the_need() -> None:
    """Without a plan reaching the need, refuse returns no choice and degrade the likeliest plan, flagged."""
    cat = tiers(small=0.1, medium=0.2, large=0.3)
    refused = cascade(cat, CALL, Precision.critical, None, check_cost=CHECK, on_shortfall="refuse")
    assert refused.choice is None and refused.plan == []
    degraded = cascade(cat, CALL, Precision.critical, None, check_cost=CHECK, on_shortfall="degrade")
    assert degraded.degraded and degraded.plan == ["tier-small", "tier-medium", "tier-large"]


def test_beta_posterior_moves_with_outcomes() -> None:
    """A recorded pass raises the estimate, a recorded failure lowers it, and the prior sets the start."""
    model = tiers()[1]
    stats = RoutingStats(prior_strength=10)
    assert stats.estimate("code", model) == pytest.approx(0.8)
    stats.record("code", "tier-medium", passed=True)
    up = stats.estimate("code", model)
    stats.record("code", "tier-medium", passed=False)
    stats.record("code", "tier-medium", passed=False)
    assert up > 0.8 > stats.estimate("code", model)
    assert stats.estimate("other", model) == pytest.approx(0.8)


def test_lower_quantile_is_conservative() -> None:
    """The lower quantile sits below the mean and rises towards it as evidence accumulates."""
    model = tiers()[1]
    thin = RoutingStats(prior_strength=2)
    thick = RoutingStats(prior_strength=2)
    for i in range(200):
        thick.record("code", "tier-medium", passed=i % 5 != 0)
    assert thin.estimate("code", model, quantile=0.1) < thin.estimate("code", model)
    assert thick.estimate("code", model, quantile=0.1) > thin.estimate("code", model, quantile=0.1)
    assert Beta(alpha=1, beta=1).quantile(0.25) == pytest.approx(0.25)
    assert Beta(alpha=2, beta=3).quantile(0.5) == pytest.approx(0.3857, abs=1e-4)


def test_router_switches_model_after_enough_failures() -> None:
    """Once failures pull the cheap model's posterior under the need, the router picks the next one."""
    cat = tiers(small=0.9)
    stats = RoutingStats(prior_strength=10)
    assert route(cat, CALL, Precision.standard, None, stats=stats).choice == "tier-small"
    failures = 0
    while route(cat, CALL, Precision.standard, None, stats=stats).choice == "tier-small":
        stats.record("code", "tier-small", passed=False)
        failures += 1
    assert failures == 2  # (9 + 0) / (10 + 2) = 0.75 < 0.8
    assert route(cat, CALL, Precision.standard, None, stats=stats).choice == "tier-medium"


def test_stats_merge_adds_observations() -> None:
    """Merging two stats sums their counts per (kind, model) and leaves both inputs unchanged."""
    a, b = RoutingStats(), RoutingStats()
    a.record("code", "x", passed=True)
    b.record("code", "x", passed=False)
    b.record("prose", "y", passed=True)
    merged = a.merge(b)
    assert (merged.counts["code"]["x"].passes, merged.counts["code"]["x"].failures) == (1, 1)
    assert merged.counts["prose"]["y"].passes == 1
    assert a.counts["code"]["x"].failures == 0
    assert merged == b.merge(a)


@settings(max_examples=100, deadline=None)
@given(catalogs(), calls, needs, budgets, st.lists(st.tuples(st.sampled_from(["m0", "m1"]), st.booleans())))
def test_stats_and_decisions_round_trip_through_json(
    cat: list[Candidate],
    call: CallEstimate,
    need: Precision | float,
    budget: Decimal | None,
    outcomes: list[tuple[str, bool]],
) -> None:
    """Stats, candidates and decisions (with escalations) survive a JSON round trip unchanged."""
    stats = RoutingStats()
    for model, passed in outcomes:
        stats.record("code", model, passed)
    assert RoutingStats.model_validate_json(stats.model_dump_json()) == stats
    for c in cat:
        assert Candidate.model_validate_json(c.model_dump_json()) == c
    decision = escalate(cascade(cat, call, need, budget, check_cost=CHECK, stats=stats), budget)
    assert RoutingDecision.model_validate_json(decision.model_dump_json()) == decision
    routed = route(cat, call, need, budget, stats=stats)
    assert RoutingDecision.model_validate_json(routed.model_dump_json()) == routed


@settings(max_examples=100, deadline=None)
@given(catalogs(), calls, needs, budgets)
def test_summary_is_one_readable_line(
    cat: list[Candidate], call: CallEstimate, need: Precision | float, budget: Decimal | None
) -> None:
    """summary() is a single line naming the choice (or the refusal) and the need."""
    for decision in (route(cat, call, need, budget), cascade(cat, call, need, budget, check_cost=CHECK)):
        line = decision.summary()
        assert "\n" not in line
        assert decision.need in line
        assert (decision.choice or "REFUSED") in line


def test_call_estimate_rejects_a_cap_below_the_expected_output() -> None:
    """A call whose max output is below its expected output is rejected, naming the field."""
    with pytest.raises(ValueError, match="max_output_tokens"):
        CallEstimate(input_tokens=1, output_tokens=10, max_output_tokens=5)


def test_duplicate_candidate_names_are_rejected() -> None:
    """Two candidates with one name make routing ambiguous and are rejected."""
    small = tiers()[0]
    with pytest.raises(ValueError, match="unique"):
        route([small, small], CALL, 0.5, None)
