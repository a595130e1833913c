"""Accounting accuracy: estimated usage against what the simulator served, and the ledger under crashes.

Estimates (``--calls`` calls of each kind, every call on a model name of its own so the simulator's
per-model tally says what that one call was served):

- unstreamed-usage: streamed calls to a server that reports no usage (``openai-compatible`` pointed
  at the simulator's ``/v1`` with stream usage off, so not treated as simulated), run in-process
  through ``temporalio.testing.ActivityEnvironment``; prompts and replies of varied text and length
  (20 to 300 reply tokens). Estimated: the result's usage. Served: the completed request's input
  and output tokens.
- interrupted: streamed calls cancelled mid-stream (``ActivityEnvironment.cancel``: the activity
  returns its partial reply with estimated usage), at 40 to 120 tokens per second, cut after 0.3 to
  2.1 s. Estimated: the result's usage. Served: the cut request's prompt and the output tokens the
  simulator wrote.
- worker-killed: one-call sequential jobs on a dev server of the bench's own, run by ``worker.py``
  processes sharing a receipts directory, in batches; once every call of a batch streams, the
  worker is SIGKILLed and a new one started; the retry charges the dead attempt's ``lost_usage``
  from its receipt. Estimated: the job's ledger tokens minus its turn's (the retry's real usage).
  Served: the model's cut requests at the simulator (prompt and output written).
- prompt-killed: the same, but the simulator holds each reply's first token back for 6 s and the
  worker is SIGKILLed a second after every call of the batch reached it: the provider has the
  prompts and has sent no output. Served: the cut requests' prompts.

``estimate_ratio_*`` is estimated / served over all calls pooled; ``undercharged_calls`` counts
calls estimated below what was served.

Crashes: ``--jobs`` jobs (sequential, dag and group chat in turn; streamed calls of 1 to 3 s) on
their own dev server with a shared receipts directory. The dev server is SIGKILLed twice while calls
stream and restarted on its data directory after ``--outage`` seconds (half the jobs start after the
first restart, so the second kill meets calls too), and the worker process is SIGKILLed and replaced
every ``--kill-every`` seconds on average (jittered) while the server is up, until ``--churn``
seconds after the second restart: under that churn calls almost never complete, so it stops for the
jobs to end. ``crash_ledger_ratio`` is the jobs' ledger
tokens over every token the simulator served (completed and cut requests, input and output);
``crash_paid_twice`` is the simulator's completed requests minus the calls the jobs made.

Reports; never judges: exits 0 whatever the figures.

    python bench/accounting.py [--calls 50] [--batch 25] [--jobs 20] [--outage 11] [--kill-every 5]
    python bench/accounting.py --quick      # 10 calls of each kind, 6 jobs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import kill, kill_server, served_tokens, sim_tally, start_dev_server, start_worker  # noqa: E402
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle  # noqa: E402
from temporalio.testing import ActivityEnvironment  # noqa: E402

from activities.config import ProviderSettings  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from contracts.jobs import JobResult, TurnRecord  # noqa: E402
from contracts.models import Message, ModelCallRequest, ModelCallResult, ModelInfo, ModelPrice  # noqa: E402
from contracts.spec import JobSpec, parse_spec  # noqa: E402
from harness.client import start_job  # noqa: E402
from harness.devserver import DevServer  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from worker import connect  # noqa: E402

PRICE = ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))
# Texts of different shapes (prose, code, figures, punctuation, another language): characters per
# token differ between them, so the estimator is not measured on one point.
PROMPTS = (
    "Summarise the trade-offs of durable execution for long-running AI agents.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n# Explain this, line by line.",
    "Order #4471: 3 x widget @ $12.50, 2 x gadget @ $7.99; tax 8.25%. What is the total?",
    "Übersetze bitte: 'The quick brown fox jumps over the lazy dog', und erkläre die Grammatik.",
    "List the planets, comma-separated, from Mercury outwards; then name the largest moon of each.",
    "{'id': 17, 'tags': ['a', 'b'], 'ok': true} -> is this valid JSON? If not, fix it.",
    "Why do schedulers age the priority of waiting work, and what happens when they do not?",
)
SYSTEMS = ("", "You are a careful assistant. Answer in plain, short sentences.")


@dataclass
class Sample:
    """One call: what was charged as estimated, and what the simulator served for it."""

    kind: str
    estimated: int
    served: int

    @property
    def ratio(self) -> float:
        return self.estimated / self.served if self.served else float("inf")


def open_log(path: Path) -> IO[bytes]:
    """A log file the worker processes append to (kept with ``--keep``)."""
    return path.open("ab")


def prompt_text(index: int) -> str:
    """A prompt of varied shape and length (one to four repeats of a text)."""
    return " ".join([PROMPTS[index % len(PROMPTS)]] * (1 + index % 4))


def model_info(provider: Any, name: str) -> ModelInfo:
    return ModelInfo(
        ref=f"{provider}:{name}", provider=provider, model=name, price=PRICE, price_source="catalog"
    )


def call_request(index: int, model: ModelInfo, prompt: str, max_output_tokens: int) -> ModelCallRequest:
    return ModelCallRequest(
        call_id=f"c{index}",
        job_id="bench-accounting",
        agent="a",
        model=model,
        system=SYSTEMS[index % len(SYSTEMS)],
        messages=[Message(role="user", content=prompt)],
        max_output_tokens=max_output_tokens,
    )


async def counters_once(sim: SimServer, model: str, key: str, within: float = 10.0) -> dict[str, int]:
    """The tally of ``model`` once ``key`` is at least 1 (the handler thread records a request a
    little after the client has read its end)."""
    deadline = time.monotonic() + within
    while True:
        counters: dict[str, int] = (await asyncio.to_thread(sim_tally, sim))["models"].get(model, {})
        if counters.get(key, 0) >= 1 or time.monotonic() > deadline:
            return counters
        await asyncio.sleep(0.05)


# --- estimates: in-process calls -----------------------------------------------------------------


async def unstreamed(sim: SimServer, calls: int) -> list[Sample]:
    """Streamed calls whose server reports no usage: the activity estimates it."""
    settings = ProviderSettings(
        sim_url=sim.url, openai_compatible_base_url=f"{sim.url}/v1", openai_compatible_stream_usage=False
    )
    gateway = ModelCallActivities(settings, receipts=None)
    limit = asyncio.Semaphore(8)

    async def one(index: int) -> Sample:
        name = f"acct-u{index:02d}"
        tokens = 20 + 280 * index // max(1, calls - 1)
        prompt = f"{prompt_text(index)} [[sim latency=0 tps=0 tokens={tokens}]]"
        request = call_request(index, model_info("openai-compatible", name), prompt, 400)
        async with limit:
            result: ModelCallResult = await ActivityEnvironment().run(gateway.model_call, request)
        counters = await counters_once(sim, name, "completed")
        assert result.usage.estimated, "the server reported no usage: it must be estimated"
        return Sample(
            "unstreamed-usage",
            result.usage.total_tokens,
            counters["input_tokens"] + counters["output_tokens"],
        )

    try:
        return list(await asyncio.gather(*(one(i) for i in range(calls))))
    finally:
        await gateway.aclose()


async def interrupted(sim: SimServer, calls: int) -> list[Sample]:
    """Streamed calls cancelled mid-stream: the activity returns its partial reply, usage estimated."""
    gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url), receipts=None)
    limit = asyncio.Semaphore(8)

    async def one(index: int) -> Sample:
        name = f"acct-i{index:02d}"
        tps = 40 + (index * 7) % 81
        cut_after = 0.3 + (index % 10) * 0.2  # well before the 400 tokens end (3.3 s at most)
        prompt = f"{prompt_text(index)} [[sim latency=0 tps={tps} tokens=400]]"
        request = call_request(index, model_info("sim", name), prompt, 500)
        env = ActivityEnvironment()
        async with limit:
            running = asyncio.ensure_future(env.run(gateway.model_call, request))
            await asyncio.sleep(cut_after)
            env.cancel()
            result: ModelCallResult = await running
        assert result.finish_reason == "cancelled", result.finish_reason
        counters = await counters_once(sim, name, "incomplete")
        served = counters["incomplete_input_tokens"] + counters["incomplete_output_tokens"]
        return Sample("interrupted", result.usage.total_tokens, served)

    try:
        return list(await asyncio.gather(*(one(i) for i in range(calls))))
    finally:
        await gateway.aclose()


# --- estimates: worker processes killed mid-stream -----------------------------------------------


def killed_spec(index: int, prefix: str = "k", latency: float = 0) -> JobSpec:
    tokens = 150 + (index * 37) % 201  # 150 to 350 tokens at 40 per second: 3.75 to 8.75 s
    return parse_spec(
        {
            "id": f"acct-killed-{prefix}{index:02d}-{uuid.uuid4().hex[:6]}",
            "task": prompt_text(index),
            "agents": [
                {
                    "name": "a",
                    "model": f"sim:{prefix}{index:02d}",
                    "instructions": SYSTEMS[index % len(SYSTEMS)],
                    "max_output_tokens": 400,
                }
            ],
            "steps": [
                {
                    "id": "s",
                    "agent": "a",
                    "prompt": f"{{task}} [[sim latency={latency:g} tps=40 tokens={tokens}]]",
                }
            ],
        }
    )


async def worker_killed(
    sim: SimServer, tmp: Path, calls: int, batch: int, kind: str = "worker-killed"
) -> list[Sample]:
    """One-call jobs whose worker is SIGKILLed mid-stream (``prompt-killed``: while the simulator
    holds the first token back); the retry charges the dead attempt."""
    prefix, latency = ("p", 6.0) if kind == "prompt-killed" else ("k", 0.0)
    catalog = tmp / f"catalog-{prefix}.yaml"  # a model name per call: the tally attributes every request
    catalog.write_text(
        "models:\n"
        + "".join(
            f"  'sim:{prefix}{i:02d}': "
            f"{{model: 'sim:{prefix}{i:02d}', price: {{input_per_mtok: 1, output_per_mtok: 2}}}}\n"
            for i in range(calls)
        )
    )
    extra = {"HARNESS_RECEIPTS_DIR": str(tmp / f"receipts-{kind}"), "HARNESS_CATALOG": str(catalog)}
    queue = f"acct-killed-{uuid.uuid4().hex[:8]}"
    samples: list[Sample] = []
    with (
        open_log(tmp / f"workers-{kind}.log") as log,
        start_dev_server(tmp / f"temporal-{kind}") as server,
    ):
        client = await connect(server.address)
        worker = start_worker(server.address, queue, sim, log, **extra)
        try:
            for first in range(0, calls, batch):
                indices = range(first, min(calls, first + batch))
                handles = [await start_job(client, killed_spec(i, prefix, latency), queue) for i in indices]
                names = [f"{prefix}{i:02d}" for i in indices]
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # until every call of the batch reached the simulator
                    models = (await asyncio.to_thread(sim_tally, sim))["models"]
                    if all(models.get(n, {}).get("requests", 0) >= 1 for n in names):
                        break
                    await asyncio.sleep(0.1)
                # Latency 0: every call streams by now; 6 s: every prompt waits for its first token.
                await asyncio.sleep(1.0)
                kill(worker)
                worker = start_worker(server.address, queue, sim, log, **extra)
                waiting = "waiting for the first token" if latency else "streaming"
                print(
                    f"{kind}: calls {first + 1}-{indices[-1] + 1} {waiting}, worker SIGKILLed",
                    flush=True,
                )
                results = await asyncio.gather(*(asyncio.wait_for(h.result(), 180) for h in handles))
                for name, handle, result in zip(names, handles, results, strict=True):
                    turns = await handle.query("transcript", result_type=list[TurnRecord])
                    lost = result.ledger.usage.total_tokens - sum(t.usage.total_tokens for t in turns)
                    counters = (await asyncio.to_thread(sim_tally, sim))["models"].get(name, {})
                    served = counters.get("incomplete_input_tokens", 0) + counters.get(
                        "incomplete_output_tokens", 0
                    )
                    if not counters.get("incomplete"):
                        print(f"{kind}: {name} was not cut by the kill (tally {counters}); left out")
                        continue
                    if latency and counters.get("incomplete_output_tokens"):
                        print(f"{kind}: {name} had streamed output when killed (tally {counters})")
                    samples.append(Sample(kind, lost, served))
                print(f"{kind}: {len(samples)} calls measured", flush=True)
        finally:
            kill(worker)
    return samples


# --- crashes -------------------------------------------------------------------------------------


def crash_spec(index: int) -> JobSpec:
    """Sequential, dag and group-chat jobs in turn; their calls stream 1 to 3 s (30 tokens/s)."""
    job_id = f"acct-crash-{index:02d}-{uuid.uuid4().hex[:6]}"
    length = [f"[[sim tokens={30 + 30 * (k % 3)}]]" for k in range(index, index + 4)]
    if index % 3 == 0:
        return parse_spec(
            {
                "id": job_id,
                "task": prompt_text(index),
                "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 120}],
                "steps": [
                    {"id": "one", "agent": "a", "prompt": f"{{task}} {length[0]}"},
                    {"id": "two", "agent": "a", "prompt": f"Go on: {{one}} {length[1]}"},
                    {"id": "three", "agent": "a", "prompt": f"Conclude: {{two}} {length[2]}"},
                ],
            }
        )
    if index % 3 == 1:
        return parse_spec(
            {
                "id": job_id,
                "mode": "dag",
                "task": prompt_text(index),
                "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 120}],
                "steps": [
                    {"id": "p1", "agent": "a", "prompt": f"First part of {{task}} {length[0]}"},
                    {"id": "p2", "agent": "a", "prompt": f"Second part of {{task}} {length[1]}"},
                    {"id": "p3", "agent": "a", "prompt": f"Third part of {{task}} {length[2]}"},
                    {
                        "id": "join",
                        "agent": "a",
                        "prompt": f"Join {{p1}} {{p2}} {{p3}} {length[3]}",
                        "depends_on": ["p1", "p2", "p3"],
                    },
                ],
            }
        )
    return parse_spec(
        {
            "id": job_id,
            "mode": "groupchat",
            "task": f"Write a note on {prompt_text(index)[:60]}",
            "agents": [
                {"name": "writer", "model": "sim:writer", "max_output_tokens": 120},
                {"name": "editor", "model": "sim:editor", "max_output_tokens": 60},
            ],
            "chat": {"turn_policy": "round_robin", "output_agent": "writer"},
            "goal": {
                "description": "approved",
                "checks": [{"kind": "contains", "value": "APPROVED", "agent": "editor"}],
            },
            "termination": {"max_rounds": 5},
        }
    )


class Crashes:
    """The crash part's dev server and worker process, each replaced by the bench as it kills them."""

    def __init__(self, sim: SimServer, tmp: Path, log: IO[bytes]) -> None:
        self.sim = sim
        self.data_dir = tmp / "temporal-crash"
        self.queue = f"acct-crash-{uuid.uuid4().hex[:8]}"
        self.extra = {"HARNESS_RECEIPTS_DIR": str(tmp / "receipts-crash")}
        self.log = log
        self.server: DevServer | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.up = False
        self.worker_kills = 0

    def start_server(self) -> None:
        """Start the server: on a free port the first time, then on the same port and data directory."""
        if self.server is None:
            self.server = start_dev_server(self.data_dir)
        else:
            self.server = DevServer(data_dir=self.data_dir, port=self.server.port, headless=True).start()
        self.up = True

    def replace_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker_kills += 1
        kill(self.worker)
        assert self.server is not None
        self.worker = start_worker(self.server.address, self.queue, self.sim, self.log, **self.extra)

    async def kill_workers(self, every: float) -> None:
        """SIGKILL the worker every ``every`` seconds on average, while the server is up; its
        replacement starts 2 s before the kill, so that one worker is always polling.

        The period is jittered (0.7 to 1.3 of ``every``, seeded): a strict 5 s beat locks onto the
        activities' 10 s heartbeat timeout, every retry arriving just before the next kill, and the
        jobs never finish."""
        draw = random.Random(12)
        while True:
            await asyncio.sleep(max(0.0, every * draw.uniform(0.7, 1.3) - 2.0))
            if not self.up or self.server is None:
                continue
            old, self.worker = (
                self.worker,
                start_worker(self.server.address, self.queue, self.sim, self.log, **self.extra),
            )
            try:
                await asyncio.sleep(2.0)
            finally:  # cancelled or not, the old worker goes
                if old is not None and old.poll() is None:
                    self.worker_kills += 1
                kill(old)

    async def outage(self, seconds: float) -> Client:
        """Wait until calls stream at the simulator, SIGKILL the server, restart it after ``seconds``."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            total = (await asyncio.to_thread(sim_tally, self.sim))["total"]
            if total["requests"] > total["completed"] + total["incomplete"]:
                break
            await asyncio.sleep(0.1)
        assert self.server is not None
        self.up = False
        kill_server(self.server)
        print(f"crash: dev server SIGKILLed with calls streaming; restarting in {seconds:g}s", flush=True)
        await asyncio.sleep(seconds)
        self.start_server()
        if self.worker is None or self.worker.poll() is not None:
            self.replace_worker()
        return await connect(self.server.address)

    def stop(self) -> None:
        kill(self.worker)
        if self.server is not None:
            self.server.stop()


async def finished(client: Client, job_id: str) -> bool:
    """Whether the job's workflow has closed."""
    description = await client.get_workflow_handle(job_id).describe()
    return description.status is not None and description.status != WorkflowExecutionStatus.RUNNING


