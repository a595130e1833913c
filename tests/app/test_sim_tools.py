"""Tool calling in the simulator, driven through the real openai and anthropic SDKs over HTTP.

Every test runs on both wire formats, most of them whole and streamed: ``_ask`` sends one request
and reads the reply back into one shape (text, calls, finish, output tokens), assembling streamed
tool calls from their deltas the way a client must.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest

from harness.sim import SimConfig, SimServer, count_tokens
from tests.helpers import sim_call

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"type": "string", "enum": ["f", "c"]},
            "hourly": {"type": "boolean"},
            "note": {"type": "string"},
        },
        "required": ["city", "days", "unit", "hourly"],
    },
}
CLOCK = {
    "name": "get-time",
    "description": "The time in a zone.",
    "parameters": {
        "type": "object",
        "properties": {
            "zone": {"type": ["string", "null"]},
            "tags": {"type": "array"},
            "opts": {"type": "object"},
        },
        "required": ["zone", "tags", "opts"],
    },
}
WEATHER_ARGS = {"city": "example", "days": 1, "unit": "f", "hourly": True}
CLOCK_ARGS = {"zone": "example", "tags": [], "opts": {}}
WIRES = ("openai", "anthropic")


@dataclass
class Call:
    """A tool call as the client assembled it; ``arguments`` is JSON text (Anthropic: the input)."""

    id: str
    name: str
    arguments: str
    pieces: int = 1  # how many argument deltas it arrived in (1 when whole)


@dataclass
class Answer:
    """One reply, whichever API it came through; ``finish`` is "tool_calls", "stop" or "length"."""

    text: str
    calls: list[Call]
    finish: str
    output_tokens: int


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    """A simulator of this module's own, so its tally sees only these tests."""
    with SimServer(SimConfig(port=0)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server: SimServer) -> None:
    sim_call(server, "/_sim/reset", {})


@pytest.fixture
def oai(server: SimServer) -> openai.OpenAI:
    return openai.OpenAI(api_key="sim", base_url=f"{server.url}/v1", max_retries=0, timeout=10)


