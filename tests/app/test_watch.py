"""``harness watch`` and ``harness run`` following a job: tokens as they are written, events as they
happen, and nothing written to the job's history for it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.controls import GateDecision
from contracts.spec import parse_spec
from harness.sim import SimServer
from harness.watch import WatchEvent, watch
from tests.helpers import HARNESS, ROOT, harness, make_worker, start_job, transcript_of, until

SLOW = "[[sim latency=0 tps=20 tokens=60]]"  # about 3 s of streaming


def _spec(job_id: str) -> Any:
    return parse_spec(
        {
            "id": job_id,
            "mode": "sequential",
            "task": "Describe a durable scheduler.",
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 200}],
            "steps": [
                {"id": "draft", "agent": "writer", "prompt": f"{{task}} {SLOW}"},
                {"id": "polish", "agent": "writer", "prompt": f"Polish: {{draft}} {SLOW}"},
            ],
            "gates": [{"name": "go-on", "before_step": "polish", "timeout": "10m"}],
        }
    )


async def _collect(client: Client, job_id: str, decide: bool) -> list[WatchEvent]:
    events = []
    async for event in watch(client, job_id):
        events.append(event)
        if decide and event.kind == "gate_opened":
            handle = client.get_workflow_handle(job_id)
            await handle.execute_update(
                "approve", GateDecision(gate=event.data["gate"], by="test"), result_type=str
            )
    return events


async def test_watch_streams_tokens_before_the_reply_ends_and_the_text_whole(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Each reply arrives in several pieces while its call runs, the pieces make the recorded text
    exactly, the gate shows the commands that decide it, and the job's end closes the watch."""
    client = dev_env.client
    async with make_worker(client, gateway) as worker:
        handle = await start_job(client, worker.task_queue, _spec(f"watch-{uuid.uuid4().hex[:8]}"))
        events = await asyncio.wait_for(_collect(client, handle.id, decide=True), timeout=120)
        turns = await transcript_of(handle)
    kinds = [event.kind for event in events]
    assert kinds[0] == "started" and kinds[-1] == "ended", kinds
    assert events[-1].data["result"]["stop_reason"] == "completed"
    assert len(turns) == 2
    for turn in turns:
        tokens = [e for e in events if e.kind == "token" and e.data["call"] == turn.call_id]
        assert "".join(e.data["text"] for e in tokens) == turn.text
        assert not any("gap" in e.data for e in tokens)
        replies = [i for i, e in enumerate(events) if e.kind == "reply" and e.data["call"] == turn.call_id]
        assert len(replies) == 1 and "cut" not in events[replies[0]].data
        streamed = [i for i, e in enumerate(events) if e.kind == "token" and e.data["call"] == turn.call_id]
        # Tokens came while the call ran: several pieces before the reply event closed it.
        assert len([i for i in streamed if i < replies[0]]) >= 2, kinds
    opened = next(e for e in events if e.kind == "gate_opened")
    assert opened.data["approve"] == f"harness approve {handle.id} go-on"
    assert opened.data["reject"] == f"harness reject {handle.id} go-on"
    decided = next(e for e in events if e.kind == "gate_decided")
    assert decided.data["outcome"] == "approved" and decided.data["by"] == "test"
    assert kinds.index("gate_opened") < kinds.index("gate_decided")


async def _history(client: Client, job_id: str) -> list[Any]:
    return [event async for event in client.get_workflow_handle(job_id).fetch_history_events()]


