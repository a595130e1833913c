"""The README's runnable shell blocks (fenced ```` ```sh runnable ````) run as a reader would run them:
with ``bash -e`` from the checkout's root, in order, against a dev server, the simulator and a
``harness worker`` process, each must exit 0, and print its key line where one is named here."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from temporalio.testing import WorkflowEnvironment

from harness.sim import SimServer
from tests.helpers import BIN, HARNESS, ROOT, stop

pytestmark = pytest.mark.e2e

README = (ROOT / "README.md").read_text()
FENCE = "```sh runnable"
BLOCKS = re.findall(rf"^{re.escape(FENCE)}\n(.*?)^```$", README, flags=re.MULTILINE | re.DOTALL)

EXPECTED = {
    "examples/tools.yaml": "stop reason  completed",
    "examples/livelock.yaml": "stop reason  livelock",
    "examples/budget-ask.yaml": "limit_tokens:5380",
    "harness budget create team-a": "team-a",
    "examples/providers.yaml": "stop reason  completed",
    "examples/gated.yaml --no-follow": "started job gated-demo",
    "OTEL_TRACES_EXPORTER=console": '"trace_id"',
}
"""A line each block must print (on stdout or stderr), keyed by a text only that block holds."""


def first_command(block: str) -> str:
    """The block's first line that is not a comment, as its test id."""
    return next(line for line in block.splitlines() if line.strip() and not line.startswith("#"))[:60]


def test_every_runnable_marker_is_one_the_test_reads() -> None:
    """A block marked runnable in another spelling (```bash runnable, a typo) would silently not run;
    each key line named above belongs to exactly one runnable block."""
    markers = [line for line in README.splitlines() if line.startswith("```") and "runnable" in line]
    assert markers and set(markers) == {FENCE}, markers
    assert len(BLOCKS) == len(markers)
    for key in EXPECTED:
        assert len([block for block in BLOCKS if key in block]) == 1, key


@pytest.fixture(scope="module")
def shell_env(
    dev_env: WorkflowEnvironment, sim: SimServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The environment the blocks run in: the venv's ``harness`` and ``temporal`` first on PATH, the
    dev server and simulator, and a task queue of this module's own that a ``harness worker`` serves
    (for the jobs started without a worker of their own, and beside those that bring one)."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": dev_env.client.namespace,
        "HARNESS_SIM_URL": sim.url,
        "HARNESS_TASK_QUEUE": f"readme-{uuid.uuid4().hex[:8]}",
        "HARNESS_PUBLISHED_DIR": str(tmp_path_factory.mktemp("published")),  # the publish tool's
        "COLUMNS": "200",
    }
    # Configured as a deployment's workers are: with the catalogs the blocks name. A worker without
    # them would take some of the jobs' tasks and refuse the aliases and tools they use.
    catalogs = {"HARNESS_CATALOG": "examples/catalog.yaml", "HARNESS_TOOLS": "examples/tools-catalog.yaml"}
    with tempfile.TemporaryFile() as log:  # the worker keeps its own descriptor of the unlinked file
        worker = subprocess.Popen(
            [HARNESS, "worker"], env={**env, **catalogs}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            yield env
        finally:
            stop(worker)


@pytest.mark.parametrize("block", BLOCKS, ids=[first_command(block) for block in BLOCKS])
def test_a_runnable_readme_block_runs(block: str, shell_env: dict[str, str]) -> None:
    """The block exits 0 and prints its key line."""
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=ROOT,
        env=shell_env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    said = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, said
    for key, line in EXPECTED.items():
        if key in block:
            assert line in said, said
