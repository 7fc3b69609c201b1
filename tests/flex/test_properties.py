"""Invariants of any schedule, on random homes (hypothesis).

Whatever the prices (negative ones included), loads and device parameters: the state of charge stays
within its bounds and follows the battery equation, every step balances, the connection limit holds
unless a violation is reported, charge and discharge (and import and export) never happen at once,
and the statement and the penalties add up to the objective.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.flex.commitments import energy_price, feed_in, sharing_value
from bright.energy.flex.community import Community, schedule_community
from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, GridConnection, PVSystem
from bright.energy.flex.problem import Site
from bright.energy.flex.solve import Schedule, schedule

TOL = 1e-6
DT = 0.25


@st.composite
def homes(draw: st.DrawFn) -> tuple[pd.DatetimeIndex, Site, dict]:
    n = draw(st.integers(3, 12))
    idx = pd.date_range("2024-05-12", periods=n, freq="15min", tz="UTC")
    floats = st.floats(-0.1, 0.6, allow_nan=False)
    price = np.array(draw(st.lists(floats, min_size=n, max_size=n)))
    spread = draw(st.floats(0.0, 0.1))
    base = np.array(draw(st.lists(st.floats(0.0, 4.0), min_size=n, max_size=n)))
    cap = draw(st.floats(1.0, 15.0))
    eta = draw(st.floats(0.8, 1.0))
    battery = Battery(
        "bat",
        cap,
        draw(st.floats(0.5, 6.0)),
        draw(st.floats(0.5, 6.0)),
        eta,
        eta,
        initial_soc_kwh=draw(st.floats(0.0, 1.0)) * cap,
        target_soc_kwh=draw(st.one_of(st.none(), st.floats(0.0, 20.0))),
        degradation_eur_per_kwh=draw(st.floats(0.0, 0.05)),
    )
    pv = PVSystem(
        "pv",
        np.array(draw(st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n))),
        curtailable=draw(st.booleans()),
    )
    a = draw(st.integers(0, n - 1))
    d = draw(st.integers(a + 1, n + 2))
    ev = ElectricVehicle(
        "ev",
        40.0,
        draw(st.floats(1.0, 11.0)),
        [
            EVSession(
                idx[0] + pd.Timedelta(minutes=15 * a),
                idx[0] + pd.Timedelta(minutes=15 * d),
                draw(st.floats(0.0, 15.0)),
            )
        ],
    )
    limit = draw(st.floats(2.0, 20.0))
    site = Site(
        "home",
        base,
        devices=(battery, pv, ev),
        connection=GridConnection(limit, limit),
        commitments=(energy_price(price), feed_in(price - spread)),
    )
    return (
        idx,
        site,
        {"base": base, "eta": eta, "cap": cap, "limit": limit, "initial": battery.initial_soc_kwh},
    )


def check(s: Schedule, p: dict) -> None:
    site = s.sites["home"]
    b = s.devices["home"]["bat"]
    soc = b["soc_end_kwh"].to_numpy()
    assert soc.min() >= -TOL and soc.max() <= p["cap"] + TOL
    prev = np.concatenate([[p["initial"]], soc[:-1]])
    np.testing.assert_allclose(
        soc - prev, p["eta"] * b["charge_kw"] * DT - b["discharge_kw"] * DT / p["eta"], atol=1e-6
    )
    assert not ((b["charge_kw"] > TOL) & (b["discharge_kw"] > TOL)).any()
    assert not ((site["import_kw"] > TOL) & (site["export_kw"] > TOL)).any()
    consumption = sum(dev["power_kw"].to_numpy() for dev in s.devices["home"].values() if "power_kw" in dev)
    generation = s.devices["home"]["pv"]["generation_kw"].to_numpy()
    np.testing.assert_allclose(site["net_import_kw"], p["base"] + consumption - generation, atol=1e-6)
    over = s.unmet[s.unmet["constraint"].isin(["import_limit", "export_limit"])]
    if over.empty:
        assert site["import_kw"].max() <= p["limit"] + TOL and site["export_kw"].max() <= p["limit"] + TOL
    np.testing.assert_allclose(s.objective_eur, s.cost_eur + s.penalty_eur, rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(
        s.statement["value_eur"], s.statement["reference_eur"] - s.statement["optimal_eur"]
    )
    assert (s.status == "optimal") == s.unmet.empty


@settings(max_examples=40, deadline=None)
@given(homes())
def test_schedule_invariants(case: tuple[pd.DatetimeIndex, Site, dict]) -> None:
    idx, site, params = case
    check(schedule(idx, site), params)


@settings(max_examples=15, deadline=None)
@given(st.lists(homes(), min_size=2, max_size=4), st.floats(1.0, 30.0), st.floats(0.0, 0.05))
def test_community_invariants(cases: list, limit: float, value: float) -> None:
    n = min(len(c[0]) for c in cases)
    idx = cases[0][0][:n]
    members = []
    for k, (_, site, _) in enumerate(cases):
        base = np.asarray(site.base_load_kw)[:n]
        pv = site.devices[1]
        members.append(
            Site(
                f"m{k}",
                base,
                devices=(site.devices[0], PVSystem("pv", np.asarray(pv.available_kw)[:n], pv.curtailable)),
                connection=site.connection,
                commitments=(energy_price(np.full(n, 0.3)), feed_in(np.full(n, 0.05))),
            )
        )
    c = Community(
        "c", members, import_limit_kw=limit, export_limit_kw=limit, commitments=(sharing_value(value),)
    )
    s = schedule_community(idx, c)
    assert s.community is not None
    total = sum(s.sites[m.name]["net_import_kw"].to_numpy() for m in members)
    np.testing.assert_allclose(s.community["net_import_kw"], total, atol=1e-6)
    imp = sum(s.sites[m.name]["import_kw"].to_numpy() for m in members)
    exp = sum(s.sites[m.name]["export_kw"].to_numpy() for m in members)
    assert (s.community["shared_kw"] <= np.minimum(imp, exp) + TOL).all()
    over = s.unmet[(s.unmet["member"] == "community") & s.unmet["constraint"].str.endswith("limit")]
    if over.empty:
        assert s.community["net_import_kw"].abs().max() <= limit + TOL
    np.testing.assert_allclose(s.objective_eur, s.cost_eur + s.penalty_eur, rtol=1e-7, atol=1e-6)
    # allocation keeps the totals: member lines plus community lines are the cost
    np.testing.assert_allclose(s.member_costs().sum(), s.statement["optimal_eur"].sum(), atol=1e-9)
