"""The job spec refuses bad input before anything starts, naming the field and the reason."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.names import JOB_ID, JOB_ID_RULE, job_id_stem
from contracts.prompts import STEP_MODES, opening_values, placeholders, render, step_names, step_values
from contracts.spec import JobSpec, SpecError, parse_spec
from harness.client import new_job_id
from harness.specfile import load_spec
from tests.helpers import PLAN_SCHEMA, ROOT

# examples/catalog.yaml is a model catalog and examples/tools-catalog.yaml a tool catalog, not specs
# (tests/e2e/test_providers_e2e.py and tests/app/test_tool_examples.py run with them).
CATALOGS = {"catalog.yaml", "tools-catalog.yaml"}
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name not in CATALOGS)


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "task": "t",
        "agents": [{"name": "a", "model": "sim:writer"}],
        "steps": [{"id": "s1", "agent": "a"}],
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_every_example_loads(path: Path) -> None:
    """Every shipped example is a valid spec."""
    assert load_spec(path).agents


def test_unknown_field_is_named() -> None:
    """A typo is an error that names the field, not a silently ignored key."""
    with pytest.raises(SpecError, match=r"agents\.0\.modle"):
        parse_spec(base(agents=[{"name": "a", "model": "sim:writer", "modle": "x"}]))


def test_step_with_unknown_agent_is_refused() -> None:
    """A step naming an agent that does not exist is refused with the step's index."""
    with pytest.raises(SpecError, match=r"steps\.0\.agent: unknown agent 'b'"):
        parse_spec(base(steps=[{"id": "s1", "agent": "b"}]))


def test_dag_cycle_is_refused() -> None:
    """A dependency cycle is refused at submission, with the cycle spelled out."""
    steps = [
        {"id": "x", "agent": "a", "depends_on": ["y"]},
        {"id": "y", "agent": "a", "depends_on": ["x"]},
    ]
    with pytest.raises(SpecError, match="cycle x -> y -> x"):
        parse_spec(base(mode="dag", steps=steps))


def test_negative_budget_and_bad_deadline_are_refused() -> None:
    """Budgets must be positive and deadlines readable durations."""
    with pytest.raises(SpecError, match=r"budget\.tokens"):
        parse_spec(base(budget={"tokens": -1}))
    with pytest.raises(SpecError, match="deadline"):
        parse_spec(base(deadline="soon"))


def test_deadline_units() -> None:
    """Durations read as written: '90s', '30m', '2h'."""
    assert parse_spec(base(deadline="90s")).deadline == timedelta(seconds=90)
    assert parse_spec(base(deadline="2h")).deadline == timedelta(hours=2)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    """A missing file or unparsable YAML is a SpecError, not a traceback."""
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_spec_survives_a_json_round_trip() -> None:
    """A spec written as JSON (as Temporal stores it) reads back equal, durations included."""
    spec = parse_spec(base(deadline="10m", termination={"max_round_time": "30s"}))
    assert parse_spec(spec.model_dump(mode="json")) == spec


def test_spec_refuses_bad_schemas_naming_the_field() -> None:
    """An invalid schema, a schema on a non-json check, or a non-mapping json value fail at load."""

    def spec(check: dict[str, Any]) -> None:
        parse_spec(
            {
                "mode": "groupchat",
                "task": "t",
                "agents": [{"name": "a", "model": "sim:planner"}],
                "goal": {"checks": [check]},
            }
        )

    with pytest.raises(SpecError, match=r"goal\.checks\.0.*not a valid JSON Schema.*minItems"):
        spec({"kind": "json", "value": {"type": "array", "minItems": -1}})
    with pytest.raises(SpecError, match="takes no schema"):
        spec({"kind": "judge", "model": "sim:judge", "value": {"type": "object"}})
    with pytest.raises(SpecError, match="needs a string"):
        spec({"kind": "contains", "value": {"type": "object"}})
    with pytest.raises(SpecError, match="is a JSON Schema"):
        spec({"kind": "json", "value": "object"})
    spec({"kind": "json", "value": PLAN_SCHEMA})  # a valid one loads


TIERS = ["sim:tier-small", "sim:tier-medium", "sim:tier-large"]
PASS_CHECK = {"kind": "contains", "value": "PASS"}


