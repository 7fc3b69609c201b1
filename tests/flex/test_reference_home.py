"""The issue's reference home, checked against an independent LP written with scipy.

Home: 10 kWh / 5 kW battery with a 90 % round trip (sqrt(0.9) each way), an 11 kW EV that needs
+30 kWh by 07:00 CET each day (plugged 18:00-07:00 CET = 17:00-06:00 UTC), the UCI Sceaux household
as fixed load, 6 kWp of SimBench PV3, a 17 kW site limit both ways, 15-min steps, Belgian day-ahead
prices for import and export. The horizon starts Monday 6 February 2023 at 12:00 CET (a week without
negative prices) and lasts 1, 2, 3 or 7 days, so that it holds exactly one EV session per day.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from bright import datasets
from bright.energy.flex.commitments import energy_price, feed_in
from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, GridConnection, PVSystem
from bright.energy.flex.problem import Site
from bright.energy.flex.solve import schedule

START = pd.Timestamp("2023-02-06 11:00", tz="UTC")
ETA = math.sqrt(0.9)
EV_ETA = 0.9  # ElectricVehicle default charge efficiency
DT = 0.25


def _inputs(days: int) -> dict[str, np.ndarray | pd.DatetimeIndex]:
    n = 96 * days
    index = pd.date_range(START, periods=n, freq="15min")
    load = datasets.uci_household()["power_kw"].loc[pd.Timestamp("2008-02-04 11:00", tz="UTC") :].iloc[:n]
    pv = datasets.simbench_profiles()["PV3"].loc[pd.Timestamp("2016-02-08 11:00", tz="UTC") :].iloc[:n]
    hourly = datasets.dayahead_prices()
    # hourly price held over its four quarter-hours, computed here without the library's helper
    price = hourly.reindex(index.floor("h")).to_numpy()
    return {"index": index, "load": load.to_numpy(), "pv": 6.0 * pv.to_numpy(), "price": price}


def _sessions(days: int) -> list[EVSession]:
    midnight = START.normalize()
    return [
        EVSession(
            midnight + pd.Timedelta(days=d, hours=17), midnight + pd.Timedelta(days=d + 1, hours=6), 30.0
        )
        for d in range(days)
    ]


def _site(data: dict, days: int) -> Site:
    return Site(
        "home",
        data["load"],
        devices=(
            Battery("battery", 10.0, 5.0, 5.0, ETA, ETA, initial_soc_kwh=5.0),
            ElectricVehicle("ev", 60.0, 11.0, _sessions(days)),
            PVSystem("pv", data["pv"], curtailable=False),
        ),
        connection=GridConnection(17.0, 17.0),
        commitments=(energy_price(pd.Series(data["price"], index=data["index"])), feed_in(data["price"])),
    )


def _scipy_cost(data: dict, days: int) -> float:
    """The same LP, written independently: 7 variables per step, time-major, scipy's HiGHS."""
    index, load, pv, price = data["index"], data["load"], data["pv"], data["price"]
    n = len(index)
    nv = 7  # import, export, bat charge, bat discharge, bat SoC, EV charge, EV energy added
    plugged = np.zeros(n, dtype=bool)
    session_of = np.full(n, -1)
    for k, s in enumerate(_sessions(days)):
        inside = (index >= s.arrival) & (index + pd.Timedelta(minutes=15) <= s.departure)
        plugged |= inside
        session_of[inside] = k

    def v(t: int, k: int) -> int:
        return t * nv + k

    c = np.zeros(n * nv)
    bounds = []
    for t in range(n):
        c[v(t, 0)] = price[t] * DT
        c[v(t, 1)] = -price[t] * DT
        ev_up = 11.0 if plugged[t] else 0.0
        bounds += [(0, 17), (0, 17), (0, 5), (0, 5), (0, 10), (0, ev_up), (0, 30.0 if plugged[t] else 0.0)]
    eq_r, eq_c, eq_v, b_eq = [], [], [], []
    row = 0
    for t in range(n):
        # balance: import - export - charge + discharge - EV = load - PV
        for k, val in ((0, 1), (1, -1), (2, -1), (3, 1), (5, -1)):
            eq_r.append(row)
            eq_c.append(v(t, k))
            eq_v.append(val)
        b_eq.append(load[t] - pv[t])
        row += 1
        # battery: SoC[t] - SoC[t-1] - eta c dt + d dt / eta = 0 (SoC[-1] = 5)
        eq_r += [row, row, row]
        eq_c += [v(t, 4), v(t, 2), v(t, 3)]
        eq_v += [1.0, -ETA * DT, DT / ETA]
        if t > 0:
            eq_r.append(row)
            eq_c.append(v(t - 1, 4))
            eq_v.append(-1.0)
        b_eq.append(5.0 if t == 0 else 0.0)
        row += 1
        # EV energy added since arrival
        eq_r += [row, row]
        eq_c += [v(t, 6), v(t, 5)]
        eq_v += [1.0, -EV_ETA * DT]
        if t > 0 and plugged[t] and session_of[t - 1] == session_of[t]:
            eq_r.append(row)
            eq_c.append(v(t - 1, 6))
            eq_v.append(-1.0)
        b_eq.append(0.0)
        row += 1
    a_eq = sp.coo_matrix((eq_v, (eq_r, eq_c)), shape=(row, n * nv))
    last = [int(np.flatnonzero(session_of == k)[-1]) for k in range(days)]
    a_ub = sp.coo_matrix(([-1.0] * days, (list(range(days)), [v(t, 6) for t in last])), shape=(days, n * nv))
    res = linprog(c, A_ub=a_ub, b_ub=[-30.0] * days, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return float(res.fun)


@pytest.mark.parametrize("days", [1, 2, 3, 7])
def test_reference_home_matches_independent_lp(days: int) -> None:
    data = _inputs(days)
    sched = schedule(data["index"], _site(data, days))
    expected = _scipy_cost(data, days)
    assert sched.status == "optimal"
    assert sched.penalty_eur == pytest.approx(0.0, abs=1e-9)
    assert sched.cost_eur == pytest.approx(expected, rel=1e-6)
    assert sched.objective_eur == pytest.approx(expected, rel=1e-6)
    # the statement prices import and export: its total is the cost
    assert sched.statement["optimal_eur"].sum() == pytest.approx(sched.cost_eur, rel=1e-12)


def test_reference_home_schedule_respects_the_physics() -> None:
    data = _inputs(2)
    sched = schedule(data["index"], _site(data, 2))
    site = sched.sites["home"]
    bat = sched.devices["home"]["battery"]
    ev = sched.devices["home"]["ev"]
    tol = 1e-6
    assert site["import_kw"].max() <= 17 + tol and site["export_kw"].max() <= 17 + tol
    assert bat["soc_end_kwh"].between(-tol, 10 + tol).all()
    assert not ((bat["charge_kw"] > tol) & (bat["discharge_kw"] > tol)).any()
    # energy balance per step: import - export = load - PV + battery + EV
    net = data["load"] - data["pv"] + bat["power_kw"].to_numpy() + ev["power_kw"].to_numpy()
    np.testing.assert_allclose(site["net_import_kw"].to_numpy(), net, atol=1e-6)
    # +30 kWh in the battery by each departure, and no charging while away
    for s in _sessions(2):
        during = ev.loc[s.arrival : s.departure - pd.Timedelta(minutes=15)]
        assert during["energy_added_kwh"].iloc[-1] == pytest.approx(30.0, abs=1e-6)
        assert (during["charge_kw"] * DT * EV_ETA).sum() == pytest.approx(30.0, abs=1e-6)
    assert ev.loc[ev["plugged"] == 0, "charge_kw"].abs().max() == 0.0
    # flexibility pays: the optimal cost is below the reference (idle battery, EV charging on arrival)
    assert sched.statement["value_eur"].sum() > 1.0
