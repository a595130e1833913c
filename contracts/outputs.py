"""Structured outputs: the pydantic models a model call can be asked to answer with.

A call names one of these by its key in ``OUTPUT_TYPES`` (``ModelCallRequest.output_type``); the
activity sends the JSON schema to the provider and validates the reply against the model.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from policies.tokens import estimate_input_tokens


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


def output_schema(output_type: str | None) -> dict[str, Any] | None:
    """JSON schema of a requested output type, or None for free text."""
    if output_type is None:
        return None
    return OUTPUT_TYPES[output_type].model_json_schema()


def system_prompt(system: str, output_type: str | None) -> str:
    """The system prompt a provider is sent: ``system``, plus a JSON-only instruction when an output
    type is asked for.

    The instruction goes to every provider: it is how Anthropic and plain OpenAI-compatible servers
    produce structured output, and it costs little where ``response_format`` also applies.
    """
    schema = output_schema(output_type)
    if schema is None:
        return system
    instruction = (
        "Answer with a single JSON object only, no prose and no code fences. "
        f"It must validate against this JSON schema: {json.dumps(schema, separators=(',', ':'))}"
    )
    return f"{system}\n\n{instruction}" if system else instruction


def estimate_request_tokens(
    system: str, messages: list[str], output_type: str | None, scale: float | None = None
) -> int:
    """Input tokens of a model call as sent (``policies.tokens``' estimate of its whole prompt):
    what the workflow reserves (conservative: no ``scale``) and what the gateway charges when a
    provider reports no usage (by the model's calibrated scale, where there is one)."""
    return estimate_input_tokens(system_prompt(system, output_type), messages, scale)
