"""Goal checks: deterministic checks evaluated in the workflow, and the rule that combines scores.

Pure: the workflow passes in the texts, and the scores of checks that ran elsewhere (a judge's, a
registered function's). Every check yields a score in [0, 1]; deterministic ones are 0 or 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

DETERMINISTIC = ("contains", "not_contains", "regex", "min_length", "max_length", "json")


class CheckOutcome(BaseModel):
    """The result of one check: a score in [0, 1], whether it passed, and why."""

    kind: str
    score: float
    passed: bool
    weight: float = 1.0
    detail: str = ""


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
        parts = [f"{o.kind}={'pass' if o.passed else 'fail'}({o.score:.2f})" for o in self.outcomes]
        return f"{'met' if self.met else 'not met'} at {self.score:.2f}: " + ", ".join(parts)


def deterministic_check(kind: str, value: str | int | None, text: str, weight: float = 1.0) -> CheckOutcome:
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
        passed = len(text) >= int(value or 0)
        detail = f"length {len(text)} >= {value}"
    elif kind == "max_length":
        passed = len(text) <= int(value or 0)
        detail = f"length {len(text)} <= {value}"
    elif kind == "json":
        try:
            json.loads(text)
            passed, detail = True, "valid JSON"
        except json.JSONDecodeError as error:
            passed, detail = False, f"invalid JSON: {error.msg}"
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
