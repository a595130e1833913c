"""The tool activities: ``list_tools`` resolves a job's references once, ``tool_call`` runs one call.

``tool_call`` never raises for what a tool did: bad arguments, a tool that raised or said it failed,
and a non-idempotent tool on a retry all come back as a ``ToolCallResult`` with their ``outcome``, so
Temporal retries only what the world broke. What it raises:

- ``asyncio.CancelledError`` when the activity is cancelled (an interrupt or abort, through the
  heartbeat): the running tool is cancelled first. An async function or an MCP request stops; a
  sync function runs in a thread, which Python cannot stop: it runs on to its end, its result dropped
  (logged as a warning naming the tool).
- a retryable ``ApplicationError`` (type ``McpServerDied``) when an idempotent MCP tool's server
  could not be reached or died during the call; the next attempt starts the server again. A
  non-idempotent tool gets outcome ``not retried`` instead: it may have run.

Heartbeat details: ``{"call_id", "tool", "elapsed_s"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import jsonschema
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.function_tools import DEFAULT_TOOLS, ToolRegistry, describe_validation_error
from activities.mcp_sessions import McpServerError, McpSessions
from activities.telemetry import Telemetry
from activities.tool_catalog import ToolCatalog, UnknownToolError, resolve
from contracts.names import LIST_TOOLS_ACTIVITY, TOOL_CALL_ACTIVITY
from contracts.tools import (
    ListToolsRequest,
    ListToolsResult,
    ToolCallRequest,
    ToolCallResult,
    ToolDef,
    ToolOutcome,
    parse_ref,
)

__all__ = ["HEARTBEAT_INTERVAL_S", "ToolActivities", "cap_result"]

HEARTBEAT_INTERVAL_S = 1.0
"""Seconds between heartbeats of a running tool; well under the 5 s heartbeat timeout."""

_log = logging.getLogger(__name__)


def cap_result(text: str, max_bytes: int) -> tuple[str, int | None]:
    """``text`` cut to ``max_bytes`` UTF-8 bytes on a character boundary with a note appended, and its
    size before the cut (None when it fits)."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text, None
    kept = data[:max_bytes].decode("utf-8", errors="ignore")  # drops a character cut in half
    return f"{kept}\n[cut: {len(kept.encode('utf-8'))} bytes of {len(data)}]", len(data)


def schema_problems(schema: dict[str, Any], arguments: dict[str, Any]) -> list[str]:
    """What is wrong with ``arguments`` against the tool's JSON Schema, by field (no values)."""
    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError:
        return []  # a server's broken schema is not the model's fault: the tool checks for itself
    problems = []
    for error in sorted(validator_class(schema).iter_errors(arguments), key=lambda e: list(e.path)):
        where = ".".join(str(part) for part in error.absolute_path) or "(arguments)"
        problems.append(f"{where}: {error.message}")
    return problems


