"""PV production: a physical model (pvlib, PVWatts-style) and a learned correction of it.

Physical model, per interval (value stamped at the interval start, sun taken at its middle)::

    POA      = transposition(GHI, DNI, DHI; tilt, azimuth, sun)      Hay-Davies sky diffuse, pvlib
    T_cell   = T_air + (NOCT - 20) / 800 * POA                        Ross, deg C
    P_dc     = kWp * POA / 1000 * (1 + gamma (T_cell - 25)) * (1 - losses)      PVWatts DC, kW
    P_ac     = PVWatts inverter(P_dc; AC limit, nominal efficiency)             kW, <= AC limit
    E        = P_ac * dt                                              kWh per interval

with ``E = 0`` when the sun stays below the horizon for the whole interval. GHI/DNI/DHI and the air
temperature come from a weather series (a forecast in operation, a typical meteorological year as
climatology) or, without one, from the Ineichen clear-sky model (an upper envelope, and 12 deg C).

Learned correction (:class:`PVModel`): LightGBM quantile models of the *capacity factor*
``E / (kWp dt)`` on daylight intervals, whose inputs are the physical model's capacity factor
(clear-sky, and with the weather when there is one), the sun position, the calendar, and what the
member's meter said before the issue time: the clearness of the last 24 h and 7 days (measured
energy / clear-sky physical energy) and the capacity factor two days before at the same clock time.
It learns the orientation, shading, soiling and the local climate that the nameplate data miss.
Quantiles are clipped to ``[0, AC limit * dt]`` and set to 0 at night.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from bright.energy.forecast.baselines import QUANTILES, Forecast, residual_quantiles, sort_quantiles
from bright.energy.forecast.features import (
    BRUSSELS,
    RESOLUTION,
    HistoryError,
    LeakageError,
    Site,
    calendar_features,
    day_ahead_issue_times,
    known_at,
    lag_features,
    profile_mean,
    regular_series,
    solar_geometry,
    weather_to_intervals,
)
from bright.energy.forecast.gbm import GBMParams, fit_calibrated_boosters, predict_quantile_boosters

FORMAT = "bright-forecast-pv/1"
DEFAULT_AIR_TEMPERATURE_C = 12.0
"""Air temperature assumed without a weather series (Belgian annual mean is about 11 deg C)."""


@dataclass(frozen=True)
class PVSystem:
    """A PV installation as its owner knows it.

    Parameters
    ----------
    kwp
        DC nameplate power in kWp (> 0).
    tilt_deg
        Panel tilt from horizontal, degrees (0-90).
    azimuth_deg
        Panel azimuth, degrees clockwise from north (pvlib convention: 180 = south, 90 = east).
    site
        Location.
    ac_kw
        Inverter AC limit in kW (default: ``kwp``, a DC/AC ratio of 1).
    gamma_pdc_per_c
        Power temperature coefficient, 1/deg C (crystalline silicon about -0.004).
    noct_c
        Nominal operating cell temperature, deg C (Ross model).
    losses
        System losses as a fraction (soiling, wiring, mismatch...; PVWatts default 0.14).
    inverter_efficiency
        Nominal inverter efficiency.
    albedo
        Ground reflectance.
    """

    kwp: float
    tilt_deg: float = 35.0
    azimuth_deg: float = 180.0
    site: Site = BRUSSELS
    ac_kw: float | None = None
    gamma_pdc_per_c: float = -0.004
    noct_c: float = 45.0
    losses: float = 0.14
    inverter_efficiency: float = 0.96
    albedo: float = 0.2

    def __post_init__(self) -> None:
        if not self.kwp > 0:
            raise ValueError(f"PV kwp must be > 0, got {self.kwp}")
        if not 0.0 <= self.tilt_deg <= 90.0:
            raise ValueError(f"PV tilt_deg must be in [0, 90], got {self.tilt_deg}")
        if not 0.0 <= self.azimuth_deg <= 360.0:
            raise ValueError(f"PV azimuth_deg must be in [0, 360], got {self.azimuth_deg}")
        if self.ac_kw is not None and not self.ac_kw > 0:
            raise ValueError(f"PV ac_kw must be > 0, got {self.ac_kw}")
        if not 0.0 <= self.losses < 1.0:
            raise ValueError(f"PV losses must be in [0, 1), got {self.losses}")

    @property
    def ac_limit_kw(self) -> float:
        """Maximum AC output, kW (never above the DC nameplate)."""
        return min(self.ac_kw if self.ac_kw is not None else self.kwp, self.kwp)

    def max_energy_kwh(self, resolution: pd.Timedelta = RESOLUTION) -> float:
        """Largest possible energy in one interval, kWh."""
        return self.ac_limit_kw * resolution / pd.Timedelta(hours=1)


def pv_physical(
    system: PVSystem,
    targets: pd.DatetimeIndex,
    *,
    weather: pd.DataFrame | None = None,
    resolution: pd.Timedelta = RESOLUTION,
) -> pd.Series:
    """Physical (PVWatts-style) PV energy per interval.

    Parameters
    ----------
    system
        The installation.
    targets
        UTC interval starts.
    weather
        Optional hourly weather with ``ghi_w_m2``, ``dni_w_m2``, ``dhi_w_m2`` (W/m2, interval means)
        and ``temp_air_c`` (deg C); without it (or where it has no irradiance) the clear sky is used.
    resolution
        Interval length.

    Returns
    -------
    pandas.Series
        AC energy, kWh per interval, in ``[0, ac_limit_kw * dt]``, 0 when the sun is down all the
        interval; NaN where the weather is missing.
    """
    import pvlib

    targets = pd.DatetimeIndex(targets).tz_convert("UTC")
    geo = solar_geometry(targets, site=system.site, resolution=resolution)
    ghi = geo["clearsky_ghi_w_m2"].to_numpy()
    dni = geo["clearsky_dni_w_m2"].to_numpy()
    dhi = geo["clearsky_dhi_w_m2"].to_numpy()
    temp = np.full(len(targets), DEFAULT_AIR_TEMPERATURE_C)
    if weather is not None:
        wq = weather_to_intervals(weather, targets, site=system.site, resolution=resolution)
        if {"ghi_w_m2", "dni_w_m2", "dhi_w_m2"} <= set(wq.columns):
            ghi, dni, dhi = (wq[c].to_numpy() for c in ("ghi_w_m2", "dni_w_m2", "dhi_w_m2"))
        if "temp_air_c" in wq:
            temp = np.where(
                np.isnan(wq["temp_air_c"].to_numpy()), DEFAULT_AIR_TEMPERATURE_C, wq["temp_air_c"].to_numpy()
            )
    zen = geo["solar_zenith_deg"].to_numpy()
    az = geo["solar_azimuth_deg"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        poa = pvlib.irradiance.get_total_irradiance(
            system.tilt_deg,
            system.azimuth_deg,
            zen,
            az,
            dni,
            ghi,
            dhi,
            dni_extra=geo["dni_extra_w_m2"].to_numpy(),
            albedo=system.albedo,
            model="haydavies",
        )
    poa_global = np.clip(np.nan_to_num(np.asarray(poa["poa_global"], dtype="float64"), nan=0.0), 0.0, None)
    poa_global = np.where(np.isnan(ghi), np.nan, poa_global)
    t_cell = pvlib.temperature.ross(poa_global, temp, noct=system.noct_c)
    p_dc = pvlib.pvsystem.pvwatts_dc(poa_global, t_cell, system.kwp, system.gamma_pdc_per_c) * (
        1.0 - system.losses
    )
    pdc0_inverter = system.ac_limit_kw / system.inverter_efficiency
    with np.errstate(invalid="ignore", divide="ignore"):
        p_ac = pvlib.inverter.pvwatts(
            np.clip(p_dc, 0.0, None), pdc0_inverter, eta_inv_nom=system.inverter_efficiency
        )
    p_ac = np.clip(np.asarray(p_ac, dtype="float64"), 0.0, system.ac_limit_kw)
    energy = p_ac * (resolution / pd.Timedelta(hours=1))
    energy = np.where(geo["sun_up"].to_numpy() > 0, energy, 0.0)
    energy = np.where(np.isnan(poa_global) & (geo["sun_up"].to_numpy() > 0), np.nan, energy)
    return pd.Series(energy, index=targets, name="pv_kwh")


def clip_pv(values: np.ndarray, sun_up: np.ndarray, max_energy_kwh: float) -> np.ndarray:
    """Physical bounds of PV quantiles: 0 at night, within ``[0, max_energy_kwh]`` by day, sorted.

    Parameters
    ----------
    values
        ``(n, k)`` quantile forecasts, kWh per interval.
    sun_up
        ``(n,)`` 1 where the sun is above the horizon during the interval.
    max_energy_kwh
        Largest possible energy per interval, kWh.
    """
    v = np.clip(np.asarray(values, dtype="float64"), 0.0, max_energy_kwh)
    v[np.asarray(sun_up) <= 0] = 0.0
    return sort_quantiles(v)


# ---------------------------------------------------------------------------------- learned model


@dataclass(frozen=True)
class PVFeatureSpec:
    """Which features the PV correction uses.

    Parameters
    ----------
    lag_days
        Calendar-day lags of the measured capacity factor (>= 2 for a D-1 issue).
    recent_days
        Days averaged at the same clock time for the recent profile of the capacity factor.
    issue_hour
        Local clock hour of the day-ahead issue on D-1.
    weather
        Use the weather-driven physical model when a weather series is given.
    """

    lag_days: tuple[int, ...] = (2,)
    recent_days: int = 7
    issue_hour: float = 12.0
    weather: bool = True


def _clearness(
    measured: pd.Series,
    reference: pd.Series,
    issue_times: pd.DatetimeIndex,
    width: int,
    resolution: pd.Timedelta,
) -> np.ndarray:
    """Measured / reference energy over the ``width`` intervals before each issue time."""
    both = ~(measured.isna() | reference.isna())
    m = measured.where(both, 0.0).rolling(width, min_periods=1).sum()
    r = reference.where(both, 0.0).rolling(width, min_periods=1).sum()
    n = both.astype("float64").rolling(width, min_periods=1).sum()
    at = issue_times - resolution
    mv, rv, nv = (s.reindex(at).to_numpy() for s in (m, r, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((nv >= width / 2) & (rv > 0), mv / rv, np.nan)
    return np.clip(out, 0.0, 2.0)


def pv_feature_frame(
    cf: pd.Series,
    targets: pd.DatetimeIndex,
    issue_times: pd.DatetimeIndex | pd.Timestamp,
    *,
    system: PVSystem,
    spec: PVFeatureSpec,
    weather: pd.DataFrame | None = None,
    resolution: pd.Timedelta = RESOLUTION,
) -> pd.DataFrame:
    """The design matrix of the PV correction.

    Parameters
    ----------
    cf
        Measured capacity factor (energy / (kWp dt)) on its regular UTC grid.
    targets
        UTC interval starts.
    issue_times
        Issue time per target (or one for all).
    system
        The installation.
    spec
        Feature choice.
    weather
        Optional hourly weather.
    resolution
        Interval length.

    Returns
    -------
    pandas.DataFrame
        One row per target; includes ``sun_up`` (not a model input, used to mask the night).
    """
    site = system.site
    n = len(targets)
    issues = (
        pd.DatetimeIndex([pd.Timestamp(issue_times).tz_convert("UTC")] * n)
        if isinstance(issue_times, pd.Timestamp)
        else pd.DatetimeIndex(issue_times).tz_convert("UTC")
    )
    e_max = system.kwp * (resolution / pd.Timedelta(hours=1))
    geo = solar_geometry(targets, site=site, resolution=resolution)
    cal = calendar_features(targets, site=site)[["quarter_hour", "doy_sin", "doy_cos"]]
    out = pd.concat([cal, geo[["solar_elevation_deg", "solar_azimuth_deg", "sun_up"]]], axis=1)
    out["phys_clearsky_cf"] = pv_physical(system, targets, resolution=resolution).to_numpy() / e_max
    if spec.weather and weather is not None:
        out["phys_weather_cf"] = (
            pv_physical(system, targets, weather=weather, resolution=resolution).to_numpy() / e_max
        )
    # Clearness of the recent past, as known at the issue time.
    if len(cf):
        span = pd.date_range(cf.index[0], cf.index[-1], freq=resolution)
        ref = pv_physical(system, span, resolution=resolution) / e_max
        per_day = int(pd.Timedelta(days=1) / resolution)
        out["clearness_24h"] = _clearness(cf, ref, issues, per_day, resolution)
        out["clearness_7d"] = _clearness(cf, ref, issues, 7 * per_day, resolution)
    else:
        out["clearness_24h"] = np.nan
        out["clearness_7d"] = np.nan
    lags = lag_features(
        cf, targets, issues, tz=site.tz, lag_days=spec.lag_days, resolution=resolution, prefix="cf"
    )
    out = pd.concat([out, lags], axis=1)
    out["cf_recent_profile"] = profile_mean(
        cf, targets, issues, tz=site.tz, step_days=1, count=spec.recent_days, resolution=resolution
    )
    return out


@dataclass(eq=False)
class PVModel:
    """A trained PV correction for one installation, with its provenance.

    Attributes
    ----------
    system
        The installation.
    boosters
        Level -> booster predicting the capacity factor on daylight intervals.
    features
        Model inputs, in training order.
    spec
        Feature choice.
    offsets
        Level -> conformal shift of the capacity factor.
    trained_from, trained_until
        First target and end of the training data (UTC).
    member
        Member identifier.
    scores
        Backtest scores attached by the caller.
    params
        LightGBM settings.
    uses_weather
        Trained with the weather-driven physical model as input.
    """

    system: PVSystem
    boosters: dict[float, lgb.Booster]
    features: tuple[str, ...]
    spec: PVFeatureSpec
    offsets: dict[float, float]
    trained_from: pd.Timestamp
    trained_until: pd.Timestamp
    member: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    params: GBMParams = field(default_factory=GBMParams)
    uses_weather: bool = False

    @property
    def quantiles(self) -> tuple[float, ...]:
        """Quantile levels, ascending."""
        return tuple(sorted(self.boosters))

    def predict(
        self,
        history: pd.Series,
        issue_time: pd.Timestamp,
        targets: pd.DatetimeIndex,
        *,
        weather: pd.DataFrame | None = None,
        resolution: pd.Timedelta = RESOLUTION,
    ) -> Forecast:
        """Forecast the PV energy of ``targets`` from what is known at ``issue_time``.

        Parameters
        ----------
        history
            Measured PV energy (gross injection of the PV meter), kWh per interval, UTC interval
            starts; values after ``issue_time`` are ignored.
        issue_time
            Timezone-aware issue time (not before ``trained_until``).
        targets
            UTC interval starts.
        weather
            Hourly weather covering the targets, required if the model uses it.
        resolution
            Interval length.

        Returns
        -------
        Forecast
            Model ``"pv_gbm"``, kWh per interval, 0 at night, at most the AC limit times dt.
        """
        issue = pd.Timestamp(issue_time)
        if issue.tzinfo is None:
            raise ValueError("issue_time must be timezone-aware")
        issue = issue.tz_convert("UTC")
        if issue < self.trained_until:
            raise LeakageError(
                f"PV model trained on data up to {self.trained_until.isoformat()} cannot forecast from {issue.isoformat()}"
            )
        if self.uses_weather and weather is None:
            raise ValueError("this PV model was trained with weather: pass weather")
        name = self.member or str(history.name or "pv")
        span = pd.Timedelta(days=max(*self.spec.lag_days, self.spec.recent_days + 2, 8) + 2)
        e_max = self.system.kwp * (resolution / pd.Timedelta(hours=1))
        y = known_at(
            regular_series(history.loc[history.index >= issue - span], name=name, resolution=resolution),
            issue,
            resolution=resolution,
        )
        targets = pd.DatetimeIndex(targets).tz_convert("UTC")
        x = pv_feature_frame(
            y / e_max,
            targets,
            issue,
            system=self.system,
            spec=self.spec,
            weather=weather,
            resolution=resolution,
        )
        sun = x["sun_up"].to_numpy()
        q = np.zeros((len(targets), len(self.quantiles)))
        day = sun > 0
        if day.any():
            q[day] = predict_quantile_boosters(self.boosters, x.loc[day, list(self.features)])
            q[day] += np.array([self.offsets.get(lv, 0.0) for lv in self.quantiles])[None, :]
        q = clip_pv(q * e_max, sun, self.system.max_energy_kwh(resolution))
        return Forecast(
            pd.DataFrame(q, index=targets, columns=list(self.quantiles)),
            issue,
            "pv_gbm",
            reason="trained PV correction",
            member=self.member,
        )

    def to_bytes(self) -> bytes:
        """Serialise the model (LightGBM text models + JSON metadata) to bytes."""
        system = asdict(self.system)
        meta = {
            "format": FORMAT,
            "system": system,
            "features": list(self.features),
            "spec": asdict(self.spec),
            "offsets": {repr(k): v for k, v in self.offsets.items()},
            "trained_from": self.trained_from.isoformat(),
            "trained_until": self.trained_until.isoformat(),
            "member": self.member,
            "scores": self.scores,
            "params": asdict(self.params),
            "uses_weather": self.uses_weather,
            "boosters": {repr(k): b.model_to_string() for k, b in self.boosters.items()},
        }
        return json.dumps(meta).encode("utf-8")

    @classmethod
    def from_bytes(cls, blob: bytes) -> PVModel:
        """Restore a model written by :meth:`to_bytes` (ValueError if it is not one)."""
        try:
            meta = json.loads(blob.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a serialised PV model: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise ValueError(f"unknown model format {meta.get('format')!r}, expected {FORMAT!r}")
        sysd = meta["system"]
        sysd["site"] = Site(**sysd["site"])
        spec = meta["spec"]
        spec["lag_days"] = tuple(spec["lag_days"])
        return cls(
            system=PVSystem(**sysd),
            boosters={float(k): lgb.Booster(model_str=v) for k, v in meta["boosters"].items()},
            features=tuple(meta["features"]),
            spec=PVFeatureSpec(**spec),
            offsets={float(k): float(v) for k, v in meta["offsets"].items()},
            trained_from=pd.Timestamp(meta["trained_from"]),
            trained_until=pd.Timestamp(meta["trained_until"]),
            member=meta["member"],
            scores={k: float(v) for k, v in meta["scores"].items()},
            params=GBMParams(**meta["params"]),
            uses_weather=bool(meta["uses_weather"]),
        )


def _check_pv_history(y: pd.Series, system: PVSystem, name: str, resolution: pd.Timedelta) -> None:
    tol = 1e-9
    if (y < -tol).any():
        bad = y.index[np.flatnonzero((y < -tol).to_numpy())[0]]
        raise HistoryError(f"{name}: negative PV energy {y.loc[bad]} kWh at {bad.isoformat()}")
    limit = system.kwp * (resolution / pd.Timedelta(hours=1)) * 1.2
    if (y > limit).any():
        bad = y.index[np.flatnonzero((y > limit).to_numpy())[0]]
        raise HistoryError(
            f"{name}: PV energy {y.loc[bad]} kWh at {bad.isoformat()} exceeds 1.2 x kWp x dt = {limit:.3f} kWh "
            "(wrong kWp or wrong unit?)"
        )


def train_pv_model(
    history: pd.Series,
    system: PVSystem,
    *,
    until: pd.Timestamp,
    window: pd.Timedelta = pd.Timedelta(days=365),
    spec: PVFeatureSpec = PVFeatureSpec(),
    params: GBMParams = GBMParams(),
    quantiles: Sequence[float] = QUANTILES,
    calibration_days: int = 28,
    refit: bool = False,
    weather: pd.DataFrame | None = None,
    member: str | None = None,
    resolution: pd.Timedelta = RESOLUTION,
) -> PVModel:
    """Train the learned correction of a PV installation on what is known at ``until``.

    Parameters
    ----------
    history
        Measured PV energy, kWh per interval, UTC interval starts.
    system
        The installation (kWp, orientation, site).
    until
        Timezone-aware end of the training data.
    window
        Training period before ``until``.
    spec
        Feature choice.
    params
        LightGBM settings.
    quantiles
        Levels (must include 0.5).
    calibration_days
        Days held out at the end to calibrate the interval (see :mod:`bright.energy.forecast.gbm`).
    refit
        Refit on the whole window after calibration.
    weather
        Optional hourly weather over the training period (then needed to predict too).
    member
        Member identifier.
    resolution
        Interval length.

    Returns
    -------
    PVModel

    Raises
    ------
    HistoryError
        If the history is malformed, negative, above the installation's reach, or has fewer than 14
        days of daylight data.
    """
    until = pd.Timestamp(until)
    if until.tzinfo is None:
        raise ValueError("until must be timezone-aware")
    until = until.tz_convert("UTC")
    if min(spec.lag_days) < 2:
        raise LeakageError("a day-ahead model issued on D-1 needs lag_days >= 2")
    levels = tuple(sorted(float(q) for q in quantiles))
    if 0.5 not in levels:
        raise ValueError("quantiles must include 0.5")
    name = member or str(history.name or "pv")
    y = known_at(regular_series(history, name=name, resolution=resolution), until, resolution=resolution)
    _check_pv_history(y.dropna(), system, name, resolution)
    e_max = system.kwp * (resolution / pd.Timedelta(hours=1))
    cf = y / e_max
    lookback = pd.Timedelta(days=max(*spec.lag_days, spec.recent_days + 2, 8))
    targets = y.index[(y.index >= until - window) & (y.index >= y.index[0] + lookback)] if len(y) else y.index
    targets = targets[~np.isnan(cf.reindex(targets).to_numpy())]
    use_weather = spec.weather and weather is not None
    issues = day_ahead_issue_times(targets, tz=system.site.tz, hour=spec.issue_hour)
    x = pv_feature_frame(
        cf,
        targets,
        issues,
        system=system,
        spec=spec,
        weather=weather if use_weather else None,
        resolution=resolution,
    )
    day = x["sun_up"].to_numpy() > 0
    per_day = int(pd.Timedelta(days=1) / resolution)
    if day.sum() < 14 * per_day // 2:
        raise HistoryError(
            f"{name}: {int(day.sum())} known daylight intervals before {until.isoformat()}, need 14 days"
        )
    features = tuple(c for c in x.columns if c != "sun_up")
    boosters, offsets = fit_calibrated_boosters(
        x.loc[day, list(features)],
        cf.reindex(targets[day]).to_numpy(),
        targets[day],
        quantiles=levels,
        params=params,
        calibration_days=calibration_days,
        refit=refit,
    )
    return PVModel(
        system=system,
        boosters=boosters,
        features=features,
        spec=spec,
        offsets=offsets,
        trained_from=targets[0],
        trained_until=until,
        member=member,
        params=params,
        uses_weather=use_weather,
    )


# ------------------------------------------------------------------------------- reference forecast


def pv_reference_forecast(
    system: PVSystem,
    history: pd.Series | None,
    issue_time: pd.Timestamp,
    targets: pd.DatetimeIndex,
    *,
    weather: pd.DataFrame | None = None,
    quantiles: Sequence[float] = QUANTILES,
    ratio_days: int = 14,
    resolution: pd.Timedelta = RESOLUTION,
    member: str | None = None,
) -> Forecast:
    """Physical forecast scaled by what the meter said, for installations without a trained model.

    The median is the physical model (with the weather when given, else the clear sky) times the
    ratio of measured to physical energy over the last ``ratio_days`` known days (clipped to
    [0.05, 1.5]; 1 without history). The other levels add the empirical quantiles, by local hour, of
    the errors this scaled model made over those days. Without history the band is unknown (NaN)
    but the night is still 0.

    Parameters
    ----------
    system
        The installation.
    history
        Measured PV energy, kWh per interval (None or empty if the meter is new).
    issue_time
        Timezone-aware issue time.
    targets
        UTC interval starts.
    weather
        Hourly weather covering the targets and the ratio window, if any.
    quantiles
        Levels.
    ratio_days
        Known days used for the ratio and the error quantiles.
    resolution
        Interval length.
    member
        Identifier carried into the forecast.

    Returns
    -------
    Forecast
        Model ``"pv_physical"`` (weather) or ``"pv_clear_sky"`` (no weather, the ratio to the clear
        sky then being the recent clearness); ``"none"`` with NaN daylight values if there is
        neither weather nor usable history (the clear sky is a bound, not a forecast). Night is 0.
    """
    issue = pd.Timestamp(issue_time)
    if issue.tzinfo is None:
        raise ValueError("issue_time must be timezone-aware")
    issue = issue.tz_convert("UTC")
    targets = pd.DatetimeIndex(targets).tz_convert("UTC")
    model = "pv_physical" if weather is not None else "pv_clear_sky"
    sun_up = solar_geometry(targets, site=system.site, resolution=resolution)["sun_up"].to_numpy()
    levels = np.asarray(sorted(float(q) for q in quantiles))
    phys = pv_physical(system, targets, weather=weather, resolution=resolution).to_numpy()
    ratio, reason = 1.0, "no history: physical model as is, interval unknown"
    ratio_known = False
    offsets = np.full((len(targets), levels.size), np.nan)
    offsets[:, np.isclose(levels, 0.5)] = 0.0
    name = member or "pv"
    y = pd.Series(dtype="float64")
    if history is not None and len(history):
        y = known_at(regular_series(history, name=name, resolution=resolution), issue, resolution=resolution)
        y = y.loc[y.index >= issue - pd.Timedelta(days=ratio_days)]
    if len(y) and y.notna().any():
        past = pd.DatetimeIndex(y.index)
        past_phys = pv_physical(system, past, weather=weather, resolution=resolution).to_numpy()
        meas = y.to_numpy()
        ok = ~(np.isnan(meas) | np.isnan(past_phys))
        if not (ok.sum() > 0 and past_phys[ok].sum() > 0):
            reason = "no overlap of history and weather: physical model as is, interval unknown"
        else:
            ratio = float(np.clip(meas[ok].sum() / past_phys[ok].sum(), 0.05, 1.5))
            ratio_known = True
            resid = meas - ratio * past_phys
            hours = past.tz_convert(system.site.tz).hour.to_numpy()
            sun_past = solar_geometry(past, site=system.site, resolution=resolution)["sun_up"].to_numpy() > 0
            resid = np.where(sun_past, resid, np.nan)
            offsets = residual_quantiles(
                resid,
                hours,
                targets.tz_convert(system.site.tz).hour.to_numpy(),
                [float(v) for v in levels],
                min_residuals=7,
            )
            offsets[:, np.isclose(levels, 0.5)] = 0.0
            reason = f"physical model x measured/physical ratio {ratio:.2f} over the last {ratio_days} d"
    values = ratio * phys[:, None] + offsets
    if weather is None and not ratio_known:
        # Neither weather nor history: the clear sky is an upper bound, not a forecast. Only the
        # night (0) is known.
        values[:] = np.nan
        model = "none"
        reason = "no history and no weather: daylight unknown, night 0"
    values = clip_pv(values, sun_up, system.max_energy_kwh(resolution))
    return Forecast(
        pd.DataFrame(values, index=targets, columns=list(levels)), issue, model, reason=reason, member=member
    )
