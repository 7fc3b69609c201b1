"""Energy sharing between the members of a community, as the DSO computes it per quarter-hour.

Each member is an access point whose smart meter gives, per interval, its gross offtake and its gross
injection in kWh (both >= 0, already net of what the member consumes behind its own meter). The
injection of the producing members forms the pool of the interval; an allocation key decides how much
of the pool each consuming member receives ("shared offtake"); what no member can take goes back to
the producers ("returned injection") and stays sold to their supplier as ordinary injection.

Methods (see ``docs/sharing.md`` for the equations):

- ``FIXED``: fixed keys in a single round (Brussels "clé fixe");
- ``FIXED_MULTI_ROUND``: fixed keys, and what a consumer cannot take is re-offered to the others by
  their keys until nothing more can be placed;
- ``PRO_RATA``: dynamic key proportional to each member's offtake in the interval;
- ``HYBRID``: a fixed-key part first, the rest pro rata to the remaining offtake;
- ``MAXIMUM``: the largest volume the offtake allows, as a reference.

Rules common to every method:

- a member never shares with itself: the volume offered to a member is its key applied to the
  injection of the *other* producers;
- each producer keeps the part of its own offer that was not taken (per-producer accounting): when
  no producer is also a consumer this is exactly "in proportion to their injection";
- no member receives more than its offtake, and every kWh received was injected by another member;
- an interval where a participating reading is missing (NaN) is not shared at all: every sharing
  output of that interval is NaN (a DSO cannot allocate on missing data).

All computations are vectorised over intervals with numpy; the multi-round method iterates rounds,
never intervals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AccessPoint",
    "EnergyInputError",
    "Locality",
    "MeterReadings",
    "Role",
    "SharedWh",
    "SharingKey",
    "SharingMethod",
    "SharingResult",
    "TariffType",
    "allocate",
    "participation",
    "share",
    "share_fixed",
    "share_fixed_multi_round",
    "share_hybrid",
    "share_maximum",
    "share_pro_rata",
    "tariff_type",
    "to_wh",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Default tolerance on the sum of the keys (fraction of 1, i.e. 0.0001 %).
KEY_SUM_TOLERANCE = 1e-6
#: Default stop criterion of the multi-round method: placeable volume left in an interval (kWh).
ROUND_TOLERANCE_KWH = 1e-9
#: Intervals processed together; keeps the working set of one chunk in cache (1024 x 1000 x 8 B = 8 MB).
CHUNK_INTERVALS = 1024


class EnergyInputError(ValueError):
    """Bad input to an energy computation; the message names the offending member, interval or field."""


class TariffType(StrEnum):
    """Brussels network-tariff type of a sharing group, from the most to the least local."""

    A = "A"  #: all access points in the same building
    B = "B"  #: all downstream of the same low-voltage (MV/LV) cabin
    C = "C"  #: all downstream of the same substation
    D = "D"  #: beyond one substation (anywhere in the region)


class Role(StrEnum):
    """Which registers of an access point take part in the sharing."""

    CONSUMER = "consumer"  #: only its offtake receives shared energy
    PRODUCER = "producer"  #: only its injection is offered to the others
    PROSUMER = "prosumer"  #: both (but never to itself)


class SharingMethod(StrEnum):
    """How the pool of an interval is allocated to the consumers."""

    FIXED = "fixed"
    FIXED_MULTI_ROUND = "fixed_multi_round"
    PRO_RATA = "pro_rata"
    HYBRID = "hybrid"
    MAXIMUM = "maximum"


@dataclass(frozen=True)
class Locality:
    """Where an access point sits in the grid.

    Parameters
    ----------
    building : str or None
        Identifier of the building (None if unknown).
    lv_cabin : str or None
        Identifier of the MV/LV distribution cabin feeding the access point.
    substation : str or None
        Identifier of the substation upstream of the cabin.
    """

    building: str | None = None
    lv_cabin: str | None = None
    substation: str | None = None


@dataclass(frozen=True)
class AccessPoint:
    """A metered access point (EAN) of a community member.

    Parameters
    ----------
    id : str
        Identifier of the access point (its EAN code), also the column name of its readings.
    role : Role
        Which of its registers take part in the sharing.
    locality : Locality
        Its place in the grid, which sets the tariff type of the group.
    """

    id: str
    role: Role = Role.PROSUMER
    locality: Locality = field(default_factory=Locality)


def tariff_type(access_points: Iterable[AccessPoint]) -> TariffType:
    """Tariff type of a group: the least local level its access points all share.

    Parameters
    ----------
    access_points : iterable of AccessPoint
        The members of the group.

    Returns
    -------
    TariffType
        ``A`` if all are in one building, else ``B`` if all hang on one LV cabin, else ``C`` if all
        are downstream of one substation, else ``D``. An unknown (None) identifier never matches.

    Raises
    ------
    EnergyInputError
        If the group is empty.
    """
    points = list(access_points)
    if not points:
        raise EnergyInputError("tariff_type needs at least one access point")

    def same(values: list[str | None]) -> bool:
        return values[0] is not None and all(v == values[0] for v in values)

    if same([p.locality.building for p in points]):
        return TariffType.A
    if same([p.locality.lv_cabin for p in points]):
        return TariffType.B
    if same([p.locality.substation for p in points]):
        return TariffType.C
    return TariffType.D


@dataclass(frozen=True)
class SharingKey:
    """Fixed allocation key: the fraction of the pool offered to each consuming member.

    Parameters
    ----------
    fractions : mapping of str to float
        Member id -> fraction of the pool (dimensionless, 0..1). Members absent from the mapping get 0.
        The fractions must sum to 1 within ``tolerance``.
    tolerance : float
        Accepted deviation of the sum from 1 (dimensionless). Default 1e-6 (0.0001 %).

    Raises
    ------
    EnergyInputError
        If a fraction is negative or not finite, or if they do not sum to 100 %.
    """

    fractions: Mapping[str, float]
    tolerance: float = KEY_SUM_TOLERANCE

    def __post_init__(self) -> None:
        fractions = {str(k): float(v) for k, v in self.fractions.items()}
        if not fractions:
            raise EnergyInputError("sharing key is empty: give at least one member a fraction")
        for member, value in fractions.items():
            if not np.isfinite(value) or value < 0:
                raise EnergyInputError(f"sharing key of member {member!r} is {value}; it must be >= 0")
        total = sum(fractions.values())
        if abs(total - 1.0) > self.tolerance:
            raise EnergyInputError(
                f"sharing keys sum to {total * 100:.6g} % instead of 100 % "
                f"(tolerance {self.tolerance * 100:.2g} %)"
            )
        object.__setattr__(self, "fractions", fractions)

    @classmethod
    def from_percent(cls, percents: Mapping[str, float], tolerance: float = KEY_SUM_TOLERANCE) -> SharingKey:
        """Build a key from percentages (summing to 100).

        Parameters
        ----------
        percents : mapping of str to float
            Member id -> share of the pool in percent.
        tolerance : float
            Accepted deviation of the sum, as a fraction of 1.
        """
        return cls({k: v / 100.0 for k, v in percents.items()}, tolerance)

    @classmethod
    def equal(cls, member_ids: Iterable[str]) -> SharingKey:
        """The same fraction for every listed member."""
        ids = list(member_ids)
        if not ids:
            raise EnergyInputError("an equal sharing key needs at least one member")
        return cls(dict.fromkeys(ids, 1.0 / len(ids)))

    def vector(self, member_ids: Sequence[str]) -> FloatArray:
        """The key as an array ordered like ``member_ids``, renormalised to sum exactly to 1.

        Parameters
        ----------
        member_ids : sequence of str
            Column order of the readings.

        Returns
        -------
        ndarray, shape (n_members,)
            Fraction of the pool per member (dimensionless).

        Raises
        ------
        EnergyInputError
            If the key names a member that has no meter in ``member_ids``.
        """
        position = {m: i for i, m in enumerate(member_ids)}
        unknown = [m for m in self.fractions if m not in position]
        if unknown:
            raise EnergyInputError(
                f"sharing key names member {unknown[0]!r}, which has no meter in the readings"
            )
        out = np.zeros(len(member_ids))
        for member, value in self.fractions.items():
            out[position[member]] = value
        return out / out.sum()


def _as_2d(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise EnergyInputError(f"{name} must be 2-D (n_intervals, n_members), got shape {array.shape}")
    return array


@dataclass(frozen=True)
class MeterReadings:
    """Gross offtake and injection of every access point of a community.

    Parameters
    ----------
    member_ids : sequence of str
        Identifier of each access point, in column order.
    offtake_kwh : array_like, shape (n_intervals, n_members)
        Gross offtake per interval (kWh, >= 0, NaN where missing).
    injection_kwh : array_like, shape (n_intervals, n_members)
        Gross injection per interval (kWh, >= 0, NaN where missing).
    index : pandas.DatetimeIndex, optional
        Timezone-aware start of each interval. Needed for calendar aggregation and time alignment.

    Raises
    ------
    EnergyInputError
        On mismatched shapes, duplicated ids, a naive or unsorted index, or a negative reading
        (the message names the member and the interval).
    """

    member_ids: tuple[str, ...]
    offtake_kwh: FloatArray
    injection_kwh: FloatArray
    index: pd.DatetimeIndex | None = None

    def __post_init__(self) -> None:
        ids = tuple(str(m) for m in self.member_ids)
        offtake = _as_2d(self.offtake_kwh, "offtake_kwh")
        injection = _as_2d(self.injection_kwh, "injection_kwh")
        if offtake.shape != injection.shape:
            raise EnergyInputError(
                f"offtake_kwh has shape {offtake.shape} but injection_kwh has shape {injection.shape}"
            )
        if len(set(ids)) != len(ids):
            duplicated = sorted({m for m in ids if ids.count(m) > 1})
            raise EnergyInputError(f"member {duplicated[0]!r} appears twice in member_ids")
        if offtake.shape[1] != len(ids):
            raise EnergyInputError(
                f"readings have {offtake.shape[1]} meter columns but {len(ids)} member ids are given"
            )
        if self.index is not None:
            index = self.index
            if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
                raise EnergyInputError("index must be a timezone-aware pandas.DatetimeIndex")
            if len(index) != offtake.shape[0]:
                raise EnergyInputError(
                    f"index has {len(index)} timestamps but readings have {offtake.shape[0]} intervals"
                )
            if not index.is_monotonic_increasing or not index.is_unique:
                raise EnergyInputError("index must be strictly increasing (sorted, no duplicated interval)")
        object.__setattr__(self, "member_ids", ids)
        object.__setattr__(self, "offtake_kwh", offtake)
        object.__setattr__(self, "injection_kwh", injection)
        for name, values in (("offtake_kwh", offtake), ("injection_kwh", injection)):
            if np.any(np.isinf(values)):
                t, m = np.argwhere(np.isinf(values))[0]
                raise EnergyInputError(
                    f"{name} of member {ids[m]!r} at interval {t} ({self._label(int(t))}) is infinite"
                )
            if np.any(values < 0):  # NaN compares False: missing is not negative
                t, m = np.argwhere(values < 0)[0]
                raise EnergyInputError(
                    f"{name} of member {ids[m]!r} at interval {t} ({self._label(int(t))}) is "
                    f"{values[t, m]} kWh; meters give gross readings >= 0"
                )

    def _label(self, t: int) -> str:
        return self.index[t].isoformat() if self.index is not None else f"row {t}"

    @classmethod
    def from_frames(cls, offtake_kwh: pd.DataFrame, injection_kwh: pd.DataFrame) -> MeterReadings:
        """Build readings from two DataFrames (rows = interval start, columns = member id).

        Parameters
        ----------
        offtake_kwh, injection_kwh : pandas.DataFrame
            Gross offtake and injection per interval (kWh) with a timezone-aware DatetimeIndex.

        Raises
        ------
        EnergyInputError
            If the frames do not cover the same intervals or the same members (the message names the
            first mismatch).
        """
        missing_inj = [c for c in offtake_kwh.columns if c not in injection_kwh.columns]
        if missing_inj:
            raise EnergyInputError(f"member {missing_inj[0]!r} has an offtake series but no injection series")
        missing_off = [c for c in injection_kwh.columns if c not in offtake_kwh.columns]
        if missing_off:
            raise EnergyInputError(f"member {missing_off[0]!r} has an injection series but no offtake series")
        a, b = offtake_kwh.index, injection_kwh.index
        if not isinstance(a, pd.DatetimeIndex) or not isinstance(b, pd.DatetimeIndex):
            raise EnergyInputError("offtake and injection frames need a DatetimeIndex")
        if not a.equals(b):
            raise EnergyInputError(
                f"offtake and injection cover different time ranges: offtake {_span(a)}, injection {_span(b)}"
            )
        columns = [str(c) for c in offtake_kwh.columns]
        return cls(
            tuple(columns),
            offtake_kwh.to_numpy(dtype=np.float64),
            injection_kwh[offtake_kwh.columns].to_numpy(dtype=np.float64),
            a,
        )

    @property
    def n_intervals(self) -> int:
        """Number of intervals (rows)."""
        return int(self.offtake_kwh.shape[0])

    @property
    def n_members(self) -> int:
        """Number of access points (columns)."""
        return int(self.offtake_kwh.shape[1])


def _span(index: pd.DatetimeIndex) -> str:
    if len(index) == 0:
        return "no interval"
    return f"{index[0].isoformat()} .. {index[-1].isoformat()} ({len(index)} intervals)"


@dataclass(frozen=True)
class SharingResult:
    """Outcome of the allocation, per interval and member.

    Attributes
    ----------
    method : SharingMethod
        The allocation method used.
    readings : MeterReadings
        The input readings (gross offtake and injection, kWh).
    shared_offtake_kwh : ndarray, shape (n_intervals, n_members)
        Energy each member received from the other members (kWh); NaN in intervals not shared.
    shared_injection_kwh : ndarray, shape (n_intervals, n_members)
        Part of each member's injection placed with the other members (kWh); NaN likewise.
    missing : ndarray of bool, shape (n_intervals,)
        Intervals not shared because a participating reading is missing.
    rounds : int
        Largest number of allocation rounds used in an interval (1 for single-round methods).
    """

    method: SharingMethod
    readings: MeterReadings
    shared_offtake_kwh: FloatArray
    shared_injection_kwh: FloatArray
    missing: BoolArray
    rounds: int = 1

    @property
    def member_ids(self) -> tuple[str, ...]:
        """Identifier of each member, in column order."""
        return self.readings.member_ids

    @property
    def index(self) -> pd.DatetimeIndex | None:
        """Start of each interval (timezone-aware) if the readings had one."""
        return self.readings.index

    @property
    def offtake_kwh(self) -> FloatArray:
        """Gross offtake per interval and member (kWh)."""
        return self.readings.offtake_kwh

    @property
    def injection_kwh(self) -> FloatArray:
        """Gross injection per interval and member (kWh)."""
        return self.readings.injection_kwh

    @property
    def residual_offtake_kwh(self) -> FloatArray:
        """Offtake still bought from the supplier: gross offtake - shared offtake (kWh)."""
        return self.readings.offtake_kwh - self.shared_offtake_kwh

    @property
    def returned_injection_kwh(self) -> FloatArray:
        """Injection not placed in the community, sold as feed-in: gross - shared injection (kWh)."""
        return self.readings.injection_kwh - self.shared_injection_kwh

    @property
    def shared_kwh(self) -> FloatArray:
        """Community volume shared per interval, shape (n_intervals,) (kWh); NaN when not shared."""
        return self.shared_offtake_kwh.sum(axis=1)


class SharedWh(NamedTuple):
    """Sharing result in whole watt-hours, as the DSO publishes it."""

    shared_offtake_wh: NDArray[np.int64]
    shared_injection_wh: NDArray[np.int64]
    returned_injection_wh: NDArray[np.int64]


def _largest_remainder(values_wh: FloatArray, totals: NDArray[np.int64]) -> NDArray[np.int64]:
    """Integers per row, each floor or ceil of ``values_wh``, summing to ``totals`` per row."""
    floors = np.floor(values_wh)
    remainder = values_wh - floors
    deficit = totals - floors.sum(axis=1).astype(np.int64)
    # rank of each remainder in its row, largest first (stable: ties go to the first column)
    order = np.argsort(-remainder, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(values_wh.shape[1])[None, :], axis=1)
    bump = (rank < deficit[:, None]) & (remainder > 0)
    return (floors + bump).astype(np.int64)


def to_wh(result: SharingResult) -> SharedWh:
    """Round a sharing result to whole Wh while keeping energy conserved exactly.

    The community total of each interval is rounded half-up to a whole Wh; it is then apportioned to
    the consumers and to the producers by the largest-remainder method, so that each member's figure
    is its exact value rounded down or up and ``sum(shared offtake) == sum(shared injection)`` holds
    to the Wh. With integer-Wh readings (what the DSO meters give) no member gets more than its
    offtake or shares more than its injection.

    Parameters
    ----------
    result : SharingResult
        The allocation in kWh.

    Returns
    -------
    SharedWh
        Shared offtake, shared injection and returned injection per interval and member (Wh, int64).

    Raises
    ------
    EnergyInputError
        If some intervals were not shared (missing data) or a reading is not a whole Wh within 1e-6 Wh.
    """
    if result.missing.any():
        t = int(np.flatnonzero(result.missing)[0])
        raise EnergyInputError(
            f"interval {t} ({result.readings._label(t)}) was not shared (missing reading); "
            "whole-Wh results need complete data"
        )
    injection_wh = result.injection_kwh * 1000.0
    injection_int = np.rint(injection_wh)
    if np.any(np.abs(injection_wh - injection_int) > 1e-6):
        t, m = np.argwhere(np.abs(injection_wh - injection_int) > 1e-6)[0]
        raise EnergyInputError(
            f"injection_kwh of member {result.member_ids[m]!r} at interval {t} is not a whole Wh"
        )
    received = np.clip(result.shared_offtake_kwh * 1000.0, 0.0, None)
    placed = np.clip(result.shared_injection_kwh * 1000.0, 0.0, None)
    totals = np.floor(received.sum(axis=1) + 0.5).astype(np.int64)
    received_wh = _largest_remainder(received, totals)
    placed_wh = _largest_remainder(placed, totals)
    # both sides are apportioned to the same total; a half-Wh tie broken differently by float noise on
    # the two sides would leave one Wh over: give it to (take it from) the largest remainder left
    for side, exact in ((received_wh, received), (placed_wh, placed)):
        for row in np.flatnonzero(side.sum(axis=1) != totals):
            gap = int(totals[row] - side[row].sum())
            slack = exact[row] - side[row]
            side[row, int(np.argmax(slack)) if gap > 0 else int(np.argmin(slack))] += gap
    return SharedWh(received_wh, placed_wh, injection_int.astype(np.int64) - placed_wh)


# --------------------------------------------------------------------------------------------------
# Allocation engine: arrays (rows, n_members) where a row is one interval (or, for the fairness module,
# one interval of one coalition). Inputs are clean: finite, >= 0, non-participating registers zeroed.
# --------------------------------------------------------------------------------------------------


def _single_round(pool: FloatArray, room: FloatArray, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
    """One allocation round where member m is offered ``weights[m]`` of every other member's pool.

    ``weights`` sums to at most 1 per row. Returns (taken by each consumer, placed from each producer).
    Per-producer accounting: producer p gives ``weights[m] * pool[p]`` to every m != p; consumer m takes
    the fraction ``c_m = take_m / offer_m`` of every offer it got, so p places
    ``pool[p] * sum_{m != p} weights[m] c_m``. All sums are O(n) per row.
    """
    others = np.subtract(pool.sum(axis=1, keepdims=True), pool)  # >= 0: float sums of >= 0 are monotone
    take = np.multiply(others, weights)
    np.minimum(take, room, out=take)
    return take, _placed(pool, take, others, weights, pool)


def _placed(
    per_unit: FloatArray,
    take: FloatArray,
    offered_per_pool: FloatArray,
    weights: FloatArray,
    pool: FloatArray,
) -> FloatArray:
    """Volume placed from each producer, given what each consumer took of its offer.

    Producer p offers ``per_unit[p] * weights[m]`` to each m != p; ``offered_per_pool[m]`` is the offer to
    m divided by its weight (overwritten); the result is capped at ``pool``. The weight m actually
    served is ``weights[m] * c_m = min(weights[m], room_m / offered_per_pool[m])``; where nothing was
    offered to m (0/0) the value is irrelevant (every other producer has an empty pool) and ``fmin``
    falls back to the weight.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        served = np.divide(take, offered_per_pool, out=offered_per_pool)
    np.fmin(served, weights, out=served)
    np.subtract(served.sum(axis=1, keepdims=True), served, out=served)
    placed = np.multiply(per_unit, served, out=served)
    np.minimum(placed, pool, out=placed)
    return placed


