"""Charging policies: worked examples and invariants (site limit, delivered energy, V2G reserve)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.mobility import (
    ChargingProblem,
    ChargingResult,
    ChargingSessions,
    MobilityInputError,
    community_optimal,
    earliest_deadline_first,
    local_hours_mask,
    pv_following,
    time_of_use,
    uncontrolled,
    vehicle_to_grid,
)

START = pd.Timestamp("2024-06-03 00:00", tz="UTC")
TOL = 1e-9


def _sessions(arrival, departure, energy, power, **kw) -> ChargingSessions:
    n = max(departure) + kw.pop("extra", 0)
    return ChargingSessions.build(START, n, arrival, departure, energy, power, **kw)


def _session_power(result: ChargingResult, session: int, n_steps: int) -> np.ndarray:
    mask = result.slot_session == session
    return np.bincount(result.slot_step[mask], weights=result.slot_power_kw[mask], minlength=n_steps)


# --- worked examples ------------------------------------------------------------------------------


def test_uncontrolled_worked_example() -> None:
    # 3.5 kWh at 4 kW (1 kWh per quarter-hour): 3 full steps then 2 kW for the last 0.5 kWh.
    s = _sessions([2], [6], [3.5], [4.0], extra=2)
    r = uncontrolled(s)
    np.testing.assert_allclose(r.charge_kw, [0, 0, 4, 4, 4, 2, 0, 0])
    np.testing.assert_allclose(r.delivered_kwh, [3.5])
    np.testing.assert_allclose(r.unmet_kwh, [0.0])


def test_uncontrolled_reports_unmet_when_the_dwell_is_too_short() -> None:
    s = _sessions([0], [2], [3.0], [4.0], battery_kwh=10.0)
    r = uncontrolled(s)
    np.testing.assert_allclose(r.delivered_kwh, [2.0])  # 2 steps x 4 kW x 0.25 h
    np.testing.assert_allclose(r.unmet_kwh, [1.0])


def test_time_of_use_worked_example() -> None:
    cheap = np.zeros(8, dtype=bool)
    cheap[4:8] = True
    # Session 0 (steps 1-7, 1.5 kWh at 4 kW) waits for the cheap step 4: 4 kW then 2 kW.
    # Session 1 (steps 0-4, 2 kWh at 4 kW) needs 2 steps, so it must start by step 3 < 4.
    s = _sessions([1, 0], [8, 5], [1.5, 2.0], [4.0, 4.0])
    r = time_of_use(s, cheap)
    np.testing.assert_allclose(_session_power(r, 0, 8), [0, 0, 0, 0, 4, 2, 0, 0])
    np.testing.assert_allclose(_session_power(r, 1, 8), [0, 0, 0, 4, 4, 0, 0, 0])
    np.testing.assert_allclose(r.unmet_kwh, 0.0)


def test_local_hours_mask_wraps_midnight() -> None:
    # 2024-06-03 00:00 UTC is 02:00 in Brussels (CEST): steps 0..19 cover 02:00-06:45 local.
    mask = local_hours_mask(START, 96, 22, 7)
    assert mask[:20].all() and not mask[20] and mask[80:].all() and not mask[79]
    assert mask.sum() == 9 * 4


def test_edf_worked_example() -> None:
    # Limit 5 kW. A: steps 0-1, 2 kWh at 4 kW (no slack). B: steps 0-3, 2 kWh at 4 kW.
    # t0: A must 4, B gets 1.  t1: A must 4, B 1.  t2: B (1.5 kWh left) must 2 + 2 optional = 4.
    # t3: B has 0.5 kWh left: 2 kW.
    s = _sessions([0, 0], [2, 4], [2.0, 2.0], [4.0, 4.0])
    r = earliest_deadline_first(s, 5.0)
    np.testing.assert_allclose(_session_power(r, 0, 4), [4, 4, 0, 0])
    np.testing.assert_allclose(_session_power(r, 1, 4), [1, 1, 4, 2])
    np.testing.assert_allclose(r.charge_kw, [5, 5, 4, 2])
    np.testing.assert_allclose(r.unmet_kwh, 0.0)


def test_edf_laxity_guard_saves_the_slow_car() -> None:
    # Limit 2 kW. A: steps 0-1, 0.5 kWh at 2 kW. B: steps 0-2, 0.75 kWh at 1 kW (no slack at all).
    # Plain EDF gives A 2 kW at t0 and B can then only get 0.5 kWh. The guard serves B first:
    # t0: B 1 + A 1; t1: A 1 + B 1; t2: B 1. Both requests are met.
    s = _sessions([0, 0], [2, 3], [0.5, 0.75], [2.0, 1.0])
    r = earliest_deadline_first(s, 2.0)
    np.testing.assert_allclose(_session_power(r, 0, 3), [1, 1, 0])
    np.testing.assert_allclose(_session_power(r, 1, 3), [1, 1, 1])
    np.testing.assert_allclose(r.unmet_kwh, 0.0)


def test_pv_following_worked_example() -> None:
    surplus = np.array([0.0, 3.0, 3.0, 0.0])
    # 1 kWh: waits for the surplus, 3 kW at t1 (0.75 kWh), 1 kW at t2.
    r = pv_following(_sessions([0], [4], [1.0], [4.0]), surplus)
    np.testing.assert_allclose(r.charge_kw, [0, 3, 1, 0])
    # 2.5 kWh: t1 must 2 kW (0.5 kWh beyond what 2 more full steps give) + 1 kW of surplus;
    # t2 must 3 kW; t3 must 4 kW (1 kWh left). 10 kW x 0.25 h = 2.5 kWh.
    r = pv_following(_sessions([0], [4], [2.5], [4.0]), surplus)
    np.testing.assert_allclose(r.charge_kw, [0, 3, 3, 4])
    np.testing.assert_allclose(r.unmet_kwh, 0.0)


def test_v2g_worked_example() -> None:
    # Battery 10 kWh at 50 % (5 kWh), request 1 kWh (target 6 kWh), 4 kW, 8 steps; the community
    # lacks 2 kW every step; floor 20 % = 2 kWh; reserve line at full power; lossless.
    # Discharge 2 kW (0.5 kWh) while above the line target - 1 kWh x steps left:
    # e = 5 -> 4.5 -> 4 -> 3.5 -> 3 (t0..t3); at t4 the line is 3: hold; then 4 kW to 4, 5, 6.
    s = _sessions([0], [8], [1.0], [4.0], battery_kwh=10.0, arrival_soc=0.5)
    r = vehicle_to_grid(
        s, np.full(8, 2.0), np.zeros(8), min_soc=0.2, reserve_power_share=1.0, discharge_efficiency=1.0
    )
    np.testing.assert_allclose(r.slot_power_kw, [-2, -2, -2, -2, 0, 4, 4, 4])
    np.testing.assert_allclose(r.delivered_kwh, [1.0])
    np.testing.assert_allclose(r.discharge_kw.sum() * 0.25, 2.0)


def test_v2g_charges_from_surplus_and_loses_on_the_round_trip() -> None:
    # 4 steps of 4 kW surplus then 4 steps of 4 kW deficit; battery 20 kWh holding 10 kWh, request
    # 0 (target 10 kWh); reserve share 0.5: line = 10 - 0.5 x 4 kW x 0.25 h x steps left after t;
    # eta 0.9, so 4 kW out costs 1/0.9 kWh per step.
    # t0-t3: surplus in at 4 kW -> 14 kWh.  t4 (line 8.5): 4 kW out -> 12.889.  t5 (line 9): 4 kW
    # -> 11.778.  t6 (line 9.5): 4 kW -> 10.667.  t7 (line 10): (10.667 - 10) x 0.9 / 0.25 = 2.4 kW.
    base = np.array([0, 0, 0, 0, 4, 4, 4, 4.0])
    pv = np.array([4, 4, 4, 4, 0, 0, 0, 0.0])
    s = _sessions([0], [8], [0.0], [4.0], battery_kwh=20.0, arrival_soc=0.5)
    r = vehicle_to_grid(s, base, pv, min_soc=0.2, reserve_power_share=0.5, discharge_efficiency=0.9)
    np.testing.assert_allclose(r.charge_kw, [4, 4, 4, 4, 0, 0, 0, 0])
    np.testing.assert_allclose(r.discharge_kw, [0, 0, 0, 0, 4, 4, 4, 2.4])
    np.testing.assert_allclose(r.delivered_kwh, [0.0], atol=1e-12)  # leaves at its target
    # 4 kWh stored, 3.6 kWh given back: the 10 % loss is the round trip's.
    assert r.discharge_kw.sum() * 0.25 == pytest.approx(0.9 * r.charge_kw.sum() * 0.25)


def test_inputs_are_checked() -> None:
    s = _sessions([0], [4], [1.0], [4.0])
    with pytest.raises(MobilityInputError, match=r"site_limit_kw: -1.0 at step 2"):
        earliest_deadline_first(s, np.array([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(MobilityInputError, match=r"surplus_kw: shape \(3,\)"):
        pv_following(s, np.ones(3))
    with pytest.raises(MobilityInputError, match=r"pv_kw: nan at step 1"):
        vehicle_to_grid(s, np.ones(4), np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(MobilityInputError, match="price_eur_per_kwh: required"):
        vehicle_to_grid(s, np.ones(4), np.zeros(4), price_high_eur_per_kwh=0.3)
    with pytest.raises(MobilityInputError, match="cheap"):
        time_of_use(s, np.ones(4))


def test_community_optimal_prefers_cheap_steps_and_pv() -> None:
    # 2 kWh at 4 kW over 4 steps; import price 0.4, 0.1, 0.3, 0.1 EUR/kWh; no PV: the two cheap
    # steps (1 and 3) at 4 kW each.
    s = _sessions([0], [4], [2.0], [4.0])
    r = community_optimal(s, np.zeros(4), np.zeros(4), np.array([0.4, 0.1, 0.3, 0.1]))
    np.testing.assert_allclose(r.charge_kw, [0, 4, 0, 4], atol=1e-7)
    # With 4 kW of PV at step 0 (export earns nothing) the car takes the free PV first.
    r = community_optimal(s, np.zeros(4), np.array([4.0, 0, 0, 0]), np.array([0.4, 0.1, 0.3, 0.1]))
    np.testing.assert_allclose(r.charge_kw, [4, 4, 0, 0], atol=1e-7)


def test_community_optimal_accepts_a_solver_and_checks_it() -> None:
    s = _sessions([0, 1], [4, 4], [1.0, 1.0], [4.0, 4.0])
    seen: list[ChargingProblem] = []

    def greedy(problem: ChargingProblem) -> np.ndarray:
        seen.append(problem)
        # Full power from the first slot of each session until its request is met.
        first = np.r_[True, problem.slot_session[1:] != problem.slot_session[:-1]]
        p = np.where(first, problem.energy_kwh[problem.slot_session] / problem.step_h, 0.0)
        return p

    r = community_optimal(s, np.zeros(4), np.zeros(4), 0.2, solver=greedy)
    assert len(seen) == 1 and seen[0].energy_kwh.tolist() == [1.0, 1.0]
    np.testing.assert_allclose(r.charge_kw, [4, 4, 0, 0])

    def too_much(problem: ChargingProblem) -> np.ndarray:
        return problem.max_power_kw[problem.slot_session]

    with pytest.raises(MobilityInputError, match="more than its request"):
        community_optimal(s, np.zeros(4), np.zeros(4), 0.2, solver=too_much)


# --- property tests -------------------------------------------------------------------------------


@st.composite
def session_sets(draw: st.DrawFn, max_sessions: int = 8, max_steps: int = 24) -> ChargingSessions:
    """Random sessions, each feasible alone (request <= max power x dwell)."""
    n_steps = draw(st.integers(2, max_steps))
    n = draw(st.integers(1, max_sessions))
    arrival, departure, energy, power, soc = [], [], [], [], []
    for _ in range(n):
        a = draw(st.integers(0, n_steps - 1))
        d = draw(st.integers(a + 1, n_steps))
        p = draw(st.sampled_from([3.7, 7.4, 11.0]))
        arrival.append(a)
        departure.append(d)
        power.append(p)
        energy.append(draw(st.floats(0.0, 1.0)) * p * (d - a) * 0.25)
        soc.append(draw(st.floats(0.0, 0.5)))
    battery = [max(e / (1 - s0), 1.0) * draw(st.floats(1.0, 3.0)) for e, s0 in zip(energy, soc, strict=True)]
    return ChargingSessions.build(
        START, n_steps, arrival, departure, energy, power, battery_kwh=battery, arrival_soc=soc
    )


def _check_slots(s: ChargingSessions, r: ChargingResult) -> None:
    """Slots lie in the dwell, power within [-max, max], aggregates add up."""
    assert np.all((s.arrival[r.slot_session] <= r.slot_step) & (r.slot_step < s.departure[r.slot_session]))
    assert np.all(np.abs(r.slot_power_kw) <= s.max_power_kw[r.slot_session] + TOL)
    np.testing.assert_allclose(
        r.charge_kw - r.discharge_kw, np.bincount(r.slot_step, r.slot_power_kw, s.n_steps), atol=1e-9
    )


@settings(max_examples=60, deadline=None)
@given(s=session_sets(), limit=st.floats(0.0, 30.0), data=st.data())
def test_limit_aware_policies_never_exceed_the_site_limit(
    s: ChargingSessions, limit: float, data: st.DataObject
) -> None:
    varying = np.array(data.draw(st.lists(st.floats(0.0, 30.0), min_size=s.n_steps, max_size=s.n_steps)))
    surplus = np.array(data.draw(st.lists(st.floats(0.0, 40.0), min_size=s.n_steps, max_size=s.n_steps)))
    for lim in (limit, varying):
        lim_arr = np.broadcast_to(lim, (s.n_steps,))
        for r in (
            earliest_deadline_first(s, lim),
            pv_following(s, surplus, site_limit_kw=lim),
            vehicle_to_grid(s, np.full(s.n_steps, 5.0), surplus, site_limit_kw=lim),
        ):
            _check_slots(s, r)
            assert np.all(r.charge_kw <= lim_arr + TOL), r.policy
            assert np.all(r.discharge_kw <= lim_arr + TOL), r.policy
            assert np.all(r.delivered_kwh <= s.energy_kwh + TOL) or r.policy == "vehicle_to_grid"


@settings(max_examples=25, deadline=None)
@given(s=session_sets(max_sessions=5, max_steps=16), limit=st.floats(0.0, 25.0))
def test_community_optimal_never_exceeds_the_site_limit(s: ChargingSessions, limit: float) -> None:
    prices = np.linspace(0.3, 0.1, s.n_steps)
    r = community_optimal(
        s, np.full(s.n_steps, 2.0), np.zeros(s.n_steps), prices, site_limit_kw=limit, window_steps=8
    )
    _check_slots(s, r)
    assert np.all(r.charge_kw <= limit + 1e-6)


@settings(max_examples=60, deadline=None)
@given(s=session_sets(), surplus=st.floats(0.0, 20.0))
def test_feasible_requests_are_delivered(s: ChargingSessions, surplus: float) -> None:
    generous = float(s.max_power_kw.sum())  # the limit never binds
    for r in (
        uncontrolled(s),
        time_of_use(s, np.arange(s.n_steps) % 3 == 0),
        earliest_deadline_first(s, generous),
        pv_following(s, np.full(s.n_steps, surplus)),
    ):
        _check_slots(s, r)
        np.testing.assert_allclose(r.delivered_kwh, s.energy_kwh, atol=1e-7, err_msg=r.policy)
        assert np.all(r.unmet_kwh <= 1e-7)


@settings(max_examples=25, deadline=None)
@given(s=session_sets(max_sessions=5, max_steps=12), data=st.data())
def test_community_optimal_meets_requests_whenever_a_schedule_exists(
    s: ChargingSessions, data: st.DataObject
) -> None:
    # Build a witness schedule (random power within each dwell), set the requests to what it
    # delivers and the site limit to its peak: the instance is feasible by construction.
    power = np.zeros((len(s), s.n_steps))
    for i in range(len(s)):
        for t in range(s.arrival[i], s.departure[i]):
            power[i, t] = data.draw(st.floats(0.0, 1.0)) * s.max_power_kw[i]
    energy = power.sum(axis=1) * 0.25
    feasible = ChargingSessions.build(
        START,
        s.n_steps,
        s.arrival,
        s.departure,
        energy,
        s.max_power_kw,
        battery_kwh=np.maximum(energy, 1.0) * 2,
    )
    limit = power.sum(axis=0)
    r = community_optimal(
        feasible, np.ones(s.n_steps), np.zeros(s.n_steps), 0.25, site_limit_kw=limit, window_steps=s.n_steps
    )
    np.testing.assert_allclose(r.delivered_kwh, energy, atol=1e-5)
    assert np.all(r.charge_kw <= limit + 1e-6)


@settings(max_examples=60, deadline=None)
@given(
    s=session_sets(),
    data=st.data(),
    min_soc=st.floats(0.0, 0.6),
    share=st.floats(0.05, 1.0),
    eta=st.floats(0.7, 1.0),
    export=st.booleans(),
)
def test_v2g_never_leaves_a_car_below_its_departure_soc(
    s: ChargingSessions, data: st.DataObject, min_soc: float, share: float, eta: float, export: bool
) -> None:
    n = s.n_steps
    base = np.array(data.draw(st.lists(st.floats(0.0, 30.0), min_size=n, max_size=n)))
    pv = np.array(data.draw(st.lists(st.floats(0.0, 30.0), min_size=n, max_size=n)))
    price = np.array(data.draw(st.lists(st.floats(-0.1, 0.5), min_size=n, max_size=n)))
    r = vehicle_to_grid(
        s,
        base,
        pv,
        price_eur_per_kwh=price,
        price_low_eur_per_kwh=0.05,
        price_high_eur_per_kwh=0.2,
        min_soc=min_soc,
        reserve_power_share=share,
        discharge_efficiency=eta,
        export=export,
    )
    _check_slots(s, r)
    e0 = s.arrival_soc * s.battery_kwh
    final = e0 + r.delivered_kwh
    assert np.all(final >= e0 + s.energy_kwh - 1e-7)  # departure SoC reached
    # Along the way: never above a full battery, never discharged below the floor (a car that
    # arrives below the floor only charges).
    for i in range(len(s)):
        mask = r.slot_session == i
        p = r.slot_power_kw[mask][np.argsort(r.slot_step[mask])]
        gain = np.where(p > 0, p, p / eta) * 0.25
        path = e0[i] + np.cumsum(gain)
        assert np.all(path <= s.battery_kwh[i] + 1e-7)
        assert np.all(path >= min(e0[i], min_soc * s.battery_kwh[i]) - 1e-7)


def _window_cost(s: ChargingSessions, r: ChargingResult, net: np.ndarray, c_imp: np.ndarray, c_exp: float,
                 peak_w: float) -> float:  # fmt: skip
    """Import cost - export revenue + peak charge + unmet penalty of a community-optimal result (EUR)."""
    flow = net + r.charge_kw
    cost = float(np.sum(np.maximum(flow, 0) * c_imp - np.maximum(-flow, 0) * c_exp) * 0.25)
    return (
        cost
        + peak_w * float(np.max(np.maximum(flow, 0)))
        + (10 + 10 * np.max(np.abs(c_imp))) * float(r.unmet_kwh.sum())
    )


@settings(max_examples=12, deadline=None)
@given(
    s=session_sets(max_sessions=5, max_steps=16),
    seed=st.integers(0, 1000),
    peak_w=st.sampled_from([0.0, 0.5]),
)
def test_flex_solver_and_bundled_lp_give_the_same_cost(s: ChargingSessions, seed: int, peak_w: float) -> None:
    """The two solver paths of the community-optimal policy agree (same programme)."""
    from bright.energy.mobility import flex_charging_solver

    rng = np.random.default_rng(seed)
    n = s.n_steps
    base = rng.uniform(0.0, 6.0, n)
    pv = rng.uniform(0.0, 8.0, n) * (rng.random(n) < 0.5)
    c_imp = rng.uniform(0.1, 0.4, n)
    c_exp = 0.05
    kw = {"export_price_eur_per_kwh": c_exp, "peak_weight_eur_per_kw": peak_w}
    lp = community_optimal(s, base, pv, c_imp, **kw)
    flex = community_optimal(s, base, pv, c_imp, solver=flex_charging_solver, **kw)
    _check_slots(s, flex)
    net = base - pv
    assert _window_cost(s, flex, net, c_imp, c_exp, peak_w) == pytest.approx(
        _window_cost(s, lp, net, c_imp, c_exp, peak_w), abs=1e-4
    )
    assert flex.unmet_kwh.sum() == pytest.approx(lp.unmet_kwh.sum(), abs=1e-5)
    with pytest.raises(MobilityInputError, match="site limit"):
        community_optimal(s, base, pv, c_imp, site_limit_kw=5.0, solver=flex_charging_solver)
