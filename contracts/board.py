"""Wire types of the team mode's task board: the coordinator's updates and the member activity.

A team job's coordinator workflow holds the board; members (child workflows) reach it through the
``harness.team_board`` activity, which sends one of the coordinator's updates (workflows cannot
send updates themselves). The same JSON works from the plain CLI, e.g. ``temporal workflow update
execute --workflow-id JOB --name post_task --input '{"agent": "me", "text": "..."}'``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from contracts.jobs import TurnRecord

BoardOp = Literal["claim", "post_task", "post_result"]
TaskState = Literal["open", "claimed", "done", "failed"]


class BoardTask(BaseModel):
    """One task on the board."""

    id: str
    text: str
    state: TaskState = "open"
    for_agent: str | None = Field(default=None, description="Only this agent may claim it; None: anyone.")
    posted_by: str | None = Field(default=None, description="The agent that posted it; None: the job.")
    context: str = Field(default="", description="What its poster said when posting it (its output).")
    claimed_by: str | None = None
    result: str = ""


class BoardRequest(BaseModel):
    """Input of the ``claim``, ``post_task`` and ``post_result`` updates (and of the activity).

    ``key`` makes a request idempotent: a retried request with a key the board has answered gets
    the same answer and changes nothing.
    """

    op: BoardOp = "claim"
    coordinator: str = Field(default="", description="The coordinator's workflow id (activity only).")
    agent: str
    key: str = ""
    task_id: str | None = Field(
        default=None,
        description="claim: this task (None: the oldest open one I may take); post_result: mine.",
    )
    text: str = Field(default="", description="post_task: the new task; post_result: the result.")
    for_agent: str | None = Field(default=None, description="post_task: who should take it.")
    context: str = ""
    failed: bool = Field(default=False, description="post_result: the task could not be done.")
    record: TurnRecord | None = Field(default=None, description="post_result: the call that did it.")


class BoardReply(BaseModel):
    """What the board answers.

    ``claim`` answers ``task`` (you hold it now), ``wait`` (nothing for you yet, but work is in
    progress that may post some: you will be woken) or ``done`` (the board is finished: leave).
    """

    ok: bool = True
    status: Literal["task", "wait", "done", "posted", "refused", "recorded"] = "recorded"
    task: BoardTask | None = None
    reason: str = ""
