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
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.budget_account import BudgetAccountActivities
from activities.catalog import ModelCatalog, ProviderLimits
from activities.checks import CheckActivities, load_check_modules

# Re-exported: `from worker import connect` (and the rest) goes on working.
from activities.connect import DEFAULT_ADDRESS as DEFAULT_ADDRESS
from activities.connect import connect as connect
from activities.connect import task_queue as task_queue
from activities.connect import tracing_interceptors as tracing_interceptors
from activities.fairness import FairnessActivities
from activities.model_call import ModelCallActivities
from activities.queue_limits import apply_limits
from activities.routing_stats import RoutingStatsActivities
from activities.team_board import TeamBoardActivities
from activities.tool_catalog import load_tool_catalog
from activities.tools import ToolActivities
from contracts.names import ROLE_QUEUES_ENV, ROLES, models_queue, tools_queue
from workflows import ALL_WORKFLOWS

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


DRAIN_TIMEOUT_ENV = "HARNESS_DRAIN_TIMEOUT_S"
WORKER_QUEUES_ENV = "HARNESS_WORKER_QUEUES"
DEPLOYMENT_NAME_ENV = "HARNESS_DEPLOYMENT_NAME"
BUILD_ID_ENV = "HARNESS_BUILD_ID"
DEFAULT_DRAIN = timedelta(seconds=30)


def parse_roles(value: str | None) -> tuple[str, ...]:
    """``jobs,models,tools`` (any subset; empty or None: all) as roles in ``ROLES`` order; a
    ``ValueError`` names an unknown one."""
    if value is None or not value.strip():
        return ROLES
    asked = {part.strip() for part in value.split(",") if part.strip()}
    unknown = sorted(asked - set(ROLES))
    if unknown:
        raise ValueError(f"unknown queue {', '.join(map(repr, unknown))}: use any of {', '.join(ROLES)}")
    return tuple(role for role in ROLES if role in asked)


def drain_timeout(value: str | None = None) -> timedelta:
    """How long a worker told to stop lets its running activities finish (``HARNESS_DRAIN_TIMEOUT_S``)."""
    raw = value if value is not None else os.environ.get(DRAIN_TIMEOUT_ENV, "")
    if not raw.strip():
        return DEFAULT_DRAIN
    seconds = float(raw)
    if seconds < 0:
        raise ValueError(f"{DRAIN_TIMEOUT_ENV} must be 0 or more seconds, not {raw!r}")
    return timedelta(seconds=seconds)


def deployment_config(environ: Mapping[str, str] | None = None) -> WorkerDeploymentConfig | None:
    """Worker versioning from ``HARNESS_DEPLOYMENT_NAME`` and ``HARNESS_BUILD_ID`` (both, or none):
    the worker polls as that version of that deployment, and workflows it starts stay pinned to it
    (they finish on the code they began with; new jobs go to the deployment's current version)."""
    env = os.environ if environ is None else environ
    name, build = env.get(DEPLOYMENT_NAME_ENV, "").strip(), env.get(BUILD_ID_ENV, "").strip()
    if not name and not build:
        return None
    if not name or not build:
        raise ValueError(
            f"set both {DEPLOYMENT_NAME_ENV} and {BUILD_ID_ENV} for worker versioning, or neither"
        )
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=name, build_id=build),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


