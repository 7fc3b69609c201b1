"""Latent class segmentation: recovery of known classes, missing answers, naming, the emission model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score
from stepmix.stepmix import StepMix

from bright.social.questionnaire import QUESTIONNAIRE_V1, AnswerOutOfRangeError
from bright.social.segmentation import (
    ARCHETYPES,
    SIMULATED_CLASSES,
    Segmentation,
    SegmentationError,
    SimulatedRespondents,
    _fit,
    _lca_codes,
    _one_hot,
    name_classes,
    segment_members,
    simulate_respondents,
)


@pytest.fixture(scope="module")
def five_classes() -> tuple[SimulatedRespondents, Segmentation]:
    # 500 respondents from the 5 default classes, 5 % of answers missing at random
    sim = simulate_respondents(500, missing_rate=0.05, seed=11)
    seg = segment_members(sim.answers, sim.covariates, bootstrap_reps=3, random_state=0)
    return sim, seg


def test_incomplete_respondents_are_classified_and_flagged(
    five_classes: tuple[SimulatedRespondents, Segmentation],
) -> None:
    sim, seg = five_classes
    gaps = sim.answers.isna().any(axis=1)
    assert seg.excluded == ()
    assert seg.incomplete == tuple(sim.answers.index[gaps])
    assert len(seg.incomplete) > 400  # 31 items at 5 % missing: 1 - 0.95**31 = 80 % of respondents


def test_bic_picks_the_true_number_of_classes(
    five_classes: tuple[SimulatedRespondents, Segmentation],
) -> None:
    _, seg = five_classes
    assert [f.n_classes for f in seg.selection] == [2, 3, 4, 5, 6, 7]
    bics = [f.bic for f in seg.selection]
    assert int(np.argmin(bics)) == 3
    assert seg.n_classes == 5
    # BIC = -2 logL + p ln n, with p = k (158 - 31) + (k - 1) for these 31 items
    f5 = seg.selection[3]
    assert f5.n_parameters == 5 * 127 + 4
    assert f5.bic == pytest.approx(-2 * f5.log_likelihood + f5.n_parameters * np.log(500))


def test_recovery_quality(five_classes: tuple[SimulatedRespondents, Segmentation]) -> None:
    sim, seg = five_classes
    assert adjusted_rand_score(sim.true_labels, seg.labels) >= 0.9
    assert seg.quality.relative_entropy >= 0.8
    assert seg.quality.bootstrap_ari_median >= 0.8
    assert len(seg.quality.bootstrap_ari) == 3
    assert seg.quality.smallest_class_share == pytest.approx(min(c.share for c in seg.classes))
    assert 0.12 <= seg.quality.smallest_class_share <= 0.18  # true smallest share 0.15
    assert seg.posterior.shape == (500, 5)
    assert np.allclose(seg.posterior.sum(axis=1), 1.0)


def test_classes_are_named_after_the_generating_archetypes(
    five_classes: tuple[SimulatedRespondents, Segmentation],
) -> None:
    sim, seg = five_classes
    table = pd.crosstab(sim.true_labels, seg.labels)
    for true_label in table.index:
        found = seg.classes[int(table.loc[true_label].to_numpy().argmax())]
        assert found.name == sim.class_names[int(true_label)]
    eco = next(c for c in seg.classes if c.archetype == "eco_committed")
    assert eco.dimension_z["environmental_concern"] > 1.0
    assert "environmental concern" in eco.description
    assert eco.names["fr"] == "Engagés pour l'environnement"
    # labels are ordered by size: label 0 is the largest class (Eco-committed, 25 %)
    assert [c.label for c in seg.classes] == list(range(5))
    assert seg.classes[0].share == max(c.share for c in seg.classes)
    assert set(seg.covariates_used) == set(sim.covariates.columns)


def test_assign_reproduces_the_fitted_labels(five_classes: tuple[SimulatedRespondents, Segmentation]) -> None:
    sim, seg = five_classes
    out = seg.assign(sim.answers.iloc[:50], sim.covariates.iloc[:50])
    assert (out["label"].to_numpy() == seg.labels[:50]).all()
    assert seg.class_of("S0001").label == seg.labels[0]
    with pytest.raises(KeyError):
        seg.class_of("nobody")


def test_three_known_classes_are_recovered() -> None:
    classes = [
        c for c in SIMULATED_CLASSES if c.name in ("Eco-committed", "Cost-focused", "Tech enthusiasts")
    ]
    sim = simulate_respondents(300, classes=classes, seed=5)
    seg = segment_members(sim.answers, k_range=range(2, 6), bootstrap_reps=0, n_init=6)
    assert seg.n_classes == 3
    assert adjusted_rand_score(sim.true_labels, seg.labels) >= 0.9
    assert sorted(c.name for c in seg.classes) == sorted(c.name for c in classes)
    assert seg.covariates_used == () and seg.quality.bootstrap_ari == ()


def test_sparse_respondents_are_excluded_and_listed() -> None:
    sim = simulate_respondents(120, seed=2)
    answers = sim.answers.copy()
    answers.iloc[0, 5:] = np.nan  # 5 of 31 answered
    cov = sim.covariates.copy()
    cov.iloc[3, 0] = np.nan
    seg = segment_members(answers, cov, k_range=(2, 3), bootstrap_reps=0, n_init=3)
    assert seg.excluded == ("S0001",)
    assert seg.incomplete == ()  # the other respondents answered everything
    assert "S0001" not in seg.member_ids and len(seg.member_ids) == 119
    assert seg.imputed_covariate_values == 1


def test_bad_inputs() -> None:
    sim = simulate_respondents(60, seed=1)
    bad = sim.answers.copy()
    bad.loc["S0008", "bscs_3"] = 9
    with pytest.raises(AnswerOutOfRangeError, match=r"item 'bscs_3' of respondent 'S0008'"):
        segment_members(bad, k_range=(2,), bootstrap_reps=0)
    with pytest.raises(SegmentationError, match="too few"):
        segment_members(sim.answers.iloc[:20], k_range=(2, 7), bootstrap_reps=0)
    with pytest.raises(SegmentationError, match="no covariates for member 'S0060'"):
        segment_members(sim.answers, sim.covariates.iloc[:59], k_range=(2,), bootstrap_reps=0)


def test_simulator_is_reproducible_and_documented() -> None:
    a = simulate_respondents(200, missing_rate=0.1, seed=4)
    b = simulate_respondents(200, missing_rate=0.1, seed=4)
    pd.testing.assert_frame_equal(a.answers, b.answers)
    assert np.bincount(a.true_labels).tolist() == [50, 40, 40, 40, 30]  # shares 25/20/20/20/15 %
    assert 0.08 < a.answers.isna().to_numpy().mean() < 0.12
    assert set(np.unique(a.answers["ati_1"].dropna())) <= set(range(1, 7))
    # the Tech enthusiasts answer the ATI items higher than the Sceptical class
    tech = a.answers.loc[a.true_labels == 1, "ati_1"].mean()
    scep = a.answers.loc[a.true_labels == 4, "ati_1"].mean()
    assert tech > scep + 1.5
    with pytest.raises(ValueError, match="shares"):
        simulate_respondents(10, shares=(0.5, 0.5))


def test_naming_rules() -> None:
    dims = QUESTIONNAIRE_V1.dimension_ids
    zero = dict.fromkeys(dims, 0.0)
    eco = dict(zero, environmental_concern=1.5, social_norms=0.5)
    eco2 = dict(zero, environmental_concern=1.0)
    named = name_classes([eco, zero, eco2])
    assert [n[1] for n in named] == ["Eco-committed", "Mainstream", "Eco-committed II"]
    # affinity = projection on the unit weight vector: (1.5 + 0.4 x 0.5) / |(1, 0.4, -0.2)|
    assert named[0][2] == pytest.approx(1.7 / np.sqrt(1.2))
    assert {a.id for a in ARCHETYPES} >= {
        "eco_committed", "tech_enthusiast", "cost_focused", "community_minded", "sceptical"
    }  # fmt: skip


def test_vectorised_emission_matches_stepmix_categorical_nan() -> None:
    sim = simulate_respondents(150, missing_rate=0.1, seed=9)
    codes, levels = _lca_codes(sim.answers, QUESTIONNAIRE_V1)
    ours, fit = _fit(_one_hot(codes, levels), None, 3, levels, n_init=1, seed=3, max_iter=200, tol=1e-8)
    stock = StepMix(
        n_components=3, measurement="categorical_nan", n_init=1, random_state=3, progress_bar=0,
        abs_tol=1e-8, max_iter=200,
        measurement_params={"max_n_outcomes": int(levels.max()), "total_outcomes": int(levels.sum())},
    ).fit(codes)  # fmt: skip
    assert fit.log_likelihood == pytest.approx(stock.score(codes) * 150, rel=1e-9)
    assert np.allclose(ours._mm.parameters["pis"], stock._mm.parameters["pis"], atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.floats(0.0, 0.9), st.integers(0, 10_000))
def test_item_coding_is_one_hot_with_nan_blocks(n: int, missing: float, seed: int) -> None:
    sim = simulate_respondents(n, missing_rate=missing, seed=seed)
    codes, levels = _lca_codes(sim.answers, QUESTIONNAIRE_V1)
    x = _one_hot(codes, levels)
    width = int(levels.max())
    assert x.shape == (n, 31 * width) and width == 6
    blocks = x.reshape(n, 31, width)
    observed = ~np.isnan(codes)
    # an answered item is exactly one 1 within its own categories; a missing one is all NaN
    assert np.array_equal(np.nansum(blocks, axis=2), observed.astype(float))
    assert np.isnan(blocks[~observed]).all()
    assert (np.nan_to_num(codes, nan=0) < levels).all()
