"""Settlement of the shared energy between members, and monthly statements.

The DSO decides *how much* each member received from and gave to the community
(:mod:`bright.energy.sharing`); the community decides *at what price*. Three pricings:

- :class:`FixedPrice`: one community price per kWh (constant or per interval);
- :class:`MidMarket`: half-way between the supplier's energy price and the feed-in value, per interval;
- :class:`DoubleAuction`: per quarter-hour, buyers' bids meet sellers' asks (raised by a per-kWh grid
  fee); the matched volume clears at one price, the midpoint of the marginal bid and the marginal
  effective ask; unmatched shared volume falls back to the supplier's price (buyer) and the feed-in
  value (seller), the spread going to the community account.

A member's bill then has five lines: supplier part (residual energy + grid fee on all offtake),
community part (shared kWh bought), network-charge reduction on shared kWh by the group's tariff type
(A-D), community sales (shared injection sold) and feed-in (residual injection).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bright.energy.sharing import EnergyInputError, SharingResult, TariffType

__all__ = [
    "AuctionResult",
    "DoubleAuction",
    "FixedPrice",
    "MidMarket",
    "Pricing",
    "Settlement",
    "Tariff",
    "double_auction",
    "monthly_statements",
    "per_interval",
    "settle",
]

FloatArray = NDArray[np.float64]
PriceLike = float | FloatArray | pd.Series

#: Intervals cleared together by the double auction (working set of one chunk stays in cache).
AUCTION_CHUNK_INTERVALS = 1024


def per_interval(value: PriceLike, n_intervals: int, index: pd.DatetimeIndex | None, name: str) -> FloatArray:
    """A price (or fee) per interval, from a constant, an array or a time-indexed Series.

    Parameters
    ----------
    value : float, ndarray (n_intervals,) or pandas.Series
        The price (EUR/kWh). A Series must be indexed exactly like the readings.
    n_intervals : int
        Number of intervals of the readings.
    index : pandas.DatetimeIndex or None
        Interval starts of the readings.
    name : str
        Name used in error messages.

    Raises
    ------
    EnergyInputError
        If the length or the time range does not match the readings, or a value is not finite.
    """
    if isinstance(value, pd.Series):
        if index is None:
            raise EnergyInputError(f"{name} is a time series but the readings have no time index")
        if not value.index.equals(index):
            raise EnergyInputError(
                f"{name} covers a different time range than the readings: {_span(value.index)} "
                f"vs {_span(index)}"
            )
        out = value.to_numpy(dtype=np.float64)
    else:
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 0:
            out = np.full(n_intervals, float(array))
        elif array.shape == (n_intervals,):
            out = array
        else:
            raise EnergyInputError(
                f"{name} has shape {array.shape}; expected a constant or ({n_intervals},) per interval"
            )
    if not np.all(np.isfinite(out)):
        t = int(np.flatnonzero(~np.isfinite(out))[0])
        raise EnergyInputError(f"{name} is not finite at interval {t}")
    return out


def _span(index: pd.Index) -> str:
    if len(index) == 0:
        return "no interval"
    return f"{index[0]} .. {index[-1]} ({len(index)} intervals)"


@dataclass(frozen=True)
class Tariff:
    """The prices a member faces outside the community.

    Parameters
    ----------
    supplier_energy_eur_per_kwh : float, ndarray (n_intervals,) or pandas.Series
        Energy price of the supplier per kWh of residual offtake (EUR/kWh, incl. VAT if the
        statements should be). This is what a shared kWh saves the buyer.
    feed_in_eur_per_kwh : float, ndarray (n_intervals,) or pandas.Series
        What the supplier pays per kWh of residual injection (EUR/kWh).
    grid_fee_eur_per_kwh : float, ndarray (n_intervals,) or pandas.Series
        Network charges and levies per kWh of offtake, due on every kWh taken (shared or not)
        (EUR/kWh).
    network_reduction_eur_per_kwh : mapping of TariffType to float
        Reduction of the network charges per shared kWh, by tariff type of the group (EUR/kWh, >= 0).
        Types not listed get no reduction.
    """

    supplier_energy_eur_per_kwh: PriceLike
    feed_in_eur_per_kwh: PriceLike
    grid_fee_eur_per_kwh: PriceLike = 0.0
    network_reduction_eur_per_kwh: Mapping[TariffType, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        reductions = {TariffType(k): float(v) for k, v in self.network_reduction_eur_per_kwh.items()}
        for kind, value in reductions.items():
            if not np.isfinite(value) or value < 0:
                raise EnergyInputError(
                    f"network reduction of tariff type {kind.value} is {value} EUR/kWh; it must be >= 0"
                )
        object.__setattr__(self, "network_reduction_eur_per_kwh", reductions)

    def reduction(self, kind: TariffType) -> float:
        """Network-charge reduction per shared kWh for a group of tariff type ``kind`` (EUR/kWh)."""
        return float(self.network_reduction_eur_per_kwh.get(TariffType(kind), 0.0))


@dataclass(frozen=True)
class FixedPrice:
    """One community price per shared kWh.

    Parameters
    ----------
    price_eur_per_kwh : float, ndarray (n_intervals,) or pandas.Series
        Price paid by the buyer and received by the seller (EUR/kWh).
    """

    price_eur_per_kwh: PriceLike


@dataclass(frozen=True)
class MidMarket:
    """Price half-way between the supplier's energy price and the feed-in value, per interval."""


