"""Day-ahead forecasts of a community in the twin: service, model store, NGSI-LD and REST API.

The twin is a slice of the demo community (real SimBench / UCI profiles, real school): the school
(80 kWp PV, 60 kWh battery, 22 kW 2-socket charger), the bakery, home02 (4.5 kWp, 11 kW charger),
home03 (6 kWp, 10 kWh battery) and home04 (3 kW heat pump), with 8 weeks of quarter-hourly
metering (local 2016-01-04 .. 2016-02-29). The next delivery day is 2016-03-01, issued on
2016-02-29 at 12:00 CET = 11:00 UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from bright.api import analytics
from bright.api.app import create_app
from bright.config import Settings
from bright.energy.forecast.gbm import LoadModel
from bright.energy.forecast.pv import PVModel
from bright.services import demo
from bright.services.community import Community, load_community
from bright.services.forecasting import (
    DATASETS,
    FORECAST_TERMS,
    ModelStore,
    default_day,
    forecast_day,
    forecast_entity_id,
    stored_forecast,
)
from bright.twin.db import make_engine
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context

KEYS = ("school", "bakery", "home02", "home03", "home04")
KEY = "t"
CID = f"urn:ngsi-ld:EnergyCommunity:{KEY}"
START = pd.Timestamp("2016-01-03 23:00", tz="UTC")  # local Monday 2016-01-04 00:00 CET
END = pd.Timestamp("2016-02-29 23:00", tz="UTC")  # local 2016-03-01 00:00: 57 full days
DAY = "2016-03-01"
BRIGHT_LINK = '<https://w3id.org/bright/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def member_id(key: str) -> str:
    return f"urn:ngsi-ld:EnergyProsumer:{KEY}:{key}"


def build_twin(
    db_url: str, *, keys: tuple[str, ...] = KEYS, start: pd.Timestamp = START, end: pd.Timestamp = END
) -> tuple[TwinService, SeriesStore]:
    """The demo community slice with its metering over [start, end) (and PV production)."""
    members = [m for m in demo.default_members() if m.key in keys]
    school = demo.pick_school("Ixelles")
    entities = demo.community_entities(KEY, "Test community", school, members)
    twin = TwinService(make_engine(db_url), Settings(database_url=db_url))
    res = twin.batch_upsert("", entities, twin.resolve_context(entities[0]["@context"]))
    assert not res["errors"], res["errors"]
    series = SeriesStore(twin.engine)
    frames = demo.meter_series(demo.DemoCommunity(KEY, "Test community", school, members, entities))
    for name, frame in frames.items():
        part = frame.loc[(frame.index >= start) & (frame.index < end)]
        series.write(part, attribute=bright_context().expand(name), unit_code="KWH")
    return twin, series


def client_for(twin: TwinService) -> TestClient:
    app = create_app(twin.settings, service=twin)  # NGSI-LD core and temporal APIs
    if not any(getattr(r, "path", "").endswith("/forecast") for r in app.routes):
        analytics.install(app)
    return TestClient(app)


@pytest.fixture
def twin(db_url: str) -> Iterator[tuple[TwinService, SeriesStore]]:
    t, s = build_twin(db_url)
    yield t, s
    t.engine.dispose()


def community_of(twin: TwinService, series: SeriesStore) -> Community:
    return load_community(twin, series, CID)


def test_forecast_through_api_is_in_the_twin(twin: tuple[TwinService, SeriesStore]) -> None:
    svc, series = twin
    c = community_of(svc, series)
    assert default_day(c, "Europe/Brussels").isoformat() == DAY
    with client_for(svc) as client:
        r = client.post(f"/api/communities/{CID}/forecast", params={"score_days": 7})
        assert r.status_code == 200, r.text
        body = r.json()
    assert body["day"] == DAY
    assert body["issue_time"] == "2016-02-29T12:00:00+01:00"  # D-1 12:00 local
    assert len(body["time"]) == 96
    by = {(f["target"], f["quantity"]): f for f in body["forecasts"]}
    # 5 members' consumption, 3 PV members' production, 2 community totals.
    assert len(by) == 10
    assert {m["target"] for m in body["trained"]} == {member_id(k) for k in KEYS} | {CID}
    assert len(body["trained"]) == 10
    for (target, quantity), f in by.items():
        assert f["model"] == (
            "bottom_up_reconciled" if target == CID else ("gbm" if quantity == "consumption" else "pv_gbm")
        ), f["reason"]
        assert f["quantiles"] == [0.1, 0.5, 0.9]
        q10, q50, q90 = (np.array(f["values"][k], dtype=float) for k in ("q10", "q50", "q90"))
        assert np.all(q10 <= q50 + 1e-12) and np.all(q50 <= q90 + 1e-12) and np.all(q10 >= 0)
    # PV is 0 at night: 2016-03-01 00:00-05:00 local is dark in Brussels.
    school_pv = np.array(by[(member_id("school"), "production")]["values"]["q90"], dtype=float)
    assert np.all(school_pv[:20] == 0.0)
    # The community forecast is the sum of the members' (bottom-up reconciliation), at every step
    # (values rounded to 1e-6 kWh in JSON; exact in the service, checked below).
    for quantity, members in (("consumption", KEYS), ("production", ("school", "home02", "home03"))):
        total = np.array(by[(CID, quantity)]["values"]["q50"], dtype=float)
        parts = sum(np.array(by[(member_id(k), quantity)]["values"]["q50"], dtype=float) for k in members)
        np.testing.assert_allclose(total, parts, rtol=0, atol=4e-6)
    # Models are stored per target with their backtest scores (7 days, vs seasonal naive).
    models = ModelStore(svc.engine)
    stored = models.list("", target_ids=[member_id("home03")])
    assert {m.quantity for m in stored} == {"consumption", "production"}
    for m in stored:
        assert m.scores["days"] == 7.0 and 0.0 <= m.scores["coverage"] <= 1.0 and m.scores["mae"] > 0
        assert m.trained_until == pd.Timestamp("2016-02-29 11:00", tz="UTC")
        assert isinstance(m.load(), LoadModel if m.kind == "load" else PVModel)

    # The Forecast entity: NGSI-LD core API (keyValues with the BRIGHT @context) ...
    eid = forecast_entity_id(member_id("home03"), "consumption")
    assert eid == "urn:ngsi-ld:Forecast:EnergyProsumer:t:home03:consumption"
    with client_for(svc) as client:
        r = client.get(
            f"/ngsi-ld/v1/entities/{eid}", headers={"Link": BRIGHT_LINK, "Accept": "application/json"}
        )
        assert r.status_code == 200, r.text
        ent = r.json()
        assert ent["type"] == "Forecast"
        props = {k.rsplit("#", 1)[-1].rsplit(":", 1)[-1]: v for k, v in ent.items()}
        assert props["forecastModel"]["value"] == "gbm"
        assert props["issuedAt"]["value"] == "2016-02-29T11:00:00Z"
        assert props["deliveryDay"]["value"] == DAY
        assert props["forecastOf"]["object"] == member_id("home03")
        assert props["quantileLevels"]["value"] == [0.1, 0.5, 0.9]
        totals = {i["datasetId"]: i["value"] for i in props["forecastTotalKwh"]}
        # The exact values are in the series store (the API's JSON rounds to 1e-6 kWh).
        stored_q50 = series.read(eid, FORECAST_TERMS["consumption"], dataset_id=DATASETS[0.5])[eid]
        assert len(stored_q50) == 96 and stored_q50.index[0] == pd.Timestamp("2016-02-29 23:00", tz="UTC")
        q50 = stored_q50.to_numpy()
        np.testing.assert_allclose(by[(member_id("home03"), "consumption")]["values"]["q50"], q50, atol=6e-7)
        assert totals[DATASETS[0.5]] == pytest.approx(q50.sum(), abs=1e-5)
        # ... and its quantile series through the NGSI-LD temporal API (datasetId q50).
        r = client.get(
            f"/ngsi-ld/v1/temporal/entities/{eid}",
            params={"attrs": FORECAST_TERMS["consumption"], "datasetId": DATASETS[0.5]},
            headers={"Accept": "application/json"},
        )
        assert r.status_code in (200, 206), r.text
        instances = r.json()[FORECAST_TERMS["consumption"]]
        instances = instances if isinstance(instances, list) else [instances]
        values = np.array([i["value"] for i in instances], dtype=float)
        np.testing.assert_allclose(values, q50, rtol=0, atol=6e-7)  # JSON of the API rounds to 1e-6

        # GET gives back what POST wrote (from the twin, nothing recomputed).
        r = client.get(f"/api/communities/{CID}/forecast", params={"day": DAY, "member": member_id("home03")})
        assert r.status_code == 200, r.text
        got = {(f["target"], f["quantity"]): f for f in r.json()["forecasts"]}
        assert set(got) == {(member_id("home03"), "consumption"), (member_id("home03"), "production")}
        np.testing.assert_allclose(got[(member_id("home03"), "consumption")]["values"]["q50"], q50, atol=6e-7)
        assert got[(member_id("home03"), "consumption")]["model"] == "gbm"

        # The schedule now uses the stored forecasts (not persistence).
        r = client.get(f"/api/communities/{CID}/schedule", params={"day": DAY})
        assert r.status_code == 200, r.text
        assert r.json()["forecast_source"][member_id("home04")] == "consumption: forecast (gbm)"

        # Backtest of a member: every model side by side; POST stores the scores with its model.
        r = client.post(
            f"/api/communities/{CID}/forecast/backtest",
            params={"member": member_id("bakery"), "days": 3, "end_day": "2016-02-28"},
        )
        assert r.status_code == 200, r.text
        bt = r.json()
        assert (bt["first_day"], bt["last_day"]) == ("2016-02-26", "2016-02-28")
        rows = {row["model"]: row for row in bt["scores"]}
        assert set(rows) == {"seasonal_naive", "persistence", "profile_average", "gbm"}
        assert rows["seasonal_naive"]["skill_vs_seasonal_naive"] == 0.0
        assert all(row["days"] == 3 and row["n"] == 288 for row in rows.values())
    assert models.get("", member_id("bakery"), "consumption").scores["backtest_days"] == 3.0

    # A second run reuses the stored models: nothing trained, the same forecast.
    again = forecast_day(community_of(svc, series), day=DAY)
    assert again.trained == ()
    np.testing.assert_allclose(again.get(member_id("home03")).forecast.median.to_numpy(), q50, rtol=1e-12)
    for quantity in ("consumption", "production"):
        members = again.frame(quantity, members_only=True)
        np.testing.assert_allclose(
            again.get(CID, quantity).forecast.median, members.sum(axis=1), rtol=1e-12, atol=0
        )
    back = stored_forecast(community_of(svc, series), day=DAY)
    assert len(back.forecasts) == 10
    np.testing.assert_allclose(back.frame("consumption"), again.frame("consumption"), rtol=1e-12)


def test_forecast_api_errors(db_url: str) -> None:
    svc, _ = build_twin(db_url, keys=("bakery", "home04"), start=END - pd.Timedelta(days=3))
    with client_for(svc) as client:

        def problem(
            method: str, path: str, params: dict[str, str], status: int, kind: str, words: str
        ) -> None:
            r = client.request(method, path, params=params)
            assert r.status_code == status, r.text
            body = r.json()
            assert body["type"].endswith(kind), body
            assert words in body["detail"], body["detail"]

        base = f"/api/communities/{CID}/forecast"
        problem(
            "GET",
            "/api/communities/urn:ngsi-ld:EnergyCommunity:nope/forecast",
            {},
            404,
            "ResourceNotFound",
            "nope",
        )
        problem("GET", base, {}, 404, "ResourceNotFound", "no forecast of community")
        problem("GET", base, {"retrain": "true"}, 400, "BadRequestData", "use POST")
        problem("GET", base, {"colour": "red"}, 400, "BadRequestData", "'colour'")
        problem("POST", base, {"day": "2016-02-30"}, 400, "BadRequestData", "'2016-02-30' is not a date")
        problem(
            "POST", base, {"member": "urn:ngsi-ld:EnergyProsumer:t:ghost"}, 404, "ResourceNotFound", "ghost"
        )
        problem("GET", base, {"quantity": "heat"}, 400, "BadRequestData", "'heat'")
        # Readings start 2016-02-26 23:00 UTC: nothing is known at the issue time of 2016-02-20.
        problem("POST", base, {"day": "2016-02-20"}, 400, "BadRequestData", "no readings of community")
        problem("GET", f"{base}/backtest", {}, 400, "BadRequestData", "member is required")
        problem(
            "GET", f"{base}/backtest", {"member": member_id("home04"), "quantity": "production"},
            400, "BadRequestData", "has no PV",
        )  # fmt: skip
    svc.engine.dispose()


def test_short_history_falls_back_and_says_why(tmp_path: Path) -> None:
    # 20 days of readings: too short to train (28 days needed), enough for the profile average (7).
    svc, series = build_twin(
        f"sqlite:///{tmp_path / 'short.db'}", keys=("bakery", "home03"), start=END - pd.Timedelta(days=20)
    )
    run = forecast_day(community_of(svc, series), day=DAY, score_days=0)
    assert run.trained == ()
    f = run.get(member_id("bakery"))
    assert f.forecast.model == "profile_average"
    assert "training needs 28" in f.forecast.reason and "gbm: no trained model" in f.forecast.reason
    pv = run.get(member_id("home03"), "production").forecast
    assert pv.model.startswith("pv_") and "pv_gbm: no trained model" in pv.reason
    # The stored entity tells the same story.
    doc = svc.store.get("", forecast_entity_id(member_id("bakery"), "consumption"))
    assert doc is not None
    assert doc["attrs"][FORECAST_TERMS["model"]][0]["value"] == "profile_average"
    svc.engine.dispose()


def test_stale_models_are_retrained_and_past_days_keep_the_newer_model(tmp_path: Path) -> None:
    svc, series = build_twin(f"sqlite:///{tmp_path / 'age.db'}", keys=("bakery",))
    c = community_of(svc, series)
    first = forecast_day(c, day=DAY, score_days=0)
    assert len(first.trained) == 2  # the bakery and the community total
    store = ModelStore(svc.engine)
    trained_until = store.get("", member_id("bakery"), "consumption").trained_until
    # The next day's issue is one day later: reused within 7 days, retrained when older than half a day.
    assert forecast_day(c, day="2016-03-02", score_days=0, write=False).trained == ()
    later = forecast_day(c, day="2016-03-02", score_days=0, max_model_age_days=0.5, write=False)
    assert len(later.trained) == 2
    assert store.get("", member_id("bakery"), "consumption").trained_until == trained_until + pd.Timedelta(
        days=1
    )
    # A day before the stored model's data: a model for that issue time, the newer one kept.
    past = forecast_day(c, day="2016-02-27", score_days=0, write=False)
    assert past.trained == ()
    assert "past issue time" in past.get(member_id("bakery")).forecast.reason
    assert store.get("", member_id("bakery"), "consumption").trained_until == trained_until + pd.Timedelta(
        days=1
    )
    svc.engine.dispose()
