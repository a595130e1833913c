"""The ``harness.team_board`` activity: a team member's door to its coordinator's task board.

Workflows cannot send updates to other workflows, so a member (a child workflow) claims tasks and
posts follow-ups and results through this activity, which sends the coordinator's update of the
same name. The request's ``key`` is also the update id, and the board answers a key it has seen
with its first answer, so a retried attempt never claims or posts twice.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError

from contracts.board import BoardReply, BoardRequest
from contracts.names import TEAM_BOARD_ACTIVITY

__all__ = ["TeamBoardActivities"]


class TeamBoardActivities:
    """Holds the Temporal client the updates go through."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name=TEAM_BOARD_ACTIVITY)
    async def team_board(self, request: BoardRequest) -> BoardReply:
        """Send ``request.op`` to the coordinator; a refusal by its validator is an answer, not an error."""
        handle = self.client.get_workflow_handle(request.coordinator)
        try:
            reply: BoardReply = await handle.execute_update(
                request.op, request, id=request.key or None, result_type=BoardReply
            )
        except WorkflowUpdateFailedError as error:
            return BoardReply(ok=False, status="refused", reason=str(error.cause))
        return reply
