"""Sequential chain, the batch analogue: steps run in order, each step's output feeds the next.

A finished step is never re-run: its result is in the workflow's history, so after a worker crash
the replay skips straight to the step that was running. A long chain continues as new between two
steps when the server suggests it (or after ``turns_per_run`` turns of one run), carrying the
outputs so far in the state; the next run starts at the first step not done.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import JobResult, StopReason
    from contracts.models import Message
    from contracts.prompts import render, step_values
    from contracts.state import ChainState, JobInput
    from contracts.words import plural

from workflows._job import JobWorkflow, StopJob
from workflows._routing import TurnRouter


def steps_ran(total: int, skipped: list[str]) -> str:
    """The explanation of a chain or DAG that reached its end: every step ran, or how many did and
    why each other one was skipped (``Gates.skipped_steps``)."""
    if skipped:
        return f"{plural(total - len(skipped), 'step')} of {total} ran; " + "; ".join(skipped)
    return f"all {total} steps ran" if total != 1 else "the one step ran"


@workflow.defn(name="SequentialJob")
class SequentialJob(JobWorkflow):
    """Runs ``spec.steps`` one after another."""

    mode = "sequential"

    @workflow.run
    async def run(self, job_input: JobInput) -> JobResult:
        """Run every step in order; stop early on budget, deadline or abort."""
        spec = self.spec
        self.state.steps_total = len(spec.steps)
        if self.state.chain is None:
            self.state.chain = ChainState(previous=spec.task)
        chain = self.state.chain
        outputs = chain.outputs
        router = TurnRouter(self, spec)  # routes the steps (or their agents) with 'route' or 'cascade'
        turns_before = len(self.state.turns)
        try:
            await self.start_job()  # a worker-side error (unknown price, say) ends the job failed
            for step in spec.steps[self.state.steps_done :]:
                if self.should_continue_as_new(len(self.state.turns) - turns_before, spec.turns_per_run):
                    await self.continue_as_new()
                self.state.step = step.id
                self.state.round = self.state.steps_done + 1
                if not await self.gates.before_step(step.id):
                    # Rejected at its gate: skipped, the next step gets {input} as is.
                    self.state.steps_done += 1
                    continue
                prompt = render(step.prompt, step_values(spec, step, chain.previous, outputs))
                result = await router.step_turn(step, [Message(role="user", content=prompt)])
                outputs[step.id] = result.text
                chain.previous = result.text
                self.state.steps_done += 1
            await self.gates.before_final(chain.previous)
        except StopJob as stop:
            return router.annotate(
                # No step ran: ``previous`` is still the task, which is no output.
                await self.conclude(stop.reason, stop.explanation, chain.previous if outputs else "", outputs)
            )
        ran = steps_ran(len(spec.steps), self.gates.skipped_steps())
        return router.annotate(await self.conclude(StopReason.completed, ran, chain.previous, outputs))
