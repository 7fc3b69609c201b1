"""Coherent community forecasts: the community's forecast equals the sum of its members'.

Two levels: ``m`` members at the bottom, the community at the top. With the summing matrix

    S = [ 1 1 ... 1 ]      (community = sum of members)
        [    I_m    ]      (each member is itself)

and base forecasts ``y_hat`` (community first, then members; made independently, so they need not
add up), a linear reconciliation returns ``y_tilde = S G y_hat``, which adds up by construction.
The methods differ in ``G``:

* **bottom-up**: ``G = [0 | I_m]`` -- the community is the sum of the member forecasts; the
  community's own forecast is ignored.
* **OLS** (Hyndman et al. 2011): ``G = (S' S)^-1 S'``.
* **WLS** (variance scaling): ``G = (S' W^-1 S)^-1 S' W^-1`` with ``W = diag(var(e_i))``.
* **MinT-shrink** (Wickramasuriya, Athanasopoulos & Hyndman 2019): the same with ``W`` the in-sample
  covariance of the base forecasts' errors shrunk toward its diagonal, with the Schafer-Strimmer
  (2005) intensity ``lambda = sum_{i != j} Var(r_ij) / sum_{i != j} r_ij^2`` computed on the
  standardised errors; the shrunk matrix is ``D^1/2 ((1 - lambda) R + lambda I) D^1/2``.

Reconciliation is applied to the median (the point forecast). **Quantiles do not add up**: the
0.9 quantile of a sum is not the sum of the members' 0.9 quantiles unless the members' errors are
perfectly correlated, so summing member quantiles gives a community band that is far too wide. The
community band is therefore built one of two honest ways, both centred on the reconciled median:

* from the community's own model: its band offsets ``q_tau - q_0.5`` re-centred on the reconciled
  median (:func:`reconcile_forecasts` with a community forecast);
* from history: the empirical quantiles, by local hour, of the *sum* of the members' past errors
  taken at the same instants, which keeps their real correlation (:func:`summed_error_band`).

Member bands keep their width and move with their reconciled median.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from bright.energy.forecast.baselines import Forecast, residual_quantiles, sort_quantiles

Method = Literal["bottom_up", "ols", "wls", "mint_shrink"]


class ReconciliationError(ValueError):
    """Forecasts or errors that cannot be reconciled (misaligned, too few errors, unknown method)."""


def summing_matrix(n_members: int) -> np.ndarray:
    """The ``(n_members + 1, n_members)`` summing matrix: community row of ones over the identity."""
    if n_members < 1:
        raise ReconciliationError("need at least one member")
    return np.vstack([np.ones((1, n_members)), np.eye(n_members)])


def shrunk_covariance(errors: np.ndarray) -> tuple[np.ndarray, float]:
    """Error covariance shrunk toward its diagonal (Schafer-Strimmer intensity).

    Parameters
    ----------
    errors
        ``(n_times, n_series)`` past forecast errors; rows with any NaN are dropped.

    Returns
    -------
    tuple
        ``(W, lambda)``: the shrunk covariance and the shrinkage intensity in [0, 1].

    Raises
    ------
    ReconciliationError
        With fewer than 2 complete rows, or a series whose errors have zero variance.
    """
    e = np.asarray(errors, dtype="float64")
    e = e[~np.isnan(e).any(axis=1)]
    n = e.shape[0]
    if n < 2:
        raise ReconciliationError(f"{n} complete error rows, need at least 2")
    sd = e.std(axis=0, ddof=1)
    if np.any(sd == 0):
        raise ReconciliationError(f"series {int(np.flatnonzero(sd == 0)[0])} has zero error variance")
    z = (e - e.mean(axis=0)) / sd
    r = (z.T @ z) / (n - 1)
    # Variance of each sample correlation, from the spread of the products z_ti z_tj.
    w = z[:, :, None] * z[:, None, :]
    w_bar = w.mean(axis=0)
    var_r = n / (n - 1) ** 3 * ((w - w_bar) ** 2).sum(axis=0)
    off = ~np.eye(r.shape[0], dtype=bool)
    denom = float((r[off] ** 2).sum())
    lam = 1.0 if denom == 0 else float(np.clip(var_r[off].sum() / denom, 0.0, 1.0))
    shrunk = (1.0 - lam) * r
    np.fill_diagonal(shrunk, 1.0)
    return shrunk * np.outer(sd, sd), lam


def reconciliation_matrix(n_members: int, method: Method, *, errors: np.ndarray | None = None) -> np.ndarray:
    """The ``(n_members, n_members + 1)`` matrix ``G`` of ``y_tilde = S G y_hat``.

    Parameters
    ----------
    n_members
        Number of members.
    method
        ``"bottom_up"``, ``"ols"``, ``"wls"`` or ``"mint_shrink"``.
    errors
        ``(n_times, n_members + 1)`` past errors of the base forecasts (community first), needed by
        ``"wls"`` and ``"mint_shrink"``.

    Returns
    -------
    numpy.ndarray
        ``G``.
    """
    s = summing_matrix(n_members)
    if method == "bottom_up":
        return np.hstack([np.zeros((n_members, 1)), np.eye(n_members)])
    if method == "ols":
        w_inv = np.eye(n_members + 1)
    elif method in ("wls", "mint_shrink"):
        if errors is None:
            raise ReconciliationError(f"method {method!r} needs the past errors of the base forecasts")
        e = np.asarray(errors, dtype="float64")
        if e.ndim != 2 or e.shape[1] != n_members + 1:
            raise ReconciliationError(f"errors must be (n_times, {n_members + 1}), got {e.shape}")
        if method == "wls":
            e = e[~np.isnan(e).any(axis=1)]
            var = e.var(axis=0, ddof=1) if e.shape[0] >= 2 else np.full(n_members + 1, np.nan)
            if np.any(~(var > 0)):
                raise ReconciliationError("wls needs a positive error variance for every series")
            w_inv = np.diag(1.0 / var)
        else:
            w, _ = shrunk_covariance(e)
            w_inv = np.linalg.inv(w)
    else:
        raise ReconciliationError(f"unknown method {method!r}")
    a = s.T @ w_inv @ s
    return np.linalg.solve(a, s.T @ w_inv)


def reconcile(base: np.ndarray, method: Method, *, errors: np.ndarray | None = None) -> np.ndarray:
    """Reconcile base point forecasts so that the community equals the sum of members.

    Parameters
    ----------
    base
        ``(n_times, n_members + 1)`` base forecasts, community first (kWh per interval).
    method
        See :func:`reconciliation_matrix`.
    errors
        Past errors for ``"wls"`` / ``"mint_shrink"``.

    Returns
    -------
    numpy.ndarray
        ``(n_times, n_members + 1)`` coherent forecasts: column 0 equals the sum of the others.
    """
    b = np.asarray(base, dtype="float64")
    if b.ndim != 2 or b.shape[1] < 2:
        raise ReconciliationError(f"base must be (n_times, n_members + 1), got {b.shape}")
    m = b.shape[1] - 1
    g = reconciliation_matrix(m, method, errors=errors)
    if method == "bottom_up":
        members = b[:, 1:]
    else:
        if np.isnan(b).any():
            raise ReconciliationError("base forecasts have NaN; fill them or use bottom_up")
        members = b @ g.T
    return np.hstack([members.sum(axis=1, keepdims=True), members])


def summed_error_band(
    member_errors: pd.DataFrame,
    targets: pd.DatetimeIndex,
    levels: Sequence[float],
    *,
    tz: str,
    min_residuals: int = 28,
) -> np.ndarray:
    """Band offsets of the community from the sum of the members' past errors at the same instants.

    Parameters
    ----------
    member_errors
        Past errors ``y - median`` of each member's forecasts (columns = members), kWh per interval,
        indexed by UTC interval starts. Instants where a member is missing are skipped.
    targets
        UTC interval starts of the community forecast.
    levels
        Quantile levels.
    tz
        Local clock for the hour-of-day grouping.
    min_residuals
        Fewest summed errors per hour for hourly quantiles.

    Returns
    -------
    numpy.ndarray
        ``(len(targets), len(levels))`` offsets to add to the community median (NaN if too few).
    """
    complete = member_errors.dropna(how="any")
    summed = complete.sum(axis=1).to_numpy()
    hours = pd.DatetimeIndex(complete.index).tz_convert(tz).hour.to_numpy()
    return residual_quantiles(
        summed, hours, targets.tz_convert(tz).hour.to_numpy(), levels, min_residuals=min_residuals
    )


def reconcile_forecasts(
    members: Mapping[str, Forecast],
    *,
    community: Forecast | None = None,
    method: Method = "bottom_up",
    errors: pd.DataFrame | None = None,
    member_errors: pd.DataFrame | None = None,
    tz: str = "Europe/Brussels",
    community_name: str = "community",
    lower_bound: float | None = None,
) -> tuple[dict[str, Forecast], Forecast]:
    """Reconcile member forecasts and a community forecast into a coherent set.

    Parameters
    ----------
    members
        Member id -> forecast (same targets and levels for all).
    community
        The community's own forecast (needed for every method but bottom-up, and for a
        community band from its own model).
    method
        Reconciliation of the medians (see module docstring).
    errors
        Past errors for ``"wls"``/``"mint_shrink"``: columns ``community_name`` then the member ids.
    member_errors
        Past errors of the members (columns = member ids) for a band from summed errors; used when
        given, else the community model's band is re-centred, else the band is unknown (NaN).
    tz
        Local clock (hour-of-day grouping of errors).
    community_name
        Name of the community series in ``errors`` and in the returned forecast.
    lower_bound
        Optional floor applied to every quantile after reconciliation (0 for offtake; None for
        net load, which can be negative).

    Returns
    -------
    tuple
        ``(members, community)``: reconciled forecasts; the community median equals the sum of the
        member medians at every target.
    """
    if not members:
        raise ReconciliationError("no member forecasts")
    ids = list(members)
    first = members[ids[0]]
    targets, levels = first.quantiles.index, first.levels
    for k in ids:
        f = members[k]
        if not f.quantiles.index.equals(targets) or not np.allclose(f.levels, levels):
            raise ReconciliationError(f"member {k}: targets or levels differ from member {ids[0]}")
    if community is not None and (
        not community.quantiles.index.equals(targets) or not np.allclose(community.levels, levels)
    ):
        raise ReconciliationError("community forecast: targets or levels differ from the members'")
    if method != "bottom_up" and community is None:
        raise ReconciliationError(f"method {method!r} needs the community's own forecast")
    mid = int(np.flatnonzero(np.isclose(levels, 0.5))[0])
    med = np.column_stack(
        [community.median.to_numpy() if community is not None else np.full(len(targets), np.nan)]
        + [members[k].median.to_numpy() for k in ids]
    )
    err = None
    if errors is not None:
        missing = [c for c in [community_name, *ids] if c not in errors.columns]
        if missing:
            raise ReconciliationError(f"errors lack columns {missing}")
        err = errors[[community_name, *ids]].to_numpy(dtype="float64")
    rec = reconcile(med, method, errors=err)
    member_medians = rec[:, 1:]
    if lower_bound is not None:
        # A floor on the members (offtake >= 0) is applied before summing, so the community stays
        # the exact sum of what the members are told.
        member_medians = np.maximum(member_medians, lower_bound)
    out: dict[str, Forecast] = {}
    for j, k in enumerate(ids):
        f = members[k]
        shift = member_medians[:, j] - f.median.to_numpy()
        q = f.quantiles.to_numpy() + shift[:, None]
        if lower_bound is not None:
            q = np.maximum(q, lower_bound)
        q = sort_quantiles(q)
        q[:, mid] = member_medians[:, j]
        out[k] = Forecast(
            pd.DataFrame(q, index=targets, columns=list(levels)),
            f.issue_time,
            f.model,
            reason=f"{f.reason}; reconciled ({method})",
            member=k,
        )
    total = member_medians.sum(axis=1)
    if member_errors is not None:
        offsets = summed_error_band(
            member_errors[ids], pd.DatetimeIndex(targets), [float(v) for v in levels], tz=tz
        )
        band = f"band from summed member errors ({len(member_errors.dropna())} instants)"
    elif community is not None:
        cq = community.quantiles.to_numpy()
        offsets = cq - cq[:, [mid]]
        band = f"band of the community model {community.model!r} re-centred"
    else:
        offsets = np.full((len(targets), len(levels)), np.nan)
        band = "band unknown (no community model, no member errors)"
    # Lower levels below the median, upper above it: the median stays the coherent total.
    offsets[:, :mid] = np.minimum(offsets[:, :mid], 0.0)
    offsets[:, mid] = 0.0
    offsets[:, mid + 1 :] = np.maximum(offsets[:, mid + 1 :], 0.0)
    q = total[:, None] + offsets
    if lower_bound is not None:
        q[:, :mid] = np.maximum(q[:, :mid], lower_bound)
    q = sort_quantiles(q)
    issue = max(pd.Timestamp(f.issue_time) for f in members.values())
    comm = Forecast(
        pd.DataFrame(q, index=targets, columns=list(levels)),
        issue,
        f"{method}_reconciled",
        reason=f"median = sum of {len(ids)} reconciled member medians; {band}",
        member=community_name,
    )
    return out, comm
