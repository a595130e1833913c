"""The model gateway: the model-call activity against the simulator, through both official SDKs."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import ModelCallActivities
from activities.catalog import ModelCatalog, resolve
from activities.config import ProviderSettings
from activities.errors import retry_after
from contracts.models import (
    Message,
    ModelCallRequest,
    ModelCallResult,
    ModelInfo,
    ResolveModelsRequest,
    Usage,
)
from harness.sim import Fault, SimConfig, SimServer

# Both SDKs: "sim:" speaks Chat Completions, "anthropic:" (no key set) the Messages API.
OPENAI_MODEL = "sim:writer"
ANTHROPIC_MODEL = "anthropic:claude-haiku-4-5"
BOTH = [OPENAI_MODEL, ANTHROPIC_MODEL]
SECRET = "sk-test-NEVER-SHOW-0123456789"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    server = SimServer(SimConfig(port=0)).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_sim(sim: SimServer) -> None:
    sim.reset()


@pytest.fixture
def settings(sim: SimServer) -> ProviderSettings:
    return ProviderSettings(sim_url=sim.url, request_timeout_s=5.0)


@pytest.fixture
async def acts(settings: ProviderSettings) -> AsyncIterator[ModelCallActivities]:
    # No receipts: these tests run one call id many times, each a fresh call (see test_receipts.py).
    activities = ModelCallActivities(settings, ModelCatalog.builtin(), receipts=None)
    yield activities
    await activities.aclose()


@asynccontextmanager
async def own_activities(
    settings: ProviderSettings, catalog: ModelCatalog
) -> AsyncIterator[ModelCallActivities]:
    """Activities with settings of the test's own, closed afterwards."""
    activities = ModelCallActivities(settings, catalog, receipts=None)
    try:
        yield activities
    finally:
        await activities.aclose()


def request(ref: str | ModelInfo, prompt: str, **fields: Any) -> ModelCallRequest:
    """A model-call request of one user message to ``ref``."""
    return ModelCallRequest(
        call_id="call-1",
        job_id="job-1",
        agent="writer",
        model=resolve(ref) if isinstance(ref, str) else ref,
        system="You are terse.",
        messages=[Message(role="user", content=prompt)],
        max_output_tokens=fields.pop("max_output_tokens", 400),
        **fields,
    )


async def call(
    acts: ModelCallActivities, req: ModelCallRequest, env: ActivityEnvironment | None = None
) -> Any:
    return await (env or ActivityEnvironment()).run(acts.model_call, req)


async def failure(acts: ModelCallActivities, req: ModelCallRequest) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await call(acts, req)
    return caught.value


def served(sim: SimServer, model: str, *, settled: int = 1) -> dict[str, int]:
    """The simulator's counters for ``model`` once ``settled`` responses are recorded as ended.

    The simulator records a response after writing it (a cut one once a write fails), so the
    client may read it first: wait for it, and fail rather than return counters without it (a
    loaded run once got a cut stream's tally before the cut was recorded: 0 output tokens served).
    """
    deadline = time.monotonic() + 15.0
    while True:
        counters: dict[str, int] = sim.tally()["models"].get(model, {})
        ended = counters.get("completed", 0) + counters.get("incomplete", 0)
        if ended >= settled:
            return counters
        assert time.monotonic() < deadline, (
            f"the simulator recorded {ended} of {settled} responses: {counters}"
        )
        time.sleep(0.01)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("ref", BOTH)
async def test_usage_and_cost_match_the_simulator(
    acts: ModelCallActivities, sim: SimServer, ref: str, stream: bool
) -> None:
    """Text, usage and cost of a call agree to the token with what the simulator served."""
    req = request(ref, 'Say it. [[sim reply="Hello there, world."]]', stream=stream)
    result: ModelCallResult = await call(acts, req)
    assert result.text == "Hello there, world."
    assert result.finish_reason == "stop"
    tally = served(sim, req.model.model)
    assert (tally["completed"], tally["requests"]) == (1, 1)
    assert result.usage == Usage(
        input_tokens=tally["input_tokens"], output_tokens=tally["output_tokens"], requests=1
    )
    assert result.cost_usd == req.model.price.cost(result.usage) > 0
    assert result.provider == req.model.provider and result.latency_s > 0
    assert result.lost_usage is None


