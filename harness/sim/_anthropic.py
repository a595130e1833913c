"""Anthropic Messages wire format (``POST /v1/messages``)."""

from __future__ import annotations

from typing import Any, Literal

from harness.sim._scenarios import Turn
from harness.sim._tokens import count_tokens
from harness.sim._wire import (
    Completion,
    SimRequest,
    Wire,
    WireError,
    positive_int,
    require_chat,
    sse,
    text_of,
)

_STOP = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal", "refusal": "refusal"}


class AnthropicWire(Wire):
    """Messages, non-streaming and SSE with the real event sequence (named events)."""

    provider: Literal["openai", "anthropic"] = "anthropic"

    def parse(self, body: dict[str, Any]) -> SimRequest:
        """Validate a Messages request: ``max_tokens`` is required, ``system`` a string or text blocks."""
        model, messages = require_chat(body)
        limit = positive_int(body.get("max_tokens"), "max_tokens")
        if limit is None:
            raise WireError(400, "max_tokens: Field required")
        turns = [Turn(str(m.get("role")), text_of(m.get("content"))) for m in messages]
        return SimRequest(model, text_of(body.get("system")), turns, limit, bool(body.get("stream")))

    def body(self, req: SimRequest, done: Completion) -> dict[str, Any]:
        """A ``message`` object."""
        return {
            **self._message(req, [{"type": "text", "text": done.text}], _STOP[done.finish]),
            "usage": _usage(req.input_tokens, count_tokens(done.text)),
        }

    def head(self, req: SimRequest) -> list[bytes]:
        """``message_start`` (input tokens known, output 0), the text block start, a ping."""
        start = {**self._message(req, [], None), "usage": _usage(req.input_tokens, 0)}
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        return [
            sse({"type": "message_start", "message": start}, "message_start"),
            sse(block, "content_block_start"),
            sse({"type": "ping"}, "ping"),
        ]

    def delta(self, req: SimRequest, piece: str, done: Completion) -> bytes:
        """A ``content_block_delta`` with a ``text_delta``."""
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        return sse(delta, "content_block_delta")

    def tail(self, req: SimRequest, done: Completion) -> list[bytes]:
        """``content_block_stop``, ``message_delta`` (stop reason, output tokens), ``message_stop``."""
        usage = _usage(req.input_tokens, count_tokens(done.text))
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP[done.finish], "stop_sequence": None},
            "usage": usage,
        }
        return [
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse(message_delta, "message_delta"),
            sse({"type": "message_stop"}, "message_stop"),
        ]

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


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }
