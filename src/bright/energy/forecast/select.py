"""Which model forecasts a member, and why: the entry point of the forecast package.

:func:`forecast_member` takes the member's measured history, cuts it at the issue time, looks at it
(how much of the recent past is known, which stretches are flat lines from a stuck meter), and goes
down a fixed chain until a model can serve every target:

* load: the member's trained ``LoadModel`` (``"gbm"``) -> ``"profile_average"`` (>= 7 known days)
  -> ``"persistence"`` (>= 1 known day) -> ``"none"`` (NaN: we do not know, and say so);
* PV: the installation's trained ``PVModel`` (``"pv_gbm"``) -> the physical model scaled by the
  recent measured/physical ratio (``"pv_physical"`` with weather, ``"pv_clear_sky"`` without),
  which needs no history at all.

The forecast's ``model`` says which one made it and its ``reason`` why the ones before it were
skipped. Every forecast is clipped to physical bounds: offtake >= 0; PV 0 when the sun is down and
at most the inverter's AC limit times the interval length. Flat lines are treated as missing data
(for PV only intervals with the sun at least 10 degrees up are judged: nights and low-sun hours
are flat by nature).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from bright.energy.forecast.baselines import (
    QUANTILES,
    Forecast,
    persistence,
    profile_average,
    sort_quantiles,
)
from bright.energy.forecast.features import (
    BRUSSELS,
    RESOLUTION,
    HistoryError,
    LeakageError,
    Site,
    flat_line_mask,
    known_at,
    regular_series,
    solar_geometry,
    targets_for_horizon,
)
from bright.energy.forecast.gbm import LoadModel, train_load_model
from bright.energy.forecast.pv import PVModel, PVSystem, clip_pv, pv_reference_forecast, train_pv_model

Kind = Literal["load", "pv"]


@dataclass(frozen=True)
class HistoryCheck:
    """What the history known at the issue time looks like.

    Attributes
    ----------
    known_days
        Span, in days, from the first to the last known value.
    recent_coverage
        Share of the ``recent_days`` before the issue time with a usable (known, not flat) value.
    flat_intervals
        Intervals of that history masked as flat lines.
    last_known
        Start of the last usable interval (None if there is none).
    """

    known_days: float
    recent_coverage: float
    flat_intervals: int
    last_known: pd.Timestamp | None


def clean_history(
    history: pd.Series,
    issue_time: pd.Timestamp,
    *,
    kind: Kind,
    member: str,
    site: Site = BRUSSELS,
    flat_run_intervals: int = 16,
    lookback: pd.Timedelta | None = None,
    recent_days: int = 14,
    resolution: pd.Timedelta = RESOLUTION,
) -> tuple[pd.Series, HistoryCheck]:
    """The usable history at the issue time: checked, on its grid, cut, flat lines masked.

    Parameters
    ----------
    history
        Measured series, kWh per interval, UTC interval starts.
    issue_time
        Timezone-aware issue time: intervals ending after it are dropped.
    kind
        ``"load"`` (offtake) or ``"pv"``.
    member
        Identifier used in error messages.
    site
        Location (PV nights).
    flat_run_intervals
        Shortest run of identical values treated as a stuck meter (16 = 4 h).
    lookback
        Keep only this much history before the issue time (None = all).
    recent_days
        Window of :attr:`HistoryCheck.recent_coverage`.
    resolution
        Interval length.

    Returns
    -------
    tuple
        ``(series, check)``: the usable series (NaN where missing or flat) and its diagnosis.

    Raises
    ------
    HistoryError
        If the series is malformed or has a negative value (meters measure gross energy >= 0).
    """
    issue = pd.Timestamp(issue_time)
    if issue.tzinfo is None:
        raise ValueError("issue_time must be timezone-aware")
    issue = issue.tz_convert("UTC")
    h = history
    if lookback is not None and len(h):
        if not isinstance(h.index, pd.DatetimeIndex) or h.index.tz is None:
            raise HistoryError(f"{member}: timestamps must be timezone-aware (UTC)")
        h = h.loc[h.index >= issue - lookback]
    y = known_at(regular_series(h, name=member, resolution=resolution), issue, resolution=resolution)
    neg = (y < 0).to_numpy()
    if neg.any():
        bad = y.index[np.flatnonzero(neg)[0]]
        raise HistoryError(
            f"{member}: negative {kind} value {y.loc[bad]} kWh at {bad.isoformat()} (meters give gross energy >= 0)"
        )
    ignore = None
    if kind == "pv" and len(y):
        # Low sun gives natural runs of zeros (and night is flat by nature): only judge intervals
        # with the sun at least 10 degrees up.
        geo = solar_geometry(pd.DatetimeIndex(y.index), site=site, resolution=resolution)
        ignore = geo["solar_elevation_deg"].to_numpy() < 10.0
    flat = (
        flat_line_mask(y.to_numpy(), min_run=flat_run_intervals, ignore=ignore)
        if len(y)
        else np.zeros(0, bool)
    )
    y = y.where(~flat)
    per_day = int(pd.Timedelta(days=1) / resolution)
    recent = y.loc[y.index >= issue - pd.Timedelta(days=recent_days)]
    coverage = float(recent.notna().sum()) / (recent_days * per_day)
    valid = y.dropna()
    known_days = (
        float((valid.index[-1] - valid.index[0] + resolution) / pd.Timedelta(days=1)) if len(valid) else 0.0
    )
    check = HistoryCheck(
        known_days=known_days,
        recent_coverage=coverage,
        flat_intervals=int(flat.sum()),
        last_known=valid.index[-1] if len(valid) else None,
    )
    return y, check


def _note(check: HistoryCheck) -> str:
    flat = f", {check.flat_intervals} flat-line intervals masked" if check.flat_intervals else ""
    return (
        f"{check.known_days:.1f} d known, {100 * check.recent_coverage:.0f} % of the last 14 d usable{flat}"
    )


def _bounded_load(f: Forecast, reason: str, member: str | None) -> Forecast:
    q = sort_quantiles(np.maximum(f.quantiles.to_numpy(), 0.0))
    return Forecast(
        pd.DataFrame(q, index=f.quantiles.index, columns=list(f.levels)),
        f.issue_time,
        f.model,
        reason=reason,
        member=member,
    )


def forecast_member(
    history: pd.Series,
    issue_time: pd.Timestamp,
    horizon: str | pd.Timedelta = "day-ahead",
    *,
    kind: Kind = "load",
    model: LoadModel | PVModel | None = None,
    pv_system: PVSystem | None = None,
    site: Site | None = None,
    weather: pd.DataFrame | None = None,
    quantiles: Sequence[float] = QUANTILES,
    member: str | None = None,
    min_recent_coverage: float = 0.5,
    flat_run_intervals: int = 16,
    resolution: pd.Timedelta = RESOLUTION,
) -> Forecast:
    """Forecast one member's offtake or PV production, choosing the model the data allow.

    Parameters
    ----------
    history
        Measured series, kWh per interval, UTC interval starts (offtake for ``"load"``, PV production
        for ``"pv"``). Values of intervals ending after ``issue_time`` are ignored.
    issue_time
        Timezone-aware issue time.
    horizon
        ``"day-ahead"`` (the next local day) or a ``Timedelta`` from the issue time (intraday).
    kind
        ``"load"`` or ``"pv"``.
    model
        The member's trained model, if any (``LoadModel`` for load, ``PVModel`` for PV).
    pv_system
        The installation (required for PV; defaults to ``model.system``).
    site
        Location (clock, holidays, sun); default: the model's, the PV system's, else Brussels.
    weather
        Hourly weather over the targets (forecast) and the recent past, if available.
    quantiles
        Levels of the fallbacks (a trained model keeps its own).
    member
        Identifier carried into the forecast and error messages.
    min_recent_coverage
        Share of the last 14 days that must be usable for a trained model to be trusted.
    flat_run_intervals
        Shortest run of identical values treated as a stuck meter.
    resolution
        Interval length.

    Returns
    -------
    Forecast
        Quantiles in kWh per interval within physical bounds, ``model`` and ``reason`` filled in.

    Raises
    ------
    HistoryError
        Malformed or negative history.
    LeakageError
        If the model was trained on data after the issue time.
    ValueError
        Unknown kind, a model of the wrong kind, PV without a system.
    """
    name = (
        member
        or (model.member if model is not None and model.member else None)
        or str(history.name or "member")
    )
    issue = pd.Timestamp(issue_time)
    if issue.tzinfo is None:
        raise ValueError("issue_time must be timezone-aware")
    issue = issue.tz_convert("UTC")
    if kind == "load":
        if model is not None and not isinstance(model, LoadModel):
            raise ValueError(f"{name}: a load forecast needs a LoadModel, got {type(model).__name__}")
        return _forecast_load(
            history,
            issue,
            horizon,
            model,
            site,
            weather,
            quantiles,
            name,
            min_recent_coverage,
            flat_run_intervals,
            resolution,
        )
    if kind == "pv":
        if model is not None and not isinstance(model, PVModel):
            raise ValueError(f"{name}: a PV forecast needs a PVModel, got {type(model).__name__}")
        system = pv_system or (model.system if model is not None else None)
        if system is None:
            raise ValueError(f"{name}: a PV forecast needs the PV system (kWp, orientation, site)")
        return _forecast_pv(
            history,
            issue,
            horizon,
            model,
            system,
            weather,
            quantiles,
            name,
            min_recent_coverage,
            flat_run_intervals,
            resolution,
        )
    raise ValueError(f"{name}: kind must be 'load' or 'pv', got {kind!r}")


def _forecast_load(
    history: pd.Series,
    issue: pd.Timestamp,
    horizon: str | pd.Timedelta,
    model: LoadModel | None,
    site: Site | None,
    weather: pd.DataFrame | None,
    quantiles: Sequence[float],
    name: str,
    min_recent_coverage: float,
    flat_run_intervals: int,
    resolution: pd.Timedelta,
) -> Forecast:
    where = site or (model.site if model is not None else BRUSSELS)
    if model is not None and issue < model.trained_until:
        raise LeakageError(
            f"{name}: model trained up to {model.trained_until.isoformat()} used at issue time {issue.isoformat()}"
        )
    y, check = clean_history(
        history,
        issue,
        kind="load",
        member=name,
        site=where,
        flat_run_intervals=flat_run_intervals,
        lookback=pd.Timedelta(days=70),
        resolution=resolution,
    )
    targets = targets_for_horizon(issue, horizon, tz=where.tz, resolution=resolution)
    note = _note(check)
    skipped: list[str] = []
    if model is not None:
        if check.recent_coverage < min_recent_coverage:
            skipped.append(
                f"gbm: only {100 * check.recent_coverage:.0f} % of the last 14 d usable (< {100 * min_recent_coverage:.0f} %)"
            )
        elif model.uses_weather and weather is None:
            skipped.append("gbm: trained with weather, none given")
        else:
            try:
                f = model.predict(y, issue, targets, weather=weather, resolution=resolution)
            except LeakageError as exc:
                skipped.append(f"gbm: {exc}")
            else:
                if np.isnan(f.median.to_numpy()).any():
                    skipped.append("gbm: NaN forecast")
                else:
                    return _bounded_load(f, f"trained model; {note}", name)
    else:
        skipped.append("gbm: no trained model")
    candidates: list[tuple[str, float]] = [("profile_average", 7.0), ("persistence", 1.0)]
    best: Forecast | None = None
    for label, need_days in candidates:
        if check.known_days < need_days:
            skipped.append(f"{label}: {check.known_days:.1f} d known, needs {need_days:g}")
            continue
        fn = profile_average if label == "profile_average" else persistence
        f = fn(y, issue, targets, tz=where.tz, quantiles=quantiles, resolution=resolution, member=name)
        missing = int(np.isnan(f.median.to_numpy()).sum())
        if missing == 0:
            return _bounded_load(f, "; ".join([*skipped, note]), name)
        skipped.append(f"{label}: {missing} of {len(targets)} targets without data")
        if best is None or missing < int(np.isnan(best.median.to_numpy()).sum()):
            best = f
    if best is not None and int(np.isnan(best.median.to_numpy()).sum()) < len(targets):
        reason = "; ".join([*skipped, note, f"kept {best.model}: the targets it cannot serve stay NaN"])
        return _bounded_load(best, reason, name)
    levels = sorted(float(q) for q in quantiles)
    empty = pd.DataFrame(np.full((len(targets), len(levels)), np.nan), index=targets, columns=levels)
    return Forecast(
        empty,
        issue,
        "none",
        reason="; ".join([*skipped, note, "no usable history: forecast unknown"]),
        member=name,
    )


def _forecast_pv(
    history: pd.Series,
    issue: pd.Timestamp,
    horizon: str | pd.Timedelta,
    model: PVModel | None,
    system: PVSystem,
    weather: pd.DataFrame | None,
    quantiles: Sequence[float],
    name: str,
    min_recent_coverage: float,
    flat_run_intervals: int,
    resolution: pd.Timedelta,
) -> Forecast:
    if model is not None and issue < model.trained_until:
        raise LeakageError(
            f"{name}: PV model trained up to {model.trained_until.isoformat()} used at issue time {issue.isoformat()}"
        )
    y, check = clean_history(
        history,
        issue,
        kind="pv",
        member=name,
        site=system.site,
        flat_run_intervals=flat_run_intervals,
        lookback=pd.Timedelta(days=30),
        resolution=resolution,
    )
    targets = targets_for_horizon(issue, horizon, tz=system.site.tz, resolution=resolution)
    note = _note(check)
    skipped: list[str] = []
    if model is not None:
        if check.recent_coverage < min_recent_coverage:
            skipped.append(
                f"pv_gbm: only {100 * check.recent_coverage:.0f} % of the last 14 d usable (< {100 * min_recent_coverage:.0f} %)"
            )
        elif model.uses_weather and weather is None:
            skipped.append("pv_gbm: trained with weather, none given")
        else:
            try:
                f = model.predict(y, issue, targets, weather=weather, resolution=resolution)
            except LeakageError as exc:
                skipped.append(f"pv_gbm: {exc}")
            else:
                return Forecast(
                    f.quantiles, f.issue_time, f.model, reason=f"trained PV correction; {note}", member=name
                )
    else:
        skipped.append("pv_gbm: no trained model")
    f = pv_reference_forecast(
        system,
        y if len(y) else None,
        issue,
        targets,
        weather=weather,
        quantiles=quantiles,
        resolution=resolution,
        member=name,
    )
    sun = solar_geometry(targets, site=system.site, resolution=resolution)["sun_up"].to_numpy()
    q = clip_pv(f.quantiles.to_numpy(), sun, system.max_energy_kwh(resolution))
    return Forecast(
        pd.DataFrame(q, index=targets, columns=list(f.levels)),
        issue,
        f.model,
        reason="; ".join([*skipped, f.reason, note]),
        member=name,
    )


@dataclass(frozen=True)
class TrainingOutcome:
    """Result of :func:`train_member_model`: the model, or None and why not."""

    model: LoadModel | PVModel | None
    reason: str


def train_member_model(
    history: pd.Series,
    *,
    until: pd.Timestamp,
    kind: Kind = "load",
    site: Site = BRUSSELS,
    pv_system: PVSystem | None = None,
    weather: pd.DataFrame | None = None,
    member: str | None = None,
    min_days: int = 28,
    flat_run_intervals: int = 16,
    **options: Any,
) -> TrainingOutcome:
    """Train a member's model if its history allows it (scheduled or on-demand retraining).

    Parameters
    ----------
    history
        Measured series, kWh per interval, UTC interval starts.
    until
        Timezone-aware end of the training data.
    kind
        ``"load"`` or ``"pv"``.
    site
        Location (load); PV uses ``pv_system.site``.
    pv_system
        The installation (PV).
    weather
        Optional hourly weather over the training period.
    member
        Identifier.
    min_days
        Fewest days of known history to train at all (below it the fallbacks serve the member).
    flat_run_intervals
        Shortest run of identical values masked as a stuck meter before training.
    **options
        Passed on to :func:`~bright.energy.forecast.gbm.train_load_model` or
        :func:`~bright.energy.forecast.pv.train_pv_model` (``window``, ``params``...).

    Returns
    -------
    TrainingOutcome
        The model (None if the history is too short or unusable) and the reason.
    """
    name = member or str(history.name or "member")
    where = pv_system.site if (kind == "pv" and pv_system is not None) else site
    y, check = clean_history(
        history, until, kind=kind, member=name, site=where, flat_run_intervals=flat_run_intervals
    )
    if check.known_days < min_days:
        return TrainingOutcome(
            None, f"{name}: {check.known_days:.1f} d of usable history, training needs {min_days}"
        )
    try:
        if kind == "load":
            m: LoadModel | PVModel = train_load_model(
                y, until=until, site=site, weather=weather, member=name, **options
            )
        elif kind == "pv":
            if pv_system is None:
                raise ValueError(f"{name}: a PV model needs the PV system")
            m = train_pv_model(y, pv_system, until=until, weather=weather, member=name, **options)
        else:
            raise ValueError(f"{name}: kind must be 'load' or 'pv', got {kind!r}")
    except HistoryError as exc:
        return TrainingOutcome(None, str(exc))
    return TrainingOutcome(
        m, f"trained on {m.trained_from.isoformat()} .. {m.trained_until.isoformat()}; {_note(check)}"
    )
