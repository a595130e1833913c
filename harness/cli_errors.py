"""The one way a command fails for a reason outside harness: one red line on stderr, then exit."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

__all__ = ["fail"]

_err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and end the command with ``code`` (2: bad input)."""
    _err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
