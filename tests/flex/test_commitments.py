"""Every commitment changes the schedule in a worked example, and the contract rejects what it cannot price.

1-hour steps: kW and kWh coincide. ``bat`` is a lossless 10 kWh / 5 kW battery.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bright.energy.flex.commitments import (
    Commitment,
    co2_cost,
    dso_limit,
    energy_price,
    feed_in,
    flexibility_request,
    peak_charge,
    reserve_capacity,
    self_consumption_value,
    sharing_value,
)
from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, PVSystem
from bright.energy.flex.problem import FlexInputError, Site
from bright.energy.flex.solve import Schedule, schedule

TOL = 1e-6


def hours(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-03-04", periods=n, freq="1h", tz="UTC")


def bat(initial: float = 0.0, **kw: object) -> Battery:
    return Battery("bat", 10.0, 5.0, 5.0, 1.0, 1.0, initial_soc_kwh=initial, **kw)  # type: ignore[arg-type]


def run(base: list[float], devices: tuple, commitments: tuple) -> Schedule:
    return schedule(
        hours(len(base)), Site("home", np.asarray(base, float), devices=devices, commitments=commitments)
    )


def line(s: Schedule, item: str) -> pd.Series:
    return s.statement.set_index("item").loc[item]


def test_energy_price_and_feed_in_by_hand() -> None:
    # Load [2, 0] kW, PV [0, 3] kW (fixed): import 2 kWh at 0.30, export 3 kWh at 0.05: 0.60 - 0.15.
    pv = PVSystem("pv", [0.0, 3.0], curtailable=False)
    s = run([2.0, 0.0], (pv,), (energy_price([0.3, 0.3]), feed_in([0.05, 0.05])))
    assert s.cost_eur == pytest.approx(0.45)
    assert line(s, "energy")["optimal_eur"] == pytest.approx(0.60)
    assert line(s, "feed-in")["optimal_eur"] == pytest.approx(-0.15)
    # the feed-in value moves the battery: the 3 kWh of PV are stored and sold at 0.4 rather than at
    # 0.05 (buying at 0.5 to resell does not pay): -1.2
    s = run(
        [0.0, 0.0, 0.0],
        (PVSystem("pv", [3.0, 0.0, 0.0], curtailable=False), bat()),
        (energy_price([0.5] * 3), feed_in([0.05, 0.4, 0.05])),
    )
    assert s.devices["home"]["bat"]["discharge_kw"].tolist() == pytest.approx([0.0, 3.0, 0.0])
    assert s.cost_eur == pytest.approx(-1.2)


def test_self_consumption_value_keeps_pv_on_site() -> None:
    # PV [3, 0], load [1, 1], import 0.2, no feed-in. Without a bonus the battery needs only 1 kWh
    # of the 2 kWh surplus. With 0.05 EUR per self-consumed kWh (generation - export) it stores all
    # 2 kWh: self-consumption 3 kWh, cost -0.15 (import 0).
    pv = PVSystem("pv", [3.0, 0.0], curtailable=False)
    base = (energy_price([0.2, 0.2]), feed_in([0.0, 0.0]))
    s = run([1.0, 1.0], (pv, bat()), (*base, self_consumption_value(0.05)))
    assert s.sites["home"]["export_kw"].sum() == pytest.approx(0.0, abs=TOL)
    assert s.cost_eur == pytest.approx(-0.15)
    assert line(s, "self-consumption")["optimal_eur"] == pytest.approx(-0.15)
    # no bonus: exporting the extra kWh is free, self-consumption may be lower
    assert run([1.0, 1.0], (pv, bat()), base).cost_eur == pytest.approx(0.0, abs=1e-9)


def test_peak_charge_shaves_the_peak() -> None:
    # Load [1, 4] kW, energy 0.1, 10 EUR/kW on the horizon peak. The battery charges 1.5 kWh in
    # hour 0 and gives it back in hour 1: both hours at 2.5 kW. Cost 10 x 2.5 + 0.1 x 5 = 25.5.
    s = run([1.0, 4.0], (bat(),), (energy_price([0.1, 0.1]), peak_charge(10.0)))
    assert s.sites["home"]["net_import_kw"].tolist() == pytest.approx([2.5, 2.5])
    assert s.cost_eur == pytest.approx(25.5)
    assert line(s, "peak")["reference_eur"] == pytest.approx(40.0)  # 10 x 4 kW without flexibility
    # a peak already reached costs nothing again: with 3 kW paid for, shave only to 3 kW
    s = run([1.0, 4.0], (bat(),), (energy_price([0.1, 0.1]), peak_charge(10.0, reached_kw=3.0)))
    assert s.sites["home"]["net_import_kw"].max() == pytest.approx(3.0)
    assert s.cost_eur == pytest.approx(0.5)


def test_flexibility_request_pays_for_reduction() -> None:
    # Event in hour 1 with a 3 kW baseline at 0.5 EUR/kWh (symmetric). Energy 0.1 both ways.
    # The battery charges 5 kWh in hour 0 (net 6) and discharges 5 kWh in hour 1 (net -1):
    # energy 0.1 x 5 = 0.5, request 0.5 x (-1 - 3) = -2.0.
    req = flexibility_request([np.nan, 3.0], 0.5)
    s = run([1.0, 4.0], (bat(),), (energy_price([0.1, 0.1], quantity="net_import"), req))
    assert s.sites["home"]["net_import_kw"].tolist() == pytest.approx([6.0, -1.0])
    assert line(s, "flexibility request")["optimal_eur"] == pytest.approx(-2.0)
    assert s.cost_eur == pytest.approx(-1.5)
    # with a penalty above the reward, exceeding the baseline costs more than reducing earns
    req2 = flexibility_request([np.nan, 3.0], 0.5, penalty_eur_per_kwh=1.0)
    assert req2.up_price == 1.0 and req2.down_price == 0.5


def test_dso_limit_is_respected() -> None:
    # Hour 1 is cheaper, so the battery would stay idle (net [1, 4], cost 0.6). An OpenADR-style
    # import limit of 2 kW in hour 1 only makes it carry 2 kWh from hour 0: net [3, 2], cost 0.8.
    lim = dso_limit(import_max_kw=[np.nan, 2.0])
    s = run([1.0, 4.0], (bat(),), (energy_price([0.2, 0.1]), *lim))
    assert s.sites["home"]["net_import_kw"].tolist() == pytest.approx([3.0, 2.0])
    assert s.cost_eur == pytest.approx(0.8)
    assert s.status == "optimal" and len(s.unmet) == 0
    # without flexibility the limit cannot be met: the excess is reported, the schedule still given
    s = run([1.0, 4.0], (), (energy_price([0.2, 0.1]), *lim))
    assert s.status == "relaxed"
    row = s.unmet.iloc[0]
    assert (row["item"], row["constraint"], row["shortfall"], row["unit"]) == (
        "dso limit (import)",
        "limit",
        2.0,
        "kWh",
    )
    # an export limit
    pv = PVSystem("pv", [5.0, 5.0])
    s = run(
        [0.0, 0.0], (pv,), (energy_price([0.1, 0.1]), feed_in([0.05, 0.05]), *dso_limit(export_max_kw=1.5))
    )
    assert s.sites["home"]["export_kw"].max() == pytest.approx(1.5)


def test_co2_cost_moves_consumption_to_clean_hours() -> None:
    # Same energy price; 0.5 vs 0.1 kgCO2e/kWh at 0.2 EUR/kg = 0.10 vs 0.02 EUR/kWh.
    # The EV takes its 4 kWh in hour 1: CO2 cost 0.08.
    idx = hours(2)
    car = ElectricVehicle(
        "ev", 60.0, 11.0, [EVSession(idx[0], idx[1] + pd.Timedelta(hours=1), 4.0)], charge_efficiency=1.0
    )
    s = run([0.0, 0.0], (car,), (energy_price([0.1, 0.1]), co2_cost([0.5, 0.1], 0.2)))
    assert s.devices["home"]["ev"]["charge_kw"].tolist() == pytest.approx([0.0, 4.0])
    assert line(s, "CO2")["optimal_eur"] == pytest.approx(0.08)
    assert line(s, "CO2")["reference_eur"] == pytest.approx(0.40)  # charging on arrival


def test_reserve_needs_energy_for_its_duration() -> None:
    # Symmetric reserve at 0.1 EUR/kW/h for 1 h, 2 h of energy per kW. Battery at 5 of 10 kWh:
    # power allows 5 kW, energy allows 5 kWh / 2 h = 2.5 kW up and (10 - 5) / 2 = 2.5 kW down.
    # Revenue 0.25.
    s = run([0.0], (bat(5.0),), (energy_price([0.0]), reserve_capacity(0.1, duration_h=2.0)))
    assert s.devices["home"]["bat"]["reserve_up_kw"].iloc[0] == pytest.approx(2.5)
    assert s.sites["home"]["reserve_down_kw"].iloc[0] == pytest.approx(2.5)
    assert s.cost_eur == pytest.approx(-0.25)
    # with a 15-min energy reserve only the power binds: 5 kW, 0.5
    short = run([0.0], (bat(5.0),), (energy_price([0.0]), reserve_capacity(0.1, duration_h=0.25)))
    assert short.cost_eur == pytest.approx(-0.5)


def test_reserve_power_headroom_and_blocks() -> None:
    # Upward reserve only, 1 h duration, battery with 1 kWh: at most 1 kW up in hour 0.
    s = run([0.0], (bat(1.0),), (energy_price([0.0]), reserve_capacity(0.1, direction="up", duration_h=1.0)))
    assert s.sites["home"]["reserve_up_kw"].iloc[0] == pytest.approx(1.0)
    # reserve shares the power with energy arbitrage: selling 5 kW at 0.3 leaves no upward headroom
    s = run(
        [0.0, 0.0],
        (bat(10.0),),
        (
            energy_price([0.0, 0.3]),
            feed_in([0.0, 0.3]),
            reserve_capacity(0.01, direction="up", duration_h=0.0),
        ),
    )
    site = s.sites["home"]
    assert (site["export_kw"] + site["reserve_up_kw"]).max() <= 5.0 + TOL
    # two-hour blocks: the reservation is the same in both hours of the block
    prices = pd.Series([0.1, 0.3, 0.2, 0.2], index=hours(4))
    blocked = run(
        [0.0] * 4,
        (bat(1.0),),
        (energy_price([0.0] * 4), reserve_capacity(prices, duration_h=1.0, block_steps=2)),
    )
    r = blocked.sites["home"]["reserve_up_kw"].to_numpy()
    assert r[0] == pytest.approx(r[1]) and r[2] == pytest.approx(r[3])


def test_statement_adds_up_to_the_objective() -> None:
    pv = PVSystem("pv", [0.0, 3.0, 1.0])
    s = run(
        [1.0, 0.5, 2.0],
        (pv, bat(2.0, degradation_eur_per_kwh=0.01)),
        (energy_price([0.3, 0.1, 0.4]), feed_in([0.05, 0.05, 0.05]), peak_charge(1.0)),
    )
    assert s.statement["optimal_eur"].sum() == pytest.approx(s.objective_eur)
    np.testing.assert_allclose(
        s.statement["value_eur"], s.statement["reference_eur"] - s.statement["optimal_eur"]
    )
    stack = s.value_stack()
    assert stack.loc["total", "total"] == pytest.approx(s.statement["value_eur"].sum())


# --------------------------------------------------------------------------------------------------
# the contract


def test_non_convex_commitment_raises() -> None:
    # earning more below the baseline than paying above it would pay to deviate both ways at once
    bad = Commitment("x", "import", up_price=0.1, down_price=0.2)
    with pytest.raises(FlexInputError, match="not convex"):
        run([1.0], (), (bad,))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x", "quantity": "import", "up_price": 0.1, "colour": "red"}, "unknown option"),
        ({"name": "x", "quantity": "imports", "up_price": 0.1}, "unknown quantity"),
        ({"name": "x", "quantity": "import", "up_price": 0.1, "scope": "month"}, "unknown scope"),
        ({"name": "x", "quantity": "import"}, "up_price is required"),
        ({"name": "x", "quantity": "import", "up_price": 0.1, "hard": True}, "hard limit takes no"),
        (
            {"name": "x", "quantity": "import", "up_price": 1.0, "down_price": 0.5, "scope": "horizon"},
            "no down_price",
        ),
        ({"name": "x", "quantity": "import", "up_price": 0.1, "block_steps": 4}, "reserve quantities only"),
        ({"name": "x", "quantity": "reserve_up", "up_price": -0.1}, "reserve_duration_h"),
        ({"quantity": "import"}, "missing required"),
    ],
)
def test_invalid_commitments_raise(spec: dict, message: str) -> None:
    with pytest.raises(FlexInputError, match=message):
        Commitment.from_dict(spec)


def test_from_dict_builds_the_same_commitment() -> None:
    c = Commitment.from_dict({"name": "peak", "quantity": "net_import", "up_price": 3.0, "scope": "horizon"})
    assert c == peak_charge(3.0)


def test_level_specific_quantities() -> None:
    with pytest.raises(FlexInputError, match="not available for a member"):
        Site("m", 1.0, commitments=(sharing_value(0.1),))
    with pytest.raises(TypeError):
        energy_price(0.1, colour="red")  # type: ignore[call-arg]
