"""Encryption end to end on a real dev server of the test's own: with a key set, a job's task text is
in neither the server's SQLite file nor ``temporal workflow show``; the codec server lets the
``temporal`` CLI read it; without a key (the control) both show it."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.codec import KEYS_ENV, codec_from_env
from activities.model_call import ModelCallActivities
from contracts.jobs import StopReason
from contracts.spec import JobSpec, parse_spec
from harness.client import start_job
from harness.codec_server import CodecServer
from harness.devserver import DevServer, temporal_cli
from harness.sim import SimServer
from tests.helpers import connect, free_port, make_worker

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    """A headless dev server with its SQLite file under ``tmp_path``, on a random port."""
    dev = DevServer(data_dir=tmp_path / "harness", port=free_port(), headless=True)
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


def canary_spec() -> tuple[JobSpec, str]:
    """A one-step job on the simulator whose task text holds a fresh canary; returns it and the canary."""
    canary = f"canary-{uuid.uuid4().hex}"
    spec = parse_spec(
        {
            "id": f"enc-{uuid.uuid4().hex[:8]}",
            "mode": "sequential",
            "task": f"Summarise the confidential memo {canary} for the board.",
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 60}],
            "steps": [{"id": "draft", "agent": "writer", "prompt": "{task}"}],
        }
    )
    return spec, canary


def database_bytes(server: DevServer) -> bytes:
    """Every file of the server's SQLite database (main file, and the WAL and journal if any)."""
    files = sorted(server.data_dir.glob("temporal.db*"))
    assert files, f"no database under {server.data_dir}"
    return b"".join(path.read_bytes() for path in files)


def workflow_show(server: DevServer, job_id: str, *extra: str) -> str:
    """What `temporal workflow show` prints for the job (no codec unless ``extra`` names one)."""
    done = subprocess.run(
        [temporal_cli(), "workflow", "show", "-w", job_id, "--address", server.address, *extra],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def run_canary_job(server: DevServer, gateway: ModelCallActivities) -> tuple[JobSpec, str]:
    """Run the canary job to its end on a worker of this process, started as ``harness run`` starts
    it (``start_job``: its static details in the Web UI quote the task); returns its spec and canary."""
    spec, canary = canary_spec()
    client = await connect(server)
    async with make_worker(client, gateway) as worker:
        handle = await start_job(client, spec, queue=worker.task_queue)
        result = await handle.result()
    assert canary in (await (await handle.describe()).static_details() or "")
    assert result.stop_reason is StopReason.completed
    assert canary in result.output  # the simulator's draft repeats its prompt: outputs carry it too
    return spec, canary


async def test_with_a_key_the_task_is_unreadable_without_the_codec(
    server: DevServer, gateway: ModelCallActivities, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HARNESS_CODEC_KEYS set, neither the task text nor its canary is in the SQLite file (the
    job's input, outputs and its Web UI summary and details alike) or in `temporal workflow show`;
    with --codec-endpoint at the codec server, the show prints the canary."""
    monkeypatch.setenv(KEYS_ENV, f"test-key={base64.b64encode(os.urandom(32)).decode()}")
    spec, canary = await run_canary_job(server, gateway)
    stored = database_bytes(server)
    assert spec.task.encode() not in stored
    assert canary.encode() not in stored
    assert canary not in workflow_show(server, spec.id or "")
    codec = codec_from_env()
    assert codec is not None
    codec_server = CodecServer(codec, port=0).start()
    try:
        assert canary in workflow_show(server, spec.id or "", "--codec-endpoint", codec_server.url)
    finally:
        codec_server.stop()


async def test_without_a_key_the_task_is_in_the_clear(
    server: DevServer, gateway: ModelCallActivities, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with no key the same job leaves its canary in the SQLite file and in `temporal
    workflow show`, so the checks above would see a leak."""
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.delenv("HARNESS_CODEC_KEY_FILE", raising=False)
    spec, canary = await run_canary_job(server, gateway)
    assert canary.encode() in database_bytes(server)
    assert canary in workflow_show(server, spec.id or "")