class ToolActivities:
    """Holds the worker's tool catalog, its Python tool registry and its MCP sessions."""

    def __init__(
        self,
        catalog: ToolCatalog | None = None,
        registry: ToolRegistry | None = None,
        sessions: McpSessions | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.catalog = catalog if catalog is not None else ToolCatalog()
        self.registry = registry or DEFAULT_TOOLS
        self.sessions = sessions if sessions is not None else McpSessions(self.catalog.mcp)
        self.telemetry = telemetry if telemetry is not None else Telemetry()

    async def aclose(self) -> None:
        """Close the MCP sessions (stopping stdio servers)."""
        await self.sessions.aclose()

    @activity.defn(name=LIST_TOOLS_ACTIVITY)
    async def list_tools(self, request: ListToolsRequest) -> ListToolsResult:
        """Resolve each reference to its tools; an unknown one fails for good (type UnknownTool)."""
        try:
            tools = await resolve(self.catalog, request.refs, self.sessions, self.registry)
        except UnknownToolError as error:
            raise ApplicationError(str(error), type="UnknownTool", non_retryable=True) from None
        except McpServerError as error:
            raise ApplicationError(str(error), type="McpServerUnavailable") from None
        return ListToolsResult(tools=tools)

    @activity.defn(name=TOOL_CALL_ACTIVITY)
    async def tool_call(self, request: ToolCallRequest) -> ToolCallResult:
        """Run one tool call: validated, heartbeating, cancellable, its result capped."""
        with self.telemetry.tool_call(request) as span:
            result = await self._tool_call(request)
            span.done(result)
            return result

    async def _tool_call(self, request: ToolCallRequest) -> ToolCallResult:
        started = time.monotonic()
        tool = request.tool

        def result(content: str, outcome: ToolOutcome = "ok", is_error: bool = False) -> ToolCallResult:
            text, size = cap_result(content, request.max_result_bytes)
            return ToolCallResult(
                content=text,
                is_error=is_error or outcome != "ok",
                outcome=outcome,
                truncated_from=size,
                duration_s=round(time.monotonic() - started, 6),
            )

        problems = schema_problems(tool.parameters, request.arguments)
        if problems:
            return result(f"invalid arguments for {tool.name}: " + "; ".join(problems), "invalid")
        if not tool.idempotent and activity.info().attempt > 1:
            return result(
                f"{tool.name} is not idempotent and an earlier attempt of this call may have run it "
                "once; it was not run again",
                "not retried",
            )
        running = asyncio.create_task(self._run(tool, request.arguments))
        deadline = started + tool.timeout_s
        try:
            while not running.done():
                wait = min(HEARTBEAT_INTERVAL_S, deadline - time.monotonic())
                if wait <= 0:
                    await self._stop(tool, running, "timed out")
                    return result(f"{tool.name} timed out after {tool.timeout_s:g} s", "timed out")
                await asyncio.wait({running}, timeout=wait)
                activity.heartbeat(
                    {"call_id": request.call_id, "tool": tool.name, "elapsed_s": time.monotonic() - started}
                )
        except asyncio.CancelledError:
            await self._stop(tool, running, "cancelled")
            raise
        try:
            content, outcome = running.result()
        except McpServerError as error:
            if tool.idempotent:
                raise ApplicationError(str(error), type="McpServerDied") from None
            return result(
                f"{error}; {tool.name} is not idempotent and may have run, so it was not retried",
                "not retried",
            )
        except Exception as error:  # the tool's own failure: its text goes back to the model
            return result(f"{type(error).__name__}: {error}", "error")
        return result(content, outcome, is_error=outcome == "error")

    async def _stop(self, tool: ToolDef, running: asyncio.Task[Any], why: str) -> None:
        """Cancel the running tool (an MCP request, an async function); a thread runs on."""
        running.cancel()
        entry = self.registry.get(tool.ref) if tool.server is None else None
        if entry is not None and not entry.is_async:
            _log.warning(
                "tool %s %s; a sync function runs in a thread that cannot be stopped: "
                "it runs on to its end and its result is dropped",
                tool.name,
                why,
            )
        await asyncio.gather(running, return_exceptions=True)

    async def _run(self, tool: ToolDef, arguments: dict[str, Any]) -> tuple[str, ToolOutcome]:
        """The tool's text and outcome; raises what the tool raised (or ``McpServerError``)."""
        server, name = parse_ref(tool.ref)
        if server is not None:
            output = await self.sessions.call(
                server, name, arguments, timeout_s=tool.timeout_s, check_alive=not tool.idempotent
            )
            return output.content, "timed out" if output.timed_out else "error" if output.is_error else "ok"
        entry = self.registry.get(name)
        if entry is None:
            raise LookupError(f"tool {name!r} is not registered on this worker")
        try:
            kwargs = entry.validate(arguments)
        except ValidationError as error:
            return f"invalid arguments for {tool.name}: {describe_validation_error(error)}", "invalid"
        return await entry.call(kwargs), "ok"
