"""The two workflows of bench/tools.py: harness's tool-call path and a bare activity, N calls each.

Their own module so the workflow sandbox loads them as a user's workflows would.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.state import JobInput
    from contracts.tools import ToolCall

from workflows._job import JobWorkflow

TEXT = "Durable execution keeps a workflow's progress through crashes and restarts."


@workflow.defn(name="BenchToolRounds")
class ToolRounds(JobWorkflow):
    """A job that lists its tools, then runs ``int(task)`` rounds of one ``word_count`` call each
    through ``Tools.run_round``: allow-list, argument check, budget reserve and settle, the
    ``harness.tool_call`` activity with its heartbeat and result cap, the record."""

    mode = "sequential"

    @workflow.run
    async def run(self, job_input: JobInput) -> int:
        """Run the rounds; return how many calls ended ``ok``."""
        await self.start_job()
        agent = self.spec.agents[0]
        ok = 0
        for index in range(int(self.spec.task)):
            call = ToolCall(id=f"call-{index}", name="word_count", arguments={"text": TEXT})
            (result,) = await self.tools.run_round(agent, [call], None, None)
            ok += not result.is_error
        return ok


@workflow.defn(name="BenchBareTool")
class BareTool:
    """``calls`` bare activities in a row, each running the same Python function."""

    @workflow.run
    async def run(self, calls: int) -> int:
        """Call the bare activity ``calls`` times; return how many answered."""
        ok = 0
        for _ in range(calls):
            words = await workflow.execute_activity(
                "bench.bare_tool", TEXT, result_type=int, start_to_close_timeout=timedelta(seconds=30)
            )
            ok += words > 0
        return ok
