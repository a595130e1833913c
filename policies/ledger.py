"""Hierarchical budget ledger: budgets as cgroups.

Nodes form a tree (job -> agent -> child job). Each node may cap tokens, USD (``Decimal``), model
calls and tool calls; spend rolls up to every ancestor. Pure and deterministic: no clock, no I/O; the state is
this pydantic model, carried across continue-as-new and returned by the ``ledger`` query.

API (amounts are ``tokens: int``, ``usd: Decimal``; a reservation is always for one call: one model
call from ``reserve``, one tool call from ``reserve_tool``; ``settle`` charges the count reserved)::

    ledger = Ledger()
    ledger.add_node(node_id, parent, limits=None, quota=None, period_anchor=None) -> None
    ledger.reserve(call_id, node_id, tokens=, usd=, now=None) -> Refusal | None
    ledger.reserve_tool(call_id, node_id, usd=, now=None) -> Refusal | None
    ledger.settle(call_id, tokens=, usd=, estimated=False) -> None
    ledger.fail(call_id) -> None          # usage unknown: charge the reservation, marked estimated
    ledger.release(call_id) -> None       # the call never ran: no charge
    ledger.charge(charge_id, node_id, tokens, usd, now=) -> None       # spend with no reservation
    ledger.charge_tool_calls(charge_id, node_id, count, now=) -> None  # a child's tool calls
    ledger.quota_wait(node_id, tokens=, usd=, now=) -> None | timedelta | Refusal
    ledger.carve(child_id, parent_id, limits, quota=None, period_anchor=None) -> Refusal | None
    ledger.close_child(child_id) -> None
    ledger.add_budget(node_id, tokens=0, usd=0, calls=0, tool_calls=0) -> Refusal | None
    ledger.remaining(node_id) -> Limits   # tightest across the node and its ancestors; None = no cap
    ledger.view() -> LedgerView           # per node: limits, spent, reserved, held, remaining, flags

Reserve, then settle. Before a model call, ``reserve`` its worst case: the input estimate plus
``max_output_tokens``, priced. The provider stops at ``max_output_tokens``, so a reservation can be
too small only when the input estimate was low. A reservation that does not fit some node on the
path is refused whole (nothing changes) and the ``Refusal`` names that node and limit. ``settle``
charges the real usage and releases the rest; if the real usage is above the reservation it is
charged anyway (truth beats the invariant) and the node is flagged ``overrun``.

Invariant: on every node, for every capped dimension, ``spent + reserved <= limit``, where
``spent`` is settled charges in the subtree and ``reserved`` is open reservations in the subtree
plus what carved children still hold. Only a settle above its reservation can break it, and then
the node says ``overrun``.

Idempotency (parallel calls, retries, duplicate handling): ``reserve`` of an open ``call_id``
returns None and changes nothing; ``settle``/``fail``/``release`` of a finished ``call_id`` change
nothing. Call ids are single-use: reserving a finished one raises ``LedgerError`` (a retry that
runs the model again needs a new id). ``add_node``, ``carve`` and ``close_child`` are idempotent
too. ``add_budget`` is additive by nature: deduplicate it where it arrives (the update id).

Child budgets: ``carve`` creates a child whose limits are taken out of the parent path's
remaining budget. While the child is open the parent path carries ``max(limit, used)`` of the
child per capped dimension: the child's own use plus a hold on the rest. ``close_child`` drops
the hold, so the parent path is charged exactly what the child spent, whether it succeeded,
failed or was cancelled; the child's open reservations are failed (charged, estimated) first.

Quotas per period (like ``cpu.max``): a node's ``Quota`` caps what calls reserved within one
period may use; periods start at the node's ``period_anchor`` (the job start). A call counts in
the period it was reserved in, at its reservation until settled, then at its real usage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Dim = Literal["tokens", "usd", "calls", "tool_calls"]
DIMS: tuple[Dim, ...] = ("tokens", "usd", "calls", "tool_calls")
CallState = Literal["settled", "failed", "released"]

_ZERO = Decimal(0)
_UNITS: dict[Dim, str] = {"tokens": "tokens", "usd": "USD", "calls": "calls", "tool_calls": "tool calls"}

NonNegInt = Annotated[int, Field(ge=0)]
NonNegDecimal = Annotated[Decimal, Field(ge=0)]


class LedgerError(ValueError):
    """Misuse of the ledger (unknown node or call, closed node, negative amount): a bug, not a refusal."""


class Amount(BaseModel):
    """Tokens, USD, model calls and tool calls, as a quantity that adds and subtracts."""

    model_config = ConfigDict(frozen=True)

    tokens: int = 0
    usd: Decimal = _ZERO
    calls: int = Field(default=0, description="Model calls.")
    tool_calls: int = Field(default=0, description="Tool calls; they are not model calls.")

    def get(self, dim: Dim) -> Decimal:
        """One dimension, as a Decimal so that all of them compare alike."""
        if dim == "usd":
            return self.usd
        value: int = getattr(self, dim)
        return Decimal(value)

    @classmethod
    def of(cls, value: Callable[[Dim], Decimal]) -> Amount:
        """Build an amount from a function of the dimension."""
        return cls(
            tokens=int(value("tokens")),
            usd=value("usd"),
            calls=int(value("calls")),
            tool_calls=int(value("tool_calls")),
        )

    def __add__(self, other: Amount) -> Amount:
        return Amount.of(lambda d: self.get(d) + other.get(d))

    def __sub__(self, other: Amount) -> Amount:
        return Amount.of(lambda d: self.get(d) - other.get(d))


class Limits(BaseModel):
    """Caps on a node; None means no cap in that dimension (ancestors may still cap it)."""

    model_config = ConfigDict(frozen=True)

    tokens: NonNegInt | None = None
    usd: NonNegDecimal | None = None
    calls: NonNegInt | None = None
    tool_calls: NonNegInt | None = None

    def get(self, dim: Dim) -> Decimal | None:
        """One dimension as a Decimal, or None when uncapped."""
        value: int | Decimal | None = getattr(self, dim)
        return None if value is None else Decimal(value)


class Quota(Limits):
    """Caps per period, like cgroup ``cpu.max``: e.g. 50,000 tokens per hour."""

    period: timedelta

    @field_validator("period")
    @classmethod
    def _positive(cls, period: timedelta) -> timedelta:
        if period <= timedelta(0):
            raise ValueError("period must be positive")
        return period


class Refusal(BaseModel):
    """Why a reservation, carve or budget change does not fit, naming the node and limit.

    ``available`` is what the asking node could still get under that node's cap. ``retry_after``
    is set only for a quota that a fresh period would satisfy; None means waiting will not help.
    """

    node: str
    limit: Dim
    kind: Literal["limit", "quota"] = "limit"
    needed: Decimal
    available: Decimal
    cap: Decimal
    period: timedelta | None = None
    retry_after: timedelta | None = None

    def message(self) -> str:
        """One line for people and logs."""
        unit = _UNITS[self.limit]
        head = f"node {self.node!r}: needs {self.needed} {unit}"
        if self.kind == "limit":
            return f"{head}, only {self.available} of its {self.cap} {unit} limit left"
        quota = f"{self.cap} {unit} per {self.period} quota"
        if self.retry_after is None:
            return f"{head}, more than its whole {quota}: it can never fit"
        return f"{head}, only {self.available} of its {quota} left; next period in {self.retry_after}"


class OpenCall(BaseModel):
    """A reservation not yet settled, failed or released."""

    node: str
    amount: Amount
    periods: dict[str, int] = Field(
        default_factory=dict, description="Quota node -> index of the period the call was reserved in."
    )


class Node(BaseModel):
    """One node of the tree. ``own_*`` count calls made on this node only; views roll them up."""

    id: str
    parent: str | None = None
    children: list[str] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    quota: Quota | None = None
    period_anchor: datetime | None = None
    carved: bool = Field(default=False, description="Limits held on the parent path while open.")
    closed: bool = False
    own_spent: Amount = Field(default_factory=Amount)
    own_reserved: Amount = Field(default_factory=Amount)
    estimated: bool = Field(default=False, description="Some charge here is our estimate.")
    overrun: bool = Field(default=False, description="Some call here used more than it reserved.")
    windows: dict[int, Amount] = Field(
        default_factory=dict, description="Quota use by period index; only the latest period is kept."
    )


class NodeView(BaseModel):
    """One node as the ``ledger`` query shows it; amounts and flags cover the whole subtree."""

    id: str
    parent: str | None
    limits: Limits
    quota: Quota | None
    spent: Amount = Field(description="Settled charges in the subtree.")
    reserved: Amount = Field(description="Open reservations in the subtree plus holds of carved children.")
    held: Amount = Field(description="What this carved node still holds on its parent path.")
    remaining: Limits = Field(description="Tightest across this node and its ancestors.")
    estimated: bool
    overrun: bool
    carved: bool
    closed: bool
    quota_period: int | None = Field(description="Index of the latest period with quota use.")
    quota_used: Amount


class LedgerView(BaseModel):
    """Every node, parents before children."""

    nodes: list[NodeView]

    def node(self, node_id: str) -> NodeView:
        """The view of one node."""
        for view in self.nodes:
            if view.id == node_id:
                return view
        raise LedgerError(f"unknown node {node_id!r}")


@dataclass(frozen=True)
class _Totals:
    spent: Amount
    reserved: Amount
    hold: Amount
    estimated: bool
    overrun: bool

    @property
    def used(self) -> Amount:
        return self.spent + self.reserved


def _non_negative(**values: int | Decimal) -> None:
    for name, value in values.items():
        if value < 0:
            raise LedgerError(f"{name} must be non-negative, got {value}")


class Ledger(BaseModel):
    """The budget ledger of one job: see the module docstring for the API and the invariant."""

    nodes: dict[str, Node] = Field(default_factory=dict, description="Parents before children.")
    open_calls: dict[str, OpenCall] = Field(default_factory=dict)
    finished_calls: dict[str, CallState] = Field(
        default_factory=dict, description="Call ids already settled, failed or released, for idempotency."
    )

    # -- tree ------------------------------------------------------------------------------------

    def add_node(
        self,
        node_id: str,
        parent: str | None,
        limits: Limits | None = None,
        quota: Quota | None = None,
        period_anchor: datetime | None = None,
    ) -> None:
        """Add a node whose spend rolls up to ``parent``; its limits cap it, they take nothing."""
        self._new_node(node_id, parent, limits, quota, period_anchor, carved=False)

    def carve(
        self,
        child_id: str,
        parent_id: str,
        limits: Limits,
        quota: Quota | None = None,
        period_anchor: datetime | None = None,
    ) -> Refusal | None:
        """Add a child whose capped limits are taken out of the parent path's remaining budget."""
        existing = self.nodes.get(child_id)
        if existing is not None:
            if existing.carved and existing.parent == parent_id:
                return None
            raise LedgerError(
                f"node {child_id!r} already exists and is not a child carved from {parent_id!r}"
            )
        self._open_node(parent_id)
        need = Amount.of(lambda d: limits.get(d) or _ZERO)
        refusal = self._check_path(parent_id, need, self._totals())
        if refusal is None:
            self._new_node(child_id, parent_id, limits, quota, period_anchor, carved=True)
        return refusal

    def close_child(self, child_id: str) -> None:
        """Close a node and its subtree: open calls are failed, holds on the parent path released."""
        node = self._node(child_id)
        if node.closed:
            return
        subtree = self._subtree(child_id)
        for call_id in [c for c, call in self.open_calls.items() if call.node in subtree]:
            self.fail(call_id)
        for node_id in subtree:
            self.nodes[node_id].closed = True

    def add_budget(
        self, node_id: str, tokens: int = 0, usd: Decimal = _ZERO, calls: int = 0, tool_calls: int = 0
    ) -> Refusal | None:
        """Raise a node's capped limits (uncapped stay uncapped); a carved child takes it from its parent."""
        _non_negative(tokens=tokens, usd=usd, calls=calls, tool_calls=tool_calls)
        node = self._open_node(node_id)
        added = Amount(tokens=tokens, usd=usd, calls=calls, tool_calls=tool_calls)
        old = node.limits
        new = Limits.model_validate(
            {d: None if old.get(d) is None else getattr(old, d) + getattr(added, d) for d in DIMS}
        )
        if node.carved and node.parent is not None:
            totals = self._totals()
            used = totals[node_id].used

            def extra(d: Dim) -> Decimal:
                before, after = old.get(d), new.get(d)
                if before is None or after is None:
                    return _ZERO
                return max(after, used.get(d)) - max(before, used.get(d))

            refusal = self._check_path(node.parent, Amount.of(extra), totals)
            if refusal is not None:
                return refusal
        node.limits = new
        return None

    # -- calls -----------------------------------------------------------------------------------

    def reserve(
        self, call_id: str, node_id: str, tokens: int, usd: Decimal, now: datetime | None = None
    ) -> Refusal | None:
        """Reserve one model call's worst case on the node and its ancestors, or say why it does not fit.

        ``now`` is required when a node on the path has a quota.
        """
        _non_negative(tokens=tokens, usd=usd)
        return self._reserve(call_id, node_id, Amount(tokens=tokens, usd=usd, calls=1), now)

    def reserve_tool(
        self, call_id: str, node_id: str, usd: Decimal, now: datetime | None = None
    ) -> Refusal | None:
        """Reserve one tool call and its price on the node and its ancestors, or say why it does not
        fit. A tool call is not a model call: it counts in ``tool_calls`` and ``usd`` only."""
        _non_negative(usd=usd)
        return self._reserve(call_id, node_id, Amount(usd=usd, tool_calls=1), now)

    def _reserve(self, call_id: str, node_id: str, need: Amount, now: datetime | None) -> Refusal | None:
        if call_id in self.open_calls:
            return None
        if call_id in self.finished_calls:
            raise LedgerError(
                f"call {call_id!r} is already {self.finished_calls[call_id]}; use a new call id"
            )
        node = self._open_node(node_id)
        refusal = self._check_path(node_id, need, self._totals()) or self._check_quota(node_id, need, now)
        if refusal is not None:
            return refusal
        periods: dict[str, int] = {}
        for quota_node in self._path(node_id):
            if quota_node.quota is not None and now is not None:
                index = self._period(quota_node, now)
                periods[quota_node.id] = index
                kept = {k: v for k, v in quota_node.windows.items() if k >= index}
                kept[index] = kept.get(index, Amount()) + need
                quota_node.windows = kept
        node.own_reserved = node.own_reserved + need
        self.open_calls[call_id] = OpenCall(node=node_id, amount=need, periods=periods)
        return None

    def settle(self, call_id: str, tokens: int, usd: Decimal, estimated: bool = False) -> None:
        """Charge the real usage of a reserved call and release the rest of its reservation.

        It counts as the one model call or tool call it was reserved as.
        """
        _non_negative(tokens=tokens, usd=usd)

        def actual(call: OpenCall) -> Amount:
            return Amount(tokens=tokens, usd=usd, calls=call.amount.calls, tool_calls=call.amount.tool_calls)

        self._finish(call_id, "settled", actual, estimated)

    def fail(self, call_id: str) -> None:
        """Charge a failed call whose usage is unknown at its reservation, marked estimated."""
        self._finish(call_id, "failed", lambda call: call.amount, True)

    def charge(
        self,
        charge_id: str,
        node_id: str,
        tokens: int,
        usd: Decimal,
        *,
        now: datetime,
        estimated: bool = False,
    ) -> None:
        """Charge spend that had no reservation (a lost attempt, a child's report) on ``node_id``.

        It is reserved and settled when it fits; otherwise it is charged all the same (the spend
        happened: truth beats the invariant) and the node is flagged ``overrun``. Even a calls cap
        that refuses a zero reservation does not keep it off the books.
        """
        _non_negative(tokens=tokens, usd=usd)
        fits = self.reserve(charge_id, node_id, tokens=tokens, usd=usd, now=now) is None
        if fits or self.reserve(charge_id, node_id, tokens=0, usd=Decimal(0), now=now) is None:
            self.settle(charge_id, tokens, usd, estimated=estimated)
            return
        node = self.nodes[node_id]
        node.own_spent = node.own_spent + Amount(tokens=tokens, usd=usd, calls=1)
        node.overrun = True
        node.estimated = node.estimated or estimated

    def charge_tool_calls(self, charge_id: str, node_id: str, count: int, *, now: datetime) -> None:
        """Count ``count`` tool calls that ran without a reservation here (a child job's) on
        ``node_id``. Their price comes with the spend they were reported in; over a ``tool_calls``
        cap they are counted all the same and the node is flagged ``overrun``."""
        _non_negative(tool_calls=count)
        need = Amount(tool_calls=count)
        if self._reserve(charge_id, node_id, need, now) is None:
            self.settle(charge_id, 0, _ZERO)
            return
        node = self.nodes[node_id]
        node.own_spent = node.own_spent + need
        node.overrun = True

    def release(self, call_id: str) -> None:
        """Drop the reservation of a call that never reached the provider: no charge."""
        self._finish(call_id, "released", lambda call: Amount(), False)

    # -- questions -------------------------------------------------------------------------------

    def quota_wait(
        self, node_id: str, tokens: int, usd: Decimal, now: datetime
    ) -> timedelta | Refusal | None:
        """None if a call fits this period's quotas; else how long until it would; a Refusal if never."""
        self._node(node_id)
        refusal = self._check_quota(node_id, Amount(tokens=tokens, usd=usd, calls=1), now)
        if refusal is None:
            return None
        return refusal if refusal.retry_after is None else refusal.retry_after

    def remaining(self, node_id: str) -> Limits:
        """What one more call on this node could still use: the tightest across it and its ancestors."""
        return self._remaining(node_id, self._totals())

    def view(self) -> LedgerView:
        """Every node with limits, rolled-up spend and reservations, remaining budget and flags."""
        totals = self._totals()
        views = []
        for node in self.nodes.values():
            tot = totals[node.id]
            latest = max(node.windows, default=None)
            views.append(
                NodeView(
                    id=node.id,
                    parent=node.parent,
                    limits=node.limits,
                    quota=node.quota,
                    spent=tot.spent,
                    reserved=tot.reserved,
                    held=tot.hold,
                    remaining=self._remaining(node.id, totals),
                    estimated=tot.estimated,
                    overrun=tot.overrun,
                    carved=node.carved,
                    closed=node.closed,
                    quota_period=latest,
                    quota_used=Amount() if latest is None else node.windows[latest],
                )
            )
        return LedgerView(nodes=views)

    # -- internals -------------------------------------------------------------------------------

    def _new_node(
        self,
        node_id: str,
        parent: str | None,
        limits: Limits | None,
        quota: Quota | None,
        period_anchor: datetime | None,
        carved: bool,
    ) -> None:
        existing = self.nodes.get(node_id)
        if existing is not None:
            if existing.parent == parent and existing.carved == carved:
                return
            raise LedgerError(f"node {node_id!r} already exists under {existing.parent!r}")
        if quota is not None and period_anchor is None:
            raise LedgerError(f"node {node_id!r} has a quota but no period_anchor")
        if parent is not None:
            self._open_node(parent).children.append(node_id)
        self.nodes[node_id] = Node(
            id=node_id,
            parent=parent,
            limits=limits or Limits(),
            quota=quota,
            period_anchor=period_anchor,
            carved=carved,
        )

    def _node(self, node_id: str) -> Node:
        node = self.nodes.get(node_id)
        if node is None:
            raise LedgerError(f"unknown node {node_id!r}")
        return node

    def _open_node(self, node_id: str) -> Node:
        node = self._node(node_id)
        if node.closed:
            raise LedgerError(f"node {node_id!r} is closed")
        return node

    def _path(self, node_id: str | None) -> Iterator[Node]:
        while node_id is not None:
            node = self.nodes[node_id]
            yield node
            node_id = node.parent

    def _subtree(self, node_id: str) -> list[str]:
        out = [node_id]
        for node in out:  # grows while iterating: breadth first
            out.extend(self.nodes[node].children)
        return out

    def _totals(self) -> dict[str, _Totals]:
        # Children are always added after their parent, so reverse order visits every subtree
        # before its root.
        spent = {i: n.own_spent for i, n in self.nodes.items()}
        reserved = {i: n.own_reserved for i, n in self.nodes.items()}
        estimated = {i: n.estimated for i, n in self.nodes.items()}
        overrun = {i: n.overrun for i, n in self.nodes.items()}
        out: dict[str, _Totals] = {}
        for node in reversed(self.nodes.values()):
            i = node.id
            hold = self._hold(node, spent[i] + reserved[i])
            out[i] = _Totals(spent[i], reserved[i], hold, estimated[i], overrun[i])
            if node.parent is not None:
                p = node.parent
                spent[p] = spent[p] + spent[i]
                reserved[p] = reserved[p] + reserved[i] + hold
                estimated[p] = estimated[p] or estimated[i]
                overrun[p] = overrun[p] or overrun[i]
        return out

    @staticmethod
    def _hold(node: Node, used: Amount) -> Amount:
        if not node.carved or node.closed:
            return Amount()

        def rest(d: Dim) -> Decimal:
            cap = node.limits.get(d)
            return _ZERO if cap is None else max(_ZERO, cap - used.get(d))

        return Amount.of(rest)

    def _available(
        self, start: str, totals: dict[str, _Totals]
    ) -> Iterator[tuple[Node, Dim, Decimal, Decimal]]:
        """For each capped dimension on the path: what ``start`` could still add under that cap.

        A carved child's hold counts as used on its parent, but the child may use it: so what lies
        below a node adds to what is available through it.
        """
        slack = Amount()
        for node in self._path(start):
            used = totals[node.id].used
            for d in DIMS:
                cap = node.limits.get(d)
                if cap is not None:
                    yield node, d, cap, slack.get(d) + max(_ZERO, cap - used.get(d))
            slack = slack + totals[node.id].hold

    def _check_path(self, start: str, need: Amount, totals: dict[str, _Totals]) -> Refusal | None:
        for node, d, cap, available in self._available(start, totals):
            if need.get(d) > available:
                return Refusal(node=node.id, limit=d, needed=need.get(d), available=available, cap=cap)
        return None

    def _remaining(self, node_id: str, totals: dict[str, _Totals]) -> Limits:
        tightest: dict[Dim, Decimal] = {}
        for _, d, _cap, available in self._available(node_id, totals):
            tightest[d] = min(available, tightest.get(d, available))
        return Limits.model_validate({d: v if d == "usd" else int(v) for d, v in tightest.items()})

    @staticmethod
    def _period(node: Node, now: datetime) -> int:
        assert node.quota is not None and node.period_anchor is not None
        return (now - node.period_anchor) // node.quota.period

    def _check_quota(self, node_id: str, need: Amount, now: datetime | None) -> Refusal | None:
        worst: Refusal | None = None
        for node in self._path(node_id):
            quota = node.quota
            if quota is None:
                continue
            if now is None:
                raise LedgerError(f"node {node.id!r} has a quota: pass now")
            assert node.period_anchor is not None
            index = self._period(node, now)
            used = node.windows.get(index, Amount())
            for d in DIMS:
                cap = quota.get(d)
                if cap is None or need.get(d) <= 0:
                    continue
                left = max(_ZERO, cap - used.get(d))
                refusal = Refusal(
                    node=node.id,
                    limit=d,
                    kind="quota",
                    needed=need.get(d),
                    available=left,
                    cap=cap,
                    period=quota.period,
                )
                if need.get(d) > cap:
                    return refusal
                if need.get(d) > left:
                    wait = node.period_anchor + (index + 1) * quota.period - now
                    if worst is None or worst.retry_after is None or wait > worst.retry_after:
                        worst = refusal.model_copy(update={"retry_after": wait})
        return worst

    def _finish(
        self, call_id: str, state: CallState, charge: Callable[[OpenCall], Amount], estimated: bool
    ) -> None:
        if call_id in self.finished_calls:
            return
        call = self.open_calls.pop(call_id, None)
        if call is None:
            raise LedgerError(f"unknown call {call_id!r}: reserve it first")
        actual = charge(call)
        node = self.nodes[call.node]
        node.own_reserved = node.own_reserved - call.amount
        node.own_spent = node.own_spent + actual
        node.estimated = node.estimated or estimated
        node.overrun = node.overrun or any(actual.get(d) > call.amount.get(d) for d in DIMS)
        for quota_id, index in call.periods.items():
            windows = self.nodes[quota_id].windows
            if index in windows:  # older periods are gone and no longer matter
                windows[index] = windows[index] + actual - call.amount
        self.finished_calls[call_id] = state
