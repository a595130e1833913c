"""Connecting to Temporal as harness does, for the worker and for every client (the CLI included).

Kept apart from ``worker.py`` (which re-exports it) so that a command that only reads or steers a
job imports the data converter and the tracing setup, not the worker's activities and with them
every provider and MCP SDK (seconds of imports on a loaded machine).
"""

from __future__ import annotations

import os
from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.envconfig import ClientConfig

from activities.codec import data_converter
from activities.telemetry import JobSpanInterceptor, setup_from_env
from contracts.names import TASK_QUEUE, TASK_QUEUE_ENV

__all__ = ["DEFAULT_ADDRESS", "connect", "task_queue", "tracing_interceptors", "untraced"]

DEFAULT_ADDRESS = "127.0.0.1:7233"


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    """Connect to Temporal with harness's data converter (pydantic; encrypted when a key is set,
    see ``activities.codec``).

    Configuration comes from the standard ``TEMPORAL_*`` environment (``TEMPORAL_ADDRESS``,
    ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*``) or a Temporal config file;
    an explicit ``address`` wins over both. With an ``OTEL_*`` exporter set (``activities.telemetry``)
    the client traces through ``temporalio.contrib.opentelemetry``, and so do the workers made from it.
    """
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    config["data_converter"] = data_converter()
    config["interceptors"] = tracing_interceptors() if setup_from_env() else []
    return await Client.connect(**config)


def tracing_interceptors(tracer: Any = None) -> list[Any]:
    """Client (and so worker) interceptors that trace: Temporal's spans for client calls, workflows
    and activities, propagated through headers, and the job-end span (``JobSpanInterceptor``) inside
    them. ``tracer``: the global provider's unless given."""
    return [TracingInterceptor(tracer), JobSpanInterceptor()]


def untraced(client: Client) -> Client:
    """``client`` without the tracing interceptors, on the same connection: for polling, where every
    query would otherwise open a trace of its own (a client span, and the worker's span under it)."""
    config = client.config()
    config["interceptors"] = [
        interceptor
        for interceptor in config["interceptors"]
        if not isinstance(interceptor, (TracingInterceptor, JobSpanInterceptor))
    ]
    return Client(**config)


def task_queue() -> str:
    """The task queue jobs and workers meet on (``HARNESS_TASK_QUEUE`` overrides)."""
    return os.environ.get(TASK_QUEUE_ENV, TASK_QUEUE)