async def test_long_reply_is_capped_with_length(acts: ModelCallActivities, sim: SimServer) -> None:
    """A reply cut at max_output_tokens finishes with 'length' and is charged what was served."""
    result = await call(acts, request(OPENAI_MODEL, "[[sim tokens=50]]", max_output_tokens=10))
    assert result.finish_reason == "length"
    assert result.usage.output_tokens == served(sim, "writer")["output_tokens"] == 10


async def test_heartbeats_while_waiting_for_the_first_token(acts: ModelCallActivities) -> None:
    """The activity heartbeats its progress even before the first token arrives."""
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    result = await call(acts, request(OPENAI_MODEL, "[[sim latency=1.0 tokens=5]]"), env)
    assert result.usage.output_tokens == 5
    waiting = [b for b in beats if b["output_tokens"] == 0]
    assert len(waiting) >= 3
    assert all(b["input_tokens_estimate"] > 0 for b in beats)
    assert set(beats[0]) >= {"output_tokens", "input_tokens_estimate", "chars"}


@pytest.mark.parametrize("ref", BOTH)
async def test_cancellation_returns_partial_text_promptly(
    acts: ModelCallActivities, sim: SimServer, ref: str
) -> None:
    """Cancelled mid-stream, the call returns its partial text and an estimated usage within a second."""
    env = ActivityEnvironment()
    req = request(ref, "Write at length. [[sim latency=0 tps=20 tokens=300]]")
    task = asyncio.create_task(call(acts, req, env))
    await asyncio.sleep(0.6)
    cancelled_at = time.monotonic()
    env.cancel()
    result: ModelCallResult = await asyncio.wait_for(task, 5)
    assert time.monotonic() - cancelled_at < 1.0
    assert result.finish_reason == "cancelled"
    assert result.text and len(result.text) < 1000
    assert result.usage.estimated
    assert result.usage.input_tokens >= 1
    assert result.usage.output_tokens >= 5
    assert result.cost_usd == req.model.price.cost(result.usage)
    tally = served(sim, req.model.model)  # waits for the simulator to notice the hang-up
    assert tally["incomplete"] == 1
    # The estimate is conservative: never below what was really served.
    assert result.usage.output_tokens >= tally["incomplete_output_tokens"]


@pytest.mark.parametrize("ref", BOTH)
async def test_rate_limit_is_retryable_with_the_servers_delay(
    acts: ModelCallActivities, sim: SimServer, ref: str
) -> None:
    """A 429 with retry-after becomes a retryable error whose next delay is the server's."""
    sim.add_fault(Fault(kind="429", retry_after=7))
    error = await failure(acts, request(ref, "hi"))
    assert error.type == "RateLimited" and not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=7)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("500", "ServerError"),
        ("408", "RequestTimeout"),
        ("409", "Conflict"),
        ("malformed", "MalformedResponse"),
    ],
)
@pytest.mark.parametrize("ref", BOTH)
async def test_transient_faults_are_retryable(
    acts: ModelCallActivities, sim: SimServer, ref: str, kind: str, error_type: str, stream: bool
) -> None:
    """Server errors, 408, 409 and unreadable bodies are retryable errors naming the cause."""
    sim.add_fault(Fault(kind=kind))  # type: ignore[arg-type]
    error = await failure(acts, request(ref, "hi", stream=stream))
    assert error.type == error_type and not error.non_retryable


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("ref", BOTH)
async def test_dropped_stream_is_retryable(
    acts: ModelCallActivities, sim: SimServer, ref: str, stream: bool
) -> None:
    """A connection dropped mid-reply is a retryable error."""
    sim.add_fault(Fault(kind="drop_stream", after_tokens=3))
    error = await failure(acts, request(ref, "[[sim tokens=40]]", stream=stream))
    assert error.type in {"ConnectionError", "MalformedResponse"} and not error.non_retryable


