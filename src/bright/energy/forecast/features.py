"""Features for load and PV forecasts, built only from what is known at the issue time.

A value stamped ``t`` covers the interval ``[t, t + resolution)`` and becomes known when that interval
has ended: at issue time ``T`` the known history is every stamp with ``t + resolution <= T``. Every
feature that reads the measured series is built from a *target stamp* and the *issue time* of the
forecast that will use it, and refuses (:class:`LeakageError`) to read a value that was not known
then. A day-ahead forecast issued on D-1 at 12:00 local time for the whole local day D has horizon
gaps from 12 h to 36 h: only calendar-day lags of two days or more are known for every target.

Calendar features follow the local wall clock of the site (people follow it, not UTC); solar features
come from pvlib (NREL SPA solar position and Ineichen clear-sky irradiance with the bundled Linke
turbidity climatology, evaluated at the middle of each interval); weather features are taken from an
hourly weather series when the caller has one (a forecast for live use, a measurement for backtests
that want an upper bound).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd

RESOLUTION = pd.Timedelta(minutes=15)
"""Default interval length (the Belgian settlement period)."""

_DAY = pd.Timedelta(days=1)


class LeakageError(ValueError):
    """A feature or a model would read a value that was not known at the forecast's issue time."""


class HistoryError(ValueError):
    """A measured series is malformed (time zone, order, duplicates, off-grid stamps, bad values)."""


@dataclass(frozen=True)
class Site:
    """Where a member or a community is, for the clock, the holidays and the sun.

    Parameters
    ----------
    latitude_deg, longitude_deg
        WGS84 position in degrees (north and east positive).
    altitude_m
        Altitude above sea level in m (clear-sky model).
    tz
        IANA time zone of the local wall clock (calendar features, delivery days).
    country
        ISO 3166 code of the public-holiday calendar (``holidays`` package, offline).
    subdivision
        Optional region code for regional holidays.
    """

    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0
    tz: str = "Europe/Brussels"
    country: str = "BE"
    subdivision: str | None = None

    def __post_init__(self) -> None:
        if not -90.0 <= self.latitude_deg <= 90.0:
            raise ValueError(f"site latitude_deg {self.latitude_deg} outside [-90, 90]")
        if not -180.0 <= self.longitude_deg <= 180.0:
            raise ValueError(f"site longitude_deg {self.longitude_deg} outside [-180, 180]")


BRUSSELS = Site(latitude_deg=50.85, longitude_deg=4.35, altitude_m=100.0)
"""Brussels-Capital Region (the demo network's site)."""


# --------------------------------------------------------------------------------------------- series


def regular_series(
    series: pd.Series, *, name: str = "series", resolution: pd.Timedelta = RESOLUTION
) -> pd.Series:
    """Check a measured series and put it on its full regular grid (gaps become NaN).

    Parameters
    ----------
    series
        Values (kWh per interval for energy, any unit otherwise) indexed by timezone-aware interval
        starts.
    name
        Name of the member/series, used in error messages.
    resolution
        Interval length.

    Returns
    -------
    pandas.Series
        float64 values on a UTC grid from the first to the last stamp, missing intervals as NaN.

    Raises
    ------
    HistoryError
        If the index is not a timezone-aware DatetimeIndex, has duplicates, is not sorted, or has a
        stamp off the ``resolution`` grid; or if a value is not numeric.
    """
    if not isinstance(series.index, pd.DatetimeIndex):
        raise HistoryError(f"{name}: index must be a DatetimeIndex, got {type(series.index).__name__}")
    idx = series.index
    if idx.tz is None:
        raise HistoryError(f"{name}: timestamps must be timezone-aware (UTC), got naive stamps")
    if idx.has_duplicates:
        dup = idx[idx.duplicated()][0]
        raise HistoryError(f"{name}: duplicate timestamp {dup.isoformat()}")
    if not idx.is_monotonic_increasing:
        raise HistoryError(f"{name}: timestamps are not sorted")
    try:
        values = pd.to_numeric(series, errors="raise").astype("float64")
    except (TypeError, ValueError) as exc:
        raise HistoryError(f"{name}: non-numeric value ({exc})") from exc
    idx = idx.tz_convert("UTC")
    if len(idx) == 0:
        return pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype="float64", name=series.name)
    offsets = (idx - idx[0]) % resolution
    if (offsets != pd.Timedelta(0)).any():
        bad = idx[offsets != pd.Timedelta(0)][0]
        raise HistoryError(f"{name}: stamp {bad.isoformat()} is off the {resolution} grid")
    grid = pd.date_range(idx[0], idx[-1], freq=resolution)
    out = pd.Series(values.to_numpy(), index=idx).reindex(grid)
    out.name = series.name
    return out


