"""The meter and device simulator: physics of its profiles and its packs (no broker here)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.edge import senml
from bright.edge.simulator import community_packs, device_profiles, self_consumption_battery
from bright.edge.topics import parse_topic
from bright.services.demo import build_demo_community, member_load_kwh, member_pv_kwh


@pytest.fixture(scope="module")
def community():
    return build_demo_community()


def test_battery_worked_example():
    # 10 kWh, 5 kW, 81 % round trip (eta = 0.9 each way), half full (5 kWh), quarter-hours:
    # surplus 2 kWh -> charge min(2, 1.25 kWh of power) = 1.25, stored 1.125 -> 6.125 kWh;
    # deficit 0.5 kWh -> discharge 0.5, taken 0.5 / 0.9 = 0.5556 -> 5.5694 kWh; zero -> idle.
    c, d, soc = self_consumption_battery(
        np.array([-2.0, 0.5, 0.0]), capacity_kwh=10, max_power_kw=5, efficiency=0.81
    )
    assert c.tolist() == [1.25, 0.0, 0.0]
    assert d.tolist() == [0.0, 0.5, 0.0]
    assert soc == pytest.approx([0.6125, (6.125 - 0.5 / 0.9) / 10, (6.125 - 0.5 / 0.9) / 10])


@settings(max_examples=80, deadline=None)
@given(
    net=st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=60),
    cap=st.floats(0.5, 100),
    power=st.floats(0.1, 50),
    eff=st.floats(0.5, 1.0),
)
def test_battery_stays_within_its_limits_and_conserves_energy(net, cap, power, eff):
    c, d, soc = self_consumption_battery(np.array(net), capacity_kwh=cap, max_power_kw=power, efficiency=eff)
    eta = math.sqrt(eff)
    assert ((soc >= -1e-12) & (soc <= 1 + 1e-12)).all()
    assert (c >= 0).all() and (d >= 0).all() and not ((c > 0) & (d > 0)).any()
    assert (c <= power * 0.25 + 1e-12).all() and (d <= power * 0.25 + 1e-12).all()
    # Never more charge than surplus nor discharge than deficit (it serves the home only).
    assert (c <= np.maximum(-np.array(net), 0) + 1e-12).all() and (
        d <= np.maximum(np.array(net), 0) + 1e-12
    ).all()
    stored = 0.5 * cap + eta * c.sum() - d.sum() / eta
    assert stored == pytest.approx(soc[-1] * cap, abs=1e-6)


def test_meter_sees_load_minus_pv_plus_battery(community):
    start, end = pd.Timestamp("2016-06-01T00:00Z"), pd.Timestamp("2016-06-03T00:00Z")
    prof = device_profiles(community, start, end)
    assert len(prof[("school", "meter")]) == 192
    for m in community.members:
        load = member_load_kwh(m).loc[start : end - pd.Timedelta(minutes=15)].to_numpy()
        pv = member_pv_kwh(m).loc[start : end - pd.Timedelta(minutes=15)].to_numpy() if m.pv_kwp else 0.0
        meter = prof[(m.key, "meter")]
        bat = prof.get((m.key, "battery"))
        charge = bat["offtake"].to_numpy() if bat is not None else 0.0
        discharge = bat["injection"].to_numpy() if bat is not None else 0.0
        net = meter["offtake"].to_numpy() - meter["injection"].to_numpy()
        np.testing.assert_allclose(net, load - pv + charge - discharge, atol=1e-12)
        assert (meter["offtake"] >= 0).all() and (meter["injection"] >= 0).all()
        np.testing.assert_allclose(meter["power"].to_numpy(), net * 4)  # kWh per quarter-hour -> kW
    assert (m.key, "pv") in prof or not m.pv_kwp
    school_pv = prof[("school", "pv")]["production"]
    assert school_pv.max() > 5.0  # 80 kWp at June noon: several kWh per quarter-hour


def test_packs_are_deterministic_valid_senml_on_the_topic_tree(community):
    a = list(
        community_packs(community, "2016-06-01T00:00Z", "2016-06-01T06:00Z", steps_per_pack=8, root="sim")
    )
    b = list(
        community_packs(community, "2016-06-01T00:00Z", "2016-06-01T06:00Z", steps_per_pack=8, root="sim")
    )
    assert [p.payload for p in a] == [p.payload for p in b]
    # 24 quarter-hours in packs of 8: 3 rounds over 14 meters, 9 PV arrays and 3 batteries.
    assert len(a) == 3 * (14 + 9 + 3)
    assert [p.due for p in a] == sorted(p.due for p in a)
    for p in a:
        addr = parse_topic(p.topic, root="sim")
        pack = senml.parse(p.payload, now=0)
        assert pack.rejected == [] and len(pack.records) == p.readings
        readings, rejected = senml.to_readings(pack, addr.entity_id, senml.Limits(500.0))
        assert rejected == [] and len(readings) == p.readings
    meter = next(p for p in a if p.topic == f"sim/{community.key}/home01/senml")
    assert meter.readings == 8 * 3  # offtake, injection, power
    assert meter.due == pd.Timestamp("2016-06-01T02:00Z")


def test_max_readings_cuts_the_stream_exactly(community):
    packs = list(
        community_packs(
            community, "2016-06-01T00:00Z", "2016-06-02T00:00Z", steps_per_pack=96, max_readings=1000
        )
    )
    assert sum(p.readings for p in packs) == 1000
    assert sum(len(senml.parse(p.payload, now=0).records) for p in packs) == 1000


def test_time_shift_moves_every_timestamp(community):
    (p,) = list(
        community_packs(
            community,
            "2016-06-01T00:00Z",
            "2016-06-01T00:15Z",
            time_shift=pd.Timedelta(days=7 * 417),
            max_readings=1,
        )
    )
    (r,) = senml.parse(p.payload, now=0).records
    assert pd.Timestamp(r.time, unit="s", tz="UTC") == pd.Timestamp(
        "2024-05-29T00:00Z"
    )  # a Wednesday, as in 2016


def test_periods_outside_the_profiles_are_refused(community):
    with pytest.raises(ValueError, match="no quarter-hour"):
        device_profiles(community, pd.Timestamp("2030-01-01T00:00Z"), pd.Timestamp("2030-01-02T00:00Z"))
