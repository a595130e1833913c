"""Call receipts: a finished call is never paid twice, a dead attempt is charged what it recorded,
provider errors (not worker losses) use up a call's retries, and receipts are written atomically."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.catalog import ModelCatalog, resolve
from activities.config import ProviderSettings
from activities.model_call import ModelCallActivities
from activities.receipts import (
    MAX_PROVIDER_ERRORS,
    DiskReceiptStore,
    Receipt,
    receipt_key,
    store_from_env,
)
from contracts.models import Message, ModelCallRequest, ModelCallResult, Usage
from harness.sim import Fault, SimConfig, SimServer
from tests.helpers import sim_call

MODEL = "sim:writer"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    server = SimServer(SimConfig(port=0)).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_sim(sim: SimServer) -> None:
    sim.reset()


@pytest.fixture
def store(tmp_path: Path) -> DiskReceiptStore:
    return DiskReceiptStore(tmp_path / "receipts")


@pytest.fixture
async def acts(sim: SimServer, store: DiskReceiptStore) -> AsyncIterator[ModelCallActivities]:
    activities = ModelCallActivities(
        ProviderSettings(sim_url=sim.url, request_timeout_s=5.0), ModelCatalog.builtin(), receipts=store
    )
    yield activities
    await activities.aclose()


def request(prompt: str, call_id: str = "job-1/1", **fields: Any) -> ModelCallRequest:
    return ModelCallRequest(
        call_id=call_id,
        job_id="job-1",
        agent="writer",
        model=resolve(MODEL),
        system="You are terse.",
        messages=[Message(role="user", content=prompt)],
        max_output_tokens=fields.pop("max_output_tokens", 400),
        **fields,
    )


def attempt(number: int, run_id: str = "run-1") -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=number, workflow_run_id=run_id)
    return env


async def call(acts: ModelCallActivities, req: ModelCallRequest, env: ActivityEnvironment) -> ModelCallResult:
    result: ModelCallResult = await env.run(acts.model_call, req)
    return result


def tally(sim: SimServer, *, ended: int) -> dict[str, int]:
    """The simulator's totals once ``ended`` responses are recorded (it records after writing)."""
    deadline = time.monotonic() + 3.0
    while True:
        total: dict[str, int] = sim_call(sim, "/_sim/tally")["total"]
        if total["completed"] + total["incomplete"] >= ended or time.monotonic() > deadline:
            return total
        time.sleep(0.01)


async def streaming(store: DiskReceiptStore, key: str, chunks: int) -> Receipt:
    """The receipt under ``key`` once its attempt has recorded ``chunks`` chunks (10 s at most)."""
    for _ in range(200):
        receipt = await store.get(key)
        if receipt is not None and receipt.chunks >= chunks:
            return receipt
        await asyncio.sleep(0.05)
    raise AssertionError(f"no receipt with {chunks} chunks under {key}: {await store.get(key)}")


