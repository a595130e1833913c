"""Prompt templates in a spec: which ``{placeholders}`` each may use, and filling them in.

The check and the filling live here together so they cannot drift: ``parse_spec`` refuses a template
naming a placeholder that ``step_names`` (or ``opening_values``) does not give, and the workflows
fill templates with ``render`` and the values of ``step_values`` and ``opening_values``.

A placeholder is ``{name}``: a letter, then letters, digits, '_' or '-'. ``{{name}}`` is the text
``{name}``. Every other brace is text (a JSON example in a prompt, say): there are no format specs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contracts.spec import JobSpec, StepSpec

_NAME = r"[A-Za-z][A-Za-z0-9_-]*"
_PLACEHOLDER = re.compile(rf"\{{(\{{{_NAME}\}})\}}|\{{({_NAME})\}}")
# What reads as a placeholder but is none: spaces inside, a format spec or a conversion.
_MISWRITTEN = re.compile(rf"\{{\s*({_NAME})\s*(?:[:!][^{{}}]*)?\}}")

TASK = "task"
"""The job's task: in every template."""
INPUT = "input"
"""A step's input: in a chain the previous step's output (the task for the first step), in a DAG its
dependencies' outputs joined (the task for a step without any)."""
STEP_MODES = ("sequential", "dag")
"""The modes that run ``spec.steps``, filling each step's prompt."""


def placeholders(template: str) -> list[str]:
    """The names of ``template``'s placeholders, each once, in order (``{{name}}`` is none)."""
    return list(dict.fromkeys(name for _, name in _PLACEHOLDER.findall(template) if name))


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill each placeholder with its value (one without a value stays as written) and write
    ``{{name}}`` as ``{name}``; leave every other brace alone."""

    def fill(match: re.Match[str]) -> str:
        escaped, name = match.groups()
        return escaped if escaped else values.get(name, match.group(0))

    return _PLACEHOLDER.sub(fill, template)


def earlier_steps(spec: JobSpec, step: StepSpec) -> list[str]:
    """The steps whose output ``step``'s prompt may use by id, in spec order: in a chain the steps
    before it; in a DAG the steps it depends on, directly or through others (only these are sure
    to have run before it)."""
    ids = [other.id for other in spec.steps]
    if spec.mode != "dag":
        return ids[: ids.index(step.id)]
    depends = {other.id: other.depends_on for other in spec.steps}
    ancestors: set[str] = set()
    todo = list(step.depends_on)
    while todo:
        current = todo.pop()
        if current not in ancestors:
            ancestors.add(current)
            todo += depends.get(current, [])
    return [sid for sid in ids if sid in ancestors]


def step_names(spec: JobSpec, step: StepSpec) -> list[str]:
    """The placeholders ``step``'s prompt may use: ``{task}``, ``{input}`` and ``earlier_steps``."""
    return [TASK, INPUT, *earlier_steps(spec, step)]


def step_values(spec: JobSpec, step: StepSpec, input: str, outputs: Mapping[str, str]) -> dict[str, str]:
    """What ``step``'s placeholders stand for: ``input`` and the outputs of the steps of
    ``step_names`` that ran (``outputs``: in a chain, a step skipped at its gate has none, and its
    placeholder stays as written)."""
    values = {TASK: spec.task, INPUT: input}
    values.update((name, outputs[name]) for name in earlier_steps(spec, step) if name in outputs)
    return values


def opening_values(spec: JobSpec) -> dict[str, str]:
    """What the placeholders of a group chat's opening message (``chat.opening``) stand for."""
    return {TASK: spec.task}


def template_problems(spec: JobSpec) -> list[str]:
    """Each template of ``spec`` the job would send with a placeholder unfilled, as 'field: why'
    (and each step id that is a placeholder's own name, which would shadow it)."""
    problems = []
    if spec.mode in STEP_MODES:
        ids = {step.id for step in spec.steps}
        after = "is not a step it depends on" if spec.mode == "dag" else "does not run before it"
        for index, step in enumerate(spec.steps):
            if step.id in (TASK, INPUT):
                problems.append(
                    f"steps.{index}.id: {step.id!r} is the name of the placeholder {{{step.id}}}; "
                    "give the step another id"
                )
            known = step_names(spec, step)
            why = _unfilled(step.prompt, known, f"step {step.id!r}")
            later = [name for name in placeholders(step.prompt) if name in ids and name not in known]
            if why and later:
                why += f" ({_braced(later)} {after})"
            if why:
                problems.append(f"steps.{index}.prompt: {why}")
    if spec.mode == "groupchat":
        why = _unfilled(spec.chat.opening, list(opening_values(spec)), "the opening")
        if why:
            problems.append(f"chat.opening: {why}")
    return problems


def _unfilled(template: str, known: list[str], whose: str) -> str:
    """Why ``template`` (``whose``) would be sent with a placeholder unfilled, or ''."""
    unknown = [name for name in placeholders(template) if name not in known]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        return (
            f"unknown placeholder{plural} {_braced(unknown)} in {whose}; known: {_braced(known)} "
            f"(write {{{{{unknown[0]}}}}} for the text {{{unknown[0]}}})"
        )
    for match in _MISWRITTEN.finditer(_PLACEHOLDER.sub("", template)):
        if match.group(1) in known:
            return f"{match.group(0)} in {whose} is not filled in: write {{{match.group(1)}}}"
    return ""


def _braced(names: list[str]) -> str:
    return ", ".join(f"{{{name}}}" for name in names)
