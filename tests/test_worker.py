"""The worker's start-up check: workflow modules without bytecode are recompiled on every run."""

from __future__ import annotations

import compileall
import os
from pathlib import Path

from worker import uncompiled_workflow_modules


def test_modules_without_current_bytecode_are_named(tmp_path: Path) -> None:
    module = tmp_path / "mode.py"
    module.write_text("X = 1\n", encoding="utf-8")
    assert uncompiled_workflow_modules(tmp_path) == [module]
    assert compileall.compile_dir(str(tmp_path), quiet=1)
    assert uncompiled_workflow_modules(tmp_path) == []
    later = module.stat().st_mtime + 10
    os.utime(module, (later, later))  # edited after it was compiled
    assert uncompiled_workflow_modules(tmp_path) == [module]
