"""forecast_member: model choice and fallbacks, physical bounds, and no leakage end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bright.energy.forecast.features import (
    BRUSSELS,
    HistoryError,
    LeakageError,
    day_ahead_issue_time,
    delivery_day_index,
    solar_geometry,
)
from bright.energy.forecast.gbm import GBMParams, LoadModel
from bright.energy.forecast.pv import PVSystem, pv_physical
from bright.energy.forecast.select import clean_history, forecast_member, train_member_model

TZ = "Europe/Brussels"
FAST = GBMParams(n_estimators=10, min_data_in_leaf=20)
DAY = "2016-03-01"
ISSUE = day_ahead_issue_time(DAY, tz=TZ)  # 2016-02-29 11:00 UTC


def household(days: int = 63, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(pd.Timestamp("2016-01-04", tz="UTC"), periods=days * 96, freq="15min")
    local = idx.tz_convert(TZ)
    h = (local.hour + local.minute / 60).to_numpy()
    shape = 0.04 + 0.05 * np.exp(-(((h - 7.5) / 1.0) ** 2)) + 0.12 * np.exp(-(((h - 19.5) / 1.8) ** 2))
    return pd.Series(shape * rng.gamma(4.0, 0.25, len(idx)), index=idx, name="h1")


@pytest.fixture(scope="module")
def model() -> LoadModel:
    out = train_member_model(
        household(), until=ISSUE, site=BRUSSELS, member="h1", params=FAST, calibration_days=5
    )
    assert out.model is not None, out.reason
    assert isinstance(out.model, LoadModel)
    return out.model


def test_trained_model_is_used_when_the_data_allow(model: LoadModel) -> None:
    f = forecast_member(household(), ISSUE, model=model)
    assert f.model == "gbm" and f.member == "h1"
    assert f.quantiles.index.equals(delivery_day_index(DAY, tz=TZ))
    assert (f.quantiles.to_numpy() >= 0).all()


def test_no_leakage_end_to_end(model: LoadModel) -> None:
    y = household()
    future = y.index + pd.Timedelta(minutes=15) > ISSUE
    for fake in (0.0, 50.0):
        changed = y.copy()
        changed[future] = fake
        for m in (model, None):
            a = forecast_member(changed, ISSUE, model=m)
            b = forecast_member(y, ISSUE, model=m)
            pd.testing.assert_frame_equal(a.quantiles, b.quantiles)
            assert a.model == b.model


def test_model_trained_after_the_issue_time_is_refused(model: LoadModel) -> None:
    with pytest.raises(LeakageError, match="h1: model trained up to"):
        forecast_member(household(), ISSUE - pd.Timedelta(days=2), model=model)


def test_no_model_falls_back_to_the_profile_average() -> None:
    f = forecast_member(household(), ISSUE)
    assert f.model == "profile_average" and "gbm: no trained model" in f.reason


def test_short_history_falls_back_to_persistence_then_to_unknown() -> None:
    y = household()
    three_days = y.loc[ISSUE - pd.Timedelta(days=3) :]
    f = forecast_member(three_days, ISSUE)
    assert f.model == "persistence" and "profile_average: 3.0 d known, needs 7" in f.reason
    hours = y.loc[ISSUE - pd.Timedelta(hours=6) :]
    g = forecast_member(hours, ISSUE)
    assert g.model == "none" and "forecast unknown" in g.reason
    assert g.quantiles.isna().all().all()  # unknown stays NaN, never 0


def test_gap_in_recent_data_skips_the_model(model: LoadModel) -> None:
    y = household()
    gap = y.drop(y.loc[ISSUE - pd.Timedelta(days=12) : ISSUE].index)
    f = forecast_member(gap, ISSUE, model=model)
    assert f.model == "profile_average"
    assert "gbm: only 14 % of the last 14 d usable" in f.reason


def test_flat_line_is_masked_and_reported(model: LoadModel) -> None:
    y = household()
    stuck = y.copy()
    stuck.loc[ISSUE - pd.Timedelta(days=10) :] = 0.123  # meter frozen for ten days
    f = forecast_member(stuck, ISSUE, model=model)
    assert f.model == "profile_average"
    assert "flat-line intervals masked" in f.reason
    # The stuck value never appears as the forecast: the profile uses the weeks before.
    assert not np.isclose(f.median.to_numpy(), 0.123).all()
    cleaned, check = clean_history(stuck, ISSUE, kind="load", member="h1")
    # Known and frozen: 2016-02-19 11:00 .. 2016-02-29 10:45 UTC = 10 days x 96 intervals
    assert check.flat_intervals == 960 and cleaned.iloc[-960:].isna().all()
    assert check.last_known == pd.Timestamp("2016-02-19 10:45", tz="UTC")


def test_bad_input_names_the_member() -> None:
    y = household()
    y.iloc[5] = -1.0
    with pytest.raises(HistoryError, match=r"h1: negative load value -1\.0 kWh at 2016-01-04T01:15"):
        forecast_member(y, ISSUE, member="h1")
    with pytest.raises(ValueError, match="h1: a PV forecast needs the PV system"):
        forecast_member(household(), ISSUE, kind="pv", member="h1")
    with pytest.raises(ValueError, match="kind must be"):
        forecast_member(household(), ISSUE, kind="heat", member="h1")  # type: ignore[arg-type]


def test_too_short_history_is_not_trained() -> None:
    out = train_member_model(household().iloc[: 10 * 96], until=ISSUE, member="h1")
    assert out.model is None and "training needs 28" in out.reason


def test_intraday_horizon() -> None:
    issue = pd.Timestamp("2016-02-29 15:05", tz="UTC")
    f = forecast_member(household(), issue, pd.Timedelta(hours=6))
    assert len(f.quantiles) == 24 and f.quantiles.index[0] == pd.Timestamp("2016-02-29 15:15", tz="UTC")


def test_pv_forecast_is_zero_at_night_and_within_the_inverter_limit() -> None:
    system = PVSystem(kwp=3.0)
    idx = pd.date_range(pd.Timestamp("2016-06-01", tz="UTC"), periods=20 * 96, freq="15min")
    y = 0.6 * pv_physical(system, idx)
    issue = day_ahead_issue_time("2016-06-21", tz=TZ)
    f = forecast_member(y, issue, kind="pv", pv_system=system, member="pv1")
    assert f.model == "pv_clear_sky"
    q = f.quantiles.to_numpy()
    sun = solar_geometry(f.quantiles.index, site=BRUSSELS)["sun_up"].to_numpy()
    assert (q[sun == 0] == 0).all() and (q >= 0).all() and (q <= 3.0 * 0.25).all()
    # A new installation without history or weather: only the night is known.
    g = forecast_member(y.iloc[:0], issue, kind="pv", pv_system=system, member="pv2")
    assert g.model == "none" and (g.quantiles.to_numpy()[sun == 0] == 0).all()
    assert np.isnan(g.quantiles.to_numpy()[sun > 0]).all()
