"""REST API of mobility scenarios: run, list, read, compare, plot; ProblemDetails on bad input;
the OpenAPI document (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mobility_twin import CID, END, N_STEPS, START, build_twin

from bright.api.app import create_app
from bright.services.mobility import MOBILITY_DATASET, SERIES
from bright.twin.series import SeriesStore

BASE = f"/api/communities/{CID}/scenarios"
SMART = {
    "name": "2030 smart",
    "year": 2030,
    "n_evs": 8,
    "seed": 5,
    "policy": "earliest_deadline_first",
    "ev_site_limit_kw": 10.0,
}


@pytest.fixture
def client(db_url: str) -> Iterator[tuple[TestClient, SeriesStore]]:
    twin, series, _ = build_twin(db_url)
    with TestClient(create_app(twin.settings, service=twin)) as c:
        yield c, series
    twin.engine.dispose()


def problem(r: object, status: int, *fragments: str) -> None:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/"), body
    for f in fragments:
        assert f in body["detail"], body["detail"]


def test_run_list_get_compare_plot(client: tuple[TestClient, SeriesStore]) -> None:
    c, series = client
    r = c.post(BASE, json=SMART)
    assert r.status_code == 201, r.text
    smart = r.json()
    assert smart["id"] == "urn:ngsi-ld:MobilityScenario:mob:2030-smart" and smart["policy"] == SMART["policy"]
    assert smart["period"] == {
        "start": "2016-06-05T22:00:00Z",
        "end": "2016-06-26T22:00:00Z",
        "steps": N_STEPS,
    }
    k = smart["kpis"]
    assert k["n_vehicles"] == 8 and k["requested_kwh"] > 50
    assert k["delivered_kwh"] + k["unmet_kwh"] == pytest.approx(k["requested_kwh"], abs=1e-4)
    assert k["hours_above_transformer_h"] is None  # no LV-cabin rating: unknown, not zero
    assert smart["units"]["peak_import_kw"] == "kW" and smart["series_values_written"] == 3 * N_STEPS
    # The limit holds in what was written to the twin.
    charge = series.read(smart["id"], SERIES["ev_charge"][0], START, END, dataset_id=MOBILITY_DATASET)
    assert charge[smart["id"]].max() <= 10.0 + 1e-9 and charge[smart["id"]].notna().all()

    # The entity through the NGSI-LD API: KPIs as Properties with their unit codes.
    r = c.get(f"/ngsi-ld/v1/entities/{smart['id']}", headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    ent = {key.rsplit("#", 1)[-1].rsplit("/", 1)[-1]: v for key, v in r.json().items()}
    assert ent["peakImportKw"]["value"] == pytest.approx(k["peak_import_kw"], abs=1e-6)
    assert ent["peakImportKw"]["unitCode"] == "KWT" and ent["unmetKwh"]["unitCode"] == "KWH"
    assert ent["refEnergyCommunity"]["object"] == CID
    r = c.post(
        BASE, json=[{"name": "2030 uncontrolled", "year": 2030, "n_evs": 8, "seed": 5}, {"name": "today"}]
    )
    assert r.status_code == 201, r.text
    unc, today = r.json()
    assert unc["kpis"]["unmet_kwh"] == 0.0 and unc["kpis"]["delivered_kwh"] == unc["kpis"]["requested_kwh"]
    assert unc["kpis"]["requested_kwh"] == k["requested_kwh"]  # same seed, same fleet
    assert today["kpis"]["peak_increase_kw"] == 0.0

    r = c.get(BASE)
    assert r.status_code == 200, r.text
    listed = r.json()["scenarios"]
    assert [s["name"] for s in listed] == ["2030 smart", "2030 uncontrolled", "today"]
    assert listed[0]["kpis"]["peak_import_kw"] == k["peak_import_kw"]

    for ref in ("2030 smart", smart["id"]):
        r = c.get(f"{BASE}/{quote(ref, safe='')}")
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["parameters"]["ev_site_limit_kw"] == 10.0 and got["kpis"] == k

    r = c.get(f"{BASE}/compare", params=[("scenario", "today"), ("scenario", "2030 uncontrolled,2030 smart")])
    assert r.status_code == 200, r.text
    cmp = r.json()
    assert [s["name"] for s in cmp["scenarios"]] == ["today", "2030 uncontrolled", "2030 smart"]
    rows = {row["metric"]: row for row in cmp["rows"]}
    assert rows["peak_import_kw"]["unit"] == "kW" and rows["peak_import_kw"]["label"] == "peak import"
    peaks = rows["peak_import_kw"]["values"]
    assert peaks["2030 smart"] == k["peak_import_kw"] and peaks["today"] <= peaks["2030 uncontrolled"]

    r = c.get(f"{BASE}/plot", params={"scenario": "today,2030 smart", "curve": "duration", "points": 20})
    assert r.status_code == 200, r.text
    plot = r.json()
    assert plot["unit"] == "kW" and len(plot["x"]) == 20 and set(plot["series"]) == {"today", "2030 smart"}
    assert np.all(np.diff(plot["series"]["2030 smart"]) <= 1e-9)
    r = c.get(
        f"{BASE}/plot",
        params={"scenario": "2030 smart", "curve": "timeseries", "quantity": "ev_charge", "resolution": "1D"},
    )
    assert r.status_code == 200, r.text
    daily = r.json()
    assert len(daily["x"]) == 21 and max(daily["series"]["2030 smart"]) <= 10.0 + 1e-6
    assert daily["x"][0].startswith("2016-06-06T00:00:00+02:00")  # local days

    r = c.post(BASE, params={"write": "false"}, json={"name": "preview", "n_evs": 1})
    assert r.status_code == 200 and r.json()["series_values_written"] == 0
    problem(c.get(f"{BASE}/preview"), 404, "preview")


def test_bad_input_is_problem_details(client: tuple[TestClient, SeriesStore]) -> None:
    c, _ = client
    problem(c.post(BASE, json={"name": "x", "evs": 3}), 400, "unknown field 'evs'", "allowed: name")
    problem(c.post(BASE, json={"name": "x", "policy": "earliest_deadline_first", "n_evs": 2}), 400, "needs")
    problem(c.post(BASE, json=[]), 400, "empty")
    problem(c.post(BASE, json=[{"name": "a"}, {"name": "A"}]), 400, "more than once")
    problem(c.post(BASE, json="x"), 400, "JSON object")
    problem(
        c.post(BASE, content=b"{nope", headers={"content-type": "application/json"}), 400, "not valid JSON"
    )
    problem(c.post(BASE, json={"name": "x", "start": "2015-01-01"}), 400, "outside the readings")
    problem(c.post(BASE, params={"dry": "1"}, json={"name": "x"}), 400, "unknown query parameter 'dry'")
    problem(c.post("/api/communities/urn:ngsi-ld:EnergyCommunity:nope/scenarios", json={"name": "x"}), 404)
    problem(c.get(f"{BASE}/compare"), 400, "name the scenarios")
    problem(c.get(f"{BASE}/compare", params={"scenario": "ghost"}), 404, "ghost")
    c.post(BASE, json={"name": "today"})
    problem(c.get(f"{BASE}/plot", params={"scenario": "today", "curve": "pie"}), 400, "curve 'pie'")
    problem(c.get(f"{BASE}/plot", params={"scenario": "today", "points": 1}), 400)
    problem(
        c.get(f"{BASE}/plot", params={"scenario": "today", "curve": "timeseries", "resolution": "fortnight"}),
        400,
        "resolution 'fortnight'",
    )


def test_openapi_documents_the_endpoints(client: tuple[TestClient, SeriesStore]) -> None:
    c, _ = client
    doc = c.get("/openapi.json").json()
    paths = doc["paths"]
    for p in ("", "/compare", "/plot", "/{scenario_id}"):
        assert "/api/communities/{community_id}/scenarios" + p in paths, p
    post = paths["/api/communities/{community_id}/scenarios"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    assert schema["additionalProperties"] is False and "n_evs" in schema["properties"]
    assert "mobility scenarios" in post["tags"]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_get_problem_details(tmp_path: object, mode: str) -> None:
    """Whatever schemathesis sends to the scenario endpoints of a node without that community: no
    server error, every error a ProblemDetails with an NGSI-LD type and a detail."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    from bright.config import Settings
    from bright.twin.db import make_engine
    from bright.twin.service import TwinService

    url = f"sqlite:///{tmp_path}/fuzz.db"
    service = TwinService(make_engine(url), Settings(database_url=url, max_body_bytes=64 * 1024))
    app = create_app(service.settings, service=service)
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [op for op in (r.ok() for r in api.get_all_operations()) if "/scenarios" in op.path]
    assert len(ops) == 5
    gen = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    for op in ops:

        @given(case=op.as_strategy(generation_mode=gen))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            response = case.call()
            assert response.status_code < 500, (case.method, case.path, response.text)
            if response.status_code >= 400:
                body = response.json()
                assert body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/"), body
                assert body.get("detail"), body

        try:
            run()
        except Unsatisfiable:
            assert gen is GenerationMode.NEGATIVE
    service.engine.dispose()
