"""The one way a command fails for a reason outside harness: one red line on stderr, then exit."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

__all__ = ["fail"]

_err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and end the command with ``code`` (2: bad input)."""
    # soft_wrap: a line longer than the terminal (or than 80 columns, piped) stays one line; the
    # message is text, not markup (a '[draft]' in a path is no style).
    _err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    raise typer.Exit(code)
