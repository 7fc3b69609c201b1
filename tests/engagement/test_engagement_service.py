"""S-BRIGHT engagement service: consent, validation, storage as personal data, profiles, community mix."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bright.config import Settings
from bright.services.demo import DemoCommunity, build_demo_community, meter_series
from bright.services.engagement import (
    AnswerRejected,
    Consent,
    ConsentRequired,
    EngagementConfig,
    EngagementService,
    answers_table,
)
from bright.social.questionnaire import QUESTIONNAIRE_V1
from bright.twin.db import make_engine
from bright.twin.errors import ResourceNotFound
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context

FAST = EngagementConfig(reference_size=200, k_range=(2, 3, 4, 5), n_init=2, bootstrap_reps=1)
CONSENT = {"given": True, "date": "2024-05-01T10:00:00Z"}


@functools.lru_cache(maxsize=1)
def _demo() -> tuple[DemoCommunity, dict[str, pd.DataFrame]]:
    community = build_demo_community()
    frames = meter_series(community)
    return community, {k: frames[k].loc["2016-03-01":"2016-03-21"] for k in ("offtake", "injection")}


def _twin(url: str) -> TwinService:
    engine = make_engine(url)
    twin = TwinService(engine, Settings(database_url=url))
    community, frames = _demo()
    res = twin.batch_upsert("", community.entities, twin.resolve_context(community.entities[0]["@context"]))
    assert not res["errors"]
    series = SeriesStore(engine)
    for name, frame in frames.items():
        series.write(frame, attribute=bright_context().expand(name), unit_code="KWH")
    return twin


def _ids() -> tuple[str, list[str]]:
    community, _ = _demo()
    return (
        f"urn:ngsi-ld:EnergyCommunity:{community.key}",
        [f"urn:ngsi-ld:EnergyProsumer:{community.key}:{m.key}" for m in community.members],
    )


def _full_answers() -> dict[str, int]:
    """A complete, valid answer set: the middle option of every item."""
    return {it.id: it.scale.values[len(it.scale.values) // 2] for it in QUESTIONNAIRE_V1.items}


def _stored_rows(svc: EngagementService) -> int:
    with svc.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(answers_table)).scalar_one())


@pytest.fixture
def service(db_url: str) -> Iterator[EngagementService]:
    twin = _twin(db_url)
    yield EngagementService(twin, config=FAST)
    twin.engine.dispose()


@pytest.fixture
def sqlite_service(tmp_path) -> Iterator[EngagementService]:
    twin = _twin(f"sqlite:///{tmp_path / 'twin.db'}")
    yield EngagementService(twin, config=FAST)
    twin.engine.dispose()


def test_consent_is_required_and_nothing_is_stored_without_it(service: EngagementService) -> None:
    _, members = _ids()
    member = members[2]
    refused = [
        None,
        {"given": False, "date": "2024-05-01T10:00:00Z"},
        {"given": True},
        {"given": True, "date": "2024-05-01"},  # a date without time and zone is not a recorded instant
        {"given": True, "date": (datetime.now(UTC) + timedelta(days=3)).isoformat()},
        {"given": "yes", "date": "2024-05-01T10:00:00Z"},
    ]
    for consent in refused:
        with pytest.raises(ConsentRequired) as info:
            service.submit_answers(member, _full_answers(), consent=consent, refresh=False)
        assert member in str(info.value) or "consent" in str(info.value)
    assert _stored_rows(service) == 0
    result = service.submit_answers(member, _full_answers(), consent=CONSENT, refresh=False)
    assert result.consent == Consent(True, datetime(2024, 5, 1, 10, tzinfo=UTC))
    assert _stored_rows(service) == 1
    _, meta = service.latest_answers(_ids()[0])
    assert meta[member]["consent"] == {
        "given": True,
        "date": "2024-05-01T10:00:00Z",
        "textVersion": "sbright-consent-1",
    }


def test_out_of_range_answer_is_rejected_with_the_item_named(sqlite_service: EngagementService) -> None:
    _, members = _ids()
    answers = _full_answers() | {"ati_4": 7}  # the ATI scale runs 1..6
    with pytest.raises(AnswerRejected) as info:
        sqlite_service.submit_answers(members[0], answers, consent=CONSENT, refresh=False)
    assert "'ati_4'" in str(info.value) and "1 to 6" in str(info.value)
    assert info.value.extra["item"] == "ati_4"
    with pytest.raises(AnswerRejected) as info:
        sqlite_service.submit_answers(members[0], {"nep_9": 3}, consent=CONSENT, refresh=False)
    assert info.value.extra["item"] == "nep_9"
    with pytest.raises(AnswerRejected) as info:
        sqlite_service.submit_answers(members[0], {"risk_1": 3.5}, consent=CONSENT, refresh=False)
    assert info.value.extra["item"] == "risk_1"
    assert _stored_rows(sqlite_service) == 0


def test_unknown_member_or_community_member_of_nothing(sqlite_service: EngagementService) -> None:
    with pytest.raises(ResourceNotFound):
        sqlite_service.submit_answers("urn:ngsi-ld:EnergyProsumer:nobody", {}, consent=CONSENT)
    with pytest.raises(ResourceNotFound, match="not an EnergyProsumer"):
        sqlite_service.community_of(_ids()[0])


def test_incomplete_answers_are_scored_with_what_is_there_and_flagged(service: EngagementService) -> None:
    _, members = _ids()
    # Environmental concern: nep_1 = 5 -> (5-1)/4 = 1; nep_2 is reverse-keyed: 1 -> (5-1)/4 = 1;
    # nep_3 = 4 -> 0.75; mean 2.75/3 = 0.9167. Financial motive: fin_1 = 4 alone (1 of 2 items, the
    # minimum) -> 0.75. Technology affinity: 1 of 9 items < 5 -> not scored (NaN).
    answers = {"nep_1": 5, "nep_2": 1, "nep_3": 4, "fin_1": 4, "ati_1": 6}
    result = service.submit_answers(members[4], answers, consent=CONSENT, refresh=False)
    assert not result.complete
    assert set(result.missing_items) == set(QUESTIONNAIRE_V1.item_ids) - set(answers)
    assert result.scores["environmental_concern"] == pytest.approx(2.75 / 3)
    assert result.scores["financial_motive"] == pytest.approx(0.75)
    assert math.isnan(result.scores["technology_affinity"])
    body = result.to_json()
    assert body["complete"] is False and body["scores"]["technology_affinity"] is None
    stored, meta = service.latest_answers(_ids()[0])
    assert stored.loc[members[4], "nep_2"] == 1 and np.isnan(stored.loc[members[4], "bscs_1"])
    assert len(meta[members[4]]["missingItems"]) == 31 - 5


def test_withdrawal_erases_answers_and_profile(sqlite_service: EngagementService) -> None:
    community, members = _ids()
    for m in members[:3]:
        sqlite_service.submit_answers(m, _full_answers(), consent=CONSENT, refresh=False)
    sqlite_service.refresh_community(community)
    assert sqlite_service.profile(members[1])["member"] == members[1]
    assert sqlite_service.withdraw(members[1]) == 1
    with pytest.raises(ResourceNotFound):
        sqlite_service.profile(members[1])
    assert sqlite_service.mix(community)["respondents"] == 2
    assert _stored_rows(sqlite_service) == 2


def test_demo_members_get_profiles_and_the_community_a_mix(sqlite_service: EngagementService) -> None:
    community, members = _ids()
    seeded = sqlite_service.seed_simulated_answers(community, seed=11)
    assert seeded == members
    mix = sqlite_service.mix(community, compute=False)
    assert mix["members"] == mix["respondents"] == mix["classified"] == mix["simulatedAnswers"] == 14
    assert mix["segmented"] and mix["model"]["referenceRespondents"] == 200 - 14
    assert mix["model"]["classes"] in (2, 3, 4, 5)
    counts = [c["members"] for c in mix["categories"]]
    assert sum(counts) == 14
    assert all(c["share"] == round(c["members"] / 14, 4) for c in mix["categories"])
    assert counts == sorted(counts, reverse=True)  # largest category first
    assert 0.0 <= mix["model"]["quality"]["relativeEntropy"] <= 1.0
    assert set(mix["reliability"]) == set(QUESTIONNAIRE_V1.dimension_ids)
    names = {c["name"] for c in mix["categories"] if c["members"]}
    for cat in mix["categories"]:
        for rec in cat["recommendations"]["services"] + cat["recommendations"]["incentives"]:
            assert rec["references"] and all(r["citation"] and r["finding"] for r in rec["references"])
    winners = 0
    for m in members:
        p = sqlite_service.profile(m)
        assert p["category"]["name"] in names
        assert 0 < len(p["recommendations"]["services"]) <= 2
        assert 0 < len(p["recommendations"]["incentives"]) <= 2
        assert p["recommendations"]["basis"] == "category"
        assert p["loadProfile"]["completeDays"] >= 19  # 21 days of readings, local days at the edges cut
        assert p["source"] == "simulated"
        winners += bool(p["structural"] and p["structural"]["winner"])
        assert all(v["score"] is None or 0.0 <= v["score"] <= 1.0 for v in p["scores"].values())
    assert mix["structuralWinners"] == winners
    school = sqlite_service.profile(members[0])
    # The school owns a battery and an EV charger (and PV): two controllable assets.
    assert school["assets"] == {
        "electric_vehicle": 1,
        "heat_pump": 0,
        "home_battery": 1,
        "electric_water_heater": 0,
        "pv": 1,
    }
    # The mix (an aggregate over 14 >= 5 members) is published; no answers or member ids in it.
    entity = sqlite_service.twin.store.get("", "urn:ngsi-ld:EngagementMix:" + community.rsplit(":", 1)[-1])
    assert entity is not None
    text = orjson.dumps(entity).decode()
    assert "engagementCategories" in text
    assert not any(m in text for m in members)


def test_a_small_community_without_reference_sample_is_not_segmented(tmp_path) -> None:
    twin = _twin(f"sqlite:///{tmp_path / 'twin.db'}")
    svc = EngagementService(twin, config=EngagementConfig(reference_size=0, n_init=1, bootstrap_reps=0))
    community, members = _ids()
    for m in members[:3]:
        svc.submit_answers(m, _full_answers(), consent=CONSENT, refresh=False)
    mix = svc.refresh_community(community)
    assert not mix["segmented"] and "too few" in mix["reason"]
    profile = svc.profile(members[0])
    assert profile["category"] is None
    assert profile["recommendations"]["basis"] == "own answers"
    assert twin.store.get("", "urn:ngsi-ld:EngagementMix:" + community.rsplit(":", 1)[-1]) is None
    twin.engine.dispose()


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory) -> Iterator[EngagementService]:
    twin = _twin(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'twin.db'}")
    yield EngagementService(twin, config=FAST)
    twin.engine.dispose()


_ITEM_VALUES = {it.id: list(it.scale.values) for it in QUESTIONNAIRE_V1.items}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(
        st.sampled_from(sorted(_ITEM_VALUES)),
        st.integers(0, 10),
        max_size=31,
    ),
    st.integers(0, 13),
)
def test_any_valid_partial_answer_set_is_stored_and_scored(
    shared_service: EngagementService, raw: dict[str, int], member_no: int
) -> None:
    """Whatever subset of items is answered (with allowed codes): stored, missing items listed, scores
    in [0, 1] or NaN, and a dimension is scored iff at least half its items were answered."""
    answers = {k: _ITEM_VALUES[k][v % len(_ITEM_VALUES[k])] for k, v in raw.items()}
    member = _ids()[1][member_no]
    result = shared_service.submit_answers(member, answers, consent=CONSENT, refresh=False)
    assert set(result.missing_items) == set(QUESTIONNAIRE_V1.item_ids) - set(answers)
    for dim in QUESTIONNAIRE_V1.dimension_ids:
        items = [it.id for it in QUESTIONNAIRE_V1.items_of(dim)]
        answered = sum(i in answers for i in items)
        score = result.scores[dim]
        assert math.isnan(score) == (answered < math.ceil(len(items) / 2))
        assert math.isnan(score) or 0.0 <= score <= 1.0
    stored, _ = shared_service.latest_answers(_ids()[0])
    row = stored.loc[member]
    assert {k for k, v in row.items() if not np.isnan(v)} == set(answers)
