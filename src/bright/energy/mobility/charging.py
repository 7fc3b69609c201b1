"""Charging policies for a set of EV sessions on a regular step grid (15 min by default).

Every policy takes :class:`~bright.energy.mobility.fleet.ChargingSessions` and returns a
:class:`ChargingResult`: the power of every session in every step it is plugged in ("slots"), the
aggregate charging and discharging power per step, and the energy delivered and unmet per session.
Power is the mean over the step in kW, at the meter; energy per step is ``power * step_h`` kWh.

Policies
--------
``uncontrolled``
    Full power from plug-in until the request is met.
``time_of_use``
    A charging timer: start at the first cheap step after plug-in, or at the latest start that still
    meets the request at full power, whichever comes first; then full power until done.
``earliest_deadline_first``
    Under a site limit (kW, constant or per step): every step, cars whose laxity is exhausted (the
    rest of their request needs full power until departure) are served first, then the others, both
    in order of departure; each gets ``min(max power, remaining / step)`` while the limit lasts.
``pv_following``
    Charge from the community's PV surplus (shared in departure order), topped up by the cars whose
    laxity is exhausted so that every feasible request is met; optional site limit.
``community_optimal``
    One linear programme per day (arrivals of that day, over their whole dwell) minimising the
    community's import cost minus export revenue, plus an optional peak charge and a penalty on
    unmet energy; any solver with the :data:`ChargingSolver` signature can replace the bundled one.
``vehicle_to_grid``
    The car as a two-way battery: charge from PV surplus (and from the grid at low prices), discharge
    to cover the community's deficit (at high prices, or always), never below a floor and never so
    deep that the departure target can no longer be reached at full power.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linprog

from bright.energy.mobility.calibration import MobilityInputError
from bright.energy.mobility.fleet import BRUSSELS, ChargingSessions

_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class ChargingResult:
    """Outcome of a charging policy.

    Attributes
    ----------
    policy
        Name of the policy that produced it.
    charge_kw
        Aggregate charging power per step, kW (>= 0), shape ``(n_steps,)``.
    discharge_kw
        Aggregate discharging power per step (vehicle-to-grid), kW (>= 0), shape ``(n_steps,)``.
    delivered_kwh
        Net energy into each car's battery over its session, kWh: charged energy minus discharged
        energy divided by the discharge efficiency.
    unmet_kwh
        ``max(0, requested - delivered)`` per session, kWh.
    slot_session, slot_step, slot_power_kw
        One entry per (session, step) the car is plugged in: the session, the step and the net power
        (charging > 0, discharging < 0), kW.
    """

    policy: str
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    delivered_kwh: np.ndarray
    unmet_kwh: np.ndarray
    slot_session: np.ndarray
    slot_step: np.ndarray
    slot_power_kw: np.ndarray

    @property
    def net_kw(self) -> np.ndarray:
        """Charging minus discharging power per step, kW."""
        return self.charge_kw - self.discharge_kw


@dataclass(frozen=True, eq=False)
class ChargingProblem:
    """One window of the community-optimal policy, as handed to a :data:`ChargingSolver`.

    Attributes
    ----------
    step_h
        Step length, hours.
    steps
        Global step index of each window step, shape ``(n_t,)``.
    slot_session, slot_step
        Per slot: the window's session index (0..m-1) and window step index (0..n_t-1).
    max_power_kw
        Power limit per session, kW, shape ``(m,)``.
    energy_kwh
        Energy requested per session, kWh, shape ``(m,)``.
    net_load_kw
        Community load minus PV plus EV power already committed by earlier windows, kW per step.
    import_price_eur_per_kwh, export_price_eur_per_kwh
        Price of energy taken from and given to the grid, EUR/kWh per step.
    site_limit_kw
        Limit on the window's EV charging power per step (what earlier windows left), kW, or ``None``.
    peak_weight_eur_per_kw
        Cost per kW of the window's highest import, EUR/kW (0 disables the peak term).
    unmet_penalty_eur_per_kwh
        Cost per kWh of request left unmet, EUR/kWh.
    """

    step_h: float
    steps: np.ndarray
    slot_session: np.ndarray
    slot_step: np.ndarray
    max_power_kw: np.ndarray
    energy_kwh: np.ndarray
    net_load_kw: np.ndarray
    import_price_eur_per_kwh: np.ndarray
    export_price_eur_per_kwh: np.ndarray
    site_limit_kw: np.ndarray | None
    peak_weight_eur_per_kw: float
    unmet_penalty_eur_per_kwh: float


#: A solver receives a window and returns the power of each of its slots, kW (``slot_*`` order).
ChargingSolver = Callable[[ChargingProblem], np.ndarray]


# --------------------------------------------------------------------------------------------------
# Inputs


def step_series(
    name: str, value: float | np.ndarray | pd.Series, n_steps: int, *, min_value: float | None
) -> np.ndarray:
    """A per-step series from a scalar or an array of ``n_steps`` values, checked.

    Parameters
    ----------
    name
        Field name used in error messages.
    value
        A constant or one value per step (any unit).
    n_steps
        Number of steps.
    min_value
        Smallest accepted value, or ``None`` for any finite value.

    Returns
    -------
    numpy.ndarray
        Float array of shape ``(n_steps,)``.

    Raises
    ------
    MobilityInputError
        On a wrong length or a value that is NaN, infinite or below ``min_value`` (the first offending
        step is named).
    """
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_steps, float(arr))
    if arr.shape != (n_steps,):
        raise MobilityInputError(f"{name}: shape {arr.shape}, expected ({n_steps},) (one value per step)")
    bad = ~np.isfinite(arr) if min_value is None else ~(np.isfinite(arr) & (arr >= min_value))
    idx = np.flatnonzero(bad)
    if idx.size:
        raise MobilityInputError(f"{name}: {arr[idx[0]]} at step {idx[0]}")
    return arr


def _limit(site_limit_kw: float | np.ndarray | None, n_steps: int) -> np.ndarray | None:
    return (
        None if site_limit_kw is None else step_series("site_limit_kw", site_limit_kw, n_steps, min_value=0.0)
    )


def local_hours_mask(
    start: pd.Timestamp,
    n_steps: int,
    start_hour: float,
    end_hour: float,
    *,
    step_h: float = 0.25,
    tz: str = BRUSSELS,
) -> np.ndarray:
    """Steps whose local start time falls in a daily window (e.g. an off-peak tariff period).

    Parameters
    ----------
    start
        UTC start of step 0.
    n_steps
        Number of steps.
    start_hour, end_hour
        Window bounds in local hours, ``[start_hour, end_hour)``; a window that wraps midnight has
        ``start_hour > end_hour`` (22 to 7).
    step_h
        Step length, hours.
    tz
        Local time zone.

    Returns
    -------
    numpy.ndarray
        Boolean per step.
    """
    idx = pd.date_range(pd.Timestamp(start), periods=n_steps, freq=pd.Timedelta(hours=step_h)).tz_convert(tz)
    h = idx.hour.to_numpy() + idx.minute.to_numpy() / 60.0
    if start_hour <= end_hour:
        return (h >= start_hour) & (h < end_hour)
    return (h >= start_hour) | (h < end_hour)


# --------------------------------------------------------------------------------------------------
# Slots


def _slots(sessions: ChargingSessions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session, step, rank in session) of every plugged-in step, sessions one after the other."""
    dwell = sessions.departure - sessions.arrival
    session = np.repeat(np.arange(len(sessions), dtype=np.int64), dwell)
    rank = np.arange(session.size, dtype=np.int64) - np.repeat(np.cumsum(dwell) - dwell, dwell)
    return session, sessions.arrival[session] + rank, rank


