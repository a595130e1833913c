"""Python function tools: a decorator registers a function, its type hints give the JSON Schema.

Users write (``harness.tools`` re-exports the decorator)::

    from harness.tools import tool

    @tool(idempotent=True)
    def lookup_order(order_id: str, verbose: bool = False) -> dict[str, str]:
        \"\"\"Look an order up by its id.\"\"\"

and name the module under ``python:`` in the worker's tool catalog (``HARNESS_TOOLS``). The
docstring is the description the model reads; the parameters' types and defaults are the schema.
Arguments are validated by the same pydantic model before the function runs. A sync function runs
in a thread so the activity keeps heartbeating; a thread cannot be killed, so a cancelled sync tool
runs on to its end (its result is dropped). A str return value is the result as is; anything else is
sent as JSON.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar, get_type_hints, overload

import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from contracts.tools import ToolDef

__all__ = [
    "DEFAULT_TOOLS",
    "FunctionTool",
    "ToolRegistry",
    "describe_validation_error",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])
Approval = Literal["never", "always"]


def describe_validation_error(error: ValidationError) -> str:
    """The fields and what is wrong with each, without the input values (they may be secret)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "(arguments)"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def _without_titles(schema: Any) -> Any:
    """``schema`` without pydantic's generated ``title``s (noise to a model); property names stay."""
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            cleaned[key] = {name: _without_titles(sub) for name, sub in value.items()}
        else:
            cleaned[key] = _without_titles(value)
    return cleaned


@dataclass(frozen=True)
class FunctionTool:
    """One registered function and how a job must treat a call of it."""

    name: str
    function: Callable[..., Any]
    description: str
    arguments: type[BaseModel]
    """The pydantic model of its parameters; arguments are validated with it before a call."""
    idempotent: bool = False
    price_usd: Decimal = Decimal(0)
    approval: Approval = "never"
    approval_over_usd: Decimal | None = None
    timeout_s: float = 60.0

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema of its arguments."""
        schema: dict[str, Any] = _without_titles(self.arguments.model_json_schema())
        schema.setdefault("properties", {})
        return schema

    def tool_def(self) -> ToolDef:
        """What a job is told about it."""
        return ToolDef(
            ref=self.name,
            name=self.name,
            description=self.description,
            parameters=self.parameters,
            idempotent=self.idempotent,
            approval=self.approval,
            approval_over_usd=self.approval_over_usd,
            price_usd=self.price_usd,
            timeout_s=self.timeout_s,
        )

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments as the function takes them; ``ValidationError`` when they do not fit."""
        model = self.arguments.model_validate(arguments)
        return {name: getattr(model, name) for name in type(model).model_fields}

    @property
    def is_async(self) -> bool:
        """An ``async def`` (cancellable), not a sync function run in a thread (which cannot be stopped)."""
        return inspect.iscoroutinefunction(self.function)

    async def run(self, arguments: dict[str, Any]) -> str:
        """Validate, call and render the result as text."""
        return await self.call(self.validate(arguments))

    async def call(self, kwargs: dict[str, Any]) -> str:
        """Call with validated arguments (a sync function in a thread); the result as text."""
        if self.is_async:
            value = await self.function(**kwargs)
        else:
            value = await asyncio.to_thread(self.function, **kwargs)
        if isinstance(value, str):
            return value
        return pydantic_core.to_json(value).decode()


def _arguments_model(name: str, function: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model with one field per parameter of ``function`` (its hint, its default)."""
    hints = get_type_hints(function)
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args and **kwargs have no schema; name each parameter")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise TypeError(f"tool {name!r}: positional-only parameter {parameter.name!r}")
        hint = hints.get(parameter.name, Any)
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hint, default)
    model: type[BaseModel] = create_model(
        f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


class ToolRegistry:
    """Python tools by name."""

    def __init__(self) -> None:
        self._tools: dict[str, FunctionTool] = {}

    def add(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        price_usd: Decimal | str | int = 0,
        approval: Approval = "never",
        approval_over_usd: Decimal | str | None = None,
        timeout_s: float = 60.0,
    ) -> FunctionTool:
        """Register ``function`` (a second registration under the same name replaces the first)."""
        tool_name = name or function.__name__
        ToolDef(ref=tool_name, name=tool_name)  # the name rules: refused here, not at the first call
        entry = FunctionTool(
            name=tool_name,
            function=function,
            description=description if description is not None else inspect.getdoc(function) or "",
            arguments=_arguments_model(tool_name, function),
            idempotent=idempotent,
            price_usd=Decimal(str(price_usd)),
            approval=approval,
            approval_over_usd=None if approval_over_usd is None else Decimal(str(approval_over_usd)),
            timeout_s=timeout_s,
        )
        self._tools[tool_name] = entry
        return entry

    @overload
    def tool(self, function: F, /) -> F: ...

    @overload
    def tool(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        price_usd: Decimal | str | int = 0,
        approval: Approval = "never",
        approval_over_usd: Decimal | str | None = None,
        timeout_s: float = 60.0,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        function: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        price_usd: Decimal | str | int = 0,
        approval: Approval = "never",
        approval_over_usd: Decimal | str | None = None,
        timeout_s: float = 60.0,
    ) -> Any:
        """Decorator: ``@tool`` or ``@tool(name=..., idempotent=True, ...)``; the function is
        returned unchanged, so it can still be called directly."""

        def decorate(inner: F) -> F:
            self.add(
                inner,
                name=name,
                description=description,
                idempotent=idempotent,
                price_usd=price_usd,
                approval=approval,
                approval_over_usd=approval_over_usd,
                timeout_s=timeout_s,
            )
            return inner

        return decorate(function) if function is not None else decorate

    def get(self, name: str) -> FunctionTool | None:
        """The tool called ``name``, or None."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Registered tool names, sorted."""
        return sorted(self._tools)


DEFAULT_TOOLS = ToolRegistry()
"""The registry ``@tool`` adds to; the worker's catalog serves the tools in it."""

tool = DEFAULT_TOOLS.tool
