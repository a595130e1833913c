"""How a count reads in a message a person sees: "1 call", "2 calls", written in one place."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and the noun that agrees with it: ``plural(1, "step")`` is "1 step",
    ``plural(3, "tool call")`` "3 tool calls"; ``nouns`` for a plural that is not noun + s."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