async def crashes(tmp: Path, jobs: int, outage: float, kill_every: float, churn: float) -> tuple[float, int]:
    """Run the jobs through two server SIGKILLs and worker SIGKILLs; (ledger ratio, paid twice)."""
    with (
        SimServer(SimConfig(port=0, latency_s=0.0, tokens_per_s=30.0)) as sim,
        open_log(tmp / "workers-crash.log") as log,
    ):
        crash = Crashes(sim, tmp, log)
        killer: asyncio.Task[None] | None = None
        try:
            crash.start_server()
            assert crash.server is not None
            client = await connect(crash.server.address)
            crash.replace_worker()
            specs = [crash_spec(i) for i in range(jobs)]
            half = (jobs + 1) // 2
            for spec in specs[:half]:
                await start_job(client, spec, crash.queue)
            killer = asyncio.create_task(crash.kill_workers(kill_every))
            client = await crash.outage(outage)
            for spec in specs[half:]:
                await start_job(client, spec, crash.queue)
            client = await crash.outage(outage)
            # The churn stops a while after the second restart: under a SIGKILL every 5 s calls
            # almost never complete (see kill_workers), and the figures are about what the crashes
            # left in the ledger, which the jobs only show once they end.
            await asyncio.sleep(churn)
            killer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await killer
            if crash.worker is None or crash.worker.poll() is not None:
                crash.replace_worker()
            print(f"crash: worker SIGKILLs stop after {crash.worker_kills}; the jobs finish", flush=True)
            handles: list[WorkflowHandle[Any, JobResult]] = [
                client.get_workflow_handle(spec.id or "", result_type=JobResult) for spec in specs
            ]
            waiting = asyncio.gather(*(asyncio.wait_for(h.result(), 300) for h in handles))
            while not waiting.done():  # progress while the jobs finish under the worker SIGKILLs
                await asyncio.wait([waiting], timeout=10)
                total = (await asyncio.to_thread(sim_tally, sim))["total"]
                done = sum([await finished(client, spec.id or "") for spec in specs])
                print(
                    f"crash: {done}/{len(specs)} jobs done; simulator {total['completed']} completed, "
                    f"{total['incomplete']} cut; {crash.worker_kills} worker SIGKILLs",
                    flush=True,
                )
            results = waiting.result()
            print(f"crash: {len(results)} jobs ended after {crash.worker_kills} worker SIGKILLs", flush=True)
        finally:
            if killer is not None:
                killer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await killer
            crash.stop()
        total = sim_tally(sim)["total"]
    stops: dict[str, int] = {}
    for result in results:
        stops[result.stop_reason.value] = stops.get(result.stop_reason.value, 0) + 1
    ledger = sum(r.ledger.usage.total_tokens for r in results)
    calls = sum(r.turns for r in results)
    served = served_tokens(total)
    print(f"crash: stop reasons {stops}; {calls} calls made")
    print(
        f"crash: simulator {total['requests']} requests, {total['completed']} completed, "
        f"{total['incomplete']} cut; {served} tokens served; ledger {ledger} tokens"
    )
    # No per-call attribution here (the jobs share model names): a call served twice shows as a
    # completed request more than the calls the jobs made (no structured outputs: one request a call).
    return ledger / served, total["completed"] - calls


