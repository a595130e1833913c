"""What ``harness run`` does: start whatever is missing, run the job, follow it, clean up.

Missing pieces are started in this process and stopped on the way out (also on Ctrl-C), so a run
leaves no orphan processes: the Temporal dev server (when ``TEMPORAL_ADDRESS`` is unset and nothing
answers on localhost:7233), the model simulator (when a model is served by it and it is not
running), and a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

from temporalio.client import Client

from activities.catalog import ModelCatalog, UnknownModelError, UnknownPriceError, load_catalog, resolve
from activities.codec import describe
from activities.config import ProviderSettings
from activities.connect import connect, untraced
from contracts.jobs import JobResult
from contracts.names import TOOLS_ENV
from contracts.spec import JobSpec, SpecError
from harness.client import start_job
from harness.codec_server import ui_codec_endpoint
from harness.devserver import DevServer, ensure_search_attributes, ensure_server, known_ui_url
from harness.sim import SimConfig, SimServer
from harness.watch import WatchEvent, watch


@dataclass
class Services:
    """What a run is connected to, and what it started (and so must stop)."""

    client: Client
    address: str
    ui_url: str | None
    started: list[str] = field(default_factory=list)


def uses_simulator(spec: JobSpec, settings: ProviderSettings, catalog: ModelCatalog | None) -> bool:
    """Whether any agent's model would be served by the local simulator."""
    return any(settings.endpoint(resolve(ref, catalog).provider).simulated for ref in spec.model_refs())


def check_models(spec: JobSpec, catalog: ModelCatalog | None) -> None:
    """Refuse, before anything starts, a model that is unknown (naming the nearest known ones) or has
    no known price; the worker resolving the models at the job's start would refuse them too."""
    for ref in spec.model_refs():
        try:
            resolve(ref, catalog)
        except (UnknownModelError, UnknownPriceError) as error:  # each names the reference
            raise SpecError(str(error)) from None
        except (ValueError, LookupError) as error:
            raise SpecError(f"model {ref!r}: {error}") from None


def check_tools(spec: JobSpec, catalog_path: str | None, *, needed: bool = True) -> None:
    """Refuse, before anything starts, a tool or MCP server the catalog does not name.

    Without a catalog here the worker's is unknown: a spec naming tools is refused when this
    process runs the worker (``needed``), and otherwise left to the worker's ``list_tools``.
    """
    refs = list(dict.fromkeys(ref for agent in spec.agents for ref in agent.tools))
    if not refs:
        return
    if not catalog_path:
        if needed:
            raise SpecError(
                f"the spec names tools ({', '.join(refs)}) but no tool catalog is set: "
                f"pass --tools PATH or set {TOOLS_ENV}"
            )
        return
    from activities.tool_catalog import check_tool_refs, load_tool_catalog

    try:
        problems = check_tool_refs(load_tool_catalog(catalog_path), refs)
    except ValueError as error:  # the catalog file itself: unreadable, a bad field, a module missing
        raise SpecError(str(error)) from None
    if problems:
        raise SpecError("; ".join(problems))


def _sim_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_sim/prices", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.asynccontextmanager
async def services(spec: JobSpec, data_dir: Path, say: Callable[[str], None]) -> AsyncIterator[Services]:
    """Connect to Temporal and the simulator, starting either when missing; stop what we started."""
    server: DevServer | None = None
    sim: SimServer | None = None
    started: list[str] = []
    try:
        say(describe())
        endpoint = ui_codec_endpoint()
        address, server = await asyncio.to_thread(ensure_server, data_dir, ui_codec_endpoint=endpoint)
        if server is not None:
            started.append(f"Temporal dev server (pid {server.pid}, data in {data_dir})")
        settings = ProviderSettings.from_env()
        catalog = load_catalog(settings.catalog_path)
        if uses_simulator(spec, settings, catalog) and not _sim_answers(settings.sim_url):
            port = urlparse(settings.sim_url).port or 8765
            sim = SimServer(SimConfig(port=port))
            sim.start()
            started.append(f"model simulator ({sim.url})")
        client = await connect(address if os.environ.get("TEMPORAL_ADDRESS") is None else None)
        await ensure_search_attributes(client, client.namespace)
        ui_url = server.ui_url if server is not None else known_ui_url(address, data_dir)
        for line in started:
            say(f"started {line}")
        yield Services(client=client, address=address, ui_url=ui_url, started=started)
    finally:
        if sim is not None:
            sim.stop()
        if server is not None:
            await asyncio.to_thread(server.stop)


def job_url(ui_url: str | None, namespace: str, job_id: str) -> str | None:
    """The job's page in the Temporal Web UI."""
    if not ui_url:
        return None
    return f"{ui_url.rstrip('/')}/namespaces/{quote(namespace)}/workflows/{quote(job_id)}"


async def follow(client: Client, job_id: str, on_event: Callable[[WatchEvent], None]) -> JobResult:
    """Watch the job until it ends (``harness.watch``), handing each event to ``on_event``; return
    its result (a failed job raises, as ``handle.result()`` does). The watcher's reads are not
    traced: each would be a trace of its own, several a second, beside the one trace of the job."""
    quiet = untraced(client)
    async for event in watch(quiet, job_id):
        on_event(event)
    result: JobResult = await quiet.get_workflow_handle(job_id, result_type=JobResult).result()
    return result


async def run_job(
    spec: JobSpec,
    *,
    data_dir: Path,
    with_worker: bool,
    say: Callable[[str], None],
    on_start: Callable[[str, str | None], None],
    on_event: Callable[[WatchEvent], None],
) -> tuple[JobResult, str | None]:
    """Start ``spec``, follow it to the end, and return its result and UI link."""
    async with services(spec, data_dir, say) as svc:
        worker_cm = contextlib.nullcontext()
        if with_worker:
            from worker import build_worker  # the composition root; imported late on purpose

            worker_cm = build_worker(svc.client)  # type: ignore[assignment]  # a WorkerGroup
        async with worker_cm:  # type: ignore[attr-defined]
            handle = await start_job(svc.client, spec)
            url = job_url(svc.ui_url, svc.client.namespace, handle.id)
            on_start(handle.id, url)
            result = await follow(svc.client, handle.id, on_event)
            return result, url
