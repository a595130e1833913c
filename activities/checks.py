"""Programmatic goal checks: named Python functions the worker knows, and the activity that runs them.

A check takes the text to judge and returns ``True``/``False`` or a score in [0, 1]. Register one
on the default registry and name it in a spec (``{kind: function, value: no_placeholders}``)::

    from activities.checks import DEFAULT_CHECKS

    @DEFAULT_CHECKS.register("mentions_temporal")
    def mentions_temporal(text: str) -> bool:
        return "temporal" in text.lower()

Workers import the modules listed in ``HARNESS_CHECKS`` (comma-separated) at start, so checks
defined there are registered before any job asks for them.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.names import RUN_CHECK_ACTIVITY
from policies.goals import CheckOutcome, RunCheckRequest

CheckFunction = Callable[[str], bool | float]


class CheckRegistry:
    """Named check functions."""

    def __init__(self) -> None:
        self._checks: dict[str, CheckFunction] = {}

    def register(self, name: str) -> Callable[[CheckFunction], CheckFunction]:
        """Decorator: register ``function`` under ``name`` (a second registration replaces it)."""

        def decorate(function: CheckFunction) -> CheckFunction:
            self._checks[name] = function
            return function

        return decorate

    def get(self, name: str) -> CheckFunction:
        """The check called ``name``; ``KeyError`` naming the known ones otherwise."""
        try:
            return self._checks[name]
        except KeyError:
            raise KeyError(f"no check named {name!r}; known: {sorted(self._checks)}") from None

    def names(self) -> list[str]:
        """Registered check names."""
        return sorted(self._checks)


DEFAULT_CHECKS = CheckRegistry()


@DEFAULT_CHECKS.register("no_placeholders")
def no_placeholders(text: str) -> bool:
    """No TODO, TBD, XXX, lorem ipsum or [placeholder] left in the text."""
    return re.search(r"\b(TODO|TBD|XXX)\b|lorem ipsum|\[[a-z _-]+\]", text, re.IGNORECASE) is None


@DEFAULT_CHECKS.register("sentences_end")
def sentences_end(text: str) -> bool:
    """The text ends a sentence (it was not cut off at the token limit)."""
    return text.rstrip().endswith((".", "!", "?", '"', ")"))


def load_check_modules(spec: str | None = None) -> list[str]:
    """Import the modules named in ``HARNESS_CHECKS`` (or ``spec``) so their checks register."""
    names = [
        name.strip() for name in (spec or os.environ.get("HARNESS_CHECKS", "")).split(",") if name.strip()
    ]
    for name in names:
        importlib.import_module(name)
    return names


class CheckActivities:
    """Holds the registry the worker was given (the default one unless a test passes its own)."""

    def __init__(self, registry: CheckRegistry | None = None) -> None:
        self.registry = registry or DEFAULT_CHECKS

    @activity.defn(name=RUN_CHECK_ACTIVITY)
    async def run_check(self, request: RunCheckRequest) -> CheckOutcome:
        """Run the check; an unknown name is the spec's fault, so it is not retried."""
        try:
            function = self.registry.get(request.name)
        except KeyError as error:
            raise ApplicationError(str(error.args[0]), type="UnknownCheck", non_retryable=True) from None
        try:
            value = function(request.text)
            score = float(value)
        except Exception as error:
            # The check itself is broken for this text: retrying runs the same code on the same text.
            raise ApplicationError(
                f"check {request.name!r} raised {type(error).__name__}: {str(error)[:200]}",
                type="CheckRaised",
                non_retryable=True,
            ) from None
        if not 0.0 <= score <= 1.0:
            raise ApplicationError(
                f"check {request.name!r} returned {value!r}; a check returns a bool or a score in [0, 1]",
                type="BadCheckResult",
                non_retryable=True,
            )
        return CheckOutcome(
            kind="function",
            score=score,
            passed=score >= 1.0 if isinstance(value, bool) else score >= 0.5,
            detail=request.name,
        )