@pytest.mark.parametrize("ref", BOTH)
async def test_timeout_is_retryable(sim: SimServer, ref: str) -> None:
    """A provider that never answers hits the client timeout: a retryable Timeout error."""
    sim.add_fault(Fault(kind="timeout"))
    started = time.monotonic()
    settings = ProviderSettings(sim_url=sim.url, request_timeout_s=0.5)
    async with own_activities(settings, ModelCatalog.builtin()) as acts:
        error = await failure(acts, request(ref, "hi"))
    assert error.type == "Timeout" and not error.non_retryable
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("400", "BadRequest"),
        ("401", "AuthenticationFailed"),
        ("403", "PermissionDenied"),
        ("404", "ModelNotFound"),
        ("422", "UnprocessableRequest"),
    ],
)
@pytest.mark.parametrize("ref", BOTH)
async def test_bad_input_is_not_retryable(
    acts: ModelCallActivities, sim: SimServer, ref: str, kind: str, error_type: str
) -> None:
    """Errors the request itself causes are non-retryable, with a type naming the cause."""
    sim.add_fault(Fault(kind=kind))  # type: ignore[arg-type]
    error = await failure(acts, request(ref, "a private prompt"))
    assert error.type == error_type and error.non_retryable
    assert "a private prompt" not in str(error)


async def test_errors_never_show_keys(sim: SimServer) -> None:
    """A configured API key never appears in an error message."""
    settings = ProviderSettings(
        sim_url=sim.url, openai_base_url=f"{sim.url}/v1", openai_api_key=SECRET, request_timeout_s=5
    )
    sim.add_fault(Fault(kind="401"))
    async with own_activities(settings, ModelCatalog.builtin()) as acts:
        error = await failure(acts, request("openai:gpt-4o-mini", "hi"))
    assert error.type == "AuthenticationFailed"
    assert SECRET not in str(error) and SECRET not in repr(settings)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("ref", BOTH)
async def test_refusal_is_an_answer_not_an_error(
    acts: ModelCallActivities, sim: SimServer, ref: str, stream: bool
) -> None:
    """A refusal comes back as finish_reason 'refusal' with its message and usage."""
    sim.add_fault(Fault(kind="refusal"))
    result = await call(acts, request(ref, "something dubious", stream=stream))
    assert result.finish_reason == "refusal"
    assert "sorry" in result.text
    assert result.usage.output_tokens == served(sim, resolve(ref).model)["output_tokens"]


@pytest.mark.parametrize("stream", [True, False])
async def test_content_filter_is_an_answer_not_an_error(
    acts: ModelCallActivities, sim: SimServer, stream: bool
) -> None:
    """OpenAI's content filter comes back as finish_reason 'content_filter', not an error."""
    sim.add_fault(Fault(kind="content_filter"))
    result = await call(acts, request(OPENAI_MODEL, "[[sim tokens=20]]", stream=stream))
    assert result.finish_reason == "content_filter"


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("ref", ["sim:planner", "anthropic:planner"])
async def test_structured_output_is_validated(acts: ModelCallActivities, ref: str, stream: bool) -> None:
    """A structured reply is validated against its output model and returned parsed."""
    req = request("sim:planner", "Plan the essay.", output_type="plan", stream=stream)
    if ref.startswith("anthropic"):
        req = req.model_copy(update={"model": req.model.model_copy(update={"provider": "anthropic"})})
    result = await call(acts, req)
    assert result.parsed["subtasks"]
    assert all("id" in task and "title" in task for task in result.parsed["subtasks"])


@pytest.mark.parametrize("ref", ["sim:judge", "anthropic:judge"])
async def test_invalid_structured_output_is_asked_again(
    acts: ModelCallActivities, sim: SimServer, ref: str
) -> None:
    """Invalid JSON is fed back as an error and asked again; usage sums both requests."""
    req = request("sim:judge", "Score this. [[sim bad_json=1]]", output_type="judge_score")
    if ref.startswith("anthropic"):
        req = req.model_copy(update={"model": req.model.model_copy(update={"provider": "anthropic"})})
    result = await call(acts, req)
    assert 0 <= result.parsed["score"] <= 1
    tally = served(sim, "judge", settled=2)
    assert tally["completed"] == 2
    assert result.usage == Usage(
        input_tokens=tally["input_tokens"], output_tokens=tally["output_tokens"], requests=2
    )


