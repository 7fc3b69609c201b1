"""Home-automation parity: energy flows, today's energy and live power."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.edge.live import FLOW_NAMES, LiveBoard, community_members, energy_flows, flow_totals, live_view
from bright.edge.mqtt import CommittedReadings
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.db import make_engine
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService

B = "https://w3id.org/bright/ns#"


# --- pure computation ---------------------------------------------------------------------------------
def test_flows_of_a_sunny_quarter_hour_with_a_battery():
    # Solar 0.3 kWh, export 0.05, charge 0.1, import 0.1 (gross, in the same quarter-hour):
    # S->grid 0.05, S->bat 0.1, S->home 0.15; import feeds the home (0.1); home 0.25 kWh.
    f = energy_flows([0.1], [0.05], [0.3], [0.1], [0.0])
    got = {k: float(v[0]) for k, v in f.items()}
    assert got["solar_to_grid"] == pytest.approx(0.05)
    assert got["solar_to_battery"] == pytest.approx(0.1)
    assert got["solar_to_home"] == pytest.approx(0.15)
    assert got["grid_to_home"] == pytest.approx(0.1)
    assert got["grid_to_battery"] == 0.0
    assert got["home"] == pytest.approx(0.25)
    assert got["self_consumed_solar"] == pytest.approx(0.25)
    assert got["unbalanced"] == pytest.approx(0.0)


def test_evening_battery_discharge_covers_the_home_first_then_exports():
    # No sun; the battery gives 0.5 kWh, 0.2 kWh goes to the grid; home takes 0.3 + 0.1 imported.
    f = energy_flows(0.1, 0.2, None, None, 0.5)
    assert float(f["battery_to_grid"]) == pytest.approx(0.2)
    assert float(f["battery_to_home"]) == pytest.approx(0.3)
    assert float(f["home"]) == pytest.approx(0.4)
    t = flow_totals({k: np.atleast_1d(v) for k, v in f.items()})
    assert t["self_sufficiency"] == pytest.approx(0.75)  # 0.3 of 0.4 from the battery
    assert math.isnan(t["self_consumption"])  # no solar: the ratio is undefined, not 0


def test_inconsistent_data_shows_as_unbalanced_not_as_negative_flows():
    # Exporting 1 kWh with 0.2 kWh of solar and nothing else: 0.8 kWh cannot be explained.
    f = energy_flows(0.0, 1.0, 0.2)
    assert float(f["unbalanced"]) == pytest.approx(0.8)
    assert min(float(v) for v in f.values()) >= 0.0


def test_missing_inputs_make_the_interval_missing_and_totals_say_so():
    f = energy_flows([0.1, np.nan, 0.2], [0.0, 0.0, 0.0], [0.0, 0.1, 0.0])
    assert np.isnan(f["home"][1]) and np.isnan(f["solar_to_home"][1])
    t = flow_totals(f)
    assert t["intervals"] == 2.0
    assert t["home"] == pytest.approx(0.3)


def test_negative_inputs_are_refused_with_their_position():
    with pytest.raises(ValueError, match=r"solar\[1\] = -0.1 is negative"):
        energy_flows([0, 0], [0, 0], [0.0, -0.1])
    with pytest.raises(ValueError, match="different lengths"):
        energy_flows([0, 0], [0, 0, 0])


nonneg = st.floats(0, 50, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(nonneg, nonneg, nonneg, nonneg, nonneg), min_size=1, max_size=30))
def test_flows_are_nonnegative_and_balance(rows):
    g_in, g_out, s, b_in, b_out = (np.array(c) for c in zip(*rows, strict=True))
    f = energy_flows(g_in, g_out, s, b_in, b_out)
    tol = 1e-9 * (1 + np.abs(g_in) + g_out + s + b_in + b_out)
    for name in FLOW_NAMES:
        assert (f[name] >= -tol).all(), name
    # Each source is fully routed; the home takes what enters minus what leaves, plus what the
    # data cannot explain.
    assert np.allclose(f["solar_to_grid"] + f["solar_to_battery"] + f["solar_to_home"], s)
    assert np.allclose(f["battery_to_grid"] + f["battery_to_home"], b_out)
    assert np.allclose(f["grid_to_battery"] + f["grid_to_home"], g_in)
    assert np.allclose(f["home"], g_in - g_out + s + b_out - b_in + f["unbalanced"])
    t = flow_totals(f)
    for ratio in ("self_consumption", "self_sufficiency"):
        assert math.isnan(t[ratio]) or -1e-9 <= t[ratio] <= 1 + 1e-9


# --- views over a twin ---------------------------------------------------------------------------
NOW = pd.Timestamp("2024-06-01T10:07:00Z")  # local day started 2024-05-31T22:00Z: 48 quarter-hours done
DAY = pd.date_range("2024-05-31T22:00Z", "2024-06-01T10:00Z", freq="15min", inclusive="left")


@pytest.fixture
def twin(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
    svc = TwinService(engine)
    ents = [
        {"id": "urn:ngsi-ld:Meter:c1:m1", "type": "Meter"},
        {"id": "urn:ngsi-ld:Meter:c1:m2", "type": "Meter"},
        {
            "id": "urn:ngsi-ld:PhotovoltaicDevice:c1:m1",
            "type": "PhotovoltaicDevice",
            "peakPower": {"type": "Property", "value": 4.0},
        },
        {
            "id": "urn:ngsi-ld:Battery:c1:m1",
            "type": "Battery",
            "capacity": {"type": "Property", "value": 10.0},
        },
        {"id": "urn:ngsi-ld:Meter:c2:other", "type": "Meter"},
    ]
    res = svc.batch_upsert("", ents, svc.resolve_context(BRIGHT_CONTEXT_URL))
    assert not res["errors"]
    series = SeriesStore(engine)
    sunny = np.r_[np.zeros(40), np.ones(8)]  # the last 8 quarter-hours (08:00-10:00 local)

    def put(eid: str, attr: str, values, unit="KWH"):
        series.write(pd.DataFrame({eid: values}, index=DAY), attribute=B + attr, unit_code=unit)

    put("urn:ngsi-ld:Meter:c1:m1", "offtakeKwh", np.full(48, 0.1))
    put("urn:ngsi-ld:Meter:c1:m1", "injectionKwh", 0.05 * sunny)
    put("urn:ngsi-ld:PhotovoltaicDevice:c1:m1", "productionKwh", 0.3 * sunny)
    put("urn:ngsi-ld:Battery:c1:m1", "offtakeKwh", 0.1 * sunny)
    put("urn:ngsi-ld:Battery:c1:m1", "injectionKwh", np.zeros(48))
    m2 = np.full(48, 0.2)
    m2[10] = np.nan  # explicitly missing
    put("urn:ngsi-ld:Meter:c1:m2", "offtakeKwh", m2)
    put("urn:ngsi-ld:Meter:c1:m2", "injectionKwh", np.zeros(48))
    # Live power readings (kW) a few minutes before NOW; one stale reading of m2 (30 min old).
    for eid, attr, t, v, unit in (
        ("urn:ngsi-ld:Meter:c1:m1", "powerKw", "2024-06-01T10:05Z", 1.5, "KWT"),
        ("urn:ngsi-ld:PhotovoltaicDevice:c1:m1", "powerKw", "2024-06-01T10:06Z", 3.0, "KWT"),
        ("urn:ngsi-ld:Battery:c1:m1", "powerKw", "2024-06-01T10:06Z", -0.5, "KWT"),
        ("urn:ngsi-ld:Battery:c1:m1", "stateOfCharge", "2024-06-01T10:06Z", 0.62, "C62"),
        ("urn:ngsi-ld:Meter:c1:m2", "powerKw", "2024-06-01T09:37Z", 9.9, "KWT"),
    ):
        series.write(
            pd.DataFrame({eid: [v]}, index=pd.DatetimeIndex([pd.Timestamp(t)])),
            attribute=B + attr,
            unit_code=unit,
        )
    return engine, series, svc.store


def test_today_energy_per_member_and_community(twin):
    _, series, store = twin
    view = live_view(series, store, "c1", now=NOW)
    assert sorted(view.members) == ["m1", "m2"]
    m1 = view.members["m1"][1]
    assert m1.expected_intervals == 48 and m1.start == pd.Timestamp("2024-05-31T22:00Z")
    t = m1.totals
    # 40 dark quarter-hours: home 0.1 from the grid; 8 sunny ones: home 0.25 (0.15 solar, 0.1 grid).
    assert t["grid_in"] == pytest.approx(4.8)
    assert t["grid_out"] == pytest.approx(0.4)
    assert t["solar"] == pytest.approx(2.4)
    assert t["battery_in"] == pytest.approx(0.8)
    assert t["home"] == pytest.approx(6.0)
    assert t["self_consumed_solar"] == pytest.approx(2.0)
    assert t["self_consumption"] == pytest.approx(2.0 / 2.4)
    assert t["self_sufficiency"] == pytest.approx(1.2 / 6.0)
    m2 = view.members["m2"][1].totals
    assert m2["intervals"] == 47  # the missing quarter-hour is not counted as zero
    assert m2["home"] == pytest.approx(9.4)
    c = view.today.totals
    assert c["home"] == pytest.approx(15.4)
    assert c["self_sufficiency"] == pytest.approx(1.2 / 15.4)
    assert c["intervals"] == 47


def test_live_power_uses_fresh_readings_and_estimates_from_the_last_interval(twin):
    _, series, store = twin
    view = live_view(series, store, "c1", now=NOW)
    p1 = view.members["m1"][0]
    assert (p1.grid_in_kw, p1.grid_out_kw, p1.solar_kw) == (1.5, 0.0, 3.0)
    assert (p1.battery_in_kw, p1.battery_out_kw) == (0.0, 0.5)
    assert p1.home_kw == pytest.approx(5.0)  # 1.5 imported + 3.0 solar + 0.5 from the battery
    assert p1.state_of_charge == pytest.approx(0.62)
    assert not p1.estimated
    p2 = view.members["m2"][0]
    # The 9.9 kW reading is 30 min old (stale); the 09:45-10:00 interval's 0.2 kWh is 0.8 kW.
    assert p2.estimated and p2.grid_in_kw == pytest.approx(0.8)
    assert view.power.home_kw == pytest.approx(5.8)
    d = view.as_dict()
    assert d["members"]["m1"]["power"]["solar_kw"] == 3.0 and d["today"]["expectedIntervals"] == 48


def test_live_board_follows_commits_without_the_database(twin):
    _, series, store = twin
    board = LiveBoard()
    us = lambda t: pd.Timestamp(t).value // 1000  # noqa: E731
    board.update(
        CommittedReadings(
            "",
            np.array(
                ["urn:ngsi-ld:Meter:c1:m1", "urn:ngsi-ld:Meter:c1:m1", "urn:ngsi-ld:Meter:c1:m2"],
                dtype=object,
            ),
            np.array([B + "powerKw"] * 3, dtype=object),
            np.array(
                [us("2024-06-01T10:06Z"), us("2024-06-01T10:01Z"), us("2024-06-01T10:06Z")], dtype=np.int64
            ),
            np.array([-2.0, 7.0, 0.4]),
        )
    )
    # The newest reading wins even when an older one comes later in the batch.
    assert board.get("", "urn:ngsi-ld:Meter:c1:m1", B + "powerKw")[1] == -2.0
    view = live_view(series, store, "c1", members=["m1", "m2"], now=NOW, board=board)
    assert view.members["m1"][0].grid_out_kw == 2.0
    assert view.members["m2"][0].grid_in_kw == 0.4 and not view.members["m2"][0].estimated


def test_community_members_come_from_the_twins_meters(twin):
    _, _, store = twin
    assert community_members(store, "c1") == ["m1", "m2"]
    assert community_members(store, "c2") == ["other"]


def test_just_after_midnight_there_is_nothing_yet(twin):
    _, series, store = twin
    view = live_view(series, store, "c1", now="2024-05-31T22:05Z")
    assert view.today.expected_intervals == 0 and view.today.totals["home"] == 0.0
    with pytest.raises(ValueError, match="no time zone"):
        live_view(series, store, "c1", now="2024-06-01T10:00")
