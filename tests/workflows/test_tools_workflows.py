"""The tool loop inside the turn, on real workers: Python tools from a catalog, the real model-call
activities against the simulator's tool-calling models, and real MCP servers.

Each test runs one job whose model asks for tools and checks what the transcript, status, ledger
and the tools' own log say happened. Real-time behaviour (parallel runs, cancels) runs on the dev
server; gate timeouts on the time-skipping server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from activities.queue_limits import queue_rate, read_limit
from activities.team_board import TeamBoardActivities
from activities.tool_catalog import load_tool_catalog
from activities.tools import ToolActivities
from contracts.controls import GateDecision, InterruptRequest
from contracts.jobs import JobProgress, JobResult, StopReason, ToolCallRecord, TurnRecord
from contracts.names import LIST_TOOLS_ACTIVITY, TOOL_CALL_ACTIVITY
from contracts.spec import JobSpec, parse_spec
from tests.activities.test_tools import HttpServer, free_port
from tests.helpers import make_worker, start_job, status_of, transcript_of, until
from tests.workflows.tool_fixtures import LOG_ENV, read_log
from worker import WorkerGroup

FIXTURES = "tests.workflows.tool_fixtures"


def directive(tool: str, **arguments: Any) -> str:
    """A ``[[sim ...]]`` block making sim:tool-user call ``tool`` with ``arguments``."""
    quoted = json.dumps(arguments).replace('"', '\\"')
    return f'[[sim tool={tool} args="{quoted}"]]'


def tool_job(model: str, tools: list[str], prompt: str = "{task}", **agent: Any) -> JobSpec:
    """A one-step sequential job for one tool-using agent on the simulator."""
    return parse_spec(
        {
            "id": f"tools-{uuid.uuid4().hex[:8]}",
            "mode": "sequential",
            "task": "Find out about order A1.",
            "agents": [{"name": "clerk", "model": model, "tools": tools, "max_output_tokens": 200, **agent}],
            "steps": [{"id": "ask", "agent": "clerk", "prompt": prompt}],
            "budget": {"tokens": 50_000},
        }
    )


def write_catalog(path: Path, **sections: Any) -> Path:
    """A tool catalog with the fixture tools, plus ``sections`` (``tools=``, ``mcp=``)."""
    path.write_text(yaml.safe_dump({"python": [FIXTURES], **sections}))
    return path


@pytest.fixture
def tool_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where the fixture tools log their runs (for this test only)."""
    path = str(tmp_path / "tools.log")
    monkeypatch.setenv(LOG_ENV, path)
    return path


@pytest.fixture
async def tools(tmp_path: Path) -> AsyncIterator[ToolActivities]:
    """The real tool activities over the fixture tools."""
    activities = ToolActivities(load_tool_catalog(write_catalog(tmp_path / "tools.yaml")))
    try:
        yield activities
    finally:
        await activities.aclose()


def tool_worker(client: Client, gateway: ModelCallActivities, tools: ToolActivities) -> WorkerGroup:
    return make_worker(
        client,
        gateway,
        activities=[gateway.model_call, gateway.resolve_models, tools.list_tools, tools.tool_call],
    )


def tool_calls(turns: list[TurnRecord]) -> list[ToolCallRecord]:
    return [call for turn in turns for call in turn.tool_calls]


async def run_tools(
    env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities, spec: JobSpec
) -> tuple[JobResult, list[TurnRecord], JobProgress]:
    """Run ``spec`` to its end; its result, transcript and last status (queried while a worker runs)."""
    async with tool_worker(env.client, gateway, tools) as worker:
        handle = await start_job(env.client, worker.task_queue, spec)
        result = await handle.result()
        turns = await transcript_of(handle)
        progress = await status_of(handle)
    return result, turns, progress


async def test_a_tool_call_runs_and_its_result_reaches_the_next_model_call(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities
) -> None:
    """model -> tool call -> result -> model: the answer quotes the tool's result, the turn records
    the call, and both model calls of the loop are charged."""
    spec = tool_job("sim:tool-user", ["lookup_order"], "{task} " + directive("lookup_order", order_id="A1"))
    result, turns, progress = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    assert [turn.finish_reason for turn in turns] == ["tool_calls", "stop"]
    (call,) = turns[0].tool_calls
    assert (call.name, call.ref, call.outcome) == ("lookup_order", "lookup_order", "ok")
    assert json.loads(call.arguments) == {"order_id": "A1"}
    assert "shipped" in call.result_preview and call.result_bytes > 0
    assert "shipped" in result.output
    assert result.ledger.calls == 2
    assert result.ledger.usage.input_tokens == sum(turn.usage.input_tokens for turn in turns)
    # the tool result is input of the second call: it costs more input than the first
    assert turns[1].usage.input_tokens > turns[0].usage.input_tokens
    assert (progress.tool_calls, progress.tool_calls_refused) == (1, 0)