def _reoffer_round(pool: FloatArray, room: FloatArray, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
    """A re-offer round: each producer offers its whole remaining pool to the eligible others.

    ``weights`` is zero for members that cannot take more. Producer p splits its pool over the eligible
    members m != p in proportion to ``weights[m] / sum_{j != p} weights[j]``.
    """
    others_weight = np.subtract(weights.sum(axis=1, keepdims=True), weights)
    per_weight = np.zeros_like(pool)
    np.divide(pool, others_weight, out=per_weight, where=others_weight > 0)
    offered = np.subtract(per_weight.sum(axis=1, keepdims=True), per_weight)
    take = np.multiply(weights, offered)
    np.minimum(take, room, out=take)
    return take, _placed(per_weight, take, offered, weights, pool)


def _multi_round(
    offtake: FloatArray, injection: FloatArray, key: FloatArray, max_rounds: int, tolerance_kwh: float
) -> tuple[FloatArray, FloatArray, int]:
    """Fixed keys in rounds; iterates rounds over the rows still holding placeable volume.

    Every re-offer round either places all the placeable volume of a row or saturates at least one
    more consumer, so a row needs at most ``n_members + 1`` rounds (see docs/sharing.md).
    """
    received, placed = _single_round(injection, offtake, key)
    leftover = injection.sum(axis=1) - placed.sum(axis=1)
    rows = np.flatnonzero(leftover > tolerance_kwh)  # only these can need another round
    rounds = 1
    if rows.size == 0 or max_rounds <= 1:
        return received, placed, rounds
    key_rows = key[rows] if key.ndim == 2 else key
    every_key_positive = key.ndim == 1 and bool(np.all(key > 0))
    pool = injection[rows] - placed[rows]
    room = offtake[rows] - received[rows]  # exactly 0 where a consumer was capped: min() returned room

    def write_back(which: BoolArray | slice) -> None:
        # received = offtake - room left (exact for a filled consumer), placed = injection - pool left
        done = rows[which]
        received[done] = offtake[done] - room[which]
        placed[done] = injection[done] - pool[which]

    finished = np.zeros(rows.size, dtype=bool)
    while rounds < max_rounds:
        eligible = room > 0.0
        if not every_key_positive:
            eligible &= key_rows > 0.0
        n_eligible = np.count_nonzero(eligible, axis=1)
        # a producer can still place something iff an eligible member other than itself remains
        placeable = pool.sum(axis=1)
        alone = np.flatnonzero(n_eligible == 1)
        if alone.size:
            placeable[alone] -= pool[alone, eligible[alone].argmax(axis=1)]
        placeable[n_eligible == 0] = 0.0
        np.logical_or(finished, placeable <= tolerance_kwh, out=finished)
        n_left = rows.size - np.count_nonzero(finished)
        if n_left == 0:
            break
        if n_left < rows.size // 2:  # drop the finished rows once they are the majority
            write_back(finished)
            keep = ~finished
            rows, pool, room, eligible = rows[keep], pool[keep], room[keep], eligible[keep]
            if key_rows.ndim == 2:
                key_rows = key_rows[keep]
            finished = np.zeros(rows.size, dtype=bool)
        elif finished.any():  # a row nobody is eligible in moves exactly nothing
            eligible[finished] = False
        take, moved = _reoffer_round(pool, room, np.where(eligible, key_rows, 0.0))
        pool -= moved  # moved <= pool and take <= room by construction: both stay >= 0
        room -= take
        rounds += 1
    write_back(slice(None))
    return received, placed, rounds


def _maximum(offtake: FloatArray, injection: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Maximum sharing: the largest volume a zero-diagonal transport allows, split pro rata.

    Max-flow of producers -> consumers without self-edges (min-cut argument):
    ``T = min(G, O, G + O - max_q (g_q + o_q))``. Received ``o_m T / O`` and placed ``g_p T / G``
    is feasible unless one member q has ``r_q + s_q > T`` (at most one can); that member's volumes are
    then lowered to their bounds and the others scaled up (see docs/sharing.md).
    """
    g_total = injection.sum(axis=1)
    o_total = offtake.sum(axis=1)
    both = injection + offtake
    total = np.minimum(np.minimum(g_total, o_total), g_total + o_total - both.max(axis=1, initial=0.0))
    np.maximum(total, 0.0, out=total)
    scale_o = np.divide(total, o_total, out=np.zeros_like(total), where=o_total > 0)
    scale_g = np.divide(total, g_total, out=np.zeros_like(total), where=g_total > 0)
    np.minimum(scale_o, 1.0, out=scale_o)
    np.minimum(scale_g, 1.0, out=scale_g)
    received = offtake * scale_o[:, None]
    placed = injection * scale_g[:, None]
    if offtake.shape[1] == 0:
        return received, placed
    load = received + placed
    q = load.argmax(axis=1)
    rows = np.arange(offtake.shape[0])
    bad = load[rows, q] > total * (1.0 + 1e-12) + 1e-15
    if bad.any():
        r, qb = rows[bad], q[bad]
        t = total[r]
        o_rest = o_total[r] - offtake[r, qb]
        g_rest = g_total[r] - injection[r, qb]
        low_r = np.maximum(t - o_rest, 0.0)
        low_s = np.maximum(t - g_rest, 0.0)
        r0, s0 = received[r, qb], placed[r, qb]
        span = (r0 - low_r) + (s0 - low_s)
        lam = np.divide(t - low_r - low_s, span, out=np.zeros_like(t), where=span > 0)
        rq = low_r + lam * (r0 - low_r)
        sq = t - rq
        f_o = np.divide(t - rq, o_rest, out=np.zeros_like(t), where=o_rest > 0)
        f_g = np.divide(t - sq, g_rest, out=np.zeros_like(t), where=g_rest > 0)
        received[r] = offtake[r] * np.minimum(f_o, 1.0)[:, None]
        placed[r] = injection[r] * np.minimum(f_g, 1.0)[:, None]
        received[r, qb] = rq
        placed[r, qb] = sq
    return received, placed


def allocate(
    offtake_kwh: FloatArray,
    injection_kwh: FloatArray,
    method: SharingMethod,
    *,
    key: FloatArray | None = None,
    fixed_fraction: float = 1.0,
    max_rounds: int | None = None,
    tolerance_kwh: float = ROUND_TOLERANCE_KWH,
) -> tuple[FloatArray, FloatArray, int]:
    """Low-level allocation on clean arrays (no validation, no NaN).

    Parameters
    ----------
    offtake_kwh : ndarray, shape (rows, n_members)
        Offtake that may receive shared energy, per row (kWh, finite, >= 0).
    injection_kwh : ndarray, shape (rows, n_members)
        Injection offered to the others, per row (kWh, finite, >= 0).
    method : SharingMethod
        Allocation method.
    key : ndarray, shape (n_members,) or (rows, n_members), optional
        Fixed key (fractions summing to 1, or to 0 for "no key" rows). Required for the fixed and
        hybrid methods.
    fixed_fraction : float
        Hybrid only: fraction of each producer's injection offered by the fixed key first (0..1).
    max_rounds : int, optional
        Multi-round only: bound on the number of rounds; default ``n_members + 1``, enough to converge.
    tolerance_kwh : float
        Multi-round only: an interval stops when less than this placeable volume is left (kWh).

    Returns
    -------
    shared_offtake_kwh, shared_injection_kwh : ndarray, shape (rows, n_members)
        Received and placed volumes (kWh).
    rounds : int
        Largest number of rounds used in a row.
    """
    n = offtake_kwh.shape[1]
    if method is SharingMethod.MAXIMUM:
        received, placed = _maximum(offtake_kwh, injection_kwh)
        return received, placed, 1
    if method is SharingMethod.PRO_RATA:
        weights = _pro_rata_weights(offtake_kwh)
        received, placed = _single_round(injection_kwh, offtake_kwh, weights)
        return received, placed, 1
    if key is None:
        raise EnergyInputError(f"the {method.value} method needs a sharing key")
    if method is SharingMethod.FIXED:
        received, placed = _single_round(injection_kwh, offtake_kwh, key)
        return received, placed, 1
    if method is SharingMethod.FIXED_MULTI_ROUND:
        bound = n + 1 if max_rounds is None else max_rounds
        if bound < 1:
            raise EnergyInputError(f"max_rounds must be >= 1, got {max_rounds}")
        return _multi_round(offtake_kwh, injection_kwh, key, bound, tolerance_kwh)
    if method is SharingMethod.HYBRID:
        if not 0.0 <= fixed_fraction <= 1.0:
            raise EnergyInputError(f"fixed_fraction must be within 0..1, got {fixed_fraction}")
        first_pool = injection_kwh * fixed_fraction if fixed_fraction < 1.0 else injection_kwh
        received, placed = _single_round(first_pool, offtake_kwh, key)
        # the pro-rata step only matters where injection is left (not at night, not when all was placed)
        rows = np.flatnonzero(injection_kwh.sum(axis=1) - placed.sum(axis=1) > 0.0)
        if rows.size:
            pool = injection_kwh[rows] - placed[rows]  # >= 0: placed <= pool and take <= room
            room = offtake_kwh[rows] - received[rows]
            take, moved = _single_round(pool, room, _pro_rata_weights(room))
            received[rows] += take
            placed[rows] += moved
        return received, placed, 2
    raise EnergyInputError(f"unknown sharing method {method!r}")


def _pro_rata_weights(offtake: FloatArray) -> FloatArray:
    """Dynamic key: each member's share of the row's offtake (0 on rows without offtake)."""
    total = offtake.sum(axis=1, keepdims=True)
    inverse = np.zeros_like(total)
    np.divide(1.0, total, out=inverse, where=total > 0)
    return offtake * inverse


# --------------------------------------------------------------------------------------------------
# Validated entry points
# --------------------------------------------------------------------------------------------------


def participation(
    readings: MeterReadings, access_points: Sequence[AccessPoint] | None
) -> tuple[BoolArray, BoolArray]:
    """Which offtake and injection registers take part in the sharing, from the access points' roles.

    Parameters
    ----------
    readings : MeterReadings
        The meters of the community.
    access_points : sequence of AccessPoint or None
        One access point per meter column; None means every member is a prosumer.

    Returns
    -------
    takes, gives : ndarray of bool, shape (n_members,)
        Whether each member's offtake may receive shared energy, and whether its injection is offered.

    Raises
    ------
    EnergyInputError
        If an access point has no meter, or a meter no access point.
    """
    n = readings.n_members
    if access_points is None:
        return np.ones(n, dtype=bool), np.ones(n, dtype=bool)
    by_id = {p.id: p for p in access_points}
    if len(by_id) != len(access_points):
        raise EnergyInputError("an access point id appears twice in access_points")
    for point_id in by_id:
        if point_id not in readings.member_ids:
            raise EnergyInputError(f"access point {point_id!r} has no meter readings")
    for member in readings.member_ids:
        if member not in by_id:
            raise EnergyInputError(f"meter {member!r} is not an access point of the community")
    roles = [by_id[m].role for m in readings.member_ids]
    takes = np.array([r is not Role.PRODUCER for r in roles])
    gives = np.array([r is not Role.CONSUMER for r in roles])
    return takes, gives


def share(
    readings: MeterReadings,
    method: SharingMethod | str,
    *,
    key: SharingKey | None = None,
    access_points: Sequence[AccessPoint] | None = None,
    fixed_fraction: float = 1.0,
    max_rounds: int | None = None,
    tolerance_kwh: float = ROUND_TOLERANCE_KWH,
    chunk_intervals: int = CHUNK_INTERVALS,
    workers: int = 1,
) -> SharingResult:
    """Allocate the community's injection to its members, interval by interval.

    Parameters
    ----------
    readings : MeterReadings
        Gross offtake and injection per interval and member (kWh).
    method : SharingMethod or str
        ``fixed``, ``fixed_multi_round``, ``pro_rata``, ``hybrid`` or ``maximum``.
    key : SharingKey, optional
        Fixed key; required by ``fixed``, ``fixed_multi_round`` and ``hybrid``.
    access_points : sequence of AccessPoint, optional
        The community's access points: one per meter column. Their roles decide which registers take
        part (a consumer's injection and a producer's offtake are left out). Default: all prosumers.
    fixed_fraction : float
        Hybrid: fraction of each producer's injection offered by the fixed key before the pro-rata
        step (dimensionless, 0..1). 1 = fixed key on the whole pool, the unplaced rest pro rata.
    max_rounds : int, optional
        Multi-round: upper bound on the rounds (default ``n_members + 1``, which always converges).
    tolerance_kwh : float
        Multi-round: an interval stops once less than this placeable volume is left (kWh).
    chunk_intervals : int
        Intervals processed together (memory / speed trade-off only; results do not depend on it).
    workers : int
        Threads working on chunks in parallel (results do not depend on it).

    Returns
    -------
    SharingResult
        Shared offtake and shared injection per interval and member (kWh).

    Raises
    ------
    EnergyInputError
        Missing key, a key naming an unknown member or giving a share to a producer-only access point,
        access points without meters (or meters without access point).

    Examples
    --------
    >>> import numpy as np
    >>> readings = MeterReadings(
    ...     ("P", "A", "B", "C"), np.array([[0.0, 0.1, 0.5, 1.0]]), np.array([[2.0, 0.0, 0.0, 0.0]])
    ... )
    >>> result = share(readings, "fixed", key=SharingKey.equal(["A", "B", "C"]))
    >>> np.round(result.shared_offtake_kwh, 3).tolist()
    [[0.0, 0.1, 0.5, 0.667]]
    """
    method = SharingMethod(method)
    takes, gives = participation(readings, access_points)
    key_vector: FloatArray | None = None
    if method in (SharingMethod.FIXED, SharingMethod.FIXED_MULTI_ROUND, SharingMethod.HYBRID):
        if key is None:
            raise EnergyInputError(f"the {method.value} method needs a sharing key")
        key_vector = key.vector(readings.member_ids)
        if np.any((key_vector > 0) & ~takes):
            m = int(np.flatnonzero((key_vector > 0) & ~takes)[0])
            raise EnergyInputError(
                f"sharing key gives {key_vector[m] * 100:.4g} % to {readings.member_ids[m]!r}, "
                "a producer-only access point that takes no shared energy"
            )
    if chunk_intervals < 1:
        raise EnergyInputError(f"chunk_intervals must be >= 1, got {chunk_intervals}")

    if workers < 1:
        raise EnergyInputError(f"workers must be >= 1, got {workers}")

    offtake, injection = readings.offtake_kwh, readings.injection_kwh
    partial_take, partial_give = not takes.all(), not gives.all()
    missing = np.zeros(readings.n_intervals, dtype=bool)
    received = np.empty_like(offtake)
    placed = np.empty_like(injection)

    def run(start: int) -> int:
        stop = start + chunk_intervals
        o, g = offtake[start:stop], injection[start:stop]
        # only the participating registers can make an interval unshareable (a NaN makes its row sum NaN)
        gap: BoolArray = np.isnan((o[:, takes] if partial_take else o).sum(axis=1))
        gap |= np.isnan((g[:, gives] if partial_give else g).sum(axis=1))
        missing[start:stop] = gap
        if partial_take or gap.any():
            o = np.where(takes & ~gap[:, None], o, 0.0)
        if partial_give or gap.any():
            g = np.where(gives & ~gap[:, None], g, 0.0)
        r, p, used = allocate(
            o,
            g,
            method,
            key=key_vector,
            fixed_fraction=fixed_fraction,
            max_rounds=max_rounds,
            tolerance_kwh=tolerance_kwh,
        )
        if gap.any():
            r[gap] = np.nan
            p[gap] = np.nan
        received[start:stop] = r
        placed[start:stop] = p
        return used

    starts = range(0, readings.n_intervals, chunk_intervals)
    if workers == 1 or len(starts) < 2:
        used_rounds = [run(s) for s in starts]
    else:  # chunks are independent and write disjoint rows; numpy releases the GIL
        with ThreadPoolExecutor(max_workers=workers) as pool:
            used_rounds = list(pool.map(run, starts))
    rounds = max(used_rounds, default=1)
    return SharingResult(method, readings, received, placed, missing, rounds)


def share_fixed(
    readings: MeterReadings, key: SharingKey, *, access_points: Sequence[AccessPoint] | None = None
) -> SharingResult:
    """Fixed keys, single round: member m is offered ``key[m]`` of the other producers' injection.

    See :func:`share` for the parameters.
    """
    return share(readings, SharingMethod.FIXED, key=key, access_points=access_points)


def share_fixed_multi_round(
    readings: MeterReadings,
    key: SharingKey,
    *,
    access_points: Sequence[AccessPoint] | None = None,
    max_rounds: int | None = None,
    tolerance_kwh: float = ROUND_TOLERANCE_KWH,
) -> SharingResult:
    """Fixed keys, multi-round: the unplaced volume is re-offered by the keys of those who can take more.

    See :func:`share` for the parameters.
    """
    return share(
        readings,
        SharingMethod.FIXED_MULTI_ROUND,
        key=key,
        access_points=access_points,
        max_rounds=max_rounds,
        tolerance_kwh=tolerance_kwh,
    )


def share_pro_rata(
    readings: MeterReadings, *, access_points: Sequence[AccessPoint] | None = None
) -> SharingResult:
    """Dynamic key: member m's key in an interval is its offtake over the total offtake.

    See :func:`share` for the parameters.
    """
    return share(readings, SharingMethod.PRO_RATA, access_points=access_points)


def share_hybrid(
    readings: MeterReadings,
    key: SharingKey,
    *,
    fixed_fraction: float = 1.0,
    access_points: Sequence[AccessPoint] | None = None,
) -> SharingResult:
    """Hybrid: ``fixed_fraction`` of the pool by the fixed key, then the rest pro rata to remaining offtake.

    See :func:`share` for the parameters.
    """
    return share(
        readings, SharingMethod.HYBRID, key=key, access_points=access_points, fixed_fraction=fixed_fraction
    )


def share_maximum(
    readings: MeterReadings, *, access_points: Sequence[AccessPoint] | None = None
) -> SharingResult:
    """Maximum sharing: as much as the offtake allows (the reference upper bound).

    See :func:`share` for the parameters.
    """
    return share(readings, SharingMethod.MAXIMUM, access_points=access_points)
