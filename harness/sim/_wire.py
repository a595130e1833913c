"""Wire formats of the two provider APIs: parse a request, build bodies and SSE events.

Both providers share one ``SimRequest``. For OpenAI, ``system``/``developer`` messages become the
system prompt (joined by newlines) and are not counted as messages, and its ``tool`` messages merge
into one user turn with the user message right after them (as Anthropic's ``tool_result`` blocks
share a user message), so the same logical request costs the same input tokens on either API. A
message's tokens are counted on its flat text (``Turn.flat``); the tools offered count as one more
message, their definitions (``Tool.flat``) one per line.
"""

from __future__ import annotations

import json
import re
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.sim._tokens import count_tokens, prompt_tokens
from harness.sim._turns import Tool, ToolUse, Turn

Finish = Literal["stop", "length", "content_filter", "refusal", "tool_calls"]
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class WireError(Exception):
    """A request the real API would reject with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SimRequest:
    """A chat request, whichever API it came through."""

    model: str
    system: str
    turns: list[Turn]
    max_tokens: int | None
    stream: bool
    include_usage: bool = True
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])

    @property
    def input_tokens(self) -> int:
        """Prompt tokens, by the simulator's counting rule."""
        tools = ["\n".join(t.flat for t in self.tools)] if self.tools else []
        return prompt_tokens(self.system, [t.flat for t in self.turns] + tools)


@dataclass(frozen=True)
class Completion:
    """The reply as sent: one token per piece, and why it ended."""

    pieces: list[str]
    finish: Finish
    calls: tuple[ToolUse, ...] = ()

    @property
    def text(self) -> str:
        """The reply text (all pieces joined)."""
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        """Tokens of the text plus, for each tool call, of its name and its arguments."""
        return count_tokens(self.text) + sum(call_tokens(c) for c in self.calls)


def call_tokens(call: ToolUse) -> int:
    """Output tokens of one tool call: its name's plus its arguments'."""
    return count_tokens(call.name) + count_tokens(call.arguments)


def parse_tool(name: Any, parameters: Any, description: Any) -> Tool:
    """An offered tool; 400 unless its name is 1-64 letters, digits, ``_`` or ``-``."""
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise WireError(400, f"tool name {name!r} must match ^[a-zA-Z0-9_-]{{1,64}}$")
    return Tool(
        name,
        parameters if isinstance(parameters, dict) else {},
        description if isinstance(description, str) else "",
    )


def text_of(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list of blocks, one per line."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def require_chat(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise WireError(400, "'model' is required")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise WireError(400, "'messages' must be a non-empty list of objects")
    return model, messages


def positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise WireError(400, f"'{name}' must be a positive integer")
    return value


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class Wire(ABC):
    """One provider's wire format."""

    provider: Literal["openai", "anthropic"]

    @abstractmethod
    def parse(self, body: dict[str, Any]) -> SimRequest:
        """Validate and flatten a request body."""

    @abstractmethod
    def body(self, req: SimRequest, done: Completion) -> dict[str, Any]:
        """The non-streaming response body."""

    def arguments(self, text: str) -> str:
        """The arguments of a tool call as this API can carry them (OpenAI: any text)."""
        return text

    @abstractmethod
    def head(self, req: SimRequest, done: Completion) -> list[bytes]:
        """Events sent before the first token."""

    def events(self, req: SimRequest, done: Completion) -> list[tuple[bytes, int]]:
        """The events that carry the reply, each with the number of tokens it carries."""
        return [(self.delta(req, piece, done), 1) for piece in done.pieces] + self.call_events(req, done)

    @abstractmethod
    def delta(self, req: SimRequest, piece: str, done: Completion) -> bytes:
        """The event carrying one token of text."""

    @abstractmethod
    def call_events(self, req: SimRequest, done: Completion) -> list[tuple[bytes, int]]:
        """The events carrying the tool calls (after the text), with their tokens: the name's on the
        event that opens a call, one on each piece of its arguments."""

    @abstractmethod
    def tail(self, req: SimRequest, done: Completion) -> list[bytes]:
        """Events after the last token, final usage included."""
