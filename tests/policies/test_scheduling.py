"""Scheduling disciplines: exact orders, starvation freedom, fair-share convergence, JSON state."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from policies.scheduling import (
    AgingPriorityQueue,
    FairShare,
    RoundRobin,
    StrictPriorityQueue,
    jain_index,
)


def drain(queue: StrictPriorityQueue) -> list[str]:
    return [queue.pop().id for _ in range(len(queue))]


def run_fair_share(scheduler: FairShare, turns: int, rng: random.Random, low: int, high: int) -> list[str]:
    picked = []
    for _ in range(turns):
        agent = scheduler.next()
        scheduler.charge(agent, rng.randint(low, high))
        picked.append(agent)
    return picked


# --- queues and round robin -------------------------------------------------------------------------


def test_priority_queue_peek_and_remove() -> None:
    """peek shows the head without taking it; remove takes an item out wherever it waits."""
    queue = AgingPriorityQueue()
    for name in "abcd":
        queue.push(name, 1, {"n": name})
    head = queue.peek()
    assert head is not None and head.id == "a"
    queue.remove("c")
    assert "c" not in queue and "d" in queue
    assert drain(queue) == ["a", "b", "d"]
    assert queue.peek() is None
    with pytest.raises(IndexError):
        queue.pop()


def test_queues_refuse_duplicate_ids() -> None:
    """Pushing an id that is already waiting is refused, so ids stay unique handles for updates."""
    for queue in (StrictPriorityQueue(), AgingPriorityQueue()):
        queue.push("x", 1)
        with pytest.raises(ValueError):
            queue.push("x", 2)


def test_round_robin_order_is_exact() -> None:
    """Round robin hands out turns in roster order and wraps around, exactly."""
    rotation = RoundRobin(agents=["writer", "editor", "critic"])
    assert [rotation.next() for _ in range(7)] == [
        "writer",
        "editor",
        "critic",
        "writer",
        "editor",
        "critic",
        "writer",
    ]


def test_round_robin_skips_unavailable_agents() -> None:
    """An unavailable agent loses its turn and the rotation continues after the agent that spoke."""
    rotation = RoundRobin(agents=["a", "b", "c"])
    assert rotation.next() == "a"
    assert rotation.next(skip={"b"}) == "c"
    assert rotation.peek() == "a"
    assert [rotation.next() for _ in range(3)] == ["a", "b", "c"]
    with pytest.raises(LookupError):
        rotation.next(skip={"a", "b", "c"})


def test_round_robin_refuses_duplicate_agents() -> None:
    """A roster naming the same agent twice is rejected at construction."""
    with pytest.raises(ValueError):
        RoundRobin(agents=["a", "b", "a"])


# --- strict priority and aging ------------------------------------------------------------------------


@given(st.lists(st.integers(min_value=0, max_value=5), max_size=40))
def test_strict_priority_order_with_fifo_ties(priorities: list[int]) -> None:
    """Strict priority pops lower numbers first and equal priorities in arrival order."""
    queue = StrictPriorityQueue()
    for index, priority in enumerate(priorities):
        queue.push(f"t{index}", priority)
    expected = [f"t{i}" for i, _ in sorted(enumerate(priorities), key=lambda pair: (pair[1], pair[0]))]
    assert drain(queue) == expected


def test_set_priority_reorders_waiting_items() -> None:
    """set_priority moves a waiting item, which keeps its arrival rank among equals."""
    queue = StrictPriorityQueue()
    for name, priority in [("a", 2), ("b", 2), ("c", 1)]:
        queue.push(name, priority)
    queue.set_priority("b", 0)
    queue.set_priority("c", 2)
    assert [queue.pop().id for _ in range(3)] == ["b", "a", "c"]
    with pytest.raises(KeyError):
        queue.set_priority("missing", 0)
    with pytest.raises(ValueError):
        queue.push("d", -1)


def test_strict_priority_starves_under_urgent_stream() -> None:
    """Without aging, a continuous stream of urgent items keeps a low-priority item waiting forever."""
    queue = StrictPriorityQueue()
    queue.push("low", 5)
    for tick in range(500):
        queue.push(f"urgent{tick}", 0)
        assert queue.pop().id != "low"


@settings(max_examples=150, deadline=None)
@given(
    low_priority=st.integers(min_value=1, max_value=8),
    age_every=st.integers(min_value=1, max_value=4),
    rate=st.integers(min_value=1, max_value=3),
    backlog=st.lists(st.integers(min_value=0, max_value=10), max_size=6),
    pattern=st.lists(st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=3), min_size=1),
)
def test_aging_bounds_the_wait_of_a_low_priority_item(
    low_priority: int, age_every: int, rate: int, backlog: list[int], pattern: list[list[int]]
) -> None:
    """Under 1..rate urgent arrivals every tick, a low-priority item waits no longer than wait_bound."""
    queue = AgingPriorityQueue(age_every=age_every)
    for index, priority in enumerate(backlog):
        queue.push(f"old{index}", priority)
    bound = queue.wait_bound(low_priority, queued_ahead=len(queue), arrivals_per_tick=rate)
    queue.push("low", low_priority)
    pops_before = 0
    for tick in range(bound + 1):
        for index, priority in enumerate(pattern[tick % len(pattern)][:rate]):
            queue.push(f"new{tick}.{index}", min(priority, low_priority))
        if queue.pop().id == "low":
            break
        pops_before += 1
    else:
        pytest.fail(f"low-priority item still waiting after {bound + 1} pops")
    assert pops_before <= bound


def test_aging_keeps_accrued_age_across_set_priority() -> None:
    """Re-prioritising an aged item keeps the age it has accrued while waiting."""
    queue = AgingPriorityQueue(age_every=1)
    queue.push("old", 9)
    queue.advance(6)
    assert queue.effective_priority("old") == 3
    queue.set_priority("old", 5)
    assert queue.effective_priority("old") == -1
    queue.push("fresh", 0)
    assert queue.pop().id == "old"


# --- fair share -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fair_share_token_shares_converge_to_weights(seed: int) -> None:
    """Over 2,000 turns of random cost, each agent's token share is within 5% of its weight share."""
    weights = {"lead": 3.0, "writer": 2.0, "critic": 1.0, "intern": 0.5}
    scheduler = FairShare.of(weights)
    run_fair_share(scheduler, 2000, random.Random(seed), 10, 2000)
    shares, targets = scheduler.shares(), scheduler.weight_shares()
    for name in weights:
        assert abs(shares[name] - targets[name]) <= 0.05 * targets[name], (name, shares[name], targets[name])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fair_share_equal_weights_is_fair_by_jain(seed: int) -> None:
    """With equal weights, Jain's index of tokens consumed stays at or above 0.99."""
    scheduler = FairShare.of({name: 1.0 for name in ("a", "b", "c", "d", "e")})
    run_fair_share(scheduler, 2000, random.Random(seed), 1, 3000)
    assert jain_index([agent.tokens for agent in scheduler.agents]) >= 0.99


