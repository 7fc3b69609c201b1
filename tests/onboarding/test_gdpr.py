"""A member leaves: nothing of theirs remains in any table of the schema (GDPR erasure), both backends."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sample_community import Community, make_community
from sqlalchemy import Engine, LargeBinary, MetaData, String, Text, cast, func, or_, select

from bright.services.engagement import EngagementService
from bright.services.onboarding import table_names
from bright.social.questionnaire import QUESTIONNAIRE_V1
from bright.twin.series import SeriesStore
from bright.twin.vocabulary import bright_context

TENANT = "gdpr"


def _fill(client: TestClient, c: Community) -> None:
    """Give every member metering, questionnaire answers, attribute history and an API token."""
    twin = client.app.state.twin  # type: ignore[attr-defined]
    ctx = bright_context()
    store = SeriesStore(twin.engine)
    idx = pd.date_range("2026-02-01", periods=96 * 2, freq="15min", tz="UTC")
    rng = np.random.default_rng(3)
    answers = {it.id: it.scale.values[0] for it in QUESTIONNAIRE_V1.items}
    svc = EngagementService(twin)
    from bright.web.users import create_token

    for m in c.members:
        for attr in ("offtake", "injection"):
            store.write(pd.DataFrame({m["meter"]: rng.uniform(0, 0.5, len(idx))}, index=idx), tenant=TENANT,
                        attribute=ctx.expand(attr), unit_code="KWH")  # fmt: skip
        svc.submit_answers(m["id"], answers, consent={"given": True, "date": "2026-01-02T09:00:00Z"}, tenant=TENANT,
                           refresh=False)  # fmt: skip
        # Attribute history of the member's entity (a contracted power with an observedAt).
        r = client.patch(
            f"/ngsi-ld/v1/entities/{m['id']}/attrs",
            headers={**c.headers, "Content-Type": "application/json"},
            json={
                "annualConsumption": {"type": "Property", "value": 3200, "observedAt": "2026-02-03T00:00:00Z"}
            },
        )
        assert r.status_code in (204, 207), r.text
        create_token(
            twin.engine, f"phone-{m['name']}", "member", community_id=c.id, member_id=m["id"], tenant=TENANT
        )


def find_everywhere(engine: Engine, needles: list[str]) -> dict[str, list[str]]:
    """Every table of the live schema, every text-like column, searched for each needle.

    Returns ``{needle: ["table.column", ...]}`` for the needles found.
    """
    meta = MetaData()
    meta.reflect(bind=engine, only=lambda name, _m: not name.startswith("sqlite_"))
    assert set(meta.tables) == set(table_names(engine))
    found: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for col in table.c:
                if isinstance(col.type, LargeBinary):
                    continue  # binary arrays of numbers (series chunks), no text
                text = cast(col, Text) if not isinstance(col.type, String | Text) else col
                for needle in needles:
                    hit = conn.execute(
                        select(func.count()).select_from(table).where(text.contains(needle, autoescape=True))
                    ).scalar_one()
                    if hit:
                        found.setdefault(needle, []).append(f"{table.name}.{col.name}")
    return found


def _needles(m: dict[str, str], username: str) -> list[str]:
    return [m["id"], m["meter"], m["ean"], m["name"], m["email"], username, m["id"].rsplit(":", 1)[-1]]


@pytest.mark.parametrize("mode", ["erase", "anonymise"])
def test_nothing_of_a_leaving_member_remains(client: TestClient, mode: str) -> None:
    c = make_community(client, TENANT, slug="gdpr", n_members=3)
    ids = [m["id"] for m in c.members]
    client.put(f"/api/onboarding/communities/{c.id}/sharing-key", headers=c.headers,
               json={"key": {ids[0]: 40, ids[1]: 30, ids[2]: 30}})  # fmt: skip
    _fill(client, c)
    engine = client.app.state.twin.engine  # type: ignore[attr-defined]
    leaving, staying = c.members[1], c.members[0]
    needles = _needles(leaving, "gdpr-member1")
    before = find_everywhere(engine, needles)
    # The search does find the member everywhere before: entities, series, answers, accounts, tokens.
    where_before = {loc.split(".")[0] for locs in before.values() for loc in locs}
    assert {"entities", "series", "sbright_answers", "web_users", "onboarding_invitations"} <= where_before
    assert leaving["ean"] in before and leaving["email"] in before and leaving["name"] in before
    points_before = _points(engine)
    points_of_leaving = _points(engine, [leaving["id"], leaving["meter"]])
    assert points_of_leaving == 2 * 96 * 2 + 1  # offtake and injection, and the annualConsumption history

    export = client.get(
        f"/api/onboarding/communities/{c.id}/members/{leaving['id']}/export", headers=c.headers
    )
    assert export.status_code == 200 and export.json()["questionnaire"]["answers"]
    r = client.post(f"/api/onboarding/communities/{c.id}/members/{leaving['id']}/leave", headers=c.headers,
                    json={"mode": mode})  # fmt: skip
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["mode"] == mode and receipt["counts"]["entities"] >= 5

    after = find_everywhere(engine, needles)
    assert after == {}, f"left behind: {after}"
    # The others are untouched.
    assert find_everywhere(engine, [staying["ean"], staying["id"]]).keys() == {staying["ean"], staying["id"]}
    members = client.get(f"/api/onboarding/communities/{c.id}/members", headers=c.headers).json()
    assert {m["id"] for m in members} == {c.members[0]["id"], c.members[2]["id"]}
    comm = client.get(f"/api/communities/{c.id}", headers=c.headers)
    assert comm.status_code == 200 and comm.json()["sharing_key_percent"] is None  # key named the member
    points_after = _points(engine)
    if mode == "erase":
        assert points_after == points_before - points_of_leaving
    else:
        # The readings stay for the community's history, under a random meter id without an EAN.
        assert points_after == points_before - 1  # the member entity's own history is erased
        anon = client.get("/ngsi-ld/v1/entities", headers=c.headers,
                          params={"type": "Meter", "q": 'formerMemberOf=="' + c.id + '"', "limit": 10}).json()  # fmt: skip
        assert anon == [] or all("accessPointId" not in a for a in anon)
        anon = _anonymous_meters(engine)
        assert len(anon) == 1 and ":anon-" in anon[0]
    # The export is no longer possible: the member is gone.
    gone = client.get(f"/api/onboarding/communities/{c.id}/members/{leaving['id']}/export", headers=c.headers)
    assert gone.status_code == 404


def _points(engine: Engine, entity_ids: list[str] | None = None) -> int:
    from bright.twin.series import chunks_table, series_table

    stmt = (
        select(func.coalesce(func.sum(chunks_table.c.n), 0))
        .select_from(chunks_table.join(series_table))
        .where(series_table.c.tenant == TENANT)
    )
    if entity_ids is not None:
        stmt = stmt.where(series_table.c.entity_id.in_(entity_ids))
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def _anonymous_meters(engine: Engine) -> list[Any]:
    from bright.twin.series import series_table

    with engine.connect() as conn:
        return sorted(
            set(
                conn.execute(
                    select(series_table.c.entity_id).where(
                        series_table.c.tenant == TENANT, or_(series_table.c.entity_id.like("%:anon-%"))
                    )
                ).scalars()
            )
        )
