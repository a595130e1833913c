"""``harness codec-server``: Temporal's remote codec endpoints over HTTP, so the Web UI and the
``temporal`` CLI show sealed payloads to whoever can reach this server (and holds its token).

``POST /encode`` and ``POST /decode`` take and return ``{"payloads": [...]}`` in proto JSON (what
the Web UI and ``temporal --codec-endpoint`` send), run through the codec of ``activities.codec``
with this process's keys. Browsers call it cross-origin from the UI, so it answers CORS preflights
for the configured UI origins. A preflight never carries credentials, so it is answered without the
token; the token, when set, is required on every POST.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from activities.codec import CodecError, Keyring

__all__ = [
    "DEFAULT_ORIGINS",
    "DEFAULT_PORT",
    "ENDPOINT_ENV",
    "TOKEN_ENV",
    "CodecServer",
    "ui_codec_endpoint",
]

DEFAULT_PORT = 8888
DEFAULT_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
"""The embedded dev server's Web UI, under both names a browser may use for it."""
TOKEN_ENV = "HARNESS_CODEC_TOKEN"
ENDPOINT_ENV = "HARNESS_CODEC_ENDPOINT"
ALLOWED_HEADERS = "content-type, x-namespace, authorization"
MAX_BODY = 32 * 1024 * 1024  # a page of history: many payloads of at most 2 MB each

_log = logging.getLogger(__name__)


def ui_codec_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """Where the dev server's Web UI should send payloads to decode: ``HARNESS_CODEC_ENDPOINT``, else
    this machine's codec server on its default port; None when no key is configured (nothing is
    sealed, and a UI pointed at a codec server that is not running shows errors)."""
    env = os.environ if env is None else env
    if Keyring.from_env(env) is None:
        return None
    return env.get(ENDPOINT_ENV) or f"http://localhost:{DEFAULT_PORT}"


class CodecServer:
    """A threaded HTTP server around one ``PayloadCodec``; ``start()``/``stop()`` or ``serve_forever()``."""

    def __init__(
        self,
        codec: PayloadCodec,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        origins: Sequence[str] = DEFAULT_ORIGINS,
        token: str | None = None,
    ) -> None:
        self.codec = codec
        self.origins = tuple(origin.rstrip("/") for origin in origins)
        """Origins whose pages may call the endpoints (CORS); ``*`` allows any."""
        self._token = token or None
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8888`` (the codec endpoint to configure)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requires_token(self) -> bool:
        """Whether POSTs need ``Authorization: Bearer <token>``."""
        return self._token is not None

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the token (always, when none is set)."""
        if self._token is None:
            return True
        return hmac.compare_digest((header or "").encode(), f"Bearer {self._token}".encode())

    def allowed_origin(self, origin: str | None) -> str | None:
        """The value for ``Access-Control-Allow-Origin`` for a request from ``origin``, or None."""
        if "*" in self.origins:
            return "*"
        if origin and origin.rstrip("/") in self.origins:
            return origin
        return None

    def transcode(self, operation: str, body: bytes) -> bytes:
        """Run ``/encode`` or ``/decode`` on a proto-JSON ``Payloads`` body; return the reply body."""
        payloads = json_format.Parse(body, Payloads())
        if operation == "encode":
            result = asyncio.run(self.codec.encode(payloads.payloads))
        else:
            result = asyncio.run(self.codec.decode(payloads.payloads))
        return json_format.MessageToJson(Payloads(payloads=result)).encode()

    def start(self) -> CodecServer:
        """Serve on a background thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="codec-server", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted, then close the socket."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()


def _handler_for(server: CodecServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_CodecHandler):
        codec_server = server

    return Handler


class _CodecHandler(BaseHTTPRequestHandler):
    codec_server: CodecServer
    protocol_version = "HTTP/1.1"  # keep-alive: the UI decodes a history in many requests

    def do_OPTIONS(self) -> None:
        self._reply(HTTPStatus.NO_CONTENT, b"", preflight=True)

    def do_POST(self) -> None:
        operation = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self.close_connection = True  # the body is not read
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
            return
        body = self.rfile.read(length)
        if operation not in ("encode", "decode"):
            self._error(HTTPStatus.NOT_FOUND, "POST /encode or /decode")
            return
        if not self.codec_server.authorized(self.headers.get("authorization")):
            self._error(HTTPStatus.UNAUTHORIZED, "a bearer token is required")
            return
        try:
            reply = self.codec_server.transcode(operation, body)
        except (json_format.ParseError, CodecError) as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))
            return
        self._reply(HTTPStatus.OK, reply)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._reply(status, json.dumps({"error": message}).encode())

    def _reply(self, status: HTTPStatus, body: bytes, preflight: bool = False) -> None:
        self.send_response(status)
        origin = self.codec_server.allowed_origin(self.headers.get("origin"))
        if origin is not None:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")
            if origin != "*":
                self.send_header("Access-Control-Allow-Credentials", "true")
            if preflight:
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
                self.send_header("Access-Control-Max-Age", "600")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", "Bearer")
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line and status only: never a header (the token) or a body (the payloads).
        _log.info("%s %s", self.address_string(), format % args)
