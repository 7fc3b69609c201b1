"""Rolling-origin backtests without leakage, and the metrics they report.

Metrics are pure numpy functions: arrays are positional, options keyword-only, and every one has an
explicit NaN policy (``nan_policy``):

* ``"omit"`` (default) -- drop every row where an input is NaN; NaN is returned if no row is left;
* ``"propagate"`` -- return NaN if any input is NaN;
* ``"raise"`` -- raise :class:`MetricError` if any input is NaN.

Definitions (``y`` measured, ``f`` point forecast, ``q_tau`` quantile forecast at level ``tau``)::

    MAE      = mean |y - f|
    rMAE     = MAE / (P99(y) - P1(y))                    percentiles of the measured values scored
    skill    = 1 - MAE(model) / MAE(reference)           on the rows both have (reference: seasonal naive)
    pinball  = mean over rows and levels of max(tau (y - q_tau), (tau - 1) (y - q_tau))
    CRPS    ~= 2 sum_k w_k pinball_tau_k                 w_k: width of the level cell around tau_k
    coverage = share of rows with q_lo <= y <= q_hi      (0.1 and 0.9 give the 80 % interval)

The CRPS is the integral over all levels of twice the pinball loss; with quantile forecasts only it
is approximated by the midpoint rule on the given levels (cells bounded by the midpoints between
levels, 0 and 1): for 0.1/0.5/0.9 the weights are 0.3/0.4/0.3. It is coarse with three levels and
should be compared across models with the same levels only.

The rolling origin emulates operation: for every delivery day D the forecast is issued at D-1
``issue_hour`` local, models are (re)trained on the history known at that instant every
``retrain_every_days``, and both training and prediction receive a copy of the history cut at the
issue time, so a model cannot see the future even by mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

from bright.energy.forecast.baselines import Forecast
from bright.energy.forecast.features import (
    RESOLUTION,
    LeakageError,
    day_ahead_issue_time,
    delivery_day_index,
    known_at,
)

NanPolicy = Literal["omit", "propagate", "raise"]


class MetricError(ValueError):
    """Inputs a metric cannot score (shapes, NaN under ``nan_policy="raise"``, a zero range)."""


def _prepare(arrays: Sequence[np.ndarray], nan_policy: NanPolicy) -> tuple[list[np.ndarray], bool]:
    """Apply the NaN policy; returns the arrays (rows kept) and whether the result is NaN."""
    if nan_policy not in ("omit", "propagate", "raise"):
        raise MetricError(f"nan_policy must be 'omit', 'propagate' or 'raise', got {nan_policy!r}")
    arrs = [np.asarray(a, dtype="float64") for a in arrays]
    n = arrs[0].shape[0] if arrs[0].ndim else 1
    for a in arrs:
        if a.ndim == 0 or a.shape[0] != n:
            raise MetricError(
                f"inputs must be arrays of the same length, got shapes {[x.shape for x in arrs]}"
            )
    bad = np.zeros(n, dtype=bool)
    for a in arrs:
        bad |= np.isnan(a).reshape(n, -1).any(axis=1)
    if bad.any():
        if nan_policy == "raise":
            raise MetricError(
                f"{int(bad.sum())} rows with NaN (first at position {int(np.flatnonzero(bad)[0])})"
            )
        if nan_policy == "propagate":
            return arrs, True
        arrs = [a[~bad] for a in arrs]
    return arrs, arrs[0].shape[0] == 0


def mae(y_true: np.ndarray, y_pred: np.ndarray, /, *, nan_policy: NanPolicy = "omit") -> float:
    """Mean absolute error.

    Parameters
    ----------
    y_true, y_pred
        Measured and forecast values (same unit, e.g. kWh per interval).
    nan_policy
        See the module docstring.

    Returns
    -------
    float
        MAE in the unit of the inputs.
    """
    (t, p), empty = _prepare([y_true, y_pred], nan_policy)
    return float("nan") if empty else float(np.mean(np.abs(t - p)))


def rmae(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    /,
    *,
    lower_percentile: float = 1.0,
    upper_percentile: float = 99.0,
    nan_policy: NanPolicy = "omit",
) -> float:
    """Range-normalised MAE: MAE / (P_upper - P_lower) of the measured values scored.

    Parameters
    ----------
    y_true, y_pred
        Measured and forecast values.
    lower_percentile, upper_percentile
        Percentiles (0-100) that define the range of the measured series (1 and 99 as the field
        reports it: robust to a few spikes).
    nan_policy
        See the module docstring (the range uses the rows kept).

    Returns
    -------
    float
        Dimensionless rMAE.

    Raises
    ------
    MetricError
        If the measured range is zero (a flat series has no scale).
    """
    if not 0.0 <= lower_percentile < upper_percentile <= 100.0:
        raise MetricError(f"need 0 <= lower < upper <= 100, got {lower_percentile}, {upper_percentile}")
    (t, p), empty = _prepare([y_true, y_pred], nan_policy)
    if empty:
        return float("nan")
    lo, hi = np.percentile(t, [lower_percentile, upper_percentile])
    if not hi > lo:
        raise MetricError(f"measured range P{upper_percentile:g} - P{lower_percentile:g} is zero")
    return float(np.mean(np.abs(t - p)) / (hi - lo))


def skill_score(
    y_true: np.ndarray, y_pred: np.ndarray, y_reference: np.ndarray, /, *, nan_policy: NanPolicy = "omit"
) -> float:
    """MAE skill against a reference forecast: 1 - MAE(pred) / MAE(reference), on the same rows.

    Parameters
    ----------
    y_true, y_pred, y_reference
        Measured values, the forecast scored, the reference forecast (seasonal naive).
    nan_policy
        See the module docstring; ``"omit"`` keeps the rows where all three are known.

    Returns
    -------
    float
        1 is perfect, 0 is as good as the reference, negative is worse.

    Raises
    ------
    MetricError
        If the reference is perfect (MAE 0): skill is undefined.
    """
    (t, p, r), empty = _prepare([y_true, y_pred, y_reference], nan_policy)
    if empty:
        return float("nan")
    ref = np.mean(np.abs(t - r))
    if ref == 0:
        raise MetricError("reference forecast has zero error: skill is undefined")
    return float(1.0 - np.mean(np.abs(t - p)) / ref)


def _levels(quantiles: Sequence[float], k: int) -> np.ndarray:
    lv = np.asarray(quantiles, dtype="float64")
    if lv.ndim != 1 or lv.size != k:
        raise MetricError(f"{lv.size} quantile levels for {k} forecast columns")
    if np.any((lv <= 0) | (lv >= 1)) or np.any(np.diff(lv) <= 0):
        raise MetricError(f"quantile levels must be ascending in (0, 1), got {list(lv)}")
    return lv


def pinball_loss(
    y_true: np.ndarray,
    y_quantiles: np.ndarray,
    /,
    *,
    quantiles: Sequence[float],
    average: bool = True,
    nan_policy: NanPolicy = "omit",
) -> float | np.ndarray:
    """Pinball (quantile) loss.

    Parameters
    ----------
    y_true
        Measured values, shape ``(n,)``.
    y_quantiles
        Quantile forecasts, shape ``(n, k)``, columns in the order of ``quantiles``.
    quantiles
        Levels in (0, 1), ascending.
    average
        True: one number, the mean over rows and levels; False: the mean per level, shape ``(k,)``.
    nan_policy
        See the module docstring (a row is dropped if any of its values is NaN).

    Returns
    -------
    float or numpy.ndarray
        Loss in the unit of the inputs.
    """
    q = np.asarray(y_quantiles, dtype="float64")
    if q.ndim != 2:
        raise MetricError(f"y_quantiles must be 2-D (n, k), got shape {q.shape}")
    lv = _levels(quantiles, q.shape[1])
    (t, q), empty = _prepare([y_true, q], nan_policy)
    if empty:
        return float("nan") if average else np.full(lv.size, np.nan)
    diff = t[:, None] - q
    loss = np.maximum(lv[None, :] * diff, (lv[None, :] - 1.0) * diff)
    return float(loss.mean()) if average else loss.mean(axis=0)


def crps_from_quantiles(
    y_true: np.ndarray,
    y_quantiles: np.ndarray,
    /,
    *,
    quantiles: Sequence[float],
    nan_policy: NanPolicy = "omit",
) -> float:
    """CRPS approximated from quantile forecasts (midpoint rule over the levels).

    ``CRPS ~= 2 sum_k w_k L_k`` with ``L_k`` the mean pinball loss at level ``k`` and ``w_k`` the width
    of its cell, bounded by the midpoints between neighbouring levels and by 0 and 1.

    Parameters
    ----------
    y_true
        Measured values ``(n,)``.
    y_quantiles
        Quantile forecasts ``(n, k)``.
    quantiles
        Levels, ascending in (0, 1).
    nan_policy
        See the module docstring.

    Returns
    -------
    float
        CRPS in the unit of the inputs.
    """
    per = pinball_loss(y_true, y_quantiles, quantiles=quantiles, average=False, nan_policy=nan_policy)
    lv = np.asarray(quantiles, dtype="float64")
    edges = np.concatenate([[0.0], (lv[1:] + lv[:-1]) / 2.0, [1.0]])
    w = np.diff(edges)
    return float(2.0 * np.sum(w * np.asarray(per)))


def interval_coverage(
    y_true: np.ndarray, lower: np.ndarray, upper: np.ndarray, /, *, nan_policy: NanPolicy = "omit"
) -> float:
    """Share of measured values inside ``[lower, upper]`` (bounds included).

    Parameters
    ----------
    y_true, lower, upper
        Measured values and the interval bounds (the 0.1 and 0.9 quantiles for the 80 % interval).
    nan_policy
        See the module docstring.

    Returns
    -------
    float
        Coverage in [0, 1].
    """
    (t, lo, hi), empty = _prepare([y_true, lower, upper], nan_policy)
    if empty:
        return float("nan")
    return float(np.mean((t >= lo) & (t <= hi)))


# --------------------------------------------------------------------------------------- rolling origin

Predictor = Callable[[pd.Series, pd.Timestamp, pd.DatetimeIndex], Forecast]
"""``predict(known_history, issue_time, targets) -> Forecast``."""

Trainer = Callable[[pd.Series, pd.Timestamp], Predictor]
"""``train(known_history, issue_time) -> predictor``; called at each retrain."""


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Forecasts of a rolling-origin backtest, in long form, and their scores.

    Attributes
    ----------
    frame
        One row per model and target: ``model`` (name in the backtest), ``used_model`` (the model the
        forecast says made it, after fallbacks), ``issue_time``, ``target``, ``y`` (measured), and one
        column per quantile level (float labels).
    levels
        Quantile levels.
    """

    frame: pd.DataFrame
    levels: tuple[float, ...]

    def scores(self, *, reference: str = "seasonal_naive", coverage: float = 0.8) -> pd.DataFrame:
        """Score every model on the targets where it, the reference and the measurement are known.

        Parameters
        ----------
        reference
            Model name used for the skill score.
        coverage
            Nominal central interval scored (its two levels must be in the forecasts).

        Returns
        -------
        pandas.DataFrame
            Index = model; columns ``mae``, ``rmae``, ``skill``, ``pinball``, ``crps``, ``coverage``,
            ``n`` (rows scored), ``days``.
        """
        f = self.frame
        if reference not in set(f["model"]):
            raise ValueError(f"reference model {reference!r} is not in the backtest")
        lo_level, hi_level = (1.0 - coverage) / 2.0, (1.0 + coverage) / 2.0
        lv = np.asarray(self.levels)
        lo_col = self.levels[int(np.flatnonzero(np.isclose(lv, lo_level))[0])]
        hi_col = self.levels[int(np.flatnonzero(np.isclose(lv, hi_level))[0])]
        mid_col = self.levels[int(np.flatnonzero(np.isclose(lv, 0.5))[0])]
        ref = f[f["model"] == reference].set_index("target")[mid_col]
        rows = []
        for name, g in f.groupby("model", sort=False):
            g = g.set_index("target")
            r = ref.reindex(g.index).to_numpy()
            y = g["y"].to_numpy()
            q = g[list(self.levels)].to_numpy()
            ok = ~(np.isnan(y) | np.isnan(r) | np.isnan(q).any(axis=1))
            y, r, q = y[ok], r[ok], q[ok]
            med = q[:, list(self.levels).index(mid_col)]
            rows.append(
                {
                    "model": name,
                    "mae": mae(y, med),
                    "rmae": rmae(y, med),
                    "skill": skill_score(y, med, r),
                    "pinball": pinball_loss(y, q, quantiles=self.levels),
                    "crps": crps_from_quantiles(y, q, quantiles=self.levels),
                    "coverage": interval_coverage(
                        y, q[:, list(self.levels).index(lo_col)], q[:, list(self.levels).index(hi_col)]
                    ),
                    "n": int(ok.sum()),
                    "days": len(np.unique(g["issue_time"].to_numpy()[ok])),
                }
            )
        return pd.DataFrame(rows).set_index("model")


