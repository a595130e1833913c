"""The worker side of tools: Python function tools, the tool catalog, and the two tool activities."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.function_tools import ToolRegistry
from activities.tool_catalog import ToolCatalog, check_tool_refs, load_tool_catalog
from activities.tools import ToolActivities, cap_result
from contracts.tools import ListToolsRequest, ToolCallRequest, ToolDef
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def make_registry() -> ToolRegistry:
    """A registry of small tools, one of each kind the activity treats differently."""
    registry = ToolRegistry()

    @registry.tool(idempotent=True, price_usd="0.001")
    def lookup_order(order_id: str, verbose: bool = False, tags: list[str] | None = None) -> dict[str, Any]:
        """Look an order up by its id."""
        return {"id": order_id, "verbose": verbose, "tags": tags or []}

    @registry.tool(name="shout")
    async def loud(text: str) -> str:
        """Say it loudly."""
        return text.upper() + "!"

    @registry.tool(idempotent=True)
    def divide(a: float, b: float) -> float:
        """a / b."""
        return a / b

    @registry.tool(idempotent=True)
    def long_text(n: int) -> str:
        """n copies of a two-byte character."""
        return "é" * n

    @registry.tool(idempotent=True, timeout_s=30)
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        await asyncio.sleep(seconds)
        return "woke"

    return registry


def request(tool: ToolDef, arguments: dict[str, Any], **extra: Any) -> ToolCallRequest:
    return ToolCallRequest(call_id="job/t1", job_id="job", agent="a", tool=tool, arguments=arguments, **extra)


# ----- the decorator -------------------------------------------------------------------------------


def test_the_schema_comes_from_the_type_hints_and_the_description_from_the_docstring() -> None:
    """Hints give types, defaults make a parameter optional, extras are refused; the docstring is the
    description, and the decorator's options land in the ToolDef."""
    tool = make_registry().get("lookup_order")
    assert tool is not None
    tool_def = tool.tool_def()
    assert tool_def.description == "Look an order up by its id."
    assert tool_def.idempotent is True and tool_def.price_usd == Decimal("0.001")
    schema = tool_def.parameters
    assert schema["type"] == "object"
    assert schema["required"] == ["order_id"]
    assert schema["properties"]["order_id"] == {"type": "string"}
    assert schema["properties"]["verbose"] == {"type": "boolean", "default": False}
    assert schema["properties"]["tags"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}
    assert schema["additionalProperties"] is False
    assert "title" not in schema and all("title" not in p for p in schema["properties"].values())


def test_the_decorator_keeps_the_function_and_renames_on_request() -> None:
    """``@tool(name=...)`` registers under that name and returns the function itself."""
    registry = make_registry()
    assert registry.names() == ["divide", "long_text", "lookup_order", "shout", "slow"]
    shout = registry.get("shout")
    assert shout is not None and shout.function.__name__ == "loud" and shout.is_async


def test_a_tool_with_star_args_is_refused() -> None:
    """A function with ``**kwargs`` has no schema: refused when registered, naming it."""
    registry = ToolRegistry()
    with pytest.raises(TypeError, match="tool 'anything'"):
        registry.tool(lambda **kw: kw, name="anything")


def test_the_user_facing_decorator_is_harness_tools() -> None:
    """``harness.tools.tool`` registers on the registry the worker serves."""
    from activities.function_tools import DEFAULT_TOOLS
    from harness.tools import tool

    @tool(name="harness_tools_probe")
    def probe() -> str:
        """Probe."""
        return "ok"

    assert DEFAULT_TOOLS.get("harness_tools_probe") is not None


# ----- the catalog ---------------------------------------------------------------------------------


def test_the_example_catalog_loads_and_its_overrides_apply() -> None:
    """examples/tools-catalog.yaml imports its module, and the override makes publish_summary gated."""
    catalog = load_tool_catalog(ROOT / "examples" / "tools-catalog.yaml")
    assert catalog.python == ["examples.tools_research"]
    publish = catalog.python_tool("publish_summary")
    assert publish.approval == "always" and publish.needs_approval() and not publish.idempotent
    assert catalog.python_tool("search_notes").idempotent
    assert catalog.mcp["time"].transport == "stdio" and catalog.mcp["time"].idempotent


