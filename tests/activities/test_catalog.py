"""The model catalog and provider settings: references, aliases, prices and routing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from activities.catalog import (
    SIM_PRICES,
    SIM_TIERS,
    ModelCatalog,
    UnknownModelError,
    UnknownPriceError,
    load_catalog,
    resolve,
)
from activities.config import ProviderSettings

CATALOG_YAML = """
models:
  cheap:
    model: "openai:gpt-4o-mini"
    tier: 0
    max_output_tokens: 2048
    price: {input_per_mtok: 1.25, output_per_mtok: 2.5}
  local:
    model: "openai-compatible:llama3"
    context_window: 8192
    price: {input_per_mtok: 0.01, output_per_mtok: 0.02}
  drafter:
    model: "sim:writer"
"""


@pytest.fixture
def catalog() -> ModelCatalog:
    return ModelCatalog.builtin().merged(ModelCatalog.from_yaml(CATALOG_YAML))


def test_sim_models_are_priced_by_the_simulator() -> None:
    """A sim: reference takes the simulator's own price and routing tier."""
    info = resolve("sim:tier-large")
    assert info.provider == "sim" and info.model == "tier-large"
    assert info.price == SIM_PRICES["tier-large"]
    assert info.tier == SIM_TIERS["tier-large"]
    assert info.price_source == "simulator"


def test_unknown_sim_model_is_refused_with_the_nearest_ones() -> None:
    """A sim: model the simulator does not serve is an unknown model, not an unpriced one: the
    refusal names the nearest simulated models, or lists them all when none is near."""
    with pytest.raises(UnknownModelError) as caught:
        resolve("sim:writr")
    assert str(caught.value) == "unknown model 'sim:writr': did you mean sim:writer or sim:editor?"
    with pytest.raises(UnknownModelError) as caught:
        resolve("sim:no-such-model")
    assert str(caught.value).startswith(
        "unknown model 'sim:no-such-model': the simulator serves sim:writer, "
    )
    assert all(f"sim:{name}" in str(caught.value) for name in SIM_PRICES)


def test_a_priced_catalog_entry_makes_a_sim_model_known() -> None:
    """A sim: model the simulator has no price for resolves when the catalog gives it one."""
    catalog = ModelCatalog.from_yaml(
        "models: {mine: {model: 'sim:custom', price: {input_per_mtok: 1, output_per_mtok: 2}}}"
    )
    assert resolve("sim:custom", catalog).price.output_per_mtok == 2


def test_genai_prices_openai_model() -> None:
    """openai:gpt-4o-mini is priced from genai-prices, non-zero, with its cache-read price."""
    info = resolve("openai:gpt-4o-mini")
    assert info.price_source == "genai-prices"
    assert info.price.input_per_mtok == Decimal("0.15")
    assert info.price.output_per_mtok > 0
    assert info.price.cache_read_per_mtok is not None and info.price.cache_read_per_mtok > 0
    assert info.context_window == 128_000


def test_genai_prices_anthropic_model() -> None:
    """anthropic:claude-sonnet-4-5 is priced from genai-prices at its base tier, non-zero."""
    info = resolve("anthropic:claude-sonnet-4-5")
    assert info.provider == "anthropic"
    assert info.price.input_per_mtok == Decimal(3)
    assert info.price.output_per_mtok == Decimal(15)
    assert info.price.cache_write_per_mtok is not None and info.price.cache_write_per_mtok > 0


def test_genai_price_lookup_is_reproducible() -> None:
    """Resolving the same reference twice gives the same price, whatever the clock says."""
    assert resolve("anthropic:claude-sonnet-4-5") == resolve("anthropic:claude-sonnet-4-5")


def test_openai_compatible_without_catalog_price_is_refused() -> None:
    """An openai-compatible model with no catalog price is refused, with a pointer to the catalog."""
    with pytest.raises(UnknownPriceError) as caught:
        resolve("openai-compatible:llama3")
    message = str(caught.value)
    assert "no known price for openai-compatible:llama3" in message
    assert "HARNESS_CATALOG" in message


def test_unknown_openai_model_is_refused() -> None:
    """An OpenAI model genai-prices does not know is refused rather than counted as free, with the
    way to price it when nothing known is near."""
    with pytest.raises(UnknownModelError) as caught:
        resolve("openai:definitely-not-a-model-xyz")
    message = str(caught.value)
    assert message.startswith(
        "unknown model 'openai:definitely-not-a-model-xyz': genai-prices does not list it"
    )
    assert "did you mean" not in message and "HARNESS_CATALOG" in message


def test_a_misspelt_model_names_the_nearest_known_ones() -> None:
    """A typo in a provider's model, in the provider, or in an alias is refused with the nearest
    references harness knows (genai-prices' models, the simulator's, the catalog's aliases)."""
    with pytest.raises(
        UnknownModelError, match=r"^unknown model 'openai:gpt-4o-mnii': did you mean openai:gpt-4o-mini[ ?]"
    ):
        resolve("openai:gpt-4o-mnii")
    with pytest.raises(UnknownModelError, match=r"did you mean anthropic:claude-sonnet-4-5[ ?]"):
        resolve("anthropic:claude-sonet-4-5")
    with pytest.raises(
        UnknownModelError, match=r"unknown provider 'opnai'.*did you mean openai:gpt-4o-mini[ ?]"
    ):
        resolve("opnai:gpt-4o-mini")
    catalog = ModelCatalog.builtin().merged(ModelCatalog.from_yaml(CATALOG_YAML))
    with pytest.raises(
        UnknownModelError, match=r"neither 'provider:model' nor a catalog alias.*did you mean cheap\?$"
    ):
        resolve("chep", catalog)


