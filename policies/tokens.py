"""The one token estimator: what a reservation and an unreported usage are priced at.

Without evidence, ``ceil(chars / 3)``: real tokenizers average about 4 characters per token in
English, so this over-counts on purpose (an estimate is charged, and charging too little is the
worse error). Each message adds a few tokens of role markers, each request a reply primer.

Evidence makes it closer to the truth:

- a **calibrated ratio** of characters per token for the model: from the job's settled calls of the
  same model (``TokenSample``, characters sent and received against the tokens the provider
  reported), or the catalog's ``chars_per_token``. It is used with a bounded safety margin
  (``CALIBRATED_MARGIN``), so an estimate stays a little above what the ratio predicts;
- a **stream's own chunks**: servers that stream one token per chunk (OpenAI, vLLM, llama.cpp,
  Ollama) are counted by their chunks, exactly; a stream whose chunks hold more characters than a
  token can (``MAX_CHARS_PER_TOKEN_CHUNK``) carries several tokens per chunk and is estimated from
  its characters instead. A reply's characters per chunk do not calibrate its prompt: prompts
  (code, data, directives) often tokenize worse than prose replies, and under-charging is the
  worse error.

An output estimate never exceeds the call's ``max_output_tokens``: the provider cannot have
generated more. Reservations use the conservative ratio: a hold that is too small lets a call
break a cap; only unreported usage uses the calibrated one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pydantic import BaseModel

CHARS_PER_TOKEN = 3.0
"""The conservative ratio used without evidence."""
TYPICAL_CHARS_PER_TOKEN = 4.0  # English text on current tokenizers, about
PER_MESSAGE_TOKENS = 4
PER_REQUEST_TOKENS = 3
CALIBRATED_MARGIN = 1.1
"""An estimate from a calibrated ratio is this much above what the ratio predicts (10%)."""
MIN_CALIBRATION_TOKENS = 200
"""Tokens of evidence a job needs for a model before its ratio is trusted over the default."""
MAX_CALIBRATED_RATIO = 8.0
"""No evidence makes a token count for more characters than this (a provider's odd counts, say)."""
MAX_CHARS_PER_TOKEN_CHUNK = 6.0
"""Chunks averaging more characters than this hold several tokens each: not counted as tokens."""


class TokenSample(BaseModel):
    """Evidence for a model's characters per token: text and the tokens a provider counted for it."""

    chars: int = 0
    tokens: int = 0

    def __add__(self, other: TokenSample) -> TokenSample:
        return TokenSample(chars=self.chars + other.chars, tokens=self.tokens + other.tokens)

    def ratio(self) -> float | None:
        """Characters per token, once there is enough evidence (``MIN_CALIBRATION_TOKENS``)."""
        if self.tokens < MIN_CALIBRATION_TOKENS or self.chars <= 0:
            return None
        return self.chars / self.tokens


def effective_ratio(calibrated: float | None) -> float:
    """The characters per token an estimate divides by: a calibrated ratio (at most
    ``MAX_CALIBRATED_RATIO``) less its safety margin, or the conservative default."""
    if calibrated is None or calibrated <= 0:
        return CHARS_PER_TOKEN
    return min(calibrated, MAX_CALIBRATED_RATIO) / CALIBRATED_MARGIN


def estimate_tokens(text: str, chars_per_token: float | None = None) -> int:
    """Tokens of ``text``: ``ceil(chars / 3)``, or by a calibrated ratio (with its margin)."""
    return _ceil(len(text) / effective_ratio(chars_per_token))


def estimate_input_tokens(system: str, messages: Iterable[str], chars_per_token: float | None = None) -> int:
    """Input tokens of a request: the system prompt and each message, plus overheads."""
    return (
        estimate_tokens(system, chars_per_token)
        + sum(estimate_tokens(content, chars_per_token) + PER_MESSAGE_TOKENS for content in messages)
        + PER_REQUEST_TOKENS
    )


def input_overhead(messages: int) -> int:
    """Tokens a request adds on top of its texts: role markers per message and the reply primer."""
    return messages * PER_MESSAGE_TOKENS + PER_REQUEST_TOKENS


def chunks_are_tokens(chunks: int, chars: int) -> bool:
    """Whether a stream's chunks look like one token each (few characters per chunk)."""
    return chunks > 0 and chars <= chunks * MAX_CHARS_PER_TOKEN_CHUNK


def estimate_output_tokens(
    chunks: int, chars: int, max_output_tokens: int | None, chars_per_token: float | None = None
) -> int:
    """Output tokens of a reply received as ``chunks`` pieces of ``chars`` characters in all.

    One token per chunk when the chunks look like tokens; otherwise from the characters (at least
    one per chunk). Never above ``max_output_tokens``, which the provider cannot have exceeded.
    """
    if chunks_are_tokens(chunks, chars):
        tokens = chunks
    else:
        tokens = max(chunks, _ceil(chars / effective_ratio(chars_per_token)))
    return min(tokens, max_output_tokens) if max_output_tokens is not None else tokens


def likely_tokens(conservative: int) -> int:
    """A conservative estimate scaled back to a typical count (4 characters per token).

    For refusing what cannot fit a context window, where the conservative count would refuse
    requests that do fit.
    """
    return int(conservative * CHARS_PER_TOKEN // TYPICAL_CHARS_PER_TOKEN)


def _ceil(value: float) -> int:
    """Ceiling that ignores float noise (440 / (4.4 / 1.1) is 110, not 111)."""
    return math.ceil(round(value, 6))
