"""Telemetry: spans and metrics of model and tool calls, collected by the SDK's in-memory exporter and
reader (providers injected, the global ones untouched), and a job traced end to end on the dev server."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Replayer

from activities.catalog import ModelCatalog, resolve
from activities.config import ProviderSettings
from activities.function_tools import ToolRegistry
from activities.model_call import ModelCallActivities
from activities.telemetry import Telemetry, exporters, setup_from_env, telemetry_wanted
from activities.tool_catalog import ToolCatalog
from activities.tools import ToolActivities
from contracts.controls import GateDecision
from contracts.models import Message, ModelCallRequest, ModelCallResult
from contracts.spec import parse_spec
from contracts.tools import ToolCallRequest
from harness.client import start_job
from harness.runner import follow
from harness.sim import SimServer
from harness.watch import WatchEvent
from tests.helpers import ROOT, harness, make_worker, run_job
from worker import tracing_interceptors, workflow_runner
from workflows import ALL_WORKFLOWS

PROMPT = "Summarise the quarterly plan CONFIDENTIAL-7f3a"
SYSTEM = "You are terse. SYSTEM-SECRET-91c2"


@dataclass
class Collected:
    """Injected providers and what they collected."""

    telemetry: Telemetry
    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of each data point of metric ``name``; a histogram's value is its sum."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = getattr(point, "value", None)
                            found.append(
                                (dict(point.attributes or {}), value if value is not None else point.sum)
                            )
        return found


def collected(capture_content: bool = False) -> Collected:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(tracer_provider, meter_provider, capture_content=capture_content)
    return Collected(telemetry, tracer_provider, spans, reader)


@pytest.fixture
def otel() -> Collected:
    return collected()


@pytest.fixture
async def gateway_of(sim: SimServer) -> AsyncIterator[Any]:
    made: list[ModelCallActivities] = []

    def make(telemetry: Telemetry) -> ModelCallActivities:
        acts = ModelCallActivities(
            ProviderSettings(sim_url=sim.url), ModelCatalog.builtin(), receipts=None, telemetry=telemetry
        )
        made.append(acts)
        return acts

    yield make
    for acts in made:
        await acts.aclose()


def model_request() -> ModelCallRequest:
    return ModelCallRequest(
        call_id=f"job-otel/c1-{uuid.uuid4().hex[:6]}",
        job_id="job-otel",
        agent="writer",
        step="draft",
        model=resolve("sim:writer"),
        system=SYSTEM,
        messages=[Message(role="user", content=PROMPT)],
        max_output_tokens=200,
    )


def attribute_text(spans: list[ReadableSpan]) -> str:
    return " ".join(f"{key}={value}" for span in spans for key, value in (span.attributes or {}).items())


async def test_a_model_call_has_a_genai_span_and_counts_its_tokens_cost_and_latency(
    otel: Collected, gateway_of: Any
) -> None:
    """A model call makes one ``chat {model}`` span with the GenAI attributes, the job, node and cost,
    its token figures equal to the call's usage; the counters and the latency histogram agree."""
    request = model_request()
    result: ModelCallResult = await ActivityEnvironment().run(gateway_of(otel.telemetry).model_call, request)
    (span,) = otel.finished()
    attrs = dict(span.attributes or {})
    assert span.name == f"chat {request.model.model}"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == request.model.model
    assert attrs["gen_ai.provider.name"] == "sim"
    assert attrs["gen_ai.agent.name"] == "writer"
    assert attrs["harness.job"] == "job-otel" and attrs["harness.node"] == "draft"
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.input_tokens > 0
    assert attrs["gen_ai.usage.output_tokens"] == result.usage.output_tokens > 0
    assert result.cost_usd is not None and attrs["harness.cost_usd"] == pytest.approx(float(result.cost_usd))
    assert attrs["harness.stop_reason"] == result.finish_reason
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == (result.finish_reason,)

    tokens = {a["gen_ai.token.type"]: v for a, v in otel.points("harness.tokens")}
    assert tokens == {"input": result.usage.input_tokens, "output": result.usage.output_tokens}
    ((labels, usd),) = otel.points("harness.cost")
    assert usd == pytest.approx(float(result.cost_usd))
    assert labels["harness.job"] == "job-otel" and labels["gen_ai.request.model"] == request.model.model
    ((_, seconds),) = otel.points("gen_ai.client.operation.duration")
    assert 0 < seconds < 10


