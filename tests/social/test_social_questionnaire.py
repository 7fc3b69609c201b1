"""The S-BRIGHT questionnaire: content, translations, versioning and answer validation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.social.questionnaire import (
    INSTRUMENTS,
    LANGUAGES,
    QUESTIONNAIRE_V1,
    QUESTIONNAIRE_VERSION,
    AnswerOutOfRangeError,
    QuestionnaireError,
    UnknownItemError,
    questionnaire_by_version,
)

Q = QUESTIONNAIRE_V1


def test_item_count_per_dimension_matches_the_instruments() -> None:
    counts = Counter(it.dimension for it in Q.items)
    assert counts == {
        "environmental_concern": 3,  # revised NEP subset
        "financial_motive": 2,
        "risk_tolerance": 1,  # SOEP item
        "generalised_trust": 1,
        "operator_trust": 1,
        "sense_of_community": 8,  # BSCS
        "technology_affinity": 9,  # ATI
        "comfort_autonomy": 2,
        "social_norms": 2,
        "energy_literacy": 2,
    }
    assert len(Q.items) == 31


def test_reverse_keyed_items_are_those_of_the_instruments() -> None:
    assert {it.id for it in Q.items if it.reverse_keyed} == {"nep_2", "ati_3", "ati_6", "ati_8"}


def test_scales_follow_the_instruments() -> None:
    assert all(it.scale.values == (1, 2, 3, 4, 5, 6) for it in Q.items_of("technology_affinity"))
    assert all(it.scale.values == (1, 2, 3, 4, 5) for it in Q.items_of("sense_of_community"))
    for item_id in ("risk_1", "trust_1", "trust_2"):
        assert Q.item(item_id).scale.values == tuple(range(11))
    assert [it.correct_value for it in Q.items_of("energy_literacy")] == [2, 2]
    # 2 kW x 0.5 h = 1 kWh is option 2 of the kettle item
    assert Q.item("lit_1").scale.options[1].text["en"] == "1 kWh"


def test_every_text_exists_in_every_language_and_is_translated() -> None:
    assert LANGUAGES == ("en", "fr", "nl")
    for it in Q.items:
        texts = [it.text[lang] for lang in LANGUAGES]
        assert all(t.strip() for t in texts)
        assert len(set(texts)) == 3, it.id  # the three versions differ: they were translated
        for opt in it.scale.options:
            assert all(opt.text[lang].strip() for lang in LANGUAGES)
    for d in Q.dimensions:
        assert all(d.name[lang] for lang in LANGUAGES)
    assert all(Q.intro[lang] for lang in LANGUAGES)


def test_every_instrument_records_its_reference() -> None:
    used = {it.instrument for it in Q.items}
    assert used == set(INSTRUMENTS)
    for ins in INSTRUMENTS.values():
        ref = ins.reference
        assert 1950 < ref.year < 2030
        assert ref.authors and ref.title and ref.venue
        assert str(ref.year) in ref.citation()
    assert INSTRUMENTS["ati"].reference.authors.startswith("Franke")
    assert INSTRUMENTS["bscs"].reference.year == 2008
    assert INSTRUMENTS["nep_r"].reference.year == 2000


def test_version_lookup() -> None:
    assert questionnaire_by_version(QUESTIONNAIRE_VERSION) is Q
    with pytest.raises(QuestionnaireError, match="unknown questionnaire version"):
        questionnaire_by_version("sbright-q-0.9")


def test_out_of_range_answer_is_rejected_with_the_item_named() -> None:
    with pytest.raises(AnswerOutOfRangeError, match=r"item 'ati_4' of respondent 'M12'") as err:
        Q.validate_answers({"nep_1": 3, "ati_4": 7}, respondent="M12")
    assert err.value.item_id == "ati_4"
    assert err.value.respondent == "M12"
    assert err.value.value == 7
    assert "1 to 6" in str(err.value)


@pytest.mark.parametrize("bad", [11, -1, 2.5, True, "5"])
def test_non_code_answers_are_rejected(bad: object) -> None:
    with pytest.raises(AnswerOutOfRangeError, match="risk_1"):
        Q.validate_answers({"risk_1": bad})


def test_unknown_item_is_rejected() -> None:
    with pytest.raises(UnknownItemError, match="nep_9"):
        Q.validate_answers({"nep_9": 3}, respondent="M1")


def test_missing_answers_are_allowed_and_flagged() -> None:
    checked = Q.validate_answers(
        {"nep_1": 4, "nep_2": None, "risk_1": np.float64(7.0), "trust_1": float("nan"), "trust_2": pd.NA}
    )
    assert not checked.complete
    assert checked.answers["nep_1"] == 4
    assert checked.answers["risk_1"] == 7  # an integral float is accepted as the code
    assert checked.answers["nep_2"] is None and checked.answers["trust_1"] is None
    assert checked.answers["trust_2"] is None
    assert len(checked.missing_items) == 29
    assert list(checked.answers) == list(Q.item_ids)


def test_complete_answer_set() -> None:
    answers = {it.id: it.scale.values[0] for it in Q.items}
    checked = Q.validate_answers(answers)
    assert checked.complete and checked.missing_items == ()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_validation_accepts_exactly_the_scale_values(data: st.DataObject) -> None:
    item = data.draw(st.sampled_from(Q.items))
    value = data.draw(st.integers(-3, 14))
    if value in item.scale.values:
        assert Q.validate_answers({item.id: value}).answers[item.id] == value
    else:
        with pytest.raises(AnswerOutOfRangeError) as err:
            Q.validate_answers({item.id: value})
        assert err.value.item_id == item.id