def test_catalog_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    """A bad field, a server with both transports, or an override of an unknown tool is refused with
    the file and field named, never a value from the file."""
    bad = tmp_path / "tools.yaml"
    bad.write_text("mcp:\n  s:\n    command: x\n    timeout_s: -1\n    env: {K: hunter2}\n")
    with pytest.raises(
        ValueError, match=r"tools\.yaml: mcp\.s\.timeout_s: Input should be greater"
    ) as caught:
        load_tool_catalog(bad)
    assert "hunter2" not in str(caught.value)
    bad.write_text("mcp:\n  s: {command: x, url: 'http://127.0.0.1/?key=hunter2'}\n")
    with pytest.raises(ValueError, match="either 'command'") as caught:
        load_tool_catalog(bad)
    assert "hunter2" not in str(caught.value)
    bad.write_text("tools:\n  nope: {approval: always}\n")
    with pytest.raises(ValueError, match="tools: overrides of unknown tools nope"):
        load_tool_catalog(bad)


def test_check_tool_refs_names_each_unknown_tool_and_server() -> None:
    """Unknown Python tools and MCP servers are named with what is known; no server is started."""
    catalog = ToolCatalog.from_yaml("mcp: {time: {command: /nonexistent/never-started}}", source="t.yaml")
    registry = make_registry()
    problems = check_tool_refs(
        catalog, ["lookup_order", "nope", "mcp:time/anything", "mcp:git/git_log", "bad/ref"], registry
    )
    assert problems == [
        "unknown tool 'nope' (known: divide, long_text, lookup_order, shout, slow)",
        "unknown MCP server 'git' in 'mcp:git/git_log' (known: time)",
        "tool reference 'bad/ref' is neither a tool name nor 'mcp:SERVER/TOOL'",
    ]


async def test_without_a_catalog_list_tools_refuses_naming_harness_tools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No HARNESS_TOOLS: an empty catalog, and any reference is refused for good, naming the variable."""
    monkeypatch.delenv("HARNESS_TOOLS", raising=False)
    activities = ToolActivities(load_tool_catalog(), registry=ToolRegistry())
    for ref in ("lookup_order", "mcp:time/*"):
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(activities.list_tools, ListToolsRequest(refs=[ref]))
        assert caught.value.type == "UnknownTool" and caught.value.non_retryable
        assert "HARNESS_TOOLS" in caught.value.message


async def test_list_tools_resolves_python_tools_with_overrides() -> None:
    """A Python reference resolves to its one ToolDef, with the catalog's override applied."""
    catalog = ToolCatalog.from_yaml("tools: {shout: {approval: always, price_usd: '0.5'}}", source="t.yaml")
    activities = ToolActivities(catalog, registry=make_registry())
    result = await ActivityEnvironment().run(
        activities.list_tools, ListToolsRequest(refs=["shout", "lookup_order"])
    )
    assert list(result.tools) == ["shout", "lookup_order"]
    [shout] = result.tools["shout"]
    assert (shout.name, shout.approval, shout.price_usd) == ("shout", "always", Decimal("0.5"))


# ----- tool_call -----------------------------------------------------------------------------------


async def python_tool(registry: ToolRegistry, name: str) -> ToolDef:
    entry = registry.get(name)
    assert entry is not None
    return entry.tool_def()


async def test_a_call_runs_the_tool_and_renders_its_result() -> None:
    """Sync and async tools run; a str comes back as is, anything else as JSON; the duration is set."""
    registry = make_registry()
    activities = ToolActivities(ToolCatalog(), registry=registry)
    env = ActivityEnvironment()
    looked = await env.run(
        activities.tool_call, request(await python_tool(registry, "lookup_order"), {"order_id": "A7"})
    )
    assert (looked.outcome, looked.is_error) == ("ok", False)
    assert looked.content == '{"id":"A7","verbose":false,"tags":[]}'
    assert looked.duration_s > 0
    shouted = await env.run(
        activities.tool_call, request(await python_tool(registry, "shout"), {"text": "hi"})
    )
    assert shouted.content == "HI!"


