"""Worker configuration: where each model provider is reached, read from the environment only.

Nothing here travels through Temporal: settings live in the worker process, and API keys are
``SecretStr`` so they never show up in a repr, a log line or an error message.

Routing, per provider prefix of a model reference:

- ``sim``: the local simulator (OpenAI wire format) at ``HARNESS_SIM_URL``, key ``"sim"``.
- ``openai``: ``OPENAI_BASE_URL`` if set, else the real API if ``OPENAI_API_KEY`` is set, else the
  simulator's ``/v1`` (so every example runs with no keys at all).
- ``anthropic``: the same with ``ANTHROPIC_BASE_URL`` / ``ANTHROPIC_API_KEY`` (simulator at its root).
- ``openai-compatible``: ``HARNESS_OPENAI_COMPATIBLE_BASE_URL`` (vLLM, Ollama, llama.cpp, LiteLLM...;
  key optional), else the simulator's ``/v1``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

ProviderName = Literal["sim", "openai", "anthropic", "openai-compatible"]
PROVIDERS: tuple[ProviderName, ...] = ("sim", "openai", "anthropic", "openai-compatible")

DEFAULT_SIM_URL = "http://127.0.0.1:8765"
OPENAI_API_URL = "https://api.openai.com/v1"
ANTHROPIC_API_URL = "https://api.anthropic.com"
# The OpenAI SDK refuses to start without a key; keyless local servers ignore whatever we send.
_NO_KEY = "not-needed"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Endpoint(BaseModel):
    """Where one provider's requests go, and in which wire format."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    provider: ProviderName
    """The provider prefix this endpoint serves."""
    wire: Literal["openai", "anthropic"]
    """Which SDK speaks to it: Chat Completions or Anthropic Messages."""
    base_url: str
    """Base URL handed to the SDK client."""
    api_key: SecretStr
    """Key handed to the SDK client (a placeholder for the simulator and keyless servers)."""
    simulated: bool
    """True when the requests go to the local simulator."""


class ProviderSettings(BaseModel):
    """How the worker reaches model providers. Build it with ``from_env()`` in a worker."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    sim_url: str = DEFAULT_SIM_URL
    """Root URL of the model simulator (``HARNESS_SIM_URL``)."""
    openai_api_key: SecretStr | None = None
    """Key of the real OpenAI API (``OPENAI_API_KEY``); without it ``openai:`` goes to the simulator."""
    openai_base_url: str | None = None
    """Overrides where ``openai:`` requests go (``OPENAI_BASE_URL``)."""
    anthropic_api_key: SecretStr | None = None
    """Key of the real Anthropic API (``ANTHROPIC_API_KEY``); without it ``anthropic:`` is simulated."""
    anthropic_base_url: str | None = None
    """Overrides where ``anthropic:`` requests go (``ANTHROPIC_BASE_URL``)."""
    openai_compatible_base_url: str | None = None
    """Base URL (ending in ``/v1``) of an OpenAI-compatible server
    (``HARNESS_OPENAI_COMPATIBLE_BASE_URL``)."""
    openai_compatible_api_key: SecretStr | None = None
    """Optional key of that server (``HARNESS_OPENAI_COMPATIBLE_API_KEY``)."""
    openai_compatible_json_schema: bool = False
    """Send ``response_format`` json_schema to the compatible server
    (``HARNESS_OPENAI_COMPATIBLE_JSON_SCHEMA``); off by default because not every server knows it,
    and the JSON-only instruction in the system prompt works everywhere."""
    openai_compatible_stream_usage: bool = True
    """Ask the compatible server for usage at the end of a stream
    (``HARNESS_OPENAI_COMPATIBLE_STREAM_USAGE``); without it, usage is estimated and marked so."""
    catalog_path: Path | None = None
    """A YAML model catalog with aliases and prices (``HARNESS_CATALOG``)."""
    request_timeout_s: float = Field(default=600.0, gt=0)
    """Seconds the SDK waits for a response or the next chunk (``HARNESS_MODEL_TIMEOUT_S``)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProviderSettings:
        """Read the settings from ``environ`` (default: this process's environment)."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def secret(name: str) -> SecretStr | None:
            value = text(name)
            return SecretStr(value) if value else None

        def flag(name: str, default: bool) -> bool:
            value = env.get(name)
            if value is None:
                return default
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"{name} must be true or false, not {value!r}")

        def seconds(name: str, default: float) -> float:
            value = text(name)
            if value is None:
                return default
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{name} must be a number of seconds, not {value!r}") from None

        catalog = text("HARNESS_CATALOG")
        return cls(
            sim_url=text("HARNESS_SIM_URL") or DEFAULT_SIM_URL,
            openai_api_key=secret("OPENAI_API_KEY"),
            openai_base_url=text("OPENAI_BASE_URL"),
            anthropic_api_key=secret("ANTHROPIC_API_KEY"),
            anthropic_base_url=text("ANTHROPIC_BASE_URL"),
            openai_compatible_base_url=text("HARNESS_OPENAI_COMPATIBLE_BASE_URL"),
            openai_compatible_api_key=secret("HARNESS_OPENAI_COMPATIBLE_API_KEY"),
            openai_compatible_json_schema=flag("HARNESS_OPENAI_COMPATIBLE_JSON_SCHEMA", False),
            openai_compatible_stream_usage=flag("HARNESS_OPENAI_COMPATIBLE_STREAM_USAGE", True),
            catalog_path=Path(catalog) if catalog else None,
            request_timeout_s=seconds("HARNESS_MODEL_TIMEOUT_S", 600.0),
        )

    def endpoint(self, provider: str) -> Endpoint:
        """Where requests for ``provider`` go; raises ``ValueError`` naming the known providers."""
        sim_root = self.sim_url.rstrip("/")
        sim_openai = Endpoint(
            provider="sim", wire="openai", base_url=f"{sim_root}/v1", api_key=SecretStr("sim"), simulated=True
        )
        if provider == "sim":
            return sim_openai
        if provider == "openai":
            if self.openai_base_url or self.openai_api_key:
                return Endpoint(
                    provider="openai",
                    wire="openai",
                    base_url=self.openai_base_url or OPENAI_API_URL,
                    api_key=self.openai_api_key or SecretStr(_NO_KEY),
                    simulated=False,
                )
            return sim_openai.model_copy(update={"provider": "openai"})
        if provider == "anthropic":
            if self.anthropic_base_url or self.anthropic_api_key:
                return Endpoint(
                    provider="anthropic",
                    wire="anthropic",
                    base_url=self.anthropic_base_url or ANTHROPIC_API_URL,
                    api_key=self.anthropic_api_key or SecretStr(_NO_KEY),
                    simulated=False,
                )
            return Endpoint(
                provider="anthropic",
                wire="anthropic",
                base_url=sim_root,
                api_key=SecretStr("sim"),
                simulated=True,
            )
        if provider == "openai-compatible":
            if self.openai_compatible_base_url:
                return Endpoint(
                    provider="openai-compatible",
                    wire="openai",
                    base_url=self.openai_compatible_base_url,
                    api_key=self.openai_compatible_api_key or SecretStr(_NO_KEY),
                    simulated=False,
                )
            return sim_openai.model_copy(update={"provider": "openai-compatible"})
        raise ValueError(f"unknown provider {provider!r}; use one of: {', '.join(PROVIDERS)}")

    def secrets(self) -> list[str]:
        """The configured key values, so error messages can be scrubbed of them."""
        keys = (self.openai_api_key, self.anthropic_api_key, self.openai_compatible_api_key)
        return [key.get_secret_value() for key in keys if key is not None and key.get_secret_value()]
