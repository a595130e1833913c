"""The composition root: connects, registers every workflow and activity, runs.

``python worker.py`` (or ``harness worker``) runs a worker against the configured Temporal
(``TEMPORAL_*`` environment); model-provider keys are read here, from this process's environment,
and never travel in workflow inputs or history.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.envconfig import ClientConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.budget_account import BudgetAccountActivities
from activities.checks import CheckActivities, load_check_modules
from activities.codec import data_converter
from activities.model_call import ModelCallActivities
from activities.routing_stats import RoutingStatsActivities
from activities.team_board import TeamBoardActivities
from activities.telemetry import JobSpanInterceptor, setup_from_env
from activities.tool_catalog import load_tool_catalog
from activities.tools import ToolActivities
from contracts.names import TASK_QUEUE, TASK_QUEUE_ENV
from workflows import ALL_WORKFLOWS

DEFAULT_ADDRESS = "127.0.0.1:7233"


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    """Connect to Temporal with harness's data converter (pydantic; encrypted when a key is set,
    see ``activities.codec``).

    Configuration comes from the standard ``TEMPORAL_*`` environment (``TEMPORAL_ADDRESS``,
    ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*``) or a Temporal config file;
    an explicit ``address`` wins over both. With an ``OTEL_*`` exporter set (``activities.telemetry``)
    the client traces through ``temporalio.contrib.opentelemetry``, and so do the workers made from it.
    """
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    config["data_converter"] = data_converter()
    config["interceptors"] = tracing_interceptors() if setup_from_env() else []
    return await Client.connect(**config)


def tracing_interceptors(tracer: Any = None) -> list[Any]:
    """Client (and so worker) interceptors that trace: Temporal's spans for client calls, workflows
    and activities, propagated through headers, and the job-end span (``JobSpanInterceptor``) inside
    them. ``tracer``: the global provider's unless given."""
    return [TracingInterceptor(tracer), JobSpanInterceptor()]


def task_queue() -> str:
    """The task queue jobs and workers meet on (``HARNESS_TASK_QUEUE`` overrides)."""
    return os.environ.get(TASK_QUEUE_ENV, TASK_QUEUE)


# The workflow sandbox's pass-through list, with a reason per module. Pass-through modules are
# imported once, outside the sandbox, and shared by every workflow run: safe only for deterministic
# code with no I/O. Workflow modules import nothing else from outside (no provider SDK, no HTTP).
PASSTHROUGH_MODULES: dict[str, str] = {
    "pydantic": "data models of specs and payloads; pure validation, reloading it per run is slow",
    "pydantic_core": "pydantic's compiled core",
    "annotated_types": "pydantic's constraint types",
    "contracts": "our spec models, wire types and names: pure data definitions, no I/O",
    "policies": "our pure decision code (no I/O, no clock, no randomness by the layer rule)",
    "jsonschema": "JSON Schema goal checks (policies.goals): pure validation of a value",
    "opentelemetry": "the tracing interceptor's context and spans: one module for the worker and its "
    "workflows (a copy per run would not see the worker's tracer); its workflow spans skip replay",
}


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner every worker and replayer uses."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    return SandboxedWorkflowRunner(restrictions=restrictions)


# Heartbeats reach the server at least this often, so a cancellation lands within about a second
# (the SDK throttles to the smaller of this and 80% of the heartbeat timeout: the model call's 10 s
# timeout does not slow cancels down).
HEARTBEAT_THROTTLE = timedelta(milliseconds=500)


