"""Deterministic replies: a pure function of the model name and the messages of a request.

No server state is read, so a retried request gets the same reply. Scenarios by model name:

- ``writer``: "Draft v{r}: ..." about the topic (first 10 words of the first user message), where
  r = 1 + number of assistant messages; 40-80 tokens, different for every r. If the last user
  message says "too formal" it returns the one casual draft ("Draft (casual): ..."); if it says
  "too dry", the one formal draft ("Draft (formal): ..."); the phrase said last wins.
- ``editor`` (converges): the highest "Draft vN" in the last user message; N >= 3 gives
  "APPROVED: the draft is ready.", otherwise "Revise: <point for N>". Casual and formal drafts
  always get "Revise: ...".
- ``editor-livelock``: a casual draft gets "Now it is too dry; it needs more energy.", any other
  draft "This is too formal; loosen it up." With ``writer`` this cycles with period 2::

      writer v1 -> "too formal" -> writer casual -> "too dry" -> writer formal -> "too formal"
      -> writer casual -> "too dry" -> writer formal -> ...

- ``planner``: JSON ``{"subtasks": [{"id", "title", "instructions", "priority", "est_tokens"}]}``,
  3 subtasks or N when the last user message says "subtasks=N".
- ``judge``: JSON ``{"score", "reason"}`` for the last user message: "Draft vN" scores
  min(1, 0.2 + 0.2 N) for the highest N; a casual or formal draft 0.5; "APPROVED" 0.9; anything
  else a hash-derived score in [0.3, 0.9].
- ``selector``: one name of "Candidates: a, b, c", index = number of messages mod candidates.
- ``tier-small`` / ``tier-medium`` / ``tier-large``: with "difficulty=X" in the last user message,
  "PASS" when draw < p else "FAIL", where draw = sha256(last user message + model) in [0, 1) and
  p = clamp(0.95 - 0.9 X) / clamp(0.99 - 0.5 X) / clamp(0.995 - 0.15 X). Otherwise like echo.
- ``tool-user``, ``tool-parallel``, ``tool-loop``, ``tool-rogue``, ``tool-bad-args``: call tools
  (see ``_tool_scenarios``); no other model ever does, and all read tool calls and results as text.
- anything else (``echo``, ``gpt-4o-mini``, ...): "Reply from <model>: " + the first 20 words of the
  last user message, padded to 20-60 tokens.

Directives (see ``_directives``) can force the reply, its length and its timing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from harness.sim._directives import Directives, parse_directives, strip_directives
from harness.sim._tokens import count_tokens, split_tokens
from harness.sim._tool_scenarios import TOOL_MODELS, tool_scenario
from harness.sim._turns import Reply, Tool, Turn

_FILLER = (
    "Each point is backed by a short example.",
    "The structure stays simple so the reader can follow it.",
    "Key terms are explained where they first appear.",
    "The closing lines tie the argument back to the opening.",
    "Numbers are rounded so they read easily.",
    "Transitions keep one idea flowing into the next.",
)
_ANGLES = (
    "why it matters today",
    "the history behind it",
    "the common mistakes people make",
    "a practical checklist",
    "the open questions that remain",
    "what changes next year",
    "a worked example",
)
_EDITOR_POINTS = (
    "I could not find a numbered draft; send one.",
    "add a concrete example to support the opening claim.",
    "tighten the middle paragraph and cut repeated words.",
)
_TIER_SLOPES = {"tier-small": (0.95, 0.9), "tier-medium": (0.99, 0.5), "tier-large": (0.995, 0.15)}
_DRAFT_MARK = re.compile(r"Draft (?:v(\d+)|\((casual|formal)\))")


def scenario_reply(
    model: str,
    turns: list[Turn],
    tools: tuple[Tool, ...] = (),
    tool_choice: str = "auto",
    reply_tokens: int | None = None,
) -> Reply:
    """The reply of simulated ``model`` to ``turns`` offering ``tools`` (a pure function); a free-text
    reply is ``reply_tokens`` long when no directive says otherwise."""
    model = model.removeprefix("sim:")  # tolerate a catalog ref sent as the model name
    last = _last_user(turns)
    d = parse_directives(last)
    if model in TOOL_MODELS:
        text, calls = tool_scenario(model, turns, tools, tool_choice, d)
        return Reply(text=text, latency_s=d.latency_s, tokens_per_s=d.tokens_per_s, calls=calls)
    if d.tokens is None and reply_tokens is not None:
        d = dataclasses.replace(d, tokens=reply_tokens)
    text = d.reply if d.reply is not None else _scenario_text(model, turns, last, d)
    return Reply(text=text, latency_s=d.latency_s, tokens_per_s=d.tokens_per_s)


def _scenario_text(model: str, turns: list[Turn], last: str, d: Directives) -> str:
    if model in {"planner", "judge"} and (
        (d.bad_json and not _error_fed_back(turns)) or _always_bad_json(turns)
    ):
        return '{"oops": [unterminated, "this is not JSON'
    if model == "planner":
        return _planner(turns, last)
    if model == "judge":
        return _judge(last)
    if model == "selector":
        return _selector(turns, last)
    if model == "writer":
        text, length = _writer(turns, last)
    elif model in {"editor", "editor-livelock"}:
        text, length = _editor(model, last), 0
    elif model in _TIER_SLOPES and (m := re.search(r"difficulty=([0-9]*\.?[0-9]+)", last)):
        text, length = _tier(model, last, float(m.group(1))), 0
    else:
        text, length = _echo(model, last)
    if d.tokens is not None:
        length = d.tokens
    # Seeded by the base text, so the fixed casual and formal drafts pad the same way every time.
    return _fit(text, length, seed=text) if length else text


def _last_user(turns: list[Turn]) -> str:
    """The last user message with text (tool results alone do not start a turn)."""
    return next((t.text for t in reversed(turns) if t.opens_turn), "")


def _topic(turns: list[Turn]) -> str:
    first = next((t.text for t in turns if t.role == "user"), "")
    words = strip_directives(first).split()[:10]
    return " ".join(words).rstrip(".:;,") or "the assigned subject"


def _hash01(text: str) -> float:
    """A uniform-looking number in [0, 1) from ``text``, stable across runs and machines."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:13], 16) / 16**13


