"""The simulator's own count of requests and tokens: the independent witness the ledger is checked against."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Any

_KEYS = (
    "requests",
    "completed",
    "incomplete",
    "input_tokens",
    "output_tokens",
    "incomplete_input_tokens",
    "incomplete_output_tokens",
    "tool_call_replies",
    "tool_calls",
)


RATE_WINDOWS_S = (1, 5, 60)
MAX_ARRIVALS = 100_000
"""Arrival times kept for ``busiest`` (the newest; a bench's burst is far fewer)."""


def _busiest(arrivals: list[float], window: float) -> int:
    """The most of ``arrivals`` (sorted times) within any ``window`` seconds."""
    most, first = 0, 0
    for last, at in enumerate(arrivals):
        while at - arrivals[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


class Tally:
    """Thread-safe per-model counters.

    ``input_tokens`` and ``output_tokens`` count only completed responses (fully delivered, final
    usage included). A response cut short counts as incomplete, with its prompt in
    ``incomplete_input_tokens`` (a real provider bills the prompt of a request cut short) and the
    output tokens actually written in ``incomplete_output_tokens``. Error answers count in
    ``requests`` only. What the simulator served in all is ``input_tokens + output_tokens +
    incomplete_input_tokens + incomplete_output_tokens``. ``tool_call_replies`` counts the completed
    responses that asked for tools, ``tool_calls`` the calls they asked for.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: defaultdict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_KEYS, 0))
        self._arrivals: deque[float] = deque(maxlen=MAX_ARRIVALS)

    def request(self, model: str) -> None:
        """A request for ``model`` arrived."""
        with self._lock:
            self._arrivals.append(time.monotonic())
        self._add(model, requests=1)

    def completed(self, model: str, input_tokens: int, output_tokens: int, tool_calls: int = 0) -> None:
        """A response was fully delivered; it asked for ``tool_calls`` tool calls."""
        self._add(
            model,
            completed=1,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            tool_call_replies=int(tool_calls > 0),
            tool_calls=tool_calls,
        )

    def incomplete(self, model: str, input_tokens: int, output_tokens_sent: int) -> None:
        """A response to a prompt of ``input_tokens`` was cut short after ``output_tokens_sent``
        tokens were written."""
        self._add(
            model,
            incomplete=1,
            incomplete_input_tokens=input_tokens,
            incomplete_output_tokens=output_tokens_sent,
        )

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            self._models.clear()
            self._arrivals.clear()

    def snapshot(self) -> dict[str, Any]:
        """``{"models": {name: counters}, "total": counters, "busiest": {window: requests}}``, a
        consistent copy; ``busiest`` gives the most requests (of any model) that arrived within any
        1, 5 and 60 seconds, as a provider's rate limiter would count them."""
        with self._lock:
            models = {name: dict(c) for name, c in sorted(self._models.items())}
            arrivals = list(self._arrivals)
        total = {k: sum(c[k] for c in models.values()) for k in _KEYS}
        busiest = {str(window): _busiest(arrivals, window) for window in RATE_WINDOWS_S}
        return {"models": models, "total": total, "busiest": busiest}

    def _add(self, model: str, **deltas: int) -> None:
        with self._lock:
            counters = self._models[model]
            for key, delta in deltas.items():
                counters[key] += delta
