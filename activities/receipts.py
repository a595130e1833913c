"""Durable receipts of model calls: what a call served survives the worker and the Temporal server.

One receipt per provider call, keyed by the workflow run and the call id (``ModelCallRequest.call_id``
is unique per call of a job; the run id keeps a job id reused after its job ended from finding the old
job's replies). The model-call activity writes it:

- when an attempt starts and then every ``RECORD_INTERVAL_S`` while it streams: the usage of re-asks
  it finished, the input estimate and the chunks and characters streamed so far of the reply in
  flight, the usage lost by earlier attempts, and how many attempts ended in a provider error;
- when the call ends with an answer (a reply, or a cancelled call's partial reply): the whole
  ``ModelCallResult``.

An attempt that finds a complete receipt returns its result without calling the provider again (the
first attempt's completion was lost, by a worker killed after the reply or a Temporal server that
forgot the activity: no second bill, and the ledger charges the call once). One that finds an
incomplete receipt charges what it records as ``lost_usage`` (estimated): the previous attempt was
billed for what it had streamed, plus what can have streamed since the last record (``margin``).
One that finds the earlier attempt still running (the Temporal server gave up on it, say after a
restart, while its worker streams on) waits for that attempt to end and goes on from what it leaves:
its answer, or its progress. A running attempt rewrites its receipt at least every
``LIVE_INTERVAL_S``; one silent for ``STALE_AFTER_S`` is taken for dead.

Provider errors are counted here, not by Temporal's attempt number, so a worker lost mid-call (a
heartbeat timeout) does not use up a call's retries: ``MAX_PROVIDER_ERRORS`` errors make the next one
non-retryable, however many attempts died with their worker.

Receipts hold replies (never keys, never prompts) so the directory must be protected like the data
it answers. ``DiskReceiptStore`` writes a file per call (temp file, then ``os.replace``: a reader
sees the old receipt or the new one, never half of one; no fsync, so a process crash loses nothing
but a power loss can) and deletes receipts older than ``max_age`` when it is made (worker start).
A cluster plugs in a shared store (S3, say) through ``ReceiptStore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.models import ModelCallRequest, ModelCallResult, Usage

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_RECEIPTS_DIR",
    "MAX_PROVIDER_ERRORS",
    "RECORD_INTERVAL_S",
    "CallRecorder",
    "DiskReceiptStore",
    "Receipt",
    "ReceiptStore",
    "receipt_key",
    "store_from_env",
]

DEFAULT_RECEIPTS_DIR = Path(".harness") / "receipts"
DEFAULT_MAX_AGE = timedelta(days=7)
RECORD_INTERVAL_S = 0.1
"""Seconds between progress records of a streaming call (written only when something changed)."""
LIVE_INTERVAL_S = 1.0
"""A running attempt rewrites its receipt at least this often, to show it is alive."""
STALE_AFTER_S = 5.0
"""A receipt of a running attempt not written for this long belongs to a dead one."""
WAIT_POLL_S = 0.2
_LAG_DECAY = 0.98
"""Per record tick: how fast a past stall of the event loop stops counting (half-life about 3.5 s)."""
MAX_PROVIDER_ERRORS = 8
"""Provider errors a call may meet before the next one fails it for good (the old ``maximum_attempts``)."""
_MARGIN_WINDOW_S = 0.5
_MARGIN_TOKENS = 2

_log = logging.getLogger(__name__)


class Receipt(BaseModel):
    """What one model call has served so far, or its whole answer once ``result`` is set."""

    key: str
    call_id: str
    attempt: int = 0
    """The attempt that wrote it last."""
    result: ModelCallResult | None = None
    """The call's answer: set once the call has ended with one (the receipt is then complete)."""
    lost: Usage = Usage()
    """Usage of earlier attempts that ended without an answer (died, or a provider error mid-stream)."""
    provider_errors: int = 0
    """Attempts of this call that ended in a provider error."""
    settled: Usage = Usage()
    """Re-asks the writing attempt had finished (their usage as the provider reported it)."""
    input_estimate: int = 0
    """Input tokens (estimated) of the reply in flight; 0 when none is."""
    chunks: int = 0
    """Chunks of the reply in flight received so far."""
    output_tokens: int = 0
    """Output tokens (estimated) of the reply in flight received so far."""
    chars: int = 0
    """Characters of the reply in flight received so far."""
    sent_at: float | None = None
    """When the request of the reply in flight was handed to the provider (Unix time), written
    before it goes out: an attempt lost after this is charged the request's input (its calibrated
    estimate) whether or not any output followed; one lost before it, nothing. None: not sent."""
    accepted_at: float | None = None
    """When the provider answered that request with a success status (Unix time; for a stream,
    before its first token); None: no answer (yet) when this was written."""
    streaming_s: float = 0.0
    """Seconds from the reply's first chunk to its last recorded one."""
    lag_s: float = 0.0
    """How late the writing worker's event loop ran lately: chunks can sit unread in its socket for
    that long, so a dead attempt is charged for them too."""
    live: bool = False
    """The writing attempt was still running when it wrote this (it rewrites at least every
    ``LIVE_INTERVAL_S``); an attempt that ends without an answer writes False."""
    written_at: float = 0.0
    """When it was written (Unix time)."""

    def running(self, now: float) -> bool:
        """Whether the attempt that wrote it is, by all signs, still running (so another attempt of
        the same call must wait for it rather than call the provider a second time)."""
        return not self.complete and self.live and now - self.written_at < STALE_AFTER_S

    @property
    def complete(self) -> bool:
        return self.result is not None

    def margin(self, max_output_tokens: int) -> int:
        """Output tokens that can have streamed after the last record: half a second (plus how late
        the worker's event loop ran lately) at the rate the reply streamed (chunks per second), plus
        two, never past ``max_output_tokens``."""
        # A chunk is about a token: the chunk rate, not the (coarser) token estimate, sets the pace.
        rate = self.chunks / self.streaming_s if self.streaming_s > 0 else 0.0
        margin = math.ceil(rate * (_MARGIN_WINDOW_S + self.lag_s)) + _MARGIN_TOKENS
        return max(0, min(margin, max_output_tokens - self.output_tokens))

    def dead_attempt(self, max_output_tokens: int) -> Usage:
        """What the writing attempt spent, had it died now: re-asks it settled, and the reply in
        flight once its request was sent: its input, the output streamed so far and the margin (a
        provider bills the prompt it received even if the worker died before the first token)."""
        spent = self.settled
        if self.chars or self.chunks or self.sent_at is not None:
            spent = spent + Usage(
                input_tokens=self.input_estimate,
                output_tokens=self.output_tokens + self.margin(max_output_tokens),
                requests=1,
            ).because("worker lost")
        return spent

    def lost_so_far(self, max_output_tokens: int) -> Usage:
        """Everything earlier attempts spent, for the attempt that reads this incomplete receipt."""
        dead = self.dead_attempt(max_output_tokens)
        lost = self.lost + (dead.because("worker lost") if dead.requests else dead)
        return lost.model_copy(update={"estimated": True}) if lost.requests else Usage()


