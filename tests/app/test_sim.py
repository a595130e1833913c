"""The model simulator, driven through the real openai and anthropic SDKs over HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from harness.sim import SIM_PRICES, SIM_TIERS, SimConfig, SimServer, count_tokens
from harness.sim._tokens import split_tokens
from tests.helpers import sim_call

TOPIC = "Write a short post about durable execution for AI agent workflows"


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    """A simulator of this module's own, so its tally sees only these tests."""
    with SimServer(SimConfig(port=0)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server: SimServer) -> None:
    """Every test starts with an empty tally and no queued faults."""
    sim_call(server, "/_sim/reset", {})


@pytest.fixture
def oai(server: SimServer) -> openai.OpenAI:
    """The real OpenAI client pointed at the simulator, SDK retries off."""
    return openai.OpenAI(api_key="sim", base_url=f"{server.url}/v1", max_retries=0, timeout=10)


@pytest.fixture
def ant(server: SimServer) -> anthropic.Anthropic:
    """The real Anthropic client pointed at the simulator, SDK retries off."""
    return anthropic.Anthropic(api_key="sim", base_url=server.url, max_retries=0, timeout=10)


def _fault(server: SimServer, **fault: Any) -> None:
    sim_call(server, "/_sim/faults", fault)


def _prompt(system: str, *contents: str) -> int:
    return count_tokens(system) + sum(count_tokens(c) + 4 for c in contents) + 3


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def _chat(oai: openai.OpenAI, model: str, messages: list[Any], **kw: Any) -> str:
    reply = oai.chat.completions.create(model=model, messages=messages, **kw)
    return reply.choices[0].message.content or ""


def _wait_tally(server: SimServer, model: str, key: str, value: int) -> dict[str, int]:
    """The tally of ``model`` once ``key`` reaches ``value`` (handler threads finish a bit later)."""
    deadline = time.monotonic() + 3
    while True:
        counts: dict[str, int] = sim_call(server, "/_sim/tally")["models"].get(model, {})
        if counts.get(key) == value or time.monotonic() > deadline:
            return counts
        time.sleep(0.02)


# --- tokens and prices ---------------------------------------------------------------------------


def test_count_tokens_counts_words_and_punctuation() -> None:
    """A token is a word run or one punctuation character; whitespace is free."""
    assert count_tokens("Hello, world!  It's 2025.") == 9
    assert count_tokens("   ") == 0


def test_split_tokens_rebuilds_the_text_one_token_per_piece() -> None:
    """Streaming pieces join back to the exact text and each holds exactly one token."""
    text = "  Draft v2: a (small) test\n\nwith   spaces... done "
    pieces = split_tokens(text)
    assert "".join(pieces) == text
    assert all(count_tokens(p) == 1 for p in pieces)
    assert len(pieces) == count_tokens(text)


def test_prices_and_models_are_served(server: SimServer, oai: openai.OpenAI) -> None:
    """The price table is non-zero, served as decimal strings, and every priced model is listed."""
    assert all(p.input_per_mtok > 0 and p.output_per_mtok > 0 for p in SIM_PRICES.values())
    assert SIM_TIERS["tier-small"] < SIM_TIERS["tier-medium"] < SIM_TIERS["tier-large"]
    prices = sim_call(server, "/_sim/prices")
    assert prices["tier-large"] == {"input_per_mtok": "5.00", "output_per_mtok": "15.00"}
    assert {m.id for m in oai.models.list().data} == set(SIM_PRICES)


# --- wire formats and usage ----------------------------------------------------------------------


def test_openai_usage_and_tally_follow_count_tokens(server: SimServer, oai: openai.OpenAI) -> None:
    """Non-streaming usage is the count_tokens figure (system messages counted once) and tallied."""
    messages: Any = [{"role": "system", "content": "Be brief."}, *_user(TOPIC)]
    reply = oai.chat.completions.create(model="writer", messages=messages)
    text = reply.choices[0].message.content or ""
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == _prompt("Be brief.", TOPIC)
    assert reply.usage.completion_tokens == count_tokens(text)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.usage.prompt_tokens_details and reply.usage.prompt_tokens_details.cached_tokens == 0
    assert reply.choices[0].finish_reason == "stop"
    tally = _wait_tally(server, "writer", "completed", 1)
    assert tally["input_tokens"] == reply.usage.prompt_tokens
    assert tally["output_tokens"] == reply.usage.completion_tokens


