"""Community scheduling: one problem over all members' devices with the constraints they share.

A :class:`Community` adds to the members' own models (each with its devices, connection and
commitments):

* the community's connection (transformer) limit on the net flow ``sum_m import_m - sum_m export_m``,
  always soft (a slack penalised above every price, reported when used);
* energy sharing: a member's import can be covered by another member's export. The shared volume per
  step is ``shared <= sum_m import_m`` and ``shared <= sum_m export_m`` (priced with
  :func:`bright.energy.flex.commitments.sharing_value`); with a positive value it equals the minimum of
  the two sums, the volume any complete sharing key distributes;
* community commitments on ``net_import``, ``net_export``, ``shared`` and pooled reserve (a DSO
  request or limit at the transformer, a peak charge, a reserve bid aggregated over members).

The statement allocates the value of sharing to members with the proportional key: the importing
side in proportion to each member's import, the exporting side in proportion to each member's export
(``seller_share`` of the value goes to the exporters). Pooled reserve is allocated in proportion to
each member's reserved power. Other community commitments stay on the ``"community"`` line.
(The DSO's settlement keys themselves live in :mod:`bright.energy.sharing`.)

:func:`schedule_community` solves the whole community as one LP/MILP. Large LP communities are
solved from a basis crashed by decomposition (:func:`solve_warm`): a small sample community gives the
prices of the shared rows, every member's own LP at those prices gives its part of a dual-feasible
basis, and HiGHS' dual simplex finishes from there; same optimum, several times faster.
:func:`compare_individual_and_community` solves every member alone, evaluates the union of those
individually optimal schedules under the community's terms, and sets it against the joint optimum.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from bright.energy.flex.commitments import Commitment, CommitmentArrays, CommitmentBlock
from bright.energy.flex.problem import (
    COMMUNITY_QUANTITIES,
    BuildContext,
    ExclusivePair,
    FlexInputError,
    FlexProblem,
    FloatArray,
    IntArray,
    ModelBuilder,
    Penalties,
    ScheduleError,
    Site,
    SiteBlock,
    StepTerms,
    Unmet,
    build_problem,
    community_quantities,
)
from bright.energy.flex.solve import Schedule, extract_schedule, net_grid_flows, simultaneous_use, solve

__all__ = [
    "Community",
    "CommunityBlock",
    "CommunityComparison",
    "compare_individual_and_community",
    "schedule_community",
    "solve_warm",
]


@dataclass(frozen=True)
class Community:
    """An energy community: members plus what they share.

    Attributes
    ----------
    name
        Community identifier.
    members
        The members' sites (names unique).
    import_limit_kw, export_limit_kw
        Limits of the community's connection (transformer) on the net flow, kW; ``inf`` for none.
    commitments
        Community-level commitments (quantities ``import``, ``export``, ``net_import``, ``net_export``,
        ``shared``, ``reserve_*``).
    seller_share
        Share of the sharing value allocated to the exporting members (0..1).
    """

    name: str
    members: Sequence[Site]
    import_limit_kw: float = math.inf
    export_limit_kw: float = math.inf
    commitments: Sequence[Commitment] = ()
    seller_share: float = 0.5

    def __post_init__(self) -> None:
        who = f"community {self.name!r}"
        if not self.members:
            raise FlexInputError(f"{who}: no members")
        for key in ("import_limit_kw", "export_limit_kw"):
            v = getattr(self, key)
            if math.isnan(v) or v < 0:
                raise FlexInputError(f"{who}: {key} must be >= 0, got {v}")
        if not 0.0 <= self.seller_share <= 1.0:
            raise FlexInputError(f"{who}: seller_share must be in [0, 1], got {self.seller_share}")
        names = [c.name for c in self.commitments]
        dup = {x for x in names if names.count(x) > 1}
        if dup:
            raise FlexInputError(f"{who}: duplicate commitment name(s) {sorted(dup)}")
        for c in self.commitments:
            if c.quantity not in COMMUNITY_QUANTITIES:
                raise FlexInputError(
                    f"{who} commitment {c.name!r}: quantity {c.quantity!r} is not available for a community; "
                    f"allowed: {', '.join(COMMUNITY_QUANTITIES)}"
                )

    def build(self, b: ModelBuilder, sites: list[SiteBlock], ctx: BuildContext) -> CommunityBlock:
        """Add the aggregate columns, the connection limit, sharing and the community commitments."""
        n, dt = ctx.n, ctx.dt_h
        m = len(sites)
        imp_all = np.concatenate([s.imp for s in sites])
        exp_all = np.concatenate([s.exp for s in sites])
        imp = b.add_cols(n, upper=sum(s.max_import_kw for s in sites))
        exp = b.add_cols(n, upper=sum(s.max_export_kw for s in sites))
        for agg, members in ((imp, imp_all), (exp, exp_all)):
            rows = b.add_rows(n, lower=0.0, upper=0.0)  # agg - sum of members = 0
            b.add_entries(rows, agg, 1.0)
            b.add_entries(np.tile(rows, m), members, -1.0)

        unmet: list[Unmet] = []
        pen = ctx.penalties.limit_eur_per_kwh
        for limit, sign, what in (
            (self.import_limit_kw, 1.0, "import_limit"),
            (self.export_limit_kw, -1.0, "export_limit"),
        ):
            if not math.isfinite(limit):
                continue
            # The community limit is always soft (a penalised slack on every step): with the penalty above
            # every price the optimum is the same while the limit can be met, the decomposition's master
            # is feasible from its first round, and an unreachable limit is reported instead of failing.
            rows = b.add_rows(n, lower=-math.inf, upper=limit)  # sign * (imp - exp) - v <= limit
            b.add_entries(rows, imp, sign)
            b.add_entries(rows, exp, -sign)
            v = b.add_cols(n, cost=pen * dt)
            b.add_entries(rows, v, -1.0)
            unmet.append(Unmet("community", self.name, what, v, ctx.index, "kWh", dt, pen))

        one = StepTerms.of_columns
        quantities: dict[str, StepTerms] = {
            "import": one(imp, n),
            "export": one(exp, n),
            "net_import": one(imp, n) + one(exp, n, -1.0),
            "net_export": one(exp, n) + one(imp, n, -1.0),
        }
        shared = None
        if any(c.quantity == "shared" for c in self.commitments):
            shared = b.add_cols(n, upper=sum(s.max_import_kw for s in sites))
            for agg in (imp, exp):
                rows = b.add_rows(n, lower=-math.inf, upper=0.0)  # shared <= sum of imports, of exports
                b.add_entries(rows, shared, 1.0)
                b.add_entries(rows, agg, -1.0)
            quantities["shared"] = one(shared, n)
        r_up = r_dn = None
        if ctx.reserve is not None:
            for direction in ("up", "down"):
                member_cols = [getattr(s, f"reserve_{direction}") for s in sites]
                if member_cols[0] is None:
                    continue
                agg = b.add_cols(n)
                rows = b.add_rows(n, lower=0.0, upper=0.0)
                b.add_entries(rows, agg, 1.0)
                b.add_entries(np.tile(rows, m), np.concatenate(member_cols), -1.0)
                quantities[f"reserve_{direction}"] = one(agg, n)
                if direction == "up":
                    r_up = agg
                    quantities["reserve_symmetric"] = one(agg, n)
                else:
                    r_dn = agg
        blocks = []
        for c in self.commitments:
            if c.quantity not in quantities:
                raise FlexInputError(
                    f"community {self.name!r} commitment {c.name!r}: quantity {c.quantity!r} unavailable"
                )
            blocks.append(c.build(b, quantities[c.quantity], ctx))
        return CommunityBlock(self, ctx.index, dt, imp, exp, shared, r_up, r_dn, blocks, unmet)


@dataclass
class CommunityBlock:
    """The community's columns and commitment blocks in a built problem."""

    community: Community
    index: pd.DatetimeIndex
    dt_h: float
    imp: IntArray
    exp: IntArray
    shared: IntArray | None
    reserve_up: IntArray | None
    reserve_down: IntArray | None
    commitments: list[CommitmentBlock]
    unmet: list[Unmet] = field(default_factory=list)

    def frame(self, x: FloatArray) -> pd.DataFrame:
        """Community series: ``import_kw``, ``export_kw``, ``net_import_kw``, ``shared_kw`` and reserve."""
        imp, exp = x[self.imp], x[self.exp]
        zero = np.zeros(len(self.index))
        return pd.DataFrame(
            {
                "import_kw": imp,
                "export_kw": exp,
                "net_import_kw": imp - exp,
                "shared_kw": x[self.shared] if self.shared is not None else np.minimum(imp, exp),
                "reserve_up_kw": x[self.reserve_up] if self.reserve_up is not None else zero,
                "reserve_down_kw": x[self.reserve_down] if self.reserve_down is not None else zero,
            },
            index=self.index,
        )

    def refresh(self, x: FloatArray, sites: list[SiteBlock]) -> None:
        """Recompute the sums of imports and exports (and cap the shared volume) after members changed."""
        x[self.imp] = np.sum([x[s.imp] for s in sites], axis=0)
        x[self.exp] = np.sum([x[s.exp] for s in sites], axis=0)
        if self.shared is not None:
            x[self.shared] = np.minimum(x[self.shared], np.minimum(x[self.imp], x[self.exp]))

    def statement_rows(self, x: FloatArray, sites: list[SiteBlock]) -> list[dict[str, object]]:
        """Value-stacking rows of the community commitments, allocated to members where possible."""
        opt = [s.series(x) for s in sites]
        ref = [s.reference_series() for s in sites]
        q_opt = _quantities(opt)
        if self.shared is not None:
            q_opt["shared"] = x[self.shared]
        q_ref = _quantities(ref)
        names = [s.site.name for s in sites]
        rows: list[dict[str, object]] = []
        for cb in self.commitments:
            rows += commitment_rows(
                cb.commitment,
                cb.arrays,
                q_ref,
                q_opt,
                ref,
                opt,
                names,
                self.community.seller_share,
                self.dt_h,
            )
        return rows


