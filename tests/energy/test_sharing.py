"""Energy sharing keys: worked examples, a naive reference implementation, invariants, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from bright.energy.sharing import (
    AccessPoint,
    EnergyInputError,
    Locality,
    MeterReadings,
    Role,
    SharingKey,
    SharingMethod,
    TariffType,
    allocate,
    share,
    share_fixed,
    share_fixed_multi_round,
    share_hybrid,
    share_maximum,
    share_pro_rata,
    tariff_type,
    to_wh,
)

ALL_METHODS = list(SharingMethod)
KEYED = [SharingMethod.FIXED, SharingMethod.FIXED_MULTI_ROUND, SharingMethod.HYBRID]


def readings_1x(offtake: list[float], injection: list[float], ids: str = "PABC") -> MeterReadings:
    return MeterReadings(tuple(ids[: len(offtake)]), np.array([offtake]), np.array([injection]))


# ------------------------------------------------------------------------------------------------
# Worked examples (one interval, computed by hand)
# ------------------------------------------------------------------------------------------------

# The issue's example: producer P injects 2.0 kWh; A, B, C take 0.1, 0.5, 1.0 kWh; keys 1/3 each.
ISSUE = readings_1x([0.0, 0.1, 0.5, 1.0], [2.0, 0.0, 0.0, 0.0])
THIRDS = SharingKey.equal(["A", "B", "C"])


def test_issue_example_fixed_single_round() -> None:
    # each consumer is offered 2.0 / 3 = 0.6667 kWh and takes min(offer, offtake):
    # A 0.1, B 0.5, C 0.6667; unallocated 2.0 - 1.2667 = 0.7333 kWh goes back to P.
    result = share_fixed(ISSUE, THIRDS)
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0.0, 0.1, 0.5, 2 / 3]], atol=1e-12)
    np.testing.assert_allclose(
        result.returned_injection_kwh, [[2.0 - 0.1 - 0.5 - 2 / 3, 0, 0, 0]], atol=1e-12
    )
    wh = to_wh(result)
    assert wh.shared_offtake_wh.tolist() == [[0, 100, 500, 667]]
    assert wh.shared_injection_wh.tolist() == [[1267, 0, 0, 0]]
    assert wh.returned_injection_wh.tolist() == [[733, 0, 0, 0]]
    assert result.rounds == 1


def test_issue_example_maximum_sharing() -> None:
    # the pool (2.0) exceeds the total offtake (1.6): everybody is served, 0.4 kWh goes back.
    result = share_maximum(ISSUE)
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0.0, 0.1, 0.5, 1.0]], atol=1e-12)
    np.testing.assert_allclose(result.returned_injection_kwh, [[0.4, 0, 0, 0]], atol=1e-12)
    assert to_wh(result).returned_injection_wh.tolist() == [[400, 0, 0, 0]]


def test_issue_example_multi_round() -> None:
    # round 1 as single round, 0.7333 left; round 2: only C can take more, key renormalised to 1:
    # offered 0.7333, takes its remaining 1.0 - 0.6667 = 0.3333; 0.4 left, nobody can take it.
    result = share_fixed_multi_round(ISSUE, THIRDS)
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0.0, 0.1, 0.5, 1.0]], atol=1e-12)
    np.testing.assert_allclose(result.returned_injection_kwh, [[0.4, 0, 0, 0]], atol=1e-12)
    assert result.rounds == 2


# Second example: P injects 1.0; A, B, C take 0.2, 0.6, 0.6; keys 50 / 25 / 25 %.
UNEVEN = readings_1x([0.0, 0.2, 0.6, 0.6], [1.0, 0.0, 0.0, 0.0])
HALF_QUARTERS = SharingKey.from_percent({"A": 50, "B": 25, "C": 25})


def test_uneven_keys_single_round() -> None:
    # offers 0.5 / 0.25 / 0.25 -> A takes 0.2 (capped), B and C 0.25; 0.3 returns to P.
    result = share_fixed(UNEVEN, HALF_QUARTERS)
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0, 0.2, 0.25, 0.25]], atol=1e-12)
    np.testing.assert_allclose(result.returned_injection_kwh, [[0.3, 0, 0, 0]], atol=1e-12)


def test_uneven_keys_multi_round() -> None:
    # round 2: 0.3 re-offered to B and C (keys 0.25 / 0.25 -> 1/2 each): 0.15 each, both can take it.
    result = share_fixed_multi_round(UNEVEN, HALF_QUARTERS)
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0, 0.2, 0.4, 0.4]], atol=1e-12)
    np.testing.assert_allclose(result.returned_injection_kwh, [[0, 0, 0, 0]], atol=1e-12)


def test_pro_rata() -> None:
    # dynamic key = offtake / total offtake = 0.2/1.4, 0.6/1.4, 0.6/1.4 of the 1.0 kWh pool:
    # 0.142857, 0.428571, 0.428571; all of the pool is placed.
    result = share_pro_rata(UNEVEN)
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0, 0.2 / 1.4, 0.6 / 1.4, 0.6 / 1.4]], atol=1e-12)
    assert to_wh(result).shared_offtake_wh.tolist() == [[0, 143, 428, 429]] or to_wh(
        result
    ).shared_offtake_wh.tolist() == [[0, 143, 429, 428]]


def test_hybrid_half_fixed() -> None:
    # half of the pool (0.5) by keys: offers 0.25 / 0.125 / 0.125 -> A 0.2, B 0.125, C 0.125, 0.05 left.
    # the rest (0.05 + 0.5 = 0.55) pro rata to the remaining offtake 0 / 0.475 / 0.475: 0.275 each.
    result = share_hybrid(UNEVEN, HALF_QUARTERS, fixed_fraction=0.5)
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0, 0.2, 0.4, 0.4]], atol=1e-12)


def test_hybrid_fixed_then_pro_rata() -> None:
    # fixed_fraction 1: single round as above (0.2, 0.25, 0.25, 0.3 left), then 0.3 pro rata to the
    # remaining offtake 0 / 0.35 / 0.35 -> 0.15 each.
    result = share_hybrid(ISSUE, THIRDS)
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0, 0.1, 0.5, 1.0]], atol=1e-12)
    result = share_hybrid(UNEVEN, HALF_QUARTERS)
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0, 0.2, 0.4, 0.4]], atol=1e-12)


def test_two_producers_return_in_proportion_to_injection() -> None:
    # P1 injects 1.0, P2 3.0 (pool 4.0); A and B take 1.0 each, keys 1/2: offers 2.0 each, takes 1.0.
    # 2.0 placed, 2.0 returned: 0.5 to P1 and 1.5 to P2 (1 : 3 like their injection).
    readings = MeterReadings(
        ("P1", "P2", "A", "B"), np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[1.0, 3.0, 0.0, 0.0]])
    )
    for method in ALL_METHODS:
        result = share(readings, method, key=SharingKey.equal(["A", "B"]))
        np.testing.assert_allclose(result.returned_injection_kwh, [[0.5, 1.5, 0, 0]], atol=1e-12)
        np.testing.assert_allclose(result.shared_offtake_kwh, [[0, 0, 1.0, 1.0]], atol=1e-12)


def test_prosumer_does_not_share_with_itself() -> None:
    # A injects 1.0 and takes 0.5; B takes 0.2; keys 1/2. A is offered 1/2 of the OTHERS' injection
    # (0.0); B is offered 0.5 and takes 0.2. A's own key share of its injection is not offered.
    readings = MeterReadings(("A", "B"), np.array([[0.5, 0.2]]), np.array([[1.0, 0.0]]))
    key = SharingKey.equal(["A", "B"])
    for method in ALL_METHODS:
        result = share(readings, method, key=key)
        np.testing.assert_allclose(result.shared_offtake_kwh, [[0.0, 0.2]], atol=1e-12)
        np.testing.assert_allclose(result.shared_injection_kwh, [[0.2, 0.0]], atol=1e-12)


def test_two_prosumers_per_producer_accounting() -> None:
    # A injects 1.0, takes 0.4; B injects 1.0, takes 2.0; keys 1/2.
    # single round: A offered 0.5 x B's 1.0 = 0.5, takes 0.4; B offered 0.5 x A's 1.0 = 0.5, takes it.
    # A's injection placed: what B took (0.5); B's injection placed: what A took (0.4).
    # (a pure pro-rata return, 0.45 placed each, would let B "give" 0.45 to A who only took 0.4 from B.)
    readings = MeterReadings(("A", "B"), np.array([[0.4, 2.0]]), np.array([[1.0, 1.0]]))
    key = SharingKey.equal(["A", "B"])
    single = share_fixed(readings, key)
    np.testing.assert_allclose(single.shared_offtake_kwh, [[0.4, 0.5]], atol=1e-12)
    np.testing.assert_allclose(single.shared_injection_kwh, [[0.5, 0.4]], atol=1e-12)
    # round 2: A's remaining 0.5 goes to B (the only other eligible member): B gets 1.0 in total.
    multi = share_fixed_multi_round(readings, key)
    np.testing.assert_allclose(multi.shared_offtake_kwh, [[0.4, 1.0]], atol=1e-12)
    np.testing.assert_allclose(multi.shared_injection_kwh, [[1.0, 0.4]], atol=1e-12)
    # maximum: min(G=2, O=2.4, G + O - max(g + o) = 4.4 - 3.0 = 1.4) = 1.4
    maximum = share_maximum(readings)
    assert maximum.shared_kwh[0] == pytest.approx(1.4, abs=1e-12)


def test_roles_mask_registers() -> None:
    # C is a consumer with a stray injection reading: its injection does not join the pool.
    # P is a producer with some offtake (auxiliaries): it receives nothing.
    readings = MeterReadings(("P", "A", "C"), np.array([[0.3, 1.0, 1.0]]), np.array([[1.0, 0.0, 0.6]]))
    points = [
        AccessPoint("P", Role.PRODUCER),
        AccessPoint("A", Role.CONSUMER),
        AccessPoint("C", Role.CONSUMER),
    ]
    result = share(readings, "fixed", key=SharingKey.equal(["A", "C"]), access_points=points)
    # pool = P's 1.0 only: 0.5 each to A and C
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0.0, 0.5, 0.5]], atol=1e-12)
    np.testing.assert_allclose(result.returned_injection_kwh, [[0.0, 0.0, 0.6]], atol=1e-12)


def test_missing_reading_leaves_interval_unshared() -> None:
    offtake = np.array([[0.0, 0.1, 0.5, 1.0], [0.0, np.nan, 0.5, 1.0], [0.0, 0.2, 0.2, 0.2]])
    injection = np.array([[2.0, 0, 0, 0], [2.0, 0, 0, 0], [0.3, 0, 0, 0]])
    readings = MeterReadings(tuple("PABC"), offtake, injection)
    for method in ALL_METHODS:
        result = share(readings, method, key=THIRDS)
        assert result.missing.tolist() == [False, True, False]
        assert np.isnan(result.shared_offtake_kwh[1]).all()
        assert np.isnan(result.shared_injection_kwh[1]).all()
        complete = share(MeterReadings(tuple("PABC"), offtake[[0, 2]], injection[[0, 2]]), method, key=THIRDS)
        np.testing.assert_array_equal(result.shared_offtake_kwh[[0, 2]], complete.shared_offtake_kwh)
        assert np.isnan(result.shared_kwh[1])


def test_nan_in_non_participating_register_is_ignored() -> None:
    readings = MeterReadings(("P", "A"), np.array([[np.nan, 0.5]]), np.array([[1.0, np.nan]]))
    points = [AccessPoint("P", Role.PRODUCER), AccessPoint("A", Role.CONSUMER)]
    result = share(readings, "pro_rata", access_points=points)
    assert not result.missing.any()
    np.testing.assert_allclose(result.shared_offtake_kwh, [[0.0, 0.5]])


def test_results_do_not_depend_on_chunking_or_threads() -> None:
    rng = np.random.default_rng(3)
    offtake = rng.gamma(1.0, 0.2, (50, 6))
    injection = np.where(rng.random((50, 6)) < 0.4, rng.gamma(1.0, 0.5, (50, 6)), 0.0)
    readings = MeterReadings(tuple("abcdef"), offtake, injection)
    key = SharingKey({"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4})
    for method in ALL_METHODS:
        base = share(readings, method, key=key)
        other = share(readings, method, key=key, chunk_intervals=7, workers=2)
        np.testing.assert_array_equal(base.shared_offtake_kwh, other.shared_offtake_kwh)
        np.testing.assert_array_equal(base.shared_injection_kwh, other.shared_injection_kwh)


def test_max_rounds_bounds_the_iteration() -> None:
    capped = share(ISSUE, "fixed_multi_round", key=THIRDS, max_rounds=1)
    np.testing.assert_allclose(capped.shared_offtake_kwh, share_fixed(ISSUE, THIRDS).shared_offtake_kwh)


# ------------------------------------------------------------------------------------------------
# Locality and tariff types
# ------------------------------------------------------------------------------------------------


def test_tariff_type_is_the_least_local_level() -> None:
    def point(i: str, building: str | None, cabin: str | None, sub: str | None) -> AccessPoint:
        return AccessPoint(i, Role.PROSUMER, Locality(building, cabin, sub))

    same_building = [point("a", "b1", "c1", "s1"), point("b", "b1", "c1", "s1")]
    same_cabin = [point("a", "b1", "c1", "s1"), point("b", "b2", "c1", "s1")]
    same_sub = [point("a", "b1", "c1", "s1"), point("b", "b2", "c2", "s1")]
    beyond = [point("a", "b1", "c1", "s1"), point("b", "b2", "c2", "s2")]
    unknown = [point("a", None, None, None), point("b", None, None, None)]
    assert tariff_type(same_building) is TariffType.A
    assert tariff_type(same_cabin) is TariffType.B
    assert tariff_type(same_sub) is TariffType.C
    assert tariff_type(beyond) is TariffType.D
    assert tariff_type(unknown) is TariffType.D
    # one member in another building makes the whole group B
    assert tariff_type([*same_building, point("c", "b9", "c1", "s1")]) is TariffType.B


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def test_keys_must_sum_to_100_percent() -> None:
    with pytest.raises(EnergyInputError, match=r"sum to 90 % instead of 100 %"):
        SharingKey.from_percent({"A": 50, "B": 40})
    SharingKey.from_percent({"A": 50, "B": 50.00000001})  # within tolerance


def test_negative_key_is_named() -> None:
    with pytest.raises(EnergyInputError, match=r"member 'B'.*-0.1"):
        SharingKey({"A": 1.1, "B": -0.1})


def test_negative_reading_names_member_and_interval() -> None:
    index = pd.date_range("2024-05-01", periods=2, freq="15min", tz="UTC")
    with pytest.raises(EnergyInputError, match=r"offtake_kwh of member 'B' at interval 1 \(2024-05-01T00:15"):
        MeterReadings(("A", "B"), np.array([[0.1, 0.2], [0.1, -0.2]]), np.zeros((2, 2)), index)
    with pytest.raises(EnergyInputError, match=r"injection_kwh of member 'A' at interval 0"):
        MeterReadings(("A", "B"), np.zeros((2, 2)), np.array([[-1.0, 0], [0, 0]]))


def test_infinite_reading_is_rejected() -> None:
    with pytest.raises(
        EnergyInputError, match=r"injection_kwh of member 'B' at interval 0 \(row 0\) is infinite"
    ):
        MeterReadings(("A", "B"), np.zeros((1, 2)), np.array([[0.0, np.inf]]))


def test_key_for_member_without_meter() -> None:
    with pytest.raises(EnergyInputError, match=r"'D', which has no meter"):
        share_fixed(ISSUE, SharingKey.equal(["A", "B", "D"]))


def test_access_point_without_meter_and_meter_without_access_point() -> None:
    points = [AccessPoint(m) for m in "PABCX"]
    with pytest.raises(EnergyInputError, match=r"access point 'X' has no meter readings"):
        share_pro_rata(ISSUE, access_points=points)
    with pytest.raises(EnergyInputError, match=r"meter 'C' is not an access point"):
        share_pro_rata(ISSUE, access_points=[AccessPoint(m) for m in "PAB"])


def test_key_to_a_producer_only_access_point() -> None:
    points = [AccessPoint("P", Role.PRODUCER)] + [AccessPoint(m, Role.CONSUMER) for m in "ABC"]
    with pytest.raises(EnergyInputError, match=r"to 'P', a producer-only access point"):
        share_fixed(ISSUE, SharingKey.equal(["P", "A"]), access_points=points)


def test_mismatched_shapes() -> None:
    with pytest.raises(EnergyInputError, match=r"injection_kwh has shape \(1, 3\)"):
        MeterReadings(("A", "B", "C"), np.zeros((2, 3)), np.zeros((1, 3)))
    with pytest.raises(EnergyInputError, match=r"3 meter columns but 2 member ids"):
        MeterReadings(("A", "B"), np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(EnergyInputError, match=r"member 'A' appears twice"):
        MeterReadings(("A", "A"), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(EnergyInputError, match=r"index has 3 timestamps but readings have 2"):
        MeterReadings(("A",), np.zeros((2, 1)), np.zeros((2, 1)), pd.date_range("2024", periods=3, tz="UTC"))
    with pytest.raises(EnergyInputError, match=r"timezone-aware"):
        MeterReadings(("A",), np.zeros((2, 1)), np.zeros((2, 1)), pd.date_range("2024", periods=2))


def test_from_frames_checks_members_and_time_ranges() -> None:
    index = pd.date_range("2024-05-01", periods=4, freq="15min", tz="UTC")
    offtake = pd.DataFrame({"A": [0.1] * 4, "B": [0.2] * 4}, index=index)
    injection = pd.DataFrame({"A": [0.0] * 4, "B": [0.5] * 4}, index=index)
    readings = MeterReadings.from_frames(offtake, injection[["B", "A"]])  # column order follows offtake
    assert readings.member_ids == ("A", "B")
    np.testing.assert_array_equal(readings.injection_kwh[0], [0.0, 0.5])
    with pytest.raises(EnergyInputError, match=r"member 'B' has an offtake series but no injection series"):
        MeterReadings.from_frames(offtake, injection[["A"]])
    shifted = injection.set_axis(index + pd.Timedelta("15min"))
    with pytest.raises(EnergyInputError, match=r"different time ranges: offtake 2024-05-01T00:00:00\+00:00"):
        MeterReadings.from_frames(offtake, shifted)


def test_method_needs_key() -> None:
    for method in KEYED:
        with pytest.raises(EnergyInputError, match="needs a sharing key"):
            share(ISSUE, method)


def test_to_wh_refuses_unshared_intervals() -> None:
    readings = MeterReadings(("P", "A"), np.array([[0.0, np.nan]]), np.array([[1.0, 0.0]]))
    with pytest.raises(EnergyInputError, match=r"interval 0 \(row 0\) was not shared"):
        to_wh(share_pro_rata(readings))


# ------------------------------------------------------------------------------------------------
# Naive reference: per interval, explicit producer -> consumer flows (no vectorisation tricks)
# ------------------------------------------------------------------------------------------------


def _cap(offers: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Each consumer takes at most its room, in proportion from every producer's offer."""
    flows = np.zeros_like(offers)
    for m in range(offers.shape[1]):
        total = offers[:, m].sum()
        if total > 0:
            flows[:, m] = offers[:, m] * min(1.0, room[m] / total)
    return flows