def test_openai_stream_deltas_join_to_the_reply(server: SimServer, oai: openai.OpenAI) -> None:
    """A stream sends one token per chunk, a finish chunk, then a usage-only chunk when asked."""
    full = _chat(oai, "echo", _user("stream me please"))
    stream = oai.chat.completions.create(
        model="echo", messages=_user("stream me please"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(deltas) == full
    assert all(count_tokens(d) == 1 for d in deltas if d)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == count_tokens(full)
    assert _wait_tally(server, "echo", "completed", 2)["output_tokens"] == 2 * count_tokens(full)


def test_first_tokens_of_streamed_replies_are_timed(server: SimServer, oai: openai.OpenAI) -> None:
    """`GET /_sim/first-tokens` says when each streamed reply sent its first token (bench/cli.py
    times a watcher against it); a reply that does not stream is not in it."""
    _chat(oai, "echo", _user("no stream"))
    before = time.time()
    list(oai.chat.completions.create(model="echo", messages=_user("stream [[sim latency=0.2]]"), stream=True))
    after = time.time()
    with urllib.request.urlopen(f"{server.url}/_sim/first-tokens", timeout=10) as response:
        found = json.loads(response.read())
    ours = [t for t in found if before <= t["at"] <= after]
    assert len(ours) == 1 and ours[0]["model"] == "echo"
    assert ours[0]["at"] >= before + 0.2  # after the latency, not when the request came


async def test_async_openai_stream_and_concurrency(server: SimServer) -> None:
    """AsyncOpenAI streams work and concurrent requests are served in parallel, not one by one."""
    client = openai.AsyncOpenAI(api_key="sim", base_url=f"{server.url}/v1", max_retries=0)

    async def one(i: int) -> str:
        stream = await client.chat.completions.create(
            model="echo", messages=_user(f"request {i} [[sim latency=0.3]]"), stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    started = time.monotonic()
    replies = await asyncio.gather(*(one(i) for i in range(10)))
    assert time.monotonic() - started < 2.0
    assert all(r.startswith("Reply from echo: request") for r in replies)
    assert _wait_tally(server, "echo", "completed", 10)["requests"] == 10
    await client.close()


def test_openai_max_tokens_truncates(oai: openai.OpenAI) -> None:
    """max_tokens / max_completion_tokens cut the reply to that many tokens with finish 'length'."""
    for limit in ({"max_tokens": 5}, {"max_completion_tokens": 5}):
        reply = oai.chat.completions.create(model="writer", messages=_user(TOPIC), **limit)
        assert reply.choices[0].finish_reason == "length"
        assert count_tokens(reply.choices[0].message.content or "") == 5
        assert reply.usage is not None and reply.usage.completion_tokens == 5


def test_openai_response_format_is_accepted(oai: openai.OpenAI) -> None:
    """json_schema and json_object response formats are accepted; the planner answers JSON."""
    schema = {"type": "json_schema", "json_schema": {"name": "plan", "schema": {"type": "object"}}}
    for fmt in (schema, {"type": "json_object"}):
        text = _chat(oai, "planner", _user(TOPIC), response_format=fmt)
        assert len(json.loads(text)["subtasks"]) == 3


def test_anthropic_message_usage_and_system_blocks(server: SimServer, ant: anthropic.Anthropic) -> None:
    """Messages accepts system as text blocks and reports input/output tokens like the tally."""
    system: Any = [{"type": "text", "text": "You judge."}, {"type": "text", "text": "Be fair."}]
    message = ant.messages.create(model="judge", max_tokens=200, system=system, messages=_user("Draft v2: x"))
    block = message.content[0]
    assert block.type == "text"
    assert json.loads(block.text) == {"score": 0.6, "reason": "numbered draft v2"}
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == _prompt("You judge.\nBe fair.", "Draft v2: x")
    assert message.usage.output_tokens == count_tokens(block.text)
    tally = _wait_tally(server, "judge", "completed", 1)
    assert (tally["input_tokens"], tally["output_tokens"]) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )


def test_anthropic_stream_has_the_real_event_sequence(server: SimServer, ant: anthropic.Anthropic) -> None:
    """A Messages stream emits start, block start, text deltas, block stop, delta with usage, stop."""
    stream = ant.messages.create(model="echo", max_tokens=500, messages=_user("hi there"), stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text.startswith("Reply from echo: hi there")
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.usage.input_tokens == _prompt("", "hi there")
    assert delta.type == "message_delta" and delta.usage.output_tokens == count_tokens(text)
    assert delta.delta.stop_reason == "end_turn"
    assert _wait_tally(server, "echo", "completed", 1)["output_tokens"] == count_tokens(text)


def test_anthropic_stream_helper_and_max_tokens(ant: anthropic.Anthropic) -> None:
    """The SDK's stream helper accumulates the message; max_tokens stops with 'max_tokens'."""
    with ant.messages.stream(model="writer", max_tokens=4, messages=_user(TOPIC)) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 4
    assert final.content[0].type == "text" and final.content[0].text.startswith("Draft v1:")


# --- faults --------------------------------------------------------------------------------------


def test_rate_limit_has_retry_after_and_provider_bodies(
    server: SimServer, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """A 429 fault raises RateLimitError with a readable retry-after and the provider's error body."""
    _fault(server, kind="429", retry_after=7, count=2)
    with pytest.raises(openai.RateLimitError) as oerr:
        _chat(oai, "echo", _user("hi"))
    assert oerr.value.response.headers["retry-after"] == "7"
    assert oerr.value.code == "rate_limit_exceeded"
    with pytest.raises(anthropic.RateLimitError) as aerr:
        ant.messages.create(model="echo", max_tokens=10, messages=_user("hi"))
    assert aerr.value.body == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "Rate limit reached (simulated). Please try again later.",
        },
    }
    assert _chat(oai, "echo", _user("hi")).startswith("Reply from echo")
    tally = _wait_tally(server, "echo", "completed", 1)
    assert (tally["requests"], tally["completed"], tally["output_tokens"] > 0) == (3, 1, True)


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("400", openai.BadRequestError),
        ("401", openai.AuthenticationError),
        ("403", openai.PermissionDeniedError),
        ("404", openai.NotFoundError),
        ("408", openai.APIStatusError),
        ("409", openai.ConflictError),
        ("422", openai.UnprocessableEntityError),
        ("500", openai.InternalServerError),
    ],
)
def test_status_faults_raise_the_sdk_error(
    server: SimServer, oai: openai.OpenAI, kind: str, error: type[openai.APIStatusError]
) -> None:
    """Each status fault surfaces as the SDK's exception for it and counts in requests only."""
    _fault(server, kind=kind)
    with pytest.raises(error) as err:
        _chat(oai, "echo", _user("hi"))
    assert err.value.status_code == int(kind)
    tally = _wait_tally(server, "echo", "requests", 1)
    assert (tally["completed"], tally["incomplete"], tally["input_tokens"]) == (0, 0, 0)