def _quantities(series: list[dict[str, FloatArray]]) -> dict[str, FloatArray]:
    total = {
        k: np.sum([s[k] for s in series], axis=0) for k in ("import", "export", "reserve_up", "reserve_down")
    }
    return community_quantities(total["import"], total["export"], total["reserve_up"], total["reserve_down"])


def allocation_weights(
    quantity: str, series: list[dict[str, FloatArray]], seller_share: float
) -> FloatArray | None:
    """Share of a community commitment's per-step cost borne by each member, shape (members, steps).

    ``shared``: ``(1 - s) import_m / sum import + s export_m / sum export`` (proportional key);
    reserve: the member's reserved power over the total. Other quantities are not allocated (None).
    """

    def share(key: str) -> FloatArray:
        stack = np.array([s[key] for s in series])
        total = stack.sum(axis=0)
        return np.divide(stack, total, out=np.zeros_like(stack), where=total > 1e-12)

    if quantity == "shared":
        return (1.0 - seller_share) * share("import") + seller_share * share("export")
    if quantity in ("reserve_up", "reserve_symmetric"):
        return share("reserve_up")
    if quantity == "reserve_down":
        return share("reserve_down")
    return None


def commitment_rows(
    c: Commitment,
    arrays: CommitmentArrays,
    q_ref: dict[str, FloatArray],
    q_opt: dict[str, FloatArray],
    ref_series: list[dict[str, FloatArray]],
    opt_series: list[dict[str, FloatArray]],
    names: list[str],
    seller_share: float,
    dt_h: float,
) -> list[dict[str, object]]:
    """Statement rows of one community commitment: allocated per member, the rest on ``"community"``."""
    cost_ref = c.cost(q_ref[c.quantity], arrays, dt_h)
    cost_opt = c.cost(q_opt[c.quantity], arrays, dt_h)
    w_ref = allocation_weights(c.quantity, ref_series, seller_share)
    w_opt = allocation_weights(c.quantity, opt_series, seller_share)
    rows: list[dict[str, object]] = []
    rest_ref, rest_opt = float(cost_ref.sum()), float(cost_opt.sum())
    if w_ref is not None and w_opt is not None:
        alloc_ref = w_ref @ cost_ref
        alloc_opt = w_opt @ cost_opt
        for k, name in enumerate(names):
            if alloc_ref[k] != 0.0 or alloc_opt[k] != 0.0:
                rows.append(_row(name, c, float(alloc_ref[k]), float(alloc_opt[k])))
        rest_ref -= float(alloc_ref.sum())
        rest_opt -= float(alloc_opt.sum())
    if w_ref is None or abs(rest_ref) > 1e-9 or abs(rest_opt) > 1e-9:
        rows.append(_row("community", c, rest_ref, rest_opt))
    return rows


