"""Matching of categories to services and incentives; structural winners."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.social.matching import (
    INCENTIVES,
    OFFERS,
    SERVICES,
    MatchingError,
    TimeOfUseTariff,
    community_mix,
    offer,
    recommend,
    recommend_for_member,
    structural_gain,
    structural_winners,
    suitability,
    suitability_matrix,
)
from bright.social.profile_features import FlexibleAssets, LoadProfileFeatures
from bright.social.questionnaire import QUESTIONNAIRE_V1
from bright.social.segmentation import segment_members, simulate_respondents

DIMS = QUESTIONNAIRE_V1.dimension_ids


def _features(peak_share: float = 0.2, ratio: float = 1.0) -> LoadProfileFeatures:
    return LoadProfileFeatures("M", peak_share, ratio, 0.2, 0.3, 0.5, 1.0, 30)


def test_catalogue_covers_the_issue_and_every_offer_has_evidence() -> None:
    assert {o.id for o in SERVICES} == {
        "automated_control", "static_time_of_use", "dynamic_time_of_use", "peak_time_rebate",
        "community_peak_events", "solar_hours_shifting",
    }  # fmt: skip
    assert {o.id for o in INCENTIVES} == {
        "co2_health_feedback", "personal_goals", "community_challenges", "peer_comparison",
        "bill_protection", "opt_out_default",
    }  # fmt: skip
    for o in OFFERS:
        assert o.evidence, o.id
        for e in o.evidence:
            assert 1970 <= e.reference.year <= 2025 and e.reference.venue and e.finding
        assert set(o.weights) <= set(DIMS)
        assert all(o.names[lang] for lang in ("en", "fr", "nl"))
    with pytest.raises(MatchingError, match="unknown offer"):
        offer("free_beer")


def test_suitability_hand_computed() -> None:
    # CO2 feedback weights: environment 1.0, norms 0.2, financial -0.3 (sum |w| = 1.5)
    # z = environment +1, financial +1: (1.0 - 0.3) / 1.5
    s, reasons = suitability(
        offer("co2_health_feedback"), {"environmental_concern": 1.0, "financial_motive": 1.0}
    )
    assert s == pytest.approx(0.7 / 1.5)
    assert reasons == (
        "high environmental concern (+1.0 SD)",
        "high financial motive (+1.0 SD) (counts against)",
    )
    # missing and NaN dimensions count as the average (0)
    s_nan, _ = suitability(
        offer("co2_health_feedback"), {"environmental_concern": 1.0, "social_norms": np.nan}
    )
    assert s_nan == pytest.approx(1.0 / 1.5)
    with pytest.raises(MatchingError, match="unknown dimension"):
        suitability(offer("co2_health_feedback"), {"greed": 1.0})


def test_automated_control_needs_a_controllable_asset() -> None:
    z = {"operator_trust": 1.0, "technology_affinity": 1.0}
    none = recommend(z, assets=FlexibleAssets(pv=True))
    assert "automated_control" not in none.ranking
    assert any("Automated control" in n for n in none.notes)
    ev = recommend(z, assets=FlexibleAssets(electric_vehicle=True))
    # (1.0 + 0.6) / 2.2 + 0.3
    assert ev.ranking["automated_control"] == pytest.approx(1.6 / 2.2 + 0.3)
    assert ev.services[0].offer.id == "automated_control"
    assert any("electric vehicle" in r for r in ev.services[0].reasons)


def test_archetype_profiles_get_fitting_offers() -> None:
    eco = recommend({"environmental_concern": 1.5, "social_norms": 0.8, "comfort_autonomy": -0.5})
    assert eco.services[0].offer.id == "solar_hours_shifting"
    assert eco.incentives[0].offer.id == "co2_health_feedback"
    cost = recommend({"financial_motive": 1.5, "risk_tolerance": -1.0})
    assert {r.offer.id for r in cost.services} == {"static_time_of_use", "peak_time_rebate"}
    assert cost.incentives[0].offer.id == "bill_protection"
    sceptic = recommend({"operator_trust": -1.5, "technology_affinity": -1.2, "sense_of_community": -1.0})
    assert sceptic.incentives[0].offer.id == "opt_out_default"
    assert "automated_control" not in {r.offer.id for r in sceptic.services}
    # every recommendation carries its references
    for rec in eco.services + eco.incentives + cost.services + sceptic.incentives:
        assert rec.references and all(ref.year for ref in rec.references)


def test_average_profile_gets_a_flagged_fallback() -> None:
    r = recommend(dict.fromkeys(DIMS, 0.0))
    assert len(r.services) == 1 and r.services[0].fallback
    assert len(r.incentives) == 1 and r.incentives[0].fallback


def test_context_adjustments() -> None:
    z = {"environmental_concern": 0.5}
    base = recommend(z).ranking
    ctx = recommend(z, features=_features(peak_share=0.3, ratio=2.0)).ranking
    assert ctx["solar_hours_shifting"] == pytest.approx(base["solar_hours_shifting"] + 0.3)
    assert ctx["peak_time_rebate"] == pytest.approx(base["peak_time_rebate"] + 0.25)
    assert ctx["community_peak_events"] == pytest.approx(base["community_peak_events"] + 0.25)
    with_ev = recommend(z, assets=FlexibleAssets(home_battery=True)).ranking
    assert with_ev["dynamic_time_of_use"] == pytest.approx(base["dynamic_time_of_use"] + 0.3)


def _idx(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-08 00:00", periods=n, freq="15min", tz="Europe/Brussels").tz_convert("UTC")


def test_time_of_use_prices_follow_local_hours() -> None:
    tariff = TimeOfUseTariff(0.40, 0.25, solar_price_eur_per_kwh=0.15)
    p = tariff.prices(_idx(96))
    local = pd.DatetimeIndex(p.index).tz_convert("Europe/Brussels")
    assert p[local.hour == 18].unique().tolist() == [0.40]
    assert p[local.hour == 12].unique().tolist() == [0.15]
    assert p[local.hour == 3].unique().tolist() == [0.25]
    # 4 h peak, 5 h solar, 15 h off-peak
    assert (p == 0.40).sum() == 16 and (p == 0.15).sum() == 20
    with pytest.raises(MatchingError, match="timezone-aware"):
        tariff.prices(pd.date_range("2024-01-01", periods=4, freq="15min"))


def test_structural_winner_and_loser_against_the_revenue_neutral_price() -> None:
    idx = _idx(96)
    price = TimeOfUseTariff(0.40, 0.20).prices(idx)
    local = idx.tz_convert("Europe/Brussels")
    peak = (local.hour >= 17) & (local.hour < 21)
    evening = pd.Series(np.where(peak, 1.0, 0.1), idx)  # 16 kWh in the peak, 8 kWh off-peak
    daytime = pd.Series(np.where(peak, 0.0, 0.3), idx)  # 24 kWh, all off-peak
    gains = structural_winners(pd.DataFrame({"E": evening, "D": daytime}), price)
    # community: (16 x 0.40 + 8 x 0.20 + 24 x 0.20) / 48 = 12.8 / 48 = 0.2667 EUR/kWh
    assert gains["D"].reference_price_eur_per_kwh == pytest.approx(12.8 / 48)
    assert gains["D"].weighted_price_eur_per_kwh == pytest.approx(0.20)
    assert gains["D"].winner and not gains["D"].loser
    # E: (6.4 + 1.6) / 24 = 0.3333 EUR/kWh -> pays 25 % more
    assert gains["E"].relative_gain == pytest.approx((12.8 / 48 - 8 / 24) / (12.8 / 48))
    assert gains["E"].loser
    # revenue neutrality: the bill differences cancel out
    assert gains["D"].bill_difference_eur + gains["E"].bill_difference_eur == pytest.approx(0.0, abs=1e-12)


def test_structural_gain_skips_missing_intervals_and_rejects_bad_input() -> None:
    idx = _idx(4)
    q = pd.Series([1.0, np.nan, 1.0, 2.0], idx)
    p = pd.Series([0.1, 0.5, np.nan, 0.4], idx)
    g = structural_gain(q, p, reference_price_eur_per_kwh=0.3, member="M")
    assert g.energy_kwh == 3.0  # intervals 0 and 3 only
    assert g.weighted_price_eur_per_kwh == pytest.approx(0.9 / 3)
    with pytest.raises(MatchingError, match="reference price"):
        structural_gain(q, p, reference_price_eur_per_kwh=0.0)
    with pytest.raises(MatchingError, match=r"member 'X'.*timezone-aware"):
        structural_gain(q.tz_localize(None), p, reference_price_eur_per_kwh=0.3, member="X")


def test_structural_winner_is_flagged_in_recommendations() -> None:
    idx = _idx(2)
    winner = structural_gain(
        pd.Series([1.0, 3.0], idx), pd.Series([0.4, 0.2], idx), reference_price_eur_per_kwh=0.30
    )  # 0.25 EUR/kWh: +16.7 %
    r = recommend({"financial_motive": 0.5}, structural=winner)
    assert r.structural_winner
    assert r.services[0].offer.id == "static_time_of_use"
    assert any("not flexibility" in n for n in r.notes)
    assert r.ranking["bill_protection"] == pytest.approx(
        recommend({"financial_motive": 0.5}).ranking["bill_protection"] - 0.3
    )


def test_community_mix_and_member_recommendations() -> None:
    sim = simulate_respondents(300, seed=21)
    seg = segment_members(sim.answers, k_range=(4, 5), bootstrap_reps=0, n_init=6)
    mix = community_mix(seg)
    assert [m.label for m in mix] == list(range(seg.n_classes))
    assert sum(m.share for m in mix) == pytest.approx(1.0)
    by_name = {m.name: m.recommendations for m in mix}
    assert by_name["Community-minded"].services[0].offer.id == "community_peak_events"
    assert by_name["Tech enthusiasts"].services[0].offer.id == "dynamic_time_of_use"
    rec = recommend_for_member(seg, "S0001", assets=FlexibleAssets())
    assert rec.category == seg.class_of("S0001").name
    assert "automated_control" not in rec.ranking


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(st.sampled_from(DIMS), st.floats(-3, 3), min_size=1),
    st.sampled_from(DIMS),
    st.floats(0.1, 2.0),
)
def test_suitability_moves_with_the_weight_sign(z: dict[str, float], dim: str, step: float) -> None:
    before = suitability_matrix([z]).iloc[0]
    after = suitability_matrix([dict(z, **{dim: z.get(dim, 0.0) + step})]).iloc[0]
    for o in OFFERS:
        w = o.weights.get(dim, 0.0)
        diff = after[o.id] - before[o.id]
        assert diff == pytest.approx(w * step / sum(abs(v) for v in o.weights.values()), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0.0, 3.0), min_size=8, max_size=8),
    st.lists(st.floats(0.0, 3.0), min_size=8, max_size=8),
    st.lists(st.floats(0.05, 0.6), min_size=8, max_size=8),
)
def test_revenue_neutral_reference_balances_bills(a: list[float], b: list[float], price: list[float]) -> None:
    idx = _idx(8)
    frame = pd.DataFrame({"A": a, "B": b}, index=idx)
    if frame["A"].sum() <= 0 or frame["B"].sum() <= 0:
        return
    gains = structural_winners(frame, pd.Series(price, idx))
    assert sum(g.bill_difference_eur for g in gains.values()) == pytest.approx(0.0, abs=1e-9)
