"""MCP sessions held by the worker: one per server, opened on first use, reused by every call.

anyio's context managers (the stdio and HTTP transports, ``ClientSession``) must be entered and
exited in one task, so each session is held open by a background task of its own that owns them and
waits to be told to close; calls from activity tasks use the session meanwhile. A server that dies
(its process exits, its HTTP endpoint goes away) fails the call in flight with ``McpServerError``
and is started afresh on the next call. Whether the failed call may run again is the caller's
decision (``activities.tools``: only an idempotent tool is retried).

Secrets stay here: the server's environment, headers and URL are expanded from the worker's
environment when a session opens, and every message leaving this module is scrubbed of them.

The MCP SDK (a second of imports) is imported when a pool is made for a catalog naming servers, at
worker start, and never for one naming none: importing this module does not import it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import httpx2

from activities.tool_catalog import McpServerConfig, UnknownToolError, expand_env
from contracts.tools import ToolDef

if TYPE_CHECKING:
    from mcp import ClientSession, types

__all__ = ["OPEN_TIMEOUT_S", "McpCallOutput", "McpServerError", "McpSessions"]

_SDK_MODULES = ("mcp", "mcp.client.stdio", "mcp.client.streamable_http", "mcp.shared._httpx_utils")
"""The MCP SDK's modules used here (imported where used, loaded once by ``McpSessions``)."""

OPEN_TIMEOUT_S = 30.0
"""How long starting a server and its MCP handshake may take."""
PING_TIMEOUT_S = 5.0

_log = logging.getLogger(__name__)

# Loggers of the libraries under us that print an endpoint's URL (with its query) in their messages.
_URL_LOGGERS = ("mcp.client.streamable_http", "httpx2")


class _StderrToLog:
    """A stdio server's stderr, line by line, into the worker's log (``mcp server 'name': ...``,
    scrubbed of its secrets) instead of the terminal of whoever runs the worker: a pipe whose write
    end the server gets, read by a thread until the server (and anything it started) closes it."""

    def __init__(self, name: str, scrub: Callable[[str], str]) -> None:
        self.name = name
        self.scrub = scrub
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")
        self.writer = os.fdopen(write_fd, "w")
        self._thread = threading.Thread(target=self._pump, name=f"mcp-stderr-{name}", daemon=True)

    def __enter__(self) -> TextIO:
        self._thread.start()
        return self.writer

    def __exit__(self, *_: object) -> None:
        self.writer.close()  # ours; the server's copy closes when it exits, and the reader sees EOF

    def _pump(self) -> None:
        with self._reader:
            for line in self._reader:
                if line.strip():
                    _log.info("mcp server %r: %s", self.name, self.scrub(line.rstrip()))


class _Redact(logging.Filter):
    """Replaces the servers' secrets in the messages of the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in sorted(self.secrets, key=len, reverse=True):
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


# One per process: logging's loggers are process-wide, so is what they must not print.
_REDACT = _Redact()
for _name in _URL_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACT)


class McpServerError(Exception):
    """The server could not be started or reached, or died: the world's fault, not the tool's."""


@dataclass(frozen=True)
class McpCallOutput:
    """What one tool call of a server gave."""

    content: str
    is_error: bool = False
    timed_out: bool = False


def render_content(result: types.CallToolResult) -> str:
    """The text of a tool result: text blocks as they are, other blocks summarised."""
    from mcp import types  # loaded: a session gave the result

    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}, {len(block.data)} base64 characters]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource {resource.uri}: {len(resource.blob)} base64 characters]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link: {block.uri}]")
        else:  # a content type newer than this code
            parts.append(f"[{getattr(block, 'type', type(block).__name__)} content]")
    if not parts and result.structured_content is not None:
        import pydantic_core

        parts.append(pydantic_core.to_json(result.structured_content).decode())
    return "\n".join(parts)


def _leaf(error: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


class _Connection:
    """One open session and the task that holds its context managers."""

    def __init__(self, name: str, config: McpServerConfig) -> None:
        self.name = name
        self.config = config
        self.session: ClientSession | None = None
        self.secrets: list[str] = []
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[ClientSession] | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this server replaced."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    async def open(self) -> ClientSession:
        """Start the holding task and wait for the handshake; ``McpServerError`` when it fails."""
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._hold(), name=f"mcp session {self.name}")
        # Shielded: a caller cancelled mid-open leaves the session to the pool (closed by aclose).
        return await asyncio.shield(self._ready)

    async def _hold(self) -> None:
        assert self._ready is not None
        from mcp import ClientSession  # loaded with the pool (McpSessions)

        try:
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(read, write))
                with anyio.fail_after(OPEN_TIMEOUT_S):
                    await session.initialize()
                self.session = session
                self._ready.set_result(session)
                await self._stop.wait()
        except BaseException as raised:
            error = _leaf(raised)
            if not self._ready.done():
                self._ready.set_exception(
                    McpServerError(
                        f"MCP server {self.name!r} could not be started: {type(error).__name__}: "
                        f"{self.scrub(str(error))[:300]}"
                    )
                )
            elif not isinstance(error, asyncio.CancelledError):
                _log.warning("MCP session %r ended with %s", self.name, type(error).__name__)
            if isinstance(raised, asyncio.CancelledError):
                raise
        finally:
            self.closed = True

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[tuple[Any, Any]]:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        config = self.config
        what = f"MCP server {self.name!r}"
        if config.transport == "stdio":
            env = expand_env(config.env, f"{what} env")
            # Any value may be a key (written in the catalog or read from ${VAR}): all are scrubbed.
            self.secrets = [value for value in env.values() if len(value) >= 4]
            params = StdioServerParameters(
                command=config.executable(), args=list(config.args), env=env, cwd=config.cwd
            )
            with _StderrToLog(self.name, self.scrub) as errlog:
                async with stdio_client(params, errlog=errlog) as streams:
                    yield streams
            return
        assert config.url is not None
        headers = expand_env(config.headers, f"{what} headers")
        url = expand_env({"url": config.url}, f"{what} url")["url"]
        # The URL's query (and the headers) may hold keys; the host alone is not a secret.
        query = httpx2.URL(url).query.decode()
        values = [part.partition("=")[2] for part in query.split("&")]
        self.secrets = [secret for secret in (*headers.values(), query, *values) if len(secret) >= 4]
        _REDACT.secrets.update(self.secrets)
        async with (
            create_mcp_http_client(headers=headers) as client,
            streamable_http_client(url, http_client=client) as streams,
        ):
            yield streams

    async def close(self) -> None:
        """Tell the holding task to close the session, and wait for it."""
        self._stop.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)


def _died(error: BaseException) -> bool:
    """Whether ``error`` says the connection is gone (rather than the tool failing)."""
    from mcp import types
    from mcp.shared.exceptions import MCPError

    error = _leaf(error)
    if isinstance(error, MCPError):
        return error.code == types.CONNECTION_CLOSED
    return isinstance(
        error,
        anyio.ClosedResourceError
        | anyio.BrokenResourceError
        | anyio.EndOfStream
        | OSError
        | httpx2.TransportError,
    )


class McpSessions:
    """The worker's pool of MCP sessions, one per server of the catalog."""

    def __init__(self, servers: Mapping[str, McpServerConfig]) -> None:
        self._servers = dict(servers)
        self._connections: dict[str, _Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        if self._servers:  # now, at worker start, not on the event loop when a session first opens
            for module in _SDK_MODULES:
                importlib.import_module(module)

    def _config(self, server: str) -> McpServerConfig:
        try:
            return self._servers[server]
        except KeyError:
            known = ", ".join(sorted(self._servers)) or "none"
            raise UnknownToolError(f"unknown MCP server {server!r} (known: {known})") from None

    async def _connection(self, server: str) -> _Connection:
        config = self._config(server)
        async with self._locks.setdefault(server, asyncio.Lock()):
            connection = self._connections.get(server)
            if connection is not None and not connection.closed:
                return connection
            if connection is not None:
                await connection.close()
            connection = _Connection(server, config)
            self._connections[server] = connection
            try:
                await connection.open()
            except McpServerError:
                self._connections.pop(server, None)
                await connection.close()
                raise
            return connection

    async def session(self, server: str) -> ClientSession:
        """The open session of ``server``, started if it is not (``McpServerError`` if it cannot be)."""
        connection = await self._connection(server)
        assert connection.session is not None
        return connection.session

    async def _discard(self, server: str, connection: _Connection) -> None:
        """Forget a dead session so the next call starts the server again."""
        if self._connections.get(server) is connection:
            del self._connections[server]
        await connection.close()

    async def list_tools(self, server: str) -> list[ToolDef]:
        """Every tool of ``server`` as a ``ToolDef`` (reference ``mcp:server/tool``, catalog defaults)."""
        config = self._config(server)
        connection = await self._connection(server)
        assert connection.session is not None
        from mcp import types  # after the server is known: one the catalog does not name needs no SDK

        listed: list[types.Tool] = []
        cursor: str | None = None
        try:
            while True:
                params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await connection.session.list_tools(params=params)
                listed += page.tools
                cursor = page.next_cursor
                if not cursor:
                    break
        except Exception as error:
            if _died(error):
                await self._discard(server, connection)
            raise McpServerError(
                f"MCP server {server!r} failed to list its tools: {type(_leaf(error)).__name__}: "
                f"{connection.scrub(str(_leaf(error)))[:300]}"
            ) from None
        return [
            config.tool_def(server, tool.name, tool.description or "", dict(tool.input_schema))
            for tool in listed
        ]

    async def call(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        timeout_s: float,
        check_alive: bool = False,
    ) -> McpCallOutput:
        """Call ``tool`` of ``server``: its text, and whether the tool said it failed.

        ``McpServerError`` when the server could not be reached or died during the call (the call
        may have run). With ``check_alive``, a session that died while idle is noticed by a ping
        before the call, and the server started again, so the call is sent to a live server.
        """
        connection = await self._connection(server)
        session = connection.session
        assert session is not None
        from mcp import types
        from mcp.shared.exceptions import MCPError

        if check_alive:
            try:
                with anyio.fail_after(PING_TIMEOUT_S):
                    await session.send_ping()
            except Exception:
                await self._discard(server, connection)
                connection = await self._connection(server)
                assert connection.session is not None
                session = connection.session
        try:
            result = await session.call_tool(tool, arguments, read_timeout_seconds=timeout_s)
        except MCPError as error:
            if error.code == types.REQUEST_TIMEOUT:
                return McpCallOutput(f"timed out after {timeout_s:g} s", is_error=True, timed_out=True)
            if not _died(error):
                return McpCallOutput(f"MCPError: {connection.scrub(error.message)[:1000]}", is_error=True)
            await self._discard(server, connection)
            raise McpServerError(f"MCP server {server!r} closed the connection during the call") from None
        except Exception as error:
            if not _died(error):
                raise
            await self._discard(server, connection)
            raise McpServerError(
                f"MCP server {server!r} failed during the call: {type(_leaf(error)).__name__}"
            ) from None
        return McpCallOutput(render_content(result), is_error=result.is_error)

    async def aclose(self) -> None:
        """Close every session (and stop every stdio server)."""
        connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            await connection.close()