@pytest.fixture
def ant(server: SimServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sim", base_url=server.url, max_retries=0, timeout=10)


class Chat:
    """One conversation on one wire format: builds the messages and asks the simulator."""

    def __init__(self, wire: str, oai: openai.OpenAI, ant: anthropic.Anthropic, model: str) -> None:
        self.wire, self.oai, self.ant, self.model = wire, oai, ant, model
        self.messages: list[dict[str, Any]] = []

    def user(self, text: str) -> Chat:
        self.messages.append({"role": "user", "content": text})
        return self

    def answered(self, answer: Answer, *results: str) -> Chat:
        """Add ``answer`` as the assistant's message and one result per call."""
        calls = answer.calls
        if self.wire == "openai":
            function = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
            self.messages.append(
                {"role": "assistant", "content": answer.text or None, "tool_calls": function}
            )
            self.messages += [
                {"role": "tool", "tool_call_id": c.id, "content": r}
                for c, r in zip(calls, results, strict=True)
            ]
        else:
            uses = [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments)}
                for c in calls
            ]
            self.messages.append({"role": "assistant", "content": uses})
            blocks = [
                # the second form of a result's content: a list of text blocks
                {
                    "type": "tool_result",
                    "tool_use_id": c.id,
                    "content": [{"type": "text", "text": r}] if i else r,
                }
                for i, (c, r) in enumerate(zip(calls, results, strict=True))
            ]
            self.messages.append({"role": "user", "content": blocks})
        return self

    def ask(
        self,
        tools: list[dict[str, Any]] | None,
        stream: bool = False,
        choice: str | None = None,
        max_tokens: int = 1000,
    ) -> Answer:
        if self.wire == "openai":
            return self._openai(tools, stream, choice, max_tokens)
        return self._anthropic(tools, stream, choice, max_tokens)

    def _openai(
        self, tools: list[dict[str, Any]] | None, stream: bool, choice: str | None, max_tokens: int
    ) -> Answer:
        kw: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            "max_completion_tokens": max_tokens,
        }
        if tools is not None:
            kw["tools"] = [{"type": "function", "function": t} for t in tools]
        if choice is not None:
            kw["tool_choice"] = choice
        if not stream:
            reply = self.oai.chat.completions.create(**kw)
            message, usage = reply.choices[0].message, reply.usage
            calls = [
                Call(c.id, c.function.name, c.function.arguments)
                for c in message.tool_calls or []
                if c.type == "function"
            ]
            assert usage is not None
            return Answer(
                message.content or "", calls, reply.choices[0].finish_reason, usage.completion_tokens
            )
        text, by_index, finish, tokens = "", dict[int, Call](), "", -1
        for chunk in self.oai.chat.completions.create(
            **kw, stream=True, stream_options={"include_usage": True}
        ):
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
            for choice_ in chunk.choices:
                text += choice_.delta.content or ""
                for piece in choice_.delta.tool_calls or []:
                    if piece.id is not None:
                        assert piece.function is not None and piece.function.name
                        by_index[piece.index] = Call(piece.id, piece.function.name, "", 0)
                    if piece.function is not None and piece.function.arguments:
                        by_index[piece.index].arguments += piece.function.arguments
                        by_index[piece.index].pieces += 1
                finish = choice_.finish_reason or finish
        return Answer(text, [by_index[i] for i in sorted(by_index)], finish, tokens)

    def _anthropic(
        self, tools: list[dict[str, Any]] | None, stream: bool, choice: str | None, max_tokens: int
    ) -> Answer:
        kw: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "messages": self.messages}
        if tools is not None:
            kw["tools"] = [
                {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                for t in tools
            ]
        if choice is not None:
            kw["tool_choice"] = {"type": choice}
        finishes = {"tool_use": "tool_calls", "end_turn": "stop", "max_tokens": "length"}
        if not stream:
            message = self.ant.messages.create(**kw)
            text = "".join(b.text for b in message.content if b.type == "text")
            calls = [Call(b.id, b.name, json.dumps(b.input)) for b in message.content if b.type == "tool_use"]
            return Answer(text, calls, finishes[str(message.stop_reason)], message.usage.output_tokens)
        text, by_index, finish, tokens = "", dict[int, Call](), "", -1
        for event in self.ant.messages.create(**kw, stream=True):
            if event.type == "content_block_start" and event.content_block.type == "tool_use":
                assert event.content_block.input == {}
                by_index[event.index] = Call(event.content_block.id, event.content_block.name, "", 0)
            elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                by_index[event.index].arguments += event.delta.partial_json
                by_index[event.index].pieces += 1
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
            elif event.type == "message_delta":
                finish, tokens = finishes[str(event.delta.stop_reason)], event.usage.output_tokens
        return Answer(text, [by_index[i] for i in sorted(by_index)], finish, tokens)


def _chat(wire: str, oai: openai.OpenAI, ant: anthropic.Anthropic, model: str, text: str) -> Chat:
    return Chat(wire, oai, ant, model).user(text)


def _tokens(answer: Answer) -> int:
    return count_tokens(answer.text) + sum(
        count_tokens(c.name) + count_tokens(c.arguments) for c in answer.calls
    )


def _tally(server: SimServer, completed: int) -> dict[str, Any]:
    """The tally once ``completed`` responses are done (handler threads finish a bit later)."""
    deadline = time.monotonic() + 3
    while True:
        tally: dict[str, Any] = sim_call(server, "/_sim/tally")
        if tally["total"]["completed"] == completed or time.monotonic() > deadline:
            return tally
        time.sleep(0.02)


both = pytest.mark.parametrize("wire", WIRES)
streams = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])


# --- the scenarios -------------------------------------------------------------------------------


