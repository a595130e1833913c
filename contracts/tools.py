"""Wire types of tools: what a model is told about a tool, what it asks for, and what it gets back.

A tool is named in a spec by its *reference*: ``lookup_order`` (a Python function the worker
registered), ``mcp:time/get_current_time`` (one tool of an MCP server the worker's tool catalog
names), ``mcp:time/*`` (every tool of that server). The worker resolves references to ``ToolDef``s
once per job (an activity), and the job keeps them in its state: a server that changes its list
mid-job does not change what the job's history saw. A model sees each tool under its ``name``
(letters, digits, ``_`` and ``-``, as both providers require), never the reference.

Nothing here holds a secret: an MCP server's command, environment and URL stay in the worker's
catalog, and a ``ToolDef`` names the server only.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

MCP_PREFIX = "mcp:"
_MODEL_NAME = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 64  # both providers cap a tool's name at 64 characters


def model_name(ref: str) -> str:
    """The name a model sees for the tool ``ref``: ``mcp:time/get_current_time`` becomes
    ``time__get_current_time``; a Python tool keeps its own name."""
    if ref.startswith(MCP_PREFIX):
        server, _, tool = ref[len(MCP_PREFIX) :].partition("/")
        ref = f"{server}__{tool}"
    return _MODEL_NAME.sub("_", ref)[:MAX_NAME]


def parse_ref(ref: str) -> tuple[str | None, str]:
    """``(server, tool)`` of a reference: ``(None, name)`` for a Python tool, ``(server, "*")`` for
    every tool of a server. ``ValueError`` when the reference is malformed."""
    ref = ref.strip()
    if not ref.startswith(MCP_PREFIX):
        if not ref or "/" in ref or ":" in ref:
            raise ValueError(f"tool reference {ref!r} is neither a tool name nor 'mcp:SERVER/TOOL'")
        return None, ref
    server, slash, tool = ref[len(MCP_PREFIX) :].partition("/")
    if not server or not slash or not tool:
        raise ValueError(f"tool reference {ref!r} must be 'mcp:SERVER/TOOL' or 'mcp:SERVER/*'")
    return server, tool


class ToolDef(BaseModel):
    """One tool as a job knows it: what the model is told, and how the job must treat a call."""

    ref: str = Field(description="Its reference: 'lookup_order' or 'mcp:time/get_current_time'.")
    name: str = Field(description="The name the model sees and calls it by.")
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of its arguments (an object); arguments are validated against it.",
    )
    server: str | None = Field(default=None, description="The MCP server that serves it; None: Python.")
    idempotent: bool = Field(
        default=False,
        description="Safe to run twice: retried after a worker loss or an error. A tool that is not "
        "is never run again once it may have started.",
    )
    approval: Literal["never", "always"] = "never"
    approval_over_usd: Decimal | None = Field(
        default=None, description="Ask for approval when a call's price is above this."
    )
    price_usd: Decimal = Field(default=Decimal(0), description="Charged per call to the budget.")
    timeout_s: float = Field(default=60.0, gt=0, description="How long one call may run.")
    own_queue: bool = Field(
        default=False,
        description="Its MCP server has a rate limit (``rps`` in the tool catalog): its calls go to the "
        "server's own task queue (``contracts.names.tools_queue``), whose rate Temporal holds.",
    )

    def needs_approval(self) -> bool:
        """Whether a call must wait for a person's approval."""
        if self.approval == "always":
            return True
        return self.approval_over_usd is not None and self.price_usd > self.approval_over_usd


class ToolCall(BaseModel):
    """A tool call a model asked for."""

    id: str = Field(description="The provider's id of the call; its result names it.")
    name: str = Field(description="The tool's name as the model called it.")
    arguments: dict[str, Any] = Field(default_factory=dict)
    arguments_error: str | None = Field(
        default=None, description="Why the arguments were unreadable (not a JSON object), if they were."
    )
    raw_arguments: str = Field(default="", description="The arguments as the model sent them.")


ToolOutcome = Literal[
    "ok", "error", "refused", "invalid", "rejected", "over budget", "cancelled", "not retried", "timed out"
]
"""How a tool call ended: ran (``ok``, or ``error`` when the tool said so or raised), was not run
(``refused``: not the agent's; ``invalid``: arguments against the schema; ``rejected``: a person
said no, or an approval timed out; ``over budget``), or stopped (``cancelled`` by an interrupt or
abort, ``timed out``, ``not retried``: a non-idempotent tool whose attempt may have started)."""


class ToolResult(BaseModel):
    """What a model is told a tool call gave."""

    call_id: str = Field(description="The ``ToolCall.id`` it answers.")
    name: str
    content: str
    is_error: bool = False


class ToolCallRequest(BaseModel):
    """Input of the tool-call activity: one call of one tool, no secrets."""

    call_id: str = Field(description="Unique in the job: '<job>/t<N>'.")
    job_id: str
    agent: str
    tool: ToolDef
    arguments: dict[str, Any]
    max_result_bytes: int = Field(default=16_384, gt=0)


class ToolCallResult(BaseModel):
    """Output of the tool-call activity."""

    content: str
    is_error: bool = False
    outcome: ToolOutcome = "ok"
    truncated_from: int | None = Field(
        default=None, description="The result's size in bytes before it was cut to the cap."
    )
    duration_s: float = 0.0


class ListToolsRequest(BaseModel):
    """Input of the list-tools activity: the references a job's agents name."""

    refs: list[str]


class ListToolsResult(BaseModel):
    """Each reference resolved to the tools it stands for (a server's ``*`` to all of them)."""

    tools: dict[str, list[ToolDef]]
