"""The job spec refuses bad input before anything starts, naming the field and the reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.spec import SpecError, parse_spec
from harness.specfile import load_spec
from tests.helpers import PLAN_SCHEMA, ROOT

# examples/catalog.yaml is a model catalog, not a spec (tests/e2e/test_providers_e2e.py runs with it).
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name != "catalog.yaml")


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "task": "t",
        "agents": [{"name": "a", "model": "sim:writer"}],
        "steps": [{"id": "s1", "agent": "a"}],
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_every_example_loads(path: Path) -> None:
    """Every shipped example is a valid spec."""
    assert load_spec(path).agents


def test_unknown_field_is_named() -> None:
    """A typo is an error that names the field, not a silently ignored key."""
    with pytest.raises(SpecError, match=r"agents\.0\.modle"):
        parse_spec(base(agents=[{"name": "a", "model": "sim:writer", "modle": "x"}]))


def test_step_with_unknown_agent_is_refused() -> None:
    """A step naming an agent that does not exist is refused with the step's index."""
    with pytest.raises(SpecError, match=r"steps\.0\.agent: unknown agent 'b'"):
        parse_spec(base(steps=[{"id": "s1", "agent": "b"}]))


def test_dag_cycle_is_refused() -> None:
    """A dependency cycle is refused at submission, with the cycle spelled out."""
    steps = [
        {"id": "x", "agent": "a", "depends_on": ["y"]},
        {"id": "y", "agent": "a", "depends_on": ["x"]},
    ]
    with pytest.raises(SpecError, match="cycle x -> y -> x"):
        parse_spec(base(mode="dag", steps=steps))


def test_negative_budget_and_bad_deadline_are_refused() -> None:
    """Budgets must be positive and deadlines readable durations."""
    with pytest.raises(SpecError, match=r"budget\.tokens"):
        parse_spec(base(budget={"tokens": -1}))
    with pytest.raises(SpecError, match="deadline"):
        parse_spec(base(deadline="soon"))


def test_deadline_units() -> None:
    """Durations read as written: '90s', '30m', '2h'."""
    assert parse_spec(base(deadline="90s")).deadline == timedelta(seconds=90)
    assert parse_spec(base(deadline="2h")).deadline == timedelta(hours=2)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    """A missing file or unparsable YAML is a SpecError, not a traceback."""
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_spec_survives_a_json_round_trip() -> None:
    """A spec written as JSON (as Temporal stores it) reads back equal, durations included."""
    spec = parse_spec(base(deadline="10m", termination={"max_round_time": "30s"}))
    assert parse_spec(spec.model_dump(mode="json")) == spec


def test_spec_refuses_bad_schemas_naming_the_field() -> None:
    """An invalid schema, a schema on a non-json check, or a non-mapping json value fail at load."""

    def spec(check: dict[str, Any]) -> None:
        parse_spec(
            {
                "mode": "groupchat",
                "task": "t",
                "agents": [{"name": "a", "model": "sim:planner"}],
                "goal": {"checks": [check]},
            }
        )

    with pytest.raises(SpecError, match=r"goal\.checks\.0.*not a valid JSON Schema.*minItems"):
        spec({"kind": "json", "value": {"type": "array", "minItems": -1}})
    with pytest.raises(SpecError, match="takes no schema"):
        spec({"kind": "judge", "model": "sim:judge", "value": {"type": "object"}})
    with pytest.raises(SpecError, match="needs a string"):
        spec({"kind": "contains", "value": {"type": "object"}})
    with pytest.raises(SpecError, match="is a JSON Schema"):
        spec({"kind": "json", "value": "object"})
    spec({"kind": "json", "value": PLAN_SCHEMA})  # a valid one loads