@both
@streams
def test_tool_user_calls_one_tool_then_answers_with_the_result(
    wire: str, stream: bool, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """tool-user calls the first offered tool with arguments from its schema, then quotes the result."""
    chat = _chat(wire, oai, ant, "tool-user", "What is the weather?")
    first = chat.ask([WEATHER, CLOCK], stream)
    assert first.finish == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in first.calls] == [("get_weather", WEATHER_ARGS)]
    assert first.calls[0].id.startswith("call_" if wire == "openai" else "toolu_")
    assert (
        first.output_tokens
        == _tokens(first)
        == count_tokens("get_weather") + count_tokens(json.dumps(WEATHER_ARGS))
    )
    if stream:
        assert first.calls[0].pieces >= 2
    again = chat.ask([WEATHER, CLOCK], stream)
    assert again.calls[0].id == first.calls[0].id  # a retried request gets the same reply
    done = chat.answered(first, "Sunny, 21C in example.").ask([WEATHER, CLOCK], stream)
    assert (done.text, done.calls, done.finish) == ("Used get_weather: Sunny, 21C in example.", [], "stop")
    assert done.output_tokens == count_tokens(done.text)


@both
@streams
def test_tool_parallel_calls_every_tool_at_once(
    wire: str, stream: bool, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """tool-parallel asks for every offered tool in one reply; streamed deltas assemble per index."""
    chat = _chat(wire, oai, ant, "tool-parallel", "Weather and time, please.")
    first = chat.ask([WEATHER, CLOCK], stream)
    assert [(c.name, json.loads(c.arguments)) for c in first.calls] == [
        ("get_weather", WEATHER_ARGS),
        ("get-time", CLOCK_ARGS),
    ]
    assert len({c.id for c in first.calls}) == 2
    assert first.finish == "tool_calls" and first.output_tokens == _tokens(first)
    if stream:
        assert all(c.pieces >= 2 for c in first.calls)
    done = chat.answered(first, "rain", "noon").ask([WEATHER, CLOCK], stream)
    assert (done.text, done.finish) == ("Used get_weather: rain\nUsed get-time: noon", "stop")


@both
def test_tool_parallel_caps_at_eight_calls(wire: str, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    """At most 8 calls in one reply, the first 8 tools offered."""
    tools = [{**CLOCK, "name": f"tool_{i}"} for i in range(10)]
    answer = _chat(wire, oai, ant, "tool-parallel", "all of them").ask(tools)
    assert [c.name for c in answer.calls] == [f"tool_{i}" for i in range(8)]


@both
@streams
def test_tool_loop_calls_the_same_tool_again_after_a_result(
    wire: str, stream: bool, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """tool-loop never answers while it may call: the same call, with a new id, every round."""
    chat = _chat(wire, oai, ant, "tool-loop", "Loop.")
    first = chat.ask([CLOCK, WEATHER], stream)
    second = chat.answered(first, "12:00").ask([CLOCK, WEATHER], stream)
    third = chat.answered(second, "12:01").ask([CLOCK, WEATHER], stream)
    seen = [(c.name, json.loads(c.arguments)) for a in (first, second, third) for c in a.calls]
    assert seen == [("get-time", CLOCK_ARGS)] * 3
    assert len({first.calls[0].id, second.calls[0].id, third.calls[0].id}) == 3
    assert third.finish == "tool_calls"


@both
@streams
def test_tool_rogue_calls_a_tool_that_was_not_offered(
    wire: str, stream: bool, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """tool-rogue calls delete_everything (or the tool a directive names), then quotes the result."""
    chat = _chat(wire, oai, ant, "tool-rogue", "Tidy up.")
    first = chat.ask([WEATHER], stream)
    assert [(c.name, json.loads(c.arguments)) for c in first.calls] == [
        ("delete_everything", {"confirm": True})
    ]
    done = chat.answered(first, "refused: not your tool").ask([WEATHER], stream)
    assert done.text == "Used delete_everything: refused: not your tool"
    named = _chat(wire, oai, ant, "tool-rogue", "Go. [[sim tool=format_disk]]").ask([WEATHER], stream)
    assert [c.name for c in named.calls] == ["format_disk"]


@both
@streams
def test_tool_bad_args_sends_arguments_that_break_the_schema(
    wire: str, stream: bool, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """OpenAI: arguments that are not JSON; Anthropic (input is an object): required properties missing."""
    chat = _chat(wire, oai, ant, "tool-bad-args", "Weather?")
    first = chat.ask([WEATHER], stream)
    assert [c.name for c in first.calls] == ["get_weather"]
    assert first.output_tokens == _tokens(first)
    if wire == "openai":
        assert first.calls[0].arguments == '{"oops": '
        with pytest.raises(ValueError):
            json.loads(first.calls[0].arguments)
        first.calls[0].arguments = "{}"  # what a client records for arguments it could not read
    else:
        assert json.loads(first.calls[0].arguments) == {"unexpected": 1}
    done = chat.answered(first, "invalid arguments: 'city' is required").ask([WEATHER], stream)
    assert done.text == "Used get_weather: invalid arguments: 'city' is required"


@both
@streams
def test_tool_choice_none_or_no_tools_gets_text(
    wire: str, stream: bool, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """No model calls a tool when told not to or offered none; the text carries the last result."""
    for model in ("tool-user", "tool-loop", "tool-parallel", "tool-rogue", "tool-bad-args"):
        chat = _chat(wire, oai, ant, model, "Just talk.")
        plain = chat.ask([WEATHER], stream, choice="none")
        assert (plain.text, plain.calls, plain.finish) == (f"Reply from {model}: Just talk.", [], "stop")
        assert chat.ask(None, stream).text == f"Reply from {model}: Just talk."
    chat = _chat(wire, oai, ant, "tool-loop", "Loop.")
    final = chat.answered(chat.ask([CLOCK], stream), "12:00").ask([CLOCK], stream, choice="none")
    assert (final.text, final.calls) == ("Reply from tool-loop: Loop. Last tool result: 12:00", [])


@both
def test_directives_hold_across_tool_result_messages(
    wire: str, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """tool/args/rounds are read from the last user message with text, not a tool-result message."""
    text = """Time please. [[sim tool=get-time args='{"zone": "UTC"}' rounds=2]]"""
    chat = _chat(wire, oai, ant, "tool-user", text)
    first = chat.ask([WEATHER, CLOCK])
    second = chat.answered(first, "10:00").ask([WEATHER, CLOCK])
    assert [(c.name, json.loads(c.arguments)) for a in (first, second) for c in a.calls] == [
        ("get-time", {"zone": "UTC"})
    ] * 2
    done = chat.answered(second, "10:01").ask([WEATHER, CLOCK])
    assert done.text == "Used get-time: 10:00\nUsed get-time: 10:01"
    # A new user message with text starts a new turn: the directive-free default applies again.
    fresh = chat.user("And the weather?").ask([WEATHER, CLOCK])
    assert [(c.name, json.loads(c.arguments)) for c in fresh.calls] == [("get_weather", WEATHER_ARGS)]


@both
def test_non_tool_models_read_tool_messages_as_text(
    wire: str, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """An echo model in a conversation with tool calls and results answers text, quoting the user."""
    chat = _chat(wire, oai, ant, "tool-user", "Weather in Oslo?")
    chat.answered(chat.ask([WEATHER]), "snow")
    chat.model = "echo"
    answer = chat.ask([WEATHER])
    assert answer.calls == [] and answer.text.startswith("Reply from echo: Weather in Oslo?")


@both
def test_input_tokens_count_flattened_tool_messages_alike_on_both_wires(
    wire: str, oai: openai.OpenAI, ant: anthropic.Anthropic, server: SimServer
) -> None:
    """Calls count as "[tool NAME ARGS]", results as their text, the tool definitions as one more
    message; OpenAI's tool messages merge into one turn, so both wires count the same."""
    chat = _chat(wire, oai, ant, "tool-user", "Weather?")
    chat.answered(chat.ask([WEATHER]), "snow").ask([WEATHER])
    tally = _tally(server, 2)["models"]["tool-user"]
    args = json.dumps(WEATHER_ARGS)
    tools = f"get_weather: {WEATHER['description']} {json.dumps(WEATHER['parameters'])}"
    flat = ["Weather?", f"[tool get_weather {args}]", "snow", tools]
    first = count_tokens("Weather?") + count_tokens(tools) + 2 * 4 + 3
    assert tally["input_tokens"] == first + sum(count_tokens(t) + 4 for t in flat) + 3


@both
@streams
def test_max_tokens_drops_a_call_that_does_not_fit_whole(
    wire: str, stream: bool, server: SimServer, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """A reply cut by max_tokens ends with "length" and keeps only the calls that fit whole."""
    weather = count_tokens("get_weather") + count_tokens(json.dumps(WEATHER_ARGS))
    chat = _chat(wire, oai, ant, "tool-parallel", "Both.")
    cut = chat.ask([WEATHER, CLOCK], stream, max_tokens=weather + 1)
    assert ([c.name for c in cut.calls], cut.finish, cut.output_tokens) == (
        ["get_weather"],
        "length",
        weather,
    )
    assert _tally(server, 1)["total"]["output_tokens"] == weather


# --- protocol checks -----------------------------------------------------------------------------


def _rejects(wire: str, chat: Chat, tools: list[dict[str, Any]], message: str) -> None:
    error = openai.BadRequestError if wire == "openai" else anthropic.BadRequestError
    with pytest.raises(error) as err:
        chat.ask(tools)
    assert err.value.status_code == 400
    assert message in str(err.value)


@both
def test_an_unanswered_tool_call_is_a_400(wire: str, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    """A call without a result right after it is rejected, naming the call: one result of two
    missing, or a text message instead of the results."""
    chat = _chat(wire, oai, ant, "tool-parallel", "Both.")
    first = chat.ask([WEATHER, CLOCK])
    chat.answered(first, "rain", "noon")
    # Drop the last result: its call is left unanswered.
    if wire == "openai":
        chat.messages.pop()
    else:
        chat.messages[-1]["content"].pop()
    _rejects(wire, chat, [WEATHER, CLOCK], first.calls[1].id)
    chat.messages.pop()  # the results (Anthropic) or the first result (OpenAI)
    chat.user("Well?")  # a text message right after the calls
    _rejects(wire, chat, [WEATHER, CLOCK], first.calls[0].id)


@both
def test_a_result_for_an_unknown_call_is_a_400(
    wire: str, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """A result naming a call the previous assistant message did not make is rejected."""
    chat = _chat(wire, oai, ant, "tool-user", "Weather?")
    first = chat.ask([WEATHER])
    chat.answered(first, "rain")
    if wire == "openai":
        chat.messages[-1]["tool_call_id"] = "call_nope"
    else:
        chat.messages[-1]["content"][0]["tool_use_id"] = "toolu_nope"
    _rejects(wire, chat, [WEATHER], "nope")


@both
def test_a_bad_tool_name_is_a_400(wire: str, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    """A tool name must match ^[A-Za-z0-9_-]{1,64}$."""
    for name in ("has space", "x" * 65, ""):
        _rejects(wire, _chat(wire, oai, ant, "tool-user", "hi"), [{**WEATHER, "name": name}], "tool name")
    assert (
        _chat(wire, oai, ant, "tool-user", "hi").ask([{**WEATHER, "name": "x" * 64}]).calls[0].name
        == "x" * 64
    )


# --- the tally -----------------------------------------------------------------------------------


@both
@streams
def test_tally_counts_tool_call_replies_and_calls(
    wire: str, stream: bool, server: SimServer, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    """Only replies that ask for tools count in tool_call_replies, each call in tool_calls."""
    tools = [WEATHER, CLOCK, {**CLOCK, "name": "get_date"}]
    parallel = _chat(wire, oai, ant, "tool-parallel", "All three.")
    answers = [parallel.ask(tools, stream)]
    answers.append(parallel.answered(answers[0], "rain", "noon", "monday").ask(tools, stream))
    answers.append(_chat(wire, oai, ant, "tool-user", "One.").ask([WEATHER], stream))
    assert [len(a.calls) for a in answers] == [3, 0, 1]
    tally = _tally(server, 3)
    models = tally["models"]
    assert (models["tool-parallel"]["tool_call_replies"], models["tool-parallel"]["tool_calls"]) == (1, 3)
    assert (models["tool-user"]["tool_call_replies"], models["tool-user"]["tool_calls"]) == (1, 1)
    assert (tally["total"]["tool_call_replies"], tally["total"]["tool_calls"]) == (2, 4)
    assert (
        tally["total"]["output_tokens"] == sum(a.output_tokens for a in answers) == sum(map(_tokens, answers))
    )
