"""Energy balance and KPIs of a community and of each member, per interval, day, month or year.

Input is a :class:`~bright.energy.sharing.SharingResult` (gross offtake and injection per interval and
member, and what was shared). Quantities per period:

- gross offtake and gross injection (kWh);
- shared offtake (received from the others) and shared injection (placed with the others) (kWh);
- residual offtake (bought from the supplier) and residual injection (fed into the grid) (kWh);
- self-consumption rate = shared / injection, self-sufficiency = shared / offtake (dimensionless);
- peak offtake power (kW) = largest interval offtake divided by the interval length;
- CO2 avoided (kg) = shared energy x grid emission factor (kgCO2e/kWh, constant or per interval).

Calendar periods are those of :meth:`pandas.DataFrame.resample` on the interval starts converted to
``tz``: ``tz="Europe/Brussels"`` gives local days (92 or 100 quarter-hours on DST days) and local
months; the period labels are the local period starts. Missing data stays missing: a period sum is
NaN as soon as one of its intervals is NaN, and ``coverage`` gives the share of complete intervals.

The periods are cut once (one pandas resample of a single Series) and every quantity is then
reduced with :meth:`numpy.ufunc.reduceat` over the period starts (about 3.5x less CPU than one
resample per frame for a year of 15-min data of 50 members by day). The figures are those of
resampling every frame: bit for bit when no value is NaN, within rounding (1e-12 relative)
otherwise (a missing reading, no emission factor), pandas then summing a block that holds a NaN
with compensated summation (tested against the resampling reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from bright.energy.sharing import EnergyInputError, SharingResult

__all__ = ["Balance", "balance", "emission_factor_series", "interval_hours", "ratio"]

FloatArray = NDArray[np.float64]

#: Columns of :attr:`Balance.community`, in order.
COMMUNITY_COLUMNS = (
    "offtake_kwh",
    "injection_kwh",
    "shared_kwh",
    "residual_offtake_kwh",
    "residual_injection_kwh",
    "self_consumption_rate",
    "self_sufficiency",
    "peak_offtake_kw",
    "peak_net_offtake_kw",
    "co2_avoided_kg",
    "coverage",
)


def ratio(
    numerator: ArrayLike | pd.DataFrame | pd.Series, denominator: ArrayLike | pd.DataFrame | pd.Series
) -> FloatArray:
    """Element-wise ``numerator / denominator``, NaN where the denominator is 0 or NaN.

    Used for self-consumption rate (shared / injection) and self-sufficiency (shared / offtake):
    a rate is undefined, not 0, when there was nothing to share or nothing to cover.
    """
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def interval_hours(index: pd.DatetimeIndex | None, default: float = 0.25) -> float:
    """Length of one interval in hours, from a regular index.

    Parameters
    ----------
    index : pandas.DatetimeIndex or None
        Interval starts. None or a single timestamp gives ``default``.
    default : float
        Interval length used without an index (h). Default 0.25 (quarter-hour).

    Raises
    ------
    EnergyInputError
        If the index is not regularly spaced (the message names the first irregular step).
    """
    if index is None or len(index) < 2:
        return default
    steps = np.diff(index.to_numpy())  # timedelta64 in the index's own unit (ns, us ...)
    if np.any(steps != steps[0]):
        i = int(np.flatnonzero(steps != steps[0])[0])
        raise EnergyInputError(
            f"intervals are not regular: {index[i].isoformat()} -> {index[i + 1].isoformat()}; "
            "give interval_hours explicitly"
        )
    return float(steps[0] / np.timedelta64(1, "h"))


def emission_factor_series(
    emission_factor_kg_per_kwh: float | FloatArray | pd.Series,
    n_intervals: int,
    index: pd.DatetimeIndex | None,
) -> FloatArray:
    """Grid emission factor per interval (kgCO2e/kWh), from a constant, an array or a Series.

    Raises
    ------
    EnergyInputError
        If an array has the wrong length or a Series does not cover exactly the readings' intervals.
    """
    if isinstance(emission_factor_kg_per_kwh, pd.Series):
        series = emission_factor_kg_per_kwh
        if index is None or not series.index.equals(index):
            raise EnergyInputError(
                "emission factor series does not cover the intervals of the readings "
                f"({len(series)} values from {series.index[0] if len(series) else '-'}; readings "
                f"{n_intervals} intervals from {index[0] if index is not None and len(index) else '-'})"
            )
        return series.to_numpy(dtype=np.float64)
    factor = np.asarray(emission_factor_kg_per_kwh, dtype=np.float64)
    if factor.ndim == 0:
        return np.full(n_intervals, float(factor))
    if factor.shape != (n_intervals,):
        raise EnergyInputError(
            f"emission factor has shape {factor.shape}; expected a constant or ({n_intervals},)"
        )
    return factor


@dataclass(frozen=True)
class Balance:
    """Energy balance per period.

    Member frames have one row per period (label = period start in ``tz``) and one column per member.

    Attributes
    ----------
    freq : str
        Period ("15min" native interval, "D", "MS", "YS" ...).
    tz : str
        Time zone of the period labels and calendar boundaries.
    offtake_kwh, injection_kwh : pandas.DataFrame
        Gross offtake and injection (kWh).
    shared_offtake_kwh, shared_injection_kwh : pandas.DataFrame
        Energy received from / placed with the other members (kWh).
    residual_offtake_kwh, residual_injection_kwh : pandas.DataFrame
        Offtake bought from the supplier and injection fed into the grid (kWh).
    peak_offtake_kw : pandas.DataFrame
        Largest offtake power of an interval of the period (kW).
    co2_avoided_kg : pandas.DataFrame
        Shared offtake valued at the grid emission factor (kgCO2e).
    community : pandas.DataFrame
        Community KPIs per period: offtake_kwh, injection_kwh, shared_kwh, residual_offtake_kwh,
        residual_injection_kwh, self_consumption_rate, self_sufficiency, peak_offtake_kw (coincident
        peak of the summed offtake), peak_net_offtake_kw (peak of offtake minus injection, >= 0),
        co2_avoided_kg and coverage (share of intervals with complete data).
    """

    freq: str
    tz: str
    offtake_kwh: pd.DataFrame
    injection_kwh: pd.DataFrame
    shared_offtake_kwh: pd.DataFrame
    shared_injection_kwh: pd.DataFrame
    residual_offtake_kwh: pd.DataFrame
    residual_injection_kwh: pd.DataFrame
    peak_offtake_kw: pd.DataFrame
    co2_avoided_kg: pd.DataFrame
    community: pd.DataFrame

    def self_sufficiency(self) -> pd.DataFrame:
        """Share of each member's offtake covered by the community (dimensionless, NaN if no offtake)."""
        return pd.DataFrame(
            ratio(self.shared_offtake_kwh, self.offtake_kwh),
            index=self.offtake_kwh.index,
            columns=self.offtake_kwh.columns,
        )

    def self_consumption_rate(self) -> pd.DataFrame:
        """Share of each member's injection used by the community (dimensionless, NaN if none)."""
        return pd.DataFrame(
            ratio(self.shared_injection_kwh, self.injection_kwh),
            index=self.injection_kwh.index,
            columns=self.injection_kwh.columns,
        )

    def member(self, member_id: str) -> pd.DataFrame:
        """All KPIs of one member, one row per period.

        Raises
        ------
        EnergyInputError
            If the member is unknown.
        """
        if member_id not in self.offtake_kwh.columns:
            raise EnergyInputError(f"member {member_id!r} is not in this balance")
        frame = pd.DataFrame(
            {
                "offtake_kwh": self.offtake_kwh[member_id],
                "injection_kwh": self.injection_kwh[member_id],
                "shared_offtake_kwh": self.shared_offtake_kwh[member_id],
                "shared_injection_kwh": self.shared_injection_kwh[member_id],
                "residual_offtake_kwh": self.residual_offtake_kwh[member_id],
                "residual_injection_kwh": self.residual_injection_kwh[member_id],
                "peak_offtake_kw": self.peak_offtake_kw[member_id],
                "co2_avoided_kg": self.co2_avoided_kg[member_id],
            }
        )
        frame["self_sufficiency"] = ratio(frame["shared_offtake_kwh"], frame["offtake_kwh"])
        frame["self_consumption_rate"] = ratio(frame["shared_injection_kwh"], frame["injection_kwh"])
        return frame