async def test_no_prompt_or_reply_in_any_attribute_unless_asked_for(gateway_of: Any) -> None:
    """By default no span attribute holds the prompt, the system prompt or the reply; with capture
    opted in (``HARNESS_OTEL_CAPTURE_CONTENT``) they are there."""
    default, opted_in = collected(), collected(capture_content=True)
    result = await ActivityEnvironment().run(gateway_of(default.telemetry).model_call, model_request())
    text = attribute_text(default.finished())
    assert "CONFIDENTIAL-7f3a" not in text and "SYSTEM-SECRET-91c2" not in text
    assert result.text and result.text not in text
    await ActivityEnvironment().run(gateway_of(opted_in.telemetry).model_call, model_request())
    text = attribute_text(opted_in.finished())
    assert "CONFIDENTIAL-7f3a" in text and "SYSTEM-SECRET-91c2" in text


async def test_a_tool_call_has_an_execute_tool_span(otel: Collected) -> None:
    """A tool call makes one ``execute_tool {name}`` span with the tool's name, job, agent, outcome and
    price, without its arguments or result; its price is counted as USD."""
    registry = ToolRegistry()

    @registry.tool(idempotent=True, price_usd="0.002")
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id}: shipped"

    entry = registry.get("lookup_order")
    assert entry is not None
    tools = ToolActivities(ToolCatalog(), registry=registry, telemetry=otel.telemetry)
    request = ToolCallRequest(
        call_id="job-otel/t1",
        job_id="job-otel",
        agent="writer",
        tool=entry.tool_def(),
        arguments={"order_id": "ORD-SECRET-55"},
    )
    result = await ActivityEnvironment().run(tools.tool_call, request)
    assert result.outcome == "ok"
    (span,) = otel.finished()
    attrs = dict(span.attributes or {})
    assert span.name == "execute_tool lookup_order"
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["gen_ai.tool.name"] == "lookup_order"
    assert attrs["harness.job"] == "job-otel" and attrs["gen_ai.agent.name"] == "writer"
    assert attrs["harness.tool.outcome"] == "ok" and attrs["harness.cost_usd"] == pytest.approx(0.002)
    assert "ORD-SECRET-55" not in attribute_text([span])
    ((labels, usd),) = otel.points("harness.cost")
    assert usd == pytest.approx(0.002) and labels["gen_ai.tool.name"] == "lookup_order"


async def test_an_interrupted_model_call_and_tool_call_count_as_interrupts(
    otel: Collected, gateway_of: Any
) -> None:
    """A model call cancelled mid-stream ends its span with stop reason ``cancelled`` and its usage so
    far; a cancelled tool call's span has an error; each counts once in ``harness.interrupts``."""
    env = ActivityEnvironment()
    request = model_request().model_copy(
        update={"messages": [Message(role="user", content="Go on. [[sim latency=0 tps=20 tokens=300]]")]}
    )
    running = asyncio.create_task(env.run(gateway_of(otel.telemetry).model_call, request))
    await asyncio.sleep(0.4)
    env.cancel()
    result: ModelCallResult = await asyncio.wait_for(running, 5)
    assert result.finish_reason == "cancelled"

    registry = ToolRegistry()

    @registry.tool(idempotent=True)
    async def slow() -> str:
        """Sleep long."""
        await asyncio.sleep(30)
        return "woke"

    entry = registry.get("slow")
    assert entry is not None
    tools = ToolActivities(ToolCatalog(), registry=registry, telemetry=otel.telemetry)
    tool_env = ActivityEnvironment()
    call = ToolCallRequest(
        call_id="job-otel/t2", job_id="job-otel", agent="writer", tool=entry.tool_def(), arguments={}
    )
    running_tool = asyncio.create_task(tool_env.run(tools.tool_call, call))
    await asyncio.sleep(0.2)
    tool_env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running_tool, 5)

    chat, tool = sorted(otel.finished(), key=lambda span: span.name)
    assert chat.attributes and chat.attributes["harness.stop_reason"] == "cancelled"
    assert chat.attributes["gen_ai.usage.output_tokens"] == result.usage.output_tokens > 0
    assert tool.name == "execute_tool slow" and tool.attributes
    assert tool.attributes["error.type"] == "CancelledError"
    interrupts = {
        labels["gen_ai.operation.name"]: value for labels, value in otel.points("harness.interrupts")
    }
    assert interrupts == {"chat": 1, "execute_tool": 1}


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_METRICS_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "none",
            },
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_telemetry_is_on_only_when_an_otel_exporter_is_set(env: dict[str, str], on: bool) -> None:
    """An OTLP endpoint or exporter turns telemetry on; nothing set, ``none`` for both signals or
    ``OTEL_SDK_DISABLED`` leaves it off."""
    assert telemetry_wanted(env) is on


