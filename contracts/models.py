"""Wire types of a model call: messages, usage, prices, requests and results.

Every workflow and activity takes one of these pydantic models and returns one. They travel through
Temporal's history as JSON (``pydantic_data_converter``), so they hold no secrets and no clients.

Token fields nest like this (the same convention as pydantic-ai and genai-prices):

- ``input_tokens`` counts *every* input token, cached or not; ``cache_read_tokens`` and
  ``cache_write_tokens`` are parts of it, never added on top.
- ``output_tokens`` counts every generated token; ``reasoning_tokens`` is a part of it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.tools import ToolCall, ToolDef, ToolResult
from policies.tokens import TokenSample

EstimateReason = Literal["cut short", "no usage reported", "worker lost", "failed mid-reply"]
"""Why a figure is our estimate: a call cut by an interrupt or a stop, a provider that reported no
usage, an attempt whose worker died mid-call, or a reply that broke off with an error."""


class Usage(BaseModel):
    """Tokens of one request, or the sum of many (``requests`` counts them).

    ``input_tokens`` includes ``cache_read_tokens`` and ``cache_write_tokens``;
    ``output_tokens`` includes ``reasoning_tokens``. ``estimated`` is true when any part of the
    figure is our own estimate rather than the provider's report (a call cut mid-stream, say), and
    ``estimated_for`` says why.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    estimated: bool = False
    estimated_for: list[EstimateReason] = Field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (cached and reasoning tokens are already inside them)."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            requests=self.requests + other.requests,
            estimated=self.estimated or other.estimated,
            estimated_for=sorted({*self.estimated_for, *other.estimated_for}),
        )

    def because(self, reason: EstimateReason) -> Usage:
        """This usage marked estimated for ``reason`` (unchanged if it counts nothing)."""
        if not self.requests and not self.total_tokens:
            return self
        return self.model_copy(
            update={"estimated": True, "estimated_for": sorted({*self.estimated_for, reason})}
        )


class ModelPrice(BaseModel):
    """USD per million tokens. Cache prices default to the input price when a provider has none."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        """Exact cost of ``usage`` at this price."""
        cache_read = self.cache_read_per_mtok if self.cache_read_per_mtok is not None else self.input_per_mtok
        cache_write = (
            self.cache_write_per_mtok if self.cache_write_per_mtok is not None else self.input_per_mtok
        )
        plain_input = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
        total = (
            plain_input * self.input_per_mtok
            + usage.cache_read_tokens * cache_read
            + usage.cache_write_tokens * cache_write
            + usage.output_tokens * self.output_per_mtok
        )
        return total / Decimal(1_000_000)


class ProviderLimits(BaseModel):
    """A provider's request rate, held cluster-wide: its model calls go to a task queue of their own
    (``contracts.names.models_queue``) whose rate limit Temporal enforces for every worker at once."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    rps: float = Field(gt=0)
    """Requests per second the provider allows this deployment (its RPM / 60)."""
    tenant_rps: float | None = Field(default=None, gt=0)
    """Requests per second one tenant (fairness key) may use, scaled by its weight; None: no cap."""
    tpm: int | None = Field(default=None, gt=0)
    """Tokens per minute the provider allows: held by lowering the queue's request rate to
    ``tpm / 60 / tokens per call`` (the calls served show the size), never above ``rps``
    (``workflows.fairness``). None: only ``rps`` holds."""


class ModelInfo(BaseModel):
    """A model reference resolved against the catalog: who serves it, what it costs, its limits."""

    ref: str = Field(description="What the spec said: 'sim:writer', 'openai:gpt-4o-mini', or an alias.")
    provider: Literal["sim", "openai", "anthropic", "openai-compatible"]
    model: str = Field(description="The provider's own model name.")
    tier: int = Field(default=1, description="0 is cheapest; higher tiers are stronger and dearer.")
    context_window: int = 128_000
    max_output_tokens: int = 4_096
    token_scale: float | None = Field(
        default=None, description="The catalog's figure for estimates, where it gives one."
    )
    price: ModelPrice
    price_source: Literal["genai-prices", "catalog", "simulator"] = "genai-prices"
    own_queue: bool = Field(
        default=False,
        description="The catalog gives the provider a rate limit: its calls go to the provider's own "
        "task queue (``contracts.names.models_queue``), whose rate Temporal holds cluster-wide.",
    )