# --- main ----------------------------------------------------------------------------------------


def summary(samples: list[Sample]) -> str:
    ratios = [s.ratio for s in samples]
    under = sum(s.estimated < s.served for s in samples)
    return (
        f"{len(samples)} calls, ratio p50 {statistics.median(ratios):.3f} min {min(ratios):.3f} "
        f"max {max(ratios):.3f}, undercharged {under}, estimated {sum(s.estimated for s in samples)} "
        f"served {sum(s.served for s in samples)} tokens"
    )


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            tmp = Path(args.keep)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-accounting-")))
        samples: list[Sample] = []
        if args.part in ("all", "estimates"):
            with SimServer(SimConfig(port=0)) as sim:
                kinds: list[tuple[str, Callable[[], Awaitable[list[Sample]]]]] = [
                    ("unstreamed-usage", lambda: unstreamed(sim, args.calls)),
                    ("interrupted", lambda: interrupted(sim, args.calls)),
                    ("worker-killed", lambda: worker_killed(sim, tmp, args.calls, args.batch)),
                    (
                        "prompt-killed",
                        lambda: worker_killed(sim, tmp, args.calls, args.batch, "prompt-killed"),
                    ),
                ]
                for kind, measure in kinds:
                    measured = await measure()
                    samples += measured
                    print(f"{kind}: {summary(measured)} ({time.monotonic() - started:.0f}s)", flush=True)
        if args.part in ("all", "crash"):
            ledger_ratio, paid_twice = await crashes(tmp, args.jobs, args.outage, args.kill_every, args.churn)
    if samples:
        print(f"all estimated calls: {summary(samples)}")
    print(f"wall time: {time.monotonic() - started:.0f}s")
    if samples:
        ratios = [s.ratio for s in samples]
        print(f"estimate_ratio_p50: {statistics.median(ratios):.3f}")
        print(f"estimate_ratio_max: {max(ratios):.3f}")
        print(f"undercharged_calls: {sum(s.estimated < s.served for s in samples)}")
    if args.part in ("all", "crash"):
        print(f"crash_ledger_ratio: {ledger_ratio:.3f}")
        print(f"crash_paid_twice: {paid_twice}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="Calls of each estimated kind.")
    parser.add_argument("--batch", type=int, default=25, help="Worker-killed calls per SIGKILL.")
    parser.add_argument("--jobs", type=int, default=20, help="Jobs of the crash part.")
    parser.add_argument("--outage", type=float, default=11.0, help="Seconds the dev server stays down.")
    parser.add_argument("--kill-every", type=float, default=5.0, help="Seconds between worker SIGKILLs.")
    parser.add_argument(
        "--churn", type=float, default=30.0, help="Seconds worker SIGKILLs go on after the second restart."
    )
    parser.add_argument("--quick", action="store_true", help="10 calls of each kind, 6 jobs.")
    parser.add_argument("--part", choices=("all", "estimates", "crash"), default="all")
    parser.add_argument("--keep", metavar="DIR", help="Work in DIR and keep it (server and worker logs).")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.batch, args.jobs = 10, 10, 6
    if args.keep is not None:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args))
