"""The simulator's HTTP server: configuration, lifecycle, shared state."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.sim._tally import Tally
from harness.sim.faults import Fault, FaultQueue

log = logging.getLogger(__name__)


class SimConfig(BaseModel):
    """Settings of a ``SimServer``."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)

    latency_s: float = Field(default=0.0, ge=0)
    """Seconds before the first token (a ``[[sim latency=...]]`` directive overrides it)."""
    tokens_per_s: float = Field(default=0.0, ge=0)
    """Output tokens per second; 0 means unlimited (a ``[[sim tps=...]]`` directive overrides it)."""
    reply_tokens: int | None = Field(default=None, gt=0)
    """Length in tokens of every free-text reply (padding or cutting) when no ``[[sim tokens=...]]``
    directive sets one; None: each scenario's own length. For benches of long texts in chats, where
    no directive reaches every turn."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = Field(default=8765, ge=0, le=65535)
    """TCP port; 0 picks a free one (read the real one from ``SimServer.url``)."""


class SimHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the simulator's state for its request handlers."""

    daemon_threads = True  # a held "timeout" request must never keep the process alive
    request_queue_size = 128  # tests fire many concurrent requests
    allow_reuse_address = True

    def __init__(self, config: SimConfig) -> None:
        from harness.sim._handler import SimHandler  # the handler module imports this one

        super().__init__((config.host, config.port), SimHandler)
        self.config = config
        self.tally = Tally()
        self.faults = FaultQueue()
        self.first_tokens: list[dict[str, Any]] = []
        """When each streamed reply's first token left (``GET /_sim/first-tokens``; benches)."""
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def first_token(self, model: str) -> None:
        """Record that a streamed reply of ``model`` sent its first token now (the last 1,000 kept)."""
        self.first_tokens.append({"model": model, "at": time.time()})
        del self.first_tokens[:-1000]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log handler errors; a client hanging up is routine, not worth a traceback on stderr."""
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("connection from %s ended abruptly", client_address, exc_info=True)
        else:
            log.exception("simulator handler failed for %s", client_address)

    def track(self, conn: socket.socket, alive: bool) -> None:
        """Remember (or forget) an open client connection, so ``stop`` can close it."""
        with self._conns_lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        """Shut every open client connection: held, streaming and idle keep-alive ones."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)


class SimServer:
    """The local model simulator: OpenAI and Anthropic wire formats over real HTTP.

    ``start()`` serves on a background thread, ``serve_forever()`` on the calling one; ``stop()``
    shuts down promptly, closing held connections too. Usable as a context manager.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._httpd: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serving_thread: threading.Thread | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765`` (the OpenAI SDK wants ``url + "/v1"``)."""
        host, port = (self._httpd or self._bind()).server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimServer:
        """Serve on a daemon thread; returns once the socket listens."""
        httpd = self._bind()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(httpd,), name="sim-server", daemon=True)
            self._serving_thread = self._thread  # so a stop() right now still ends the loop
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until ``stop()`` is called from another thread, or Ctrl-C."""
        try:
            self._run(self._bind())
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, close every connection and the listening socket. Idempotent."""
        if self._httpd is None or self._stopped:
            return
        self._stopped = True
        httpd = self._httpd
        httpd.stopping.set()
        serving = self._serving_thread
        # shutdown() waits for the serve loop, so it would deadlock on the serving thread itself.
        if serving is not None and serving is not threading.current_thread():
            httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def tally(self) -> dict[str, Any]:
        """Same as ``GET /_sim/tally`` (still readable after ``stop()``)."""
        if self._httpd is None:
            return Tally().snapshot()
        return self._httpd.tally.snapshot()

    def reset(self) -> None:
        """Same as ``POST /_sim/reset``: clear the tally and the queued faults."""
        httpd = self._bind()
        httpd.tally.reset()
        httpd.faults.clear()

    def add_fault(self, fault: Fault) -> None:
        """Same as ``POST /_sim/faults``."""
        self._bind().faults.add(fault)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _bind(self) -> SimHTTPServer:
        if self._stopped:
            raise RuntimeError("this SimServer was stopped; make a new one")
        if self._httpd is None:
            self._httpd = SimHTTPServer(self.config)
            log.info("model simulator listening on %s:%s", *self._httpd.server_address[:2])
        return self._httpd

    def _run(self, httpd: SimHTTPServer) -> None:
        self._serving_thread = threading.current_thread()
        httpd.serve_forever(poll_interval=0.05)