def test_header_fault_and_model_filter(
    server: SimServer, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """x-sim-fault hits one request; a queued fault with a model filter spares other models."""
    with pytest.raises(anthropic.InternalServerError):
        ant.messages.create(
            model="echo", max_tokens=10, messages=_user("hi"), extra_headers={"x-sim-fault": "500"}
        )
    _fault(server, kind="500", model="judge", count=2)
    assert _chat(oai, "echo", _user("hi"))
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            _chat(oai, "judge", _user("hi"))
    assert json.loads(_chat(oai, "judge", _user("hi")))["score"] >= 0.3


def test_timeout_fault_holds_until_the_client_gives_up(server: SimServer, oai: openai.OpenAI) -> None:
    """A timeout fault never answers, so a short client timeout raises APITimeoutError."""
    _fault(server, kind="timeout")
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.3).chat.completions.create(model="echo", messages=_user("hi"))
    tally = _wait_tally(server, "echo", "requests", 1)
    assert (tally["completed"], tally["incomplete"]) == (0, 0)


def test_stop_closes_held_connections_promptly() -> None:
    """stop() returns quickly and the client blocked on a held request sees the connection end."""
    srv = SimServer(SimConfig(port=0)).start()
    client = openai.OpenAI(api_key="sim", base_url=f"{srv.url}/v1", max_retries=0, timeout=30)
    failures: list[BaseException] = []

    def call() -> None:
        try:
            client.chat.completions.create(
                model="echo", messages=_user("hi"), extra_headers={"x-sim-fault": "timeout"}
            )
        except openai.APIError as err:
            failures.append(err)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.2)
    started = time.monotonic()
    srv.stop()
    caller.join(timeout=5)
    assert time.monotonic() - started < 2
    assert failures and isinstance(failures[0], openai.APIConnectionError)