def _row(member: str, c: Commitment, ref: float, opt: float) -> dict[str, object]:
    return {
        "member": member,
        "item": c.name,
        "kind": "community commitment",
        "quantity": c.quantity,
        "reference_eur": ref,
        "optimal_eur": opt,
        "value_eur": ref - opt,
    }


METHODS = ("auto", "joint", "warm")
#: Members sampled to estimate the community prices for the warm start.
SAMPLE_MEMBERS = 25


def schedule_community(
    index: pd.DatetimeIndex,
    community: Community,
    *,
    penalties: Penalties | None = None,
    method: str = "auto",
    **solve_options: Any,
) -> Schedule:
    """The community-optimal schedule: one problem over all members with the shared constraints.

    Parameters
    ----------
    index
        Horizon step starts (regular, UTC).
    community
        Members and shared terms.
    penalties
        Slack penalties.
    method
        ``"joint"``: the whole LP/MILP handed to HiGHS from scratch. ``"warm"``: the same LP solved
        from a basis crashed by decomposition (:func:`solve_warm`; LP only, same optimum).
        ``"auto"`` (default): ``"warm"`` for LP communities of more than ``2 * SAMPLE_MEMBERS``
        members, ``"joint"`` otherwise.
    **solve_options
        Passed to :func:`bright.energy.flex.solve.solve` or :func:`solve_warm`.
    """
    if method not in METHODS:
        raise FlexInputError(f"community {community.name!r}: method must be one of {METHODS}, got {method!r}")
    problem = build_problem(index, community.members, community=community, penalties=penalties)
    if method == "auto":
        big = len(community.members) > 2 * SAMPLE_MEMBERS
        method = "warm" if big and problem.model.num_integer == 0 else "joint"
    if method == "warm":
        return solve_warm(problem, **solve_options)
    return solve(problem, **solve_options)