@pytest.mark.parametrize(
    ("env", "chosen"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": " OTLP, console "}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "console,none"}, []),
        ({"OTEL_TRACES_EXPORTER": "zipkin,console"}, ["console"]),
    ],
)
def test_the_standard_variables_choose_the_trace_exporters(env: dict[str, str], chosen: list[str]) -> None:
    """``OTEL_TRACES_EXPORTER`` names the exporters (a list; ``none`` wins; unsupported names are
    left out); unset, an OTLP endpoint means OTLP and nothing means no exporter."""
    assert exporters(env, "TRACES") == chosen


@pytest.fixture
def traced() -> Iterator[Collected]:
    otel = collected()
    yield otel
    otel.tracer_provider.shutdown()


async def test_a_job_is_one_trace_from_the_client_to_its_model_calls_and_replays(
    dev_env: WorkflowEnvironment, gateway_of: Any, traced: Collected
) -> None:
    """Through the dev server with the tracing interceptors on the client: the start, the workflow,
    its activities, each model call and the job's end (with its stop reason) are spans of one trace,
    and the job's history replays with the interceptors on."""
    tracer = traced.telemetry.tracer
    client = Client(**{**dev_env.client.config(), "interceptors": tracing_interceptors(tracer)})
    spec = parse_spec(
        {
            "id": f"otel-{uuid.uuid4().hex[:8]}",
            "mode": "sequential",
            "task": "Write one line.",
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 60}],
            "steps": [{"id": "draft", "agent": "writer", "prompt": "{task}"}],
            "budget": {"tokens": 5000},
        }
    )
    async with make_worker(client, gateway_of(traced.telemetry)) as worker:
        result = await run_job(client, worker.task_queue, spec)
    spans = traced.finished()
    names = [span.name for span in spans]
    assert any(name.startswith("StartWorkflow:") for name in names)
    assert any(name.startswith("RunWorkflow:") for name in names)
    assert "RunActivity:harness.model_call" in names
    chats = [span for span in spans if span.name.startswith("chat ")]
    assert len(chats) == result.ledger.calls == 1
    assert chats[0].attributes and chats[0].attributes["harness.job"] == spec.id
    (ended,) = [span for span in spans if span.name.startswith("JobEnded:")]
    assert ended.attributes and ended.attributes["harness.stop_reason"] == result.stop_reason
    assert ended.attributes["gen_ai.usage.output_tokens"] == result.ledger.usage.output_tokens
    assert len({span.context.trace_id for span in spans if span.context}) == 1

    history = await client.get_workflow_handle(spec.id or "").fetch_history()
    before = len(traced.finished())
    replayer = Replayer(
        workflows=ALL_WORKFLOWS,
        data_converter=client.data_converter,
        workflow_runner=workflow_runner(),
        interceptors=tracing_interceptors(tracer),
    )
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    assert len(traced.finished()) == before, "a replay made spans again"


async def test_following_a_job_adds_no_trace_per_poll(
    dev_env: WorkflowEnvironment, gateway_of: Any, traced: Collected
) -> None:
    """``harness run``'s follow (``harness watch``) polls a traced client's job many times, yet every
    span is in the job's one trace and none is a query's: the polls are untraced."""
    tracer = traced.telemetry.tracer
    client = Client(**{**dev_env.client.config(), "interceptors": tracing_interceptors(tracer)})
    spec = parse_spec(
        {
            "id": f"follow-{uuid.uuid4().hex[:8]}",
            "mode": "sequential",
            "task": "Write one line.",
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 40}],
            "steps": [
                {"id": "draft", "agent": "writer", "prompt": "{task}"},
                {"id": "publish", "agent": "writer", "prompt": "{input}"},
            ],
            "gates": [{"name": "ok", "before_step": "publish", "timeout": "1h"}],
        }
    )
    events: list[WatchEvent] = []
    waiting = asyncio.Event()

    def seen(event: WatchEvent) -> None:
        events.append(event)
        if event.kind == "gate_opened":  # seen by a status query; the watcher polls on meanwhile
            waiting.set()

    async def approve_once_polled() -> None:
        await waiting.wait()  # the job cannot end before the watcher saw it wait at its gate
        await asyncio.sleep(1.5)  # a few more status queries and many describes while it waits
        await dev_env.client.get_workflow_handle(spec.id or "").execute_update(
            "approve", GateDecision(gate="ok", by="test"), result_type=str
        )

    async with make_worker(client, gateway_of(traced.telemetry)) as worker:
        await start_job(client, spec, queue=worker.task_queue)
        approving = asyncio.ensure_future(approve_once_polled())
        result = await follow(client, spec.id or "", seen)
        await approving
    assert result.stop_reason == "completed"
    assert [e.kind for e in events].count("status") >= 2
    names = [span.name for span in traced.finished()]
    assert any(name.startswith("StartWorkflow:") for name in names)
    assert not [name for name in names if "Query" in name], names
    assert len({span.context.trace_id for span in traced.finished() if span.context}) == 1


