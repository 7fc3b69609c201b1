"""Reference forecasts that every claim is measured against, and the forecast frame they all return.

Three baselines, each known at the issue time by construction:

* **persistence** -- the value at the same local clock time on the most recent day that is known at
  the issue time. For a day-ahead forecast issued at D-1 12:00 that is D-1 for morning targets and
  D-2 for afternoon targets.
* **seasonal naive** -- the same local clock time one week earlier (or the most recent known
  multiple of a week).
* **profile average** -- the mean of the same weekday and local quarter-hour over the last ``weeks``
  known weeks, missing weeks skipped.

Each baseline is probabilistic through the empirical quantiles of its own past errors: the baseline
is run over the ``residual_days`` before the issue time with the same lags (so its errors are the
ones it would have made), residuals ``y - point`` are grouped by local hour of day, and quantile ``q``
of the forecast is ``point + Q_q(r) - Q_0.5(r)`` with ``r`` the residuals of that hour: the 0.5
level is the point forecast itself (so that the reference of every skill score is the textbook
baseline) and the band is the error distribution centred on it. An hour with fewer
than ``min_residuals`` residuals uses all hours pooled; with fewer than that in all, the other
levels are NaN (unknown, not zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bright.energy.forecast.features import (
    RESOLUTION,
    known_at,
    local_day_shift,
    min_known_lag_days,
    regular_series,
)

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
"""Default quantile levels: the median and the 80 % central interval."""


@dataclass(frozen=True, eq=False)
class Forecast:
    """A probabilistic forecast of one series (a member's offtake, its PV, the community's net load).

    Attributes
    ----------
    quantiles
        Forecast quantiles, kWh per interval: index = UTC target interval starts, columns = quantile
        levels as floats in (0, 1), ascending; rows are non-decreasing across columns (NaN allowed).
    issue_time
        When the forecast was issued (UTC); it used no value of an interval ending after it.
    model
        Name of the model that made it (``"gbm"``, ``"profile_average"``, ``"pv_physical"``...).
    reason
        Why this model was chosen (fallbacks say what was missing).
    member
        Member or series identifier, if any.
    """

    quantiles: pd.DataFrame
    issue_time: pd.Timestamp
    model: str
    reason: str = ""
    member: str | None = None

    def __post_init__(self) -> None:
        q = self.quantiles
        if not isinstance(q.index, pd.DatetimeIndex) or q.index.tz is None:
            raise ValueError(f"{self.model}: forecast index must be timezone-aware interval starts")
        levels = np.asarray(q.columns, dtype="float64")
        if levels.size == 0 or np.any((levels <= 0) | (levels >= 1)) or np.any(np.diff(levels) <= 0):
            raise ValueError(
                f"{self.model}: quantile columns must be ascending levels in (0, 1), got {list(q.columns)}"
            )
        if pd.Timestamp(self.issue_time).tzinfo is None:
            raise ValueError(f"{self.model}: issue_time must be timezone-aware")
        v = q.to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            crossing = np.diff(v, axis=1) < -1e-9
        if crossing.any():
            row = q.index[np.flatnonzero(crossing.any(axis=1))[0]]
            raise ValueError(f"{self.model}: quantiles cross at {row.isoformat()}")

    @property
    def levels(self) -> np.ndarray:
        """Quantile levels (ascending)."""
        return np.asarray(self.quantiles.columns, dtype="float64")

    @property
    def median(self) -> pd.Series:
        """The 0.5 quantile, kWh per interval (the point forecast)."""
        return self.quantile(0.5)

    def quantile(self, level: float) -> pd.Series:
        """The forecast quantile at ``level`` (must be one of :attr:`levels`)."""
        hits = np.flatnonzero(np.isclose(self.levels, level))
        if hits.size == 0:
            raise KeyError(f"{self.model}: no quantile {level}, have {list(self.levels)}")
        return self.quantiles.iloc[:, int(hits[0])]

    def interval(self, coverage: float = 0.8) -> tuple[pd.Series, pd.Series]:
        """Lower and upper bounds of the central interval of nominal ``coverage`` (e.g. 0.1 and 0.9)."""
        lo = (1.0 - coverage) / 2.0
        return self.quantile(lo), self.quantile(1.0 - lo)


def sort_quantiles(values: np.ndarray) -> np.ndarray:
    """Enforce non-crossing quantiles by sorting each row (NaN kept in place as NaN).

    Parameters
    ----------
    values
        Array ``(n_targets, n_levels)`` of quantile forecasts.
    """
    v = np.array(values, dtype="float64", copy=True)
    nan = np.isnan(v)
    # np.sort puts NaN last; rows with NaN are rare (missing inputs) and stay NaN where they were.
    if not nan.any():
        return np.sort(v, axis=1)
    full = ~nan.any(axis=1)
    v[full] = np.sort(v[full], axis=1)
    return v


def residual_quantiles(
    residuals: np.ndarray,
    hours: np.ndarray,
    target_hours: np.ndarray,
    levels: Sequence[float],
    *,
    min_residuals: int = 28,
) -> np.ndarray:
    """Empirical quantiles of past errors, by local hour of day, for each target.

    Parameters
    ----------
    residuals
        Past errors ``y - point`` (kWh per interval); NaN ignored.
    hours
        Local hour of day (0..23) of each residual.
    target_hours
        Local hour of day of each target.
    levels
        Quantile levels.
    min_residuals
        Fewest residuals for an hour to use its own quantiles; otherwise all hours pooled.

    Returns
    -------
    numpy.ndarray
        ``(len(target_hours), len(levels))`` offsets to add to the point forecast; NaN if there are
        fewer than ``min_residuals`` residuals in all.
    """
    ok = ~np.isnan(residuals)
    r, h = residuals[ok], hours[ok]
    lv = np.asarray(levels, dtype="float64")
    out = np.full((len(target_hours), lv.size), np.nan)
    if r.size < min_residuals:
        return out
    pooled = np.quantile(r, lv)
    table = np.tile(pooled, (24, 1))
    for hour in range(24):
        rh = r[h == hour]
        if rh.size >= min_residuals:
            table[hour] = np.quantile(rh, lv)
    return table[np.asarray(target_hours, dtype=np.int64)]


def _lagged_mean(
    series: pd.Series, targets: pd.DatetimeIndex, lags: np.ndarray, step_days: int, count: int, tz: str
) -> np.ndarray:
    """Mean of ``count`` values at local clock lags ``lag, lag + step, ...`` days (per-target ``lag``)."""
    total = np.zeros(len(targets))
    n = np.zeros(len(targets))
    for k0 in np.unique(lags):
        rows = np.flatnonzero(lags == k0)
        sub = targets[rows]
        for j in range(count):
            v = series.reindex(local_day_shift(sub, int(k0) + j * step_days, tz=tz)).to_numpy(dtype="float64")
            ok = ~np.isnan(v)
            total[rows[ok]] += v[ok]
            n[rows[ok]] += 1
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _baseline(
    history: pd.Series,
    issue_time: pd.Timestamp,
    targets: pd.DatetimeIndex,
    *,
    model: str,
    step_days: int,
    count: int,
    tz: str,
    quantiles: Sequence[float],
    residual_days: int,
    min_residuals: int,
    resolution: pd.Timedelta,
    member: str | None,
) -> Forecast:
    issue = pd.Timestamp(issue_time)
    if issue.tzinfo is None:
        raise ValueError("issue_time must be timezone-aware")
    issue = issue.tz_convert("UTC")
    name = member or str(history.name or "series")
    y = known_at(regular_series(history, name=name, resolution=resolution), issue, resolution=resolution)
    targets = pd.DatetimeIndex(targets).tz_convert("UTC")
    lags = min_known_lag_days(
        targets, pd.DatetimeIndex([issue] * len(targets)), tz=tz, resolution=resolution, step_days=step_days
    )
    point = _lagged_mean(y, targets, lags, step_days, count, tz)

    # Past errors with the same lags, over the residual window before the issue time.
    per_day = int(pd.Timedelta(days=1) / resolution)
    stamps = pd.DatetimeIndex(y.index)
    past = stamps[-residual_days * per_day :]
    resid_parts, hour_parts = [], []
    for k0 in np.unique(lags):
        back = _lagged_mean(y, past, np.full(len(past), k0), step_days, count, tz)
        resid_parts.append(y.reindex(past).to_numpy() - back)
        hour_parts.append(past.tz_convert(tz).hour.to_numpy())
    levels = np.asarray(quantiles, dtype="float64")
    # The median residual is needed to centre the band even if 0.5 is not among the levels asked.
    with_median = sorted({*(float(v) for v in levels), 0.5})
    mid = with_median.index(0.5)
    keep = [with_median.index(float(v)) for v in levels]
    offsets = np.full((len(targets), len(with_median)), np.nan)
    target_hours = targets.tz_convert(tz).hour.to_numpy()
    for i, k0 in enumerate(np.unique(lags)):
        rows = lags == k0
        offsets[rows] = residual_quantiles(
            resid_parts[i], hour_parts[i], target_hours[rows], with_median, min_residuals=min_residuals
        )
    # The 0.5 level is the textbook point forecast itself (so that the seasonal-naive reference of
    # the skill score is the usual one); the band is the residual distribution centred on it:
    # q_tau = point + Q_tau(r) - Q_0.5(r), which never crosses.
    centred = offsets - offsets[:, [mid]]
    centred[:, mid] = 0.0  # known point, even when there are too few residuals for a band
    values = point[:, None] + centred[:, keep]
    frame = pd.DataFrame(values, index=targets, columns=list(levels))
    n_days = int(lags.max()) if lags.size else 0
    reason = f"lag {n_days} d" if count == 1 else f"mean of {count} values every {step_days} d"
    return Forecast(frame, issue, model, reason=reason, member=member)


def persistence(
    history: pd.Series,
    issue_time: pd.Timestamp,
    targets: pd.DatetimeIndex,
    *,
    tz: str,
    quantiles: Sequence[float] = QUANTILES,
    residual_days: int = 28,
    min_residuals: int = 28,
    resolution: pd.Timedelta = RESOLUTION,
    member: str | None = None,
) -> Forecast:
    """Same local clock time on the most recent day known at the issue time.

    Parameters
    ----------
    history
        Measured series, kWh per interval, indexed by UTC interval starts; values after the issue
        time are ignored.
    issue_time
        Timezone-aware issue time.
    targets
        UTC interval starts to forecast.
    tz
        IANA time zone of the local clock.
    quantiles
        Quantile levels.
    residual_days
        Days of past errors used for the quantiles.
    min_residuals
        Fewest residuals per local hour for hourly quantiles (else pooled).
    resolution
        Interval length.
    member
        Identifier carried into the forecast.

    Returns
    -------
    Forecast
        Model ``"persistence"``.
    """
    return _baseline(
        history,
        issue_time,
        targets,
        model="persistence",
        step_days=1,
        count=1,
        tz=tz,
        quantiles=quantiles,
        residual_days=residual_days,
        min_residuals=min_residuals,
        resolution=resolution,
        member=member,
    )


def seasonal_naive(
    history: pd.Series,
    issue_time: pd.Timestamp,
    targets: pd.DatetimeIndex,
    *,
    tz: str,
    quantiles: Sequence[float] = QUANTILES,
    residual_days: int = 28,
    min_residuals: int = 28,
    resolution: pd.Timedelta = RESOLUTION,
    member: str | None = None,
) -> Forecast:
    """Same local clock time one week earlier (the most recent known multiple of a week).

    Parameters are those of :func:`persistence`. Returns a :class:`Forecast` of model
    ``"seasonal_naive"``.
    """
    return _baseline(
        history,
        issue_time,
        targets,
        model="seasonal_naive",
        step_days=7,
        count=1,
        tz=tz,
        quantiles=quantiles,
        residual_days=residual_days,
        min_residuals=min_residuals,
        resolution=resolution,
        member=member,
    )


def profile_average(
    history: pd.Series,
    issue_time: pd.Timestamp,
    targets: pd.DatetimeIndex,
    *,
    tz: str,
    weeks: int = 4,
    quantiles: Sequence[float] = QUANTILES,
    residual_days: int = 28,
    min_residuals: int = 28,
    resolution: pd.Timedelta = RESOLUTION,
    member: str | None = None,
) -> Forecast:
    """Mean of the same weekday and local quarter-hour over the last ``weeks`` known weeks.

    Parameters are those of :func:`persistence`, plus ``weeks`` (number of weeks averaged; missing
    weeks are skipped). Returns a :class:`Forecast` of model ``"profile_average"``.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be >= 1, got {weeks}")
    return _baseline(
        history,
        issue_time,
        targets,
        model="profile_average",
        step_days=7,
        count=weeks,
        tz=tz,
        quantiles=quantiles,
        residual_days=residual_days,
        min_residuals=min_residuals,
        resolution=resolution,
        member=member,
    )
