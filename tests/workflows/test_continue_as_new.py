"""Continue-as-new in every mode, on the time-skipping server (the team on a dev server) against the
simulator.

``chat.turns_per_run`` makes a run continue as new after that many turns, as the server's
suggestion does for a long history: the next run must go on with nothing lost.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from activities.team_board import TeamBoardActivities
from contracts.accounts import AccountView
from contracts.controls import InjectRequest, InterruptRequest
from contracts.jobs import JobResult, LedgerTotals, StopReason, TurnRecord
from contracts.models import Usage
from contracts.names import BUDGET_ACCOUNT_ACTIVITY, MODEL_CALL_ACTIVITY, RESOLVE_MODELS_ACTIVITY
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from tests.helpers import (
    account_activities,
    make_worker,
    sim_call,
    start_account,
    start_job,
    status_of,
    transcript_of,
)
from tests.workflows.test_delegation_team import team


def long_chat(**overrides: Any) -> JobSpec:
    """Writer and editor, three rounds without a goal, two turns per run: six turns in three runs."""
    data: dict[str, Any] = {
        "id": f"can-{uuid.uuid4().hex[:8]}",
        "mode": "groupchat",
        "task": "Discuss durable scheduling of agent work.",
        "agents": [
            {"name": "writer", "model": "sim:writer", "max_output_tokens": 120},
            {"name": "editor", "model": "sim:editor", "max_output_tokens": 60},
        ],
        "chat": {"turns_per_run": 2},
        "termination": {"max_rounds": 3},
        "budget": {"tokens": 50000},
    }
    data.update(overrides)
    return parse_spec(data)


async def run_chain(
    client: Client, handle: WorkflowHandle[Any, Any]
) -> list[tuple[WorkflowExecutionStatus, WorkflowHistory]]:
    """Every run of the job, first to last (following continue-as-new links): status and history."""
    runs: list[tuple[WorkflowExecutionStatus, WorkflowHistory]] = []
    run_id = handle.first_execution_run_id or handle.result_run_id
    while run_id:
        run = client.get_workflow_handle(handle.id, run_id=run_id)
        description = await run.describe()
        assert description.status is not None
        history = await run.fetch_history()
        runs.append((description.status, history))
        run_id = None
        if description.status is WorkflowExecutionStatus.CONTINUED_AS_NEW:
            last = history.events[-1]
            assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs


async def run_to_end(
    client: Client, gateway: ModelCallActivities, spec: JobSpec
) -> tuple[JobResult, list[TurnRecord], list[tuple[WorkflowExecutionStatus, WorkflowHistory]]]:
    """Run ``spec`` to its end: its result, transcript and every run (see ``run_chain``)."""
    async with make_worker(client, gateway) as worker:
        handle = await start_job(client, worker.task_queue, spec)
        result = await handle.result()
        turns = await transcript_of(handle)
        runs = await run_chain(client, handle)
    return result, turns, runs


def activities_of(history: WorkflowHistory) -> list[str]:
    """The activity types a run scheduled, in order."""
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_long_groupchat_continues_as_new_and_loses_nothing(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """Six turns at two turns per run make three runs; the result and the queries of the last run
    hold every turn once (call ids numbered on across runs), and the ledger equals both the turns'
    usage and what the simulator served."""
    sim_call(sim, "/_sim/reset", {})
    spec = long_chat()
    client = ts_env.client
    async with make_worker(client, gateway) as worker:
        handle = await start_job(client, worker.task_queue, spec)
        result = await handle.result()
        turns = await transcript_of(handle)
        ledger = await handle.query("ledger", result_type=LedgerTotals)
        status = await status_of(handle)
        runs = await run_chain(client, handle)

    statuses = [status for status, _ in runs]
    assert statuses == [WorkflowExecutionStatus.CONTINUED_AS_NEW] * 2 + [WorkflowExecutionStatus.COMPLETED]
    # Models are resolved by the first run only; each run makes its own two calls.
    assert [activities_of(history) for _, history in runs] == [
        [RESOLVE_MODELS_ACTIVITY, MODEL_CALL_ACTIVITY, MODEL_CALL_ACTIVITY],
        [MODEL_CALL_ACTIVITY] * 2,
        [MODEL_CALL_ACTIVITY] * 2,
    ]
    assert result.stop_reason is StopReason.max_rounds, result.explanation
    assert result.turns == 6
    assert [turn.agent for turn in turns] == ["writer", "editor"] * 3
    assert [turn.call_id for turn in turns] == [f"{spec.id}/{n}" for n in range(1, 7)]
    assert [turn.index for turn in turns] == list(range(6))
    # The writer saw the whole conversation in every run: its drafts number on (v1, v2, v3).
    assert [turn.text.split(":")[0] for turn in turns[::2]] == ["Draft v1", "Draft v2", "Draft v3"]
    assert result.output.startswith("Draft v3")

    served = sum((turn.usage for turn in turns), Usage())
    assert result.ledger.usage == served and result.ledger.calls == 6
    assert result.ledger.cost_usd == sum((turn.cost_usd or Decimal(0) for turn in turns), Decimal(0))
    for agent in ("writer", "editor"):
        mine = sum((turn.usage for turn in turns if turn.agent == agent), Usage())
        assert result.ledger.per_agent[agent] == mine
    job_node = next(node for node in result.ledger.nodes if node.id == "job")
    assert job_node.spent.tokens == served.total_tokens and job_node.spent.calls == 6
    assert job_node.remaining.tokens == 50000 - served.total_tokens
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert tally["completed"] == 6 and tally["incomplete"] == 0, tally
    assert (tally["input_tokens"], tally["output_tokens"]) == (served.input_tokens, served.output_tokens)

    assert ledger == result.ledger
    assert status.round == 3 and status.steps_done == 3 and status.tokens == served.total_tokens


async def test_messages_queued_before_continue_as_new_reach_the_next_run(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """An inject and an interrupt queued during the run's last turn are delivered to the first turn of
    the next run (the writer answers the injected "too formal"), and the interrupt count carries over."""
    spec = long_chat(chat={"turns_per_run": 2, "opening": "{task} [[sim latency=0 tps=20 tokens=40]]"})
    client = ts_env.client
    async with make_worker(client, gateway) as worker:
        handle = await start_job(client, worker.task_queue, spec)
        for _ in range(300):  # the run's second (last) turn is streaming
            progress = await status_of(handle)
            if progress.step == "round 1: editor" and progress.in_flight:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the editor's first turn never started")
        await handle.signal("inject", InjectRequest(message="This is too formal."))
        await handle.signal("interrupt", InterruptRequest(message="Keep it short.", priority=9))
        queued = await status_of(handle)
        result = await handle.result()
        turns = await transcript_of(handle)
        status = await status_of(handle)
        runs = await run_chain(client, handle)

    assert queued.queued_messages == 2 and queued.in_flight
    assert len(runs) == 3
    assert result.stop_reason is StopReason.max_rounds, result.explanation
    assert [turn.agent for turn in turns] == ["writer", "editor"] * 3
    assert turns[1].ended_at < turns[2].started_at
    assert turns[2].text.startswith("Draft (casual)"), turns[2].text  # the first turn of run 2
    assert status.queued_messages == 0 and status.interrupts == 1


async def test_a_budget_account_is_leased_once_and_given_back_once_across_runs(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A chat naming a budget account leases in its first run only and gives back in its last: the
    account ends with no open lease and exactly the job's spend."""
    activities = account_activities(dev_env.client, gateway)
    client = dev_env.client
    async with make_worker(client, gateway, activities=activities) as worker:
        account = await start_account(client, worker.task_queue, usd=Decimal(1))
        name = (await account.query("show", result_type=AccountView)).state.name
        spec = long_chat(account=name, budget={"usd": "0.5"})
        handle = await start_job(client, worker.task_queue, spec)
        result = await handle.result()
        runs = await run_chain(client, handle)
        view = await account.query("show", result_type=AccountView)
        await account.terminate()

    assert result.stop_reason is StopReason.max_rounds and result.turns == 6, result.explanation
    account_calls = [
        [name for name in activities_of(history) if name == BUDGET_ACCOUNT_ACTIVITY] for _, history in runs
    ]
    assert len(runs) == 3
    assert account_calls == [[BUDGET_ACCOUNT_ACTIVITY], [], [BUDGET_ACCOUNT_ACTIVITY]]  # lease, give back
    assert not view.state.leases
    assert view.state.spent_usd == result.ledger.cost_usd > 0


