"""The cluster deployment: docker-compose.yml is valid Compose, has the services, ports and health
checks the README's "Running on a cluster" relies on, and sets only environment names that the code
or the SDKs it loads read."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema.validators import validator_for

from contracts.names import ROLES
from harness.devserver import DYNAMIC_CONFIG, SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")
CODE_DIRS = ("activities", "contracts", "harness", "workflows", "policies")
HARNESS_LITERAL = re.compile(r"""["'](HARNESS_[A-Z0-9_]+)["']""")

# Every other name the compose file may set on harness's own services, each read by an SDK that
# the worker or the codec server loads.
SDK_NAMES = frozenset(
    {
        # temporalio.envconfig (its Rust core: crates/common/src/envconfig.rs)
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_API_KEY",
        "TEMPORAL_PROFILE",
        "TEMPORAL_CONFIG_FILE",
        "TEMPORAL_TLS",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_CERT_DATA",
        "TEMPORAL_TLS_CLIENT_KEY_PATH",
        "TEMPORAL_TLS_CLIENT_KEY_DATA",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
        "TEMPORAL_TLS_SERVER_NAME",
        "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
        # OpenTelemetry SDK and its OTLP/HTTP exporters (activities.telemetry)
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_METRIC_EXPORT_INTERVAL",
        # botocore, under the SDK's S3 driver (activities._s3_blobs)
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        # the provider SDKs, through activities.config
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
    }
)

REQUIRED_SECRETS = ("HARNESS_CODEC_KEYS", "HARNESS_CODEC_TOKEN", "MINIO_ROOT_PASSWORD")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as YAML, before any variable is substituted."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose file's services by name."""
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _validator() -> Any:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = validator_for(schema, default=Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def _published(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port of every published port (short or long syntax)."""
    ports: dict[int, int] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            target = int(entry["target"])
            ports[target] = int(entry.get("published") or target)
            continue
        parts = str(entry).split("/")[0].split(":")
        ports[int(parts[-1])] = int(parts[-2]) if len(parts) > 1 else int(parts[-1])
    return ports


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    """A service's environment as a mapping (list entries without ``=`` pass the host's value)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return {name: value or None for name, _, value in (str(item).partition("=") for item in env)}
    assert isinstance(env, dict)
    return env


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def _seconds(duration: str) -> float:
    """A Compose duration such as ``1m30s`` or ``60s`` in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def _names_the_code_reads() -> set[str]:
    files = [path for folder in CODE_DIRS for path in (ROOT / folder).rglob("*.py")]
    files.append(ROOT / "worker.py")
    return {name for path in files for name in HARNESS_LITERAL.findall(path.read_text(encoding="utf-8"))}


def test_compose_file_validates_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    """docker-compose.yml is valid against the vendored Compose Specification schema."""
    errors = sorted(_validator().iter_errors(compose), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_rejects_what_compose_rejects(compose: dict[str, Any]) -> None:
    """The vendored schema is strict: an unknown service key and a bad depends_on condition fail."""
    validator = _validator()
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["replicas"] = 2  # belongs under deploy
    broken["services"]["temporal"]["depends_on"]["postgresql"]["condition"] = "service_ready"
    messages = [error.message for error in validator.iter_errors(broken)]
    assert any("replicas" in message for message in messages), messages
    assert len(messages) >= 2, messages


def test_temporal_server_ui_and_codec_server_ports(services: dict[str, dict[str, Any]]) -> None:
    """Temporal answers on 7233 with a health check, the UI on 8080, the codec server on 8888."""
    assert _published(services["temporal"]).get(7233) == 7233
    assert services["temporal"]["healthcheck"]["test"]
    assert _published(services["temporal-ui"]).get(8080) == 8080
    assert _environment(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"
    codec = services["codec-server"]
    assert _published(codec).get(8888) == 8888
    command = _command(codec)
    assert "codec-server" in command
    assert re.search(r"--host 0\.0\.0\.0\b", command) and re.search(r"--port 8888\b", command)
    # The browser reaches the codec server at the port published on the host.
    endpoint = _environment(services["temporal-ui"])["TEMPORAL_CODEC_ENDPOINT"]
    assert endpoint == f"http://localhost:{_published(codec)[8888]}"
    assert "http://localhost:8080" in command  # --ui-origin: the UI's pages may call it (CORS)


def test_stateful_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    """postgresql (pg_isready) and minio have health checks, and what needs them waits for them."""
    assert "pg_isready" in " ".join(services["postgresql"]["healthcheck"]["test"])
    assert services["minio"]["healthcheck"]["test"]
    assert services["temporal"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert any(mount.startswith("postgresql-data:") for mount in services["postgresql"]["volumes"])


def test_worker_scales_drains_and_waits_for_its_prerequisites(services: dict[str, dict[str, Any]]) -> None:
    """Two or more workers, serving known roles, with a stop grace period longer than their drain."""
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker  # replicas need generated names
    command = _command(worker)
    queues = re.search(r"--queues[ =](\S+)", command)
    assert "harness worker" in command and queues is not None
    assert set(queues.group(1).split(",")) <= set(ROLES)
    drain = float(_environment(worker).get("HARNESS_DRAIN_TIMEOUT_S") or 30)
    assert _seconds(worker["stop_grace_period"]) > drain
    needs = worker["depends_on"]
    assert needs["temporal"]["condition"] == "service_healthy"
    assert needs["register-search-attributes"]["condition"] == "service_completed_successfully"
    assert needs["minio-init"]["condition"] == "service_completed_successfully"


def test_register_search_attributes_creates_exactly_harness_attributes(
    services: dict[str, dict[str, Any]],
) -> None:
    """The one-shot service creates exactly harness.devserver.SEARCH_ATTRIBUTES, once temporal is up."""
    service = services["register-search-attributes"]
    assert service["restart"] == "no"
    assert service["image"].startswith("temporalio/admin-tools:")
    assert service["depends_on"]["temporal"]["condition"] == "service_healthy"
    command = _command(service)
    assert "temporal operator search-attribute create" in command
    created = re.findall(r"--name\s+(\w+)\s+--type\s+(\w+)", command)
    assert len(created) == len(dict(created)), f"an attribute is created twice: {created}"
    assert dict(created) == SEARCH_ATTRIBUTES


def test_dynamic_config_turns_fairness_on(services: dict[str, dict[str, Any]]) -> None:
    """Temporal reads the mounted dynamic config: fairness and updates on, as on the dev server."""
    temporal = services["temporal"]
    path = _environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    mounts = {}
    for volume in temporal["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    source = ROOT / mounts[path]
    assert source == ROOT / "deploy" / "temporal-dynamic-config.yaml"
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    assert config["matching.enableFairness"] == [{"value": True, "constraints": {}}]
    assert config["frontend.enableUpdateWorkflowExecution"] == [{"value": True, "constraints": {}}]
    for key, values in config.items():  # nothing the dev server would not run with
        assert key in DYNAMIC_CONFIG, key
        assert [str(entry["value"]).lower() for entry in values] == [DYNAMIC_CONFIG[key]], key


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    """Every pulled image names a version tag; harness's own services build from the Dockerfile."""
    for name, service in services.items():
        if "build" in service:
            assert service["build"] in (".", {"context": "."}), name
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"


def test_environment_names_are_read_by_the_code_or_an_sdk(services: dict[str, dict[str, Any]]) -> None:
    """Every variable set on harness's services is one the code (HARNESS_*) or an SDK it loads reads."""
    known = _names_the_code_reads()
    assert {"HARNESS_CODEC_KEYS", "HARNESS_S3_BUCKET", "HARNESS_WORKER_QUEUES"} <= known  # the scan works
    ours = {name: service for name, service in services.items() if "build" in service}
    assert {"worker", "codec-server"} <= set(ours)
    unknown = {
        f"{service_name}: {variable}"
        for service_name, service in ours.items()
        for variable in _environment(service)
        if variable not in (known if variable.startswith("HARNESS_") else SDK_NAMES)
    }
    assert not unknown, f"set in docker-compose.yml but read by nothing: {sorted(unknown)}"


def test_secrets_are_required_not_defaulted(services: dict[str, dict[str, Any]]) -> None:
    """The codec keys and token come from the host and must be set: no default key or token."""
    codec = _environment(services["codec-server"])
    worker = _environment(services["worker"])
    for env, name in (
        (codec, "HARNESS_CODEC_KEYS"),
        (codec, "HARNESS_CODEC_TOKEN"),
        (worker, "HARNESS_CODEC_KEYS"),
    ):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", str(env[name])), f"{name}: {env[name]!r}"


def test_dockerfile_installs_the_s3_extra_and_runs_the_worker_unprivileged() -> None:
    """The image installs '.[s3]', compiles the workflows, runs unprivileged and starts a worker."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11[.\w-]*slim", text, re.M)
    assert "pip install '.[s3]'" in text
    assert "compileall" in text and "workflows" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^CMD \["harness", "worker"\]', text, re.M)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".git", ".harness"} <= set(ignored)


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_cli_accepts_the_file() -> None:
    """`docker compose config -q` accepts the file, and refuses it without the secrets."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env = {key: value for key, value in os.environ.items() if key not in REQUIRED_SECRETS}
    env.pop("COMPOSE_FILE", None)
    command = [*cli, "--file", str(COMPOSE_FILE), "config", "--quiet"]
    filled = {
        **env,
        "HARNESS_CODEC_KEYS": "k1=" + "A" * 43 + "=",
        "HARNESS_CODEC_TOKEN": "test-token",
        "MINIO_ROOT_PASSWORD": "test-password",
    }
    done = subprocess.run(command, env=filled, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 and re.search(r"daemon|docker engine|docker\.sock", done.stderr, re.I):
        pytest.skip(f"{' '.join(cli)} config needs a Docker engine here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    missing = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode != 0
    assert any(name in missing.stderr for name in REQUIRED_SECRETS), missing.stderr
