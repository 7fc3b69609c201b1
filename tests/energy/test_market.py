"""Settlement: fixed price, mid-market, double auction, monthly statements, budget balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.market import (
    STATEMENT_COLUMNS,
    DoubleAuction,
    FixedPrice,
    MidMarket,
    Tariff,
    double_auction,
    monthly_statements,
    per_interval,
    settle,
)
from bright.energy.sharing import EnergyInputError, MeterReadings, SharingKey, TariffType, share_fixed

# One quarter-hour: P injects 1.0 kWh, A and B take 0.6 each, keys 1/2 -> 0.5 kWh each is shared.
# Outside prices: supplier energy 0.30, feed-in 0.05, grid fee 0.10 EUR/kWh; the group is type B,
# whose network-charge reduction is 0.03 EUR/kWh.
INDEX = pd.date_range("2024-06-01 10:00", periods=1, freq="15min", tz="UTC")
READINGS = MeterReadings(("P", "A", "B"), np.array([[0.0, 0.6, 0.6]]), np.array([[1.0, 0.0, 0.0]]), INDEX)
RESULT = share_fixed(READINGS, SharingKey.equal(["A", "B"]))
TARIFF = Tariff(
    supplier_energy_eur_per_kwh=0.30,
    feed_in_eur_per_kwh=0.05,
    grid_fee_eur_per_kwh=0.10,
    network_reduction_eur_per_kwh={TariffType.A: 0.04, TariffType.B: 0.03, TariffType.C: 0.02},
)
# what the community saves in total: 1.0 kWh x (0.30 + 0.03 - 0.05) = 0.28 EUR
GRAND_SAVINGS = 0.28


def test_fixed_price() -> None:
    s = settle(RESULT, TARIFF, FixedPrice(0.20), group_type=TariffType.B)
    # A: supplier 0.1 x 0.30 + 0.6 x 0.10 = 0.09; community 0.5 x 0.20 = 0.10; reduction 0.5 x 0.03
    #    = 0.015; net 0.175; alone 0.6 x 0.40 = 0.24; saves 0.065.
    np.testing.assert_allclose(s.supplier_eur, [[0.0, 0.09, 0.09]])
    np.testing.assert_allclose(s.community_purchase_eur, [[0.0, 0.10, 0.10]])
    np.testing.assert_allclose(s.network_reduction_eur, [[0.0, 0.015, 0.015]])
    np.testing.assert_allclose(s.net_cost_eur, [[-0.20, 0.175, 0.175]])
    # P: sells 1.0 x 0.20 = 0.20 instead of 1.0 x 0.05 feed-in: saves 0.15.
    np.testing.assert_allclose(s.community_sales_eur, [[0.20, 0.0, 0.0]])
    np.testing.assert_allclose(s.standalone_eur, [[-0.05, 0.24, 0.24]])
    np.testing.assert_allclose(s.savings_eur, [[0.15, 0.065, 0.065]])
    assert s.savings_eur.sum() == pytest.approx(GRAND_SAVINGS)
    assert s.community_account_eur.tolist() == pytest.approx([0.0])


def test_mid_market() -> None:
    s = settle(RESULT, TARIFF, MidMarket(), group_type=TariffType.B)
    # price (0.30 + 0.05) / 2 = 0.175: A pays 0.0875 -> net 0.1625, saves 0.0775; P gets 0.175, saves 0.125
    np.testing.assert_allclose(s.community_purchase_eur, [[0.0, 0.0875, 0.0875]])
    np.testing.assert_allclose(s.savings_eur, [[0.125, 0.0775, 0.0775]])
    assert s.savings_eur.sum() == pytest.approx(GRAND_SAVINGS)


def test_double_auction_all_matched() -> None:
    # bids A 0.25, B 0.15; P asks 0.08 + fee 0.02 = 0.10. All 1.0 kWh match; marginal bid 0.15 (B),
    # marginal effective ask 0.10 -> price 0.125. Buyers pay 0.0625 each; P gets (0.125 - 0.02) x 1.0.
    s = settle(RESULT, TARIFF, DoubleAuction({"A": 0.25, "B": 0.15}, {"P": 0.08}, 0.02), group_type="B")
    assert s.auction is not None
    assert s.auction.price_eur_per_kwh.tolist() == pytest.approx([0.125])
    np.testing.assert_allclose(s.community_purchase_eur, [[0.0, 0.0625, 0.0625]])
    np.testing.assert_allclose(s.community_sales_eur, [[0.105, 0.0, 0.0]])
    assert s.community_account_eur.tolist() == pytest.approx([0.02])  # the fee
    assert s.savings_eur.sum() + s.community_account_eur.sum() == pytest.approx(GRAND_SAVINGS)


def test_double_auction_unmatched_falls_back() -> None:
    # B bids 0.09 < 0.10: only A's 0.5 matches, at (0.25 + 0.10) / 2 = 0.175.
    # B's 0.5 falls back to the supplier price (0.15); P's unmatched 0.5 to feed-in (0.025).
    s = settle(RESULT, TARIFF, DoubleAuction({"A": 0.25, "B": 0.09}, {"P": 0.08}, 0.02), group_type="B")
    assert s.auction is not None
    assert s.auction.price_eur_per_kwh.tolist() == pytest.approx([0.175])
    np.testing.assert_allclose(s.auction.matched_buy_kwh, [[0.0, 0.5, 0.0]])
    np.testing.assert_allclose(s.community_purchase_eur, [[0.0, 0.0875, 0.15]])
    np.testing.assert_allclose(s.community_sales_eur, [[0.5 * 0.155 + 0.025, 0.0, 0.0]])
    # kept by the community: fee 0.5 x 0.02 + spread 0.5 x (0.30 - 0.05) = 0.135
    assert s.community_account_eur.tolist() == pytest.approx([0.135])


def test_double_auction_by_hand() -> None:
    # buyers X 0.3 kWh @ 0.30, Y 0.4 @ 0.20, Z 0.5 @ 0.12; sellers S1 0.5 @ 0.05, S2 0.6 @ 0.15.
    # demand steps: 0.3 @ .30, 0.7 @ .20, 1.2 @ .12; supply steps: 0.5 @ .05, 1.1 @ .15.
    # Q = max(min(0.3, 1.1), min(0.7, 1.1), min(1.2, 0.5)) = 0.7; marginal Y (0.20) and S2 (0.15):
    # price 0.175; X 0.3, Y 0.4, Z 0; S1 0.5, S2 0.2. Columns deliberately out of price order.
    columns = ["Z", "S2", "X", "S1", "Y"]
    buy = np.array([[0.5, 0.0, 0.3, 0.0, 0.4]])
    sell = np.array([[0.0, 0.6, 0.0, 0.5, 0.0]])
    bids = np.array([0.12, np.nan, 0.30, np.nan, 0.20])
    asks = np.array([np.nan, 0.15, np.nan, 0.05, np.nan])
    out = double_auction(buy, sell, bids, asks, 0.0)
    assert out.price_eur_per_kwh.tolist() == pytest.approx([0.175])
    np.testing.assert_allclose(out.matched_buy_kwh, [[0.0, 0.0, 0.3, 0.0, 0.4]])
    np.testing.assert_allclose(out.matched_sell_kwh, [[0.0, 0.2, 0.0, 0.5, 0.0]])
    # the same with prices per interval takes the general (per-row sorted) path
    general = double_auction(buy, sell, bids[None, :], asks[None, :], 0.0)
    np.testing.assert_allclose(general.matched_buy_kwh, out.matched_buy_kwh)
    np.testing.assert_allclose(general.price_eur_per_kwh, out.price_eur_per_kwh)
    assert columns[int(np.argmax(out.matched_sell_kwh))] == "S1"


def test_no_trade_gives_nan_price() -> None:
    out = double_auction(
        np.array([[0.5, 0.0]]), np.array([[0.0, 0.5]]), np.array([0.1, np.nan]), np.array([np.nan, 0.2])
    )
    assert np.isnan(out.price_eur_per_kwh[0])
    assert out.matched_buy_kwh.sum() == 0.0


def test_monthly_statements() -> None:
    # two local months: 31 May 22:00 UTC is already 1 June in Brussels
    index = pd.DatetimeIndex(["2024-05-31 21:45", "2024-05-31 22:00"], tz="UTC")
    readings = MeterReadings(
        ("P", "A"), np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([[0.4, 0], [2.0, 0]]), index
    )
    result = share_fixed(readings, SharingKey({"A": 1.0}))
    s = settle(result, TARIFF, FixedPrice(0.2), group_type=TariffType.A)
    statements = monthly_statements(s)
    assert list(statements.columns) == list(STATEMENT_COLUMNS)
    may, june = statements.index.get_level_values("month").unique()
    assert str(may) == "2024-05-01 00:00:00+02:00" and str(june) == "2024-06-01 00:00:00+02:00"
    a_may = statements.loc[(may, "A")]
    # May: A gets 0.4 kWh: supplier 0.6 x 0.30 + 1.0 x 0.10 = 0.28; community 0.08; reduction 0.4 x 0.04
    assert a_may["shared_offtake_kwh"] == pytest.approx(0.4)
    assert a_may["supplier_eur"] == pytest.approx(0.28)
    assert a_may["community_eur"] == pytest.approx(0.08)
    assert a_may["network_reduction_eur"] == pytest.approx(0.016)
    assert a_may["net_cost_eur"] == pytest.approx(0.28 + 0.08 - 0.016)
    p_june = statements.loc[(june, "P")]
    # June: P's 2.0 kWh: 1.0 sold to A at 0.20, 1.0 fed in at 0.05
    assert p_june["community_sales_eur"] == pytest.approx(0.20)
    assert p_june["feed_in_eur"] == pytest.approx(0.05)
    assert p_june["savings_eur"] == pytest.approx(0.20 - 0.05)
    utc = monthly_statements(s, tz="UTC")
    assert len(utc.index.get_level_values("month").unique()) == 1


def test_statement_of_a_month_with_missing_data_is_nan() -> None:
    index = pd.date_range("2024-06-01", periods=3, freq="15min", tz="UTC")
    readings = MeterReadings(
        ("P", "A"),
        np.array([[0.0, 1.0], [0.0, np.nan], [0.0, 1.0]]),
        np.array([[0.5, 0], [0.5, 0], [0.5, 0]]),
        index,
    )
    s = settle(share_fixed(readings, SharingKey({"A": 1.0})), TARIFF, MidMarket())
    june = monthly_statements(s)
    assert np.isnan(june["savings_eur"]).all()
    assert june["coverage"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert june.loc[(june.index[0][0], "P"), "injection_kwh"] == pytest.approx(1.5)


def test_bad_input() -> None:
    other_time = pd.Series([0.3], index=INDEX + pd.Timedelta("15min"))
    with pytest.raises(EnergyInputError, match="supplier energy price covers a different time range"):
        settle(RESULT, Tariff(other_time, 0.05), MidMarket())
    with pytest.raises(EnergyInputError, match=r"community price has shape \(2,\)"):
        settle(RESULT, TARIFF, FixedPrice(np.array([0.1, 0.2])))
    with pytest.raises(EnergyInputError, match="bids names member 'Q'"):
        settle(RESULT, TARIFF, DoubleAuction({"Q": 0.2}, {"P": 0.1}))
    with pytest.raises(EnergyInputError, match=r"asks has shape \(2,\)"):
        settle(RESULT, TARIFF, DoubleAuction({"A": 0.2}, np.array([0.1, 0.1])))
    with pytest.raises(EnergyInputError, match="auction grid fee is negative"):
        settle(RESULT, TARIFF, DoubleAuction({"A": 0.2}, {"P": 0.1}, -0.01))
    with pytest.raises(EnergyInputError, match="network reduction of tariff type C"):
        Tariff(0.3, 0.05, network_reduction_eur_per_kwh={TariffType.C: -0.1})
    with pytest.raises(EnergyInputError, match="feed-in price is not finite at interval 0"):
        per_interval(np.array([np.nan]), 1, None, "feed-in price")
    no_index = MeterReadings(READINGS.member_ids, READINGS.offtake_kwh, READINGS.injection_kwh)
    with pytest.raises(EnergyInputError, match="monthly statements need readings with a time index"):
        monthly_statements(settle(share_fixed(no_index, SharingKey({"A": 1.0})), TARIFF, MidMarket()))


@st.composite
def auctions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 6))
    t = draw(st.integers(1, 4))
    qty = st.integers(0, 1000).map(lambda v: v / 1000)
    price = st.integers(0, 40).map(lambda v: v / 100)  # coarse grid: ties happen
    buy = np.array(draw(st.lists(qty, min_size=n * t, max_size=n * t))).reshape(t, n)
    sell = np.array(draw(st.lists(qty, min_size=n * t, max_size=n * t))).reshape(t, n)
    bids = np.array(draw(st.lists(price, min_size=n, max_size=n)))
    asks = np.array(draw(st.lists(price, min_size=n, max_size=n)))
    fee = np.array(draw(st.lists(st.sampled_from([0.0, 0.01, 0.05]), min_size=t, max_size=t)))
    return buy, sell, bids, asks, fee


@settings(max_examples=150, deadline=None)
@given(case=auctions())
def test_auction_properties(case: tuple[np.ndarray, ...]) -> None:
    buy, sell, bids, asks, fee = case
    out = double_auction(buy, sell, bids, asks, fee)
    mb, ms, price = out.matched_buy_kwh, out.matched_sell_kwh, out.price_eur_per_kwh
    tol = 1e-12
    assert ((mb >= -tol) & (mb <= buy + tol)).all()
    assert ((ms >= -tol) & (ms <= sell + tol)).all()
    np.testing.assert_allclose(mb.sum(axis=1), ms.sum(axis=1), atol=1e-12)
    for t in range(buy.shape[0]):
        if mb[t].sum() > 0:
            # individual rationality at one uniform price
            assert (bids[mb[t] > tol] >= price[t] - tol).all()
            assert (asks[ms[t] > tol] + fee[t] <= price[t] + tol).all()
        # efficiency: no unmatched buyer and unmatched seller could still trade
        left_buy = buy[t] - mb[t] > 1e-12
        left_sell = sell[t] - ms[t] > 1e-12
        if left_buy.any() and left_sell.any():
            assert bids[left_buy].max() < (asks[left_sell] + fee[t]).min()
    general = double_auction(
        buy, sell, np.broadcast_to(bids, buy.shape), np.broadcast_to(asks, buy.shape), fee
    )
    np.testing.assert_allclose(general.matched_buy_kwh, mb, atol=1e-12)
    np.testing.assert_allclose(general.matched_sell_kwh, ms, atol=1e-12)
    np.testing.assert_allclose(general.price_eur_per_kwh, price, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(list(TariffType)))
def test_budget_balance(seed: int, kind: TariffType) -> None:
    # sum of member savings + community account == sum_t shared_t x (energy_t + reduction - feed_in_t)
    rng = np.random.default_rng(seed)
    t, n = 8, 4
    index = pd.date_range("2024-06-01", periods=t, freq="15min", tz="UTC")
    offtake = np.round(rng.gamma(1.0, 0.3, (t, n)), 3)
    injection = np.where(rng.random((t, n)) < 0.4, np.round(rng.gamma(1.0, 0.5, (t, n)), 3), 0.0)
    readings = MeterReadings(tuple("abcd"), offtake, injection, index)
    result = share_fixed(readings, SharingKey.equal("abcd"))
    energy = pd.Series(rng.uniform(0.2, 0.4, t), index=index)
    feed_in = rng.uniform(0.0, 0.1, t)
    tariff = Tariff(energy, feed_in, 0.1, {k: 0.01 * i for i, k in enumerate(TariffType)})
    expected = float(np.sum(result.shared_kwh * (energy.to_numpy() + tariff.reduction(kind) - feed_in)))
    pricings = [
        FixedPrice(0.21),
        MidMarket(),
        DoubleAuction(
            dict(zip("abcd", rng.uniform(0, 0.4, n), strict=True)),
            dict(zip("abcd", rng.uniform(0, 0.3, n), strict=True)),
            0.01,
        ),
    ]
    for pricing in pricings:
        s = settle(result, tariff, pricing, group_type=kind)
        assert s.savings_eur.sum() + s.community_account_eur.sum() == pytest.approx(expected, abs=1e-9)
