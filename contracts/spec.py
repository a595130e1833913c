"""The job spec: what a user writes in a YAML or JSON file, validated before anything starts.

A bad spec is refused with the field and the reason (``SpecError``), never as a failed or stuck
workflow. Every model here forbids unknown fields, so a typo is an error and not a silent default.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts.names import JOB_ID, JOB_ID_RULE
from contracts.prompts import template_problems
from contracts.tools import parse_ref
from policies.goals import schema_problem

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

PRIORITY_KEYS = (1, 2, 2, 3, 3, 4, 4, 5, 5, 5)
"""Temporal priority key (1 runs first, 5 last; Temporal's default is 3) of each job priority 0-9:
the spec's default 3 is Temporal's default 3, so harness jobs and other work on a cluster interleave
as equals unless a job asks otherwise."""


def priority_key(priority: int) -> int:
    """The Temporal priority key of job priority ``priority`` (0-9, lower is more urgent)."""
    return PRIORITY_KEYS[min(max(priority, 0), 9)]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

Mode = Literal["sequential", "groupchat", "delegation", "team", "dag"]
# A precision need: a named level (draft 0.60, standard 0.80, critical 0.95 minimum expected
# quality; see policies.routing.NEED_QUALITY) or an explicit minimum quality in [0, 1].
PrecisionNeed = Literal["draft", "standard", "critical"] | Annotated[float, Field(ge=0, le=1)]


class SpecError(ValueError):
    """A job spec that cannot run: says which field and why."""


def parse_duration(value: Any) -> timedelta:
    """Read '90s', '30m', '2h', '1d', a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
        if value.strip().upper().startswith("P"):
            # ISO 8601, which is how pydantic writes a timedelta (so a spec survives a JSON round trip).
            return TypeAdapter(timedelta).validate_python(value.strip())
    raise ValueError(f"not a duration: {value!r} (write e.g. '90s', '30m', '2h')")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSpec(_Model):
    """One agent: a role, its instructions and the model that plays it."""

    name: str = Field(description="Unique name; letters, digits, '-' and '_'.")
    instructions: str = Field(default="", description="The agent's system prompt.")
    model: str = Field(description="Model reference: 'sim:writer', 'openai:gpt-4o-mini', or a catalog alias.")
    max_output_tokens: int = Field(default=512, gt=0, le=200_000, description="Cap on each reply.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    weight: float = Field(default=1.0, gt=0, description="Share of turns under fair-share scheduling.")
    precision: PrecisionNeed | None = Field(
        default=None, description="Default precision need of this agent's routed steps; default 'standard'."
    )
    task_kind: str | None = Field(
        default=None, description="Default task kind of its routed steps: keys learned pass rates."
    )
    budget: BudgetLimits | None = Field(
        default=None, description="This agent's own caps, inside the job's (a node under 'job')."
    )
    route: RouteSpec | None = Field(
        default=None, description="Route every turn of this agent (a step's own setting wins)."
    )
    cascade: CascadeSpec | None = Field(
        default=None, description="Cascade every turn of this agent (a step's own setting wins)."
    )
    tools: list[str] = Field(
        default_factory=list,
        description="Tools it may call: Python tools by name, 'mcp:SERVER/TOOL', 'mcp:SERVER/*'.",
    )
    max_tool_rounds: int = Field(
        default=10, gt=0, le=1_000, description="Model calls answered with tool results, at most, per turn."
    )
    max_tool_result_bytes: int = Field(
        default=16_384, gt=0, description="A tool result longer than this is cut, with a note saying so."
    )
    tool_repeat_limit: int = Field(
        default=3,
        ge=2,
        description="The same tool, arguments and result this many times in a row is a livelock.",
    )
    tool_approval_timeout: timedelta = Field(
        default=timedelta(hours=1),
        description="How long a tool call that needs approval waits for a person; then it is rejected.",
    )

    @field_validator("tool_approval_timeout", mode="before")
    @classmethod
    def _approval_timeout(cls, value: Any) -> timedelta:
        duration = parse_duration(value)
        if duration <= timedelta(0):
            raise ValueError("must be positive")
        return duration

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[str]) -> list[str]:
        refs = [ref.strip() for ref in value]
        for ref in refs:
            parse_ref(ref)
        return refs

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must start with a letter and hold only letters, digits, '-' and '_'")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a model, e.g. 'sim:writer'")
        return value.strip()

    @model_validator(mode="after")
    def _one_routing(self) -> AgentSpec:
        if self.route is not None and self.cascade is not None:
            raise ValueError("give either 'route' or 'cascade', not both")
        return self