async def test_a_complete_receipt_answers_without_calling_the_provider(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """An attempt run again after the first finished (its completion lost) returns the first reply
    from the receipt: the simulator served the call once."""
    req = request("Say something. [[sim tokens=30]]")
    first = await call(acts, req, attempt(1))
    again = await call(acts, req, attempt(2))
    assert tally(sim, ended=1)["completed"] == 1
    assert sim_call(sim, "/_sim/tally")["total"]["requests"] == 1
    assert again.text == first.text and again.usage == first.usage and again.cost_usd == first.cost_usd
    receipt = await store.get(receipt_key("run-1", req.call_id))
    assert receipt is not None and receipt.complete


async def test_another_run_of_the_same_job_id_calls_again(acts: ModelCallActivities, sim: SimServer) -> None:
    """A job id reused after its job ended starts new calls: receipts are per workflow run."""
    req = request("Say something. [[sim tokens=10]]")
    await call(acts, req, attempt(1, run_id="run-1"))
    await call(acts, req, attempt(1, run_id="run-2"))
    assert tally(sim, ended=2)["completed"] == 2


async def test_an_incomplete_receipt_is_charged_as_lost_usage(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """A retry that finds a dead attempt's progress charges it (estimated, with the margin for what
    can have streamed after the last record) and the usage lost before that attempt, then calls."""
    req = request("Say something. [[sim tokens=10]]", max_output_tokens=400)
    dead = Receipt(
        key=receipt_key("run-1", req.call_id),
        call_id=req.call_id,
        attempt=1,
        lost=Usage(input_tokens=7, output_tokens=5, requests=1, estimated=True),
        settled=Usage(input_tokens=20, output_tokens=11, requests=1),
        input_estimate=30,
        chunks=40,
        output_tokens=40,
        chars=160,
        streaming_s=2.0,  # 20 tokens/s: the margin is ceil(20 * 0.5) + 2 = 12
    )
    await store.put(dead)
    result = await call(acts, req, attempt(2))
    assert result.lost_usage == Usage(
        input_tokens=7 + 20 + 30,
        output_tokens=5 + 11 + 40 + 12,
        requests=3,
        estimated=True,
        estimated_for=["worker lost"],
    )
    assert tally(sim, ended=1)["completed"] == 1
    assert result.usage.requests == 1 and not result.usage.estimated


async def test_the_margin_never_passes_max_output_tokens(store: DiskReceiptStore) -> None:
    receipt = Receipt(
        key="k", call_id="c", input_estimate=5, chunks=58, output_tokens=58, chars=200, streaming_s=0.1
    )
    assert receipt.dead_attempt(60) == Usage(
        input_tokens=5, output_tokens=60, requests=1, estimated=True, estimated_for=["worker lost"]
    )


def test_a_dead_attempt_is_charged_its_prompt_once_sent_and_nothing_before() -> None:
    """An attempt that died after its request was sent but before the first token is charged the
    request's input and the two-token margin (the provider bills a prompt it received); one that
    died before sending is charged nothing; the receipt shows which."""
    sent = Receipt(key="k", call_id="c", input_estimate=300, sent_at=1.0, accepted_at=1.2)
    assert sent.dead_attempt(400) == Usage(
        input_tokens=300, output_tokens=2, requests=1, estimated=True, estimated_for=["worker lost"]
    )
    unsent = Receipt(key="k", call_id="c", input_estimate=300)
    assert unsent.dead_attempt(400) == Usage()
    assert unsent.lost_so_far(400) == Usage()


async def test_a_receipt_says_when_the_request_was_sent_and_accepted(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """While the simulator holds the first token, the receipt already shows the request sent and
    accepted (the stream's success status came back), with no output yet."""
    req = request("Wait for it. [[sim latency=1.5 tokens=5]]")
    task = asyncio.create_task(call(acts, req, attempt(1)))
    key = receipt_key("run-1", req.call_id)
    receipt = None
    for _ in range(100):
        receipt = await store.get(key)
        if receipt is not None and receipt.accepted_at is not None:
            break
        await asyncio.sleep(0.02)
    assert receipt is not None and receipt.sent_at is not None and receipt.accepted_at is not None
    assert receipt.sent_at <= receipt.accepted_at and receipt.chunks == 0
    assert receipt.dead_attempt(req.max_output_tokens).input_tokens == receipt.input_estimate > 0
    await task


def test_a_lagging_worker_is_charged_for_what_sat_unread_in_its_socket() -> None:
    """The margin covers half a second at the stream's rate plus how late the worker's event loop
    ran: 20 tokens/s with a 1 s lag is ceil(20 * 1.5) + 2 = 32 tokens, against 12 without."""
    quiet = Receipt(key="k", call_id="c", chunks=40, output_tokens=40, chars=160, streaming_s=2.0)
    assert quiet.margin(400) == 12
    assert quiet.model_copy(update={"lag_s": 1.0}).margin(400) == 32


async def test_a_stalled_event_loop_is_recorded_as_lag(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """While a call streams, the event loop is blocked for 0.6 s (CPU work elsewhere in the
    worker): the receipt records a lag of about that much, so a death right after is charged for it."""
    req = request("Write at length. [[sim latency=0 tps=40 tokens=200]]")
    env = attempt(1)
    task = asyncio.create_task(call(acts, req, env))
    key = receipt_key("run-1", req.call_id)
    receipt = await streaming(store, key, chunks=5)
    time.sleep(0.6)  # noqa: ASYNC251  (blocks the loop on purpose, as a busy worker does)
    await asyncio.sleep(0.3)
    receipt = await store.get(key)
    env.cancel(ActivityCancellationDetails(timed_out=True))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert receipt is not None and 0.4 <= receipt.lag_s <= 0.9


async def test_an_attempt_started_while_the_first_still_runs_waits_for_its_answer(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """The Temporal server gave up on attempt 1 (its worker lost touch, say through a server
    restart) and started attempt 2 while attempt 1 still streams: attempt 2 waits for attempt 1's
    answer instead of calling the provider again. Both return the one reply; the simulator served it once."""
    req = request("Write at length. [[sim latency=0 tps=40 tokens=60]]")
    first = asyncio.create_task(call(acts, req, attempt(1)))
    key = receipt_key("run-1", req.call_id)
    receipt = await streaming(store, key, chunks=5)
    assert receipt is not None and receipt.live and not receipt.complete
    second = await call(acts, req, attempt(2))
    answer = await first
    assert second.text == answer.text and second.usage == answer.usage
    total = tally(sim, ended=1)
    assert (total["requests"], total["completed"]) == (1, 1)


async def test_a_silent_running_receipt_is_a_dead_attempt(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """A receipt marked running but not written for STALE_AFTER_S belongs to a dead attempt: the
    next attempt does not wait, it charges the progress and calls."""
    req = request("Say something. [[sim tokens=10]]")
    stale = time.time() - 60
    await store.put(
        Receipt(
            key=receipt_key("run-1", req.call_id),
            call_id=req.call_id,
            attempt=1,
            live=True,
            written_at=stale,
            input_estimate=30,
            chunks=4,
            output_tokens=4,
            chars=16,
            streaming_s=0.2,
        )
    )
    started = time.monotonic()
    result = await call(acts, req, attempt(2))
    assert time.monotonic() - started < 3.0
    assert result.lost_usage is not None and result.lost_usage.output_tokens >= 4
    assert tally(sim, ended=1)["completed"] == 1


async def test_an_attempt_that_streamed_nothing_is_not_charged(
    acts: ModelCallActivities, store: DiskReceiptStore
) -> None:
    req = request("hi")
    await store.put(Receipt(key=receipt_key("run-1", req.call_id), call_id=req.call_id, input_estimate=30))
    result = await call(acts, req, attempt(2))
    assert result.lost_usage is None


async def test_a_lost_attempt_records_its_progress_and_the_next_charges_it(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """An attempt cut by a heartbeat timeout mid-stream leaves its progress in the receipt; the next
    attempt charges at least what the simulator served to the dead one, plus its own reply."""
    req = request("Write at length. [[sim latency=0 tps=20 tokens=200]]")
    env = attempt(1)
    task = asyncio.create_task(call(acts, req, env))
    key = receipt_key("run-1", req.call_id)
    receipt = await streaming(store, key, chunks=10)
    env.cancel(ActivityCancellationDetails(timed_out=True))
    with pytest.raises(asyncio.CancelledError):
        await task
    dead = tally(sim, ended=1)
    assert dead["incomplete"] == 1 and dead["completed"] == 0
    receipt = await store.get(key)
    assert receipt is not None and not receipt.complete and receipt.chunks >= 10

    result = await call(acts, request("Write at length. [[sim tokens=5]]"), attempt(2))
    assert result.lost_usage is not None and result.lost_usage.estimated
    assert result.lost_usage.output_tokens >= dead["incomplete_output_tokens"] > 0
    # Charged from its progress, not at the worst case (max output tokens) as without a receipt.
    assert result.lost_usage.output_tokens < req.max_output_tokens


async def test_a_dropped_stream_is_charged_on_the_next_attempt(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """A stream that drops mid-reply (a retryable provider error) has its partial output charged."""
    sim_call(sim, "/_sim/faults", Fault(kind="drop_stream", after_tokens=12).model_dump())
    req = request("[[sim tokens=40]]")
    with pytest.raises(ApplicationError) as caught:
        await call(acts, req, attempt(1))
    assert not caught.value.non_retryable
    receipt = await store.get(receipt_key("run-1", req.call_id))
    assert receipt is not None and receipt.provider_errors == 1
    result = await call(acts, req, attempt(2))
    dropped = tally(sim, ended=2)
    assert dropped["incomplete"] == 1 and dropped["completed"] == 1
    assert result.lost_usage is not None and result.lost_usage.estimated
    assert result.lost_usage.output_tokens >= dropped["incomplete_output_tokens"] > 0


async def test_worker_losses_do_not_use_up_provider_retries(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """Attempt 20 of a call that met no provider error yet: a 500 is still retryable."""
    sim_call(sim, "/_sim/faults", Fault(kind="500").model_dump())
    req = request("hi")
    with pytest.raises(ApplicationError) as caught:
        await call(acts, req, attempt(20))
    assert caught.value.type == "ServerError" and not caught.value.non_retryable


async def test_the_eighth_provider_error_is_final_and_carries_the_calls_usage(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """After seven provider errors the eighth ends the call, non-retryable, with the usage the call's
    earlier attempts spent in its details."""
    req = request("hi")
    lost = Usage(input_tokens=50, output_tokens=20, requests=2, estimated=True)
    key = receipt_key("run-1", req.call_id)
    await store.put(Receipt(key=key, call_id=req.call_id, lost=lost, provider_errors=MAX_PROVIDER_ERRORS - 2))
    sim_call(sim, "/_sim/faults", Fault(kind="500", count=2).model_dump())
    with pytest.raises(ApplicationError) as caught:
        await call(acts, req, attempt(30))
    assert not caught.value.non_retryable  # the 7th
    with pytest.raises(ApplicationError) as caught:
        await call(acts, req, attempt(31))
    error = caught.value
    assert error.type == "ServerError" and error.non_retryable
    assert f"{MAX_PROVIDER_ERRORS} of {MAX_PROVIDER_ERRORS}" in error.message
    assert Usage.model_validate(error.details[0]["usage"]) == lost


async def test_without_a_store_provider_errors_are_limited_by_attempt(sim: SimServer) -> None:
    acts = ModelCallActivities(ProviderSettings(sim_url=sim.url), ModelCatalog.builtin(), receipts=None)
    try:
        sim_call(sim, "/_sim/faults", Fault(kind="500", count=2).model_dump())
        with pytest.raises(ApplicationError) as caught:
            await call(acts, request("hi"), attempt(MAX_PROVIDER_ERRORS - 1))
        assert not caught.value.non_retryable
        with pytest.raises(ApplicationError) as caught:
            await call(acts, request("hi"), attempt(MAX_PROVIDER_ERRORS))
        assert caught.value.non_retryable
    finally:
        await acts.aclose()


async def test_a_cancelled_call_keeps_its_partial_answer(
    acts: ModelCallActivities, sim: SimServer, store: DiskReceiptStore
) -> None:
    """A call cancelled by request answers with its partial reply; an attempt run again returns it."""
    req = request("Write at length. [[sim latency=0 tps=20 tokens=200]]")
    env = attempt(1)
    task = asyncio.create_task(call(acts, req, env))
    await asyncio.sleep(0.5)
    env.cancel()
    cut = await asyncio.wait_for(task, 5)
    assert cut.finish_reason == "cancelled"
    again = await call(acts, req, attempt(2))
    assert again == cut
    assert sim_call(sim, "/_sim/tally")["total"]["requests"] == 1


async def test_writes_are_atomic(store: DiskReceiptStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails leaves the previous receipt whole and no temporary file behind; an
    unreadable file reads as no receipt."""
    old = Receipt(key="k1", call_id="c", chunks=3)
    await store.put(old)
    await store.put(old.model_copy(update={"chunks": 4}))
    assert (await store.get("k1")) == old.model_copy(update={"chunks": 4})

    def broken(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        await store.put(old.model_copy(update={"chunks": 99}))
    monkeypatch.undo()
    assert (await store.get("k1")) == old.model_copy(update={"chunks": 4})
    assert sorted(p.name for p in store.directory.iterdir()) == ["k1.json"]

    store.path("k2").write_text('{"key": "k2", "call_', encoding="utf-8")
    assert await store.get("k2") is None


async def test_old_receipts_are_pruned_when_the_store_opens(tmp_path: Path) -> None:
    store = DiskReceiptStore(tmp_path)
    await store.put(Receipt(key="old", call_id="a"))
    await store.put(Receipt(key="new", call_id="b"))
    week_ago = time.time() - timedelta(days=8).total_seconds()
    os.utime(store.path("old"), (week_ago, week_ago))
    DiskReceiptStore(tmp_path, max_age=timedelta(days=7))
    assert sorted(os.listdir(tmp_path)) == ["new.json"]


def test_store_from_env(tmp_path: Path) -> None:
    assert store_from_env({"HARNESS_RECEIPTS_DIR": "off"}) is None
    store = store_from_env({"HARNESS_RECEIPTS_DIR": str(tmp_path / "r")})
    assert store is not None and store.directory == tmp_path / "r" and store.directory.is_dir()
    with pytest.raises(ValueError, match="HARNESS_RECEIPTS_MAX_AGE_DAYS"):
        store_from_env({"HARNESS_RECEIPTS_DIR": str(tmp_path), "HARNESS_RECEIPTS_MAX_AGE_DAYS": "soon"})


async def test_receipts_hold_no_keys(sim: SimServer, tmp_path: Path) -> None:
    """A receipt of a call made with a provider key holds the reply, never the key."""
    secret = "sk-test-NEVER-IN-A-RECEIPT-0123456789"
    settings = ProviderSettings.from_env({"OPENAI_API_KEY": secret, "OPENAI_BASE_URL": f"{sim.url}/v1"})
    store = DiskReceiptStore(tmp_path / "r")
    acts = ModelCallActivities(settings, ModelCatalog.builtin(), receipts=store)
    try:
        req = request("hi").model_copy(update={"model": resolve("openai:gpt-4o-mini")})
        result = await call(acts, req, attempt(1))
    finally:
        await acts.aclose()
    files = list(store.directory.iterdir())
    assert len(files) == 1
    text = files[0].read_text(encoding="utf-8")
    assert result.text in text and secret not in text
