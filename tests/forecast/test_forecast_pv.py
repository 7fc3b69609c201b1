"""PV: physical model bounds and figures, learned correction bounded, zero at night, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.forecast.features import (
    BRUSSELS,
    HistoryError,
    day_ahead_issue_time,
    delivery_day_index,
    solar_geometry,
)
from bright.energy.forecast.gbm import GBMParams
from bright.energy.forecast.pv import (
    PVModel,
    PVSystem,
    pv_physical,
    pv_reference_forecast,
    train_pv_model,
)

TZ = "Europe/Brussels"
SOUTH = PVSystem(kwp=4.0, tilt_deg=35.0, azimuth_deg=180.0, site=BRUSSELS)


def measured_pv(system: PVSystem, days: int = 60, seed: int = 0, start: str = "2016-05-01") -> pd.Series:
    """Clear-sky physical output times a daily cloudiness and interval noise (kWh per 15 min)."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=days * 96, freq="15min")
    clear = pv_physical(system, idx).to_numpy()
    daily = np.repeat(rng.uniform(0.2, 1.0, days), 96)
    noise = np.clip(1 + 0.1 * rng.standard_normal(len(idx)), 0.5, 1.5)
    return pd.Series(clear * daily * noise * 0.9, index=idx, name="pv1")


def test_clear_sky_day_in_june_is_plausible_and_bounded() -> None:
    targets = delivery_day_index("2016-06-21", tz=TZ)
    e = pv_physical(SOUTH, targets)
    # 4 kWp south 35 deg in Brussels on a clear solstice day: about 7 kWh/kWp (28 kWh), peak
    # below 4 kW * 0.25 h = 1 kWh per quarter-hour.
    assert 20.0 < e.sum() < 34.0
    assert e.max() <= SOUTH.max_energy_kwh() and e.max() > 0.7
    sun = solar_geometry(targets, site=BRUSSELS)["sun_up"].to_numpy()
    assert (e.to_numpy()[sun == 0] == 0).all()
    # 02:00 local is night
    assert e.loc[pd.Timestamp("2016-06-21 00:00", tz="UTC")] == 0.0


