"""Scheduling disciplines for agent turns and tasks, measured in tokens.

Pure decision code: every structure is a pydantic model whose whole state round-trips through JSON
(carried across continue-as-new), and nothing reads the clock or draws random numbers. Time, where
it matters, is counted in scheduling ticks that the caller advances.

Two kinds of structure live here:

- Item queues (``StrictPriorityQueue`` and the one the workflows use, ``AgingPriorityQueue``) hold
  work items, each named by a unique string id and carrying a small JSON payload, with ``push``/
  ``pop``/``peek``/``remove``/``len``/``in`` and ``set_priority`` (the target of the workflows'
  ``set_priority`` update). ``pop`` on an empty queue raises ``IndexError``; ``peek``
  returns ``None``.
- Agent selectors (``RoundRobin``, ``FairShare``) choose which agent of a fixed roster speaks next.

Priority convention, for every queue here: priorities are non-negative ints and a LOWER number is
MORE urgent (0 runs first), as with Unix nice values and ``heapq``. Ties run in arrival order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field, model_validator

__all__ = [
    "AgingPriorityQueue",
    "FairShare",
    "FairShareAgent",
    "PriorityItem",
    "QueueItem",
    "RoundRobin",
    "StrictPriorityQueue",
    "jain_index",
]


class QueueItem(BaseModel):
    """One unit of work waiting in a queue."""

    id: str = Field(description="Unique within its queue.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Small, JSON-serialisable data.")


class PriorityItem(QueueItem):
    """A queued item with its priority and the bookkeeping that orders it."""

    priority: int = Field(ge=0, description="0 is the most urgent; larger numbers wait.")
    seq: int = Field(ge=0, description="Arrival number in the queue; breaks ties first come, first served.")
    enqueued_tick: int = Field(default=0, ge=0, description="Queue tick at arrival (aging only).")


def _index_of(items: Sequence[QueueItem], item_id: str) -> int:
    for index, item in enumerate(items):
        if item.id == item_id:
            return index
    raise KeyError(item_id)


def _check_new(items: Iterable[QueueItem], item_id: str) -> None:
    if any(item.id == item_id for item in items):
        raise ValueError(f"item {item_id!r} is already queued")


def _check_weight(weight: float) -> float:
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"weight must be a positive finite number, got {weight!r}")
    return float(weight)


def _check_priority(priority: int) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        raise ValueError(f"priority must be a non-negative int (0 = most urgent), got {priority!r}")


class StrictPriorityQueue(BaseModel):
    """Lowest priority number first, ties first-come first-served.

    Starves low-urgency work under a continuous stream of urgent arrivals; use
    ``AgingPriorityQueue`` when that matters. Operations are O(n): queues here hold tens of items.
    """

    items: list[PriorityItem] = Field(default_factory=list, description="Waiting items, in arrival order.")
    next_seq: int = Field(default=0, ge=0, description="Arrival number the next push receives.")

    def _key(self, item: PriorityItem) -> tuple[int, int]:
        return (item.priority, item.seq)

    def push(self, item_id: str, priority: int, payload: Mapping[str, Any] | None = None) -> None:
        """Queue an item at ``priority`` (0 = most urgent); its id must not already be queued."""
        _check_new(self.items, item_id)
        _check_priority(priority)
        self.items.append(
            PriorityItem(id=item_id, payload=dict(payload or {}), priority=priority, seq=self.next_seq)
        )
        self.next_seq += 1

    def peek(self) -> PriorityItem | None:
        """The item ``pop`` would return, or ``None`` when empty."""
        return min(self.items, key=self._key) if self.items else None

    def pop(self) -> PriorityItem:
        """Remove and return the most urgent item; ``IndexError`` when empty."""
        item = self.peek()
        if item is None:
            raise IndexError("pop from an empty queue")
        self.items.remove(item)
        return item

    def remove(self, item_id: str) -> PriorityItem:
        """Take an item out wherever it waits; ``KeyError`` when absent."""
        return self.items.pop(_index_of(self.items, item_id))

    def set_priority(self, item_id: str, priority: int) -> None:
        """Change a waiting item's priority; it keeps its place among equals (its arrival number)."""
        _check_priority(priority)
        self.items[_index_of(self.items, item_id)].priority = priority

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return any(item.id == item_id for item in self.items)


