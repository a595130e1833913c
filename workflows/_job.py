"""The base every orchestration mode builds on: one turn loop, one set of controls.

A mode subclasses ``JobWorkflow``, decorates its own ``run`` with ``@workflow.run``, and calls
``self.turn(...)`` for each model call. Everything else is here, written once:

- the turn itself: price check against the budget, the model-call activity (cancellable by an
  interrupt, an abort or the deadline), the charge, the transcript record, the search attributes;
- the controls every mode answers: signals ``interrupt``, ``pause``, ``resume``, ``inject``,
  ``abort``; update ``add_budget``; queries ``status``, ``ledger``, ``transcript``;
- one state: every job workflow takes one ``JobInput`` (spec, and the state so far after
  continue-as-new) and keeps everything it is in ``self.state``, a ``JobState``, so
  ``continue_as_new`` hands that object on as it is, with no snapshot to keep in step with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NoReturn, TypeVar

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import Priority, RawValue, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from contracts import search_attributes as sa
    from contracts.controls import (
        AbortRequest,
        AddBudgetRequest,
        GateDecision,
        InjectRequest,
        InterruptRequest,
        SetPriorityRequest,
    )
    from contracts.display import timer_at
    from contracts.jobs import (
        JobProgress,
        JobResult,
        JobStatus,
        LedgerTotals,
        ReplyTail,
        StopReason,
        TurnRecord,
    )
    from contracts.models import (
        Message,
        ModelCallRequest,
        ModelCallResult,
        ModelInfo,
        ResolveModelsRequest,
        Usage,
        tools_text,
    )
    from contracts.outputs import estimate_request_tokens
    from contracts.spec import AgentSpec, JobSpec, priority_key
    from contracts.state import JobInput, JobState
    from contracts.tools import ToolDef
    from contracts.words import plural
    from policies.scheduling import PriorityItem
    from policies.tokens import TokenSample, likely_tokens

from workflows._activities import MODEL_CALL, RESOLVE_MODELS, role_queue
from workflows._budget import BudgetKeeper
from workflows._gates import Gates
from workflows._job_errors import CallFailed, StopJob, refusal
from workflows._tools import Tools, signature

__all__ = ["CallFailed", "JobWorkflow", "StopJob"]


class _CallCut(Exception):
    """A model call cancelled with the task that ran it, carrying what the call served."""

    def __init__(self, result: ModelCallResult) -> None:
        super().__init__("model call cut")
        self.result = result


PREVIEW_CHARS = 120
NO_PAYLOAD = RawValue(Payload())  # what a signal handler gets when the sender sent no payload
Decoded = TypeVar("Decoded", bound=BaseModel)


def _why_undecodable(error: Exception) -> str:
    """Why a signal payload was refused, naming fields but never quoting the payload."""
    if isinstance(error, ValidationError):
        problems = [
            (f"{'/'.join(str(part) for part in e['loc'])}: " if e["loc"] else "") + e["msg"]
            for e in error.errors()[:3]
        ]
        return "; ".join(problems) or "invalid"
    return "no payload, or one that is not JSON"


MAX_CHECK_ERRORS = 20
RECENT_REPLIES = 3
RECENT_REPLY_CHARS = 2000
"""The ``status`` query carries the last this many characters of the ``RECENT_REPLIES`` latest replies."""
SPEND_PUBLISH_TURNS = 10
"""Search attributes for spend (tokens, USD) are upserted every this many turns, and whenever a
value that filters jobs (mode, status, stop reason) changes: not on every turn, which cost a command
per turn in history and about 30% of the server's CPU."""
THROTTLED_SEARCH_ATTRIBUTES = "search-attributes-throttled"
"""Patch id: runs recorded before it upserted search attributes on every turn."""


def _cause(error: ActivityError) -> tuple[str, str]:
    """The type and message of what made an activity fail."""
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", cause.message
    return type(cause).__name__, str(cause)


def _known_usage(cause: BaseException | None) -> tuple[Usage, Usage | None] | None:
    """The usage a failed model call reported in its error's details (``{"usage": ...}``, and
    ``"lost_usage"`` of attempts that died before), or None when it reported none."""
    if not isinstance(cause, ApplicationError) or not cause.details:
        return None
    first = cause.details[0]
    if not isinstance(first, dict) or "usage" not in first:
        return None
    try:
        usage = Usage.model_validate(first["usage"])
        lost = Usage.model_validate(first["lost_usage"]) if first.get("lost_usage") else None
    except ValidationError:
        return None
    return usage, lost if lost is not None and lost.requests else None


def _model_key(model: ModelInfo) -> str:
    """Whose tokenizer a calibration is for: the provider's model, whatever alias named it."""
    return f"{model.provider}:{model.model}"


