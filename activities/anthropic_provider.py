"""Anthropic Messages, through the official SDK.

Usage: Anthropic's ``input_tokens`` counts only the uncached input; cache reads
(``cache_read_input_tokens``) and cache writes (``cache_creation_input_tokens``) are reported
beside it. Our ``Usage.input_tokens`` counts every input token, so it is the sum of the three, with
the two cache figures kept as its parts. Structured output is asked for in the system prompt.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from activities._provider import (
    MalformedResponseError,
    OnAccepted,
    OnProgress,
    Provider,
    ProviderReply,
    system_prompt,
    tool_call,
)
from contracts.models import FinishReason, Message, ModelCallRequest, Usage

if TYPE_CHECKING:  # the SDK itself is imported with the first client (activities.model_call)
    import anthropic

_LENGTH = {"max_tokens", "model_context_window_exceeded"}


class AnthropicProvider(Provider):
    """Messages API over an injected ``anthropic.AsyncAnthropic`` client."""

    def __init__(self, client: anthropic.AsyncAnthropic, name: str = "anthropic") -> None:
        self.client = client
        self.name = name

    async def complete(
        self, request: ModelCallRequest, on_progress: OnProgress, on_accepted: OnAccepted | None = None
    ) -> ProviderReply:
        """Send ``request`` and wait for the whole reply."""
        message: Any = await self.client.messages.create(**_params(request), stream=False)
        if on_accepted is not None:
            on_accepted()
        content = getattr(message, "content", None)
        if not isinstance(content, list):
            raise MalformedResponseError("message without content")
        text = "".join(
            getattr(block, "text", "") or "" for block in content if getattr(block, "type", "") == "text"
        )
        if text:
            on_progress(text)
        calls = [
            tool_call(str(getattr(block, "id", "")), str(getattr(block, "name", "")), _json(block))
            for block in content
            if getattr(block, "type", "") == "tool_use"
        ]
        for call in calls:
            on_progress(call.name + call.raw_arguments)
        usage = _usage(getattr(message, "usage", None))
        if usage is None:
            raise MalformedResponseError("message without usage")
        return ProviderReply(
            text=text,
            usage=usage,
            finish_reason=_finish(getattr(message, "stop_reason", None), bool(calls)),
            model=str(getattr(message, "model", None) or request.model.model),
            tool_calls=calls,
        )

    async def stream(
        self, request: ModelCallRequest, on_progress: OnProgress, on_accepted: OnAccepted | None = None
    ) -> ProviderReply:
        """Stream ``request``; the stream is closed on any exit, cancellation included."""
        stream: Any = await self.client.messages.create(**_params(request), stream=True)
        if on_accepted is not None:  # the SDK raised for an error status: this one is a success
            on_accepted()
        parts: list[str] = []
        calls: dict[int, dict[str, Any]] = {}  # tool_use blocks by their index in the content
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
                elif kind == "content_block_start":
                    block = getattr(event, "content_block", None)
                    if getattr(block, "type", None) == "tool_use":
                        name = str(getattr(block, "name", "") or "")
                        calls[getattr(event, "index", len(calls))] = {
                            "id": str(getattr(block, "id", "") or ""),
                            "name": name,
                            "json": [],
                        }
                        on_progress(name)
                elif kind == "content_block_delta":
                    delta = getattr(event, "delta", None)
                    sort = getattr(delta, "type", None)
                    piece = getattr(delta, "text", None) if sort == "text_delta" else None
                    if isinstance(piece, str) and piece:
                        parts.append(piece)
                        on_progress(piece)
                    partial = getattr(delta, "partial_json", None) if sort == "input_json_delta" else None
                    call = calls.get(getattr(event, "index", -1))
                    if call is not None and isinstance(partial, str) and partial:
                        call["json"].append(partial)
                        on_progress(partial)
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
        tool_calls = [
            tool_call(call["id"] or f"toolu_{index}", call["name"], "".join(call["json"]))
            for index, call in sorted(calls.items())
        ]
        return ProviderReply(
            text="".join(parts),
            usage=usage,
            finish_reason=_finish(stop_reason, bool(tool_calls)),
            model=str(model),
            tool_calls=tool_calls,
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
    if request.tools:
        params["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        if request.tool_choice == "none":
            params["tool_choice"] = {"type": "none"}
    return params


def _messages(request: ModelCallRequest) -> list[dict[str, Any]]:
    """Messages in Anthropic's shape: first from the user, roles alternating (runs are merged).

    A text-only message is sent as a plain string; one with tool calls or results as content
    blocks (``tool_result`` blocks first in a user message, as the API requires).
    """
    merged: list[dict[str, Any]] = []
    for message in request.messages:
        content = _content(message)
        if merged and merged[-1]["role"] == message.role:
            merged[-1]["content"] = _join(merged[-1]["content"], content)
        else:
            merged.append({"role": message.role, "content": content})
    if not merged or merged[0]["role"] != "user":
        merged.insert(0, {"role": "user", "content": "(conversation so far)"})
    return merged


def _content(message: Message) -> str | list[dict[str, Any]]:
    if not message.tool_calls and not message.tool_results:
        return message.content
    blocks: list[dict[str, Any]] = [
        {"type": "tool_result", "tool_use_id": r.call_id, "content": r.content, "is_error": r.is_error}
        for r in message.tool_results
    ]
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in message.tool_calls
    ]
    return blocks


def _join(
    first: str | list[dict[str, Any]], second: str | list[dict[str, Any]]
) -> str | list[dict[str, Any]]:
    """Two messages of one role as one: strings joined by a blank line, else blocks (results first)."""
    if isinstance(first, str) and isinstance(second, str):
        return first + "\n\n" + second
    blocks = [*_blocks(first), *_blocks(second)]
    return sorted(blocks, key=lambda block: block["type"] != "tool_result")


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def _json(block: Any) -> str:
    """A ``tool_use`` block's input as JSON text."""
    value = getattr(block, "input", None)
    return json.dumps(value if value is not None else {}, separators=(",", ":"))


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


def _finish(stop_reason: str | None, calls: bool = False) -> FinishReason:
    if calls and stop_reason in (None, "tool_use", "end_turn"):
        return "tool_calls"
    if stop_reason == "refusal":
        return "refusal"
    if stop_reason in _LENGTH:
        return "length"
    return "stop"