class StepSpec(_Model):
    """One step of a sequential chain or DAG: an agent and the prompt it is given.

    The prompt may use ``{task}`` (the job's task), ``{input}`` (the previous step's output in a
    chain, or all dependencies' outputs in a DAG) and ``{<step id>}`` for an earlier step in a chain,
    or one the step depends on, directly or not, in a DAG; ``{{name}}`` is the text ``{name}``. Any
    other placeholder is refused at load (``contracts.prompts``).
    """

    id: str
    agent: str
    prompt: str = "{input}"
    depends_on: list[str] = Field(default_factory=list)
    max_output_tokens: int | None = Field(default=None, gt=0)
    precision: PrecisionNeed | None = Field(
        default=None, description="Precision need of this step; default: the agent's, else 'standard'."
    )
    task_kind: str | None = Field(
        default=None, description="Task kind, keys learned pass rates; default: the agent's, else 'general'."
    )
    route: RouteSpec | None = Field(default=None, description="Pick the model from candidates per call.")
    cascade: CascadeSpec | None = Field(default=None, description="Cheap first, escalate on failed checks.")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must start with a letter and hold only letters, digits, '-' and '_'")
        return value

    @model_validator(mode="after")
    def _one_routing(self) -> StepSpec:
        if self.route is not None and self.cascade is not None:
            raise ValueError("give either 'route' or 'cascade', not both")
        return self


class BudgetLimits(_Model):
    """Hard caps on one budget node (an agent's share of the job); None means no cap of its own."""

    tokens: int | None = Field(default=None, gt=0)
    usd: Decimal | None = Field(default=None, gt=0)
    calls: int | None = Field(default=None, gt=0)
    tool_calls: int | None = Field(default=None, gt=0, description="Tool calls, apart from model calls.")


class QuotaSpec(_Model):
    """At most this much per period (like cgroup ``cpu.max``); periods start when the job starts."""

    tokens: int | None = Field(default=None, gt=0)
    usd: Decimal | None = Field(default=None, gt=0)
    calls: int | None = Field(default=None, gt=0)
    tool_calls: int | None = Field(default=None, gt=0, description="Tool calls, apart from model calls.")
    period: timedelta = Field(default=timedelta(hours=1), description="'1h', '30m', '1d', ...")

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> timedelta:
        return parse_duration(value)


class BudgetSpec(BudgetLimits):
    """Hard caps for the whole job. A call whose worst case does not fit is not started."""

    on_exhausted: Literal["stop", "degrade", "ask"] = Field(
        default="stop",
        description="stop: end with budget_exhausted; degrade: a cheaper tier or fewer output tokens; "
        "ask: wait for the add_budget update.",
    )
    ask_timeout: timedelta = Field(
        default=timedelta(hours=1), description="How long 'ask' waits for add_budget before ask_default."
    )
    ask_default: Literal["stop", "degrade"] = Field(
        default="stop", description="What 'ask' does when nobody raised the budget in time."
    )
    quota: QuotaSpec | None = Field(default=None, description="Per-period cap on the whole job.")

    @field_validator("ask_timeout", mode="before")
    @classmethod
    def _ask_timeout(cls, value: Any) -> timedelta:
        return parse_duration(value)


