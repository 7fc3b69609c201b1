"""Device control over S2 (EN 50491-12-2): the node as Customer Energy Manager (CEM).

Each controllable device (battery, EV charger, heat pump, shiftable appliance) runs an S2
*Resource Manager* (RM) that connects to the node's WebSocket endpoint
``ws://<node>:<port>/s2/<entity id>``; the path names the device's entity in the twin. The message
models are those of the ``s2-python`` package (one pydantic model per S2 message) and the session
runs on its :class:`~s2python.connection.async_.connection.S2AsyncConnection` (every message is
answered by a ``ReceptionStatus``).

Session
-------
1. RM -> CEM ``Handshake``; CEM -> RM ``Handshake`` (role CEM) and ``HandshakeResponse`` with the
   first protocol version both support.
2. RM -> CEM ``ResourceManagerDetails`` (roles, control types, power measurement types); the CEM
   selects **FRBC** (fill-rate based control: batteries, EVs, heat buffers) when offered, else
   **OMBC** (operation-mode based control: shiftable appliances): ``SelectControlType``.
3. RM -> CEM the system description (``FRBC.SystemDescription``: actuators, operation modes with
   their power and fill-rate ranges, storage; or ``OMBC.SystemDescription``), its status
   (``FRBC.StorageStatus``, ``FRBC.ActuatorStatus`` / ``OMBC.Status``), optionally an
   ``FRBC.FillLevelTargetProfile`` (e.g. an EV that must be at 80 % by 07:00), and
   ``PowerMeasurement``\\s.
4. CEM -> RM instructions (``FRBC.Instruction`` / ``OMBC.Instruction``), one per step of a
   schedule of power setpoints (kW per 15-minute step, + = consumption/charging, e.g. a device's
   ``power_kw`` from :mod:`bright.energy.flex`); RM -> CEM ``InstructionStatusUpdate``\\s
   (ACCEPTED, STARTED, SUCCEEDED, REJECTED, ABORTED ...).

Every instruction and every status update is recorded in ``edge_s2_instructions`` (migration
step 31) and every power measurement and fill level is written to the device's time series
(``bright:powerKw`` in kW, ``bright:fillLevel`` in the storage's unit), so the twin shows what the
device was told and what it did.

From setpoints to instructions
------------------------------
For a setpoint ``p`` (W) and the present fill level ``x``, every operation mode of the actuator
(abnormal-condition-only modes excepted) offers, through its element whose fill-level range holds
``x``, a power ``P(f) = P0 + f (P1 - P0)`` and a fill rate ``R(f) = R0 + f (R1 - R0)`` for a factor
``f`` in [0, 1] (electric power ranges summed over phases). The planner takes the mode and factor
closest to ``p`` (``f = clip((p - P0) / (P1 - P0), 0, 1)``; ties go to the narrower range, e.g.
*idle* for 0 kW), then projects ``x += R(f) dt`` over the step (:func:`frbc_plan`). A setpoint
that cannot be met, a fill level leaving the storage's range and a fill level outside the RM's
target profile are reported as violations. OMBC has no storage: the mode and factor closest to the
setpoint are chosen (:func:`ombc_plan`).

Simulated devices
-----------------
:class:`SimulatedBattery` (FRBC) and :class:`SimulatedAppliance` (OMBC) are RMs built on
s2-python's resource-manager framework; they execute instructions at their execution time on a
:class:`SimClock` (optionally faster than real time) and report the resulting power, fill level
and instruction statuses. They are for tests and demos.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast
from urllib.parse import quote, unquote

import pandas as pd
from s2python.common import (
    Commodity,
    CommodityQuantity,
    ControlType,
    Duration,
    EnergyManagementRole,
    Handshake,
    HandshakeResponse,
    InstructionStatus,
    InstructionStatusUpdate,
    NumberRange,
    PowerMeasurement,
    PowerRange,
    PowerValue,
    ResourceManagerDetails,
    Role,
    RoleType,
    SelectControlType,
    Transition,
)
from s2python.connection import ConnectionStarted, ConnectionStopped
from s2python.connection.async_.connection import S2AsyncConnection
from s2python.connection.async_.medium.s2_medium import MediumClosedConnectionError, S2AsyncMediumConnection
from s2python.frbc import (
    FRBCActuatorDescription,
    FRBCActuatorStatus,
    FRBCFillLevelTargetProfile,
    FRBCFillLevelTargetProfileElement,
    FRBCInstruction,
    FRBCOperationMode,
    FRBCOperationModeElement,
    FRBCStorageDescription,
    FRBCStorageStatus,
    FRBCSystemDescription,
)
from s2python.ombc import OMBCInstruction, OMBCOperationMode, OMBCStatus, OMBCSystemDescription
from s2python.version import S2_VERSION
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from bright.twin import migrations
from bright.twin.context import BRIGHT_NS
from bright.twin.series import SeriesStore

__all__ = [
    "FILL_LEVEL",
    "POWER",
    "CemServer",
    "CemSession",
    "InstructionLog",
    "Plan",
    "PlannedInstruction",
    "SimClock",
    "SimulatedAppliance",
    "SimulatedBattery",
    "frbc_plan",
    "ombc_plan",
]

log = logging.getLogger("bright.edge.s2")

POWER = f"{BRIGHT_NS}powerKw"
FILL_LEVEL = f"{BRIGHT_NS}fillLevel"
STEP = pd.Timedelta(minutes=15)
_TOLERANCE_W = 1.0
_ELECTRIC = {
    CommodityQuantity.ELECTRIC_POWER_L1,
    CommodityQuantity.ELECTRIC_POWER_L2,
    CommodityQuantity.ELECTRIC_POWER_L3,
    CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC,
}


# --- instruction log (own tables, migration step 31) ----------------------------------------------
metadata = MetaData()
_ID = BigInteger().with_variant(Integer(), "sqlite")

instructions_table = Table(
    "edge_s2_instructions",
    metadata,
    Column("instruction_id", String(36), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("entity_id", Text, nullable=False),
    Column("resource_id", String(36), nullable=False),
    Column("control_type", String(48), nullable=False),
    Column("execution_us", BigInteger, nullable=False),  # epoch microseconds (UTC)
    Column("setpoint_kw", Float, nullable=True),
    Column("power_kw", Float, nullable=True),  # power of the chosen operating point
    Column("operation_mode", String(36), nullable=False),
    Column("factor", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_us", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Index("ix_edge_s2_instructions_entity", "tenant", "entity_id", "execution_us"),
)

status_table = Table(
    "edge_s2_instruction_status",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("instruction_id", String(36), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
)

migrations.register(31, "edge: S2 instructions and their status updates", lambda c: metadata.create_all(c))


def _us(t: Any) -> int:
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        raise ValueError(f"instant {t!r} has no time zone")
    return int(ts.tz_convert("UTC").value // 1000)


def _now_us() -> int:
    return int(pd.Timestamp.now(tz="UTC").value // 1000)


class InstructionLog:
    """Instructions sent to devices and the status updates they returned.

    Parameters
    ----------
    engine
        The node's database engine (SQLite or PostgreSQL).
    create
        Apply pending migrations.
    """

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        self.engine = engine
        if create:
            migrations.migrate(engine)

    def record_instructions(
        self,
        tenant: str,
        entity_id: str,
        resource_id: str,
        control_type: str,
        planned: Sequence[PlannedInstruction],
        ids: Sequence[uuid.UUID],
    ) -> None:
        """Record instructions as NEW (one row each)."""
        now = _now_us()
        rows = [
            {
                "instruction_id": str(i),
                "tenant": tenant,
                "entity_id": entity_id,
                "resource_id": resource_id,
                "control_type": control_type,
                "execution_us": _us(p.start),
                "setpoint_kw": p.setpoint_kw,
                "power_kw": p.power_kw,
                "operation_mode": str(p.operation_mode_id),
                "factor": p.factor,
                "status": InstructionStatus.NEW.value,
                "status_us": now,
                "created_us": now,
            }
            for p, i in zip(planned, ids, strict=True)
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(instructions_table), rows)

    def record_status(self, instruction_id: uuid.UUID | str, status: str, time: Any) -> None:
        """Record a status update; the instruction's current status is the latest one received
        (updates of one session arrive in order; ``time`` is the device's timestamp)."""
        t = _us(time)
        now = _now_us()
        iid = str(instruction_id)
        with self.engine.begin() as conn:
            conn.execute(
                insert(status_table).values(instruction_id=iid, status=status, time_us=t, received_us=now)
            )
            conn.execute(
                update(instructions_table)
                .where(instructions_table.c.instruction_id == iid)
                .values(status=status, status_us=t)
            )

    def instructions(self, entity_id: str, *, tenant: str = "") -> pd.DataFrame:
        """The instructions of a device, by execution time: ``instruction_id``, ``execution``,
        ``setpoint_kw``, ``power_kw``, ``operation_mode``, ``factor``, ``status``, ``status_time``."""
        t = instructions_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t).where(t.c.tenant == tenant, t.c.entity_id == entity_id).order_by(t.c.execution_us)
            ).all()
        frame = pd.DataFrame([r._asdict() for r in rows], columns=[c.name for c in t.columns])
        frame["execution"] = pd.to_datetime(frame["execution_us"], unit="us", utc=True)
        frame["status_time"] = pd.to_datetime(frame["status_us"], unit="us", utc=True)
        return frame[
            [
                "instruction_id",
                "execution",
                "setpoint_kw",
                "power_kw",
                "operation_mode",
                "factor",
                "status",
                "status_time",
            ]
        ]

    def history(self, instruction_id: uuid.UUID | str) -> list[tuple[str, pd.Timestamp]]:
        """Every status update of one instruction, in time order."""
        s = status_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.c.status, s.c.time_us)
                .where(s.c.instruction_id == str(instruction_id))
                .order_by(s.c.time_us, s.c.id)
            ).all()
        return [(r.status, pd.Timestamp(int(r.time_us), unit="us", tz="UTC")) for r in rows]