def known_at(
    series: pd.Series, issue_time: pd.Timestamp, *, resolution: pd.Timedelta = RESOLUTION
) -> pd.Series:
    """The part of a series that was known at ``issue_time`` (intervals ended by then).

    Parameters
    ----------
    series
        Measured values indexed by UTC interval starts.
    issue_time
        Timezone-aware issue time of the forecast.
    resolution
        Interval length.
    """
    issue = _utc(issue_time, "issue_time")
    stamps = pd.DatetimeIndex(series.index)
    return series.loc[stamps + resolution <= issue]


def flat_line_mask(values: np.ndarray, *, min_run: int, ignore: np.ndarray | None = None) -> np.ndarray:
    """Flag runs of at least ``min_run`` identical consecutive values (a stuck or frozen meter).

    Parameters
    ----------
    values
        1-D array (NaN never belongs to a run).
    min_run
        Shortest run, in intervals, that counts as a flat line (>= 2).
    ignore
        Optional boolean array: intervals where a constant value is normal (PV at night). They
        neither start, continue nor break a run; they are never flagged.

    Returns
    -------
    numpy.ndarray
        Boolean array, True on every interval of a flat run.
    """
    if min_run < 2:
        raise ValueError(f"min_run must be >= 2, got {min_run}")
    v = np.asarray(values, dtype="float64")
    keep = np.ones(v.shape, dtype=bool) if ignore is None else ~np.asarray(ignore, dtype=bool)
    pos = np.flatnonzero(keep & ~np.isnan(v))
    out = np.zeros(v.shape, dtype=bool)
    if pos.size < min_run:
        return out
    sub = v[pos]
    # Start of a new run wherever the value changes (exact equality: meters repeat exact readings).
    starts = np.r_[True, sub[1:] != sub[:-1]]
    run_id = np.cumsum(starts)
    counts = np.bincount(run_id)
    flat = counts[run_id] >= min_run
    out[pos[flat]] = True
    return out


# ------------------------------------------------------------------------------------------ schedule


def _utc(ts: pd.Timestamp | str, what: str) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {t!s}")
    return t.tz_convert("UTC")


def delivery_day_index(
    day: date | str | pd.Timestamp, *, tz: str, resolution: pd.Timedelta = RESOLUTION
) -> pd.DatetimeIndex:
    """All interval starts of one local delivery day, in UTC (92, 96 or 100 quarter-hours).

    Parameters
    ----------
    day
        The local calendar day.
    tz
        IANA time zone of the day.
    resolution
        Interval length.
    """
    d = pd.Timestamp(day)
    d = d.tz_localize(None) if d.tzinfo is not None else d
    start = d.normalize().tz_localize(tz)
    end = (d.normalize() + _DAY).tz_localize(tz)
    return pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq=resolution, inclusive="left")


def day_ahead_issue_time(day: date | str | pd.Timestamp, *, tz: str, hour: float = 12.0) -> pd.Timestamp:
    """Issue time, in UTC, of the day-ahead forecast of local day ``day``: D-1 at ``hour`` local.

    Parameters
    ----------
    day
        The local delivery day D.
    tz
        IANA time zone.
    hour
        Local clock hour of the issue on D-1 (12 = noon, before the day-ahead market gate closure).
    """
    d = pd.Timestamp(day)
    d = d.tz_localize(None) if d.tzinfo is not None else d
    issue_local = d.normalize() - _DAY + pd.Timedelta(hours=hour)
    return issue_local.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")


