"""Flexible devices as linear constraints over a scheduling horizon.

Each device is a small frozen dataclass holding its physical parameters; its ``build`` method adds
columns and rows to a :class:`bright.energy.flex.problem.ModelBuilder` in blocks of one entry per step
and returns a :class:`bright.energy.flex.problem.DeviceBlock` saying how the device draws power from its
site and how to read its schedule back. All powers are means over a step in kW, energies in kWh,
temperatures in degC; ``dt`` is the step length in h.

Battery (state of charge ``e`` at the end of step ``t``, charge ``c`` and discharge ``d`` at the AC
terminals)::

    e[t] = e[t-1] + eta_c * c[t] * dt - d[t] * dt / eta_d,    e[-1] = initial_soc_kwh
    soc_min <= e[t] <= soc_max,   0 <= c <= P_c,   0 <= d <= P_d,   e[T-1] >= target (soft)

Electric vehicle (energy ``a`` added since the arrival of the current session)::

    a[t] = [same session] a[t-1] + eta_c * c[t] * dt - d[t] * dt / eta_d
    -(arrival_soc - min_soc) <= a[t] <= capacity - arrival_soc,   a[departure] >= energy_kwh (soft)

Heat pump with a first-order RC model of the building (exact discretisation for inputs constant over a
step, ``R`` in K/kW, ``C`` in kWh/K, ``a = exp(-dt / (R C))``)::

    T[t] = a T[t-1] + (1 - a) (T_out[t] + R (COP[t] P[t] + gains[t])),   T_min <= T[t] <= T_max

Shiftable load: one binary per allowed start ``s``; the power at ``t`` is ``sum_s z_s profile[t - s]``
and ``sum_s z_s = 1``. PV: generation ``0 <= g[t] <= available[t]`` when curtailable, fixed otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bright.energy.flex.problem import (
    DeviceBlock,
    ExclusivePair,
    FlexInputError,
    FloatArray,
    IntArray,
    StepTerms,
    Unmet,
    step_values,
)

if TYPE_CHECKING:
    from bright.energy.flex.problem import BuildContext, ModelBuilder

__all__ = [
    "Battery",
    "EVSession",
    "ElectricVehicle",
    "GridConnection",
    "HeatPump",
    "PVSystem",
    "ShiftableLoad",
]


def _check(cond: bool, owner: str, message: str) -> None:
    if not cond:
        raise FlexInputError(f"{owner}: {message}")


def _finite_nonneg(owner: str, **values: float) -> None:
    for key, v in values.items():
        _check(math.isfinite(v) and v >= 0, owner, f"{key} must be finite and >= 0, got {v}")


def _efficiency(owner: str, **values: float) -> None:
    for key, v in values.items():
        _check(0 < v <= 1, owner, f"{key} must be in (0, 1], got {v}")


@dataclass(frozen=True)
class GridConnection:
    """Import and export limits of an access point (fuse, contract or DSO connection agreement).

    Attributes
    ----------
    import_limit_kw
        Maximum offtake in kW (mean over a step); ``inf`` for none.
    export_limit_kw
        Maximum injection in kW; ``inf`` for none.
    """

    import_limit_kw: float = math.inf
    export_limit_kw: float = math.inf

    def __post_init__(self) -> None:
        for key in ("import_limit_kw", "export_limit_kw"):
            v = getattr(self, key)
            _check(not math.isnan(v) and v >= 0, "grid connection", f"{key} must be >= 0, got {v}")


# --------------------------------------------------------------------------------------------------
# battery


@dataclass(frozen=True)
class Battery:
    """A stationary battery.

    Attributes
    ----------
    name
        Device name, unique in its site.
    capacity_kwh
        Usable energy capacity in kWh.
    charge_power_kw, discharge_power_kw
        Maximum AC charge and discharge power in kW.
    charge_efficiency, discharge_efficiency
        One-way efficiencies in (0, 1]; their product is the round-trip efficiency
        (a 90 % round trip is ``sqrt(0.9)`` each way).
    soc_min_kwh, soc_max_kwh
        State-of-charge bounds in kWh (``soc_max_kwh`` defaults to the capacity).
    initial_soc_kwh
        State of charge at the horizon start in kWh; must lie within the bounds.
    target_soc_kwh
        Minimum state of charge at the horizon end in kWh (soft: if unreachable the schedule gets as
        close as it can and the shortfall is reported), or None.
    degradation_eur_per_kwh
        Wear cost in EUR per kWh of throughput, counted on charged plus discharged AC energy.
    provides_reserve
        Whether the battery takes part in reserve (FCR/aFRR) commitments of its site or community.
    """

    name: str
    capacity_kwh: float
    charge_power_kw: float
    discharge_power_kw: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min_kwh: float = 0.0
    soc_max_kwh: float | None = None
    initial_soc_kwh: float = 0.0
    target_soc_kwh: float | None = None
    degradation_eur_per_kwh: float = 0.0
    provides_reserve: bool = True

    def __post_init__(self) -> None:
        who = f"battery {self.name!r}"
        _finite_nonneg(
            who,
            capacity_kwh=self.capacity_kwh,
            charge_power_kw=self.charge_power_kw,
            discharge_power_kw=self.discharge_power_kw,
            soc_min_kwh=self.soc_min_kwh,
            initial_soc_kwh=self.initial_soc_kwh,
            degradation_eur_per_kwh=self.degradation_eur_per_kwh,
        )
        _efficiency(
            who, charge_efficiency=self.charge_efficiency, discharge_efficiency=self.discharge_efficiency
        )
        hi = self.soc_max
        _check(
            self.soc_min_kwh <= hi <= self.capacity_kwh,
            who,
            "need soc_min_kwh <= soc_max_kwh <= capacity_kwh",
        )
        _check(
            self.soc_min_kwh <= self.initial_soc_kwh <= hi,
            who,
            f"initial_soc_kwh {self.initial_soc_kwh} outside [{self.soc_min_kwh}, {hi}]",
        )
        if self.target_soc_kwh is not None:
            _finite_nonneg(who, target_soc_kwh=self.target_soc_kwh)

    @property
    def soc_max(self) -> float:
        """Upper state-of-charge bound in kWh."""
        return self.capacity_kwh if self.soc_max_kwh is None else float(self.soc_max_kwh)

    def build(self, b: ModelBuilder, ctx: BuildContext) -> DeviceBlock:
        """Add charge, discharge and state-of-charge columns and the energy balance rows."""
        n, dt = ctx.n, ctx.dt_h
        eta_c, eta_d = self.charge_efficiency, self.discharge_efficiency
        lo, hi, e0 = self.soc_min_kwh, self.soc_max, self.initial_soc_kwh
        deg = self.degradation_eur_per_kwh * dt
        c = b.add_cols(n, upper=self.charge_power_kw, cost=deg)
        d = b.add_cols(n, upper=self.discharge_power_kw, cost=deg)
        e = b.add_cols(n, lower=lo, upper=hi)
        rhs = np.zeros(n)
        rhs[0] = e0
        rows = b.add_rows(n, lower=rhs, upper=rhs)
        b.add_entries(rows, e, 1.0)
        b.add_entries(rows[1:], e[:-1], -1.0)
        b.add_entries(rows, c, -eta_c * dt)
        b.add_entries(rows, d, dt / eta_d)

        unmet: list[Unmet] = []
        if self.target_soc_kwh is not None and self.target_soc_kwh > lo:
            s = b.add_cols(1, cost=ctx.penalties.energy_eur_per_kwh)
            r = b.add_rows(1, lower=self.target_soc_kwh, upper=math.inf)
            b.add_entries(r, [e[-1], s[0]], [1.0, 1.0])
            end = pd.DatetimeIndex([ctx.index[-1] + pd.Timedelta(hours=dt)])
            unmet.append(
                Unmet(ctx.site, self.name, "soc_target", s, end, "kWh", 1.0, ctx.penalties.energy_eur_per_kwh)
            )

        r_up = r_dn = None
        if ctx.reserve is not None and self.provides_reserve:
            r_up, r_dn = self._build_reserve(b, ctx, c, d, e)

        power = StepTerms.of_columns(c, n) + StepTerms.of_columns(d, n, -1.0)
        outputs = {
            "charge_kw": StepTerms.of_columns(c, n),
            "discharge_kw": StepTerms.of_columns(d, n),
            "power_kw": power,
            "soc_end_kwh": StepTerms.of_columns(e, n),
        }
        if r_up is not None:
            outputs["reserve_up_kw"] = StepTerms.of_columns(r_up, n)
        if r_dn is not None:
            outputs["reserve_down_kw"] = StepTerms.of_columns(r_dn, n)
        cost = None
        if deg > 0:
            cost = StepTerms.of_columns(c, n, deg) + StepTerms.of_columns(d, n, deg)
        return DeviceBlock(
            name=self.name,
            kind="battery",
            consumption=power,
            outputs=outputs,
            reference_consumption_kw=np.zeros(n),
            cost=cost,
            reserve_up=r_up,
            reserve_down=r_dn,
            unmet=unmet,
            exclusive=ExclusivePair(
                f"{ctx.site}/{self.name}", c, d, self.charge_power_kw, self.discharge_power_kw
            ),
            max_consumption_kw=self.charge_power_kw,
            max_production_kw=self.discharge_power_kw,
        )

    def _build_reserve(
        self, b: ModelBuilder, ctx: BuildContext, c: IntArray, d: IntArray, e: IntArray
    ) -> tuple[IntArray | None, IntArray | None]:
        """Reserve power within the power headroom, backed by energy for ``duration_h``.

        Up reserve ``r`` needs ``d - c + r <= P_d`` and ``e - r D / eta_d >= soc_min`` at both ends of
        the step; down reserve ``c - d + r <= P_c`` and ``e + r D eta_c <= soc_max``.
        """
        assert ctx.reserve is not None
        n = ctx.n
        dur = ctx.reserve.duration_h
        eta_c, eta_d = self.charge_efficiency, self.discharge_efficiency
        lo, hi, e0 = self.soc_min_kwh, self.soc_max, self.initial_soc_kwh
        out: list[IntArray | None] = []
        for direction, wanted in (("up", ctx.reserve.up), ("down", ctx.reserve.down)):
            if not wanted:
                out.append(None)
                continue
            up = direction == "up"
            pmax = self.discharge_power_kw if up else self.charge_power_kw
            per_kw = dur / eta_d if up else dur * eta_c  # kWh of headroom per kW reserved
            upper = np.full(n, pmax)
            if per_kw > 0:  # start of the first step: the known initial state
                upper[0] = min(pmax, ((e0 - lo) if up else (hi - e0)) / per_kw)
            r = b.add_cols(n, upper=np.maximum(upper, 0.0))
            rows = b.add_rows(n, lower=-math.inf, upper=pmax)
            b.add_entries(rows, d if up else c, 1.0)
            b.add_entries(rows, c if up else d, -1.0)
            b.add_entries(rows, r, 1.0)
            if per_kw > 0:
                sign = -1.0 if up else 1.0
                lower, upper_b = (lo, math.inf) if up else (-math.inf, hi)
                end = b.add_rows(n, lower=lower, upper=upper_b)  # end of step
                b.add_entries(end, e, 1.0)
                b.add_entries(end, r, sign * per_kw)
                if n > 1:
                    start = b.add_rows(n - 1, lower=lower, upper=upper_b)  # start of step t = end of t-1
                    b.add_entries(start, e[:-1], 1.0)
                    b.add_entries(start, r[1:], sign * per_kw)
            out.append(r)
        return out[0], out[1]


# --------------------------------------------------------------------------------------------------
# electric vehicle


@dataclass(frozen=True)
class EVSession:
    """One stay of an EV at its charger.

    Attributes
    ----------
    arrival, departure
        Plug-in and plug-out instants (timezone-aware). The EV is available in the steps that lie
        entirely within ``[arrival, departure)``.
    energy_kwh
        Energy to add to the battery by departure, in kWh (net of charging losses).
    arrival_soc_kwh
        State of charge on arrival in kWh. Defaults to ``capacity - energy_kwh`` (the requirement fills
        the car); needed for V2G, which may not discharge below ``min_soc_kwh``.
    """

    arrival: pd.Timestamp
    departure: pd.Timestamp
    energy_kwh: float
    arrival_soc_kwh: float | None = None


@dataclass(frozen=True)
class ElectricVehicle:
    """An EV behind a (bidirectional) charger, available during its sessions.

    Attributes
    ----------
    name
        Device name, unique in its site.
    capacity_kwh
        Battery capacity in kWh.
    charge_power_kw
        Charger power in kW (AC).
    sessions
        Plug-in sessions with the energy needed by each departure.
    discharge_power_kw
        V2G discharge power in kW; 0 (default) disables V2G.
    charge_efficiency, discharge_efficiency
        One-way efficiencies in (0, 1].
    min_soc_kwh
        Lowest state of charge V2G may leave, in kWh.
    degradation_eur_per_kwh
        Wear cost in EUR per kWh discharged to the site (V2G).

    Notes
    -----
    A session departing after the horizon end needs only what cannot be charged after it:
    ``energy_kwh - P_c eta_c (departure - horizon end)`` at the horizon end (negative with V2G: the
    car may end the horizon below its arrival state if it can be recharged in time). A session with
    no available step reports its whole requirement as unmet.
    """

    name: str
    capacity_kwh: float
    charge_power_kw: float
    sessions: Sequence[EVSession]
    discharge_power_kw: float = 0.0
    charge_efficiency: float = 0.9
    discharge_efficiency: float = 0.9
    min_soc_kwh: float = 0.0
    degradation_eur_per_kwh: float = 0.0

    def __post_init__(self) -> None:
        who = f"EV {self.name!r}"
        _finite_nonneg(
            who,
            capacity_kwh=self.capacity_kwh,
            charge_power_kw=self.charge_power_kw,
            discharge_power_kw=self.discharge_power_kw,
            min_soc_kwh=self.min_soc_kwh,
            degradation_eur_per_kwh=self.degradation_eur_per_kwh,
        )
        _efficiency(
            who, charge_efficiency=self.charge_efficiency, discharge_efficiency=self.discharge_efficiency
        )
        prev_dep = None
        for i, s in enumerate(sorted(self.sessions, key=lambda s: pd.Timestamp(s.arrival))):
            arr, dep = pd.Timestamp(s.arrival), pd.Timestamp(s.departure)
            _check(
                arr.tz is not None and dep.tz is not None,
                who,
                f"session {i}: arrival/departure need a time zone",
            )
            _check(dep > arr, who, f"session arriving {arr}: departure {dep} is not after arrival")
            _check(
                prev_dep is None or arr >= prev_dep, who, f"session arriving {arr} overlaps the previous one"
            )
            _finite_nonneg(f"{who} session arriving {arr}", energy_kwh=s.energy_kwh)
            soc = self._arrival_soc(s)
            _check(
                0 <= soc <= self.capacity_kwh,
                who,
                f"session arriving {arr}: arrival_soc_kwh {soc} outside [0, capacity_kwh]",
            )
            if self.discharge_power_kw > 0:
                _check(
                    s.arrival_soc_kwh is not None, who, f"session arriving {arr}: V2G needs arrival_soc_kwh"
                )
            prev_dep = dep

    def _arrival_soc(self, s: EVSession) -> float:
        if s.arrival_soc_kwh is not None:
            return float(s.arrival_soc_kwh)
        return max(self.capacity_kwh - s.energy_kwh, 0.0)

    def availability(self, index: pd.DatetimeIndex, dt_h: float) -> tuple[IntArray, list[EVSession]]:
        """Session number per step (-1 when away) and the sessions in order.

        Parameters
        ----------
        index
            Horizon step starts (UTC).
        dt_h
            Step length in h.
        """
        sessions = sorted(self.sessions, key=lambda s: pd.Timestamp(s.arrival))
        sid = np.full(len(index), -1, dtype=np.int64)
        start_ns = index.as_unit("ns").asi8
        end_ns = start_ns + round(dt_h * 3600e9)
        for k, s in enumerate(sessions):
            arr = pd.Timestamp(s.arrival).tz_convert("UTC").value
            dep = pd.Timestamp(s.departure).tz_convert("UTC").value
            sid[(start_ns >= arr) & (end_ns <= dep)] = k
        return sid, sessions

    def build(self, b: ModelBuilder, ctx: BuildContext) -> DeviceBlock:
        """Add charge (and V2G discharge) and energy-added columns on the available steps only."""
        n, dt = ctx.n, ctx.dt_h
        eta_c, eta_d = self.charge_efficiency, self.discharge_efficiency
        sid, sessions = self.availability(ctx.index, dt)
        steps = np.flatnonzero(sid >= 0)
        m = len(steps)
        ssid = sid[steps]
        v2g = self.discharge_power_kw > 0
        arrival_soc = np.array([self._arrival_soc(s) for s in sessions] or [0.0])
        lo = -(arrival_soc - self.min_soc_kwh) if v2g else np.zeros(len(arrival_soc))
        hi = self.capacity_kwh - arrival_soc
        c = b.add_cols(m, upper=self.charge_power_kw)
        d = (
            b.add_cols(m, upper=self.discharge_power_kw, cost=self.degradation_eur_per_kwh * dt)
            if v2g
            else None
        )
        a = b.add_cols(m, lower=np.minimum(lo[ssid], 0.0), upper=np.maximum(hi[ssid], 0.0))
        rows = b.add_rows(m, lower=0.0, upper=0.0)
        b.add_entries(rows, a, 1.0)
        b.add_entries(rows, c, -eta_c * dt)
        if d is not None:
            b.add_entries(rows, d, dt / eta_d)
        if m > 1:
            link = np.flatnonzero((ssid[1:] == ssid[:-1]) & (steps[1:] == steps[:-1] + 1)) + 1
            b.add_entries(rows[link], a[link - 1], -1.0)

        # energy needed by each departure (soft)
        horizon_end = ctx.index[-1] + pd.Timedelta(hours=dt)
        pen = ctx.penalties.energy_eur_per_kwh
        slack_cols: list[int] = []
        slack_times: list[pd.Timestamp] = []
        const: list[float] = []
        for k, s in enumerate(sessions):
            dep = pd.Timestamp(s.departure)
            arr = pd.Timestamp(s.arrival)
            if dep <= ctx.index[0] or arr >= horizon_end:
                continue
            need = float(s.energy_kwh)
            if dep > horizon_end:
                after_h = (dep - horizon_end).total_seconds() / 3600.0
                need -= self.charge_power_kw * eta_c * after_h
            # Without V2G the energy added never falls, so a need <= 0 is met anyway; with V2G the
            # departure row also stops the car from leaving emptier than it must.
            if need <= 0 and not v2g:
                continue
            slack_times.append(min(dep, horizon_end))
            in_k = np.flatnonzero(ssid == k)
            if len(in_k) == 0:  # never available in the horizon: all of it is missing, nothing to decide
                slack_cols.append(-1)
                const.append(max(need, 0.0))
                continue
            sl = b.add_cols(1, cost=pen)
            slack_cols.append(int(sl[0]))
            const.append(0.0)
            r = b.add_rows(1, lower=need, upper=math.inf)
            b.add_entries(r, [a[in_k[-1]], sl[0]], [1.0, 1.0])
        unmet = []
        if slack_cols:
            unmet.append(
                Unmet(
                    ctx.site,
                    self.name,
                    "ev_energy",
                    np.asarray(slack_cols, dtype=np.int64),
                    pd.DatetimeIndex(slack_times),
                    "kWh",
                    1.0,
                    pen,
                    np.asarray(const),
                )
            )

        power = StepTerms.of_columns(c, n, steps=steps)
        if d is not None:
            power = power + StepTerms.of_columns(d, n, -1.0, steps=steps)
        soc_const = np.full(n, np.nan)
        soc_const[steps] = arrival_soc[ssid]
        outputs = {
            "charge_kw": StepTerms.of_columns(c, n, steps=steps),
            "power_kw": power,
            "energy_added_kwh": StepTerms(steps, a, np.ones(m), np.where(sid >= 0, 0.0, np.nan)),
            "soc_end_kwh": StepTerms(steps, a, np.ones(m), soc_const),
            "plugged": StepTerms.constant_only((sid >= 0).astype(np.float64)),
        }
        if d is not None:
            outputs["discharge_kw"] = StepTerms.of_columns(d, n, steps=steps)
        cost = None
        if d is not None and self.degradation_eur_per_kwh > 0:
            cost = StepTerms.of_columns(d, n, self.degradation_eur_per_kwh * dt, steps=steps)
        return DeviceBlock(
            name=self.name,
            kind="ev",
            consumption=power,
            outputs=outputs,
            reference_consumption_kw=self._reference(ctx, sid, sessions, steps),
            cost=cost,
            unmet=unmet,
            exclusive=(
                ExclusivePair(f"{ctx.site}/{self.name}", c, d, self.charge_power_kw, self.discharge_power_kw)
                if d is not None
                else None
            ),
            max_consumption_kw=self.charge_power_kw,
            max_production_kw=self.discharge_power_kw,
        )

    def _reference(
        self, ctx: BuildContext, sid: IntArray, sessions: list[EVSession], steps: IntArray
    ) -> FloatArray:
        """Uncontrolled charging: full power from arrival until the session's energy is in."""
        dt = ctx.dt_h
        ref = np.zeros(ctx.n)
        per_step = self.charge_power_kw * self.charge_efficiency * dt
        if per_step <= 0:
            return ref
        for k, s in enumerate(sessions):
            in_k = steps[sid[steps] == k]
            room = max(self.capacity_kwh - self._arrival_soc(s), 0.0)
            need = min(float(s.energy_kwh), room)
            if len(in_k) == 0 or need <= 0:
                continue
            filled = np.minimum(np.arange(1, len(in_k) + 1) * per_step, need)
            added = np.diff(np.concatenate([[0.0], filled]))
            ref[in_k] = added / (self.charge_efficiency * dt)
        return ref