# --- planning (pure) ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedInstruction:
    """One step of a schedule turned into an operating point.

    Attributes
    ----------
    start
        Execution time (UTC): the step's start.
    setpoint_kw
        The schedule's power, kW (+ = consumption/charging).
    power_kw
        Power of the chosen operating point, kW.
    operation_mode_id, operation_mode_label
        The chosen mode.
    factor
        Operation mode factor, 0-1.
    actuator_id
        FRBC actuator, None for OMBC.
    fill_level_start, fill_level_end
        Projected fill level at the step's start and end (FRBC), in the storage's unit.
    """

    start: pd.Timestamp
    setpoint_kw: float
    power_kw: float
    operation_mode_id: uuid.UUID
    operation_mode_label: str | None
    factor: float
    actuator_id: uuid.UUID | None = None
    fill_level_start: float | None = None
    fill_level_end: float | None = None


@dataclass(frozen=True)
class Plan:
    """Instructions for a schedule and what they would not achieve.

    Attributes
    ----------
    instructions
        One per step.
    violations
        Setpoints out of reach, fill levels leaving the storage range or the target profile
        (one sentence each, naming the step).
    """

    instructions: list[PlannedInstruction]
    violations: list[str] = field(default_factory=list)


def _electric(ranges: Sequence[PowerRange]) -> tuple[float, float]:
    """(power at factor 0, power at factor 1) in W, summed over the electric quantities."""
    p0 = sum(r.start_of_range for r in ranges if r.commodity_quantity in _ELECTRIC)
    p1 = sum(r.end_of_range for r in ranges if r.commodity_quantity in _ELECTRIC)
    return float(p0), float(p1)


def _element(mode: FRBCOperationMode, fill_level: float) -> FRBCOperationModeElement | None:
    """The element of an FRBC operation mode whose fill-level range holds ``fill_level``."""
    for e in mode.elements:
        if e.fill_level_range.start_of_range <= fill_level <= e.fill_level_range.end_of_range:
            return e
    return None


def _factor(p0: float, p1: float, target: float) -> float:
    if p1 == p0:
        return 0.0
    return min(max((target - p0) / (p1 - p0), 0.0), 1.0)


