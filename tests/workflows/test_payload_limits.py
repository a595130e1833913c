"""Jobs never wedge on Temporal's payload limit: when the worker writes payloads inline (no external
storage), a call's input or a carried state that would be over the limit ends the job
``payload_too_large`` with the cause named, and a result over it leaves the per-step outputs out.

The limit is lowered to 20 KB here (``ModelCallActivities(payload_limit=...)``) so replies of a few
KB reach it, on the time-skipping server against a simulator of this module's whose every reply is
about 7.5 KB (``SimConfig.reply_tokens``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.config import ProviderSettings
from activities.model_call import ModelCallActivities
from contracts.jobs import StopReason
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimConfig, SimServer
from tests.helpers import make_worker, run_job

LIMIT = 20_000


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    """A simulator whose every free-text reply is 1500 tokens (about 7.5 KB)."""
    with SimServer(SimConfig(port=0, reply_tokens=1500)) as server:
        yield server


def chain(**overrides: Any) -> JobSpec:
    """Three steps of about 7.5 KB each, each step seeing only its own prompt."""
    data: dict[str, Any] = {
        "id": f"lim-seq-{uuid.uuid4().hex[:8]}",
        "mode": "sequential",
        "task": "Write the report.",
        "agents": [{"name": "a", "model": "sim:writer", "max_output_tokens": 2000}],
        "steps": [{"id": f"s{i}", "agent": "a", "prompt": f"Part {i}."} for i in (1, 2, 3)],
    }
    data.update(overrides)
    return parse_spec(data)


async def run_limited(env: WorkflowEnvironment, sim: SimServer, spec: JobSpec) -> Any:
    gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url), payload_limit=LIMIT)
    async with make_worker(env.client, gateway) as worker:
        return await run_job(env.client, worker.task_queue, spec)


async def test_a_result_over_the_limit_leaves_the_step_outputs_out(
    ts_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """Three 7.5 KB outputs and the final one repeated are over 20 KB: the job completes, its result
    keeps the final output whole, drops the per-step outputs and says so."""
    result = await run_limited(ts_env, sim, chain())
    assert result.stop_reason is StopReason.completed, result.explanation
    assert result.turns == 3
    assert len(result.output.encode()) > 5000
    assert result.outputs == {}
    assert "the outputs of 3 steps were left out of the result" in result.explanation


async def test_a_carried_state_over_the_limit_ends_the_job_instead_of_wedging(
    ts_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """Continuing as new after every step would carry each output three times (the step outputs, the
    chain's input and the transcript): over 20 KB before the third step, the job ends
    payload_too_large naming the carried state, with the steps done so far."""
    result = await run_limited(ts_env, sim, chain(turns_per_run=1))
    assert result.stop_reason is StopReason.payload_too_large, result.explanation
    assert result.explanation.startswith("the state to carry into the next run is 0.0")
    assert "over the 0.02 MB a payload may be inline" in result.explanation
    assert 1 <= result.turns < 3


async def test_a_call_input_over_the_limit_ends_the_job_before_the_call(
    ts_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """A group chat resends the conversation each turn: once a call's input would be over 20 KB the
    job ends payload_too_large naming whose call, and that call is never made (nor charged)."""
    spec = parse_spec(
        {
            "id": f"lim-chat-{uuid.uuid4().hex[:8]}",
            "mode": "groupchat",
            "task": "Talk it through.",
            "agents": [
                {"name": "a", "model": "sim:writer", "max_output_tokens": 2000},
                {"name": "b", "model": "sim:writer", "max_output_tokens": 2000},
            ],
            "termination": {"max_rounds": 10},
        }
    )
    result = await run_limited(ts_env, sim, spec)
    assert result.stop_reason is StopReason.payload_too_large, result.explanation
    assert result.explanation.startswith("the input of "), result.explanation
    assert result.ledger.calls == result.turns
    assert 2 <= result.turns < 20
