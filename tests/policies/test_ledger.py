"""The budget ledger: reserve/settle, roll-ups, carved child budgets, quotas per period."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.ledger import DIMS, Amount, Ledger, LedgerError, Limits, Quota, Refusal

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def tree() -> Ledger:
    """job (10,000 tokens, $1, 10 calls) -> agent 'a' (4,000 tokens) and agent 'b' (no caps)."""
    ledger = Ledger()
    ledger.add_node("job", None, Limits(tokens=10_000, usd=Decimal("1"), calls=10))
    ledger.add_node("a", "job", Limits(tokens=4_000))
    ledger.add_node("b", "job")
    return ledger


def spent(ledger: Ledger, node: str) -> Amount:
    return ledger.view().node(node).spent


def reserved(ledger: Ledger, node: str) -> Amount:
    return ledger.view().node(node).reserved


# -- reserve, settle, fail, release ----------------------------------------------------------------


def test_reserve_holds_on_node_and_every_ancestor() -> None:
    """A reservation counts as reserved on its node and all its ancestors, not on siblings."""
    ledger = tree()
    assert ledger.reserve("c1", "a", tokens=1_000, usd=Decimal("0.1")) is None
    expected = Amount(tokens=1_000, usd=Decimal("0.1"), calls=1)
    assert reserved(ledger, "a") == expected
    assert reserved(ledger, "job") == expected
    assert reserved(ledger, "b") == Amount()


def test_settle_charges_real_usage_and_releases_the_rest() -> None:
    """Settling charges the real usage up the path and leaves nothing reserved."""
    ledger = tree()
    ledger.reserve("c1", "a", tokens=1_000, usd=Decimal("0.1"))
    ledger.settle("c1", tokens=300, usd=Decimal("0.03"))
    used = Amount(tokens=300, usd=Decimal("0.03"), calls=1)
    assert spent(ledger, "a") == used
    assert spent(ledger, "job") == used
    assert reserved(ledger, "job") == Amount()
    assert ledger.remaining("a") == Limits(tokens=3_700, usd=Decimal("0.97"), calls=9)


def test_refusal_names_the_node_and_limit_and_changes_nothing() -> None:
    """A reservation that does not fit the agent's cap is refused whole, naming the agent and tokens."""
    ledger = tree()
    before = ledger.model_copy(deep=True)
    refusal = ledger.reserve("c1", "a", tokens=4_001, usd=Decimal(0))
    assert refusal == Refusal(
        node="a", limit="tokens", needed=Decimal(4_001), available=Decimal(4_000), cap=Decimal(4_000)
    )
    assert refusal.message() == "node 'a': needs 4001 tokens, only 4000 of its 4000 tokens limit left"
    assert ledger == before


def test_refusal_from_an_ancestor_usd_limit() -> None:
    """An uncapped agent is still refused by the job's USD cap, and the message says so."""
    ledger = tree()
    ledger.reserve("c1", "a", tokens=10, usd=Decimal("0.75"))
    refusal = ledger.reserve("c2", "b", tokens=10, usd=Decimal("0.30"))
    assert refusal is not None
    assert (refusal.node, refusal.limit, refusal.available) == ("job", "usd", Decimal("0.25"))
    assert refusal.message() == "node 'job': needs 0.30 USD, only 0.25 of its 1 USD limit left"


def test_calls_limit_counts_one_per_reservation() -> None:
    """The eleventh concurrent call of a 10-call job is refused on calls."""
    ledger = tree()
    for i in range(10):
        assert ledger.reserve(f"c{i}", "b", tokens=1, usd=Decimal(0)) is None
    refusal = ledger.reserve("c10", "b", tokens=1, usd=Decimal(0))
    assert refusal is not None and refusal.limit == "calls"


def test_reserve_of_an_open_call_id_returns_the_existing_reservation() -> None:
    """Reserving an open call id again changes nothing, even with another amount."""
    ledger = tree()
    ledger.reserve("c1", "a", tokens=1_000, usd=Decimal(0))
    before = ledger.model_copy(deep=True)
    assert ledger.reserve("c1", "a", tokens=3_000, usd=Decimal(0)) is None
    assert ledger == before


def test_reserve_of_a_finished_call_id_raises() -> None:
    """Call ids are single-use: reserving a settled one is a bug and raises."""
    ledger = tree()
    ledger.reserve("c1", "a", tokens=1_000, usd=Decimal(0))
    ledger.settle("c1", tokens=10, usd=Decimal(0))
    with pytest.raises(LedgerError, match="already settled"):
        ledger.reserve("c1", "a", tokens=1_000, usd=Decimal(0))


def test_second_settle_changes_nothing() -> None:
    """A duplicate settle of the same call id (a replayed handler, say) is ignored."""
    ledger = tree()
    ledger.reserve("c1", "a", tokens=1_000, usd=Decimal(0))
    ledger.settle("c1", tokens=500, usd=Decimal(0))
    before = ledger.model_copy(deep=True)
    ledger.settle("c1", tokens=900, usd=Decimal(0))
    ledger.fail("c1")
    ledger.release("c1")
    assert ledger == before