class JobWorkflow:
    """State and controls shared by every mode. Subclasses implement ``run``."""

    mode: str = "base"

    @workflow.init
    def __init__(self, job_input: JobInput) -> None:
        self.spec: JobSpec = job_input.spec
        # The job's whole state: what a run keeps, and what continue-as-new hands to the next run.
        self.state: JobState = job_input.state if job_input.state is not None else JobState()
        self.job_id = workflow.info().workflow_id
        self.budget = BudgetKeeper(self, self.spec, self.state.budget)
        self.state.budget = self.budget.state
        self.gates = Gates(self, self.spec, self.state.gates)
        self.tools = Tools(self, self.budget, self.gates)
        self.in_flight: str | None = None
        self._interrupt_pending = False
        self._published: tuple[Any, ...] | None = None  # (mode, status, stop reason, turns) last upserted

    # ----- setup -------------------------------------------------------------------------------

    async def start_job(self) -> None:
        """Resolve every model the spec names (refusing unknown prices) and go running.

        Models already in the state are not resolved again: after continue-as-new none are, and a
        parent hands its children the models it resolved.
        """
        if self.state.started_at is None:
            self.state.started_at = workflow.info().start_time
        refs = [ref for ref in self.spec.model_refs() if ref not in self.state.models]
        if refs:
            try:
                resolved = await RESOLVE_MODELS.run(
                    ResolveModelsRequest(refs=refs), summary="resolve models: " + ", ".join(refs)
                )
            except ActivityError as error:
                if isinstance(error.cause, CancelledError):
                    raise
                # The worker's catalog or prices are not the ones the spec was checked against: a
                # configuration error, not a bug. The job ends ``failed`` through ``conclude``.
                kind, message = _cause(error)
                raise StopJob(
                    StopReason.failed, f"could not resolve the models {', '.join(refs)}: {kind}: {message}"
                ) from None
            self.state.models.update(resolved.models)
            self.state.payload_limit = resolved.payload_limit
            self.state.role_queues = resolved.role_queues
        await self.tools.fetch(self.spec)  # no command for a job whose agents name no tools
        self.set_status(JobStatus.running)

    @property
    def totals(self) -> LedgerTotals:
        """Spend and limits so far."""
        return self.budget.totals

    # ----- continue-as-new ---------------------------------------------------------------------

    def should_continue_as_new(self, turns_this_run: int, turns_per_run: int | None) -> bool:
        """Whether to continue as new at this turn boundary (no call in flight).

        Yes when the server suggests it (the history grows large) or this run has taken
        ``turns_per_run`` turns; never before this run's first turn, while paused, at a pending
        gate or once aborted. Reading the suggestion issues no command.
        """
        if turns_this_run == 0 or self.state.paused or self.state.abort_reason is not None:
            return False
        if self.gates.pending():
            return False
        if turns_per_run is not None and turns_this_run >= turns_per_run:
            return True
        return workflow.info().is_continue_as_new_suggested()

    async def continue_as_new(self) -> NoReturn:
        """End this run and go on in a new one with the whole state: once every handler has finished,
        so the state includes every signal and update received so far."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        self.budget.check_settled()
        carried = JobInput(spec=self.spec, state=self.state)
        self.check_payload(carried, "the state to carry into the next run")
        workflow.continue_as_new(args=[carried])

    def check_payload(self, value: BaseModel, what: str) -> None:
        """Stop the job (``payload_too_large``) rather than write a payload Temporal would refuse:
        a workflow task carrying one fails for ever and the job never ends. Only when the worker
        that resolved the models said it writes payloads inline (``JobState.payload_limit``)."""
        limit = self.state.payload_limit
        if limit is None:
            return
        size = _json_bytes(value)
        if size > limit:
            raise StopJob(
                StopReason.payload_too_large,
                f"{what} is {size / 1e6:.2f} MB, over the {limit / 1e6:.2f} MB a payload may be "
                "inline; with external storage (HARNESS_BLOBS, see README, Large payloads) large "
                "payloads leave history",
            )

    # ----- the turn ----------------------------------------------------------------------------

    async def turn(
        self,
        agent: AgentSpec,
        messages: list[Message],
        *,
        step: str | None = None,
        max_output_tokens: int | None = None,
        output_type: str | None = None,
        deliver: bool = True,
        resume: bool = True,
        note: dict[str, Any] | None = None,
    ) -> ModelCallResult:
        """One turn of ``agent``, the whole lifecycle of its call, the same in every mode.

        Before the call, the messages waiting for this agent (interrupts and injects) are added to
        its prompt (``deliver``); the call is reserved on the budget, run cancellably, charged and
        recorded (``note`` goes into each record's ``routing``). A call preempted by an interrupt
        runs again (``resume``) with its partial reply and the messages that preempted it, or
        "Continue." when there are none; the finished reply is returned. A mode whose conversation
        is shared (group chat) delivers messages itself and keeps the partial turn (``resume=False``).
        ``messages`` grows in place with what the turn added (delivered messages, a cut reply and
        what followed it, tool calls and their results), so a mode that keeps a conversation keeps
        them too.

        An agent with tools runs the tool loop here: a reply asking for tools gets their results
        (``Tools.run_round``: allow-list, arguments, approval, budget, parallel activities) and the
        model is asked again, until it answers without a tool call. After ``max_tool_rounds`` the
        last call must answer (``tool_choice`` none); the same calls getting the same results
        ``tool_repeat_limit`` rounds in a row stop the job (``livelock``, the call named).
        """
        if deliver:
            await self._wait_while_paused()  # so messages sent during a pause reach this turn
            messages += self._delivered(agent.name)
        offered = self.tools.offered(agent)
        choice: Literal["auto", "none"] = "auto"
        rounds, streak, last = 0, 0, ""
        while True:
            result = await self._call_turn(
                agent, messages, step, max_output_tokens, output_type, note, offered, choice
            )
            if resume and result.finish_reason == "cancelled":
                said = self._delivered(agent.name) if deliver else []
                messages += [
                    Message(role="assistant", content=result.text or "(cut off)"),
                    *(said or [Message(role="user", content="Continue.")]),
                ]
                continue
            if result.finish_reason != "tool_calls" or not result.tool_calls or choice == "none":
                return result
            rounds += 1
            answers = await self.tools.run_round(agent, result.tool_calls, self._turn_record(result), step)
            messages.append(Message(role="assistant", content=result.text, tool_calls=result.tool_calls))
            notes = [m.content for m in self._delivered(agent.name)] if deliver else []
            now = signature(result.tool_calls, answers)
            streak, last = (streak + 1 if now == last else 1), now
            if streak >= agent.tool_repeat_limit:
                messages.append(Message(role="user", content="", tool_results=answers))
                self._tool_livelock(agent, result, streak)
            if rounds >= agent.max_tool_rounds:
                choice = "none"
                notes.append(
                    f"That was the last of your {rounds} tool rounds: answer now with what you have."
                )
            messages.append(Message(role="user", content="\n\n".join(notes), tool_results=answers))

    def _turn_record(self, result: ModelCallResult) -> TurnRecord | None:
        """The transcript record of ``result``'s call (other steps may have recorded theirs since)."""
        for record in reversed(self.state.turns):
            if record.call_id == result.call_id:
                return record
        return None

    def _tool_livelock(self, agent: AgentSpec, result: ModelCallResult, repeats: int) -> NoReturn:
        call = result.tool_calls[0]
        self.state.evidence = {
            **self.state.evidence,
            "tool_livelock": {
                "agent": agent.name,
                "tool": call.name,
                "calls": len(result.tool_calls),
                "rounds": repeats,
            },
        }
        raise StopJob(
            StopReason.livelock,
            f"{agent.name} called {call.name} with the same arguments {repeats} rounds in a row and got "
            "the same result each time",
        )

    def preempted(self) -> bool:
        """Whether the running work is to stop now: an interrupt that beats it, or an abort."""
        return self._interrupt_pending or self.state.abort_reason is not None

    def _delivered(self, agent: str) -> list[Message]:
        return [Message(role="user", content=m.message) for m in self.pending_messages(agent)]

    async def _call_turn(
        self,
        agent: AgentSpec,
        messages: list[Message],
        step: str | None,
        max_output_tokens: int | None,
        output_type: str | None,
        note: dict[str, Any] | None,
        tools: list[ToolDef] | None = None,
        tool_choice: Literal["auto", "none"] = "auto",
    ) -> ModelCallResult:
        """One model call: checked against the budget, cancellable, charged, recorded."""
        await self._wait_while_paused()
        self._raise_if_aborted()
        model = self.state.models[agent.model]
        max_out = min(max_output_tokens or agent.max_output_tokens, model.max_output_tokens)
        self.state.call_seq += 1
        call_id = f"{self.job_id}/{self.state.call_seq}"
        texts = [m.counted_text() for m in messages] + ([tools_text(tools)] if tools else [])
        estimate = estimate_request_tokens(agent.instructions, texts, output_type)
        max_out = self._fit_context(agent, model, estimate, max_out)
        grant = await self.budget.reserve(call_id, agent, model, estimate, max_out)
        degraded = grant.model.ref != model.ref  # to another model, whose window counts now
        model, max_out = grant.model, grant.max_output_tokens
        if degraded:
            try:
                max_out = self._fit_context(agent, model, estimate, max_out)
            except StopJob:
                self.budget.release(call_id)  # refused before it was sent: nothing to pay
                raise
        request = ModelCallRequest(
            call_id=call_id,
            job_id=self.job_id,
            agent=agent.name,
            step=step,
            model=model,
            system=agent.instructions,
            messages=messages,
            max_output_tokens=max_out,
            temperature=agent.temperature,
            output_type=output_type,
            token_scale=self._token_scale(model),
            tools=tools or [],
            tool_choice=tool_choice,
        )
        try:
            self.check_payload(request, f"the input of {agent.name}'s call")
        except StopJob:
            self.budget.release(call_id)  # refused before it was sent: nothing to pay
            raise
        started = workflow.now()
        self.in_flight = self.call_label(agent.name, model.ref, step)
        self._interrupt_pending = False
        try:
            result = await self._call(request, summary=self.in_flight)
        except _CallCut as cut:
            # This turn's task was cancelled (a parallel step of a job that is stopping): the call
            # was cancelled with it and has reported what it served; charge that, then go on
            # unwinding.
            self._record(call_id, agent, model, step, messages, cut.result, started, note)
            raise asyncio.CancelledError from None
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, CancelledError):
                self.budget.fail(call_id, "cut short")
                raise
            # A wrong request (bad model, auth, schema: non-retryable), a structured reply still
            # invalid after its re-asks, or a provider that stayed down through every retry: the job
            # ends with its best result so far and names the cause (a check may catch it instead).
            kind, message = _cause(error)
            cost = Decimal(0)
            spent = _known_usage(cause)
            if spent is None:
                self.budget.fail(call_id)  # nothing known: the reservation, marked estimated
            else:
                # What the failed call's attempts really spent (every re-ask), charged and recorded.
                usage, lost = spent
                failed = ModelCallResult(
                    call_id=call_id,
                    text="",
                    usage=usage,
                    cost_usd=model.price.cost(usage),
                    model=model.model,
                    provider=model.provider,
                    finish_reason="error",
                    lost_usage=lost,
                )
                self._record(
                    call_id, agent, model, step, messages, failed, started, note, error=f"{kind}: {message}"
                )
                cost = model.price.cost(usage) + (model.price.cost(lost) if lost is not None else 0)
            raise CallFailed(
                f"{agent.name}'s call to {model.ref} failed: {kind}: {message}",
                error_type=kind,
                message=message,
                cost_usd=cost,
            ) from None
        except BaseException:
            self.budget.fail(call_id, "cut short")
            raise
        finally:
            self.in_flight = None
        self._record(call_id, agent, model, step, messages, result, started, note)
        await self.gates.after_charge()
        self._raise_if_aborted()
        return result

    def _token_scale(self, model: ModelInfo) -> float | None:
        """The model's scale for estimating unreported usage: calibrated from this job's settled
        calls of it, else the catalog's figure, else None (the conservative count)."""
        sample = self.state.calibration.get(_model_key(model))
        calibrated = sample.scale() if sample is not None else None
        return calibrated if calibrated is not None else model.token_scale

    def _fit_context(self, agent: AgentSpec, model: ModelInfo, estimate: int, max_out: int) -> int:
        """``max_out`` cut to what the model's context window leaves; ``StopJob`` if the input alone
        fills it (the request is refused before it is sent, and nothing is paid for it)."""
        likely = likely_tokens(estimate)
        room = model.context_window - likely
        if room < 1:
            raise StopJob(
                StopReason.failed,
                f"{agent.name}'s request to {model.ref} is about {likely} tokens, more than its context "
                f"window of {model.context_window}: shorten the task or the inputs, or use a model "
                "with a larger window",
            )
        return min(max_out, room)

    def _record(
        self,
        call_id: str,
        agent: AgentSpec,
        model: ModelInfo,
        step: str | None,
        messages: list[Message],
        result: ModelCallResult,
        started: datetime,
        note: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Charge a finished (or cut, or failed) call to the budget and add it to the turn record."""
        self.budget.settle(call_id, agent.name, model, result)
        if result.sample is not None and result.sample.tokens:
            key = _model_key(model)
            self.state.calibration[key] = self.state.calibration.get(key, TokenSample()) + result.sample
        self.state.turns.append(
            TurnRecord(
                index=len(self.state.turns),
                call_id=call_id,
                agent=agent.name,
                step=step,
                model=model.ref,
                provider=model.provider,
                prompt_preview=messages[-1].counted_text()[:PREVIEW_CHARS] if messages else "",
                text=result.text,
                usage=result.usage,
                cost_usd=result.cost_usd,
                finish_reason=result.finish_reason,
                started_at=started,
                ended_at=workflow.now(),
                routing=note,
                error=error,
                lost_usage=result.lost_usage,
                lost_cost_usd=model.price.cost(result.lost_usage) if result.lost_usage is not None else None,
            )
        )
        self._publish()

    def call_label(self, agent: str, model: str, step: str | None) -> str:
        """What a model call is, as its activity's summary in the Web UI and ``status`` (``calling``)
        name it: '<agent> on <model> (step <step>)'. A mode may say more (group chat: the round)."""
        return f"{agent} on {model}" + (f" (step {step})" if step else "")

    async def _call(self, request: ModelCallRequest, summary: str) -> ModelCallResult:
        model = request.model
        handle = MODEL_CALL.start(
            request,
            summary=summary,
            priority=self.task_priority,
            task_queue=role_queue(
                "models", model.provider if model.own_queue else None, shared=self.state.role_queues
            ),
        )
        remaining = self.deadline_left()
        try:
            await workflow.wait_condition(
                lambda: handle.done() or self._interrupt_pending or self.state.abort_reason is not None,
                timeout=remaining,
                timeout_summary=self.deadline_summary(f"during {summary}"),
            )
        except TimeoutError:
            handle.cancel()
            await self._settle_cancelled(handle)
            raise StopJob(StopReason.deadline, "the job's deadline passed during a model call") from None
        except asyncio.CancelledError:
            # The task running this turn was cancelled: cancel the call with it and wait for what
            # the call served, so it is charged and nothing outlives the workflow.
            handle.cancel()
            raise _CallCut(await self._settle_cancelled(handle, request)) from None
        if not handle.done():
            # Preempted: cancel the call; the activity returns its partial text and usage.
            handle.cancel()
            return await self._settle_cancelled(handle, request)
        result: ModelCallResult = await handle
        return result

    async def _settle_cancelled(
        self, handle: workflow.ActivityHandle[ModelCallResult], request: ModelCallRequest | None = None
    ) -> ModelCallResult:
        try:
            return await handle
        except (ActivityError, CancelledError):
            # The activity died instead of reporting: charge the worst case, marked estimated.
            if request is None:
                return ModelCallResult(
                    call_id="", text="", usage=Usage(), cost_usd=None, model="", provider=""
                )
            worst = Usage(
                input_tokens=estimate_request_tokens(request.system, request.texts(), request.output_type),
                output_tokens=request.max_output_tokens,
                requests=1,
            ).because("worker lost")
            return ModelCallResult(
                call_id=request.call_id,
                text="",
                usage=worst,
                cost_usd=request.model.price.cost(worst),
                model=request.model.model,
                provider=request.model.provider,
                finish_reason="cancelled",
            )

    # ----- time, pause, abort ------------------------------------------------------------------

    def deadline_summary(self, where: str) -> str | None:
        """The summary of a timer that the job's deadline ends (None: no deadline), saying ``where``
        the job waits: 'job deadline 2026-05-09 07:45:00 UTC (at an approval gate)'."""
        if self.spec.deadline is None or self.state.started_at is None:
            return None
        return f"job deadline {timer_at(self.state.started_at + self.spec.deadline)} ({where})"

    def deadline_left(self) -> timedelta | None:
        """What is left of the job's deadline, counted from its first run's start (None: no deadline).

        ``StopJob`` with ``deadline`` once it has passed.
        """
        if self.spec.deadline is None or self.state.started_at is None:
            return None
        remaining = self.state.started_at + self.spec.deadline - workflow.now()
        if remaining <= timedelta(0):
            raise StopJob(StopReason.deadline, f"the deadline of {self.spec.deadline} has passed")
        return remaining

    async def wait_for(
        self,
        condition: Callable[[], bool],
        within: timedelta | None = None,
        *,
        where: str = "while waiting",
        summary: str | None = None,
    ) -> bool:
        """Wait durably until ``condition`` holds (True) or ``within`` passes (False).

        The one wait of every mode and collaborator (budget asks and quotas, gates, children): the
        job's deadline still applies (``StopJob`` with ``deadline``, saying ``where``), and an abort
        ends the wait at once (``StopJob`` with ``aborted``). The timer's summary in the Web UI is
        ``summary`` (what ends at ``within``, and when), or the deadline's when that comes first.
        """
        remaining = self.deadline_left()
        limit = within if remaining is None or (within is not None and within < remaining) else remaining
        timer = self.deadline_summary(where) if limit is remaining else summary
        try:
            await workflow.wait_condition(
                lambda: condition() or self.state.abort_reason is not None,
                timeout=limit,
                timeout_summary=timer,
            )
        except TimeoutError:
            if limit is remaining and remaining is not None:
                raise StopJob(
                    StopReason.deadline, f"the deadline of {self.spec.deadline} passed {where}"
                ) from None
            return False
        self._raise_if_aborted()
        return True

    async def _wait_while_paused(self) -> None:
        if not self.state.paused:
            return
        self.set_status(JobStatus.paused)
        await self.wait_for(lambda: not self.state.paused)
        self.set_status(JobStatus.running)

    def _raise_if_aborted(self) -> None:
        if self.state.abort_reason is not None:
            raise StopJob(StopReason.aborted, f"aborted: {self.state.abort_reason}")

    # ----- visibility --------------------------------------------------------------------------

    def set_status(self, status: JobStatus) -> None:
        self.state.status = status
        self._publish()

    def _publish(self) -> None:
        """Upsert the search attributes when a filtering value changed or every
        ``SPEND_PUBLISH_TURNS`` turns (every time in runs recorded before the patch)."""
        stop = self.state.stop_reason.value if self.state.stop_reason is not None else None
        filters = (self.mode, self.state.status.value, stop)
        turns = len(self.state.turns)
        last = self._published
        if (
            last is not None
            and last[:3] == filters
            and turns - last[3] < SPEND_PUBLISH_TURNS
            and workflow.patched(THROTTLED_SEARCH_ATTRIBUTES)
        ):
            return
        self._published = (*filters, turns)
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.MODE.value_set(self.mode),
            sa.STATUS.value_set(self.state.status.value),
            sa.TOKENS.value_set(self.totals.usage.total_tokens),
            sa.COST_USD.value_set(float(self.totals.cost_usd)),
        ]
        if self.state.stop_reason is not None:
            updates.append(sa.STOP_REASON.value_set(self.state.stop_reason.value))
        workflow.upsert_search_attributes(updates)

    def finish(self, reason: StopReason, explanation: str, output: str, outputs: dict[str, str]) -> JobResult:
        """Build the result, and leave the stop reason where the UI and queries can see it. A
        failed job has no output (the explanation says why): a script reading ``output`` must not
        take a prompt or a half-made answer for the job's answer."""
        if reason is StopReason.failed:
            output = ""
        if self.state.check_errors:
            explanation += "; " + self._check_errors_line()
            self.state.evidence = {**self.state.evidence, "check_errors": self.state.check_errors}
        self.state.stop_reason = reason
        self.state.detail = explanation
        self.state.status = JobStatus.finished
        self._publish()
        # Explanations and evidence hold names and numbers, never prompt text (the memo is not encrypted).
        workflow.upsert_memo(
            {"stop_reason": reason.value, "explanation": explanation, "evidence": self.state.evidence}
        )
        result = JobResult(
            job_id=self.job_id,
            mode=self.mode,
            stop_reason=reason,
            explanation=explanation,
            evidence=self.state.evidence,
            output=output,
            outputs=outputs,
            ledger=self.totals,
            turns=len(self.state.turns),
            gates=self.gates.records,
            priority=self.job_priority,
            interrupts=self.state.interrupts_received,
            steps_done=self.state.steps_done,
            steps_total=self.state.steps_total,
            tool_calls=self.state.tool_seq,
            tool_calls_refused=self.state.tool_calls_refused,
        )
        return self._fit_result(result)

    def _fit_result(self, result: JobResult) -> JobResult:
        """The result, small enough to be written: over the payload limit, the per-step outputs are
        left out (the final output kept), and then the output is cut, each said in the explanation."""
        limit = self.state.payload_limit
        if limit is None or _json_bytes(result) <= limit:
            return result
        steps = len(result.outputs)
        note = (
            f"; the outputs of {plural(steps, 'step')} were left out of the result (over the payload limit)"
        )
        result = result.model_copy(update={"outputs": {}, "explanation": result.explanation + note})
        output, cut = result.output.encode(), False
        while (size := _json_bytes(result)) > limit and output:
            output, cut = output[: max(0, len(output) - (size - limit) - 1000)], True
            result = result.model_copy(update={"output": output.decode(errors="ignore")})
        if cut:
            note = f"; the output was cut to its first {len(output)} bytes"
            result = result.model_copy(update={"explanation": result.explanation + note})
        return result

    def note_check_error(self, line: str) -> None:
        """Note a check that could not be evaluated (scored 0): the end's explanation and evidence
        name it (the first ``MAX_CHECK_ERRORS`` are kept; all are counted)."""
        self.state.check_error_count += 1
        if len(self.state.check_errors) < MAX_CHECK_ERRORS:
            self.state.check_errors.append(line)

    def _check_errors_line(self) -> str:
        count = self.state.check_error_count or len(self.state.check_errors)
        what = "a check" if count == 1 else f"{count} checks"
        return f"{what} could not be evaluated and scored 0 (first: {self.state.check_errors[0]})"

    # ----- controls ----------------------------------------------------------------------------
    #
    # Handlers are synchronous and issue no commands (except a gate decision's memo), so a signal
    # costs one history event plus its share of a workflow task, and every handler has finished
    # by the time the run method returns (``conclude`` waits for that all the same).

    @property
    def job_priority(self) -> int:
        """The running work's priority (0 is most urgent): ``set_priority job N``, else the spec's."""
        if self.state.priority is not None:
            return self.state.priority
        return self.spec.priority

    @property
    def task_priority(self) -> Priority:
        """The Temporal priority of what the job starts next (calls, checks, tools, child jobs): the
        priority key of ``job_priority``, so ``set_priority job N`` reaches the task queues too. The
        fairness key and weight are left unset: they are inherited from the workflow's own priority,
        which the client set from the spec's tenant (``harness.client.start_job``)."""
        return Priority(priority_key=priority_key(self.job_priority))

    async def conclude(
        self, reason: StopReason, explanation: str, output: str, outputs: dict[str, str]
    ) -> JobResult:
        """End the job, in every mode: final-answer gate, handlers finished, then ``finish``.

        The final-answer gate runs here unless the job was aborted or failed (a mode may also call
        ``gates.before_final`` itself; a gate is met only once). A rejected final gate withholds the
        output.
        """
        gates = self.gates
        if reason not in (StopReason.aborted, StopReason.failed):
            try:
                await gates.before_final(output)
            except StopJob as stop:
                reason, explanation = stop.reason, stop.explanation
        if gates.withheld:
            output, outputs = "", {}
        await self.budget.give_back()  # the unused part of an account lease, if the spec names one
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.finish(reason, explanation, output, outputs)

    @workflow.query(name="status")
    def query_status(self) -> JobProgress:
        """Where the job is: status, step, in-flight call, spend, pause, gates, queued messages, and
        the ends of the latest replies (a watcher completes a streamed reply from them)."""
        return JobProgress(
            job_id=self.job_id,
            mode=self.mode,
            status=self.state.status,
            step=self.state.step,
            steps_done=self.state.steps_done,
            steps_total=self.state.steps_total,
            round=self.state.round,
            in_flight=self.in_flight,
            tokens=self.totals.usage.total_tokens,
            cost_usd=self.totals.cost_usd,
            stop_reason=self.state.stop_reason,
            detail=self.state.detail,
            paused=self.state.paused,
            pending_gates=self.gates.pending(),
            evidence=self.state.evidence,
            gates=self.gates.records,
            priority=self.job_priority,
            interrupts=self.state.interrupts_received,
            signals_refused=self.state.signals_refused,
            last_refused_signal=self.state.last_refused_signal,
            queued_messages=len(self.state.inbox),
            tool_calls=self.state.tool_seq,
            tool_calls_refused=self.state.tool_calls_refused,
            limit_tokens=self.totals.limit_tokens,
            limit_usd=self.totals.limit_usd,
            degraded=self.totals.degraded,
            turns=len(self.state.turns),
            recent_replies=[
                ReplyTail(call_id=turn.call_id, chars=len(turn.text), tail=turn.text[-RECENT_REPLY_CHARS:])
                for turn in self.state.turns[-RECENT_REPLIES:]
            ],
        )

    @workflow.query(name="ledger")
    def query_ledger(self) -> LedgerTotals:
        """Spend so far, in total and per agent, with the job's limits."""
        return self.totals

    @workflow.query(name="transcript")
    def query_transcript(self) -> list[TurnRecord]:
        """Every turn so far, in order."""
        return self.state.turns

    # Signals take their payload raw and decode it here: a payload that is not what the signal
    # takes (or none at all) is refused, counted and shown in ``status``, instead of being dropped
    # by the SDK with only a worker log line, or failing the workflow task for want of an argument.

    @workflow.signal(name="interrupt")
    def on_interrupt(self, raw: RawValue = NO_PAYLOAD) -> None:
        """Queue the message; if it is more urgent than the running work, cancel the in-flight call."""
        request = self._decoded("interrupt", raw, InterruptRequest)
        if request is None:
            return
        self.state.interrupts_received += 1
        self._enqueue(request.message, request.agent, request.priority)
        running = self.in_flight
        for_running = request.agent is None or running is None or running.startswith(f"{request.agent} on ")
        if request.priority < self.job_priority and for_running:
            self._interrupt_pending = True

    @workflow.signal(name="pause")
    def on_pause(self, raw: RawValue = NO_PAYLOAD) -> None:
        """Start no new call until resumed (the running call finishes; nothing new is reserved)."""
        self.state.paused = True

    @workflow.signal(name="resume")
    def on_resume(self, raw: RawValue = NO_PAYLOAD) -> None:
        """Undo a pause."""
        self.state.paused = False

    @workflow.signal(name="inject")
    def on_inject(self, raw: RawValue = NO_PAYLOAD) -> None:
        """Add a message for the next turn, without preempting (at the running work's priority)."""
        request = self._decoded("inject", raw, InjectRequest)
        if request is not None:
            self._enqueue(request.message, request.agent, self.job_priority)

    @workflow.signal(name="abort")
    def on_abort(self, raw: RawValue = NO_PAYLOAD) -> None:
        """End the job with its best result so far, stop reason ``aborted``; cancels a running call."""
        request = self._decoded("abort", raw, AbortRequest)
        if request is not None and self.state.abort_reason is None:
            self.state.abort_reason = request.reason or "no reason given"

    def _decoded(self, signal: str, raw: RawValue, kind: type[Decoded]) -> Decoded | None:
        """``raw`` as a ``kind``; None if it is not one (the refusal is counted and shown in ``status``)."""
        try:
            value = workflow.payload_converter().from_payload(raw.payload, kind)
        except Exception as error:  # any payload a sender can make: refused, never a failed task
            self.state.signals_refused += 1
            self.state.last_refused_signal = f"{signal}: {_why_undecodable(error)}"
            workflow.logger.warning("refused signal %s", self.state.last_refused_signal)
            return None
        return value if isinstance(value, kind) else None

    @workflow.update(name="add_budget")
    def on_add_budget(self, request: AddBudgetRequest) -> LedgerTotals:
        """Raise the job's limits; returns the ledger after the change."""
        return self.budget.add(request)

    @on_add_budget.validator
    @refusal
    def validate_add_budget(self, request: AddBudgetRequest) -> None:
        """Refuse negative or empty amounts and finished jobs; nothing is written to history."""
        if self.state.stop_reason is not None:
            raise ValueError("the job has already ended")
        self.budget.validate_add(request)

    @workflow.update(name="approve")
    def on_approve(self, decision: GateDecision) -> str:
        """Approve a pending gate; returns what happens next."""
        return self.gates.decide(decision, approved=True)

    @on_approve.validator
    @refusal
    def validate_approve(self, decision: GateDecision) -> None:
        """Refuse a decision on a gate that is not pending."""
        self.gates.validate(decision)

    @workflow.update(name="reject")
    def on_reject(self, decision: GateDecision) -> str:
        """Reject a pending gate; returns what happens next."""
        return self.gates.decide(decision, approved=False)

    @on_reject.validator
    @refusal
    def validate_reject(self, decision: GateDecision) -> None:
        """Refuse a decision on a gate that is not pending."""
        self.gates.validate(decision)

    @workflow.update(name="set_priority")
    def on_set_priority(self, request: SetPriorityRequest) -> str:
        """Change a task's priority; task ``job`` is the running work (the bar interrupts must beat)."""
        if request.task == "job":
            self.state.priority = request.priority
        else:
            self.set_task_priority(request.task, request.priority)
        return f"{request.task} now at priority {request.priority}"

    @on_set_priority.validator
    @refusal
    def validate_set_priority(self, request: SetPriorityRequest) -> None:
        """Refuse priorities outside 0-9, unknown tasks and finished jobs."""
        if self.state.stop_reason is not None:
            raise ValueError("the job has already ended")
        if not 0 <= request.priority <= 9:
            raise ValueError(f"priority must be 0 (most urgent) to 9, not {request.priority}")
        if request.task != "job":
            self.check_task_priority(request.task, request.priority)

    def check_task_priority(self, task: str, priority: int) -> None:
        """Refuse (``ValueError``) a priority change this mode cannot make; must not change state.

        Modes with a task queue override this and ``set_task_priority``; the default knows no tasks.
        """
        raise ValueError(f"unknown task {task!r}: {self.mode} jobs have no tasks; use task 'job'")

    def set_task_priority(self, task: str, priority: int) -> None:
        """Apply a priority change that ``check_task_priority`` accepted."""
        raise ValueError(f"unknown task {task!r}")

    # ----- pending messages --------------------------------------------------------------------

    def _enqueue(self, message: str, agent: str | None, priority: int) -> None:
        self.state.inbox.push_next(max(priority, 0), {"message": message, "agent": agent})

    def pending_messages(self, agent: str | None = None) -> list[InjectRequest]:
        """Interrupt and inject messages not yet delivered, most urgent first (with aging); clears them.

        With ``agent``, only messages for that agent or for all are delivered; the rest keep waiting.
        Each call is one turn boundary: messages left waiting age by one level per two boundaries.
        """

        def for_agent(item: PriorityItem) -> bool:
            target = item.payload.get("agent")
            return agent is None or target is None or target == agent

        return [
            InjectRequest(message=str(item.payload["message"]), agent=item.payload.get("agent"))
            for item in self.state.inbox.drain(for_agent)
        ]


def _json_bytes(value: BaseModel) -> int:
    """The size of ``value`` as the payload converter writes it (UTF-8 JSON), near enough."""
    return len(value.model_dump_json().encode())
