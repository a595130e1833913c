"""Injected faults: queued through ``POST /_sim/faults`` or one-shot via the ``x-sim-fault`` header.

Error kinds answer with that HTTP status and a provider-shaped error body. The others:
``timeout`` holds the request unanswered until the client gives up or the server stops;
``malformed`` answers 200 with a body (or SSE line) that is not JSON; ``drop_stream`` sends
``after_tokens`` tokens then closes the socket with no final chunk or usage; ``refusal`` and
``content_filter`` answer normally with the provider's refusal / filter markers.
"""

from __future__ import annotations

import threading
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

FaultKind = Literal[
    "429",
    "500",
    "400",
    "401",
    "403",
    "404",
    "408",
    "409",
    "422",
    "timeout",
    "malformed",
    "drop_stream",
    "refusal",
    "content_filter",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
"""Every fault kind the simulator knows."""

Provider = Literal["openai", "anthropic"]


class Fault(BaseModel):
    """One queued fault; body of ``POST /_sim/faults``."""

    kind: FaultKind
    model: str | None = Field(default=None, description="Only requests for this model; None = any.")
    count: int = Field(default=1, ge=1, description="How many matching requests it hits.")
    retry_after: float | None = Field(default=None, ge=0, description="Seconds, sent as retry-after.")
    after_tokens: int = Field(default=3, ge=0, description="drop_stream: tokens sent before the drop.")


class FaultQueue:
    """Thread-safe queue of faults; each matching request consumes one hit of the first match."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` behind any already queued."""
        with self._lock:
            self._faults.append(fault.model_copy())

    def take(self, model: str) -> Fault | None:
        """Consume one hit of the first fault matching ``model``, if any."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.model is None or fault.model == model:
                    if fault.count <= 1:
                        del self._faults[i]
                    else:
                        self._faults[i] = fault.model_copy(update={"count": fault.count - 1})
                    return fault
        return None

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()


_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (simulated)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (simulated)."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden (simulated)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (simulated)."),
    408: ("timeout", None, "Request timed out (simulated)."),
    409: ("conflict", None, "Conflict (simulated)."),
    422: ("invalid_request_error", None, "Unprocessable entity (simulated)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (simulated). Please try again later."),
    500: ("server_error", None, "The server had an error processing your request (simulated)."),
}
_ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
}


def error_body(provider: Provider, status: int, message: str | None = None) -> dict[str, Any]:
    """The JSON error body ``provider`` sends with ``status``."""
    kind, code, default = _OPENAI_ERRORS.get(status, _OPENAI_ERRORS[500])
    text = message or default
    if provider == "openai":
        return {"error": {"message": text, "type": kind, "param": None, "code": code}}
    return {"type": "error", "error": {"type": _ANTHROPIC_ERRORS.get(status, "api_error"), "message": text}}