async def test_structured_output_in_code_fences_is_accepted(acts: ModelCallActivities) -> None:
    """A JSON reply wrapped in markdown code fences is unwrapped before validation."""
    fenced = '```json\n{\\"score\\": 0.75, \\"reason\\": \\"fine\\"}\n```'
    req = request("sim:echo", f'Score. [[sim reply="{fenced}"]]', output_type="judge_score")
    result = await call(acts, req)
    assert result.parsed == {"score": 0.75, "reason": "fine"}


async def test_structured_output_still_invalid_reports_the_usage(
    acts: ModelCallActivities, sim: SimServer
) -> None:
    """Still invalid after the re-asks: a non-retryable error whose details carry the usage spent."""
    req = request(
        "sim:judge", "Score this. [[sim bad_json=1]]", output_type="judge_score", structured_retries=0
    )
    error = await failure(acts, req)
    assert error.type == "StructuredOutputInvalid" and error.non_retryable
    spent = Usage.model_validate(error.details[0]["usage"])
    assert spent.output_tokens == served(sim, "judge")["output_tokens"] > 0


async def test_a_failure_for_good_carries_the_lost_usage_of_earlier_attempts(
    acts: ModelCallActivities, sim: SimServer
) -> None:
    """An attempt that fails for good (still invalid after its re-asks) reports what it spent and
    what the attempts before it lost mid-stream, so the workflow charges both."""
    env = ActivityEnvironment()
    previous = {"attempt": 1, "output_tokens": 42, "input_tokens_estimate": 120, "chars": 130}
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[previous])
    req = request("sim:judge", "Score this. [[sim bad_json=always]]", output_type="judge_score")
    with pytest.raises(ApplicationError) as caught:
        await call(acts, req, env)
    error = caught.value
    assert error.type == "StructuredOutputInvalid" and error.non_retryable
    detail = error.details[0]
    assert Usage.model_validate(detail["usage"]).requests == 3
    assert Usage.model_validate(detail["lost_usage"]) == Usage(
        input_tokens=120, output_tokens=400, requests=1, estimated=True, estimated_for=["worker lost"]
    )
    assert detail["attempts"] == 3


async def test_lost_usage_of_a_dead_attempt_is_reported(acts: ModelCallActivities) -> None:
    """A retry reads the previous attempt's last heartbeat and reports its usage as lost, estimated:
    the reply it was streaming at its worst case (max output tokens, 400 here: it may have streamed
    on after the heartbeat), re-asks it had finished as they were."""
    env = ActivityEnvironment()
    previous = {"attempt": 1, "output_tokens": 42, "input_tokens_estimate": 120, "chars": 130}
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[previous])
    result = await call(acts, request(OPENAI_MODEL, "hi"), env)
    assert result.lost_usage == Usage(
        input_tokens=120, output_tokens=400, requests=1, estimated=True, estimated_for=["worker lost"]
    )
    reasked = {**previous, "output_tokens": 60, "settled_output_tokens": 50, "chars": 20}
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[reasked])
    result = await call(acts, request(OPENAI_MODEL, "hi"), env)
    assert result.lost_usage == Usage(
        input_tokens=120, output_tokens=450, requests=1, estimated=True, estimated_for=["worker lost"]
    )


async def test_lost_usage_carries_forward_over_several_attempts(acts: ModelCallActivities) -> None:
    """Usage lost two attempts ago still reaches the attempt that succeeds."""
    env = ActivityEnvironment()
    previous = {
        "attempt": 2,
        "output_tokens": 10,
        "input_tokens_estimate": 50,
        "chars": 30,
        "lost_input_tokens": 120,
        "lost_output_tokens": 42,
    }
    env.info = dataclasses.replace(env.info, attempt=3, heartbeat_details=[previous])
    result = await call(acts, request(OPENAI_MODEL, "hi"), env)
    assert result.lost_usage == Usage(
        input_tokens=170, output_tokens=42 + 400, requests=1, estimated=True, estimated_for=["worker lost"]
    )


