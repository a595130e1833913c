"""Tools in the turn: what an agent may call, each call durable, budgeted, allow-listed and gated.

``JobWorkflow.turn`` asks the model; when the model asks for tools, ``Tools.run_round`` answers
every call of that reply and the turn asks the model again with the results, until the model answers
without a tool call (or the agent's ``max_tool_rounds`` are used up: the last call must answer).

Each call, in order:

1. **Allow-list**: a tool the agent may not use is not run; the model is told so, the attempt is
   recorded (``refused``) and counted in ``status``.
2. **Arguments**: arguments that are not a JSON object are not run (``invalid``); the activity
   validates them against the tool's schema before it runs (``invalid`` too).
3. **Approval**: a tool that needs one opens a gate named ``<tool>-t<N>`` (the ``approve`` /
   ``reject`` updates; nobody deciding within the agent's ``tool_approval_timeout`` rejects it).
4. **Budget**: one tool call and its price are reserved on the agent's ledger node; a call that does
   not fit is not run (``over budget``).
5. **Run**: every call of the round that got this far runs at once, each its own ``harness.tool_call``
   activity with its tool's timeout; an interrupt for the agent, an abort or the deadline cancel the
   running ones (``cancelled``), and what they did is recorded.

The tool list is fetched once per job (``list_tools`` activity) into the job's state, so a server
that changes its list mid-job changes nothing the history saw.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import StopReason, ToolCallRecord, TurnRecord
    from contracts.models import Message
    from contracts.spec import AgentSpec, JobSpec
    from contracts.tools import (
        ListToolsRequest,
        ToolCall,
        ToolCallRequest,
        ToolCallResult,
        ToolDef,
        ToolOutcome,
        ToolResult,
    )

from workflows._activities import LIST_TOOLS, TOOL_CALL, role_queue
from workflows._budget import BudgetKeeper
from workflows._gates import Gates
from workflows._job_errors import StopJob
from workflows._port import Job

PREVIEW_CHARS = 200
# The activity may run a little past its tool's own limit (argument checks, result capping, a
# server restarted once): only then does Temporal's timeout end it.
_ACTIVITY_MARGIN = timedelta(seconds=30)


def tool_refs(spec: JobSpec) -> list[str]:
    """Every tool reference the spec's agents name, each once, in order."""
    return list(dict.fromkeys(ref for agent in spec.agents for ref in agent.tools))


def signature(calls: list[ToolCall], results: list[ToolResult]) -> str:
    """What a round asked and got, as one string: the same string twice means the same round."""
    asked = sorted(
        json.dumps([call.name, call.arguments, result.content], sort_keys=True, default=str)
        for call, result in zip(calls, results, strict=True)
    )
    return "\n".join(asked)


def exchanges(messages: list[Message]) -> list[str]:
    """The tool calls and results among ``messages``, one line each, for a shared conversation."""
    lines = []
    answers = {result.call_id: result for message in messages for result in message.tool_results}
    for message in messages:
        for call in message.tool_calls:
            result = answers.get(call.id)
            got = result.content[:PREVIEW_CHARS] if result is not None else "(no result)"
            args = call.raw_arguments or json.dumps(call.arguments, separators=(",", ":"))
            lines.append(f"[tool {call.name} {args[:PREVIEW_CHARS]}] -> {got}")
    return lines


