"""Provider failures as Temporal ``ApplicationError``s: the world retries, bad input does not.

The SDKs' own retries are off; Temporal's retry policy is the only one. Retryable: 408, 409, 429,
5xx, timeouts, dropped connections and unreadable bodies (with ``next_retry_delay`` from a
``retry-after`` header). Not retryable, with a ``type`` naming the cause: 400 ``BadRequest``,
401 ``AuthenticationFailed``, 403 ``PermissionDenied``, 404 ``ModelNotFound``, 422
``UnprocessableRequest``, and our own ``UnknownPrice``, ``UnknownModel`` and
``StructuredOutputInvalid``. Messages are scrubbed of keys and cut short, so no prompt rides along.
A non-retryable failure of ``model_call`` carries ``{"usage": ...}`` as its first detail (see
``with_usage``), with ``"lost_usage"`` when earlier attempts died mid-stream (``with_lost_usage``);
the workflow charges both.

Every error made here is an outcome the job handles (retried, or the job ends naming it), so it is
``HANDLED`` (Temporal's BENIGN category): the worker logs it in one line of its own ("model call
failed: ...") instead of the SDK's WARNING traceback "Completing activity as failed", and metrics
and traces do not count it as a failure of the worker.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities._provider import MalformedResponseError
from contracts.models import Usage

__all__ = [
    "HANDLED",
    "NON_RETRYABLE_STATUS",
    "from_provider_error",
    "retry_after",
    "structured_output_invalid",
    "unknown_model",
    "unknown_price",
    "with_lost_usage",
    "with_usage",
]

HANDLED = ApplicationErrorCategory.BENIGN
"""The category of errors the job handles: logged in one line, not as a traceback."""

NON_RETRYABLE_STATUS: dict[int, str] = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "PermissionDenied",
    404: "ModelNotFound",
    422: "UnprocessableRequest",
}
_RETRYABLE_STATUS: dict[int, str] = {408: "RequestTimeout", 409: "Conflict", 429: "RateLimited"}
# Errors sent inside an Anthropic stream (HTTP 200) name their type instead of a status.
_ANTHROPIC_ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "timeout_error": 504,
    "api_error": 500,
    "overloaded_error": 529,
}
_SDKS = ("openai", "anthropic")
"""The provider SDKs whose exceptions are mapped here, by module name."""
_KEY_PATTERN = re.compile(r"\b(sk|sk-ant|sk-proj)-[A-Za-z0-9_\-*]{4,}")
_MAX_MESSAGE = 300


def from_provider_error(exc: BaseException, *, secrets: Iterable[str] = ()) -> ApplicationError | None:
    """``exc`` from a provider SDK as an ``ApplicationError``, or None if it is not a provider error."""
    if isinstance(exc, ApplicationError):
        return exc
    if isinstance(exc, (*_sdk_errors("APITimeoutError"), httpx2.TimeoutException)):
        return ApplicationError("provider request timed out", type="Timeout", category=HANDLED)
    if isinstance(exc, _sdk_errors("APIResponseValidationError")):
        return ApplicationError(
            "provider sent a response we cannot read", type="MalformedResponse", category=HANDLED
        )
    if isinstance(exc, _sdk_errors("APIStatusError")):
        error: Any = exc  # either SDK's APIStatusError: its status, response and body alike
        return _from_status(error.status_code, error.response.headers, error.body, str(exc), secrets)
    if isinstance(exc, (*_sdk_errors("APIConnectionError"), httpx2.TransportError)):
        return ApplicationError(
            f"connection to the provider failed: {_clean(str(exc), secrets)}",
            type="ConnectionError",
            category=HANDLED,
        )
    if isinstance(exc, MalformedResponseError | json.JSONDecodeError):
        return ApplicationError(
            f"provider sent a malformed response: {_clean(str(exc), secrets)}",
            type="MalformedResponse",
            category=HANDLED,
        )
    if isinstance(exc, _sdk_errors("APIError")):
        # An error event inside an OpenAI stream: no status; the next attempt may well succeed.
        return ApplicationError(
            f"provider error: {_clean(str(exc), secrets)}", type="ProviderError", category=HANDLED
        )
    return None


def _sdk_errors(name: str) -> tuple[type[BaseException], ...]:
    """The exception class ``name`` of each provider SDK this process has loaded (both SDKs name
    their errors alike). An SDK not loaded raised nothing and is not imported to find out; one still
    being imported (in another thread) may not have defined the class yet, nor raised it."""
    modules = (sys.modules.get(sdk) for sdk in _SDKS)
    found = (getattr(module, name, None) for module in modules if module is not None)
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


def _from_status(
    status: int, headers: Mapping[str, str], body: object, message: str, secrets: Iterable[str]
) -> ApplicationError:
    if status < 400:
        status = _ANTHROPIC_ERROR_STATUS.get(_error_type(body) or "", 500)
    text = f"provider answered HTTP {status}: {_clean(message, secrets)}"
    if status in NON_RETRYABLE_STATUS:
        return ApplicationError(text, type=NON_RETRYABLE_STATUS[status], non_retryable=True, category=HANDLED)
    if status in _RETRYABLE_STATUS or status >= 500:
        return ApplicationError(
            text,
            type=_RETRYABLE_STATUS.get(status, "ServerError"),
            next_retry_delay=retry_after(headers),
            category=HANDLED,
        )
    # Other client errors (402 payment, 413 too large, ...) will not heal by retrying.
    return ApplicationError(text, type=f"HTTP{status}", non_retryable=True, category=HANDLED)


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> timedelta | None:
    """The delay a ``retry-after-ms`` or ``retry-after`` header asks for (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return timedelta(milliseconds=max(0.0, float(millis)))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(timedelta(0), when - (now or datetime.now(UTC)))


def with_usage(error: ApplicationError, usage: Usage) -> ApplicationError:
    """``error`` with ``{"usage": ...}`` as its details: what the failed call really spent.

    Non-retryable failures of a model call carry it (zero for a request the provider rejected
    outright), as ``StructuredOutputInvalid`` does, so the workflow can charge that instead of the
    call's reservation.
    """
    return ApplicationError(
        error.message,
        {"usage": usage.model_dump(mode="json")},
        type=error.type,
        non_retryable=error.non_retryable,
        next_retry_delay=error.next_retry_delay,
        category=error.category,
    )


def with_lost_usage(error: ApplicationError, lost: Usage) -> ApplicationError:
    """``error`` whose first detail (``{"usage": ...}``) also carries ``"lost_usage"``: what earlier
    attempts of the call that died mid-stream spent (estimated), so a failure charges it too."""
    first, *rest = error.details or ({},)
    detail = {**first, "lost_usage": lost.model_dump(mode="json")} if isinstance(first, dict) else first
    return ApplicationError(
        error.message,
        detail,
        *rest,
        type=error.type,
        non_retryable=error.non_retryable,
        next_retry_delay=error.next_retry_delay,
        category=error.category,
    )


def unknown_price(message: str) -> ApplicationError:
    """A model without a known price: refused, never charged as free."""
    return ApplicationError(message, type="UnknownPrice", non_retryable=True, category=HANDLED)


def unknown_model(message: str) -> ApplicationError:
    """A model reference naming no known provider or alias."""
    return ApplicationError(message, type="UnknownModel", non_retryable=True, category=HANDLED)


def structured_output_invalid(output_type: str, error: str, usage: Usage, attempts: int) -> ApplicationError:
    """The reply still failed validation after the re-asks; details carry the usage spent."""
    return ApplicationError(
        f"reply is not a valid {output_type} after {attempts} attempts: {error}",
        {"usage": usage.model_dump(mode="json"), "attempts": attempts, "output_type": output_type},
        type="StructuredOutputInvalid",
        non_retryable=True,
        category=HANDLED,
    )


def _error_type(body: object) -> str | None:
    if isinstance(body, dict):
        error: Any = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None


def _clean(message: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = _KEY_PATTERN.sub("***", message)
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "..."
