"""Semantic termination: plateau, livelock, best-of and the expected-value cutoff."""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.convergence import ConvergenceConfig, ConvergenceMonitor, Verdict, text_similarity

VOCAB = [c + v for c in "bcdfghjklmnprstvz" for v in ("a", "e", "i", "o", "u", "ar", "en", "ol")]
CASUAL = "Draft (casual): So, the launch post? Here's the deal, plain and simple, no fuss at all."
FORMAL = "Draft (formal): This document examines the launch post with due rigour and precision."
TOO_FORMAL = "This is too formal; loosen it up."
TOO_DRY = "Now it is too dry; it needs more energy."


def sentence(seed: int, words: int = 20) -> str:
    """A reproducible text of random words; two different seeds give unrelated texts."""
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def feed(monitor: ConvergenceMonitor, rounds: Sequence[tuple[str, float | None]]) -> list[Verdict | None]:
    return [monitor.observe(text, score) for text, score in rounds]


def first_verdict(verdicts: list[Verdict | None]) -> tuple[int, Verdict] | None:
    return next(((i, v) for i, v in enumerate(verdicts) if v is not None), None)


seeds = st.integers(min_value=0, max_value=10**9)


# --- similarity ------------------------------------------------------------------------------------


def test_similarity_measure() -> None:
    """Similarity is 1 for copies (ignoring case, punctuation and digit runs) and low for different drafts."""
    assert text_similarity(CASUAL, CASUAL) == 1.0
    assert text_similarity("Draft v3: The Plan, today.", "draft v5 the plan today") == 1.0
    assert text_similarity(CASUAL, FORMAL) < 0.2
    assert text_similarity("", "") == 1.0 and text_similarity("", "word") == 0.0
    long_text = sentence(1, 120)
    one_word_changed = long_text.rsplit(" ", 1)[0] + " zzzz"
    assert text_similarity(long_text, one_word_changed) >= 0.9


# --- steady rise and plateau ------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    start=st.floats(min_value=0.0, max_value=0.3),
    steps=st.lists(st.floats(min_value=0.02, max_value=0.1), min_size=1, max_size=40),
    texts=st.lists(st.text(max_size=60), min_size=41, max_size=41, unique=True),
)
def test_steady_rise_never_stops_early(start: float, steps: list[float], texts: list[str]) -> None:
    """Scores that rise by at least epsilon every round, with distinct texts, never trigger a verdict."""
    monitor = ConvergenceMonitor()
    score = start
    assert monitor.observe(texts[0], score) is None
    for text, step in zip(texts[1:], steps, strict=False):
        if score + step > 1.0:
            break
        score += step
        assert monitor.observe(text, score) is None


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(min_value=1, max_value=6),
    level=st.floats(min_value=0.1, max_value=0.9),
    noise=st.lists(st.floats(min_value=-0.3, max_value=0.0099), min_size=12, max_size=12),
    seed=seeds,
)
def test_flat_line_stops_with_plateau_after_exactly_k_rounds(
    k: int, level: float, noise: list[float], seed: int
) -> None:
    """A score that never rises by epsilon above its first value stops with plateau exactly k rounds later."""
    monitor = ConvergenceMonitor(config=ConvergenceConfig(plateau_k=k, min_rounds=1))
    rounds = [(sentence(seed + i), level if i == 0 else max(0.0, level + n)) for i, n in enumerate(noise)]
    found = first_verdict(feed(monitor, rounds))
    assert found is not None
    index, verdict = found
    assert (index, verdict.reason) == (k, "plateau")
    assert verdict.evidence.rounds_without_improvement == k and not verdict.evidence.stalled
    scores = [score for _, score in rounds]
    assert monitor.best_index == scores.index(max(scores))


def test_unchanged_output_without_judge_is_a_stalled_plateau() -> None:
    """With no scores at all, an output that stops changing is a stalled plateau after k rounds."""
    monitor = ConvergenceMonitor()
    verdicts = feed(monitor, [(sentence(1), None), (sentence(2), None)] + [(sentence(3), None)] * 5)
    found = first_verdict(verdicts)
    assert found is not None
    index, verdict = found
    assert (index, verdict.reason, verdict.evidence.stalled) == (5, "plateau", True)
    assert monitor.best_index == 6  # nothing scored: the latest is the best we know


def test_no_verdict_before_min_rounds() -> None:
    """Whatever the signals, nothing is decided before min_rounds rounds."""
    monitor = ConvergenceMonitor(config=ConvergenceConfig(plateau_k=1, min_rounds=5))
    verdicts = feed(monitor, [(sentence(i), 0.5) for i in range(6)])
    assert verdicts[:4] == [None] * 4 and verdicts[4] is not None