def _fit(text: str, length: int, seed: str) -> str:
    """Pad ``text`` with filler sentences, or cut it, to exactly ``length`` tokens."""
    start = int(_hash01(seed) * len(_FILLER))
    i = 0
    while count_tokens(text) < length:
        text = f"{text.rstrip()} {_FILLER[(start + i) % len(_FILLER)]}"
        i += 1
    return "".join(split_tokens(text)[:length]).rstrip()


def _last_phrase(text: str, phrases: tuple[str, ...]) -> str | None:
    """Which of ``phrases`` occurs last in ``text`` (case-insensitive), if any."""
    lowered = text.lower()
    found = [(lowered.rfind(p), p) for p in phrases if p in lowered]
    return max(found)[1] if found else None


def _writer(turns: list[Turn], last: str) -> tuple[str, int]:
    topic = _topic(turns)
    phrase = _last_phrase(last, ("too formal", "too dry"))
    if phrase == "too formal":
        text = f"Draft (casual): So, {topic}? Here's the deal, plain and simple, no fuss at all."
        return text, 48
    if phrase == "too dry":
        text = f"Draft (formal): This document examines {topic} with due rigour and precision."
        return text, 56
    r = 1 + sum(t.role == "assistant" for t in turns)
    angle = _ANGLES[(r - 1) % len(_ANGLES)]
    text = f"Draft v{r}: On {topic}, this revision focuses on {angle}. Revision {r} reworks the argument."
    return text, 40 + int(_hash01(f"{topic}|{r}") * 41)


def _editor(model: str, last: str) -> str:
    marks = list(_DRAFT_MARK.finditer(last))
    kind = marks[-1].group(2) if marks else None
    if model == "editor-livelock":
        return (
            "Now it is too dry; it needs more energy."
            if kind == "casual"
            else "This is too formal; loosen it up."
        )
    if kind is not None:
        return f"Revise: the {kind} draft drops the numbered structure; go back to a numbered draft."
    n = max((int(m.group(1)) for m in marks), default=0)
    if n >= 3:
        return "APPROVED: the draft is ready."
    return f"Revise: {_EDITOR_POINTS[min(n, len(_EDITOR_POINTS) - 1)]}"


def _planner(turns: list[Turn], last: str) -> str:
    m = re.search(r"subtasks=(\d+)", last)
    n = min(max(int(m.group(1)), 1), 50) if m else 3
    topic = _topic(turns)
    subtasks = [
        {
            "id": f"t{i}",
            "title": f"Part {i}: {_ANGLES[(i - 1) % len(_ANGLES)]}",
            "instructions": f"Write about {_ANGLES[(i - 1) % len(_ANGLES)]} for: {topic}.",
            "priority": 1 + int(_hash01(f"{topic}|{i}") * 5),
            "est_tokens": 200 + 50 * i,
        }
        for i in range(1, n + 1)
    ]
    return json.dumps({"subtasks": subtasks})


def _judge(last: str) -> str:
    marks = list(_DRAFT_MARK.finditer(last))
    numbered = [int(m.group(1)) for m in marks if m.group(1)]
    if numbered:
        n = max(numbered)
        score, reason = min(1.0, 0.2 + 0.2 * n), f"numbered draft v{n}"
    elif marks:
        score, reason = 0.5, "a casual or formal rewrite"
    elif "APPROVED" in last:
        score, reason = 0.9, "the editor approved it"
    else:
        score, reason = 0.3 + 0.6 * _hash01(last), "no draft marker; judged on general quality"
    return json.dumps({"score": round(score, 4), "reason": reason})


def _selector(turns: list[Turn], last: str) -> str:
    m = re.search(r"Candidates:\s*([^\n]+)", last)
    names = [n.strip().rstrip(".") for n in m.group(1).split(",")] if m else []
    names = [n for n in names if n]
    return names[len(turns) % len(names)] if names else "none"


def _tier(model: str, last: str, difficulty: float) -> str:
    base, slope = _TIER_SLOPES[model]
    p = min(1.0, max(0.0, base - slope * difficulty))
    if _hash01(last + model) < p:
        return f"PASS: {model} solved the task at difficulty={difficulty}."
    return f"FAIL: {model} could not solve the task at difficulty={difficulty}."


def _echo(model: str, last: str) -> tuple[str, int]:
    words = " ".join(strip_directives(last).split()[:20])
    text = f"Reply from {model}: {words}"
    length = count_tokens(text)
    target = 20 + int(_hash01(model + last) * 41)
    return text, (target if length < 20 else min(length, 60))


def _always_bad_json(turns: list[Turn]) -> bool:
    return any(t.role == "user" and parse_directives(t.text).bad_json_always for t in turns)


def _error_fed_back(turns: list[Turn]) -> bool:
    pattern = re.compile(r"\b(?:invalid|validation)\b", re.IGNORECASE)
    return any(t.role == "user" and pattern.search(t.text) for t in turns)
