"""Hierarchical delegation, priority scheduling with aging: a primary agent plans, sub-agents work.

Each round the primary answers with a plan (structured output ``plan``: subtasks with priorities
1..5, 1 most urgent). Every subtask runs as a child workflow (``SubtaskJob``, id
``{job id}/{subtask id}-r{round}``) with a budget carved from the parent (``child_budget_share``
of what is left, split evenly over the round's subtasks, set aside on the parent's ledger while the
child runs: ``BudgetKeeper.carve_child`` / ``close_child``), at most ``delegation.max_concurrency`` at
once, taken from an aging priority queue (plan priority p sits at queue level p - 1; waiting
subtasks age, and ``set_priority`` on a waiting subtask's id moves it).

After a round the primary reviews: its next plan sees every result and every failure (a child
that failed, ran out of budget or hit the deadline, with the reason). Subtasks it plans under an id
that already succeeded are not run again, so repeating a failed id retries it (on the next worker
in rotation: a retry is a reassignment when there are several workers), leaving it out gives up on
it, and a plan of only finished ids ends the delegation. Then the primary writes the final answer.

Routing: a primary with ``route`` or ``cascade`` has each of its turns routed (the plans too: their
checks judge the plan's JSON text); a worker's settings travel in its child's spec, so the subtask is
routed there, and the child's routing records join the parent's as ``<subtask>-r<round>/subtask``.

An abort (or the deadline) reaches running children as an ``abort`` signal: each ends with its
partial spend, which is charged to the parent before the parent ends. The parent closes with
``REQUEST_CANCEL`` for its children, so none outlives it.

A long delegation continues as new between two rounds (no child running) when the server suggests
it, or after ``turns_per_run`` of the primary's turns in one run: the primary's conversation,
results, failures and attempts travel in ``JobState.delegation``, and the next run starts at the
next round.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from contracts.controls import AbortRequest
    from contracts.display import job_details, job_summary
    from contracts.jobs import JobResult, LedgerTotals, StopReason
    from contracts.models import Message
    from contracts.outputs import Plan, Subtask
    from contracts.spec import DelegationSpec, JobSpec
    from contracts.state import DelegationState, JobInput
    from contracts.words import plural
    from policies.scheduling import AgingPriorityQueue

from workflows._children import child_input, child_spec, close_child, end_children, open_child
from workflows._job import JobWorkflow, StopJob
from workflows._routing import TurnRouter

PLAN_PROMPT = (
    "Split this task into subtasks for your workers. Give each an id, a title, instructions and a "
    "priority from 1 (most urgent) to 5.\n\nTask: {task}"
)
REVIEW_PROMPT = (
    "{failures}Results so far:\n{results}\n\nReview them against the task. Answer with a plan of "
    "the subtasks still needed: repeat a failed subtask's id to retry it, use new ids for new work, "
    "and leave out what should be given up. A plan of finished ids only means the work is done."
    "\n\nTask: {task}"
)
FINAL_PROMPT = "{failures}Results:\n{results}\n\nWrite the final answer to the task.\n\nTask: {task}"
SUBTASK_PROMPT = "{title}\n\n{instructions}\n\nThis is part of a larger task: {task}"
# What a child's stop reason means to its parent: these end a subtask without a usable result.
CHILD_FAILURES = {
    StopReason.failed,
    StopReason.budget_exhausted,
    StopReason.deadline,
    StopReason.aborted,
}


@workflow.defn(name="SubtaskJob")
class SubtaskJob(JobWorkflow):
    """One subtask of a delegation: one agent, one step, the same controls as any job."""

    mode = "subtask"

    @workflow.run
    async def run(self, job_input: JobInput) -> JobResult:
        """Run the spec's single step; an interrupt re-runs it with the message."""
        spec = self.spec
        step = spec.steps[0]
        router = TurnRouter(self, spec)  # routes the step if its agent has 'route' or 'cascade'
        self.state.steps_total, self.state.step = 1, step.id
        try:
            await self.start_job()  # a worker-side error (unknown price, say) ends the job failed
            result = await router.step_turn(step, [Message(role="user", content=step.prompt)])
        except StopJob as stop:
            return router.annotate(await self.conclude(stop.reason, stop.explanation, "", {}))
        self.state.steps_done = 1
        return router.annotate(
            await self.conclude(StopReason.completed, "the subtask ran", result.text, {step.id: result.text})
        )