def rolling_origin(
    history: pd.Series,
    models: Mapping[str, Trainer],
    *,
    days: Sequence[str | date | pd.Timestamp] | pd.DatetimeIndex,
    tz: str,
    issue_hour: float = 12.0,
    retrain_every_days: int = 7,
    lookback: pd.Timedelta = pd.Timedelta(days=70),
    resolution: pd.Timedelta = RESOLUTION,
) -> BacktestResult:
    """Day-ahead rolling-origin backtest: issue at D-1 ``issue_hour`` for every delivery day D.

    Parameters
    ----------
    history
        Measured series, kWh per interval, UTC interval starts (the whole span; each model only ever
        receives the part known at its issue time).
    models
        Name -> trainer. A trainer receives the known history and the issue time and returns a
        predictor; baselines return themselves.
    days
        Local delivery days to forecast.
    tz
        IANA time zone of the delivery days.
    issue_hour
        Local issue hour on D-1.
    retrain_every_days
        Retrain when this many days have passed since the last training (>= 1).
    lookback
        History handed to the predictor (what it needs for lags); training gets everything known.
    resolution
        Interval length.

    Returns
    -------
    BacktestResult
        Forecasts of all models on all days.

    Raises
    ------
    LeakageError
        If a forecast claims another issue time than the one it was asked for, or other targets.
    """
    if retrain_every_days < 1:
        raise ValueError("retrain_every_days must be >= 1")
    if not isinstance(history.index, pd.DatetimeIndex) or history.index.tz is None:
        raise ValueError("history must have timezone-aware stamps")
    hist = history.sort_index()
    hist.index = pd.DatetimeIndex(hist.index).tz_convert("UTC")
    parts: list[pd.DataFrame] = []
    predictors: dict[str, Predictor] = {}
    trained_at: dict[str, pd.Timestamp] = {}
    levels: tuple[float, ...] | None = None
    for day in pd.DatetimeIndex([pd.Timestamp(d) for d in days]):  # type: ignore[arg-type]
        issue = day_ahead_issue_time(day, tz=tz, hour=issue_hour)
        targets = delivery_day_index(day, tz=tz, resolution=resolution)
        known = known_at(hist, issue, resolution=resolution)
        recent = known.loc[known.index >= issue - lookback]
        y = hist.reindex(targets).to_numpy(dtype="float64")
        for name, trainer in models.items():
            last = trained_at.get(name)
            if last is None or issue - last >= pd.Timedelta(days=retrain_every_days):
                predictors[name] = trainer(known.copy(), issue)
                trained_at[name] = issue
            fc = predictors[name](recent.copy(), issue, targets)
            if pd.Timestamp(fc.issue_time) != issue or not fc.quantiles.index.equals(targets):
                raise LeakageError(
                    f"{name}: forecast for {day.date()} does not match its issue time or targets"
                )
            if levels is None:
                levels = tuple(float(v) for v in fc.levels)
            elif tuple(float(v) for v in fc.levels) != levels:
                raise ValueError(f"{name}: quantile levels {list(fc.levels)} differ from {list(levels)}")
            part = pd.DataFrame(fc.quantiles.to_numpy(), columns=list(levels))
            part.insert(0, "y", y)
            part.insert(0, "target", targets)
            part.insert(0, "issue_time", issue)
            part.insert(0, "used_model", fc.model)
            part.insert(0, "model", name)
            parts.append(part)
    if not parts or levels is None:
        raise ValueError("no delivery day to backtest")
    return BacktestResult(pd.concat(parts, ignore_index=True), levels)
