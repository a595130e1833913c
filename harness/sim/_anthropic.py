"""Anthropic Messages wire format (``POST /v1/messages``)."""

from __future__ import annotations

import json
from typing import Any, Literal

from harness.sim._tokens import count_tokens, split_tokens
from harness.sim._tool_scenarios import BAD_INPUT
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

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "refusal": "refusal",
    "tool_calls": "tool_use",
}
_CHOICES = {"auto": "auto", "none": "none", "any": "required", "tool": "required"}


class AnthropicWire(Wire):
    """Messages, non-streaming and SSE with the real event sequence (named events)."""

    provider: Literal["openai", "anthropic"] = "anthropic"

    def parse(self, body: dict[str, Any]) -> SimRequest:
        """Validate a Messages request: ``max_tokens`` is required, ``system`` a string or text blocks."""
        model, messages = require_chat(body)
        limit = positive_int(body.get("max_tokens"), "max_tokens")
        if limit is None:
            raise WireError(400, "max_tokens: Field required")
        return SimRequest(
            model,
            text_of(body.get("system")),
            _turns(messages),
            limit,
            bool(body.get("stream")),
            tools=_tools(body.get("tools")),
            tool_choice=_choice(body.get("tool_choice")),
        )

    def arguments(self, text: str) -> str:
        """``input`` must be an object: arguments that are not one become ``BAD_INPUT``."""
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return text if isinstance(parsed, dict) else json.dumps(BAD_INPUT)

    def body(self, req: SimRequest, done: Completion) -> dict[str, Any]:
        """A ``message`` object: a text block (unless the reply is tool calls only), ``tool_use`` blocks."""
        content = [{"type": "text", "text": done.text}] if _has_text(done) else []
        content += [_tool_use(c, json.loads(c.arguments)) for c in done.calls]
        return {
            **self._message(req, content, _STOP[done.finish]),
            "usage": _usage(req.input_tokens, done.output_tokens),
        }

    def head(self, req: SimRequest, done: Completion) -> list[bytes]:
        """``message_start`` (input tokens known, output 0), the text block start, a ping."""
        start = {**self._message(req, [], None), "usage": _usage(req.input_tokens, 0)}
        events = [sse({"type": "message_start", "message": start}, "message_start")]
        if _has_text(done):
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            events.append(sse(block, "content_block_start"))
        return [*events, sse({"type": "ping"}, "ping")]

    def delta(self, req: SimRequest, piece: str, done: Completion) -> bytes:
        """A ``content_block_delta`` with a ``text_delta``."""
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        return sse(delta, "content_block_delta")

    def call_events(self, req: SimRequest, done: Completion) -> list[tuple[bytes, int]]:
        """The text block's stop, then per call a ``tool_use`` block: its start (id, name, input {}),
        ``input_json_delta`` pieces of one token each, its stop."""
        if not done.calls:
            return []
        events = [(_stop(0), 0)] if _has_text(done) else []
        for index, call in enumerate(done.calls, start=len(events)):
            start = {"type": "content_block_start", "index": index, "content_block": _tool_use(call, {})}
            events.append((sse(start, "content_block_start"), count_tokens(call.name)))
            events += [(_json_delta(index, piece), 1) for piece in split_tokens(call.arguments)]
            events.append((_stop(index), 0))
        return events

    def tail(self, req: SimRequest, done: Completion) -> list[bytes]:
        """``content_block_stop`` of the text block (unless the tool calls closed it),
        ``message_delta`` (stop reason, output tokens), ``message_stop``."""
        usage = _usage(req.input_tokens, done.output_tokens)
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP[done.finish], "stop_sequence": None},
            "usage": usage,
        }
        events = [] if done.calls else [_stop(0)]
        return [*events, sse(message_delta, "message_delta"), sse({"type": "message_stop"}, "message_stop")]

    @staticmethod
    def _message(req: SimRequest, content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
        return {
            "id": f"msg_sim{req.id}",
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
        }


def _has_text(done: Completion) -> bool:
    return bool(done.pieces) or not done.calls


def _json_delta(index: int, piece: str) -> bytes:
    delta = {"type": "input_json_delta", "partial_json": piece}
    return sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")


def _stop(index: int) -> bytes:
    return sse({"type": "content_block_stop", "index": index}, "content_block_stop")


def _tool_use(call: ToolUse, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{call.id}", "name": call.name, "input": arguments}


def _turns(messages: list[dict[str, Any]]) -> list[Turn]:
    """The turns; 400 for a ``tool_use`` not answered in the next message, or a ``tool_result``
    that answers no ``tool_use`` of the message before it."""
    turns: list[Turn] = []
    waiting: set[str] = set()  # ids of the previous message's tool_use blocks
    for i, m in enumerate(messages):
        content = m.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        results = tuple(
            ToolOutput(str(b.get("tool_use_id")), text_of(b.get("content")), bool(b.get("is_error")))
            for b in blocks
            if b.get("type") == "tool_result"
        )
        unknown = sorted({r.call_id for r in results} - waiting)
        if unknown:
            raise WireError(
                400,
                f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{', '.join(unknown)}. Each `tool_result` block must have a corresponding `tool_use` "
                "block in the previous message.",
            )
        _answered(waiting - {r.call_id for r in results}, i - 1)
        calls = tuple(_call(b, i) for b in blocks if b.get("type") == "tool_use")
        waiting = {c.id for c in calls}
        turns.append(Turn(str(m.get("role")), text_of(content), calls, results))
    _answered(waiting, len(messages) - 1)
    return turns


def _answered(missing: set[str], index: int) -> None:
    if missing:
        raise WireError(
            400,
            f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
            f"{', '.join(sorted(missing))}. Each `tool_use` block must have a corresponding `tool_result` "
            "block in the next message.",
        )


def _call(block: dict[str, Any], index: int) -> ToolUse:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, dict):
        raise WireError(
            400, f"messages.{index}.content: a tool_use block needs 'id', 'name' and an object 'input'"
        )
    return ToolUse(call_id, name, json.dumps(arguments))


def _tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise WireError(400, "tools: Input should be a valid list of objects")
    for i, tool in enumerate(value):
        if not isinstance(tool.get("input_schema"), dict):
            raise WireError(400, f"tools.{i}.input_schema: Field required")
    return tuple(parse_tool(t.get("name"), t.get("input_schema"), t.get("description")) for t in value)


def _choice(value: Any) -> str:
    if value is None:
        return "auto"
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(kind, str) or kind not in _CHOICES:
        raise WireError(400, "tool_choice.type must be one of 'auto', 'any', 'tool', 'none'")
    return _CHOICES[kind]


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }
