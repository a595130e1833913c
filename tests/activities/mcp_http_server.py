"""A small MCP server for the tool tests, built on the ``mcp`` package's ``MCPServer``.

``python mcp_http_server.py PORT`` serves streamable HTTP on 127.0.0.1:PORT at /mcp;
``python mcp_http_server.py --stdio`` serves stdio. Its tools tell the tests about the process
(its pid, whether a variable is set: never the value) and misbehave on request.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("harness-test")


@server.tool()
def echo(text: str) -> str:
    """Echo the text."""
    return text


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@server.tool()
def has_env(name: str) -> bool:
    """Whether the environment variable is set in this server (never its value)."""
    return bool(os.environ.get(name))


@server.tool()
def header_is(header: str, env: str, ctx: Context) -> bool:
    """Whether the request's header equals this server's environment variable ``env`` (never either value)."""
    headers = {key.lower(): value for key, value in (ctx.headers or {}).items()}
    expected = os.environ.get(env)
    return expected is not None and headers.get(header.lower()) == expected


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "woke"


@server.tool()
def fail(why: str) -> str:
    """Raise an error."""
    raise RuntimeError(why)


if __name__ == "__main__":
    if sys.argv[1:] == ["--stdio"]:
        print("test server: serving on stdio", file=sys.stderr, flush=True)  # goes to the worker's log
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
