"""Fairness of a community: each member's Shapley value of the community's savings.

The characteristic function of a coalition S is what its members save, together, by sharing among
themselves (with the community's sharing method) instead of each buying and selling alone:

    v(S) = sum_t X_S(t) * (supplier_energy(t) - feed_in(t)) + reduction(type(S)) * sum_t X_S(t)

where X_S(t) is the volume S shares in interval t. Internal prices cancel inside a coalition and the
grid fee is due on every kWh either way, so v does not depend on the settlement pricing. A member
alone shares nothing (no self-sharing), so v({i}) = 0.

The Shapley value of member i is its average marginal contribution v(S + i) - v(S) over all orders in
which the members could join. Exact enumeration evaluates all 2^n coalitions (default up to 18
members); beyond, random join orders are sampled and a 95 % confidence interval is given (normal
approximation, 1.96 standard errors). Both keep efficiency: the values sum to v(N).

Cost: one coalition in one interval costs one allocation over n members, so exact enumeration costs
O(2^n * n * T) and sampling O(P * n^2 * T) for P orders, T being the intervals where the community
has both injection and offtake (the others contribute nothing and are skipped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bright.energy.market import Settlement, Tariff, per_interval
from bright.energy.sharing import (
    AccessPoint,
    EnergyInputError,
    MeterReadings,
    SharingKey,
    SharingMethod,
    TariffType,
    allocate,
    participation,
)

__all__ = [
    "CoalitionGame",
    "ShapleyResult",
    "compare_with_settlement",
    "shapley",
    "shapley_from_values",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Members up to which the Shapley value is computed exactly by default.
EXACT_MAX_MEMBERS = 18
#: Default number of sampled join orders beyond that.
DEFAULT_PERMUTATIONS = 500
#: Elements (coalitions x intervals x members) allocated at once; bounds the working memory (~32 MB).
BATCH_ELEMENTS = 4_000_000
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class CoalitionGame:
    """The savings game of a community, ready to value any coalition.

    Build it with :meth:`from_readings`; call :meth:`values` with boolean coalition masks.

    Attributes
    ----------
    member_ids : tuple of str
        Members, in column order.
    offtake_kwh, injection_kwh : ndarray, shape (n_active, n_members)
        Participating offtake and injection in the intervals where sharing is possible (kWh).
    spread_eur_per_kwh : ndarray, shape (n_active,)
        Supplier energy price minus feed-in value per active interval (EUR/kWh).
    reduction_by_type : ndarray, shape (4,)
        Network-charge reduction per shared kWh for tariff types A, B, C, D (EUR/kWh).
    locality_codes : ndarray of int, shape (3, n_members)
        Building, LV cabin and substation of each member as integer codes (unknown = unique code).
    method : SharingMethod
        Sharing method used inside every coalition.
    key : ndarray, shape (n_members,) or None
        Fixed key of the grand coalition; a coalition uses its members' keys renormalised to 1.
    fixed_fraction : float
        Hybrid method parameter.
    excluded_intervals : int
        Intervals left out because a participating reading was missing (nothing is shared there).
    """

    member_ids: tuple[str, ...]
    offtake_kwh: FloatArray
    injection_kwh: FloatArray
    spread_eur_per_kwh: FloatArray
    reduction_by_type: FloatArray
    locality_codes: NDArray[np.int64]
    method: SharingMethod
    key: FloatArray | None
    fixed_fraction: float = 1.0
    excluded_intervals: int = 0

    @classmethod
    def from_readings(
        cls,
        readings: MeterReadings,
        tariff: Tariff,
        *,
        method: SharingMethod | str,
        key: SharingKey | None = None,
        access_points: Sequence[AccessPoint] | None = None,
        group_type: TariffType = TariffType.D,
        fixed_fraction: float = 1.0,
    ) -> CoalitionGame:
        """Prepare the game from meter readings and outside prices.

        Parameters
        ----------
        readings : MeterReadings
            Gross offtake and injection per interval and member (kWh).
        tariff : Tariff
            Outside prices (EUR/kWh) and network-charge reductions by tariff type.
        method : SharingMethod or str
            Sharing method used inside every coalition.
        key : SharingKey, optional
            Fixed key (fixed, multi-round and hybrid methods).
        access_points : sequence of AccessPoint, optional
            Roles and localities; a coalition's tariff type is the least local of its members. Without
            access points every member is a prosumer and every coalition has ``group_type``.
        group_type : TariffType
            Tariff type of every coalition when ``access_points`` is not given.
        fixed_fraction : float
            Hybrid method: fraction of the pool offered by the fixed key first.
        """
        method = SharingMethod(method)
        ids = readings.member_ids
        n = readings.n_members
        takes, gives = participation(readings, access_points)
        codes = np.full((3, n), 0, dtype=np.int64)
        if access_points is not None:
            by_id = {p.id: p for p in access_points}
            points = [by_id[m] for m in ids]
            for level, attr in enumerate(("building", "lv_cabin", "substation")):
                labels: dict[str, int] = {}
                for m, point in enumerate(points):
                    label = getattr(point.locality, attr)
                    # unknown never matches another member: give it a code of its own
                    codes[level, m] = labels.setdefault(label, len(labels)) if label is not None else -1 - m
        else:
            # every coalition gets group_type: members share the levels from that type up, not below
            lowest_shared = list(TariffType).index(TariffType(group_type))
            for level in range(lowest_shared):
                codes[level] = -1 - np.arange(n)
        key_vector = key.vector(ids) if key is not None else None
        if method in (SharingMethod.FIXED, SharingMethod.FIXED_MULTI_ROUND, SharingMethod.HYBRID):
            if key_vector is None:
                raise EnergyInputError(f"the {method.value} method needs a sharing key")
            if np.any((key_vector > 0) & ~takes):
                m = int(np.flatnonzero((key_vector > 0) & ~takes)[0])
                raise EnergyInputError(
                    f"sharing key gives a share to {ids[m]!r}, a producer-only access point"
                )
        offtake = np.where(takes, readings.offtake_kwh, 0.0)
        injection = np.where(gives, readings.injection_kwh, 0.0)
        missing = np.isnan(offtake).any(axis=1) | np.isnan(injection).any(axis=1)
        active = ~missing & (np.nansum(offtake, axis=1) > 0) & (np.nansum(injection, axis=1) > 0)
        energy = per_interval(
            tariff.supplier_energy_eur_per_kwh, readings.n_intervals, readings.index, "supplier energy price"
        )
        feed_in = per_interval(
            tariff.feed_in_eur_per_kwh, readings.n_intervals, readings.index, "feed-in price"
        )
        reductions = np.array([tariff.reduction(t) for t in TariffType])
        return cls(
            member_ids=ids,
            offtake_kwh=offtake[active],
            injection_kwh=injection[active],
            spread_eur_per_kwh=(energy - feed_in)[active],
            reduction_by_type=reductions,
            locality_codes=codes,
            method=method,
            key=key_vector,
            fixed_fraction=fixed_fraction,
            excluded_intervals=int(missing.sum()),
        )

    @property
    def n_members(self) -> int:
        """Number of members (players)."""
        return len(self.member_ids)

    def coalition_types(self, masks: BoolArray) -> NDArray[np.intp]:
        """Tariff type of each coalition as 0..3 (A..D): the least local level all members share."""
        kind = np.full(masks.shape[0], 3, dtype=np.intp)
        for level in (2, 1, 0):  # substation (C), cabin (B), building (A): finer overrides coarser
            codes = self.locality_codes[level]
            big = np.iinfo(np.int64).max
            low = np.where(masks, codes, big).min(axis=1)
            high = np.where(masks, codes, -big).max(axis=1)
            kind[(low == high) & masks.any(axis=1)] = level
        return kind

    def shared_volumes(self, masks: BoolArray, *, closed_form: bool = True) -> FloatArray:
        """Volume each coalition shares in each active interval (kWh), shape (n_coalitions, n_active).

        Parameters
        ----------
        masks : ndarray of bool, shape (n_coalitions, n_members)
            Members of each coalition.
        closed_form : bool
            For ``fixed``, ``pro_rata`` and ``maximum`` compute only the coalition's total, without
            the per-member allocation (about 3 times fewer array passes); False runs the full
            allocation of :func:`bright.energy.sharing.allocate` for every method (same result).
        """
        masks = np.asarray(masks, dtype=bool)
        n_coalitions, n = masks.shape
        if n != self.n_members:
            raise EnergyInputError(f"coalition masks have {n} columns for {self.n_members} members")
        n_active = self.offtake_kwh.shape[0]
        out = np.zeros((n_coalitions, n_active))
        if n_active == 0 or n_coalitions == 0:
            return out
        per_batch = max(1, BATCH_ELEMENTS // max(1, n_active * n))
        shortcut = closed_form and self.method in _CLOSED_FORM
        for start in range(0, n_coalitions, per_batch):
            m = masks[start : start + per_batch].astype(np.float64)
            b = m.shape[0]
            if shortcut:
                out[start : start + b] = _coalition_totals(m, self.offtake_kwh, self.injection_kwh, self)
                continue
            offtake = m[:, None, :] * self.offtake_kwh[None, :, :]  # (b, n_active, n)
            injection = m[:, None, :] * self.injection_kwh[None, :, :]
            key = None
            if self.key is not None:  # a coalition's keys renormalised to 1 (0 if none has a key)
                key = m * self.key
                total = key.sum(axis=1, keepdims=True)
                np.divide(key, total, out=key, where=total > 0)
            received, _, _ = allocate(
                offtake.reshape(b * n_active, n),
                injection.reshape(b * n_active, n),
                self.method,
                key=None if key is None else np.repeat(key, n_active, axis=0),
                fixed_fraction=self.fixed_fraction,
            )
            out[start : start + b] = received.sum(axis=1).reshape(b, n_active)
        return out

    def values(self, masks: BoolArray) -> FloatArray:
        """Savings of each coalition v(S) (EUR), for boolean masks of shape (n_coalitions, n_members)."""
        masks = np.asarray(masks, dtype=bool)
        volumes = self.shared_volumes(masks)
        reduction = self.reduction_by_type[self.coalition_types(masks)]
        return volumes @ self.spread_eur_per_kwh + reduction * volumes.sum(axis=1)


_CLOSED_FORM = (SharingMethod.FIXED, SharingMethod.PRO_RATA, SharingMethod.MAXIMUM)


def _coalition_totals(
    masks: FloatArray, offtake: FloatArray, injection: FloatArray, game: CoalitionGame
) -> FloatArray:
    """Total shared per coalition and interval, shape (coalitions, intervals), without allocating.

    Same rules as :mod:`bright.energy.sharing`: member m is offered its weight of the others'
    injection and takes at most its offtake; maximum sharing is ``min(G, O, G + O - max(g + o))``.
    Arrays are laid out members first, (members, coalitions, intervals), so that the sums over the
    few members are additions of large contiguous blocks.
    """
    inside = masks.T[:, :, None]  # (n, b, 1)
    off = inside * offtake.T[:, None, :]  # (n, b, t)
    inj = inside * injection.T[:, None, :]
    pool = inj.sum(axis=0)
    demand = off.sum(axis=0)
    if game.method is SharingMethod.MAXIMUM:
        np.add(inj, off, out=inj)
        total = np.minimum(pool, demand)
        np.minimum(total, pool + demand - inj.max(axis=0), out=total)
        return np.maximum(total, 0.0, out=total)
    others = np.subtract(pool, inj, out=inj)
    if game.method is SharingMethod.FIXED:
        if game.key is None:
            raise EnergyInputError("the fixed method needs a sharing key")
        key = masks * game.key  # a coalition's keys renormalised to 1 (0 if none has a key)
        total_key = key.sum(axis=1, keepdims=True)
        np.divide(key, total_key, out=key, where=total_key > 0)
        others *= key.T[:, :, None]
    else:  # pro rata: weight = offtake / total offtake of the coalition
        inverse = np.zeros_like(demand)
        np.divide(1.0, demand, out=inverse, where=demand > 0)
        others *= off * inverse
    np.minimum(others, off, out=others)
    return others.sum(axis=0)


def _all_masks(n: int) -> BoolArray:
    codes = np.arange(2**n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n)) & 1).astype(bool)


def shapley_from_values(values: FloatArray) -> FloatArray:
    """Exact Shapley values from the characteristic function of every coalition.

    Parameters
    ----------
    values : ndarray, shape (2**n,)
        ``values[c]`` is v of the coalition whose members are the set bits of ``c`` (bit i = member
        i); ``values[0]`` is v of the empty coalition (normally 0).

    Returns
    -------
    ndarray, shape (n,)
        Shapley value of each member, in the unit of ``values``.
    """
    values = np.asarray(values, dtype=np.float64)
    n = round(math.log2(values.size)) if values.size else 0
    if values.size != 2**n:
        raise EnergyInputError(f"need 2**n coalition values, got {values.size}")
    codes = np.arange(values.size, dtype=np.int64)
    size = np.zeros(values.size, dtype=np.int64)
    for bit in range(n):
        size += (codes >> bit) & 1
    # weight of a coalition of size s not containing i: s! (n - s - 1)! / n!
    weight = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
    phi = np.empty(n)
    for i in range(n):
        without = codes[((codes >> i) & 1) == 0]
        phi[i] = np.dot(weight[size[without]], values[without | (1 << i)] - values[without])
    return phi


@dataclass(frozen=True)
class ShapleyResult:
    """Shapley values of the community's savings.

    Attributes
    ----------
    member_ids : tuple of str
        Members, in column order.
    value_eur : ndarray, shape (n_members,)
        Shapley value of each member (EUR over the period).
    ci95_low_eur, ci95_high_eur : ndarray, shape (n_members,)
        95 % confidence interval (equal to the value when exact).
    grand_coalition_eur : float
        Savings of the whole community v(N) (EUR); the values sum to it.
    exact : bool
        True if all coalitions were enumerated.
    n_permutations : int
        Join orders sampled (0 when exact).
    excluded_intervals : int
        Intervals left out because of missing readings.
    """

    member_ids: tuple[str, ...]
    value_eur: FloatArray
    ci95_low_eur: FloatArray
    ci95_high_eur: FloatArray
    grand_coalition_eur: float
    exact: bool
    n_permutations: int = 0
    excluded_intervals: int = 0

    def to_frame(self) -> pd.DataFrame:
        """The values and their interval, one row per member."""
        return pd.DataFrame(
            {
                "shapley_eur": self.value_eur,
                "ci95_low_eur": self.ci95_low_eur,
                "ci95_high_eur": self.ci95_high_eur,
            },
            index=pd.Index(self.member_ids, name="member_id"),
        )


def _sampled(game: CoalitionGame, n_permutations: int, seed: int) -> tuple[FloatArray, FloatArray, float]:
    n = game.n_members
    rng = np.random.default_rng(seed)
    orders = np.argsort(rng.random((n_permutations, n)), axis=1)
    # prefix masks: coalition after the j-th member of each order joined
    position = np.empty_like(orders)
    np.put_along_axis(position, orders, np.arange(n)[None, :], axis=1)
    prefixes = position[:, None, :] <= np.arange(n)[None, :, None]  # (P, n, n_members)
    flat = prefixes.reshape(-1, n)
    unique, inverse = np.unique(flat, axis=0, return_inverse=True)
    values = game.values(unique)[inverse.reshape(-1)].reshape(n_permutations, n)
    gains = np.diff(values, axis=1, prepend=0.0)  # gain of the j-th joiner of each order
    marginal = np.empty_like(gains)
    np.put_along_axis(marginal, orders, gains, axis=1)  # back to member columns
    grand = float(game.values(np.ones((1, n), dtype=bool))[0])
    mean = marginal.mean(axis=0)
    spread = marginal.std(axis=0, ddof=1) if n_permutations > 1 else np.full(n, np.inf)
    return mean, _Z95 * spread / math.sqrt(n_permutations), grand


def shapley(
    readings: MeterReadings,
    tariff: Tariff,
    *,
    method: SharingMethod | str,
    key: SharingKey | None = None,
    access_points: Sequence[AccessPoint] | None = None,
    group_type: TariffType = TariffType.D,
    fixed_fraction: float = 1.0,
    exact_max_members: int = EXACT_MAX_MEMBERS,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> ShapleyResult:
    """Each member's Shapley value of the community's savings.

    Parameters
    ----------
    readings : MeterReadings
        Gross offtake and injection per interval and member (kWh).
    tariff : Tariff
        Outside prices (EUR/kWh) and network-charge reductions by tariff type.
    method : SharingMethod or str
        Sharing method used inside every coalition.
    key : SharingKey, optional
        Fixed key; a coalition uses its members' keys renormalised to sum to 1.
    access_points : sequence of AccessPoint, optional
        Roles and localities of the members.
    group_type : TariffType
        Tariff type of every coalition when ``access_points`` is not given.
    fixed_fraction : float
        Hybrid method parameter.
    exact_max_members : int
        Enumerate all coalitions up to this many members; sample join orders beyond.
    n_permutations : int
        Join orders sampled when not exact.
    seed : int
        Seed of the sampler (results are reproducible).

    Returns
    -------
    ShapleyResult
        Values (EUR), 95 % confidence interval and v(N).

    Examples
    --------
    >>> result = shapley(readings, tariff, method="fixed", key=key)  # doctest: +SKIP
    >>> result.to_frame()  # doctest: +SKIP
    """
    game = CoalitionGame.from_readings(
        readings,
        tariff,
        method=method,
        key=key,
        access_points=access_points,
        group_type=group_type,
        fixed_fraction=fixed_fraction,
    )
    n = game.n_members
    if n == 0:
        raise EnergyInputError("a community without members has no Shapley values")
    if n <= exact_max_members:
        values = game.values(_all_masks(n))
        phi = shapley_from_values(values)
        return ShapleyResult(
            game.member_ids, phi, phi.copy(), phi.copy(), float(values[-1]), True, 0, game.excluded_intervals
        )
    if n_permutations < 2:
        raise EnergyInputError(
            f"n_permutations must be >= 2 to give a confidence interval, got {n_permutations}"
        )
    mean, half_width, grand = _sampled(game, n_permutations, seed)
    return ShapleyResult(
        game.member_ids,
        mean,
        mean - half_width,
        mean + half_width,
        grand,
        False,
        n_permutations,
        game.excluded_intervals,
    )


def compare_with_settlement(result: ShapleyResult, settlement: Settlement) -> pd.DataFrame:
    """Shapley value beside what the settlement actually saved each member.

    Parameters
    ----------
    result : ShapleyResult
        Shapley values of the period.
    settlement : Settlement
        Settlement of the same period (same members and readings).

    Returns
    -------
    pandas.DataFrame
        One row per member: shapley_eur, ci95_low_eur, ci95_high_eur, settled_savings_eur (over the
        intervals with complete data) and settled_minus_shapley_eur.
    """
    if settlement.result.member_ids != result.member_ids:
        raise EnergyInputError("the settlement and the Shapley values are not about the same members")
    frame = result.to_frame()
    complete = ~settlement.result.missing
    frame["settled_savings_eur"] = settlement.savings_eur[complete].sum(axis=0)
    frame["settled_minus_shapley_eur"] = frame["settled_savings_eur"] - frame["shapley_eur"]
    return frame