async def test_a_long_sequential_chain_continues_as_new_and_loses_nothing(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """Five steps at two turns per run make three runs: each run starts at the first step not
    done, {input} and earlier outputs reach later steps across runs, and the ledger equals the
    turns' usage and what the simulator served."""
    sim_call(sim, "/_sim/reset", {})
    spec = parse_spec(
        {
            "id": f"can-seq-{uuid.uuid4().hex[:8]}",
            "mode": "sequential",
            "task": "Count up.",
            "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 200}],
            "steps": [
                {"id": "s1", "agent": "a", "prompt": "one"},
                {"id": "s2", "agent": "a", "prompt": "two after {input}"},
                {"id": "s3", "agent": "a", "prompt": "three after {input}"},
                {"id": "s4", "agent": "a", "prompt": "four, first was {s1}"},
                {"id": "s5", "agent": "a", "prompt": "five after {input}"},
            ],
            "turns_per_run": 2,
            "budget": {"tokens": 50000},
        }
    )
    result, turns, runs = await run_to_end(ts_env.client, gateway, spec)

    statuses = [status for status, _ in runs]
    assert statuses == [WorkflowExecutionStatus.CONTINUED_AS_NEW] * 2 + [WorkflowExecutionStatus.COMPLETED]
    assert [activities_of(history) for _, history in runs] == [
        [RESOLVE_MODELS_ACTIVITY, MODEL_CALL_ACTIVITY, MODEL_CALL_ACTIVITY],
        [MODEL_CALL_ACTIVITY] * 2,
        [MODEL_CALL_ACTIVITY],
    ]
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(result.outputs) == ["s1", "s2", "s3", "s4", "s5"]
    assert [turn.step for turn in turns] == ["s1", "s2", "s3", "s4", "s5"]
    assert [turn.call_id for turn in turns] == [f"{spec.id}/{n}" for n in range(1, 6)]
    # sim:echo repeats its input: s3 (run 2) saw s2's output, s4 (run 2) s1's (run 1), s5 (run 3) s4's
    # (echo's reply is cut at its token limit: compare the start of each)
    outputs = result.outputs
    assert turns[2].text.startswith(f"Reply from echo: three after {outputs['s2'][:40]}")
    assert turns[3].text.startswith(f"Reply from echo: four, first was {outputs['s1'][:40]}")
    assert turns[4].text.startswith(f"Reply from echo: five after {outputs['s4'][:40]}")
    assert result.output == outputs["s5"]
    served = sum((turn.usage for turn in turns), Usage())
    assert result.ledger.usage == served and result.ledger.calls == 5
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert tally["completed"] == 5 and tally["incomplete"] == 0, tally
    job_node = next(node for node in result.ledger.nodes if node.id == "job")
    assert job_node.spent.tokens == served.total_tokens


async def test_a_dag_continues_as_new_between_steps_and_loses_nothing(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A five-step DAG, two steps at a time, one turn per run: once a step has finished, the run
    starts no new one, lets the other running step finish and continues as new; the next starts
    only the steps not done, every step runs once, dependants see their inputs' outputs across
    runs, and the ledger holds every call."""
    sim_call(sim, "/_sim/reset", {})
    spec = parse_spec(
        {
            "id": f"can-dag-{uuid.uuid4().hex[:8]}",
            "mode": "dag",
            "task": "Build it.",
            "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 200}],
            "steps": [
                {"id": "a", "agent": "a", "prompt": "alpha"},
                {"id": "b", "agent": "a", "prompt": "beta"},
                {"id": "c", "agent": "a", "prompt": "gamma from {input}", "depends_on": ["a", "b"]},
                {"id": "d", "agent": "a", "prompt": "delta from {input}", "depends_on": ["c"]},
                {"id": "e", "agent": "a", "prompt": "epsilon from {a}", "depends_on": ["a"]},
            ],
            "max_concurrency": 2,
            "turns_per_run": 1,
            "budget": {"tokens": 50000},
        }
    )
    result, turns, runs = await run_to_end(ts_env.client, gateway, spec)

    statuses = [status for status, _ in runs]
    assert statuses == [WorkflowExecutionStatus.CONTINUED_AS_NEW] * 2 + [WorkflowExecutionStatus.COMPLETED]
    # run 1: a and b; run 2: c and e (ready once a and b are done); run 3: d
    calls = [activities_of(history).count(MODEL_CALL_ACTIVITY) for _, history in runs]
    assert calls == [2, 2, 1]
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(turn.step or "" for turn in turns) == ["a", "b", "c", "d", "e"]
    by_step = {turn.step: turn for turn in turns}
    outputs = result.outputs
    assert by_step["c"].text.startswith(f"Reply from echo: gamma from {outputs['a'][:30]}")
    assert by_step["d"].text.startswith(f"Reply from echo: delta from {outputs['c'][:30]}")
    assert by_step["e"].text.startswith(f"Reply from echo: epsilon from {outputs['a'][:30]}")
    served = sum((turn.usage for turn in turns), Usage())
    assert result.ledger.usage == served and result.ledger.calls == 5
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert tally["completed"] == 5 and tally["incomplete"] == 0, tally


async def test_a_delegation_continues_as_new_between_rounds_and_loses_nothing(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """One primary turn per run: each round runs in its own run. A subtask that failed in round 1
    is named in round 2's review (the failures carried), retried there under a fresh child id, the
    results of round 1 are not run again, and the ledger holds every call of parent and children."""
    sim_call(sim, "/_sim/reset", {})
    sim_call(sim, "/_sim/faults", {"kind": "400", "model": "writer", "count": 1})
    spec = parse_spec(
        {
            "id": f"can-dlg-{uuid.uuid4().hex[:8]}",
            "mode": "delegation",
            "task": "Write a guide to durable agents.",
            "agents": [
                {"name": "lead", "model": "sim:planner", "max_output_tokens": 600},
                {"name": "writer", "model": "sim:writer", "max_output_tokens": 120},
            ],
            "delegation": {"primary": "lead", "max_concurrency": 1, "max_rounds": 4},
            "turns_per_run": 1,
            "budget": {"tokens": 60000},
        }
    )
    result, turns, runs = await run_to_end(ts_env.client, gateway, spec)

    # round 1 (t1 fails), round 2 (t1 again), round 3 (a plan of done ids only) and the final answer
    statuses = [status for status, _ in runs]
    assert statuses == [WorkflowExecutionStatus.CONTINUED_AS_NEW] * 2 + [WorkflowExecutionStatus.COMPLETED]
    # The first run resolves the models; no later run resolves them again.
    assert [activities_of(history).count(RESOLVE_MODELS_ACTIVITY) for _, history in runs] == [1] + [0] * (
        len(runs) - 1
    )
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(result.outputs) == ["t1", "t2", "t3"]
    assert result.evidence["failed_runs"] == [f"{spec.id}/t1-r1"]
    assert result.evidence["given_up"] == []
    assert [turn.step for turn in turns] == ["plan-r1", "plan-r2", "plan-r3", "final"]
    review = turns[1]
    assert review.prompt_preview.startswith("Failed subtasks:\n- t1:"), review.prompt_preview
    retried = await ts_env.client.get_workflow_handle(f"{spec.id}/t1-r2", result_type=JobResult).result()
    assert retried.stop_reason is StopReason.completed
    assert result.outputs["t1"] == retried.output
    tally = sim_call(sim, "/_sim/tally")["total"]
    # every request the simulator answered is on the ledger: the primary's turns, 2 first-round
    # children, the refused one (no tokens) and its retry
    assert result.ledger.calls == len(turns) + 3
    assert tally["completed"] == len(turns) + 3, tally


async def test_team_members_continue_as_new_between_tasks_and_lose_nothing(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """One turn per run: a member that has done a task goes on in a new run, its claims numbered on
    (none answered twice), its results carried; every task is claimed once, the coordinator still
    reaches every member's newest run with 'wake' and 'close', and the ledger holds every call."""
    tasks = [
        'Outline it. [[sim reply="done\nFOLLOW-UP: write the summary"]]',
        "List three facts.",
        "Draft the opening.",
    ]
    spec = team(tasks, turns_per_run=1)
    board = TeamBoardActivities(dev_env.client)
    activities = [gateway.model_call, gateway.resolve_models, board.team_board]
    async with make_worker(dev_env.client, gateway, activities=activities) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        result = await handle.result()
        members = {}
        for name in ("writer", "echo"):
            latest = dev_env.client.get_workflow_handle(f"{spec.id}--{name}", result_type=JobResult)
            started = (await latest.fetch_history()).events[0].workflow_execution_started_event_attributes
            first = dev_env.client.get_workflow_handle(
                latest.id, first_execution_run_id=started.first_execution_run_id
            )
            members[name] = (await latest.result(), await run_chain(dev_env.client, first))
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(result.outputs) == ["task1", "task2", "task3", "task4"]
    claimed = [claim.split(":")[0] for claim in result.evidence["claims"]]
    assert sorted(claimed) == ["task1", "task2", "task3", "task4"]
    done_by = {name: sorted(member.outputs) for name, (member, _) in members.items()}
    assert sorted(done_by["writer"] + done_by["echo"]) == ["task1", "task2", "task3", "task4"]
    for name, (member, chain) in members.items():
        assert member.stop_reason is StopReason.completed, (name, member.explanation)
        statuses = [status for status, _ in chain]
        # a run per task done, and the last run, which found the board closed
        assert statuses[-1] is WorkflowExecutionStatus.COMPLETED
        assert len(chain) >= len(member.outputs), (name, statuses)
        assert {status for status, _ in chain[:-1]} <= {WorkflowExecutionStatus.CONTINUED_AS_NEW}
    assert any(len(chain) > 1 for _, chain in members.values())
    assert result.ledger.calls == 4 and result.turns == 4