class AgingPriorityQueue(StrictPriorityQueue):
    """Priority with aging: every ``age_every`` ticks of waiting improve an item by one level.

    A tick is one scheduling decision: each ``pop`` advances the clock by one, and ``advance(n)``
    lets a caller age the queue for decisions made elsewhere. The effective priority of an item is
    ``priority - (tick - enqueued_tick) / age_every``. Because every waiting item ages at the same
    rate, the order never changes while items wait: it is fixed at arrival by the *horizon*
    ``enqueued_tick + priority * age_every`` (ties by arrival number), much like earliest-deadline
    first.

    Bound on wait (starvation freedom). An item X of priority ``p`` arriving at tick ``t`` can only
    be overtaken by items already waiting and by items arriving no later than tick
    ``t + p * age_every`` (its horizon): a later arrival, even at priority 0, has a larger horizon.
    So X is popped after at most ``len(queue at arrival) + A`` other items, where ``A`` counts
    arrivals during ticks ``t .. t + p * age_every``; with at most ``r`` arrivals per tick that is
    ``len + r * (p * age_every + 1)`` pops, however long the stream of urgent arrivals lasts.
    ``wait_bound`` computes it.
    """

    age_every: int = Field(default=2, ge=1, description="Ticks of waiting that gain one level.")
    tick: int = Field(default=0, ge=0, description="Scheduling decisions made so far (pops plus advances).")

    def _key(self, item: PriorityItem) -> tuple[int, int]:
        return (self.horizon(item), item.seq)

    def horizon(self, item: PriorityItem | str) -> int:
        """The last tick at which a new arrival can still overtake ``item``."""
        if isinstance(item, str):
            item = self.items[_index_of(self.items, item)]
        return item.enqueued_tick + item.priority * self.age_every

    def effective_priority(self, item_id: str) -> float:
        """The item's priority after aging, as of the current tick (may go below zero)."""
        item = self.items[_index_of(self.items, item_id)]
        return item.priority - (self.tick - item.enqueued_tick) / self.age_every

    def wait_bound(self, priority: int, queued_ahead: int, arrivals_per_tick: int) -> int:
        """Most pops an arrival at ``priority`` waits, given the queue it found and the arrival rate."""
        return queued_ahead + arrivals_per_tick * (priority * self.age_every + 1)

    def push(self, item_id: str, priority: int, payload: Mapping[str, Any] | None = None) -> None:
        """Queue an item at ``priority`` (0 = most urgent), stamped with the current tick."""
        super().push(item_id, priority, payload)
        self.items[-1].enqueued_tick = self.tick

    def pop(self) -> PriorityItem:
        """Remove and return the item with the best effective priority; advances the clock one tick."""
        item = super().pop()
        self.tick += 1
        return item

    def advance(self, ticks: int = 1) -> None:
        """Age every waiting item by ``ticks`` without popping."""
        if ticks < 0:
            raise ValueError("ticks must be non-negative")
        self.tick += ticks

    def set_priority(self, item_id: str, priority: int) -> None:
        """Change a waiting item's priority; the age it has accrued still counts."""
        super().set_priority(item_id, priority)

    def push_next(self, priority: int, payload: Mapping[str, Any] | None = None) -> str:
        """Queue an item under the next arrival id (``m<seq>``) and return it.

        No id check: ids made from the arrival number are new by construction, so thousands of
        arrivals (signals) stay O(1) each where ``push`` is O(n).
        """
        _check_priority(priority)
        item_id = f"m{self.next_seq}"
        self.items.append(
            PriorityItem(
                id=item_id,
                payload=dict(payload or {}),
                priority=priority,
                seq=self.next_seq,
                enqueued_tick=self.tick,
            )
        )
        self.next_seq += 1
        return item_id

    def drain(self, accept: Callable[[PriorityItem], bool]) -> list[PriorityItem]:
        """Take every item ``accept`` takes, in the order ``pop`` would give them; one tick passes.

        The items it leaves keep waiting, and aging; one sort, not n pops of O(n) each.
        """
        order = sorted(self.items, key=self._key)
        taken = [item for item in order if accept(item)]
        kept = {id(item) for item in taken}
        self.items = [item for item in self.items if id(item) not in kept]
        self.advance(1)
        return taken


class RoundRobin(BaseModel):
    """Fixed rotation over a roster of agents: group-chat turn-taking.

    ``next`` hands the turn to the agent at the current position and moves past it. An agent in
    ``skip`` (unavailable: paused, rate-limited, waiting on a human) loses that turn; the rotation
    continues from the agent chosen, so nobody gets two turns in a row while others are available.
    """

    agents: list[str] = Field(min_length=1, description="The roster, in speaking order; names unique.")
    position: int = Field(default=0, ge=0, description="Index of the agent whose turn comes next.")

    @model_validator(mode="after")
    def _roster(self) -> RoundRobin:
        if len(set(self.agents)) != len(self.agents):
            raise ValueError(f"duplicate agents in {self.agents}")
        self.position %= len(self.agents)
        return self

    def peek(self, skip: Collection[str] = ()) -> str:
        """Who ``next`` would return, without moving; ``LookupError`` if every agent is skipped."""
        return self.agents[self._find(skip)]

    def next(self, skip: Collection[str] = ()) -> str:
        """The next available agent, moving the rotation past it."""
        index = self._find(skip)
        self.position = (index + 1) % len(self.agents)
        return self.agents[index]

    def _find(self, skip: Collection[str]) -> int:
        count = len(self.agents)
        for offset in range(count):
            index = (self.position + offset) % count
            if self.agents[index] not in skip:
                return index
        raise LookupError("round robin: every agent is unavailable")

    def __len__(self) -> int:
        return len(self.agents)


