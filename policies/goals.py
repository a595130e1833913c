"""Goal checks: deterministic checks evaluated in the workflow, and the rule that combines scores.

A ``json`` check may carry a JSON Schema, validated with the ``jsonschema`` library (any draft the
schema names in ``$schema``, the latest by default).

Pure: the workflow passes in the texts, and the scores of checks that ran elsewhere (a judge's, a
registered function's). Every check yields a score in [0, 1]; deterministic ones are 0 or 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from jsonschema.exceptions import SchemaError, best_match
from jsonschema.validators import validator_for
from pydantic import BaseModel

DETERMINISTIC = ("contains", "not_contains", "regex", "min_length", "max_length", "json")


class CheckOutcome(BaseModel):
    """The result of one check: a score in [0, 1], whether it passed, and why."""

    kind: str
    score: float
    passed: bool
    weight: float = 1.0
    detail: str = ""
    error: str | None = None
    """Set when the check could not be evaluated (then score 0, not passed): why."""


class RunCheckRequest(BaseModel):
    """Input of the programmatic-check activity: which registered check, on which text."""

    name: str
    text: str


class GoalVerdict(BaseModel):
    """All checks of one evaluation, combined by the goal's rule."""

    met: bool
    score: float
    outcomes: list[CheckOutcome]

    def summary(self) -> str:
        """One line: met or not, the score, and each check's result."""
        parts = [
            f"{o.kind}={'error' if o.error else 'pass' if o.passed else 'fail'}({o.score:.2f})"
            for o in self.outcomes
        ]
        return f"{'met' if self.met else 'not met'} at {self.score:.2f}: " + ", ".join(parts)


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema (of the draft it names, default the latest), or None."""
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as error:
        return f"{error.message} (at {'/'.join(map(str, error.absolute_path)) or 'the root'})"
    return None


def _json_outcome(text: str, schema: dict[str, Any] | None) -> tuple[bool, str]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return False, f"invalid JSON: {error.msg}"
    if schema is None:
        return True, "valid JSON"
    mismatch = best_match(validator_for(schema)(schema).iter_errors(document))
    if mismatch is None:
        return True, "valid JSON matching its schema"
    where = "/".join(map(str, mismatch.absolute_path)) or "the root"
    return False, f"JSON does not match its schema at {where}: {mismatch.message}"


def deterministic_check(
    kind: str, value: str | int | dict[str, Any] | None, text: str, weight: float = 1.0
) -> CheckOutcome:
    """Evaluate one deterministic check against ``text``."""
    passed: bool
    if kind == "contains":
        passed = str(value).lower() in text.lower()
        detail = f"contains {value!r}"
    elif kind == "not_contains":
        passed = str(value).lower() not in text.lower()
        detail = f"does not contain {value!r}"
    elif kind == "regex":
        passed = re.search(str(value), text) is not None
        detail = f"matches /{value}/"
    elif kind == "min_length":
        passed = len(text) >= (value if isinstance(value, int) else 0)
        detail = f"length {len(text)} >= {value}"
    elif kind == "max_length":
        passed = len(text) <= (value if isinstance(value, int) else 0)
        detail = f"length {len(text)} <= {value}"
    elif kind == "json":
        passed, detail = _json_outcome(text, value if isinstance(value, dict) else None)
    else:
        raise ValueError(f"not a deterministic check: {kind!r}")
    return CheckOutcome(kind=kind, score=1.0 if passed else 0.0, passed=passed, weight=weight, detail=detail)


def combine(
    outcomes: Sequence[CheckOutcome], rule: Literal["all", "weighted"], threshold: float
) -> GoalVerdict:
    """Combine check outcomes: 'all' needs every check to pass; 'weighted' needs the weighted mean
    score to reach ``threshold``. The verdict's score is the weighted mean either way."""
    if not outcomes:
        return GoalVerdict(met=False, score=0.0, outcomes=[])
    total_weight = sum(o.weight for o in outcomes)
    score = sum(o.score * o.weight for o in outcomes) / total_weight
    met = all(o.passed for o in outcomes) if rule == "all" else score >= threshold
    return GoalVerdict(met=met, score=score, outcomes=list(outcomes))
