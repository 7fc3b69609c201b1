"""Reconciliation: coherent sums, the OLS hand example, shrinkage, honest community bands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.forecast.baselines import Forecast
from bright.energy.forecast.hierarchy import (
    ReconciliationError,
    reconcile,
    reconcile_forecasts,
    reconciliation_matrix,
    shrunk_covariance,
    summed_error_band,
    summing_matrix,
)

IDX = pd.date_range("2016-06-01 22:00", periods=4, freq="15min", tz="UTC")
ISSUE = pd.Timestamp("2016-05-31 10:00", tz="UTC")


def fc(median: list[float], width: float, model: str = "gbm") -> Forecast:
    m = np.asarray(median)
    q = np.column_stack([m - width, m, m + width])
    return Forecast(pd.DataFrame(q, index=IDX, columns=[0.1, 0.5, 0.9]), ISSUE, model)


def test_ols_hand_example() -> None:
    # Community base 10, members 3 and 5: the gap 10 - 8 = 2 is shared equally by the three series
    # (OLS): members 3 + 2/3 and 5 + 2/3, community 10 - 2/3 = 28/3 = 3.667 + 5.667.
    rec = reconcile(np.array([[10.0, 3.0, 5.0]]), "ols")
    np.testing.assert_allclose(rec, [[28 / 3, 11 / 3, 17 / 3]])
    g = reconciliation_matrix(2, "ols")
    np.testing.assert_allclose(g, np.array([[1, 2, -1], [1, -1, 2]]) / 3)
    np.testing.assert_array_equal(summing_matrix(2), [[1, 1], [1, 0], [0, 1]])


def test_bottom_up_ignores_the_community_forecast() -> None:
    rec = reconcile(np.array([[99.0, 3.0, 5.0], [np.nan, 1.0, 1.0]]), "bottom_up")
    np.testing.assert_allclose(rec, [[8.0, 3.0, 5.0], [2.0, 1.0, 1.0]])


def test_wls_trusts_the_precise_series() -> None:
    # Error variances: community 1e-4, members 1 and 1 (alternating +/- signs, same n).
    # WLS shares the gap 10 - 8 = 2 in proportion to the variances: each member gets
    # 2 x 1 / 2.0001 = 0.99995, the community gives up 2 x 1e-4 / 2.0001 = 0.0001.
    sign = np.where(np.arange(100) % 2 == 0, 1.0, -1.0)
    errors = np.column_stack([0.01 * sign, sign, -sign])
    rec = reconcile(np.array([[10.0, 3.0, 5.0]]), "wls", errors=errors)
    np.testing.assert_allclose(rec, [[10 - 2e-4 / 2.0001, 3 + 2 / 2.0001, 5 + 2 / 2.0001]], rtol=1e-12)


def test_shrinkage_intensity_extremes() -> None:
    rng = np.random.default_rng(1)
    common = rng.standard_normal((2000, 1))
    correlated = common + 0.05 * rng.standard_normal((2000, 3))
    _, lam_corr = shrunk_covariance(correlated)
    assert lam_corr < 0.01  # strong, well-estimated correlation: almost no shrinkage
    _, lam_indep = shrunk_covariance(rng.standard_normal((20, 3)))
    assert lam_indep > 0.3  # noise correlations from 20 rows: shrink a lot
    w, _ = shrunk_covariance(correlated)
    np.testing.assert_allclose(np.diag(w), correlated.var(axis=0, ddof=1))
    with pytest.raises(ReconciliationError, match="zero error variance"):
        shrunk_covariance(np.column_stack([np.ones(10), rng.standard_normal(10)]))
    with pytest.raises(ReconciliationError, match="at least 2"):
        shrunk_covariance(np.ones((1, 3)))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),
    st.sampled_from(["bottom_up", "ols", "wls", "mint_shrink"]),
    st.integers(0, 10_000),
)
def test_every_method_adds_up(n_members: int, method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 5, (7, n_members + 1))
    errors = rng.standard_normal((50, n_members + 1))
    rec = reconcile(base, method, errors=errors)  # type: ignore[arg-type]
    np.testing.assert_allclose(rec[:, 0], rec[:, 1:].sum(axis=1), atol=1e-9)
    # Already coherent forecasts are left alone by every projection.
    coherent = np.column_stack([base[:, 1:].sum(axis=1), base[:, 1:]])
    np.testing.assert_allclose(reconcile(coherent, method, errors=errors), coherent, atol=1e-9)  # type: ignore[arg-type]


def test_reconcile_forecasts_community_band_from_its_own_model() -> None:
    members = {"a": fc([1.0, 1.0, 2.0, 2.0], 0.5), "b": fc([2.0, 2.0, 2.0, 2.0], 0.5)}
    community = fc([4.0, 3.0, 4.0, 4.0], 0.6, model="community_gbm")
    out, comm = reconcile_forecasts(members, community=community, method="ols")
    np.testing.assert_allclose(comm.median, out["a"].median + out["b"].median)
    # First target: base 4 vs 1 + 2 = 3 -> each series moves by 1/3: members 4/3, 7/3; total 11/3
    assert comm.median.iloc[0] == pytest.approx(11 / 3)
    assert out["a"].median.iloc[0] == pytest.approx(4 / 3)
    # Community band = its own model's offsets (+/- 0.6) around the reconciled median, not 0.5 + 0.5.
    np.testing.assert_allclose(comm.quantile(0.9) - comm.median, 0.6)
    np.testing.assert_allclose(comm.quantile(0.1) - comm.median, -0.6)
    # Member bands keep their width.
    np.testing.assert_allclose(out["a"].quantile(0.9) - out["a"].median, 0.5)
    assert "re-centred" in comm.reason


def test_community_band_from_summed_member_errors() -> None:
    # Two members whose errors cancel exactly: the community band has zero width although each
    # member's band does not (summing member quantiles would give a band of 2 x their widths).
    times = pd.date_range("2016-05-01", periods=24 * 4 * 20, freq="15min", tz="UTC")
    e = np.where(np.arange(len(times)) % 2 == 0, 1.0, -1.0)
    member_errors = pd.DataFrame({"a": e, "b": -e}, index=times)
    members = {"a": fc([1.0, 1.0, 1.0, 1.0], 1.0), "b": fc([2.0, 2.0, 2.0, 2.0], 1.0)}
    _, comm = reconcile_forecasts(members, member_errors=member_errors, tz="Europe/Brussels")
    np.testing.assert_allclose(comm.quantiles.to_numpy(), 3.0)
    band = summed_error_band(member_errors.assign(b=e), IDX, [0.1, 0.9], tz="Europe/Brussels")
    np.testing.assert_allclose(band, [[-2.0, 2.0]] * 4)  # perfectly correlated: widths add up


def test_lower_bound_keeps_the_sum_exact() -> None:
    # OLS would push member "a" below zero: it is floored at 0 and the community follows.
    members = {"a": fc([0.0, 0.0, 0.0, 0.0], 0.0), "b": fc([5.0, 5.0, 5.0, 5.0], 0.0)}
    community = fc([2.0, 2.0, 2.0, 2.0], 0.0)
    out, comm = reconcile_forecasts(members, community=community, method="ols", lower_bound=0.0)
    assert (out["a"].quantiles.to_numpy() >= 0).all()
    np.testing.assert_allclose(comm.median, out["a"].median + out["b"].median)


def test_misaligned_or_incomplete_inputs_are_rejected() -> None:
    a = fc([1.0] * 4, 0.1)
    shifted = Forecast(a.quantiles.set_axis(IDX + pd.Timedelta(minutes=15)), ISSUE, "gbm")
    with pytest.raises(ReconciliationError, match="member b: targets or levels differ"):
        reconcile_forecasts({"a": a, "b": shifted})
    with pytest.raises(ReconciliationError, match="needs the community"):
        reconcile_forecasts({"a": a}, method="ols")
    with pytest.raises(ReconciliationError, match="past errors"):
        reconcile(np.ones((2, 3)), "mint_shrink")
    with pytest.raises(ReconciliationError, match="unknown method"):
        reconcile(np.ones((2, 3)), "topdown")  # type: ignore[arg-type]
