"""The one way a command fails for a reason outside harness: one red line on stderr, then exit."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["fail", "say_error"]

_err = Console(stderr=True)


def say_error(message: str) -> None:
    """Print ``error: message`` on stderr, on one line however wide (the message is not markup:
    a spec's ``[[sim ...]]`` or a usage line's ``[OPTIONS]`` prints as it is)."""
    line = " ".join(message.split())
    _err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and end the command with ``code`` (2: bad input)."""
    say_error(message)
    raise typer.Exit(code)