def test_fail_charges_the_reservation_marked_estimated() -> None:
    """A failed call of unknown usage is charged its whole reservation, never zero, and flagged."""
    ledger = tree()
    ledger.reserve("c1", "a", tokens=1_000, usd=Decimal("0.2"))
    ledger.fail("c1")
    view = ledger.view()
    assert view.node("a").spent == Amount(tokens=1_000, usd=Decimal("0.2"), calls=1)
    assert view.node("a").estimated and view.node("job").estimated
    assert not view.node("b").estimated


def test_release_charges_nothing() -> None:
    """A call that never ran is released without charge."""
    ledger = tree()
    ledger.reserve("c1", "a", tokens=1_000, usd=Decimal("0.2"))
    ledger.release("c1")
    assert spent(ledger, "job") == Amount()
    assert reserved(ledger, "job") == Amount()


def test_settle_above_the_reservation_charges_the_truth_and_flags_overrun() -> None:
    """A low input estimate is charged at the real usage and the node shows overrun."""
    ledger = tree()
    ledger.reserve("c1", "a", tokens=3_900, usd=Decimal(0))
    ledger.settle("c1", tokens=4_500, usd=Decimal(0))
    view = ledger.view()
    assert view.node("a").spent.tokens == 4_500
    assert view.node("a").overrun and view.node("job").overrun
    assert view.node("a").remaining.tokens == 0
    assert ledger.reserve("c2", "a", tokens=1, usd=Decimal(0)) is not None


def test_unknown_nodes_calls_and_negative_amounts_raise() -> None:
    """Misuse is a LedgerError, not a refusal."""
    ledger = tree()
    with pytest.raises(LedgerError):
        ledger.reserve("c1", "nope", tokens=1, usd=Decimal(0))
    with pytest.raises(LedgerError):
        ledger.settle("never-reserved", tokens=1, usd=Decimal(0))
    with pytest.raises(LedgerError):
        ledger.reserve("c1", "a", tokens=-1, usd=Decimal(0))
    with pytest.raises(LedgerError):
        ledger.add_budget("a", tokens=-5)
    with pytest.raises(LedgerError):
        ledger.add_node("a", "b")


# -- remaining and add_budget ------------------------------------------------------------------------


def test_remaining_is_the_tightest_across_ancestors() -> None:
    """An uncapped agent's remaining budget is its job's; a capped one's is the smaller of both."""
    ledger = tree()
    ledger.reserve("c1", "b", tokens=7_000, usd=Decimal(0))
    assert ledger.remaining("b") == Limits(tokens=3_000, usd=Decimal(1), calls=9)
    assert ledger.remaining("a").tokens == 3_000
    free = Ledger()
    free.add_node("job", None)
    assert free.remaining("job") == Limits()


def test_add_budget_raises_capped_limits_only() -> None:
    """add_budget raises capped limits; an uncapped dimension stays uncapped."""
    ledger = tree()
    assert ledger.add_budget("a", tokens=1_000, usd=Decimal("5")) is None
    assert ledger.view().node("a").limits == Limits(tokens=5_000)
    assert ledger.add_budget("job", tokens=1, usd=Decimal("0.5"), calls=2) is None
    assert ledger.view().node("job").limits == Limits(tokens=10_001, usd=Decimal("1.5"), calls=12)


def test_add_budget_lets_a_refused_call_through() -> None:
    """After a refusal on the job's cap, adding budget to the job makes the same call fit."""
    ledger = tree()
    assert ledger.reserve("c1", "b", tokens=12_000, usd=Decimal(0)) is not None
    ledger.add_budget("job", tokens=2_000)
    assert ledger.reserve("c1", "b", tokens=12_000, usd=Decimal(0)) is None


# -- carved child budgets ----------------------------------------------------------------------------


def test_carve_takes_the_child_limits_out_of_the_parent() -> None:
    """Carving 6,000 tokens leaves 4,000 for the rest of the job, and the child can use all 6,000."""
    ledger = tree()
    assert ledger.carve("child", "b", Limits(tokens=6_000)) is None
    assert ledger.remaining("a").tokens == 4_000
    assert ledger.remaining("b").tokens == 4_000
    assert ledger.remaining("child").tokens == 6_000
    assert ledger.view().node("job").reserved.tokens == 6_000
    assert ledger.reserve("c1", "child", tokens=6_000, usd=Decimal(0)) is None
    assert ledger.reserve("c2", "a", tokens=4_000, usd=Decimal(0)) is None


def test_carve_refused_when_the_parent_path_cannot_cover_it() -> None:
    """A carve larger than what the job has left is refused, naming the job, and changes nothing."""
    ledger = tree()
    ledger.reserve("c1", "a", tokens=3_000, usd=Decimal(0))
    before = ledger.model_copy(deep=True)
    refusal = ledger.carve("child", "b", Limits(tokens=8_000))
    assert refusal is not None and (refusal.node, refusal.limit) == ("job", "tokens")
    assert refusal.available == 7_000
    assert ledger == before