@workflow.defn(name="DelegationJob")
class DelegationJob(JobWorkflow):
    """A primary plans and reviews; subtasks run as prioritised, budgeted child workflows."""

    mode = "delegation"

    @workflow.init
    def __init__(self, job_input: JobInput) -> None:
        super().__init__(job_input)
        self.queue = AgingPriorityQueue()
        self.children: dict[str, workflow.ChildWorkflowHandle[SubtaskJob, JobResult]] = {}
        if self.state.delegation is None:
            self.state.delegation = DelegationState()
        # The rounds so far live in the state (continue-as-new carries them); these name its parts.
        carried = self.state.delegation
        self.results = carried.results  # subtask id -> output of its successful run
        self.failures = carried.failures  # subtask id -> why its latest run failed
        self.titles = carried.titles
        self.attempts = carried.attempts
        self.order = carried.order  # subtask id -> first-seen position, for worker rotation
        self.failed_runs = carried.failed_runs
        self.router: TurnRouter | None = None  # set at the start of run

    @workflow.run
    async def run(self, job_input: JobInput) -> JobResult:
        """Plan, delegate, review, repeat up to ``max_rounds``; then the primary's final answer."""
        spec = self.spec
        settings = spec.delegation
        assert settings is not None, "the spec validator requires a delegation section"
        primary = spec.agent(settings.primary)
        router = self.router = TurnRouter(self, spec)  # routes agents with "route" or "cascade"
        carried = self.state.delegation
        assert carried is not None  # set up in __init__
        if not carried.messages:
            carried.messages.append(Message(role="user", content=PLAN_PROMPT.format(task=spec.task)))
        messages = carried.messages
        turns_before = len(self.state.turns)
        final = ""
        try:
            await self.start_job()  # a worker-side error (unknown price, say) ends the job failed
            for round_no in range(carried.next_round, settings.max_rounds + 1):
                carried.next_round = round_no
                if self.should_continue_as_new(len(self.state.turns) - turns_before, spec.turns_per_run):
                    await self.continue_as_new()
                self.state.round = round_no
                self.state.step = f"round {round_no}: plan"
                reply = await router.agent_turn(
                    primary, messages, step=f"plan-r{round_no}", output_type="plan"
                )
                plan = Plan.model_validate(reply.parsed)
                todo = list({s.id: s for s in plan.subtasks if s.id not in self.results}.values())
                if not todo:
                    break
                await self._delegate(spec, settings, todo, round_no)
                if round_no < settings.max_rounds:
                    messages += [
                        Message(role="assistant", content=reply.text),
                        Message(role="user", content=self._render(REVIEW_PROMPT, spec.task)),
                    ]
            self.state.step = "final answer"
            prompt = self._render(FINAL_PROMPT, spec.task)
            answer = await router.agent_turn(primary, [Message(role="user", content=prompt)], step="final")
            final = answer.text
        except StopJob as stop:
            await self._stop_children(stop.explanation)
            ended = await self.conclude(stop.reason, stop.explanation, final or self._summary(), self.results)
            return router.annotate(ended)
        self.state.evidence = self._evidence()
        given_up = sorted(self.failures)
        explanation = (
            f"{plural(len(self.results), 'subtask')} done in {plural(self.state.round, 'round')}"
            + (f"; gave up on {', '.join(given_up)}" if given_up else "")
        )
        return router.annotate(await self.conclude(StopReason.completed, explanation, final, self.results))

    async def _delegate(
        self, spec: JobSpec, settings: DelegationSpec, todo: list[Subtask], round_no: int
    ) -> None:
        """Run ``todo`` as child workflows, most urgent first, at most ``max_concurrency`` at once."""
        workers = settings.workers or [a.name for a in spec.agents if a.name != settings.primary]
        workers = workers or [settings.primary]
        share = settings.child_budget_share / len(todo)
        for subtask in todo:
            self.order.setdefault(subtask.id, len(self.order))
        carved = {s.id: child_spec_for(self, spec, s, workers, share) for s in todo}
        for subtask in todo:
            self.titles[subtask.id] = subtask.title
            self.queue.push(subtask.id, subtask.priority - 1, {"title": subtask.title})
        self.state.steps_total = (self.state.steps_total or 0) + len(todo)
        running: dict[str, str] = {}  # child workflow id -> subtask id
        while len(self.queue) or running:
            starting: list[tuple[str, str, JobSpec]] = []
            while len(self.queue) and len(running) + len(starting) < settings.max_concurrency:
                item = self.queue.pop()
                self.attempts[item.id] = self.attempts.get(item.id, 0) + 1
                child_id = f"{self.job_id}/{item.id}-r{round_no}"
                refused = open_child(self, child_id, carved[item.id].budget)
                if refused is not None:  # the parent cannot set the budget aside: reported, not run
                    self.state.steps_done += 1
                    self._failed(child_id, item.id, f"not started: {refused}")
                    continue
                starting.append((item.id, child_id, carved[item.id]))
            # Started together, so their start commands share one workflow task.
            handles = await asyncio.gather(
                *(
                    workflow.start_child_workflow(
                        SubtaskJob.run,
                        child_input(self, child),
                        id=child_id,
                        parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                        static_summary=job_summary(child, f"subtask {subtask_id} (round {round_no})"),
                        static_details=job_details(child),
                        priority=self.task_priority,
                    )
                    for subtask_id, child_id, child in starting
                )
            )
            for (subtask_id, child_id, _), handle in zip(starting, handles, strict=True):
                self.children[child_id] = handle
                running[child_id] = subtask_id
            self.state.step = (
                f"round {round_no}: running {', '.join(running.values())}; {len(self.queue)} queued"
            )
            self._publish()
            await self.wait_for(lambda: any(self.children[cid].done() for cid in running))
            for child_id in [cid for cid in running if self.children[cid].done()]:
                self._collect(child_id, running.pop(child_id))

    def _collect(self, child_id: str, subtask_id: str) -> None:
        handle = self.children.pop(child_id)
        self.state.steps_done += 1
        try:
            result = handle.result()
        except ChildWorkflowError as error:
            cause = error.cause if error.cause is not None else error
            close_child(self, child_id, LedgerTotals())
            self._failed(child_id, subtask_id, f"the child workflow failed: {cause}")
            return
        close_child(self, child_id, result.ledger)
        if self.router is not None:
            self.router.adopt(child_id.rsplit("/", 1)[-1], result.routing)
        if result.stop_reason in CHILD_FAILURES:
            self._failed(child_id, subtask_id, f"{result.stop_reason.value}: {result.explanation}")
            return
        self.results[subtask_id] = result.output
        self.failures.pop(subtask_id, None)

    def _failed(self, child_id: str, subtask_id: str, why: str) -> None:
        self.failures[subtask_id] = why
        self.failed_runs.append(child_id)

    async def _stop_children(self, why: str) -> None:
        """Abort running children, wait (briefly) for their partial spend, and charge it."""
        running = dict(self.children)
        ledgers = await end_children(self, running, "abort", AbortRequest(reason=f"parent stopping: {why}"))
        for child_id, ledger in ledgers.items():
            close_child(self, child_id, ledger)

    def _render(self, template: str, task: str) -> str:
        results = "\n\n".join(
            f"### {sid}: {self.titles.get(sid, '')}\n{text}" for sid, text in self.results.items()
        )
        failures = ""
        if self.failures:
            lines = "\n".join(f"- {sid}: {why}" for sid, why in self.failures.items())
            failures = f"Failed subtasks:\n{lines}\n\n"
        return template.format(failures=failures, results=results or "(none yet)", task=task)

    def _summary(self) -> str:
        return "\n\n".join(self.results.values())

    def _evidence(self) -> dict[str, object]:
        return {
            "rounds": self.state.round,
            "subtasks_done": sorted(self.results),
            "failed_runs": self.failed_runs,
            "given_up": sorted(self.failures),
        }

    def check_task_priority(self, task: str, priority: int) -> None:
        """Only a subtask still waiting in the queue can change priority."""
        if task not in self.queue:
            raise ValueError(f"no waiting subtask {task!r}; waiting: {[i.id for i in self.queue.items]}")

    def set_task_priority(self, task: str, priority: int) -> None:
        """Move a waiting subtask (the aging it has accrued still counts)."""
        self.queue.set_priority(task, priority)


def child_spec_for(
    job: DelegationJob, spec: JobSpec, subtask: Subtask, workers: list[str], share: float
) -> JobSpec:
    """The child spec of one subtask: the next worker in rotation, a carved budget, one step."""
    worker = workers[(job.order[subtask.id] + job.attempts.get(subtask.id, 0)) % len(workers)]
    prompt = SUBTASK_PROMPT.format(title=subtask.title, instructions=subtask.instructions, task=spec.task)
    return child_spec(
        job,
        child_id=subtask.id,
        agent=spec.agent(worker),
        mode="sequential",
        task=subtask.title,
        share=share,
        # The step id is fixed: a planner's ids need not be valid step names.
        steps=[{"id": "subtask", "agent": worker, "prompt": prompt}],
    )


__all__ = ["DelegationJob", "SubtaskJob"]