EXPORTING = """
from opentelemetry import trace
from activities.telemetry import Telemetry, setup_from_env
assert setup_from_env()
provider = trace.get_tracer_provider()
assert setup_from_env() and trace.get_tracer_provider() is provider  # a second call keeps it
telemetry = Telemetry()
with telemetry.tracer.start_as_current_span("probe"):
    pass
telemetry.budget_refused("team", "job-1")
"""


class Collector:
    """An OTLP/HTTP collector on a free port: what was posted, by path."""

    def __init__(self) -> None:
        received: dict[str, bytes] = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_console_exporter_prints_spans_to_stderr_and_sends_nothing_over_otlp() -> None:
    """With ``OTEL_TRACES_EXPORTER=console`` a process's spans are printed as JSON on stderr (stdout
    stays clean), and none goes over OTLP, though an OTLP endpoint is set and answers."""
    collector = Collector()
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_METRICS_EXPORTER": "none",
        }
        done = subprocess.run(
            [sys.executable, "-c", EXPORTING],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    finally:
        collector.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert [span["name"] for span in console_spans(done.stderr)] == ["probe"]
    assert collector.received == {}


@pytest.mark.e2e
def test_harness_run_prints_the_jobs_one_trace_with_the_console_exporter(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """`harness run` with ``OTEL_TRACES_EXPORTER=console`` prints the job's spans on stderr, from its
    start to its model calls and its end, all in one trace: no trace per status poll, and nothing
    sent over OTLP."""
    collector = Collector()
    try:
        done = harness(
            "run",
            "examples/sequential.yaml",
            env={
                "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
                "HARNESS_SIM_URL": sim.url,
                "HARNESS_TASK_QUEUE": f"otel-{uuid.uuid4().hex[:8]}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_METRICS_EXPORTER": "none",
            },
        )
    finally:
        collector.close()
    assert done.returncode == 0, done.stderr
    assert "stop reason  completed" in done.stdout
    spans = console_spans(done.stderr)
    names = [span["name"] for span in spans]
    assert any(name.startswith("StartWorkflow:") for name in names), names
    assert "RunActivity:harness.model_call" in names and "chat writer" in names
    assert any(name.startswith("JobEnded:") for name in names)
    assert not [name for name in names if "Query" in name], names
    assert len({span["context"]["trace_id"] for span in spans}) == 1
    assert collector.received == {}


def console_spans(text: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (JSON objects, each with a name and a context) in
    ``text``, in order, skipping anything else on the stream."""
    decoder = json.JSONDecoder()
    spans, at = [], text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict) and "name" in value and "context" in value:
            spans.append(value)
        at = text.find("{", end)
    return spans


def test_setup_from_env_exports_spans_and_metrics_over_otlp_http() -> None:
    """With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, a process's spans and metrics reach that endpoint as
    OTLP/HTTP (flushed at exit), its service named ``harness``; without it ``setup_from_env`` is off."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    collector = Collector()
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        }
        subprocess.run([sys.executable, "-c", EXPORTING], env=env, cwd=ROOT, check=True, timeout=30)
    finally:
        collector.close()
    received = collector.received
    assert set(received) == {"/v1/traces", "/v1/metrics"}
    traces = ExportTraceServiceRequest.FromString(received["/v1/traces"])
    (resource,) = traces.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    assert service == "harness"
    assert [span.name for scope in resource.scope_spans for span in scope.spans] == ["probe"]
    assert b"harness.budget.refusals" in received["/v1/metrics"]
    assert not setup_from_env({})