# --- livelock -------------------------------------------------------------------------------------------


def rising_prefix(length: int, seed: int) -> list[tuple[str, float | None]]:
    return [(sentence(seed + 1000 + i), 0.1 + 0.1 * i) for i in range(length)]


@settings(max_examples=60, deadline=None)
@given(prefix=st.integers(min_value=0, max_value=4), seed=seeds, near_copies=st.booleans())
def test_two_cycle_is_caught_within_two_rounds_of_its_start(
    prefix: int, seed: int, near_copies: bool
) -> None:
    """An A, B, A, B cycle of outputs at a flat score is a livelock by the first return of A."""
    a, b = sentence(seed, 120), sentence(seed + 1, 120)
    a2 = a.rsplit(" ", 1)[0] + " zzzz" if near_copies else a
    flat = 0.1 + 0.1 * prefix
    monitor = ConvergenceMonitor()
    rounds = [*rising_prefix(prefix, seed), (a, flat), (b, flat), (a2, flat), (b, flat), (a, flat)]
    found = first_verdict(feed(monitor, rounds))
    assert found is not None
    index, verdict = found
    assert verdict.reason == "livelock"
    assert verdict.evidence.cycle_start == prefix and index <= prefix + 2
    assert verdict.evidence.cycle_length == 2 and verdict.evidence.stream == "output"
    assert verdict.evidence.similarity is not None and verdict.evidence.similarity >= 0.9


@settings(max_examples=60, deadline=None)
@given(prefix=st.integers(min_value=0, max_value=4), seed=seeds)
def test_three_cycle_is_caught_at_its_first_return(prefix: int, seed: int) -> None:
    """An A, B, C, A cycle at a flat score is a livelock of length 3 as soon as A comes back."""
    a, b, c = (sentence(seed + i, 30) for i in range(3))
    flat = 0.1 + 0.1 * prefix
    monitor = ConvergenceMonitor(config=ConvergenceConfig(plateau_k=5))
    rounds = [*rising_prefix(prefix, seed), (a, flat), (b, flat), (c, flat), (a, flat), (b, flat)]
    found = first_verdict(feed(monitor, rounds))
    assert found is not None
    index, verdict = found
    assert (index, verdict.reason) == (prefix + 3, "livelock")
    assert verdict.evidence.cycle_length == 3 and verdict.evidence.cycle_start == prefix


def test_writer_editor_oscillation_is_caught() -> None:
    """The casual/formal writer-editor loop is a livelock, through the critiques or the drafts alone."""
    drafts = [sentence(1), CASUAL, FORMAL, CASUAL, FORMAL]
    scores = [0.4, 0.5, 0.5, 0.5, 0.5]
    critiques = [TOO_FORMAL, TOO_DRY, TOO_FORMAL, TOO_DRY, TOO_FORMAL]

    with_critiques = ConvergenceMonitor()
    found = first_verdict(
        [with_critiques.observe(d, s, critique=c) for d, s, c in zip(drafts, scores, critiques, strict=True)]
    )
    assert found is not None and found[0] == 2
    assert found[1].reason == "livelock" and found[1].evidence.stream == "critique"

    drafts_only = ConvergenceMonitor()
    found = first_verdict(feed(drafts_only, list(zip(drafts, scores, strict=True))))
    assert found is not None and found[0] == 3
    assert found[1].reason == "livelock" and found[1].evidence.stream == "output"
    assert found[1].evidence.cycle_start == 1
    assert drafts_only.best_output == CASUAL and drafts_only.best_index == 1


def test_a_return_with_a_rising_score_is_not_a_livelock() -> None:
    """Coming back to an earlier text is not a livelock while the score still rises by epsilon."""
    a, b = sentence(1), sentence(2)
    monitor = ConvergenceMonitor()
    verdicts = feed(monitor, [(a, 0.1), (b, 0.2), (a, 0.3), (b, 0.4), (a, 0.5)])
    assert verdicts == [None] * 5


def test_unchanged_text_is_not_reported_as_a_cycle() -> None:
    """A text repeated verbatim round after round is a stall (plateau), never a livelock."""
    monitor = ConvergenceMonitor()
    verdicts = feed(monitor, [(sentence(1), 0.5)] * 4)
    found = first_verdict(verdicts)
    assert found is not None and found[0] == 3
    assert found[1].reason == "plateau" and found[1].evidence.stalled


# --- best of ---------------------------------------------------------------------------------------------


