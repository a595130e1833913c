"""Fixtures of the end-to-end tests (the shared ones are in ``tests/conftest.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def receipts_dir(tmp_path: Path) -> Iterator[Path]:
    """A receipts directory of this test's own, shared by its worker processes."""
    where = tmp_path / "receipts"
    before = os.environ.get("HARNESS_RECEIPTS_DIR")
    os.environ["HARNESS_RECEIPTS_DIR"] = str(where)
    try:
        yield where
    finally:
        if before is None:
            os.environ.pop("HARNESS_RECEIPTS_DIR", None)
        else:
            os.environ["HARNESS_RECEIPTS_DIR"] = before