def _schedule(schedule_kw: pd.Series) -> pd.Series:
    if not isinstance(schedule_kw, pd.Series) or not isinstance(schedule_kw.index, pd.DatetimeIndex):
        raise ValueError(
            "the schedule is a pandas Series of kW indexed by step start (tz-aware DatetimeIndex)"
        )
    if schedule_kw.index.tz is None:
        raise ValueError("the schedule's index has no time zone; give UTC step starts")
    if schedule_kw.isna().any():
        raise ValueError(
            f"the schedule has no setpoint at {schedule_kw.index[schedule_kw.isna().to_numpy()][0]}"
        )
    if not schedule_kw.index.is_monotonic_increasing or schedule_kw.index.has_duplicates:
        raise ValueError("the schedule's steps must be in increasing time order, each once")
    return schedule_kw.astype(float)


def _step_ends(index: pd.DatetimeIndex, step: pd.Timedelta) -> list[pd.Timestamp]:
    starts = list(index)
    return [*starts[1:], starts[-1] + step] if starts else []


def frbc_plan(
    system: FRBCSystemDescription,
    schedule_kw: pd.Series,
    *,
    fill_level: float,
    target: FRBCFillLevelTargetProfile | None = None,
    step: pd.Timedelta = STEP,
) -> Plan:
    """Turn a schedule of power setpoints into FRBC operating points (see the module docstring).

    Parameters
    ----------
    system
        The RM's FRBC system description (its first actuator is planned).
    schedule_kw
        Power setpoint per step, kW (+ = charging/consumption), indexed by step start (UTC).
    fill_level
        Present fill level, in the storage's unit (e.g. % state of charge).
    target
        The RM's fill-level target profile, checked at every step end it covers.
    step
        Length of the last step (the others end where the next starts).

    Returns
    -------
    Plan

    Raises
    ------
    ValueError
        A malformed schedule, or a system without a usable operation mode.
    """
    sched = _schedule(schedule_kw)
    actuator = system.actuators[0]
    modes = [m for m in actuator.operation_modes if not m.abnormal_condition_only]
    if not modes:
        raise ValueError("the FRBC actuator has no operation mode for normal conditions")
    lo, hi = system.storage.fill_level_range.start_of_range, system.storage.fill_level_range.end_of_range
    x = float(fill_level)
    out: list[PlannedInstruction] = []
    violations: list[str] = []
    ends = _step_ends(pd.DatetimeIndex(sched.index), step)
    for start, kw, end in zip(pd.DatetimeIndex(sched.index), sched.to_numpy(), ends, strict=True):
        target_w = float(kw) * 1000.0
        here = min(max(x, lo), hi)
        # (error W, range width W, power W, factor, fill rate, mode) of the best operating point
        best: tuple[float, float, float, float, float, Any] | None = None
        for mode in modes:
            el = _element(mode, here)
            if el is None:
                continue
            p0, p1 = _electric(el.power_ranges)
            f = _factor(p0, p1, target_w)
            p = p0 + f * (p1 - p0)
            rate = el.fill_rate.start_of_range + f * (el.fill_rate.end_of_range - el.fill_rate.start_of_range)
            cand = (abs(p - target_w), abs(p1 - p0), p, f, rate, mode)
            if best is None or cand[:2] < best[:2]:
                best = cand
        if best is None:
            raise ValueError(f"no operation mode covers fill level {here:g} at {start}")
        err, _, power_w, f, rate, mode = best
        if err > _TOLERANCE_W:
            violations.append(
                f"step {start}: setpoint {kw:g} kW is out of reach; {power_w / 1000:g} kW instead"
            )
        dt = (end - start).total_seconds()
        x_end = x + rate * dt
        if x_end > hi + 1e-9 or x_end < lo - 1e-9:
            violations.append(
                f"step {start}: the fill level would reach {x_end:g}, outside [{lo:g}, {hi:g}]; the device stops at the limit"
            )
            x_end = min(max(x_end, lo), hi)
        out.append(
            PlannedInstruction(
                start=pd.Timestamp(start),
                setpoint_kw=float(kw),
                power_kw=power_w / 1000.0,
                operation_mode_id=mode.id,
                operation_mode_label=mode.diagnostic_label,
                factor=f,
                actuator_id=actuator.id,
                fill_level_start=x,
                fill_level_end=x_end,
            )
        )
        x = x_end
    if target is not None:
        violations += _check_target(out, target)
    return Plan(out, violations)


def _check_target(planned: Sequence[PlannedInstruction], target: FRBCFillLevelTargetProfile) -> list[str]:
    """Violations of a fill-level target profile at the step ends it covers."""
    out: list[str] = []
    t = pd.Timestamp(target.start_time).tz_convert("UTC")
    ends = _step_ends(pd.DatetimeIndex([p.start for p in planned]), STEP) if planned else []
    for el in target.elements:
        t_end = t + pd.Timedelta(milliseconds=el.duration.root)
        lo, hi = el.fill_level_range.start_of_range, el.fill_level_range.end_of_range
        for p, end in zip(planned, ends, strict=True):
            if (
                t < end <= t_end
                and p.fill_level_end is not None
                and not lo - 1e-9 <= p.fill_level_end <= hi + 1e-9
            ):
                out.append(
                    f"at {end}: fill level {p.fill_level_end:g} is outside the target [{lo:g}, {hi:g}]"
                )
        t = t_end
    return out


