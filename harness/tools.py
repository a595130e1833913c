"""What users write tools with: ``from harness.tools import tool``.

The decorator lives in ``activities.function_tools`` (the worker's side, which runs the tools); this
module re-exports it for users, whose tool modules the worker imports from its catalog
(``HARNESS_TOOLS``, ``python:`` list).
"""

from __future__ import annotations

from activities.function_tools import DEFAULT_TOOLS, FunctionTool, ToolRegistry, tool

__all__ = ["DEFAULT_TOOLS", "FunctionTool", "ToolRegistry", "tool"]