def _slots_by_step(sessions: ChargingSessions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slots sorted by step, then departure, then session; with the slice bounds of each step.

    Returns ``(session, step, bounds)`` where step ``t`` owns ``bounds[t]:bounds[t + 1]``.
    """
    session, step, _ = _slots(sessions)
    n_steps = sessions.n_steps
    dep = sessions.departure[session]
    b_s = max(1, len(sessions).bit_length())
    b_d = int(n_steps).bit_length() + 1
    if b_s + 2 * b_d < 63:
        key = (step << (b_d + b_s)) | (dep << b_s) | session
        key.sort()
        session = key & ((1 << b_s) - 1)
        step = key >> (b_d + b_s)
    else:  # pragma: no cover - more than ~2^25 sessions
        order = np.lexsort((session, dep, step))
        session, step = session[order], step[order]
    bounds = np.searchsorted(step, np.arange(n_steps + 1))
    return session, step, bounds


def _result(
    name: str,
    sessions: ChargingSessions,
    slot_session: np.ndarray,
    slot_step: np.ndarray,
    power: np.ndarray,
    delivered: np.ndarray | None = None,
    *,
    discharge_efficiency: float = 1.0,
) -> ChargingResult:
    n = sessions.n_steps
    charge = np.clip(power, 0.0, None)
    discharge = np.clip(-power, 0.0, None)
    if delivered is None:
        dt = sessions.step_h
        delivered = np.bincount(slot_session, weights=charge, minlength=len(sessions)) * dt
        delivered -= (
            np.bincount(slot_session, weights=discharge, minlength=len(sessions)) * dt / discharge_efficiency
        )
    return ChargingResult(
        policy=name,
        charge_kw=np.bincount(slot_step, weights=charge, minlength=n),
        discharge_kw=np.bincount(slot_step, weights=discharge, minlength=n),
        delivered_kwh=delivered,
        unmet_kwh=np.maximum(sessions.energy_kwh - delivered, 0.0),
        slot_session=slot_session,
        slot_step=slot_step,
        slot_power_kw=power,
    )


def _fill(need: np.ndarray, capacity: float) -> np.ndarray:
    """Serve ``need`` (kW, in priority order) while ``capacity`` (kW) lasts."""
    before = np.cumsum(need) - need
    return np.minimum(need, np.maximum(capacity - before, 0.0))


# --------------------------------------------------------------------------------------------------
# Open-loop policies (closed form per slot)


def _full_power_from(sessions: ChargingSessions, begin: np.ndarray, name: str) -> ChargingResult:
    """Full power from step ``begin`` of each session until its request is met."""
    session, step, _ = _slots(sessions)
    dt = sessions.step_h
    p = sessions.max_power_kw[session]
    done_before = (step - begin[session]) * p * dt  # kWh delivered before this step once started
    power = np.clip((sessions.energy_kwh[session] - done_before) / dt, 0.0, p)
    power = np.where(step >= begin[session], power, 0.0)
    return _result(name, sessions, session, step, power)


def uncontrolled(sessions: ChargingSessions) -> ChargingResult:
    """Full power from plug-in until the request is met (or the car leaves).

    Parameters
    ----------
    sessions
        The charging sessions.

    Returns
    -------
    ChargingResult
    """
    return _full_power_from(sessions, sessions.arrival, "uncontrolled")


def time_of_use(sessions: ChargingSessions, cheap: np.ndarray) -> ChargingResult:
    """Charging timer: start in the cheap window, or late enough to finish, whichever comes first.

    A session starts at ``min(first cheap step >= arrival, latest start)`` where the latest start is
    ``departure - ceil(request / (max power * step_h))``, then charges at full power until done.

    Parameters
    ----------
    sessions
        The charging sessions.
    cheap
        Boolean per step: True where the tariff is cheap (see :func:`local_hours_mask`).

    Returns
    -------
    ChargingResult
    """
    cheap = np.asarray(cheap)
    if cheap.shape != (sessions.n_steps,) or cheap.dtype != bool:
        raise MobilityInputError(f"cheap: expected a boolean array of shape ({sessions.n_steps},)")
    n = sessions.n_steps
    # next_cheap[t]: first cheap step >= t (n if none).
    marks = np.where(cheap, np.arange(n), n)
    next_cheap = np.minimum.accumulate(marks[::-1])[::-1]
    needed = np.ceil(sessions.energy_kwh / (sessions.max_power_kw * sessions.step_h) - _TOL).astype(np.int64)
    latest = np.maximum(sessions.departure - needed, sessions.arrival)
    begin = np.minimum(next_cheap[sessions.arrival], latest)
    return _full_power_from(sessions, begin, "time_of_use")


# --------------------------------------------------------------------------------------------------
# Closed-loop policies (one pass over the steps, vectorised over the cars plugged in)


def _laxity_dispatch(
    sessions: ChargingSessions, budget_kw: np.ndarray, limit_kw: np.ndarray | None, name: str
) -> ChargingResult:
    """Per step: cars out of laxity first, then the others up to ``budget``; departure order; limit."""
    session, step, bounds = _slots_by_step(sessions)
    dt = sessions.step_h
    pmax, dep = sessions.max_power_kw, sessions.departure
    remaining = sessions.energy_kwh.astype(np.float64).copy()
    power = np.zeros(session.size)
    for t in np.flatnonzero(np.diff(bounds)):
        lo, hi = bounds[t], bounds[t + 1]
        s = session[lo:hi]
        p, r = pmax[s], remaining[s]
        need = np.minimum(p, r / dt)
        must = np.minimum(need, np.maximum(r - p * dt * (dep[s] - t - 1), 0.0) / dt)
        if limit_kw is not None:
            must = _fill(must, limit_kw[t])
            room = min(budget_kw[t], limit_kw[t]) - must.sum()
        else:
            room = budget_kw[t] - must.sum()
        alloc = must + _fill(need - must, room) if room > 0 else must
        power[lo:hi] = alloc
        remaining[s] = np.maximum(r - alloc * dt, 0.0)
    delivered = sessions.energy_kwh - remaining
    return _result(name, sessions, session, step, power, delivered)


def earliest_deadline_first(
    sessions: ChargingSessions, site_limit_kw: float | np.ndarray | None
) -> ChargingResult:
    """Earliest-deadline-first under a site limit, with a laxity guard.

    Each step, cars whose remaining request needs full power until departure are served first, then
    the others; both groups in order of departure, each car at ``min(max power, remaining / step)``
    while the site limit lasts. The charging power never exceeds the limit.

    Parameters
    ----------
    sessions
        The charging sessions.
    site_limit_kw
        Limit on the total charging power, kW (constant, or one value per step); ``None`` for no
        limit (then every car charges as if uncontrolled).

    Returns
    -------
    ChargingResult
    """
    limit = _limit(site_limit_kw, sessions.n_steps)
    budget = np.full(sessions.n_steps, np.inf) if limit is None else limit
    return _laxity_dispatch(sessions, budget, limit, "earliest_deadline_first")


def pv_following(
    sessions: ChargingSessions,
    surplus_kw: np.ndarray,
    *,
    site_limit_kw: float | np.ndarray | None = None,
) -> ChargingResult:
    """Charge from the community's PV surplus, topped up so that feasible requests are met.

    Each step, cars out of laxity charge what they must (within the site limit); the surplus left
    is shared in departure order. Without a site limit every request that fits its dwell at full
    power is met.

    Parameters
    ----------
    sessions
        The charging sessions.
    surplus_kw
        Community PV surplus available to the cars, kW per step (>= 0), typically
        ``max(pv - base load, 0)``.
    site_limit_kw
        Optional limit on the total charging power, kW (constant or per step).

    Returns
    -------
    ChargingResult
    """
    surplus = step_series("surplus_kw", surplus_kw, sessions.n_steps, min_value=0.0)
    return _laxity_dispatch(sessions, surplus, _limit(site_limit_kw, sessions.n_steps), "pv_following")


def vehicle_to_grid(
    sessions: ChargingSessions,
    base_kw: np.ndarray,
    pv_kw: np.ndarray,
    *,
    price_eur_per_kwh: np.ndarray | None = None,
    price_low_eur_per_kwh: float | None = None,
    price_high_eur_per_kwh: float | None = None,
    min_soc: float = 0.2,
    reserve_power_share: float = 0.5,
    discharge_above_kw: float = 0.0,
    discharge_efficiency: float = 0.9,
    export: bool = False,
    site_limit_kw: float | np.ndarray | None = None,
) -> ChargingResult:
    """The car as a two-way battery that still leaves with the charge its driver asked for.

    Each car keeps a *reserve line*: with ``g = reserve_power_share * max power``, its stored
    energy ``e`` (kWh) must stay at or above ``target - g * dt * steps left after this one``, where
    ``target = arrival energy + request``. Each step, with the community residual ``r = base - pv``
    (kW):

    * *must*: a car below its line after this step charges back onto it (at most at max power);
    * *discharge*: if ``r > discharge_above_kw`` and the price is at or above ``price_high`` (or
      no price threshold is set), cars discharge to cover ``r - discharge_above_kw`` (everything
      they may give when ``export``), in proportion to what each may give: at most its max power,
      down to ``min_soc`` of the battery and not below its reserve line;
    * *optional charge*: cars that do not discharge absorb the PV surplus ``max(-r, 0)`` (and the
      grid, without limit, when the price is at or below ``price_low``) up to a full battery, in
      departure order.

    Charging along the reserve line at ``g`` spreads the recharge before departure instead of
    bunching it at full power. Because discharge never crosses the line and the line ends at the
    target, a car whose request fits its dwell at full power leaves with at least its target
    (when no site limit binds). A site limit caps all charging (must first, in departure order) and
    all discharging.

    Parameters
    ----------
    sessions
        The charging sessions (``battery_kwh`` and ``arrival_soc`` are used).
    base_kw, pv_kw
        Community load without EVs and PV generation, kW per step (>= 0).
    price_eur_per_kwh
        Day-ahead or retail price per step, EUR/kWh; required with a price threshold.
    price_low_eur_per_kwh, price_high_eur_per_kwh
        Grid charging at or below ``price_low``; discharge only at or above ``price_high``, EUR/kWh.
    min_soc
        Floor of discharging, fraction of the battery.
    reserve_power_share
        Share of a car's max power its reserve line assumes for the recharge, in (0, 1]; 1 allows
        the deepest discharge and the most bunched recharge.
    discharge_above_kw
        Community deficit left to the grid before cars discharge (peak shaving), kW.
    discharge_efficiency
        Energy delivered per kWh taken from the battery when discharging, in (0, 1].
    export
        At high prices, discharge all the cars may give, beyond the community's deficit.
    site_limit_kw
        Optional limit on the total charging and on the total discharging power, kW.

    Returns
    -------
    ChargingResult
        ``delivered_kwh`` is the net battery gain of each car.
    """
    n = sessions.n_steps
    base = step_series("base_kw", base_kw, n, min_value=0.0)
    pv = step_series("pv_kw", pv_kw, n, min_value=0.0)
    if not 0 < discharge_efficiency <= 1:
        raise MobilityInputError(f"discharge_efficiency: {discharge_efficiency}, expected in (0, 1]")
    if not 0 <= min_soc <= 1:
        raise MobilityInputError(f"min_soc: {min_soc}, expected in [0, 1]")
    if not 0 < reserve_power_share <= 1:
        raise MobilityInputError(f"reserve_power_share: {reserve_power_share}, expected in (0, 1]")
    if not discharge_above_kw >= 0:
        raise MobilityInputError(f"discharge_above_kw: {discharge_above_kw}, expected >= 0")
    thresholds = price_low_eur_per_kwh is not None or price_high_eur_per_kwh is not None
    if thresholds and price_eur_per_kwh is None:
        raise MobilityInputError("price_eur_per_kwh: required when a price threshold is set")
    high = np.ones(n, dtype=bool)
    low = np.zeros(n, dtype=bool)
    if price_eur_per_kwh is not None:
        price = step_series("price_eur_per_kwh", price_eur_per_kwh, n, min_value=None)
        if price_high_eur_per_kwh is not None:
            high = price >= price_high_eur_per_kwh
        if price_low_eur_per_kwh is not None:
            low = price <= price_low_eur_per_kwh
    limit = _limit(site_limit_kw, n)
    residual = base - pv

    session, step, bounds = _slots_by_step(sessions)
    dt, eta = sessions.step_h, discharge_efficiency
    pmax, dep, battery = sessions.max_power_kw, sessions.departure, sessions.battery_kwh
    energy0 = sessions.arrival_soc * battery
    stored = energy0.copy()
    target = energy0 + sessions.energy_kwh
    floor = min_soc * battery
    power = np.zeros(session.size)
    for t in np.flatnonzero(np.diff(bounds)):
        lo, hi = bounds[t], bounds[t + 1]
        s = session[lo:hi]
        p, e = pmax[s], stored[s]
        line = target[s] - reserve_power_share * p * dt * (dep[s] - t - 1)  # kWh to hold after this step
        headroom = np.maximum(battery[s] - e, 0.0) / dt
        must = np.clip((line - e) / dt, 0.0, np.minimum(p, headroom))
        if limit is not None:
            must = _fill(must, limit[t])
        give = np.minimum((e - np.maximum(floor[s], line)) * eta / dt, p)
        give = np.where(must > 0, 0.0, np.maximum(give, 0.0))
        deficit = residual[t] - discharge_above_kw
        dis = np.zeros(s.size)
        if high[t] and (deficit > 0 or export):
            wanted = np.inf if export else deficit
            if limit is not None:
                wanted = min(wanted, limit[t])
            total = give.sum()
            if total > 0:
                dis = give * min(1.0, wanted / total)
        budget = np.inf if low[t] else max(-residual[t], 0.0)
        if limit is not None:
            budget = min(budget, limit[t])
        budget -= must.sum()
        extra = np.where(dis > 0, 0.0, np.minimum(p, headroom) - must)
        charge = must + _fill(extra, budget) if budget > 0 else must
        power[lo:hi] = charge - dis
        stored[s] = e + charge * dt - dis * dt / eta
    return _result("vehicle_to_grid", sessions, session, step, power, stored - energy0)


# --------------------------------------------------------------------------------------------------
# Community-optimal


def solve_charging_lp(problem: ChargingProblem) -> np.ndarray:
    """Solve one community-optimal window as a linear programme with HiGHS (scipy ``linprog``).

    Variables: slot power ``p`` (0..max power), unmet energy ``u`` per session, grid import ``g`` and
    export ``x`` per step, peak import ``z``. Minimise
    ``sum_t (c_imp g_t - c_exp x_t) dt + w z + pi sum_i u_i + eps sum p_k (k / n_t) dt`` subject to
    ``sum_{k at t} p_k - g_t + x_t = -net_t`` (balance), ``sum_{k of i} p_k dt + u_i = E_i``
    (request), ``g_t <= z`` (peak), ``sum_{k at t} p_k <= limit_t`` (site limit). Export is bounded
    by the surplus (cars do not discharge here), import by the largest possible load, so the
    programme is bounded even with negative prices. The tiny ``eps`` term prefers earlier steps
    among equal-cost ones.

    Parameters
    ----------
    problem
        The window.

    Returns
    -------
    numpy.ndarray
        Power per slot, kW.

    Raises
    ------
    RuntimeError
        If HiGHS does not report an optimal solution.
    """
    pb = problem
    n_k, n_t, m = pb.slot_session.size, pb.steps.size, pb.energy_kwh.size
    dt = pb.step_h
    use_peak = pb.peak_weight_eur_per_kw > 0
    n_var = n_k + m + 2 * n_t + 1
    i_u, i_g, i_x, i_z = n_k, n_k + m, n_k + m + n_t, n_k + m + 2 * n_t
    c = np.zeros(n_var)
    c[:n_k] = 1e-6 * (pb.slot_step + 1) / n_t * dt
    c[i_u:i_g] = pb.unmet_penalty_eur_per_kwh
    c[i_g:i_x] = pb.import_price_eur_per_kwh * dt
    c[i_x:i_z] = -pb.export_price_eur_per_kwh * dt
    c[i_z] = pb.peak_weight_eur_per_kw
    k = np.arange(n_k)
    t = np.arange(n_t)
    balance = sparse.coo_array(
        (
            np.r_[np.ones(n_k), -np.ones(n_t), np.ones(n_t)],
            (np.r_[pb.slot_step, t, t], np.r_[k, i_g + t, i_x + t]),
        ),
        shape=(n_t, n_var),
    )
    request = sparse.coo_array(
        (
            np.r_[np.full(n_k, dt), np.ones(m)],
            (np.r_[pb.slot_session, np.arange(m)], np.r_[k, i_u + np.arange(m)]),
        ),
        shape=(m, n_var),
    )
    a_eq = sparse.vstack([balance, request]).tocsr()
    b_eq = np.r_[-pb.net_load_kw, pb.energy_kwh]
    ub_blocks, b_ub = [], []
    if use_peak:
        ub_blocks.append(
            sparse.coo_array(
                (np.r_[np.ones(n_t), -np.ones(n_t)], (np.r_[t, t], np.r_[i_g + t, np.full(n_t, i_z)])),
                shape=(n_t, n_var),
            )
        )
        b_ub.append(np.zeros(n_t))
    if pb.site_limit_kw is not None:
        ub_blocks.append(sparse.coo_array((np.ones(n_k), (pb.slot_step, k)), shape=(n_t, n_var)))
        b_ub.append(pb.site_limit_kw)
    present_kw = np.bincount(pb.slot_step, weights=pb.max_power_kw[pb.slot_session], minlength=n_t)
    bounds = np.zeros((n_var, 2))
    bounds[:n_k, 1] = pb.max_power_kw[pb.slot_session]
    bounds[i_u:i_g, 1] = pb.energy_kwh
    bounds[i_g:i_x, 1] = np.maximum(pb.net_load_kw, 0.0) + present_kw
    bounds[i_x:i_z, 1] = np.maximum(-pb.net_load_kw, 0.0)
    bounds[i_z, 1] = np.inf if use_peak else 0.0
    res = linprog(
        c,
        A_ub=sparse.vstack(ub_blocks).tocsr() if ub_blocks else None,
        b_ub=np.concatenate(b_ub) if b_ub else None,
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=bounds,
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(
            f"community-optimal window at step {pb.steps[0]}: HiGHS status {res.status}: {res.message}"
        )
    return np.asarray(res.x[:n_k])


def flex_charging_solver(problem: ChargingProblem) -> np.ndarray:
    """Solve a community-optimal window with the flexibility solver (:mod:`bright.energy.flex`).

    The window becomes one flex ``Site``: the net load ``net_load_kw`` as base load (its positive
    part) and fixed PV (its negative part), one ``ElectricVehicle`` per session (battery = its
    request, charger = its power, charge efficiency 1 because requests are at the meter, plugged in
    over its slots), import at ``import_price``, export at ``export_price``, a ``peak_charge`` of
    ``peak_weight_eur_per_kw`` on the net import, unmet energy at ``unmet_penalty_eur_per_kwh``.
    That is the linear programme of :func:`solve_charging_lp` (without its tie-breaking term), so
    both give the same cost (``tests/mobility/test_charging.py`` checks it). Pass it as
    ``community_optimal(..., solver=flex_charging_solver)``.

    Parameters
    ----------
    problem
        The window.

    Returns
    -------
    numpy.ndarray
        Power per slot, kW.

    Raises
    ------
    MobilityInputError
        With a site limit: the flex model limits a whole access point, not the EVs alone (use
        :func:`solve_charging_lp`).
    RuntimeError
        If the flexibility solver fails.
    """
    from bright.energy.flex.commitments import energy_price, feed_in, peak_charge
    from bright.energy.flex.devices import ElectricVehicle, EVSession, PVSystem
    from bright.energy.flex.problem import FlexInputError, Penalties, ScheduleError, Site
    from bright.energy.flex.solve import schedule

    pb = problem
    if pb.site_limit_kw is not None:
        raise MobilityInputError(
            "flex_charging_solver: an EV-only site limit is not a flex constraint; use solve_charging_lp"
        )
    n_t = pb.steps.size
    step = pd.Timedelta(hours=pb.step_h)
    # Any regular UTC grid will do: prices and loads are given per window step.
    index = pd.date_range(
        pd.Timestamp("2000-01-03", tz="UTC") + int(pb.steps[0]) * step, periods=n_t, freq=step
    )
    first = np.full(pb.energy_kwh.size, n_t, dtype=np.int64)
    last = np.full(pb.energy_kwh.size, -1, dtype=np.int64)
    np.minimum.at(first, pb.slot_session, pb.slot_step)
    np.maximum.at(last, pb.slot_session, pb.slot_step)
    cars = []
    for i in np.flatnonzero((pb.energy_kwh > 0) & (last >= 0)):
        session = EVSession(index[first[i]], index[last[i]] + step, float(pb.energy_kwh[i]))
        cars.append(
            ElectricVehicle(
                f"s{i}", float(pb.energy_kwh[i]), float(pb.max_power_kw[i]), [session], charge_efficiency=1.0
            )
        )
    commitments = [energy_price(pb.import_price_eur_per_kwh), feed_in(pb.export_price_eur_per_kwh)]
    if pb.peak_weight_eur_per_kw > 0:
        commitments.append(peak_charge(pb.peak_weight_eur_per_kw))
    pv = np.maximum(-pb.net_load_kw, 0.0)
    devices: list[Any] = [*cars, PVSystem("net-pv", pv, curtailable=False)]
    try:
        site = Site(
            "window",
            np.maximum(pb.net_load_kw, 0.0),
            tuple(devices),
            commitments=tuple(commitments),
        )
        sched = schedule(index, site, penalties=Penalties(energy_eur_per_kwh=pb.unmet_penalty_eur_per_kwh))
    except (FlexInputError, ScheduleError) as exc:
        raise RuntimeError(f"community-optimal window at step {pb.steps[0]}: flex solver: {exc}") from None
    power = np.zeros(pb.slot_session.size)
    frames = sched.devices["window"]
    for car in cars:
        k = int(car.name[1:])
        mine = pb.slot_session == k
        kw = np.asarray(frames[car.name]["power_kw"], dtype=np.float64)
        power[mine] = np.clip(kw[pb.slot_step[mine]], 0.0, pb.max_power_kw[k])
    return power


def community_optimal(
    sessions: ChargingSessions,
    base_kw: np.ndarray,
    pv_kw: np.ndarray,
    import_price_eur_per_kwh: float | np.ndarray,
    *,
    export_price_eur_per_kwh: float | np.ndarray = 0.0,
    site_limit_kw: float | np.ndarray | None = None,
    peak_weight_eur_per_kw: float = 0.0,
    unmet_penalty_eur_per_kwh: float | None = None,
    window_steps: int = 96,
    solver: ChargingSolver | None = None,
) -> ChargingResult:
    """Community-optimal charging, one optimisation window after the other.

    Sessions are grouped by the window (``window_steps``, one day at 15 min) of their arrival; the
    windows are solved in time order, each over the whole dwell of its sessions, with the EV power
    committed by earlier windows added to the community load and removed from the site limit. For
    fleets of tens of cars the bundled LP (:func:`solve_charging_lp`) solves a year in seconds; a
    year of 1,000 cars is better served by an aggregate formulation (pass it as ``solver``).

    Parameters
    ----------
    sessions
        The charging sessions.
    base_kw, pv_kw
        Community load without EVs and PV generation, kW per step (>= 0).
    import_price_eur_per_kwh, export_price_eur_per_kwh
        Price of grid import and export, EUR/kWh (constant or per step).
    site_limit_kw
        Optional limit on the total charging power, kW (constant or per step).
    peak_weight_eur_per_kw
        Cost per kW of each window's highest import (capacity tariff), EUR/kW.
    unmet_penalty_eur_per_kwh
        Cost of a kWh left unmet, EUR/kWh; default ``10 + 10 * max |import price|``, which makes the
        solver meet every request it can.
    window_steps
        Steps per window.
    solver
        Callable ``ChargingProblem -> slot power (kW)``; defaults to :func:`solve_charging_lp`.

    Returns
    -------
    ChargingResult

    Raises
    ------
    MobilityInputError
        If an input series is malformed, or the solver returns power outside ``[0, max power]`` or
        above a request.
    """
    n = sessions.n_steps
    base = step_series("base_kw", base_kw, n, min_value=0.0)
    pv = step_series("pv_kw", pv_kw, n, min_value=0.0)
    c_imp = step_series("import_price_eur_per_kwh", import_price_eur_per_kwh, n, min_value=None)
    c_exp = step_series("export_price_eur_per_kwh", export_price_eur_per_kwh, n, min_value=None)
    limit = _limit(site_limit_kw, n)
    if window_steps < 1:
        raise MobilityInputError(f"window_steps: {window_steps}, expected >= 1")
    penalty = (
        10.0 + 10.0 * float(np.max(np.abs(c_imp)))
        if unmet_penalty_eur_per_kwh is None
        else unmet_penalty_eur_per_kwh
    )
    solve = solver if solver is not None else solve_charging_lp
    session, step, _ = _slots(sessions)
    power = np.zeros(session.size)
    committed = np.zeros(n)
    dt = sessions.step_h
    slot_window = (sessions.arrival // window_steps)[session]
    order = np.argsort(slot_window, kind="stable")
    w_bounds = np.searchsorted(slot_window[order], np.arange(n // window_steps + 2))
    for w in range(w_bounds.size - 1):
        slots = order[w_bounds[w] : w_bounds[w + 1]]
        if slots.size == 0:
            continue
        members, local_session = np.unique(session[slots], return_inverse=True)
        t0 = int(step[slots].min())
        t1 = int(step[slots].max()) + 1
        steps = np.arange(t0, t1)
        problem = ChargingProblem(
            step_h=dt,
            steps=steps,
            slot_session=local_session,
            slot_step=step[slots] - t0,
            max_power_kw=sessions.max_power_kw[members],
            energy_kwh=sessions.energy_kwh[members],
            net_load_kw=base[t0:t1] - pv[t0:t1] + committed[t0:t1],
            import_price_eur_per_kwh=c_imp[t0:t1],
            export_price_eur_per_kwh=c_exp[t0:t1],
            site_limit_kw=None if limit is None else np.maximum(limit[t0:t1] - committed[t0:t1], 0.0),
            peak_weight_eur_per_kw=peak_weight_eur_per_kw,
            unmet_penalty_eur_per_kwh=penalty,
        )
        p = np.asarray(solve(problem), dtype=np.float64)
        _check_solution(problem, p)
        p = np.clip(p, 0.0, problem.max_power_kw[local_session])
        power[slots] = p
        committed += np.bincount(step[slots], weights=p, minlength=n)
    return _result("community_optimal", sessions, session, step, power)


def _check_solution(problem: ChargingProblem, p: np.ndarray) -> None:
    tol = 1e-6
    if p.shape != problem.slot_session.shape or not np.all(np.isfinite(p)):
        raise MobilityInputError(
            f"solver: returned shape {p.shape}, expected {problem.slot_session.shape} finite"
        )
    pmax = problem.max_power_kw[problem.slot_session]
    bad = np.flatnonzero((p < -tol) | (p > pmax + tol))
    if bad.size:
        raise MobilityInputError(f"solver: slot {bad[0]} power {p[bad[0]]} kW outside [0, {pmax[bad[0]]}]")
    energy = np.bincount(problem.slot_session, weights=p, minlength=problem.energy_kwh.size) * problem.step_h
    bad = np.flatnonzero(energy > problem.energy_kwh + tol)
    if bad.size:
        raise MobilityInputError(
            f"solver: session {bad[0]} gets {energy[bad[0]]} kWh, more than its request {problem.energy_kwh[bad[0]]}"
        )
