"""OpenAI Chat Completions wire format (``POST /v1/chat/completions``)."""

from __future__ import annotations

import time
from typing import Any, Literal

from harness.sim._tokens import count_tokens, split_tokens
from harness.sim._turns import Tool, ToolOutput, ToolUse, Turn
from harness.sim._wire import (
    Completion,
    SimRequest,
    Wire,
    WireError,
    parse_tool,
    positive_int,
    require_chat,
    sse,
    text_of,
)

_FINISH = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "refusal": "stop",
    "tool_calls": "tool_calls",
}
_CHOICES = {"auto", "none", "required"}


class OpenAIWire(Wire):
    """Chat Completions, non-streaming and SSE (``data: {...}`` chunks, then ``data: [DONE]``)."""

    provider: Literal["openai", "anthropic"] = "openai"

    def parse(self, body: dict[str, Any]) -> SimRequest:
        """Validate a chat completion request; ``max_completion_tokens`` wins over ``max_tokens``."""
        model, messages = require_chat(body)
        fmt = body.get("response_format")
        if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in _FORMATS):
            raise WireError(400, "'response_format.type' must be text, json_object or json_schema")
        limit = positive_int(body.get("max_completion_tokens"), "max_completion_tokens")
        if limit is None:
            limit = positive_int(body.get("max_tokens"), "max_tokens")
        system = [text_of(m.get("content")) for m in messages if m.get("role") in {"system", "developer"}]
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return SimRequest(
            model,
            "\n".join(system),
            _turns(messages),
            limit,
            bool(body.get("stream")),
            include_usage,
            tools=_tools(body.get("tools")),
            tool_choice=_choice(body.get("tool_choice")),
        )

    def body(self, req: SimRequest, done: Completion) -> dict[str, Any]:
        """A ``chat.completion`` object."""
        refused = done.finish == "refusal"
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if refused or (done.calls and not done.pieces) else done.text,
            "refusal": done.text if refused else None,
            "annotations": [],
        }
        if done.calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{c.id}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in done.calls
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH[done.finish]}
        return {**self._envelope(req, "chat.completion"), "choices": [choice], "usage": _usage(req, done)}

    def head(self, req: SimRequest, done: Completion) -> list[bytes]:
        """The role chunk (content null when the reply is tool calls only)."""
        content = None if done.calls and not done.pieces else ""
        return [self._chunk(req, {"role": "assistant", "content": content, "refusal": None}, None)]

    def delta(self, req: SimRequest, piece: str, done: Completion) -> bytes:
        """A content chunk (a refusal chunk when refusing)."""
        key = "refusal" if done.finish == "refusal" else "content"
        return self._chunk(req, {key: piece}, None)

    def call_events(self, req: SimRequest, done: Completion) -> list[tuple[bytes, int]]:
        """Per call, by index: a chunk with its id and name (arguments ""), then its arguments in
        one-token pieces."""
        events: list[tuple[bytes, int]] = []
        for index, call in enumerate(done.calls):
            opening = {
                "index": index,
                "id": f"call_{call.id}",
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            events.append((self._chunk(req, {"tool_calls": [opening]}, None), count_tokens(call.name)))
            for piece in split_tokens(call.arguments):
                more = {"index": index, "function": {"arguments": piece}}
                events.append((self._chunk(req, {"tool_calls": [more]}, None), 1))
        return events

    def tail(self, req: SimRequest, done: Completion) -> list[bytes]:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``."""
        events = [self._chunk(req, {}, _FINISH[done.finish])]
        if req.include_usage:
            last = {**self._envelope(req, "chat.completion.chunk"), "choices": [], "usage": _usage(req, done)}
            events.append(sse(last))
        events.append(sse("[DONE]"))
        return events

    def _chunk(self, req: SimRequest, delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {**self._envelope(req, "chat.completion.chunk"), "choices": [choice]}
        if req.include_usage:
            chunk["usage"] = None  # as the real API: null on every chunk but the last
        return sse(chunk)

    @staticmethod
    def _envelope(req: SimRequest, kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-sim{req.id}",
            "object": kind,
            "created": int(time.time()),
            "model": req.model,
            "system_fingerprint": "fp_sim",
            "service_tier": "default",
        }


_FORMATS = {"text", "json_object", "json_schema"}


def _turns(messages: list[dict[str, Any]]) -> list[Turn]:
    """The turns, tool messages merged into the user turn they precede; 400 for a tool call left
    unanswered or a tool message that answers no call of the assistant message before it."""
    turns: list[Turn] = []
    results: list[ToolOutput] = []  # tool messages not yet merged into a turn
    waiting: set[str] = set()  # ids of the last assistant message's calls not answered yet
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role in {"system", "developer"}:
            continue
        if role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in waiting:
                raise WireError(
                    400,
                    f"Invalid parameter: messages.[{i}]: messages with role 'tool' must be a response to a "
                    f"preceding message with 'tool_calls' (tool_call_id {call_id!r} answers none).",
                )
            waiting.discard(call_id)
            results.append(ToolOutput(call_id, text_of(content)))
            continue
        _answered(waiting)
        if results and role != "user":
            turns.append(Turn("user", "", results=tuple(results)))
            results = []
        calls = _calls(m.get("tool_calls"), i) if role == "assistant" else ()
        waiting = {c.id for c in calls}
        turns.append(Turn(str(role), text_of(content), calls, tuple(results)))
        results = []
    _answered(waiting)
    if results:
        turns.append(Turn("user", "", results=tuple(results)))
    return turns


def _answered(waiting: set[str]) -> None:
    if waiting:
        raise WireError(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: "
            f"{', '.join(sorted(waiting))}",
        )


def _calls(value: Any, index: int) -> tuple[ToolUse, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WireError(400, f"messages.[{index}].tool_calls must be a list")
    calls = []
    for call in value:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str):
            raise WireError(400, f"messages.[{index}].tool_calls: each call needs an 'id' and a 'function'")
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not isinstance(arguments, str):
            raise WireError(400, f"messages.[{index}].tool_calls: 'name' and 'arguments' must be strings")
        calls.append(ToolUse(call["id"], name, arguments))
    return tuple(calls)


def _tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WireError(400, "'tools' must be a list")
    tools = []
    for tool in value:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise WireError(400, "each tool must be {'type': 'function', 'function': {...}}")
        tools.append(
            parse_tool(function.get("name"), function.get("parameters"), function.get("description"))
        )
    return tuple(tools)


def _choice(value: Any) -> str:
    if value is None:
        return "auto"
    if isinstance(value, str) and value in _CHOICES:
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        return "required"
    raise WireError(400, "'tool_choice' must be 'none', 'auto', 'required' or a named function")


def _usage(req: SimRequest, done: Completion) -> dict[str, Any]:
    output = done.output_tokens
    return {
        "prompt_tokens": req.input_tokens,
        "completion_tokens": output,
        "total_tokens": req.input_tokens + output,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
