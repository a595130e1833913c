"""The worker's tool catalog: which Python tool modules it imports and which MCP servers it may start.

Named by ``HARNESS_TOOLS`` (a YAML file)::

    python:            # modules imported on the worker; their @tool functions are registered
      - examples.tools_research
    tools:             # optional per-tool overrides of a Python tool
      publish_summary: {approval: always, price_usd: "0.01", idempotent: false, timeout_s: 30}
    mcp:
      time:
        command: python            # this worker's own interpreter (sys.executable)
        args: ["-m", "mcp_server_time", "--local-timezone", "UTC"]
        env: {TZ: UTC, SOME_KEY: "${SOME_KEY}"}   # ${VAR}: from the worker's environment
        idempotent: true           # default for its tools
        timeout_s: 30
        tools: {get_current_time: {price_usd: "0"}}   # per-tool overrides
      notes:
        url: http://127.0.0.1:8765/mcp   # streamable HTTP
        headers: {Authorization: "Bearer ${NOTES_TOKEN}"}

A server's command, environment, URL and headers stay here, on the worker: a ``ToolDef`` names the
server only, and no message of this module repeats a value from them (``${VAR}`` is expanded when a
session opens, and a missing variable is named, never a value).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from activities.function_tools import DEFAULT_TOOLS, ToolRegistry, describe_validation_error
from contracts.names import TOOLS_ENV
from contracts.tools import ToolDef, model_name, parse_ref

if TYPE_CHECKING:
    from activities.mcp_sessions import McpSessions

__all__ = [
    "McpServerConfig",
    "ToolCatalog",
    "ToolOverride",
    "UnknownToolError",
    "check_tool_refs",
    "expand_env",
    "load_tool_catalog",
    "resolve",
]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UnknownToolError(LookupError):
    """A reference to a tool or server the worker's catalog does not have."""


class ToolOverride(BaseModel):
    """How a job must treat one tool's calls; a field left out keeps the tool's own (or server's) value."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    idempotent: bool | None = None
    """Safe to run twice (retried after a worker loss or an error)."""
    approval: Literal["never", "always"] | None = None
    """'always': every call waits for a person's approval."""
    approval_over_usd: Decimal | None = None
    """Ask for approval when a call's price is above this."""
    price_usd: Decimal | None = Field(default=None, ge=0)
    """Charged per call to the job's budget."""
    timeout_s: float | None = Field(default=None, gt=0)
    """How long one call may run."""
    description: str | None = None
    """Replaces the description the model reads."""

    def apply(self, tool: ToolDef) -> ToolDef:
        """``tool`` with the fields this override sets."""
        return tool.model_copy(update=self.model_dump(exclude_none=True))


class McpServerConfig(BaseModel):
    """One MCP server: a stdio command or a streamable-HTTP URL, and how its tools are treated."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    command: str | None = None
    """Executable of a stdio server; 'python' means this worker's own interpreter."""
    args: list[str] = Field(default_factory=list)
    """Its arguments."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment of the server process; '${VAR}' is read from the worker's environment."""
    cwd: str | None = None
    """Working directory of the server process."""
    url: str | None = None
    """Endpoint of a streamable-HTTP server."""
    headers: dict[str, str] = Field(default_factory=dict)
    """HTTP headers sent to it ('${VAR}' expanded as in ``env``)."""
    idempotent: bool = False
    """Default for its tools: safe to run twice."""
    approval: Literal["never", "always"] = "never"
    """Default for its tools."""
    price_usd: Decimal = Field(default=Decimal(0), ge=0)
    """Default price per call of its tools."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Default timeout of one call of its tools."""
    rps: float | None = Field(default=None, gt=0)
    """Calls per second the server takes, held cluster-wide: its tool calls get a task queue of their
    own (``Q-tools-<server>``) with that rate (times 5/6.5, like a provider's). None: no limit."""
    tools: dict[str, ToolOverride] = Field(default_factory=dict)
    """Per-tool overrides, by the server's own tool name."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either 'command' (stdio) or 'url' (streamable HTTP), not both or neither")
        if self.url is None and self.headers:
            raise ValueError("'headers' are for a 'url' server")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        """How the worker talks to it."""
        return "stdio" if self.command is not None else "http"

    def executable(self) -> str:
        """The command to start, with 'python' standing for this worker's interpreter."""
        assert self.command is not None
        return sys.executable if self.command == "python" else self.command

    def tool_def(self, server: str, name: str, description: str, parameters: dict[str, Any]) -> ToolDef:
        """The ``ToolDef`` of its tool ``name``, with this server's defaults and the tool's override."""
        ref = f"mcp:{server}/{name}"
        tool = ToolDef(
            ref=ref,
            name=model_name(ref),
            description=description,
            parameters=parameters,
            server=server,
            idempotent=self.idempotent,
            approval=self.approval,
            price_usd=self.price_usd,
            timeout_s=self.timeout_s,
            own_queue=self.rps is not None,
        )
        override = self.tools.get(name)
        return override.apply(tool) if override is not None else tool