@dataclass(frozen=True)
class DoubleAuction:
    """Quarter-hourly double auction on the shared volumes.

    Parameters
    ----------
    bid_eur_per_kwh : mapping of str to float, or ndarray (n_members,) or (n_intervals, n_members)
        Highest price each member pays for a shared kWh (EUR/kWh). A member without a bid (absent
        from the mapping, or NaN) does not buy in the auction: its shared kWh fall back to the
        supplier's price.
    ask_eur_per_kwh : mapping of str to float, or ndarray (n_members,) or (n_intervals, n_members)
        Lowest price each member accepts for a kWh of its shared injection (EUR/kWh), before the
        grid fee. Without an ask, the member's shared kWh fall back to the feed-in value.
    grid_fee_eur_per_kwh : float, ndarray (n_intervals,) or pandas.Series
        Fee per kWh traded, added to the sellers' asks and paid by the seller (EUR/kWh, >= 0).
    """

    bid_eur_per_kwh: Mapping[str, float] | FloatArray
    ask_eur_per_kwh: Mapping[str, float] | FloatArray
    grid_fee_eur_per_kwh: PriceLike = 0.0


Pricing = FixedPrice | MidMarket | DoubleAuction


@dataclass(frozen=True)
class AuctionResult:
    """Outcome of the double auction.

    Attributes
    ----------
    price_eur_per_kwh : ndarray, shape (n_intervals,)
        Clearing price paid by the buyers (EUR/kWh); NaN where nothing was matched.
    matched_buy_kwh : ndarray, shape (n_intervals, n_members)
        Volume each member bought in the auction (kWh).
    matched_sell_kwh : ndarray, shape (n_intervals, n_members)
        Volume each member sold in the auction (kWh).
    """

    price_eur_per_kwh: FloatArray
    matched_buy_kwh: FloatArray
    matched_sell_kwh: FloatArray


def _limit_prices(
    prices: Mapping[str, float] | FloatArray, member_ids: tuple[str, ...], n_intervals: int, name: str
) -> FloatArray:
    if isinstance(prices, Mapping):
        unknown = [m for m in prices if m not in member_ids]
        if unknown:
            raise EnergyInputError(f"{name} names member {unknown[0]!r}, which has no meter in the readings")
        return np.array([float(prices.get(m, np.nan)) for m in member_ids])
    array = np.asarray(prices, dtype=np.float64)
    n = len(member_ids)
    if array.shape not in ((n,), (n_intervals, n)):
        raise EnergyInputError(f"{name} has shape {array.shape}; expected ({n},) or ({n_intervals}, {n})")
    return array


def _steps(cumulative: FloatArray, cap: FloatArray) -> FloatArray:
    """Per-column volumes of a cumulative curve truncated at ``cap`` per row."""
    capped = np.minimum(cumulative, cap[:, None])
    out = np.empty_like(capped)
    if out.shape[1]:
        out[:, 0] = capped[:, 0]
        np.subtract(capped[:, 1:], capped[:, :-1], out=out[:, 1:])
    return out


