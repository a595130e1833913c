"""The layer map, enforced: every import points down (harness > worker > workflows, activities >
contracts > policies), and the job kernel's modules import each other in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Top to bottom; a module may import its own layer and any layer below it, never one above.
LAYERS = ["harness", "worker", "workflows|activities", "contracts", "policies"]
KERNEL = {
    "_job",
    "_budget",
    "_gates",
    "_termination",
    "_routing",
    "_checks",
    "_children",
    "_port",
    "_job_errors",
    "_activities",
    "_tools",
}


def layer_of(module: str) -> int | None:
    top = module.split(".")[0]
    for rank, names in enumerate(LAYERS):
        if top in names.split("|"):
            return rank
    return None


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(module, under TYPE_CHECKING) for each absolute import of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded |= {id(child) for child in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, id(node) in guarded))
        elif isinstance(node, ast.Import):
            found += [(alias.name, id(node) in guarded) for alias in node.names]
    return found


def sources() -> list[Path]:
    files = [ROOT / "worker.py"]
    for package in ("harness", "workflows", "activities", "contracts", "policies"):
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def test_every_import_points_down() -> None:
    """No module imports from a layer above its own; workflows and activities never import each other."""
    upward = []
    for path in sources():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = layer_of(module)
        assert own is not None, module
        for imported, _ in imports_of(path):
            rank = layer_of(imported)
            if rank is None:
                continue
            sideways = rank == own and imported.split(".")[0] != module.split(".")[0]
            if rank < own or sideways:
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_the_kernel_has_no_import_cycles() -> None:
    """The kernel's modules import each other in one direction only, with no TYPE_CHECKING way round."""
    edges: dict[str, set[str]] = {}
    guarded = []
    for name in KERNEL:
        path = ROOT / "workflows" / f"{name}.py"
        for imported, under_type_checking in imports_of(path):
            target = imported.removeprefix("workflows.")
            if imported.startswith("workflows.") and target in KERNEL:
                edges.setdefault(name, set()).add(target)
                if under_type_checking:
                    guarded.append(f"{name} -> {target}")
    assert guarded == []

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, set()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [name for name in sorted(KERNEL) if reaches(name, name, set())] == []