class ToolCatalog(BaseModel):
    """The worker's tools: Python tool modules, overrides of their tools, and MCP servers by name."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    python: list[str] = Field(default_factory=list)
    """Modules imported on the worker; their ``@tool`` functions are registered."""
    tools: dict[str, ToolOverride] = Field(default_factory=dict)
    """Overrides of Python tools, by name."""
    mcp: dict[str, McpServerConfig] = Field(default_factory=dict)
    """MCP servers by the name a reference uses ('mcp:NAME/TOOL')."""
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file it was read from; None: no catalog (``HARNESS_TOOLS`` unset)."""
        return self._source

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "tool catalog") -> ToolCatalog:
        """Parse a catalog; errors name ``source`` and the bad fields, never a value."""
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            # The YAML error quotes only a position and a token kind, not the document's values.
            raise ValueError(f"{source}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a tool catalog is a mapping (python:, tools:, mcp:)")
        try:
            catalog = cls.model_validate(data)
        except ValidationError as err:
            raise ValueError(f"{source}: {describe_validation_error(err)}") from None
        catalog._source = source
        return catalog

    @classmethod
    def from_file(cls, path: Path | str) -> ToolCatalog:
        """Read a catalog from a YAML file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"tool catalog {path}: cannot be read ({err.strerror})") from None
        return cls.from_yaml(text, source=str(path))

    def where(self) -> str:
        """Where the catalog came from, for messages."""
        return self.source or f"no tool catalog ({TOOLS_ENV} is not set)"

    def python_tool(self, name: str, registry: ToolRegistry | None = None) -> ToolDef:
        """The ``ToolDef`` of Python tool ``name`` with its override; ``UnknownToolError`` naming it."""
        registry = registry or DEFAULT_TOOLS
        entry = registry.get(name)
        if entry is None:
            raise UnknownToolError(self._unknown_tool(name, registry))
        override = self.tools.get(name)
        return override.apply(entry.tool_def()) if override is not None else entry.tool_def()

    def _unknown_tool(self, name: str, registry: ToolRegistry) -> str:
        known = ", ".join(registry.names()) or "none"
        hint = "" if self.source else f"; no tool catalog: set {TOOLS_ENV} to a YAML file naming tool modules"
        return f"unknown tool {name!r} (known: {known}){hint}"

    def server(self, name: str, ref: str | None = None) -> McpServerConfig:
        """MCP server ``name``; ``UnknownToolError`` naming it and the known ones."""
        try:
            return self.mcp[name]
        except KeyError:
            known = ", ".join(sorted(self.mcp)) or "none"
            within = f" in {ref!r}" if ref else ""
            hint = "" if self.source else f"; no tool catalog: set {TOOLS_ENV} to a YAML file naming servers"
            raise UnknownToolError(f"unknown MCP server {name!r}{within} (known: {known}){hint}") from None


def load_tool_catalog(path: Path | str | None = None, registry: ToolRegistry | None = None) -> ToolCatalog:
    """The catalog at ``path`` (else the file named by ``HARNESS_TOOLS``; else an empty one), with its
    Python modules imported so their tools are registered. Errors name the file and the field."""
    path = path if path is not None else os.environ.get(TOOLS_ENV) or None
    if path is None:
        return ToolCatalog()
    catalog = ToolCatalog.from_file(path)
    registry = registry or DEFAULT_TOOLS
    if catalog.python and os.getcwd() not in sys.path:
        # Modules are named as from the worker's working directory, as `python -m` would find them
        # (`python worker.py` has its own folder on the path; the `harness` command does not).
        sys.path.append(os.getcwd())
    for module in catalog.python:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"{catalog.source}: python: cannot import {module!r}: {err}") from None
    unknown = sorted(set(catalog.tools) - set(registry.names()))
    if unknown:
        raise ValueError(
            f"{catalog.source}: tools: overrides of unknown tools {', '.join(unknown)} "
            f"(known: {', '.join(registry.names()) or 'none'})"
        )
    return catalog


def check_tool_refs(catalog: ToolCatalog, refs: list[str], registry: ToolRegistry | None = None) -> list[str]:
    """What is wrong with ``refs`` against ``catalog``, one message per bad reference, without starting
    any server (an MCP tool's name under a known server is checked when its list is fetched)."""
    registry = registry or DEFAULT_TOOLS
    problems = []
    for ref in refs:
        try:
            server, name = parse_ref(ref)
            if server is None:
                catalog.python_tool(name, registry)
            else:
                catalog.server(server, ref)
        except (ValueError, UnknownToolError) as err:
            problems.append(str(err))
    return problems


def expand_env(values: dict[str, str], what: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """``values`` with each ``${VAR}`` read from the environment; a missing one is named in a
    ``KeyError`` (the name only: ``what`` says where, never a value)."""
    environ = environ if environ is not None else dict(os.environ)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise UnknownToolError(f"{what}: environment variable {name} is not set on the worker")
        return environ[name]

    return {key: _VAR.sub(substitute, value) for key, value in values.items()}


async def resolve(
    catalog: ToolCatalog,
    refs: list[str],
    sessions: McpSessions,
    registry: ToolRegistry | None = None,
) -> dict[str, list[ToolDef]]:
    """Each reference to the tools it stands for: a Python tool directly, an MCP tool or a server's
    ``*`` from the server's list (``sessions`` opens it). ``UnknownToolError`` naming a bad one."""
    resolved: dict[str, list[ToolDef]] = {}
    for ref in refs:
        try:
            server, name = parse_ref(ref)
        except ValueError as err:
            raise UnknownToolError(str(err)) from None
        if server is None:
            resolved[ref] = [catalog.python_tool(name, registry)]
            continue
        catalog.server(server, ref)
        listed = await sessions.list_tools(server)
        if name == "*":
            resolved[ref] = listed
            continue
        found = [tool for tool in listed if tool.ref == f"mcp:{server}/{name}"]
        if not found:
            known = ", ".join(tool.ref.rpartition("/")[2] for tool in listed) or "none"
            raise UnknownToolError(
                f"unknown tool {name!r} of MCP server {server!r} in {ref!r} (known: {known})"
            )
        resolved[ref] = found
    return resolved
