"""The job's one input and its state: what every job workflow is started with and carries on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from contracts.spec import parse_spec
from contracts.state import JobInput, JobState
from policies.scheduling import AgingPriorityQueue

SPEC: dict[str, Any] = {
    "mode": "sequential",
    "task": "t",
    "agents": [{"name": "w", "model": "sim:writer"}],
    "steps": [{"id": "s", "agent": "w", "prompt": "{task}"}],
}


def test_a_bare_spec_is_a_new_job() -> None:
    """A spec alone (what clients, the temporal CLI and the older histories send) means no state."""
    job_input = JobInput.model_validate(SPEC)
    assert job_input.spec == parse_spec(SPEC)
    assert job_input.state is None
    assert JobInput.model_validate(parse_spec(SPEC)).spec == parse_spec(SPEC)


def test_the_state_round_trips_through_json_with_the_spec() -> None:
    """What continue-as-new sends arrives as it was sent."""
    inbox = AgingPriorityQueue()
    inbox.push_next(2, {"message": "hurry", "agent": None})
    state = JobState(call_seq=7, steps_done=2, detail="waiting", inbox=inbox, evidence={"k": [1]})
    sent = JobInput(spec=parse_spec(SPEC), state=state)
    arrived = JobInput.model_validate_json(sent.model_dump_json())
    assert arrived == sent
    assert (
        arrived.state is not None
        and arrived.state.inbox.drain(lambda _: True)[0].payload["message"] == "hurry"
    )


def test_a_bad_spec_is_refused_as_a_spec() -> None:
    """The spec's own validation still applies to one sent bare, naming the field."""
    with pytest.raises(ValidationError, match="agents"):
        JobInput.model_validate({**SPEC, "agents": []})
