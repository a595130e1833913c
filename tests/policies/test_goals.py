"""Goal checks: the deterministic kinds (JSON Schema included) and how the rules combine scores.

How the spec refuses bad checks is in tests/contracts/test_spec.py; a group chat whose planner's
JSON plan meets a schema goal is in tests/workflows/test_goals.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies.goals import combine, deterministic_check
from tests.helpers import PLAN_SCHEMA


@pytest.mark.parametrize(
    ("kind", "value", "text", "passed"),
    [
        ("contains", "approved", "APPROVED, ship it", True),
        ("not_contains", "TODO", "TODO: finish", False),
        ("regex", r"^v\d+", "v12 of the note", True),
        ("min_length", 10, "short", False),
        ("max_length", 10, "short", True),
        ("json", None, '{"a": 1}', True),
        ("json", None, "{'a': 1}", False),
    ],
)
def test_deterministic_checks(kind: str, value: Any, text: str, passed: bool) -> None:
    """Each deterministic kind passes or fails as its name says, scoring 1 or 0."""
    outcome = deterministic_check(kind, value, text, weight=2.0)
    assert (outcome.passed, outcome.score, outcome.weight) == (passed, float(passed), 2.0)


def test_json_schema_check_names_where_the_output_fails() -> None:
    """A json check with a schema passes a matching document and names the path and rule of a miss."""
    good = {"subtasks": [{"id": "t1", "title": "Intro", "priority": 2}]}
    assert deterministic_check("json", PLAN_SCHEMA, json.dumps(good)).passed
    bad = {"subtasks": [{"id": "t1", "title": "Intro", "priority": 9}]}
    outcome = deterministic_check("json", PLAN_SCHEMA, json.dumps(bad))
    assert not outcome.passed and outcome.score == 0.0
    assert "subtasks/0/priority" in outcome.detail and "9 is greater than the maximum of 5" in outcome.detail
    assert "invalid JSON" in deterministic_check("json", PLAN_SCHEMA, "not json").detail


def test_schema_draft_is_taken_from_the_schema() -> None:
    """``$schema`` picks the draft: draft 4's boolean exclusiveMaximum is honoured."""
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": True}
    assert not deterministic_check("json", draft4, "5").passed
    assert deterministic_check("json", draft4, "4").passed


def test_rules_combine_scores() -> None:
    """'all' needs every check; 'weighted' needs the weighted mean to reach the threshold."""
    outcomes = [
        deterministic_check("contains", "a", "a", weight=3.0),
        deterministic_check("contains", "z", "a", weight=1.0),
    ]
    assert not combine(outcomes, "all", 0.5).met
    verdict = combine(outcomes, "weighted", 0.75)
    assert verdict.met and verdict.score == 0.75