class Message(BaseModel):
    """One message of a conversation sent to a model.

    An assistant message may carry the tool calls the model asked for, and the user message after
    it their results (OpenAI sends each result as a ``tool`` message, Anthropic as ``tool_result``
    blocks of a user message: the providers translate).
    """

    role: Literal["user", "assistant"]
    content: str
    name: str | None = Field(default=None, description="Which agent said it, in multi-agent modes.")
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)

    def counted_text(self) -> str:
        """Everything of this message a model reads, as text: what its tokens are estimated from."""
        if not self.tool_calls and not self.tool_results:
            return self.content
        parts = [self.content]
        parts += [f"{call.name} {call.raw_arguments or call.arguments}" for call in self.tool_calls]
        parts += [f"{result.name} {result.content}" for result in self.tool_results]
        return "\n".join(parts)


class ModelCallRequest(BaseModel):
    """Input of the model-call activity: one model call, fully described, no secrets."""

    call_id: str = Field(description="Unique per call in the job; the idempotency key of its charge.")
    job_id: str
    agent: str
    step: str | None = None
    model: ModelInfo
    system: str = ""
    messages: list[Message]
    max_output_tokens: int
    temperature: float | None = None
    output_type: str | None = Field(
        default=None,
        description="Name of a registered output model (contracts.outputs) the reply must be JSON of.",
    )
    structured_retries: int = Field(default=2, description="Re-asks with the error fed back.")
    stream: bool = True
    token_scale: float | None = Field(
        default=None,
        description="Tokens this model's tokenizer counts per token of harness's conservative "
        "estimate, calibrated from the job's settled calls (or the catalog's figure): what usage the "
        "provider does not report is estimated with.",
    )
    tools: list[ToolDef] = Field(
        default_factory=list, description="Tools the model may call (their names, descriptions, schemas)."
    )
    tool_choice: Literal["auto", "none"] = Field(
        default="auto",
        description="'none': the tools stay declared but the model must answer (no more rounds).",
    )

    def texts(self) -> list[str]:
        """The messages' text as the model reads it, tool definitions included: for estimates."""
        texts = [m.counted_text() for m in self.messages]
        texts += [tools_text(self.tools)] if self.tools else []
        return texts


FinishReason = Literal["stop", "length", "refusal", "content_filter", "cancelled", "error", "tool_calls"]
"""Why a reply ended; ``error`` only in a turn record: the call failed (its known usage is charged);
``tool_calls``: the model asked for tools (``ModelCallResult.tool_calls``) and waits for results."""


def tools_text(tools: list[ToolDef]) -> str:
    """Tool definitions as a provider sends them, for estimating their tokens."""
    return "\n".join(
        f"{tool.name}: {tool.description} {json.dumps(tool.parameters, separators=(',', ':'))}"
        for tool in tools
    )


class ModelCallResult(BaseModel):
    """Output of the model-call activity: text, usage and its price."""

    call_id: str
    text: str
    usage: Usage
    cost_usd: Decimal | None = Field(description="None means unknown, never silently zero.")
    model: str
    provider: str
    finish_reason: FinishReason = "stop"
    parsed: Any = Field(default=None, description="The validated JSON, when an output type was asked for.")
    latency_s: float = 0.0
    lost_usage: Usage | None = Field(
        default=None,
        description="Estimated usage of earlier attempts of this call that died mid-stream "
        "(read from their last heartbeat); charged as estimated, never as zero.",
    )
    sample: TokenSample | None = Field(
        default=None,
        description="Our estimate of the text sent and received against the tokens the provider "
        "reported for it: what calibrates the job's estimates for this model.",
    )
    tool_calls: list[ToolCall] = Field(
        default_factory=list, description="The tools the model asked to call (finish reason 'tool_calls')."
    )


class ResolveModelsRequest(BaseModel):
    """Input of the resolve-models activity: model references as written in a spec."""

    refs: list[str]


INLINE_PAYLOAD_LIMIT = 1_900_000
"""The most bytes of JSON a job writes as one payload when its worker stores none outside history:
Temporal refuses payloads over 2 MiB (the server's default blob size limit), and a workflow task
whose command carries one fails for ever. The margin covers the codec's and the proto's framing."""


class ResolveModelsResult(BaseModel):
    """Each reference resolved, with its price; unknown prices are refused, never free."""

    models: dict[str, ModelInfo]
    payload_limit: int | None = Field(
        default=None,
        description="The largest payload the worker's converter writes inline, in bytes of JSON; None "
        "when it stores large payloads outside history (external storage), so there is no limit.",
    )
    role_queues: bool = Field(
        default=False,
        description="The deployment serves model and tool calls on their roles' own task queues "
        "(``HARNESS_ROLE_QUEUES=1`` on its workers); False: on the job's own queue, where the worker "
        "that runs the job runs them at once (eager activities: about 50 ms a call less on a dev server).",
    )