def _reference_interval(
    off: np.ndarray, inj: np.ndarray, method: SharingMethod, key: np.ndarray, fraction: float
) -> np.ndarray:
    n = off.size
    flows = np.zeros((n, n))

    def single(pool: np.ndarray, room: np.ndarray, weights: np.ndarray) -> np.ndarray:
        offers = np.zeros((n, n))
        for p in range(n):
            for m in range(n):
                if p != m:
                    offers[p, m] = weights[m] * pool[p]
        return _cap(offers, room)

    if method is SharingMethod.PRO_RATA:
        total = off.sum()
        return single(inj, off, off / total if total > 0 else np.zeros(n))
    if method is SharingMethod.FIXED:
        return single(inj, off, key)
    if method is SharingMethod.HYBRID:
        flows = single(inj * fraction, off, key)
        pool, room = inj - flows.sum(axis=1), off - flows.sum(axis=0)
        total = room.sum()
        return flows + single(pool, room, room / total if total > 0 else np.zeros(n))
    if method is SharingMethod.FIXED_MULTI_ROUND:
        flows = single(inj, off, key)
        for _ in range(n + 1):
            pool, room = inj - flows.sum(axis=1), off - flows.sum(axis=0)
            eligible = (room > 1e-15) & (key > 0)
            offers = np.zeros((n, n))
            for p in range(n):
                z = sum(key[m] for m in range(n) if eligible[m] and m != p)
                for m in range(n):
                    if eligible[m] and m != p and z > 0:
                        offers[p, m] = pool[p] * key[m] / z
            if offers.sum() < 1e-12:
                break
            flows = flows + _cap(offers, room)
        return flows
    raise AssertionError(method)


