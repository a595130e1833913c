"""Peer-to-peer team, the decentralised discipline: a coordinator holds a task board, members pull work.

The coordinator (``TeamJob``) owns the board and starts one member child workflow
(``TeamMemberJob``, id ``{job id}--{agent}``) per agent. Members pick their own work: each claims
a task through the coordinator's ``claim`` update, does it in one turn, and posts the result with
``post_result``; lines of a result that start with ``FOLLOW-UP:`` become new open tasks (up to
``team.max_tasks`` in all), and ``post_task`` adds one directly. Workflows cannot send updates, so
members reach the board through the ``harness.team_board`` activity.

A task is never claimed twice: ``claim`` hands out an open task and marks it claimed in the same
synchronous handler, and a request key already answered gets its first answer again. A member with
nothing to claim sleeps until the coordinator signals ``wake`` (a task was posted) or ``close``.
The job ends, ``completed``, when no task is open and none is being worked on; each member's spend
is charged to the coordinator when it returns. Outputs map task id to result.

A member continues as new between two tasks when the server suggests it (or after ``turns_per_run``
turns of one run), carrying its results, its claim count and whether the board has closed in
``JobState.member``; the coordinator keeps its child handle (a signal reaches the newest run). The
coordinator does not continue as new: its board holds at most ``team.max_tasks`` tasks (1000), and
each adds a bounded handful of events (a claim, a result, a wake per member).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.board import BoardReply, BoardRequest, BoardTask
    from contracts.controls import AbortRequest
    from contracts.display import job_details, job_summary
    from contracts.jobs import JobResult, StopReason
    from contracts.models import Message
    from contracts.state import JobInput, MemberState
    from contracts.words import plural

from workflows._activities import TEAM_BOARD
from workflows._children import absorb_ledger, child_input, child_spec, end_children
from workflows._job import JobWorkflow, StopJob
from workflows._job_errors import refusal

FOLLOW_UP = "FOLLOW-UP:"
TASK_PROMPT = "{text}\n\nThis task is part of a team's work on: {task}"


def follow_ups(text: str) -> list[str]:
    """The follow-up tasks a result posts: its lines that start with ``FOLLOW-UP:``."""
    lines = (line.strip() for line in text.splitlines())
    return [line[len(FOLLOW_UP) :].strip() for line in lines if line.startswith(FOLLOW_UP)]


@workflow.defn(name="TeamMemberJob")
class TeamMemberJob(JobWorkflow):
    """One agent of a team: claims tasks from its parent's board until the board closes."""

    mode = "team-member"

    @workflow.init
    def __init__(self, job_input: JobInput) -> None:
        super().__init__(job_input)
        if self.state.member is None:
            self.state.member = MemberState()
        self.member = self.state.member
        self.woken = False

    @workflow.run
    async def run(self, job_input: JobInput) -> JobResult:
        """Claim, work, post; sleep when nothing is open; leave when the coordinator closes the board."""
        spec = self.spec
        parent = workflow.info().parent
        assert parent is not None, "a team member runs as a child of its TeamJob"
        agent = spec.agents[0]
        member = self.member
        outputs = member.outputs
        turns_before = len(self.state.turns)
        try:
            await self.start_job()  # a worker-side error (unknown price, say) ends the job failed
            while not member.closed:
                if self.should_continue_as_new(len(self.state.turns) - turns_before, spec.turns_per_run):
                    await self.continue_as_new()
                self.woken = False  # before the claim, so a wake that races the refusal is kept
                member.requests += 1
                reply = await self._board(
                    BoardRequest(
                        op="claim",
                        coordinator=parent.workflow_id,
                        agent=agent.name,
                        key=f"c{member.requests}",
                    )
                )
                if reply.status != "task" or reply.task is None:
                    self.state.step = "waiting for work"
                    await self.wait_for(lambda: self.woken or member.closed)
                    continue
                task = reply.task
                self.state.step = task.id
                prompt = TASK_PROMPT.format(text=task.text, task=spec.task)
                try:
                    result = await self.turn(agent, [Message(role="user", content=prompt)], step=task.id)
                except StopJob as stop:
                    await self._post(parent.workflow_id, agent.name, task.id, stop.explanation, failed=True)
                    raise
                outputs[task.id] = result.text
                self.state.steps_done += 1
                await self._post(parent.workflow_id, agent.name, task.id, result.text, failed=False)
        except StopJob as stop:
            return await self.conclude(stop.reason, stop.explanation, "", outputs)
        return await self.conclude(
            StopReason.completed,
            f"{plural(len(outputs), 'task')} done",
            "\n\n".join(outputs.values()),
            outputs,
        )

    async def _post(self, coordinator: str, agent: str, task_id: str, text: str, *, failed: bool) -> None:
        record = (
            self.state.turns[-1]
            if self.state.turns and self.state.turns[-1].step == task_id and not failed
            else None
        )
        await self._board(
            BoardRequest(
                op="post_result",
                coordinator=coordinator,
                agent=agent,
                key=f"r-{task_id}",
                task_id=task_id,
                text=text,
                failed=failed,
                record=record,
            )
        )

    async def _board(self, request: BoardRequest) -> BoardReply:
        # The key is unique per member run, so the board can answer a retried request once.
        request = request.model_copy(update={"key": f"{workflow.info().workflow_id}/{request.key}"})
        return await TEAM_BOARD.run(request, summary=f"{request.op} {request.task_id or ''}".strip())

    @workflow.signal(name="wake")
    def on_wake(self) -> None:
        """A task was posted: try to claim again."""
        self.woken = True

    @workflow.signal(name="close")
    def on_close(self) -> None:
        """The board is finished: leave after the current task."""
        self.member.closed = True