def _strict(frame: pd.DataFrame, freq: str, how: str) -> pd.DataFrame:
    """Resample with ``how`` ("sum" or "max"); a period with any NaN interval is NaN.

    The reference aggregation (one :meth:`pandas.DataFrame.resample` per frame); :class:`_Periods`
    gives the same values with one calendar cut shared by every frame.
    """
    grouped = frame.resample(freq, label="left", closed="left")
    out = grouped.sum() if how == "sum" else grouped.max()
    gaps = frame.isna().resample(freq, label="left", closed="left").sum()
    return out.mask(gaps > 0)


class _Periods:
    """The calendar periods of a sorted interval index, cut once and applied to many arrays.

    The periods and their labels are those of ``resample(freq, label="left", closed="left")`` (cut
    by pandas, once, on a cheap Series); the intervals of a period are contiguous rows, so sums,
    maxima and means are :meth:`numpy.ufunc.reduceat` over the period starts. The results are those
    of :func:`_strict`: the same value for a NaN-free array (pandas itself aggregates a NaN-free
    block with ``reduceat``), and within rounding otherwise (pandas then sums with compensated
    summation; here the NaN intervals are summed as 0 and their periods set to NaN).

    Parameters
    ----------
    rows : pandas.DatetimeIndex
        Interval starts (sorted, any zone; the periods are cut in the index's zone).
    freq : str
        Pandas period alias ("h", "D", "W", "MS", "QS", "YS" ...).
    """

    def __init__(self, rows: pd.DatetimeIndex, freq: str) -> None:
        self.rows = rows
        self.freq = freq
        counts = (
            pd.Series(np.zeros(len(rows)), index=rows, copy=False)
            .resample(freq, label="left", closed="left")
            .count()
        )
        self.labels = pd.DatetimeIndex(counts.index)
        sizes = counts.to_numpy(dtype=np.int64)
        self.sizes = sizes
        self.present = np.flatnonzero(sizes > 0)
        self.starts = (np.cumsum(sizes) - sizes)[self.present]
        if int(sizes.sum()) != len(rows) or not rows.is_monotonic_increasing:
            raise EnergyInputError(f"interval starts are not sorted; cannot cut {freq!r} periods")

    def _reduce(self, ufunc: np.ufunc, values: NDArray[Any]) -> NDArray[Any]:
        """``ufunc`` over the rows of each non-empty period (one row per such period)."""
        if self.present.size == 0:
            return np.empty((0, *values.shape[1:]), dtype=values.dtype)
        out: NDArray[Any] = ufunc.reduceat(values, self.starts, axis=0)
        return out

    def _fill(self, values: NDArray[Any], fill: float) -> FloatArray:
        """One row per period: ``values`` for the non-empty ones, ``fill`` for the others."""
        out = np.full((len(self.labels), *values.shape[1:]), fill)
        out[self.present] = values
        return out

    def sum(self, values: FloatArray) -> FloatArray:
        """Sum per period of ``values`` (n_rows,) or (n_rows, k); NaN where an interval is NaN;
        0 for a period without intervals."""
        sums = self._reduce(np.add, values)
        if not np.isnan(sums).any():  # a NaN interval makes its period's sum NaN: none here
            return self._fill(sums, 0.0)
        nan = np.isnan(values)
        sums = self._reduce(np.add, np.where(nan, 0.0, values))
        sums[self._reduce(np.logical_or, nan).astype(bool)] = np.nan
        return self._fill(sums, 0.0)

    def missing(self, n_columns: int) -> FloatArray:
        """The sum of an all-NaN (n_rows, n_columns) array: NaN per period, 0 for an empty period."""
        return self._fill(np.full((self.present.size, n_columns), np.nan), 0.0)

    def max(self, values: FloatArray) -> FloatArray:
        """Maximum per period; NaN where an interval is NaN or the period has no interval."""
        return self._fill(self._reduce(np.maximum, values), np.nan)

    def mean(self, values: FloatArray) -> FloatArray:
        """Mean per period of a NaN-free ``values`` (n_rows,); NaN for a period without intervals."""
        return self._fill(self._reduce(np.add, values) / self.sizes[self.present], np.nan)


