"""The sparse model builder, the input conversions and the validation of inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bright.energy.flex.commitments import energy_price, feed_in
from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, GridConnection, HeatPump, PVSystem
from bright.energy.flex.problem import (
    FlexInputError,
    ModelBuilder,
    Penalties,
    Site,
    build_problem,
    horizon_step_h,
    step_values,
)
from bright.energy.flex.solve import schedule, solve


def quarter_hours(n: int, start: str = "2024-03-04") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="15min", tz="UTC")


def test_builder_assembles_csr_and_sums_duplicates() -> None:
    b = ModelBuilder(3, 0.25)
    x = b.add_cols(3, lower=0.0, upper=[1.0, 2.0, 3.0], cost=1.0)
    r = b.add_rows(2, lower=[0.0, -math.inf], upper=[5.0, 1.0])
    b.add_entries(r[0], x, [1.0, 2.0, 3.0])
    b.add_entries(r[1], x[0], 4.0)
    b.add_entries(r[1], x[0], 1.0)  # duplicate of (row 1, col 0): summed to 5
    b.add_entries(r[1], x[2], 0.0)  # explicit zero: dropped
    b.add_cost(x[1], 0.5)
    m = b.finish()
    dense = np.zeros((m.num_row, m.num_col))
    for i in range(m.num_row):
        for k in range(m.a_start[i], m.a_start[i + 1]):
            dense[i, m.a_index[k]] += m.a_value[k]
    np.testing.assert_array_equal(dense, [[1.0, 2.0, 3.0], [5.0, 0.0, 0.0]])
    assert m.num_nz == 4
    np.testing.assert_array_equal(m.col_cost, [1.0, 1.5, 1.0])
    np.testing.assert_array_equal(m.col_upper, [1.0, 2.0, 3.0])


def test_step_values_holds_hourly_values_over_quarter_hours() -> None:
    idx = quarter_hours(6, "2024-03-04 00:30")
    hourly = pd.Series([1.0, 2.0, 3.0], index=pd.date_range("2024-03-04", periods=3, freq="1h", tz="UTC"))
    np.testing.assert_array_equal(step_values(hourly, idx, what="p"), [1.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    np.testing.assert_array_equal(step_values(2.5, idx, what="p"), [2.5] * 6)
    # another time zone is the same instants
    local = hourly.tz_convert("Europe/Brussels")
    np.testing.assert_array_equal(step_values(local, idx, what="p"), [1.0, 1.0, 2.0, 2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (pd.Series([1.0], index=pd.DatetimeIndex(["2024-03-04 01:00"], tz="UTC")), "starts at"),
        (
            pd.Series([1.0, 2.0], index=pd.date_range("2024-03-03 22:00", periods=2, freq="1h", tz="UTC")),
            "ends at",
        ),
        (pd.Series([np.nan, 1.0], index=pd.date_range("2024-03-04", periods=2, freq="1h", tz="UTC")), "NaN"),
        (pd.Series([1.0], index=pd.DatetimeIndex(["2024-03-04"])), "timezone-aware"),
        (np.ones(3), "expected 4 values"),
    ],
)
def test_step_values_rejects_bad_series(value: object, message: str) -> None:
    with pytest.raises(FlexInputError, match=message):
        step_values(value, quarter_hours(4, "2024-03-04 00:00"), what="member 'm' price")  # type: ignore[arg-type]


def test_horizon_validation() -> None:
    assert horizon_step_h(quarter_hours(4)) == 0.25
    with pytest.raises(FlexInputError, match="UTC"):
        horizon_step_h(pd.date_range("2024-03-04", periods=4, freq="15min"))
    irregular = pd.DatetimeIndex(["2024-03-04 00:00", "2024-03-04 00:15", "2024-03-04 00:45"], tz="UTC")
    with pytest.raises(FlexInputError, match="irregular at 2024-03-04 00:45"):
        horizon_step_h(irregular)
    one = pd.DatetimeIndex(["2024-03-04"], tz="UTC")
    with pytest.raises(FlexInputError, match="freq"):
        horizon_step_h(one)
    assert horizon_step_h(pd.date_range("2024-03-04", periods=1, freq="15min", tz="UTC")) == 0.25


def test_daylight_saving_day_has_92_quarter_hours() -> None:
    # 31 March 2024 in Brussels: 23 hours. The horizon is UTC; hourly prices map onto it unchanged.
    local = pd.date_range("2024-03-31", "2024-04-01", freq="15min", tz="Europe/Brussels", inclusive="left")
    idx = local.tz_convert("UTC")
    assert len(idx) == 92
    prices = pd.Series(np.linspace(0.1, 0.3, 24), index=pd.date_range(idx[0], periods=24, freq="1h"))
    b = Battery("bat", 10.0, 5.0, 5.0, 0.95, 0.95, initial_soc_kwh=5.0)
    s = schedule(idx, Site("home", 0.5, devices=(b,), commitments=(energy_price(prices), feed_in(prices))))
    assert len(s.sites["home"]) == 92 and s.status == "optimal"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Battery("b", 10.0, 5.0, 5.0, 1.2, 0.9), "charge_efficiency must be in"),
        (lambda: Battery("b", 10.0, -5.0, 5.0), "charge_power_kw must be finite"),
        (
            lambda: Battery("b", 10.0, 5.0, 5.0, soc_min_kwh=6.0, soc_max_kwh=5.0),
            "soc_min_kwh <= soc_max_kwh",
        ),
        (lambda: HeatPump("h", 2.0, 3.0, 0.0, 5.0, 0.0, 20.0), "resistance_k_per_kw"),
        (lambda: GridConnection(-1.0), "import_limit_kw"),
        (lambda: Penalties(energy_eur_per_kwh=0.0), "energy_eur_per_kwh"),
        (lambda: Site("m", 0.0, devices=(PVSystem("x", 1.0), PVSystem("x", 2.0))), "duplicate device"),
        (
            lambda: ElectricVehicle(
                "ev",
                60.0,
                11.0,
                [
                    EVSession(
                        pd.Timestamp("2024-03-04 00:00", tz="UTC"),
                        pd.Timestamp("2024-03-04 02:00", tz="UTC"),
                        1.0,
                    ),
                    EVSession(
                        pd.Timestamp("2024-03-04 01:00", tz="UTC"),
                        pd.Timestamp("2024-03-04 03:00", tz="UTC"),
                        1.0,
                    ),
                ],
            ),
            "overlaps",
        ),
        (
            lambda: ElectricVehicle(
                "ev", 60.0, 11.0, [EVSession(pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-05"), 1.0)]
            ),
            "time zone",
        ),
    ],
)
def test_invalid_devices_raise(make: object, message: str) -> None:
    with pytest.raises(FlexInputError, match=message):
        make()  # type: ignore[operator]


def test_error_messages_name_member_and_device() -> None:
    idx = quarter_hours(4)
    hp = HeatPump("attic", 2.0, 3.0, 10.0, 5.0, [0.0, 1.0, np.nan, 2.0], 20.0)
    with pytest.raises(
        FlexInputError,
        match=r"member 'm7' heat pump 'attic': outdoor_temp_c: missing value \(NaN\) at 2024-03-04 00:30",
    ):
        build_problem(idx, [Site("m7", 0.0, devices=(hp,))])
    with pytest.raises(FlexInputError, match="member 'm7': base_load_kw"):
        build_problem(idx, [Site("m7", [1.0, np.nan, 1.0, 1.0])])
    with pytest.raises(FlexInputError, match="exclusivity"):
        solve(build_problem(idx, [Site("m7", 1.0)]), exclusivity="sometimes")


def test_equal_import_and_export_prices_give_no_simultaneous_flows() -> None:
    # With one price both ways the LP is indifferent to importing and exporting at once; the schedule
    # nets them without binaries.
    idx = quarter_hours(8)
    p = np.array([0.1, 0.3, 0.1, 0.3, 0.2, 0.2, 0.4, 0.1])
    b = Battery("bat", 4.0, 3.0, 3.0, 1.0, 1.0, initial_soc_kwh=2.0)
    s = schedule(
        idx,
        Site(
            "home",
            1.0,
            devices=(b, PVSystem("pv", 2.0, curtailable=False)),
            commitments=(energy_price(p), feed_in(p)),
        ),
    )
    site = s.sites["home"]
    assert not ((site["import_kw"] > 1e-9) & (site["export_kw"] > 1e-9)).any()
    assert s.binaries == 0


def test_exclusivity_modes_agree_when_losses_keep_charge_and_discharge_apart() -> None:
    # Positive prices and lossy battery: the LP never charges and discharges at once, so binaries on
    # every step ("all") change nothing but the model size.
    idx = quarter_hours(8)
    p = np.array([0.1, 0.3, 0.1, 0.3, 0.2, 0.2, 0.4, 0.1])
    b = Battery("bat", 4.0, 3.0, 3.0, 0.95, 0.95, initial_soc_kwh=2.0)
    site = Site("home", 1.0, devices=(b,), commitments=(energy_price(p), feed_in(p - 0.02)))
    lazy = schedule(idx, site)
    every = schedule(idx, site, exclusivity="all")
    assert lazy.binaries == 0 and every.binaries == 16  # battery and grid pairs, 8 steps each
    assert every.objective_eur == pytest.approx(lazy.objective_eur, rel=1e-9)