def test_child_spend_is_not_counted_twice_while_carved() -> None:
    """While open, the parent carries max(child limit, child use): spend plus the rest of the hold."""
    ledger = tree()
    ledger.carve("child", "b", Limits(tokens=6_000))
    ledger.reserve("c1", "child", tokens=2_000, usd=Decimal(0))
    ledger.settle("c1", tokens=1_500, usd=Decimal(0))
    view = ledger.view()
    assert view.node("job").spent.tokens == 1_500
    assert view.node("child").held.tokens == 4_500
    assert view.node("job").spent.tokens + view.node("job").reserved.tokens == 6_000


@pytest.mark.parametrize("outcome", ["success", "failure", "cancellation"])
def test_close_child_charges_what_it_spent_and_returns_the_rest(outcome: str) -> None:
    """Closing a carved child charges its spend to the job and frees the rest, whatever the outcome."""
    ledger = tree()
    ledger.carve("child", "b", Limits(tokens=6_000, usd=Decimal("0.5")))
    ledger.reserve("c1", "child", tokens=1_000, usd=Decimal("0.1"))
    ledger.settle("c1", tokens=800, usd=Decimal("0.05"))
    ledger.reserve("c2", "child", tokens=1_000, usd=Decimal("0.1"))
    if outcome == "success":
        ledger.settle("c2", tokens=200, usd=Decimal("0.01"))
    elif outcome == "failure":
        ledger.fail("c2")
    ledger.close_child("child")  # cancellation: c2 still open, failed by the close
    view = ledger.view()
    child_spent = view.node("child").spent
    assert view.node("job").spent == child_spent
    assert view.node("job").reserved == Amount()
    assert ledger.remaining("b").tokens == 10_000 - child_spent.tokens
    if outcome != "success":
        assert child_spent.tokens == 1_800 and view.node("child").estimated
    assert view.node("child").closed


def test_closed_nodes_take_no_more_calls_and_close_is_idempotent() -> None:
    """A closed child refuses new work with a LedgerError; closing twice changes nothing."""
    ledger = tree()
    ledger.carve("child", "b", Limits(tokens=1_000))
    ledger.close_child("child")
    before = ledger.model_copy(deep=True)
    ledger.close_child("child")
    assert ledger == before
    with pytest.raises(LedgerError, match="closed"):
        ledger.reserve("c1", "child", tokens=1, usd=Decimal(0))
    with pytest.raises(LedgerError, match="closed"):
        ledger.add_node("grandchild", "child")


def test_nested_carves_release_from_the_inside_out() -> None:
    """Closing a child also closes its own carved children and releases every hold."""
    ledger = tree()
    ledger.carve("child", "b", Limits(tokens=6_000))
    ledger.carve("grandchild", "child", Limits(tokens=5_000))
    assert ledger.remaining("child").tokens == 1_000  # 5,000 of its 6,000 are held for the grandchild
    assert ledger.remaining("grandchild").tokens == 5_000
    assert ledger.reserve("x", "child", tokens=1_001, usd=Decimal(0)) is not None
    ledger.reserve("g1", "grandchild", tokens=5_000, usd=Decimal(0))
    ledger.settle("g1", tokens=100, usd=Decimal(0))
    ledger.close_child("child")
    view = ledger.view()
    assert view.node("grandchild").closed
    assert view.node("job").spent.tokens == 100 and view.node("job").reserved == Amount()


def test_add_budget_on_a_carved_child_takes_it_from_the_parent() -> None:
    """Raising a carved child's cap grows its hold on the parent, and is refused if that does not fit."""
    ledger = tree()
    ledger.carve("child", "b", Limits(tokens=6_000))
    assert ledger.add_budget("child", tokens=3_000) is None
    assert ledger.remaining("a").tokens == 1_000
    refusal = ledger.add_budget("child", tokens=1_001)
    assert refusal is not None and refusal.node == "job"
    assert ledger.view().node("child").limits.tokens == 9_000


def test_carve_is_idempotent_and_uncapped_dimensions_roll_up() -> None:
    """A repeated carve changes nothing; a child's uncapped USD spend rolls up to the job as usual."""
    ledger = tree()
    ledger.carve("child", "b", Limits(tokens=1_000))
    before = ledger.model_copy(deep=True)
    assert ledger.carve("child", "b", Limits(tokens=1_000)) is None
    assert ledger == before
    ledger.reserve("c1", "child", tokens=10, usd=Decimal("0.4"))
    assert ledger.remaining("a").usd == Decimal("0.6")


# -- quotas --------------------------------------------------------------------------------------------


