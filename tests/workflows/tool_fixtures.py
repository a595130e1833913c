"""Python tools the tool-loop tests run on a real worker (``python: [tests.workflows.tool_fixtures]``).

Tools that must leave evidence outside the job (when they ran, how often) append JSON lines to the
file named by ``HARNESS_TEST_TOOL_LOG``: a worker in another process writes there too.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from harness.tools import tool

LOG_ENV = "HARNESS_TEST_TOOL_LOG"


def _log(**entry: Any) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"pid": os.getpid(), "at": time.time(), **entry}) + "\n")


def read_log(path: str) -> list[dict[str, Any]]:
    """Every entry the tools wrote to ``path``, in order."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as log:
        return [json.loads(line) for line in log if line.strip()]


@tool(idempotent=True)
def lookup_order(order_id: str) -> dict[str, str]:
    """Look up an order by its id."""
    return {"order_id": order_id, "status": "shipped"}


@tool(idempotent=True)
async def stamp(label: str, seconds: float = 1.0) -> str:
    """Wait ``seconds`` and log when the wait began and ended."""
    began = time.time()
    await asyncio.sleep(seconds)
    _log(tool="stamp", label=label, began=began, ended=time.time())
    return f"{label} stamped"


@tool(idempotent=True)
def big_result(size: int) -> str:
    """A text of ``size`` characters."""
    return "x" * size


@tool(idempotent=True)
async def slow_tool(seconds: float) -> str:
    """Sleep ``seconds``; log its start and its end (a cancelled call logs no end)."""
    _log(tool="slow_tool", event="start")
    await asyncio.sleep(seconds)
    _log(tool="slow_tool", event="end")
    return "slept"


@tool(idempotent=False)
async def charge_card(amount: int, seconds: float = 0.0) -> str:
    """Charge ``amount`` (not idempotent: charging twice costs the customer twice)."""
    _log(tool="charge_card", event="start", amount=amount)
    await asyncio.sleep(seconds)
    _log(tool="charge_card", event="end", amount=amount)
    return f"charged {amount}"
