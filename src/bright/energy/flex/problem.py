"""Model builder of the flexibility scheduler: sparse LP/MILP arrays assembled for HiGHS.

A scheduling problem is a set of sites (community members) over one horizon of regular UTC steps.
Every site has a fixed base load, flexible devices (:mod:`bright.energy.flex.devices`), a grid
connection and priced commitments (:mod:`bright.energy.flex.commitments`); a community
(:mod:`bright.energy.flex.community`) may add shared constraints over all sites.

Columns (variables) and rows (constraints) are added in blocks of one entry per step with numpy
index arithmetic: a device asks :class:`ModelBuilder` for ``n`` columns, gets their indices as an
``np.arange`` and writes its constraint coefficients as three flat arrays (row, column, value). No
per-element Python object is created; :meth:`ModelBuilder.finish` turns the blocks into one
compressed-sparse-row matrix handed to HiGHS once.

Sign convention: every power is a mean over its step in kW; a device *consumption* is positive when
the device draws power from the site's bus and negative when it produces. The site balance per step is

    import[t] - export[t] = base_load[t] + sum_d consumption_d[t]

with ``import`` and ``export`` the gross offtake and injection at the connection point, both >= 0.

Soft constraints (SoC targets, EV energy, comfort band, connection limits that the fixed load alone
already exceeds, hard commitments) carry a slack column penalised in the objective (:class:`Penalties`),
so an infeasible request returns the closest schedule and a report of what was not met.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import highspy

    from bright.energy.flex.commitments import Commitment, CommitmentBlock
    from bright.energy.flex.devices import GridConnection

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Quantities a site-level commitment may price (kW per step, see :func:`site_quantities`).
SITE_QUANTITIES = (
    "import",
    "export",
    "net_import",
    "net_export",
    "self_consumption",
    "reserve_up",
    "reserve_down",
    "reserve_symmetric",
)
#: Quantities a community-level commitment may price (see :func:`community_quantities`).
COMMUNITY_QUANTITIES = (
    "import",
    "export",
    "net_import",
    "net_export",
    "shared",
    "reserve_up",
    "reserve_down",
    "reserve_symmetric",
)


class FlexInputError(ValueError):
    """Invalid input to the flexibility scheduler; the message names the member, device or field."""


class ScheduleError(RuntimeError):
    """HiGHS returned no usable solution (time limit without incumbent, numerical failure)."""


# --------------------------------------------------------------------------------------------------
# time series on the horizon


def horizon_step_h(index: pd.DatetimeIndex) -> float:
    """Step length of a scheduling horizon in hours.

    Parameters
    ----------
    index
        Start stamps of the steps: timezone-aware UTC, strictly regular, at least one step (a single
        step needs ``index.freq``).

    Returns
    -------
    float
        Step length in h (0.25 for quarter-hours).

    Raises
    ------
    FlexInputError
        If the index is not UTC, not regular or empty.
    """
    if not isinstance(index, pd.DatetimeIndex) or len(index) == 0:
        raise FlexInputError("horizon: index must be a non-empty pandas.DatetimeIndex")
    if index.tz is None or str(index.tz) != "UTC":
        raise FlexInputError(f"horizon: index must be timezone-aware UTC, got tz={index.tz}")
    if len(index) == 1:
        if index.freq is None:
            raise FlexInputError("horizon: a one-step index needs a freq to know the step length")
        return float(((index[0] + index.freq) - index[0]).total_seconds()) / 3600.0
    stamps = index.as_unit("ns").asi8
    steps = np.diff(stamps)
    if steps[0] <= 0 or np.any(steps != steps[0]):
        bad = int(np.flatnonzero(steps != steps[0])[0]) + 1 if np.any(steps != steps[0]) else 1
        raise FlexInputError(f"horizon: index must be strictly regular; irregular at {index[bad]}")
    return float(pd.Timedelta(int(steps[0]), unit="ns").total_seconds()) / 3600.0


def step_values(
    value: float | ArrayLike | pd.Series,
    index: pd.DatetimeIndex,
    *,
    what: str,
    allow_nan: bool = False,
) -> FloatArray:
    """One float per step of the horizon from a scalar, an array or a time series.

    Parameters
    ----------
    value
        A scalar (broadcast), an array of one value per step, or a pandas Series with a tz-aware
        index. A series is sampled at each step start with the value stamped at or before it (a value
        is stamped at the start of its interval), so hourly prices hold over their four quarter-hours.
    index
        Horizon step starts (UTC).
    what
        Name of the input for error messages (``"member 'm1' battery 'b': initial_soc_kwh"``).
    allow_nan
        Whether NaN may stay in the result (it means "not applicable at this step" where allowed).

    Returns
    -------
    numpy.ndarray
        Float array of length ``len(index)``.

    Raises
    ------
    FlexInputError
        Wrong length, a series that does not cover the horizon, or NaN where not allowed.
    """
    n = len(index)
    if isinstance(value, pd.Series):
        sidx = value.index
        if not isinstance(sidx, pd.DatetimeIndex) or sidx.tz is None:
            raise FlexInputError(f"{what}: series needs a timezone-aware DatetimeIndex")
        if sidx.equals(index):
            arr = value.to_numpy(dtype=np.float64, copy=True)
        else:
            s = value if sidx.is_monotonic_increasing else value.sort_index()
            stamps = pd.DatetimeIndex(s.index)
            if str(stamps.tz) != "UTC":
                stamps = stamps.tz_convert("UTC")
            pos = stamps.searchsorted(index, side="right") - 1
            if pos[0] < 0:
                raise FlexInputError(
                    f"{what}: series starts at {stamps[0]}, after the horizon start {index[0]}"
                )
            last_len = stamps[-1] - stamps[-2] if len(stamps) > 1 else pd.Timedelta(0)
            if index[-1] >= stamps[-1] + last_len and not (len(stamps) == 1 and index[-1] == stamps[-1]):
                raise FlexInputError(
                    f"{what}: series ends at {stamps[-1]}, before the horizon end {index[-1]}"
                )
            arr = s.to_numpy(dtype=np.float64)[pos]
    elif np.ndim(value) == 0:
        arr = np.full(n, float(value))  # type: ignore[arg-type]
    else:
        arr = np.asarray(value, dtype=np.float64).copy()
        if arr.shape != (n,):
            raise FlexInputError(f"{what}: expected {n} values (one per step), got shape {arr.shape}")
    if not allow_nan and np.isnan(arr).any():
        raise FlexInputError(f"{what}: missing value (NaN) at {index[int(np.flatnonzero(np.isnan(arr))[0])]}")
    return arr


# --------------------------------------------------------------------------------------------------
# linear expressions and the sparse builder


@dataclass(frozen=True)
class StepTerms:
    """A linear expression per step: ``value[t] = constant[t] + sum(coefs[k] * x[cols[k]] for steps[k] == t)``.

    Attributes
    ----------
    steps, cols, coefs
        Flat arrays of equal length: the step, the column index and the coefficient of each term.
    constant
        Constant part per step, length ``n`` (NaN marks a value that does not exist at that step).
    """

    steps: IntArray
    cols: IntArray
    coefs: FloatArray
    constant: FloatArray

    @classmethod
    def of_columns(
        cls, cols: IntArray, n: int, coef: float = 1.0, steps: IntArray | None = None
    ) -> StepTerms:
        """One column per step (``steps`` default ``0..n-1``) with a common coefficient."""
        st = np.arange(n, dtype=np.int64) if steps is None else np.asarray(steps, dtype=np.int64)
        return cls(st, np.asarray(cols, dtype=np.int64), np.full(len(st), float(coef)), np.zeros(n))

    @classmethod
    def constant_only(cls, constant: FloatArray) -> StepTerms:
        """An expression without columns."""
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, np.zeros(0), np.asarray(constant, dtype=np.float64))

    @property
    def n(self) -> int:
        """Number of steps."""
        return len(self.constant)

    def value(self, x: FloatArray) -> FloatArray:
        """Evaluate the expression at the solution ``x`` (one value per step)."""
        if len(self.cols) == 0:
            return self.constant.copy()
        return self.constant + np.bincount(self.steps, weights=self.coefs * x[self.cols], minlength=self.n)

    def __add__(self, other: StepTerms) -> StepTerms:
        return StepTerms(
            np.concatenate([self.steps, other.steps]),
            np.concatenate([self.cols, other.cols]),
            np.concatenate([self.coefs, other.coefs]),
            self.constant + other.constant,
        )

    def scaled(self, k: float) -> StepTerms:
        """The expression multiplied by ``k``."""
        return StepTerms(self.steps, self.cols, self.coefs * k, self.constant * k)


@dataclass(frozen=True)
class LinearModel:
    """The assembled model in HiGHS' compressed-sparse-row form (minimisation).

    Attributes
    ----------
    col_cost, col_lower, col_upper
        Objective coefficient (EUR per unit of the column) and bounds of each column.
    row_lower, row_upper
        Bounds of each row activity.
    a_start, a_index, a_value
        CSR matrix: row ``i`` holds ``a_index[a_start[i]:a_start[i+1]]`` with values ``a_value[...]``.
    integrality
        1 for integer (binary) columns, 0 for continuous.
    offset
        Constant added to the objective (EUR).
    """

    col_cost: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    row_lower: FloatArray
    row_upper: FloatArray
    a_start: NDArray[np.int32]
    a_index: NDArray[np.int32]
    a_value: FloatArray
    integrality: NDArray[np.int32]
    offset: float

    @property
    def num_col(self) -> int:
        """Number of columns."""
        return len(self.col_cost)

    @property
    def num_row(self) -> int:
        """Number of rows."""
        return len(self.row_lower)

    @property
    def num_nz(self) -> int:
        """Number of non-zero matrix entries."""
        return len(self.a_value)

    @property
    def num_integer(self) -> int:
        """Number of integer columns."""
        return int(self.integrality.sum())

    def to_highs(self, options: Mapping[str, bool | int | float | str] | None = None) -> highspy.Highs:
        """A silent :class:`highspy.Highs` instance holding this model.

        Parameters
        ----------
        options
            HiGHS options set after silencing the output (``time_limit``, ``mip_rel_gap`` ...).
        """
        import highspy

        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        for key, val in (options or {}).items():
            h.setOptionValue(key, val)
        status = h.passModel(
            self.num_col,
            self.num_row,
            self.num_nz,
            int(highspy.MatrixFormat.kRowwise),
            int(highspy.ObjSense.kMinimize),
            self.offset,
            self.col_cost,
            self.col_lower,
            self.col_upper,
            self.row_lower,
            self.row_upper,
            self.a_start[:-1],
            self.a_index,
            self.a_value,
            self.integrality,
        )
        if status == highspy.HighsStatus.kError:
            raise ScheduleError("HiGHS rejected the model (passModel returned an error)")
        return h


class ModelBuilder:
    """Accumulates column and row blocks as numpy arrays; :meth:`finish` returns a :class:`LinearModel`.

    Parameters
    ----------
    n_steps
        Number of steps of the horizon.
    dt_h
        Step length in h.
    """

    def __init__(self, n_steps: int, dt_h: float) -> None:
        self.n = n_steps
        self.dt_h = dt_h
        self.num_col = 0
        self.num_row = 0
        self.offset = 0.0
        self._cost: list[FloatArray] = []
        self._lower: list[FloatArray] = []
        self._upper: list[FloatArray] = []
        self._integer: list[tuple[int, int]] = []
        self._row_lower: list[FloatArray] = []
        self._row_upper: list[FloatArray] = []
        self._ent_row: list[IntArray] = []
        self._ent_col: list[IntArray] = []
        self._ent_val: list[FloatArray] = []
        self._extra_cost_col: list[IntArray] = []
        self._extra_cost_val: list[FloatArray] = []

    def add_cols(
        self,
        count: int,
        *,
        lower: float | ArrayLike = 0.0,
        upper: float | ArrayLike = math.inf,
        cost: float | ArrayLike = 0.0,
        integer: bool = False,
    ) -> IntArray:
        """Add ``count`` columns; return their indices.

        Parameters
        ----------
        count
            Number of columns.
        lower, upper
            Bounds (scalar or one per column), in the unit of the column (kW, kWh, degC ...).
        cost
            Objective coefficient per unit of the column (EUR per unit).
        integer
            Whether the columns are integer (with bounds 0..1: binary).
        """
        start = self.num_col
        self.num_col += count
        self._lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)))
        self._upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)))
        self._cost.append(np.broadcast_to(np.asarray(cost, dtype=np.float64), (count,)))
        if integer:
            self._integer.append((start, self.num_col))
        return np.arange(start, self.num_col, dtype=np.int64)

    def add_rows(self, count: int, *, lower: float | ArrayLike, upper: float | ArrayLike) -> IntArray:
        """Add ``count`` rows with activity bounds; return their indices."""
        start = self.num_row
        self.num_row += count
        self._row_lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)))
        self._row_upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)))
        return np.arange(start, self.num_row, dtype=np.int64)

    def add_entries(self, rows: ArrayLike, cols: ArrayLike, vals: ArrayLike) -> None:
        """Add matrix coefficients (arrays broadcast together)."""
        r, c, v = np.broadcast_arrays(
            np.asarray(rows, dtype=np.int64),
            np.asarray(cols, dtype=np.int64),
            np.asarray(vals, dtype=np.float64),
        )
        self._ent_row.append(r.ravel())
        self._ent_col.append(c.ravel())
        self._ent_val.append(v.ravel())

    def add_terms(self, row_of_step: IntArray, terms: StepTerms, scale: float = 1.0) -> FloatArray:
        """Write ``scale * terms`` into the rows ``row_of_step[step]`` (entries of steps mapped to -1 skip).

        Returns
        -------
        numpy.ndarray
            ``scale * terms.constant``: the constant part, for the caller to move to the row bounds.
        """
        if len(terms.cols):
            rows = row_of_step[terms.steps]
            keep = rows >= 0
            self.add_entries(rows[keep], terms.cols[keep], terms.coefs[keep] * scale)
        return terms.constant * scale

    def add_cost(self, cols: ArrayLike, cost: ArrayLike) -> None:
        """Add objective coefficients (EUR per unit) to existing columns."""
        c, v = np.broadcast_arrays(np.asarray(cols, dtype=np.int64), np.asarray(cost, dtype=np.float64))
        self._extra_cost_col.append(c.ravel())
        self._extra_cost_val.append(v.ravel())

    def finish(self) -> LinearModel:
        """Assemble the CSR model (duplicate entries summed, zero entries dropped)."""
        ncol, nrow = self.num_col, self.num_row
        cost = np.concatenate(self._cost) if self._cost else np.zeros(0)
        cost = cost.astype(np.float64, copy=True)
        if self._extra_cost_col:
            cost += np.bincount(
                np.concatenate(self._extra_cost_col),
                weights=np.concatenate(self._extra_cost_val),
                minlength=ncol,
            )
        rows = np.concatenate(self._ent_row) if self._ent_row else np.zeros(0, dtype=np.int64)
        cols = np.concatenate(self._ent_col) if self._ent_col else np.zeros(0, dtype=np.int64)
        vals = np.concatenate(self._ent_val) if self._ent_val else np.zeros(0)
        key = rows * max(ncol, 1) + cols
        order = np.argsort(key, kind="stable")
        key, vals = key[order], vals[order]
        if len(key) > 1 and np.any(key[1:] == key[:-1]):
            first = np.concatenate([[True], key[1:] != key[:-1]])
            starts = np.flatnonzero(first)
            vals = np.add.reduceat(vals, starts)
            key = key[starts]
        nonzero = vals != 0.0
        key, vals = key[nonzero], vals[nonzero]
        rows = key // max(ncol, 1)
        a_start = np.zeros(nrow + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=nrow), out=a_start[1:])
        integrality = np.zeros(ncol, dtype=np.int32)
        for lo, hi in self._integer:
            integrality[lo:hi] = 1
        return LinearModel(
            col_cost=cost,
            col_lower=np.concatenate(self._lower) if self._lower else np.zeros(0),
            col_upper=np.concatenate(self._upper) if self._upper else np.zeros(0),
            row_lower=np.concatenate(self._row_lower) if self._row_lower else np.zeros(0),
            row_upper=np.concatenate(self._row_upper) if self._row_upper else np.zeros(0),
            a_start=a_start,
            a_index=(key % max(ncol, 1)).astype(np.int32),
            a_value=vals,
            integrality=integrality,
            offset=self.offset,
        )


# --------------------------------------------------------------------------------------------------
# what devices and commitments hand back to the builder


@dataclass(frozen=True)
class Penalties:
    """Objective penalties of the slack columns that keep every request feasible.

    They must exceed any price in the problem so that a soft constraint is only relaxed when it cannot
    be met; their order says what gives first (comfort, then energy needs, then limits).

    Attributes
    ----------
    energy_eur_per_kwh
        EUR per kWh of unmet energy (SoC target, EV energy by departure).
    comfort_eur_per_kelvin_hour
        EUR per K·h outside a heat pump's comfort band.
    limit_eur_per_kwh
        EUR per kWh above a connection limit or a hard commitment (DSO limit).
    """

    energy_eur_per_kwh: float = 10.0
    comfort_eur_per_kelvin_hour: float = 5.0
    limit_eur_per_kwh: float = 100.0

    def __post_init__(self) -> None:
        for name in ("energy_eur_per_kwh", "comfort_eur_per_kelvin_hour", "limit_eur_per_kwh"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise FlexInputError(f"penalties: {name} must be a positive finite number, got {v}")


@dataclass(frozen=True)
class Unmet:
    """Slack columns of one soft constraint, for the report of what was not met.

    Attributes
    ----------
    site, item, constraint
        Member, device or commitment name, and which constraint (``"soc_target"``, ``"ev_energy"``...).
    cols
        Slack columns (-1: no column); their value times ``scale`` is the shortfall in ``unit``.
    times
        Timestamp of each slack column (the step start, or the deadline for energy targets).
    unit
        Unit of the reported shortfall (``"kWh"``, ``"K·h"``).
    scale
        Factor from the column value to the reported amount (``dt_h`` for a kW column reported in kWh).
    penalty
        Objective cost in EUR per unit of the reported amount.
    constant
        Shortfall known before solving (e.g. an EV session with no available step), one per entry;
        it is reported but not penalised (no decision can change it).
    """

    site: str
    item: str
    constraint: str
    cols: IntArray
    times: pd.DatetimeIndex
    unit: str
    scale: float
    penalty: float
    constant: FloatArray | None = None


@dataclass(frozen=True)
class ExclusivePair:
    """Two non-negative columns per step that should not both be positive (charge and discharge).

    The LP leaves them apart on its own because losses make simultaneous use a loss, except when
    wasting energy pays (negative prices). The solver then adds, for the offending steps only, a binary
    ``z`` with ``a <= a_max * z`` and ``b <= b_max * (1 - z)``.
    """

    key: str
    a: IntArray
    b: IntArray
    a_max: float
    b_max: float


@dataclass
class DeviceBlock:
    """What a device contributes to the model, and how to read its schedule back.

    Attributes
    ----------
    name, kind
        Device name (unique in its site) and type (``"battery"``, ``"ev"`` ...).
    consumption
        kW drawn from the site bus per step (negative when producing).
    outputs
        Columns of the device's schedule frame, each a linear expression of the solution.
    reference_consumption_kw
        The device's consumption without flexibility (idle battery, EV charging on arrival,
        thermostat at the comfort minimum, shiftable load at its earliest start, no curtailment).
    generation
        kW generated on site (PV), for the self-consumption quantity.
    reference_generation_kw
        Generation without curtailment.
    cost
        Device-internal cost in EUR per step (degradation); ``reference_cost_eur`` for the reference.
    reserve_up, reserve_down
        Columns (one per step) of the reserve power the device holds (kW), when reserve is requested.
    unmet
        Slack columns of the device's soft constraints.
    exclusive
        Charge/discharge pair for the lazy no-simultaneity binaries.
    max_consumption_kw, max_production_kw
        Bounds used as big-M of the site's import/export exclusivity.
    forced_consumption_kw, forced_production_kw
        Per-step consumption or production the device may impose whatever the schedule (a shiftable
        load's profile envelope, non-curtailable PV); where they exceed the connection limit the
        limit gets a slack.
    """

    name: str
    kind: str
    consumption: StepTerms
    outputs: dict[str, StepTerms]
    reference_consumption_kw: FloatArray
    generation: StepTerms | None = None
    reference_generation_kw: FloatArray | None = None
    cost: StepTerms | None = None
    reference_cost_eur: float = 0.0
    reserve_up: IntArray | None = None
    reserve_down: IntArray | None = None
    unmet: list[Unmet] = field(default_factory=list)
    exclusive: ExclusivePair | None = None
    max_consumption_kw: float = 0.0
    max_production_kw: float = 0.0
    forced_consumption_kw: FloatArray | None = None
    forced_production_kw: FloatArray | None = None


@dataclass(frozen=True)
class ReserveRequest:
    """Reserve the devices of a site must hold, from the reserve commitments that apply to it.

    Attributes
    ----------
    up, down
        Whether upward (more injection / less consumption) or downward reserve is requested.
    symmetric
        Whether up and down reserve are one product (FCR): equal power in both directions.
    duration_h
        Hours for which reserved power must be deliverable from stored energy.
    """

    up: bool
    down: bool
    symmetric: bool
    duration_h: float


@dataclass(frozen=True)
class BuildContext:
    """What a device or commitment needs to know while adding itself to the model.

    Attributes
    ----------
    index
        Horizon step starts (UTC).
    dt_h
        Step length in h.
    site
        Name of the member the device belongs to (for messages and keys).
    penalties
        Slack penalties.
    reserve
        Reserve request for the site, or None.
    relax_all
        Put slacks on every limit and comfort constraint (fallback after an infeasible solve).
    exclusive
        For each :class:`ExclusivePair` key, the steps that get a no-simultaneity binary.
    """

    index: pd.DatetimeIndex
    dt_h: float
    site: str
    penalties: Penalties
    reserve: ReserveRequest | None = None
    relax_all: bool = False
    exclusive: Mapping[str, NDArray[np.bool_]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of steps."""
        return len(self.index)

    def label(self, kind: str, name: str) -> str:
        """Prefix for error messages: ``member 'm1' battery 'b1'``."""
        return f"member {self.site!r} {kind} {name!r}"


class Device(Protocol):
    """A flexible device: builds its columns and rows and reports them as a :class:`DeviceBlock`."""

    name: str

    def build(self, b: ModelBuilder, ctx: BuildContext) -> DeviceBlock: ...


# --------------------------------------------------------------------------------------------------
# sites


@dataclass(frozen=True)
class Site:
    """A community member's access point: fixed load, flexible devices, connection, commitments.

    Attributes
    ----------
    name
        Member identifier (unique in a problem).
    base_load_kw
        Inflexible consumption in kW per step (scalar, array or UTC series); must not be NaN.
    devices
        Flexible devices (:mod:`bright.energy.flex.devices`), names unique in the site.
    connection
        Import/export limits of the access point (:class:`bright.energy.flex.devices.GridConnection`);
        None means unlimited.
    commitments
        Priced commitments on the site's quantities (:mod:`bright.energy.flex.commitments`).
    """

    name: str
    base_load_kw: float | ArrayLike | pd.Series
    devices: Sequence[Device] = ()
    connection: GridConnection | None = None
    commitments: Sequence[Commitment] = ()

    def __post_init__(self) -> None:
        names = [d.name for d in self.devices]
        dup = {x for x in names if names.count(x) > 1}
        if dup:
            raise FlexInputError(f"member {self.name!r}: duplicate device name(s) {sorted(dup)}")
        cnames = [c.name for c in self.commitments]
        cdup = {x for x in cnames if cnames.count(x) > 1}
        if cdup:
            raise FlexInputError(f"member {self.name!r}: duplicate commitment name(s) {sorted(cdup)}")
        for c in self.commitments:
            if c.quantity not in SITE_QUANTITIES:
                raise FlexInputError(
                    f"member {self.name!r} commitment {c.name!r}: quantity {c.quantity!r} is not available "
                    f"for a member; allowed: {', '.join(SITE_QUANTITIES)}"
                )


@dataclass
class SiteBlock:
    """A site's columns, device blocks and commitment blocks in the built model."""

    site: Site
    base_load_kw: FloatArray
    imp: IntArray
    exp: IntArray
    devices: list[DeviceBlock]
    generation: StepTerms
    reserve_up: IntArray | None
    reserve_down: IntArray | None
    quantities: dict[str, StepTerms]
    commitments: list[CommitmentBlock]
    unmet: list[Unmet]
    exclusive: ExclusivePair
    import_limit_kw: float
    export_limit_kw: float
    forced_import_kw: FloatArray
    forced_export_kw: FloatArray
    max_import_kw: float
    max_export_kw: float
    col_range: tuple[int, int] = (0, 0)
    row_range: tuple[int, int] = (0, 0)
    offset: float = 0.0

    def series(self, x: FloatArray) -> dict[str, FloatArray]:
        """Import, export, generation and reserve of the site at the solution ``x`` (kW per step)."""
        n = len(self.base_load_kw)
        zero = np.zeros(n)
        return {
            "import": x[self.imp],
            "export": x[self.exp],
            "generation": self.generation.value(x),
            "reserve_up": x[self.reserve_up] if self.reserve_up is not None else zero,
            "reserve_down": x[self.reserve_down] if self.reserve_down is not None else zero,
        }

    def reference_series(self) -> dict[str, FloatArray]:
        """The same series without flexibility (each device's reference behaviour, no reserve)."""
        net = self.base_load_kw.copy()
        gen = np.zeros(len(net))
        for blk in self.devices:
            net += blk.reference_consumption_kw
            if blk.reference_generation_kw is not None:
                gen += blk.reference_generation_kw
        zero = np.zeros(len(net))
        return {
            "import": np.maximum(net, 0.0),
            "export": np.maximum(-net, 0.0),
            "generation": gen,
            "reserve_up": zero,
            "reserve_down": zero,
        }


class SharedBlock(Protocol):
    """What shared constraints added to the model (see :class:`bright.energy.flex.community.CommunityBlock`)."""

    unmet: list[Unmet]

    def frame(self, x: FloatArray) -> pd.DataFrame:
        """Community-level series at the solution ``x``."""
        ...

    def statement_rows(self, x: FloatArray, sites: list[SiteBlock]) -> list[dict[str, object]]:
        """Value-stacking rows of the shared commitments, allocated to members where they can be."""
        ...

    def refresh(self, x: FloatArray, sites: list[SiteBlock]) -> None:
        """Recompute the aggregate columns in ``x`` after the members' columns changed."""
        ...


class SharedTerms(Protocol):
    """Shared constraints over all sites (implemented by :class:`bright.energy.flex.community.Community`)."""

    @property
    def name(self) -> str:
        """Community identifier."""
        ...

    @property
    def commitments(self) -> Sequence[Commitment]:
        """Community-level commitments."""
        ...

    def build(self, b: ModelBuilder, sites: list[SiteBlock], ctx: BuildContext) -> SharedBlock: ...


def site_quantities(series: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    """The quantities a site commitment may price, from the site's series (all kW per step).

    Parameters
    ----------
    series
        ``import``, ``export``, ``generation``, ``reserve_up`` and ``reserve_down`` in kW per step
        (as :meth:`SiteBlock.series` returns them).

    Notes
    -----
    ``self_consumption`` is generation minus export: on-site production not injected (energy a
    battery exports counts against it, so the incentive never pays for cycling grid energy).
    """
    imp, exp = series["import"], series["export"]
    return {
        "import": imp,
        "export": exp,
        "net_import": imp - exp,
        "net_export": exp - imp,
        "self_consumption": series["generation"] - exp,
        "reserve_up": series["reserve_up"],
        "reserve_down": series["reserve_down"],
        "reserve_symmetric": series["reserve_up"],
    }


def community_quantities(
    imp: FloatArray, exp: FloatArray, reserve_up: FloatArray, reserve_down: FloatArray
) -> dict[str, FloatArray]:
    """The quantities a community commitment may price, from the sums over members (kW per step).

    ``shared`` is ``min(sum of imports, sum of exports)``: all injection a member's import can
    absorb inside the community (the volume any full sharing key distributes).
    """
    return {
        "import": imp,
        "export": exp,
        "net_import": imp - exp,
        "net_export": exp - imp,
        "shared": np.minimum(imp, exp),
        "reserve_up": reserve_up,
        "reserve_down": reserve_down,
        "reserve_symmetric": reserve_up,
    }


def _reserve_request(commitments: Sequence[Commitment]) -> ReserveRequest | None:
    res = [c for c in commitments if c.quantity.startswith("reserve_")]
    if not res:
        return None
    kinds = {c.quantity for c in res}
    return ReserveRequest(
        up=bool(kinds & {"reserve_up", "reserve_symmetric"}),
        down=bool(kinds & {"reserve_down", "reserve_symmetric"}),
        symmetric="reserve_symmetric" in kinds,
        duration_h=max(float(c.reserve_duration_h or 0.0) for c in res),
    )


def add_exclusive(b: ModelBuilder, pair: ExclusivePair, mask: NDArray[np.bool_] | None) -> int:
    """Add no-simultaneity binaries for the steps in ``mask``; return how many were added."""
    if mask is None or not mask.any():
        return 0
    steps = np.flatnonzero(mask[: len(pair.a)])
    m = len(steps)
    z = b.add_cols(m, lower=0.0, upper=1.0, integer=True)
    r1 = b.add_rows(m, lower=-math.inf, upper=0.0)  # a - a_max z <= 0
    b.add_entries(r1, pair.a[steps], 1.0)
    b.add_entries(r1, z, -pair.a_max)
    r2 = b.add_rows(m, lower=-math.inf, upper=pair.b_max)  # b + b_max z <= b_max
    b.add_entries(r2, pair.b[steps], 1.0)
    b.add_entries(r2, z, pair.b_max)
    return m


def _build_site(b: ModelBuilder, site: Site, ctx: BuildContext) -> SiteBlock:
    n, dt = ctx.n, ctx.dt_h
    who = f"member {site.name!r}"
    base = step_values(site.base_load_kw, ctx.index, what=f"{who}: base_load_kw")
    blocks = [d.build(b, ctx) for d in site.devices]
    for blk in blocks:
        if blk.exclusive is not None:
            add_exclusive(b, blk.exclusive, ctx.exclusive.get(blk.exclusive.key))

    conn = site.connection
    l_imp = math.inf if conn is None else float(conn.import_limit_kw)
    l_exp = math.inf if conn is None else float(conn.export_limit_kw)
    forced_c = base.copy()
    forced_p = -base
    for blk in blocks:
        if blk.forced_consumption_kw is not None:
            forced_c = forced_c + blk.forced_consumption_kw
        if blk.forced_production_kw is not None:
            forced_p = forced_p + blk.forced_production_kw
    # Physical bounds (valid in any schedule without simultaneous import and export); they also keep the
    # LP bounded when a price would pay for importing and exporting at once.
    big_imp = max(float(np.max(base)) + sum(blk.max_consumption_kw for blk in blocks), 0.0)
    big_exp = max(float(np.max(-base)) + sum(blk.max_production_kw for blk in blocks), 0.0)
    # A limit gets a slack only where the fixed load alone may exceed it (or everywhere in relax mode).
    slack_imp = np.broadcast_to(np.isfinite(l_imp) & (ctx.relax_all | (forced_c > l_imp - 1e-9)), (n,))
    slack_exp = np.broadcast_to(np.isfinite(l_exp) & (ctx.relax_all | (forced_p > l_exp - 1e-9)), (n,))
    imp = b.add_cols(n, upper=np.where(slack_imp, big_imp, min(l_imp, big_imp)))
    exp = b.add_cols(n, upper=np.where(slack_exp, big_exp, min(l_exp, big_exp)))
    unmet: list[Unmet] = []
    for cols, mask, limit, what in (
        (imp, slack_imp, l_imp, "import_limit"),
        (exp, slack_exp, l_exp, "export_limit"),
    ):
        if mask.any():
            steps = np.flatnonzero(mask)
            v = b.add_cols(len(steps), cost=ctx.penalties.limit_eur_per_kwh * dt)
            r = b.add_rows(len(steps), lower=-math.inf, upper=limit)
            b.add_entries(r, cols[steps], 1.0)
            b.add_entries(r, v, -1.0)
            unmet.append(
                Unmet(
                    site.name,
                    "connection",
                    what,
                    v,
                    ctx.index[steps],
                    "kWh",
                    dt,
                    ctx.penalties.limit_eur_per_kwh,
                )
            )

    # balance: imp - exp - sum(consumption terms) = base + sum(consumption constants)
    rhs = base.copy()
    for blk in blocks:
        rhs += blk.consumption.constant
    bal = b.add_rows(n, lower=rhs, upper=rhs)
    b.add_entries(bal, imp, 1.0)
    b.add_entries(bal, exp, -1.0)
    for blk in blocks:
        b.add_terms(bal, blk.consumption, scale=-1.0)

    generation = StepTerms.constant_only(np.zeros(n))
    for blk in blocks:
        if blk.generation is not None:
            generation = generation + blk.generation

    r_up = r_dn = None
    if ctx.reserve is not None:
        r_up, r_dn = _build_site_reserve(b, ctx, blocks, imp, exp, l_imp, l_exp)

    one = StepTerms.of_columns
    quantities = {
        "import": one(imp, n),
        "export": one(exp, n),
        "net_import": one(imp, n) + one(exp, n, -1.0),
        "net_export": one(exp, n) + one(imp, n, -1.0),
        "self_consumption": generation + one(exp, n, -1.0),
    }
    if r_up is not None:
        quantities["reserve_up"] = one(r_up, n)
        quantities["reserve_symmetric"] = one(r_up, n)
    if r_dn is not None:
        quantities["reserve_down"] = one(r_dn, n)
    cblocks = []
    for c in site.commitments:
        if c.quantity not in quantities:
            raise FlexInputError(
                f"{who} commitment {c.name!r}: quantity {c.quantity!r} is not available here"
            )
        cblocks.append(c.build(b, quantities[c.quantity], ctx))

    pair = ExclusivePair(
        f"{site.name}/grid",
        imp,
        exp,
        big_imp if slack_imp.any() else min(l_imp, big_imp),
        big_exp if slack_exp.any() else min(l_exp, big_exp),
    )
    if pair.a_max > 0 and pair.b_max > 0:
        add_exclusive(b, pair, ctx.exclusive.get(pair.key))
    return SiteBlock(
        site=site,
        base_load_kw=base,
        imp=imp,
        exp=exp,
        devices=blocks,
        generation=generation,
        reserve_up=r_up,
        reserve_down=r_dn,
        quantities=quantities,
        commitments=cblocks,
        unmet=unmet,
        exclusive=pair,
        import_limit_kw=l_imp,
        export_limit_kw=l_exp,
        forced_import_kw=forced_c,
        forced_export_kw=forced_p,
        max_import_kw=big_imp,
        max_export_kw=big_exp,
    )


def _build_site_reserve(
    b: ModelBuilder,
    ctx: BuildContext,
    blocks: list[DeviceBlock],
    imp: IntArray,
    exp: IntArray,
    l_imp: float,
    l_exp: float,
) -> tuple[IntArray | None, IntArray | None]:
    """Site reserve = sum of device reserves, within the connection headroom."""
    assert ctx.reserve is not None
    n = ctx.n
    out: list[IntArray | None] = []
    for direction, wanted in (("up", ctx.reserve.up), ("down", ctx.reserve.down)):
        if not wanted:
            out.append(None)
            continue
        dev_cols = [getattr(blk, f"reserve_{direction}") for blk in blocks]
        dev_cols = [c for c in dev_cols if c is not None]
        r = b.add_cols(n, upper=math.inf if dev_cols else 0.0)
        if dev_cols:
            rows = b.add_rows(n, lower=0.0, upper=0.0)  # r - sum(device reserves) = 0
            b.add_entries(rows, r, 1.0)
            for c in dev_cols:
                b.add_entries(rows, c, -1.0)
        # Activation must fit the connection: up reserve adds injection, down reserve adds offtake.
        limit = l_exp if direction == "up" else l_imp
        if math.isfinite(limit):
            rows = b.add_rows(n, lower=-math.inf, upper=limit)
            sign = 1.0 if direction == "up" else -1.0
            b.add_entries(rows, exp, sign)
            b.add_entries(rows, imp, -sign)
            b.add_entries(rows, r, 1.0)
        out.append(r)
    r_up, r_dn = out
    if ctx.reserve.symmetric and r_up is not None and r_dn is not None:
        rows = b.add_rows(n, lower=0.0, upper=0.0)
        b.add_entries(rows, r_up, 1.0)
        b.add_entries(rows, r_dn, -1.0)
    return r_up, r_dn


# --------------------------------------------------------------------------------------------------
# the problem


@dataclass
class FlexProblem:
    """A built scheduling problem: its inputs, the HiGHS arrays and the layout to read results back.

    Attributes
    ----------
    index, dt_h
        Horizon step starts (UTC) and step length in h.
    sites
        The sites as given.
    community
        Shared constraints (a :class:`bright.energy.flex.community.Community`) or None.
    penalties
        Slack penalties.
    exclusive
        Steps with no-simultaneity binaries, per :class:`ExclusivePair` key.
    relax_all
        Whether every limit and comfort band carries a slack.
    model
        The assembled arrays.
    site_blocks
        Per site: columns, device blocks, commitment blocks, and the site's contiguous column and
        row ranges (``col_range``, ``row_range``) with its objective offset.
    community_block
        What the community added (its own layout object), or None.
    pairs
        Every charge/discharge and import/export pair, for the lazy no-simultaneity check.
    build_time_s
        Wall time spent building, in s.
    """

    index: pd.DatetimeIndex
    dt_h: float
    sites: tuple[Site, ...]
    community: SharedTerms | None
    penalties: Penalties
    exclusive: dict[str, NDArray[np.bool_]]
    relax_all: bool
    model: LinearModel
    site_blocks: list[SiteBlock]
    community_block: SharedBlock | None
    pairs: list[ExclusivePair]
    build_time_s: float


def build_problem(
    index: pd.DatetimeIndex,
    sites: Sequence[Site],
    *,
    community: SharedTerms | None = None,
    penalties: Penalties | None = None,
    exclusive: Mapping[str, NDArray[np.bool_]] | None = None,
    relax_all: bool = False,
) -> FlexProblem:
    """Build the sparse LP/MILP of one scheduling problem.

    Parameters
    ----------
    index
        Horizon step starts: regular, timezone-aware UTC (15-min steps by default in BRIGHT).
    sites
        Members, each with its devices and commitments; names must be unique.
    community
        Shared constraints over all sites (connection limit, sharing, community commitments).
    penalties
        Slack penalties (defaults: :class:`Penalties`).
    exclusive
        Steps that get a no-simultaneity binary, per pair key (``"member/device"`` or
        ``"member/grid"``); the solver fills this in lazily.
    relax_all
        Put a slack on every limit and comfort row (used when the tight model is infeasible).

    Returns
    -------
    FlexProblem
        The model and its layout.

    Raises
    ------
    FlexInputError
        Bad input; the message names the member, device, commitment and field.
    """
    t0 = time.perf_counter()
    dt = horizon_step_h(index)
    if not sites:
        raise FlexInputError("problem: at least one site is needed")
    names = [s.name for s in sites]
    dup = {x for x in names if names.count(x) > 1}
    if dup:
        raise FlexInputError(f"problem: duplicate member name(s) {sorted(dup)}")
    pen = penalties or Penalties()
    excl = dict(exclusive or {})
    community_reserve = _reserve_request(community.commitments) if community is not None else None
    b = ModelBuilder(len(index), dt)
    blocks = []
    for site in sites:
        own = _reserve_request(site.commitments)
        if own is not None and community_reserve is not None:
            raise FlexInputError(
                f"member {site.name!r}: reserve is committed both by the member and by the community; "
                "commit it at one level only"
            )
        ctx = BuildContext(index, dt, site.name, pen, own or community_reserve, relax_all, excl)
        c0, r0, o0 = b.num_col, b.num_row, b.offset
        sb = _build_site(b, site, ctx)
        # Each site's columns and rows form one contiguous block that touches nothing else: the
        # community decomposition slices the member problems out of the assembled matrix.
        sb.col_range, sb.row_range, sb.offset = (c0, b.num_col), (r0, b.num_row), b.offset - o0
        blocks.append(sb)
    cblock = None
    if community is not None:
        ctx = BuildContext(index, dt, "community", pen, community_reserve, relax_all, excl)
        cblock = community.build(b, blocks, ctx)
    pairs = [blk.exclusive for sb in blocks for blk in sb.devices if blk.exclusive is not None]
    pairs += [sb.exclusive for sb in blocks if sb.exclusive.a_max > 0 and sb.exclusive.b_max > 0]
    model = b.finish()
    return FlexProblem(
        index=index,
        dt_h=dt,
        sites=tuple(sites),
        community=community,
        penalties=pen,
        exclusive=excl,
        relax_all=relax_all,
        model=model,
        site_blocks=blocks,
        community_block=cblock,
        pairs=pairs,
        build_time_s=time.perf_counter() - t0,
    )
