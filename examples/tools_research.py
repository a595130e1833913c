"""Tools of the research example (``examples/tools-catalog.yaml`` names this module).

Two idempotent lookups and one tool with an effect: ``publish_summary`` appends to a file, so it is
not idempotent (never run twice) and the catalog makes it wait for a person's approval.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from harness.tools import tool

NOTES = [
    {"id": "n1", "title": "Temporal activities", "text": "Activities run at least once: idempotent."},
    {"id": "n2", "title": "Heartbeats", "text": "Cancellation reaches an activity only through heartbeats."},
    {"id": "n3", "title": "cgroups", "text": "cpu.max sets a quota per period; memory.max caps memory."},
    {"id": "n4", "title": "Fair share", "text": "CFS runs the task that is owed the most CPU time first."},
    {"id": "n5", "title": "MCP", "text": "The Model Context Protocol lets a model call tools on servers."},
]


@tool(idempotent=True)
def search_notes(query: str, limit: int = 3) -> list[dict[str, str]]:
    """Search the research notes; the notes whose title or text share most words with the query."""
    words = {word.lower().strip(".,;:") for word in query.split()}

    def score(note: dict[str, str]) -> int:
        text = f"{note['title']} {note['text']}".lower()
        return sum(1 for word in words if word and word in text)

    ranked = sorted((note for note in NOTES if score(note) > 0), key=score, reverse=True)
    return ranked[: max(0, limit)]


@tool(idempotent=True)
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


@tool
def publish_summary(title: str, body: str) -> str:
    """Publish a summary: append it to the published file (``.harness/published/summaries.md``)."""
    folder = Path(os.environ.get("HARNESS_PUBLISHED_DIR", ".harness/published"))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "summaries.md"
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with target.open("a", encoding="utf-8") as file:
        file.write(f"## {title}\n\n_{stamp}_\n\n{body}\n\n")
    return f"published {title!r} to {target}"