class HarnessWorker(Worker):
    """A ``Worker`` that also closes what it owns (the gateway's SDK clients) once it has stopped,
    however it stops: ``async with``, ``shutdown()`` or cancellation of ``run()``."""

    def __init__(
        self, *args: Any, closers: Sequence[Callable[[], Awaitable[None]]] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._closers = list(closers)

    async def run(self) -> None:
        """Run until shut down (every activity finished), then close the owned resources."""
        try:
            await super().run()
        finally:
            closers, self._closers = self._closers, []
            for close in closers:
                try:
                    await close()
                except Exception:  # a pool that fails to close must not hide why the worker stopped
                    logging.getLogger(__name__).warning("closing %r failed", close, exc_info=True)


def build_worker(
    client: Client,
    queue: str | None = None,
    activities: Sequence[Any] | None = None,
    **options: Any,
) -> Worker:
    """A worker serving every harness workflow and the model-call activities.

    With ``activities`` omitted it makes its own (gateway, routing stats, checks, team board, tools)
    and closes the gateway's SDK clients and the MCP sessions when it stops; given ``activities`` are
    the caller's to close.
    """
    closers: list[Callable[[], Awaitable[None]]] = []
    if activities is None:
        gateway = ModelCallActivities()
        closers.append(gateway.aclose)
        stats = RoutingStatsActivities(client)
        load_check_modules()  # HARNESS_CHECKS: modules whose checks must be registered first
        checks = CheckActivities()
        board = TeamBoardActivities(client)  # team members reach their coordinator's board through it
        accounts = BudgetAccountActivities(client)
        # HARNESS_TOOLS: the tool catalog (its Python modules imported here); none: no tools at all.
        tools = ToolActivities(load_tool_catalog())
        closers.append(tools.aclose)  # stops the MCP servers it started
        activities = [
            gateway.model_call,
            gateway.resolve_models,
            stats.routing_stats,
            checks.run_check,
            board.team_board,
            accounts.budget_account,  # leases of jobs naming an account
            accounts.budget_account_reap,  # the accounts' check of leases whose job ended
            tools.list_tools,
            tools.tool_call,
        ]
    return HarnessWorker(
        client,
        closers=closers,
        task_queue=queue or task_queue(),
        workflows=ALL_WORKFLOWS,
        activities=list(activities),
        workflow_runner=workflow_runner(),
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        **options,
    )


def uncompiled_workflow_modules(directory: Path | None = None) -> list[Path]:
    """Workflow modules without up-to-date bytecode. The sandbox imports them afresh for every
    workflow run, so with ``PYTHONDONTWRITEBYTECODE`` set each run compiles them from source again
    (about 40 ms of CPU per run, measured): ``python -m compileall workflows`` once avoids it."""
    stale = []
    directory = directory or Path(__file__).resolve().parent / "workflows"
    for source in sorted(directory.glob("*.py")):
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.exists() or cached.stat().st_mtime < source.stat().st_mtime:
            stale.append(source)
    return stale


async def run_worker(
    address: str | None = None, namespace: str | None = None, on_ready: Callable[[str], None] | None = None
) -> None:
    """Connect and run a worker until cancelled; ``on_ready(task queue)`` once it is connected."""
    if sys.dont_write_bytecode and uncompiled_workflow_modules():
        logging.getLogger(__name__).warning(
            "workflow modules have no bytecode and PYTHONDONTWRITEBYTECODE is set: every workflow run "
            "compiles them again; run `python -m compileall workflows` once to avoid it"
        )
    client = await connect(address, namespace)
    async with build_worker(client) as worker:  # closes the SDKs' HTTP connections when it stops
        if on_ready is not None:
            on_ready(worker.task_queue)
        await asyncio.Event().wait()


LOG_LEVEL_ENV = "HARNESS_LOG_LEVEL"
_PER_REQUEST_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")


def configure_logging(file: Path | None = None) -> None:
    """The worker's log: its stderr, or ``file`` (``harness run`` keeps the person's terminal for
    the job), at ``HARNESS_LOG_LEVEL`` (default INFO). MCP servers' stderr comes here too, a line
    each, prefixed with the server's name; the HTTP clients' line per request only from WARNING."""
    level = os.environ.get(LOG_LEVEL_ENV, "INFO").strip().upper() or "INFO"
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(file, encoding="utf-8") if file is not None else logging.StreamHandler()
    logging.basicConfig(
        level=level, handlers=[handler], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in _PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def main() -> None:
    """Entry point for ``python worker.py``."""
    configure_logging()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker())


if __name__ == "__main__":
    main()