def routed_agents(mode: str, solver: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A spec of ``mode`` whose first agent, ``solver``, has the routing settings ``solver`` adds."""
    data: dict[str, Any] = {
        "mode": mode,
        "task": "t",
        "agents": [
            {"name": "lead", "model": "sim:planner"},
            {"name": "solver", "model": "sim:tier-small", **solver},
        ],
    }
    if mode == "delegation":
        data["delegation"] = {"primary": "lead"}
    if mode in ("sequential", "dag"):
        data["steps"] = [{"id": "s1", "agent": "solver"}]
    data.update(overrides)
    return data


@pytest.mark.parametrize("mode", ["sequential", "dag", "groupchat", "delegation"])
def test_agents_may_be_routed_in_every_mode_but_team(mode: str) -> None:
    """An agent's route or cascade loads in the four modes that carry it out, and its candidates,
    ladder and judges are among the models resolved at start."""
    judge = {"kind": "judge", "model": "sim:judge"}
    spec = parse_spec(routed_agents(mode, {"cascade": {"models": TIERS[1:], "checks": [judge]}}))
    assert set(spec.model_refs()) == {"sim:planner", *TIERS, "sim:judge"}
    spec = parse_spec(routed_agents(mode, {"route": {"candidates": ["sim:echo", TIERS[2]]}}))
    assert set(spec.model_refs()) == {"sim:planner", "sim:tier-small", "sim:echo", TIERS[2]}


def test_agent_routing_is_refused_where_it_cannot_run() -> None:
    """Team mode, both settings at once, priors off the ladder and a cascade without any check are
    refused, naming the agent's field."""
    with pytest.raises(SpecError, match=r"agents\.1\.route: routed agents run in modes .* not 'team'"):
        parse_spec(routed_agents("team", {"route": {"candidates": TIERS}}))
    with pytest.raises(SpecError, match=r"agents\.1: give either 'route' or 'cascade', not both"):
        parse_spec(
            routed_agents(
                "groupchat",
                {"route": {"candidates": TIERS}, "cascade": {"models": TIERS, "checks": [PASS_CHECK]}},
            )
        )
    with pytest.raises(SpecError, match=r"agents\.1: priors name models that are not candidates"):
        parse_spec(routed_agents("groupchat", {"route": {"candidates": TIERS, "priors": {"sim:x": 0.5}}}))
    with pytest.raises(SpecError, match=r"agents\.1\.cascade\.checks: a cascade needs a check"):
        parse_spec(routed_agents("groupchat", {"cascade": {"models": TIERS}}))
    goal = {"checks": [PASS_CHECK]}
    parse_spec(routed_agents("groupchat", {"cascade": {"models": TIERS}}, goal=goal))  # the goal's do


def test_a_delegation_workers_cascade_needs_its_own_checks() -> None:
    """A worker's cascade runs in a child job without the goal, so the goal's checks do not count for
    it; the primary's cascade, in the parent, may rely on them."""
    goal = {"checks": [PASS_CHECK]}
    with pytest.raises(SpecError, match=r"agents\.1\.cascade\.checks: a worker's cascade needs its own"):
        parse_spec(routed_agents("delegation", {"cascade": {"models": TIERS}}, goal=goal))
    lead = {"name": "lead", "model": "sim:planner", "cascade": {"models": ["sim:planner"]}}
    data = routed_agents("delegation", {}, goal=goal)
    data["agents"][0] = lead
    assert parse_spec(data).agents[0].cascade is not None


def test_routed_steps_outside_step_modes_point_to_the_agent() -> None:
    """A step's route in a mode without steps is refused with a pointer to the agent-level setting."""
    data = routed_agents(
        "groupchat", {}, steps=[{"id": "s1", "agent": "solver", "route": {"candidates": TIERS}}]
    )
    with pytest.raises(SpecError, match=r"steps\.0: routed steps .* put 'route' or 'cascade' on the agent"):
        parse_spec(data)


# ----- job ids ------------------------------------------------------------------------------------

NAMES = ["a/b", "résumé: draft #1", "Ünïcödé — dash", "my_job v1.2", "  ", "日本語", "-.-", "x" * 300]


@pytest.mark.parametrize("name", NAMES)
def test_an_id_made_from_any_name_is_one_the_workflow_accepts(name: str) -> None:
    """The id made from a name passes the check the workflow makes when it decodes its spec (the
    spec validated again with that id), and the name is kept as it was."""
    spec = parse_spec(base(name=name))
    job_id = new_job_id(spec)
    assert JOB_ID.fullmatch(job_id)
    started = JobSpec.model_validate({**spec.model_dump(mode="json"), "id": job_id})
    assert (started.id, started.name) == (job_id, name)


@given(name=st.text(max_size=80), mode=st.sampled_from(["sequential", "dag"]))
def test_every_name_makes_an_accepted_id(name: str, mode: str) -> None:
    """Whatever the name, the id made from it is a job id the workflow accepts, and never empty
    before its random suffix."""
    spec = JobSpec.model_validate({**base(mode=mode), "name": name})
    job_id = new_job_id(spec)
    assert JOB_ID.fullmatch(job_id) and not job_id.startswith("-")


def test_ids_read_like_their_names() -> None:
    """Accents are dropped, other characters become one '-', and a name with nothing left gives the
    mode; a random suffix follows."""
    assert new_job_id(parse_spec(base(name="résumé: draft #1"))).startswith("resume-draft-1-")
    assert new_job_id(parse_spec(base(name="a/b"))).startswith("a-b-")
    assert new_job_id(parse_spec(base(name="日本語", mode="dag"))).startswith("dag-")
    assert len(new_job_id(parse_spec(base(name="x" * 300)))) == 40 + 1 + 8
    assert job_id_stem("Straße  //  v1.2") == "stra-e-v1.2"


@pytest.mark.parametrize("bad", ["a/b", "résumé", "abc\n", "-x", "", "x" * 201])
def test_an_explicit_bad_id_is_refused_at_load(bad: str) -> None:
    """An id the workflow would refuse is refused when the spec is loaded, on one line."""
    with pytest.raises(SpecError) as caught:
        parse_spec(base(id=bad))
    assert str(caught.value) == f"job spec: id: must be {JOB_ID_RULE}"


# ----- prompt templates ---------------------------------------------------------------------------


def chain(*prompts: str, mode: str = "sequential", **overrides: Any) -> dict[str, Any]:
    """A spec whose steps s1, s2, ... have ``prompts``; in a DAG each depends on the one before."""
    steps = [
        {
            "id": f"s{n}",
            "agent": "a",
            "prompt": prompt,
            "depends_on": [f"s{n - 1}"] if mode == "dag" and n > 1 else [],
        }
        for n, prompt in enumerate(prompts, 1)
    ]
    return base(mode=mode, steps=steps, **overrides)


def test_an_unknown_placeholder_is_refused_naming_the_step_and_the_known_ones() -> None:
    """A misspelt placeholder would be sent to the model as written: it is refused at load, with the
    step and the names its prompt may use."""
    with pytest.raises(SpecError) as caught:
        parse_spec(chain("{task}", "Review {s1} for {taks}"))
    assert str(caught.value) == (
        "job spec: steps.1.prompt: unknown placeholder {taks} in step 's2'; known: {task}, {input}, "
        "{s1} (write {{taks}} for the text {taks})"
    )


def test_a_step_that_has_not_run_yet_is_no_placeholder() -> None:
    """A chain's step may name the steps before it; a DAG's step only those it depends on, directly
    or not (any other may not have run yet)."""
    with pytest.raises(
        SpecError, match=r"unknown placeholder \{s2\} in step 's1'.*\(\{s2\} does not run before it\)"
    ):
        parse_spec(chain("{s2}", "{s1}"))
    parse_spec(chain("{task}", "{s1}", "{s1} {s2} {input}", mode="dag"))  # s1 through s2
    side = chain("{task}", "{task}", mode="dag")
    side["steps"].append({"id": "s3", "agent": "a", "prompt": "{s2}", "depends_on": ["s1"]})
    with pytest.raises(
        SpecError,
        match=r"steps\.2\.prompt: .*known: \{task\}, \{input\}, \{s1\} .*"
        r"\(\{s2\} is not a step it depends on\)",
    ):
        parse_spec(side)


def test_literal_braces_pass_and_stay_as_written() -> None:
    """JSON in a prompt and ``{{name}}`` load; the rendering leaves the JSON alone and writes
    ``{{name}}`` as ``{name}``."""
    prompt = 'Answer as {"score": 1} or {{verdict}} about {task}'
    spec = parse_spec(chain(prompt))
    rendered = render(prompt, step_values(spec, spec.steps[0], "in", {}))
    assert rendered == 'Answer as {"score": 1} or {verdict} about t'


@pytest.mark.parametrize("written", ["{task:>10}", "{input!r}", "{ task }"])
def test_a_placeholder_with_a_format_spec_or_spaces_is_refused(written: str) -> None:
    """A known name written with a format spec, a conversion or spaces is not filled in: refused,
    with the way to write it."""
    name = written.strip("{} ").split(":")[0].split("!")[0]
    with pytest.raises(SpecError) as caught:
        parse_spec(chain(f"see {written}"))
    assert (
        str(caught.value)
        == f"job spec: steps.0.prompt: {written} in step 's1' is not filled in: write {{{name}}}"
    )


def test_a_step_id_may_not_shadow_a_placeholder() -> None:
    """A step called 'input' or 'task' would replace that placeholder for the steps after it."""
    data = base(steps=[{"id": "input", "agent": "a", "prompt": "{task}"}])
    with pytest.raises(SpecError, match=r"steps\.0\.id: 'input' is the name of the placeholder \{input\}"):
        parse_spec(data)


def test_a_group_chats_opening_may_use_the_task_only() -> None:
    """The opening message of a group chat is filled with {task} alone; anything else is refused."""
    data = {"mode": "groupchat", "task": "t", "agents": [{"name": "a", "model": "sim:writer"}]}
    with pytest.raises(SpecError) as caught:
        parse_spec({**data, "chat": {"opening": "About {topic}"}})
    assert str(caught.value) == (
        "job spec: chat.opening: unknown placeholder {topic} in the opening; known: {task} "
        "(write {{topic}} for the text {topic})"
    )
    assert parse_spec({**data, "chat": {"opening": "About {task}"}}).chat.opening == "About {task}"


def test_templates_are_checked_at_load_not_when_a_workflow_decodes_its_spec() -> None:
    """A running job's spec, validated again at each replay, is not refused for a template: a spec
    checked by an older release keeps running."""
    data = chain("{taks}")
    with pytest.raises(SpecError):
        parse_spec(data)
    assert JobSpec.model_validate(data).steps[0].prompt == "{taks}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_every_name_a_prompt_may_use_is_filled(path: Path) -> None:
    """The names the check allows are the names the rendering fills: with every step's output at
    hand, no placeholder of a shipped example's prompts is left."""
    spec = load_spec(path)
    outputs = {step.id: f"<{step.id}>" for step in spec.steps}
    for step in spec.steps if spec.mode in STEP_MODES else []:
        values = step_values(spec, step, "<input>", outputs)
        assert set(values) == set(step_names(spec, step))
        assert placeholders(render(step.prompt, values)) == []
    if spec.mode == "groupchat":
        assert placeholders(render(spec.chat.opening, opening_values(spec))) == []


# ----- spec files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"\x89PNG\r\n\x1a\n\x00\x00",
            "not UTF-8 text (byte 0x89 at offset 0); a spec is YAML or JSON saved as UTF-8",
        ),
        (
            "task: résumé\n".encode("latin-1"),
            "not UTF-8 text (byte 0xe9 at offset 7); a spec is YAML or JSON saved as UTF-8",
        ),
        (b"", "empty; a job spec is a mapping with at least 'task' and 'agents'"),
        (b"# nothing yet\n", "empty; a job spec is a mapping with at least 'task' and 'agents'"),
        (b"- task: t\n", "a job spec is a mapping ('task: ...', 'agents: ...'), not a list"),
        (b"just words\n", "a job spec is a mapping ('task: ...', 'agents: ...'), not a string"),
        (
            b"agents: [\n",
            "not valid YAML: expected the node content, but found '<stream end>' at line 2, column 1",
        ),
        (
            b"task: a\x00b\n",
            "not valid YAML: unacceptable character #x0000: special characters are not allowed in "
            '"<unicode string>", position 7',
        ),
    ],
)
def test_a_file_that_is_no_spec_is_one_line_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    """A binary or non-UTF-8 file, an empty one, YAML that is not a mapping or not YAML at all: one
    line naming the file and what is wrong, no traceback."""
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == f"{path}: {message}"


def test_a_byte_order_mark_is_no_error(tmp_path: Path) -> None:
    """A UTF-8 file some editors start with a byte-order mark loads, as YAML and as JSON."""
    for name, text in (
        ("spec.yaml", "task: t\nagents: [{name: a, model: 'sim:writer'}]\nsteps: [{id: s, agent: a}]\n"),
        ("spec.json", json.dumps(base())),
    ):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert load_spec(path).task == "t"