async def test_bad_arguments_are_an_invalid_result_naming_the_field_and_the_tool_does_not_run() -> None:
    """Arguments against the schema: outcome invalid, the field and the problem named, nothing run."""
    registry = ToolRegistry()
    ran: list[int] = []

    @registry.tool
    def count(n: int) -> int:
        """Count."""
        ran.append(n)
        return n

    activities = ToolActivities(ToolCatalog(), registry=registry)
    env = ActivityEnvironment()
    for arguments, expected in (
        ({"n": "three"}, "n: 'three' is not of type 'integer'"),
        ({}, "(arguments): 'n' is a required property"),
        ({"n": 1, "m": 2}, "Additional properties are not allowed ('m' was unexpected)"),
    ):
        result = await env.run(activities.tool_call, request(await python_tool(registry, "count"), arguments))
        assert (result.outcome, result.is_error) == ("invalid", True)
        assert expected in result.content and "count" in result.content
    assert ran == []


async def test_pydantic_catches_what_the_schema_lets_through() -> None:
    """A ToolDef whose schema is looser than the function (an edited schema) still gets a pydantic
    check before the call: invalid, naming the field."""
    registry = make_registry()
    tool = (await python_tool(registry, "divide")).model_copy(update={"parameters": {"type": "object"}})
    result = await ActivityEnvironment().run(
        ToolActivities(ToolCatalog(), registry=registry).tool_call, request(tool, {"a": "x", "b": 1})
    )
    assert result.outcome == "invalid" and "a: Input should be a valid number" in result.content


async def test_a_tool_that_raises_is_an_error_result_not_a_failure() -> None:
    """The tool's own exception comes back as outcome error, 'TYPE: message', not raised (no retry)."""
    registry = make_registry()
    result = await ActivityEnvironment().run(
        ToolActivities(ToolCatalog(), registry=registry).tool_call,
        request(await python_tool(registry, "divide"), {"a": 1, "b": 0}),
    )
    assert (result.outcome, result.is_error) == ("error", True)
    assert result.content == "ZeroDivisionError: float division by zero"


def test_cap_result_cuts_on_a_character_boundary() -> None:
    """A result over the cap is cut to at most the cap in UTF-8 bytes, never mid-character."""
    assert cap_result("short", 10) == ("short", None)
    text, size = cap_result("é" * 10, 5)  # 20 bytes; 5 would split the third character
    assert size == 20
    assert text == "éé\n[cut: 4 bytes of 20]"


async def test_a_result_over_the_cap_is_cut_with_a_note() -> None:
    """The activity caps a big result at max_result_bytes and records the size before the cut."""
    registry = make_registry()
    result = await ActivityEnvironment().run(
        ToolActivities(ToolCatalog(), registry=registry).tool_call,
        request(await python_tool(registry, "long_text"), {"n": 1000}, max_result_bytes=101),
    )
    assert result.truncated_from == 2000 and result.outcome == "ok"
    assert result.content == "é" * 50 + "\n[cut: 100 bytes of 2000]"


async def test_a_non_idempotent_tool_is_not_run_on_a_retry() -> None:
    """Attempt 2 of a non-idempotent tool: outcome not retried, saying so, and the tool not run;
    an idempotent tool runs on attempt 2."""
    registry = ToolRegistry()
    ran: list[str] = []

    @registry.tool
    def publish(text: str) -> str:
        """Publish."""
        ran.append(text)
        return "done"

    @registry.tool(idempotent=True)
    def read(text: str) -> str:
        """Read."""
        ran.append(text)
        return "read"

    activities = ToolActivities(ToolCatalog(), registry=registry)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=2)
    result = await env.run(
        activities.tool_call, request(await python_tool(registry, "publish"), {"text": "x"})
    )
    assert (result.outcome, result.is_error) == ("not retried", True)
    assert "may have run it once; it was not run again" in result.content
    assert ran == []
    again = await env.run(activities.tool_call, request(await python_tool(registry, "read"), {"text": "y"}))
    assert again.outcome == "ok" and ran == ["y"]


