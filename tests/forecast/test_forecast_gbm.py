"""LightGBM load model: training, non-crossing bounded quantiles, persistence, leakage guards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.forecast.features import (
    BRUSSELS,
    HistoryError,
    LeakageError,
    day_ahead_issue_time,
    delivery_day_index,
)
from bright.energy.forecast.gbm import (
    GBMParams,
    LoadFeatureSpec,
    LoadModel,
    train_load_model,
)

TZ = "Europe/Brussels"
FAST = GBMParams(n_estimators=15, min_data_in_leaf=20)


def household(days: int = 63, seed: int = 0, start: str = "2016-01-04") -> pd.Series:
    """A household-like offtake, kWh per 15 min: night base, morning and evening peaks, noise."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=days * 96, freq="15min")
    local = idx.tz_convert(TZ)
    h = (local.hour + local.minute / 60).to_numpy()
    shape = 0.04 + 0.05 * np.exp(-(((h - 7.5) / 1.0) ** 2)) + 0.12 * np.exp(-(((h - 19.5) / 1.8) ** 2))
    shape = shape * np.where(local.weekday.to_numpy() >= 5, 1.3, 1.0)
    return pd.Series(shape * rng.gamma(4.0, 0.25, len(idx)), index=idx, name="h1")


@pytest.fixture(scope="module")
def trained() -> tuple[pd.Series, LoadModel, pd.Timestamp]:
    y = household()
    until = day_ahead_issue_time("2016-03-01", tz=TZ)
    model = train_load_model(y, until=until, site=BRUSSELS, params=FAST, calibration_days=5, member="h1")
    return y, model, until


def test_training_period_and_metadata(trained: tuple[pd.Series, LoadModel, pd.Timestamp]) -> None:
    y, model, until = trained
    assert model.trained_until == until
    # First target: 35 days of look-back after the first stamp (4 weeks of profile + one week).
    assert model.trained_from == y.index[0] + pd.Timedelta(days=35)
    assert set(model.quantiles) == {0.1, 0.5, 0.9}
    assert model.offsets[0.5] == 0.0 and model.offsets[0.1] != 0.0  # calibrated on 5 held-out days
    assert "lag_2d" in model.features and "holiday" in model.features and "lag_1d" not in model.features
    assert model.scale == pytest.approx(y.loc[model.trained_from : until - pd.Timedelta(minutes=15)].mean())


def test_forecast_is_non_crossing_and_non_negative(
    trained: tuple[pd.Series, LoadModel, pd.Timestamp],
) -> None:
    y, model, until = trained
    targets = delivery_day_index("2016-03-01", tz=TZ)
    f = model.predict(y, until, targets)
    q = f.quantiles.to_numpy()
    assert q.shape == (96, 3) and not np.isnan(q).any()
    assert (np.diff(q, axis=1) >= 0).all() and (q >= 0).all()
    assert f.model == "gbm" and f.issue_time == until


def test_model_round_trips_through_bytes(trained: tuple[pd.Series, LoadModel, pd.Timestamp]) -> None:
    y, model, until = trained
    model.scores = {"skill": 0.25}
    back = LoadModel.from_bytes(model.to_bytes())
    targets = delivery_day_index("2016-03-01", tz=TZ)
    pd.testing.assert_frame_equal(
        back.predict(y, until, targets).quantiles, model.predict(y, until, targets).quantiles
    )
    assert back.features == model.features and back.trained_until == model.trained_until
    assert back.scores == {"skill": 0.25} and back.member == "h1" and back.spec == model.spec
    with pytest.raises(ValueError, match="format"):
        LoadModel.from_bytes(b'{"format": "other"}')
    with pytest.raises(ValueError, match="not a serialised"):
        LoadModel.from_bytes(b"\xff\x00")


def test_no_leakage_perturbing_the_future_changes_nothing(
    trained: tuple[pd.Series, LoadModel, pd.Timestamp],
) -> None:
    y, model, until = trained
    targets = delivery_day_index("2016-03-01", tz=TZ)
    after = y.index + pd.Timedelta(minutes=15) > until
    noisy = y.copy()
    noisy[after] = noisy[after] * 10.0 + 5.0
    pd.testing.assert_frame_equal(
        model.predict(noisy, until, targets).quantiles, model.predict(y, until, targets).quantiles
    )
    # Training ignores the future too: same boosters, same forecast.
    again = train_load_model(noisy, until=until, site=BRUSSELS, params=FAST, calibration_days=5, member="h1")
    pd.testing.assert_frame_equal(
        again.predict(y, until, targets).quantiles, model.predict(y, until, targets).quantiles
    )


def test_model_refuses_to_forecast_from_before_its_training_end(
    trained: tuple[pd.Series, LoadModel, pd.Timestamp],
) -> None:
    y, model, until = trained
    earlier = until - pd.Timedelta(days=3)
    with pytest.raises(LeakageError, match="trained on data up to"):
        model.predict(y, earlier, delivery_day_index("2016-02-27", tz=TZ))


def test_day_ahead_model_refuses_one_day_lags_and_short_histories() -> None:
    y = household()
    until = day_ahead_issue_time("2016-03-01", tz=TZ)
    with pytest.raises(LeakageError, match="lag_days >= 2"):
        train_load_model(y, until=until, site=BRUSSELS, spec=LoadFeatureSpec(lag_days=(1, 7)), params=FAST)
    with pytest.raises(HistoryError, match=r"h1: .* need 14 days"):
        train_load_model(y.iloc[: 45 * 96], until=until, site=BRUSSELS, params=FAST)
    neg = y.copy()
    neg.iloc[100] = -0.1
    with pytest.raises(HistoryError, match="h1: negative load"):
        train_load_model(neg, until=until, site=BRUSSELS, params=FAST)


def test_weather_model_needs_weather() -> None:
    y = household()
    until = day_ahead_issue_time("2016-03-01", tz=TZ)
    hours = pd.date_range(y.index[0], periods=70 * 24, freq="h")
    w = pd.DataFrame({"temp_air_c": 5 + 5 * np.sin(np.arange(len(hours)) / 24.0)}, index=hours)
    model = train_load_model(y, until=until, site=BRUSSELS, params=FAST, weather=w, calibration_days=0)
    assert model.uses_weather and "heating_degree_c" in model.features
    targets = delivery_day_index("2016-03-01", tz=TZ)
    with pytest.raises(ValueError, match="pass weather"):
        model.predict(y, until, targets)
    assert model.predict(y, until, targets, weather=w).median.notna().all()


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 1000), st.floats(0.1, 20.0))
def test_quantiles_never_cross_and_scale_with_the_household(seed: int, k: float) -> None:
    y = household(days=56, seed=seed) * k
    until = day_ahead_issue_time("2016-02-29", tz=TZ)
    model = train_load_model(
        y, until=until, site=BRUSSELS, params=GBMParams(n_estimators=5, min_data_in_leaf=20)
    )
    q = model.predict(y, until, delivery_day_index("2016-02-29", tz=TZ)).quantiles.to_numpy()
    assert (np.diff(q, axis=1) >= 0).all() and (q >= 0).all()
    # Normalised training: the forecast stays within the range the household has shown.
    assert q.max() <= y.max() * 1.5
