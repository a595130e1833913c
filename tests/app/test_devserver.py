"""The embedded Temporal launcher, on random ports and throwaway data dirs (never 7233)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from contracts import search_attributes as sa
from harness.devserver import (
    SEARCH_ATTRIBUTES,
    DevServer,
    DevServerError,
    aprobe,
    ensure_search_attributes,
    ensure_server,
    known_ui_url,
    probe,
    temporal_cli,
)
from tests.helpers import BIN, free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    """A started dev server with the Web UI, on random ports, stopped afterwards."""
    dev = DevServer(data_dir=tmp_path / "harness", port=free_port(), ui_port=free_port())
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


@pytest.fixture
def listener() -> Iterator[int]:
    """The port of a plain TCP listener that is not Temporal."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_search_attributes_registered_after_start(server: DevServer) -> None:
    """A started dev server already has every harness search attribute, with the declared type."""
    client = await Client.connect(server.address)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    for name, kind in SEARCH_ATTRIBUTES.items():
        assert IndexedValueType.Name(listed.custom_attributes[name]) == f"INDEXED_VALUE_TYPE_{kind.upper()}"
    assert await ensure_search_attributes(client, "default") == []
    assert server.ui_url == f"http://localhost:{server.ui_port}"


async def test_the_ui_link_follows_the_port_the_ui_runs_on(
    server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A harness-started server leaves a marker in its data directory, so a later run that finds the
    server links to the UI's real port (not 8233); once it stops there is no marker and no guess."""
    monkeypatch.delenv("HARNESS_UI_URL", raising=False)
    assert server.marker.exists()
    assert known_ui_url(server.address, server.data_dir) == f"http://localhost:{server.ui_port}"
    monkeypatch.setenv("HARNESS_UI_URL", "http://ui.example:9000")
    assert known_ui_url(server.address, server.data_dir) == "http://ui.example:9000"
    monkeypatch.delenv("HARNESS_UI_URL")
    ui = f"http://localhost:{server.ui_port}"
    server.stop()
    assert not server.marker.exists()
    assert known_ui_url(server.address, server.data_dir) != ui


def test_a_server_without_a_marker_is_linked_at_the_dev_servers_default(
    tmp_path: Path, listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For a Temporal on this machine that harness did not start, the UI is guessed at gRPC port +
    1000 (the dev server's default) only when something answers there."""
    monkeypatch.delenv("HARNESS_UI_URL", raising=False)
    assert known_ui_url(f"127.0.0.1:{listener - 1000}", tmp_path) == f"http://localhost:{listener}"
    assert known_ui_url("temporal.example.com:7233", tmp_path) is None


async def test_probe_recognises_a_temporal_server(server: DevServer) -> None:
    """probe says "temporal" for a running dev server and "free" for an unused port."""
    assert await aprobe("127.0.0.1", server.port) == "temporal"
    assert await aprobe("127.0.0.1", free_port()) == "free"


async def test_ensure_server_reuses_a_running_server(
    server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ensure_server returns the address of a Temporal already on the port and starts nothing."""
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    address, started = ensure_server(tmp_path / "other", port=server.port, ui_port=free_port())
    assert (address, started) == (server.address, None)


async def test_workflow_survives_server_restart(tmp_path: Path) -> None:
    """A running workflow and its search attributes are still there after the server restarts."""
    data_dir, port = tmp_path / "harness", free_port()
    workflow_id = f"survivor-{uuid.uuid4()}"
    first = DevServer(data_dir=data_dir, port=port, headless=True)
    try:
        first.start()
        client = await Client.connect(first.address)
        # No worker serves this type, so the workflow just stays running.
        await client.start_workflow(
            "NoWorkerServesThis",
            id=workflow_id,
            task_queue=f"nobody-{uuid.uuid4()}",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(sa.MODE, "solo"), SearchAttributePair(sa.TOKENS, 42)]
            ),
        )
    finally:
        first.stop()

    second = DevServer(data_dir=data_dir, port=port, headless=True)
    try:
        second.start()
        client = await Client.connect(second.address)
        described = await client.get_workflow_handle(workflow_id).describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
        assert described.typed_search_attributes.get(sa.MODE) == "solo"
        assert described.typed_search_attributes.get(sa.TOKENS) == 42
    finally:
        second.stop()


def test_probe_says_other_for_a_plain_listener(listener: int) -> None:
    """probe says "other" when something listens on the port but is not Temporal."""
    assert probe("127.0.0.1", listener, timeout=0.5) == "other"


def test_ensure_server_refuses_a_port_held_by_something_else(
    listener: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without TEMPORAL_ADDRESS, ensure_server names the port and the way out when a non-Temporal holds it."""
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    with pytest.raises(DevServerError, match=f"port {listener} is held by a process that is not a Temporal"):
        ensure_server(tmp_path, port=listener, ui_port=free_port())
    assert not (tmp_path / "temporal.db").exists()


def test_ensure_server_defers_to_temporal_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With TEMPORAL_ADDRESS set, ensure_server returns it untouched and starts nothing."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.example:7233")
    assert ensure_server(tmp_path, port=free_port()) == ("temporal.example:7233", None)


def test_stop_leaves_no_process_of_the_group(tmp_path: Path) -> None:
    """stop() ends the server's whole process group, and a second stop() is a no-op."""
    dev = DevServer(data_dir=tmp_path, port=free_port(), headless=True)
    try:
        with dev:
            pid = dev.pid
            assert pid is not None and group_alive(pid)
            assert os.getpgid(pid) == pid
    finally:
        dev.stop()
    assert not group_alive(pid)
    assert dev.pid is None
    dev.stop()


def test_start_failure_reports_the_log(listener: int, tmp_path: Path) -> None:
    """A server that exits during start raises DevServerError with its log tail and leaves no process."""
    dev = DevServer(data_dir=tmp_path, port=free_port(), ui_port=listener)
    with pytest.raises(DevServerError, match=f"exited with code 1 during startup(.|\\n)*UI port {listener}"):
        dev.start(timeout=20)
    assert dev.pid is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_forever_stops_the_server_on_signal(sig: signal.Signals, tmp_path: Path) -> None:
    """`harness server` (serve_forever) exits cleanly on Ctrl-C or SIGTERM and leaves no server process."""
    port = free_port()
    code = (
        "from pathlib import Path; from harness.devserver import serve_forever; "
        f"serve_forever(Path({str(tmp_path)!r}), port={port}, headless=True)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server_pid = None
    try:
        for line in proc.stdout:  # stdout=PIPE: never None
            found = re.search(r"\(pid (\d+),", line)
            if found:
                server_pid = int(found.group(1))
            if "Press Ctrl-C" in line:
                break
        assert server_pid is not None and group_alive(server_pid)
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        assert "stopped" in rest
        assert not group_alive(server_pid)
        assert probe("127.0.0.1", port) == "free"
    finally:
        proc.kill()
        proc.wait()
        if server_pid is not None and group_alive(server_pid):
            os.killpg(server_pid, signal.SIGKILL)


def test_harness_server_says_when_its_dev_server_dies(tmp_path: Path) -> None:
    """`harness server` whose dev server is killed says so (how it ended, the log's tail) and exits 1."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "harness"), "server", "--headless", "--port", str(port), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server_pid = None
    try:
        for line in proc.stdout:  # stdout=PIPE: never None
            found = re.search(r"\(pid (\d+),", line)
            if found:
                server_pid = int(found.group(1))
            if "Press Ctrl-C" in line:
                break
        assert server_pid is not None
        os.killpg(server_pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 1, rest
        assert "dev server exited unexpectedly (killed by SIGKILL)" in rest
        assert "temporal.log" in rest
    finally:
        proc.kill()
        proc.wait()
        if server_pid is not None and group_alive(server_pid):
            os.killpg(server_pid, signal.SIGKILL)


@pytest.fixture
def bare_port() -> Iterator[int]:
    """The port of a dev server started without the harness search attributes."""
    port = free_port()
    bare = subprocess.Popen(
        [temporal_cli(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while probe("127.0.0.1", port) != "temporal":
            assert bare.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        yield port
    finally:
        os.killpg(bare.pid, signal.SIGTERM)
        bare.wait(15)


async def test_ensure_server_adds_missing_search_attributes(
    bare_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reusing a Temporal that lacks the harness search attributes registers them, once."""
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    client = await Client.connect(f"127.0.0.1:{bare_port}")
    request = ListSearchAttributesRequest(namespace="default")
    listed = await client.operator_service.list_search_attributes(request)
    assert not set(SEARCH_ATTRIBUTES) & set(listed.custom_attributes)

    assert ensure_server(port=bare_port) == (f"127.0.0.1:{bare_port}", None)

    listed = await client.operator_service.list_search_attributes(request)
    assert set(SEARCH_ATTRIBUTES) <= set(listed.custom_attributes)
    assert await ensure_search_attributes(client, "default") == []