async def test_lost_usage_is_read_from_heartbeat_payloads(acts: ModelCallActivities) -> None:
    """A real worker hands heartbeat details over as payloads; they are decoded the same way."""
    env = ActivityEnvironment()
    previous = {"attempt": 1, "output_tokens": 7, "input_tokens_estimate": 30, "chars": 20}
    payloads = DataConverter.default.payload_converter.to_payloads([previous])
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=payloads)
    result = await call(acts, request(OPENAI_MODEL, "hi"), env)
    assert result.lost_usage == Usage(
        input_tokens=30, output_tokens=400, requests=1, estimated=True, estimated_for=["worker lost"]
    )


async def test_an_attempt_that_died_after_sending_is_charged_its_reservation(
    acts: ModelCallActivities,
) -> None:
    """From a heartbeat alone, an attempt that sent its request and died before any output is
    charged its input and, since it may have streamed after that heartbeat, its max output tokens."""
    env = ActivityEnvironment()
    previous = {"attempt": 1, "output_tokens": 0, "input_tokens_estimate": 120, "chars": 0, "sent": 1}
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[previous])
    result = await call(acts, request(OPENAI_MODEL, "hi"), env)
    assert result.lost_usage == Usage(
        input_tokens=120, output_tokens=400, requests=1, estimated=True, estimated_for=["worker lost"]
    )


async def test_the_first_heartbeat_says_the_request_is_sent_and_an_error_answer_clears_it(
    acts: ModelCallActivities, sim: SimServer
) -> None:
    """The attempt's first heartbeat (the one Temporal sends at once) is the one before the request
    goes out, marked sent; after the provider's error answer (a 429: not billed) the last one is not."""
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    await call(acts, request(OPENAI_MODEL, "[[sim tokens=5]]"), env)
    assert beats[0]["sent"] == 1 and beats[0]["input_tokens_estimate"] > 0
    beats.clear()
    with pytest.raises(ApplicationError):
        sim.add_fault(Fault(kind="429"))
        await call(acts, request(OPENAI_MODEL, "hi"), env)
    assert beats[0]["sent"] == 1 and beats[-1]["sent"] == 0


async def test_attempt_that_died_before_any_output_loses_nothing(acts: ModelCallActivities) -> None:
    """A previous attempt that never streamed output (a 429, say) is not charged."""
    env = ActivityEnvironment()
    previous = {"attempt": 1, "output_tokens": 0, "input_tokens_estimate": 120, "chars": 0}
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[previous])
    result = await call(acts, request(OPENAI_MODEL, "hi"), env)
    assert result.lost_usage is None


def no_usage_server(sim: SimServer) -> tuple[ProviderSettings, ModelCatalog]:
    """An OpenAI-compatible server (the simulator) asked for no usage at the end of a stream."""
    settings = ProviderSettings(
        sim_url=sim.url, openai_compatible_base_url=f"{sim.url}/v1", openai_compatible_stream_usage=False
    )
    catalog = ModelCatalog.from_yaml(
        "models: {local: {model: 'openai-compatible:writer', price: {input_per_mtok: 1, output_per_mtok: 2}}}"
    )
    return settings, catalog


async def test_openai_compatible_without_stream_usage_is_estimated(sim: SimServer) -> None:
    """A compatible server that reports no usage gets an estimate, marked as such and why: its output
    counted by the chunks streamed (one token each), its input conservatively."""
    settings, catalog = no_usage_server(sim)
    req = request(resolve("local", catalog), "Echo this sentence back, please. [[sim tokens=120]]")
    async with own_activities(settings, catalog) as acts:
        result = await call(acts, req)
    tally = served(sim, "writer")
    assert result.usage.estimated and result.usage.estimated_for == ["no usage reported"]
    assert result.usage.output_tokens == tally["output_tokens"] == 120
    assert tally["input_tokens"] <= result.usage.input_tokens <= 1.5 * tally["input_tokens"]
    assert result.sample is None  # an estimate is no evidence of the model's tokenizer
    assert result.cost_usd is not None and result.cost_usd > Decimal(0)


async def test_an_estimated_reply_that_hits_its_cap_is_charged_the_cap(sim: SimServer) -> None:
    """A reply cut at max_output_tokens by the server is estimated at that cap, never above it."""
    settings, catalog = no_usage_server(sim)
    req = request(resolve("local", catalog), "Go on. [[sim tokens=300]]", max_output_tokens=60)
    async with own_activities(settings, catalog) as acts:
        result = await call(acts, req)
    assert result.finish_reason == "length"
    assert result.usage.output_tokens == served(sim, "writer")["output_tokens"] == 60


