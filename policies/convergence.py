"""Semantic termination: stop a refining loop that has stopped making progress, or no longer pays.

Agents can stay busy without converging: a writer and an editor who alternate "too formal" and
"too dry" are a livelock, sustained activity with zero progress and a growing bill.
``ConvergenceMonitor`` watches one loop round by round, from the outputs, an optional critique
stream, optional judge scores in [0, 1], and the cost of each round, and returns a ``Verdict`` when
going on is pointless:

- ``livelock``: the output (or the critique) is a near copy of the one 2..``max_cycle`` rounds
  back, the rounds in between differ from it, and the score did not rise over the cycle.
- ``plateau``: the score has not risen by ``epsilon`` for ``plateau_k`` scored rounds ("flat"), or
  the output has not changed for ``plateau_k`` rounds without the score rising ("stalled").
- ``not_worth_it``: the expected gain of one more round, valued at ``value_per_point_usd``, is
  worth less than the expected cost of that round.

When several hold in the same round the first in that order is reported. No verdict is given
before ``min_rounds`` rounds. Rounds are numbered from 0. The monitor is pure (no clock, no
randomness, no I/O) and its state round-trips through JSON, so it can ride across continue-as-new.
It keeps only the last few texts it needs, plus the best output.

Text similarity is the Jaccard index of word ``shingle_words``-gram shingles (sets of consecutive
word triples by default): case-folded ``\\w+`` words, each run of digits folded to ``0`` so round
counters such as "v3"/"v5" do not make a copy look new. It is O(length), deterministic and needs
no model. At the default threshold 0.9, one changed word in a text of n words gives about
(n - 5) / (n + 1), so a "near copy" means at most one word edit per ~60 words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "ConvergenceConfig",
    "ConvergenceMonitor",
    "Evidence",
    "StopKind",
    "Verdict",
    "text_similarity",
]

# Equal to contracts.jobs.StopReason values; policies import nothing of ours.
StopKind = Literal["plateau", "livelock", "not_worth_it"]
Stream = Literal["output", "critique"]

# Scores are differences of floats: 0.12 - 0.10 is 0.01999..., which must still count as 0.02.
_TOLERANCE = 1e-9
_WORD = re.compile(r"\w+")
_DIGITS = re.compile(r"\d+")
_TRAJECTORY = 12  # scores reported in evidence


def _shingles(text: str, size: int) -> set[tuple[str, ...]]:
    words = [_DIGITS.sub("0", word) for word in _WORD.findall(text.casefold())]
    if len(words) <= size:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def text_similarity(a: str, b: str, shingle_words: int = 3) -> float:
    """Jaccard similarity of the two texts' word shingles, in [0, 1]; two empty texts are identical."""
    first, second = _shingles(a, shingle_words), _shingles(b, shingle_words)
    if not first and not second:
        return 1.0
    return len(first & second) / len(first | second)


class ConvergenceConfig(BaseModel):
    """When a refining loop counts as stuck, and what a point of score is worth."""

    plateau_k: int = Field(default=3, ge=1, description="Rounds without improvement that make a plateau.")
    epsilon: float = Field(
        default=0.02, ge=0, le=1, description="Least score rise that counts as improvement."
    )
    similarity_threshold: float = Field(
        default=0.9, gt=0, le=1, description="Text similarity at or above which two texts are near copies."
    )
    shingle_words: int = Field(default=3, ge=1, description="Words per shingle in the similarity measure.")
    max_cycle: int = Field(default=3, ge=2, description="Longest cycle looked for, in rounds (at least 2).")
    cycle_confirmations: int = Field(
        default=1,
        ge=1,
        description="Consecutive rounds that must each repeat the round a cycle-length back. 1 stops at "
        "the first return: two rounds spent to end where the loop already was is no progress.",
    )
    min_rounds: int = Field(default=2, ge=1, description="Rounds observed before any verdict.")
    value_per_point_usd: Decimal | None = Field(
        default=None, ge=0, description="What a rise of 1.0 in score is worth; None disables the EV cutoff."
    )
    ev_window: int = Field(
        default=3, ge=1, description="Recent best-score gains the EV estimate averages; needs that many."
    )
    ev_decay: float = Field(
        default=0.5, gt=0, le=1, description="Weight ratio between a gain and the next more recent one."
    )


