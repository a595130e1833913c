"""``harness run`` on specs a new user gets wrong, as a real process: one line, exit 2, nothing
started; and jobs whose names are no ids run to the end under their own name."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.names import JOB_ID_RULE
from harness.sim import SimServer
from tests.helpers import harness

AGENT = "agents: [{name: a, model: 'sim:writer', max_output_tokens: 40}]\n"


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused ``harness run`` printed on stderr, once it is sure it exited 2 with
    exactly that line, no traceback and nothing on stdout."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def run(tmp_path: Path, content: str | bytes, name: str = "spec.yaml") -> tuple[Path, str]:
    """Write ``content`` to ``name`` and ``harness run`` it: the file and the line it is refused with."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    # No Temporal address that answers: a run that got past the checks would fail otherwise, not 2.
    return path, refused(harness("run", str(path), env={"TEMPORAL_ADDRESS": "127.0.0.1:1"}))


def test_an_id_the_workflow_would_refuse_is_refused_before_start(tmp_path: Path) -> None:
    """An explicit id with a '/' would leave the job 'starting' for ever: refused at submission."""
    path, line = run(tmp_path, f"id: a/b\ntask: t\n{AGENT}steps: [{{id: s, agent: a}}]\n")
    assert line == f"error: {path}: id: must be {JOB_ID_RULE}"


def test_an_unknown_placeholder_is_refused_naming_the_step(tmp_path: Path) -> None:
    """A '{taks}' in a prompt is refused with the step and the placeholders it may use."""
    path, line = run(tmp_path, f"task: t\n{AGENT}steps: [{{id: draft, agent: a, prompt: 'Do {{taks}}'}}]\n")
    assert line == (
        f"error: {path}: steps.0.prompt: unknown placeholder {{taks}} in step 'draft'; known: {{task}}, "
        "{input} (write {{taks}} for the text {taks})"
    )


def test_an_unknown_model_is_refused_with_the_nearest_known(tmp_path: Path) -> None:
    """A misspelt simulator model is an unknown model with a suggestion, not an unpriced one."""
    _, line = run(tmp_path, "task: t\nagents: [{name: a, model: 'sim:writr'}]\nsteps: [{id: s, agent: a}]\n")
    assert line == "error: unknown model 'sim:writr': did you mean sim:writer or sim:editor?"


def test_a_known_model_without_a_price_keeps_its_message(tmp_path: Path) -> None:
    """An openai-compatible model may be anything its server serves: only its price is unknown."""
    _, line = run(
        tmp_path,
        "task: t\nagents: [{name: a, model: 'openai-compatible:my-llama'}]\nsteps: [{id: s, agent: a}]\n",
    )
    assert line.startswith("error: no known price for openai-compatible:my-llama; add a price to the catalog")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text (byte 0x89 at offset 0)"),
        ("task: résumé\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 7)"),
    ],
    ids=["binary", "latin-1"],
)
def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path, content: bytes, why: str) -> None:
    """A binary or non-UTF-8 file is one line naming it, where a traceback was."""
    path, line = run(tmp_path, content)
    assert line == f"error: {path}: {why}; a spec is YAML or JSON saved as UTF-8"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "empty; a job spec is a mapping with at least 'task' and 'agents'"),
        ("- task: t\n", "a job spec is a mapping ('task: ...', 'agents: ...'), not a list"),
    ],
    ids=["empty", "list"],
)
def test_an_empty_file_or_no_mapping_is_one_line(tmp_path: Path, content: str, why: str) -> None:
    """An empty spec file or one that is not a mapping says so about the file."""
    path, line = run(tmp_path, content)
    assert line == f"error: {path}: {why}"


def test_a_long_line_with_brackets_is_printed_as_written(tmp_path: Path) -> None:
    """A refusal longer than the terminal stays one line, and brackets in it are text, not styles."""
    path, line = run(tmp_path, "", name=f"[draft] {'x' * 200}.yaml")
    assert line == f"error: {path}: empty; a job spec is a mapping with at least 'task' and 'agents'"


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "stem"), [("résumé: draft #1", "resume-draft-1"), ("a/b", "a-b")])
async def test_a_job_whose_name_is_no_id_runs_to_the_end_under_its_name(
    tmp_path: Path, dev_env: WorkflowEnvironment, sim: SimServer, name: str, stem: str
) -> None:
    """A name with accents, ':', '#' or '/' gives an id the workflow accepts: `harness run` ends with
    the job completed, and the name is the job's display name (its memo), as written."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: {json.dumps(name)}\ntask: t\n{AGENT}steps: [{{id: s, agent: a}}]\n", encoding="utf-8"
    )
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HARNESS_SIM_URL": sim.url,
        "HARNESS_TASK_QUEUE": f"cli-spec-{uuid.uuid4().hex[:8]}",
    }
    done = await asyncio.to_thread(harness, "run", str(spec), env=env)
    assert done.returncode == 0, done.stderr
    assert "stop reason  completed" in done.stdout
    started = re.search(rf"job ({re.escape(stem)}-[0-9a-f]{{8}}) started", done.stdout)
    assert started, done.stdout
    job_id = started.group(1)
    status = await asyncio.to_thread(harness, "status", job_id, "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["stop_reason"] == "completed"
    described = await dev_env.client.get_workflow_handle(job_id).describe()
    assert await described.memo_value("name") == name