# --------------------------------------------------------------------------------------------------
# warm start by decomposition


@dataclass
class _Member:
    """One member's sub-LP, sliced out of the community model and kept in HiGHS."""

    h: highspy.Highs
    c0: int
    c1: int
    cost: FloatArray
    lower: FloatArray
    upper: FloatArray
    coupling: NDArray[np.int32]  # local columns that appear in community rows
    d: sp.csc_matrix  # community rows x coupling columns

    def price(self, y: FloatArray) -> None:
        """Solve the member LP with its coupling columns priced at the community-row duals ``y``."""
        j = self.coupling
        self.h.changeColsCost(len(j), j, self.cost[j] - self.d.T @ y)
        _run_highs(self.h)

    def fix_coupling(self, x: FloatArray) -> None:
        """Restore the true costs and fix the coupling columns at their values in ``x`` (member slice)."""
        j = self.coupling
        fix = np.clip(x[j], self.lower[j], self.upper[j])
        self.h.changeColsCost(len(j), j, self.cost[j])
        self.h.changeColsBounds(len(j), j, fix, fix)


def _highs(options: dict[str, Any]) -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("presolve", "off")  # small sub-LPs; re-solves start from the previous basis
    for key, val in options.items():
        h.setOptionValue(key, val)
    return h


def _run_highs(h: highspy.Highs) -> FloatArray:
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        h.clearSolver()  # a warm start can stall numerically: retry from scratch once
        h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise ScheduleError(f"HiGHS: {h.modelStatusToString(h.getModelStatus())}")
    return np.asarray(h.getSolution().col_value, dtype=np.float64)


