"""Scenario metrics, evaluation and comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.datasets import ev_sessions
from bright.energy.mobility import (
    Calibration,
    Community,
    FleetParameters,
    MobilityInputError,
    Scenario,
    calibrate,
    community_metrics,
    compare,
    ev_adoption,
    ev_site_limit,
    evaluate,
    scenarios_by_year,
)

START = pd.Timestamp("2016-06-06 00:00", tz="Europe/Brussels")


@pytest.fixture(scope="module")
def cal() -> Calibration:
    return calibrate(ev_sessions())


def _week(**kw: object) -> Community:
    """One week of 20 households (1.5 kW flat at night, 3 kW 17-21 h) and a 60 kWp PV bell."""
    n = 7 * 96
    hour = (np.arange(n) % 96) / 4  # local hour (the week has no DST change)
    base = np.where((hour >= 17) & (hour < 21), 3.0, 1.5) * 20 / 10
    pv = 60 * np.clip(np.sin((hour - 6) / 14 * np.pi), 0, None) * 0.7
    return Community(START, base, pv, **kw)  # type: ignore[arg-type]


def test_metrics_worked_example() -> None:
    # base 2 kW, PV 0/4/4/0 kW, EV charge 0/1/3/2 kW: load 2/3/5/4, net 2/-1/1/4.
    # import 2/0/1/4 (7 kW-steps = 1.75 kWh), export 0/1/0/0 (0.25 kWh).
    com = Community(
        pd.Timestamp("2024-01-01", tz="UTC"),
        np.full(4, 2.0),
        np.array([0, 4, 4, 0.0]),
        import_price_eur_per_kwh=0.2,
        export_price_eur_per_kwh=0.05,
        emission_kg_per_kwh=0.1,
        connection_limit_kw=3.0,
        transformer_limit_kva=3.5,
        power_factor=0.8,
    )
    m = community_metrics(com, np.array([0, 1, 3, 2.0]))
    assert m["import_kwh"] == pytest.approx(1.75)
    assert m["export_kwh"] == pytest.approx(0.25)
    assert m["peak_import_kw"] == 4.0
    assert m["baseline_peak_import_kw"] == 2.0  # max(base - pv, 0) = 2/0/0/2
    assert m["peak_increase_kw"] == 2.0
    assert m["self_consumption"] == pytest.approx(1 - 1 / 8)  # 1 of 8 kW-steps of PV exported
    assert m["self_sufficiency"] == pytest.approx(1 - 7 / 14)  # 7 of 14 kW-steps imported
    # PV surplus after the base load: 0/2/2/0; into the cars: min(1, 2) + min(3, 2) = 3 kW-steps.
    assert m["shared_kwh"] == pytest.approx(0.75)
    assert m["cost_eur"] == pytest.approx((7 * 0.2 - 1 * 0.05) * 0.25)
    assert m["co2_kg"] == pytest.approx(7 * 0.1 * 0.25)
    assert m["hours_above_connection_h"] == 0.25  # |net| = 4 > 3 once
    assert m["hours_above_transformer_h"] == 0.25  # |net| / 0.8 = 2.5/1.25/1.25/5 > 3.5 once
    # Unknown prices and limits stay NaN, never zero.
    bare = community_metrics(Community(com.start, com.base_kw, com.pv_kw), np.zeros(4))
    assert math.isnan(bare["cost_eur"]) and math.isnan(bare["co2_kg"])
    assert math.isnan(bare["hours_above_connection_h"])


def test_v2g_round_trip_counts_once_in_self_sufficiency() -> None:
    # 4 kW charged from PV at t0, 3.6 kW given back at t1 against a 4 kW base load.
    com = Community(pd.Timestamp("2024-01-01", tz="UTC"), np.array([0.0, 4.0]), np.array([4.0, 0.0]))
    m = community_metrics(com, np.array([4.0, 0.0]), np.array([0.0, 3.6]))
    # Net consumption 4 + 4 - 3.6 = 4.4 kW-steps, import 0.4: self-sufficiency 1 - 0.4/4.4.
    assert m["self_sufficiency"] == pytest.approx(1 - 0.4 / 4.4)
    assert m["self_consumption"] == 1.0
    assert m["shared_kwh"] == pytest.approx(1.0)


def test_community_is_validated() -> None:
    with pytest.raises(MobilityInputError, match=r"base_kw: nan at step 2"):
        Community(START, np.array([1.0, 1.0, np.nan]), np.zeros(3))
    with pytest.raises(MobilityInputError, match="naive"):
        Community(pd.Timestamp("2024-01-01"), np.ones(3), np.zeros(3))
    with pytest.raises(MobilityInputError, match=r"pv_kw: shape \(2,\)"):
        Community(START, np.ones(3), np.zeros(2))
    c = Community.from_kwh(START, np.full(3, 0.5), np.full(3, 0.25))
    np.testing.assert_allclose(c.base_kw, 2.0)  # 0.5 kWh per quarter-hour = 2 kW
    np.testing.assert_allclose(c.pv_kw, 1.0)
    assert c.end == START + pd.Timedelta(minutes=45)


def test_shared_car_rule_and_policy_check() -> None:
    s = Scenario("share", n_evs=10, shared_replacing=6, fleet=FleetParameters(users_per_shared_car=4))
    assert s.n_shared_cars == 2  # ceil(6 / 4)
    assert s.n_vehicles == 4 + 2
    with pytest.raises(MobilityInputError, match="policy 'smart'"):
        Scenario("x", policy="smart")
    with pytest.raises(MobilityInputError, match="shared_replacing"):
        Scenario("x", n_evs=3, shared_replacing=4)


def test_adoption_curve_and_yearly_scenarios() -> None:
    # 100 / (1 + exp(-0.5 (y - 2030))): 2026 -> 100 / (1 + e^2) = 11.9 -> 12; 2030 -> 50.
    path = ev_adoption([2026, 2030, 2034], fleet_size=100, midpoint_year=2030, growth_per_year=0.5)
    assert path == {2026: 12, 2030: 50, 2034: 88}
    years = scenarios_by_year(Scenario("edf", n_evs=10, shared_replacing=2, seed=1), path)
    assert [y.name for y in years] == ["edf 2026", "edf 2030", "edf 2034"]
    assert [y.shared_replacing for y in years] == [2, 10, 17]  # 20 % of 12, 50, 88 rounded down
    assert [y.seed for y in years] == [2027, 2031, 2035]


def test_connection_headroom_limits_the_evs() -> None:
    com = _week(connection_limit_kw=10.0)
    limit = ev_site_limit(com, Scenario("x", ev_site_limit_kw=8.0, follow_connection_limit=True))
    assert limit is not None
    expected = np.minimum(8.0, np.maximum(10.0 - (com.base_kw - com.pv_kw), 0.0))
    np.testing.assert_allclose(limit, expected)
    assert ev_site_limit(com, Scenario("x")) is None
    with pytest.raises(MobilityInputError, match="connection_limit_kw"):
        ev_site_limit(_week(), Scenario("x", follow_connection_limit=True))


def test_evaluate_and_compare(cal: Calibration) -> None:
    com = _week(import_price_eur_per_kwh=0.25, emission_kg_per_kwh=0.15, connection_limit_kw=12.0)
    scenarios = [
        Scenario("today"),
        Scenario("uncontrolled", n_evs=12, seed=3),
        Scenario("edf", n_evs=12, seed=3, policy="earliest_deadline_first", ev_site_limit_kw=6.0),
        Scenario("pv", n_evs=12, seed=3, policy="pv_following", pv_scale=1.5),
        Scenario("v2g", n_evs=12, seed=3, policy="vehicle_to_grid"),
        Scenario("optimal", n_evs=12, seed=3, policy="community_optimal", follow_connection_limit=True),
    ]
    results = [evaluate(com, s, cal) for s in scenarios]
    table = compare(results)
    assert list(table.columns) == [s.name for s in scenarios]
    assert table.loc["n_sessions", "today"] == 0
    assert table.loc["peak_increase_kw", "today"] == 0.0
    # Same seed, same fleet: the same requests under every policy.
    assert table.loc["requested_kwh", "uncontrolled":].nunique() == 1
    assert table.loc["requested_kwh", "uncontrolled"] > 0
    for r in results:
        assert r.metrics["delivered_kwh"] + r.metrics["unmet_kwh"] == pytest.approx(
            r.metrics["requested_kwh"]
        )
        np.testing.assert_allclose(
            r.net_kw, com.base_kw + r.charge_kw - r.discharge_kw - com.pv_kw * r.scenario.pv_scale
        )
    edf = results[2]
    assert edf.charge_kw.max() <= 6.0 + 1e-9
    # Uncontrolled and PV-following meet every request (each fits its dwell at full power).
    assert table.loc["unmet_kwh", "uncontrolled"] == pytest.approx(0.0, abs=1e-6)
    assert table.loc["unmet_kwh", "pv"] == pytest.approx(0.0, abs=1e-6)
    # Following the PV (with 50 % more of it) puts more PV into the cars than charging at arrival.
    assert table.loc["shared_kwh", "pv"] > table.loc["shared_kwh", "uncontrolled"]
    assert table.loc["cost_eur", "optimal"] <= table.loc["cost_eur", "uncontrolled"] + 1e-6
    with pytest.raises(MobilityInputError, match=r"\['edf'\] appear more than once"):
        compare([edf, edf])


def test_policies_that_need_inputs_say_so(cal: Calibration) -> None:
    with pytest.raises(MobilityInputError, match="needs ev_site_limit_kw"):
        evaluate(_week(), Scenario("e", n_evs=2, policy="earliest_deadline_first"), cal)
    with pytest.raises(MobilityInputError, match="needs import prices"):
        evaluate(_week(), Scenario("o", n_evs=2, policy="community_optimal"), cal)
    with pytest.raises(MobilityInputError, match="V2G price thresholds need import prices"):
        evaluate(
            _week(), Scenario("v", n_evs=2, policy="vehicle_to_grid", v2g_price_high_eur_per_kwh=0.3), cal
        )


@settings(max_examples=15, deadline=None)
@given(
    headroom=st.floats(min_value=0.0, max_value=20.0),
    n_evs=st.integers(min_value=1, max_value=15),
    seed=st.integers(min_value=0, max_value=10_000),
    policy=st.sampled_from(["earliest_deadline_first", "pv_following"]),
)
def test_import_cap_is_never_exceeded(headroom: float, n_evs: int, seed: int, policy: str) -> None:
    """With the cap at or above the load without EVs, the import never goes above it."""
    com = _week()
    cal = _cal()
    cap = float(np.max(com.base_kw - com.pv_kw)) + headroom
    s = Scenario("cap", n_evs=n_evs, seed=seed, policy=policy, import_cap_kw=cap)
    limit = ev_site_limit(com, s)
    assert limit is not None
    np.testing.assert_allclose(limit, np.maximum(cap - (com.base_kw - com.pv_kw), 0.0))
    r = evaluate(com, s, cal)
    assert np.all(r.net_kw <= cap + 1e-9)
    assert r.metrics["peak_import_kw"] <= cap + 1e-9
    # The energy is all accounted for: delivered + unmet = requested.
    assert r.metrics["delivered_kwh"] + r.metrics["unmet_kwh"] == pytest.approx(r.metrics["requested_kwh"])


_CAL: list[Calibration] = []


def _cal() -> Calibration:
    if not _CAL:
        _CAL.append(calibrate(ev_sessions()))
    return _CAL[0]


def test_import_cap_is_validated() -> None:
    with pytest.raises(MobilityInputError, match="import_cap_kw -1"):
        Scenario("x", import_cap_kw=-1.0)
