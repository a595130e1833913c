"""Steering a running job: interrupts, pause and resume, approval gates, validated updates, hygiene.

Real-time behaviour (cancel latency, worker kills, the ``temporal`` CLI) runs on the dev server;
gate timeouts run on the time-skipping server, where an hour-long gate passes in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.controls import (
    AbortRequest,
    AddBudgetRequest,
    GateDecision,
    InjectRequest,
    InterruptRequest,
    SetPriorityRequest,
)
from contracts.jobs import JobProgress, JobStatus, LedgerTotals, StopReason
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from tests.helpers import (
    BIN,
    kill_and_replace,
    make_worker,
    run_job,
    start_job,
    start_worker,
    status_of,
    stop,
    transcript_of,
    until,
)

SLOW = "[[sim latency=0 tps=20 tokens=400]]"


def job(steps: list[dict[str, Any]], **overrides: Any) -> JobSpec:
    """A sequential job for one writer on the simulator."""
    data: dict[str, Any] = {
        "id": f"ctl-{uuid.uuid4().hex[:8]}",
        "mode": "sequential",
        "task": "Write about preemption.",
        "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 500}],
        "steps": steps,
    }
    data.update(overrides)
    return parse_spec(data)


TWO_STEPS = [
    {"id": "one", "agent": "writer", "prompt": "{task}"},
    {"id": "two", "agent": "writer", "prompt": "Improve: {input}"},
]


async def history_length(handle: WorkflowHandle[Any, Any]) -> int:
    return len((await handle.fetch_history()).events)


async def test_interrupt_cancels_streaming_call_fast_and_next_turn_sees_message(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """An urgent interrupt ends a slow streaming call within the heartbeat interval; the partial turn is
    recorded as cancelled with estimated usage and charged, and the step re-runs seeing the message."""
    spec = job([{"id": "one", "agent": "writer", "prompt": f"{{task}} {SLOW}"}, TWO_STEPS[1]])
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        await until(lambda: _streaming(handle))
        await asyncio.sleep(1.0)  # let some tokens stream
        sent = time.monotonic()
        await handle.signal("interrupt", InterruptRequest(message="Answer in French.", priority=0))
        turns = await until(lambda: transcript_of(handle), every=0.02)
        cancel_s = time.monotonic() - sent
        result = await handle.result()
        turns = await transcript_of(handle)
    assert cancel_s < 1.5, cancel_s
    cut = turns[0]
    assert cut.finish_reason == "cancelled" and cut.step == "one"
    assert cut.text and cut.usage.output_tokens > 0 and cut.usage.estimated
    assert [turn.step for turn in turns] == ["one", "one", "two"]
    assert turns[1].prompt_preview == "Answer in French."
    assert result.stop_reason is StopReason.completed
    assert result.ledger.usage.output_tokens == sum(turn.usage.output_tokens for turn in turns)
    assert result.ledger.usage.estimated


async def _streaming(handle: WorkflowHandle[Any, Any]) -> bool:
    return (await status_of(handle)).in_flight is not None


async def test_less_urgent_interrupt_queues_until_the_turn_boundary(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """An interrupt no more urgent than the job's priority does not cancel the call; it is queued,
    visible in status, and delivered to the next turn."""
    slow = "[[sim latency=0 tps=40 tokens=60]]"
    spec = job([{"id": "one", "agent": "writer", "prompt": f"{{task}} {slow}"}, TWO_STEPS[1]], priority=3)
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        await until(lambda: _streaming(handle))
        await handle.signal("interrupt", InterruptRequest(message="Mention aging.", priority=5))
        progress = await status_of(handle)
        result = await handle.result()
        turns = await transcript_of(handle)
    assert progress.interrupts == 1 and progress.queued_messages == 1
    assert [turn.finish_reason for turn in turns] == ["stop", "stop"]
    assert turns[1].prompt_preview == "Mention aging."
    assert result.stop_reason is StopReason.completed


async def test_abort_during_a_call_cancels_it_and_keeps_the_best_result(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """An abort during a streaming call cancels it and ends the job with stop reason aborted."""
    spec = job([TWO_STEPS[0], {"id": "two", "agent": "writer", "prompt": f"{{input}} {SLOW}"}])
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        await until(lambda: _on_step(handle, "two"))
        await handle.signal("abort", AbortRequest(reason="enough"))
        result = await asyncio.wait_for(handle.result(), timeout=5)
    assert result.stop_reason is StopReason.aborted
    assert "enough" in result.explanation
    assert result.outputs == {"one": result.output}


async def _on_step(handle: WorkflowHandle[Any, Any], step: str) -> bool:
    progress = await status_of(handle)
    return progress.step == step and progress.in_flight is not None


async def test_pause_survives_a_worker_kill_and_resume_completes(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """A paused job starts no call; after SIGKILL of its worker and a new worker, it is still paused,
    has spent nothing, and completes once resumed."""
    queue = f"pause-{uuid.uuid4().hex[:8]}"
    spec = job(TWO_STEPS)
    first = start_worker(dev_env, sim, queue)
    second = None
    try:
        handle = await start_job(dev_env.client, queue, spec, start_signal="pause")
        await until(lambda: _status_is(handle, JobStatus.paused), within=60)
        second = kill_and_replace(first, dev_env, sim, queue)
        progress = await status_of(handle)  # answered by the new worker, after replay
        await asyncio.sleep(1.0)
        assert progress.paused and progress.status is JobStatus.paused
        assert await transcript_of(handle) == []
        await handle.signal("resume")
        result = await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        stop(first)
        if second is not None:
            stop(second)
    assert result.stop_reason is StopReason.completed
    assert list(result.outputs) == ["one", "two"]


async def _status_is(handle: WorkflowHandle[Any, Any], wanted: JobStatus) -> bool:
    return (await status_of(handle)).status is wanted


DONE, ONE = ["one", "two"], ["one"]
GATE_CASES = [
    pytest.param({"before_step": "two", "default": "approve"}, StopReason.completed, DONE, id="step-ok"),
    pytest.param({"before_step": "two", "default": "reject"}, StopReason.completed, ONE, id="step-no"),
    pytest.param({"before_step": "two", "default": "abort"}, StopReason.aborted, ONE, id="step-abort"),
    pytest.param({"spend_tokens": 1, "default": "approve"}, StopReason.completed, DONE, id="spend-ok"),
    pytest.param({"spend_tokens": 1, "default": "reject"}, StopReason.budget_exhausted, [], id="spend-no"),
    pytest.param({"spend_usd": "0.0000001", "default": "abort"}, StopReason.aborted, [], id="spend-abort"),
    pytest.param({"before_final": True, "default": "approve"}, StopReason.completed, DONE, id="final-ok"),
    pytest.param({"before_final": True, "default": "reject"}, StopReason.aborted, [], id="final-no"),
    pytest.param({"before_final": True, "default": "abort"}, StopReason.aborted, DONE, id="final-abort"),
]
OUTCOME = {"approve": "approved", "reject": "rejected", "abort": "aborted"}


@pytest.mark.parametrize(("gate", "reason", "outputs"), GATE_CASES)
async def test_gate_takes_its_default_at_timeout(
    ts_env: WorkflowEnvironment,
    gateway: ModelCallActivities,
    gate: dict[str, Any],
    reason: StopReason,
    outputs: list[str],
) -> None:
    """With nobody deciding, a gate waits its (durable, time-skipped) timeout and takes its default:
    reject skips a step, stops a spend gate with budget_exhausted (before the crossing step's output
    is recorded), and withholds a final answer."""
    spec = job(TWO_STEPS, gates=[{"name": "check", "timeout": "2h", **gate}])
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is reason, result.explanation
    assert list(result.outputs) == outputs
    [record] = result.gates
    assert (record.by, record.outcome) == ("timeout", OUTCOME[gate["default"]])
    assert record.decided_at is not None
    assert 7200 <= (record.decided_at - record.opened_at).total_seconds() < 7201
    if gate.get("before_final") and gate["default"] == "reject":
        assert result.output == ""


async def test_a_person_approves_a_gate_and_it_is_recorded(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """An approve update on a pending gate lets the job go on; who, when and the note are in the result
    and the memo (without the note)."""
    spec = job(TWO_STEPS, gates=[{"name": "ship", "before_step": "two", "timeout": "1h"}])
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        progress = await until(lambda: _pending(handle))
        assert progress.pending_gates == ["ship"] and progress.status is JobStatus.waiting
        said = await handle.execute_update(
            "approve", GateDecision(gate="ship", note="looks right", by="alice"), result_type=str
        )
        result = await handle.result()
        memo = await (await handle.describe()).memo()
    assert "approved" in said
    assert result.stop_reason is StopReason.completed
    [record] = result.gates
    assert (record.outcome, record.by, record.note) == ("approved", "alice", "looks right")
    assert memo["gates"][0]["by"] == "alice" and "note" not in memo["gates"][0]


async def _pending(handle: WorkflowHandle[Any, Any]) -> JobProgress | None:
    progress = await status_of(handle)
    return progress if progress.pending_gates else None


async def test_invalid_updates_are_refused_and_leave_state_and_history_unchanged(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Each invalid update is refused by its validator with a clear, non-retryable message, changes
    nothing and adds no event to history (the dev server runs validators in speculative tasks); a
    valid one is accepted."""
    spec = job(TWO_STEPS, gates=[{"name": "ship", "before_final": True}], budget={"tokens": 5000})
    bad: list[tuple[str, Any, str]] = [
        ("approve", GateDecision(gate="nope"), "unknown gate 'nope'"),
        ("reject", GateDecision(gate="ship"), "not pending"),
        ("add_budget", AddBudgetRequest(tokens=-5), "must not be negative"),
        ("add_budget", AddBudgetRequest(), "give tokens or usd"),
        ("add_budget", AddBudgetRequest(tool_calls=-1), "must not be negative"),
        ("add_budget", AddBudgetRequest(tool_calls=2), "no limit on what you add"),
        ("add_budget", AddBudgetRequest(node="team", tokens=5), "unknown budget node"),
        ("set_priority", SetPriorityRequest(task="t1", priority=1), "unknown task 't1'"),
        ("set_priority", SetPriorityRequest(task="job", priority=12), "0 (most urgent) to 9"),
    ]
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec, start_signal="pause")
        await until(lambda: _status_is(handle, JobStatus.paused))
        before = (await history_length(handle), await status_of(handle), await handle.query("ledger"))
        for name, payload, message in bad:
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(name, payload)
            assert message in str(refused.value.cause), (name, refused.value.cause)
            cause = refused.value.cause
            assert isinstance(cause, ApplicationError) and cause.non_retryable, (name, cause)
            assert cause.type == "InvalidRequest", (name, cause.type)
        after = (await history_length(handle), await status_of(handle), await handle.query("ledger"))
        assert after == before
        said = await handle.execute_update("set_priority", SetPriorityRequest(task="job", priority=2))
        totals = await handle.execute_update(
            "add_budget", AddBudgetRequest(tokens=1000), result_type=LedgerTotals
        )
        assert await history_length(handle) > before[0]
        assert (await status_of(handle)).priority == 2 and "priority 2" in said
        assert totals.limit_tokens == 6000
        await handle.signal("abort", AbortRequest(reason="done testing"))
        result = await handle.result()
    assert result.stop_reason is StopReason.aborted