def test_a_known_model_without_a_price_keeps_its_message() -> None:
    """A model genai-prices lists with no price per token (an embedding model) is known: refused for
    its price, not as unknown."""
    with pytest.raises(
        UnknownPriceError, match=r"^no known price for openai:text-embedding-3-small; add a price"
    ):
        resolve("openai:text-embedding-3-small")


def test_unknown_provider_names_the_allowed_ones() -> None:
    """An unknown provider prefix is an error that lists the providers we serve."""
    with pytest.raises(UnknownModelError) as caught:
        resolve("mistral:large")
    for provider in ("sim", "openai", "anthropic", "openai-compatible"):
        assert provider in str(caught.value)


def test_bare_name_that_is_no_alias_is_refused() -> None:
    """A reference without a provider prefix must be a catalog alias."""
    with pytest.raises(UnknownModelError):
        resolve("writer")


def test_alias_with_price_override(catalog: ModelCatalog) -> None:
    """A catalog alias resolves to its model with the catalog's price, tier and limits."""
    info = resolve("cheap", catalog)
    assert info.ref == "cheap"
    assert (info.provider, info.model) == ("openai", "gpt-4o-mini")
    assert info.price.input_per_mtok == Decimal("1.25")
    assert info.price_source == "catalog"
    assert info.tier == 0 and info.max_output_tokens == 2048


def test_catalog_prices_a_provider_reference(catalog: ModelCatalog) -> None:
    """A provider:model reference that a catalog entry points at takes that entry's price."""
    info = resolve("openai-compatible:llama3", catalog)
    assert info.price.input_per_mtok == Decimal("0.01")
    assert info.context_window == 8192


def test_alias_of_a_sim_model_keeps_the_simulator_price(catalog: ModelCatalog) -> None:
    """An alias without a price of its own falls back to the built-in entry of its target."""
    info = resolve("drafter", catalog)
    assert info.price == SIM_PRICES["writer"]
    assert info.price_source == "simulator"


def test_catalog_yaml_errors_name_the_field() -> None:
    """A malformed catalog is refused with the offending field named."""
    with pytest.raises(ValueError, match="input_per_mtok"):
        ModelCatalog.from_yaml("models: {x: {model: 'sim:writer', price: {output_per_mtok: 1}}}")


def test_catalog_loads_from_harness_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HARNESS_CATALOG names a YAML file whose entries join the built-in ones."""
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG_YAML)
    monkeypatch.setenv("HARNESS_CATALOG", str(path))
    catalog = load_catalog(ProviderSettings.from_env().catalog_path)
    assert resolve("local", catalog).price.output_per_mtok == Decimal("0.02")
    assert resolve("sim:writer", catalog).price == SIM_PRICES["writer"]


def test_settings_read_the_environment_and_hide_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys come from the environment as secrets: never in a repr or a dump."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-openai-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake-0123456789")
    monkeypatch.setenv("HARNESS_SIM_URL", "http://127.0.0.1:9999/")
    settings = ProviderSettings.from_env()
    assert settings.sim_url == "http://127.0.0.1:9999/"
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "fake-openai" not in text and "sk-ant-fake" not in text
    assert settings.endpoint("openai").base_url == "https://api.openai.com/v1"
    assert settings.endpoint("anthropic").base_url == "https://api.anthropic.com"
    assert settings.endpoint("sim").base_url == "http://127.0.0.1:9999/v1"


def test_without_keys_everything_goes_to_the_simulator() -> None:
    """With no keys or base URLs, every provider is served by the simulator."""
    settings = ProviderSettings.from_env({"HARNESS_SIM_URL": "http://sim:1"})
    assert settings.endpoint("openai").base_url == "http://sim:1/v1"
    assert settings.endpoint("openai-compatible").base_url == "http://sim:1/v1"
    anthropic = settings.endpoint("anthropic")
    assert (anthropic.base_url, anthropic.wire, anthropic.simulated) == ("http://sim:1", "anthropic", True)
    assert settings.endpoint("sim").api_key.get_secret_value() == "sim"


def test_base_urls_win_over_keys() -> None:
    """An explicit base URL routes the provider there; a compatible server needs no key."""
    settings = ProviderSettings.from_env(
        {
            "OPENAI_BASE_URL": "http://proxy/v1",
            "OPENAI_API_KEY": "sk-fake",
            "HARNESS_OPENAI_COMPATIBLE_BASE_URL": "http://vllm:8000/v1",
        }
    )
    assert settings.endpoint("openai").base_url == "http://proxy/v1"
    compatible = settings.endpoint("openai-compatible")
    assert (compatible.base_url, compatible.simulated) == ("http://vllm:8000/v1", False)


def test_unknown_provider_endpoint_is_an_error() -> None:
    """Asking for an endpoint of an unknown provider names the known ones."""
    with pytest.raises(ValueError, match="openai-compatible"):
        ProviderSettings().endpoint("bedrock")
