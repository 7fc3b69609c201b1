"""Tomorrow's flexibility schedule of a community in the twin: problem from the twin, limits, value
statement, FlexibilitySchedule entities, the setpoint handover to S2, and the API's errors.

Same twin as the forecasting tests (the demo slice, 8 weeks of metering, next day 2016-03-01, a
Tuesday). No forecast is stored here, so the schedule falls back to persistence.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_analytics_forecasting import BRIGHT_LINK, CID, DAY, KEY, build_twin, client_for, member_id

from bright import datasets
from bright.energy.forecast.features import delivery_day_index
from bright.services.community import CommunityInputError, load_community
from bright.services.scheduling import (
    SCHEDULE_DATASET,
    SCHEDULE_TERMS,
    ScheduleSettings,
    dayahead_price,
    default_ev_sessions,
    device_setpoints,
    heat_pump_building,
    schedule_day,
    schedule_entity_id,
    stored_setpoints,
)
from bright.twin.vocabulary import bright_context

TZ = "Europe/Brussels"


def device(kind: str, key: str) -> str:
    return f"urn:ngsi-ld:{kind}:{KEY}:{key}"


def local_hours(index: pd.DatetimeIndex) -> np.ndarray:
    local = index.tz_convert(TZ)
    return np.asarray(local.hour + local.minute / 60.0)


def test_schedule_respects_devices_and_the_community_limit(db_url: str) -> None:
    svc, series = build_twin(db_url)
    limit = {"type": "Property", "value": 40.0, "unitCode": "KWT"}
    svc.append_attributes("", CID, {SCHEDULE_TERMS["connectionLimit"]: limit}, bright_context())
    with client_for(svc) as client:
        r = client.get(f"/api/communities/{CID}/schedule", params={"mode": "individual"})
        assert r.status_code == 200, r.text
        alone = r.json()
        r = client.post(f"/api/communities/{CID}/schedule", params={"mode": "compare"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert alone["entities_written"] == 0  # GET is a preview
        assert (
            body["entities_written"] == 9
        )  # 8 device entities (the 2-socket charger is one) + the community
        assert body["day"] == DAY and len(body["time"]) == 96
        assert body["status"] == "optimal" and body["unmet"] == [] and body["penalty_eur"] == 0.0
        assert body["connection_limit_kw"] == 40.0
        assert set(body["forecast_source"].values()) <= {
            "consumption: persistence",
            "consumption: persistence; production: persistence",
        }
        # 2016-03-01 is outside the bundled prices: same ISO week and weekday of 2024.
        assert body["price_source"].startswith("day-ahead prices of 2024-02-27 (same ISO week and weekday")

        # Alone, the members' peaks add up above the 40 kW connection; together they stay within it.
        assert max(alone["flows_kw"]["net_import_kw"]) > 40.0 + 1.0
        net = np.array(body["flows_kw"]["net_import_kw"])
        assert net.max() <= 40.0 + 1e-6 and net.min() >= -40.0 - 1e-6
        summary = body["comparison"]["summary"]
        assert (
            summary["individual"]["limit_excess_kwh"] > 0.25
            and summary["community"]["limit_excess_kwh"] == 0.0
        )

        # Every device within its limits.
        setpoints = {d["device"]: np.array(d["setpoint_kw"]) for d in body["devices"]}
        hours = local_hours(pd.DatetimeIndex(pd.to_datetime(body["time"], utc=True)))
        tol = 1e-6
        school_battery = setpoints[device("Battery", "school")]  # 60 kWh, 30 kW both ways
        assert school_battery.min() >= -30.0 - tol and school_battery.max() <= 30.0 + tol
        home_battery = setpoints[device("Battery", "home03")]  # 10 kWh, 5 kW both ways
        assert home_battery.min() >= -5.0 - tol and home_battery.max() <= 5.0 + tol
        # Its soft end target is the initial state: energy in x eta >= energy out / eta (90 % round trip).
        assert (
            home_battery.clip(min=0).sum() * 0.25 * math.sqrt(0.9)
            >= -home_battery.clip(max=0).sum() * 0.25 / math.sqrt(0.9) - tol
        )
        heat_pump = setpoints[device("HeatPump", "home04")]
        assert heat_pump.min() >= -tol and heat_pump.max() <= 3.0 + tol and heat_pump.sum() > 0
        # Workplace charger (school, 2 x 22 kW): only 08:30-17:00 on a working day, 11 kWh per car at 90 %.
        school_ev = setpoints[device("EVChargingStation", "school")]
        assert school_ev.min() >= -tol and school_ev.max() <= 44.0 + tol
        assert np.all(school_ev[(hours < 8.5) | (hours >= 17.0)] == 0.0)
        assert school_ev.sum() * 0.25 == pytest.approx(2 * 11.0 / 0.9, rel=1e-6)
        # Home charger (11 kW): plugged 19:00-08:00; 6.77 kWh before 08:00 and 4.23 kWh after 19:00.
        home_ev = setpoints[device("EVChargingStation", "home02")]
        assert home_ev.max() <= 11.0 + tol and np.all(home_ev[(hours >= 8.0) & (hours < 19.0)] == 0.0)
        assert home_ev[hours < 8.0].sum() * 0.25 == pytest.approx(11.0 * 8 / 13 / 0.9, rel=1e-6)
        assert home_ev[hours >= 19.0].sum() * 0.25 == pytest.approx(11.0 * 5 / 13 / 0.9, rel=1e-6)
        # PV: a production limit (<= 0), never beyond the nameplate, none at night.
        for key, kwp in (("school", 80.0), ("home02", 4.5), ("home03", 6.0)):
            pv = setpoints[device("PhotovoltaicDevice", key)]
            assert pv.max() <= 0.0 and pv.min() >= -kwp and np.all(pv[hours < 5.0] == 0.0)

        # The value-stacking statement: per member and commitment, value = reference - optimal.
        statement = body["value_statement"]
        assert set(statement) == {member_id(k) for k in ("school", "bakery", "home02", "home03", "home04")}
        total = 0.0
        for member, items in statement.items():
            assert "energy" in items, member
            for row in items.values():
                assert row["value_eur"] == pytest.approx(row["reference_eur"] - row["optimal_eur"], abs=2e-6)
                total += row["value_eur"]
        assert body["value_total_eur"] == pytest.approx(total, abs=1e-4)
        wear = statement[member_id("home03")][f"{device('Battery', 'home03')} wear"]
        assert wear["reference_eur"] == 0.0 and wear["optimal_eur"] > 0.0  # the idle reference wears nothing
        # Alone, each member's reference (idle battery, EV charging on arrival, thermostat at the
        # comfort minimum) is feasible, so its optimum cannot cost more: value >= 0 per member.
        for member, items in alone["value_statement"].items():
            assert sum(row["value_eur"] for row in items.values()) >= -1e-5, member

        # The FlexibilitySchedule entities in the twin (NGSI-LD core API).
        eid = schedule_entity_id(device("Battery", "home03"))
        assert eid == f"urn:ngsi-ld:FlexibilitySchedule:Battery:{KEY}:home03"
        r = client.get(
            f"/ngsi-ld/v1/entities/{eid}", headers={"Link": BRIGHT_LINK, "Accept": "application/json"}
        )
        assert r.status_code == 200, r.text
        ent = r.json()
        props = {k.rsplit("#", 1)[-1].rsplit(":", 1)[-1]: v for k, v in ent.items()}
        assert ent["type"] == "FlexibilitySchedule"
        assert props["refDevice"]["object"] == device("Battery", "home03")
        assert props["scheduleMode"]["value"] == "compare" and props["deliveryDay"]["value"] == DAY
        assert props["valueStatement"]["value"] == statement[member_id("home03")]
        r = client.get(
            f"/ngsi-ld/v1/entities/{schedule_entity_id(CID)}",
            headers={"Link": BRIGHT_LINK, "Accept": "application/json"},
        )
        assert r.status_code == 200, r.text
        cprops = {k.rsplit("#", 1)[-1].rsplit(":", 1)[-1]: v for k, v in r.json().items()}
        assert cprops["connectionLimitKw"]["value"] == 40.0
        assert cprops["individualVsCommunity"]["value"]["summary"]["community"]["limit_excess_kwh"] == 0.0
        assert cprops["valueStack"]["value"]["total"]["total"] == pytest.approx(total, abs=1e-4)

    # The handover to S2: one float series of kW per quarter-hour per device entity, as stored.
    c = load_community(svc, series, CID)
    run = schedule_day(c, mode="community")
    handover = device_setpoints(run)
    assert set(handover) == {d.device_id for d in run.setup.devices}
    index = delivery_day_index(date(2016, 3, 1), tz=TZ)
    for dev, s in handover.items():
        assert s.name == dev and s.dtype == np.float64 and s.index.equals(index) and not s.isna().any()
        assert str(s.index.tz) == "UTC"
        back = stored_setpoints(series, dev, index[0], index[-1] + pd.Timedelta(minutes=15))
        pd.testing.assert_series_equal(back, s, check_freq=False, check_names=True, check_index_type=False)
    net = series.read(schedule_entity_id(CID), SCHEDULE_TERMS["netImport"], dataset_id=SCHEDULE_DATASET)
    np.testing.assert_allclose(net.iloc[:, 0].to_numpy(), run.flows["net_import_kw"].to_numpy())
    svc.engine.dispose()


def test_schedule_api_errors(db_url: str) -> None:
    svc, _ = build_twin(db_url, keys=("bakery", "home03"), start=pd.Timestamp("2016-02-20 23:00", tz="UTC"))
    with client_for(svc) as client:

        def problem(
            method: str, params: dict[str, str], status: int, kind: str, words: str, cid: str = CID
        ) -> None:
            r = client.request(method, f"/api/communities/{cid}/schedule", params=params)
            assert r.status_code == status, r.text
            assert r.json()["type"].endswith(kind) and words in r.json()["detail"], r.json()

        problem("GET", {"mode": "selfish"}, 400, "BadRequestData", "'selfish' is not one of individual")
        problem("POST", {"limit_kw": "-5"}, 400, "BadRequestData", "limit_kw must be a number > 0")
        problem("GET", {"horizon": "48h"}, 400, "BadRequestData", "'horizon'")
        problem("GET", {"day": "tomorrow"}, 400, "BadRequestData", "'tomorrow' is not a date")
        problem("GET", {}, 404, "ResourceNotFound", "not found", cid="urn:ngsi-ld:EnergyCommunity:nope")
        # Readings start on 2016-02-21: persistence has nothing for a day issued before.
        problem("GET", {"day": "2016-02-10"}, 400, "BadRequestData", "no consumption forecast for 2016-02-10")
    svc.engine.dispose()


def test_prices_are_mapped_by_iso_week_and_clock() -> None:
    raw = datasets.dayahead_prices()
    # A day with its own prices: hourly values held over their quarter-hours (local 00:00 = 22:00 UTC).
    p, source = dayahead_price("2023-06-01")
    assert source == "day-ahead prices of 2023-06-01" and len(p) == 96
    assert p.iloc[0] == p.iloc[3] == raw.loc[pd.Timestamp("2023-05-31 22:00", tz="UTC")]
    assert p.iloc[4] == raw.loc[pd.Timestamp("2023-05-31 23:00", tz="UTC")]
    # 2016-03-01 is ISO 2016-W09-2: the latest year with that day is 2024 (2024-02-27).
    p, source = dayahead_price("2016-03-01")
    assert "2024-02-27" in source
    assert p.iloc[0] == raw.loc[pd.Timestamp("2024-02-26 23:00", tz="UTC")]
    # Spring DST (92 quarter-hours): local 03:00 takes the source day's 03:00 price (2024-03-24, no DST).
    p, source = dayahead_price("2016-03-27")
    assert "2024-03-24" in source and len(p) == 92
    at3 = p.index.tz_convert(TZ).hour == 3
    assert np.all(p[at3] == raw.loc[pd.Timestamp("2024-03-24 02:00", tz="UTC")])
    # Autumn DST (100 quarter-hours) from a source day that has 25 hours too (2023-10-29).
    p, source = dayahead_price("2016-10-30")
    assert "2023-10-29" in source and len(p) == 100 and not p.isna().any()


@settings(max_examples=25, deadline=None)
@given(st.dates(min_value=date(2015, 1, 1), max_value=date(2030, 12, 31)))
def test_prices_cover_every_quarter_hour_and_hold_over_the_hour(day: date) -> None:
    p, _ = dayahead_price(day)
    index = delivery_day_index(day, tz=TZ)
    assert p.index.equals(index) and not p.isna().any()
    local = index.tz_convert(TZ)
    hour_key = pd.Series(local.strftime("%H%z"), index=index)
    assert (p.groupby(hour_key.to_numpy()).nunique() == 1).all()  # one price per local hour


def test_default_building_and_ev_sessions() -> None:
    s = ScheduleSettings()
    # 3 kW pump, COP 2.5 at -8 degC for 20 degC: UA = 7.5 / 28 kW/K, R = 3.7333 K/kW, C = 40 h / R.
    r, c = heat_pump_building(3.0, s)
    assert r == pytest.approx(28.0 / 7.5) and c == pytest.approx(40.0 * 7.5 / 28.0)
    with pytest.raises(CommunityInputError, match="heat pump power"):
        heat_pump_building(0.0, s)
    # Residential: 19:00-08:00, 11 kWh, cut at midnight: 11 x 8/13 before 08:00 and 11 x 5/13 after 19:00.
    home = default_ev_sessions("2016-03-01", residential=True)
    assert [x.energy_kwh for x in home] == pytest.approx([11 * 8 / 13, 11 * 5 / 13])
    assert home[0].arrival == pd.Timestamp("2016-02-29 23:00", tz="UTC")
    assert home[0].departure == pd.Timestamp("2016-03-01 07:00", tz="UTC")
    assert home[1].arrival == pd.Timestamp("2016-03-01 18:00", tz="UTC")
    assert home[1].departure == pd.Timestamp("2016-03-01 23:00", tz="UTC")
    # DST: the wall clock holds (08:00 CEST = 06:00 UTC on the day the clocks go forward).
    spring = default_ev_sessions("2016-03-27", residential=True)
    assert spring[0].departure == pd.Timestamp("2016-03-27 06:00", tz="UTC")
    assert spring[1].arrival == pd.Timestamp("2016-03-27 17:00", tz="UTC")
    work = default_ev_sessions("2016-03-01", residential=False)
    assert [(x.arrival.hour, x.arrival.minute, x.departure.hour, x.energy_kwh) for x in work] == [
        (7, 30, 16, 11.0)
    ]
    assert default_ev_sessions("2016-03-06", residential=False) == []  # Sunday
    assert default_ev_sessions("2016-03-28", residential=False) == []  # Easter Monday, a Belgian holiday
    with pytest.raises(CommunityInputError, match="sharing value"):
        ScheduleSettings(sharing_value_eur_per_kwh=0.2)


@settings(max_examples=40, deadline=None)
@given(st.dates(min_value=date(2015, 1, 1), max_value=date(2030, 12, 31)), st.booleans())
def test_default_sessions_stay_in_their_day_and_charge_the_daily_energy(day: date, residential: bool) -> None:
    sessions = default_ev_sessions(day, residential=residential)
    index = delivery_day_index(day, tz=TZ)
    start, end = index[0], index[-1] + pd.Timedelta(minutes=15)
    for x in sessions:
        assert start <= x.arrival < x.departure <= end
    total = sum(x.energy_kwh for x in sessions)
    if residential:
        assert total == pytest.approx(11.0)
    else:
        assert total in (0.0, 11.0) and (total == 11.0) == (day.weekday() < 5 and len(sessions) == 1)