class Tools:
    """The job's tools: listed once, offered per agent, each call run through the steps above."""

    def __init__(self, job: Job, budget: BudgetKeeper, gates: Gates) -> None:
        self.job = job
        self.budget = budget
        self.gates = gates

    async def fetch(self, spec: JobSpec) -> None:
        """Resolve the references the spec names that the state does not hold yet (a parent hands
        its children the tools it listed); a reference the worker does not know ends the job."""
        state = self.job.state
        refs = [ref for ref in tool_refs(spec) if ref not in state.tools]
        if not refs:
            return
        try:
            listed = await LIST_TOOLS.run(
                ListToolsRequest(refs=refs),
                summary="list tools: " + ", ".join(refs),
                task_queue=role_queue("tools", shared=state.role_queues),
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                raise
            cause = error.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise StopJob(
                StopReason.failed, f"could not list the tools {', '.join(refs)}: {message}"
            ) from None
        state.tools.update(listed.tools)

    def offered(self, agent: AgentSpec) -> list[ToolDef]:
        """The tools ``agent`` may call, each once, by the name the model sees."""
        seen: dict[str, ToolDef] = {}
        for ref in agent.tools:
            for tool in self.job.state.tools.get(ref, []):
                seen.setdefault(tool.name, tool)
        return list(seen.values())

    async def run_round(
        self, agent: AgentSpec, calls: list[ToolCall], record: TurnRecord | None, step: str | None
    ) -> list[ToolResult]:
        """Answer every call of one reply, in the model's order; the records go on ``record``."""
        state = self.job.state
        tools = {tool.name: tool for tool in self.offered(agent)}
        results: dict[str, ToolResult] = {}
        runnable: list[tuple[ToolCall, ToolDef, ToolCallRecord]] = []
        for call in calls:
            state.tool_seq += 1
            entry = ToolCallRecord(
                call_id=f"{self.job.job_id}/t{state.tool_seq}",
                name=call.name,
                arguments=call.raw_arguments or json.dumps(call.arguments, separators=(",", ":")),
                outcome="ok",
                started_at=workflow.now(),
            )
            if record is not None:
                record.tool_calls.append(entry)
            tool = tools.get(call.name)
            if tool is None:
                state.tool_calls_refused += 1
                names = ", ".join(sorted(tools)) or "none"
                text = f"tool {call.name!r} is not available to {agent.name} (its tools: {names}): not run"
                results[call.id] = self._close(entry, call, "refused", text)
                continue
            entry.ref = tool.ref
            if call.arguments_error is not None:
                text = f"invalid arguments for {call.name}: {call.arguments_error}; it was not run"
                results[call.id] = self._close(entry, call, "invalid", text)
                continue
            if tool.needs_approval():
                gate = await self.gates.before_tool(
                    f"{tool.name}-t{state.tool_seq}",
                    f"{tool.name} {entry.arguments[:PREVIEW_CHARS]}",
                    agent.tool_approval_timeout,
                )
                if gate.outcome != "approved":
                    text = (
                        f"a person rejected this call of {call.name} ({gate.by}: {gate.note}); it was not run"
                    )
                    results[call.id] = self._close(entry, call, "rejected", text)
                    continue
            refused = await self.budget.reserve_tool(entry.call_id, agent, tool)
            if refused is not None:
                text = f"over budget: {refused}; {call.name} was not run"
                results[call.id] = self._close(entry, call, "over budget", text)
                continue
            runnable.append((call, tool, entry))
        for (call, _, _), answer in zip(runnable, await self._run(agent, runnable, step), strict=True):
            results[call.id] = answer
        return [results[call.id] for call in calls]

    async def _run(
        self,
        agent: AgentSpec,
        runnable: list[tuple[ToolCall, ToolDef, ToolCallRecord]],
        step: str | None,
    ) -> list[ToolResult]:
        """Run the calls at once; cancel what still runs on an interrupt, an abort or the deadline."""
        if not runnable:
            return []
        job = self.job
        remaining = job.deadline_left()  # StopJob before anything starts if it has passed
        handles = [
            TOOL_CALL.start(
                ToolCallRequest(
                    call_id=entry.call_id,
                    job_id=job.job_id,
                    agent=agent.name,
                    tool=tool,
                    arguments=call.arguments,
                    max_result_bytes=agent.max_tool_result_bytes,
                ),
                summary=f"tool {tool.name} for {agent.name}" + (f" (step {step})" if step else ""),
                start_to_close_timeout=timedelta(seconds=tool.timeout_s) + _ACTIVITY_MARGIN,
                priority=job.task_priority,
                task_queue=role_queue(
                    "tools", tool.server if tool.own_queue else None, shared=job.state.role_queues
                ),
            )
            for call, tool, entry in runnable
        ]
        names = ", ".join(tool.name for _, tool, _ in runnable)
        job.in_flight = f"{agent.name} on tools: {names}" + (f" (step {step})" if step else "")
        why = "cancelled by an interrupt"
        past_deadline = False
        try:
            try:
                await workflow.wait_condition(
                    lambda: all(h.done() for h in handles) or job.preempted(),
                    timeout=remaining,
                    timeout_summary=job.deadline_summary(f"during {names} for {agent.name}"),
                )
            except TimeoutError:
                why, past_deadline = "cancelled: the job's deadline passed", True
            except asyncio.CancelledError:
                for handle in handles:
                    handle.cancel()
                await asyncio.gather(*handles, return_exceptions=True)  # nothing outlives the turn
                raise
            if job.state.abort_reason is not None:
                why = f"cancelled: the job was aborted ({job.state.abort_reason})"
            for handle in handles:
                if not handle.done():
                    handle.cancel()
            outcomes = await asyncio.gather(*handles, return_exceptions=True)
        finally:
            job.in_flight = None
        answers = []
        for (call, tool, entry), outcome in zip(runnable, outcomes, strict=True):
            answers.append(self._settle(agent, call, tool, entry, outcome, why))
        if past_deadline:
            raise StopJob(StopReason.deadline, "the job's deadline passed during a tool call")
        return answers

    def _settle(
        self,
        agent: AgentSpec,
        call: ToolCall,
        tool: ToolDef,
        entry: ToolCallRecord,
        outcome: ToolCallResult | BaseException,
        why: str,
    ) -> ToolResult:
        """Charge the call (it ran, or may have) and record how it ended."""
        if isinstance(outcome, ToolCallResult):
            self.budget.settle_tool(entry.call_id, agent.name, tool, ran=outcome.outcome != "invalid")
            entry.truncated_from = outcome.truncated_from
            entry.duration_s = outcome.duration_s
            return self._close(entry, call, outcome.outcome, outcome.content)
        self.budget.settle_tool(entry.call_id, agent.name, tool, ran=True)  # it may have started
        entry.duration_s = (workflow.now() - entry.started_at).total_seconds() if entry.started_at else 0.0
        cause = outcome.cause if isinstance(outcome, ActivityError) else outcome
        if isinstance(cause, CancelledError):
            return self._close(entry, call, "cancelled", f"{call.name} was {why}; what it did is not known")
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        kind = (cause.type if isinstance(cause, ApplicationError) else None) or type(cause).__name__
        return self._close(entry, call, "error", f"{call.name} failed: {kind}: {message}")

    @staticmethod
    def _close(entry: ToolCallRecord, call: ToolCall, outcome: ToolOutcome, content: str) -> ToolResult:
        entry.outcome = outcome
        entry.result_bytes = len(content.encode("utf-8"))
        entry.result_preview = content[:PREVIEW_CHARS]
        return ToolResult(call_id=call.id, name=call.name, content=content, is_error=outcome != "ok")