async def test_tool_calls_asked_at_once_run_in_parallel(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities, tool_log: str
) -> None:
    """sim:tool-parallel asks for both tools in one reply: both 1-second runs overlap in time."""
    spec = tool_job("sim:tool-parallel", ["stamp", "lookup_order"])
    started = time.monotonic()
    result, turns, _ = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    calls = turns[0].tool_calls
    assert sorted(call.name for call in calls) == ["lookup_order", "stamp"]
    assert all(call.outcome == "ok" for call in calls)
    (stamped,) = read_log(tool_log)
    assert stamped["ended"] - stamped["began"] >= 1.0
    assert time.monotonic() - started < 30


async def test_two_slow_calls_at_once_overlap(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tmp_path: Path, tool_log: str
) -> None:
    """Two slow tools asked in one reply run at the same time: their intervals overlap."""
    catalog = write_catalog(tmp_path / "two.yaml")
    activities = ToolActivities(load_tool_catalog(catalog))
    spec = tool_job("sim:tool-parallel", ["stamp", "slow_tool"])
    try:
        result, turns, _ = await run_tools(dev_env, gateway, activities, spec)
    finally:
        await activities.aclose()
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(call.name for call in turns[0].tool_calls) == ["slow_tool", "stamp"]
    entries = read_log(tool_log)
    stamp_entry = next(e for e in entries if e["tool"] == "stamp")
    slow_start = next(e for e in entries if e.get("event") == "start")
    slow_end = next(e for e in entries if e.get("event") == "end")
    # overlap: each began before the other ended
    assert slow_start["at"] < stamp_entry["ended"] and stamp_entry["began"] < slow_end["at"]


async def test_a_tool_the_agent_may_not_use_is_refused_recorded_and_counted(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities, tool_log: str
) -> None:
    """sim:tool-rogue asks for charge_card, which the agent was not given: it is not run, the model
    is told so, the transcript says ``refused`` and status counts it."""
    spec = tool_job("sim:tool-rogue", ["lookup_order"], "{task} [[sim tool=charge_card]]")
    result, turns, progress = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = tool_calls(turns)
    assert (call.name, call.outcome, call.ref) == ("charge_card", "refused", None)
    assert "not available to clerk" in call.result_preview
    assert read_log(tool_log) == []  # never ran
    assert (progress.tool_calls, progress.tool_calls_refused) == (1, 1)


async def test_bad_arguments_are_an_error_result_not_a_crash(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities
) -> None:
    """Arguments that are not JSON reach the model as an error result; the job goes on."""
    spec = tool_job("sim:tool-bad-args", ["lookup_order"])
    result, turns, _ = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = tool_calls(turns)
    assert call.outcome == "invalid"
    assert "invalid arguments" in call.result_preview
    assert turns[-1].finish_reason == "stop"


async def test_arguments_against_the_schema_are_invalid(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities
) -> None:
    """A JSON object that misses a required property is refused by the schema check, not run."""
    spec = tool_job("sim:tool-user", ["lookup_order"], "{task} " + directive("lookup_order", wrong=1))
    result, turns, _ = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = tool_calls(turns)
    assert call.outcome == "invalid"
    assert "order_id" in call.result_preview


async def test_a_result_over_the_cap_is_cut_with_a_note(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities
) -> None:
    """A 50,000-byte result under a 1,000-byte cap reaches the model cut, and the record says so."""
    spec = tool_job(
        "sim:tool-user",
        ["big_result"],
        "{task} " + directive("big_result", size=50_000),
        max_tool_result_bytes=1_000,
    )
    result, turns, _ = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = tool_calls(turns)
    assert call.outcome == "ok"
    assert call.truncated_from is not None and call.truncated_from >= 50_000
    assert call.result_bytes <= 1_100  # the cap plus its note
    assert turns[1].usage.input_tokens < 5_000  # the model never saw the 50 KB


