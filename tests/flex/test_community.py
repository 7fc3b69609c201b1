"""Community scheduling: shared limit, sharing, community commitments, individual vs joint optimum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bright.energy.flex.commitments import (
    dso_limit,
    energy_price,
    feed_in,
    peak_charge,
    reserve_capacity,
    self_consumption_value,
    sharing_value,
)
from bright.energy.flex.community import (
    Community,
    compare_individual_and_community,
    schedule_community,
    solve_warm,
)
from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, GridConnection, PVSystem
from bright.energy.flex.problem import FlexInputError, Site, build_problem
from bright.energy.flex.solve import solve

TOL = 1e-6


def hours(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-03-04", periods=n, freq="1h", tz="UTC")


def ev_member(name: str, need: float, prices: list[float], n: int = 2) -> Site:
    idx = hours(n)
    car = ElectricVehicle(
        "ev", 60.0, 11.0, [EVSession(idx[0], idx[-1] + pd.Timedelta(hours=1), need)], charge_efficiency=1.0
    )
    return Site(name, 0.0, devices=(car,), commitments=(energy_price(prices), feed_in(prices)))


def test_community_limit_spreads_the_charging() -> None:
    # Two EVs need 10 kWh each; alone both charge in the cheap hour (20 kW). Under a 12 kW community
    # limit: 12 kWh at 0.1 and 8 kWh at 0.3 = 1.2 + 2.4 = 3.6.
    members = [ev_member("a", 10.0, [0.1, 0.3]), ev_member("b", 10.0, [0.1, 0.3])]
    c = Community("c", members, import_limit_kw=12.0)
    s = schedule_community(hours(2), c)
    assert s.community is not None
    assert s.community["net_import_kw"].tolist() == pytest.approx([12.0, 8.0])
    assert s.cost_eur == pytest.approx(3.6)
    assert s.status == "optimal"
    cmp = compare_individual_and_community(hours(2), c)
    assert cmp.summary.loc["individual", "cost_eur"] == pytest.approx(2.0)
    assert cmp.summary.loc["individual", "limit_excess_kwh"] == pytest.approx(8.0)
    assert cmp.summary.loc["community", "limit_excess_kwh"] == pytest.approx(0.0, abs=TOL)
    assert cmp.summary.loc["community", "peak_net_import_kw"] == pytest.approx(12.0)
    assert cmp.members["community_eur"].sum() == pytest.approx(3.6)


def test_community_limit_unreachable_is_reported() -> None:
    # 15 kW of fixed load under a 10 kW limit: 5 kWh over the limit, reported, schedule still given.
    members = [
        Site("a", 7.0, commitments=(energy_price(0.1),)),
        Site("b", 8.0, commitments=(energy_price(0.1),)),
    ]
    s = schedule_community(hours(1), Community("c", members, import_limit_kw=10.0))
    assert s.status == "relaxed"
    row = s.unmet.iloc[0]
    assert (row["member"], row["constraint"], row["shortfall"]) == ("community", "import_limit", 5.0)
    assert s.cost_eur == pytest.approx(1.5)


def sharing_case(value: float | None) -> Community:
    # A has 2 kW of PV in hour 0 only (feed-in 0.05). B's EV needs 2 kWh; hour 1 is cheaper (0.18 vs
    # 0.20), so alone B charges in hour 1 (0.36). With a sharing value of 0.05 EUR/kWh charging in
    # hour 0 from A's PV costs 0.40 - 0.10 = 0.30.
    a = Site(
        "a",
        0.0,
        devices=(PVSystem("pv", [2.0, 0.0], curtailable=False),),
        commitments=(feed_in([0.05, 0.05]),),
    )
    b = ev_member("b", 2.0, [0.20, 0.18])
    b = Site("b", 0.0, devices=b.devices, commitments=(energy_price([0.20, 0.18]), feed_in([0.05, 0.05])))
    shared = (sharing_value(value),) if value is not None else ()
    return Community("c", [a, b], commitments=shared)


def test_sharing_value_moves_consumption_to_a_neighbours_pv() -> None:
    s = schedule_community(hours(2), sharing_case(0.05))
    assert s.devices["b"]["ev"]["charge_kw"].tolist() == pytest.approx([2.0, 0.0])
    assert s.community is not None
    assert s.community["shared_kw"].tolist() == pytest.approx([2.0, 0.0])
    # A earns 0.10 of feed-in; B pays 0.40; sharing is worth 0.05 x 2 = 0.10, half to each side
    sharing = s.statement[s.statement["item"] == "sharing"].set_index("member")["optimal_eur"]
    assert sharing.to_dict() == pytest.approx({"a": -0.05, "b": -0.05})
    assert s.cost_eur == pytest.approx(-0.10 + 0.40 - 0.10)
    alone = schedule_community(hours(2), sharing_case(None))
    assert alone.devices["b"]["ev"]["charge_kw"].tolist() == pytest.approx([0.0, 2.0])


def test_individual_and_community_optimum_with_sharing() -> None:
    cmp = compare_individual_and_community(hours(2), sharing_case(0.05))
    # individually B charges in hour 1: no shared energy; jointly 2 kWh are shared
    assert cmp.summary.loc["individual", "shared_kwh"] == pytest.approx(0.0, abs=TOL)
    assert cmp.summary.loc["community", "shared_kwh"] == pytest.approx(2.0)
    assert cmp.summary.loc["individual", "cost_eur"] == pytest.approx(-0.10 + 0.36)
    assert cmp.summary.loc["community", "cost_eur"] == pytest.approx(0.20)
    assert cmp.members.loc["b", "gain_eur"] == pytest.approx(0.36 - 0.35)


def test_community_dso_request_and_peak() -> None:
    # Two EVs of 10 kWh, cheap hour 0. A DSO import limit of 8 kW in hour 0 (OpenADR event):
    # 8 kWh at 0.1 and 12 kWh at 0.3 = 4.4.
    members = [ev_member("a", 10.0, [0.1, 0.3]), ev_member("b", 10.0, [0.1, 0.3])]
    c = Community("c", members, commitments=dso_limit(import_max_kw=[8.0, np.nan]))
    s = schedule_community(hours(2), c)
    assert s.community is not None
    assert s.community["net_import_kw"].iloc[0] == pytest.approx(8.0)
    assert s.cost_eur == pytest.approx(4.4)
    # a community peak charge of 1 EUR/kW flattens the transformer flow to 10 kW each hour:
    # energy 1.0 + 3.0, peak 10 -> 14 (instead of 20 kW x 1 + 2 = 22)
    c = Community("c", members, commitments=(peak_charge(1.0),))
    s = schedule_community(hours(2), c)
    assert s.community is not None
    assert s.community["net_import_kw"].tolist() == pytest.approx([10.0, 10.0])
    assert s.cost_eur == pytest.approx(14.0)
    assert s.statement.set_index("member").loc["community", "optimal_eur"] == pytest.approx(10.0)


def test_pooled_reserve_is_allocated_by_contribution() -> None:
    # Two batteries at 5 of 10 kWh, 2 h of energy per kW: 2.5 kW each, 5 kW pooled at 0.1 EUR/kW/h.
    def member(name: str, soc: float) -> Site:
        b = Battery("bat", 10.0, 5.0, 5.0, 1.0, 1.0, initial_soc_kwh=soc)
        return Site(name, 0.0, devices=(b,), commitments=(energy_price(0.0),))

    c = Community(
        "c", [member("a", 5.0), member("b", 2.0)], commitments=(reserve_capacity(0.1, duration_h=2.0),)
    )
    s = schedule_community(hours(1), c)
    # b holds 2 kWh: at most 1 kW up; a 2.5 kW. Pool 3.5 kW -> 0.35, allocated 0.25 / 0.10
    assert s.community is not None
    assert s.community["reserve_up_kw"].iloc[0] == pytest.approx(3.5)
    alloc = s.statement[s.statement["item"] == "reserve"].set_index("member")["optimal_eur"]
    assert alloc.to_dict() == pytest.approx({"a": -0.25, "b": -0.10})
    with pytest.raises(FlexInputError, match="both by the member and by the community"):
        both = Site("a", 0.0, devices=member("a", 5.0).devices, commitments=(reserve_capacity(0.1),))
        build_problem(hours(1), [both], community=c)


def test_community_validation() -> None:
    with pytest.raises(FlexInputError, match="not available for a community"):
        Community("c", [Site("a", 0.0)], commitments=(self_consumption_value(0.1),))
    with pytest.raises(FlexInputError, match="duplicate member"):
        schedule_community(hours(1), Community("c", [Site("a", 0.0), Site("a", 1.0)]))
    with pytest.raises(FlexInputError, match="method"):
        schedule_community(hours(1), Community("c", [Site("a", 0.0)]), method="magic")


def random_community(m: int, n: int, seed: int, limit: float) -> Community:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-03-04", periods=n, freq="15min", tz="UTC")
    price = 0.1 + 0.2 * rng.random(n)
    members = []
    for i in range(m):
        car = ElectricVehicle(
            "ev",
            60.0,
            11.0,
            [EVSession(idx[2], idx[-1] + pd.Timedelta(minutes=15), float(rng.uniform(1, 6)))],
        )
        bat = Battery("bat", 5.0, 2.5, 2.5, 0.95, 0.95, initial_soc_kwh=float(rng.uniform(0, 5)))
        pv = PVSystem("pv", rng.uniform(0, 3, n))
        members.append(
            Site(
                f"m{i}",
                rng.uniform(0.2, 1.5, n),
                devices=(car, bat, pv),
                connection=GridConnection(17.0, 17.0),
                commitments=(energy_price(price + 0.1), feed_in(price - 0.02)),
            )
        )
    return Community(
        "c", members, import_limit_kw=limit, export_limit_kw=limit, commitments=(sharing_value(0.03),)
    )


def test_warm_start_reaches_the_joint_optimum() -> None:
    # Two solver paths, one optimum: the decomposition-crashed basis and the cold joint LP.
    c = random_community(12, 16, seed=3, limit=25.0)
    idx = pd.date_range("2024-03-04", periods=16, freq="15min", tz="UTC")
    joint = solve(build_problem(idx, c.members, community=c))
    warm = solve_warm(build_problem(idx, c.members, community=c), sample_members=4)
    assert warm.solver_info["method"] == "warm" and warm.solver_info["sample_members"] == 4
    assert warm.objective_eur == pytest.approx(joint.objective_eur, rel=1e-7)
    assert warm.community is not None and joint.community is not None
    assert warm.community["net_import_kw"].max() <= 25.0 + TOL
    assert warm.cost_eur == pytest.approx(joint.cost_eur, rel=1e-7)
    # the limit binds: the same community without it is cheaper and goes above 25 kW
    unlimited = Community("c", c.members, commitments=c.commitments)
    free = solve(build_problem(idx, c.members, community=unlimited))
    assert free.cost_eur < joint.cost_eur - 1e-3
    assert free.community is not None and free.community["net_import_kw"].max() > 25.0 + 1e-3


def test_warm_start_never_returns_simultaneous_charge_and_discharge() -> None:
    # Full batteries at a negative price: the LP would charge and discharge at once to import more.
    # Members cannot undo that with their community flows fixed, so the community is decided jointly.
    def member(k: int) -> Site:
        b = Battery("bat", 10.0, 5.0, 5.0, 0.9, 0.9, initial_soc_kwh=10.0)
        p = [-0.2, 0.1]
        return Site(f"m{k}", 0.5, devices=(b,), commitments=(energy_price(p), feed_in(p)))

    c = Community("c", [member(k) for k in range(6)], import_limit_kw=50.0)
    idx = hours(2)
    warm = solve_warm(build_problem(idx, c.members, community=c), sample_members=2)
    joint = solve(build_problem(idx, c.members, community=c))
    for k in range(6):
        b = warm.devices[f"m{k}"]["bat"]
        assert not ((b["charge_kw"] > TOL) & (b["discharge_kw"] > TOL)).any()
    assert warm.objective_eur == pytest.approx(joint.objective_eur, rel=1e-7)
    lp = solve_warm(build_problem(idx, c.members, community=c), sample_members=2, exclusivity="none")
    assert lp.objective_eur < joint.objective_eur - 1e-3