@workflow.defn(name="TeamJob")
class TeamJob(JobWorkflow):
    """The coordinator: holds the board, starts the members, ends when the board is empty."""

    mode = "team"

    @workflow.init
    def __init__(self, job_input: JobInput) -> None:
        super().__init__(job_input)
        self.board: dict[str, BoardTask] = {}
        self.answers: dict[str, BoardReply] = {}  # request key -> first answer
        self.claims: list[str] = []  # "task id:agent", in order
        self.closed = False
        self.wake_pending = False
        self.max_tasks = 20

    @workflow.run
    async def run(self, job_input: JobInput) -> JobResult:
        """Post the initial tasks, run one member per agent, wait until no work is left."""
        spec = self.spec
        try:
            await self.start_job()
        except StopJob as stop:  # a worker-side error (unknown price, say): no member has started
            return await self.conclude(stop.reason, stop.explanation, "", {})
        self.max_tasks = spec.team.max_tasks
        for text in spec.team.tasks or [spec.task]:
            self._add(text, posted_by=None)
        share = 1.0 / len(spec.agents)
        members: dict[str, workflow.ChildWorkflowHandle[Any, JobResult]] = {}
        for agent in spec.agents:
            member_id = f"{self.job_id}--{agent.name}"
            member = child_spec(
                self, child_id=member_id, agent=agent, mode="team", task=spec.task, share=share
            )
            members[agent.name] = await workflow.start_child_workflow(
                TeamMemberJob.run,
                child_input(self, member),
                id=member_id,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                static_summary=job_summary(member, f"team member {agent.name}"),
                static_details=job_details(member),
                priority=self.task_priority,
            )
        reason, explanation = StopReason.completed, ""
        try:
            while not self._finished():
                alive = len([h for h in members.values() if not h.done()])
                if not alive:
                    raise StopJob(StopReason.failed, "every member ended while tasks were still open")
                await self.wait_for(
                    lambda: (
                        self.wake_pending
                        or self._finished()
                        or len([h for h in members.values() if not h.done()]) < alive  # noqa: B023 (awaited at once)
                    )
                )
                self._release_dead(members)
                if self.wake_pending:
                    self.wake_pending = False
                    for handle in members.values():
                        if not handle.done():
                            await handle.signal(TeamMemberJob.on_wake)
            done = [t for t in self.board.values() if t.state == "done"]
            explanation = f"the board is empty: {len(done)} of {plural(len(self.board), 'task')} done"
        except StopJob as stop:
            reason, explanation = stop.reason, stop.explanation
        self.closed = True
        await self._close(members, abort=reason is not StopReason.completed, why=explanation)
        self.state.evidence = {"tasks": len(self.board), "claims": self.claims}
        outputs = {t.id: t.result for t in self.board.values() if t.state == "done"}
        return await self.conclude(reason, explanation, "\n\n".join(outputs.values()), outputs)

    def _finished(self) -> bool:
        return all(task.state in ("done", "failed") for task in self.board.values())

    def _release_dead(
        self, members: dict[str, workflow.ChildWorkflowHandle[TeamMemberJob, JobResult]]
    ) -> None:
        """Tasks held by a member that has ended can never be posted: mark them failed."""
        gone = {name for name, handle in members.items() if handle.done()}
        for task in self.board.values():
            if task.state == "claimed" and task.claimed_by in gone:
                task.state, task.result = "failed", f"{task.claimed_by} ended before posting a result"

    async def _close(
        self,
        members: dict[str, workflow.ChildWorkflowHandle[TeamMemberJob, JobResult]],
        *,
        abort: bool,
        why: str,
    ) -> None:
        """Tell every member the board is closed (or abort them), wait briefly, charge their spend."""
        by_id = {handle.id: handle for handle in members.values()}
        if abort:
            ledgers = await end_children(
                self, by_id, "abort", AbortRequest(reason=f"coordinator stopping: {why}")
            )
        else:
            ledgers = await end_children(self, by_id, "close")
        for child_id, ledger in ledgers.items():
            absorb_ledger(self, child_id, ledger)

    # ----- the board -------------------------------------------------------------------------

    def _add(self, text: str, posted_by: str | None, for_agent: str | None = None, context: str = "") -> bool:
        if len(self.board) >= self.max_tasks or not text.strip():
            return False
        task_id = f"task{len(self.board) + 1}"
        self.board[task_id] = BoardTask(
            id=task_id, text=text.strip(), for_agent=for_agent, posted_by=posted_by, context=context
        )
        self.wake_pending = True
        self.state.steps_total = len(self.board)
        return True

    def _claimable(self, agent: str, task_id: str | None) -> BoardTask | None:
        for task in self.board.values():
            if task.state != "open" or (task_id is not None and task.id != task_id):
                continue
            if task.for_agent in (None, agent):
                return task
        return None

    @workflow.update(name="claim")
    def on_claim(self, request: BoardRequest) -> BoardReply:
        """Hand the oldest open task this agent may take to it; it now holds it."""
        if request.key in self.answers:
            return self.answers[request.key]
        task = self._claimable(request.agent, request.task_id)
        if task is None:
            # Another claim in the same activation took it after validation: nothing for you now.
            reply = BoardReply(ok=False, status="wait", reason="nothing open")
        else:
            task.state, task.claimed_by = "claimed", request.agent
            self.claims.append(f"{task.id}:{request.agent}")
            reply = BoardReply(status="task", task=task.model_copy())
        self.answers[request.key] = reply
        return reply

    @on_claim.validator
    @refusal
    def validate_claim(self, request: BoardRequest) -> None:
        """Refuse when the board is closed or nothing is open for this agent."""
        if request.key in self.answers:
            return
        if self.closed or self.state.stop_reason is not None:
            raise ValueError("closed: the board is finished")
        if self._claimable(request.agent, request.task_id) is None:
            raise ValueError("nothing open")

    @workflow.update(name="post_result")
    def on_post_result(self, request: BoardRequest) -> BoardReply:
        """Record a claimed task's result; its ``FOLLOW-UP:`` lines become new tasks."""
        if request.key in self.answers:
            return self.answers[request.key]
        task = self.board[request.task_id or ""]
        task.state, task.result = ("failed" if request.failed else "done"), request.text
        if request.record is not None:
            self.state.turns.append(request.record.model_copy(update={"index": len(self.state.turns)}))
        self.state.steps_done = sum(t.state in ("done", "failed") for t in self.board.values())
        posted = 0 if request.failed else sum(self._add(t, request.agent) for t in follow_ups(request.text))
        reply = BoardReply(status="recorded", reason=f"{posted} follow-up tasks posted")
        self.answers[request.key] = reply
        return reply

    @on_post_result.validator
    @refusal
    def validate_post_result(self, request: BoardRequest) -> None:
        """Refuse a result for a task the agent does not hold."""
        if request.key in self.answers:
            return
        task = self.board.get(request.task_id or "")
        if task is None or task.state != "claimed" or task.claimed_by != request.agent:
            raise ValueError(f"{request.agent} holds no task {request.task_id!r}")

    @workflow.update(name="post_task")
    def on_post_task(self, request: BoardRequest) -> BoardReply:
        """Add an open task to the board (an agent's or a person's)."""
        if request.key and request.key in self.answers:
            return self.answers[request.key]
        self._add(request.text, request.agent, request.for_agent, request.context)
        reply = BoardReply(status="posted", task=list(self.board.values())[-1].model_copy())
        if request.key:
            self.answers[request.key] = reply
        return reply

    @on_post_task.validator
    @refusal
    def validate_post_task(self, request: BoardRequest) -> None:
        """Refuse empty tasks, tasks past ``team.max_tasks`` and a closed board."""
        if request.key and request.key in self.answers:
            return
        if self.closed or self.state.stop_reason is not None:
            raise ValueError("closed: the board is finished")
        if not request.text.strip():
            raise ValueError("a task needs text")
        if len(self.board) >= self.max_tasks:
            raise ValueError(f"the board is full ({self.max_tasks} tasks)")


__all__ = ["TeamJob", "TeamMemberJob", "follow_ups"]