def quota_ledger() -> Ledger:
    """One job with 50,000 tokens per hour, periods aligned to T0."""
    ledger = Ledger()
    ledger.add_node("job", None, quota=Quota(tokens=50_000, period=HOUR), period_anchor=T0)
    ledger.add_node("agent", "job")
    return ledger


def test_quota_fits_then_waits_for_the_next_period() -> None:
    """Within one period the quota fills; then the wait is until the next period boundary."""
    ledger = quota_ledger()
    now = T0 + timedelta(minutes=20)
    assert ledger.quota_wait("agent", tokens=40_000, usd=Decimal(0), now=now) is None
    assert ledger.reserve("c1", "agent", tokens=40_000, usd=Decimal(0), now=now) is None
    assert ledger.quota_wait("agent", tokens=20_000, usd=Decimal(0), now=now) == timedelta(minutes=40)
    refusal = ledger.reserve("c2", "agent", tokens=20_000, usd=Decimal(0), now=now)
    assert refusal is not None and refusal.kind == "quota"
    assert refusal.retry_after == timedelta(minutes=40)
    assert refusal.message() == (
        "node 'job': needs 20000 tokens, only 10000 of its 50000 tokens per 1:00:00 quota left;"
        " next period in 0:40:00"
    )
    later = T0 + HOUR
    assert ledger.quota_wait("agent", tokens=20_000, usd=Decimal(0), now=later) is None
    assert ledger.reserve("c2", "agent", tokens=20_000, usd=Decimal(0), now=later) is None


def test_quota_never_fits_is_distinct() -> None:
    """A call larger than the whole quota gets a Refusal, not a wait."""
    ledger = quota_ledger()
    answer = ledger.quota_wait("agent", tokens=60_000, usd=Decimal(0), now=T0)
    assert isinstance(answer, Refusal) and answer.retry_after is None
    assert answer.message() == (
        "node 'job': needs 60000 tokens, more than its whole 50000 tokens per 1:00:00 quota: it can never fit"
    )


def test_quota_counts_calls_in_the_period_they_were_reserved() -> None:
    """A call reserved in period 0 and settled in period 1 uses period 0's quota, at its real usage."""
    ledger = quota_ledger()
    ledger.reserve("c1", "agent", tokens=50_000, usd=Decimal(0), now=T0 + timedelta(minutes=59))
    assert ledger.quota_wait("agent", tokens=50_000, usd=Decimal(0), now=T0 + HOUR) is None
    ledger.reserve("c2", "agent", tokens=30_000, usd=Decimal(0), now=T0 + HOUR)
    ledger.settle("c1", tokens=1_000, usd=Decimal(0))
    ledger.settle("c2", tokens=10_000, usd=Decimal(0))
    assert ledger.view().node("job").quota_used.tokens == 10_000
    assert ledger.quota_wait("agent", tokens=40_000, usd=Decimal(0), now=T0 + HOUR) is None


def test_quota_released_reservation_frees_the_period() -> None:
    """Releasing a call gives its reservation back to the current period."""
    ledger = quota_ledger()
    ledger.reserve("c1", "agent", tokens=50_000, usd=Decimal(0), now=T0)
    ledger.release("c1")
    assert ledger.quota_wait("agent", tokens=50_000, usd=Decimal(0), now=T0) is None


def test_quota_periods_align_to_the_anchor_and_waits_take_the_longest() -> None:
    """Periods start at the node's anchor; with two quotas on the path the longer wait wins."""
    ledger = Ledger()
    anchor = T0 + timedelta(minutes=10)
    ledger.add_node("job", None, quota=Quota(calls=2, period=HOUR), period_anchor=anchor)
    ledger.add_node("agent", "job", quota=Quota(calls=1, period=timedelta(minutes=5)), period_anchor=anchor)
    now = anchor + timedelta(minutes=2)
    ledger.reserve("c1", "agent", tokens=1, usd=Decimal(0), now=now)
    assert ledger.quota_wait("agent", tokens=1, usd=Decimal(0), now=now) == timedelta(minutes=3)
    now += timedelta(minutes=3)
    ledger.reserve("c2", "agent", tokens=1, usd=Decimal(0), now=now)
    # both full now: agent frees in 5 minutes, job at anchor + 1 h
    assert ledger.quota_wait("agent", tokens=1, usd=Decimal(0), now=now) == timedelta(minutes=55)


def test_quota_needs_now_and_an_anchor() -> None:
    """A quota without an anchor, or a reservation under a quota without now, is a LedgerError."""
    ledger = Ledger()
    with pytest.raises(LedgerError, match="period_anchor"):
        ledger.add_node("job", None, quota=Quota(tokens=1, period=HOUR))
    with pytest.raises(ValueError, match="period"):
        Quota(tokens=1, period=timedelta(0))
    with pytest.raises(LedgerError, match="pass now"):
        quota_ledger().reserve("c1", "agent", tokens=1, usd=Decimal(0))


# -- serialisation ---------------------------------------------------------------------------------------


