"""Traces and metrics: a span per model call and per tool call, and the counters behind them.

Spans follow the OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name`` ``chat`` or
``execute_tool``, ``gen_ai.request.model``, ``gen_ai.usage.*``, ``gen_ai.agent.name``) with harness's
own attributes beside them (``harness.job``, ``harness.node``, ``harness.cost_usd``,
``harness.stop_reason``). Temporal's own spans (client, workflow, activity) come from
``temporalio.contrib.opentelemetry.TracingInterceptor``, which ``worker.connect`` adds when
``setup_from_env`` says telemetry is on; ``JobSpanInterceptor`` adds a span when a job ends, with its
stop reason, through the SDK's replay-safe ``completed_span``.

Everything goes through the global OpenTelemetry API unless providers are given, so with telemetry
off (no ``OTEL_*`` exporter set) every span and instrument is a no-op. Prompts, replies and tool
arguments are never in an attribute unless ``HARNESS_OTEL_CAPTURE_CONTENT=1``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from temporalio import activity, client, worker, workflow
from temporalio.contrib.opentelemetry import workflow as otel_workflow

from contracts.models import ModelCallRequest, ModelCallResult
from contracts.tools import ToolCallRequest, ToolCallResult

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "EXPORTERS",
    "JobSpanInterceptor",
    "ModelCallSpan",
    "Telemetry",
    "ToolCallSpan",
    "exporters",
    "setup_from_env",
    "telemetry_wanted",
]

CAPTURE_CONTENT_ENV = "HARNESS_OTEL_CAPTURE_CONTENT"
"""Set to 1 to put prompts, replies and tool arguments and results on spans (off by default)."""

SCOPE = "harness"


EXPORTERS = ("otlp", "console")
"""The values of ``OTEL_TRACES_EXPORTER`` and ``OTEL_METRICS_EXPORTER`` harness honours, besides
``none``: OTLP over HTTP, and the console (stderr, so a command's output on stdout stays clean)."""

log = logging.getLogger(__name__)


def exporters(env: Mapping[str, str], signal: str) -> list[str]:
    """The exporters the standard variables choose for ``signal`` (TRACES or METRICS): the
    comma-separated ``OTEL_{signal}_EXPORTER`` (``none`` among them: none), else ``otlp`` when an OTLP
    endpoint is set for it, else none. A name not in ``EXPORTERS`` is left out, with a warning."""
    chosen = [name.strip().lower() for name in env.get(f"OTEL_{signal}_EXPORTER", "").split(",")]
    chosen = [name for name in chosen if name]
    if not chosen:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
        return ["otlp"] if endpoint else []
    if "none" in chosen:
        return []
    unknown = [name for name in chosen if name not in EXPORTERS]
    if unknown:
        log.warning(
            "OTEL_%s_EXPORTER: %s not supported (harness exports to %s or none); ignored",
            signal,
            ", ".join(unknown),
            " or ".join(EXPORTERS),
        )
    return [name for name in dict.fromkeys(chosen) if name in EXPORTERS]


def telemetry_wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` environment turns telemetry on: an exporter is chosen for traces or
    metrics (``exporters``), and ``OTEL_SDK_DISABLED`` is not true."""
    env = os.environ if env is None else env
    return not _disabled(env) and bool(exporters(env, "TRACES") or exporters(env, "METRICS"))


def _disabled(env: Mapping[str, str]) -> bool:
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def setup_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Install tracer and meter providers as the global ones, exporting where the ``OTEL_*``
    environment says (``exporters``: OTLP over HTTP, the console); return whether telemetry is on.

    The OTLP exporters read the standard variables (endpoint, headers, timeout, protocol options);
    the console ones write JSON to stderr. ``service.name`` is ``OTEL_SERVICE_NAME``, or ``harness``.
    Idempotent: providers already installed (by an earlier call, or by the embedding program) are
    kept, since OpenTelemetry's global providers can be set once per process.
    """
    env = os.environ if env is None else env
    traces, meters = exporters(env, "TRACES"), exporters(env, "METRICS")
    if _disabled(env) or not (traces or meters):
        return False
    # Imported here: a process with telemetry off never loads the SDK or the exporters.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or SCOPE})
    if traces and not isinstance(trace.get_tracer_provider(), TracerProvider):
        tracer_provider = TracerProvider(resource=resource)
        for name in traces:
            tracer_provider.add_span_processor(_span_processor(name))
        trace.set_tracer_provider(tracer_provider)
    if meters and not isinstance(metrics.get_meter_provider(), MeterProvider):
        readers = [_metric_reader(name) for name in meters]
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    return True


def _span_processor(exporter: str) -> Any:
    """OTLP spans in batches; console spans one by one, as they end."""
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

        return SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return BatchSpanProcessor(OTLPSpanExporter())


def _metric_reader(exporter: str) -> Any:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return PeriodicExportingMetricReader(OTLPMetricExporter())


def _capture_from_env() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclass
class _Instruments:
    """The metric instruments, made once per ``Telemetry`` from its meter."""

    tokens: metrics.Counter
    cost: metrics.Counter
    duration: metrics.Histogram
    interrupts: metrics.Counter
    budget_refusals: metrics.Counter
    account_tokens: metrics.Counter
    account_cost: metrics.Counter

    @classmethod
    def of(cls, meter: metrics.Meter) -> _Instruments:
        return cls(
            tokens=meter.create_counter(
                "harness.tokens", unit="{token}", description="Tokens of model calls, by gen_ai.token.type."
            ),
            cost=meter.create_counter(
                "harness.cost", unit="USD", description="Spend of model and tool calls whose price is known."
            ),
            duration=meter.create_histogram(
                "gen_ai.client.operation.duration", unit="s", description="Model and tool call latency."
            ),
            interrupts=meter.create_counter(
                "harness.interrupts",
                unit="{call}",
                description="Model and tool calls cut short by a cancellation (an interrupt or abort).",
            ),
            budget_refusals=meter.create_counter(
                "harness.budget.refusals", unit="{lease}", description="Leases a budget account refused."
            ),
            account_tokens=meter.create_counter(
                "harness.account.tokens", unit="{token}", description="Tokens jobs gave back as spent."
            ),
            account_cost=meter.create_counter(
                "harness.account.cost", unit="USD", description="USD jobs gave back as spent."
            ),
        )


def _interrupted() -> bool:
    """Whether the running activity's cancellation was asked for (not a timeout or shutdown)."""
    details = activity.cancellation_details() if activity.in_activity() else None
    return details is None or details.cancel_requested


@dataclass
class ModelCallSpan:
    """The span of one model call, open while the call runs; ``done`` sets what the call returned."""

    span: Span
    instruments: _Instruments
    capture: bool
    labels: dict[str, str]
    started: float = field(default_factory=time.monotonic)
    from_receipt: bool = False

    def answered_from_receipt(self) -> None:
        """An earlier attempt made the call and recorded it: count nothing twice."""
        self.from_receipt = True
        self.span.set_attribute("harness.from_receipt", True)

    def done(self, result: ModelCallResult) -> None:
        """Set the reply's usage, cost and finish reason; count tokens, cost and latency."""
        usage = result.usage
        self.span.set_attributes(
            {
                "gen_ai.response.model": result.model,
                "gen_ai.response.finish_reasons": [result.finish_reason],
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "harness.stop_reason": result.finish_reason,
                "harness.usage.estimated": usage.estimated,
            }
        )
        if usage.cache_read_tokens:
            self.span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cache_read_tokens)
        if result.cost_usd is not None:
            self.span.set_attribute("harness.cost_usd", float(result.cost_usd))
        if self.capture:
            self.span.set_attribute(
                "gen_ai.output.messages", json.dumps([{"role": "assistant", "content": result.text}])
            )
        if self.from_receipt:
            return
        self.instruments.tokens.add(usage.input_tokens, {**self.labels, "gen_ai.token.type": "input"})
        self.instruments.tokens.add(usage.output_tokens, {**self.labels, "gen_ai.token.type": "output"})
        if result.cost_usd is not None:
            self.instruments.cost.add(float(result.cost_usd), self.labels)
        self.instruments.duration.record(time.monotonic() - self.started, self.labels)
        if result.finish_reason == "cancelled":
            self.instruments.interrupts.add(1, self.labels)


@dataclass
class ToolCallSpan:
    """The span of one tool call; ``done`` sets its outcome."""

    span: Span
    instruments: _Instruments
    capture: bool
    labels: dict[str, str]
    price_usd: Decimal
    started: float = field(default_factory=time.monotonic)

    def done(self, result: ToolCallResult) -> None:
        """Set the outcome and price; count cost and latency."""
        self.span.set_attributes(
            {
                "harness.tool.outcome": result.outcome,
                "harness.stop_reason": result.outcome,
                "harness.cost_usd": float(self.price_usd),
            }
        )
        if result.truncated_from is not None:
            self.span.set_attribute("harness.tool.truncated_from", result.truncated_from)
        if result.is_error:
            self.span.set_attribute("error.type", result.outcome)
        if self.capture:
            self.span.set_attribute("gen_ai.tool.call.result", result.content)
        if self.price_usd:
            self.instruments.cost.add(float(self.price_usd), self.labels)
        self.instruments.duration.record(time.monotonic() - self.started, self.labels)


class Telemetry:
    """Spans and instruments for the activities: the global providers', or the ones given (tests)."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self.instruments = _Instruments.of(metrics.get_meter(SCOPE, meter_provider=meter_provider))
        self.capture = _capture_from_env() if capture_content is None else capture_content
        """Whether prompts, replies and tool arguments go on spans (``HARNESS_OTEL_CAPTURE_CONTENT``)."""

    @contextmanager
    def model_call(self, request: ModelCallRequest) -> Iterator[ModelCallSpan]:
        """A ``chat {model}`` span around one model call; an exception leaves its type on the span."""
        model = request.model
        labels = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": model.provider,
            "gen_ai.request.model": model.model,
            "gen_ai.agent.name": request.agent,
            "harness.job": request.job_id,
        }
        attributes: dict[str, Any] = {
            **labels,
            "harness.model": model.ref,
            "harness.call_id": request.call_id,
            "gen_ai.request.max_tokens": request.max_output_tokens,
        }
        if request.step is not None:
            attributes["harness.node"] = request.step
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        if activity.in_activity():
            attributes["harness.attempt"] = activity.info().attempt
        if self.capture:
            attributes["gen_ai.system_instructions"] = request.system
            attributes["gen_ai.input.messages"] = json.dumps(
                [m.model_dump(mode="json", exclude_defaults=True) for m in request.messages]
            )
        with self._span(f"chat {model.model}", attributes, labels) as span:
            yield ModelCallSpan(span, self.instruments, self.capture, labels)

    @contextmanager
    def tool_call(self, request: ToolCallRequest) -> Iterator[ToolCallSpan]:
        """An ``execute_tool {name}`` span around one tool call."""
        tool = request.tool
        labels = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool.name,
            "gen_ai.agent.name": request.agent,
            "harness.job": request.job_id,
        }
        attributes: dict[str, Any] = {
            **labels,
            "gen_ai.tool.call.id": request.call_id,
            "gen_ai.tool.type": "extension" if tool.server else "function",
            "harness.tool.ref": tool.ref,
        }
        if self.capture:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(request.arguments)
        with self._span(f"execute_tool {tool.name}", attributes, labels) as span:
            yield ToolCallSpan(span, self.instruments, self.capture, labels, tool.price_usd)

    @contextmanager
    def _span(self, name: str, attributes: dict[str, Any], labels: dict[str, str]) -> Iterator[Span]:
        # No exception message on the span: a provider's error text can quote the prompt.
        with self.tracer.start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as error:
                span.set_attribute("error.type", getattr(error, "type", None) or type(error).__name__)
                span.set_status(Status(StatusCode.ERROR))
                if isinstance(error, asyncio.CancelledError) and _interrupted():
                    self.instruments.interrupts.add(1, labels)
                raise

    def budget_refused(self, account: str, job_id: str) -> None:
        """Count a lease account ``account`` refused to job ``job_id``."""
        self.instruments.budget_refusals.add(1, {"harness.account": account, "harness.job": job_id})

    def account_spent(self, account: str, job_id: str, tokens: int, usd: Decimal) -> None:
        """Count what job ``job_id`` gave back to account ``account`` as spent."""
        labels = {"harness.account": account, "harness.job": job_id}
        self.instruments.account_tokens.add(tokens, labels)
        self.instruments.account_cost.add(float(usd), labels)


class JobSpanInterceptor(client.Interceptor, worker.Interceptor):
    """Adds a ``JobEnded:{workflow}`` span when a job returns its result: its stop reason, turns,
    tokens and USD. Only with ``TracingInterceptor`` before it (the span is the SDK's replay-safe
    ``completed_span``, made in the tracing interceptor's context): no workflow code changes. A client
    interceptor too (one that changes nothing) so that it can sit on the client, which gives it to the
    workers made from it."""

    def workflow_interceptor_class(
        self, input: worker.WorkflowInterceptorClassInput
    ) -> type[worker.WorkflowInboundInterceptor]:
        return _JobEndInbound


class _JobEndInbound(worker.WorkflowInboundInterceptor):
    async def execute_workflow(self, input: worker.ExecuteWorkflowInput) -> Any:
        result = await self.next.execute_workflow(input)
        if workflow.unsafe.is_replaying():  # completed_span skips replay too; this keeps it so if unwired
            return result
        stop_reason = getattr(result, "stop_reason", None)
        ledger = getattr(result, "ledger", None)
        if isinstance(stop_reason, str) and ledger is not None:
            otel_workflow.completed_span(
                f"JobEnded:{workflow.info().workflow_type}",
                attributes={
                    "harness.job": str(getattr(result, "job_id", "")),
                    "harness.mode": str(getattr(result, "mode", "")),
                    "harness.stop_reason": stop_reason,
                    "harness.turns": int(getattr(result, "turns", 0)),
                    "gen_ai.usage.input_tokens": ledger.usage.input_tokens,
                    "gen_ai.usage.output_tokens": ledger.usage.output_tokens,
                    "harness.cost_usd": float(ledger.cost_usd),
                },
            )
        return result