def _members(problem: FlexProblem, options: dict[str, Any]) -> tuple[list[_Member], sp.csr_matrix]:
    """Member sub-LPs sliced out of the block-angular community model, and the community rows."""
    model = problem.model
    blocks = problem.site_blocks
    cc0, rc0 = blocks[-1].col_range[1], blocks[-1].row_range[1]
    a = sp.csr_matrix((model.a_value, model.a_index, model.a_start), shape=(model.num_row, model.num_col))
    comm = a[rc0:]
    d_all = comm[:, :cc0].tocsc()
    members = []
    for sb in blocks:
        (c0, c1), (r0, r1) = sb.col_range, sb.row_range
        sub = a[r0:r1, c0:c1]
        h = _highs(options)
        h.passModel(
            c1 - c0,
            r1 - r0,
            sub.nnz,
            int(highspy.MatrixFormat.kRowwise),
            int(highspy.ObjSense.kMinimize),
            sb.offset,
            model.col_cost[c0:c1],
            model.col_lower[c0:c1],
            model.col_upper[c0:c1],
            model.row_lower[r0:r1],
            model.row_upper[r0:r1],
            sub.indptr[:-1].astype(np.int32),
            sub.indices.astype(np.int32),
            sub.data,
            model.integrality[c0:c1],
        )
        dm = d_all[:, c0:c1]
        coupling = np.flatnonzero(np.diff(dm.indptr)).astype(np.int32)
        members.append(
            _Member(
                h,
                c0,
                c1,
                model.col_cost[c0:c1],
                model.col_lower[c0:c1],
                model.col_upper[c0:c1],
                coupling,
                dm[:, coupling].tocsc(),
            )
        )
    return members, comm


