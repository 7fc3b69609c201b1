"""Value streams as priced commitments: one contract for every way flexibility earns or saves money.

A :class:`Commitment` prices the deviation of one *quantity* ``q`` (kW per step: import, export,
net import, self-consumption, shared energy, reserve) from a *baseline* ``b``:

* per step (``scope="step"``), in EUR for step ``t`` of length ``dt`` h::

      cost[t] = (up_price[t] * max(q[t] - b[t], 0) - down_price[t] * max(b[t] - q[t], 0)) * dt

  ``up_price`` is what each kWh above the baseline costs, ``down_price`` what each kWh below it earns.
  With ``down_price`` omitted (= ``up_price``) the commitment is linear, ``price * (q - b) * dt``, and
  adds no variable at all. A revenue is a negative price. The cost must be convex for an LP:
  ``up_price >= down_price`` at every step, otherwise :class:`FlexInputError` is raised.
* over the horizon (``scope="horizon"``), a capacity charge in EUR/kW on the highest excess::

      cost = up_price * max(0, max_t (q[t] - b[t]))

* ``hard=True``: a limit ``q[t] <= b[t]`` (a DSO or OpenADR import/export limit). It costs nothing when
  met; any excess is a slack penalised with :attr:`Penalties.limit_eur_per_kwh` and reported as unmet.

A NaN baseline or price at a step means the commitment does not apply there (an event window).
Reserve quantities (``reserve_up``, ``reserve_down``, ``reserve_symmetric``) price the power the
devices hold back for an ancillary service; the devices must keep ``reserve_duration_h`` hours of
energy for it, and ``block_steps`` makes the reservation constant over market blocks.

The factories below build the usual value streams; :meth:`Commitment.from_dict` reads a plain mapping
and rejects unknown options.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from bright.energy.flex.problem import (
    COMMUNITY_QUANTITIES,
    SITE_QUANTITIES,
    FlexInputError,
    FloatArray,
    StepTerms,
    Unmet,
    step_values,
)

if TYPE_CHECKING:
    from bright.energy.flex.problem import BuildContext, ModelBuilder

__all__ = [
    "Commitment",
    "CommitmentBlock",
    "co2_cost",
    "dso_limit",
    "energy_price",
    "feed_in",
    "flexibility_request",
    "peak_charge",
    "reserve_capacity",
    "self_consumption_value",
    "sharing_value",
]

PriceLike = float | ArrayLike | pd.Series
QUANTITIES = tuple(dict.fromkeys(SITE_QUANTITIES + COMMUNITY_QUANTITIES))
SCOPES = ("step", "horizon")


@dataclass(frozen=True)
class Commitment:
    """A priced commitment on one quantity of a member or of the community.

    Attributes
    ----------
    name
        Label in the value-stacking statement, unique within its member or community.
    quantity
        ``import``, ``export``, ``net_import``, ``net_export``, ``self_consumption`` (member only),
        ``shared`` (community only), ``reserve_up``, ``reserve_down`` or ``reserve_symmetric``.
    up_price
        Per-step scope: EUR/kWh for energy above the baseline (EUR/kW/h for reserve). Horizon scope:
        EUR/kW on the highest excess. Scalar, array or UTC series; NaN = not applicable at that step.
    down_price
        EUR/kWh earned per kWh below the baseline (per-step scope only); None means ``up_price``.
    baseline_kw
        Baseline (or limit, for ``hard``) in kW, scalar, array or UTC series; NaN = not applicable.
    scope
        ``"step"`` or ``"horizon"``.
    hard
        A limit ``quantity <= baseline_kw`` instead of a price (no ``up_price``/``down_price``).
    reserve_duration_h
        Reserve quantities only: hours the reserved power must be deliverable from stored energy.
    block_steps
        Reserve quantities only: the reservation is constant over blocks of this many steps from the
        horizon start (4 h FCR blocks are 16 quarter-hours).
    """

    name: str
    quantity: str
    up_price: PriceLike | None = None
    down_price: PriceLike | None = None
    baseline_kw: PriceLike = 0.0
    scope: str = "step"
    hard: bool = False
    reserve_duration_h: float | None = None
    block_steps: int = 1

    def __post_init__(self) -> None:
        who = f"commitment {self.name!r}"
        if self.quantity not in QUANTITIES:
            raise FlexInputError(
                f"{who}: unknown quantity {self.quantity!r}; allowed: {', '.join(QUANTITIES)}"
            )
        if self.scope not in SCOPES:
            raise FlexInputError(f"{who}: unknown scope {self.scope!r}; allowed: {', '.join(SCOPES)}")
        reserve = self.quantity.startswith("reserve_")
        if self.hard:
            if self.up_price is not None or self.down_price is not None:
                raise FlexInputError(f"{who}: a hard limit takes no up_price/down_price")
            if self.scope != "step":
                raise FlexInputError(f"{who}: a hard limit applies per step")
        elif self.up_price is None:
            raise FlexInputError(f"{who}: up_price is required (or hard=True for a limit)")
        if self.scope == "horizon":
            if self.down_price is not None:
                raise FlexInputError(f"{who}: a horizon (peak) commitment has no down_price")
            up = self.up_price
            if not isinstance(up, int | float) or isinstance(up, bool) or not (math.isfinite(up) and up >= 0):
                raise FlexInputError(
                    f"{who}: a horizon (peak) commitment needs one finite up_price >= 0 in EUR/kW"
                )
        if reserve:
            if self.reserve_duration_h is None or not (
                math.isfinite(self.reserve_duration_h) and self.reserve_duration_h >= 0
            ):
                raise FlexInputError(f"{who}: reserve needs reserve_duration_h >= 0 (hours of energy per kW)")
        elif self.reserve_duration_h is not None or self.block_steps != 1:
            raise FlexInputError(
                f"{who}: reserve_duration_h and block_steps apply to reserve quantities only"
            )
        if not (isinstance(self.block_steps, int | np.integer) and self.block_steps >= 1):
            raise FlexInputError(f"{who}: block_steps must be an integer >= 1, got {self.block_steps!r}")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Commitment:
        """Build a commitment from a mapping of its fields; unknown keys raise.

        Parameters
        ----------
        spec
            ``{"name": ..., "quantity": ..., "up_price": ..., ...}`` with the attribute names above.

        Raises
        ------
        FlexInputError
            Unknown option or invalid value.
        """
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(spec) - allowed
        if unknown:
            raise FlexInputError(
                f"commitment {spec.get('name', '?')!r}: unknown option(s) {sorted(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        missing = {"name", "quantity"} - set(spec)
        if missing:
            raise FlexInputError(f"commitment: missing required option(s) {sorted(missing)}")
        return cls(**spec)

    @property
    def is_linear(self) -> bool:
        """Whether the per-step cost is ``price * (q - b) * dt`` (no deviation variables needed)."""
        return self.scope == "step" and not self.hard and self.down_price is None

    def arrays(self, index: pd.DatetimeIndex) -> CommitmentArrays:
        """Prices, baseline and the steps where the commitment applies, on the horizon.

        Raises
        ------
        FlexInputError
            If the cost would not be convex (``up_price < down_price`` at an active step).
        """
        who = f"commitment {self.name!r}"
        n = len(index)
        base = step_values(self.baseline_kw, index, what=f"{who}: baseline_kw", allow_nan=True)
        if self.hard:
            nan = np.full(n, np.nan)
            return CommitmentArrays(nan, nan, base, np.isfinite(base))
        up = step_values(self.up_price, index, what=f"{who}: up_price", allow_nan=True)  # type: ignore[arg-type]
        down = (
            up
            if self.down_price is None
            else step_values(self.down_price, index, what=f"{who}: down_price", allow_nan=True)
        )
        active = np.isfinite(base) & np.isfinite(up) & np.isfinite(down)
        bad = active & (up < down - 1e-12)
        if bad.any():
            t = int(np.flatnonzero(bad)[0])
            raise FlexInputError(
                f"{who}: up_price {up[t]} below down_price {down[t]} at {index[t]}: the cost is not convex "
                "(deviating both ways at once would pay)"
            )
        return CommitmentArrays(up, down, base, active)

    def build(self, b: ModelBuilder, terms: StepTerms, ctx: BuildContext) -> CommitmentBlock:
        """Add the commitment's cost (and its deviation or slack columns) on the expression ``terms``.

        Parameters
        ----------
        b
            Model builder.
        terms
            The quantity as a linear expression of the model's columns (kW per step).
        ctx
            Build context (horizon, step length, penalties, member name).
        """
        arr = self.arrays(ctx.index)
        n, dt = ctx.n, ctx.dt_h
        steps = np.flatnonzero(arr.active)
        m = len(steps)
        unmet: list[Unmet] = []
        const = terms.constant
        if m == 0:
            pass
        elif self.hard:
            pen = ctx.penalties.limit_eur_per_kwh
            rows = b.add_rows(m, lower=-math.inf, upper=arr.baseline[steps] - const[steps])
            _write(b, rows, steps, terms, n)
            v = b.add_cols(m, cost=pen * dt)
            b.add_entries(rows, v, -1.0)  # q - v <= limit
            unmet.append(Unmet(ctx.site, self.name, "limit", v, ctx.index[steps], "kWh", dt, pen))
        elif self.scope == "horizon":
            peak = b.add_cols(1, cost=float(self.up_price))  # type: ignore[arg-type]
            rows = b.add_rows(m, lower=-math.inf, upper=arr.baseline[steps] - const[steps])
            _write(b, rows, steps, terms, n)
            b.add_entries(rows, peak[0], -1.0)  # q - peak <= baseline
        elif self.is_linear:
            price = np.where(arr.active, arr.up, 0.0) * dt
            if len(terms.cols):
                b.add_cost(terms.cols, terms.coefs * price[terms.steps])
            b.offset += float(np.sum(price[steps] * (const[steps] - arr.baseline[steps])))
        else:
            rows = b.add_rows(
                m, lower=arr.baseline[steps] - const[steps], upper=arr.baseline[steps] - const[steps]
            )
            _write(b, rows, steps, terms, n)
            above = b.add_cols(m, cost=arr.up[steps] * dt)
            below = b.add_cols(m, cost=-arr.down[steps] * dt)
            b.add_entries(rows, above, -1.0)  # q - above + below = baseline
            b.add_entries(rows, below, 1.0)
        if self.block_steps > 1 and n > 1:
            # reservation constant within blocks: r[t] = r[t-1] unless t starts a block
            t = np.arange(1, n)
            t = t[t % self.block_steps != 0]
            if len(t):
                rows = b.add_rows(len(t), lower=0.0, upper=0.0)
                prev = np.full(n, -1, dtype=np.int64)
                prev[t - 1] = rows
                cur = np.full(n, -1, dtype=np.int64)
                cur[t] = rows
                b.add_terms(cur, terms, 1.0)
                b.add_terms(prev, terms, -1.0)
        return CommitmentBlock(self, arr, unmet)

    def cost(self, q: FloatArray, arrays: CommitmentArrays, dt_h: float) -> FloatArray:
        """Cost in EUR per step of the quantity series ``q`` (kW); a horizon charge sits at its peak step.

        Hard limits cost nothing here: their excess is reported by :meth:`excess_kwh`.
        """
        n = len(q)
        out = np.zeros(n)
        act = arrays.active
        if self.hard or not act.any():
            return out
        dev = np.where(act, q - np.where(act, arrays.baseline, 0.0), 0.0)
        if self.scope == "horizon":
            k = int(np.flatnonzero(act)[np.argmax(dev[act])])
            if dev[k] > 0:
                out[k] = float(self.up_price) * dev[k]  # type: ignore[arg-type]
            return out
        up = np.where(act, arrays.up, 0.0)
        down = np.where(act, arrays.down, 0.0)
        return (up * np.maximum(dev, 0.0) - down * np.maximum(-dev, 0.0)) * dt_h

    def excess_kwh(self, q: FloatArray, arrays: CommitmentArrays, dt_h: float) -> FloatArray:
        """kWh per step above a hard limit (zero for priced commitments)."""
        if not self.hard:
            return np.zeros(len(q))
        act = arrays.active
        return np.where(act, np.maximum(q - np.where(act, arrays.baseline, 0.0), 0.0), 0.0) * dt_h


@dataclass(frozen=True)
class CommitmentArrays:
    """A commitment's series on the horizon: ``up``, ``down`` (EUR/kWh), ``baseline`` (kW), ``active``."""

    up: FloatArray
    down: FloatArray
    baseline: FloatArray
    active: NDArray[np.bool_]


