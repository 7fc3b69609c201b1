"""The community-energy REST API on SQLite and PostgreSQL: the numbers it serves are the pure
functions' numbers on the same real data, KPIs land in the twin as NGSI-LD entities, bad requests get
ProblemDetails naming the parameter."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from bright.api.app import create_app
from bright.api.community import install
from bright.config import Settings
from bright.energy.balance import balance
from bright.energy.fairness import shapley
from bright.energy.market import MidMarket, Tariff, monthly_statements, settle
from bright.energy.sharing import AccessPoint, Locality, MeterReadings, Role, TariffType, share
from bright.services.community import TERMS
from bright.services.demo import DemoCommunity, build_demo_community, meter_series
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.db import make_engine
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context

TZ = "Europe/Brussels"
QH = pd.Timedelta("15min")
# written to the node: local 2016-03-20 .. 2016-07-01 (spring DST change, all of June)
DATA = (
    pd.Timestamp("2016-03-20", tz=TZ).tz_convert("UTC"),
    pd.Timestamp("2016-07-01", tz=TZ).tz_convert("UTC"),
)
LINK = f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
TARIFF = Tariff(0.30, 0.05, 0.12, {TariffType.A: 0.06, TariffType.B: 0.05, TariffType.C: 0.03})

Demo = tuple[DemoCommunity, dict[str, pd.DataFrame]]


@pytest.fixture(scope="module")
def demo() -> Demo:
    community = build_demo_community()
    # These tests set the prices themselves; a community without a price of its own is the case
    # the "has no communityPrice" errors below are about.
    for attr in ("communityPrice", "pricingMethod"):
        community.entities[0].pop(attr, None)
    frames = meter_series(community)
    return community, {k: frames[k].loc[DATA[0] : DATA[1] - QH] for k in ("offtake", "injection")}


def make_client(url: str, demo: Demo) -> tuple[TestClient, TwinService]:
    community, frames = demo
    engine = make_engine(url)
    twin, store = TwinService(engine, Settings(database_url=url)), SeriesStore(engine)
    ctx = bright_context()
    assert not twin.batch_upsert("", community.entities, ctx)["errors"]
    prices = {"supplierEnergyPrice": 0.30, "feedInPrice": 0.05, "gridFee": 0.12, "emissionFactor": 0.15}
    patch: dict[str, Any] = {"id": community.entities[0]["id"], "type": "EnergyCommunity"}
    patch.update({TERMS[k]: {"type": "Property", "value": v} for k, v in prices.items()})
    patch[TERMS["networkChargeReduction"]] = {"type": "Property", "value": {"A": 0.06, "B": 0.05, "C": 0.03}}
    patch[TERMS["pricingMethod"]] = {"type": "Property", "value": "mid_market"}
    assert not twin.batch_upsert("", [patch], ctx, replace=False)["errors"]
    for name, frame in frames.items():
        store.write(frame, attribute=ctx.expand(name), unit_code="KWH")
    app = create_app(twin.settings, service=twin)
    install(app)
    return TestClient(app), twin


@pytest.fixture
def client(db_url: str, demo: Demo) -> Iterator[TestClient]:
    c, twin = make_client(db_url, demo)
    with c:
        yield c
    twin.engine.dispose()


@pytest.fixture
def sqlite_client(tmp_path: Path, demo: Demo) -> Iterator[TestClient]:
    c, twin = make_client(f"sqlite:///{tmp_path / 'api.db'}", demo)
    with c:
        yield c
    twin.engine.dispose()


def pure_readings(demo: Demo, start: pd.Timestamp, end: pd.Timestamp) -> MeterReadings:
    community, frames = demo
    rename = {
        f"urn:ngsi-ld:Meter:{community.key}:{m.key}": member(community, m.key) for m in community.members
    }
    return MeterReadings.from_frames(
        frames["offtake"].loc[start : end - QH].rename(columns=rename),
        frames["injection"].loc[start : end - QH].rename(columns=rename),
    )


def member(community: DemoCommunity, key: str) -> str:
    return f"urn:ngsi-ld:EnergyProsumer:{community.key}:{key}"


def pure_points(community: DemoCommunity) -> list[AccessPoint]:
    # "building" members: in the community's building, cabin, substation; "lv_cabin": cabin and substation
    return [
        AccessPoint(
            member(community, m.key),
            Role(m.role),
            Locality("b", "c", "s") if m.locality == "building" else Locality(None, "c", "s"),
        )
        for m in community.members
    ]


def local(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz=TZ).tz_convert("UTC")


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


# --------------------------------------------------------------------------------------------------


def test_api_serves_the_pure_functions_numbers(client: TestClient, demo: Demo) -> None:
    community, _ = demo
    cid = community.entities[0]["id"]
    base = f"/api/communities/{cid}"
    listed = ok(client.get("/api/communities"))["communities"]
    assert listed == [{"id": cid, "name": community.name, "members": 14, "sharing_method": "pro_rata"}]
    info = ok(client.get(base))
    assert (
        info["tariff_type"] == "B"
        and info["sharing_method"] == "pro_rata"
        and info["pricing"] == "mid_market"
    )
    assert info["prices"]["supplier_energy_eur_per_kwh"] == 0.30
    assert [m["id"] for m in info["members"]] == [member(community, m.key) for m in community.members]
    assert info["readings"] == {"start": DATA[0].isoformat(), "end": DATA[1].isoformat()}

    start, end = local("2016-06-01"), local("2016-06-15")
    data = pure_readings(demo, start, end)
    pure = share(data, "pro_rata", access_points=pure_points(community))

    # balance per local day: the JSON floats are the pure results, bit for bit
    body = ok(
        client.get(f"{base}/balance", params={"start": "2016-06-01", "end": "2016-06-15", "freq": "1D"})
    )
    want = balance(pure, freq="D", tz=TZ, emission_factor_kg_per_kwh=0.15)
    assert body["intervals"] == 14 * 96 and body["tariff_type"] == "B" and body["method"] == "pro_rata"
    assert body["start"] == "2016-06-01T00:00:00+02:00" and body["end"] == "2016-06-15T00:00:00+02:00"
    got = pd.DataFrame(body["community"]).set_index("period_start")
    assert list(got.index[:2]) == ["2016-06-01T00:00:00+02:00", "2016-06-02T00:00:00+02:00"]
    np.testing.assert_array_equal(got[list(want.community.columns)].to_numpy(), want.community.to_numpy())
    rows = pd.DataFrame(body["members"])
    np.testing.assert_array_equal(
        rows["shared_offtake_kwh"].to_numpy().reshape(14, 14), want.shared_offtake_kwh.to_numpy()
    )
    # the same in CSV
    csv = pd.read_csv(
        io.StringIO(
            client.get(
                f"{base}/balance",
                params={
                    "start": "2016-06-01",
                    "end": "2016-06-15",
                    "freq": "1D",
                    "format": "csv",
                    "level": "community",
                },
            ).text
        )
    )
    np.testing.assert_allclose(csv["shared_kwh"], want.community["shared_kwh"], rtol=1e-11)

    # sharing: totals per member; the CSV is the allocation per interval and member
    body = ok(client.get(f"{base}/sharing", params={"start": "2016-06-01", "end": "2016-06-15"}))
    totals = pd.DataFrame(body["members"]).set_index("member_id")
    np.testing.assert_allclose(totals["shared_offtake_kwh"], pure.shared_offtake_kwh.sum(axis=0), rtol=1e-15)
    assert body["community"]["shared_kwh"] == pytest.approx(pure.shared_kwh.sum(), rel=1e-14)
    response = client.get(
        f"{base}/sharing", params={"start": "2016-06-01", "end": "2016-06-15", "format": "csv"}
    )
    assert response.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(response.text))
    assert len(table) == 14 * 96 * 14 and table["interval_start"].iloc[0] == "2016-06-01T00:00:00+02:00"
    np.testing.assert_allclose(
        table["shared_offtake_kwh"].to_numpy().reshape(-1, 14),
        pure.shared_offtake_kwh,
        rtol=1e-11,
        atol=1e-12,
    )

    # settlement at the mid-market price: member totals of the pure monthly statements
    body = ok(client.get(f"{base}/settlement", params={"start": "2016-06-01", "end": "2016-06-15"}))
    ref = settle(pure, TARIFF, MidMarket(), group_type=TariffType.B)
    assert body["pricing"] == "mid_market" and body["tariff"]["network_reduction_eur_per_kwh"] == 0.05
    money = pd.DataFrame(body["members"]).set_index("member_id")
    np.testing.assert_allclose(money["savings_eur"], ref.savings_eur.sum(axis=0), rtol=1e-12, atol=1e-12)
    assert body["community"]["savings_eur"] == pytest.approx(ref.savings_eur.sum(), rel=1e-12)

    # statements of June (a whole local month)
    body = ok(client.get(f"{base}/statements", params={"month": "2016-06"}))
    june = settle(
        share(
            pure_readings(demo, local("2016-06-01"), local("2016-07-01")),
            "pro_rata",
            access_points=pure_points(community),
        ),
        TARIFF,
        MidMarket(),
        group_type=TariffType.B,
    )
    lines = monthly_statements(june, tz=TZ).reset_index()
    got_lines = pd.DataFrame(body["statements"])
    assert len(got_lines) == 14 and set(got_lines["month"]) == {"2016-06-01T00:00:00+02:00"}
    np.testing.assert_allclose(got_lines["net_cost_eur"], lines["net_cost_eur"], rtol=1e-12)

    # fairness over two days: exact Shapley values (16,384 coalitions)
    body = ok(client.get(f"{base}/fairness", params={"start": "2016-06-01", "end": "2016-06-03"}))
    values = shapley(
        pure_readings(demo, start, local("2016-06-03")),
        TARIFF,
        method="pro_rata",
        access_points=pure_points(community),
    )
    assert body["exact"] is True
    got_values = pd.DataFrame(body["members"]).set_index("member_id")["shapley_eur"]
    np.testing.assert_allclose(got_values.to_numpy(), values.value_eur, rtol=1e-12, atol=1e-12)
    assert body["grand_coalition_eur"] == pytest.approx(values.grand_coalition_eur)

    # KPIs written through the API are NGSI-LD entities anyone can query
    body = ok(
        client.post(f"{base}/kpis", params={"start": "2016-06-01", "end": "2016-06-15", "freq": "1D"}), 201
    )
    assert len(body["kpis"]) == 14 * 10 + 4  # 14 days x 10 balance KPIs + June's 4 settlement KPIs
    assert body["series_values_written"] == 2 * 14 * 96 * 14
    found = ok(
        client.get(
            "/ngsi-ld/v1/entities",
            params={
                "type": "KeyPerformanceIndicator",
                "q": f'{TERMS["indicator"]}=="self_sufficiency"',
                "limit": 100,
                "options": "keyValues",
            },
            headers={"Link": LINK},
        )
    )
    assert len(found) == 14
    by_day = {e["calculationPeriod"]["from"][:10]: e["kpiValue"] for e in found}
    assert by_day["2016-06-05"] == want.community.loc["2016-06-05", "self_sufficiency"].item()


def test_api_rejects_bad_requests_with_problem_details(sqlite_client: TestClient, demo: Demo) -> None:
    community, _ = demo
    base = f"/api/communities/{community.entities[0]['id']}"
    june = {"start": "2016-06-01", "end": "2016-06-03"}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("balance", {"freq": "2W"}, 400, "freq '2W' is unknown"),
        ("balance", {"tz": "Mars/Olympus"}, 400, "not an IANA time zone"),
        ("balance", {"level": "street"}, 400, "level 'street' is not one of"),
        ("balance", {"format": "xml"}, 400, "format 'xml' is not one of json, csv"),
        ("balance", {"start": "yesterday"}, 400, "start 'yesterday' is not an ISO 8601"),
        ("balance", {"start": "2016-06-03", "end": "2016-06-01"}, 400, "must be after start"),
        ("balance", {"month": "2016-13"}, 400, "month '2016-13' is not YYYY-MM"),
        ("balance", {"month": "2016-06", "start": "2016-06-01"}, 400, "either month or start/end"),
        ("balance", {"metod": "fixed"}, 400, "unknown query parameter 'metod'"),
        (
            "balance",
            {"start": "2016-01-01", "end": "2016-02-01"},
            400,
            "readings start at 2016-03-19T23:00:00+00:00, after the requested start",
        ),
        ("sharing", {**june, "method": "greedy"}, 400, "sharing method 'greedy' is unknown"),
        ("sharing", {**june, "method": "fixed"}, 400, "the fixed method needs a sharing key"),
        ("sharing", {**june, "wh": "true", "format": "csv"}, 400, "not a whole Wh"),
        ("settlement", {**june, "pricing": "barter"}, 400, "pricing 'barter' is not one of"),
        ("settlement", {**june, "pricing": "fixed"}, 400, "has no communityPrice"),
        ("settlement", {**june, "pricing": "auction"}, 400, "the auction has no buyer"),
        ("settlement", {**june, "supplier_energy_eur_per_kwh": "nan"}, 400, "must be a finite number"),
        ("settlement", {**june, "feed_in_eur_per_kwh": "cheap"}, 400, "feed_in_eur_per_kwh"),
        ("fairness", {**june, "exact_max_members": 99}, 400, "exact_max_members"),
        ("fairness", {**june, "seed": -1}, 400, "seed"),
    ]
    for path, params, status, message in cases:
        response = sqlite_client.get(f"{base}/{path}", params=params)
        assert response.status_code == status, (path, params, response.text)
        problem = response.json()
        assert problem["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", problem
        assert message in problem["detail"], (path, params, problem["detail"])
    missing = sqlite_client.get("/api/communities/urn:ngsi-ld:EnergyCommunity:nowhere/balance")
    assert missing.status_code == 404 and missing.json()["type"].endswith("ResourceNotFound")
    assert sqlite_client.get("/api/communities/not-a-uri").status_code == 400
    # a rejected write writes nothing
    response = sqlite_client.post(f"{base}/kpis", params={**june, "freq": "1h"})
    assert response.status_code == 400 and "freq '1h' is not one of 1D, 1M, 1Y" in response.json()["detail"]
    response = sqlite_client.post(f"{base}/kpis", params={**june, "pricing": "fixed"})
    assert response.status_code == 400 and "communityPrice" in response.json()["detail"]
    kpis = sqlite_client.get(
        "/ngsi-ld/v1/entities", params={"type": "KeyPerformanceIndicator"}, headers={"Link": LINK}
    )
    assert kpis.json() == []
    # a valid one writes balance, settlement and Shapley KPIs of the period
    body = ok(sqlite_client.post(f"{base}/kpis", params={**june, "freq": "1D", "fairness": "true"}), 201)
    indicators = {kpi.split(":")[4] for kpi in body["kpis"]}
    assert len(body["kpis"]) == 2 * 10 + 4 + 2  # 2 days x 10, June's 4 settlement KPIs, 2 Shapley KPIs
    assert {
        "self_sufficiency",
        "savings_eur",
        "shapley_total_eur",
        "settlement_shapley_gap_eur",
    } <= indicators


def test_api_local_days_across_the_spring_dst_change(sqlite_client: TestClient, demo: Demo) -> None:
    # Sunday 2016-03-27 has 23 hours in Brussels: 92 quarter-hours, labelled by local midnight
    community, frames = demo
    base = f"/api/communities/{community.entities[0]['id']}"
    body = ok(
        sqlite_client.get(
            f"{base}/balance",
            params={"start": "2016-03-26", "end": "2016-03-29", "freq": "1D", "level": "community"},
        )
    )
    assert body["intervals"] == 96 + 92 + 96
    days = pd.DataFrame(body["community"])
    assert days["period_start"].tolist() == [
        "2016-03-26T00:00:00+01:00",
        "2016-03-27T00:00:00+01:00",
        "2016-03-28T00:00:00+02:00",
    ]
    sunday = frames["offtake"].loc[local("2016-03-27") : local("2016-03-28") - QH]
    assert len(sunday) == 92
    assert days["offtake_kwh"].iloc[1] == pytest.approx(sunday.to_numpy().sum(), rel=1e-12)
    assert days["coverage"].tolist() == [1.0, 1.0, 1.0]
