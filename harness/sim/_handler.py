"""HTTP request handler: routing, fault injection, and incremental (chunked SSE) responses."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import select
import socket
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from pydantic import ValidationError

from activities.catalog import SIM_PRICES
from harness.sim._anthropic import AnthropicWire
from harness.sim._openai import OpenAIWire
from harness.sim._scenarios import scenario_reply
from harness.sim._server import SimHTTPServer
from harness.sim._tokens import split_tokens
from harness.sim._turns import Reply
from harness.sim._wire import Completion, SimRequest, Wire, WireError, call_tokens
from harness.sim.faults import Fault, error_body

log = logging.getLogger(__name__)

_REFUSAL = "I'm sorry, but I can't help with that request."
_GARBAGE = b'{"id": "sim", "choices": [ <<this is not JSON>>'
_POLL_S = 0.05  # how often a wait checks for a client hang-up or a server stop


class SimHandler(BaseHTTPRequestHandler):
    """Serves one connection (HTTP/1.1 keep-alive) for the simulator."""

    protocol_version = "HTTP/1.1"
    server_version = "harness-sim/1"

    @property
    def sim(self) -> SimHTTPServer:
        """The server and its shared state."""
        return cast(SimHTTPServer, self.server)

    def setup(self) -> None:
        """Track the connection so ``stop()`` can close it."""
        super().setup()
        # Each SSE chunk must leave at once; Nagle's algorithm would hold small writes back.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sim.track(self.connection, alive=True)

    def finish(self) -> None:
        """Forget the connection."""
        self.sim.track(self.connection, alive=False)
        with contextlib.suppress(OSError):  # the peer vanished; nothing left to flush
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Route the access log to ``logging`` instead of stderr."""
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        """Models list, tally, price table, when streamed replies sent their first token."""
        if self.path == "/v1/models":
            self._json(200, _models())
        elif self.path == "/_sim/tally":
            self._json(200, self.sim.tally.snapshot())
        elif self.path == "/_sim/prices":
            self._json(200, prices_json())
        elif self.path == "/_sim/first-tokens":
            self._json(200, self.sim.first_tokens.copy())
        else:
            self._json(404, error_body("openai", 404, f"no route GET {self.path}"))

    def do_POST(self) -> None:
        """Chat completions, messages, and the ``/_sim`` controls."""
        if self.path == "/v1/chat/completions":
            self._chat(OpenAIWire())
        elif self.path == "/v1/messages":
            self._chat(AnthropicWire())
        elif self.path == "/_sim/reset":
            self._read_body()
            self.sim.tally.reset()
            self.sim.faults.clear()
            self.sim.first_tokens.clear()
            self._json(200, {"ok": True})
        elif self.path == "/_sim/faults":
            self._add_fault()
        else:
            self._read_body()
            self._json(404, error_body("openai", 404, f"no route POST {self.path}"))

    def _add_fault(self) -> None:
        try:
            fault = Fault.model_validate_json(self._read_body())
        except ValidationError as err:
            self._json(422, error_body("openai", 422, str(err)))
            return
        self.sim.faults.add(fault)
        self._json(200, {"ok": True, "queued": fault.model_dump()})

    def _chat(self, wire: Wire) -> None:
        try:
            body = json.loads(self._read_body() or b"null")
        except ValueError as err:
            self._json(400, error_body(wire.provider, 400, f"invalid JSON body: {err}"))
            return
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str):
            self.sim.tally.request(model)  # counted even when rejected below: it was a request
        try:
            if not isinstance(body, dict):
                raise WireError(400, "the request body must be a JSON object")
            req = wire.parse(body)
            fault = self._header_fault() or self.sim.faults.take(req.model)
        except (WireError, ValidationError) as err:
            status = err.status if isinstance(err, WireError) else 400
            self._json(status, error_body(wire.provider, status, str(err)))
            return
        self._answer(wire, req, fault)

    def _answer(self, wire: Wire, req: SimRequest, fault: Fault | None) -> None:
        kind = fault.kind if fault else None
        if fault is not None and fault.kind.isdigit():
            self._error(wire, int(fault.kind), fault.retry_after)
            return
        if kind == "timeout":
            self._pause(math.inf)
            self._abort()
            return
        reply = scenario_reply(
            req.model, req.turns, req.tools, req.tool_choice, reply_tokens=self.sim.config.reply_tokens
        )
        done = _complete(wire, reply, req.max_tokens, kind)
        latency = reply.latency_s if reply.latency_s is not None else self.sim.config.latency_s
        tps = reply.tokens_per_s if reply.tokens_per_s is not None else self.sim.config.tokens_per_s
        drop_after = fault.after_tokens if fault is not None and kind == "drop_stream" else None
        if kind == "malformed":
            self._malformed(wire, req.stream)
        elif req.stream:
            self._stream(wire, req, done, latency, tps, drop_after)
        else:
            self._whole(wire, req, done, latency + (done.output_tokens / tps if tps else 0.0), drop_after)

    def _whole(self, wire: Wire, req: SimRequest, done: Completion, delay: float, drop: int | None) -> None:
        if not self._pause(delay):
            self.sim.tally.incomplete(req.model, req.input_tokens, 0)
            self._abort()
            return
        payload = json.dumps(wire.body(req, done)).encode()
        try:
            self._head(200, "application/json", len(payload))
            if drop is not None:
                # A cut body is useless to the client: no tokens count as delivered.
                self.wfile.write(payload[: len(payload) // 2])
                raise ConnectionAbortedError("drop_stream fault")
            self.wfile.write(payload)
        except OSError:
            self.sim.tally.incomplete(req.model, req.input_tokens, 0)
            self._abort()
            return
        self.sim.tally.completed(req.model, req.input_tokens, done.output_tokens, len(done.calls))

    def _stream(
        self, wire: Wire, req: SimRequest, done: Completion, latency: float, tps: float, drop: int | None
    ) -> None:
        sent = 0
        try:
            self._head(200, "text/event-stream", None)
            self._chunks(wire.head(req, done))
            if not self._pause(latency):
                raise ConnectionAbortedError("client gone or server stopping")
            for event, tokens in wire.events(req, done):
                if drop is not None and sent >= drop:
                    raise ConnectionAbortedError("drop_stream fault")
                if tps and sent and tokens and not self._pause(tokens / tps):
                    raise ConnectionAbortedError("client gone or server stopping")
                self._chunks([event])
                if tokens and not sent:
                    self.sim.first_token(req.model)
                sent += tokens
            if drop is not None:
                raise ConnectionAbortedError("drop_stream fault")
            self._chunks([*wire.tail(req, done), b""])  # the empty chunk ends the chunked body
        except OSError:
            self.sim.tally.incomplete(req.model, req.input_tokens, sent)
            self._abort()
            return
        self.sim.tally.completed(req.model, req.input_tokens, sent, len(done.calls))

    def _malformed(self, wire: Wire, stream: bool) -> None:
        """Answer 200 with a body that is not JSON (counted in ``requests`` only)."""
        try:
            if stream:
                # The anthropic SDK skips unnamed events, so name it for the garbage to be parsed.
                event = b"event: message_start\n" if wire.provider == "anthropic" else b""
                self._head(200, "text/event-stream", None)
                self._chunks([event + b"data: " + _GARBAGE + b"\n\n", b""])
            else:
                self._head(200, "application/json", len(_GARBAGE))
                self.wfile.write(_GARBAGE)
        except OSError:
            self._abort()

    def _error(self, wire: Wire, status: int, retry_after: float | None) -> None:
        headers: dict[str, str] = {}
        if status == 429 or retry_after is not None:
            seconds = 1.0 if retry_after is None else retry_after
            headers = {"retry-after": f"{seconds:g}", "retry-after-ms": str(int(seconds * 1000))}
        self._json(status, error_body(wire.provider, status), headers)

    def _header_fault(self) -> Fault | None:
        kind = self.headers.get("x-sim-fault")
        if not kind:
            return None
        return Fault.model_validate(
            {
                "kind": kind.strip(),
                "retry_after": self.headers.get("x-sim-retry-after"),
                "after_tokens": self.headers.get("x-sim-after-tokens") or 3,
            }
        )

    def _read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _head(
        self, status: int, content_type: str, length: int | None, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        if length is None:
            self.send_header("transfer-encoding", "chunked")
            self.send_header("cache-control", "no-cache")
        else:
            self.send_header("content-length", str(length))
        self.send_header("x-request-id", f"req_sim{time.monotonic_ns()}")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(obj).encode()
        try:
            self._head(status, "application/json", len(payload), headers)
            self.wfile.write(payload)
        except OSError:
            self._abort()

    def _chunks(self, events: list[bytes]) -> None:
        """Write each event as one HTTP chunk, at once (the socket writer is unbuffered)."""
        for data in events:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the client hangs up or the server stops."""
        deadline = time.monotonic() + seconds
        while True:
            if self.sim.stopping.is_set() or self._client_gone():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self.sim.stopping.wait(min(left, _POLL_S))

    def _client_gone(self) -> bool:
        """True when the client closed its end (a readable socket with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _abort(self) -> None:
        """Close the connection abruptly: no final chunk, no keep-alive."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # already gone
            self.connection.shutdown(socket.SHUT_RDWR)


def _complete(wire: Wire, reply: Reply, max_tokens: int | None, kind: str | None) -> Completion:
    """Apply refusal / content-filter faults (both drop the tool calls), then the ``max_tokens``
    cap: the text is cut, and a tool call that does not fit whole is dropped."""
    pieces = split_tokens(_REFUSAL if kind == "refusal" else reply.text)
    calls = tuple(replace(c, arguments=wire.arguments(c.arguments)) for c in reply.calls)
    finish: Any = "refusal" if kind == "refusal" else "tool_calls" if calls else "stop"
    if kind in {"refusal", "content_filter"}:
        calls = ()
    if kind == "content_filter":
        pieces, finish = pieces[: len(pieces) // 2], "content_filter"
    done = Completion(pieces, finish, calls)
    if max_tokens is None or done.output_tokens <= max_tokens:
        return done
    pieces, left, kept = pieces[:max_tokens], max_tokens - len(pieces[:max_tokens]), []
    for call in calls:
        if call_tokens(call) > left:
            break
        kept.append(call)
        left -= call_tokens(call)
    return Completion(pieces, "length", tuple(kept))


def _models() -> dict[str, Any]:
    """One list both SDKs can read (OpenAI and Anthropic field names side by side)."""
    data = [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "harness-sim",
            "type": "model",
            "display_name": name,
            "created_at": "2025-01-01T00:00:00Z",
        }
        for name in SIM_PRICES
    ]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"],
        "last_id": data[-1]["id"],
    }


def prices_json() -> dict[str, dict[str, str]]:
    """The simulated models' price table as JSON, decimals as strings so no precision is lost."""
    return {
        name: {"input_per_mtok": str(p.input_per_mtok), "output_per_mtok": str(p.output_per_mtok)}
        for name, p in SIM_PRICES.items()
    }
