"""What encryption costs a turn: the same chain with and without the AES-GCM codec, side by side.

Two workers in this process on one dev server, each with its own client: one with harness's plain
converter, one with the converter a key gives (``activities.codec.data_converter``: every payload
and failure sealed). Both run the same sequential chain of N turns against one zero-latency
simulator; runs alternate, and the figure is the ratio of medians. Reports; never judges: exits 0
whatever the figure.

    python bench/codec.py [--turns 20] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import Client  # noqa: E402

from activities.codec import KEYS_ENV, data_converter  # noqa: E402
from activities.config import ProviderSettings  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from contracts.jobs import JobResult  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from worker import build_worker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import echo_chain, start_dev_server  # noqa: E402


async def main(turns: int, repeats: int) -> None:
    key = {KEYS_ENV: f"bench={base64.b64encode(os.urandom(32)).decode()}"}
    plain_converter, sealed_converter = data_converter({}), data_converter(key)
    assert sealed_converter.payload_codec is not None and plain_converter.payload_codec is None
    with tempfile.TemporaryDirectory() as tmp, SimServer(SimConfig(port=0)) as sim:
        server = start_dev_server(Path(tmp) / "temporal")
        try:
            plain = await Client.connect(server.address, data_converter=plain_converter)
            sealed = await Client.connect(server.address, data_converter=sealed_converter)
            gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url))
            activities = [gateway.model_call, gateway.resolve_models]
            queue = f"bench-codec-{uuid.uuid4().hex[:8]}"
            async with (
                build_worker(plain, queue + "-plain", activities=activities),
                build_worker(sealed, queue + "-sealed", activities=activities),
            ):

                async def run(client: Client, suffix: str) -> float:
                    spec = echo_chain(turns, "bench-codec")
                    start = time.perf_counter()
                    result = await client.execute_workflow(
                        "SequentialJob",
                        spec,
                        id=spec.id or "",
                        task_queue=queue + suffix,
                        result_type=JobResult,
                    )
                    assert result.turns == turns, result.explanation
                    return time.perf_counter() - start

                await run(plain, "-plain")  # warm both paths (sandbox imports, connections)
                await run(sealed, "-sealed")
                times: dict[str, list[float]] = {"plain": [], "sealed": []}
                for index in range(repeats):
                    order = ["plain", "sealed"] if index % 2 == 0 else ["sealed", "plain"]
                    for name in order:
                        times[name].append(await run(plain if name == "plain" else sealed, f"-{name}"))
                    print(
                        f"repeat {index + 1}/{repeats}: plain {times['plain'][-1]:.3f}s "
                        f"sealed {times['sealed'][-1]:.3f}s",
                        flush=True,
                    )
            await gateway.aclose()
        finally:
            server.stop()
    p, s = statistics.median(times["plain"]), statistics.median(times["sealed"])
    print(f"turns per job: {turns}, repeats: {repeats}")
    print(f"plain median: {p:.3f}s ({p / turns * 1000:.1f} ms/turn)")
    print(f"sealed median: {s:.3f}s ({s / turns * 1000:.1f} ms/turn)")
    print(f"codec_overhead_ratio: {s / p:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.repeats))
