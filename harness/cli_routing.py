"""``harness routing ...``: what the router has learned, as a table."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from contracts.jobs import JobResult
from contracts.names import ROUTING_STATS_WORKFLOW_ID
from contracts.routing import RoutingStatsState

__all__ = ["routing_app", "routing_section", "stats_table"]

routing_app = typer.Typer(
    help="Cost-aware routing: the pass rates learned from checks.", no_args_is_help=True
)
console = Console()


def _tier_prior(ref: str) -> float | None:
    """The prior a routed step gives ``ref`` unless it names its own: by the model's catalog tier."""
    from activities.catalog import load_catalog, resolve
    from activities.config import ProviderSettings
    from policies.routing import TIER_PRIOR, TOP_PRIOR

    try:
        tier = resolve(ref, load_catalog(ProviderSettings.from_env().catalog_path)).tier
    except (ValueError, LookupError):
        return None
    return TIER_PRIOR.get(tier, TOP_PRIOR)


def stats_table(state: RoutingStatsState, kind: str | None = None) -> Table:
    """One row per (task kind, model): observed checks and the router's estimate of the pass rate."""
    from policies.routing import Candidate

    table = Table(title=f"routing stats ({state.batches} batches recorded)")
    for column in ("task kind", "model", "passes", "failures", "observed", "prior", "est."):
        left = column in ("task kind", "model")
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    for task_kind in sorted(state.stats.counts):
        if kind is not None and task_kind != kind:
            continue
        for model, seen in sorted(state.stats.counts[task_kind].items()):
            total = seen.passes + seen.failures
            observed = f"{seen.passes / total:.2f}" if total else "-"
            prior = _tier_prior(model)
            estimate = "-"
            if prior is not None:
                candidate = Candidate(
                    name=model, tier=0, input_per_mtok=0, output_per_mtok=0, default_quality=prior
                )
                estimate = f"{state.stats.estimate(task_kind, candidate):.2f}"
            table.add_row(
                task_kind,
                model,
                str(seen.passes),
                str(seen.failures),
                observed,
                "-" if prior is None else f"{prior:.2f}",
                estimate,
            )
    return table


@routing_app.command("stats")
def stats(
    kind: Annotated[str | None, typer.Option(help="Only this task kind.")] = None,
    workflow_id: Annotated[str, typer.Option(help="Id of the stats workflow.")] = ROUTING_STATS_WORKFLOW_ID,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the learned pass rate per (task kind, model): counts, tier prior and posterior mean."""
    from temporalio.service import RPCError, RPCStatusCode

    from activities.connect import connect
    from harness.client import query_workflow

    async def go() -> RoutingStatsState:
        client = await connect()
        return await query_workflow(client, workflow_id, "stats", RoutingStatsState, what="routing stats")

    try:
        state = asyncio.run(go())
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        console.print("no routing stats yet: no job with a learning route or cascade has run")
        return
    if as_json:
        console.print_json(state.model_dump_json(exclude={"keys"}))
        return
    console.print(stats_table(state, kind))
    console.print(
        "est. = posterior mean of Beta(prior x 10 + passes, (1 - prior) x 10 + failures); "
        "prior = by the model's tier, unless a step names its own 'priors'"
    )


def routing_section(result: JobResult) -> Text:
    """The routing record of a finished job: per routed step, the decision and every attempt."""
    text = Text("routing\n", style="bold")
    for record in result.routing:
        text.append(f"  {record.step} ({record.outcome}): ", style="bold")
        text.append(f"{record.summary}\n")
        for index, attempt in enumerate(record.attempts, start=1):
            verdict = "unchecked" if attempt.passed is None else "pass" if attempt.passed else "FAIL"
            cost = "?" if attempt.cost_usd is None else f"${attempt.cost_usd:.6f}"
            check = attempt.check.split(": ", 1)[-1] if attempt.check else ""
            if attempt.check_cost_usd:
                check += f", check ${attempt.check_cost_usd:.6f}"
            text.append(f"    {index}. {attempt.model:<24} {cost:>11}  {verdict:<9} {check}\n")
    return text