class FairShareAgent(BaseModel):
    """One agent's account under fair share."""

    name: str
    weight: float = Field(gt=0, description="Share of tokens relative to the other agents.")
    vruntime: float = Field(default=0.0, ge=0, description="Tokens charged / weight, plus join offset.")
    tokens: int = Field(default=0, ge=0, description="Tokens actually consumed (unweighted).")
    turns: int = Field(default=0, ge=0)
    active: bool = True


class FairShare(BaseModel):
    """Weighted fair share in the spirit of Linux CFS: the most-owed agent speaks next.

    Each agent carries a virtual runtime, ``tokens consumed / weight``. ``next`` picks the active
    agent with the least virtual runtime (ties: roster order, i.e. the order agents joined) and
    does not change state; ``charge`` after the turn advances that agent's virtual runtime. Because
    the laggard always runs, virtual runtimes stay within one turn's ``cost / weight`` of each
    other, so each agent's share of tokens tends to its share of the weights.

    A new agent, or one that rejoins after leaving, starts at the current minimum virtual runtime
    (a rejoiner keeps any lead it had, but earns no credit for time away), so it cannot monopolise
    turns to "catch up".
    """

    agents: list[FairShareAgent] = Field(default_factory=list, description="The roster, in join order.")
    min_vruntime: float = Field(
        default=0.0, ge=0, description="Monotonic floor: least virtual runtime among active agents so far."
    )
    min_charge: int = Field(
        default=1,
        ge=0,
        description="Least tokens a turn is charged: a free turn still moves on.",
    )

    @classmethod
    def of(cls, weights: Mapping[str, float], **settings: Any) -> FairShare:
        """A fair-share scheduler over ``weights`` (agent name -> weight), in mapping order."""
        scheduler = cls(**settings)
        for name, weight in weights.items():
            scheduler.join(name, weight)
        return scheduler

    def _agent(self, name: str) -> FairShareAgent:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)

    def _floor(self) -> float:
        active = [agent.vruntime for agent in self.agents if agent.active]
        return max(self.min_vruntime, min(active)) if active else self.min_vruntime

    def join(self, name: str, weight: float | None = None) -> None:
        """Add an agent, or bring back one that left, at the current minimum virtual runtime."""
        floor = self._floor()
        try:
            agent = self._agent(name)
        except KeyError:
            if weight is None:
                raise ValueError(f"fair share: new agent {name!r} needs a weight") from None
            self.agents.append(FairShareAgent(name=name, weight=_check_weight(weight), vruntime=floor))
            return
        if weight is not None:
            agent.weight = _check_weight(weight)
        if not agent.active:
            agent.active = True
            agent.vruntime = max(agent.vruntime, floor)

    def leave(self, name: str) -> None:
        """Take an agent out of the rotation; its account is kept for a later ``join``."""
        agent = self._agent(name)
        self.min_vruntime = self._floor()
        agent.active = False

    def set_weight(self, name: str, weight: float) -> None:
        """Change an agent's weight; it applies to tokens charged from now on."""
        self._agent(name).weight = _check_weight(weight)

    def peek(self, skip: Collection[str] = ()) -> str:
        """The active agent, not in ``skip``, with the least virtual runtime; ``LookupError`` if none."""
        best: FairShareAgent | None = None
        for agent in self.agents:
            if agent.active and agent.name not in skip and (best is None or agent.vruntime < best.vruntime):
                best = agent
        if best is None:
            raise LookupError("fair share: no agent is available")
        return best.name

    def next(self, skip: Collection[str] = ()) -> str:
        """Same as ``peek``: choosing does not change state, ``charge`` does."""
        return self.peek(skip)

    def charge(self, name: str, tokens: int) -> None:
        """Record a finished turn of ``tokens`` tokens against ``name``."""
        if tokens < 0:
            raise ValueError("tokens must be non-negative")
        agent = self._agent(name)
        agent.tokens += tokens
        agent.turns += 1
        agent.vruntime += max(tokens, self.min_charge) / agent.weight
        self.min_vruntime = self._floor()

    def shares(self) -> dict[str, float]:
        """Each agent's fraction of all tokens consumed so far (zeros before any)."""
        total = sum(agent.tokens for agent in self.agents)
        return {agent.name: (agent.tokens / total if total else 0.0) for agent in self.agents}

    def weight_shares(self) -> dict[str, float]:
        """Each active agent's fraction of the active weights: the share fair share aims for."""
        total = math.fsum(agent.weight for agent in self.agents if agent.active)
        return {agent.name: agent.weight / total for agent in self.agents if agent.active}

    def __len__(self) -> int:
        return sum(1 for agent in self.agents if agent.active)

    def __contains__(self, name: object) -> bool:
        return any(agent.name == name and agent.active for agent in self.agents)


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index, ``(sum x)^2 / (n * sum x^2)``: 1.0 is perfectly even, 1/n is one taker.

    All zeros count as perfectly even. Raises ``ValueError`` for no values or a negative one.
    """
    if not values:
        raise ValueError("jain_index of no values")
    if any(value < 0 for value in values):
        raise ValueError("jain_index needs non-negative values")
    squares = math.fsum(value * value for value in values)
    if squares == 0:
        return 1.0
    return math.fsum(values) ** 2 / (len(values) * squares)
