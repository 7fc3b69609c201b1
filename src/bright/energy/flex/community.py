"""Community scheduling: one problem over all members' devices with the constraints they share.

A :class:`Community` adds to the members' own models (each with its devices, connection and
commitments):

* the community's connection (transformer) limit on the net flow ``sum_m import_m - sum_m export_m``;
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

:func:`compare_individual_and_community` solves every member alone, evaluates the union of those
individually optimal schedules under the community's terms, and sets it against the joint optimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bright.energy.flex.commitments import Commitment, CommitmentArrays, CommitmentBlock
from bright.energy.flex.problem import (
    COMMUNITY_QUANTITIES,
    BuildContext,
    FlexInputError,
    FloatArray,
    IntArray,
    ModelBuilder,
    Penalties,
    SiteBlock,
    StepTerms,
    Unmet,
    build_problem,
    community_quantities,
)
from bright.energy.flex.problem import Site as Site
from bright.energy.flex.solve import Schedule, solve

__all__ = [
    "Community",
    "CommunityBlock",
    "CommunityComparison",
    "compare_individual_and_community",
    "schedule_community",
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
        forced_imp = np.sum([s.forced_import_kw for s in sites], axis=0)
        forced_exp = np.sum([s.forced_export_kw for s in sites], axis=0)
        for limit, forced, sign, what in (
            (self.import_limit_kw, forced_imp, 1.0, "import_limit"),
            (self.export_limit_kw, forced_exp, -1.0, "export_limit"),
        ):
            if not math.isfinite(limit):
                continue
            rows = b.add_rows(n, lower=-math.inf, upper=limit)  # sign * (imp - exp) <= limit
            b.add_entries(rows, imp, sign)
            b.add_entries(rows, exp, -sign)
            slack = np.flatnonzero(ctx.relax_all | (forced > limit - 1e-9))
            if len(slack):
                v = b.add_cols(len(slack), cost=ctx.penalties.limit_eur_per_kwh * dt)
                b.add_entries(rows[slack], v, -1.0)
                unmet.append(
                    Unmet(
                        "community",
                        self.name,
                        what,
                        v,
                        ctx.index[slack],
                        "kWh",
                        dt,
                        ctx.penalties.limit_eur_per_kwh,
                    )
                )

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


def schedule_community(
    index: pd.DatetimeIndex,
    community: Community,
    *,
    penalties: Penalties | None = None,
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
    **solve_options
        Passed to :func:`bright.energy.flex.solve.solve`.
    """
    problem = build_problem(index, community.members, community=community, penalties=penalties)
    return solve(problem, **solve_options)


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
    **solve_options
        Passed to :func:`bright.energy.flex.solve.solve`.
    """
    joint = schedule_community(index, community, penalties=penalties, **solve_options)
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
            if r["member"] == "community":
                unallocated += float(r["optimal_eur"])  # type: ignore[arg-type]
            else:
                ind_cost[r["member"]] += float(r["optimal_eur"])  # type: ignore[arg-type]
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
