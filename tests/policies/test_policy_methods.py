"""Policy methods the kernel changes its state through: the inbox's push and drain, the ledger's charge."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from policies.ledger import Ledger, Limits
from policies.scheduling import AgingPriorityQueue

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_drain_takes_matching_items_in_pop_order_and_ages_the_rest() -> None:
    """drain hands out what it accepts in the order pop would, keeps the rest in arrival order, ticks once."""
    inbox = AgingPriorityQueue()
    ids = [inbox.push_next(p, {"agent": a}) for p, a in [(3, "x"), (1, None), (3, "y"), (0, "x")]]
    assert ids == ["m0", "m1", "m2", "m3"]
    popped = AgingPriorityQueue.model_validate(inbox.model_dump())
    order = [popped.pop().id for _ in range(4)]
    taken = inbox.drain(lambda item: item.payload["agent"] in (None, "x"))
    assert [item.id for item in taken] == [i for i in order if i != "m2"]
    assert [item.id for item in inbox.items] == ["m2"]
    assert inbox.tick == 1
    assert inbox.push_next(2) == "m4"


def test_charge_books_spend_that_does_not_fit_and_flags_the_overrun() -> None:
    """Unreserved spend is charged whether or not it fits; only a misfit flags the node overrun."""
    ledger = Ledger()
    ledger.add_node("job", None, Limits(tokens=100, calls=1))
    ledger.charge("a", "job", 60, Decimal("0.01"), now=NOW)
    view = ledger.view().node("job")
    assert (view.spent.tokens, view.overrun) == (60, False)
    ledger.charge("b", "job", 70, Decimal("0.02"), now=NOW)  # over the tokens and the one-call cap
    view = ledger.view().node("job")
    assert (view.spent.tokens, view.spent.usd, view.overrun) == (130, Decimal("0.03"), True)