def test_malformed_fault_breaks_parsing(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    """A malformed answer (200, not JSON) makes the SDKs raise a JSON error, streaming or not."""
    bad = {"x-sim-fault": "malformed"}
    with pytest.raises(json.JSONDecodeError):
        oai.chat.completions.create(model="echo", messages=_user("hi"), extra_headers=bad)
    with pytest.raises(json.JSONDecodeError):
        ant.messages.create(model="echo", max_tokens=9, messages=_user("hi"), extra_headers=bad)
    with pytest.raises(json.JSONDecodeError):
        list(oai.chat.completions.create(model="echo", messages=_user("hi"), stream=True, extra_headers=bad))
    with pytest.raises(json.JSONDecodeError):
        list(
            ant.messages.create(
                model="echo", max_tokens=9, messages=_user("hi"), stream=True, extra_headers=bad
            )
        )


def test_drop_stream_ends_early_and_counts_incomplete(
    server: SimServer, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """drop_stream cuts the socket after N tokens with no usage; the tally records those N as incomplete,
    with the prompts of the cut requests as incomplete input."""
    _fault(server, kind="drop_stream", after_tokens=4)
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(
            model="echo", messages=_user("hi"), stream=True, stream_options={"include_usage": True}
        ):
            assert chunk.usage is None
            got.extend(c.delta.content or "" for c in chunk.choices)
    assert count_tokens("".join(got)) == 4
    # The anthropic SDK lets the transport's own error through while iterating a stream.
    with pytest.raises(Exception, match="incomplete chunked read"):
        list(
            ant.messages.create(
                model="echo",
                max_tokens=99,
                messages=_user("hi"),
                stream=True,
                extra_headers={"x-sim-fault": "drop_stream"},
            )
        )
    tally = _wait_tally(server, "echo", "incomplete", 2)
    assert (tally["requests"], tally["completed"], tally["incomplete_output_tokens"]) == (2, 0, 7)
    assert (tally["input_tokens"], tally["output_tokens"]) == (0, 0)
    assert tally["incomplete_input_tokens"] == 2 * _prompt("", "hi")


def test_refusal_and_content_filter(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    """refusal sets message.refusal (content null) or stop_reason 'refusal'; content_filter its finish."""
    refused = oai.chat.completions.create(
        model="echo", messages=_user("hi"), extra_headers={"x-sim-fault": "refusal"}
    )
    assert refused.choices[0].message.content is None and refused.choices[0].message.refusal
    assert refused.choices[0].finish_reason == "stop"
    filtered = oai.chat.completions.create(
        model="echo", messages=_user("hi"), extra_headers={"x-sim-fault": "content_filter"}
    )
    assert filtered.choices[0].finish_reason == "content_filter"
    message = ant.messages.create(
        model="echo", max_tokens=50, messages=_user("hi"), extra_headers={"x-sim-fault": "refusal"}
    )
    assert message.stop_reason == "refusal"


def test_cancelled_stream_counts_incomplete(server: SimServer, oai: openai.OpenAI) -> None:
    """A client that closes a stream early leaves an incomplete response with the tokens sent so far,
    and its whole prompt (billed by a real provider) in incomplete input."""
    prompt = "long one [[sim tps=100 tokens=200]]"
    stream = oai.chat.completions.create(model="echo", messages=_user(prompt), stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    tally = _wait_tally(server, "echo", "incomplete", 1)
    assert (tally["completed"], tally["incomplete"], tally["output_tokens"]) == (0, 1, 0)
    assert 3 <= tally["incomplete_output_tokens"] < 200
    assert (tally["incomplete_input_tokens"], tally["input_tokens"]) == (_prompt("", prompt), 0)


# --- scenarios -----------------------------------------------------------------------------------


def _review_loop(oai: openai.OpenAI, editor: str, rounds: int) -> list[tuple[str, str]]:
    """Writer drafts, editor reviews, the critique goes back to the writer, ``rounds`` times."""
    writer_msgs: list[Any] = _user(TOPIC)
    turns = []
    for _ in range(rounds):
        draft = _chat(oai, "writer", writer_msgs)
        review = _chat(oai, editor, _user(f"Review this draft:\n\n{draft}"))
        turns.append((draft, review))
        writer_msgs += [{"role": "assistant", "content": draft}, {"role": "user", "content": review}]
    return turns


def test_writer_and_editor_converge_in_three_rounds(oai: openai.OpenAI) -> None:
    """Drafts v1, v2, v3 differ and get 40-80 tokens each; the editor approves v3."""
    turns = _review_loop(oai, "editor", 3)
    drafts = [d for d, _ in turns]
    assert [d.split(":")[0] for d in drafts] == ["Draft v1", "Draft v2", "Draft v3"]
    assert len(set(drafts)) == 3 and all(40 <= count_tokens(d) <= 80 for d in drafts)
    assert [r.split(":")[0] for _, r in turns] == ["Revise", "Revise", "APPROVED"]


def test_writer_and_livelock_editor_cycle_with_period_two(oai: openai.OpenAI) -> None:
    """After v1 the writer alternates one fixed casual and one fixed formal draft forever."""
    drafts = [d for d, _ in _review_loop(oai, "editor-livelock", 6)]
    assert drafts[0].startswith("Draft v1:")
    assert drafts[1].startswith("Draft (casual):") and drafts[2].startswith("Draft (formal):")
    assert drafts[1:] == [drafts[1], drafts[2]] * 2 + [drafts[1]]


def test_replies_are_deterministic_per_request(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    """The same request gets the same reply on either API; any unknown model echoes 20-60 tokens."""
    first = _chat(oai, "gpt-4o-mini", _user("tell me about queues"))
    assert first == _chat(oai, "gpt-4o-mini", _user("tell me about queues"))
    message = ant.messages.create(model="gpt-4o-mini", max_tokens=100, messages=_user("tell me about queues"))
    assert message.content[0].type == "text" and message.content[0].text == first
    assert first.startswith("Reply from gpt-4o-mini: tell me about queues")
    assert 20 <= count_tokens(first) <= 60


def test_planner_returns_valid_plans(oai: openai.OpenAI) -> None:
    """The planner answers a JSON plan of 3 subtasks, or N when asked for subtasks=N."""
    for prompt, n in ((TOPIC, 3), (f"{TOPIC} subtasks=5", 5)):
        subtasks = json.loads(_chat(oai, "planner", _user(prompt)))["subtasks"]
        assert [s["id"] for s in subtasks] == [f"t{i}" for i in range(1, n + 1)]
        assert all(1 <= s["priority"] <= 5 and s["est_tokens"] > 0 and s["title"] for s in subtasks)


def test_judge_scores_drafts(oai: openai.OpenAI) -> None:
    """The judge scores numbered drafts 0.2+0.2N, casual/formal 0.5, APPROVED 0.9, else in [0.3, 0.9]."""
    cases = {
        "Draft v1: a": 0.4,
        "Draft v2 then Draft v4: b": 1.0,
        "Draft (casual): c": 0.5,
        "APPROVED: d": 0.9,
    }
    for text, score in cases.items():
        assert json.loads(_chat(oai, "judge", _user(text)))["score"] == pytest.approx(score)
    other = json.loads(_chat(oai, "judge", _user("just some text")))
    assert 0.3 <= other["score"] <= 0.9 and other["reason"]


def test_bad_json_until_the_error_is_fed_back(oai: openai.OpenAI) -> None:
    """bad_json answers invalid JSON until a user message mentions the validation error."""
    asked: list[Any] = _user("Judge this. [[sim bad_json=1]]")
    bad = _chat(oai, "judge", asked)
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)
    retry = [*asked, {"role": "assistant", "content": bad}, *_user("That was invalid JSON; try again.")]
    assert "score" in json.loads(_chat(oai, "judge", retry))


def test_bad_json_always_stays_invalid_after_the_error_is_fed_back(oai: openai.OpenAI) -> None:
    """bad_json=always in any user message: planner and judge answer invalid JSON to re-asks too."""
    for model in ("judge", "planner"):
        asked: list[Any] = _user("Answer this. [[sim bad_json=always]]")
        bad = _chat(oai, model, asked)
        retry = [*asked, {"role": "assistant", "content": bad}, *_user("That was invalid JSON; try again.")]
        for reply in (bad, _chat(oai, model, retry)):
            with pytest.raises(json.JSONDecodeError):
                json.loads(reply)


def test_selector_picks_a_candidate_by_message_count(oai: openai.OpenAI) -> None:
    """The selector answers exactly one candidate: index = number of messages mod candidates."""
    one = _user("Who speaks next? Candidates: alice, bob, carol")
    assert _chat(oai, "selector", one) == "bob"
    three = [*_user("x"), {"role": "assistant", "content": "y"}, *one]
    assert _chat(oai, "selector", three) == "alice"


def test_tiers_pass_more_often_when_stronger(oai: openai.OpenAI) -> None:
    """At difficulty 0.8 the large tier passes more tasks than the small one, deterministically."""
    prompts = [f"Task {i}: solve it. difficulty=0.8" for i in range(30)]
    passes = {}
    for tier in ("tier-small", "tier-large"):
        replies = [_chat(oai, tier, _user(p)) for p in prompts]
        assert all(("PASS" in r) != ("FAIL" in r) for r in replies)
        passes[tier] = sum("PASS" in r for r in replies)
    assert passes["tier-small"] < 15 < passes["tier-large"]
    assert _chat(oai, "tier-medium", _user("no difficulty here")).startswith("Reply from tier-medium")


def test_directives_force_reply_length_and_timing(oai: openai.OpenAI) -> None:
    """reply= forces the text, tokens= the length, latency= the time to the first token."""
    assert _chat(oai, "writer", _user('[[sim reply="Exactly \\"this\\"."]]')) == 'Exactly "this".'
    assert count_tokens(_chat(oai, "echo", _user("pad me [[sim tokens=123]]"))) == 123
    started = time.monotonic()
    stream = oai.chat.completions.create(
        model="echo", messages=_user("slow [[sim latency=0.4]]"), stream=True
    )
    first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert first and time.monotonic() - started >= 0.4
    stream.close()
    assert re.match(r"Reply from echo", _chat(oai, "echo", _user("x [[sim tps=1000]]")))


def test_reply_tokens_sets_every_free_text_reply_unless_a_directive_does() -> None:
    """SimConfig.reply_tokens pads or cuts each free-text reply to that length; a tokens directive
    still wins, and structured scenarios (the planner's JSON) are left whole."""
    with SimServer(SimConfig(port=0, reply_tokens=300)) as sim:
        client = openai.OpenAI(api_key="sim", base_url=f"{sim.url}/v1", max_retries=0)

        def reply(model: str, text: str) -> str:
            done = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], max_tokens=1000
            )
            return done.choices[0].message.content or ""

        assert count_tokens(reply("echo", "hi")) == 300
        assert count_tokens(reply("writer", "[a] some earlier turn")) == 300
        assert count_tokens(reply("echo", "hi [[sim tokens=12]]")) == 12
        assert json.loads(reply("planner", "Plan it."))["subtasks"]
