"""Scoring: reverse keys, knowledge items, prorated scores of incomplete answers, Cronbach's alpha."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bright.social.questionnaire import QUESTIONNAIRE_V1, AnswerOutOfRangeError
from bright.social.scoring import (
    cronbach_alpha,
    dimension_reliability,
    dimension_scores,
    dimension_z_scores,
    item_score,
    item_scores,
    score_respondent,
)

Q = QUESTIONNAIRE_V1


def test_reverse_keyed_items_are_mirrored() -> None:
    # ATI: 6 = completely agree. The reverse-keyed ati_3/6/8 answered 1 mean HIGH affinity.
    consistent = {f"ati_{i}": (1 if i in (3, 6, 8) else 6) for i in range(1, 10)}
    assert score_respondent(consistent).scores["technology_affinity"] == 1.0
    # Agreeing with everything: 6 normal items score 1, the 3 reversed ones 0 -> 6/9
    acquiescent = {f"ati_{i}": 6 for i in range(1, 10)}
    assert score_respondent(acquiescent).scores["technology_affinity"] == pytest.approx(6 / 9)
    # NEP: nep_1 = 5 -> 1, nep_2 (reversed) = 1 -> (5 - 1)/4 = 1, nep_3 = 4 -> 0.75; mean 2.75/3
    r = score_respondent({"nep_1": 5, "nep_2": 1, "nep_3": 4})
    assert r.scores["environmental_concern"] == pytest.approx(2.75 / 3)


def test_item_score_scales() -> None:
    assert item_score(Q.item("risk_1"), 7) == pytest.approx(0.7)
    assert item_score(Q.item("nep_2"), 2) == pytest.approx(0.75)  # reversed: (5 - 2)/4
    assert item_score(Q.item("lit_1"), 2) == 1.0  # 1 kWh is right
    assert item_score(Q.item("lit_1"), 5) == 0.0  # "don't know" scores as wrong
    assert np.isnan(item_score(Q.item("lit_1"), float("nan")))
    with pytest.raises(AnswerOutOfRangeError, match="bscs_1"):
        item_score(Q.item("bscs_1"), 6)


def test_incomplete_answers_are_scored_from_items_present_and_flagged() -> None:
    answers = {
        "nep_1": 5, "nep_3": 3,  # 2 of 3 NEP items: (1 + 0.5)/2 = 0.75
        "fin_1": 4,  # 1 of 2: 0.75
        "bscs_1": 5, "bscs_2": 4, "bscs_3": 3,  # 3 of 8 < half: not scored
        "ati_1": 6, "ati_2": 6, "ati_3": 1, "ati_4": 6, "ati_5": 1,  # 5 of 9: (1+1+1+1+0)/5 = 0.8
        "lit_1": 2, "lit_2": 3,  # right, wrong: 0.5
        "risk_1": 3,
    }  # fmt: skip
    r = score_respondent(answers, respondent="M3")
    assert r.incomplete
    assert r.scores["environmental_concern"] == pytest.approx(0.75)
    assert r.scores["financial_motive"] == pytest.approx(0.75)
    assert np.isnan(r.scores["sense_of_community"])
    assert r.scores["technology_affinity"] == pytest.approx(0.8)
    assert r.scores["energy_literacy"] == pytest.approx(0.5)
    assert r.scores["risk_tolerance"] == pytest.approx(0.3)
    assert np.isnan(r.scores["operator_trust"])  # single item, unanswered
    assert r.answered["sense_of_community"] == 3
    assert set(r.unscored_dimensions) == {
        "sense_of_community", "generalised_trust", "operator_trust", "comfort_autonomy", "social_norms"
    }  # fmt: skip
    assert len(r.missing_items) == 31 - 14  # 14 answered


def test_stricter_minimum_share_leaves_more_unscored() -> None:
    r = score_respondent({"nep_1": 5, "nep_3": 3}, min_answered_share=1.0)
    assert np.isnan(r.scores["environmental_concern"])


def test_dimension_scores_frame_flags_incomplete_rows() -> None:
    full = {it.id: it.scale.values[-1] for it in Q.items}
    partial = dict(full, nep_1=np.nan, bscs_4=np.nan)
    frame = pd.DataFrame([full, partial], index=["A", "B"])
    scores = dimension_scores(frame)
    assert not scores.loc["A", "incomplete"]
    assert bool(scores.loc["B", "incomplete"])
    assert scores.loc["B", "n_missing_items"] == 2
    # B: nep_2 (max=5, reversed) -> 0, nep_3 -> 1: mean 0.5
    assert scores.loc["B", "environmental_concern"] == pytest.approx(0.5)


def test_out_of_range_in_a_frame_names_item_and_respondent() -> None:
    frame = pd.DataFrame({"nep_1": [3, 4], "trust_2": [5, 12]}, index=["M1", "M2"])
    with pytest.raises(AnswerOutOfRangeError, match=r"item 'trust_2' of respondent 'M2'") as err:
        item_scores(frame)
    assert err.value.item_id == "trust_2"


def test_cronbach_alpha_hand_computed() -> None:
    # a = 1 2 3 4 (var 5/3), b = 2 3 3 4 (var 2/3), c = 1 1 2 4 (var 2);
    # totals 4 6 8 12 (var 35/3): alpha = 3/2 (1 - (13/3)/(35/3)) = 33/35
    x = np.array([[1, 2, 1], [2, 3, 1], [3, 3, 2], [4, 4, 4]], dtype=float)
    alpha, n = cronbach_alpha(x)
    assert alpha == pytest.approx(33 / 35)
    assert n == 4
    # a respondent with a missing answer is dropped listwise: alpha unchanged
    with_gap = np.vstack([x, [np.nan, 5.0, 5.0]])
    assert cronbach_alpha(with_gap) == (pytest.approx(33 / 35), 4)
    # pairwise uses the row for the (b, c) covariance: different value, 4 = min pair count
    alpha_pw, n_pw = cronbach_alpha(with_gap, missing="pairwise")
    assert n_pw == 4 and alpha_pw != pytest.approx(33 / 35)


def test_cronbach_alpha_two_items_via_the_questionnaire() -> None:
    # norm_1 = 1..5 (var 2.5), norm_2 = 2 2 4 5 5 (var 2.3), cov = 2.25:
    # alpha = 2 (1 - 4.8 / 9.3) = 9 / 9.3
    frame = pd.DataFrame({"norm_1": [1, 2, 3, 4, 5], "norm_2": [2, 2, 4, 5, 5]})
    rel = dimension_reliability(frame)
    assert rel["social_norms"].alpha == pytest.approx(9 / 9.3)
    assert rel["social_norms"].n_respondents == 5
    assert np.isnan(rel["risk_tolerance"].alpha)  # single item
    assert np.isnan(rel["technology_affinity"].alpha)  # nobody answered all 9 items


def test_alpha_uses_reverse_keyed_scores() -> None:
    # ati_1 = 1 3 4 6, ati_2 = 2 3 5 6, ati_3 (reversed) = 6 4 3 1 -> 1 3 4 6 once mirrored.
    # vars 13/3, 10/3, 13/3; totals 4 9 13 18 (var 106/3): alpha = 3/2 (1 - 36/106) = 105/106
    frame = pd.DataFrame({"ati_1": [1, 3, 4, 6], "ati_2": [2, 3, 5, 6], "ati_3": [6, 4, 3, 1]})
    scores = item_scores(frame)[["ati_1", "ati_2", "ati_3"]]
    assert cronbach_alpha(scores)[0] == pytest.approx(105 / 106)
    raw_alpha, _ = cronbach_alpha(frame.to_numpy(dtype=float))
    assert raw_alpha < 0  # without the reversal the item cancels out the others


def test_alpha_undefined_cases() -> None:
    assert np.isnan(cronbach_alpha(np.ones((5, 3)))[0])  # no variance
    assert np.isnan(cronbach_alpha(np.array([[1.0, 2.0]]))[0])  # one respondent
    assert np.isnan(cronbach_alpha(np.arange(6.0).reshape(6, 1))[0])  # one item
    with pytest.raises(ValueError, match="listwise"):
        cronbach_alpha(np.ones((3, 2)), missing="mean")  # type: ignore[arg-type]


def test_z_scores() -> None:
    scores = pd.DataFrame({"financial_motive": [0.25, 0.5, 0.75], "social_norms": [0.5, 0.5, 0.5]})
    z = dimension_z_scores(scores)
    assert z["financial_motive"].tolist() == pytest.approx([-1.0, 0.0, 1.0])
    assert z["social_norms"].isna().all()  # no spread: undefined, not zero


@settings(max_examples=50, deadline=None)
@given(
    arrays(
        np.float64, st.tuples(st.integers(3, 12), st.integers(2, 5)), elements=st.integers(1, 5).map(float)
    )
)
def test_alpha_invariants(x: np.ndarray) -> None:
    alpha, _ = cronbach_alpha(x)
    if np.isnan(alpha):
        return
    assert alpha <= 1.0 + 1e-12
    # a common shift and scale of all items leaves alpha unchanged
    assert cronbach_alpha(3.0 * x + 2.0)[0] == pytest.approx(alpha)
    # without missing answers the pairwise and listwise estimates coincide
    assert cronbach_alpha(x, missing="pairwise")[0] == pytest.approx(alpha)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_mirrored_answers_mirror_the_score(data: st.DataObject) -> None:
    dim = data.draw(st.sampled_from([d for d in Q.dimension_ids if d != "energy_literacy"]))
    items = Q.items_of(dim)
    answers = {it.id: data.draw(st.sampled_from(it.scale.values)) for it in items}
    mirrored = {it.id: it.scale.minimum + it.scale.maximum - answers[it.id] for it in items}
    s = score_respondent(answers).scores[dim]
    assert 0.0 <= s <= 1.0
    assert score_respondent(mirrored).scores[dim] == pytest.approx(1.0 - s)
