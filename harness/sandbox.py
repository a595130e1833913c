"""The workflow sandbox's pass-through list, declared once, with a reason per module.

Pass-through modules are imported once, outside the sandbox, and shared by every workflow run.
That is safe only for deterministic code with no I/O; each entry below says why it qualifies.
Workflow modules import nothing else from outside (no provider SDK, no HTTP client).
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH_MODULES: dict[str, str] = {
    "pydantic": "data models of specs and payloads; pure validation, reloading it per run is slow",
    "pydantic_core": "pydantic's compiled core",
    "annotated_types": "pydantic's constraint types",
    "harness": "our own spec, contracts and search-attribute keys: pure data definitions",
    "policies": "our pure decision code (no I/O, no clock, no randomness by the layer rule)",
    "yaml": "imported by harness.spec's file loader, never called inside a workflow",
}


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner every worker and replayer uses."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    return SandboxedWorkflowRunner(restrictions=restrictions)