def ombc_plan(system: OMBCSystemDescription, schedule_kw: pd.Series) -> Plan:
    """Turn a schedule of power setpoints into OMBC operation modes (mode and factor closest to
    each setpoint; ties to the narrower power range).

    Parameters
    ----------
    system
        The RM's OMBC system description.
    schedule_kw
        Power setpoint per step, kW (+ = consumption), indexed by step start (UTC).

    Returns
    -------
    Plan
    """
    sched = _schedule(schedule_kw)
    modes = [m for m in system.operation_modes if not m.abnormal_condition_only]
    if not modes:
        raise ValueError("the OMBC system has no operation mode for normal conditions")
    out: list[PlannedInstruction] = []
    violations: list[str] = []
    for start, kw in zip(pd.DatetimeIndex(sched.index), sched.to_numpy(), strict=True):
        target_w = float(kw) * 1000.0
        scored = []
        for mode in modes:
            p0, p1 = _electric(mode.power_ranges)
            f = _factor(p0, p1, target_w)
            p = p0 + f * (p1 - p0)
            scored.append((abs(p - target_w), abs(p1 - p0), p, f, mode))
        err, _, p, f, mode = min(scored, key=lambda s: (s[0], s[1]))
        if err > _TOLERANCE_W:
            violations.append(f"step {start}: setpoint {kw:g} kW is out of reach; {p / 1000:g} kW instead")
        out.append(
            PlannedInstruction(pd.Timestamp(start), float(kw), p / 1000.0, mode.id, mode.diagnostic_label, f)
        )
    return Plan(out, violations)