def solve_warm(
    problem: FlexProblem,
    *,
    sample_members: int = SAMPLE_MEMBERS,
    exclusivity: str = "lazy",
    time_limit_s: float = 60.0,
    mip_rel_gap: float = 1e-6,
    max_lazy_rounds: int = 5,
    highs_options: dict[str, Any] | None = None,
) -> Schedule:
    """Solve a community LP from a dual-feasible basis crashed by decomposition.

    The community model is block-angular: each member's rows touch only its columns and only the
    community rows link members. A cold dual simplex on it spends most of its time discovering the
    community prices (of the connection limit, of sharing). Here they are estimated first:

    1. a *sample* community (``sample_members`` members evenly spread over the list, limits and
       community baselines scaled by ``sample / members``) is solved jointly; its community rows have
       the same layout as the full problem's, so its optimal basis on them and their duals ``y0`` carry
       over;
    2. every member solves its own LP with its coupling columns priced at ``y0`` (cost
       ``c_m - D_m' y0``) and contributes its optimal basis;
    3. the member bases plus the sample's community basis form a basis of the full model that is
       block triangular (hence non-singular) and dual feasible: its community duals are exactly ``y0``
       and each member basis is optimal at ``y0``. HiGHS' dual simplex starts from it and only has to
       restore primal feasibility (the members' coordination under the limit).

    The result is the same optimal vertex the cold joint solve finds.

    Parameters
    ----------
    problem
        A community problem without integer columns.
    sample_members
        Size of the sample community.
    exclusivity
        ``"lazy"`` (default): simultaneous import and export is netted and simultaneous charge and
        discharge removed by member-level binaries with the community flows fixed; ``"none"``: the
        LP vertex as is; ``"all"``: binaries everywhere, which makes it a MILP: solved jointly.
    time_limit_s
        HiGHS time limit per solve, in s.
    mip_rel_gap
        MIP gap for members' no-simultaneity binaries if the optimum charges and discharges at once.
    max_lazy_rounds
        Rounds of lazy binaries before every step of an offending pair gets one.
    highs_options
        Extra HiGHS options.
    """
    t_start = time.perf_counter()
    model = problem.model
    if exclusivity not in ("lazy", "all", "none"):
        raise FlexInputError(f"warm start: exclusivity must be lazy, all or none, got {exclusivity!r}")
    if exclusivity == "all":
        return solve(
            problem,
            exclusivity="all",
            time_limit_s=time_limit_s,
            mip_rel_gap=mip_rel_gap,
            highs_options=highs_options,
        )
    if model.num_integer:
        raise FlexInputError(
            "warm start: the problem has integer columns (shiftable loads); use method='joint'"
        )
    if problem.community_block is None or not isinstance(problem.community, Community):
        raise FlexInputError("warm start: the problem has no community")
    options: dict[str, Any] = {"time_limit": float(time_limit_s)}
    options.update(highs_options or {})
    members, _ = _members(problem, options)
    start = _sample_solution(problem, sample_members, options)
    h = model.to_highs(options)
    if start is not None:
        y0, comm_cols, comm_rows = start
        col_status: list[highspy.HighsBasisStatus] = []
        row_status: list[highspy.HighsBasisStatus] = []
        for m in members:
            m.price(y0)
            basis = m.h.getBasis()
            col_status += list(basis.col_status)
            row_status += list(basis.row_status)
        basis = highspy.HighsBasis()
        basis.col_status = col_status + comm_cols
        basis.row_status = row_status + comm_rows
        basis.valid = True
        h.setBasis(basis)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return solve(
            problem,
            exclusivity=exclusivity,
            time_limit_s=time_limit_s,
            mip_rel_gap=mip_rel_gap,
            highs_options=highs_options,
        )
    x = np.asarray(h.getSolution().col_value, dtype=np.float64)
    if exclusivity == "lazy" and not _separate_pairs(problem, members, x, mip_rel_gap, max_lazy_rounds):
        # the LP optimum needs simultaneous use with these community flows: decide them jointly
        return solve(
            problem,
            exclusivity="lazy",
            time_limit_s=time_limit_s,
            mip_rel_gap=mip_rel_gap,
            max_lazy_rounds=max_lazy_rounds,
            highs_options=highs_options,
        )
    objective = float(model.col_cost @ x) + model.offset
    sched = extract_schedule(
        problem, x, objective, "optimal", problem.build_time_s, time.perf_counter() - t_start
    )
    sched.solver_info.update({"method": "warm", "sample_members": sample_members if start is not None else 0})
    return sched


def _sample_solution(
    problem: FlexProblem, k: int, options: dict[str, Any]
) -> tuple[FloatArray, list[highspy.HighsBasisStatus], list[highspy.HighsBasisStatus]] | None:
    """Duals and basis statuses of the community rows and columns of a scaled sample community."""
    community = problem.community
    assert isinstance(community, Community)
    m = len(problem.sites)
    if k < 1 or m <= k:
        return None
    pick = np.linspace(0, m - 1, k).round().astype(int)
    scale = k / m
    sample = Community(
        community.name,
        [problem.sites[i] for i in pick],
        import_limit_kw=community.import_limit_kw * scale,
        export_limit_kw=community.export_limit_kw * scale,
        commitments=[_scaled(c, scale) for c in community.commitments],
        seller_share=community.seller_share,
    )
    small = build_problem(
        problem.index,
        sample.members,
        community=sample,
        penalties=problem.penalties,
        relax_all=problem.relax_all,
    )
    cc_s, rc_s = small.site_blocks[-1].col_range[1], small.site_blocks[-1].row_range[1]
    cc0, rc0 = problem.site_blocks[-1].col_range[1], problem.site_blocks[-1].row_range[1]
    if (
        small.model.num_col - cc_s != problem.model.num_col - cc0
        or small.model.num_row - rc_s != problem.model.num_row - rc0
    ):
        return None  # community layout differs (should not happen): no warm start
    h = small.model.to_highs(options)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    basis = h.getBasis()
    duals = np.asarray(h.getSolution().row_dual, dtype=np.float64)[rc_s:]
    return duals, list(basis.col_status)[cc_s:], list(basis.row_status)[rc_s:]


