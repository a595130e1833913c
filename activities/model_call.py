"""The model-call activities: every model call of every job goes through ``model_call``.

``model_call`` streams (or not), heartbeats its progress every ``HEARTBEAT_INTERVAL_S`` even before
the first token (that is how a cancellation reaches it), validates structured output with re-asks,
prices the usage, and on cancellation returns what it has instead of raising.

Heartbeat details (also read back on a retry): ``{"attempt", "output_tokens", "settled_output_tokens",
"input_tokens_estimate", "chars", "sent", "lost_input_tokens", "lost_output_tokens"}``, cumulative over
the re-asks of one attempt. Before each request goes out the attempt records that it is sending it
(in its receipt, written before the request leaves, and a heartbeat). An attempt that dies after that
point is reported by the next attempt as ``lost_usage`` (estimated): the provider bills a prompt it
received whether or not any output followed. From the receipt: the request's input estimate plus the
output it streamed (and a margin); from the heartbeat alone (receipts off): the reply at its max output
tokens, since it may have streamed on after the last heartbeat. An attempt that dies before it sent
anything is charged nothing. The figure carries forward until an attempt succeeds.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError
from temporalio import activity

from activities import errors
from activities._provider import Provider, ProviderReply, system_prompt
from activities.anthropic_provider import AnthropicProvider
from activities.catalog import ModelCatalog, UnknownModelError, UnknownPriceError, load_catalog, resolve
from activities.config import Endpoint, ProviderSettings
from activities.fairness import report_served
from activities.openai_provider import OpenAIOptions, OpenAIProvider
from activities.receipts import CallRecorder, ReceiptStore, store_from_env
from activities.telemetry import ModelCallSpan, Telemetry
from contracts.models import (
    INLINE_PAYLOAD_LIMIT,
    EstimateReason,
    Message,
    ModelCallRequest,
    ModelCallResult,
    ResolveModelsRequest,
    ResolveModelsResult,
    Usage,
)
from contracts.names import MODEL_CALL_ACTIVITY, RESOLVE_MODELS_ACTIVITY, ROLE_QUEUES_ENV, TOKEN_FAIRNESS_ENV
from contracts.outputs import OUTPUT_TYPES
from policies.tokens import (
    TokenSample,
    chunks_are_tokens,
    count_tokens,
    estimate_output_tokens,
    input_overhead,
    scaled,
)

__all__ = ["HEARTBEAT_INTERVAL_S", "LIVE_TAIL_CHARS", "ModelCallActivities"]

HEARTBEAT_INTERVAL_S = 0.25
LIVE_TAIL_CHARS = 2000
"""Characters of the reply in flight each heartbeat carries: at the worker's heartbeat cadence
(``worker.HEARTBEAT_THROTTLE``) a watcher misses none below about 4,000 characters a second."""
"""Seconds between heartbeats; well under the heartbeat timeout (10 s): they carry cancellations."""

CUT_WINDOW_S = 0.1
CUT_MARGIN_TOKENS = 2

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


@dataclass
class _Meter:
    """What the running call has spent so far: settled re-asks plus the reply streaming now."""

    attempt: int
    lost: Usage
    settled: Usage = field(default_factory=Usage)
    sample: TokenSample = field(default_factory=TokenSample)
    request: ModelCallRequest | None = None
    """The request of the reply in flight; None once it is settled."""
    pieces: list[str] = field(default_factory=list)
    chars: int = 0
    first_at: float | None = None
    last_at: float | None = None
    sent_at: float | None = None
    """When the request in flight was handed to the provider (Unix time); None: not yet."""
    accepted_at: float | None = None
    """When the provider answered it with a success status (Unix time); None: not (yet)."""
    _prompt_tokens: int = 0
    """The conservative count of the request's texts (system prompt and messages), made once."""
    _messages: int = 0
    asks: int = 0
    """Requests sent in this attempt: a structured reply that failed validation is asked again."""
    tail: str = ""
    """The last ``LIVE_TAIL_CHARS`` characters of the reply in flight."""

    def start(self, request: ModelCallRequest) -> None:
        self.request = request
        contents = request.texts()
        self._prompt_tokens = count_tokens(system_prompt(request)) + sum(count_tokens(c) for c in contents)
        self._messages = len(contents)
        self.pieces = []
        self.chars = 0
        self.tail = ""
        self.first_at = None
        self.last_at = None
        self.sent_at = None
        self.accepted_at = None

    def sending(self) -> None:
        """The request in flight goes to the provider now: from here on its prompt can be billed."""
        self.sent_at = time.time()
        self.asks += 1

    def on_accepted(self) -> None:
        self.accepted_at = time.time()

    def on_progress(self, piece: str) -> None:
        self.last_at = time.monotonic()
        if self.first_at is None:
            self.first_at = self.last_at
        self.pieces.append(piece)
        self.chars += len(piece)
        self.tail = (self.tail + piece)[-LIVE_TAIL_CHARS:]
        if self.first_at == self.last_at and activity.in_activity():
            activity.heartbeat(self.details())  # the first token: a watcher sees it without waiting

    def settle(self, usage: Usage) -> None:
        if not usage.estimated:  # the provider's own count: evidence of the model's tokenizer
            self.sample = self.sample + TokenSample(
                estimated=self._prompt_tokens + count_tokens("".join(self.pieces)),
                tokens=max(0, usage.input_tokens - input_overhead(self._messages))
                + max(0, usage.output_tokens - usage.reasoning_tokens),
            )
        self.settled = self.settled + usage
        self.pieces = []
        self.chars = 0
        self.request = None
        self.sent_at = None
        self.accepted_at = None

    def scale(self) -> float | None:
        """The model's calibrated scale for this call's estimates (None: the conservative count)."""
        return self.request.token_scale if self.request is not None else None

    @property
    def input_estimate(self) -> int:
        """Input tokens (estimated) of the reply in flight; 0 when none is."""
        if self.request is None:
            return 0
        return scaled(self._prompt_tokens, self.scale()) + input_overhead(self._messages)

    def streamed_output_tokens(self) -> int:
        """Output tokens of the reply in flight received so far: its chunks (or characters)."""
        limit = self.request.max_output_tokens if self.request is not None else None
        if chunks_are_tokens(len(self.pieces), self.chars):  # the usual case: no need to join them
            return min(len(self.pieces), limit) if limit is not None else len(self.pieces)
        return estimate_output_tokens(len(self.pieces), "".join(self.pieces), limit, self.scale())

    def in_flight(self, reason: EstimateReason) -> Usage:
        """Estimate of the reply in flight: its input estimate plus the output streamed so far (and,
        for a reply we cut, what the provider can have generated that had not reached us)."""
        if self.request is None:
            return Usage()
        output = self.streamed_output_tokens()
        if reason == "cut short" and self.pieces:
            output = min(output + self.cut_margin(), self.request.max_output_tokens)
        return Usage(input_tokens=self.input_estimate, output_tokens=output, requests=1).because(reason)

    def cut_margin(self) -> int:
        """Tokens a stream we closed can have carried past the last chunk we read: at the rate it
        streamed, the time since that chunk plus ``CUT_WINDOW_S``, and ``CUT_MARGIN_TOKENS`` more
        (a busy event loop that read late is covered: the server went on writing meanwhile)."""
        if self.first_at is None or self.last_at is None:
            return CUT_MARGIN_TOKENS
        streaming = self.last_at - self.first_at
        rate = (len(self.pieces) - 1) / streaming if streaming > 0 else 0.0
        since = time.monotonic() - self.last_at
        return math.ceil(rate * (since + CUT_WINDOW_S)) + CUT_MARGIN_TOKENS

    def spent_on_failure(self) -> Usage:
        """What a call that failed for good has spent: settled re-asks, plus the reply in flight
        only if output had started (a request rejected before any output is not billed)."""
        return self.settled + self.in_flight("failed mid-reply") if self.chars else self.settled

    def details(self) -> dict[str, int | str]:
        """The heartbeat: what the attempt has spent (for charging it if it dies) and the end of the
        reply streaming now (for ``harness watch``: the live channel costs no history event, as
        heartbeats are not events, and no extra request, as they go out anyway)."""
        spent = self.settled + (self.in_flight("worker lost") if self.chars else Usage())
        return {
            **self.live(),
            "attempt": self.attempt,
            "output_tokens": spent.output_tokens,
            "settled_output_tokens": self.settled.output_tokens,
            "input_tokens_estimate": self.settled.input_tokens + self.input_estimate,
            "chars": self.chars,
            "sent": 1 if self.sent_at is not None else 0,
            "lost_input_tokens": self.lost.input_tokens,
            "lost_output_tokens": self.lost.output_tokens,
        }

    def live(self) -> dict[str, int | str]:
        """The reply in flight as a watcher follows it: its call, which ask it is (a re-ask of a
        structured reply starts over), its length and its last ``LIVE_TAIL_CHARS`` characters."""
        if self.request is None:
            return {}
        return {"call_id": self.request.call_id, "ask": self.asks, "tail": self.tail}