class GoalCheck(_Model):
    """One check of the output. Deterministic kinds run in the workflow; ``function`` runs a check
    the worker registered, as an activity; ``judge`` asks a model for a score (charged like any call).
    """

    kind: Literal[
        "contains", "not_contains", "regex", "min_length", "max_length", "json", "function", "judge"
    ]
    value: str | int | dict[str, Any] | None = Field(
        default=None,
        description="Substring, pattern, length in characters, the function's name, or for 'json' an "
        "optional JSON Schema the output must match (without one, any valid JSON passes).",
    )
    agent: str | None = Field(default=None, description="Whose latest output is checked; default: the job's.")
    model: str | None = Field(default=None, description="Judge model reference.")
    rubric: str = Field(default="", description="What the judge scores against.")
    weight: float = Field(default=1.0, gt=0)
    on_error: Literal["score_zero", "fail"] = Field(
        default="score_zero",
        description="A check that cannot be evaluated (a judge whose reply stays invalid after its "
        "re-asks, a function check that raises): 'score_zero' records the error and counts the check "
        "as failed (score 0), the job goes on; 'fail' ends the job with stop reason 'failed'.",
    )

    @model_validator(mode="after")
    def _needs(self) -> GoalCheck:
        if self.kind in ("contains", "not_contains", "regex", "function") and not isinstance(self.value, str):
            raise ValueError(f"a {self.kind!r} check needs a string 'value'")
        if self.kind in ("min_length", "max_length") and not isinstance(self.value, int):
            raise ValueError(f"a {self.kind!r} check needs an integer 'value'")
        if self.kind == "regex":
            try:
                re.compile(str(self.value))
            except re.error as error:
                raise ValueError(f"value is not a valid regular expression: {error}") from None
        if isinstance(self.value, dict) and self.kind != "json":
            raise ValueError(f"a {self.kind!r} check takes no schema; only 'json' checks do")
        if self.kind == "json" and self.value is not None:
            if not isinstance(self.value, dict):
                raise ValueError("a 'json' check's value, when given, is a JSON Schema (a mapping)")
            problem = schema_problem(self.value)
            if problem:
                raise ValueError(f"value is not a valid JSON Schema: {problem}")
        if self.kind == "judge" and not self.model:
            raise ValueError("a 'judge' check needs a 'model'")
        return self


class _RoutingOptions(_Model):
    """Settings shared by ``route`` and ``cascade`` (see the README's "Cost-aware routing")."""

    checks: list[GoalCheck] = Field(
        default_factory=list,
        description="Checks of the step's output, all must pass; a cascade defaults to the goal's checks.",
    )
    threshold: float = Field(default=0.8, ge=0, le=1, description="A judge's score that counts as a pass.")
    priors: dict[str, float] = Field(
        default_factory=dict,
        description="Prior P(check passes) per model reference; default by the model's tier.",
    )
    learn: bool = Field(
        default=True, description="Read and record pass rates in the shared routing-stats workflow."
    )
    on_shortfall: Literal["degrade", "refuse"] = Field(
        default="degrade", description="When no model meets the need: the best affordable one, or stop."
    )
    quantile: float | None = Field(
        default=None, gt=0, lt=1, description="Judge quality by this lower posterior quantile, not the mean."
    )

    @field_validator("priors")
    @classmethod
    def _priors(cls, value: dict[str, float]) -> dict[str, float]:
        for ref, prior in value.items():
            if not 0.0 <= prior <= 1.0:
                raise ValueError(f"prior of {ref!r} must lie in [0, 1], got {prior}")
        return value


class RouteSpec(_RoutingOptions):
    """One call on the model with the lowest expected cost that meets the need, within the budget.

    Checks, when given, do not escalate: their outcomes only teach the router.
    """

    candidates: list[str] = Field(min_length=1, description="Model references to choose from.")