async def test_a_calibrated_ratio_brings_the_input_estimate_close(sim: SimServer) -> None:
    """A call whose usage was reported yields a sample of the model's tokens per counted token; with
    it, the input of a call that reports none is estimated within 10% above the truth."""
    settings, catalog = no_usage_server(sim)
    prose = "Tell me about the history of lighthouses on rocky coasts, and the keepers who ran them. " * 8
    async with own_activities(settings, catalog) as acts:
        reported = await call(acts, request("sim:writer", prose + "[[sim tokens=250]]"))
        assert reported.sample is not None and reported.sample.scale() is not None
        served(sim, "writer")  # the simulator records a reply after writing it: let it, then forget it
        sim.reset()
        blind = request(resolve("local", catalog), prose + "[[sim tokens=20]]")
        conservative = await call(acts, blind)
        calibrated = await call(acts, blind.model_copy(update={"token_scale": reported.sample.scale()}))
    truth = served(sim, "writer", settled=2)["input_tokens"] // 2
    assert truth <= calibrated.usage.input_tokens <= 1.1 * truth + 1
    assert calibrated.usage.input_tokens < conservative.usage.input_tokens


async def test_an_interrupted_stream_is_charged_close_to_what_was_served(
    acts: ModelCallActivities, sim: SimServer
) -> None:
    """A stream cut by a cancellation is charged from the chunks it had streamed plus a small margin:
    never below what the simulator served (its prompt and every token it wrote), at most 1.25x it."""
    prompt = "Write at length about the sea. [[sim latency=0 tps=50 tokens=400]]"
    # The simulator's count of this prompt, from the same request answered whole.
    witness = await call(acts, request(OPENAI_MODEL, prompt, max_output_tokens=1, stream=False))
    # The simulator records a reply after writing it: wait for the witness's record before the reset,
    # or it can land after it and be taken for the cut stream's (seen once: 0 output tokens served).
    served(sim, OPENAI_MODEL.split(":")[1])
    sim.reset()
    env = ActivityEnvironment()
    task = asyncio.create_task(call(acts, request(OPENAI_MODEL, prompt), env))
    await asyncio.sleep(2.0)
    env.cancel()
    result: ModelCallResult = await asyncio.wait_for(task, 5)
    assert result.finish_reason == "cancelled"
    assert result.usage.estimated_for == ["cut short"]
    served_tokens = (
        witness.usage.input_tokens + served(sim, OPENAI_MODEL.split(":")[1])["incomplete_output_tokens"]
    )
    assert served_tokens <= result.usage.total_tokens <= 1.25 * served_tokens


async def test_resolve_models_activity(acts: ModelCallActivities) -> None:
    """resolve_models prices every reference of a spec in one call."""
    result = await ActivityEnvironment().run(
        acts.resolve_models, ResolveModelsRequest(refs=["sim:writer", "openai:gpt-4o-mini"])
    )
    assert result.models["sim:writer"].price_source == "simulator"
    assert result.models["openai:gpt-4o-mini"].price.input_per_mtok > 0


@pytest.mark.parametrize(
    ("ref", "error_type"), [("openai-compatible:llama3", "UnknownPrice"), ("bedrock:titan", "UnknownModel")]
)
async def test_resolve_models_refuses_unknowns(acts: ModelCallActivities, ref: str, error_type: str) -> None:
    """An unpriced or unknown model is a non-retryable error naming the reference."""
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(acts.resolve_models, ResolveModelsRequest(refs=["sim:writer", ref]))
    assert caught.value.type == error_type and caught.value.non_retryable
    assert ref in str(caught.value)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """retry-after is read as seconds, milliseconds or an HTTP date."""
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after({"retry-after": "2.5"}) == timedelta(seconds=2.5)
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == timedelta(milliseconds=1500)
    assert retry_after({"retry-after": "Wed, 01 Jan 2025 12:00:30 GMT"}, now=now) == timedelta(seconds=30)
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None