# --- WebSocket medium (server side) ---------------------------------------------------------------------
class _ServerMedium(S2AsyncMediumConnection):
    """An accepted WebSocket connection as an s2-python medium."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._closed = False

    async def is_connected(self) -> bool:
        return not self._closed

    async def messages(self) -> AsyncGenerator[str | bytes, None]:  # type: ignore[override]
        import websockets

        try:
            async for message in self._ws:
                yield message
        except websockets.WebSocketException as exc:
            self._closed = True
            raise MediumClosedConnectionError("the resource manager's WebSocket closed") from exc
        self._closed = True

    async def send(self, message: str) -> None:
        import websockets

        try:
            await self._ws.send(message)
        except websockets.WebSocketException as exc:
            self._closed = True
            raise MediumClosedConnectionError("could not send to the resource manager") from exc


# --- the CEM ---------------------------------------------------------------------------------------------
@dataclass
class CemSession:
    """What the CEM knows about one connected resource manager.

    Attributes
    ----------
    entity_id
        The device's entity (from the WebSocket path).
    details
        Its ``ResourceManagerDetails``.
    control_type
        The control type selected.
    frbc_system, frbc_target, ombc_system
        The latest system description / fill-level target profile received.
    fill_level
        Latest fill level reported (storage unit).
    power_kw
        Latest power measured, kW (+ = consumption).
    measurements
        Every power measurement received: (time, kW).
    statuses
        Latest status per instruction id.
    """

    entity_id: str
    server: CemServer
    connection: S2AsyncConnection | None = None
    details: ResourceManagerDetails | None = None
    control_type: ControlType | None = None
    frbc_system: FRBCSystemDescription | None = None
    frbc_target: FRBCFillLevelTargetProfile | None = None
    ombc_system: OMBCSystemDescription | None = None
    fill_level: float | None = None
    power_kw: float | None = None
    measurements: list[tuple[pd.Timestamp, float]] = field(default_factory=list)
    statuses: dict[uuid.UUID, InstructionStatus] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def _touch(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Callable[[CemSession], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(session)`` holds (checked at every message received).

        Raises
        ------
        TimeoutError
            Not within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    @property
    def ready(self) -> bool:
        """The control type is selected and the system description has arrived."""
        if self.control_type == ControlType.FILL_RATE_BASED_CONTROL:
            return self.frbc_system is not None and self.fill_level is not None
        if self.control_type == ControlType.OPERATION_MODE_BASED_CONTROL:
            return self.ombc_system is not None
        return False

    def plan(self, schedule_kw: pd.Series) -> Plan:
        """The instructions a schedule would become (nothing is sent)."""
        if self.control_type == ControlType.FILL_RATE_BASED_CONTROL and self.frbc_system is not None:
            return frbc_plan(
                self.frbc_system, schedule_kw, fill_level=self.fill_level or 0.0, target=self.frbc_target
            )
        if self.control_type == ControlType.OPERATION_MODE_BASED_CONTROL and self.ombc_system is not None:
            return ombc_plan(self.ombc_system, schedule_kw)
        raise RuntimeError(f"{self.entity_id}: no system description yet (control type {self.control_type})")

    async def send_schedule(
        self, schedule_kw: pd.Series, *, strict: bool = False
    ) -> tuple[Plan, list[uuid.UUID]]:
        """Send one instruction per step of a schedule and record them.

        Parameters
        ----------
        schedule_kw
            Power setpoint per step, kW (+ = charging/consumption), indexed by step start (UTC).
        strict
            Refuse (ValueError, nothing sent) a schedule with violations instead of sending the
            nearest achievable operating points.

        Returns
        -------
        plan : Plan
        ids : list of uuid.UUID
            The instruction ids, one per step.
        """
        if self.connection is None:
            raise RuntimeError(f"{self.entity_id}: not connected")
        plan = self.plan(schedule_kw)
        if strict and plan.violations:
            raise ValueError(f"{self.entity_id}: " + "; ".join(plan.violations))
        ids = [uuid.uuid4() for _ in plan.instructions]
        if self.server.log is not None:
            await asyncio.to_thread(
                self.server.log.record_instructions,
                self.server.tenant,
                self.entity_id,
                str(self.details.resource_id) if self.details else "",
                str(self.control_type.value if self.control_type else ""),
                plan.instructions,
                ids,
            )
        for p, iid in zip(plan.instructions, ids, strict=True):
            msg: FRBCInstruction | OMBCInstruction
            if p.actuator_id is not None:
                msg = FRBCInstruction(
                    message_id=uuid.uuid4(),
                    id=iid,
                    actuator_id=p.actuator_id,
                    operation_mode=p.operation_mode_id,
                    operation_mode_factor=p.factor,
                    execution_time=p.start.floor("us").to_pydatetime(),
                    abnormal_condition=False,
                )
            else:
                msg = OMBCInstruction(
                    message_id=uuid.uuid4(),
                    id=iid,
                    operation_mode_id=p.operation_mode_id,
                    operation_mode_factor=p.factor,
                    execution_time=p.start.floor("us").to_pydatetime(),
                    abnormal_condition=False,
                )
            self.statuses[iid] = InstructionStatus.NEW
            await self.connection.send_msg_and_await_reception_status(msg)
        return plan, ids


Handler = Callable[[S2AsyncConnection, Any, Any], Awaitable[None]]


class CemServer:
    """The node's S2 endpoint: a WebSocket server speaking S2 as CEM to every device.

    Parameters
    ----------
    engine
        The node's database (instructions, statuses, power and fill-level series are recorded);
        None keeps everything in memory only.
    host, port
        Where to listen (port 0 = any free port; see :attr:`url`).
    tenant
        NGSI-LD tenant the records go to.
    on_session
        Called (in the event loop) with each session once its system description has arrived.

    Examples
    --------
    >>> async with CemServer(engine, port=8765) as cem:                 # doctest: +SKIP
    ...     session = await cem.wait_for_session("urn:ngsi-ld:Battery:c:m")
    ...     await session.send_schedule(schedule_kw)
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tenant: str = "",
        on_session: Callable[[CemSession], None] | None = None,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.tenant = tenant
        self.on_session = on_session
        self.log = InstructionLog(engine) if engine is not None else None
        self.series = SeriesStore(engine) if engine is not None else None
        self.sessions: dict[str, CemSession] = {}
        self._server: Any = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        """Base URL of the endpoint; a device connects to ``<url>/<entity id>``."""
        return f"ws://{self.host}:{self.port}/s2"

    def device_url(self, entity_id: str) -> str:
        """The URL a device's RM connects to."""
        return f"{self.url}/{quote(entity_id, safe=':')}"

    async def start(self) -> None:
        """Listen (the actual port is in :attr:`port` afterwards)."""
        from websockets.asyncio.server import serve

        self._server = await serve(self._serve, self.host, self.port)
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        log.info("S2 CEM listening on %s", self.url)

    async def stop(self) -> None:
        """Close every session and stop listening."""
        for s in list(self.sessions.values()):
            if s.connection is not None:
                await s.connection.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> CemServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for_session(self, entity_id: str, timeout: float = 10.0) -> CemSession:
        """The session of a device once it is ready to take instructions."""
        async with asyncio.timeout(timeout):
            while True:
                s = self.sessions.get(entity_id)
                if s is not None and s.ready:
                    return s
                self._changed.clear()
                await self._changed.wait()

    # --- per connection ---------------------------------------------------------------------------
    async def _serve(self, ws: Any) -> None:
        path = ws.request.path if getattr(ws, "request", None) is not None else "/"
        if not path.startswith("/s2/") or len(path) <= 4:
            await ws.close(code=1008, reason="connect to /s2/<entity id>")
            return
        entity_id = unquote(path[4:])
        session = CemSession(entity_id, self)
        self.sessions[entity_id] = session
        conn = S2AsyncConnection(_ServerMedium(ws), eventloop=asyncio.get_running_loop())
        session.connection = conn
        for msg_type, handler in self._handlers(session).items():
            conn.register_handler(msg_type, cast(Any, handler))
        log.info("resource manager connected for %s", entity_id)
        try:
            await conn.run()
        finally:
            session.connection = None
            session._touch()
            self._changed.set()
            log.info("resource manager of %s disconnected", entity_id)

    def _handlers(self, s: CemSession) -> dict[type, Handler]:
        server = self

        def changed() -> None:
            s._touch()
            server._changed.set()
            if s.ready and server.on_session is not None:
                server.on_session(s)

        async def on_handshake(conn: S2AsyncConnection, msg: Handshake, send_okay: Any) -> None:
            await send_okay()
            versions = msg.supported_protocol_versions or [S2_VERSION]
            selected = S2_VERSION if S2_VERSION in versions else versions[0]
            await conn.send_msg_and_await_reception_status(
                Handshake(
                    message_id=uuid.uuid4(),
                    role=EnergyManagementRole.CEM,
                    supported_protocol_versions=[S2_VERSION],
                )
            )
            await conn.send_msg_and_await_reception_status(
                HandshakeResponse(message_id=uuid.uuid4(), selected_protocol_version=selected)
            )

        async def on_details(conn: S2AsyncConnection, msg: ResourceManagerDetails, send_okay: Any) -> None:
            await send_okay()
            s.details = msg
            offered = list(msg.available_control_types)
            choice = next(
                (
                    c
                    for c in (ControlType.FILL_RATE_BASED_CONTROL, ControlType.OPERATION_MODE_BASED_CONTROL)
                    if c in offered
                ),
                ControlType.NO_SELECTION,
            )
            s.control_type = choice
            await conn.send_msg_and_await_reception_status(
                SelectControlType(message_id=uuid.uuid4(), control_type=choice)
            )
            changed()

        async def on_frbc_system(conn: S2AsyncConnection, msg: FRBCSystemDescription, send_okay: Any) -> None:
            await send_okay()
            s.frbc_system = msg
            changed()

        async def on_frbc_target(
            conn: S2AsyncConnection, msg: FRBCFillLevelTargetProfile, send_okay: Any
        ) -> None:
            await send_okay()
            s.frbc_target = msg
            changed()

        async def on_storage(conn: S2AsyncConnection, msg: FRBCStorageStatus, send_okay: Any) -> None:
            await send_okay()
            s.fill_level = float(msg.present_fill_level)
            await server._record_series(
                s.entity_id, FILL_LEVEL, pd.Timestamp.now(tz="UTC"), s.fill_level, None
            )
            changed()

        async def on_status(conn: S2AsyncConnection, msg: Any, send_okay: Any) -> None:
            await send_okay()  # actuator / OMBC status: the power measurements tell the rest
            changed()

        async def on_ombc_system(conn: S2AsyncConnection, msg: OMBCSystemDescription, send_okay: Any) -> None:
            await send_okay()
            s.ombc_system = msg
            changed()

        async def on_power(conn: S2AsyncConnection, msg: PowerMeasurement, send_okay: Any) -> None:
            await send_okay()
            kw = sum(v.value for v in msg.values if v.commodity_quantity in _ELECTRIC) / 1000.0
            t = pd.Timestamp(msg.measurement_timestamp).tz_convert("UTC")
            s.power_kw = kw
            s.measurements.append((t, kw))
            await server._record_series(s.entity_id, POWER, t, kw, "KWT")
            changed()

        async def on_instruction_status(
            conn: S2AsyncConnection, msg: InstructionStatusUpdate, send_okay: Any
        ) -> None:
            await send_okay()
            s.statuses[msg.instruction_id] = msg.status_type
            if server.log is not None:
                await asyncio.to_thread(
                    server.log.record_status, msg.instruction_id, msg.status_type.value, msg.timestamp
                )
            changed()

        async def on_event(conn: S2AsyncConnection, event: Any, _: Any) -> None:
            changed()

        return {
            ConnectionStarted: on_event,
            ConnectionStopped: on_event,
            Handshake: on_handshake,
            ResourceManagerDetails: on_details,
            FRBCSystemDescription: on_frbc_system,
            FRBCFillLevelTargetProfile: on_frbc_target,
            FRBCStorageStatus: on_storage,
            FRBCActuatorStatus: on_status,
            OMBCSystemDescription: on_ombc_system,
            OMBCStatus: on_status,
            PowerMeasurement: on_power,
            InstructionStatusUpdate: on_instruction_status,
        }

    async def _record_series(
        self, entity_id: str, attribute: str, t: pd.Timestamp, value: float, unit: str | None
    ) -> None:
        if self.series is None:
            return
        frame = pd.DataFrame({entity_id: [value]}, index=pd.DatetimeIndex([t]))
        store = self.series
        # One write at a time: concurrent read-modify-writes of the same chunk would race.
        lock = self.__dict__.setdefault("_series_lock", asyncio.Lock())
        async with lock:
            await asyncio.to_thread(
                lambda: store.write(
                    frame, tenant=self.tenant, attribute=attribute, unit_code=unit, kind="power"
                )
            )