def _scaled(c: Commitment, scale: float) -> Commitment:
    """A community commitment for a sample ``scale`` times the community: baselines in kW scale."""
    base = c.baseline_kw
    if isinstance(base, pd.Series):
        base = base * scale
    else:
        arr = np.asarray(base, dtype=np.float64) * scale
        base = float(arr) if arr.ndim == 0 else arr
    return dataclasses.replace(c, baseline_kw=base)


def _separate_pairs(
    problem: FlexProblem, members: list[_Member], x: FloatArray, mip_rel_gap: float, max_rounds: int
) -> bool:
    """Remove simultaneous import/export (netting) and charge/discharge in place; False if it cannot.

    Charge/discharge pairs are separated member by member: the member re-solves with its coupling
    columns fixed (so the community flows do not move) and a binary on each offending step. If that
    is infeasible (these flows need the simultaneity) the caller must decide jointly.
    """
    found = simultaneous_use(problem, x)
    if found and net_grid_flows(problem, x, found):
        found = simultaneous_use(problem, x)
    by_site = {sb.site.name: k for k, sb in enumerate(problem.site_blocks)}
    pairs = {p.key: p for p in problem.pairs}
    done: dict[str, NDArray[np.bool_]] = {}
    fixed: set[int] = set()
    for _ in range(max_rounds + 1):
        if not found:
            return True
        touched = set()
        for key, mask in found.items():
            k = by_site[key.rsplit("/", 1)[0]]
            m = members[k]
            seen = done.get(key, np.zeros_like(mask))
            steps = np.flatnonzero(mask & ~seen)
            if len(steps) == 0:
                continue
            if k not in fixed:
                m.fix_coupling(x[m.c0 : m.c1])
                m.h.setOptionValue("mip_rel_gap", mip_rel_gap)
                fixed.add(k)
            done[key] = seen | mask
            _add_binaries(m, pairs[key], steps)
            touched.add(k)
        if not touched:
            return False
        for k in touched:
            m = members[k]
            try:
                x[m.c0 : m.c1] = _run_highs(m.h)[: m.c1 - m.c0]
            except ScheduleError:
                return False
        found = simultaneous_use(problem, x)
    return not found


def _add_binaries(m: _Member, pair: ExclusivePair, steps: NDArray[np.int64]) -> None:
    """``a <= a_max z`` and ``b <= b_max (1 - z)`` on the member's warm model, for ``steps``."""
    k = len(steps)
    first = m.h.getNumCol()
    m.h.addCols(
        k,
        np.zeros(k),
        np.zeros(k),
        np.ones(k),
        0,
        np.zeros(k, dtype=np.int32),
        np.zeros(0, dtype=np.int32),
        np.zeros(0),
    )
    z = np.arange(first, first + k, dtype=np.int32)
    m.h.changeColsIntegrality(k, z, np.ones(k, dtype=np.uint8))
    a_cols = (pair.a[steps] - m.c0).astype(np.int32)
    b_cols = (pair.b[steps] - m.c0).astype(np.int32)
    idx = np.concatenate([np.stack([a_cols, z], axis=1).ravel(), np.stack([b_cols, z], axis=1).ravel()])
    vals = np.concatenate([np.tile([1.0, -pair.a_max], k), np.tile([1.0, pair.b_max], k)])
    m.h.addRows(
        2 * k,
        np.full(2 * k, -math.inf),
        np.concatenate([np.zeros(k), np.full(k, pair.b_max)]),
        4 * k,
        np.arange(0, 4 * k, 2, dtype=np.int32),
        idx.astype(np.int32),
        vals,
    )


@dataclass(frozen=True)
class CommunityComparison:
    """Individually optimal schedules against the community optimum.

    Attributes
    ----------
    summary
        Rows ``individual`` and ``community``: ``cost_eur`` (members' costs plus community
        commitments), ``shared_kwh``, ``peak_net_import_kw``, ``limit_excess_kwh`` (energy above the
        community's connection limit and hard community commitments), ``penalty_eur``.
    members
        Per member: ``individual_eur``, ``community_eur`` and ``gain_eur`` (individual minus community).
    individual
        Each member's own optimal schedule.
    joint
        The community-optimal schedule.
    """

    summary: pd.DataFrame
    members: pd.DataFrame
    individual: dict[str, Schedule]
    joint: Schedule


