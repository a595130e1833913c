"""The one token estimator: chunk counts, characters, calibrated ratios and the output cap."""

from __future__ import annotations

import math

import pytest

from policies.tokens import (
    CALIBRATED_MARGIN,
    MAX_CALIBRATED_RATIO,
    MIN_CALIBRATION_TOKENS,
    TokenSample,
    estimate_input_tokens,
    estimate_output_tokens,
    estimate_tokens,
)


def test_without_evidence_three_characters_make_a_token() -> None:
    assert estimate_tokens("a" * 30) == 10
    assert estimate_tokens("a" * 31) == 11
    assert estimate_tokens("") == 0


def test_a_calibrated_ratio_is_used_with_its_margin() -> None:
    """At 4.4 characters per token, 440 characters predict 100 tokens; the estimate is 10% above."""
    assert CALIBRATED_MARGIN == 1.1
    assert estimate_tokens("x" * 440, 4.4) == 110


def test_a_calibrated_ratio_is_bounded() -> None:
    """Odd evidence (a provider reporting one token per 100 characters) cannot make text nearly free."""
    assert estimate_tokens("x" * 800, 100.0) == estimate_tokens("x" * 800, MAX_CALIBRATED_RATIO)
    assert estimate_tokens("x" * 800, MAX_CALIBRATED_RATIO) == math.ceil(800 / (8 / CALIBRATED_MARGIN))


def test_input_adds_role_markers_and_the_reply_primer() -> None:
    assert estimate_input_tokens("", []) == 3
    assert estimate_input_tokens("abc", ["abcdef"]) == 1 + 2 + 4 + 3


def test_chunks_that_look_like_tokens_count_one_each() -> None:
    """A stream of 50 chunks of 5 characters is 50 tokens, not 250 / 3."""
    assert estimate_output_tokens(chunks=50, chars=250, max_output_tokens=None) == 50


@pytest.mark.parametrize("ratio", [None, 4.0])
def test_chunks_holding_several_tokens_are_estimated_from_their_characters(ratio: float | None) -> None:
    """Ten chunks of 40 characters each carry several tokens: counted by characters, at least one per
    chunk."""
    expected = math.ceil(400 / (3 if ratio is None else ratio / CALIBRATED_MARGIN))
    assert (
        estimate_output_tokens(chunks=10, chars=400, max_output_tokens=None, chars_per_token=ratio)
        == expected
    )


@pytest.mark.parametrize(("chunks", "chars"), [(97, 300), (1, 500), (400, 1_600)])
def test_an_output_estimate_never_passes_max_output_tokens(chunks: int, chars: int) -> None:
    """The provider cannot have generated more than the call's cap, whatever the characters say."""
    assert estimate_output_tokens(chunks=chunks, chars=chars, max_output_tokens=60) == 60


def test_a_sample_gives_a_ratio_only_with_enough_evidence() -> None:
    few = TokenSample(chars=900, tokens=MIN_CALIBRATION_TOKENS - 1)
    assert few.ratio() is None
    enough = few + TokenSample(chars=100, tokens=1)
    assert enough == TokenSample(chars=1_000, tokens=MIN_CALIBRATION_TOKENS)
    assert enough.ratio() == pytest.approx(1_000 / MIN_CALIBRATION_TOKENS)
