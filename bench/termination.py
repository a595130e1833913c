"""Semantic termination against a fixed round limit, on a seeded mix of simulated jobs.

Each simulated job is a refining loop whose rounds produce a text, a score and a token cost:

- fast: the score climbs 0.12-0.25 a round to the goal (0.8);
- slow: it climbs 0.025-0.06 a round, with noise, and still reaches the goal within 20 rounds;
- plateau: it climbs, then hovers below the goal;
- oscillating: it climbs a little, then two drafts alternate (near copies each time) with a flat
  score: a livelock from a known round.

Both policies stop when the goal is met. The baseline otherwise runs to the fixed limit of 20
rounds; harness also asks the same ``ConvergenceMonitor`` the workflows use (defaults of
``ConvergenceSpec``: plateau after 3 rounds without a 0.02 gain, near-copy at 0.9 similarity).
Outcomes are drawn up front with a seeded RNG, so both policies see the same jobs.

Reports, never judges: exits 0 whatever the figures. ``python bench/termination.py [--jobs 400]``
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.spec import ConvergenceSpec
from policies.convergence import ConvergenceConfig, ConvergenceMonitor

GOAL = 0.8
LIMIT = 20
WORDS = [
    "agent",
    "budget",
    "token",
    "schedule",
    "durable",
    "workflow",
    "signal",
    "retry",
    "ledger",
    "judge",
    "draft",
    "review",
    "plan",
    "round",
    "model",
    "price",
    "share",
    "queue",
    "quota",
    "deadline",
    "goal",
    "check",
    "score",
    "cost",
    "value",
    "stop",
    "resume",
]


@dataclass
class Job:
    """One simulated job: per-round texts, scores and tokens, and where its livelock starts."""

    kind: str
    texts: list[str]
    scores: list[float]
    tokens: list[int]
    livelock_from: int | None = None  # 0-based round where the alternation begins


def draft(rng: random.Random, n: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def near_copy(rng: random.Random, text: str) -> str:
    words = text.split()
    words[rng.randrange(len(words))] = rng.choice(WORDS)  # one word changes
    return " ".join(words)


def make_job(kind: str, rng: random.Random) -> Job:
    scores: list[float] = []
    texts: list[str] = []
    score = rng.uniform(0.2, 0.35)
    livelock_from = None
    if kind == "oscillating":
        livelock_from = rng.randrange(1, 4)
        a, b = draft(rng, 80), draft(rng, 80)  # one changed word in 80: Jaccard of 3-grams ~0.93
    ceiling = rng.uniform(0.55, 0.72)
    for index in range(LIMIT):
        if kind == "fast":
            score += rng.uniform(0.12, 0.25)
        elif kind == "slow":
            score += rng.uniform(0.025, 0.06) + rng.uniform(-0.01, 0.01)
        elif kind == "plateau":
            score = min(ceiling, score + rng.uniform(0.05, 0.1)) + rng.uniform(-0.01, 0.01)
        else:
            score = score + (rng.uniform(0.03, 0.06) if livelock_from and index < livelock_from else 0.0)
        scores.append(max(0.0, min(1.0, score)))
        if livelock_from is not None and index >= livelock_from:
            base = a if (index - livelock_from) % 2 == 0 else b
            texts.append(near_copy(rng, base))
        else:
            texts.append(draft(rng))
    tokens = [rng.randint(600, 1400) for _ in range(LIMIT)]
    return Job(kind, texts, scores, tokens, livelock_from)


def baseline(job: Job) -> tuple[int, bool, int]:
    """Rounds run, goal reached, tokens: stop at the goal or at the limit."""
    for index, score in enumerate(job.scores):
        if score >= GOAL:
            return index + 1, True, sum(job.tokens[: index + 1])
    return LIMIT, False, sum(job.tokens)


def harness(job: Job, config: ConvergenceConfig) -> tuple[int, bool, int, str]:
    """Rounds run, goal reached, tokens, stop reason: goal check first, then the monitor."""
    monitor = ConvergenceMonitor(config=config)
    for index, (text, score) in enumerate(zip(job.texts, job.scores, strict=True)):
        rounds = index + 1
        verdict = monitor.observe(text, score=score)
        if score >= GOAL:
            return rounds, True, sum(job.tokens[:rounds]), "goal_met"
        if verdict is not None:
            return rounds, False, sum(job.tokens[:rounds]), verdict.reason
    return LIMIT, False, sum(job.tokens), "max_rounds"


def main(jobs: int, seed: int) -> None:
    spec = ConvergenceSpec()
    config = ConvergenceConfig(
        plateau_k=spec.plateau_rounds, epsilon=spec.epsilon, similarity_threshold=spec.similarity
    )
    rng = random.Random(seed)
    kinds = ["fast", "slow", "plateau", "oscillating"]
    suite = [make_job(kinds[i % 4], rng) for i in range(jobs)]
    base_tokens = harness_tokens = 0
    converging = false_stops = 0
    after_livelock: list[int] = []
    by_kind: dict[str, list[tuple[int, int, str]]] = {kind: [] for kind in kinds}
    for job in suite:
        b_rounds, b_goal, b_tokens = baseline(job)
        h_rounds, h_goal, h_tokens, reason = harness(job, config)
        base_tokens += b_tokens
        harness_tokens += h_tokens
        if b_goal:
            converging += 1
            false_stops += not h_goal
        if job.livelock_from is not None:
            # The cycle exists once the first draft of the pair comes back (two rounds after it starts).
            after_livelock.append(h_rounds - (job.livelock_from + 1))
        by_kind[job.kind].append((b_rounds, h_rounds, reason))
    print(f"termination bench: {jobs} jobs (seed {seed}), goal {GOAL}, fixed limit {LIMIT} rounds")
    print(f"{'kind':<12} {'baseline rounds':>16} {'harness rounds':>15}  stop reasons")
    for kind, rows in by_kind.items():
        reasons: dict[str, int] = {}
        for _, _, reason in rows:
            reasons[reason] = reasons.get(reason, 0) + 1
        mean_b = sum(r[0] for r in rows) / len(rows)
        mean_h = sum(r[1] for r in rows) / len(rows)
        print(f"{kind:<12} {mean_b:>16.2f} {mean_h:>15.2f}  {reasons}")
    print(f"tokens: harness {harness_tokens}, fixed limit {base_tokens}")
    print(
        f"converging jobs (reach the goal within {LIMIT}): {converging}, "
        f"stopped early by harness: {false_stops}"
    )
    print(f"token_ratio: {harness_tokens / base_tokens:.3f}")
    print(f"false_stop_rate: {false_stops / max(converging, 1):.4f}")
    print(f"rounds_after_livelock_max: {max(after_livelock) if after_livelock else 0}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    main(args.jobs, args.seed)
