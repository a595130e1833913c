"""Anthropic Messages, through the official SDK.

Usage: Anthropic's ``input_tokens`` counts only the uncached input; cache reads
(``cache_read_input_tokens``) and cache writes (``cache_creation_input_tokens``) are reported
beside it. Our ``Usage.input_tokens`` counts every input token, so it is the sum of the three, with
the two cache figures kept as its parts. Structured output is asked for in the system prompt.
"""

from __future__ import annotations

from typing import Any

import anthropic

from activities._provider import (
    MalformedResponseError,
    OnProgress,
    Provider,
    ProviderReply,
    system_prompt,
)
from contracts.models import FinishReason, ModelCallRequest, Usage

_LENGTH = {"max_tokens", "model_context_window_exceeded"}


class AnthropicProvider(Provider):
    """Messages API over an injected ``anthropic.AsyncAnthropic`` client."""

    def __init__(self, client: anthropic.AsyncAnthropic, name: str = "anthropic") -> None:
        self.client = client
        self.name = name

    async def complete(self, request: ModelCallRequest, on_progress: OnProgress) -> ProviderReply:
        """Send ``request`` and wait for the whole reply."""
        message: Any = await self.client.messages.create(**_params(request), stream=False)
        content = getattr(message, "content", None)
        if not isinstance(content, list):
            raise MalformedResponseError("message without content")
        text = "".join(
            getattr(block, "text", "") or "" for block in content if getattr(block, "type", "") == "text"
        )
        if text:
            on_progress(text)
        usage = _usage(getattr(message, "usage", None))
        if usage is None:
            raise MalformedResponseError("message without usage")
        return ProviderReply(
            text=text,
            usage=usage,
            finish_reason=_finish(getattr(message, "stop_reason", None)),
            model=str(getattr(message, "model", None) or request.model.model),
        )

    async def stream(self, request: ModelCallRequest, on_progress: OnProgress) -> ProviderReply:
        """Stream ``request``; the stream is closed on any exit, cancellation included."""
        stream: Any = await self.client.messages.create(**_params(request), stream=True)
        parts: list[str] = []
        start_usage: Any = None
        final_usage: Any = None
        stop_reason: str | None = None
        stopped = False
        model = request.model.model
        try:
            async for event in stream:
                kind = getattr(event, "type", None)
                if kind == "message_start":
                    message = getattr(event, "message", None)
                    start_usage = getattr(message, "usage", None)
                    model = getattr(message, "model", None) or model
                elif kind == "content_block_delta":
                    delta = getattr(event, "delta", None)
                    piece = (
                        getattr(delta, "text", None) if getattr(delta, "type", None) == "text_delta" else None
                    )
                    if isinstance(piece, str) and piece:
                        parts.append(piece)
                        on_progress(piece)
                elif kind == "message_delta":
                    stop_reason = getattr(getattr(event, "delta", None), "stop_reason", None) or stop_reason
                    final_usage = getattr(event, "usage", None)
                elif kind == "message_stop":
                    stopped = True
        finally:
            await stream.close()
        if not stopped or start_usage is None:
            # The stream ended before message_stop: the connection dropped mid-reply.
            raise MalformedResponseError("stream ended before message_stop")
        usage = _usage(start_usage, final_usage)
        if usage is None:
            raise MalformedResponseError("stream without usage")
        return ProviderReply(
            text="".join(parts), usage=usage, finish_reason=_finish(stop_reason), model=str(model)
        )


def _params(request: ModelCallRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": request.model.model,
        "max_tokens": request.max_output_tokens,
        "messages": _messages(request),
    }
    system = system_prompt(request)
    if system:
        params["system"] = system
    if request.temperature is not None:
        # Anthropic's range is [0, 1]; the spec allows OpenAI's [0, 2].
        params["temperature"] = min(request.temperature, 1.0)
    return params


def _messages(request: ModelCallRequest) -> list[dict[str, Any]]:
    """Messages in Anthropic's shape: first from the user, roles alternating (runs are merged)."""
    merged: list[dict[str, Any]] = []
    for message in request.messages:
        if merged and merged[-1]["role"] == message.role:
            merged[-1]["content"] += "\n\n" + message.content
        else:
            merged.append({"role": message.role, "content": message.content})
    if not merged or merged[0]["role"] != "user":
        merged.insert(0, {"role": "user", "content": "(conversation so far)"})
    return merged


def _usage(start: Any, final: Any = None) -> Usage | None:
    """Anthropic usage as ours: input = uncached + cache reads + cache writes.

    In a stream, ``message_start`` carries the input figures and ``message_delta`` the cumulative
    output count (and, on newer servers, final input figures, which win when present).
    """
    if start is None:
        return None

    def figure(name: str) -> int:
        for source in (final, start):
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, int):
                return value
        return 0

    if not isinstance(getattr(start, "input_tokens", None), int):
        return None
    cache_read = figure("cache_read_input_tokens")
    cache_write = figure("cache_creation_input_tokens")
    return Usage(
        input_tokens=figure("input_tokens") + cache_read + cache_write,
        output_tokens=figure("output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        requests=1,
    )


def _finish(stop_reason: str | None) -> FinishReason:
    if stop_reason == "refusal":
        return "refusal"
    if stop_reason in _LENGTH:
        return "length"
    return "stop"
