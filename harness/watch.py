"""Follow a job as it runs: tokens as the model writes them, and every event worth seeing.

``watch`` yields ``WatchEvent``s until the job ends. It reads two things, neither of which writes
to the job's history, so a watcher costs the job nothing there, and a job nobody watches pays
nothing at all:

- **the job's description** (``DescribeWorkflowExecution``, every ``TICK_S``): its run (a new one
  means continue-as-new), its child jobs, and its pending model calls with their last heartbeat. A
  model call heartbeats anyway (that is how a cancel reaches it, ``worker.HEARTBEAT_THROTTLE``), and
  the heartbeat carries the end of the reply in flight (``activities.model_call.LIVE_TAIL_CHARS``),
  so the tokens stream out through what Temporal already stores, encrypted like any payload when
  a codec key is set;
- **the ``status`` query** (every ``STATUS_S``), answered by a worker from the workflow's state: the
  step, spend, gates, interrupts and degrades, and the end of the latest reply, which completes the
  text of a call whose last tokens came after its last heartbeat.

Tokens reach a watcher about half a second after the model wrote them (a heartbeat's cadence plus
a tick). ``bench/cli.py`` measures it (``watch_first_token_s``) and counts history events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError

from contracts.jobs import GateRecord, JobProgress, JobResult
from contracts.names import MODEL_CALL_ACTIVITY
from harness.client import describe_job, ended_how, has_pollers

__all__ = ["STATUS_S", "TICK_S", "WatchEvent", "gate_commands", "watch"]

TICK_S = 0.1
"""Seconds between reads of the job's description (pending calls and their heartbeats)."""
STATUS_S = 0.5
"""Seconds between ``status`` queries."""
_QUERY_TIMEOUT = timedelta(seconds=3)
_NO_WORKER_RECHECK_S = 5.0
_FINISHED_KEPT = 64


@dataclass(frozen=True)
class WatchEvent:
    """One thing that happened, as ``harness watch --json`` prints it: ``{"event": kind, ...}``.

    Kinds: ``started`` (job, run, mode), ``status`` (a ``JobProgress`` that changed), ``call``
    (a model call began streaming: call, label, attempt, ask), ``token`` (call, text: the reply's
    next characters; ``gap`` counts characters the watcher missed), ``reply`` (call, chars: the
    reply ended), ``gate_opened`` (the gate, and the commands that decide it), ``gate_decided``,
    ``interrupt`` (count), ``degraded`` (note), ``continued`` (the new run), ``child_started`` and
    ``child_ended`` (workflow id), ``no_worker`` and ``worker_back``, ``ended`` (the result, or why
    the job failed).
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return {"event": self.kind, "at": round(self.at, 3), **self.data}


def gate_commands(job_id: str, gate: str) -> tuple[str, str]:
    """The two commands that decide a pending gate."""
    return f"harness approve {job_id} {gate}", f"harness reject {job_id} {gate}"


@dataclass
class _Stream:
    """One reply as the watcher has shown it."""

    call_id: str
    key: tuple[Any, ...]
    shown: int = 0


@dataclass
class _Seen:
    """What the watcher has already reported."""

    run_id: str | None = None
    progress: JobProgress | None = None
    streams: dict[str, _Stream] = field(default_factory=dict)
    """The model calls streaming now, by activity id."""
    finished: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Calls whose stream ended, with the characters shown and the turns recorded when it ended: the
    ``status`` query completes them."""
    children: set[str] = field(default_factory=set)
    gates: dict[str, GateRecord] = field(default_factory=dict)
    degraded: int = 0
    no_worker: bool = False
    replied: list[str] = field(default_factory=list)
    """The latest calls whose reply was shown whole (a few: the ``status`` query names the latest)."""


