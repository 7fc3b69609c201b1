"""Forecast metrics on hand-computed examples, their NaN policies and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bright.energy.forecast.backtest import (
    MetricError,
    crps_from_quantiles,
    interval_coverage,
    mae,
    pinball_loss,
    rmae,
    skill_score,
)

Y = np.array([1.0, 2.0, 3.0, 4.0])
F = np.array([1.5, 2.0, 2.0, 5.0])  # |errors| = 0.5, 0, 1, 1


def test_mae_hand_example() -> None:
    # (0.5 + 0 + 1 + 1) / 4 = 0.625
    assert mae(Y, F) == pytest.approx(0.625)


def test_rmae_full_range_and_p1_p99() -> None:
    # Range P0..P100 = 4 - 1 = 3 -> 0.625 / 3
    assert rmae(Y, F, lower_percentile=0.0, upper_percentile=100.0) == pytest.approx(0.625 / 3.0)
    # numpy linear percentiles of [1, 2, 3, 4]: P1 = 1 + 0.01 * 3 = 1.03, P99 = 1 + 0.99 * 3 = 3.97
    assert rmae(Y, F) == pytest.approx(0.625 / 2.94)


def test_rmae_flat_series_has_no_scale() -> None:
    with pytest.raises(MetricError, match="range"):
        rmae(np.ones(5), np.zeros(5))


def test_skill_against_reference() -> None:
    # Reference 2, 2, 2, 2: |errors| 1, 0, 1, 2 -> MAE 1.0; skill = 1 - 0.625 / 1.0
    assert skill_score(Y, F, np.full(4, 2.0)) == pytest.approx(0.375)
    assert skill_score(Y, F, F) == pytest.approx(0.0)
    with pytest.raises(MetricError, match="zero error"):
        skill_score(Y, F, Y)


def test_pinball_and_crps_hand_example() -> None:
    # y = 1, quantiles (0.1, 0.5, 0.9) = (0, 1, 3): y - q = (1, 0, -2)
    # losses: 0.1 * 1 = 0.1; 0; max(0.9 * -2, -0.1 * -2) = 0.2 -> mean 0.3 / 3 = 0.1
    q = np.array([[0.0, 1.0, 3.0]])
    levels = (0.1, 0.5, 0.9)
    assert pinball_loss(np.array([1.0]), q, quantiles=levels) == pytest.approx(0.1)
    per = pinball_loss(np.array([1.0]), q, quantiles=levels, average=False)
    np.testing.assert_allclose(per, [0.1, 0.0, 0.2])
    # CRPS ~ 2 * (0.3 * 0.1 + 0.4 * 0 + 0.3 * 0.2) = 0.18 (cells 0-0.3, 0.3-0.7, 0.7-1)
    assert crps_from_quantiles(np.array([1.0]), q, quantiles=levels) == pytest.approx(0.18)


def test_crps_from_many_quantiles_matches_the_normal_closed_form() -> None:
    # CRPS(N(0, 1), 0) = 2 phi(0) - 1 / sqrt(pi) = 0.233695
    levels = np.linspace(0.005, 0.995, 199)
    q = stats.norm.ppf(levels)[None, :]
    exact = 2 * stats.norm.pdf(0.0) - 1 / math.sqrt(math.pi)
    assert crps_from_quantiles(np.array([0.0]), q, quantiles=levels) == pytest.approx(exact, rel=0.02)


def test_interval_coverage_hand_example() -> None:
    # 1 in [0, 2] yes; 2 in [2.5, 3] no; 3 in [3, 3] yes (bounds included); 4 in [0, 3] no
    lo = np.array([0.0, 2.5, 3.0, 0.0])
    hi = np.array([2.0, 3.0, 3.0, 3.0])
    assert interval_coverage(Y, lo, hi) == pytest.approx(0.5)


def test_nan_policies() -> None:
    y = np.array([1.0, np.nan, 3.0])
    f = np.array([2.0, 2.0, 3.0])
    assert mae(y, f) == pytest.approx(0.5)  # omit: rows 0 and 2 -> (1 + 0) / 2
    assert math.isnan(mae(y, f, nan_policy="propagate"))
    with pytest.raises(MetricError, match="NaN"):
        mae(y, f, nan_policy="raise")
    with pytest.raises(MetricError, match="nan_policy"):
        mae(y, f, nan_policy="ignore")  # type: ignore[arg-type]
    assert math.isnan(mae(np.array([np.nan]), np.array([1.0])))  # nothing left to score
    # A NaN in any quantile column drops the row.
    q = np.array([[0.0, 1.0, 2.0], [np.nan, 1.0, 2.0]])
    assert pinball_loss(np.array([1.0, 100.0]), q, quantiles=(0.1, 0.5, 0.9)) == pytest.approx(
        pinball_loss(np.array([1.0]), q[:1], quantiles=(0.1, 0.5, 0.9))
    )


def test_shape_and_level_errors() -> None:
    with pytest.raises(MetricError, match="same length"):
        mae(np.ones(3), np.ones(4))
    with pytest.raises(MetricError, match="levels"):
        pinball_loss(np.ones(2), np.ones((2, 3)), quantiles=(0.1, 0.9))
    with pytest.raises(MetricError, match="ascending"):
        pinball_loss(np.ones(2), np.ones((2, 2)), quantiles=(0.9, 0.1))


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite), min_size=1, max_size=30))
def test_quantile_scores_are_non_negative_and_zero_when_exact(
    rows: list[tuple[float, float, float, float]],
) -> None:
    arr = np.array(rows)
    y = arr[:, 0]
    q = np.sort(arr[:, 1:], axis=1)
    levels = (0.1, 0.5, 0.9)
    assert pinball_loss(y, q, quantiles=levels) >= 0.0
    assert crps_from_quantiles(y, q, quantiles=levels) >= 0.0
    exact = np.repeat(y[:, None], 3, axis=1)
    assert pinball_loss(y, exact, quantiles=levels) == pytest.approx(0.0, abs=1e-12)
    assert 0.0 <= interval_coverage(y, q[:, 0], q[:, 2]) <= 1.0
    assert interval_coverage(y, exact[:, 0], exact[:, 2]) == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=30), st.floats(0.1, 100.0))
def test_mae_is_scale_equivariant_and_rmae_scale_free(pairs: list[tuple[float, float]], k: float) -> None:
    arr = np.array(pairs)
    y, f = arr[:, 0], arr[:, 1]
    assert mae(k * y, k * f) == pytest.approx(k * mae(y, f), rel=1e-9, abs=1e-9)
    if np.ptp(y) > 1e-6:
        assert rmae(k * y, k * f, lower_percentile=0, upper_percentile=100) == pytest.approx(
            rmae(y, f, lower_percentile=0, upper_percentile=100), rel=1e-9, abs=1e-12
        )