@dataclass
class CommitmentBlock:
    """A commitment as built: its series and the slack columns of a hard limit."""

    commitment: Commitment
    arrays: CommitmentArrays
    unmet: list[Unmet] = field(default_factory=list)


def _write(
    b: ModelBuilder, rows: NDArray[np.int64], steps: NDArray[np.int64], terms: StepTerms, n: int
) -> None:
    row_of_step = np.full(n, -1, dtype=np.int64)
    row_of_step[steps] = rows
    b.add_terms(row_of_step, terms)


# --------------------------------------------------------------------------------------------------
# the usual value streams


def energy_price(
    price_eur_per_kwh: PriceLike, *, name: str = "energy", quantity: str = "import"
) -> Commitment:
    """Energy bought at a price series (day-ahead, dynamic or fixed tariff).

    Parameters
    ----------
    price_eur_per_kwh
        EUR/kWh per step (an hourly UTC series holds over its quarter-hours).
    name
        Statement label.
    quantity
        ``"import"`` (gross offtake, default) or ``"net_import"`` (one price both ways).
    """
    if quantity not in ("import", "net_import"):
        raise FlexInputError(f"commitment {name!r}: energy_price quantity must be import or net_import")
    return Commitment(name, quantity, up_price=price_eur_per_kwh)