# --------------------------------------------------------------------------------------------------
# heat pump


@dataclass(frozen=True)
class HeatPump:
    """A heat pump heating a building modelled as one thermal resistance and capacitance.

    Attributes
    ----------
    name
        Device name, unique in its site.
    power_kw
        Maximum electric power in kW.
    cop
        Coefficient of performance (heat out / electricity in), scalar or per step.
    resistance_k_per_kw
        Thermal resistance between indoor air and outdoors, K/kW (1 / UA).
    capacitance_kwh_per_k
        Thermal capacitance of the building, kWh/K.
    outdoor_temp_c
        Outdoor temperature in degC, scalar or per step (a UTC series is sampled at step starts).
    initial_temp_c
        Indoor temperature at the horizon start, degC.
    comfort_min_c, comfort_max_c
        Comfort band in degC (scalar or per step). Soft only if it cannot be met: the model first
        checks by interval propagation whether any power profile keeps the band; if not, deviations
        are penalised per K·h and reported.
    heat_gains_kw
        Other heat gains (solar, occupants) in kW thermal, scalar or per step.
    """

    name: str
    power_kw: float
    cop: float | ArrayLike | pd.Series
    resistance_k_per_kw: float
    capacitance_kwh_per_k: float
    outdoor_temp_c: float | ArrayLike | pd.Series
    initial_temp_c: float
    comfort_min_c: float | ArrayLike | pd.Series = 19.0
    comfort_max_c: float | ArrayLike | pd.Series = 23.0
    heat_gains_kw: float | ArrayLike | pd.Series = 0.0

    def __post_init__(self) -> None:
        who = f"heat pump {self.name!r}"
        _finite_nonneg(who, power_kw=self.power_kw)
        for key in ("resistance_k_per_kw", "capacitance_kwh_per_k"):
            v = getattr(self, key)
            _check(math.isfinite(v) and v > 0, who, f"{key} must be finite and > 0, got {v}")
        _check(math.isfinite(self.initial_temp_c), who, "initial_temp_c must be finite")

    def series(self, ctx: BuildContext) -> dict[str, FloatArray]:
        """Per-step inputs: ``cop``, ``t_out``, ``t_min``, ``t_max``, ``gains``."""
        who = f"{ctx.label('heat pump', self.name)}:"
        out = {
            "cop": step_values(self.cop, ctx.index, what=f"{who} cop"),
            "t_out": step_values(self.outdoor_temp_c, ctx.index, what=f"{who} outdoor_temp_c"),
            "t_min": step_values(self.comfort_min_c, ctx.index, what=f"{who} comfort_min_c"),
            "t_max": step_values(self.comfort_max_c, ctx.index, what=f"{who} comfort_max_c"),
            "gains": step_values(self.heat_gains_kw, ctx.index, what=f"{who} heat_gains_kw"),
        }
        if np.any(out["cop"] <= 0):
            raise FlexInputError(f"{who} cop must be > 0")
        if np.any(out["t_min"] > out["t_max"]):
            t = int(np.flatnonzero(out["t_min"] > out["t_max"])[0])
            raise FlexInputError(f"{who} comfort_min_c above comfort_max_c at {ctx.index[t]}")
        return out

    def decay(self, dt_h: float) -> float:
        """Fraction of the indoor-outdoor difference left after one step, ``exp(-dt / (R C))``."""
        return math.exp(-dt_h / (self.resistance_k_per_kw * self.capacitance_kwh_per_k))

    def comfort_reachable(self, ctx: BuildContext, s: dict[str, FloatArray]) -> bool:
        """Whether some power profile keeps the comfort band at every step (interval propagation).

        The temperature map is monotone in the previous temperature and in the power, so the set of
        temperatures reachable while respecting the band so far is an interval; the band is reachable
        iff that interval never becomes empty.
        """
        a = self.decay(ctx.dt_h)
        r = self.resistance_k_per_kw
        free = (1 - a) * (s["t_out"] + r * s["gains"])
        boost = (1 - a) * r * s["cop"] * self.power_kw
        lo = hi = self.initial_temp_c
        for t in range(ctx.n):
            lo = max(a * lo + free[t], s["t_min"][t])
            hi = min(a * hi + free[t] + boost[t], s["t_max"][t])
            if lo > hi + 1e-9:
                return False
        return True

    def build(self, b: ModelBuilder, ctx: BuildContext) -> DeviceBlock:
        """Add power and indoor-temperature columns and the RC dynamics rows."""
        n, dt = ctx.n, ctx.dt_h
        s = self.series(ctx)
        a = self.decay(dt)
        r = self.resistance_k_per_kw
        hard = not ctx.relax_all and self.comfort_reachable(ctx, s)
        p = b.add_cols(n, upper=self.power_kw)
        temp = b.add_cols(n, lower=s["t_min"] if hard else -math.inf, upper=s["t_max"] if hard else math.inf)
        rhs = (1 - a) * (s["t_out"] + r * s["gains"])
        rhs[0] += a * self.initial_temp_c
        rows = b.add_rows(n, lower=rhs, upper=rhs)
        b.add_entries(rows, temp, 1.0)
        b.add_entries(rows[1:], temp[:-1], -a)
        b.add_entries(rows, p, -(1 - a) * r * s["cop"])
        unmet: list[Unmet] = []
        if not hard:
            pen = ctx.penalties.comfort_eur_per_kelvin_hour
            for name, bound, sign in (("comfort_low", s["t_min"], 1.0), ("comfort_high", s["t_max"], -1.0)):
                sl = b.add_cols(n, cost=pen * dt)
                lower, upper = (bound, math.inf) if sign > 0 else (-math.inf, bound)
                rr = b.add_rows(n, lower=lower, upper=upper)  # T + s >= T_min ; T - s <= T_max
                b.add_entries(rr, temp, 1.0)
                b.add_entries(rr, sl, sign)
                unmet.append(Unmet(ctx.site, self.name, name, sl, ctx.index, "K·h", dt, pen))
        power = StepTerms.of_columns(p, n)
        return DeviceBlock(
            name=self.name,
            kind="heat_pump",
            consumption=power,
            outputs={
                "power_kw": power,
                "heat_kw": StepTerms(power.steps, p, s["cop"].copy(), np.zeros(n)),
                "indoor_temp_c": StepTerms.of_columns(temp, n),
            },
            reference_consumption_kw=self.thermostat(ctx, s),
            unmet=unmet,
            max_consumption_kw=self.power_kw,
        )

    def thermostat(self, ctx: BuildContext, s: dict[str, FloatArray]) -> FloatArray:
        """Reference control: the least power that keeps the indoor temperature at the comfort minimum."""
        a = self.decay(ctx.dt_h)
        r = self.resistance_k_per_kw
        free = (1 - a) * (s["t_out"] + r * s["gains"])
        gain = (1 - a) * r * s["cop"]
        out = np.zeros(ctx.n)
        temp = self.initial_temp_c
        for t in range(ctx.n):
            need = (s["t_min"][t] - a * temp - free[t]) / gain[t]
            out[t] = min(max(need, 0.0), self.power_kw)
            temp = a * temp + free[t] + gain[t] * out[t]
        return out