# --- simulated resource managers --------------------------------------------------------------------
class SimClock:
    """A clock that runs ``speed`` times faster than real time from ``start``.

    Parameters
    ----------
    start
        Simulated instant at creation (tz-aware; default now).
    speed
        Simulated seconds per real second.
    """

    def __init__(self, start: Any = None, speed: float = 1.0) -> None:
        import time

        self._mono = time.monotonic
        self.start = pd.Timestamp.now(tz="UTC") if start is None else pd.Timestamp(start).tz_convert("UTC")
        self.speed = float(speed)
        self._m0 = self._mono()

    def now(self) -> pd.Timestamp:
        """The simulated instant (UTC)."""
        return self.start + pd.Timedelta(seconds=(self._mono() - self._m0) * self.speed)

    async def sleep_until(self, t: pd.Timestamp) -> None:
        """Sleep (really) until the simulated clock reaches ``t``."""
        left = (pd.Timestamp(t) - self.now()).total_seconds() / self.speed
        if left > 0:
            await asyncio.sleep(left)


def _uuid(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"https://w3id.org/bright/s2/{name}")


class _SimulatedResource:
    """Shared machinery of the simulated RMs: connection, asset details, instruction executor."""

    control_type: ControlType
    role: RoleType

    def __init__(self, url: str, *, name: str, clock: SimClock | None) -> None:
        self.url = url
        self.name = name
        self.clock = clock or SimClock()
        self.resource_id = _uuid(f"resource/{name}")
        self.power_w = 0.0
        self.reported: list[tuple[pd.Timestamp, float]] = []  # (time, kW) of every power measurement sent
        self.received: list[Any] = []  # instructions received
        self._pending: list[Any] = []
        self._wake = asyncio.Event()
        self._executor: asyncio.Task[None] | None = None
        self._connection: S2AsyncConnection | None = None
        self._current: uuid.UUID | None = None
        self.done = asyncio.Event()

    async def run(self) -> None:
        """Connect to the CEM and serve until the connection closes."""
        from s2python.connection.asset_details import AssetDetails
        from s2python.connection.async_.control_type.class_based import ResourceManagerHandler
        from s2python.connection.async_.medium.websocket import WebsocketClientMedium

        details = AssetDetails(
            resource_id=self.resource_id,
            provides_forecast=False,
            provides_power_measurements=[CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC],
            instruction_processing_delay=Duration.from_milliseconds(100),
            roles=[Role(role=self.role, commodity=Commodity.ELECTRICITY)],
            name=self.name,
            manufacturer="BRIGHT",
            model=type(self).__name__,
        )
        medium = WebsocketClientMedium(self.url, verify_certificate=False)
        await medium.connect()
        conn = S2AsyncConnection(medium, eventloop=asyncio.get_running_loop())
        self._connection = conn
        handler = ResourceManagerHandler(control_types=[self._control()], asset_details=details)
        handler.register_handlers(conn)
        try:
            await conn.run()
        finally:
            if self._executor is not None:
                self._executor.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._executor
            await medium.disconnect()

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.stop()

    def _control(self) -> Any:
        resource = self
        if self.control_type == ControlType.FILL_RATE_BASED_CONTROL:
            from s2python.connection.async_.control_type.class_based import FRBCControlType as Base
        else:
            from s2python.connection.async_.control_type.class_based import OMBCControlType as Base  # type: ignore[assignment]

        class _Control(Base):  # type: ignore[misc, valid-type]
            async def handle_instruction(
                self, connection: S2AsyncConnection, msg: Any, send_okay: Any
            ) -> None:
                await send_okay()
                await resource._accept(connection, msg)

            async def activate(self, connection: S2AsyncConnection) -> None:
                await resource._activate(connection)
                resource._executor = asyncio.create_task(resource._execute(connection))

            async def deactivate(self, connection: S2AsyncConnection) -> None:
                if resource._executor is not None:
                    resource._executor.cancel()

        return _Control()

    async def _send(self, connection: S2AsyncConnection, msg: Any) -> None:
        await connection.send_msg_and_await_reception_status(msg)

    async def _status(self, connection: S2AsyncConnection, iid: uuid.UUID, status: InstructionStatus) -> None:
        await self._send(
            connection,
            InstructionStatusUpdate(
                message_id=uuid.uuid4(),
                instruction_id=iid,
                status_type=status,
                timestamp=self.clock.now().floor("us").to_pydatetime(),
            ),
        )

    async def _measure(self, connection: S2AsyncConnection) -> None:
        t = self.clock.now()
        self.reported.append((t, self.power_w / 1000.0))
        await self._send(
            connection,
            PowerMeasurement(
                message_id=uuid.uuid4(),
                measurement_timestamp=t.floor("us").to_pydatetime(),
                values=[
                    PowerValue(
                        commodity_quantity=CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC,
                        value=self.power_w,
                    )
                ],
            ),
        )

    async def _accept(self, connection: S2AsyncConnection, msg: Any) -> None:
        self.received.append(msg)
        if not self._valid(msg):
            await self._status(connection, msg.id, InstructionStatus.REJECTED)
            return
        self._pending.append(msg)
        self._pending.sort(key=lambda m: m.execution_time)
        await self._status(connection, msg.id, InstructionStatus.ACCEPTED)
        self._wake.set()

    async def _execute(self, connection: S2AsyncConnection) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            nxt = self._pending[0]
            due = pd.Timestamp(nxt.execution_time).tz_convert("UTC")
            if self.clock.now() < due:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(),
                        timeout=max((due - self.clock.now()).total_seconds() / self.clock.speed, 0),
                    )
                continue
            self._pending.pop(0)
            self._advance()
            if self._current is not None:
                await self._status(connection, self._current, InstructionStatus.SUCCEEDED)
            self._apply(nxt)
            self._current = nxt.id
            await self._status(connection, nxt.id, InstructionStatus.STARTED)
            await self._report(connection)
            if not self._pending:
                self.done.set()

    # --- to specialise ----------------------------------------------------------------------------
    def _valid(self, msg: Any) -> bool:
        return True

    def _advance(self) -> None:
        """Bring the device's state to the clock's now before a change."""

    def _apply(self, msg: Any) -> None:
        raise NotImplementedError

    async def _activate(self, connection: S2AsyncConnection) -> None:
        raise NotImplementedError

    async def _report(self, connection: S2AsyncConnection) -> None:
        await self._measure(connection)