async def test_cancelling_the_activity_cancels_a_slow_tool() -> None:
    """An activity cancellation (an interrupt, through the heartbeat) cancels the running async tool
    and re-raises: the tool does not finish."""
    registry = ToolRegistry()
    finished: list[bool] = []
    started = asyncio.Event()

    @registry.tool(idempotent=True)
    async def slow() -> str:
        """Slow."""
        started.set()
        await asyncio.sleep(30)
        finished.append(True)
        return "late"

    activities = ToolActivities(ToolCatalog(), registry=registry)
    env = ActivityEnvironment()
    call = asyncio.create_task(
        env.run(activities.tool_call, request(await python_tool(registry, "slow"), {}))
    )
    await asyncio.wait_for(started.wait(), 5)
    began = time.monotonic()
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.monotonic() - began < 2
    await asyncio.sleep(0.05)
    assert finished == []


async def test_a_tool_past_its_timeout_is_stopped() -> None:
    """A tool running past its own timeout_s is stopped: outcome timed out."""
    registry = make_registry()
    tool = (await python_tool(registry, "slow")).model_copy(update={"timeout_s": 0.2})
    result = await ActivityEnvironment().run(
        ToolActivities(ToolCatalog(), registry=registry).tool_call, request(tool, {"seconds": 10})
    )
    assert (result.outcome, result.is_error) == ("timed out", True) and result.duration_s < 2


async def test_the_example_publish_summary_appends_to_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's publish_summary writes under the published folder; search_notes finds notes."""
    monkeypatch.setenv("HARNESS_PUBLISHED_DIR", str(tmp_path))
    catalog = load_tool_catalog(ROOT / "examples" / "tools-catalog.yaml")
    activities = ToolActivities(catalog)
    env = ActivityEnvironment()
    found = await env.run(
        activities.tool_call,
        request(catalog.python_tool("search_notes"), {"query": "heartbeats", "limit": 1}),
    )
    assert '"id":"n2"' in found.content and '"n1"' not in found.content
    published = await env.run(
        activities.tool_call, request(catalog.python_tool("publish_summary"), {"title": "T", "body": "B"})
    )
    assert published.outcome == "ok"
    assert "## T" in (tmp_path / "summaries.md").read_text()


# ----- MCP over stdio: real servers from PyPI, and the test server -------------------------------

TEST_SERVER = str(Path(__file__).with_name("mcp_http_server.py"))
CANARY = "canary-7f3a9c1e-do-not-leak"


def stdio_catalog(repo: Path) -> ToolCatalog:
    """A catalog of three stdio servers: mcp-server-time, mcp-server-git on ``repo``, the test server."""
    return ToolCatalog.from_yaml(
        f"""
mcp:
  time:
    command: python
    args: ["-m", "mcp_server_time", "--local-timezone", "UTC"]
    env: {{TZ: UTC}}
    idempotent: true
    timeout_s: 30
    tools: {{get_current_time: {{price_usd: "0.002"}}}}
  git:
    command: python
    args: ["-m", "mcp_server_git", "--repository", "{repo}"]
    idempotent: true
  test:
    command: python
    args: ["{TEST_SERVER}", "--stdio"]
    env: {{HARNESS_CANARY: "${{HARNESS_TEST_CANARY}}"}}
""",
        source="stdio.yaml",
    )


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A git repository with one commit."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "notes.md").write_text("first note\n")
    subprocess.run([*git, "add", "notes.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Add the first note"], check=True)
    (repo / "draft.md").write_text("untracked\n")
    return repo


