"""Durability end to end: SIGKILL the worker process mid-call, start another, the job completes.

Runs on the real dev server with the worker in a separate process (``python worker.py``), so the
kill is a real crash, not a cancelled task.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.controls import InjectRequest
from contracts.jobs import JobResult, StopReason, TurnRecord
from contracts.spec import parse_spec
from harness.sim import SimServer
from tests.helpers import run_through_a_crash, sim_call, status_of, transcript_of

pytestmark = pytest.mark.e2e


async def until_calling(handle: WorkflowHandle[Any, Any], step: str) -> None:
    """Wait until the job's current step is ``step`` with a model call in flight."""
    for _ in range(300):
        progress = await status_of(handle)
        if progress.step == step and progress.in_flight:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{step!r} never started")


def assert_charged_like_the_simulator(
    result: JobResult, turns: list[TurnRecord], tally: dict[str, Any]
) -> None:
    """Every finished turn is charged exactly what the simulator served; the call cut by the kill is
    charged by estimate, never zero, never less than what the simulator sent."""
    served_in = sum(turn.usage.input_tokens for turn in turns)
    served_out = sum(turn.usage.output_tokens for turn in turns)
    assert (served_in, served_out) == (tally["input_tokens"], tally["output_tokens"])
    assert not any(turn.usage.estimated for turn in turns)
    lost_out = result.ledger.usage.output_tokens - served_out
    assert result.ledger.usage.estimated
    assert tally["incomplete"] >= 1
    assert lost_out >= tally["incomplete_output_tokens"] > 0


async def test_sigkill_mid_job_resumes_and_charges_each_call_once(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """After a SIGKILL during step 3, a new worker finishes the job; finished steps are not re-run,
    each step's call is in the ledger once (equal to the simulator's tally of completed replies), and
    the call cut mid-stream is charged as an estimate at least as large as what was served."""
    sim_call(sim, "/_sim/reset", {})
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    slow = "[[sim latency=0 tps=15 tokens=60]]"
    spec = parse_spec(
        {
            "id": f"crash-{uuid.uuid4().hex[:8]}",
            "mode": "sequential",
            "task": "Write about crash safety.",
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 120}],
            "steps": [
                {"id": "one", "agent": "writer", "prompt": "{task}"},
                {"id": "two", "agent": "writer", "prompt": "Improve: {input}"},
                {"id": "three", "agent": "writer", "prompt": f"Improve slowly {slow}: {{input}}"},
                {"id": "four", "agent": "writer", "prompt": "Finish: {input}"},
            ],
        }
    )

    async def kill_when(handle: WorkflowHandle[Any, JobResult]) -> None:
        await until_calling(handle, "three")  # step three's stream is flowing

    result, turns = await run_through_a_crash(dev_env, sim, queue, spec, kill_when, settle=1.5, within=90)

    assert result.stop_reason is StopReason.completed
    assert [turn.step for turn in turns] == ["one", "two", "three", "four"]
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert tally["completed"] == 4, tally
    assert_charged_like_the_simulator(result, turns, tally)