def feed_in(price_eur_per_kwh: PriceLike, *, name: str = "feed-in") -> Commitment:
    """Revenue of injected energy at a price series (EUR/kWh, may be negative at negative prices)."""
    return Commitment(name, "export", up_price=_neg(price_eur_per_kwh))


def self_consumption_value(value_eur_per_kwh: PriceLike, *, name: str = "self-consumption") -> Commitment:
    """An explicit bonus per kWh of on-site generation not exported (member level)."""
    return Commitment(name, "self_consumption", up_price=_neg(value_eur_per_kwh))


def sharing_value(value_eur_per_kwh: PriceLike, *, name: str = "sharing") -> Commitment:
    """Value of each kWh a member's import takes from another member's export (community level).

    The value is what sharing saves the community per kWh (lower network fees and the spread between
    the supplier price and the community price); it must not exceed the members' import price minus
    their feed-in price, or members would import and export at once to create shared energy.
    """
    return Commitment(name, "shared", up_price=_neg(value_eur_per_kwh))


def peak_charge(
    eur_per_kw: float, *, reached_kw: PriceLike = 0.0, quantity: str = "net_import", name: str = "peak"
) -> Commitment:
    """Capacity charge on the horizon's highest import above what is already paid for.

    Parameters
    ----------
    eur_per_kw
        EUR per kW of new peak (the share of the monthly or yearly capacity tariff the horizon bears).
    reached_kw
        Peak already reached in the billing period (kW); only the excess costs.
    quantity
        ``"net_import"`` (default), ``"import"`` or, at community level, the transformer flow.
    name
        Statement label.
    """
    return Commitment(name, quantity, up_price=eur_per_kw, baseline_kw=reached_kw, scope="horizon")


