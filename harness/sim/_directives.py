"""In-prompt directives that let tests steer one request: ``[[sim key=value ...]]``.

Recognised keys (anywhere in the last user message with text; several blocks merge, later wins):

- ``reply="exact text"``: the reply, verbatim (``\\"`` escapes a quote).
- ``latency=2.5``: seconds to the first token, instead of ``SimConfig.latency_s``.
- ``tps=20``: tokens per second, instead of ``SimConfig.tokens_per_s`` (0 = unlimited).
- ``tokens=300``: exact reply length in tokens for the free-text scenarios (padding or cutting).
- ``bad_json=1``: planner and judge answer invalid JSON until a user message of the request
  mentions "invalid" or "validation" (the caller fed the parse error back).
- ``bad_json=always``: planner and judge answer invalid JSON to every request that has it in any
  of its user messages, re-asks included (a model that cannot produce the schema at all).
- ``tool=NAME``: the tool the ``tool-user`` and ``tool-rogue`` models call (``tool-parallel``:
  whose arguments ``args`` sets).
- ``args='{"city": "Paris"}'``: the arguments of that call, a JSON object (single quotes spare
  escaping the JSON's double quotes; ``args="{\\"a\\": 1}"`` works too). Not an object: ignored.
- ``rounds=3``: how many rounds ``tool-user`` calls its tool before it answers (default 1).

A user message that holds only tool results is not a new turn, so the directives of a turn still
apply in its later tool rounds. Directives are never stripped before counting tokens: they are part
of the prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_BLOCK = re.compile(r"\[\[sim\s+(.*?)\]\]", re.DOTALL)
_PAIR = re.compile(r"""(\w+)=("(?:[^"\\]|\\.)*"|'[^']*'|\S+)""")


@dataclass(frozen=True)
class Directives:
    """Overrides parsed from ``[[sim ...]]`` blocks; None means "not given"."""

    reply: str | None = None
    latency_s: float | None = None
    tokens_per_s: float | None = None
    tokens: int | None = None
    bad_json: bool = False
    bad_json_always: bool = False
    tool: str | None = None
    args: dict[str, Any] | None = None
    rounds: int | None = None


def parse_directives(text: str) -> Directives:
    """Parse every ``[[sim ...]]`` block of ``text``; malformed values are ignored."""
    raw: dict[str, str] = {}
    for block in _BLOCK.findall(text):
        for key, value in _PAIR.findall(block):
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            elif value.startswith("'") and value.endswith("'") and len(value) >= 2:
                value = value[1:-1]
            raw[key] = value
    return Directives(
        reply=raw.get("reply"),
        latency_s=_number(raw.get("latency")),
        tokens_per_s=_number(raw.get("tps")),
        tokens=_whole(raw.get("tokens")),
        bad_json=raw.get("bad_json", "0").lower() in {"1", "true", "yes", "always"},
        bad_json_always=raw.get("bad_json", "").lower() == "always",
        tool=raw.get("tool") or None,
        args=_object(raw.get("args")),
        rounds=max(1, rounds) if (rounds := _whole(raw.get("rounds"))) is not None else None,
    )


def strip_directives(text: str) -> str:
    """``text`` without its directive blocks, for quoting a prompt back (never for counting)."""
    return _BLOCK.sub("", text)


def _number(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _whole(value: str | None) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _object(value: str | None) -> dict[str, Any] | None:
    try:
        parsed = json.loads(value) if value is not None else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
