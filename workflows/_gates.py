"""Approval gates: points where a job waits for a person (``approve`` / ``reject`` updates).

``Job`` calls ``before_step`` before each step, ``after_charge`` after each charge, and
``before_final`` before releasing the final answer (``Job.conclude`` makes sure it runs in
every mode). With no gates declared these return at once and issue no commands, so the histories of
gate-less jobs are unchanged.

A gate waits on a durable timer (``workflow.wait_condition`` with the gate's timeout; the job's
deadline and an abort still end the wait). At the timeout the
spec's default is taken. What a rejection means (see ``GateSpec``): before a step, skip the step;
at a spend threshold, stop with ``budget_exhausted``; before the final answer, stop with ``aborted``
and withhold the answer.

Every decision is recorded (``GateRecord``: who, when by ``workflow.now()``, the note) in the result,
and shown in the Temporal UI: the current details (names and times) and the memo (names, outcomes,
deciders and times; never notes or prompt text, since the memo is not encrypted).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.controls import GateDecision
    from contracts.display import timer_at
    from contracts.jobs import GateKind, GateOutcome, GateRecord, JobStatus, StopReason
    from contracts.spec import GateSpec, JobSpec
    from contracts.state import GatesState
    from contracts.words import plural

from workflows._job_errors import StopJob
from workflows._port import Job

_OUTCOME: dict[str, GateOutcome] = {"approve": "approved", "reject": "rejected", "abort": "aborted"}


class Gates:
    """The job's approval gates and their decisions."""

    def __init__(self, job: Job, spec: JobSpec, state: GatesState) -> None:
        self.job = job
        self.spec = spec
        self.state = state  # part of the job's state: a gate met before continue-as-new stays met
        if state.records:
            self._show()

    @property
    def records(self) -> list[GateRecord]:
        """Every gate reached so far, pending ones included."""
        return self.state.records

    @property
    def withheld(self) -> bool:
        """True once a final-answer gate was rejected: the job releases no output."""
        return self.state.withheld

    # ----- hook points -------------------------------------------------------------------------

    async def before_step(self, step: str) -> bool:
        """Wait at a gate declared before ``step``, if any; False means the step is to be skipped."""
        for gate in self.spec.gates:
            if gate.before_step != step or self._met(gate.name):
                continue
            if await self._wait_at(gate, "before_step", step) == "rejected":
                return False
        return True

    async def after_charge(self) -> None:
        """Wait at a spend gate whose amount was just crossed, if any; a rejection stops the job."""
        totals = self.job.totals
        for gate in self.spec.gates:
            if self._met(gate.name):
                continue
            if gate.spend_usd is not None and totals.cost_usd >= gate.spend_usd:
                target = f"${gate.spend_usd}"
            elif gate.spend_tokens is not None and totals.usage.total_tokens >= gate.spend_tokens:
                target = plural(gate.spend_tokens, "token")
            else:
                continue
            if await self._wait_at(gate, "spend", target) == "rejected":
                raise StopJob(
                    StopReason.budget_exhausted,
                    f"spend gate {gate.name!r} at {target} was {self._last(gate.name).how_decided()}",
                )

    async def before_final(self, output: str) -> None:
        """Wait at the final-answer gate, if declared; a rejection withholds the answer and stops."""
        for gate in self.spec.gates:
            if not gate.before_final or self._met(gate.name):
                continue
            if await self._wait_at(gate, "before_final", "final") == "rejected":
                self.state.withheld = True
                raise StopJob(
                    StopReason.aborted,
                    f"the final answer is withheld: gate {gate.name!r} {self._last(gate.name).how_decided()}",
                )

    async def before_tool(self, name: str, target: str, within: timedelta) -> GateRecord:
        """Wait for a person to approve the tool call ``target`` (the tool's name and arguments) at a
        gate named ``name``; nobody deciding ``within`` that long rejects it. Returns the closed record."""
        await self._wait(name, "tool", target, within, "rejected")
        return self._last(name)

    # ----- the updates -------------------------------------------------------------------------

    def decide(self, decision: GateDecision, approved: bool) -> str:
        """Record a person's decision on a pending gate (the ``approve`` / ``reject`` updates)."""
        self.validate(decision)
        record = self._pending_record(decision.gate)
        assert record is not None
        outcome: GateOutcome = "approved" if approved else "rejected"
        self._close(record, outcome, decision.by or "unknown", decision.note)
        return f"gate {record.gate!r} {outcome}: {_consequence(record.kind, outcome)}"

    def validate(self, decision: GateDecision) -> None:
        """Refuse a decision on a gate that is not pending; nothing is written to history."""
        if self.job.state.stop_reason is not None:
            raise ValueError("the job has already ended")
        if self._pending_record(decision.gate) is not None:
            return
        names = [gate.name for gate in self.spec.gates]
        if decision.gate not in names:
            raise ValueError(f"unknown gate {decision.gate!r}; this job's gates: {names}")
        done = [record for record in self.records if record.gate == decision.gate]
        if done:
            raise ValueError(f"gate {decision.gate!r} was already {done[-1].outcome} by {done[-1].by}")
        raise ValueError(f"gate {decision.gate!r} is not pending yet (pending: {self.pending()})")

    def skipped_steps(self) -> list[str]:
        """Each step skipped at its gate and why, for the explanation of a job that went on without
        it: "step 'publish' skipped: gate 'publish-ok' rejected by alice"."""
        return [
            f"step {record.target!r} skipped: gate {record.gate!r} {record.how_decided()}"
            for record in self.records
            if record.kind == "before_step" and record.outcome == "rejected"
        ]

    def pending(self) -> list[str]:
        """Names of gates waiting for a decision."""
        return [record.gate for record in self.records if record.outcome is None]

    def _met(self, name: str) -> bool:
        # A gate is met once: a step re-run after an interrupt does not ask again.
        return any(record.gate == name for record in self.records)

    def _pending_record(self, name: str) -> GateRecord | None:
        for record in self.records:
            if record.gate == name and record.outcome is None:
                return record
        return None

    def _last(self, name: str) -> GateRecord:
        return [record for record in self.records if record.gate == name][-1]

    async def _wait_at(self, gate: GateSpec, kind: GateKind, target: str) -> GateOutcome:
        """Open a declared ``gate``, wait for a decision or its timeout, and return the outcome."""
        return await self._wait(gate.name, kind, target, gate.timeout, _OUTCOME[gate.default])

    async def _wait(
        self, name: str, kind: GateKind, target: str, within: timedelta, default: GateOutcome
    ) -> GateOutcome:
        """Open gate ``name``, wait for a decision or ``within`` (then ``default``), return the outcome."""
        record = GateRecord(
            gate=name,
            kind=kind,
            target=target,
            opened_at=workflow.now(),
            timeout_s=within.total_seconds(),
            default=default,
        )
        self.records.append(record)
        self.job.set_status(JobStatus.waiting)
        self._show()
        try:
            decided = await self._wait_decided(record, within)
        except StopJob as stop:
            if record.outcome is None:
                by = "abort" if stop.reason is StopReason.aborted else stop.reason.value
                self._close(record, "aborted", by, stop.explanation)
            raise
        finally:
            self.job.set_status(JobStatus.running)
        if not decided:
            self._close(record, record.default, "timeout", f"no decision within {within}")
        outcome = record.outcome
        assert outcome is not None
        if outcome == "aborted":
            raise StopJob(StopReason.aborted, f"gate {name!r} timed out; its default is abort")
        return outcome

    async def _wait_decided(self, record: GateRecord, within: timedelta) -> bool:
        """Wait for a decision (True) or the timeout (False); an abort or the job's deadline raise."""
        return await self.job.wait_for(
            lambda: record.outcome is not None,
            within=within,
            where=f"at approval gate {record.gate}",
            summary=f"gate {record.gate}: {record.default} if undecided by "
            + timer_at(record.opened_at + within),
        )

    def _close(self, record: GateRecord, outcome: GateOutcome, by: str, note: str) -> None:
        record.outcome = outcome
        record.by = by
        record.note = note
        record.decided_at = workflow.now()
        self._show()
        # Names, outcomes, deciders and times only: the memo is not encrypted, notes may be sensitive.
        workflow.upsert_memo(
            {
                "gates": [
                    {
                        "gate": item.gate,
                        "kind": item.kind,
                        # A tool gate's target holds the call's arguments: only the tool's name here.
                        "target": item.target.split(" ", 1)[0] if item.kind == "tool" else item.target,
                        "outcome": item.outcome,
                        "by": item.by,
                        "decided_at": item.decided_at.isoformat() if item.decided_at else None,
                    }
                    for item in self.records
                ]
            }
        )

    def _show(self) -> None:
        """The gates as the Temporal UI's "current details" shows them (markdown)."""
        lines = ["**Approval gates**"]
        for record in self.records:
            if record.outcome is None:
                state = (
                    f"waiting since {record.opened_at:%H:%M:%S} UTC; default {record.default} "
                    f"after {record.timeout_s:g}s"
                )
            else:
                at = f"{record.decided_at:%H:%M:%S} UTC" if record.decided_at else "?"
                state = f"{record.outcome} by {record.by} at {at}"
            lines.append(f"- `{record.gate}` ({record.kind} {record.target}): {state}")
        workflow.set_current_details("\n".join(lines))


def _consequence(kind: GateKind, outcome: GateOutcome) -> str:
    if outcome == "approved":
        return "the tool runs" if kind == "tool" else "the job goes on"
    return {
        "before_step": "the step is skipped",
        "spend": "the job stops (budget_exhausted)",
        "before_final": "the answer is withheld and the job stops (aborted)",
        "tool": "the tool is not run; the model is told it was rejected",
    }[kind]