def day_ahead_issue_times(targets: pd.DatetimeIndex, *, tz: str, hour: float = 12.0) -> pd.DatetimeIndex:
    """Issue time of the day-ahead forecast that covers each target stamp.

    Parameters
    ----------
    targets
        UTC interval starts.
    tz
        IANA time zone of the delivery days.
    hour
        Local issue hour on D-1.

    Returns
    -------
    pandas.DatetimeIndex
        One UTC issue time per target.
    """
    local_days = targets.tz_convert(tz).tz_localize(None).normalize()
    issue_local = local_days - _DAY + pd.Timedelta(hours=hour)
    return issue_local.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")


def targets_for_horizon(
    issue_time: pd.Timestamp,
    horizon: str | pd.Timedelta,
    *,
    tz: str,
    resolution: pd.Timedelta = RESOLUTION,
) -> pd.DatetimeIndex:
    """The target interval starts of a forecast issued at ``issue_time``.

    Parameters
    ----------
    issue_time
        Timezone-aware issue time.
    horizon
        ``"day-ahead"``: every interval of the next local day; a ``Timedelta``: every interval that
        starts at or after ``issue_time`` (rounded up to the grid) and before ``issue_time + horizon``.
    tz
        IANA time zone (day-ahead delivery day).
    resolution
        Interval length.
    """
    issue = _utc(issue_time, "issue_time")
    if isinstance(horizon, str):
        if horizon != "day-ahead":
            raise ValueError(f"horizon must be 'day-ahead' or a Timedelta, got {horizon!r}")
        next_day = (issue.tz_convert(tz).tz_localize(None).normalize() + _DAY).date()
        return delivery_day_index(next_day, tz=tz, resolution=resolution)
    h = pd.Timedelta(horizon)
    if h <= pd.Timedelta(0):
        raise ValueError(f"horizon must be positive, got {h}")
    start = issue.ceil(resolution)
    return pd.date_range(start, issue + h, freq=resolution, inclusive="left")


def local_day_shift(index: pd.DatetimeIndex, days: int, *, tz: str) -> pd.DatetimeIndex:
    """The same local wall-clock time ``days`` calendar days earlier, in UTC.

    Across a daylight-saving change the shift is 23 or 25 h, so that "same time yesterday" means the
    same clock time. A wall-clock time that does not exist on the earlier day (spring gap) moves
    forward to the first existing time; one that exists twice (autumn) takes the occurrence with the
    same daylight-saving flag as the target.

    Parameters
    ----------
    index
        UTC timestamps.
    days
        Calendar days back (positive).
    tz
        IANA time zone of the wall clock.
    """
    index = pd.DatetimeIndex(index).tz_convert("UTC")
    n = len(index)
    if n > 1:
        ns = index.as_unit("ns").asi8
        step = int(ns[1] - ns[0])
        if step > 0 and bool((np.diff(ns) == step).all()):
            # Members of a community share their target grids: compute each shift once.
            return _local_day_shift_cached(int(ns[0]), n, step, days, tz)
    return _local_day_shift(index, days, tz)


def _local_day_shift(index: pd.DatetimeIndex, days: int, tz: str) -> pd.DatetimeIndex:
    local = index.tz_convert(tz)
    naive = local.tz_localize(None)
    offset = (naive - index.tz_localize(None)).to_numpy()
    is_dst = offset > np.timedelta64(_standard_offset_s(tz), "s")
    shifted = naive - pd.Timedelta(days=days)
    return shifted.tz_localize(tz, ambiguous=is_dst, nonexistent="shift_forward").tz_convert("UTC")


@lru_cache(maxsize=128)
def _local_day_shift_cached(start_ns: int, n: int, step_ns: int, days: int, tz: str) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(start_ns + step_ns * np.arange(n, dtype=np.int64), tz="UTC")
    return _local_day_shift(index, days, tz)


@lru_cache(maxsize=32)
def _standard_offset_s(tz: str) -> int:
    jan = pd.Timestamp("2001-01-15 12:00", tz=tz).utcoffset()
    jul = pd.Timestamp("2001-07-15 12:00", tz=tz).utcoffset()
    assert jan is not None and jul is not None
    return int(min(jan, jul).total_seconds())