def _clear_sorted(
    qb: FloatArray, qs: FloatArray, bids: FloatArray, asks: FloatArray, reach: NDArray[np.intp]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Clear one chunk whose buyers are sorted by bid (desc) and sellers by effective ask (asc).

    ``reach[t, k]`` is the number of sellers whose effective ask is <= buyer k's bid.
    Returns (matched per sorted buyer, matched per sorted seller, clearing price per row).
    """
    rows = qb.shape[0]
    demand = np.cumsum(qb, axis=1)
    supply = np.zeros((rows, qs.shape[1] + 1))
    np.cumsum(qs, axis=1, out=supply[:, 1:])
    reachable = np.take_along_axis(supply, reach, axis=1) if reach.ndim == 2 else supply[:, reach]
    np.minimum(reachable, demand, out=reachable)
    cleared = reachable.max(axis=1, initial=0.0)
    matched_b = _steps(demand, cleared)
    matched_s = _steps(supply[:, 1:], cleared)
    price = np.full(rows, np.nan)
    traded = cleared > 0
    if traded.any() and qb.shape[1] and qs.shape[1]:
        t = np.flatnonzero(traded)
        k = (demand[t] >= cleared[t, None]).argmax(axis=1)  # last (partly) matched buyer
        j = (supply[t, 1:] >= cleared[t, None]).argmax(axis=1)  # last (partly) matched seller
        bid_k = bids[k] if bids.ndim == 1 else bids[t, k]
        ask_j = asks[t, j]
        price[traded] = 0.5 * (bid_k + ask_j)
    return matched_b, matched_s, price


def double_auction(
    buy_kwh: FloatArray,
    sell_kwh: FloatArray,
    bid_eur_per_kwh: FloatArray,
    ask_eur_per_kwh: FloatArray,
    grid_fee_eur_per_kwh: float | FloatArray = 0.0,
    *,
    chunk_intervals: int = AUCTION_CHUNK_INTERVALS,
) -> AuctionResult:
    """Uniform-price double auction per interval, cleared at the midpoint of the marginal pair.

    Buyers are sorted by decreasing bid, sellers by increasing effective ask (ask + grid fee); ties
    keep the member order. The matched volume ``Q`` is the largest volume for which the marginal bid is
    at least the marginal effective ask: ``Q = max_k min(D_k, S(b_k))`` with ``D_k`` the demand of the
    k best buyers and ``S(b_k)`` the supply whose effective ask is <= ``b_k``. The price is the midpoint
    of the bid of the last matched buyer and the effective ask of the last matched seller, so every
    matched buyer pays at most its bid and every matched seller gets at least its ask after the fee.

    Parameters
    ----------
    buy_kwh, sell_kwh : ndarray, shape (n_intervals, n_members)
        Volumes offered to buy and to sell (kWh, >= 0, finite).
    bid_eur_per_kwh, ask_eur_per_kwh : ndarray, shape (n_members,) or (n_intervals, n_members)
        Limit prices (EUR/kWh); NaN = does not take part on that side. Constant per member is the
        fast path (one sort for the whole year).
    grid_fee_eur_per_kwh : float or ndarray (n_intervals,)
        Fee per kWh traded, added to every ask (EUR/kWh).
    chunk_intervals : int
        Intervals cleared together (speed / memory only).

    Returns
    -------
    AuctionResult
        Clearing price and matched volumes.
    """
    n_intervals, n = buy_kwh.shape
    if sell_kwh.shape != buy_kwh.shape:
        raise EnergyInputError(f"sell_kwh has shape {sell_kwh.shape} but buy_kwh has shape {buy_kwh.shape}")
    fee = np.broadcast_to(np.asarray(grid_fee_eur_per_kwh, dtype=np.float64), (n_intervals,))
    bids = np.asarray(bid_eur_per_kwh, dtype=np.float64)
    asks = np.asarray(ask_eur_per_kwh, dtype=np.float64)
    matched_buy = np.zeros_like(buy_kwh)
    matched_sell = np.zeros_like(sell_kwh)
    price = np.full(n_intervals, np.nan)
    constant = bids.ndim == 1 and asks.ndim == 1
    if constant:
        # only members that take part at all: a limit price and some volume during the period
        buyers = np.flatnonzero(np.isfinite(bids) & (buy_kwh.max(axis=0, initial=0.0) > 0))
        sellers = np.flatnonzero(np.isfinite(asks) & (sell_kwh.max(axis=0, initial=0.0) > 0))
        buyers = buyers[np.argsort(-bids[buyers], kind="stable")]
        sellers = sellers[np.argsort(asks[sellers], kind="stable")]
        bid_sorted, ask_sorted = bids[buyers], asks[sellers]
        fees, fee_group = np.unique(fee, return_inverse=True)
        reach_by_fee = [np.searchsorted(ask_sorted + f, bid_sorted, side="right") for f in fees]
    for start in range(0, n_intervals, chunk_intervals):
        stop = min(start + chunk_intervals, n_intervals)
        if constant:
            qb = buy_kwh[start:stop, buyers]
            qs = sell_kwh[start:stop, sellers]
            # only intervals with volume on both sides need clearing (about half: no sun, no trade)
            live = np.flatnonzero((qb.sum(axis=1) > 0) & (qs.sum(axis=1) > 0))
            if live.size == 0:
                continue
            groups = fee_group[start:stop][live]
            if np.all(groups == groups[0]):
                reach = reach_by_fee[groups[0]]
            else:
                reach = np.stack([reach_by_fee[g] for g in groups])
            eff_asks = ask_sorted[None, :] + fee[start:stop][live, None]
            mb, ms, p = _clear_sorted(qb[live], qs[live], bid_sorted, eff_asks, reach)
            rows = start + live
            matched_buy[rows[:, None], buyers[None, :]] = mb
            matched_sell[rows[:, None], sellers[None, :]] = ms
            price[rows] = p
        else:
            b = np.broadcast_to(bids, (n_intervals, n))[start:stop]
            a = np.broadcast_to(asks, (n_intervals, n))[start:stop] + fee[start:stop, None]
            b = np.where(np.isfinite(b), b, -np.inf)  # no bid: never matched
            a = np.where(np.isfinite(a), a, np.inf)
            ob = np.argsort(-b, axis=1, kind="stable")
            oa = np.argsort(a, axis=1, kind="stable")
            b_sorted = np.take_along_axis(b, ob, axis=1)
            a_sorted = np.take_along_axis(a, oa, axis=1)
            qb = np.take_along_axis(buy_kwh[start:stop], ob, axis=1) * np.isfinite(b_sorted)
            qs = np.take_along_axis(sell_kwh[start:stop], oa, axis=1) * np.isfinite(a_sorted)
            reach = _count_le(a_sorted, b_sorted)
            mb, ms, p = _clear_sorted(qb, qs, b_sorted, a_sorted, reach)
            row_ix = np.arange(stop - start)[:, None]
            matched_buy[start:stop][row_ix, ob] = mb
            matched_sell[start:stop][row_ix, oa] = ms
            price[start:stop] = p
    return AuctionResult(price, matched_buy, matched_sell)


def _count_le(sorted_asks: FloatArray, bids: FloatArray) -> NDArray[np.intp]:
    """Per row, how many of the (ascending) ``sorted_asks`` are <= each bid."""
    n_a = sorted_asks.shape[1]
    values = np.concatenate([sorted_asks, bids], axis=1)
    order = np.argsort(values, axis=1, kind="stable")  # asks come first on ties: ask <= bid counts
    is_bid = order >= n_a
    asks_so_far = np.cumsum(~is_bid, axis=1)
    rows = bids.shape[0]
    out = np.empty(bids.shape, dtype=np.intp)
    bid_cols = order[is_bid].reshape(rows, -1) - n_a
    np.put_along_axis(out, bid_cols, asks_so_far[is_bid].reshape(rows, -1), axis=1)
    return out


@dataclass(frozen=True)
class Settlement:
    """Money flows of every member per interval (EUR), for one pricing.

    Attributes
    ----------
    result : SharingResult
        The sharing that was settled.
    pricing : str
        "fixed", "mid_market" or "double_auction".
    group_type : TariffType
        Tariff type of the community, which sets the network-charge reduction.
    supplier_energy_eur_per_kwh, feed_in_eur_per_kwh, grid_fee_eur_per_kwh : ndarray (n_intervals,)
        Outside prices per interval (EUR/kWh).
    reduction_eur_per_kwh : float
        Network-charge reduction per shared kWh (EUR/kWh).
    community_purchase_eur : ndarray (n_intervals, n_members)
        What each member paid for its shared offtake (EUR).
    community_sales_eur : ndarray (n_intervals, n_members)
        What each member received for its shared injection, net of auction fees (EUR).
    community_account_eur : ndarray (n_intervals,)
        What the community keeps: purchases minus sales (auction fees and fallback spread; 0 for
        fixed and mid-market pricing) (EUR).
    auction : AuctionResult or None
        Auction details when the pricing was a double auction.
    """

    result: SharingResult
    pricing: str
    group_type: TariffType
    supplier_energy_eur_per_kwh: FloatArray
    feed_in_eur_per_kwh: FloatArray
    grid_fee_eur_per_kwh: FloatArray
    reduction_eur_per_kwh: float
    community_purchase_eur: FloatArray
    community_sales_eur: FloatArray
    community_account_eur: FloatArray
    auction: AuctionResult | None = None

    @cached_property
    def supplier_eur(self) -> FloatArray:
        """Supplier bill: residual offtake x energy price + all offtake x grid fee (EUR)."""
        r = self.result
        return (
            r.residual_offtake_kwh * self.supplier_energy_eur_per_kwh[:, None]
            + r.offtake_kwh * self.grid_fee_eur_per_kwh[:, None]
        )

    @cached_property
    def network_reduction_eur(self) -> FloatArray:
        """Network-charge reduction on shared offtake (EUR, a credit)."""
        return self.result.shared_offtake_kwh * self.reduction_eur_per_kwh

    @cached_property
    def feed_in_eur(self) -> FloatArray:
        """Feed-in earnings of the residual injection (EUR)."""
        return self.result.returned_injection_kwh * self.feed_in_eur_per_kwh[:, None]

    @cached_property
    def standalone_eur(self) -> FloatArray:
        """Cost without the community: offtake x (energy + grid fee) - injection x feed-in (EUR)."""
        r = self.result
        return (
            r.offtake_kwh * (self.supplier_energy_eur_per_kwh + self.grid_fee_eur_per_kwh)[:, None]
            - r.injection_kwh * self.feed_in_eur_per_kwh[:, None]
        )

    @property
    def net_cost_eur(self) -> FloatArray:
        """Cost in the community: supplier - reduction + purchases - sales - feed-in (EUR)."""
        return (
            self.supplier_eur
            - self.network_reduction_eur
            + self.community_purchase_eur
            - self.community_sales_eur
            - self.feed_in_eur
        )

    @property
    def savings_eur(self) -> FloatArray:
        """What the community saves each member: standalone cost - net cost (EUR)."""
        return self.standalone_eur - self.net_cost_eur


def settle(
    result: SharingResult,
    tariff: Tariff,
    pricing: Pricing,
    *,
    group_type: TariffType = TariffType.D,
) -> Settlement:
    """Price the shared volumes of a sharing result.

    Parameters
    ----------
    result : SharingResult
        Shared offtake and injection per interval and member (kWh).
    tariff : Tariff
        Outside prices (EUR/kWh) and network-charge reductions by tariff type.
    pricing : FixedPrice, MidMarket or DoubleAuction
        How the community prices a shared kWh.
    group_type : TariffType
        Tariff type of the community (see :func:`bright.energy.sharing.tariff_type`); default D,
        the least local.

    Returns
    -------
    Settlement
        Money flows per interval and member (EUR).

    Raises
    ------
    EnergyInputError
        If a price series does not cover the readings' intervals, or limit prices name unknown members.
    """
    n_intervals = result.readings.n_intervals
    index = result.index
    energy = per_interval(tariff.supplier_energy_eur_per_kwh, n_intervals, index, "supplier energy price")
    feed_in = per_interval(tariff.feed_in_eur_per_kwh, n_intervals, index, "feed-in price")
    grid_fee = per_interval(tariff.grid_fee_eur_per_kwh, n_intervals, index, "grid fee")
    reduction = tariff.reduction(group_type)
    bought, sold = result.shared_offtake_kwh, result.shared_injection_kwh
    auction: AuctionResult | None = None
    if isinstance(pricing, FixedPrice | MidMarket):
        if isinstance(pricing, FixedPrice):
            price = per_interval(pricing.price_eur_per_kwh, n_intervals, index, "community price")
            name = "fixed"
        else:
            price = 0.5 * (energy + feed_in)
            name = "mid_market"
        purchase = bought * price[:, None]
        sales = sold * price[:, None]
    elif isinstance(pricing, DoubleAuction):
        name = "double_auction"
        fee = per_interval(pricing.grid_fee_eur_per_kwh, n_intervals, index, "auction grid fee")
        if np.any(fee < 0):
            raise EnergyInputError(f"auction grid fee is negative at interval {int(np.argmax(fee < 0))}")
        ids = result.member_ids
        bids = _limit_prices(pricing.bid_eur_per_kwh, ids, n_intervals, "bids")
        asks = _limit_prices(pricing.ask_eur_per_kwh, ids, n_intervals, "asks")
        if result.missing.any():  # unshared intervals (NaN) do not trade
            auction = double_auction(np.nan_to_num(bought), np.nan_to_num(sold), bids, asks, fee)
        else:
            auction = double_auction(bought, sold, bids, asks, fee)
        clearing = np.nan_to_num(auction.price_eur_per_kwh, nan=0.0)
        purchase = np.empty_like(bought)
        sales = np.empty_like(sold)
        for start in range(0, n_intervals, AUCTION_CHUNK_INTERVALS):  # small temporaries, in cache
            rows = slice(start, start + AUCTION_CHUNK_INTERVALS)
            matched = auction.matched_buy_kwh[rows]
            # matched at the clearing price, the rest at the supplier's price
            out = np.subtract(bought[rows], matched, out=purchase[rows])
            out *= energy[rows, None]
            out += matched * clearing[rows, None]
            matched = auction.matched_sell_kwh[rows]
            # matched at the clearing price minus the fee, the rest at the feed-in value
            out = np.subtract(sold[rows], matched, out=sales[rows])
            out *= feed_in[rows, None]
            out += matched * (clearing - fee)[rows, None]
    else:
        raise EnergyInputError(f"unknown pricing {pricing!r}")
    account = purchase.sum(axis=1) - sales.sum(axis=1)
    return Settlement(
        result=result,
        pricing=name,
        group_type=TariffType(group_type),
        supplier_energy_eur_per_kwh=energy,
        feed_in_eur_per_kwh=feed_in,
        grid_fee_eur_per_kwh=grid_fee,
        reduction_eur_per_kwh=reduction,
        community_purchase_eur=purchase,
        community_sales_eur=sales,
        community_account_eur=account,
        auction=auction,
    )


#: Columns of :func:`monthly_statements`, in order.
STATEMENT_COLUMNS = (
    "offtake_kwh",
    "injection_kwh",
    "shared_offtake_kwh",
    "shared_injection_kwh",
    "supplier_eur",
    "community_eur",
    "network_reduction_eur",
    "community_sales_eur",
    "feed_in_eur",
    "net_cost_eur",
    "standalone_cost_eur",
    "savings_eur",
    "coverage",
)


def monthly_statements(settlement: Settlement, *, tz: str = "Europe/Brussels") -> pd.DataFrame:
    """Monthly statement of every member.

    Parameters
    ----------
    settlement : Settlement
        The settled period.
    tz : str
        Time zone in which months are cut (local months by default).

    Returns
    -------
    pandas.DataFrame
        One row per (month, member_id) - month labelled by its local start - with the columns of
        :data:`STATEMENT_COLUMNS`: energy (kWh), supplier part, community part, network-charge
        reduction, community sales, feed-in earnings, net cost, standalone cost and savings (EUR),
        and coverage (share of intervals with complete data). A month with a missing interval has NaN
        sums (missing data is never counted as zero).

    Raises
    ------
    EnergyInputError
        If the readings have no time index.
    """
    result = settlement.result
    if result.index is None:
        raise EnergyInputError("monthly statements need readings with a time index")
    rows = result.index.tz_convert(tz)
    members = pd.Index(result.member_ids, name="member_id")
    lines = {
        "offtake_kwh": result.offtake_kwh,
        "injection_kwh": result.injection_kwh,
        "shared_offtake_kwh": result.shared_offtake_kwh,
        "shared_injection_kwh": result.shared_injection_kwh,
        "supplier_eur": settlement.supplier_eur,
        "community_eur": settlement.community_purchase_eur,
        "network_reduction_eur": settlement.network_reduction_eur,
        "community_sales_eur": settlement.community_sales_eur,
        "feed_in_eur": settlement.feed_in_eur,
        "net_cost_eur": settlement.net_cost_eur,
        "standalone_cost_eur": settlement.standalone_eur,
        "savings_eur": settlement.savings_eur,
    }
    parts = {}
    for name, values in lines.items():
        frame = pd.DataFrame(values, index=rows, columns=members, copy=False)
        grouped = frame.resample("MS", label="left", closed="left")
        gaps = frame.isna().resample("MS", label="left", closed="left").sum()
        parts[name] = grouped.sum().mask(gaps > 0).stack(future_stack=True)
    statements = pd.DataFrame(parts)
    coverage = pd.Series((~result.missing).astype(np.float64), index=rows).resample("MS").mean()
    statements["coverage"] = coverage.reindex(statements.index.get_level_values(0)).to_numpy()
    statements.index = statements.index.set_names(["month", "member_id"])
    return statements[list(STATEMENT_COLUMNS)]
