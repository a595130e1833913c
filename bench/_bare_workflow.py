"""The bare baseline of bench/overhead.py: N activities in a row, nothing else.

Its own module, importing only temporalio, so the workflow sandbox can load it as a user's would.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="BenchBareChain")
class BareChain:
    """N activities in a row, each fed the previous output."""

    @workflow.run
    async def run(self, turns: int) -> str:
        """Call the bare activity ``turns`` times."""
        text = "Write about schedulers."
        for _ in range(turns):
            text = await workflow.execute_activity(
                "bench.bare_call", text, result_type=str, start_to_close_timeout=timedelta(seconds=30)
            )
        return text
