"""The one interface every model provider implements, and what it hands back.

A provider turns a ``ModelCallRequest`` into a ``ProviderReply``: text, normalized usage, a finish
reason and the model that answered. It does not retry (the SDK's retries are off, Temporal's are
on), does not price, and does not validate structured output: the activity does those.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.models import FinishReason, ModelCallRequest, Usage
from contracts.outputs import OUTPUT_TYPES

OnProgress = Callable[[str], None]
"""Called with each piece of text as it streams in."""

# Conservative token estimate: real tokenizers average ~4 characters per token in English, so
# ceil(chars / 3) over-counts on purpose (an estimate is charged, and charging too little is the
# worse error). Each message adds a few tokens of role markers, each request a reply primer.
CHARS_PER_TOKEN = 3
PER_MESSAGE_TOKENS = 4
PER_REQUEST_TOKENS = 3


def estimate_tokens(text: str) -> int:
    """Conservative token count of ``text``: ceil(chars / 3)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_input_tokens(request: ModelCallRequest) -> int:
    """Conservative input tokens of ``request``: every text at ceil(chars / 3), plus overheads."""
    system = system_prompt(request)
    return (
        estimate_tokens(system)
        + sum(estimate_tokens(m.content) + PER_MESSAGE_TOKENS for m in request.messages)
        + PER_REQUEST_TOKENS
    )


def output_schema(request: ModelCallRequest) -> dict[str, Any] | None:
    """JSON schema of the requested output type, or None for free text."""
    if request.output_type is None:
        return None
    return OUTPUT_TYPES[request.output_type].model_json_schema()


def system_prompt(request: ModelCallRequest) -> str:
    """The request's system prompt, plus a JSON-only instruction when an output type is asked for.

    The instruction goes to every provider: it is how Anthropic and plain OpenAI-compatible servers
    produce structured output, and it costs little where ``response_format`` also applies.
    """
    schema = output_schema(request)
    if schema is None:
        return request.system
    instruction = (
        "Answer with a single JSON object only, no prose and no code fences. "
        f"It must validate against this JSON schema: {json.dumps(schema, separators=(',', ':'))}"
    )
    return f"{request.system}\n\n{instruction}" if request.system else instruction


@dataclass
class ProviderReply:
    """What one provider request produced."""

    text: str
    """The reply text (for a refusal, the refusal message)."""
    usage: Usage
    """Tokens as the provider reported them, normalized (``estimated`` if it reported none)."""
    finish_reason: FinishReason
    """Why the reply ended; refusals and content filters are answers, not errors."""
    model: str
    """The model name the provider says answered."""


class MalformedResponseError(Exception):
    """A provider answered with a body we cannot read: retryable, the next attempt may be fine."""


class Provider(ABC):
    """A model provider: one plain request and one streaming request."""

    name: str
    """The provider prefix this instance serves ('sim', 'openai', ...)."""

    @abstractmethod
    async def complete(self, request: ModelCallRequest, on_progress: OnProgress) -> ProviderReply:
        """Send ``request`` and wait for the whole reply."""

    @abstractmethod
    async def stream(self, request: ModelCallRequest, on_progress: OnProgress) -> ProviderReply:
        """Send ``request`` and stream the reply, calling ``on_progress`` with each piece of text.

        If the calling task is cancelled, the stream is closed before ``CancelledError`` propagates.
        """