def temporal_cli(env: WorkflowEnvironment, *args: str) -> str:
    """Run the stock ``temporal`` CLI against the test server; returns stdout."""
    address = env.client.service_client.config.target_host
    command = [str(BIN / "temporal"), *args, "--address", address, "--namespace", env.client.namespace]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_the_stock_temporal_cli_sends_the_documented_json(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A signal, an update and a query sent with ``temporal workflow ...`` and the README's JSON work."""
    spec = job(TWO_STEPS, budget={"tokens": 5000})
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec, start_signal="pause")
        await until(lambda: _status_is(handle, JobStatus.paused))
        wid = ["--workflow-id", handle.id]
        run = asyncio.to_thread
        await run(temporal_cli, dev_env, "workflow", "signal", *wid, "--name", "inject",
                  "--input", '{"message": "Keep it short."}')  # fmt: skip
        await run(temporal_cli, dev_env, "workflow", "update", "execute", *wid, "--name", "add_budget",
                  "--input", '{"node": "job", "tokens": 1000, "usd": "0.5"}')  # fmt: skip
        out = await run(temporal_cli, dev_env, "workflow", "query", *wid, "--type", "status",
                        "--output", "json")  # fmt: skip
        await run(temporal_cli, dev_env, "workflow", "signal", *wid, "--name", "resume")
        result = await handle.result()
        turns = await transcript_of(handle)
    progress = json.loads(out)["queryResult"][0]  # the CLI prints empty lists as null
    assert progress["paused"] and progress["queued_messages"] == 1
    assert result.ledger.limit_tokens == 6000
    assert result.stop_reason is StopReason.completed
    assert turns[0].prompt_preview == "Keep it short."