class CascadeSpec(_RoutingOptions):
    """Call the cheapest adequate model first; escalate to the next tier only when a check fails."""

    models: list[str] = Field(min_length=1, description="Model references of the ladder, any order.")
    until: Literal["top", "need"] = Field(
        default="top", description="Plan up to the top tier, or only until P(pass) meets the need."
    )
    check_final: bool = Field(
        default=False, description="Also check the last rung (free for deterministic checks: always)."
    )


class GoalSpec(_Model):
    """What counts as done, written down: a description and checks combined by a rule."""

    description: str = ""
    checks: list[GoalCheck] = Field(default_factory=list)
    rule: Literal["all", "weighted"] = Field(
        default="all", description="'all' must pass, or the weighted score must reach 'threshold'."
    )
    threshold: float = Field(default=0.8, ge=0, le=1)


class ConvergenceSpec(_Model):
    """When to stop work that is no longer converging."""

    plateau_rounds: int = Field(default=3, gt=0, description="Rounds without an epsilon gain = plateau.")
    epsilon: float = Field(default=0.02, ge=0)
    similarity: float = Field(default=0.9, gt=0, le=1, description="Near-copy threshold for livelock.")
    value_per_point_usd: Decimal | None = Field(
        default=None, gt=0, description="What 1.0 of score is worth; enables the expected-value cutoff."
    )


class TerminationSpec(_Model):
    """When a job stops regardless of its goal."""

    max_rounds: int = Field(default=10, gt=0, le=10_000)
    max_round_time: timedelta | None = Field(default=None, description="Wall-time cap for one round.")
    convergence: ConvergenceSpec | None = None

    @field_validator("max_round_time", mode="before")
    @classmethod
    def _round_time(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)


class ChatSpec(_Model):
    """Group chat settings: who speaks next."""

    turn_policy: Literal["round_robin", "fair_share", "selector"] = "round_robin"
    selector_model: str | None = Field(default=None, description="Model that picks the next speaker.")
    opening: str = Field(default="{task}", description="The first message of the conversation.")
    output_agent: str | None = Field(
        default=None, description="Whose latest turn is the job's output; default: the first agent."
    )
    turns_per_run: int | None = Field(
        default=None,
        gt=0,
        description="Continue as new after this many turns of one workflow run (between turns, "
        "carrying the whole state); default: only when the server suggests it. A testing knob.",
    )


class DelegationSpec(_Model):
    """Hierarchical delegation: a primary plans, workers run subtasks as child jobs."""

    primary: str = Field(description="The agent that plans, reviews and writes the final answer.")
    workers: list[str] = Field(default_factory=list, description="Agents subtasks go to; default all others.")
    max_concurrency: int = Field(default=4, gt=0, le=100)
    max_rounds: int = Field(default=2, gt=0, le=20, description="Plan-review rounds of the primary.")
    child_budget_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of remaining budget carved per round."
    )


class TeamSpec(_Model):
    """Peer-to-peer team around a task board."""

    tasks: list[str] = Field(default_factory=list, description="Initial tasks; default: the job's task.")
    max_tasks: int = Field(default=20, gt=0, le=1000, description="Cap on tasks including follow-ups.")


class GateSpec(_Model):
    """An approval gate: the job waits here for ``approve`` / ``reject`` from a person.

    Exactly one of ``before_step``, ``spend_usd``, ``spend_tokens`` or ``before_final`` says where.
    The wait is a durable timer: at ``timeout`` the ``default`` is taken. What a rejection does
    depends on the gate: before a step, the step is skipped; at a spend threshold, the job stops
    with ``budget_exhausted``; before the final answer, the job stops with ``aborted`` and the
    answer is withheld (``output`` and ``outputs`` empty). ``abort`` always ends the job with its
    best result so far and stop reason ``aborted``.
    """

    name: str = Field(description="What ``harness approve JOB NAME`` calls it.")
    before_step: str | None = Field(default=None, description="Wait before this step runs.")
    spend_usd: Decimal | None = Field(default=None, gt=0, description="Wait once spend reaches this.")
    spend_tokens: int | None = Field(default=None, gt=0, description="Wait once tokens reach this.")
    before_final: bool = Field(default=False, description="Wait before the final answer is released.")
    timeout: timedelta = Field(default=timedelta(hours=1), description="How long to wait for a person.")
    default: Literal["approve", "reject", "abort"] = Field(
        default="reject", description="What happens when nobody decides within the timeout."
    )

    @field_validator("name")
    @classmethod
    def _gate_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must start with a letter and hold only letters, digits, '-' and '_'")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> timedelta:
        duration = parse_duration(value)
        if duration <= timedelta(0):
            raise ValueError("must be positive")
        return duration

    @model_validator(mode="after")
    def _one_place(self) -> GateSpec:
        places = [self.before_step is not None, self.spend_usd is not None, self.spend_tokens is not None]
        if sum(places) + int(self.before_final) != 1:
            raise ValueError("give exactly one of before_step, spend_usd, spend_tokens, before_final")
        return self


