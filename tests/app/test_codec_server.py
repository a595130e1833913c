"""The codec server over real HTTP, in the request shape the Temporal Web UI sends (a CORS preflight,
then ``POST /encode`` / ``/decode`` with proto-JSON payloads), and ``harness server`` pointing the
dev server's Web UI at it."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.codec import KEYS_ENV, AesGcmCodec, Keyring
from harness.codec_server import DEFAULT_PORT, CodecServer, ui_codec_endpoint
from tests.helpers import BIN, free_port

UI = "http://localhost:8233"
CANARY = "canary-codec-server-31d9"
KEYS = f"k1={base64.b64encode(os.urandom(32)).decode()}"


def keyed_codec() -> AesGcmCodec:
    """The codec of the module's key."""
    keyring = Keyring.from_env({KEYS_ENV: KEYS})
    assert keyring is not None
    return AesGcmCodec(keyring)


@pytest.fixture
def server() -> Iterator[CodecServer]:
    """A codec server with the default (embedded UI) origins and no token, on a random port."""
    served = CodecServer(keyed_codec(), port=0).start()
    try:
        yield served
    finally:
        served.stop()


def call(
    url: str, method: str = "POST", body: dict[str, Any] | None = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request; returns status, headers (lower-cased names) and the JSON body (or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, got, text = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, text = error.code, error.headers, error.read()
    return status, {k.lower(): v for k, v in got.items()}, json.loads(text) if text else None


def ui_payloads(*texts: str) -> dict[str, Any]:
    """``{"payloads": [...]}`` as the Web UI posts them: proto JSON, bytes in base64."""
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return {
        "payloads": [
            {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(json.dumps({"text": t}).encode())}
            for t in texts
        ]
    }


def ui_headers(**extra: str) -> dict[str, str]:
    """The headers the Web UI sends with a codec request."""
    return {"Content_Type": "application/json", "X_Namespace": "default", "Origin": UI, **extra}


def test_preflight_allows_the_ui_origin_and_its_headers(server: CodecServer) -> None:
    """OPTIONS from the UI's origin is answered 204 with the origin, POST and the UI's headers allowed;
    another origin gets no allow-origin, so the browser blocks it."""
    status, headers, _ = call(
        f"{server.url}/decode",
        method="OPTIONS",
        Origin=UI,
        Access_Control_Request_Method="POST",
        Access_Control_Request_Headers="content-type,x-namespace",
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == UI
    assert "POST" in headers["access-control-allow-methods"]
    allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-namespace", "authorization"} <= allowed
    status, headers, _ = call(f"{server.url}/decode", method="OPTIONS", Origin="http://evil.example")
    assert "access-control-allow-origin" not in headers


def test_encode_then_decode_round_trips_and_hides_the_text(server: CodecServer) -> None:
    """/encode returns sealed payloads without the text, /decode gives back exactly what was sent,
    both with the CORS header the browser needs to read the reply."""
    sent = ui_payloads(CANARY, "second")
    status, headers, sealed = call(f"{server.url}/encode", body=sent, **ui_headers())
    assert status == 200 and headers["access-control-allow-origin"] == UI
    assert len(sealed["payloads"]) == 2
    assert base64.b64decode(sealed["payloads"][0]["metadata"]["encoding"]) == b"binary/encrypted"
    assert CANARY not in json.dumps(sealed)
    assert CANARY.encode() not in base64.b64decode(sealed["payloads"][0]["data"])
    status, headers, opened = call(f"{server.url}/decode", body=sealed, **ui_headers())
    assert status == 200 and headers["access-control-allow-origin"] == UI
    assert opened == sent


def test_a_payload_it_cannot_open_is_a_400_with_the_reason(server: CodecServer) -> None:
    """A payload sealed with a key the server lacks, and a body that is not proto JSON, get a 400 with why."""
    other = CodecServer(
        AesGcmCodec(Keyring.parse([f"k2={base64.b64encode(os.urandom(32)).decode()}"], "x")), port=0
    )
    other.start()
    try:
        _, _, foreign = call(f"{other.url}/encode", body=ui_payloads(CANARY), **ui_headers())
    finally:
        other.stop()
    status, _, reply = call(f"{server.url}/decode", body=foreign, **ui_headers())
    assert status == 400 and "key 'k2'" in reply["error"]
    status, _, reply = call(f"{server.url}/decode", body={"payloads": "nope"}, **ui_headers())
    assert status == 400
    status, _, _ = call(f"{server.url}/elsewhere", body=ui_payloads("x"), **ui_headers())
    assert status == 404


def test_a_bearer_token_is_required_when_set() -> None:
    """With a token, a POST without it or with another one is 401 (still readable cross-origin); the
    right one decodes; the preflight, which browsers send without credentials, needs none."""
    served = CodecServer(keyed_codec(), port=0, token="s3cret-token").start()
    try:
        url = f"{served.url}/encode"
        assert call(url, body=ui_payloads("x"), **ui_headers())[0] == 401
        status, headers, _ = call(url, body=ui_payloads("x"), **ui_headers(Authorization="Bearer wrong"))
        assert status == 401 and headers["access-control-allow-origin"] == UI
        status, _, sealed = call(
            url, body=ui_payloads("x"), **ui_headers(Authorization="Bearer s3cret-token")
        )
        assert status == 200 and len(sealed["payloads"]) == 1
        assert call(url, method="OPTIONS", Origin=UI, Access_Control_Request_Method="POST")[0] == 204
    finally:
        served.stop()


def test_the_ui_is_pointed_at_a_codec_server_only_when_a_key_is_set() -> None:
    """No key: no codec endpoint for the UI; a key: HARNESS_CODEC_ENDPOINT, else the default port."""
    assert ui_codec_endpoint({}) is None
    assert ui_codec_endpoint({KEYS_ENV: KEYS}) == f"http://localhost:{DEFAULT_PORT}"
    assert ui_codec_endpoint({KEYS_ENV: KEYS, "HARNESS_CODEC_ENDPOINT": "https://codec.example"}) == (
        "https://codec.example"
    )


def wait_for(url: str, within: float = 30.0) -> bytes:
    """GET ``url`` until it answers 200; return the body."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_harness_codec_server_command_serves_with_the_environment_key() -> None:
    """`harness codec-server --port N` with a key in its environment decodes what this key sealed,
    and refuses the token-less request when HARNESS_CODEC_TOKEN is set."""
    port = free_port()
    env = {**os.environ, KEYS_ENV: KEYS, "HARNESS_CODEC_TOKEN": "tok-7c1e"}
    proc = subprocess.Popen(
        [str(BIN / "harness"), "codec-server", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while call_or_none(f"{url}/decode") is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout and proc.stdout.read()
            time.sleep(0.1)
        assert call(f"{url}/decode", body=ui_payloads("x"), **ui_headers())[0] == 401
        local = CodecServer(keyed_codec(), port=0).start()
        try:
            _, _, sealed = call(f"{local.url}/encode", body=ui_payloads(CANARY), **ui_headers())
        finally:
            local.stop()
        status, _, opened = call(f"{url}/decode", body=sealed, **ui_headers(Authorization="Bearer tok-7c1e"))
        assert status == 200 and opened == ui_payloads(CANARY)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert "payloads: encrypted with AES-GCM key 'k1'" in out
    assert "bearer token required" in out
    assert "tok-7c1e" not in out


def call_or_none(url: str) -> int | None:
    """The status of an OPTIONS to ``url``, or None while nothing listens."""
    try:
        return call(url, method="OPTIONS")[0]
    except OSError:
        return None


def test_harness_codec_server_refuses_to_start_without_a_key() -> None:
    """Without a key there is nothing to decode: `harness codec-server` exits 1 and names the variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_CODEC_")}
    done = subprocess.run(
        [str(BIN / "harness"), "codec-server", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "HARNESS_CODEC_KEYS" in done.stderr


@pytest.mark.e2e
def test_harness_server_points_the_web_ui_at_the_codec_server(tmp_path: Path) -> None:
    """`harness server` with a key says payloads are encrypted and starts the Web UI with the codec
    endpoint (the UI's own settings say so); it is stopped by its PID."""
    port, ui_port = free_port(), free_port()
    env = {**os.environ, KEYS_ENV: KEYS, "HARNESS_CODEC_ENDPOINT": "http://localhost:18888"}
    proc = subprocess.Popen(
        [
            str(BIN / "harness"),
            "server",
            "--port",
            str(port),
            "--ui-port",
            str(ui_port),
            "--data-dir",
            str(tmp_path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        printed = "".join(lines)
        assert "payloads: encrypted with AES-GCM key 'k1'" in printed
        assert "UI codec:        http://localhost:18888" in printed
        settings = json.loads(wait_for(f"http://127.0.0.1:{ui_port}/api/v1/settings"))
        assert settings["Codec"]["Endpoint"] == "http://localhost:18888"
        server_pid = int(re.search(r"\(pid (\d+),", printed).group(1))  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(server_pid, 0)