def balance(
    result: SharingResult,
    *,
    freq: str | None = None,
    tz: str = "UTC",
    emission_factor_kg_per_kwh: float | FloatArray | pd.Series = 0.0,
    interval_length_h: float | None = None,
) -> Balance:
    """Energy balance and KPIs per period for each member and for the community.

    Parameters
    ----------
    result : SharingResult
        The sharing of the period of interest.
    freq : str, optional
        Pandas period alias: None (the native interval), "h", "D", "W", "MS" (month), "QS", "YS".
    tz : str
        Time zone in which calendar periods are cut and labelled (e.g. "Europe/Brussels" for local
        days). Default "UTC".
    emission_factor_kg_per_kwh : float, ndarray (n_intervals,) or pandas.Series
        Grid emission factor (kgCO2e/kWh) avoided by each shared kWh; a Series must have exactly the
        readings' index.
    interval_length_h : float, optional
        Interval length (h) used to turn energy into power; default inferred from the index, else 0.25.

    Returns
    -------
    Balance
        Member frames and community KPIs per period.

    Raises
    ------
    EnergyInputError
        If calendar aggregation is asked without a time index, for an unknown alias, or with an
        emission factor that does not match the intervals.

    Examples
    --------
    >>> daily = balance(result, freq="D", tz="Europe/Brussels")  # doctest: +SKIP
    >>> daily.community[["shared_kwh", "self_sufficiency"]]  # doctest: +SKIP
    """
    return _balance(
        result,
        freq=freq,
        tz=tz,
        emission_factor_kg_per_kwh=emission_factor_kg_per_kwh,
        interval_length_h=interval_length_h,
        by_resampling=False,
    )


