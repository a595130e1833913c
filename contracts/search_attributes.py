"""Typed keys for harness's custom search attributes, cheap enough to import from workflow code.

The names and types must match `harness.devserver.SEARCH_ATTRIBUTES`, which registers them on the
server. Never put prompt text or secrets in search attributes: they are not encrypted by a codec.
"""

from temporalio.common import SearchAttributeKey

MODE = SearchAttributeKey.for_keyword("HarnessMode")
"""Orchestration mode of the job."""
STATUS = SearchAttributeKey.for_keyword("HarnessStatus")
"""Coarse job status, for filtering in the Web UI."""
STOP_REASON = SearchAttributeKey.for_keyword("HarnessStopReason")
"""Why the job stopped (one value of the stop-reason enum); unset while running."""
TOKENS = SearchAttributeKey.for_int("HarnessTokens")
"""Total tokens charged so far."""
COST_USD = SearchAttributeKey.for_float("HarnessCostUsd")
"""Total cost charged so far, in US dollars (a Double attribute; sorting only, not accounting)."""

__all__ = ["COST_USD", "MODE", "STATUS", "STOP_REASON", "TOKENS"]
