"""The long-lived ``RoutingStats`` workflow: learned check pass rates shared by every job.

One instance per namespace (id ``harness-routing-stats``) holds a ``policies.routing.RoutingStats``:
pass and failure counts per (task kind, model). Jobs reach it through the ``harness.routing_stats``
activity (``activities.routing_stats``), which starts it when missing and sends the ``record`` update;
an update with no outcomes is a read. ``harness routing stats`` shows the table (query ``stats``).

It runs forever: when Temporal suggests continue-as-new (history growing long) it waits for
running handlers to finish, then continues as new carrying the counts and the recent idempotency
keys, so a retried ``record`` is never counted twice.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.names import ROUTING_STATS_WORKFLOW_ID
    from contracts.routing import RoutingOutcomes, RoutingStatsState
    from policies.routing import RoutingStats

from workflows._job_errors import refusal

__all__ = ["ROUTING_STATS_WORKFLOW_ID", "STATS_WORKFLOW", "RoutingStatsWorkflow"]

STATS_WORKFLOW = "RoutingStats"
# Keys of recently recorded batches, kept to drop retried duplicates; bounded so the state stays small.
MAX_KEYS = 2000


@workflow.defn(name=STATS_WORKFLOW)
class RoutingStatsWorkflow:
    """Holds learned pass rates; ``record`` adds outcomes, ``stats`` reads them."""

    def __init__(self) -> None:
        self.state = RoutingStatsState()

    @workflow.run
    async def run(self, state: RoutingStatsState) -> None:
        """Serve updates and queries until the history is long, then continue as new."""
        self.state = state
        await workflow.wait_condition(lambda: workflow.info().is_continue_as_new_suggested())
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self.state)

    @workflow.update(name="record")
    def record(self, batch: RoutingOutcomes) -> RoutingStats:
        """Count ``batch``'s outcomes (once per key) and return the stats after it."""
        if batch.key and batch.key in self.state.keys:
            return self.state.stats
        for outcome in batch.outcomes:
            self.state.stats.record(outcome.kind, outcome.model, outcome.passed)
        if batch.key:
            self.state.keys = [*self.state.keys, batch.key][-MAX_KEYS:]
        if batch.outcomes:
            self.state.batches += 1
        return self.state.stats

    @record.validator
    @refusal
    def validate_record(self, batch: RoutingOutcomes) -> None:
        """Refuse outcomes without a kind or model; nothing is written to history."""
        for outcome in batch.outcomes:
            if not outcome.kind or not outcome.model:
                raise ValueError("each outcome needs a kind and a model")

    @workflow.query(name="stats")
    def stats(self) -> RoutingStatsState:
        """The counts, and how many batches were recorded."""
        return self.state
