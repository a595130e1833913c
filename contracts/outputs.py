"""Structured outputs: the pydantic models a model call can be asked to answer with.

A call names one of these by its key in ``OUTPUT_TYPES`` (``ModelCallRequest.output_type``); the
activity sends the JSON schema to the provider and validates the reply against the model.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Subtask(BaseModel):
    """One piece of work a planner delegates."""

    id: str
    title: str
    instructions: str = ""
    priority: int = Field(default=3, ge=1, le=5, description="1 is most urgent.")
    est_tokens: int | None = None


class Plan(BaseModel):
    """A planner's answer: the subtasks to delegate."""

    subtasks: list[Subtask] = Field(min_length=1)


class JudgeScore(BaseModel):
    """A judge's answer: a score in [0, 1] and why."""

    score: float = Field(ge=0, le=1)
    reason: str = ""


OUTPUT_TYPES: dict[str, type[BaseModel]] = {"plan": Plan, "judge_score": JudgeScore}
