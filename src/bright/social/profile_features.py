"""Load-profile features of a member, and the flexible assets they own.

The features summarise *how* a member consumes, independently of *how much*: every feature is
invariant to multiplying the series by a positive constant. They serve as covariates of the
segmentation (:mod:`bright.social.segmentation`) and as context for the matching of services
(:mod:`bright.social.matching`).

Input: the member's gross offtake in kWh per interval (15 min by default), a pandas Series on a
timezone-aware index whose stamps are the START of each interval. Missing intervals (NaN, or stamps
absent from a regular grid) stay missing: averages are taken over the observed intervals only, so
gaps that are missing at random do not bias the features.

With P(t) = E(t) / dt the mean power in kW of the interval starting at t (E in kWh, dt in h), and
hours read on the local clock (Europe/Brussels by default):

``peak_share``
    Share of a typical day's energy that falls in the peak window (default 17:00-21:00 local)::

        peak_share = mean(P | peak window) * H_peak / (mean(P) * 24)

    with H_peak the window length in hours (4 h); a flat profile gives H_peak / 24 = 0.167.
``evening_peak_ratio``
    Mean power in the peak window over mean power in the solar window (default 10:00-16:00 local)::

        evening_peak_ratio = mean(P | peak window) / mean(P | solar window)

    Above 1: the member consumes more in the evening than when the community's PV produces, i.e.
    there is consumption that could move to solar hours.
``day_to_day_variability``
    Coefficient of variation (ddof = 1) of the daily mean power over complete local days (days with
    every interval observed; DST days count 92 or 100 quarter-hours). Using the daily mean power
    rather than the daily energy keeps 23-h and 25-h days comparable.
``base_load_share``
    Always-on consumption as a share of mean power: the 5th percentile of P over mean(P) (in [0, 1]).

A feature that cannot be computed (no observation in a window, zero consumption, fewer than two
complete days, or data coverage below ``min_coverage``) is NaN, never zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Local timezone used to read hours of the day.
DEFAULT_TIMEZONE = "Europe/Brussels"

#: Default evening peak window [start, end) in local hours.
PEAK_HOURS: tuple[int, int] = (17, 21)

#: Default solar window [start, end) in local hours.
SOLAR_HOURS: tuple[int, int] = (10, 16)

#: Columns of the covariate frame used by the segmentation, in order.
COVARIATE_COLUMNS: tuple[str, ...] = (
    "peak_share",
    "evening_peak_ratio",
    "day_to_day_variability",
    "base_load_share",
    "n_flexible_assets",
    "has_pv",
)


class ProfileDataError(ValueError):
    """A member's offtake series cannot be used (wrong index, negative or non-numeric values)."""


@dataclass(frozen=True)
class FlexibleAssets:
    """Flexible (and PV) assets a member owns, as declared or detected.

    Parameters
    ----------
    electric_vehicle : bool
        An electric vehicle charged at home.
    heat_pump : bool
        A heat pump (space heating and/or domestic hot water).
    home_battery : bool
        A stationary battery.
    electric_water_heater : bool
        A resistive electric hot-water tank (a classic shiftable load in Belgium).
    pv : bool
        Rooftop photovoltaic panels.
    """

    electric_vehicle: bool = False
    heat_pump: bool = False
    home_battery: bool = False
    electric_water_heater: bool = False
    pv: bool = False

    @property
    def controllable(self) -> tuple[str, ...]:
        """Names of the assets whose consumption can be shifted by automated control."""
        names = ("electric_vehicle", "heat_pump", "home_battery", "electric_water_heater")
        return tuple(n for n in names if getattr(self, n))

    @property
    def n_flexible(self) -> int:
        """Number of controllable assets (EV, heat pump, battery, electric water heater)."""
        return len(self.controllable)

    def flags(self) -> dict[str, int]:
        """All flags as 0/1 integers, keyed by asset name."""
        return {
            "electric_vehicle": int(self.electric_vehicle),
            "heat_pump": int(self.heat_pump),
            "home_battery": int(self.home_battery),
            "electric_water_heater": int(self.electric_water_heater),
            "pv": int(self.pv),
        }