def _balance(
    result: SharingResult,
    *,
    freq: str | None,
    tz: str,
    emission_factor_kg_per_kwh: float | FloatArray | pd.Series,
    interval_length_h: float | None,
    by_resampling: bool,
) -> Balance:
    """:func:`balance`, its periods aggregated by :class:`_Periods` (one calendar cut, numpy
    reductions) or, with ``by_resampling``, by the reference :func:`_strict` (one pandas resample per
    frame); both give the same figures (tested)."""
    readings = result.readings
    index = readings.index
    hours = interval_length_h if interval_length_h is not None else interval_hours(index)
    if hours <= 0:
        raise EnergyInputError(f"interval length must be > 0 h, got {hours}")
    factor = emission_factor_series(emission_factor_kg_per_kwh, readings.n_intervals, index)
    if index is None:
        if freq is not None:
            raise EnergyInputError(f"aggregation to {freq!r} needs readings with a time index")
        rows: pd.Index = pd.RangeIndex(readings.n_intervals, name="interval")
    else:
        rows = index.tz_convert(tz)
        rows.name = "period_start"
    if freq is not None:
        try:
            pd.tseries.frequencies.to_offset(freq)
        except ValueError as exc:
            raise EnergyInputError(f"unknown period alias {freq!r}: {exc}") from exc
    columns = pd.Index(result.member_ids, name="member_id")

    offtake, injection = readings.offtake_kwh, readings.injection_kwh
    shared_off, shared_inj = result.shared_offtake_kwh, result.shared_injection_kwh
    community_offtake = offtake.sum(axis=1)
    community_injection = injection.sum(axis=1)
    community_shared = shared_off.sum(axis=1)
    member_sums = {
        "offtake_kwh": offtake,
        "injection_kwh": injection,
        "shared_offtake_kwh": shared_off,
        "shared_injection_kwh": shared_inj,
        "residual_offtake_kwh": offtake - shared_off,
        "residual_injection_kwh": injection - shared_inj,
    }
    # without an emission factor (all NaN) CO2 avoided is unknown in every period: no product needed
    no_factor = bool(np.isnan(factor).all()) and freq is not None and not by_resampling
    if not no_factor:
        member_sums["co2_avoided_kg"] = shared_off * factor[:, None]
    else:
        member_sums["co2_avoided_kg"] = np.empty((0, len(columns)))
    community_sums = {
        "offtake_kwh": community_offtake,
        "injection_kwh": community_injection,
        "shared_kwh": community_shared,
        "residual_offtake_kwh": community_offtake - community_shared,
        "residual_injection_kwh": community_injection - community_shared,
        "co2_avoided_kg": community_shared * factor,
    }
    community_peaks = {
        "peak_offtake_kw": community_offtake / hours,
        "peak_net_offtake_kw": np.maximum(community_offtake - community_injection, 0.0) / hours,
    }
    complete = (~result.missing).astype(np.float64)
    label = "native" if freq is None else freq

    if freq is None or by_resampling:

        def frame(values: FloatArray) -> pd.DataFrame:
            return pd.DataFrame(values, index=rows, columns=columns, copy=False)

        interval_frames = {k: frame(v) for k, v in member_sums.items()}
        peak_frame = frame(offtake / hours)
        community = pd.DataFrame(community_sums, index=rows)
        community_peak = pd.DataFrame(community_peaks, index=rows)
        coverage = pd.Series(complete, index=rows)
        if freq is not None:
            interval_frames = {k: _strict(v, freq, "sum") for k, v in interval_frames.items()}
            peak_frame = _strict(peak_frame, freq, "max")
            community = _strict(community, freq, "sum")
            community_peak = _strict(community_peak, freq, "max")
            coverage = coverage.resample(freq, label="left", closed="left").mean()
        community = community.join(community_peak)
    else:
        assert isinstance(rows, pd.DatetimeIndex)
        periods = _Periods(rows, freq)
        labels = periods.labels

        def period_frame(values: FloatArray) -> pd.DataFrame:
            return pd.DataFrame(values, index=labels, columns=columns, copy=False)

        interval_frames = {
            k: period_frame(
                periods.missing(len(columns)) if k == "co2_avoided_kg" and no_factor else periods.sum(v)
            )
            for k, v in member_sums.items()
        }
        # max(x / h) == max(x) / h exactly (h > 0; rounding is monotonic): one division per period
        peak_frame = period_frame(periods.max(offtake) / hours)
        community = pd.DataFrame(
            {
                **{k: periods.sum(v) for k, v in community_sums.items()},
                **{k: periods.max(v) for k, v in community_peaks.items()},
            },
            index=labels,
        )
        coverage = pd.Series(periods.mean(complete), index=labels)
    community["self_consumption_rate"] = ratio(community["shared_kwh"], community["injection_kwh"])
    community["self_sufficiency"] = ratio(community["shared_kwh"], community["offtake_kwh"])
    community["coverage"] = coverage
    community = community[list(COMMUNITY_COLUMNS)]
    return Balance(freq=label, tz=tz, peak_offtake_kw=peak_frame, community=community, **interval_frames)
