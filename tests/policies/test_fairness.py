"""Token-weighted fairness: the weights that make Temporal's task-count fairness serve tokens in
proportion to the tenants' own weights."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.fairness import MAX_WEIGHT, MIN_WEIGHT, TenantTally, changed, decayed, token_weights, tpm_rate


def test_calls_four_times_larger_get_a_quarter_of_the_weight_once_shares_are_even() -> None:
    """Equal tenants whose calls differ 4x in tokens, served even token shares so far: the light
    one gets four dispatches for each of the heavy one's."""
    weights = token_weights(
        {"heavy": TenantTally(calls=10, tokens=4000), "light": TenantTally(calls=40, tokens=4000)}
    )
    assert weights == {"heavy": 1.0, "light": pytest.approx(4.0)}


def test_a_tenant_behind_its_share_catches_up_and_one_ahead_is_held_back() -> None:
    """Served at equal counts (the heavy tenant has 80% of the tokens), the light tenant's weight
    goes past the steady 4x, by the root of its shortfall (2.5 -> 1.58) and the heavy's excess."""
    weights = token_weights(
        {"heavy": TenantTally(calls=10, tokens=4000), "light": TenantTally(calls=10, tokens=1000)}
    )
    assert weights["heavy"] == 1.0
    assert weights["light"] == pytest.approx(4 * (2.5**0.5) / (0.625**0.5))


def test_base_weights_set_the_token_shares() -> None:
    """A tenant of weight 3 with calls as large as a tenant of weight 1's, already at a 3:1 token
    share, keeps a 3:1 weight."""
    weights = token_weights(
        {
            "big": TenantTally(base_weight=3, calls=30, tokens=3000),
            "small": TenantTally(base_weight=1, calls=10, tokens=1000),
        }
    )
    assert weights == {"big": pytest.approx(3.0), "small": 1.0}


def test_tenants_with_nothing_served_get_no_weight() -> None:
    assert token_weights({"idle": TenantTally(), "busy": TenantTally(calls=1, tokens=10)}) == {"busy": 1.0}
    assert token_weights({}) == {}


def test_decay_halves_a_window_every_half_life() -> None:
    tally = decayed(TenantTally(calls=8, tokens=800), elapsed_s=120, half_life_s=60)
    assert (tally.calls, tally.tokens) == (2, 200)


def test_only_a_real_change_is_written() -> None:
    assert not changed({"a": 1.0, "b": 4.0}, {"a": 1.0, "b": 4.3})
    assert changed({"a": 1.0, "b": 4.0}, {"a": 1.0, "b": 4.5})
    assert changed({"a": 1.0}, {"a": 1.0, "b": 1.0})


tallies = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.builds(
        TenantTally,
        base_weight=st.floats(0.01, 100),
        calls=st.floats(0, 1e6),
        tokens=st.floats(0, 1e9),
    ),
    max_size=8,
)


@given(tallies)
def test_weights_stay_in_temporals_range_with_the_lightest_at_one(tally: dict[str, TenantTally]) -> None:
    weights = token_weights(tally)
    assert set(weights) == {t for t, v in tally.items() if v.calls >= 1e-6 and v.tokens >= 1e-6}
    assert all(MIN_WEIGHT <= w <= MAX_WEIGHT for w in weights.values())
    if weights:
        assert min(weights.values()) == 1.0


def test_a_tpm_is_held_through_the_request_rate() -> None:
    """24,000 tokens a minute at 200 tokens a call is 2 requests a second; never above the rps; no
    rate without a tpm or a call to size."""
    assert tpm_rate(50, 24000, 200) == 2.0
    assert tpm_rate(1, 24000, 200) == 1
    assert tpm_rate(50, None, 200) is None and tpm_rate(50, 24000, None) is None