async def test_groupchat_resumes_after_sigkill_without_repeating_turns(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """A group chat killed during round 2's first turn finishes on a new worker: the transcript is
    exactly the rotation (no finished turn repeated, call ids in sequence), the chat runs its three
    rounds, and the ledger matches the simulator (the cut call charged at least what it served)."""
    sim_call(sim, "/_sim/reset", {})
    queue = f"crash-chat-{uuid.uuid4().hex[:8]}"
    job_id = f"crash-chat-{uuid.uuid4().hex[:8]}"
    spec = parse_spec(
        {
            "id": job_id,
            "mode": "groupchat",
            # Round 1 streams for about two seconds a turn, long enough to queue the message below.
            "task": "Discuss crash safety. [[sim latency=0 tps=20 tokens=40]]",
            "agents": [
                {"name": "writer", "model": "sim:writer", "max_output_tokens": 120},
                {"name": "editor", "model": "sim:editor", "max_output_tokens": 120},
            ],
            "termination": {"max_rounds": 3},
        }
    )

    async def kill_when(handle: WorkflowHandle[Any, JobResult]) -> None:
        await until_calling(handle, "round 1: editor")
        # Delivered before round 2: its directive makes both round-2 turns stream for about 4 s.
        slow = "Take your time. [[sim latency=0 tps=15 tokens=60]]"
        await handle.signal("inject", InjectRequest(message=slow))
        await until_calling(handle, "round 2: writer")

    result, turns = await run_through_a_crash(dev_env, sim, queue, spec, kill_when, settle=1.5, within=120)

    assert result.stop_reason is StopReason.max_rounds, result.explanation
    assert [turn.agent for turn in turns] == ["writer", "editor"] * 3
    assert [turn.call_id for turn in turns] == [f"{job_id}/{n}" for n in range(1, 7)]
    assert result.turns == 6
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert tally["completed"] == 6, tally  # one completed reply per turn: none repeated
    assert_charged_like_the_simulator(result, turns, tally)


async def test_dag_resumes_after_sigkill_without_rerunning_finished_steps(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """A DAG killed while its slow branch streams resumes on a new worker: every step runs to the end
    exactly once in the transcript, and the finished branch is not called again."""
    sim_call(sim, "/_sim/reset", {})
    queue = f"crash-dag-{uuid.uuid4().hex[:8]}"
    slow = "[[sim latency=0 tps=15 tokens=60]]"
    spec = parse_spec(
        {
            "id": f"crash-dag-{uuid.uuid4().hex[:8]}",
            "mode": "dag",
            "task": "t",
            "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 120}],
            "steps": [
                {"id": "fast", "agent": "a", "prompt": "fast branch"},
                {"id": "slow", "agent": "a", "prompt": f"slow branch {slow}"},
                {"id": "join", "agent": "a", "prompt": "join {input}", "depends_on": ["fast", "slow"]},
            ],
        }
    )

    async def kill_when(handle: WorkflowHandle[Any, JobResult]) -> None:
        for _ in range(300):
            if any(turn.step == "fast" for turn in await transcript_of(handle)):
                break
            await asyncio.sleep(0.1)

    result, turns = await run_through_a_crash(dev_env, sim, queue, spec, kill_when, settle=1.0, within=90)
    assert result.stop_reason is StopReason.completed
    assert sorted(turn.step or "" for turn in turns) == ["fast", "join", "slow"]
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert tally["completed"] == 3


async def test_a_worker_killed_before_the_first_token_is_charged_the_prompt(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """The simulator has the prompt and holds its first token back when the worker is SIGKILLed:
    the next attempt charges the dead one its input from the receipt (estimated, 'worker lost'), at
    least what the simulator counted as received, and the job ends; the one reply is charged exactly."""
    sim_call(sim, "/_sim/reset", {})
    queue = f"crash-prompt-{uuid.uuid4().hex[:8]}"
    spec = parse_spec(
        {
            "id": f"crash-prompt-{uuid.uuid4().hex[:8]}",
            "task": "Write about the price of a prompt. " * 20,
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 60}],
            "steps": [{"id": "one", "agent": "writer", "prompt": "{task} [[sim latency=4 tokens=10]]"}],
        }
    )

    async def kill_when(handle: WorkflowHandle[Any, JobResult]) -> None:
        for _ in range(300):  # the simulator has the request: it waits 4 s before the first token
            if sim_call(sim, "/_sim/tally")["total"]["requests"] >= 1:
                return
            await asyncio.sleep(0.05)
        pytest.fail("the call never reached the simulator")

    result, turns = await run_through_a_crash(dev_env, sim, queue, spec, kill_when, settle=0.5, within=90)
    assert result.stop_reason is StopReason.completed
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert (tally["completed"], tally["incomplete"], tally["incomplete_output_tokens"]) == (1, 1, 0), tally
    assert [turn.usage.input_tokens for turn in turns] == [tally["input_tokens"]]
    lost = result.ledger.usage.input_tokens - tally["input_tokens"]
    assert lost >= tally["incomplete_input_tokens"] > 0, (lost, tally)
    assert result.ledger.usage.estimated and "worker lost" in result.ledger.usage.estimated_for
    assert result.ledger.usage.output_tokens - tally["output_tokens"] <= 2  # the margin, no more
    # The transcript shows the lost attempt on its turn, so its calls add up to the ledger's.
    (turn,) = turns
    assert turn.lost_usage is not None and turn.lost_usage.input_tokens == lost
    assert turn.lost_usage.estimated_for == ["worker lost"] and turn.lost_cost_usd
    assert turn.usage.requests + turn.lost_usage.requests == result.ledger.calls == 2