def test_fair_share_ties_break_in_roster_order() -> None:
    """Agents with equal virtual runtime are chosen in the order they joined."""
    scheduler = FairShare.of({"b": 1.0, "a": 1.0, "c": 1.0})
    picked = []
    for _ in range(6):
        picked.append(scheduler.next())
        scheduler.charge(picked[-1], 100)
    assert picked == ["b", "a", "c", "b", "a", "c"]


def test_fair_share_newcomer_starts_at_minimum_and_does_not_monopolise() -> None:
    """A late joiner starts at the least virtual runtime: it gets its share, not a catch-up burst."""
    rng = random.Random(7)
    scheduler = FairShare.of({"a": 1.0, "b": 1.0, "c": 1.0})
    run_fair_share(scheduler, 600, rng, 100, 200)
    floor = min(agent.vruntime for agent in scheduler.agents)
    scheduler.join("late", 1.0)
    assert scheduler.agents[-1].vruntime == floor
    picked = run_fair_share(scheduler, 40, rng, 100, 200)
    assert picked.count("late") <= 12
    longest_run = max(len(run) for run in "".join("L" if p == "late" else " " for p in picked).split())
    assert longest_run <= 2


def test_fair_share_rejoin_earns_no_credit_for_time_away() -> None:
    """An agent that leaves and rejoins resumes at the current minimum, not at its old, smaller runtime."""
    rng = random.Random(3)
    scheduler = FairShare.of({"a": 1.0, "b": 1.0, "c": 1.0})
    run_fair_share(scheduler, 30, rng, 50, 150)
    scheduler.leave("c")
    assert "c" not in scheduler and len(scheduler) == 2
    run_fair_share(scheduler, 200, rng, 50, 150)
    assert scheduler.weight_shares() == {"a": 0.5, "b": 0.5}
    scheduler.join("c")
    active_floor = min(agent.vruntime for agent in scheduler.agents if agent.name != "c")
    assert scheduler.agents[2].vruntime == active_floor
    picked = run_fair_share(scheduler, 30, rng, 50, 150)
    assert 6 <= picked.count("c") <= 14