@pytest.fixture
async def stdio_tools(git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Tool activities over the stdio catalog; its servers are stopped when the test ends."""
    monkeypatch.setenv("HARNESS_TEST_CANARY", CANARY)
    activities = ToolActivities(stdio_catalog(git_repo), registry=ToolRegistry())
    try:
        yield activities
    finally:
        await activities.aclose()


def alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


async def mcp_tool(activities: ToolActivities, ref: str) -> ToolDef:
    listed = await ActivityEnvironment().run(activities.list_tools, ListToolsRequest(refs=[ref]))
    [tool] = listed.tools[ref]
    return tool


async def test_a_stdio_servers_stderr_goes_to_the_workers_log(
    stdio_tools: ToolActivities, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """What a stdio MCP server writes to its stderr reaches the worker's log, a line at a time
    prefixed with the server's name, and never the terminal (the worker's own stderr)."""
    caplog.set_level(logging.INFO, logger="activities.mcp_sessions")
    await mcp_tool(stdio_tools, "mcp:test/echo")
    line = "mcp server 'test': test server: serving on stdio"
    for _ in range(100):  # a thread reads the pipe
        if any(r.getMessage() == line for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    assert any(r.getMessage() == line and r.levelno == logging.INFO for r in caplog.records)
    assert "serving on stdio" not in capfd.readouterr().err


async def test_list_tools_of_mcp_server_time(stdio_tools: ToolActivities) -> None:
    """A real mcp-server-time lists its tools as ToolDefs: reference, model name, schema, server, and
    the catalog's defaults and per-tool overrides."""
    result = await ActivityEnvironment().run(stdio_tools.list_tools, ListToolsRequest(refs=["mcp:time/*"]))
    tools = {tool.ref: tool for tool in result.tools["mcp:time/*"]}
    assert set(tools) == {"mcp:time/get_current_time", "mcp:time/convert_time"}
    current = tools["mcp:time/get_current_time"]
    assert current.name == "time__get_current_time" and current.server == "time"
    assert current.parameters["type"] == "object" and "timezone" in current.parameters["properties"]
    assert current.idempotent and current.timeout_s == 30 and current.price_usd == Decimal("0.002")
    assert tools["mcp:time/convert_time"].price_usd == 0


async def test_an_unknown_tool_of_a_known_server_is_refused_when_listing(stdio_tools: ToolActivities) -> None:
    """'mcp:time/nope' passes the submission check (no server started) but list_tools refuses it."""
    assert check_tool_refs(stdio_tools.catalog, ["mcp:time/nope"], ToolRegistry()) == []
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(stdio_tools.list_tools, ListToolsRequest(refs=["mcp:time/nope"]))
    assert caught.value.type == "UnknownTool" and caught.value.non_retryable
    assert "unknown tool 'nope' of MCP server 'time'" in caught.value.message
    assert "get_current_time" in caught.value.message


async def test_calls_of_mcp_server_time_and_mcp_server_git(
    stdio_tools: ToolActivities, git_repo: Path
) -> None:
    """Real servers answer through tool_call: the time in UTC; the git log and status of the test's repo;
    arguments against a server's schema are refused before the call."""
    env = ActivityEnvironment()
    now = await env.run(
        stdio_tools.tool_call,
        request(await mcp_tool(stdio_tools, "mcp:time/get_current_time"), {"timezone": "UTC"}),
    )
    assert now.outcome == "ok" and '"timezone": "UTC"' in now.content
    log = await env.run(
        stdio_tools.tool_call,
        request(await mcp_tool(stdio_tools, "mcp:git/git_log"), {"repo_path": str(git_repo)}),
    )
    assert log.outcome == "ok" and "Add the first note" in log.content
    status = await env.run(
        stdio_tools.tool_call,
        request(await mcp_tool(stdio_tools, "mcp:git/git_status"), {"repo_path": str(git_repo)}),
    )
    assert status.outcome == "ok" and "draft.md" in status.content
    invalid = await env.run(
        stdio_tools.tool_call, request(await mcp_tool(stdio_tools, "mcp:git/git_log"), {"repo_path": 7})
    )
    assert invalid.outcome == "invalid" and "repo_path: 7 is not of type 'string'" in invalid.content


