"""Calibration of the EV session generator on measured charging sessions.

The generator is a *smoothed bootstrap of measured user-days*. A user-day is the list of sessions
one user started on one local calendar day (plug-in time, kWh, dwell). Measured user-days are pooled
by day type (weekday, weekend) and meteorological season (DJF, MAM, JJA, SON); a generated vehicle
that plugs in on a given day copies a user-day of the same day type and season, shifts all its
plug-in times by one Gaussian offset and multiplies each kWh and each dwell by a log-normal kernel.
This keeps what independent draws lose: the plug-in hour distribution of each day type and season,
the dwell *conditional on the plug-in time* (a 17:00 plug-in stays overnight, a 13:00 one does
not), the kWh that goes with that dwell, and the structure of days with several sessions (short
top-ups before the long evening session).

The statistics kept here: the pool, the share of user-days with at least one session and its
weekday profile, the mean kWh per active user-day, and the kernel bandwidths (Silverman's rule in
log space for kWh and dwell). A log-normal fit of kWh per session is kept for reference; it fits
worse than the bootstrap (see ``docs/mobility.md``). Pure: a DataFrame in, a frozen dataclass out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

N_DAY_TYPES = 2
N_SEASONS = 4
DAY_TYPES = ("weekday", "weekend")
SEASONS = ("winter", "spring", "summer", "autumn")

#: Largest two-sample KS distance accepted between generated (home) and measured sessions, for the
#: plug-in time and the kWh per session, on all days, weekdays and weekends. Sampling noise alone is
#: about 0.03 for the 1,809 measured weekend sessions (95 % quantile 1.36 / sqrt(n)); the caps of the
#: generator (charger power x dwell, usable battery) use part of the budget.
KS_TOLERANCE = 0.05


class MobilityInputError(ValueError):
    """Input to a mobility computation is malformed; the message names the field and record."""


@dataclass(frozen=True, eq=False)
class Calibration:
    """Statistics of measured EV sessions that drive :func:`bright.energy.mobility.generate_sessions`.

    Attributes
    ----------
    day_cell
        Cell of each pooled user-day, ``day_type * 4 + season`` (day type 0 weekday, 1 weekend;
        season 0 DJF, 1 MAM, 2 JJA, 3 SON); sorted, so cell ``c`` is ``cell_lo[c]:cell_hi[c]``.
    cell_lo, cell_hi
        Bounds of each of the 8 cells in the user-day pool, shape ``(8,)``.
    day_first, day_count
        First session (index into the session arrays) and number of sessions of each pooled user-day.
    plugin_minute
        Plug-in time of each pooled session, minutes after the local midnight of its user-day.
    energy_kwh
        Energy of each pooled session, kWh.
    dwell_h
        Plug-in to plug-out of each pooled session, hours (> 0).
    active_day_share
        Share of user-days (between each user's first and last plug-in) with at least one session.
    weekday_factor
        Relative frequency of active user-days per weekday (0 = Monday), shape ``(7,)``, mean 1.
    mean_day_energy_kwh
        Mean energy per active user-day, kWh.
    mean_energy_kwh
        Mean energy per session, kWh.
    sessions_per_user_day
        Sessions per user and day of activity, 1/day.
    log_bandwidth_energy, log_bandwidth_dwell
        Standard deviation of the multiplicative log-normal kernels on kWh and dwell (natural-log
        units).
    time_bandwidth_h
        Standard deviation of the Gaussian shift of a copied user-day's plug-in times, hours.
    lognormal_mu, lognormal_sigma
        Maximum-likelihood log-normal fit of kWh per session (parameters of ``ln kWh``).
    n_sessions, n_users, n_user_days
        Measured sessions, users and active user-days the calibration rests on.
    """

    day_cell: np.ndarray
    cell_lo: np.ndarray
    cell_hi: np.ndarray
    day_first: np.ndarray
    day_count: np.ndarray
    plugin_minute: np.ndarray
    energy_kwh: np.ndarray
    dwell_h: np.ndarray
    active_day_share: float
    weekday_factor: np.ndarray
    mean_day_energy_kwh: float
    mean_energy_kwh: float
    sessions_per_user_day: float
    log_bandwidth_energy: float
    log_bandwidth_dwell: float
    time_bandwidth_h: float
    lognormal_mu: float
    lognormal_sigma: float
    n_sessions: int
    n_users: int
    n_user_days: int


def season_of_month(month: np.ndarray) -> np.ndarray:
    """Meteorological season index of calendar months.

    Parameters
    ----------
    month
        Calendar months, 1..12.

    Returns
    -------
    numpy.ndarray
        0 winter (Dec-Feb), 1 spring (Mar-May), 2 summer (Jun-Aug), 3 autumn (Sep-Nov).
    """
    return (np.asarray(month, dtype=np.int64) % 12) // 3


def day_type_of_weekday(weekday: np.ndarray) -> np.ndarray:
    """Day type of weekdays: 0 for Monday-Friday, 1 for Saturday-Sunday (holidays are not modelled)."""
    return (np.asarray(weekday, dtype=np.int64) >= 5).astype(np.int64)


def calibrate(
    sessions: pd.DataFrame,
    *,
    time_bandwidth_h: float = 0.25,
    min_user_days: int = 20,
) -> Calibration:
    """Fit the generator's statistics on measured charging sessions.

    Parameters
    ----------
    sessions
        One row per measured session with columns ``user_id``, ``plugin_local`` (naive local
        wall-clock plug-in time), ``energy_kwh`` (kWh delivered in the session, >= 0) and
        ``duration_h`` (plug-in to plug-out, hours, > 0; NaN when the plug-out was not recorded: the
        session counts in the rates and means but its user-day is left out of the pool). Optional
        ``session_id`` (named in error messages). :func:`bright.datasets.ev_sessions` has this layout.
    time_bandwidth_h
        Standard deviation of the common shift applied to a copied user-day's plug-in times, hours.
    min_user_days
        Fewest pooled user-days accepted in each (day type, season) cell.

    Returns
    -------
    Calibration

    Raises
    ------
    MobilityInputError
        If a column is missing, a plug-in time or user is missing, a kWh is negative or not finite,
        a dwell is not positive, or a (day type, season) cell has fewer than ``min_user_days``
        pooled user-days.
    """
    for col in ("user_id", "plugin_local", "energy_kwh", "duration_h"):
        if col not in sessions.columns:
            raise MobilityInputError(f"sessions: missing column {col!r}")
    if len(sessions) == 0:
        raise MobilityInputError("sessions: no rows to calibrate on")
    if not time_bandwidth_h >= 0:
        raise MobilityInputError(f"time_bandwidth_h: {time_bandwidth_h}, expected >= 0")
    ids = sessions["session_id"].to_numpy() if "session_id" in sessions.columns else np.arange(len(sessions))
    plugin = pd.DatetimeIndex(sessions["plugin_local"])
    if plugin.tz is not None:
        raise MobilityInputError("sessions.plugin_local: expected naive local wall-clock times, got tz-aware")
    bad = np.flatnonzero(plugin.isna())
    if bad.size:
        raise MobilityInputError(f"sessions.plugin_local: missing in session {ids[bad[0]]}")
    users = sessions["user_id"].to_numpy()
    bad = np.flatnonzero(pd.isna(users))
    if bad.size:
        raise MobilityInputError(f"sessions.user_id: missing in session {ids[bad[0]]}")
    energy = sessions["energy_kwh"].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(energy) | (energy < 0))
    if bad.size:
        raise MobilityInputError(f"sessions.energy_kwh: {energy[bad[0]]} in session {ids[bad[0]]}")
    dwell = sessions["duration_h"].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isnan(dwell) & ~(dwell > 0))
    if bad.size:
        raise MobilityInputError(f"sessions.duration_h: {dwell[bad[0]]} in session {ids[bad[0]]}")

    date = plugin.normalize()
    minute = (plugin - date).total_seconds().to_numpy() / 60.0
    user_code = pd.factorize(users)[0]
    day_number = ((date - date.min()) // pd.Timedelta(days=1)).to_numpy().astype(np.int64)
    # Sessions grouped by user-day, in time order inside the day.
    order = np.lexsort((minute, day_number, user_code))
    ud_key = user_code[order] * (day_number.max() + 1) + day_number[order]
    starts = np.flatnonzero(np.r_[True, ud_key[1:] != ud_key[:-1]])
    counts = np.diff(np.r_[starts, order.size])
    first_session = order[starts]
    ud_weekday = plugin.weekday.to_numpy()[first_session]
    ud_cell = day_type_of_weekday(ud_weekday) * N_SEASONS + season_of_month(
        plugin.month.to_numpy()[first_session]
    )
    ud_energy = np.add.reduceat(energy[order], starts)
    ud_complete = np.logical_and.reduceat(~np.isnan(dwell[order]), starts)

    # Share of active user-days and its weekday profile.
    by_user = pd.Series(day_number).groupby(user_code)
    span_days = int((by_user.max() - by_user.min() + 1).sum())
    active_share = starts.size / span_days
    calendar = pd.date_range(date.min(), date.max(), freq="D").weekday
    per_weekday = np.bincount(ud_weekday, minlength=7) / np.maximum(np.bincount(calendar, minlength=7), 1)
    weekday_factor = per_weekday / per_weekday.mean()

    # The pool: complete user-days, sorted by cell.
    pooled = np.flatnonzero(ud_complete)
    pooled = pooled[np.argsort(ud_cell[pooled], kind="stable")]
    cell = ud_cell[pooled]
    cell_lo = np.searchsorted(cell, np.arange(N_DAY_TYPES * N_SEASONS), side="left")
    cell_hi = np.searchsorted(cell, np.arange(N_DAY_TYPES * N_SEASONS), side="right")
    for c in range(N_DAY_TYPES * N_SEASONS):
        if cell_hi[c] - cell_lo[c] < min_user_days:
            raise MobilityInputError(
                f"sessions: only {cell_hi[c] - cell_lo[c]} complete user-days on "
                f"{DAY_TYPES[c // N_SEASONS]}s in {SEASONS[c % N_SEASONS]}, need min_user_days={min_user_days}"
            )
    pool_counts = counts[pooled]
    pool_sessions = np.concatenate([order[starts[u] : starts[u] + counts[u]] for u in pooled])
    day_first = np.r_[0, np.cumsum(pool_counts)[:-1]]

    pool_energy = energy[pool_sessions]
    pool_dwell = dwell[pool_sessions]
    log_e = np.log(energy[energy > 0])
    return Calibration(
        day_cell=cell,
        cell_lo=cell_lo,
        cell_hi=cell_hi,
        day_first=day_first,
        day_count=pool_counts,
        plugin_minute=minute[pool_sessions],
        energy_kwh=pool_energy,
        dwell_h=pool_dwell,
        active_day_share=float(active_share),
        weekday_factor=weekday_factor,
        mean_day_energy_kwh=float(ud_energy.mean()),
        mean_energy_kwh=float(energy.mean()),
        sessions_per_user_day=len(sessions) / span_days,
        log_bandwidth_energy=_silverman(np.log(pool_energy[pool_energy > 0])),
        log_bandwidth_dwell=_silverman(np.log(pool_dwell)),
        time_bandwidth_h=float(time_bandwidth_h),
        lognormal_mu=float(log_e.mean()),
        lognormal_sigma=float(log_e.std()),
        n_sessions=len(sessions),
        n_users=int(user_code.max()) + 1,
        n_user_days=int(starts.size),
    )


def _silverman(x: np.ndarray) -> float:
    """Silverman's rule-of-thumb bandwidth of a Gaussian kernel for sample ``x``."""
    sd = float(np.std(x, ddof=1))
    iqr = float(np.subtract(*np.percentile(x, [75, 25])))
    spread = min(sd, iqr / 1.34) if iqr > 0 else sd
    return 0.9 * spread * x.size ** (-0.2)


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the two empirical CDFs.

    Parameters
    ----------
    a, b
        Samples (any unit, the same for both); NaN values are ignored.

    Returns
    -------
    float
        ``sup_x |F_a(x) - F_b(x)|`` in [0, 1].

    Raises
    ------
    MobilityInputError
        If a sample has no finite value.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = np.sort(a[~np.isnan(a)])
    b = np.sort(b[~np.isnan(b)])
    if a.size == 0 or b.size == 0:
        raise MobilityInputError("ks_distance: a sample is empty")
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))
