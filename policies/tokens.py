"""The one token estimator: what a reservation and an unreported usage are priced at.

Real tokenizers average about 4 characters per token in English, so ``ceil(chars / 3)`` over-counts
on purpose: an estimate is charged, and charging too little is the worse error. Each message adds a
few tokens of role markers, each request a reply primer. The workflow reserves with it and the
gateway estimates a stream without usage with it, over exactly the text the provider is sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

CHARS_PER_TOKEN = 3
TYPICAL_CHARS_PER_TOKEN = 4  # English text on current tokenizers, about
PER_MESSAGE_TOKENS = 4
PER_REQUEST_TOKENS = 3


def estimate_tokens(text: str) -> int:
    """Conservative token count of ``text``: ceil(chars / 3)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_input_tokens(system: str, messages: Iterable[str]) -> int:
    """Conservative input tokens of a request: the system prompt and each message, plus overheads."""
    return (
        estimate_tokens(system)
        + sum(estimate_tokens(content) + PER_MESSAGE_TOKENS for content in messages)
        + PER_REQUEST_TOKENS
    )


def likely_tokens(conservative: int) -> int:
    """A conservative estimate scaled back to a typical count (4 characters per token).

    For refusing what cannot fit a context window, where the conservative count would refuse
    requests that do fit.
    """
    return conservative * CHARS_PER_TOKEN // TYPICAL_CHARS_PER_TOKEN