class JobSpec(_Model):
    """A whole job: who works, how they take turns, what it may spend and when it is done."""

    id: str | None = Field(
        default=None, description="Job id = workflow id; when absent, made from the name and a random suffix."
    )
    name: str = Field(default="", description="Display name, any text; the start of a generated id.")
    mode: Mode = "sequential"
    task: str = Field(description="The job's input, available to prompts as {task}.")
    agents: list[AgentSpec] = Field(min_length=1)
    steps: list[StepSpec] = Field(default_factory=list)
    budget: BudgetSpec | None = None
    account: str | None = Field(
        default=None,
        description="Budget account (``harness budget create NAME``) the job leases its budget from at "
        "start and gives the unused part back to at the end; needs budget.tokens or budget.usd.",
    )
    deadline: timedelta | None = Field(default=None, description="Durable; counts from the job's start.")
    termination: TerminationSpec = Field(default_factory=TerminationSpec)
    goal: GoalSpec | None = None
    chat: ChatSpec = Field(default_factory=ChatSpec)
    delegation: DelegationSpec | None = None
    team: TeamSpec = Field(default_factory=TeamSpec)
    max_concurrency: int = Field(default=4, gt=0, le=100, description="Parallel steps in a DAG.")
    turns_per_run: int | None = Field(
        default=None,
        gt=0,
        description="Continue as new after this many turns of one workflow run (carrying the whole "
        "state): between steps in a sequential chain or a DAG, between rounds in a delegation (the "
        "primary's turns), between tasks in each team member; default: only when the server suggests "
        "it. A testing knob (group chat has its own, chat.turns_per_run).",
    )
    gates: list[GateSpec] = Field(default_factory=list, description="Approval gates; see GateSpec.")
    priority: int = Field(
        default=3,
        ge=0,
        le=9,
        description="The job's own work; an interrupt more urgent (lower) preempts it. Across jobs it "
        "is the Temporal priority key of everything the job starts (see ``priority_key``).",
    )
    tenant: str | None = Field(
        default=None,
        description="Who the job runs for: its Temporal fairness key, so tenants sharing a task queue "
        "share its workers by weight. Default: the budget account, else none (one shared pool).",
    )
    tenant_weight: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="The tenant's fairness weight (a tenant of weight 3 gets three tasks dispatched for "
        "one of a tenant of weight 1 while both wait). Default: the account's weight, else 1.",
    )

    @field_validator("deadline", mode="before")
    @classmethod
    def _deadline(cls, value: Any) -> timedelta | None:
        if value is None:
            return None
        duration = parse_duration(value)
        if duration <= timedelta(0):
            raise ValueError("must be positive")
        return duration

    @field_validator("account", "tenant")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("must start with a letter and hold only letters, digits, '-' and '_'")
        return value

    @model_validator(mode="after")
    def _account_needs_budget(self) -> JobSpec:
        if self.account is not None and (
            self.budget is None or (self.budget.tokens is None and self.budget.usd is None)
        ):
            raise ValueError(
                "account: a job drawing on an account leases budget.tokens or budget.usd; give one"
            )
        return self

    @field_validator("id")
    @classmethod
    def _job_id(cls, value: str | None) -> str | None:
        if value is not None and not JOB_ID.fullmatch(value):
            raise ValueError(f"must be {JOB_ID_RULE}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        names = [agent.name for agent in self.agents]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"agents: duplicate names {duplicates}")
        step_ids = [step.id for step in self.steps]
        dup_steps = sorted({sid for sid in step_ids if step_ids.count(sid) > 1})
        if dup_steps:
            raise ValueError(f"steps: duplicate ids {dup_steps}")
        for index, step in enumerate(self.steps):
            if step.agent not in names:
                raise ValueError(f"steps.{index}.agent: unknown agent {step.agent!r} (agents: {names})")
            for dep in step.depends_on:
                if dep not in step_ids:
                    raise ValueError(f"steps.{index}.depends_on: unknown step {dep!r}")
            _check_routing(self, index, step)
        if self.mode in ("sequential", "dag") and not self.steps:
            raise ValueError(f"steps: mode {self.mode!r} needs at least one step")
        if self.mode == "dag":
            _refuse_cycles(self.steps)
        if self.mode == "delegation":
            if self.delegation is None:
                raise ValueError(
                    "delegation: mode 'delegation' needs a 'delegation' section naming the primary"
                )
            for who in [self.delegation.primary, *self.delegation.workers]:
                if who not in names:
                    raise ValueError(f"delegation: unknown agent {who!r} (agents: {names})")
        for index, agent in enumerate(self.agents):
            _check_agent_routing(self, index, agent)
        if self.chat.turn_policy == "selector" and self.mode == "groupchat" and not self.chat.selector_model:
            raise ValueError("chat.selector_model: the 'selector' turn policy needs a model")
        if self.chat.output_agent is not None and self.chat.output_agent not in names:
            raise ValueError(f"chat.output_agent: unknown agent {self.chat.output_agent!r}")
        for index, check in enumerate(self.goal.checks if self.goal else []):
            if check.agent is not None and check.agent not in names:
                raise ValueError(f"goal.checks.{index}.agent: unknown agent {check.agent!r}")
        gate_names = [gate.name for gate in self.gates]
        dup_gates = sorted({name for name in gate_names if gate_names.count(name) > 1})
        if dup_gates:
            raise ValueError(f"gates: duplicate names {dup_gates}")
        for index, gate in enumerate(self.gates):
            if gate.before_step is not None and gate.before_step not in step_ids:
                raise ValueError(f"gates.{index}.before_step: unknown step {gate.before_step!r}")
        return self

    def fairness_key(self) -> str | None:
        """The Temporal fairness key of the job's work: its tenant, else its account."""
        return self.tenant or self.account

    def model_refs(self) -> list[str]:
        """Every model the job may call: agents', judges', the selector's and routing candidates."""
        refs = {agent.model for agent in self.agents}
        refs |= {check.model for check in (self.goal.checks if self.goal else []) if check.model}
        if self.chat.selector_model:
            refs.add(self.chat.selector_model)
        settings = [a.route or a.cascade for a in self.agents] + [s.route or s.cascade for s in self.steps]
        for routing in settings:
            # Routed turns may call any candidate, and judge their outputs: resolve all at start.
            if routing is not None:
                refs |= set(options_models(routing))
                refs |= {check.model for check in routing.checks if check.model}
        return sorted(refs)

    def agent(self, name: str) -> AgentSpec:
        """The agent called ``name``."""
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)