class ModelCallActivities:
    """The model-call and resolve-models activities, with provider clients made once and reused."""

    def __init__(
        self,
        settings: ProviderSettings | None = None,
        catalog: ModelCatalog | None = None,
        receipts: ReceiptStore | Literal["env"] | None = "env",
        payload_limit: int | None = INLINE_PAYLOAD_LIMIT,
        telemetry: Telemetry | None = None,
        token_fairness: bool | None = None,
        role_queues: bool | None = None,
    ) -> None:
        # What jobs resolved here may write inline when the worker's converter stores nothing
        # outside history (tests lower it to reach it with small texts).
        self.payload_limit = payload_limit
        self.settings = settings if settings is not None else ProviderSettings.from_env()
        self.catalog = catalog if catalog is not None else load_catalog(self.settings.catalog_path)
        # Durable receipts of calls (activities/receipts.py): HARNESS_RECEIPTS_DIR unless given; None: none.
        self.receipts: ReceiptStore | None = store_from_env() if receipts == "env" else receipts
        self._clients: dict[tuple[str, str, str], Any] = {}
        # Spans and metrics of each call: the global OpenTelemetry providers' (no-ops when off) unless given.
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        # Report each call of a tenant's job to the token-fairness workflow (HARNESS_TOKEN_FAIRNESS=1).
        self.token_fairness = (
            token_fairness if token_fairness is not None else os.environ.get(TOKEN_FAIRNESS_ENV, "") == "1"
        )
        self._reports: set[asyncio.Task[None]] = set()
        # Whether this deployment's workers serve model and tool calls on their roles' own queues.
        self.role_queues = (
            role_queues if role_queues is not None else os.environ.get(ROLE_QUEUES_ENV, "") == "1"
        )

    def provider(self, name: str) -> Provider:
        """The provider for prefix ``name``, over a client cached per wire format and base URL."""
        endpoint = self.settings.endpoint(name)
        if endpoint.wire == "anthropic":
            return AnthropicProvider(self._client(endpoint), name=name)
        options = OpenAIOptions()
        if name == "openai-compatible" and not endpoint.simulated:
            options = OpenAIOptions(
                openai_stream_usage=self.settings.openai_compatible_stream_usage,
                openai_json_schema=self.settings.openai_compatible_json_schema,
                openai_max_tokens_param="max_tokens",
                openai_send_names=False,
            )
        elif endpoint.simulated:
            options = OpenAIOptions(openai_max_tokens_param="max_tokens")
        return OpenAIProvider(self._client(endpoint), name=name, options=options)

    async def _provider(self, name: str) -> Provider:
        """``provider(name)``, its SDK imported in a thread first if no client of it exists yet: the
        SDKs are imported on first use (a worker whose jobs call only ``sim:`` models never imports
        anthropic), and importing one takes a second or more of CPU during which the event loop would
        heartbeat no other call. Concurrent first calls wait in their threads, not on the loop."""
        wire = self.settings.endpoint(name).wire
        if not any(key[0] == wire for key in self._clients):
            await asyncio.to_thread(importlib.import_module, wire)  # the module is named as the wire
        return self.provider(name)

    def _client(self, endpoint: Endpoint) -> Any:
        # The key is part of the cache key: two providers at one URL (a LiteLLM proxy, say) with
        # different keys must not share a client, or one provider's key is sent for the other.
        key = (endpoint.wire, endpoint.base_url, endpoint.api_key.get_secret_value())
        client = self._clients.get(key)
        if client is None:
            if endpoint.wire == "anthropic":
                import anthropic  # on first use, not at import: see _provider

                client = anthropic.AsyncAnthropic(
                    api_key=endpoint.api_key.get_secret_value(),
                    base_url=endpoint.base_url,
                    max_retries=0,
                    timeout=self.settings.request_timeout_s,
                )
            else:
                import openai

                client = openai.AsyncOpenAI(
                    api_key=endpoint.api_key.get_secret_value(),
                    base_url=endpoint.base_url,
                    max_retries=0,
                    timeout=self.settings.request_timeout_s,
                )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        """Close the cached SDK clients (their connection pools); call it when the worker stops."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    @activity.defn(name=RESOLVE_MODELS_ACTIVITY)
    async def resolve_models(self, request: ResolveModelsRequest) -> ResolveModelsResult:
        """Resolve every reference against the catalog; unknown models or prices are refused."""
        models = {}
        for ref in request.refs:
            try:
                models[ref] = resolve(ref, self.catalog)
            except (UnknownPriceError, UnknownModelError) as err:
                refused = (
                    errors.unknown_price if isinstance(err, UnknownPriceError) else errors.unknown_model
                )(str(err))
                activity.logger.warning("model %r refused: %s: %s", ref, refused.type, refused.message)
                raise refused from None
        return ResolveModelsResult(
            models=models, payload_limit=self._payload_limit(), role_queues=self.role_queues
        )

    def _payload_limit(self) -> int | None:
        """How large a payload a job can write inline: no limit when this worker's client stores
        large payloads outside history (its converter's external storage), else ``payload_limit``."""
        try:
            converter = activity.client().data_converter
        except RuntimeError:  # an activity environment without a client: assume the worst
            return self.payload_limit
        return None if converter.external_storage is not None else self.payload_limit

    @activity.defn(name=MODEL_CALL_ACTIVITY)
    async def model_call(self, request: ModelCallRequest) -> ModelCallResult:
        """Make one model call: stream, heartbeat, validate, price; return partial text if cancelled."""
        with self.telemetry.model_call(request) as span:
            result = await self._model_call(request, span)
            span.done(result)
        limits = self.catalog.providers.get(request.model.provider) if request.model.own_queue else None
        if self.token_fairness or (limits is not None and limits.tpm is not None):
            report_served(
                activity.client(),
                activity.info().task_queue,
                result.usage.total_tokens,
                self._reports,
                by_tenant=self.token_fairness,
                limits=limits,
            )
        return result

    async def _model_call(self, request: ModelCallRequest, span: ModelCallSpan) -> ModelCallResult:
        info = activity.info()
        receipt = await CallRecorder.open(self.receipts, request)
        if receipt.answer is not None:  # an earlier attempt finished it; its completion was lost
            activity.logger.info("model call answered from its receipt", extra={"call_id": request.call_id})
            span.answered_from_receipt()
            return receipt.answer
        lost = (
            receipt.lost
            if receipt.found
            else _lost_usage(info.attempt, info.heartbeat_details, request.max_output_tokens)
        )
        meter = _Meter(attempt=info.attempt, lost=lost)
        started = time.monotonic()
        provider = await self._provider(request.model.provider)
        meter.start(request)
        await receipt.record(meter)
        ticker = asyncio.create_task(_heartbeat_forever(meter))
        recording = asyncio.create_task(receipt.follow(meter))
        try:
            reply, parsed = await self._call(provider, request, meter, receipt)
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is not None and not details.cancel_requested:
                await receipt.record(meter, live=False)
                raise  # worker shutdown or timeout: no one waits for a result; retry elsewhere
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the cancellation is handled: we answer with the partial reply
            partial = "".join(meter.pieces)
            usage = meter.settled + meter.in_flight("cut short")
            activity.logger.info(
                "model call cancelled",
                extra={
                    "agent": request.agent,
                    "model": request.model.ref,
                    "output_tokens": usage.output_tokens,
                },
            )
            result = self._result(
                request, partial, usage, "cancelled", None, request.model.model, started, lost, meter.sample
            )
            recording.cancel()  # no progress record may land after the answer
            await receipt.answered(result)
            return result
        except Exception as err:
            mapped = errors.from_provider_error(err, secrets=self.settings.secrets())
            if mapped is None:
                await receipt.record(meter, live=False)
                raise
            if mapped.non_retryable and not mapped.details:
                mapped = errors.with_usage(mapped, meter.spent_on_failure())
            # The provider answered (an error): what it billed is in ``mapped``, not lost.
            activity.heartbeat({**meter.details(), "sent": 0})
            # Count provider errors of the call (not worker losses); add earlier attempts' usage.
            mapped = await receipt.failed(mapped, meter)
            if mapped.non_retryable and not receipt.found and lost.requests:
                # No receipt held the earlier attempts' spend: charge what their heartbeats carried.
                mapped = errors.with_lost_usage(mapped, lost)
            activity.logger.warning(  # one line: the SDK logs a handled error at DEBUG only
                "model call failed: %s (%s for %s, %s)",
                mapped.type,
                request.model.ref,
                request.agent,
                "retried" if not mapped.non_retryable else "not retried",
                extra={"agent": request.agent, "model": request.model.ref, "error_type": mapped.type},
            )
            raise mapped from None
        finally:
            ticker.cancel()
            recording.cancel()
        usage = meter.settled
        activity.logger.info(
            "model call done",
            extra={
                "agent": request.agent,
                "model": request.model.ref,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
            },
        )
        result = self._result(
            request, reply.text, usage, reply.finish_reason, parsed, reply.model, started, lost, meter.sample
        )
        result.tool_calls = reply.tool_calls
        await receipt.answered(result)
        return result

    async def _call(
        self, provider: Provider, request: ModelCallRequest, meter: _Meter, receipt: CallRecorder
    ) -> tuple[ProviderReply, Any]:
        """One provider request, or several when structured output has to be re-asked for. Before
        each goes out, the receipt and a heartbeat say it is being sent: the attempt is charged its
        prompt if it dies after that."""
        asking = request
        attempts = 0
        while True:
            attempts += 1
            meter.start(asking)
            meter.sending()
            activity.heartbeat(meter.details())
            await receipt.record(meter)  # written before the request leaves: a death after it is charged
            send = provider.stream if request.stream else provider.complete
            reply = await send(asking, meter.on_progress, meter.on_accepted)
            meter.settle(reply.usage)
            if request.output_type is None or reply.finish_reason in (
                "refusal",
                "content_filter",
                "tool_calls",
            ):
                return reply, None  # a reply asking for tools is validated when the model answers
            output_model = OUTPUT_TYPES[request.output_type]
            try:
                parsed = output_model.model_validate_json(_strip_fences(reply.text))
            except ValidationError as err:
                problem = _summarize(err)
                if attempts > request.structured_retries:
                    raise errors.structured_output_invalid(
                        request.output_type, problem, meter.settled, attempts
                    ) from None
                feedback = (
                    f"Your reply was invalid: it failed validation against the {request.output_type} "
                    f"schema ({problem}). Answer again with only the corrected JSON object."
                )
                asking = asking.model_copy(
                    update={
                        "messages": [
                            *asking.messages,
                            Message(role="assistant", content=reply.text),
                            Message(role="user", content=feedback),
                        ]
                    }
                )
                continue
            return reply, parsed.model_dump(mode="json")

    def _result(
        self,
        request: ModelCallRequest,
        text: str,
        usage: Usage,
        finish_reason: Any,
        parsed: Any,
        model: str,
        started: float,
        lost: Usage,
        sample: TokenSample,
    ) -> ModelCallResult:
        return ModelCallResult(
            call_id=request.call_id,
            text=text,
            usage=usage,
            cost_usd=request.model.price.cost(usage),
            model=model,
            provider=request.model.provider,
            finish_reason=finish_reason,
            parsed=parsed,
            latency_s=time.monotonic() - started,
            lost_usage=lost if lost.requests else None,
            sample=sample if sample.tokens else None,
        )


async def _heartbeat_forever(meter: _Meter) -> None:
    """Heartbeat the meter's figures until cancelled, so a cancel request reaches the activity."""
    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)
        activity.heartbeat(meter.details())


