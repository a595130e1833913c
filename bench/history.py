"""How a job's Temporal history grows with its length and its texts, measured on a real dev server.

A group chat and a sequential chain of N turns (N = 10, 100, 1000) whose replies are about 100 B,
10 KB and 100 KB, each run to its end through harness's own data converter
(``activities.codec.data_converter``: the external storage and encryption this process's
environment configures). For each case it follows every run of the job (continue-as-new links) and
counts the events and the bytes of their history (cases whose replies would add up to more than
``--max-case-text``, 6 MB, are skipped and listed: the simulator streams about 4,000 tokens a
second). Then one chain of 10,000 turns, and the jobs that wedged before large payloads left
history: a chat of 120 turns of 10 KB, one of 12 turns of 100 KB, a chain of three 1 MB steps
(each must end, completed or with a stop reason). The simulator's models get room for such
replies (a catalog of 250,000 output tokens and a 50M-token window).

Prints, at the end, one line per figure:

- ``events_per_turn``: the most events per turn over the cases (target at most 8);
- ``history_bytes_per_turn``: the most history bytes per turn over the cases (target at most 2048);
- ``long_job_turns``: the turns the 10,000-turn job completed (target 10000);
- ``wedge_cases_ended``: how many of the formerly wedging jobs ended (target all 3).

Reports; never judges: exits 0 whatever the figures. A case that does not complete is reported with
its stop reason or the error that ended it.

    python bench/history.py [--turns 10,100,1000] [--sizes 100,10000,100000] [--long 10000]
                            [--no-wedges] [--max-case-text 6000000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError  # noqa: E402

from activities.catalog import SIM_PRICES, CatalogEntry, ModelCatalog, load_catalog  # noqa: E402
from activities.codec import data_converter  # noqa: E402
from activities.config import ProviderSettings  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from contracts.jobs import JobResult  # noqa: E402
from contracts.spec import JobSpec, parse_spec  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from worker import build_worker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import start_dev_server  # noqa: E402

MAX_CASE_TEXT = 6_000_000
"""Bytes of replies one case may stream (the simulator serves about 4,000 tokens a second): the
larger cases are skipped and said so, unless ``--max-case-text`` allows them."""
BYTES_PER_TOKEN = 5  # about what the simulator's padded replies average (each case prints its own)
CASE_TIMEOUT_S = 900
WEDGES = [("groupchat", 120, 10_000), ("groupchat", 12, 100_000), ("sequential", 3, 1_000_000)]


def reply_tokens(size: int) -> int:
    """The reply length in tokens that makes a reply of about ``size`` bytes."""
    return max(1, size // BYTES_PER_TOKEN)


def catalog() -> ModelCatalog:
    """The simulator's models, with room for 100 KB replies and long chats (the built-in entries
    allow 4,096 output tokens and a 128,000-token window)."""
    roomy = {
        f"sim:{name}": CatalogEntry(
            model=f"sim:{name}",
            price=SIM_PRICES[name],
            price_source="simulator",
            max_output_tokens=250_000,
            context_window=50_000_000,
        )
        for name in ("echo", "writer")
    }
    return load_catalog().merged(ModelCatalog(models=roomy))


def chat_spec(turns: int, turns_per_run: int | None = None) -> JobSpec:
    """Two agents taking turns, ``turns`` turns in all (the whole conversation is each call's input,
    as a chat's is)."""
    return parse_spec(
        {
            "id": f"hist-chat-{turns}-{uuid.uuid4().hex[:6]}",
            "mode": "groupchat",
            "task": "Talk about scheduling.",
            "agents": [
                {"name": "a", "model": "sim:echo", "max_output_tokens": 40_000},
                {"name": "b", "model": "sim:echo", "max_output_tokens": 40_000},
            ],
            "termination": {"max_rounds": max(1, turns // 2)},
            "chat": {"turns_per_run": turns_per_run},
        }
    )


def chain_spec(turns: int) -> JobSpec:
    """``turns`` steps; each sees only the task (not the chain so far), as a batch of independent
    documents would."""
    return parse_spec(
        {
            "id": f"hist-seq-{turns}-{uuid.uuid4().hex[:6]}",
            "mode": "sequential",
            "task": "Write part of the report.",
            "agents": [{"name": "a", "model": "sim:writer", "max_output_tokens": 40_000}],
            "steps": [{"id": f"s{i}", "agent": "a", "prompt": f"{{task}} (part {i})"} for i in range(turns)],
        }
    )


async def history_of(client: Client, job_id: str) -> tuple[int, int, int]:
    """Runs, events and bytes of every run of the job, first to last."""
    latest = client.get_workflow_handle(job_id)
    first_events = [event async for event in latest.fetch_history_events()]
    run_id: str | None = first_events[0].workflow_execution_started_event_attributes.first_execution_run_id
    runs = events = size = 0
    while run_id:
        handle = client.get_workflow_handle(job_id, run_id=run_id)
        run_id = None
        runs += 1
        async for event in handle.fetch_history_events():
            events += 1
            size += event.ByteSize()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs, events, size


async def run_case(client: Client, queue: str, spec: JobSpec) -> dict[str, Any]:
    """Run one job to its end; its outcome and history figures."""
    workflow = "GroupChatJob" if spec.mode == "groupchat" else "SequentialJob"
    started = time.monotonic()
    outcome: dict[str, Any] = {"id": spec.id}
    try:
        handle = await client.start_workflow(
            workflow, spec, id=spec.id or "", task_queue=queue, result_type=JobResult
        )
        result: JobResult = await asyncio.wait_for(handle.result(), CASE_TIMEOUT_S)
        outcome.update(
            stop=result.stop_reason.value, turns=result.turns, reply_bytes=len(result.output.encode())
        )
    except (WorkflowFailureError, TimeoutError) as error:
        outcome.update(stop=f"error: {type(error).__name__}: {error}"[:200], turns=None)
        description = await client.get_workflow_handle(spec.id or "").describe()
        if description.status is WorkflowExecutionStatus.RUNNING:
            await client.get_workflow_handle(spec.id or "").terminate("bench: case did not end")
    outcome["seconds"] = time.monotonic() - started
    outcome["runs"], outcome["events"], outcome["bytes"] = await history_of(client, spec.id or "")
    return outcome


async def main(
    turn_counts: list[int], sizes: list[int], long_turns: int, max_case_text: int, wedges: bool
) -> None:
    converter = data_converter()
    storage = "on" if getattr(converter, "external_storage", None) else "off"
    print(f"converter: codec {'on' if converter.payload_codec else 'off'}, external storage {storage}")
    rows: list[dict[str, Any]] = []
    long: dict[str, Any] | None = None
    wedged: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_dev_server(Path(tmp) / "temporal")
        try:
            client = await Client.connect(server.address, data_converter=converter)
            for size_index, size in enumerate(sizes + ([100] if long_turns else [])):
                # One simulator per text size: every free-text reply is that long.
                with SimServer(SimConfig(port=0, reply_tokens=reply_tokens(size))) as sim:
                    gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url), catalog=catalog())
                    queue = f"bench-history-{uuid.uuid4().hex[:8]}"
                    activities = [gateway.model_call, gateway.resolve_models]
                    async with build_worker(client, queue, activities=activities):
                        if size_index < len(sizes):
                            for mode, build in (("groupchat", chat_spec), ("sequential", chain_spec)):
                                for turns in turn_counts:
                                    if turns * size > max_case_text:
                                        print(
                                            f"{mode:>17} N={turns:<5} text={size:>6} B: skipped "
                                            f"({turns * size / 1e6:.0f} MB of replies; --max-case-text)"
                                        )
                                        continue
                                    outcome = await run_case(client, queue, build(turns))
                                    rows.append(outcome)
                                    report(mode, turns, size, outcome)
                        else:
                            long = await run_case(client, queue, chain_spec(long_turns))
                            report("sequential (long)", long_turns, size, long)
                    await gateway.aclose()
            if wedges:
                # The jobs that wedged before large payloads left history (issue #14): a chat of
                # 10 KB turns past its first continue-as-new, one of 100 KB turns, three 1 MB steps.
                for mode, turns, size in WEDGES:
                    with SimServer(SimConfig(port=0, reply_tokens=reply_tokens(size))) as sim:
                        gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url), catalog=catalog())
                        queue = f"bench-history-{uuid.uuid4().hex[:8]}"
                        activities = [gateway.model_call, gateway.resolve_models]
                        async with build_worker(client, queue, activities=activities):
                            # the chats continue as new every 100 turns, as the 10 KB one did when
                            # its 2.11 MB carry wedged it
                            spec = chat_spec(turns, 100) if mode == "groupchat" else chain_spec(turns)
                            outcome = await run_case(client, queue, spec)
                            report(f"{mode} (wedged)", turns, size, outcome)
                            wedged.append(outcome)
                        await gateway.aclose()
        finally:
            server.stop()
    per_turn = [(o["events"] / o["turns"], o["bytes"] / o["turns"]) for o in rows if o.get("turns")]
    print(f"events_per_turn: {max(e for e, _ in per_turn):.2f}" if per_turn else "events_per_turn: n/a")
    most = f"{max(b for _, b in per_turn):.0f}" if per_turn else "n/a"
    print(f"history_bytes_per_turn: {most}")
    print(f"long_job_turns: {long.get('turns') or 0}" if long is not None else "long_job_turns: n/a")
    if wedged:
        ended = sum(1 for o in wedged if o.get("turns") is not None)
        print(f"wedge_cases_ended: {ended} of {len(wedged)}")


def report(mode: str, turns: int, size: int, outcome: dict[str, Any]) -> None:
    done = outcome.get("turns")
    per = f"{outcome['events'] / done:.2f} events/turn, {outcome['bytes'] / done:.0f} B/turn" if done else "-"
    print(
        f"{mode:>17} N={turns:<5} text={size:>6} B: {outcome['stop']}, turns {done}, runs {outcome['runs']}, "
        f"{outcome['events']} events, {outcome['bytes']} B ({per}), "
        f"last reply {outcome.get('reply_bytes', 0)} B, "
        f"{outcome['seconds']:.1f} s",
        flush=True,
    )


def ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=ints, default=[10, 100, 1000], help="turn counts, comma-separated")
    parser.add_argument("--sizes", type=ints, default=[100, 10_000, 100_000], help="reply sizes in bytes")
    parser.add_argument("--long", type=int, default=10_000, help="turns of the long job (0: skip it)")
    parser.add_argument("--no-wedges", action="store_true", help="skip the cases that wedged before")
    parser.add_argument(
        "--max-case-text", type=int, default=MAX_CASE_TEXT, help="bytes of replies a case may stream"
    )
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.sizes, args.long, args.max_case_text, not args.no_wedges))