def test_weather_drives_the_model() -> None:
    targets = delivery_day_index("2016-06-21", tz=TZ)
    hours = pd.date_range(targets[0], periods=24, freq="h")
    dark = pd.DataFrame({"ghi_w_m2": 0.0, "dni_w_m2": 0.0, "dhi_w_m2": 0.0, "temp_air_c": 20.0}, index=hours)
    assert pv_physical(SOUTH, targets, weather=dark).sum() == 0.0
    # Hotter cells produce less (gamma = -0.4 %/K)
    geo = solar_geometry(targets, site=BRUSSELS)
    cs = {
        c: geo[f"clearsky_{c}"].groupby(np.arange(96) // 4).mean().to_numpy()
        for c in ("ghi_w_m2", "dni_w_m2", "dhi_w_m2")
    }
    cool = pd.DataFrame({**cs, "temp_air_c": 0.0}, index=hours)
    hot = pd.DataFrame({**cs, "temp_air_c": 35.0}, index=hours)
    assert pv_physical(SOUTH, targets, weather=hot).sum() < pv_physical(SOUTH, targets, weather=cool).sum()


def test_inverter_limit_clips() -> None:
    small_inverter = PVSystem(kwp=4.0, ac_kw=2.0)
    e = pv_physical(small_inverter, delivery_day_index("2016-06-21", tz=TZ))
    assert e.max() == pytest.approx(0.5)  # 2 kW * 0.25 h


def test_invalid_systems_are_rejected() -> None:
    with pytest.raises(ValueError, match="kwp"):
        PVSystem(kwp=0.0)
    with pytest.raises(ValueError, match="tilt"):
        PVSystem(kwp=1.0, tilt_deg=95.0)


@settings(max_examples=20, deadline=None)
@given(
    st.floats(0.5, 20.0),
    st.floats(0.0, 90.0),
    st.floats(0.0, 360.0),
    st.integers(0, 365),
)
def test_physical_model_zero_at_night_and_below_nameplate(
    kwp: float, tilt: float, azimuth: float, day: int
) -> None:
    system = PVSystem(kwp=kwp, tilt_deg=tilt, azimuth_deg=azimuth)
    targets = delivery_day_index(pd.Timestamp("2016-01-01") + pd.Timedelta(days=day), tz=TZ)
    e = pv_physical(system, targets).to_numpy()
    sun = solar_geometry(targets, site=BRUSSELS)["sun_up"].to_numpy()
    assert (e >= 0).all() and (e <= kwp * 0.25 + 1e-12).all()
    assert (e[sun == 0] == 0).all()


@pytest.fixture(scope="module")
def pv_model() -> tuple[pd.Series, PVModel, pd.Timestamp]:
    y = measured_pv(SOUTH)
    until = day_ahead_issue_time("2016-06-25", tz=TZ)
    model = train_pv_model(
        y,
        SOUTH,
        until=until,
        params=GBMParams(n_estimators=15, min_data_in_leaf=20),
        calibration_days=5,
        member="pv1",
    )
    return y, model, until


def test_learned_correction_is_bounded_zero_at_night_and_round_trips(
    pv_model: tuple[pd.Series, PVModel, pd.Timestamp],
) -> None:
    y, model, until = pv_model
    targets = delivery_day_index("2016-06-25", tz=TZ)
    f = model.predict(y, until, targets)
    q = f.quantiles.to_numpy()
    sun = solar_geometry(targets, site=BRUSSELS)["sun_up"].to_numpy()
    assert (q[sun == 0] == 0).all()
    assert (q >= 0).all() and (q <= SOUTH.max_energy_kwh() + 1e-12).all()
    assert (np.diff(q, axis=1) >= 0).all()
    assert q[:, 1].sum() > 1.0  # a June day produces something
    back = PVModel.from_bytes(model.to_bytes())
    pd.testing.assert_frame_equal(back.predict(y, until, targets).quantiles, f.quantiles)
    assert back.system == SOUTH


def test_pv_correction_ignores_the_future(pv_model: tuple[pd.Series, PVModel, pd.Timestamp]) -> None:
    y, model, until = pv_model
    targets = delivery_day_index("2016-06-25", tz=TZ)
    future = y.index + pd.Timedelta(minutes=15) > until
    changed = y.copy()
    changed[future] = 0.0
    pd.testing.assert_frame_equal(
        model.predict(changed, until, targets).quantiles, model.predict(y, until, targets).quantiles
    )


def test_pv_history_beyond_the_installation_is_rejected() -> None:
    y = measured_pv(SOUTH, days=30)
    until = day_ahead_issue_time("2016-05-31", tz=TZ)
    with pytest.raises(HistoryError, match=r"pv1: PV energy .* exceeds 1\.2 x kWp"):
        train_pv_model(y * 1000.0, SOUTH, until=until)  # Wh passed as kWh


def test_reference_forecast_scales_by_the_measured_ratio() -> None:
    # History = exactly 0.5 x clear-sky physical: ratio 0.5, every error 0 -> zero-width band.
    idx = pd.date_range(pd.Timestamp("2016-06-01", tz="UTC"), periods=20 * 96, freq="15min")
    y = 0.5 * pv_physical(SOUTH, idx)
    issue = day_ahead_issue_time("2016-06-21", tz=TZ)
    targets = delivery_day_index("2016-06-21", tz=TZ)
    f = pv_reference_forecast(SOUTH, y, issue, targets)
    assert f.model == "pv_clear_sky" and "ratio 0.50" in f.reason
    np.testing.assert_allclose(f.median, 0.5 * pv_physical(SOUTH, targets), atol=1e-12)
    np.testing.assert_allclose(f.quantile(0.9), f.quantile(0.1), atol=1e-12)
    # Without history and weather only the night is known.
    none = pv_reference_forecast(SOUTH, None, issue, targets)
    sun = solar_geometry(targets, site=BRUSSELS)["sun_up"].to_numpy()
    assert none.model == "none"
    assert (none.quantiles.to_numpy()[sun == 0] == 0).all() and np.isnan(
        none.quantiles.to_numpy()[sun > 0]
    ).all()