def test_json_round_trip_preserves_everything() -> None:
    """A ledger with open calls, carves, quotas and flags survives JSON unchanged (continue-as-new)."""
    ledger = quota_ledger()
    ledger.add_node("capped", "job", Limits(tokens=100_000, usd=Decimal("2.5"), calls=50))
    ledger.carve("child", "capped", Limits(tokens=9_000, usd=Decimal("0.123456789")))
    ledger.reserve("c1", "child", tokens=1_000, usd=Decimal("0.0001"), now=T0)
    ledger.reserve("c2", "agent", tokens=1_000, usd=Decimal("0.5"), now=T0)
    ledger.fail("c2")
    ledger.reserve("c3", "capped", tokens=100, usd=Decimal("0.01"), now=T0)
    ledger.settle("c3", tokens=200, usd=Decimal("0.02"))
    restored = Ledger.model_validate_json(ledger.model_dump_json())
    assert restored == ledger
    assert restored.view() == ledger.view()
    restored.settle("c1", tokens=10, usd=Decimal("0.00001"))
    assert restored.view().node("child").spent.usd == Decimal("0.00001")


# -- tool calls ------------------------------------------------------------------------------------


def tool_tree() -> Ledger:
    """job (5 tool calls, $1, 10 model calls) -> agent 'a' (2 tool calls) and agent 'b' (no caps)."""
    ledger = Ledger()
    ledger.add_node("job", None, Limits(usd=Decimal("1"), calls=10, tool_calls=5))
    ledger.add_node("a", "job", Limits(tool_calls=2))
    ledger.add_node("b", "job")
    return ledger


def test_tool_call_reserves_one_tool_call_and_its_price_but_no_model_call() -> None:
    """A tool reservation holds one tool call and its price on the node and its ancestors, no tokens."""
    ledger = tool_tree()
    assert ledger.reserve_tool("t1", "a", usd=Decimal("0.05")) is None
    expected = Amount(usd=Decimal("0.05"), tool_calls=1)
    assert reserved(ledger, "a") == expected
    assert reserved(ledger, "job") == expected
    assert ledger.remaining("a") == Limits(usd=Decimal("0.95"), calls=10, tool_calls=1)


def test_tool_calls_cap_on_the_node_refuses_and_changes_nothing() -> None:
    """The third tool call of an agent capped at two is refused on that agent, naming the cap."""
    ledger = tool_tree()
    assert ledger.reserve_tool("t1", "a", usd=Decimal(0)) is None
    assert ledger.reserve_tool("t2", "a", usd=Decimal(0)) is None
    before = ledger.model_copy(deep=True)
    refusal = ledger.reserve_tool("t3", "a", usd=Decimal(0))
    assert refusal is not None
    assert (refusal.node, refusal.limit, refusal.available, refusal.cap) == ("a", "tool_calls", 0, 2)
    assert refusal.message() == "node 'a': needs 1 tool calls, only 0 of its 2 tool calls limit left"
    assert ledger == before


def test_tool_calls_cap_on_an_ancestor_refuses() -> None:
    """An uncapped agent's tool calls are refused once the job's tool-call cap is used up."""
    ledger = tool_tree()
    for n in range(5):
        assert ledger.reserve_tool(f"t{n}", "b", usd=Decimal(0)) is None
    refusal = ledger.reserve_tool("t5", "b", usd=Decimal(0))
    assert refusal is not None and (refusal.node, refusal.limit) == ("job", "tool_calls")


def test_tool_calls_and_model_calls_count_against_their_own_caps_only() -> None:
    """A full tool-call cap leaves model calls free, and a full model-call cap leaves tool calls free."""
    ledger = Ledger()
    ledger.add_node("job", None, Limits(calls=1, tool_calls=1))
    assert ledger.reserve_tool("t1", "job", usd=Decimal(0)) is None
    assert ledger.reserve("m1", "job", tokens=10, usd=Decimal(0)) is None
    tool_refusal = ledger.reserve_tool("t2", "job", usd=Decimal(0))
    model_refusal = ledger.reserve("m2", "job", tokens=10, usd=Decimal(0))
    assert tool_refusal is not None and tool_refusal.limit == "tool_calls"
    assert model_refusal is not None and model_refusal.limit == "calls"
    ledger.settle("m1", tokens=10, usd=Decimal(0))
    ledger.settle("t1", tokens=0, usd=Decimal(0))
    assert spent(ledger, "job") == Amount(tokens=10, calls=1, tool_calls=1)


def test_tool_price_counts_in_usd_like_model_spend() -> None:
    """A priced tool is refused by a usd cap; settling charges one tool call and its price."""
    ledger = tool_tree()
    assert ledger.reserve("m1", "b", tokens=100, usd=Decimal("0.9")) is None
    refusal = ledger.reserve_tool("t1", "b", usd=Decimal("0.2"))
    assert refusal is not None and (refusal.node, refusal.limit) == ("job", "usd")
    assert ledger.reserve_tool("t2", "b", usd=Decimal("0.1")) is None
    ledger.settle("t2", tokens=0, usd=Decimal("0.1"))
    assert spent(ledger, "b") == Amount(usd=Decimal("0.1"), tool_calls=1)
    assert reserved(ledger, "job") == Amount(tokens=100, usd=Decimal("0.9"), calls=1)