def reserve_capacity(
    price_eur_per_kw_h: PriceLike,
    *,
    direction: str = "symmetric",
    duration_h: float = 0.25,
    block_steps: int = 1,
    name: str = "reserve",
) -> Commitment:
    """Availability payment for reserving power for an ancillary service (FCR, aFRR).

    Parameters
    ----------
    price_eur_per_kw_h
        Availability price in EUR per kW per hour reserved.
    direction
        ``"symmetric"`` (FCR: the same power up and down), ``"up"`` or ``"down"`` (aFRR products).
    duration_h
        Hours of full activation the stored energy must cover (energy reserve), e.g. 0.25 for FCR.
    block_steps
        Steps per market block over which the reservation is constant.
    name
        Statement label.
    """
    if direction not in ("symmetric", "up", "down"):
        raise FlexInputError(
            f"commitment {name!r}: direction must be symmetric, up or down, got {direction!r}"
        )
    return Commitment(
        name,
        f"reserve_{direction}",
        up_price=_neg(price_eur_per_kw_h),
        reserve_duration_h=duration_h,
        block_steps=block_steps,
    )


def dso_limit(
    *,
    import_max_kw: PriceLike | None = None,
    export_max_kw: PriceLike | None = None,
    name: str = "dso limit",
) -> tuple[Commitment, ...]:
    """An OpenADR-style import/export limit from the DSO (NaN outside the event window).

    Returns one hard commitment per direction given: ``net_import <= import_max_kw`` and
    ``net_export <= export_max_kw``.
    """
    out = []
    if import_max_kw is not None:
        out.append(Commitment(f"{name} (import)", "net_import", baseline_kw=import_max_kw, hard=True))
    if export_max_kw is not None:
        out.append(Commitment(f"{name} (export)", "net_export", baseline_kw=export_max_kw, hard=True))
    if not out:
        raise FlexInputError(f"commitment {name!r}: give import_max_kw and/or export_max_kw")
    return tuple(out)


