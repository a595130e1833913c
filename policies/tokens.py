"""The one token estimator: what a reservation and an unreported usage are priced at.

Without evidence the count is conservative: every punctuation mark or symbol is a token (BPE
tokenizers rarely merge them with letters), every run of letters a token per 4 letters and every
run of digits a token per 3 digits, at least one each. English prose comes out somewhat above what
current tokenizers count, code and punctuation-heavy text closer to it: an estimate is charged, and
charging too little is the worse error. Each message adds a few tokens of role markers, each
request a reply primer. (Scripts that are written without spaces, Chinese or Japanese say, count
as long words and can come out lower than the truth: calibration fixes that.)

Evidence makes it closer to the truth:

- a **calibrated scale** for the model: the tokens its provider reported for the job's settled calls
  of it, over what this estimator counted for the same text (``TokenSample``), or the catalog's
  ``token_scale``. It is used with a bounded safety margin (``CALIBRATED_MARGIN``), so an estimate
  stays a little above what the scale predicts;
- a **stream's own chunks**: servers that stream one token per chunk (OpenAI, vLLM, llama.cpp,
  Ollama) are counted by their chunks, exactly; a stream whose chunks hold more characters than a
  token can (``MAX_CHARS_PER_TOKEN_CHUNK``) carries several tokens per chunk and is estimated from
  its text instead.

An output estimate never exceeds the call's ``max_output_tokens``: the provider cannot have
generated more. Reservations use the conservative count: a hold that is too small lets a call
break a cap; only unreported usage uses the calibrated one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from pydantic import BaseModel

LETTERS_PER_TOKEN = 4
"""Letters of a word per token, without evidence (words of up to 4 letters are one token)."""
DIGITS_PER_TOKEN = 3
"""Digits per token (tokenizers split long numbers into groups of up to 3)."""
TYPICAL_SCALE = 0.75
"""Typical tokens per estimated token on English prose, for limits that must not refuse too much."""
PER_MESSAGE_TOKENS = 4
PER_REQUEST_TOKENS = 3
CALIBRATED_MARGIN = 1.1
"""An estimate from a calibrated scale is this much above what the scale predicts (10%)."""
MIN_CALIBRATION_TOKENS = 200
"""Tokens of evidence a job needs for a model before its scale is trusted over the default."""
MIN_SCALE, MAX_SCALE = 0.25, 4.0
"""No evidence makes a text count for less than a quarter, or more than four times, its estimate."""
MAX_CHARS_PER_TOKEN_CHUNK = 6.0
"""Chunks averaging more characters than this hold several tokens each: not counted as tokens."""

_LETTERS = re.compile(r"[^\W\d]+")
_DIGITS = re.compile(r"\d+")
_SYMBOL = re.compile(r"[^\w\s]")


class TokenSample(BaseModel):
    """Evidence for a model's tokenizer: what this estimator counted for some text, and the tokens a
    provider reported for the same text."""

    estimated: int = 0
    tokens: int = 0

    def __add__(self, other: TokenSample) -> TokenSample:
        return TokenSample(estimated=self.estimated + other.estimated, tokens=self.tokens + other.tokens)

    def scale(self) -> float | None:
        """Reported tokens per estimated token, once there is enough evidence."""
        if self.tokens < MIN_CALIBRATION_TOKENS or self.estimated <= 0:
            return None
        return self.tokens / self.estimated


def count_tokens(text: str) -> int:
    """The conservative count of ``text``: one token per symbol, ceil(len / 4) per run of letters,
    ceil(len / 3) per run of digits."""
    symbols = len(_SYMBOL.findall(text))
    letters = sum(-(-len(run) // LETTERS_PER_TOKEN) for run in _LETTERS.findall(text))
    digits = sum(-(-len(run) // DIGITS_PER_TOKEN) for run in _DIGITS.findall(text))
    return symbols + letters + digits


def scaled(tokens: int, scale: float | None) -> int:
    """``tokens`` (a conservative count) by a calibrated ``scale`` and its margin; unchanged without one."""
    if scale is None or scale <= 0:
        return tokens
    return math.ceil(round(tokens * min(max(scale, MIN_SCALE), MAX_SCALE) * CALIBRATED_MARGIN, 6))


def estimate_tokens(text: str, scale: float | None = None) -> int:
    """Tokens of ``text``: the conservative count, or by a calibrated scale (with its margin)."""
    return scaled(count_tokens(text), scale)


def input_overhead(messages: int) -> int:
    """Tokens a request adds on top of its texts: role markers per message and the reply primer."""
    return messages * PER_MESSAGE_TOKENS + PER_REQUEST_TOKENS


def estimate_input_tokens(system: str, messages: Iterable[str], scale: float | None = None) -> int:
    """Input tokens of a request: the system prompt and each message, plus overheads."""
    contents = list(messages)
    texts = count_tokens(system) + sum(count_tokens(content) for content in contents)
    return scaled(texts, scale) + input_overhead(len(contents))


def chunks_are_tokens(chunks: int, chars: int) -> bool:
    """Whether a stream's chunks look like one token each (few characters per chunk)."""
    return chunks > 0 and chars <= chunks * MAX_CHARS_PER_TOKEN_CHUNK


def estimate_output_tokens(
    chunks: int, text: str, max_output_tokens: int | None, scale: float | None = None
) -> int:
    """Output tokens of a reply received as ``chunks`` pieces making ``text``.

    One token per chunk when the chunks look like tokens; otherwise from the text (at least one per
    chunk). Never above ``max_output_tokens``, which the provider cannot have exceeded.
    """
    by_chunks = chunks_are_tokens(chunks, len(text))
    tokens = chunks if by_chunks else max(chunks, estimate_tokens(text, scale))
    return min(tokens, max_output_tokens) if max_output_tokens is not None else tokens


def likely_tokens(conservative: int) -> int:
    """A conservative count scaled back to a typical one (``TYPICAL_SCALE``).

    For refusing what cannot fit a context window, where the conservative count would refuse
    requests that do fit.
    """
    return int(conservative * TYPICAL_SCALE)
