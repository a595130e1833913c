"""The one token estimator: its conservative count, chunk counts, calibrated scales, the output cap."""

from __future__ import annotations

import pytest

from policies.tokens import (
    CALIBRATED_MARGIN,
    MAX_SCALE,
    MIN_CALIBRATION_TOKENS,
    MIN_SCALE,
    TokenSample,
    count_tokens,
    estimate_input_tokens,
    estimate_output_tokens,
    estimate_tokens,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("a of the tide", 4),  # words of up to 4 letters are a token each
        ("lighthouse", 3),  # ceil(10 / 4)
        ("1234567", 3),  # digits by threes
        ("gpt4o", 3),  # gpt, 4, o
        ("f(x): {k: v}", 10),  # f x k v, and ( ) : { : } one token each
        ("  \n\t ", 0),  # whitespace is never a token
    ],
)
def test_the_conservative_count(text: str, expected: int) -> None:
    assert count_tokens(text) == expected


def test_a_calibrated_scale_is_used_with_its_margin() -> None:
    """At 0.8 tokens per counted token, 100 counted predict 80; the estimate is 10% above."""
    text = "abcd " * 100
    assert count_tokens(text) == 100
    assert CALIBRATED_MARGIN == 1.1
    assert estimate_tokens(text, 0.8) == 88


def test_a_calibrated_scale_is_bounded() -> None:
    """Odd evidence (a provider reporting almost no tokens) cannot make text nearly free, nor a
    glitch make it dearer without end."""
    text = "abcd " * 100
    assert estimate_tokens(text, 0.01) == estimate_tokens(text, MIN_SCALE) == 28
    assert estimate_tokens(text, 50.0) == estimate_tokens(text, MAX_SCALE) == 440


def test_input_adds_role_markers_and_the_reply_primer() -> None:
    assert estimate_input_tokens("", []) == 3
    assert estimate_input_tokens("abc", ["abcdefgh"]) == 1 + 2 + 4 + 3


def test_chunks_that_look_like_tokens_count_one_each() -> None:
    """A stream of 50 chunks of 5 characters is 50 tokens, whatever its text would count."""
    assert estimate_output_tokens(chunks=50, text="word " * 50, max_output_tokens=None) == 50


@pytest.mark.parametrize("scale", [None, 0.5])
def test_chunks_holding_several_tokens_are_estimated_from_their_text(scale: float | None) -> None:
    """Ten chunks of 40 characters each carry several tokens: counted from the text."""
    text = "abcd, " * 80  # 480 characters: 80 words and 80 commas
    expected = 160 if scale is None else 88
    assert estimate_output_tokens(chunks=10, text=text, max_output_tokens=None, scale=scale) == expected


@pytest.mark.parametrize(("chunks", "text"), [(97, "x" * 300), (1, "abcd " * 500), (400, "ab" * 800)])
def test_an_output_estimate_never_passes_max_output_tokens(chunks: int, text: str) -> None:
    """The provider cannot have generated more than the call's cap, whatever the text says."""
    assert estimate_output_tokens(chunks=chunks, text=text, max_output_tokens=60) == 60


def test_a_sample_gives_a_scale_only_with_enough_evidence() -> None:
    few = TokenSample(estimated=900, tokens=MIN_CALIBRATION_TOKENS - 1)
    assert few.scale() is None
    enough = few + TokenSample(estimated=100, tokens=1)
    assert enough == TokenSample(estimated=1_000, tokens=MIN_CALIBRATION_TOKENS)
    assert enough.scale() == pytest.approx(MIN_CALIBRATION_TOKENS / 1_000)