def flexibility_request(
    baseline_kw: PriceLike,
    price_eur_per_kwh: PriceLike,
    *,
    penalty_eur_per_kwh: PriceLike | None = None,
    quantity: str = "net_import",
    name: str = "flexibility request",
) -> Commitment:
    """A DSO or aggregator request settled against a baseline inside an event window.

    Each kWh below ``baseline_kw`` earns ``price_eur_per_kwh``; each kWh above costs
    ``penalty_eur_per_kwh`` (default: the same price, a symmetric settlement). NaN in the baseline
    marks the steps outside the event.
    """
    return Commitment(
        name,
        quantity,
        up_price=price_eur_per_kwh if penalty_eur_per_kwh is None else penalty_eur_per_kwh,
        down_price=None if penalty_eur_per_kwh is None else price_eur_per_kwh,
        baseline_kw=baseline_kw,
    )


def co2_cost(
    intensity_kg_per_kwh: PriceLike,
    eur_per_kg: float,
    *,
    quantity: str = "import",
    name: str = "CO2",
) -> Commitment:
    """Cost of the emissions of imported energy: grid intensity (kgCO2e/kWh) times a carbon price.

    Parameters
    ----------
    intensity_kg_per_kwh
        Marginal or average grid emission factor per step, kgCO2e/kWh.
    eur_per_kg
        Carbon price in EUR/kgCO2e (e.g. 0.08 for 80 EUR/t).
    quantity
        ``"import"`` (default) or ``"net_import"`` to credit exports with the same factor.
    name
        Statement label.
    """
    if not math.isfinite(eur_per_kg):
        raise FlexInputError(f"commitment {name!r}: eur_per_kg must be finite")
    if isinstance(intensity_kg_per_kwh, pd.Series):
        price: PriceLike = intensity_kg_per_kwh * eur_per_kg
    else:
        price = np.asarray(intensity_kg_per_kwh, dtype=np.float64) * eur_per_kg
        if np.ndim(price) == 0:
            price = float(price)
    return Commitment(name, quantity, up_price=price)


def _neg(price: PriceLike) -> PriceLike:
    if isinstance(price, pd.Series):
        return -price
    arr = -np.asarray(price, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr
