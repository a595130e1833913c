"""The one interface every model provider implements, and what it hands back.

A provider turns a ``ModelCallRequest`` into a ``ProviderReply``: text, normalized usage, a finish
reason and the model that answered. It does not retry (the SDK's retries are off, Temporal's are
on), does not price, and does not validate structured output: the activity does those.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts import outputs
from contracts.models import FinishReason, ModelCallRequest, Usage
from contracts.outputs import estimate_request_tokens
from contracts.tools import ToolCall
from policies.tokens import estimate_output_tokens

OnProgress = Callable[[str], None]
"""Called with each piece of text as it streams in (a tool call's argument pieces too: they are
output the call is billed for)."""

OnAccepted = Callable[[], None]
"""Called once the provider has accepted the request: its response began with a success status
(for a stream, before the first token; the provider bills the prompt from here on)."""


def estimate_input_tokens(request: ModelCallRequest, scale: float | None = None) -> int:
    """Input tokens of ``request`` as sent (the one estimator, ``policies.tokens``): conservative,
    or by a calibrated ``scale`` where there is evidence for one."""
    return estimate_request_tokens(request.system, request.texts(), request.output_type, scale)


def estimate_usage(request: ModelCallRequest, text: str, chunks: int) -> Usage:
    """Usage of a reply whose provider reported none, from what was sent and received: the output
    by its chunks (or characters), the prompt by the job's calibrated ratio (or the conservative
    default)."""
    scale = request.token_scale
    return Usage(
        input_tokens=estimate_input_tokens(request, scale),
        output_tokens=estimate_output_tokens(chunks, text, request.max_output_tokens, scale),
        requests=1,
    ).because("no usage reported")


def output_schema(request: ModelCallRequest) -> dict[str, Any] | None:
    """JSON schema of the requested output type, or None for free text."""
    return outputs.output_schema(request.output_type)


def system_prompt(request: ModelCallRequest) -> str:
    """The request's system prompt as sent, with the JSON-only instruction for an output type."""
    return outputs.system_prompt(request.system, request.output_type)


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
    tool_calls: list[ToolCall] = field(default_factory=list)
    """The tools the model asked to call, in its order (finish reason ``tool_calls``)."""


def tool_call(call_id: str, name: str, raw_arguments: str) -> ToolCall:
    """A tool call as a model sent it: its arguments parsed from their JSON text, or why they could
    not be (the tool is then not run; the model is told so)."""
    try:
        arguments = json.loads(raw_arguments) if raw_arguments.strip() else {}
    except ValueError as err:
        return ToolCall(
            id=call_id, name=name, raw_arguments=raw_arguments, arguments_error=f"not JSON: {err}"
        )
    if not isinstance(arguments, dict):
        return ToolCall(
            id=call_id,
            name=name,
            raw_arguments=raw_arguments,
            arguments_error=f"not a JSON object but {type(arguments).__name__}",
        )
    return ToolCall(id=call_id, name=name, arguments=arguments, raw_arguments=raw_arguments)


def raw_arguments(call: ToolCall) -> str:
    """A tool call's arguments as JSON text, as the model sent them where we have that."""
    return call.raw_arguments or json.dumps(call.arguments, separators=(",", ":"))


class MalformedResponseError(Exception):
    """A provider answered with a body we cannot read: retryable, the next attempt may be fine."""


class Provider(ABC):
    """A model provider: one plain request and one streaming request."""

    name: str
    """The provider prefix this instance serves ('sim', 'openai', ...)."""

    @abstractmethod
    async def complete(
        self, request: ModelCallRequest, on_progress: OnProgress, on_accepted: OnAccepted | None = None
    ) -> ProviderReply:
        """Send ``request`` and wait for the whole reply (``on_accepted`` once it came back)."""

    @abstractmethod
    async def stream(
        self, request: ModelCallRequest, on_progress: OnProgress, on_accepted: OnAccepted | None = None
    ) -> ProviderReply:
        """Send ``request`` and stream the reply, calling ``on_accepted`` once the provider answered
        with a success status and ``on_progress`` with each piece of text.

        If the calling task is cancelled, the stream is closed before ``CancelledError`` propagates.
        """
