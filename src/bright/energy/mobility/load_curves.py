"""The shapes of a community's load with EVs that a side-by-side comparison plots.

Three views of a per-step power series (kW, mean over each step of ``step_h`` hours, step ``k``
starting at ``start + k * step_h`` UTC):

* :func:`duration_curve`: the values sorted from highest to lowest (how many hours the load is
  above a level: the peak and the hours near it, which decide connection and cabin sizing);
* :func:`daily_profile`: the mean over the horizon of each local time of day (when the cars
  charge: evening peak, midday PV-following, night-time timers);
* :func:`daily_peaks`: the highest value of each local day (how the peak moves with the seasons).

Pure numpy/pandas, no I/O. Missing values (NaN) are left out of means and maxima and counted
nowhere; a day or time of day with no value at all is NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bright.energy.mobility.calibration import MobilityInputError
from bright.energy.mobility.fleet import BRUSSELS, STEP_H

__all__ = ["daily_peaks", "daily_profile", "duration_curve"]


def _values(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise MobilityInputError(f"{name}: shape {arr.shape}, expected a 1-D series")
    if np.isinf(arr).any():
        raise MobilityInputError(f"{name}: infinite value at step {int(np.flatnonzero(np.isinf(arr))[0])}")
    return arr


def _local_index(start: pd.Timestamp, n_steps: int, step_h: float, tz: str) -> pd.DatetimeIndex:
    ts = pd.Timestamp(start)
    if ts.tzinfo is None:
        raise MobilityInputError(f"start: {ts} is naive, expected timezone-aware")
    if not step_h > 0:
        raise MobilityInputError(f"step_h: {step_h}, expected > 0")
    return pd.date_range(ts.tz_convert("UTC"), periods=n_steps, freq=pd.Timedelta(hours=step_h)).tz_convert(
        tz
    )


def duration_curve(values: np.ndarray, n_points: int | None = None) -> np.ndarray:
    """The load-duration curve: valid values sorted from highest to lowest.

    Parameters
    ----------
    values
        Power per step, kW (NaN = missing, left out).
    n_points
        Return this many points, taken evenly along the sorted curve (first = maximum, last =
        minimum); ``None`` returns every valid value.

    Returns
    -------
    numpy.ndarray
        Non-increasing kW values. Point ``i`` of ``n`` sits at the duration ``i / (n - 1)`` of the
        valid time.
    """
    arr = _values("values", values)
    curve = np.sort(arr[~np.isnan(arr)])[::-1]
    if n_points is None or curve.size == 0:
        return curve
    if n_points < 2:
        raise MobilityInputError(f"n_points: {n_points}, expected >= 2")
    idx = np.round(np.linspace(0, curve.size - 1, min(n_points, curve.size))).astype(np.int64)
    return curve[idx]


def daily_profile(
    values: np.ndarray, start: pd.Timestamp, *, step_h: float = STEP_H, tz: str = BRUSSELS
) -> pd.Series:
    """Mean of each local time of day over the horizon.

    Parameters
    ----------
    values
        Power per step, kW (NaN = missing, left out).
    start
        UTC start of step 0 (tz-aware).
    step_h
        Step length, hours.
    tz
        Local time zone (the profile is in local wall-clock time, so the evening peak stays at
        the same hour across daylight-saving changes).

    Returns
    -------
    pandas.Series
        Mean kW, indexed by the local time of day in hours (0, 0.25, ... 23.75 at 15 min).
    """
    arr = _values("values", values)
    local = _local_index(start, arr.size, step_h, tz)
    hours = local.hour.to_numpy() + local.minute.to_numpy() / 60.0
    slots = np.arange(0.0, 24.0, step_h)
    pos = np.clip(np.searchsorted(slots, hours + 1e-9, side="right") - 1, 0, slots.size - 1)
    ok = ~np.isnan(arr)
    total = np.bincount(pos[ok], weights=arr[ok], minlength=slots.size)
    count = np.bincount(pos[ok], minlength=slots.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return pd.Series(mean, index=pd.Index(slots, name="local_hour"), name="mean_kw")


def daily_peaks(
    values: np.ndarray, start: pd.Timestamp, *, step_h: float = STEP_H, tz: str = BRUSSELS
) -> pd.Series:
    """Highest value of each local calendar day.

    Parameters
    ----------
    values
        Power per step, kW (NaN = missing, left out).
    start
        UTC start of step 0 (tz-aware).
    step_h
        Step length, hours.
    tz
        Local time zone of the days.

    Returns
    -------
    pandas.Series
        Max kW per local day, indexed by the day's local date (``datetime.date``); NaN for a day
        without a valid value.
    """
    arr = _values("values", values)
    local = _local_index(start, arr.size, step_h, tz)
    days = pd.Series(arr, index=local).groupby(local.date).max()
    days.index.name = "local_day"
    return days.rename("peak_kw")