async def test_a_tool_call_over_the_tool_budget_is_refused_before_it_runs(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities, tool_log: str
) -> None:
    """An agent with a budget of one tool call asks for two at once: one runs, the other is refused
    ``over budget`` before it starts; the ledger counts one tool call."""
    spec = tool_job("sim:tool-parallel", ["stamp", "lookup_order"], budget={"tool_calls": 1})
    result, turns, _ = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    outcomes = {call.name: call.outcome for call in tool_calls(turns)}
    assert sorted(outcomes.values()) == ["ok", "over budget"]
    refused = next(call for call in tool_calls(turns) if call.outcome == "over budget")
    assert "tool call" in refused.result_preview
    ran = [entry["label"] for entry in read_log(tool_log)]
    assert len(ran) == (1 if outcomes["stamp"] == "ok" else 0)
    assert result.ledger.tool_calls == 1


async def test_an_interrupt_cancels_a_slow_tool_call(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities, tool_log: str
) -> None:
    """An urgent interrupt while a 60-second tool runs cancels it through its heartbeat: the call is
    recorded ``cancelled``, the tool never reaches its end, and the message reaches the model."""
    spec = tool_job("sim:tool-user", ["slow_tool"], "{task} " + directive("slow_tool", seconds=60))
    async with tool_worker(dev_env.client, gateway, tools) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        await until(lambda: _on_tools(handle), within=30)
        await until(lambda: _logged(tool_log, "start"), within=10)
        sent = time.monotonic()
        await handle.signal("interrupt", InterruptRequest(message="Stop waiting.", priority=0))
        result = await asyncio.wait_for(handle.result(), timeout=30)
        took = time.monotonic() - sent
        turns = await transcript_of(handle)
    assert result.stop_reason is StopReason.completed, result.explanation
    first, *later = tool_calls(turns)
    assert first.outcome == "cancelled" and "interrupt" in first.result_preview
    assert took < 10
    # The message reached the model with the cut call's result (the simulator took it for a new
    # request and called the tool again, for its default 1 second); the cut run never ended.
    assert "Stop waiting." in turns[1].prompt_preview
    events = [entry["event"] for entry in read_log(tool_log)]
    assert events.count("end") == sum(call.outcome == "ok" for call in later)
    assert events.count("start") == 1 + len(later)
    assert turns[-1].finish_reason == "stop"


async def _on_tools(handle: WorkflowHandle[Any, Any]) -> bool:
    progress = await status_of(handle)
    return bool(progress.in_flight and "on tools" in progress.in_flight)


async def _logged(path: str, event: str) -> bool:
    return any(entry.get("event") == event for entry in read_log(path))


async def test_the_same_call_with_the_same_result_three_rounds_in_a_row_is_a_livelock(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities
) -> None:
    """sim:tool-loop calls lookup_order with the same arguments for ever: the job stops with
    ``livelock`` after three identical rounds, naming the call."""
    spec = tool_job("sim:tool-loop", ["lookup_order"], max_tool_rounds=50)
    result, turns, _ = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is StopReason.livelock
    assert "lookup_order" in result.explanation
    assert result.evidence["tool_livelock"]["rounds"] == 3
    assert len(tool_calls(turns)) == 3


async def test_max_tool_rounds_makes_the_last_call_answer(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities
) -> None:
    """With two tool rounds allowed and a model that would loop (results differ, so no livelock), the
    third call is sent with tool_choice none and answers."""
    spec = tool_job("sim:tool-loop", ["lookup_order"], max_tool_rounds=2, tool_repeat_limit=5)
    result, turns, _ = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    assert [turn.finish_reason for turn in turns] == ["tool_calls", "tool_calls", "stop"]


# ----- approval gates (time-skipping: an hour-long gate passes in milliseconds) -----------------


@pytest.fixture
async def gated_tools(tmp_path: Path) -> AsyncIterator[ToolActivities]:
    catalog = write_catalog(tmp_path / "gated.yaml", tools={"charge_card": {"approval": "always"}})
    activities = ToolActivities(load_tool_catalog(catalog))
    try:
        yield activities
    finally:
        await activities.aclose()


