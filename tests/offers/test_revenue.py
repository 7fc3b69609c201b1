"""Revenue-sharing rules (fixed, pro rata, Shapley) and the S-BRIGHT recommendations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.offers import (
    OfferError,
    pooled_reserve_game,
    recommend_offers,
    shapley_values,
    split_fixed,
    split_pro_rata,
    split_revenue,
)
from bright.services.offers import demo_offers

money = st.floats(-1e5, 1e5, allow_nan=False)
names = st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True)


@given(total=money, weights=st.dictionaries(st.sampled_from("abcdef"), st.floats(0.01, 100.0), min_size=1))
def test_fixed_and_pro_rata_sum_to_total(total: float, weights: dict[str, float]) -> None:
    s = sum(weights.values())
    fixed = split_fixed(total, {k: v / s for k, v in weights.items()})
    assert math.fsum(fixed.values()) == pytest.approx(total, abs=1e-6)
    pro = split_pro_rata(total, weights)
    assert math.fsum(pro.values()) == pytest.approx(total, abs=1e-6)
    for k in weights:  # pro rata: share proportional to the contribution
        assert pro[k] == pytest.approx(total * weights[k] / s, abs=1e-6)


def test_split_inputs_checked() -> None:
    with pytest.raises(OfferError, match="sum to 1"):
        split_fixed(10.0, {"a": 0.5, "b": 0.4})
    with pytest.raises(OfferError, match="finite"):
        split_pro_rata(10.0, {"a": float("nan")})
    with pytest.raises(OfferError, match="unknown method"):
        split_revenue(10.0, method="lottery")
    with pytest.raises(OfferError, match="exceed 1"):
        split_revenue(10.0, method="fixed", provider_share=0.7, community_share=0.4, shares={"a": 1.0})
    assert split_pro_rata(9.0, {"a": 0.0, "b": 0.0}) == {"a": 4.5, "b": 4.5}


@settings(max_examples=60)
@given(players=names, data=st.data())
def test_shapley_efficiency_symmetry_null_player(players: list[str], data: st.DataObject) -> None:
    # an additive game plus a bonus when two chosen players are together (a superadditive game)
    w = {p: data.draw(st.floats(0.0, 50.0)) for p in players}
    null = data.draw(st.sampled_from(players))
    w[null] = 0.0
    pair = data.draw(
        st.lists(
            st.sampled_from([p for p in players if p != null] or players), min_size=0, max_size=2, unique=True
        )
    )
    bonus = data.draw(st.floats(0.0, 30.0))

    def v(coalition: frozenset[str]) -> float:
        base = sum(w[p] for p in coalition)
        return base + (bonus if len(pair) == 2 and set(pair) <= coalition else 0.0)

    phi = shapley_values(players, v)
    assert math.fsum(phi.values()) == pytest.approx(
        v(frozenset(players)) - v(frozenset()), abs=1e-6
    )  # efficiency
    if null not in pair or len(pair) < 2:
        assert phi[null] == pytest.approx(0.0, abs=1e-9)  # null player
    if len(pair) == 2:  # the pair is symmetric when their weights are equal
        a, b = pair
        assert phi[a] - w[a] == pytest.approx(phi[b] - w[b], abs=1e-6)
        assert phi[a] - w[a] == pytest.approx(bonus / 2, abs=1e-6)


def test_pooled_reserve_shapley_rewards_members_below_the_minimum_bid() -> None:
    kw = {"a": 0.6, "b": 0.6, "c": 0.3}
    game = pooled_reserve_game(kw, 100.0, min_bid_kw=1.0)
    assert game(frozenset({"a"})) == 0.0 and game(frozenset({"a", "b"})) == pytest.approx(120.0)
    split = split_revenue(
        150.0, method="shapley", provider_share=0.2, community_share=0.1, game=game, members=list(kw)
    )
    assert split.provider_eur == pytest.approx(30.0) and split.community_eur == pytest.approx(15.0)
    assert math.fsum(split.members.values()) == pytest.approx(105.0)
    assert split.members["a"] == pytest.approx(split.members["b"])  # symmetric players
    assert split.members["c"] > 0  # c alone earns nothing, but it adds to coalitions
    with pytest.raises(OfferError, match="exceed the exact limit"):
        shapley_values([str(i) for i in range(13)], lambda s: 0.0)


def test_recommendations_follow_the_category() -> None:
    offers = demo_offers()
    cost = recommend_offers(offers, category="cost_focused")
    assert cost[0].offer_id.endswith("esco-renovation")  # bill protection
    assert "bill" in cost[0].reason and cost[0].reason_code == "category:cost_focused:bill_protection"
    tech = recommend_offers(offers, category="tech_enthusiast")
    assert tech[0].offer_id.rsplit(":", 1)[-1] in {"fcr-aggregator", "ev-smart-charging"}
    assert "override" in tech[0].reason
    community = recommend_offers(offers, category="community_minded")
    assert community[0].offer_id.endswith("community-battery")
    # no category: by value when known
    by_value = recommend_offers(offers, category=None, values_eur={offers[2].id: 300.0, offers[0].id: 10.0})
    assert by_value[0].offer_id == offers[2].id and "300 EUR" in by_value[0].reason
    assert [r.rank for r in by_value] == list(range(1, len(offers) + 1))
