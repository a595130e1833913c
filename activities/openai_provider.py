"""OpenAI Chat Completions, through the official SDK; also serves ``sim:`` and ``openai-compatible:``.

Usage nests as the contracts say: ``prompt_tokens`` already counts cached tokens, and
``completion_tokens`` already counts reasoning tokens, so they map one to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from activities._provider import (
    MalformedResponseError,
    OnAccepted,
    OnProgress,
    Provider,
    ProviderReply,
    estimate_usage,
    output_schema,
    raw_arguments,
    system_prompt,
    tool_call,
)
from contracts.models import FinishReason, Message, ModelCallRequest, Usage
from contracts.tools import ToolCall

if TYPE_CHECKING:  # the SDK itself is imported with the first client (activities.model_call)
    import openai


@dataclass(frozen=True)
class OpenAIOptions:
    """Chat Completions features a server may or may not support (prefixed, as pydantic-ai does)."""

    openai_stream_usage: bool = True
    """Send ``stream_options={"include_usage": True}``; without it, streamed usage is estimated."""
    openai_json_schema: bool = True
    """Send ``response_format`` json_schema for structured output (else the prompt alone asks)."""
    openai_max_tokens_param: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    """Which parameter caps the reply: OpenAI's current one, or the older one servers all know."""
    openai_send_names: bool = True
    """Send each message's ``name`` (the agent that said it)."""


