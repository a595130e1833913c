"""The tool-calling scenarios, a pure function of the model name, the turns and the tools offered.

A turn starts at the last user message with text; a round is one assistant message with tool
calls after it. With no tools offered, or ``tool_choice`` none, no model calls a tool: it answers
"Reply from <model>: <the user's words>", plus " Last tool result: ..." when the conversation has one.

- ``tool-user``: calls ONE tool per round for ``rounds`` rounds (directive, default 1): the tool
  the ``tool`` directive names, else the first offered; then answers "Used <name>: <result>"
  (first 200 characters of each result of the turn, one line each).
- ``tool-parallel``: in its first round calls every offered tool at once (at most 8); then answers
  like ``tool-user``, one line per result.
- ``tool-loop``: calls the first offered tool with the same arguments in every round, forever.
- ``tool-rogue``: in its first round calls a tool that was not offered, ``delete_everything`` with
  ``{"confirm": true}`` (or the ``tool`` / ``args`` directives); then answers quoting the result.
- ``tool-bad-args``: in its first round calls the first offered tool with ``BAD_ARGUMENTS``, text
  that is not JSON (Anthropic's ``input`` must be an object: there it is ``BAD_INPUT``, which
  misses the schema's required properties); then answers quoting the result.

Arguments come from the ``args`` directive when given (for ``tool-parallel`` and ``tool-loop``,
only to the tool ``tool`` names, or to every tool without it), else from the tool's schema: each
required property gets its enum's first value, else "example", 1, true, [] or {} by its type.
Call ids hash the model, the turns and the call's index: a retried request gets the same ids.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from harness.sim._directives import Directives, strip_directives
from harness.sim._turns import Tool, ToolOutput, ToolUse, Turn

TOOL_MODELS = frozenset({"tool-user", "tool-parallel", "tool-loop", "tool-rogue", "tool-bad-args"})
BAD_ARGUMENTS = '{"oops": '
BAD_INPUT: dict[str, Any] = {"unexpected": 1}
ROGUE_TOOL = "delete_everything"
MAX_PARALLEL = 8
_QUOTE = 200  # characters of a result quoted back
_EXAMPLES: dict[str, Any] = {"string": "example", "integer": 1, "number": 1, "boolean": True}


def tool_scenario(
    model: str, turns: list[Turn], tools: tuple[Tool, ...], tool_choice: str, d: Directives
) -> tuple[str, tuple[ToolUse, ...]]:
    """The text and the tool calls ``model`` (one of ``TOOL_MODELS``) replies with."""
    start = max((i for i, t in enumerate(turns) if t.opens_turn), default=-1)
    later = turns[start + 1 :]
    if not tools or tool_choice == "none":
        return _plain(model, turns, d), ()
    rounds = sum(1 for t in later if t.role == "assistant" and t.calls)
    plan = _plan(model, rounds, tools, d)
    if plan:
        key = json.dumps([model, [[t.role, t.flat] for t in turns]])
        return "", tuple(ToolUse(_call_id(key, i), name, args) for i, (name, args) in enumerate(plan))
    if d.reply is not None:
        return d.reply, ()
    names = {c.id: c.name for t in later for c in t.calls}
    results = [r for t in later for r in t.results]
    text = "\n".join(_used(names.get(r.call_id, "a tool"), r) for r in results)
    return text or _plain(model, turns, d), ()


def schema_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments that satisfy ``schema``'s required properties (one example value each)."""
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    return {name: _example(properties.get(name)) for name in required or () if isinstance(name, str)}


def _plan(model: str, rounds: int, tools: tuple[Tool, ...], d: Directives) -> list[tuple[str, str]]:
    first = tools[0]
    if model == "tool-loop":
        return [(first.name, _arguments(first, d))]
    if model == "tool-user" and rounds < (d.rounds or 1):
        name = d.tool or first.name
        named = next((t for t in tools if t.name == name), Tool(name))
        return [(name, json.dumps(d.args if d.args is not None else schema_arguments(named.parameters)))]
    if rounds:
        return []
    if model == "tool-parallel":
        return [(t.name, _arguments(t, d)) for t in tools[:MAX_PARALLEL]]
    if model == "tool-rogue":
        return [(d.tool or ROGUE_TOOL, json.dumps(d.args if d.args is not None else {"confirm": True}))]
    if model == "tool-bad-args":
        return [(first.name, BAD_ARGUMENTS)]
    return []


def _arguments(tool: Tool, d: Directives) -> str:
    if d.args is not None and d.tool in (None, tool.name):
        return json.dumps(d.args)
    return json.dumps(schema_arguments(tool.parameters))


def _example(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "example"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first type that is not null
        kind = next((k for k in kind if k != "null"), None)
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return _EXAMPLES.get(kind, "example") if isinstance(kind, str) else "example"


def _call_id(key: str, index: int) -> str:
    return hashlib.sha256(f"{key}|{index}".encode()).hexdigest()[:24]


def _used(name: str, result: ToolOutput) -> str:
    error = " (error)" if result.is_error else ""
    return f"Used {name}{error}: {result.content[:_QUOTE]}"


def _plain(model: str, turns: list[Turn], d: Directives) -> str:
    if d.reply is not None:
        return d.reply
    last = next((t.text for t in reversed(turns) if t.opens_turn), "")
    text = f"Reply from {model}: {' '.join(strip_directives(last).split()[:20])}"
    result = next((t.results[-1] for t in reversed(turns) if t.results), None)
    return f"{text} Last tool result: {result.content[:_QUOTE]}" if result else text