async def test_watching_writes_nothing_to_the_jobs_history(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The same job watched and not watched: the same events but for workflow tasks (whose count
    follows the machine's timing), and no signal or update from the watcher."""
    client = dev_env.client
    spec = _spec("x").model_copy(update={"gates": []})
    async with make_worker(client, gateway) as worker:
        watched = await start_job(
            client, worker.task_queue, spec.model_copy(update={"id": f"w-{uuid.uuid4().hex[:8]}"})
        )
        events = await asyncio.wait_for(_collect(client, watched.id, decide=False), timeout=120)
        alone = await start_job(
            client, worker.task_queue, spec.model_copy(update={"id": f"a-{uuid.uuid4().hex[:8]}"})
        )
        await alone.result()
    assert [e.kind for e in events].count("token") >= 4

    def story(history: list[Any]) -> list[int]:
        return [e.event_type for e in history if "WORKFLOW_TASK" not in EventType.Name(e.event_type)]

    seen, unseen = story(await _history(client, watched.id)), story(await _history(client, alone.id))
    assert seen == unseen
    assert not {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    } & set(seen)


def test_watch_json_prints_one_event_per_line(
    dev_env: WorkflowEnvironment, sim: SimServer, tmp_path: Path
) -> None:
    """`harness watch ID --json` of an ended job: a started and an ended line, each one JSON object;
    an unknown id is one line and exit 1."""
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HARNESS_SIM_URL": sim.url,
        "HARNESS_TASK_QUEUE": f"watch-{uuid.uuid4().hex[:8]}",
    }
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({**_quick(), "id": f"wj-{uuid.uuid4().hex[:8]}"}))
    assert harness("run", str(spec), env=env).returncode == 0
    job_id = yaml.safe_load(spec.read_text())["id"]
    done = harness("watch", job_id, "--json", env=env)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["event"] == "started" and lines[-1]["event"] == "ended"
    assert lines[-1]["result"]["job_id"] == job_id
    missing = harness("watch", "no-such-job-here", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error:") and len(missing.stderr.strip().splitlines()) == 1


def _quick() -> dict[str, Any]:
    return {
        "mode": "sequential",
        "task": "Say hello.",
        "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 50}],
        "steps": [{"id": "draft", "agent": "writer", "prompt": "{task}"}],
    }


class Tmux:
    """A terminal of 200x50 on a private tmux server, stopped by its PID."""

    def __init__(self, command: str) -> None:
        self.socket = f"harness-test-{uuid.uuid4().hex[:8]}"
        self.run("new-session", "-d", "-s", "t", "-x", "200", "-y", "50", command)
        self.pid = int(self.run("display-message", "-p", "#{pid}").strip())

    def run(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True)
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def close(self) -> None:
        os.kill(self.pid, signal.SIGTERM)


async def test_harness_run_in_a_terminal_shows_tokens_while_the_call_runs(
    dev_env: WorkflowEnvironment, sim: SimServer, tmp_path: Path
) -> None:
    """`harness run examples/gated.yaml` in a real terminal (tmux): the draft's text is on screen
    while the status block still says the writer is being called; the gate shows its commands;
    approved, the job ends with its result."""
    spec = yaml.safe_load((ROOT / "examples" / "gated.yaml").read_text())
    spec["id"] = f"gated-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "gated.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HARNESS_SIM_URL": sim.url,
        "HARNESS_TASK_QUEUE": f"tty-{uuid.uuid4().hex[:8]}",
    }
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    rc = tmp_path / "rc"
    term = Tmux(f"cd {ROOT} && env {exports} {HARNESS} run {path}; echo $? > {rc}; sleep 600")
    try:

        async def streaming() -> str | None:
            screen = term.screen()
            calling = "writer on sim:writer (step draft)" in screen
            return screen if calling and "Draft v1:" in screen else None

        screen = await until(streaming, within=90, every=0.1, failure="no draft text while the call ran")
        assert "spent" in screen and "of $0.5000" in screen  # the spend against the budget

        async def gate_shown() -> bool:
            return "harness approve" in term.screen()

        async def ended() -> bool:
            return rc.exists()

        await until(gate_shown, within=90, failure="no gate line")
        approve = harness("approve", spec["id"], "publish-ok", env=env)
        assert approve.returncode == 0, approve.stderr
        await until(ended, within=120, every=0.2, failure="run did not end")
        assert rc.read_text().strip() == "0"
        final = term.screen()
        assert "stop reason" in final and "completed" in final
    finally:
        term.close()
