"""Shapley values of the community's savings: hand-computed games, efficiency, sampling, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.fairness import CoalitionGame, compare_with_settlement, shapley, shapley_from_values
from bright.energy.market import FixedPrice, Tariff, settle
from bright.energy.sharing import (
    AccessPoint,
    EnergyInputError,
    Locality,
    MeterReadings,
    Role,
    SharingKey,
    SharingMethod,
    TariffType,
    share,
)

INDEX = pd.date_range("2024-06-01 10:00", periods=1, freq="15min", tz="UTC")
# a shared kWh saves 0.30 (supplier energy) - 0.05 (feed-in it no longer earns) = 0.25 EUR
TARIFF = Tariff(0.30, 0.05, 0.10, {TariffType.A: 0.04})


def test_three_members_maximum_sharing_by_hand() -> None:
    # P injects 1.0, A and B take 0.6 each.
    # v(P,A) = v(P,B) = 0.6 x 0.25 = 0.15; v(A,B) = 0; v(P,A,B) = 1.0 x 0.25 = 0.25; singletons 0.
    # The six join orders give P: 0, 0, 0.15, 0.15, 0.25, 0.25 -> 0.8 / 6;
    # A: 0 (A first, twice), 0.15 (after P), 0 (after B), 0.10 (last, twice) -> 0.35 / 6; B alike.
    readings = MeterReadings(("P", "A", "B"), np.array([[0.0, 0.6, 0.6]]), np.array([[1.0, 0.0, 0.0]]), INDEX)
    result = shapley(readings, TARIFF, method="maximum")
    assert result.exact
    np.testing.assert_allclose(result.value_eur, [0.8 / 6, 0.35 / 6, 0.35 / 6], atol=1e-12)
    assert result.grand_coalition_eur == pytest.approx(0.25)
    np.testing.assert_array_equal(result.ci95_low_eur, result.value_eur)


def test_three_members_fixed_keys_by_hand() -> None:
    # P injects 1.0, A takes 0.2, B takes 1.0, keys 1/2 each (renormalised inside a coalition).
    # v(P,A): A has the whole key, takes 0.2 -> 0.05; v(P,B): B takes 1.0 -> 0.25; v(A,B) = 0;
    # v(N): offers 0.5 each, A takes 0.2, B 0.5 -> 0.7 x 0.25 = 0.175.
    # P: 0, 0, 0.05, 0.25, 0.175, 0.175 -> 0.65 / 6
    # A: 0, 0, 0.05, 0, 0.175 - 0.25, 0.175 - 0.25 -> -0.10 / 6 (A's key wastes energy B could use)
    # B: 0, 0, 0.25, 0, 0.175 - 0.05, 0.175 - 0.05 -> 0.50 / 6
    readings = MeterReadings(("P", "A", "B"), np.array([[0.0, 0.2, 1.0]]), np.array([[1.0, 0.0, 0.0]]), INDEX)
    result = shapley(readings, TARIFF, method="fixed", key=SharingKey.equal(["A", "B"]))
    np.testing.assert_allclose(result.value_eur, [0.65 / 6, -0.10 / 6, 0.50 / 6], atol=1e-12)
    assert result.value_eur.sum() == pytest.approx(0.175)


def test_tariff_type_of_each_coalition() -> None:
    # P and A in building b1 (type A, reduction 0.04 EUR/kWh), B elsewhere (any group with B is D).
    # v(P,A) = 0.6 x (0.25 + 0.04) = 0.174; v(P,B) = 0.6 x 0.25 = 0.15; v(N) = 1.0 x 0.25 = 0.25.
    # P: 0.174 + 0.15 + 2 x 0.25 = 0.824 / 6; A: 0.174 + 2 x (0.25 - 0.15) = 0.374 / 6;
    # B: 0.15 + 2 x (0.25 - 0.174) = 0.302 / 6.
    readings = MeterReadings(("P", "A", "B"), np.array([[0.0, 0.6, 0.6]]), np.array([[1.0, 0.0, 0.0]]), INDEX)
    points = [
        AccessPoint("P", Role.PRODUCER, Locality("b1", "c1", "s1")),
        AccessPoint("A", Role.CONSUMER, Locality("b1", "c1", "s1")),
        AccessPoint("B", Role.CONSUMER, Locality("b2", "c2", "s2")),
    ]
    result = shapley(readings, TARIFF, method="maximum", access_points=points)
    np.testing.assert_allclose(result.value_eur, [0.824 / 6, 0.374 / 6, 0.302 / 6], atol=1e-12)
    # without localities every coalition takes the given type
    as_a = shapley(readings, TARIFF, method="maximum", group_type=TariffType.A)
    assert as_a.grand_coalition_eur == pytest.approx(1.0 * 0.29)


def test_shapley_from_values_known_games() -> None:
    # symmetric game v(S) = |S|^2 over 3 players: each gets 9 / 3
    sizes = np.array([bin(c).count("1") for c in range(8)], dtype=float)
    np.testing.assert_allclose(shapley_from_values(sizes**2), [3.0, 3.0, 3.0])
    # glove game: player 0 holds a left glove, players 1 and 2 right gloves; a pair is worth 1.
    # phi = (2/3, 1/6, 1/6)
    glove = np.array([0, 0, 0, 1, 0, 1, 0, 1], dtype=float)
    np.testing.assert_allclose(shapley_from_values(glove), [2 / 3, 1 / 6, 1 / 6])
    with pytest.raises(EnergyInputError, match="need 2\\*\\*n coalition values"):
        shapley_from_values(np.zeros(5))


def _random_readings(seed: int, n: int, t: int = 6) -> MeterReadings:
    rng = np.random.default_rng(seed)
    offtake = np.round(rng.gamma(1.0, 0.3, (t, n)), 3)
    injection = np.where(rng.random((t, n)) < 0.4, np.round(rng.gamma(1.0, 0.6, (t, n)), 3), 0.0)
    index = pd.date_range("2024-06-01", periods=t, freq="15min", tz="UTC")
    return MeterReadings(tuple(f"m{i}" for i in range(n)), offtake, injection, index)


def test_exact_enumeration_equals_all_join_orders() -> None:
    readings = _random_readings(7, 4)
    key = SharingKey({"m0": 0.4, "m1": 0.3, "m2": 0.2, "m3": 0.1})
    game = CoalitionGame.from_readings(readings, TARIFF, method="fixed_multi_round", key=key)
    exact = shapley(readings, TARIFF, method="fixed_multi_round", key=key).value_eur
    brute = np.zeros(4)
    for order in itertools.permutations(range(4)):
        mask = np.zeros((1, 4), dtype=bool)
        before = 0.0
        for member in order:
            mask[0, member] = True
            now = float(game.values(mask)[0])
            brute[member] += now - before
            before = now
    np.testing.assert_allclose(exact, brute / math.factorial(4), atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 6), method=st.sampled_from(list(SharingMethod)))
def test_efficiency_and_consistency_with_sharing(seed: int, n: int, method: SharingMethod) -> None:
    readings = _random_readings(seed, n)
    key = SharingKey.equal(readings.member_ids)
    result = shapley(readings, TARIFF, method=method, key=key)
    # efficiency: the values share out exactly the grand coalition's savings
    assert result.value_eur.sum() == pytest.approx(result.grand_coalition_eur, abs=1e-9)
    # v(N) is what the sharing module gives the whole community, valued at the spread
    sharing = share(readings, method, key=key)
    assert result.grand_coalition_eur == pytest.approx(float(np.sum(sharing.shared_kwh) * 0.25), abs=1e-9)
    # with a fixed community price the settled savings add up to v(N) as well
    table = compare_with_settlement(result, settle(sharing, TARIFF, FixedPrice(0.2)))
    assert table["settled_savings_eur"].sum() == pytest.approx(result.grand_coalition_eur, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 5),
    method=st.sampled_from(["fixed", "pro_rata", "maximum"]),
)
def test_closed_form_totals_equal_full_allocation(seed: int, n: int, method: str) -> None:
    readings = _random_readings(seed, n)
    key = SharingKey({m: (i + 1) / (n * (n + 1) / 2) for i, m in enumerate(readings.member_ids)})
    game = CoalitionGame.from_readings(readings, TARIFF, method=method, key=key)
    masks = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
    np.testing.assert_allclose(
        game.shared_volumes(masks), game.shared_volumes(masks, closed_form=False), atol=1e-12
    )


def test_symmetry_and_null_player() -> None:
    # A and B are identical consumers; N has no readings at all.
    t = 4
    offtake = np.array([[0.0, 0.5, 0.5, 0.0]] * t)
    injection = np.array([[0.8, 0.0, 0.0, 0.0]] * t)
    readings = MeterReadings(("P", "A", "B", "N"), offtake, injection)
    for method in ("maximum", "pro_rata"):
        result = shapley(readings, TARIFF, method=method)
        assert result.value_eur[1] == pytest.approx(result.value_eur[2], abs=1e-12)
        assert result.value_eur[3] == pytest.approx(0.0, abs=1e-12)


def test_sampling_beyond_the_exact_limit() -> None:
    readings = _random_readings(11, 6, t=8)
    key = SharingKey.equal(readings.member_ids)
    exact = shapley(readings, TARIFF, method="fixed", key=key)
    sampled = shapley(
        readings, TARIFF, method="fixed", key=key, exact_max_members=4, n_permutations=3000, seed=1
    )
    assert not sampled.exact and sampled.n_permutations == 3000
    # permutation sampling keeps efficiency exactly
    assert sampled.value_eur.sum() == pytest.approx(exact.grand_coalition_eur, abs=1e-9)
    assert sampled.grand_coalition_eur == pytest.approx(exact.grand_coalition_eur)
    # the 95 % intervals contain the exact values and are narrow
    assert (
        (sampled.ci95_low_eur <= exact.value_eur + 1e-12) & (exact.value_eur <= sampled.ci95_high_eur + 1e-12)
    ).all()
    assert (sampled.ci95_high_eur - sampled.ci95_low_eur).max() < 0.1 * abs(exact.grand_coalition_eur)
    again = shapley(
        readings, TARIFF, method="fixed", key=key, exact_max_members=4, n_permutations=3000, seed=1
    )
    np.testing.assert_array_equal(again.value_eur, sampled.value_eur)
    frame = sampled.to_frame()
    assert list(frame.columns) == ["shapley_eur", "ci95_low_eur", "ci95_high_eur"]


def test_missing_intervals_are_excluded() -> None:
    offtake = np.array([[0.0, 0.6, 0.6], [0.0, np.nan, 0.6]])
    injection = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    readings = MeterReadings(("P", "A", "B"), offtake, injection)
    result = shapley(readings, TARIFF, method="maximum")
    assert result.excluded_intervals == 1
    np.testing.assert_allclose(result.value_eur, [0.8 / 6, 0.35 / 6, 0.35 / 6], atol=1e-12)


def test_bad_input() -> None:
    readings = _random_readings(1, 3)
    with pytest.raises(EnergyInputError, match="needs a sharing key"):
        shapley(readings, TARIFF, method="fixed")
    with pytest.raises(EnergyInputError, match="n_permutations must be >= 2"):
        shapley(readings, TARIFF, method="maximum", exact_max_members=1, n_permutations=1)
    with pytest.raises(EnergyInputError, match="access point 'zz' has no meter readings"):
        shapley(
            readings,
            TARIFF,
            method="maximum",
            access_points=[AccessPoint(m) for m in ("m0", "m1", "m2", "zz")],
        )
    with pytest.raises(EnergyInputError, match="coalition masks have 2 columns for 3 members"):
        CoalitionGame.from_readings(readings, TARIFF, method="maximum").values(np.ones((1, 2), dtype=bool))
    with pytest.raises(EnergyInputError, match="not about the same members"):
        other = share(_random_readings(1, 4), "maximum")
        compare_with_settlement(
            shapley(readings, TARIFF, method="maximum"), settle(other, TARIFF, FixedPrice(0.1))
        )
