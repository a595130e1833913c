"""Parallel DAG, batch processing with dependencies: a step starts as soon as all it depends on has
finished, up to ``spec.max_concurrency`` steps at once.

Cycles are refused at submission (the spec validator). Ready steps start in spec order, so the
schedule is deterministic, as replay requires. Concurrent turns share the job's controls: an
interrupt cancels whichever calls are in flight, and each of those steps runs again with the message.

When the server suggests it (or after ``turns_per_run`` turns of one run) the job starts no new
step, lets the running ones finish and continues as new with the outputs so far in its state; the
next run starts the steps not done.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import JobResult, StopReason
    from contracts.models import Message, ModelCallResult
    from contracts.prompts import render, step_values
    from contracts.spec import JobSpec, StepSpec
    from contracts.state import ChainState, JobInput

from workflows._job import JobWorkflow, StopJob
from workflows._routing import TurnRouter
from workflows.sequential import steps_ran


@workflow.defn(name="DagJob")
class DagJob(JobWorkflow):
    """Runs ``spec.steps`` as a dependency graph with bounded parallelism."""

    mode = "dag"

    @workflow.run
    async def run(self, job_input: JobInput) -> JobResult:
        """Start every ready step, up to the concurrency limit, until all have run."""
        spec = self.spec
        self.router = TurnRouter(self, spec)  # routes the steps (or their agents) with 'route' or 'cascade'
        self.state.steps_total = len(spec.steps)
        if self.state.chain is None:
            self.state.chain = ChainState()
        outputs = self.state.chain.outputs
        pending = [step for step in spec.steps if step.id not in outputs]
        running: dict[str, asyncio.Task[ModelCallResult]] = {}
        turns_before = len(self.state.turns)
        draining = False  # continuing as new: no new steps; once none runs, the next run goes on
        try:
            await self.start_job()  # a worker-side error (unknown price, say) ends the job failed
            while pending or running:
                if pending and not draining:
                    draining = self.should_continue_as_new(
                        len(self.state.turns) - turns_before, spec.turns_per_run
                    )
                if draining and not running:
                    await self.continue_as_new()
                ready = [] if draining else [s for s in pending if all(d in outputs for d in s.depends_on)]
                for step in ready[: spec.max_concurrency - len(running)]:
                    pending.remove(step)
                    if not await self.gates.before_step(step.id):
                        outputs[step.id] = ""  # rejected at its gate: skipped, dependants still run
                        self.state.steps_done += 1
                        continue
                    running[step.id] = asyncio.ensure_future(self._run_step(spec, step, outputs))
                self.state.step = ", ".join(running) or None
                if not running:
                    continue
                done, _ = await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
                for step_id, task in list(running.items()):
                    if task in done:
                        del running[step_id]
                        outputs[step_id] = task.result().text  # re-raises a StopJob from the step
                        self.state.steps_done += 1
            final = outputs[spec.steps[-1].id] if spec.steps else ""
        except StopJob as stop:
            for task in running.values():
                task.cancel()
            # Wait for the cut calls to report what they served: charged, and none outlives the job.
            await asyncio.gather(*running.values(), return_exceptions=True)
            last = next((outputs[s.id] for s in reversed(spec.steps) if s.id in outputs), "")
            return self.router.annotate(await self.conclude(stop.reason, stop.explanation, last, outputs))
        ran = steps_ran(len(spec.steps), self.gates.skipped_steps())
        return self.router.annotate(await self.conclude(StopReason.completed, ran, final, outputs))

    async def _run_step(self, spec: JobSpec, step: StepSpec, outputs: dict[str, str]) -> ModelCallResult:
        inputs = "\n\n".join(outputs[dep] for dep in step.depends_on) or spec.task
        prompt = render(step.prompt, step_values(spec, step, inputs, outputs))
        return await self.router.step_turn(step, [Message(role="user", content=prompt)])
