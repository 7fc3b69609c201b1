"""S-BRIGHT REST API on the demo community: questionnaire, answers, profile, community mix."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from bright.api import engagement as engagement_api
from bright.api.app import create_app
from bright.config import Settings
from bright.services.demo import DemoCommunity, build_demo_community, meter_series
from bright.services.engagement import EngagementConfig, EngagementService
from bright.social.questionnaire import QUESTIONNAIRE_V1
from bright.twin.series import SeriesStore
from bright.twin.vocabulary import bright_context

FAST = EngagementConfig(reference_size=200, k_range=(2, 3, 4, 5), n_init=2, bootstrap_reps=1)
CONSENT = {"given": True, "date": "2024-05-01T10:00:00Z"}


@functools.lru_cache(maxsize=1)
def _demo() -> tuple[DemoCommunity, dict[str, pd.DataFrame]]:
    community = build_demo_community()
    frames = meter_series(community)
    return community, {k: frames[k].loc["2016-03-01":"2016-03-21"] for k in ("offtake", "injection")}


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'twin.db'}"
    app = create_app(Settings(database_url=url))
    twin = app.state.twin
    community, frames = _demo()
    res = twin.batch_upsert("", community.entities, twin.resolve_context(community.entities[0]["@context"]))
    assert not res["errors"]
    series = SeriesStore(twin.engine)
    for name, frame in frames.items():
        series.write(frame, attribute=bright_context().expand(name), unit_code="KWH")
    engagement_api.install(app, service=EngagementService(twin, series, config=FAST))
    with TestClient(app) as c:
        yield c
    twin.engine.dispose()


def _ids() -> tuple[str, list[str]]:
    community, _ = _demo()
    return (
        f"urn:ngsi-ld:EnergyCommunity:{community.key}",
        [f"urn:ngsi-ld:EnergyProsumer:{community.key}:{m.key}" for m in community.members],
    )


def test_questionnaire_in_three_languages(client: TestClient) -> None:
    _, members = _ids()
    en = client.get(f"/api/members/{members[3]}/questionnaire").json()
    fr = client.get(f"/api/members/{members[3]}/questionnaire", params={"lang": "fr"}).json()
    nl = client.get(
        f"/api/members/{members[3]}/questionnaire", headers={"Accept-Language": "nl-BE,nl;q=0.9"}
    ).json()
    assert (en["language"], fr["language"], nl["language"]) == ("en", "fr", "nl")
    for doc, lang in ((en, "en"), (fr, "fr"), (nl, "nl")):
        assert [i["id"] for i in doc["items"]] == list(QUESTIONNAIRE_V1.item_ids)
        assert doc["items"][0]["text"] == QUESTIONNAIRE_V1.items[0].text[lang]
        assert doc["consent"]["textVersion"] == "sbright-consent-1" and doc["consent"]["text"]
        assert doc["previousSubmission"] is None
        # Neither the right answers of the knowledge items nor the keying are disclosed.
        assert all(set(i) == {"id", "dimension", "text", "options"} for i in doc["items"])
    assert fr["consent"]["text"] != en["consent"]["text"] != nl["consent"]["text"]
    bad = client.get(f"/api/members/{members[3]}/questionnaire", params={"lang": "de"})
    assert bad.status_code == 400 and "'de'" in bad.json()["detail"]
    missing = client.get("/api/members/urn:ngsi-ld:EnergyProsumer:x:nobody/questionnaire")
    assert missing.status_code == 404


def test_submit_answers_consent_and_range_checks(client: TestClient) -> None:
    _, members = _ids()
    url = f"/api/members/{members[5]}/questionnaire"
    answers = {it.id: it.scale.values[0] for it in QUESTIONNAIRE_V1.items}
    no_consent = client.post(url, json={"answers": answers})
    assert no_consent.status_code == 400 and "consent" in no_consent.json()["detail"]
    out_of_range = client.post(url, json={"answers": answers | {"risk_1": 11}, "consent": CONSENT})
    assert out_of_range.status_code == 400
    assert out_of_range.json()["item"] == "risk_1" and "'risk_1'" in out_of_range.json()["detail"]
    assert client.get(f"/api/members/{members[5]}/profile").status_code == 404  # nothing stored
    ok = client.post(url, json={"answers": answers | {"lit_2": None}, "consent": CONSENT})
    assert ok.status_code == 201
    body = ok.json()
    assert body["complete"] is False and body["missingItems"] == ["lit_2"]
    # All lowest codes: environmental concern = (0 + 1 + 0) / 3 (nep_2 is reverse-keyed: 1 scores 1).
    assert body["scores"]["environmental_concern"] == pytest.approx(1 / 3, abs=1e-4)
    assert body["profile"]["member"] == members[5] and body["profile"]["complete"] is False
    again = client.get(url).json()
    assert again["previousSubmission"]["complete"] is False
    assert client.post(url, json={"answers": [1, 2]}).status_code == 400
    assert client.post(url, json={"answers": answers, "consent": CONSENT, "extra": 1}).status_code == 400


def test_profile_and_mix_of_the_demo_members(client: TestClient) -> None:
    community, members = _ids()
    svc: EngagementService = client.app.state.engagement  # type: ignore[attr-defined]
    svc.seed_simulated_answers(community, seed=3)
    mix = client.get(f"/api/communities/{community}/engagement")
    assert mix.status_code == 200
    body = mix.json()
    assert body["classified"] == 14 and body["segmented"]
    first = body["categories"][0]
    assert first["members"] >= 1 and first["recommendations"]["services"][0]["references"][0]["citation"]
    profile = client.get(f"/api/members/{members[7]}/profile").json()
    assert profile["category"]["name"] in {c["name"] for c in body["categories"]}
    rec = profile["recommendations"]["services"][0]
    assert rec["offer"] and rec["names"]["fr"] and rec["references"] and isinstance(rec["suitability"], float)
    refreshed = client.post(f"/api/communities/{community}/engagement").json()
    assert refreshed["classified"] == 14
    # Withdrawing consent erases the member's answers; the mix no longer counts it.
    assert client.delete(f"/api/members/{members[7]}/questionnaire").status_code == 204
    assert client.get(f"/api/members/{members[7]}/profile").status_code == 404
    assert client.get(f"/api/communities/{community}/engagement").json()["respondents"] == 13
    assert client.get("/api/communities/urn:ngsi-ld:EnergyCommunity:none/engagement").status_code == 404


def test_bright_engagement_commands(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bright.commands.engagement import engagement_app
    from bright.twin.db import make_engine
    from bright.twin.service import TwinService

    url = f"sqlite:///{tmp_path / 'twin.db'}"
    twin = TwinService(make_engine(url), Settings(database_url=url))
    community, frames = _demo()
    assert not twin.batch_upsert("", community.entities, bright_context())["errors"]
    for name, frame in frames.items():
        SeriesStore(twin.engine).write(frame, attribute=bright_context().expand(name), unit_code="KWH")
    for name, value in (("REFERENCE_SIZE", "200"), ("N_INIT", "2"), ("BOOTSTRAP_REPS", "1"), ("K_MAX", "5")):
        monkeypatch.setenv(f"BRIGHT_ENGAGEMENT_{name}", value)
    runner = CliRunner()
    fr = runner.invoke(engagement_app, ["questionnaire", "--lang", "fr"])
    flat = " ".join(fr.output.split())  # the console wraps long lines
    assert (
        fr.exit_code == 0
        and "[nep_1]" in flat
        and " ".join(QUESTIONNAIRE_V1.items[0].text["fr"].split()) in flat
    )
    assert runner.invoke(engagement_app, ["questionnaire", "--lang", "xx"]).exit_code == 1
    seeded = runner.invoke(engagement_app, ["seed", "--database", url])
    assert seeded.exit_code == 0, seeded.output
    assert (
        "simulated answers stored for 14 members" in seeded.output
        and "14 of 14 members classified" in seeded.output
    )
    _, members = _ids()
    profile = runner.invoke(engagement_app, ["profile", members[2], "--database", url, "--json"])
    assert profile.exit_code == 0 and '"basis": "category"' in profile.output
    answers = tmp_path / "answers.json"
    answers.write_text(
        '{"answers": {"nep_1": 9}, "consent": {"given": true, "date": "2024-05-01T10:00:00Z"}}'
    )
    rejected = runner.invoke(engagement_app, ["submit", members[2], str(answers), "--database", url])
    assert rejected.exit_code == 1 and "'nep_1'" in rejected.output
    assert (
        "1 answer set(s)" in runner.invoke(engagement_app, ["withdraw", members[2], "--database", url]).output
    )
    twin.engine.dispose()
