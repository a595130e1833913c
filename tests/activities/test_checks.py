"""The built-in programmatic goal checks a worker registers by default."""

from __future__ import annotations

from activities.checks import DEFAULT_CHECKS


def test_builtin_checks() -> None:
    """The built-in checks catch placeholders and cut-off text."""
    assert DEFAULT_CHECKS.get("no_placeholders")("A finished note.") is True
    assert DEFAULT_CHECKS.get("no_placeholders")("Intro TODO later") is False
    assert DEFAULT_CHECKS.get("sentences_end")("It ends.") is True
    assert DEFAULT_CHECKS.get("sentences_end")("It was cut") is False