def test_best_round_is_returned_not_the_last() -> None:
    """After a regression the monitor keeps the best-scoring round, the earliest among equal scores."""
    monitor = ConvergenceMonitor(config=ConvergenceConfig(plateau_k=10))
    texts = [sentence(i) for i in range(6)]
    feed(monitor, list(zip(texts, [None, 0.3, 0.8, 0.5, 0.8, 0.2], strict=True)))
    assert (monitor.best_index, monitor.best_score, monitor.best_output) == (2, 0.8, texts[2])


# --- expected value -----------------------------------------------------------------------------------


def crawl(monitor: ConvergenceMonitor, step: float, rounds: int, cost: Decimal) -> list[Verdict | None]:
    return [monitor.observe(sentence(i), 0.1 + step * i, cost_usd=cost) for i in range(rounds)]


def test_ev_cutoff_stops_a_crawl_that_does_not_pay() -> None:
    """Gains of 0.03 a round at $1 a point do not pay a $0.10 round: stop as not_worth_it once measured."""
    monitor = ConvergenceMonitor(config=ConvergenceConfig(value_per_point_usd=Decimal("1")))
    found = first_verdict(crawl(monitor, 0.03, 10, Decimal("0.10")))
    assert found is not None
    index, verdict = found
    assert (index, verdict.reason) == (3, "not_worth_it")
    assert verdict.evidence.expected_gain == pytest.approx(0.03)
    assert verdict.evidence.break_even_gain == pytest.approx(0.1)
    assert verdict.evidence.expected_cost_usd == Decimal("0.10")


def test_ev_cutoff_lets_a_paying_crawl_run() -> None:
    """The same crawl at $10 a point pays for each round and is never stopped."""
    monitor = ConvergenceMonitor(config=ConvergenceConfig(value_per_point_usd=Decimal("10")))
    assert crawl(monitor, 0.03, 25, Decimal("0.10")) == [None] * 25


def test_ev_cutoff_uses_the_callers_cost_estimate() -> None:
    """An expected cost passed in by the caller overrides the mean of the recorded round costs."""
    monitor = ConvergenceMonitor(config=ConvergenceConfig(value_per_point_usd=Decimal("10")))
    crawl(monitor, 0.03, 4, Decimal("0.10"))
    verdict = monitor.observe(sentence(99), 0.1 + 0.03 * 4, expected_cost_usd=Decimal("2"))
    assert verdict is not None and verdict.reason == "not_worth_it"


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.floats(min_value=0.02, max_value=0.05), min_size=3, max_size=15),
    value=st.integers(min_value=1, max_value=500),
    margin=st.floats(min_value=0.5, max_value=1.0),
)
def test_ev_cutoff_never_stops_a_job_whose_gains_pay(steps: list[float], value: int, margin: float) -> None:
    """If every recent gain is worth at least the round's cost, the EV cutoff never fires."""
    cost = Decimal(repr(min(steps) * value * margin))
    monitor = ConvergenceMonitor(config=ConvergenceConfig(value_per_point_usd=Decimal(value)))
    score = 0.1
    assert monitor.observe("start", score, cost_usd=cost) is None
    for i, step in enumerate(steps):
        score += step
        assert monitor.observe(sentence(i), score, cost_usd=cost) is None


# --- JSON state ----------------------------------------------------------------------------------------


def test_monitor_state_round_trips_through_json() -> None:
    """A monitor restored from JSON equals the original and reaches the same verdicts afterwards."""
    config = ConvergenceConfig(value_per_point_usd=Decimal("2.5"), plateau_k=4)
    monitor = ConvergenceMonitor(config=config)
    for i, (score, critique) in enumerate([(0.2, TOO_FORMAL), (None, None), (0.5, TOO_DRY)]):
        monitor.observe(sentence(i), score, critique=critique, cost_usd=Decimal("0.013"))
    restored = ConvergenceMonitor.model_validate_json(monitor.model_dump_json())
    assert restored == monitor
    rest = [(CASUAL, 0.5), (FORMAL, 0.5), (CASUAL, 0.5), (FORMAL, 0.5)]
    assert feed(restored, rest) == feed(monitor, rest)
    assert restored == monitor


def test_verdict_round_trips_through_json() -> None:
    """A verdict, evidence included, survives JSON unchanged."""
    monitor = ConvergenceMonitor(config=ConvergenceConfig(value_per_point_usd=Decimal("1")))
    verdict = first_verdict(crawl(monitor, 0.03, 10, Decimal("0.10")))
    assert verdict is not None
    assert Verdict.model_validate_json(verdict[1].model_dump_json()) == verdict[1]


def test_scores_outside_zero_to_one_are_refused() -> None:
    """A score outside [0, 1] (or NaN) is a caller bug and raises."""
    monitor = ConvergenceMonitor()
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError):
            monitor.observe("text", bad)