class ReceiptStore(Protocol):
    """Where receipts are kept: local disk on one host, a shared store (S3, say) for a cluster."""

    async def get(self, key: str) -> Receipt | None:
        """The receipt under ``key``, or None if there is none (or it cannot be read)."""
        ...

    async def put(self, receipt: Receipt) -> None:
        """Store ``receipt`` under its key, replacing any older one atomically."""
        ...


def receipt_key(run_id: str, call_id: str) -> str:
    """The key of a call's receipt: its workflow run and call id, hashed (safe as a file name)."""
    return hashlib.sha256(f"{run_id}\n{call_id}".encode()).hexdigest()


class DiskReceiptStore:
    """Receipts as JSON files in ``directory``, written atomically; old ones pruned at start."""

    def __init__(self, directory: Path, max_age: timedelta | None = DEFAULT_MAX_AGE) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if max_age is not None:
            self.prune(max_age)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    async def get(self, key: str) -> Receipt | None:
        try:
            text = self.path(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return Receipt.model_validate_json(text)
        except ValidationError:
            _log.warning("unreadable receipt %s ignored", key)
            return None

    async def put(self, receipt: Receipt) -> None:
        data = receipt.model_dump_json().encode()
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temp, self.path(receipt.key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def prune(self, max_age: timedelta) -> int:
        """Delete receipts (and stray temp files) not written for ``max_age``; returns how many."""
        cutoff = time.time() - max_age.total_seconds()
        removed = 0
        for path in self.directory.glob("*.json"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed


def store_from_env(environ: Mapping[str, str] | None = None) -> DiskReceiptStore | None:
    """The worker's store: ``HARNESS_RECEIPTS_DIR`` (default ``.harness/receipts``; ``off`` for none),
    pruned of receipts older than ``HARNESS_RECEIPTS_MAX_AGE_DAYS`` (default 7)."""
    env = os.environ if environ is None else environ
    where = env.get("HARNESS_RECEIPTS_DIR", "").strip()
    if where.lower() == "off":
        return None
    days = env.get("HARNESS_RECEIPTS_MAX_AGE_DAYS", "").strip()
    try:
        max_age = timedelta(days=float(days)) if days else DEFAULT_MAX_AGE
    except ValueError:
        raise ValueError(f"HARNESS_RECEIPTS_MAX_AGE_DAYS must be a number of days, not {days!r}") from None
    return DiskReceiptStore(Path(where) if where else DEFAULT_RECEIPTS_DIR, max_age)


class Progress(Protocol):
    """What a running call has served so far (the model-call activity's meter)."""

    settled: Usage
    pieces: list[str]
    chars: int
    first_at: float | None
    sent_at: float | None
    accepted_at: float | None

    @property
    def input_estimate(self) -> int: ...

    def streamed_output_tokens(self) -> int: ...

    def spent_on_failure(self) -> Usage: ...


class CallRecorder:
    """One attempt's side of a call's receipt: read it at the start, record progress, the answer and
    provider errors. With no store it records nothing and limits provider errors by attempt number."""

    def __init__(
        self, store: ReceiptStore | None, request: ModelCallRequest, attempt: int, run_id: str
    ) -> None:
        self.store = store
        self.request = request
        self.attempt = attempt
        self.receipt = Receipt(
            key=receipt_key(run_id, request.call_id), call_id=request.call_id, attempt=attempt
        )
        self.found = False
        self._written: tuple[Any, ...] | None = None
        self._lag = 0.0

    @classmethod
    async def open(cls, store: ReceiptStore | None, request: ModelCallRequest) -> CallRecorder:
        """The recorder of the running attempt, with what earlier attempts left in the receipt."""
        info = activity.info()
        recorder = cls(store, request, info.attempt, info.workflow_run_id or info.workflow_id or "")
        if store is not None:
            found = await store.get(recorder.receipt.key)
            if found is not None and found.running(time.time()):
                found = await _wait_for_running_attempt(store, found)
            if found is not None and found.call_id == request.call_id:
                recorder.found = True
                if found.complete:
                    recorder.receipt = found
                else:
                    recorder.receipt = Receipt(
                        key=found.key,
                        call_id=found.call_id,
                        attempt=info.attempt,
                        lost=found.lost_so_far(request.max_output_tokens),
                        provider_errors=found.provider_errors,
                    )
        return recorder

    @property
    def answer(self) -> ModelCallResult | None:
        """The call's answer if an earlier attempt finished it (return it: the provider is not asked)."""
        return self.receipt.result

    @property
    def lost(self) -> Usage:
        """What earlier attempts spent without an answer, per the receipt."""
        return self.receipt.lost

    async def record(self, meter: Progress, live: bool = True) -> None:
        """Write the meter's figures, if they changed since the last write (or the last write is
        ``LIVE_INTERVAL_S`` old: a sign of life). ``live=False``: the attempt ends without an answer."""
        if self.store is None:
            return
        first_at = meter.first_at
        streaming = time.monotonic() - first_at if first_at is not None else 0.0
        figures = (
            meter.settled,
            meter.input_estimate,
            len(meter.pieces),
            meter.chars,
            meter.sent_at,
            meter.accepted_at,
            live,
        )
        if figures == self._written and time.time() - self.receipt.written_at < LIVE_INTERVAL_S:
            return
        self.receipt = self.receipt.model_copy(
            update={
                "settled": meter.settled,
                "input_estimate": meter.input_estimate,
                "chunks": len(meter.pieces),
                "output_tokens": meter.streamed_output_tokens() if meter.pieces else 0,
                "chars": meter.chars,
                "sent_at": meter.sent_at,
                "accepted_at": meter.accepted_at,
                "streaming_s": streaming,
                "lag_s": round(self._lag, 3),
                "live": live,
            }
        )
        await self._put()
        self._written = figures

    async def follow(self, meter: Progress) -> None:
        """Record the meter every ``RECORD_INTERVAL_S`` until cancelled, and how late the event loop
        woke for it (a busy worker reads its streams that late too)."""
        while True:
            asked = time.monotonic()
            await asyncio.sleep(RECORD_INTERVAL_S)
            late = max(0.0, time.monotonic() - asked - RECORD_INTERVAL_S)
            self._lag = max(late, self._lag * _LAG_DECAY)
            await self.record(meter)

    async def answered(self, result: ModelCallResult) -> None:
        """The call has its answer: keep it, so an attempt run again returns it instead of paying twice."""
        if self.store is None:
            return
        self.receipt = Receipt(
            key=self.receipt.key, call_id=self.receipt.call_id, attempt=self.attempt, result=result
        )
        await self._put()

    async def failed(self, error: ApplicationError, meter: Progress) -> ApplicationError:
        """A provider error ended this attempt: count it, keep what it spent as lost, and make it
        non-retryable once the call has met ``MAX_PROVIDER_ERRORS`` of them. A non-retryable error
        carries the whole call's spend (this attempt's and earlier attempts') in ``details["usage"]``."""
        earlier, spent = self.receipt.lost, meter.spent_on_failure()
        errors_seen = self.receipt.provider_errors + 1 if self.store is not None else self.attempt
        if self.store is not None:
            lost = earlier + spent
            self.receipt = Receipt(
                key=self.receipt.key,
                call_id=self.receipt.call_id,
                attempt=self.attempt,
                lost=lost.model_copy(update={"estimated": True}) if lost.requests else Usage(),
                provider_errors=errors_seen,
            )
            try:
                await self._put()
            except OSError:
                _log.warning("could not record a provider error of %s", self.request.call_id, exc_info=True)
        if not error.non_retryable and errors_seen < MAX_PROVIDER_ERRORS:
            return error
        details = error.details[0] if error.details and isinstance(error.details[0], Mapping) else {}
        this_attempt = Usage.model_validate(details["usage"]) if "usage" in details else spent
        usage = this_attempt + earlier
        message = error.message
        if not error.non_retryable:
            message = f"{message} (provider error {errors_seen} of {MAX_PROVIDER_ERRORS}: no more retries)"
        return ApplicationError(
            message,
            {**details, "usage": usage.model_dump(mode="json")},
            type=error.type,
            non_retryable=True,
            category=error.category,
        )

    async def _put(self) -> None:
        assert self.store is not None
        self.receipt = self.receipt.model_copy(update={"attempt": self.attempt, "written_at": time.time()})
        await self.store.put(self.receipt)


async def _wait_for_running_attempt(store: ReceiptStore, found: Receipt) -> Receipt | None:
    """Wait while an earlier attempt of the call still runs (its worker lost touch with the Temporal
    server, which started this attempt), heartbeating; the receipt it leaves: complete (its answer),
    or incomplete once it ended or went silent. Two attempts never pay for one call twice."""
    activity.logger.info(
        "an earlier attempt of this call is still running: waiting for it", extra={"call_id": found.call_id}
    )
    receipt: Receipt | None = found
    while receipt is not None and receipt.running(time.time()):
        activity.heartbeat()
        await asyncio.sleep(WAIT_POLL_S)
        receipt = await store.get(found.key)
    return receipt