# ------------------------------------------------------------------------------------------ calendar


@lru_cache(maxsize=64)
def _holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    import holidays  # local import: the package loads its calendars lazily

    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


def holiday_flags(days: Iterable[date], *, country: str, subdivision: str | None = None) -> np.ndarray:
    """1.0 where a local calendar day is a public holiday of ``country``, else 0.0.

    Parameters
    ----------
    days
        Local calendar days.
    country
        ISO 3166 code (``"BE"``, ``"FR"``...).
    subdivision
        Optional region code.
    """
    ds = list(days)
    return np.array(
        [1.0 if d in _holiday_dates(country, subdivision, d.year) else 0.0 for d in ds], dtype="float64"
    )


def calendar_features(targets: pd.DatetimeIndex, *, site: Site) -> pd.DataFrame:
    """Calendar features of the target stamps in local time.

    Returns
    -------
    pandas.DataFrame
        ``quarter_hour`` (0..95, local clock), ``weekday`` (0 = Monday), ``holiday`` (1.0 on a public
        holiday of the site's country), ``day_off`` (1.0 on Saturday, Sunday or a holiday),
        ``doy_sin``/``doy_cos`` (annual cycle).
    """
    local = targets.tz_convert(site.tz)
    qh = (local.hour * 4 + local.minute // 15).to_numpy()
    weekday = local.weekday.to_numpy()
    day_index = local.tz_localize(None).normalize()
    uniq, inverse = np.unique(day_index.to_numpy(), return_inverse=True)
    hol_u = holiday_flags(
        (pd.Timestamp(d).date() for d in uniq), country=site.country, subdivision=site.subdivision
    )
    hol = hol_u[inverse]
    doy = local.dayofyear.to_numpy() - 1 + qh / 96.0
    angle = 2.0 * math.pi * doy / 365.25
    return pd.DataFrame(
        {
            "quarter_hour": qh.astype("float64"),
            "weekday": weekday.astype("float64"),
            "holiday": hol,
            "day_off": np.maximum(hol, (weekday >= 5).astype("float64")),
            "doy_sin": np.sin(angle),
            "doy_cos": np.cos(angle),
        },
        index=targets,
    )


# ------------------------------------------------------------------------------------------- lags


def _values_at(series: pd.Series, stamps: pd.DatetimeIndex) -> np.ndarray:
    """Values of a series at the given stamps (NaN where it has none)."""
    idx = pd.DatetimeIndex(series.index)
    if len(idx) > 1 and idx.freq is not None:
        # Regular grid (see regular_series): positions by arithmetic instead of a hash lookup.
        base = idx.as_unit("ns").asi8
        step = int(base[1] - base[0])
        rel = pd.DatetimeIndex(stamps).as_unit("ns").asi8 - base[0]
        pos = rel // step
        ok = (rel % step == 0) & (pos >= 0) & (pos < len(idx))
        values = series.to_numpy(dtype="float64")
        out = np.full(len(stamps), np.nan)
        out[ok] = values[pos[ok]]
        return out
    return series.reindex(stamps).to_numpy(dtype="float64")


def _check_known(
    shifted: pd.DatetimeIndex,
    targets: pd.DatetimeIndex,
    issue_times: pd.DatetimeIndex,
    what: str,
    resolution: pd.Timedelta,
) -> None:
    late = (shifted + resolution) > issue_times
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise LeakageError(
            f"{what} for target {targets[i].isoformat()} reads {shifted[i].isoformat()}, "
            f"not known at issue time {issue_times[i].isoformat()}"
        )


def min_known_lag_days(
    targets: pd.DatetimeIndex,
    issue_times: pd.DatetimeIndex,
    *,
    tz: str,
    resolution: pd.Timedelta = RESOLUTION,
    step_days: int = 1,
) -> np.ndarray:
    """Per target, the smallest multiple of ``step_days`` whose calendar-day lag is known at issue.

    Parameters
    ----------
    targets
        UTC interval starts.
    issue_times
        Issue time for each target (same length) or one broadcast issue time.
    tz
        IANA time zone of the wall clock.
    resolution
        Interval length.
    step_days
        1 for "same time yesterday", 7 for "same time last week".

    Returns
    -------
    numpy.ndarray
        int lag in days for every target.
    """
    issues = _broadcast_issue(issue_times, len(targets))
    out = np.zeros(len(targets), dtype=np.int64)
    todo = np.ones(len(targets), dtype=bool)
    k = step_days
    while todo.any():
        shifted = local_day_shift(targets[todo], k, tz=tz)
        ok = (shifted + resolution) <= issues[todo]
        idx = np.flatnonzero(todo)[ok]
        out[idx] = k
        todo[idx] = False
        k += step_days
        if k > 3660:
            raise ValueError("targets more than ten years after the issue time")
    return out


def _broadcast_issue(issue_times: pd.DatetimeIndex | pd.Timestamp, n: int) -> pd.DatetimeIndex:
    if isinstance(issue_times, pd.Timestamp):
        t = _utc(issue_times, "issue_time")
        return pd.DatetimeIndex([t] * n)
    idx = pd.DatetimeIndex(issue_times)
    if idx.tz is None:
        raise ValueError("issue times must be timezone-aware")
    if len(idx) != n:
        raise ValueError(f"{len(idx)} issue times for {n} targets")
    return idx.tz_convert("UTC")


def lag_features(
    load: pd.Series,
    targets: pd.DatetimeIndex,
    issue_times: pd.DatetimeIndex | pd.Timestamp,
    *,
    tz: str,
    lag_days: Sequence[int] = (2, 7),
    smooth_intervals: int = 0,
    resolution: pd.Timedelta = RESOLUTION,
    prefix: str = "lag",
) -> pd.DataFrame:
    """Values of the measured series at the same local clock time ``d`` days before each target.

    Parameters
    ----------
    load
        Measured series on its regular UTC grid (see :func:`regular_series`), kWh per interval.
    targets
        UTC interval starts to build features for.
    issue_times
        Issue time of the forecast of each target (or one for all).
    tz
        IANA time zone of the wall clock.
    lag_days
        Calendar-day lags.
    smooth_intervals
        If > 0, also a centred mean over ``2 * smooth_intervals + 1`` intervals around each lagged
        stamp (a steadier signal for a noisy household); the newest value it reads must be known.
    resolution
        Interval length.
    prefix
        Column prefix.

    Returns
    -------
    pandas.DataFrame
        ``{prefix}_{d}d`` (and ``{prefix}_{d}d_smooth``) columns, kWh per interval, NaN where the
        measured value is missing.

    Raises
    ------
    LeakageError
        If a lag reads a value not yet known at its target's issue time.
    """
    issues = _broadcast_issue(issue_times, len(targets))
    cols: dict[str, np.ndarray] = {}
    smooth = (
        load.rolling(2 * smooth_intervals + 1, center=True, min_periods=1).mean()
        if smooth_intervals > 0
        else None
    )
    for d in lag_days:
        shifted = local_day_shift(targets, d, tz=tz)
        _check_known(shifted, targets, issues, f"{prefix} {d} d", resolution)
        cols[f"{prefix}_{d}d"] = _values_at(load, shifted)
        if smooth is not None:
            newest = shifted + smooth_intervals * resolution
            _check_known(newest, targets, issues, f"{prefix} {d} d smoothed", resolution)
            cols[f"{prefix}_{d}d_smooth"] = _values_at(smooth, shifted)
    return pd.DataFrame(cols, index=targets)


def profile_mean(
    load: pd.Series,
    targets: pd.DatetimeIndex,
    issue_times: pd.DatetimeIndex | pd.Timestamp,
    *,
    tz: str,
    step_days: int,
    count: int,
    resolution: pd.Timedelta = RESOLUTION,
) -> np.ndarray:
    """Mean of the ``count`` most recent known values at the same local time every ``step_days``.

    ``step_days = 7`` gives the profile average of the same weekday and quarter-hour over the last
    ``count`` known weeks; ``step_days = 1`` the mean daily profile of the last ``count`` known days.
    Missing values are skipped (NaN only if all ``count`` are missing).

    Parameters
    ----------
    load
        Measured series on its regular UTC grid, kWh per interval.
    targets
        UTC interval starts.
    issue_times
        Issue time per target (or one for all).
    tz
        IANA time zone of the wall clock.
    step_days
        Days between the values averaged.
    count
        Number of values averaged.
    resolution
        Interval length.

    Returns
    -------
    numpy.ndarray
        Mean per target, kWh per interval.
    """
    issues = _broadcast_issue(issue_times, len(targets))
    first = min_known_lag_days(targets, issues, tz=tz, resolution=resolution, step_days=step_days)
    total = np.zeros(len(targets))
    n = np.zeros(len(targets))
    for k0 in np.unique(first):
        rows = np.flatnonzero(first == k0)
        sub = targets[rows]
        for j in range(count):
            v = _values_at(load, local_day_shift(sub, int(k0) + j * step_days, tz=tz))
            ok = ~np.isnan(v)
            total[rows[ok]] += v[ok]
            n[rows[ok]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def level_features(
    load: pd.Series,
    issue_times: pd.DatetimeIndex | pd.Timestamp,
    n: int,
    *,
    resolution: pd.Timedelta = RESOLUTION,
) -> pd.DataFrame:
    """Mean of the measured series over the last 24 h and the last 7 days before each issue time.

    Parameters
    ----------
    load
        Measured series on its regular UTC grid, kWh per interval.
    issue_times
        Issue time per row (or one for all).
    n
        Number of rows.
    resolution
        Interval length.

    Returns
    -------
    pandas.DataFrame
        ``level_24h`` and ``level_7d`` (kWh per interval), NaN if less than half of the window is
        known.
    """
    issues = _broadcast_issue(issue_times, n)
    last_known = issues - resolution  # the last interval that has ended at the issue time
    per_day = int(_DAY / resolution)
    out = {}
    for label, width in (("level_24h", per_day), ("level_7d", 7 * per_day)):
        rolled = load.rolling(width, min_periods=width // 2).mean()
        out[label] = _values_at(rolled, last_known)
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------- solar


@lru_cache(maxsize=64)
def _monthly_linke(latitude: float, longitude: float) -> np.ndarray:
    import pvlib

    months = pd.date_range("2001-01-15", periods=12, freq="MS", tz="UTC") + pd.Timedelta(days=14)
    return pvlib.clearsky.lookup_linke_turbidity(months, latitude, longitude).to_numpy(dtype="float64")


def solar_geometry(
    targets: pd.DatetimeIndex, *, site: Site, resolution: pd.Timedelta = RESOLUTION
) -> pd.DataFrame:
    """Sun position and clear-sky irradiance at the middle of each interval (pvlib).

    Parameters
    ----------
    targets
        UTC interval starts.
    site
        Location.
    resolution
        Interval length.

    Returns
    -------
    pandas.DataFrame
        ``solar_elevation_deg`` (apparent, at mid-interval), ``solar_azimuth_deg``,
        ``solar_zenith_deg`` (apparent), ``sun_up`` (1.0 if the sun is above the horizon at some
        point of the interval), ``clearsky_ghi_w_m2``, ``clearsky_dni_w_m2``, ``clearsky_dhi_w_m2``
        (Ineichen with the pvlib Linke turbidity climatology), ``dni_extra_w_m2``.
    """
    targets = pd.DatetimeIndex(targets).tz_convert("UTC")
    n = len(targets)
    regular = (
        n > 1
        and bool((np.diff(targets.asi8) == np.diff(targets.asi8)[0]).all())
        and (targets[1] - targets[0]) == resolution
    )
    if regular:
        # Communities forecast many members on the same days: compute the sun once per period.
        start_ns = int(targets[0].as_unit("ns").value)
        frame = _solar_geometry_cached(site, start_ns, n, int(resolution.as_unit("ns").value))
    else:
        frame = _solar_geometry(targets, site, resolution)
    out = frame.copy()
    out.index = targets
    return out


@lru_cache(maxsize=16)
def _solar_geometry_cached(site: Site, start_ns: int, n: int, resolution_ns: int) -> pd.DataFrame:
    res = pd.Timedelta(resolution_ns, unit="ns")
    targets = pd.date_range(pd.Timestamp(start_ns, unit="ns", tz="UTC"), periods=n, freq=res)
    return _solar_geometry(targets, site, res)


def _solar_geometry(targets: pd.DatetimeIndex, site: Site, resolution: pd.Timedelta) -> pd.DataFrame:
    import pvlib

    cols = [
        "solar_elevation_deg",
        "solar_azimuth_deg",
        "solar_zenith_deg",
        "sun_up",
        "clearsky_ghi_w_m2",
        "clearsky_dni_w_m2",
        "clearsky_dhi_w_m2",
        "dni_extra_w_m2",
    ]
    n = len(targets)
    if n == 0:
        return pd.DataFrame({c: np.array([], dtype="float64") for c in cols}, index=targets)
    # Start, middle and end of every interval in one solar-position call.
    half = resolution / 2
    naive = targets.tz_convert("UTC").tz_localize(None)
    stamps = np.concatenate([naive.values, (naive + half).values, (naive + resolution).values])
    times = pd.DatetimeIndex(stamps).tz_localize("UTC")
    pos = pvlib.solarposition.get_solarposition(
        times, site.latitude_deg, site.longitude_deg, altitude=site.altitude_m
    )
    elev = pos["apparent_elevation"].to_numpy(dtype="float64")
    start, mid, end = elev[:n], elev[n : 2 * n], elev[2 * n :]
    zen_mid = pos["apparent_zenith"].to_numpy(dtype="float64")[n : 2 * n]
    az_mid = pos["azimuth"].to_numpy(dtype="float64")[n : 2 * n]
    mid_times = targets + half
    with np.errstate(divide="ignore", invalid="ignore"):
        airmass = pvlib.atmosphere.get_relative_airmass(zen_mid)
        pressure = pvlib.atmosphere.alt2pres(site.altitude_m)
        am_abs = pvlib.atmosphere.get_absolute_airmass(airmass, pressure)
        month = mid_times.month.to_numpy() - 1
        linke = _monthly_linke(site.latitude_deg, site.longitude_deg)[month]
        dni_extra = np.asarray(pvlib.irradiance.get_extra_radiation(mid_times), dtype="float64")
        cs = pvlib.clearsky.ineichen(zen_mid, am_abs, linke, altitude=site.altitude_m, dni_extra=dni_extra)
    ghi = np.nan_to_num(np.asarray(cs["ghi"], dtype="float64"))
    dni = np.nan_to_num(np.asarray(cs["dni"], dtype="float64"))
    dhi = np.nan_to_num(np.asarray(cs["dhi"], dtype="float64"))
    # The sun may rise or set inside an interval whose middle is below the horizon.
    sun_up = (np.maximum(start, end) > 0.0) | (mid > 0.0)
    values = [mid, az_mid, zen_mid, sun_up.astype("float64"), ghi, dni, dhi, dni_extra]
    return pd.DataFrame(dict(zip(cols, values, strict=True)), index=targets)


# ------------------------------------------------------------------------------------------ weather

WEATHER_COLUMNS = ("temp_air_c", "ghi_w_m2", "dni_w_m2", "dhi_w_m2")


def weather_to_intervals(
    weather: pd.DataFrame,
    targets: pd.DatetimeIndex,
    *,
    site: Site,
    resolution: pd.Timedelta = RESOLUTION,
    solar: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Bring an hourly (or any coarser) weather series onto the target intervals.

    Temperature is interpolated in time (it is a slowly varying state). Irradiance is an energy
    average over its interval: each weather interval's clear-sky index (measured / clear-sky mean
    over the interval) multiplies the clear-sky irradiance of each target interval inside it, so the
    sub-interval shape follows the sun and the energy of the weather interval is kept. Where the
    clear-sky mean is below 5 W/m2 (twilight) the weather value is copied as is.

    Parameters
    ----------
    weather
        Columns among ``temp_air_c`` (deg C) and ``ghi_w_m2``, ``dni_w_m2``, ``dhi_w_m2`` (W/m2,
        mean over the interval), indexed by UTC interval starts at a regular resolution that is a
        multiple of ``resolution``.
    targets
        UTC interval starts.
    site
        Location (clear-sky shape).
    resolution
        Target interval length.
    solar
        Output of :func:`solar_geometry` on the whole weather intervals that hold the targets, if
        already computed (recomputed otherwise).

    Returns
    -------
    pandas.DataFrame
        The weather columns present, on ``targets``; NaN where the weather series has no value.
    """
    if not isinstance(weather.index, pd.DatetimeIndex) or weather.index.tz is None:
        raise ValueError("weather must be indexed by timezone-aware interval starts")
    w = weather.sort_index()
    w.index = pd.DatetimeIndex(w.index).tz_convert("UTC")
    if len(w) < 2:
        raise ValueError("weather needs at least two rows to infer its resolution")
    step = pd.Timedelta(w.index[1] - w.index[0])
    if step < resolution or step % resolution != pd.Timedelta(0):
        raise ValueError(f"weather resolution {step} is not a multiple of {resolution}")
    out: dict[str, np.ndarray] = {}
    if "temp_air_c" in w:
        t = w["temp_air_c"].astype("float64")
        # Interpolate between mid-interval stamps (a mean over the hour is the value at its middle).
        mid = t.copy()
        mid.index = mid.index + step / 2
        tgt_mid = targets + resolution / 2
        union = mid.index.union(tgt_mid)
        out["temp_air_c"] = (
            mid.reindex(union).interpolate(method="time", limit_area="inside").reindex(tgt_mid).to_numpy()
        )
        # Edge intervals before the first / after the last mid-stamp: nearest value of their own hour.
        own = t.reindex(targets.floor(step)).to_numpy()
        out["temp_air_c"] = np.where(np.isnan(out["temp_air_c"]), own, out["temp_air_c"])
    irr_cols = [c for c in ("ghi_w_m2", "dni_w_m2", "dhi_w_m2") if c in w]
    if irr_cols:
        bucket = targets.floor(step)
        # Clear-sky shape over whole weather intervals, so that each one keeps its energy even when
        # the targets cover it only in part.
        full = pd.date_range(bucket.min(), bucket.max() + step, freq=resolution, inclusive="left")
        if solar is not None and solar.index.equals(full):
            geo = solar
        else:
            geo = solar_geometry(full, site=site, resolution=resolution)
        cs_map = {
            "ghi_w_m2": "clearsky_ghi_w_m2",
            "dni_w_m2": "clearsky_dni_w_m2",
            "dhi_w_m2": "clearsky_dhi_w_m2",
        }
        for c in irr_cols:
            cs_full = geo[cs_map[c]]
            cs_mean = cs_full.groupby(full.floor(step)).mean()
            cs = cs_full.reindex(targets).to_numpy()
            cs_bucket = cs_mean.reindex(bucket).to_numpy()
            value = w[c].astype("float64").reindex(bucket).to_numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                shaped = value * cs / cs_bucket
            col = np.where(cs_bucket >= 5.0, shaped, value)
            out[c] = np.where(np.isnan(value), np.nan, np.maximum(col, 0.0))
    return pd.DataFrame(out, index=targets)


def temperature_features(weather_q: pd.DataFrame) -> pd.DataFrame:
    """Heating/cooling degree signals from interval temperatures.

    Parameters
    ----------
    weather_q
        Output of :func:`weather_to_intervals` with ``temp_air_c`` (deg C).

    Returns
    -------
    pandas.DataFrame
        ``temp_air_c``, ``heating_degree_c`` = max(15 - T, 0) and ``cooling_degree_c`` =
        max(T - 22, 0), deg C.
    """
    t = weather_q["temp_air_c"].to_numpy(dtype="float64")
    return pd.DataFrame(
        {
            "temp_air_c": t,
            "heating_degree_c": np.maximum(15.0 - t, 0.0),
            "cooling_degree_c": np.maximum(t - 22.0, 0.0),
        },
        index=weather_q.index,
    )
