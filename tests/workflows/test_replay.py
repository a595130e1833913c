"""Replay of recorded histories: today's workflow code must make the same decisions as when recorded.

A failure here means a change would break running jobs: guard it with ``workflow.patched`` or
re-record (``python -m tests.record_histories``) only if no job of the old shape can be running.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.helpers import ROOT
from worker import workflow_runner
from workflows import ALL_WORKFLOWS

HISTORIES = sorted((ROOT / "tests" / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    """A history recorded from a finished job replays without a nondeterminism error."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())  # noqa: ASYNC240 (small file)
    replayer = Replayer(
        workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