def _lost_usage(attempt: int, heartbeat_details: Any, max_output_tokens: int) -> Usage:
    """Estimated usage of earlier attempts that died after sending a request, from the last
    heartbeat (with receipts off; the receipt is exact to the record interval).

    The reply in flight when an attempt died may have streamed on after its last heartbeat (Temporal
    throttles them), so it is charged at its worst case, ``max_output_tokens`` (never less than the
    heartbeat saw), with the request's input; re-asks the attempt had finished count as they were.
    An attempt whose last heartbeat shows nothing sent (or the provider's error answer) is not charged.
    """
    if attempt <= 1 or not heartbeat_details:
        return Usage()
    details = _decode(heartbeat_details[-1])
    if not isinstance(details, Mapping):
        return Usage()

    def number(key: str) -> int:
        value = details.get(key, 0)
        return value if isinstance(value, int) and value > 0 else 0

    lost_input, lost_output = number("lost_input_tokens"), number("lost_output_tokens")
    # A dead attempt counts once its request went out (the provider bills a prompt it received).
    if number("output_tokens") or number("chars") or number("sent"):
        lost_input += number("input_tokens_estimate")
        settled = min(number("settled_output_tokens"), number("output_tokens"))
        streaming = number("output_tokens") - settled
        in_flight = number("chars") or number("sent")
        lost_output += settled + (max(max_output_tokens, streaming) if in_flight else streaming)
    if not lost_input and not lost_output:
        return Usage()
    return Usage(input_tokens=lost_input, output_tokens=lost_output, requests=1).because("worker lost")


def _decode(item: Any) -> Any:
    """A heartbeat detail: a plain value in tests, a payload from a real worker."""
    if isinstance(item, Mapping):
        return item
    if hasattr(item, "metadata") and hasattr(item, "data"):
        try:
            return activity.payload_converter().from_payload(item)
        except Exception:
            return None
    return None


def _strip_fences(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def _summarize(err: ValidationError) -> str:
    """The validation errors without the input values (which may quote the prompt)."""
    problems = [
        f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}"
        for e in err.errors(include_input=False, include_url=False)
    ]
    shown = "; ".join(problems[:3])
    return shown + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