class Evidence(BaseModel):
    """The numbers behind a verdict, for the transcript and the UI."""

    round: int = Field(description="The round that triggered the verdict.")
    first_round: int = Field(description="Round of the first entry in ``scores``.")
    scores: list[float | None] = Field(description="Recent score trajectory, oldest first.")
    best_round: int | None = None
    best_score: float | None = None
    rounds_without_improvement: int | None = None
    level: float | None = Field(
        default=None, description="Score at the last improvement of at least epsilon."
    )
    stalled: bool = Field(default=False, description="Plateau because the output stopped changing.")
    stream: Stream | None = Field(default=None, description="Which text stream repeated.")
    similarity: float | None = Field(default=None, description="Least similarity among the repeats.")
    cycle_length: int | None = None
    cycle_start: int | None = Field(default=None, description="First round of the repeated pattern.")
    expected_gain: float | None = Field(default=None, description="Estimated score gain of one more round.")
    break_even_gain: float | None = Field(default=None, description="Gain that would pay for one more round.")
    gain_value_usd: Decimal | None = None
    expected_cost_usd: Decimal | None = None


class Verdict(BaseModel):
    """A decision to stop, with its reason, a sentence for people and the evidence."""

    reason: StopKind
    explanation: str
    evidence: Evidence


class ConvergenceMonitor(BaseModel):
    """Round-by-round convergence state of one refining loop; call ``observe`` after each round.

    Best-of tracking: ``best_index``/``best_output`` is the round with the highest score, the
    earliest among equals (a later equal score adds nothing, and in a livelock it is churn). Rounds
    without a score never beat a scored round; until any round is scored, the best is the latest.
    Return ``best_output`` when stopping, not the last output.
    """

    config: ConvergenceConfig = Field(default_factory=ConvergenceConfig)
    scores: list[float | None] = Field(default_factory=list, description="Every round's score.")
    costs: list[Decimal | None] = Field(default_factory=list, description="Every round's cost in USD.")
    recent_outputs: list[str] = Field(default_factory=list, description="The last few outputs, oldest first.")
    recent_critiques: list[str | None] = Field(
        default_factory=list, description="Aligned with recent_outputs."
    )
    best_index: int | None = None
    best_score: float | None = None
    best_output: str | None = None
    level: float | None = Field(
        default=None, description="Score at the last improvement of at least epsilon."
    )
    since_improvement: int = Field(default=0, ge=0, description="Scored rounds since that improvement.")
    stalled_rounds: int = Field(
        default=0, ge=0, description="Consecutive unchanged outputs, score not rising."
    )

    @property
    def rounds(self) -> int:
        """Rounds observed so far."""
        return len(self.scores)

    def observe(
        self,
        output: str,
        score: float | None = None,
        critique: str | None = None,
        cost_usd: Decimal | None = None,
        expected_cost_usd: Decimal | None = None,
    ) -> Verdict | None:
        """Record one round and say whether to stop.

        ``expected_cost_usd`` is the cost of one more round if the caller knows it better (from the
        ledger); otherwise the mean of the last ``ev_window`` known round costs is used.
        """
        if score is not None and not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"score must be in [0, 1] or None, got {score!r}")
        index = self.rounds
        similar_to_previous = bool(self.recent_outputs) and self._similar(self.recent_outputs[-1], output)
        self.scores.append(score)
        self.costs.append(cost_usd)
        keep = self.config.max_cycle + self.config.cycle_confirmations
        self.recent_outputs = [*self.recent_outputs, output][-keep:]
        self.recent_critiques = [*self.recent_critiques, critique][-keep:]

        if score is not None and (self.best_score is None or score > self.best_score):
            self.best_index, self.best_score, self.best_output = index, score, output
        elif self.best_score is None:
            self.best_index, self.best_output = index, output

        improved = score is not None and (
            self.level is None or score >= self.level + self.config.epsilon - _TOLERANCE
        )
        if improved:
            self.level, self.since_improvement = score, 0
        elif score is not None:
            self.since_improvement += 1
        self.stalled_rounds = self.stalled_rounds + 1 if similar_to_previous and not improved else 0

        if self.rounds < self.config.min_rounds:
            return None
        return self._livelock() or self._plateau() or self._not_worth_it(expected_cost_usd)

    def expected_gain(self) -> float | None:
        """Estimated rise of the best score from one more round; None until ``ev_window`` gains exist.

        The gains are the increments of the running best score between consecutive scored rounds
        (never negative: a worse round gains 0, since the best is what gets returned). The estimate
        is their exponentially weighted mean over the last ``ev_window``, the most recent weighing
        most (weights 1, ev_decay, ev_decay**2, ...), clamped to the range of those gains and to the
        headroom left below 1.0. A mean lies between its smallest and largest term, so a loop
        whose recent gains each pay for a round is never judged not worth it.
        """
        best: float | None = None
        gains: list[float] = []
        for score in self.scores:
            if score is None:
                continue
            if best is not None:
                gains.append(max(0.0, score - best))
            best = score if best is None else max(best, score)
        window = self.config.ev_window
        if best is None or len(gains) < window:
            return None
        recent = gains[-window:]
        weights = [self.config.ev_decay**age for age in range(window)]
        mean = math.fsum(w * g for w, g in zip(weights, reversed(recent), strict=True)) / math.fsum(weights)
        return min(max(mean, min(recent)), max(recent), 1.0 - best)

    def _similar(self, a: str, b: str) -> bool:
        return self._similarity(a, b) >= self.config.similarity_threshold

    def _similarity(self, a: str, b: str) -> float:
        return text_similarity(a, b, self.config.shingle_words)

    def _evidence(self, **fields: object) -> Evidence:
        first = max(0, self.rounds - _TRAJECTORY)
        return Evidence.model_validate(
            {
                "round": self.rounds - 1,
                "first_round": first,
                "scores": self.scores[first:],
                "best_round": self.best_index,
                "best_score": self.best_score,
                **fields,
            }
        )

    def _score_rose(self, span: int) -> bool:
        """Did the latest score beat every score of the ``span`` rounds before it by epsilon?"""
        latest = self.scores[-1]
        earlier = [s for s in self.scores[-1 - span : -1] if s is not None]
        if latest is None or not earlier:
            return False
        return latest >= max(earlier) + self.config.epsilon - _TOLERANCE

    def _cycle(self, texts: Sequence[str | None], length: int) -> float | None:
        """Least repeat similarity if the last rounds of ``texts`` repeat with period ``length``."""
        confirmations = self.config.cycle_confirmations
        if len(texts) < length + confirmations:
            return None
        least = 1.0
        for back in range(confirmations):
            now = texts[-1 - back]
            before = texts[-1 - back - length]
            between = texts[len(texts) - back - length : len(texts) - 1 - back]
            if now is None or before is None or any(t is None for t in between):
                return None
            similarity = self._similarity(now, before)
            if similarity < self.config.similarity_threshold:
                return None
            # A copy of the previous round is a stall, not a cycle; nor may a shorter cycle hide inside.
            if any(self._similar(now, t) for t in between if t is not None):
                return None
            least = min(least, similarity)
        return least

    def _livelock(self) -> Verdict | None:
        streams: list[tuple[Stream, Sequence[str | None]]] = [
            ("output", self.recent_outputs),
            ("critique", self.recent_critiques),
        ]
        for length in range(2, self.config.max_cycle + 1):
            span = length + self.config.cycle_confirmations - 1
            if self._score_rose(span):
                continue
            for stream, texts in streams:
                similarity = self._cycle(texts, length)
                if similarity is None:
                    continue
                now, start = self.rounds - 1, self.rounds - 1 - span
                return Verdict(
                    reason="livelock",
                    explanation=(
                        # Rounds are counted from 1 in what people read; evidence keeps 0-based indices.
                        f"the {stream} of round {now + 1} repeats round {now - length + 1} "
                        f"(similarity {similarity:.2f}): a {length}-round cycle since round {start + 1}, "
                        f"and the score is not rising"
                    ),
                    evidence=self._evidence(
                        stream=stream, similarity=similarity, cycle_length=length, cycle_start=start
                    ),
                )
        return None

    def _plateau(self) -> Verdict | None:
        k = self.config.plateau_k
        if self.stalled_rounds >= k:
            return Verdict(
                reason="plateau",
                explanation=f"the output is unchanged for {self.stalled_rounds} rounds, the score not rising",
                evidence=self._evidence(stalled=True, rounds_without_improvement=self.stalled_rounds),
            )
        if self.since_improvement >= k and self.level is not None:
            return Verdict(
                reason="plateau",
                explanation=(
                    f"no score rise of {self.config.epsilon} above {self.level:.3f} "
                    f"in {self.since_improvement} scored rounds"
                ),
                evidence=self._evidence(rounds_without_improvement=self.since_improvement, level=self.level),
            )
        return None

    def _expected_cost(self, given: Decimal | None) -> Decimal | None:
        if given is not None:
            return given
        known = [cost for cost in self.costs if cost is not None][-self.config.ev_window :]
        return sum(known, Decimal(0)) / len(known) if known else None

    def _not_worth_it(self, expected_cost_usd: Decimal | None) -> Verdict | None:
        value = self.config.value_per_point_usd
        cost = self._expected_cost(expected_cost_usd)
        gain = self.expected_gain()
        if value is None or cost is None or gain is None or cost <= 0:
            return None
        break_even = float(cost / value) if value > 0 else math.inf
        if gain >= break_even - _TOLERANCE:
            return None
        gain_value = Decimal(f"{gain:.12g}") * value
        return Verdict(
            reason="not_worth_it",
            explanation=(
                f"expected gain {gain:.4f} points x ${value}/point = ${gain_value:.4f} "
                f"is less than ${cost:.4f}, the expected cost of another round"
            ),
            evidence=self._evidence(
                expected_gain=gain,
                break_even_gain=break_even,
                gain_value_usd=gain_value,
                expected_cost_usd=cost,
            ),
        )