async def watch(client: Client, job_id: str, *, tick: float = TICK_S) -> AsyncIterator[WatchEvent]:
    """Yield what happens to ``job_id`` until it ends, ending with an ``ended`` event.

    Raises ``NoSuchJob`` for an unknown id. A job no worker serves is watched all the same (its
    description still answers): a ``no_worker`` event says so, ``worker_back`` when one returns.
    """
    handle = client.get_workflow_handle(job_id, result_type=JobResult)
    seen = _Seen()
    status_task: asyncio.Task[JobProgress] | None = None
    next_status = 0.0
    next_poller_check = 0.0
    try:
        while True:
            description = await describe_job(handle)
            raw = description.raw_description
            if seen.run_id is None:
                yield WatchEvent(
                    "started",
                    {"job": job_id, "run": description.run_id, "started_at": _iso(description.start_time)},
                )
            elif description.run_id != seen.run_id:
                yield WatchEvent("continued", {"job": job_id, "run": description.run_id})
            seen.run_id = description.run_id
            for event in _children(seen, [c.workflow_id for c in raw.pending_children]):
                yield event
            calls = [a for a in raw.pending_activities if a.activity_type.name == MODEL_CALL_ACTIVITY]
            for event in await _tokens(client, seen, calls):
                yield event
            ended = description.status not in (None, WorkflowExecutionStatus.RUNNING)
            now = time.monotonic()
            if status_task is not None and status_task.done():
                try:
                    progress = status_task.result()
                except (TimeoutError, RPCError):
                    if not ended and now >= next_poller_check:
                        next_poller_check = now + _NO_WORKER_RECHECK_S
                        if not seen.no_worker and not await has_pollers(client, description.task_queue):
                            seen.no_worker = True
                            yield WatchEvent("no_worker", {"task_queue": description.task_queue})
                else:
                    if seen.no_worker:
                        seen.no_worker = False
                        yield WatchEvent("worker_back", {"task_queue": description.task_queue})
                    for event in _progress_events(job_id, seen, progress):
                        yield event
                status_task = None
            if ended:
                for event in await _last_words(handle, job_id, seen):
                    yield event
                yield await _ended(handle, description.status)
                return
            if status_task is None and now >= next_status:
                next_status = now + STATUS_S
                status_task = asyncio.ensure_future(
                    handle.query("status", result_type=JobProgress, rpc_timeout=_QUERY_TIMEOUT)
                )
            await asyncio.sleep(tick)
    finally:
        if status_task is not None:
            status_task.cancel()
            with contextlib.suppress(BaseException):
                await status_task


def _iso(when: Any) -> str | None:
    return when.isoformat() if when is not None else None


def _children(seen: _Seen, pending: list[str]) -> list[WatchEvent]:
    now = set(pending)
    events = [WatchEvent("child_started", {"child": c}) for c in pending if c not in seen.children]
    events += [WatchEvent("child_ended", {"child": c}) for c in sorted(seen.children - now)]
    seen.children = now
    return events


async def _tokens(client: Client, seen: _Seen, calls: list[Any]) -> list[WatchEvent]:
    """Token events from the pending model calls' last heartbeats."""
    events: list[WatchEvent] = []
    live = set()
    for call in calls:
        live.add(call.activity_id)
        if call.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED:
            continue  # waiting for a worker (or a retry): nothing streams yet
        beat = await _last_heartbeat(client, call)
        if not beat or "call_id" not in beat:
            continue
        call_id = str(beat["call_id"])
        tail = str(beat.get("tail", ""))
        chars = beat.get("chars", 0) if isinstance(beat.get("chars"), int) else 0
        key = (call.attempt, beat.get("ask"))
        stream = seen.streams.get(call.activity_id)
        if stream is None or stream.key != key:
            if stream is not None and stream.shown:
                events.append(
                    WatchEvent("reply", {"call": stream.call_id, "chars": stream.shown, "cut": True})
                )
            stream = seen.streams[call.activity_id] = _Stream(call_id, key)
            events.append(
                WatchEvent("call", {"call": call_id, "attempt": call.attempt, "ask": beat.get("ask")})
            )
        events += _delta(stream, chars, tail)
    for activity_id in [a for a in seen.streams if a not in live]:  # the call ended
        stream = seen.streams.pop(activity_id)
        seen.finished[stream.call_id] = (stream.shown, seen.progress.turns if seen.progress else 0)
        if len(seen.finished) > _FINISHED_KEPT:  # calls the status query never named (they came fast)
            del seen.finished[next(iter(seen.finished))]
    return events


def _delta(stream: _Stream, chars: int, tail: str) -> list[WatchEvent]:
    """The characters of a reply not shown yet, given its length and its last characters."""
    new = chars - stream.shown
    if new <= 0:
        return []
    data: dict[str, Any] = {"call": stream.call_id, "text": tail[-new:]}
    if new > len(tail):
        data["gap"] = new - len(tail)  # came and went between two heartbeats the watcher saw
    stream.shown = chars
    return [WatchEvent("token", data)]