def _max_flow(off: np.ndarray, inj: np.ndarray) -> float:
    """Maximum shareable volume by linear programming (flows p -> m, p != m)."""
    n = off.size
    pairs = [(p, m) for p in range(n) for m in range(n) if p != m]
    if not pairs:
        return 0.0
    rows = np.zeros((2 * n, len(pairs)))
    for j, (p, m) in enumerate(pairs):
        rows[p, j] = 1.0
        rows[n + m, j] = 1.0
    lp = linprog(-np.ones(len(pairs)), A_ub=rows, b_ub=np.concatenate([inj, off]), method="highs")
    assert lp.status == 0
    return float(-lp.fun)


# ------------------------------------------------------------------------------------------------
# Random communities
# ------------------------------------------------------------------------------------------------


@st.composite
def communities(draw: st.DrawFn, *, prosumers: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 6))
    t = draw(st.integers(1, 4))
    wh = st.one_of(st.just(0), st.integers(0, 3000))
    offtake = np.array(draw(st.lists(wh, min_size=n * t, max_size=n * t)), dtype=float).reshape(t, n) / 1000
    injection = np.array(draw(st.lists(wh, min_size=n * t, max_size=n * t)), dtype=float).reshape(t, n) / 1000
    if not prosumers:
        producer = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        offtake[:, producer] = 0.0
        injection[:, ~producer] = 0.0
    weights = np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=float)
    if weights.sum() == 0:
        weights[draw(st.integers(0, n - 1))] = 1.0
    return offtake, injection, weights / weights.sum()