async def test_an_mcp_tool_error_is_an_error_result(stdio_tools: ToolActivities) -> None:
    """A tool that fails on the server (isError) comes back as outcome error, not a raise."""
    result = await ActivityEnvironment().run(
        stdio_tools.tool_call, request(await mcp_tool(stdio_tools, "mcp:test/fail"), {"why": "boom"})
    )
    assert (result.outcome, result.is_error) == ("error", True) and "fail" in result.content


async def test_the_session_is_reused_and_a_killed_server_is_restarted(stdio_tools: ToolActivities) -> None:
    """Two calls share one session and one server process; once the process is killed, an idempotent
    call raises a retryable error, and the next call starts a new process; aclose stops it."""
    import os
    import signal

    env = ActivityEnvironment()
    pid_tool = (await mcp_tool(stdio_tools, "mcp:test/pid")).model_copy(update={"idempotent": True})
    session = await stdio_tools.sessions.session("test")
    first = int((await env.run(stdio_tools.tool_call, request(pid_tool, {}))).content)
    second = int((await env.run(stdio_tools.tool_call, request(pid_tool, {}))).content)
    assert first == second and alive(first)
    assert await stdio_tools.sessions.session("test") is session
    os.kill(first, signal.SIGKILL)
    await asyncio.sleep(0.2)
    with pytest.raises(ApplicationError) as caught:
        await env.run(stdio_tools.tool_call, request(pid_tool, {}))
    assert caught.value.type == "McpServerDied" and not caught.value.non_retryable
    third = int((await env.run(stdio_tools.tool_call, request(pid_tool, {}))).content)
    assert third != first and alive(third)
    assert await stdio_tools.sessions.session("test") is not session
    await stdio_tools.aclose()
    await asyncio.sleep(0.2)
    assert not alive(third)


async def test_a_non_idempotent_call_goes_to_a_live_server_after_an_idle_death(
    stdio_tools: ToolActivities,
) -> None:
    """A server that died while idle is noticed before a non-idempotent call, which then runs on a
    fresh server instead of coming back 'not retried'."""
    import os
    import signal

    env = ActivityEnvironment()
    pid_tool = await mcp_tool(stdio_tools, "mcp:test/pid")
    assert not pid_tool.idempotent
    first = int((await env.run(stdio_tools.tool_call, request(pid_tool, {}))).content)
    os.kill(first, signal.SIGKILL)
    await asyncio.sleep(0.2)
    result = await env.run(stdio_tools.tool_call, request(pid_tool, {}))
    assert result.outcome == "ok" and int(result.content) != first


async def test_cancelling_a_slow_mcp_call(stdio_tools: ToolActivities) -> None:
    """Cancelling the activity cancels the MCP request; the session stays usable."""
    env = ActivityEnvironment()
    slow = await mcp_tool(stdio_tools, "mcp:test/slow")
    call = asyncio.create_task(env.run(stdio_tools.tool_call, request(slow, {"seconds": 30})))
    await asyncio.sleep(0.5)
    began = time.monotonic()
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.monotonic() - began < 3
    echo = await mcp_tool(stdio_tools, "mcp:test/echo")
    assert (
        await ActivityEnvironment().run(stdio_tools.tool_call, request(echo, {"text": "still"}))
    ).content == ("still")


