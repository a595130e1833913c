"""The long-lived ``TokenFairness`` workflow: the model queues shared by tokens, not by calls.

One per jobs queue (id ``harness-fairness-<queue>``), started by the first model call that reports
to it (``activities.fairness``: the model-call activity signals ``served`` after each call of a job
with a fairness key when the worker has ``HARNESS_TOKEN_FAIRNESS=1``, and after each call of a
provider whose catalog limits have a ``tpm``). It keeps a
decayed window of calls and tokens per model queue and tenant (``policies.fairness``) and, as calls
are served but at most once every ``WRITE_INTERVAL``, sets on each queue the fairness weights that
make Temporal's per-task fairness serve tokens in proportion to the tenants' own weights, only when
they moved enough to matter (``policies.fairness.changed``). For a provider with a ``tpm`` (tokens
per minute) it also sets the queue's request rate to ``tpm / 60 / tokens per call`` (never above
its ``rps``): the provider's token limit held through the request rate Temporal enforces. Temporal
places a task in its queue's order when the task is queued, by its tenant's weight then: new
weights order the calls queued after them, not a backlog already waiting. It is the one writer of
those weights and rates, so workers never fight over them. It continues as new every
``MAX_SIGNALS`` calls, or when Temporal suggests it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.fairness import FairnessState, ServedCall, SetRateRequest, SetWeightsRequest
    from contracts.names import TOKEN_FAIRNESS_WORKFLOW
    from policies.fairness import TenantTally, changed, decayed, token_weights, tpm_rate

from workflows._activities import SET_FAIRNESS_WEIGHTS, SET_QUEUE_RATE

__all__ = ["HALF_LIFE", "MAX_SIGNALS", "WRITE_INTERVAL", "TokenFairnessWorkflow"]

WRITE_INTERVAL = timedelta(seconds=1)
"""How often weights may be written (each write is one ``UpdateTaskQueueConfig`` per queue)."""
HALF_LIFE = timedelta(seconds=60)
"""How fast old calls stop counting: a tenant's recent share and call size, not its history."""
MAX_SIGNALS = 2000


@workflow.defn(name=TOKEN_FAIRNESS_WORKFLOW)
class TokenFairnessWorkflow:
    """Counts the tokens each tenant is served and sets the model queues' weights to match."""

    @workflow.init
    def __init__(self, state: FairnessState) -> None:
        self.state = state
        self.dirty = False
        self.written_at: datetime | None = None

    @workflow.run
    async def run(self, state: FairnessState) -> None:
        """Write weights as calls are served, until continue-as-new."""
        while self.state.signals < MAX_SIGNALS and not workflow.info().is_continue_as_new_suggested():
            await workflow.wait_condition(
                lambda: (
                    self.dirty
                    or self.state.signals >= MAX_SIGNALS
                    or workflow.info().is_continue_as_new_suggested()
                )
            )
            wait = self.written_at + WRITE_INTERVAL - workflow.now() if self.written_at else timedelta(0)
            if wait > timedelta(0):
                # At most one write an interval: later calls wait for it.
                await workflow.sleep(wait, summary=f"next weights write, {WRITE_INTERVAL} after the last")
            self.dirty = False
            self.written_at = workflow.now()
            await self._write()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self.state.model_copy(update={"signals": 0}))

    @workflow.signal(name="served")
    def served(self, call: ServedCall) -> None:
        """A call was served on ``call.queue``: decay the queue's window, add it (to its tenant's
        tally, and to the queue's own when its provider has a ``tpm``)."""
        now = workflow.now()
        state = self.state
        tallies = state.tallies.setdefault(call.queue, {})
        last = state.at.get(call.queue)
        half_life = HALF_LIFE.total_seconds()
        if last is not None:
            elapsed = (now - last).total_seconds()
            for tenant, tally in tallies.items():
                tallies[tenant] = decayed(tally, elapsed, half_life)
            if call.queue in state.sizes:
                state.sizes[call.queue] = decayed(state.sizes[call.queue], elapsed, half_life)
        state.at[call.queue] = now
        if call.tenant is not None:
            tallies[call.tenant] = tallies.get(call.tenant, TenantTally()).served(call.tokens, call.weight)
        if call.limits is not None and call.limits.tpm is not None:
            state.limits[call.queue] = call.limits
            state.sizes[call.queue] = state.sizes.get(call.queue, TenantTally()).served(call.tokens, 1.0)
        state.signals += 1
        self.dirty = True

    async def _write(self) -> None:
        for queue, limits in sorted(self.state.limits.items()):
            size = self.state.sizes.get(queue)
            per_call = size.tokens / size.calls if size is not None and size.calls else None
            rate = tpm_rate(limits.rps, limits.tpm, per_call)
            held = self.state.rates.get(queue)
            if rate is None or (held is not None and abs(rate - held) <= 0.1 * held):
                continue
            await SET_QUEUE_RATE.run(
                SetRateRequest(queue=queue, limits=limits.model_copy(update={"rps": rate})),
                summary=f"{rate:.3g} requests/s on {queue} (tpm {limits.tpm})",
            )
            self.state.rates[queue] = rate
            self.state.writes += 1
        for queue, tallies in sorted(self.state.tallies.items()):
            weights = token_weights(tallies)
            old = self.state.written.get(queue, {})
            if not changed(old, weights):
                continue
            gone = sorted(set(old) - set(weights))
            await SET_FAIRNESS_WEIGHTS.run(
                SetWeightsRequest(queue=queue, weights=weights, unset=gone),
                summary=f"fairness weights of {len(weights)} tenants on {queue}",
            )
            self.state.written[queue] = weights
            self.state.writes += 1

    @workflow.query(name="state")
    def query_state(self) -> FairnessState:
        """The tallies and the weights last written, per model queue."""
        return self.state