class OpenAIProvider(Provider):
    """Chat Completions over an injected ``openai.AsyncOpenAI`` client."""

    def __init__(self, client: openai.AsyncOpenAI, name: str, options: OpenAIOptions | None = None) -> None:
        self.client = client
        self.name = name
        self.options = options or OpenAIOptions()

    async def complete(
        self, request: ModelCallRequest, on_progress: OnProgress, on_accepted: OnAccepted | None = None
    ) -> ProviderReply:
        """Send ``request`` and wait for the whole reply."""
        response: Any = await self.client.chat.completions.create(**self._params(request), stream=False)
        if on_accepted is not None:
            on_accepted()
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise MalformedResponseError("chat completion without choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None) or ""
        refusal = getattr(message, "refusal", None)
        text = content or refusal or ""
        if text:
            on_progress(text)
        calls = [
            tool_call(
                str(getattr(call, "id", "") or f"call_{index}"),
                str(getattr(getattr(call, "function", None), "name", "") or ""),
                str(getattr(getattr(call, "function", None), "arguments", "") or ""),
            )
            for index, call in enumerate(getattr(message, "tool_calls", None) or [])
        ]
        for call in calls:
            on_progress(call.name + call.raw_arguments)
        usage = _usage(getattr(response, "usage", None))
        if usage is None:
            usage = estimate_usage(request, text + "".join(c.name + c.raw_arguments for c in calls), 1)
        return ProviderReply(
            text=text,
            usage=usage,
            finish_reason=_finish(getattr(choice, "finish_reason", None), bool(refusal), bool(calls)),
            model=str(getattr(response, "model", None) or request.model.model),
            tool_calls=calls,
        )

    async def stream(
        self, request: ModelCallRequest, on_progress: OnProgress, on_accepted: OnAccepted | None = None
    ) -> ProviderReply:
        """Stream ``request``; the stream is closed on any exit, cancellation included.

        The SDK sends the request and decodes the server-sent events (status errors, error events,
        timeouts and ``[DONE]`` as ``create(stream=True)`` handles them), but each chunk comes as the
        plain JSON it was sent as: building a typed ``ChatCompletionChunk`` per token took most of a
        streamed call's CPU time (a chunk is about one token).
        """
        from openai import AsyncStream  # loaded already: it made self.client

        params = self._params(request)
        if self.options.openai_stream_usage:
            params["stream_options"] = {"include_usage": True}
        parts: list[str] = []
        refusal_parts: list[str] = []
        calls = _StreamedCalls()
        finish: str | None = None
        usage: Usage | None = None
        model = request.model.model
        async with self.client.chat.completions.with_streaming_response.create(**params, stream=True) as raw:
            stream = AsyncStream(cast_to=object, response=raw.http_response, client=self.client)
            if on_accepted is not None:  # the SDK raised for an error status: this one is a success
                on_accepted()
            try:
                async for chunk in stream:
                    model = _field(chunk, "model") or model
                    chunk_usage = _usage(_field(chunk, "usage"))
                    if chunk_usage is not None:
                        usage = chunk_usage
                    choices = _field(chunk, "choices")
                    for choice in choices if isinstance(choices, list) else []:
                        delta = _field(choice, "delta")
                        piece = _field(delta, "content")
                        if piece and isinstance(piece, str):
                            parts.append(piece)
                            on_progress(piece)
                        refused = _field(delta, "refusal")
                        if refused and isinstance(refused, str):
                            refusal_parts.append(refused)
                            on_progress(refused)
                        for piece in _field(delta, "tool_calls") or []:
                            calls.add(piece, on_progress)
                        finish = _field(choice, "finish_reason") or finish
            finally:
                await stream.close()
        text = "".join(parts) or "".join(refusal_parts)
        if finish is None:
            # The stream ended without saying why: the connection dropped mid-reply.
            raise MalformedResponseError("stream ended without a finish reason")
        tool_calls = calls.finished()
        if usage is None:
            streamed = text + "".join(call.name + call.raw_arguments for call in tool_calls)
            usage = estimate_usage(request, streamed, len(parts) or len(refusal_parts) + calls.pieces)
        return ProviderReply(
            text=text,
            usage=usage,
            finish_reason=_finish(finish, bool(refusal_parts), bool(tool_calls)),
            model=str(model),
            tool_calls=tool_calls,
        )

    def _params(self, request: ModelCallRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        system = system_prompt(request)
        if system:
            messages.append({"role": "system", "content": system})
        for message in request.messages:
            messages += self._message(message)
        params: dict[str, Any] = {
            "model": request.model.model,
            "messages": messages,
            self.options.openai_max_tokens_param: request.max_output_tokens,
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
            if request.tool_choice == "none":
                params["tool_choice"] = "none"
        schema = output_schema(request)
        if schema is not None and self.options.openai_json_schema:
            params["response_format"] = {
                "type": "json_schema",
                # Not strict: pydantic schemas with defaults are not valid strict-mode schemas; the
                # activity validates the reply either way.
                "json_schema": {"name": request.output_type, "schema": schema, "strict": False},
            }
        return params

    def _message(self, message: Message) -> list[dict[str, Any]]:
        """One message in Chat Completions' shape: tool results become ``tool`` messages, one per
        result, before any text of the same message; tool calls ride on the assistant message."""
        items: list[dict[str, Any]] = [
            {"role": "tool", "tool_call_id": result.call_id, "content": result.content}
            for result in message.tool_results
        ]
        if message.tool_results and not message.content:
            return items
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["content"] = message.content or None
            item["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": raw_arguments(c)}}
                for c in message.tool_calls
            ]
        if message.name and self.options.openai_send_names:
            item["name"] = message.name
        return [*items, item]


class _StreamedCalls:
    """Tool calls assembled from a stream's deltas: the first delta of a call brings its id and
    name, the rest pieces of its arguments, all keyed by the call's ``index``."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}
        self.pieces = 0

    def add(self, delta: Any, on_progress: OnProgress) -> None:
        index = _field(delta, "index")
        key = index if isinstance(index, int) else len(self._calls)
        call = self._calls.setdefault(key, {"id": "", "name": "", "arguments": []})
        call["id"] = _field(delta, "id") or call["id"]
        function = _field(delta, "function")
        name = _field(function, "name")
        if isinstance(name, str) and name:
            call["name"] += name
            on_progress(name)
        piece = _field(function, "arguments")
        if isinstance(piece, str) and piece:
            call["arguments"].append(piece)
            on_progress(piece)
            self.pieces += 1

    def finished(self) -> list[ToolCall]:
        return [
            tool_call(call["id"] or f"call_{index}", call["name"], "".join(call["arguments"]))
            for index, call in sorted(self._calls.items())
        ]


def _field(raw: Any, name: str) -> Any:
    """Field ``name`` of an SDK object or of a chunk's plain JSON (None when absent)."""
    if isinstance(raw, dict):
        return raw.get(name)
    return getattr(raw, name, None)


def _usage(raw: Any) -> Usage | None:
    """The SDK's ``CompletionUsage`` (or a chunk's usage JSON) as our ``Usage`` (None when absent
    or unreadable)."""
    if raw is None:
        return None
    prompt = _field(raw, "prompt_tokens")
    completion = _field(raw, "completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    prompt_details = _field(raw, "prompt_tokens_details")
    completion_details = _field(raw, "completion_tokens_details")
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        cache_read_tokens=_field(prompt_details, "cached_tokens") or 0,
        cache_write_tokens=_field(prompt_details, "cache_write_tokens") or 0,
        reasoning_tokens=_field(completion_details, "reasoning_tokens") or 0,
        requests=1,
    )


def _finish(reason: str | None, refused: bool, calls: bool = False) -> FinishReason:
    if refused:
        return "refusal"
    if calls and reason in (None, "tool_calls", "function_call", "stop"):
        return "tool_calls"
    if reason == "length":
        return "length"
    if reason == "content_filter":
        return "content_filter"
    return "stop"
