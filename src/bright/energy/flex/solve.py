"""Solve a flexibility problem with HiGHS and read the schedule and the value-stacking statement back.

:func:`solve` hands the arrays of a :class:`bright.energy.flex.problem.FlexProblem` to HiGHS once,
silently. Two safety nets keep the answer useful:

* **no simultaneous charge and discharge.** The LP leaves a battery's charge and discharge (and a
  site's import and export) apart on its own because losses make doing both a loss. When wasting
  energy pays (negative prices, an export limit with non-curtailable PV) the LP may do both at once;
  with ``exclusivity="lazy"`` (default) the solver then adds a binary for the offending steps only and
  solves again as a MILP, until no step is left. ``"all"`` puts the binaries on every step from the
  start, ``"none"`` returns the LP as is.
* **never an all-zero schedule.** Soft requests carry penalised slacks, so the problem stays feasible;
  if the tight model still is infeasible (a comfort band or a connection limit the fixed load makes
  unreachable) it is rebuilt with slacks on every limit. The :attr:`Schedule.unmet` table says what
  was not met and by how much.

The value-stacking statement prices every commitment twice, on the optimal schedule and on the
reference without flexibility (idle battery, EV charging on arrival, thermostat at the comfort
minimum, shiftable loads at their earliest start, no curtailment, no reserve): the difference is the
value each commitment adds, per member and for the community.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bright.energy.flex.problem import (
    FlexInputError,
    FlexProblem,
    FloatArray,
    Penalties,
    ScheduleError,
    SharedTerms,
    Site,
    SiteBlock,
    Unmet,
    build_problem,
    site_quantities,
)

__all__ = ["Schedule", "schedule", "solve"]

EXCLUSIVITY = ("lazy", "all", "none")
_TOL_KW = 1e-6
STATEMENT_COLUMNS = ["member", "item", "kind", "quantity", "reference_eur", "optimal_eur", "value_eur"]
UNMET_COLUMNS = ["member", "item", "constraint", "time", "shortfall", "unit", "penalty_eur"]


@dataclass(frozen=True)
class Schedule:
    """An optimal (or relaxed) schedule with its value-stacking statement.

    Attributes
    ----------
    index
        Step starts (UTC).
    status
        ``"optimal"``, or ``"relaxed"`` when some soft constraint could not be met (see ``unmet``),
        or ``"time_limit"`` when HiGHS stopped with a feasible but unproven schedule.
    objective_eur
        HiGHS objective: money plus penalties, in EUR.
    cost_eur
        Money only: the sum of the statement's ``optimal_eur`` (commitments and device wear).
    penalty_eur
        Penalties of the unmet soft constraints, in EUR (``objective_eur = cost_eur + penalty_eur``).
    sites
        Per member: ``import_kw``, ``export_kw``, ``net_import_kw``, ``base_load_kw``,
        ``generation_kw``, ``reserve_up_kw``, ``reserve_down_kw``, ``reference_net_import_kw``.
    devices
        Per member, per device: the device's schedule (``power_kw`` and its states; see each device).
    community
        Community series (``import_kw``, ``export_kw``, ``net_import_kw``, ``shared_kw`` ...) or None.
    statement
        Value stacking, one row per member and commitment (or device cost): ``reference_eur``,
        ``optimal_eur``, ``value_eur = reference_eur - optimal_eur``. Rows with member
        ``"community"`` hold shared commitments that are not allocated to members.
    unmet
        What was not met: ``member``, ``item``, ``constraint``, ``time``, ``shortfall``, ``unit``,
        ``penalty_eur``.
    binaries
        Number of binary columns of the last solve (shiftable starts and no-simultaneity binaries).
    build_time_s, solve_time_s
        Wall time spent building the model(s) and in HiGHS, in s.
    problem
        The last problem solved (for inspection).
    solver_info
        How the schedule was found (``method``, iterations and bound gap of a decomposition ...).
    """

    index: pd.DatetimeIndex
    status: str
    objective_eur: float
    cost_eur: float
    penalty_eur: float
    sites: dict[str, pd.DataFrame]
    devices: dict[str, dict[str, pd.DataFrame]]
    community: pd.DataFrame | None
    statement: pd.DataFrame
    unmet: pd.DataFrame
    binaries: int
    build_time_s: float
    solve_time_s: float
    problem: FlexProblem
    solver_info: dict[str, object] = field(default_factory=dict)

    def value_stack(self) -> pd.DataFrame:
        """Value (EUR, reference minus optimal cost) per member (rows) and item (columns), with totals."""
        table = self.statement.pivot_table(
            index="member", columns="item", values="value_eur", aggfunc="sum", fill_value=0.0
        )
        table["total"] = table.sum(axis=1)
        table.loc["total"] = table.sum(axis=0)
        return table

    def member_costs(self) -> pd.Series:
        """Optimal cost per member in EUR (allocated community commitments included)."""
        return self.statement.groupby("member")["optimal_eur"].sum()


def schedule(
    index: pd.DatetimeIndex,
    sites: Site | Sequence[Site],
    *,
    community: SharedTerms | None = None,
    penalties: Penalties | None = None,
    **solve_options: Any,
) -> Schedule:
    """Build and solve in one call.

    Parameters
    ----------
    index
        Horizon step starts (regular, UTC).
    sites
        One site or several members.
    community
        Shared constraints (:class:`bright.energy.flex.community.Community`), or None.
    penalties
        Slack penalties.
    **solve_options
        Passed to :func:`solve`.
    """
    members = [sites] if isinstance(sites, Site) else list(sites)
    problem = build_problem(index, members, community=community, penalties=penalties)
    return solve(problem, **solve_options)


def solve(
    problem: FlexProblem,
    *,
    exclusivity: str = "lazy",
    time_limit_s: float = 60.0,
    mip_rel_gap: float = 1e-6,
    max_lazy_rounds: int = 5,
    highs_options: dict[str, Any] | None = None,
) -> Schedule:
    """Solve a built problem with HiGHS and extract schedules, statement and unmet report.

    Parameters
    ----------
    problem
        Built by :func:`bright.energy.flex.problem.build_problem`.
    exclusivity
        ``"lazy"`` (binaries only where the LP charges and discharges at once), ``"all"`` or ``"none"``.
    time_limit_s
        HiGHS time limit per solve, in s.
    mip_rel_gap
        Relative MIP gap at which HiGHS stops (only with binaries).
    max_lazy_rounds
        Rounds of lazy binaries before every step of the offending pairs gets one.
    highs_options
        Extra HiGHS options (``{"solver": "ipm"}`` ...).

    Returns
    -------
    Schedule

    Raises
    ------
    ScheduleError
        If HiGHS finds no solution at all (numerical failure, time limit without incumbent).
    """
    if exclusivity not in EXCLUSIVITY:
        raise FlexInputError(f"solve: exclusivity must be one of {EXCLUSIVITY}, got {exclusivity!r}")
    options: dict[str, Any] = {"time_limit": float(time_limit_s), "mip_rel_gap": float(mip_rel_gap)}
    options.update(highs_options or {})
    build_time = problem.build_time_s
    solve_time = 0.0
    if exclusivity == "all":
        full = {p.key: np.ones(len(p.a), dtype=bool) for p in problem.pairs}
        problem = _rebuild(problem, exclusive=full)
        build_time += problem.build_time_s
    rounds = 0
    while True:
        t0 = time.perf_counter()
        x, objective, status = _run(problem, options)
        solve_time += time.perf_counter() - t0
        if x is None:
            if problem.relax_all:
                raise ScheduleError(f"HiGHS found no schedule even with every limit relaxed ({status})")
            problem = _rebuild(problem, relax_all=True)
            build_time += problem.build_time_s
            continue
        if exclusivity == "lazy":
            extra = simultaneous_use(problem, x)
            if extra and net_grid_flows(problem, x, extra):
                objective = float(problem.model.col_cost @ x) + problem.model.offset
                extra = simultaneous_use(problem, x)
            if extra:
                rounds += 1
                merged = dict(problem.exclusive)
                for key, mask in extra.items():
                    old = merged.get(key)
                    merged[key] = (
                        np.ones_like(mask)
                        if rounds > max_lazy_rounds
                        else (mask if old is None else old | mask)
                    )
                problem = _rebuild(problem, exclusive=merged)
                build_time += problem.build_time_s
                continue
        break
    sched = extract_schedule(problem, x, objective, status, build_time, solve_time)
    sched.solver_info.update({"method": "joint", "lazy_rounds": rounds})
    return sched


def _rebuild(problem: FlexProblem, **changes: Any) -> FlexProblem:
    kwargs: dict[str, Any] = {
        "community": problem.community,
        "penalties": problem.penalties,
        "exclusive": problem.exclusive,
        "relax_all": problem.relax_all,
    }
    kwargs.update(changes)
    return build_problem(problem.index, problem.sites, **kwargs)


def _run(problem: FlexProblem, options: dict[str, Any]) -> tuple[FloatArray | None, float, str]:
    import highspy

    h = problem.model.to_highs(options)
    h.run()
    ms = h.getModelStatus()
    info = h.getInfo()
    label = h.modelStatusToString(ms)
    if ms == highspy.HighsModelStatus.kOptimal:
        return (
            np.asarray(h.getSolution().col_value, dtype=np.float64),
            float(info.objective_function_value),
            "optimal",
        )
    if ms in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        return None, math.nan, label
    if info.primal_solution_status == 2:  # feasible incumbent (time limit, interrupt)
        return (
            np.asarray(h.getSolution().col_value, dtype=np.float64),
            float(info.objective_function_value),
            "time_limit",
        )
    raise ScheduleError(f"HiGHS returned no usable schedule: {label}")


def simultaneous_use(problem: FlexProblem, x: FloatArray) -> dict[str, np.ndarray]:
    """Positions where both columns of a charge/discharge or import/export pair are positive, per pair key."""
    out = {}
    for p in problem.pairs:
        both = (x[p.a] > _TOL_KW) & (x[p.b] > _TOL_KW)
        if both.any():
            out[p.key] = both
    return out


def net_grid_flows(problem: FlexProblem, x: FloatArray, found: dict[str, np.ndarray]) -> bool:
    """Net simultaneous import and export of sites in place, if that keeps every row and the cost.

    With equal import and export prices the LP is indifferent to importing and exporting at once and
    may return such a vertex; netting both down to the net flow is then an equally cheap, physical
    schedule. The repair is accepted only if all rows stay within bounds and the objective does not
    rise (otherwise, e.g. when a price makes the circulation pay, binaries decide).
    """
    grid = {sb.exclusive.key: sb for sb in problem.site_blocks}
    if not any(k in grid for k in found):
        return False
    model = problem.model
    trial = x.copy()
    for key, mask in found.items():
        sb = grid.get(key)
        if sb is None:
            continue
        both = np.minimum(trial[sb.imp], trial[sb.exp]) * mask
        trial[sb.imp] -= both
        trial[sb.exp] -= both
    if problem.community_block is not None:
        problem.community_block.refresh(trial, problem.site_blocks)
    rows = np.repeat(np.arange(model.num_row), np.diff(model.a_start))
    activity = np.bincount(rows, weights=model.a_value * trial[model.a_index], minlength=model.num_row)
    tol = 1e-7 * (1.0 + np.abs(activity))
    feasible = np.all(activity >= model.row_lower - tol) and np.all(activity <= model.row_upper + tol)
    feasible = (
        feasible and np.all(trial >= model.col_lower - 1e-9) and np.all(trial <= model.col_upper + 1e-9)
    )
    old, new = float(model.col_cost @ x), float(model.col_cost @ trial)
    if not feasible or new > old + 1e-9 * (1.0 + abs(old)):
        return False
    x[:] = trial
    return True


def _unmet_rows(specs: list[Unmet], x: FloatArray) -> tuple[list[dict[str, object]], float]:
    rows: list[dict[str, object]] = []
    penalty = 0.0
    for u in specs:
        has = u.cols >= 0
        decided = np.where(has, x[np.where(has, u.cols, 0)], 0.0) * u.scale
        penalty += float(np.sum(decided)) * u.penalty
        amount = decided + (u.constant if u.constant is not None else 0.0)
        for k in np.flatnonzero(amount > 1e-6):
            rows.append(
                {
                    "member": u.site,
                    "item": u.item,
                    "constraint": u.constraint,
                    "time": u.times[int(k)],
                    "shortfall": float(amount[k]),
                    "unit": u.unit,
                    "penalty_eur": float(decided[k]) * u.penalty,
                }
            )
    return rows, penalty


def site_statement(sb: SiteBlock, x: FloatArray | None, dt_h: float) -> list[dict[str, object]]:
    """Statement rows of one member's own commitments and device costs.

    Parameters
    ----------
    sb
        The member's block in the built problem.
    x
        Solution vector.
    dt_h
        Step length in h.
    """
    assert x is not None
    name = sb.site.name
    q_opt = site_quantities(sb.series(x))
    q_ref = site_quantities(sb.reference_series())
    rows: list[dict[str, object]] = []
    for cb in sb.commitments:
        c = cb.commitment
        ref = float(c.cost(q_ref[c.quantity], cb.arrays, dt_h).sum())
        opt = float(c.cost(q_opt[c.quantity], cb.arrays, dt_h).sum())
        rows.append(_row(name, c.name, "commitment", c.quantity, ref, opt))
    for blk in sb.devices:
        if blk.cost is not None:
            opt = float(blk.cost.value(x).sum())
            rows.append(_row(name, f"{blk.name} wear", "device", "", blk.reference_cost_eur, opt))
    return rows


def _row(member: str, item: str, kind: str, quantity: str, ref: float, opt: float) -> dict[str, object]:
    return {
        "member": member,
        "item": item,
        "kind": kind,
        "quantity": quantity,
        "reference_eur": ref,
        "optimal_eur": opt,
        "value_eur": ref - opt,
    }


def extract_schedule(
    problem: FlexProblem, x: FloatArray, objective: float, status: str, build_time: float, solve_time: float
) -> Schedule:
    """Read the schedule, the statement and the unmet report out of the solution ``x``.

    Parameters
    ----------
    problem
        The problem ``x`` solves.
    x
        Column values.
    objective
        Objective value in EUR (money plus penalties).
    status
        Solver status label (``"optimal"`` becomes ``"relaxed"`` when something is unmet).
    build_time, solve_time
        Wall times to report, in s.
    """
    index, dt = problem.index, problem.dt_h
    x = np.where(np.abs(x) < 1e-12, 0.0, x)  # no -0.0 or 1e-17 noise in the schedules
    sites: dict[str, pd.DataFrame] = {}
    devices: dict[str, dict[str, pd.DataFrame]] = {}
    statement: list[dict[str, object]] = []
    specs: list[Unmet] = []
    for sb in problem.site_blocks:
        name = sb.site.name
        ser = sb.series(x)
        ref = sb.reference_series()
        sites[name] = pd.DataFrame(
            {
                "import_kw": ser["import"],
                "export_kw": ser["export"],
                "net_import_kw": ser["import"] - ser["export"],
                "base_load_kw": sb.base_load_kw,
                "generation_kw": ser["generation"],
                "reserve_up_kw": ser["reserve_up"],
                "reserve_down_kw": ser["reserve_down"],
                "reference_net_import_kw": ref["import"] - ref["export"],
            },
            index=index,
        )
        devices[name] = {
            blk.name: pd.DataFrame({k: t.value(x) for k, t in blk.outputs.items()}, index=index)
            for blk in sb.devices
        }
        statement += site_statement(sb, x, dt)
        specs += sb.unmet
        for blk in sb.devices:
            specs += blk.unmet
        for cb in sb.commitments:
            specs += cb.unmet
    community = None
    if problem.community_block is not None:
        community = problem.community_block.frame(x)
        statement += problem.community_block.statement_rows(x, problem.site_blocks)
        specs += problem.community_block.unmet
    unmet_rows, penalty = _unmet_rows(specs, x)
    stmt = pd.DataFrame(statement, columns=STATEMENT_COLUMNS)
    cost = float(stmt["optimal_eur"].sum()) if len(stmt) else 0.0
    unmet = pd.DataFrame(unmet_rows, columns=UNMET_COLUMNS)
    if status == "optimal" and len(unmet):
        status = "relaxed"
    return Schedule(
        index=index,
        status=status,
        objective_eur=objective,
        cost_eur=cost,
        penalty_eur=penalty,
        sites=sites,
        devices=devices,
        community=community,
        statement=stmt,
        unmet=unmet,
        binaries=problem.model.num_integer,
        build_time_s=build_time,
        solve_time_s=solve_time,
        problem=problem,
    )