# --------------------------------------------------------------------------------------------------
# shiftable load


@dataclass(frozen=True)
class ShiftableLoad:
    """An appliance that runs once, with a fixed power profile, somewhere in a time window (MILP).

    Attributes
    ----------
    name
        Device name, unique in its site.
    profile_kw
        Power in kW for each step of the run (at the horizon's resolution).
    earliest_start
        First instant the run may start (timezone-aware).
    latest_end
        Instant by which the run must be over (timezone-aware).
    """

    name: str
    profile_kw: Sequence[float] | ArrayLike
    earliest_start: pd.Timestamp
    latest_end: pd.Timestamp

    def __post_init__(self) -> None:
        who = f"shiftable load {self.name!r}"
        prof = np.asarray(self.profile_kw, dtype=np.float64)
        _check(prof.ndim == 1 and len(prof) > 0, who, "profile_kw must be a non-empty 1-D sequence")
        _check(
            bool(np.all(np.isfinite(prof)) and np.all(prof >= 0)), who, "profile_kw must be finite and >= 0"
        )
        _check(
            pd.Timestamp(self.earliest_start).tz is not None and pd.Timestamp(self.latest_end).tz is not None,
            who,
            "earliest_start and latest_end need a time zone",
        )

    def starts(self, index: pd.DatetimeIndex, dt_h: float) -> IntArray:
        """Steps at which the run may start: inside the window and the horizon."""
        prof_len = len(np.asarray(self.profile_kw))
        n = len(index)
        first = np.arange(n)
        step_ns = round(dt_h * 3600e9)
        start_ns = index.as_unit("ns").asi8
        end_ns = start_ns + prof_len * step_ns
        ok = (start_ns >= pd.Timestamp(self.earliest_start).value) & (
            end_ns <= pd.Timestamp(self.latest_end).value
        )
        ok &= first + prof_len <= n
        return first[ok]

    def build(self, b: ModelBuilder, ctx: BuildContext) -> DeviceBlock:
        """Add one binary per allowed start and the run-once row."""
        n = ctx.n
        prof = np.asarray(self.profile_kw, dtype=np.float64)
        starts = self.starts(ctx.index, ctx.dt_h)
        if len(starts) == 0:
            raise FlexInputError(
                f"{ctx.label('shiftable load', self.name)}: no start between {self.earliest_start} and "
                f"{self.latest_end} lets the {len(prof)}-step run end inside the window and the horizon"
            )
        z = b.add_cols(len(starts), lower=0.0, upper=1.0, integer=True)
        row = b.add_rows(1, lower=1.0, upper=1.0)
        b.add_entries(row, z, 1.0)
        offs = np.arange(len(prof))
        steps = (starts[:, None] + offs[None, :]).ravel()
        cols = np.repeat(z, len(prof))
        coefs = np.tile(prof, len(starts))
        power = StepTerms(steps, cols, coefs, np.zeros(n))
        envelope = np.zeros(n)
        np.maximum.at(envelope, steps, coefs)
        ref = np.zeros(n)
        ref[starts[0] : starts[0] + len(prof)] = prof
        start_ind = np.zeros(n)
        return DeviceBlock(
            name=self.name,
            kind="shiftable",
            consumption=power,
            outputs={
                "power_kw": power,
                "start": StepTerms(starts, z, np.ones(len(starts)), start_ind),
            },
            reference_consumption_kw=ref,
            max_consumption_kw=float(prof.max()),
            forced_consumption_kw=envelope,
        )