@pytest.mark.parametrize(("decision", "outcome"), [("approve", "ok"), ("reject", "rejected")])
async def test_an_approval_gated_tool_waits_for_a_person(
    dev_env: WorkflowEnvironment,
    gateway: ModelCallActivities,
    gated_tools: ToolActivities,
    tool_log: str,
    decision: str,
    outcome: str,
) -> None:
    """charge_card needs approval: the job waits at gate ``charge_card-t1`` naming the tool and its
    arguments; approved it runs, rejected it does not, and the decision is recorded."""
    spec = tool_job("sim:tool-user", ["charge_card"], "{task} " + directive("charge_card", amount=42))
    async with tool_worker(dev_env.client, gateway, gated_tools) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        waiting = await until(lambda: _gate_waiting(handle), within=30)
        await handle.execute_update(decision, GateDecision(gate="charge_card-t1", by="ops", note="checked"))
        result = await handle.result()
        turns = await transcript_of(handle)
    assert "charge_card" in waiting and "42" in waiting
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = tool_calls(turns)
    assert call.outcome == outcome
    ran = [entry for entry in read_log(tool_log) if entry["event"] == "start"]
    assert len(ran) == (1 if decision == "approve" else 0)
    (gate,) = [g for g in result.gates if g.gate == "charge_card-t1"]
    assert gate.outcome == ("approved" if decision == "approve" else "rejected") and gate.by == "ops"


async def _gate_waiting(handle: WorkflowHandle[Any, Any]) -> str | None:
    """The waiting gate's target (tool and arguments) once ``charge_card-t1`` waits."""
    progress = await status_of(handle)
    if "charge_card-t1" not in progress.pending_gates:
        return None
    return next(gate.target for gate in progress.gates if gate.gate == "charge_card-t1")


async def test_a_gated_tool_nobody_approves_is_rejected_at_its_timeout(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, gated_tools: ToolActivities, tool_log: str
) -> None:
    """Nobody decides within tool_approval_timeout (2h, time-skipped): the call is rejected, not run,
    and the job goes on to an answer."""
    spec = tool_job(
        "sim:tool-user",
        ["charge_card"],
        "{task} " + directive("charge_card", amount=42),
        tool_approval_timeout="2h",
    )
    result, turns, _ = await run_tools(ts_env, gateway, gated_tools, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = tool_calls(turns)
    assert call.outcome == "rejected"
    assert read_log(tool_log) == []
    (gate,) = [g for g in result.gates if g.gate == "charge_card-t1"]
    assert gate.outcome == "rejected"


# ----- MCP servers in a job -----------------------------------------------------------------------


async def test_a_job_uses_a_streamable_http_mcp_server(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tmp_path: Path
) -> None:
    """mcp:notes/* over streamable HTTP (a localhost server the test starts): the job lists its tools,
    the model calls echo, and the answer carries what the server said."""
    server = HttpServer(free_port())
    server.start()
    catalog = write_catalog(tmp_path / "http.yaml", mcp={"notes": {"url": server.url, "idempotent": True}})
    activities = ToolActivities(load_tool_catalog(catalog))
    spec = tool_job("sim:tool-user", ["mcp:notes/*"], "{task} " + directive("notes__echo", text="over HTTP"))
    try:
        result, turns, _ = await run_tools(dev_env, gateway, activities, spec)
    finally:
        await activities.aclose()
        server.stop()
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = tool_calls(turns)
    assert (call.ref, call.outcome, call.result_preview) == ("mcp:notes/echo", "ok", "over HTTP")
    assert "over HTTP" in result.output


async def test_an_mcp_servers_calls_keep_to_its_rate_limit_on_a_queue_of_their_own(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tmp_path: Path
) -> None:
    """An MCP server given ``rps: 2`` in the tool catalog: the worker polls ``Q-tools-notes`` and
    sets its rate (1.538, room for the start-up burst), and the job's call of the server's tool goes
    there, while its tool listing stays on the job's own queue (roles not split)."""
    server = HttpServer(free_port())
    server.start()
    catalog = write_catalog(
        tmp_path / "http.yaml", mcp={"notes": {"url": server.url, "idempotent": True, "rps": 2}}
    )
    activities = ToolActivities(load_tool_catalog(catalog))
    spec = tool_job("sim:tool-user", ["mcp:notes/*"], "{task} " + directive("notes__echo", text="limited"))
    try:
        async with tool_worker(dev_env.client, gateway, activities) as worker:
            queue = worker.task_queue
            assert f"{queue}-tools-notes" in worker.queues
            limit = await read_limit(dev_env.client, f"{queue}-tools-notes")
            handle = await start_job(dev_env.client, queue, spec)
            result = await handle.result()
    finally:
        await activities.aclose()
        server.stop()
    assert result.stop_reason is StopReason.completed, result.explanation
    assert limit.rps == pytest.approx(queue_rate(2))
    scheduled: dict[str, set[str]] = {}
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            scheduled.setdefault(attributes.activity_type.name, set()).add(attributes.task_queue.name)
    assert scheduled[TOOL_CALL_ACTIVITY] == {f"{queue}-tools-notes"}
    assert scheduled[LIST_TOOLS_ACTIVITY] == {queue}


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A git repository with one commit, "First note about heartbeats"."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "notes.txt").write_text("hello\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "First note about heartbeats"], check=True)
    return repo