ROUTED_STEP_MODES = ("sequential", "dag")
ROUTED_AGENT_MODES = ("sequential", "dag", "groupchat", "delegation")


def _check_routing(job: JobSpec, index: int, step: StepSpec) -> None:
    """Refuse a step's routing settings the job cannot carry out."""
    if step.route is None and step.cascade is None:
        return
    if job.mode not in ROUTED_STEP_MODES:
        raise ValueError(
            f"steps.{index}: routed steps ('route', 'cascade') run in modes 'sequential' and 'dag'; "
            "in other modes put 'route' or 'cascade' on the agent"
        )
    _check_options(job, f"steps.{index}", step.route, step.cascade, own_checks=False)


def _check_agent_routing(job: JobSpec, index: int, agent: AgentSpec) -> None:
    """Refuse an agent's routing settings the job cannot carry out."""
    if agent.route is None and agent.cascade is None:
        return
    where = f"agents.{index}.{'route' if agent.route is not None else 'cascade'}"
    if job.mode not in ROUTED_AGENT_MODES:
        raise ValueError(
            f"{where}: routed agents run in modes {', '.join(map(repr, ROUTED_AGENT_MODES))}, "
            f"not {job.mode!r}"
        )
    # A delegation's subtasks run as child jobs that do not carry the goal.
    worker = job.mode == "delegation" and agent.name in _delegation_workers(job)
    _check_options(job, f"agents.{index}", agent.route, agent.cascade, own_checks=worker)