@dataclass(frozen=True)
class LoadProfileFeatures:
    """Features of one member's offtake profile (see the module docstring for the definitions).

    Parameters
    ----------
    member : str
        Member identifier.
    peak_share : float
        Share of daily energy in the peak window (0-1).
    evening_peak_ratio : float
        Mean power in the peak window over mean power in the solar window (dimensionless, >= 0).
    day_to_day_variability : float
        Coefficient of variation of daily mean power over complete days (dimensionless, >= 0).
    base_load_share : float
        5th-percentile power over mean power (0-1).
    mean_power_kw : float
        Mean offtake power over the observed intervals, in kW.
    coverage : float
        Observed intervals over intervals in the span (0-1).
    n_complete_days : int
        Local days with every interval observed.
    """

    member: str
    peak_share: float
    evening_peak_ratio: float
    day_to_day_variability: float
    base_load_share: float
    mean_power_kw: float
    coverage: float
    n_complete_days: int


def _regular_series(offtake_kwh: pd.Series, member: str) -> tuple[pd.Series, pd.Timedelta]:
    """Validate the series and put it on a regular grid (absent stamps become NaN)."""
    who = f"member {member!r}" if member else "offtake series"
    if not isinstance(offtake_kwh, pd.Series):
        raise ProfileDataError(f"{who}: offtake must be a pandas Series, got {type(offtake_kwh).__name__}")
    idx = offtake_kwh.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise ProfileDataError(f"{who}: offtake index must be a DatetimeIndex")
    if idx.tz is None:
        raise ProfileDataError(f"{who}: offtake index must be timezone-aware (UTC inside BRIGHT)")
    if len(idx) < 2:
        raise ProfileDataError(f"{who}: offtake series needs at least two intervals")
    if idx.has_duplicates:
        dup = idx[idx.duplicated()][0]
        raise ProfileDataError(f"{who}: duplicate timestamp {dup.isoformat()}")
    if not idx.is_monotonic_increasing:
        raise ProfileDataError(f"{who}: offtake index must be sorted in time")
    try:
        values = pd.to_numeric(offtake_kwh, errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        raise ProfileDataError(f"{who}: offtake values must be numeric ({exc})") from exc
    neg = values < 0
    if neg.any():
        t = values.index[neg.to_numpy()][0]
        raise ProfileDataError(
            f"{who}: negative offtake {values[t]!r} kWh at {t.isoformat()} (gross offtake is >= 0)"
        )
    diffs = np.diff(idx.as_unit("ns").asi8)
    step_ns = int(diffs.min())
    if np.any(diffs % step_ns):
        raise ProfileDataError(f"{who}: timestamps are not on a regular grid of {pd.Timedelta(step_ns)}")
    step = pd.Timedelta(step_ns, unit="ns")
    grid = pd.date_range(idx[0], idx[-1], freq=step)
    values.index = idx
    return values.reindex(grid), step


def load_profile_features(
    offtake_kwh: pd.Series,
    *,
    member: str = "",
    peak_hours: tuple[int, int] = PEAK_HOURS,
    solar_hours: tuple[int, int] = SOLAR_HOURS,
    timezone: str = DEFAULT_TIMEZONE,
    base_load_quantile: float = 0.05,
    min_coverage: float = 0.5,
) -> LoadProfileFeatures:
    """Compute the load-profile features of one member.

    Parameters
    ----------
    offtake_kwh : pandas.Series
        Gross offtake in kWh per interval (>= 0, NaN when missing), on a sorted, timezone-aware
        DatetimeIndex stamped at interval start; any regular resolution (15 min by default).
    member : str, optional
        Member identifier, used in error messages and in the result.
    peak_hours : tuple[int, int], optional
        Peak window [start, end) in local hours (0-24).
    solar_hours : tuple[int, int], optional
        Solar window [start, end) in local hours (0-24).
    timezone : str, optional
        IANA timezone in which hours of the day are read.
    base_load_quantile : float, optional
        Quantile (0-1) of interval power taken as the base load.
    min_coverage : float, optional
        Minimum share (0-1) of observed intervals; below it every feature is NaN.

    Returns
    -------
    LoadProfileFeatures

    Raises
    ------
    ProfileDataError
        If the index is not a sorted, duplicate-free, timezone-aware regular grid, or a value is
        negative or non-numeric (the message names the member and the timestamp).

    Examples
    --------
    One day at 1 kW (0.25 kWh per quarter-hour) except 2 kW from 17:00 to 21:00 local:
    mean power = (20 h x 1 kW + 4 h x 2 kW) / 24 h = 28/24 kW, so
    peak_share = 2 x 4 / 28 = 0.2857 and evening_peak_ratio = 2 / 1 = 2.

    >>> idx = pd.date_range("2024-03-05", periods=96, freq="15min", tz="Europe/Brussels")
    >>> e = pd.Series(0.25, index=idx.tz_convert("UTC"))
    >>> e[(idx.hour >= 17) & (idx.hour < 21)] = 0.5
    >>> f = load_profile_features(e, member="M01")
    >>> round(f.peak_share, 4), f.evening_peak_ratio, f.n_complete_days
    (0.2857, 2.0, 1)
    """
    for name, (a, b) in (("peak_hours", peak_hours), ("solar_hours", solar_hours)):
        if not 0 <= a < b <= 24:
            raise ValueError(f"{name} must satisfy 0 <= start < end <= 24, got {(a, b)}")
    series, step = _regular_series(offtake_kwh, member)
    step_h = step / pd.Timedelta(hours=1)
    power_kw = series.to_numpy() / step_h
    observed = ~np.isnan(power_kw)
    coverage = float(observed.mean())
    local = pd.DatetimeIndex(series.index).tz_convert(timezone)
    hours = local.hour + local.minute / 60.0

    nan = float("nan")
    mean_kw = float(np.nanmean(power_kw)) if observed.any() else nan
    if coverage < min_coverage or not observed.any():
        return LoadProfileFeatures(member, nan, nan, nan, nan, mean_kw, coverage, 0)

    def window_mean(a: int, b: int) -> float:
        sel = (hours >= a) & (hours < b) & observed
        return float(power_kw[sel].mean()) if sel.any() else nan

    peak_kw = window_mean(*peak_hours)
    solar_kw = window_mean(*solar_hours)
    positive = mean_kw > 0
    peak_share = peak_kw * (peak_hours[1] - peak_hours[0]) / (mean_kw * 24.0) if positive else nan
    evening_ratio = peak_kw / solar_kw if solar_kw > 0 else nan
    base = float(np.nanquantile(power_kw, base_load_quantile))
    base_share = min(base / mean_kw, 1.0) if positive else nan

    # complete local days: every interval of the (possibly 23 h or 25 h) day observed
    midnight = local.normalize()
    frame = pd.DataFrame({"p": power_kw, "day": midnight})
    per_day = frame.groupby("day", sort=True)["p"].agg(["count", "size", "mean"])
    day_start = pd.DatetimeIndex(per_day.index)
    day_len_h = np.asarray(
        [((d + pd.DateOffset(days=1)) - d) / pd.Timedelta(hours=1) for d in day_start], dtype=float
    )
    complete = (per_day["count"].to_numpy() == np.round(day_len_h / step_h)) & (
        per_day["size"].to_numpy() == per_day["count"].to_numpy()
    )
    daily = per_day["mean"].to_numpy()[complete]
    n_days = int(complete.sum())
    variability = float(np.std(daily, ddof=1) / daily.mean()) if n_days >= 2 and daily.mean() > 0 else nan
    return LoadProfileFeatures(
        member=member,
        peak_share=float(peak_share),
        evening_peak_ratio=float(evening_ratio),
        day_to_day_variability=variability,
        base_load_share=float(base_share),
        mean_power_kw=mean_kw,
        coverage=coverage,
        n_complete_days=n_days,
    )


def covariate_frame(
    features: Iterable[LoadProfileFeatures],
    assets: Mapping[str, FlexibleAssets] | None = None,
) -> pd.DataFrame:
    """Assemble the segmentation covariates of a set of members.

    Parameters
    ----------
    features : Iterable[LoadProfileFeatures]
        One feature record per member (``member`` must be unique).
    assets : Mapping[str, FlexibleAssets], optional
        Assets per member; a member absent from the mapping has unknown assets (NaN, not "none").

    Returns
    -------
    pandas.DataFrame
        Index = member identifiers, columns :data:`COVARIATE_COLUMNS`; ``n_flexible_assets`` counts
        the controllable assets (EV, heat pump, battery, electric water heater), ``has_pv`` is 0/1.

    Raises
    ------
    ValueError
        If a member appears twice.
    """
    rows: dict[str, dict[str, float]] = {}
    for f in features:
        if f.member in rows:
            raise ValueError(f"member {f.member!r} appears twice in the load-profile features")
        a = None if assets is None else assets.get(f.member)
        rows[f.member] = {
            "peak_share": f.peak_share,
            "evening_peak_ratio": f.evening_peak_ratio,
            "day_to_day_variability": f.day_to_day_variability,
            "base_load_share": f.base_load_share,
            "n_flexible_assets": float(a.n_flexible) if a is not None else np.nan,
            "has_pv": float(a.pv) if a is not None else np.nan,
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(COVARIATE_COLUMNS))