def _run(offtake: np.ndarray, injection: np.ndarray, key: np.ndarray, method: SharingMethod):
    ids = tuple(f"m{i}" for i in range(offtake.shape[1]))
    readings = MeterReadings(ids, offtake, injection)
    sharing_key = SharingKey({i: k for i, k in zip(ids, key, strict=True) if k > 0})
    return share(readings, method, key=sharing_key, fixed_fraction=0.6)


@settings(max_examples=150, deadline=None)
@given(community=communities())
def test_invariants_of_every_method(community: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    offtake, injection, key = community
    tol = 1e-9
    maximum = _run(offtake, injection, key, SharingMethod.MAXIMUM)
    for method in ALL_METHODS:
        result = _run(offtake, injection, key, method)
        got, gave = result.shared_offtake_kwh, result.shared_injection_kwh
        # non-negative, nobody receives more than its offtake or gives more than its injection
        assert (got >= -tol).all() and (gave >= -tol).all()
        assert (got <= offtake + tol).all()
        assert (gave <= injection + tol).all()
        # energy conserved: everything received was given; shared + returned == injection
        np.testing.assert_allclose(got.sum(axis=1), gave.sum(axis=1), atol=tol)
        np.testing.assert_allclose(gave + result.returned_injection_kwh, injection, atol=tol)
        # no self-sharing: a zero-diagonal flow exists (Gale's conditions for the bipartite transport)
        assert (got <= gave.sum(axis=1, keepdims=True) - gave + tol).all()
        assert (gave <= got.sum(axis=1, keepdims=True) - got + tol).all()
        # never more than the maximum sharing
        assert (result.shared_kwh <= maximum.shared_kwh + tol).all()
        # to the Wh: the integer result conserves energy exactly and respects the readings
        wh = to_wh(result)
        assert (wh.shared_offtake_wh.sum(axis=1) == wh.shared_injection_wh.sum(axis=1)).all()
        assert (wh.shared_offtake_wh <= np.rint(offtake * 1000)).all()
        assert (wh.returned_injection_wh >= 0).all()
        assert (np.abs(wh.shared_offtake_wh - got * 1000) < 1.0).all()


@settings(max_examples=120, deadline=None)
@given(community=communities())
def test_vectorised_equals_naive_reference(community: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    offtake, injection, key = community
    for method in (
        SharingMethod.FIXED,
        SharingMethod.FIXED_MULTI_ROUND,
        SharingMethod.PRO_RATA,
        SharingMethod.HYBRID,
    ):
        result = _run(offtake, injection, key, method)
        for t in range(offtake.shape[0]):
            flows = _reference_interval(offtake[t], injection[t], method, key, 0.6)
            assert np.all(np.diag(flows) == 0.0)
            np.testing.assert_allclose(result.shared_offtake_kwh[t], flows.sum(axis=0), atol=1e-9)
            np.testing.assert_allclose(result.shared_injection_kwh[t], flows.sum(axis=1), atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(community=communities())
def test_maximum_equals_max_flow(community: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    offtake, injection, key = community
    result = _run(offtake, injection, key, SharingMethod.MAXIMUM)
    for t in range(offtake.shape[0]):
        assert result.shared_kwh[t] == pytest.approx(_max_flow(offtake[t], injection[t]), abs=1e-7)


@settings(max_examples=100, deadline=None)
@given(community=communities(prosumers=False))
def test_without_prosumers(community: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    offtake, injection, key = community
    consumers = offtake.sum(axis=0) > 0
    # give every consumer a key so that multi-round can reach everybody
    key = np.where(consumers, 1.0, 0.0) if consumers.any() else key
    key = key / key.sum()
    single = _run(offtake, injection, key, SharingMethod.FIXED)
    multi = _run(offtake, injection, key, SharingMethod.FIXED_MULTI_ROUND)
    maximum = _run(offtake, injection, key, SharingMethod.MAXIMUM)
    assert (multi.shared_kwh >= single.shared_kwh - 1e-9).all()
    # rounds until nothing more can be placed: as much as maximum sharing
    np.testing.assert_allclose(multi.shared_kwh, maximum.shared_kwh, atol=1e-9)
    for method in ALL_METHODS:
        result = _run(offtake, injection, key, method)
        # the unallocated volume goes back to the producers in proportion to their injection
        returned = result.returned_injection_kwh
        for t in range(offtake.shape[0]):
            producing = injection[t] > 0
            if producing.sum() >= 2:
                shares = returned[t, producing] / injection[t, producing]
                np.testing.assert_allclose(shares, shares[0], atol=1e-9)


def test_allocate_accepts_a_key_per_row() -> None:
    offtake = np.array([[0.0, 0.1, 0.5, 1.0], [0.0, 0.1, 0.5, 1.0]])
    injection = np.array([[2.0, 0, 0, 0], [2.0, 0, 0, 0]])
    key = np.array([[0, 1 / 3, 1 / 3, 1 / 3], [0, 0, 0, 1.0]])
    received, placed, rounds = allocate(offtake, injection, SharingMethod.FIXED, key=key)
    np.testing.assert_allclose(received, [[0, 0.1, 0.5, 2 / 3], [0, 0, 0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(placed[:, 0], [0.1 + 0.5 + 2 / 3, 1.0], atol=1e-12)
    assert rounds == 1
