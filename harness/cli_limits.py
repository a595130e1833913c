"""``harness limits ...``: provider rate limits, held cluster-wide on the providers' model queues.

A provider the catalog (``HARNESS_CATALOG``) gives an ``rps`` has a task queue of its own for its
model calls, and Temporal dispatches that queue's tasks at most at its rate limit, to all workers
together (``activities.queue_limits``). Workers set the catalog's limits when they start; ``set``
changes a limit on the running cluster (until a worker starts again with the catalog's), ``show``
reads back what Temporal holds.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness.cli_errors import fail as _fail

__all__ = ["limits_app"]

limits_app = typer.Typer(
    help="Provider rate limits, held cluster-wide by Temporal on each provider's model queue.",
    no_args_is_help=True,
)
console = Console()


@limits_app.command("show")
def show() -> None:
    """Each provider's limit: the catalog's, and what Temporal holds on its model queue."""
    from activities.catalog import load_catalog
    from activities.config import PROVIDERS, ProviderSettings
    from activities.connect import connect, task_queue
    from activities.queue_limits import QueueLimit, queue_rate, read_limit
    from contracts.names import models_queue

    catalog = load_catalog(ProviderSettings.from_env().catalog_path)

    async def go() -> list[QueueLimit]:
        client = await connect()
        return [await read_limit(client, models_queue(task_queue(), provider)) for provider in PROVIDERS]

    held = asyncio.run(go())
    table = Table(title=f"rate limits of jobs on task queue {task_queue()!r}")
    for column in ("provider", "catalog rps", "model queue", "queue rps", "per tenant rps"):
        table.add_column(column, justify="left" if column in ("provider", "model queue") else "right")
    for provider, limit in zip(PROVIDERS, held, strict=True):
        configured = catalog.providers.get(provider)
        table.add_row(
            provider,
            f"{configured.rps:g}" if configured is not None else "-",
            limit.queue if configured is not None else "(shared model queue)",
            f"{limit.rps:g}" if limit.rps is not None else "-",
            f"{limit.tenant_rps:g}" if limit.tenant_rps is not None else "-",
        )
    console.print(table)
    console.print(
        f"queue rps = catalog rps x {queue_rate(1000.0) / 1000:.3f}: room for Temporal's start-up "
        "burst within any 5 s window",
        highlight=False,
    )


@limits_app.command("set")
def set_(
    provider: Annotated[str, typer.Argument(help="sim, openai, anthropic or openai-compatible.")],
    rps: Annotated[float | None, typer.Option(help="Requests per second the provider allows.")] = None,
    tenant_rps: Annotated[
        float | None, typer.Option(help="Requests per second one tenant may use (scaled by its weight).")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Lift the limit.")] = False,
) -> None:
    """Set (or lift) a provider's rate limit on the running cluster."""
    from activities.catalog import ProviderLimits, load_catalog
    from activities.config import PROVIDERS, ProviderSettings
    from activities.connect import connect, task_queue
    from activities.queue_limits import queue_rate, set_limit
    from contracts.names import models_queue

    if provider not in PROVIDERS:
        _fail(f"unknown provider {provider!r}: use one of {', '.join(PROVIDERS)}", code=2)
    if off == (rps is not None):
        _fail("give --rps R (and optionally --tenant-rps R), or --off", code=2)
    for name, value in (("--rps", rps), ("--tenant-rps", tenant_rps)):
        if value is not None and value <= 0:
            _fail(f"{name} must be positive, not {value:g}", code=2)
    catalog = load_catalog(ProviderSettings.from_env().catalog_path)
    if provider not in catalog.providers:
        _fail(
            f"provider {provider!r} has no rate limit in the catalog, so its calls share the model queue "
            f"and a limit there would hold every provider: add `providers: {{{provider}: {{rps: R}}}}` "
            "to the catalog (HARNESS_CATALOG) and restart the workers",
            code=2,
        )
    limits = None if rps is None else ProviderLimits(rps=rps, tenant_rps=tenant_rps)
    queue = models_queue(task_queue(), provider)

    async def go() -> None:
        await set_limit(await connect(), queue, limits, reason=f"harness limits set {provider}")

    asyncio.run(go())
    if limits is None:
        console.print(f"{provider}: limit lifted on task queue {queue!r}")
        return
    tenant = f", {queue_rate(limits.tenant_rps):g} per tenant" if limits.tenant_rps is not None else ""
    console.print(
        f"{provider}: {limits.rps:g} rps -> task queue {queue!r} at {queue_rate(limits.rps):g} rps{tenant}",
        highlight=False,
    )