# --------------------------------------------------------------------------------------------------
# PV


@dataclass(frozen=True)
class PVSystem:
    """A PV system whose output may be curtailed.

    Attributes
    ----------
    name
        Device name, unique in its site.
    available_kw
        Available AC generation in kW per step (forecast), scalar, array or UTC series; >= 0.
    curtailable
        Whether the schedule may curtail it (inverter power limitation). If not, the generation is
        a fixed input.
    """

    name: str
    available_kw: float | ArrayLike | pd.Series
    curtailable: bool = True

    def build(self, b: ModelBuilder, ctx: BuildContext) -> DeviceBlock:
        """Add a generation column bounded by the available power (or a constant if not curtailable)."""
        n = ctx.n
        avail = step_values(self.available_kw, ctx.index, what=f"{ctx.label('PV', self.name)}: available_kw")
        if np.any(avail < 0):
            raise FlexInputError(f"{ctx.label('PV', self.name)}: available_kw must be >= 0")
        if self.curtailable:
            g = b.add_cols(n, upper=avail)
            gen = StepTerms.of_columns(g, n)
            forced = None
        else:
            gen = StepTerms.constant_only(avail.copy())
            forced = avail.copy()
        curtailed = StepTerms.constant_only(avail.copy()) + gen.scaled(-1.0)
        return DeviceBlock(
            name=self.name,
            kind="pv",
            consumption=gen.scaled(-1.0),
            outputs={
                "generation_kw": gen,
                "curtailed_kw": curtailed,
                "available_kw": StepTerms.constant_only(avail),
            },
            reference_consumption_kw=-avail,
            generation=gen,
            reference_generation_kw=avail.copy(),
            max_production_kw=float(avail.max()),
            forced_production_kw=forced,
        )