async def test_a_secret_in_a_servers_env_reaches_it_and_nothing_else(
    stdio_tools: ToolActivities, caplog: pytest.LogCaptureFixture
) -> None:
    """The canary from the worker's environment is set in the server, and appears in no ToolDef, no
    result, no error and no log line."""
    caplog.set_level(logging.DEBUG)
    env = ActivityEnvironment()
    listed = await env.run(stdio_tools.list_tools, ListToolsRequest(refs=["mcp:test/*"]))
    has_env = next(tool for tool in listed.tools["mcp:test/*"] if tool.ref == "mcp:test/has_env")
    seen = await env.run(stdio_tools.tool_call, request(has_env, {"name": "HARNESS_CANARY"}))
    assert seen.content == "true"
    unset = await env.run(stdio_tools.tool_call, request(has_env, {"name": "HARNESS_NOT_SET"}))
    assert unset.content == "false"
    failed = await env.run(
        stdio_tools.tool_call, request(await mcp_tool(stdio_tools, "mcp:test/fail"), {"why": "x"})
    )
    texts = [listed.model_dump_json(), seen.model_dump_json(), failed.model_dump_json(), caplog.text]
    assert all(CANARY not in text for text in texts)
    assert "HARNESS_CANARY" not in str(stdio_tools.catalog.mcp["test"].tool_def("test", "x", "", {}))


async def test_a_missing_env_variable_is_named_and_a_dead_command_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unset ${VAR} fails the listing naming the variable; a command that cannot start is a
    retryable McpServerUnavailable."""
    catalog = ToolCatalog.from_yaml(
        f"""
mcp:
  test: {{command: python, args: ["{TEST_SERVER}", "--stdio"], env: {{K: "${{HARNESS_UNSET_VAR}}"}}}}
  gone: {{command: /nonexistent/mcp-server}}
""",
        source="t.yaml",
    )
    monkeypatch.delenv("HARNESS_UNSET_VAR", raising=False)
    activities = ToolActivities(catalog, registry=ToolRegistry())
    try:
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(activities.list_tools, ListToolsRequest(refs=["mcp:test/*"]))
        assert "HARNESS_UNSET_VAR is not set" in caught.value.message
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(activities.list_tools, ListToolsRequest(refs=["mcp:gone/*"]))
        assert caught.value.type == "McpServerUnavailable" and not caught.value.non_retryable
    finally:
        await activities.aclose()


# ----- MCP over streamable HTTP: a server the fixture starts on localhost -------------------------

TOKEN = "token-5b1d-do-not-leak"


class HttpServer:
    """The test MCP server as a subprocess serving streamable HTTP on a localhost port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.process: Any = None

    def start(self) -> None:
        import os
        import socket
        import subprocess
        import sys

        env = {**os.environ, "HARNESS_EXPECTED_TOKEN": f"Bearer {TOKEN}"}
        self.process = subprocess.Popen(
            [sys.executable, TEST_SERVER, str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the MCP HTTP server exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"the MCP HTTP server did not listen on {self.port}")

    def stop(self) -> None:
        import os
        import signal

        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)  # SIGKILL cannot be ignored


