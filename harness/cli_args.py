"""Arguments several commands take, each refusing bad input before anything connects (exit 2)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["JobId"]


def _job_id(value: str) -> str:
    # Temporal would answer INVALID_ARGUMENT after a connection: say it as the bad input it is.
    if not value.strip():
        raise typer.BadParameter("a job id is never empty")
    return value


JobId = Annotated[str, typer.Argument(help="Job id (= workflow id).", callback=_job_id)]
"""A job's id (its workflow id), as ``harness run`` printed it."""