class SimulatedBattery(_SimulatedResource):
    """A battery behind an S2 resource manager (FRBC), for tests and demos.

    Its fill level is the state of charge in %. Three operation modes: *charge* (0 to
    ``max_power_kw``), *idle* and *discharge* (``-max_power_kw`` to 0, factor 1 = 0 kW); the fill
    rate of a power P (kW) is ``100 P eta / (3600 E)`` %/s charging and ``100 P / (eta 3600 E)``
    discharging, with ``eta = sqrt(efficiency)`` and E the capacity (kWh). It executes each
    instruction at its execution time on ``clock`` and then reports ``STARTED``, the power, its
    actuator and storage status (the previous instruction turns ``SUCCEEDED``).

    Parameters
    ----------
    url
        The CEM endpoint for this device (:meth:`CemServer.device_url`).
    capacity_kwh
        Usable capacity, kWh.
    max_power_kw
        Largest charge and discharge power, kW.
    efficiency
        Round-trip efficiency.
    soc
        Initial state of charge, fraction 0-1.
    clock
        Simulated clock (default: real time).
    target
        Fill-level target profile to announce: ``[(duration, lowest %, highest %), ...]`` from the
        clock's start (e.g. an EV that must be >= 80 % in 2 h); None for none.
    name
        Device name (also seeds its resource id).
    """

    control_type = ControlType.FILL_RATE_BASED_CONTROL
    role = RoleType.ENERGY_STORAGE

    def __init__(
        self,
        url: str,
        *,
        capacity_kwh: float = 10.0,
        max_power_kw: float = 5.0,
        efficiency: float = 0.9,
        soc: float = 0.5,
        clock: SimClock | None = None,
        target: Sequence[tuple[pd.Timedelta, float, float]] | None = None,
        name: str = "battery",
    ) -> None:
        super().__init__(url, name=name, clock=clock)
        if capacity_kwh <= 0 or max_power_kw <= 0 or not 0 < efficiency <= 1 or not 0 <= soc <= 1:
            raise ValueError("need capacity_kwh > 0, max_power_kw > 0, 0 < efficiency <= 1, 0 <= soc <= 1")
        self.capacity_kwh = capacity_kwh
        self.max_power_kw = max_power_kw
        self.eta = math.sqrt(efficiency)
        self.fill = 100.0 * soc
        self.target = list(target) if target else None
        self.actuator_id = _uuid(f"actuator/{name}")
        self.modes = {label: _uuid(f"mode/{name}/{label}") for label in ("charge", "idle", "discharge")}
        self._rate = 0.0  # %/s of the running operating point
        self._since = self.clock.now()

    def system_description(self) -> FRBCSystemDescription:
        """The battery's FRBC system description."""
        pw = self.max_power_kw * 1000.0
        rc = 100.0 * self.max_power_kw * self.eta / (3600.0 * self.capacity_kwh)
        rd = 100.0 * self.max_power_kw / (self.eta * 3600.0 * self.capacity_kwh)
        q = CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC

        def mode(label: str, p: tuple[float, float], r: tuple[float, float]) -> FRBCOperationMode:
            return FRBCOperationMode(
                id=self.modes[label],
                diagnostic_label=label,
                elements=[
                    FRBCOperationModeElement(
                        fill_level_range=NumberRange(start_of_range=0.0, end_of_range=100.0),
                        fill_rate=NumberRange(start_of_range=r[0], end_of_range=r[1]),
                        power_ranges=[
                            PowerRange(start_of_range=p[0], end_of_range=p[1], commodity_quantity=q)
                        ],
                    )
                ],
                abnormal_condition_only=False,
            )

        ids = list(self.modes.values())
        return FRBCSystemDescription(
            message_id=uuid.uuid4(),
            valid_from=self.clock.now().floor("us").to_pydatetime(),
            actuators=[
                FRBCActuatorDescription(
                    id=self.actuator_id,
                    diagnostic_label="inverter",
                    supported_commodities=[Commodity.ELECTRICITY],
                    operation_modes=[
                        mode("charge", (0.0, pw), (0.0, rc)),
                        mode("idle", (0.0, 0.0), (0.0, 0.0)),
                        mode("discharge", (-pw, 0.0), (-rd, 0.0)),
                    ],
                    transitions=[
                        Transition(
                            id=_uuid(f"transition/{self.name}/{a}/{b}"),
                            from_=a,
                            to=b,
                            start_timers=[],
                            blocking_timers=[],
                            transition_costs=None,
                            transition_duration=None,
                            abnormal_condition_only=False,
                        )
                        for a in ids
                        for b in ids
                        if a != b
                    ],
                    timers=[],
                )
            ],
            storage=FRBCStorageDescription(
                diagnostic_label="battery",
                fill_level_label="%",
                provides_leakage_behaviour=False,
                provides_fill_level_target_profile=self.target is not None,
                provides_usage_forecast=False,
                fill_level_range=NumberRange(start_of_range=0.0, end_of_range=100.0),
            ),
        )

    async def _activate(self, connection: S2AsyncConnection) -> None:
        self._system = self.system_description()
        await self._send(connection, self._system)
        if self.target is not None:
            await self._send(
                connection,
                FRBCFillLevelTargetProfile(
                    message_id=uuid.uuid4(),
                    start_time=self.clock.start.floor("us").to_pydatetime(),
                    elements=[
                        FRBCFillLevelTargetProfileElement(
                            duration=Duration.from_timedelta(
                                timedelta(seconds=pd.Timedelta(d).total_seconds())
                            ),
                            fill_level_range=NumberRange(start_of_range=lo, end_of_range=hi),
                        )
                        for d, lo, hi in self.target
                    ],
                ),
            )
        await self._send(connection, FRBCStorageStatus(message_id=uuid.uuid4(), present_fill_level=self.fill))
        await self._send(
            connection,
            FRBCActuatorStatus(
                message_id=uuid.uuid4(),
                actuator_id=self.actuator_id,
                active_operation_mode_id=self.modes["idle"],
                operation_mode_factor=0.0,
                previous_operation_mode_id=None,
                transition_timestamp=None,
            ),
        )
        await self._measure(connection)

    def _valid(self, msg: Any) -> bool:
        return (
            isinstance(msg, FRBCInstruction)
            and msg.actuator_id == self.actuator_id
            and msg.operation_mode in self.modes.values()
        )

    def _advance(self) -> None:
        now = self.clock.now()
        self.fill = min(max(self.fill + self._rate * (now - self._since).total_seconds(), 0.0), 100.0)
        self._since = now

    def _apply(self, msg: Any) -> None:
        mode = next(m for m in self._system.actuators[0].operation_modes if m.id == msg.operation_mode)
        el = mode.elements[0]
        p0, p1 = _electric(el.power_ranges)
        f = float(msg.operation_mode_factor)
        self.power_w = p0 + f * (p1 - p0)
        self._rate = el.fill_rate.start_of_range + f * (
            el.fill_rate.end_of_range - el.fill_rate.start_of_range
        )
        self._mode = mode.id
        self._factor = f

    async def _report(self, connection: S2AsyncConnection) -> None:
        await self._send(
            connection,
            FRBCActuatorStatus(
                message_id=uuid.uuid4(),
                actuator_id=self.actuator_id,
                active_operation_mode_id=self._mode,
                operation_mode_factor=self._factor,
                previous_operation_mode_id=None,
                transition_timestamp=None,
            ),
        )
        await self._send(connection, FRBCStorageStatus(message_id=uuid.uuid4(), present_fill_level=self.fill))
        await self._measure(connection)


