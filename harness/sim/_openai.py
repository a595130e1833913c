"""OpenAI Chat Completions wire format (``POST /v1/chat/completions``)."""

from __future__ import annotations

import time
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

_FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter", "refusal": "stop"}


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
        turns = [
            Turn(str(m.get("role")), text_of(m.get("content")))
            for m in messages
            if m.get("role") not in {"system", "developer"}
        ]
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return SimRequest(model, "\n".join(system), turns, limit, bool(body.get("stream")), include_usage)

    def body(self, req: SimRequest, done: Completion) -> dict[str, Any]:
        """A ``chat.completion`` object."""
        refused = done.finish == "refusal"
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if refused else done.text,
            "refusal": done.text if refused else None,
            "annotations": [],
        }
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH[done.finish]}
        return {**self._envelope(req, "chat.completion"), "choices": [choice], "usage": _usage(req, done)}

    def head(self, req: SimRequest) -> list[bytes]:
        """The role chunk."""
        return [self._chunk(req, {"role": "assistant", "content": "", "refusal": None}, None)]

    def delta(self, req: SimRequest, piece: str, done: Completion) -> bytes:
        """A content chunk (a refusal chunk when refusing)."""
        key = "refusal" if done.finish == "refusal" else "content"
        return self._chunk(req, {key: piece}, None)

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


def _usage(req: SimRequest, done: Completion) -> dict[str, Any]:
    output = count_tokens(done.text)
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