@pytest.fixture
def http_server() -> Any:
    """The HTTP MCP server on a free localhost port, stopped by PID when the test ends."""
    server = HttpServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http_tools(http_server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Tool activities whose catalog names the HTTP server, with a bearer token from the environment."""
    monkeypatch.setenv("HARNESS_TEST_TOKEN", TOKEN)
    catalog = ToolCatalog.from_yaml(
        f"""
mcp:
  notes:
    url: {http_server.url}
    headers: {{Authorization: "Bearer ${{HARNESS_TEST_TOKEN}}"}}
    idempotent: true
    tools: {{slow: {{timeout_s: 5}}}}
""",
        source="http.yaml",
    )
    activities = ToolActivities(catalog, registry=ToolRegistry())
    try:
        yield activities
    finally:
        await activities.aclose()


async def test_list_and_call_an_http_mcp_server(
    http_tools: ToolActivities, caplog: pytest.LogCaptureFixture
) -> None:
    """The streamable-HTTP server lists its tools and answers calls; the bearer token reaches it and
    appears in no ToolDef, result or log line."""
    caplog.set_level(logging.DEBUG)
    env = ActivityEnvironment()
    listed = await env.run(http_tools.list_tools, ListToolsRequest(refs=["mcp:notes/*"]))
    tools = {tool.ref: tool for tool in listed.tools["mcp:notes/*"]}
    assert {"mcp:notes/echo", "mcp:notes/header_is", "mcp:notes/slow"} <= set(tools)
    assert tools["mcp:notes/slow"].timeout_s == 5 and tools["mcp:notes/echo"].server == "notes"
    echo = await env.run(http_tools.tool_call, request(tools["mcp:notes/echo"], {"text": "over http"}))
    assert (echo.outcome, echo.content) == ("ok", "over http")
    token = await env.run(
        http_tools.tool_call,
        request(tools["mcp:notes/header_is"], {"header": "Authorization", "env": "HARNESS_EXPECTED_TOKEN"}),
    )
    assert token.content == "true"
    wrong = await env.run(
        http_tools.tool_call,
        request(tools["mcp:notes/header_is"], {"header": "Authorization", "env": "PATH"}),
    )
    assert wrong.content == "false"
    for text in (listed.model_dump_json(), echo.model_dump_json(), token.model_dump_json(), caplog.text):
        assert TOKEN not in text


async def test_an_http_session_is_reused_and_reopened_after_the_server_restarts(
    http_tools: ToolActivities, http_server: HttpServer
) -> None:
    """Calls share one HTTP session; when the server goes away an idempotent call raises a retryable
    error (a non-idempotent one is 'not retried'), and once it is back the next call opens a new one."""
    env = ActivityEnvironment()
    echo = await mcp_tool(http_tools, "mcp:notes/echo")
    session = await http_tools.sessions.session("notes")
    await env.run(http_tools.tool_call, request(echo, {"text": "one"}))
    await env.run(http_tools.tool_call, request(echo, {"text": "two"}))
    assert await http_tools.sessions.session("notes") is session
    http_server.stop()
    with pytest.raises(ApplicationError) as caught:
        await env.run(http_tools.tool_call, request(echo, {"text": "three"}))
    assert caught.value.type == "McpServerDied" and not caught.value.non_retryable
    assert TOKEN not in caught.value.message
    http_server.start()
    again = await env.run(http_tools.tool_call, request(echo, {"text": "four"}))
    assert again.content == "four"
    assert await http_tools.sessions.session("notes") is not session


async def test_an_unreachable_server_with_a_key_in_its_url_names_no_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that cannot be reached is a retryable McpServerUnavailable whose message and logs
    carry neither the key in its URL's query nor its header."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HARNESS_TEST_TOKEN", TOKEN)
    catalog = ToolCatalog.from_yaml(
        f"""
mcp:
  away:
    url: "http://127.0.0.1:{free_port()}/mcp?key=${{HARNESS_TEST_TOKEN}}"
    headers: {{X-Key: "${{HARNESS_TEST_TOKEN}}"}}
""",
        source="t.yaml",
    )
    activities = ToolActivities(catalog, registry=ToolRegistry())
    try:
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(activities.list_tools, ListToolsRequest(refs=["mcp:away/*"]))
    finally:
        await activities.aclose()
    assert caught.value.type == "McpServerUnavailable" and "'away'" in caught.value.message
    assert TOKEN not in caught.value.message and TOKEN not in caplog.text


async def test_a_cancelled_sync_tool_is_said_to_run_on(caplog: pytest.LogCaptureFixture) -> None:
    """A sync tool cannot be stopped: the cancellation is raised at once and a warning names the
    tool and says its thread runs on."""
    registry = ToolRegistry()

    @registry.tool(idempotent=True)
    def blocking() -> str:
        """Block a while."""
        time.sleep(1.0)
        return "done"

    activities = ToolActivities(ToolCatalog(), registry=registry)
    env = ActivityEnvironment()
    call = asyncio.create_task(
        env.run(activities.tool_call, request(await python_tool(registry, "blocking"), {}))
    )
    await asyncio.sleep(0.2)
    began = time.monotonic()
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.monotonic() - began < 0.5
    assert "tool blocking cancelled; a sync function runs in a thread that cannot be stopped" in caplog.text
