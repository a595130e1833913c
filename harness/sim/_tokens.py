"""Deterministic tokenizer of the simulator.

A token is a run of word characters or a single punctuation character:
``count_tokens(text) == len(re.findall(r"\\w+|[^\\w\\s]", text))``. Whitespace is never a token.

Prompt tokens of a request are ``count_tokens(system) + sum(count_tokens(content) + 4 per message) + 3``
(the 4 and the 3 stand for the role markers and the reply primer real chat templates add). The
tools a request offers count as one more message (see ``_wire``).
Output tokens are ``count_tokens(reply)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"\w+|[^\w\s]")

PER_MESSAGE_TOKENS = 4
"""Tokens added for each message of a request, on top of its content."""
PER_REQUEST_TOKENS = 3
"""Tokens added once per request (the assistant reply primer)."""


def count_tokens(text: str) -> int:
    """Number of simulator tokens in ``text``: word runs plus single punctuation characters."""
    return len(_TOKEN.findall(text))


def prompt_tokens(system: str, contents: Sequence[str]) -> int:
    """Input tokens of a request with system prompt ``system`` and message texts ``contents``."""
    return (
        count_tokens(system)
        + sum(count_tokens(c) + PER_MESSAGE_TOKENS for c in contents)
        + PER_REQUEST_TOKENS
    )


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into pieces of exactly one token each, whose concatenation is ``text``.

    Whitespace sticks to the token before it (leading whitespace to the first token), so streaming
    one piece per chunk reproduces the text byte for byte.
    """
    starts = [m.start() for m in _TOKEN.finditer(text)]
    if not starts:
        return []
    starts[0] = 0
    ends = [*starts[1:], len(text)]
    return [text[s:e] for s, e in zip(starts, ends, strict=True)]


def truncate(text: str, max_tokens: int) -> str:
    """The first ``max_tokens`` tokens of ``text`` (with the whitespace between them)."""
    return "".join(split_tokens(text)[:max_tokens])