def compare_individual_and_community(
    index: pd.DatetimeIndex,
    community: Community,
    *,
    penalties: Penalties | None = None,
    method: str = "auto",
    **solve_options: Any,
) -> CommunityComparison:
    """Solve each member alone and the community as one, and compare them on the community's terms.

    The individual schedules ignore the community (no sharing value, no common limit); their sum is
    then priced with the community commitments and checked against the connection limit.

    Parameters
    ----------
    index
        Horizon step starts (regular, UTC).
    community
        Members and shared terms.
    penalties
        Slack penalties.
    method
        How the joint problem is solved (see :func:`schedule_community`).
    **solve_options
        Passed to :func:`bright.energy.flex.solve.solve` (and to the joint solve).
    """
    joint = schedule_community(index, community, penalties=penalties, method=method, **solve_options)
    dt = joint.problem.dt_h
    names = [m.name for m in community.members]
    individual = {
        m.name: solve(build_problem(index, [m], penalties=penalties), **solve_options)
        for m in community.members
    }
    series = [
        {
            "import": individual[k].sites[k]["import_kw"].to_numpy(),
            "export": individual[k].sites[k]["export_kw"].to_numpy(),
            "reserve_up": individual[k].sites[k]["reserve_up_kw"].to_numpy(),
            "reserve_down": individual[k].sites[k]["reserve_down_kw"].to_numpy(),
        }
        for k in names
    ]
    q = _quantities(series)
    ind_cost = pd.Series({k: individual[k].cost_eur for k in names}, dtype=float)
    unallocated = 0.0
    excess = 0.0
    for c in community.commitments:
        arrays = c.arrays(index)
        rows = commitment_rows(c, arrays, q, q, series, series, names, community.seller_share, dt)
        for r in rows:
            cost = float(r["optimal_eur"])  # type: ignore[arg-type]
            if r["member"] == "community":
                unallocated += cost
            else:
                ind_cost[str(r["member"])] += cost
        excess += float(c.excess_kwh(q[c.quantity], arrays, dt).sum())
    excess += _limit_excess(q["net_import"], community, dt)

    jq = joint.community
    assert jq is not None
    joint_cost = joint.member_costs().reindex(names, fill_value=0.0)
    qj = community_quantities(
        jq["import_kw"].to_numpy(),
        jq["export_kw"].to_numpy(),
        jq["reserve_up_kw"].to_numpy(),
        jq["reserve_down_kw"].to_numpy(),
    )
    joint_excess = _limit_excess(qj["net_import"], community, dt)
    for c in community.commitments:
        joint_excess += float(c.excess_kwh(qj[c.quantity], c.arrays(index), dt).sum())
    summary = pd.DataFrame(
        {
            "cost_eur": [float(ind_cost.sum()) + unallocated, joint.cost_eur],
            "shared_kwh": [float(q["shared"].sum() * dt), float(jq["shared_kw"].sum() * dt)],
            "peak_net_import_kw": [float(q["net_import"].max()), float(jq["net_import_kw"].max())],
            "limit_excess_kwh": [excess, joint_excess],
            "penalty_eur": [float(sum(s.penalty_eur for s in individual.values())), joint.penalty_eur],
        },
        index=pd.Index(["individual", "community"], name="schedule"),
    )
    members = pd.DataFrame({"individual_eur": ind_cost, "community_eur": joint_cost})
    members["gain_eur"] = members["individual_eur"] - members["community_eur"]
    members.index.name = "member"
    return CommunityComparison(summary=summary, members=members, individual=individual, joint=joint)


def _limit_excess(net_import: FloatArray, community: Community, dt_h: float) -> float:
    over = np.maximum(net_import - community.import_limit_kw, 0.0) + np.maximum(
        -net_import - community.export_limit_kw, 0.0
    )
    return float(over.sum() * dt_h)