async def _last_heartbeat(client: Client, call: Any) -> dict[str, Any] | None:
    if not call.HasField("heartbeat_details") or not call.heartbeat_details.payloads:
        return None
    try:
        values = await client.data_converter.decode(list(call.heartbeat_details.payloads))
    except Exception:  # a heartbeat this client cannot read (another codec key): no tokens
        return None
    last = values[-1] if values else None
    return last if isinstance(last, dict) else None


def _progress_events(job_id: str, seen: _Seen, progress: JobProgress) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    streaming = {stream.call_id for stream in seen.streams.values()}
    recent = [reply for reply in progress.recent_replies if reply.call_id not in streaming]
    for reply in recent:
        if reply.call_id in seen.replied:
            continue
        # A reply that ended: its last tokens came after its last heartbeat, or it did not stream
        # at all (or too fast for a tick): complete it from the end the query carries.
        if reply.call_id not in seen.finished:
            events.append(WatchEvent("call", {"call": reply.call_id}))
        stream = _Stream(reply.call_id, (), seen.finished.pop(reply.call_id, (0, 0))[0])
        events += _delta(stream, reply.chars, reply.tail)
        events.append(WatchEvent("reply", {"call": reply.call_id, "chars": reply.chars}))
        seen.replied.append(reply.call_id)
    del seen.replied[: -2 * len(progress.recent_replies) or None]
    oldest_shown = progress.turns - len(progress.recent_replies)  # index of the oldest reply named
    for call, (_, turns_then) in list(seen.finished.items()):
        if turns_then < oldest_shown:  # recorded after turns_then, and out of the window by now
            events.append(
                WatchEvent("reply", {"call": call, "chars": seen.finished.pop(call)[0], "cut": True})
            )
    for gate in progress.gates:
        before = seen.gates.get(gate.gate)
        if before is None and gate.outcome is None:
            approve, reject = gate_commands(job_id, gate.gate)
            events.append(
                WatchEvent(
                    "gate_opened",
                    {**gate.model_dump(mode="json"), "approve": approve, "reject": reject},
                )
            )
        if gate.outcome is not None and (before is None or before.outcome is None):
            events.append(WatchEvent("gate_decided", gate.model_dump(mode="json")))
        seen.gates[gate.gate] = gate
    previous = seen.progress
    if previous is not None and progress.interrupts > previous.interrupts:
        events.append(WatchEvent("interrupt", {"count": progress.interrupts}))
    for note in progress.degraded[seen.degraded :]:
        events.append(WatchEvent("degraded", {"note": note}))
    seen.degraded = len(progress.degraded)
    if previous is None or _shown(previous) != _shown(progress):
        events.append(WatchEvent("status", progress.model_dump(mode="json", exclude=_NOT_SHOWN)))
    seen.progress = progress
    return events


_NOT_SHOWN = {"recent_replies", "evidence"}


def _shown(progress: JobProgress) -> dict[str, Any]:
    return progress.model_dump(exclude=_NOT_SHOWN)


async def _last_words(handle: Any, job_id: str, seen: _Seen) -> list[WatchEvent]:
    """The end of the replies the job finished after the last ``status`` answer (one more query:
    a worker answers for an ended job too), and a ``reply`` for any it cannot complete."""
    events: list[WatchEvent] = []
    for stream in seen.streams.values():
        seen.finished[stream.call_id] = (stream.shown, seen.progress.turns if seen.progress else 0)
    seen.streams.clear()
    if seen.finished:
        with contextlib.suppress(RPCError, TimeoutError):
            progress = await handle.query("status", result_type=JobProgress, rpc_timeout=_QUERY_TIMEOUT)
            events += _progress_events(job_id, seen, progress)
    for call, (shown, _) in seen.finished.items():
        events.append(WatchEvent("reply", {"call": call, "chars": shown, "cut": True}))
    seen.finished.clear()
    return events


async def _ended(handle: Any, status: WorkflowExecutionStatus | None) -> WatchEvent:
    try:
        result: JobResult = await handle.result()
    except WorkflowFailureError as error:
        how = status.name.lower() if status is not None else "failed"
        return WatchEvent("ended", {"status": how, "error": ended_how(error)})
    return WatchEvent("ended", {"status": "completed", "result": result.model_dump(mode="json")})