def test_released_tool_call_gives_its_tool_call_and_price_back() -> None:
    """A tool call that never started is released: nothing charged, its cap free again."""
    ledger = tool_tree()
    ledger.reserve_tool("t1", "a", usd=Decimal("0.3"))
    ledger.reserve_tool("t2", "a", usd=Decimal("0.3"))
    ledger.release("t2")
    assert reserved(ledger, "a") == Amount(usd=Decimal("0.3"), tool_calls=1)
    assert spent(ledger, "a") == Amount()
    assert ledger.reserve_tool("t3", "a", usd=Decimal("0.3")) is None


def test_failed_tool_call_is_charged_its_reservation() -> None:
    """A tool call whose outcome is unknown is charged one tool call and its price, marked estimated."""
    ledger = tool_tree()
    ledger.reserve_tool("t1", "a", usd=Decimal("0.3"))
    ledger.fail("t1")
    view = ledger.view().node("a")
    assert view.spent == Amount(usd=Decimal("0.3"), tool_calls=1) and view.estimated


def test_tool_calls_quota_per_period() -> None:
    """A tool-call quota fills within a period, says when the next one starts, and ignores model calls."""
    ledger = Ledger()
    ledger.add_node("job", None, quota=Quota(tool_calls=2, period=HOUR), period_anchor=T0)
    ledger.add_node("agent", "job")
    now = T0 + timedelta(minutes=45)
    assert ledger.reserve_tool("t1", "agent", usd=Decimal(0), now=now) is None
    assert ledger.reserve_tool("t2", "agent", usd=Decimal(0), now=now) is None
    refusal = ledger.reserve_tool("t3", "agent", usd=Decimal(0), now=now)
    assert refusal is not None and (refusal.kind, refusal.limit) == ("quota", "tool_calls")
    assert refusal.retry_after == timedelta(minutes=15)
    assert refusal.message() == (
        "node 'job': needs 1 tool calls, only 0 of its 2 tool calls per 1:00:00 quota left;"
        " next period in 0:15:00"
    )
    assert ledger.reserve("m1", "agent", tokens=1, usd=Decimal(0), now=now) is None
    assert ledger.view().node("job").quota_used == Amount(tokens=1, calls=1, tool_calls=2)
    assert ledger.reserve_tool("t3", "agent", usd=Decimal(0), now=T0 + HOUR) is None


def test_add_budget_raises_a_tool_calls_cap() -> None:
    """add_budget raises a capped tool_calls limit, and the refused tool call then fits."""
    ledger = tool_tree()
    ledger.reserve_tool("t1", "a", usd=Decimal(0))
    ledger.reserve_tool("t2", "a", usd=Decimal(0))
    assert ledger.reserve_tool("t3", "a", usd=Decimal(0)) is not None
    assert ledger.add_budget("a", tool_calls=1) is None
    assert ledger.view().node("a").limits == Limits(tool_calls=3)
    assert ledger.reserve_tool("t3", "a", usd=Decimal(0)) is None


def test_carve_holds_tool_calls_on_the_parent_until_closed() -> None:
    """A child carved with 3 tool calls holds them on the job; closing it returns the unused ones."""
    ledger = tool_tree()
    assert ledger.carve("child", "job", Limits(tool_calls=3)) is None
    assert ledger.remaining("b").tool_calls == 2
    ledger.reserve_tool("t1", "child", usd=Decimal(0))
    ledger.settle("t1", tokens=0, usd=Decimal(0))
    ledger.close_child("child")
    assert ledger.remaining("b").tool_calls == 4


# -- properties --------------------------------------------------------------------------------------------

cents = st.integers(0, 60).map(lambda c: Decimal(c) / 100)
maybe_tokens = st.none() | st.integers(0, 4_000)
maybe_usd = st.none() | st.integers(0, 400).map(lambda c: Decimal(c) / 100)
maybe_calls = st.none() | st.integers(0, 12)
limits_st = st.builds(Limits, tokens=maybe_tokens, usd=maybe_usd, calls=maybe_calls, tool_calls=maybe_calls)
pick = st.integers(0, 1_000)
ops_st = st.one_of(
    st.tuples(st.just("add_node"), pick, limits_st),
    st.tuples(st.just("carve"), pick, limits_st),
    st.tuples(st.just("reserve"), pick, st.integers(0, 800), cents),
    st.tuples(st.just("reserve"), pick, st.integers(0, 800), cents),
    st.tuples(st.just("reserve_tool"), pick, cents),
    st.tuples(st.just("settle"), pick, st.integers(0, 4)),
    st.tuples(st.just("settle"), pick, st.integers(0, 4)),
    st.tuples(st.just("fail"), pick),
    st.tuples(st.just("release"), pick),
    st.tuples(st.just("close"), pick),
    st.tuples(st.just("add_budget"), pick, st.integers(0, 500), cents, st.integers(0, 2), st.integers(0, 2)),
)