class SimulatedAppliance(_SimulatedResource):
    """A shiftable appliance (e.g. a heat-pump boiler or a dishwasher) behind an S2 RM (OMBC).

    Two operation modes: *off* (0 kW) and *on* (``power_kw``); it switches at each instruction's
    execution time and reports the power.

    Parameters
    ----------
    url
        The CEM endpoint for this device.
    power_kw
        Power when on, kW.
    clock
        Simulated clock.
    name
        Device name (also seeds its resource id).
    """

    control_type = ControlType.OPERATION_MODE_BASED_CONTROL
    role = RoleType.ENERGY_CONSUMER

    def __init__(
        self, url: str, *, power_kw: float = 2.0, clock: SimClock | None = None, name: str = "appliance"
    ) -> None:
        super().__init__(url, name=name, clock=clock)
        if power_kw <= 0:
            raise ValueError("power_kw must be > 0")
        self.power_kw = power_kw
        self.modes = {label: _uuid(f"mode/{name}/{label}") for label in ("off", "on")}
        self.mode = self.modes["off"]

    def system_description(self) -> OMBCSystemDescription:
        q = CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC
        pw = self.power_kw * 1000.0
        return OMBCSystemDescription(
            message_id=uuid.uuid4(),
            valid_from=self.clock.now().floor("us").to_pydatetime(),
            operation_modes=[
                OMBCOperationMode(
                    id=self.modes[label],
                    diagnostic_label=label,
                    power_ranges=[PowerRange(start_of_range=p, end_of_range=p, commodity_quantity=q)],
                    running_costs=None,
                    abnormal_condition_only=False,
                )
                for label, p in (("off", 0.0), ("on", pw))
            ],
            transitions=[],
            timers=[],
        )

    async def _activate(self, connection: S2AsyncConnection) -> None:
        await self._send(connection, self.system_description())
        await self._send(
            connection,
            self._ombc_status(),
        )
        await self._measure(connection)

    def _ombc_status(self) -> OMBCStatus:
        # s2-python types this id as the schema's string ID (not a UUID like the other ids).
        return OMBCStatus(
            message_id=uuid.uuid4(),
            active_operation_mode_id=cast(Any, str(self.mode)),
            operation_mode_factor=0.0,
            previous_operation_mode_id=None,
            transition_timestamp=None,
        )

    def _valid(self, msg: Any) -> bool:
        return isinstance(msg, OMBCInstruction) and msg.operation_mode_id in self.modes.values()

    def _apply(self, msg: Any) -> None:
        self.mode = msg.operation_mode_id
        self.power_w = self.power_kw * 1000.0 if self.mode == self.modes["on"] else 0.0

    async def _report(self, connection: S2AsyncConnection) -> None:
        await self._send(
            connection,
            self._ombc_status(),
        )
        await self._measure(connection)
