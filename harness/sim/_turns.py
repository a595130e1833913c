"""What a scenario reads and says: the turns of a request, the tools offered, and the reply."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolUse:
    """A tool call: one the model asked for earlier in the conversation, or one this reply asks for.

    ``arguments`` is JSON text as the model sent it (not necessarily valid). The ``id`` of a call a
    reply asks for is a bare hash; each wire format adds its provider's prefix.
    """

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolOutput:
    """The result of a tool call, as the caller sent it back."""

    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Turn:
    """One message of a request: its own text, the tool calls it carries (assistant), the tool
    results it carries (user; OpenAI's ``tool`` messages merge into the user turn they precede)."""

    role: str
    text: str
    calls: tuple[ToolUse, ...] = ()
    results: tuple[ToolOutput, ...] = ()

    @property
    def flat(self) -> str:
        """The message as one text (what its prompt tokens are counted on): results, text, then
        each call as ``[tool NAME ARGS]``; just ``text`` for a message without tools."""
        parts = [r.content for r in self.results]
        parts += [self.text] if self.text else []
        parts += [f"[tool {c.name} {c.arguments}]" for c in self.calls]
        return "\n".join(parts)

    @property
    def opens_turn(self) -> bool:
        """A user message with text: one holding only tool results continues the turn before it."""
        return self.role == "user" and (bool(self.text) or not self.results)


@dataclass(frozen=True)
class Tool:
    """A tool the request offers: its name, description and the JSON Schema of its arguments."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def flat(self) -> str:
        """The definition as text, ``name: description {schema}``, as its prompt tokens are counted."""
        return f"{self.name}: {self.description} {json.dumps(self.parameters, separators=(',', ':'))}"


@dataclass(frozen=True)
class Reply:
    """What the simulated model says, and the per-request timing overrides."""

    text: str
    latency_s: float | None = None
    tokens_per_s: float | None = None
    calls: tuple[ToolUse, ...] = ()