async def test_thousands_of_signals_keep_history_within_limits(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """2,000 inject signals to a paused job cost about one event each (handlers issue no commands),
    far below the 10,240-event warning, and every message is kept and delivered to the next turn."""
    spec = job(TWO_STEPS)
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec, start_signal="pause")
        await until(lambda: _status_is(handle, JobStatus.paused))
        start_events = await history_length(handle)
        for batch in range(10):
            await asyncio.gather(
                *(
                    handle.signal("inject", InjectRequest(message=f"note {batch * 200 + i}"))
                    for i in range(200)
                )
            )
        progress = await until(lambda: _queued(handle, 2000))
        events = await history_length(handle)
        await handle.signal("resume")
        result = await handle.result()
    assert progress.queued_messages == 2000
    assert events - start_events < 2000 * 2.5, events
    assert events < 10_240 * 0.75, events
    assert result.stop_reason is StopReason.completed  # all 2,000 delivered to the first turn at once


async def _queued(handle: WorkflowHandle[Any, Any], count: int) -> JobProgress | None:
    progress = await status_of(handle)
    return progress if progress.queued_messages >= count else None


async def test_a_signal_that_does_not_decode_is_refused_and_shown_not_dropped(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A signal whose payload is not what it takes (wrong fields, not an object, none at all) changes
    nothing, is counted with the reason in ``status`` (fields named, payload not quoted), and the job
    goes on: the next good signal works and the job completes."""
    spec = job(TWO_STEPS, budget={"tokens": 5000})
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec, start_signal="pause")
        await until(lambda: _status_is(handle, JobStatus.paused))
        await handle.signal("interrupt", {"message": "secret words", "priority": "soon"})
        await handle.signal("abort", "not an object")
        await handle.signal("inject")  # no payload at all
        await until(lambda: _refused(handle, 3))
        progress = await status_of(handle)
        assert progress.interrupts == 0 and progress.queued_messages == 0
        assert progress.last_refused_signal is not None
        assert progress.last_refused_signal.startswith("inject: ")
        await handle.signal("inject", InjectRequest(message="Mention aging."))
        await until(lambda: _queued(handle, 1))
        await handle.signal("resume")
        result = await handle.result()
        assert (await status_of(handle)).signals_refused == 3
    assert result.stop_reason is StopReason.completed, result.explanation


async def _refused(handle: WorkflowHandle[Any, Any], count: int) -> bool:
    progress = await status_of(handle)
    refused = progress.last_refused_signal or ""
    if progress.signals_refused == 1:
        assert refused.startswith("interrupt: priority: ") and "secret" not in refused, refused
    return progress.signals_refused == count
