"""The worker's start-up: workflow modules without bytecode are recompiled on every run; its roles,
drain timeout and versioning come from flags or the environment."""

from __future__ import annotations

import compileall
import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.common import VersioningBehavior

from worker import deployment_config, drain_timeout, parse_roles, uncompiled_workflow_modules


def test_modules_without_current_bytecode_are_named(tmp_path: Path) -> None:
    module = tmp_path / "mode.py"
    module.write_text("X = 1\n", encoding="utf-8")
    assert uncompiled_workflow_modules(tmp_path) == [module]
    assert compileall.compile_dir(str(tmp_path), quiet=1)
    assert uncompiled_workflow_modules(tmp_path) == []
    later = module.stat().st_mtime + 10
    os.utime(module, (later, later))  # edited after it was compiled
    assert uncompiled_workflow_modules(tmp_path) == [module]


def test_roles_drain_and_versioning_come_from_flags_or_the_environment() -> None:
    """``--queues`` / ``HARNESS_WORKER_QUEUES`` name any subset of the roles (in their order; empty:
    all; an unknown one is refused by name); the drain timeout is seconds, never negative; worker
    versioning needs both the deployment name and the build id, and pins the workflows it starts."""
    assert parse_roles(None) == parse_roles("") == ("jobs", "models", "tools")
    assert parse_roles("tools, jobs") == ("jobs", "tools")
    with pytest.raises(ValueError, match="unknown queue 'gpu'"):
        parse_roles("jobs,gpu")
    assert drain_timeout("") == timedelta(seconds=30) and drain_timeout("2.5") == timedelta(seconds=2.5)
    with pytest.raises(ValueError, match="0 or more seconds"):
        drain_timeout("-1")
    assert deployment_config({}) is None
    with pytest.raises(ValueError, match="set both"):
        deployment_config({"HARNESS_DEPLOYMENT_NAME": "harness"})
    config = deployment_config({"HARNESS_DEPLOYMENT_NAME": "harness", "HARNESS_BUILD_ID": "v2"})
    assert config is not None and config.use_worker_versioning
    assert (config.version.deployment_name, config.version.build_id) == ("harness", "v2")
    assert config.default_versioning_behavior is VersioningBehavior.PINNED