def _check_options(
    job: JobSpec, where: str, route: RouteSpec | None, cascade: CascadeSpec | None, *, own_checks: bool
) -> None:
    if cascade is not None and not cascade.checks:
        if own_checks:
            raise ValueError(
                f"{where}.cascade.checks: a worker's cascade needs its own checks "
                "(subtasks run as child jobs, without the goal)"
            )
        if not (job.goal and job.goal.checks):
            raise ValueError(f"{where}.cascade.checks: a cascade needs a check (or the goal's checks)")
    routing = route or cascade
    assert routing is not None
    unknown = sorted(set(routing.priors) - set(options_models(routing)))
    if unknown:
        raise ValueError(f"{where}: priors name models that are not candidates: {unknown}")


def _delegation_workers(job: JobSpec) -> list[str]:
    """The agents a delegation's subtasks may go to (as ``DelegationJob`` picks them)."""
    assert job.delegation is not None
    primary = job.delegation.primary
    return job.delegation.workers or [a.name for a in job.agents if a.name != primary] or [primary]


def options_models(options: RouteSpec | CascadeSpec) -> list[str]:
    """The model references a routing setting chooses among."""
    return options.candidates if isinstance(options, RouteSpec) else options.models


def _refuse_cycles(steps: list[StepSpec]) -> None:
    deps = {step.id: list(step.depends_on) for step in steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = [*path[path.index(node) :], node]
            raise ValueError(f"steps: dependency cycle {' -> '.join(cycle)}")
        state[node] = 1
        for dep in deps[node]:
            visit(dep, [*path, node])
        state[node] = 2

    for step in steps:
        visit(step.id, [])


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(job)"
        problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return problems


def _refusal(source: str, problems: list[str]) -> SpecError:
    """One problem on one line; several on a line each."""
    if len(problems) == 1:
        return SpecError(f"{source}: {problems[0]}")
    return SpecError(f"{source} is invalid:\n" + "\n".join(f"  {problem}" for problem in problems))


def parse_spec(data: Any, source: str = "job spec") -> JobSpec:
    """Validate already-parsed data; raise ``SpecError`` naming each bad field.

    Prompt templates are checked here (``template_problems``), not by a validator of ``JobSpec``:
    a workflow validates its spec again each time it is replayed, and a running job's spec was
    not checked for what a later release refuses.
    """
    if data is None:
        raise SpecError(f"{source}: empty; a job spec is a mapping with at least 'task' and 'agents'")
    if not isinstance(data, dict):
        kinds = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
        kind = kinds.get(type(data), type(data).__name__)
        raise SpecError(f"{source}: a job spec is a mapping ('task: ...', 'agents: ...'), not {kind}")
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as error:
        raise _refusal(source, _problems(error)) from None
    problems = template_problems(spec)
    if problems:
        raise _refusal(source, problems)
    return spec