async def test_a_job_reads_a_git_repository_through_mcp_server_git(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tmp_path: Path, git_repo: Path
) -> None:
    """mcp-server-git (from PyPI, a stdio subprocess) on a repository the test makes: git_log shows the
    commit the test wrote; the agent was given only git_log."""
    repo = git_repo
    server = {"command": "python", "args": ["-m", "mcp_server_git", "--repository", str(repo)]}
    catalog = write_catalog(tmp_path / "git.yaml", mcp={"git": server})
    activities = ToolActivities(load_tool_catalog(catalog))
    spec = tool_job(
        "sim:tool-user", ["mcp:git/git_log"], "{task} " + directive("git__git_log", repo_path=str(repo))
    )
    try:
        result, turns, _ = await run_tools(dev_env, gateway, activities, spec)
    finally:
        await activities.aclose()
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = tool_calls(turns)
    assert (call.ref, call.outcome) == ("mcp:git/git_log", "ok")
    assert "First note about heartbeats" in call.result_preview


# ----- every mode uses the same turn --------------------------------------------------------------


async def test_a_group_chat_speaker_uses_tools_and_the_conversation_shows_them(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities
) -> None:
    """In a group chat, the speaker with tools calls lookup_order; the next speaker's input shows the
    tool call and its result."""
    spec = parse_spec(
        {
            "id": f"chat-tools-{uuid.uuid4().hex[:8]}",
            "mode": "groupchat",
            "task": "Where is order A1? " + directive("lookup_order", order_id="A1"),
            "agents": [
                {
                    "name": "clerk",
                    "model": "sim:tool-user",
                    "tools": ["lookup_order"],
                    "max_output_tokens": 100,
                },
                {"name": "echo", "model": "sim:echo", "max_output_tokens": 100},
            ],
            "termination": {"max_rounds": 1},
        }
    )
    result, turns, _ = await run_tools(dev_env, gateway, tools, spec)
    assert result.stop_reason is not StopReason.failed, result.explanation
    (call,) = tool_calls(turns)
    assert (turns[0].agent, call.name, call.outcome) == ("clerk", "lookup_order", "ok")
    second = next(turn for turn in turns if turn.agent == "echo")
    # sim:echo repeats its input: the shared conversation held the call and its result
    assert (
        '[clerk] [tool lookup_order {"order_id": "A1"}] -> {"order_id":"A1","status":"shipped"}'
        in second.text
    )


async def test_a_team_member_uses_tools_and_the_team_ledger_counts_its_calls(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tools: ToolActivities
) -> None:
    """A team member (a child job) that calls a tool: the call is in its transcript, and the team's
    ledger counts it (the child's tool calls are absorbed with its spend, not only its usd)."""
    spec = parse_spec(
        {
            "id": f"team-tools-{uuid.uuid4().hex[:8]}",
            "mode": "team",
            "task": "Answer the customer.",
            "agents": [
                {
                    "name": "clerk",
                    "model": "sim:tool-user",
                    "tools": ["lookup_order"],
                    "max_output_tokens": 100,
                }
            ],
            "team": {
                "tasks": ["Where is order A1? " + directive("lookup_order", order_id="A1")],
                "max_tasks": 1,
            },
            "budget": {"tokens": 50_000},
        }
    )
    board = TeamBoardActivities(dev_env.client)
    activities = [
        gateway.model_call,
        gateway.resolve_models,
        tools.list_tools,
        tools.tool_call,
        board.team_board,
    ]
    async with make_worker(dev_env.client, gateway, activities=activities) as worker:
        result = await (await start_job(dev_env.client, worker.task_queue, spec)).result()
        member = dev_env.client.get_workflow_handle(f"{spec.id}--clerk")
        turns = await transcript_of(member)
    assert result.stop_reason is not StopReason.failed, result.explanation
    (call,) = tool_calls(turns)
    assert (call.name, call.outcome) == ("lookup_order", "ok")
    assert result.ledger.tool_calls == 1
    assert result.ledger.per_agent_tool_calls == {"clerk": 1}
    job = next(node for node in result.ledger.nodes if node.id == "job")
    assert job.spent.tool_calls == 1
