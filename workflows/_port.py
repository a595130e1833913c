"""The narrow interface of a job that its collaborators work against (budget, gates, termination,
routing, checks): what they may read and do, and never a private member of the workflow.

``JobWorkflow`` implements it; the collaborators import this module, not ``_job``, so the kernel's
modules import each other in one direction only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from temporalio import workflow
from temporalio.common import Priority

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import JobStatus, LedgerTotals
    from contracts.models import Message, ModelCallResult
    from contracts.spec import AgentSpec
    from contracts.state import JobState


class Job(Protocol):
    """A running job, as its collaborators see it."""

    job_id: str
    state: JobState
    """The job's whole state (models, detail, evidence, round, stop reason...): read and noted here."""
    in_flight: str | None
    """What runs now, as ``status`` shows it: '<agent> on <model>', '<agent> on tools: <names>'."""

    @property
    def task_priority(self) -> Priority:
        """The Temporal priority of what the job starts next (its fairness key inherited)."""
        ...

    def preempted(self) -> bool:
        """Whether the running work is to stop now: an interrupt that beats it, or an abort."""
        ...

    @property
    def totals(self) -> LedgerTotals:
        """Spend and limits so far."""
        ...

    def set_status(self, status: JobStatus) -> None:
        """Change the status and publish it (search attributes)."""
        ...

    def note_check_error(self, line: str) -> None:
        """Note a check that could not be evaluated (scored 0), for the job's explanation and evidence."""
        ...

    def deadline_left(self) -> timedelta | None:
        """What is left of the deadline (None: no deadline); ``StopJob`` once it has passed."""
        ...

    def deadline_summary(self, where: str) -> str | None:
        """The Web UI summary of a timer the deadline ends (None: no deadline), saying ``where``."""
        ...

    async def wait_for(
        self,
        condition: Callable[[], bool],
        within: timedelta | None = None,
        *,
        where: str = "while waiting",
        summary: str | None = None,
    ) -> bool:
        """Wait durably for ``condition`` (True) or ``within`` (False), under the deadline and abort;
        ``summary`` names the timer of ``within`` in the Web UI."""
        ...

    async def turn(
        self,
        agent: AgentSpec,
        messages: list[Message],
        *,
        step: str | None = None,
        max_output_tokens: int | None = None,
        output_type: str | None = None,
        deliver: bool = True,
        resume: bool = True,
        note: dict[str, Any] | None = None,
    ) -> ModelCallResult:
        """One turn of ``agent``: the whole lifecycle of its call."""
        ...