def test_fair_share_skips_unavailable_and_charges_free_turns() -> None:
    """A skipped agent is passed over, and a zero-token turn still moves the agent on by min_charge."""
    scheduler = FairShare.of({"a": 1.0, "b": 1.0})
    assert scheduler.next(skip={"a"}) == "b"
    scheduler.charge("a", 0)
    assert scheduler.agents[0].vruntime == 1.0 and scheduler.agents[0].tokens == 0
    assert scheduler.next() == "b"
    with pytest.raises(LookupError):
        scheduler.next(skip={"a", "b"})


def test_jain_index_extremes() -> None:
    """Jain's index is 1 for equal values, 1/n when one taker has everything, and refuses empty input."""
    assert jain_index([5.0, 5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain_index([9.0, 0.0, 0.0]) == pytest.approx(1 / 3)
    assert jain_index([0.0, 0.0]) == 1.0
    with pytest.raises(ValueError):
        jain_index([])


# --- JSON state ----------------------------------------------------------------------------------------


def _used_states() -> list[BaseModel]:
    strict = StrictPriorityQueue()
    aging = AgingPriorityQueue(age_every=3)
    for index in range(6):
        strict.push(f"s{index}", index % 3, {"agent": "writer", "tags": ["x", None], "ratio": 0.1 * index})
        aging.push(f"a{index}", 5 - index, {"nested": {"k": [1, 2]}})
    strict.pop()
    aging.pop()
    aging.advance(4)
    rotation = RoundRobin(agents=["a", "b", "c"])
    rotation.next()
    fair = FairShare.of({"a": 1.0, "b": 2.5, "c": 0.3})
    run_fair_share(fair, 50, random.Random(11), 1, 997)
    fair.leave("b")
    return [strict, aging, rotation, fair]


@pytest.mark.parametrize("state", _used_states(), ids=lambda s: type(s).__name__)
def test_every_scheduler_state_round_trips_through_json(state: BaseModel) -> None:
    """Each queue's and selector's state survives JSON (continue-as-new) and then behaves identically."""
    restored = type(state).model_validate_json(state.model_dump_json())
    assert restored == state
    if isinstance(state, StrictPriorityQueue):
        assert drain(restored) == drain(state)
    elif isinstance(state, RoundRobin | FairShare):
        for _ in range(10):
            agent = state.next()
            assert restored.next() == agent
            if isinstance(state, FairShare) and isinstance(restored, FairShare):
                state.charge(agent, 123)
                restored.charge(agent, 123)
    else:
        pytest.fail(f"no behaviour check for {type(state).__name__}")
