"""Rolling-origin backtest: what each model may see, retraining schedule, and the score table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bright.energy.forecast.backtest import BacktestResult, Predictor, rolling_origin
from bright.energy.forecast.baselines import Forecast, seasonal_naive
from bright.energy.forecast.features import LeakageError, day_ahead_issue_time

TZ = "Europe/Brussels"
RES = pd.Timedelta(minutes=15)


def weekly_series(days: int = 50) -> pd.Series:
    idx = pd.date_range(pd.Timestamp("2016-01-04", tz="UTC"), periods=days * 96, freq="15min")
    rng = np.random.default_rng(0)
    local = idx.tz_convert(TZ)
    return pd.Series(1.0 + local.weekday.to_numpy() + rng.uniform(0, 0.5, len(idx)), index=idx)


def snaive_trainer(known: pd.Series, issue: pd.Timestamp) -> Predictor:
    return lambda h, i, t: seasonal_naive(h, i, t, tz=TZ)


def test_models_only_see_the_past_and_retrain_on_schedule() -> None:
    y = weekly_series()
    seen: list[tuple[str, pd.Timestamp, pd.Timestamp]] = []

    def spy_trainer(known: pd.Series, issue: pd.Timestamp) -> Predictor:
        seen.append(("train", issue, known.index.max()))

        def predict(h: pd.Series, i: pd.Timestamp, t: pd.DatetimeIndex) -> Forecast:
            seen.append(("predict", i, h.index.max()))
            return seasonal_naive(h, i, t, tz=TZ)

        return predict

    days = pd.date_range("2016-02-01", periods=10, freq="D")
    res = rolling_origin(
        y, {"seasonal_naive": snaive_trainer, "spy": spy_trainer}, days=days, tz=TZ, retrain_every_days=7
    )
    for _kind, issue, last in seen:
        assert last + RES <= issue  # nothing after the issue time was handed over
    trains = [issue for kind, issue, _ in seen if kind == "train"]
    assert trains == [day_ahead_issue_time("2016-02-01", tz=TZ), day_ahead_issue_time("2016-02-08", tz=TZ)]
    assert len(res.frame) == 2 * 10 * 96


def test_scores_table_and_identical_models_have_zero_skill() -> None:
    y = weekly_series()
    days = pd.date_range("2016-02-01", periods=7, freq="D")
    res = rolling_origin(y, {"seasonal_naive": snaive_trainer, "copy": snaive_trainer}, days=days, tz=TZ)
    table = res.scores()
    assert list(table.columns) == ["mae", "rmae", "skill", "pinball", "crps", "coverage", "n", "days"]
    assert table.loc["copy", "skill"] == pytest.approx(0.0)
    assert table.loc["seasonal_naive", "n"] == 7 * 96 and table.loc["seasonal_naive", "days"] == 7
    # Weekly series + U(0, 0.5) noise: the seasonal-naive error is a difference of two uniforms,
    # mean |U1 - U2| = 0.5 / 3 -> MAE ~ 0.167.
    assert table.loc["seasonal_naive", "mae"] == pytest.approx(0.5 / 3, rel=0.1)


def test_a_forecast_for_other_targets_is_refused() -> None:
    y = weekly_series()

    def wrong(known: pd.Series, issue: pd.Timestamp) -> Predictor:
        return lambda h, i, t: seasonal_naive(h, i, t[:-1], tz=TZ)

    with pytest.raises(LeakageError, match="does not match"):
        rolling_origin(y, {"seasonal_naive": snaive_trainer, "wrong": wrong}, days=["2016-02-01"], tz=TZ)


def test_scores_use_only_rows_every_input_knows() -> None:
    idx = pd.date_range("2016-02-01", periods=4, freq="15min", tz="UTC")
    frame = pd.DataFrame(
        {
            "model": ["seasonal_naive"] * 4 + ["m"] * 4,
            "used_model": ["seasonal_naive"] * 4 + ["m"] * 4,
            "issue_time": [pd.Timestamp("2016-01-31 11:00", tz="UTC")] * 8,
            "target": list(idx) * 2,
            "y": [1.0, 2.0, np.nan, 4.0] * 2,
            0.1: [0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, np.nan],
            0.5: [2.0, 2.0, 2.0, 2.0, 1.0, 2.0, 3.0, 4.0],
            0.9: [5.0, 5.0, 5.0, 5.0, 1.0, 2.0, 3.0, 5.0],
        }
    )
    table = BacktestResult(frame, (0.1, 0.5, 0.9)).scores()
    # Model m: rows 0, 1 scored (row 2 has no measurement, row 3 no 0.1 quantile); errors 0, 0 -> MAE 0
    # Reference on those rows: |1 - 2| + |2 - 2| -> MAE 0.5; skill = 1 - 0 / 0.5 = 1
    assert table.loc["m", "n"] == 2 and table.loc["m", "mae"] == 0.0 and table.loc["m", "skill"] == 1.0
    # Coverage of m: 1 in [0, 1] and 2 in [1, 2] -> 1.0
    assert table.loc["m", "coverage"] == 1.0