class WorkerGroup:
    """The workers of one process, one ``Worker`` per task queue its roles serve (``contracts.names
    .ROLES``: ``jobs`` on the jobs queue, ``models`` on its model queues, ``tools`` on its tool
    queue), started, run and stopped together. Each is given every activity: a queue only ever
    carries its role's tasks (and the jobs queue, the model and tool calls of jobs that started
    before roles had queues). Entering it first sets the rate limits of the providers' own queues;
    once every worker has stopped it closes what it owns (the gateway's SDK clients, MCP sessions).

    Stopping (``shutdown``, leaving ``async with``, or SIGTERM in ``run_worker``) drains: no new task
    is polled, running activities get ``graceful_shutdown_timeout`` to finish, and what is still
    running then is cancelled and handed back to Temporal, which runs it again elsewhere (a model
    call's receipt makes the re-run charge exactly what the provider served)."""

    def __init__(
        self,
        client: Client,
        queue: str,
        workers: Sequence[Worker],
        limits: Mapping[str, ProviderLimits],
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.client = client
        self.task_queue = queue
        """The jobs queue (jobs started on it are served by this group's roles)."""
        self.workers = list(workers)
        self.limits = dict(limits)
        self._closers = list(closers)
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def queues(self) -> list[str]:
        """Every task queue the group polls."""
        return [worker.task_queue for worker in self.workers]

    def config(self) -> Any:
        """The first worker's config (its activities are every worker's)."""
        return self.workers[0].config()

    async def __aenter__(self) -> WorkerGroup:
        # The rate limits of the queues this group serves (a provider's, an MCP server's).
        await apply_limits(self.client, {q: lim for q, lim in self.limits.items() if q in self.queues})
        stack = contextlib.AsyncExitStack()
        try:
            for worker in self.workers:
                await stack.enter_async_context(worker)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.shutdown()  # all at once: each drains in parallel
            if self._stack is not None:
                await self._stack.__aexit__(*exc)  # type: ignore[arg-type]
        finally:
            await self._close()

    async def run(self) -> None:
        """Run every worker until they are shut down, then close the owned resources."""
        try:
            await asyncio.gather(*(worker.run() for worker in self.workers))
        finally:
            await self._close()

    async def shutdown(self) -> None:
        """Drain and stop every worker (see the class doc)."""
        await asyncio.gather(*(worker.shutdown() for worker in self.workers))

    async def _close(self) -> None:
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
    roles: Sequence[str] = ROLES,
    catalog: ModelCatalog | None = None,
    **options: Any,
) -> WorkerGroup:
    """The workers serving jobs on ``queue`` for ``roles``: every harness workflow (role ``jobs``)
    and the activities (see ``WorkerGroup``).

    With ``activities`` omitted it makes its own (gateway, routing stats, checks, team board, tools)
    and closes the gateway's SDK clients and the MCP sessions when it stops; given ``activities`` are
    the caller's to close. The providers with a rate limit of their own come from ``catalog``, else
    from the catalog of the gateway among the activities.
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
        fairness = FairnessActivities(client)  # the token-fairness workflow writes weights through it
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
            fairness.set_fairness_weights,
            tools.list_tools,
            tools.tool_call,
        ]
    owners = [getattr(fn, "__self__", None) for fn in activities]
    model_calls = next((o for o in owners if isinstance(o, ModelCallActivities)), None)
    if catalog is None and model_calls is not None:
        catalog = model_calls.catalog
    env_split = os.environ.get(ROLE_QUEUES_ENV, "") == "1"
    split = model_calls.role_queues if model_calls is not None else env_split
    if set(roles) != set(ROLES) and not split:
        raise ValueError(
            f"serving only {', '.join(roles) or 'no roles'} needs {ROLE_QUEUES_ENV}=1 on every worker: "
            "without it model and tool calls run on the jobs queue, with the job"
        )
    servers = next((o.catalog.mcp for o in owners if isinstance(o, ToolActivities)), {})
    queue = queue or task_queue()
    # The rate-limited queues, by name: a provider's model queue, an MCP server's tool queue.
    limited: dict[str, ProviderLimits] = {}
    for provider, limit in catalog.providers.items() if catalog is not None else []:
        limited[models_queue(queue, provider)] = limit
    for server, config in servers.items():
        if config.rps is not None:
            limited[tools_queue(queue, server)] = ProviderLimits(rps=config.rps)
    queues: list[tuple[str, bool]] = []  # (task queue, with workflows)
    if "jobs" in roles:
        queues.append((queue, True))
    for role, shared in (("models", models_queue(queue)), ("tools", tools_queue(queue))):
        if role in roles:
            own = sorted(name for name in limited if name.startswith(f"{shared}-"))
            queues += [(name, False) for name in ([shared] if split else []) + own]
    if not queues:
        raise ValueError(f"a worker needs at least one of {', '.join(ROLES)}")
    options.setdefault("graceful_shutdown_timeout", drain_timeout())
    versioning = deployment_config()
    if versioning is not None:
        options.setdefault("deployment_config", versioning)
    workers = [
        Worker(
            client,
            task_queue=name,
            workflows=ALL_WORKFLOWS if with_workflows else [],
            activities=list(activities),
            workflow_runner=workflow_runner(),
            max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
            default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
            **options,
        )
        for name, with_workflows in queues
    ]
    return WorkerGroup(client, queue, workers, limited, closers)


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
    address: str | None = None,
    namespace: str | None = None,
    on_ready: Callable[[WorkerGroup], None] | None = None,
    roles: Sequence[str] | None = None,
    drain: timedelta | None = None,
) -> None:
    """Connect and run the workers of ``roles`` (default ``HARNESS_WORKER_QUEUES``, else all) until
    cancelled or sent SIGTERM, which drains them (``drain``, default ``HARNESS_DRAIN_TIMEOUT_S`` or
    30 s, for running activities to finish); ``on_ready(group)`` once they poll."""
    if sys.dont_write_bytecode and uncompiled_workflow_modules():
        logging.getLogger(__name__).warning(
            "workflow modules have no bytecode and PYTHONDONTWRITEBYTECODE is set: every workflow run "
            "compiles them again; run `python -m compileall workflows` once to avoid it"
        )
    roles = roles if roles is not None else parse_roles(os.environ.get(WORKER_QUEUES_ENV))
    options: dict[str, Any] = {"graceful_shutdown_timeout": drain} if drain is not None else {}
    client = await connect(address, namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with build_worker(client, roles=roles, **options) as group:  # stops (drains) on the way out
            if on_ready is not None:
                on_ready(group)
            await stop.wait()
            logging.getLogger(__name__).info(
                "SIGTERM: draining (no new tasks; running ones get %s to finish)",
                group.workers[0].config().get("graceful_shutdown_timeout"),
            )
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


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