@dataclass
class Model:
    """What the test itself believes, kept apart from the ledger's own bookkeeping."""

    parent: dict[str, str | None] = field(default_factory=lambda: {"root": None})
    closed: set[str] = field(default_factory=set)
    carved: set[str] = field(default_factory=set)
    open: dict[str, tuple[str, Amount]] = field(default_factory=dict)
    charges: dict[str, tuple[str, Amount]] = field(default_factory=dict)
    counter: int = 0

    def open_nodes(self) -> list[str]:
        return [n for n in self.parent if n not in self.closed]

    def subtree(self, node: str) -> set[str]:
        out = {node}
        for n in self.parent:  # parents are added first, so one pass suffices
            if self.parent[n] in out:
                out.add(n)
        return out


def plan(model: Model, op: tuple[Any, ...]) -> tuple[Any, ...]:
    """Turn a generated operation into a concrete step, with node and call ids resolved."""
    kind, i = op[0], op[1]
    nodes = model.open_nodes()
    calls = list(model.open) + list(model.charges)
    if kind in ("add_node", "carve", "reserve", "reserve_tool"):
        model.counter += 1
        node = nodes[i % len(nodes)]
        if kind == "reserve":
            return ("reserve", f"c{model.counter}", node, op[2], op[3])
        if kind == "reserve_tool":
            return ("reserve_tool", f"c{model.counter}", node, op[2])
        return (kind, f"n{model.counter}", node, op[2])
    if kind in ("settle", "fail", "release") and calls:
        call = calls[i % len(calls)]
        if kind != "settle":
            return (kind, call)
        held = model.open[call][1] if call in model.open else Amount()
        return ("settle", call, held.tokens * op[2] // 4, held.usd * op[2] / 4)
    if kind == "close" and len(model.parent) > 1:
        return ("close", list(model.parent)[1:][i % (len(model.parent) - 1)])
    if kind == "add_budget":
        return ("add_budget", nodes[i % len(nodes)], op[2], op[3], op[4], op[5])
    return ("noop",)


def update(model: Model, step: tuple[Any, ...], result: Any) -> None:
    """Record in the model what a step should have done."""
    kind = step[0]
    if kind == "add_node" or (kind == "carve" and result is None):
        model.parent[step[1]] = step[2]
        if kind == "carve":
            model.carved.add(step[1])
    elif kind == "reserve" and result is None:
        model.open[step[1]] = (step[2], Amount(tokens=step[3], usd=step[4], calls=1))
    elif kind == "reserve_tool" and result is None:
        model.open[step[1]] = (step[2], Amount(usd=step[3], tool_calls=1))
    elif kind in ("settle", "fail", "release") and step[1] in model.open:
        node, held = model.open.pop(step[1])
        if kind == "settle":
            # one model call or one tool call, as reserved
            charge = Amount(tokens=step[2], usd=step[3], calls=held.calls, tool_calls=held.tool_calls)
        else:
            charge = held if kind == "fail" else Amount()
        model.charges[step[1]] = (node, charge)
    elif kind == "close" and step[1] not in model.closed:
        sub = model.subtree(step[1])
        for call in [c for c, (n, _) in model.open.items() if n in sub]:
            model.charges[call] = model.open.pop(call)
        model.closed |= sub


def run(ledger: Ledger, step: tuple[Any, ...]) -> Any:
    """Apply a concrete step (ids resolved) to a ledger."""
    kind = step[0]
    if kind == "add_node":
        return ledger.add_node(step[1], step[2], step[3])
    if kind == "carve":
        return ledger.carve(step[1], step[2], step[3])
    if kind == "reserve":
        return ledger.reserve(step[1], step[2], tokens=step[3], usd=step[4])
    if kind == "reserve_tool":
        return ledger.reserve_tool(step[1], step[2], usd=step[3])
    if kind == "settle":
        return ledger.settle(step[1], tokens=step[2], usd=step[3])
    if kind == "fail":
        return ledger.fail(step[1])
    if kind == "release":
        return ledger.release(step[1])
    if kind == "close":
        return ledger.close_child(step[1])
    if kind == "add_budget":
        return ledger.add_budget(step[1], tokens=step[2], usd=step[3], calls=step[4], tool_calls=step[5])
    return None


def check(ledger: Ledger, model: Model) -> None:
    """The invariant, the roll-ups and the independent model all agree."""
    view = ledger.view()
    by_id = {v.id: v for v in view.nodes}
    assert list(by_id) == list(model.parent)
    for v in view.nodes:
        node = ledger.nodes[v.id]
        used = v.spent + v.reserved
        for d in DIMS:
            cap = v.limits.get(d)
            if cap is not None:
                assert used.get(d) <= cap, (v.id, d, used, v.limits)
        children = [by_id[c] for c in node.children]
        assert v.spent == sum((c.spent for c in children), node.own_spent)
        assert v.reserved == sum((c.reserved + c.held for c in children), node.own_reserved)
        sub = model.subtree(v.id)
        assert v.spent == sum((a for n, a in model.charges.values() if n in sub), Amount())
        open_in = sum((a for n, a in model.open.values() if n in sub), Amount())
        holds = sum((by_id[n].held for n in sub if n != v.id), Amount())
        assert v.reserved == open_in + holds
        assert not v.overrun
        if v.id in model.carved and v.id not in model.closed:
            # the carve is guaranteed: the child can use all of its cap, whatever its siblings do
            for d in DIMS:
                cap = v.limits.get(d)
                rest = Decimal(0) if cap is None else cap - used.get(d)
                assert v.held.get(d) == rest
                if cap is not None:
                    assert v.remaining.get(d) == rest
        else:
            assert v.held == Amount()
        assert v.closed == (v.id in model.closed)


@settings(max_examples=200, deadline=None)
@given(root=limits_st, ops=st.lists(ops_st, min_size=10, max_size=40))
def test_random_operations_keep_the_invariant_and_replays_change_nothing(
    root: Limits, ops: list[tuple[Any, ...]]
) -> None:
    """Any operation sequence keeps spent + reserved within every cap, roll-ups balanced, replays no-ops."""
    ledger = Ledger()
    ledger.add_node("root", None, root)
    model = Model()
    for op in ops:
        step = plan(model, op)
        if step[0] in ("reserve", "reserve_tool"):
            room = ledger.remaining(step[2])
            if step[0] == "reserve":
                need = Amount(tokens=step[3], usd=step[4], calls=1)
            else:
                need = Amount(usd=step[3], tool_calls=1)
            fits = all((cap := room.get(d)) is None or need.get(d) <= cap for d in DIMS)
        first = run(ledger, step)
        if step[0] in ("reserve", "reserve_tool"):
            assert (first is None) == fits, (first, room, need)
        update(model, step, first)
        check(ledger, model)
        if step[0] != "add_budget":  # additive by design; deduplicated by the update id upstream
            before = ledger.model_copy(deep=True)
            assert run(ledger, step) == first
            assert ledger == before
    assert Ledger.model_validate_json(ledger.model_dump_json()) == ledger


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 12_000), st.sampled_from(["settle", "release", "open"])),
        max_size=40,
    ),
    offset=st.integers(-90, 90),
)
def test_quota_is_never_exceeded_within_a_period(steps: list[tuple[int, int, str]], offset: int) -> None:
    """Calls reserved in any one period never use more than the quota, and quota_wait agrees with reserve."""
    quota = 10_000
    anchor = T0 + timedelta(minutes=offset)
    period = timedelta(minutes=30)
    ledger = Ledger()
    ledger.add_node("job", None, quota=Quota(tokens=quota, period=period), period_anchor=anchor)
    now = T0
    per_period: dict[int, int] = {}
    for n, (advance, tokens, outcome) in enumerate(steps):
        now += timedelta(minutes=advance)
        wait = ledger.quota_wait("job", tokens=tokens, usd=Decimal(0), now=now)
        refusal = ledger.reserve(f"c{n}", "job", tokens=tokens, usd=Decimal(0), now=now)
        if tokens > quota:
            assert isinstance(wait, Refusal) and refusal == wait
            continue
        if wait is not None:
            assert isinstance(wait, timedelta) and refusal is not None and refusal.retry_after == wait
            assert (now + wait - anchor) % period == timedelta(0)
            assert (now + wait - anchor) // period == (now - anchor) // period + 1
            continue
        assert refusal is None
        index = (now - anchor) // period
        charge = {"settle": tokens // 2, "release": 0, "open": tokens}[outcome]
        if outcome == "settle":
            ledger.settle(f"c{n}", tokens=charge, usd=Decimal(0))
        elif outcome == "release":
            ledger.release(f"c{n}")
        per_period[index] = per_period.get(index, 0) + charge
        assert per_period[index] <= quota
        assert ledger.view().node("job").quota_used.tokens == per_period[index]


def test_a_childs_tool_calls_are_counted_and_flag_overrun_past_a_cap() -> None:
    """Tool calls a child ran are counted on the node (no model call, no usd); past a cap they are
    counted all the same and the node is flagged overrun."""
    ledger = tool_tree()
    ledger.charge_tool_calls("c1", "a", 2, now=T0)
    assert spent(ledger, "a") == Amount(tool_calls=2)
    assert not ledger.view().node("a").overrun
    ledger.charge_tool_calls("c2", "a", 1, now=T0)
    assert spent(ledger, "a") == Amount(tool_calls=3)
    assert ledger.view().node("a").overrun
    assert spent(ledger, "job") == Amount(tool_calls=3)
