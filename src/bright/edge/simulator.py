"""Meter and device simulator (``bright edge simulate``): the demo community's real profiles as SenML.

Each member of the demo community (:mod:`bright.services.demo`) publishes what its devices would:

- the access-point meter (``<root>/<community>/<member>/senml``): ``offtake`` and ``injection``
  (kWh per quarter-hour) and ``power`` (mean kW over the quarter-hour, + = offtake);
- a PV inverter (``.../<member>/pv/senml``): ``production`` (kWh) and ``power`` (kW);
- a battery (``.../<member>/battery/senml``): ``offtake`` (charged, kWh), ``injection``
  (discharged, kWh), ``power`` (kW, + = charging) and ``stateOfCharge`` (%).

Load is the member's real profile (SimBench, UCI) scaled to its annual consumption, PV the real
SimBench PV profile scaled to its kWp (:func:`bright.services.demo.member_load_kwh`,
:func:`~bright.services.demo.member_pv_kwh`). A battery runs the usual self-consumption rule
(:func:`self_consumption_battery`). Per quarter-hour, with load L, PV S, charge C and discharge D
(kWh, AC side), the meter sees ``net = L - S + C - D``, ``offtake = max(net, 0)`` and
``injection = max(-net, 0)``.

Everything is deterministic: the same period gives the same payloads byte for byte. Packs hold
``steps_per_pack`` quarter-hours of one device. At ``speed`` x real time (1440 = one day per
minute) a pack is published when the simulated clock passes the end of its last quarter-hour;
``speed=None`` publishes as fast as the broker takes them (a load generator).
"""

from __future__ import annotations

import logging
import math
import threading
import time as _time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bright.edge import senml, topics
from bright.services.demo import DemoCommunity, Member, build_demo_community, member_load_kwh, member_pv_kwh

__all__ = [
    "DevicePack",
    "SimulationReport",
    "Simulator",
    "community_packs",
    "device_profiles",
    "self_consumption_battery",
]

log = logging.getLogger("bright.edge.simulator")

STEP = pd.Timedelta(minutes=15)
_STEP_H = 0.25


def self_consumption_battery(
    net_kwh: np.ndarray,
    *,
    capacity_kwh: float,
    max_power_kw: float,
    efficiency: float = 0.9,
    initial_soc: float = 0.5,
    interval_h: float = 0.25,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charge from surplus, discharge to cover deficit: a home battery's default behaviour.

    Parameters
    ----------
    net_kwh
        Load minus PV per interval before the battery, kWh (< 0 = surplus).
    capacity_kwh
        Usable capacity, kWh.
    max_power_kw
        Largest charge and discharge power (AC), kW.
    efficiency
        Round-trip efficiency; each way costs ``sqrt(efficiency)``.
    initial_soc
        State of charge at the start, fraction of the capacity.
    interval_h
        Interval length, h.

    Returns
    -------
    charge_kwh, discharge_kwh : numpy.ndarray
        AC energy into and out of the battery per interval, kWh (>= 0, never both > 0).
    soc : numpy.ndarray
        State of charge at the END of each interval, fraction 0-1.

    Notes
    -----
    Per interval: ``C = min(-net, P dt, (E_max - E) / eta)`` when ``net < 0``, else
    ``D = min(net, P dt, E eta)``, with ``eta = sqrt(efficiency)``; ``E += C eta - D / eta``.
    """
    if capacity_kwh <= 0 or max_power_kw <= 0 or not 0 < efficiency <= 1 or not 0 <= initial_soc <= 1:
        raise ValueError(
            "need capacity_kwh > 0, max_power_kw > 0, 0 < efficiency <= 1, 0 <= initial_soc <= 1"
        )
    eta = math.sqrt(efficiency)
    cap_step = max_power_kw * interval_h
    net = np.asarray(net_kwh, dtype=float)
    charge = np.zeros(net.size)
    discharge = np.zeros(net.size)
    soc = np.empty(net.size)
    e = initial_soc * capacity_kwh
    for k, x in enumerate(net.tolist()):
        if x < 0:
            c = min(-x, cap_step, (capacity_kwh - e) / eta)
            charge[k] = c
            e += c * eta
        elif x > 0:
            d = min(x, cap_step, e * eta)
            discharge[k] = d
            e -= d / eta
        e = min(max(e, 0.0), capacity_kwh)
        soc[k] = e / capacity_kwh
    return charge, discharge, soc


def device_profiles(
    community: DemoCommunity, start: pd.Timestamp, end: pd.Timestamp
) -> dict[tuple[str, str], pd.DataFrame]:
    """What every device of the community measures over ``[start, end)``, per quarter-hour.

    Parameters
    ----------
    community
        The demo community.
    start, end
        The period (UTC, on the quarter-hour grid, within 2016, the year of the real profiles).

    Returns
    -------
    dict
        ``(member key, asset)`` -> frame indexed by interval start (UTC) with columns in SenML
        units: ``offtake``/``injection``/``production`` (kWh), ``power`` (kW), ``stateOfCharge`` (%).
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be tz-aware (UTC)")
    full = pd.DatetimeIndex(member_pv_kwh(community.members[0], "PV3").index)  # the profiles' 2016 grid
    index = full[(full >= start) & (full < end)]
    if not len(index):
        raise ValueError(f"no quarter-hour of the 2016 profiles in [{start}, {end})")
    out: dict[tuple[str, str], pd.DataFrame] = {}
    for m in community.members:
        out.update(_member_devices(m, index, full))
    return out


def _member_devices(
    m: Member, index: pd.DatetimeIndex, full: pd.DatetimeIndex
) -> dict[tuple[str, str], pd.DataFrame]:
    load = member_load_kwh(m).reindex(full).to_numpy()
    pv = member_pv_kwh(m).to_numpy() if m.pv_kwp else np.zeros(full.size)
    net = load - pv
    charge = discharge = np.zeros(full.size)
    out: dict[tuple[str, str], pd.DataFrame] = {}
    if m.battery_kwh:
        # Run over the whole year so that the state of charge of any period is the same.
        charge, discharge, soc = self_consumption_battery(
            net, capacity_kwh=m.battery_kwh, max_power_kw=m.battery_kwh / 2, efficiency=0.9
        )
        pos = full.get_indexer(index)
        out[(m.key, "battery")] = pd.DataFrame(
            {
                "offtake": charge[pos],
                "injection": discharge[pos],
                "power": (charge[pos] - discharge[pos]) / _STEP_H,
                "stateOfCharge": 100.0 * soc[pos],
            },
            index=index,
        )
    pos = full.get_indexer(index)
    grid = (net + charge - discharge)[pos]
    out[(m.key, "meter")] = pd.DataFrame(
        {"offtake": np.maximum(grid, 0.0), "injection": np.maximum(-grid, 0.0), "power": grid / _STEP_H},
        index=index,
    )
    if m.pv_kwp:
        out[(m.key, "pv")] = pd.DataFrame({"production": pv[pos], "power": pv[pos] / _STEP_H}, index=index)
    return out


_UNITS = {"offtake": "kWh", "injection": "kWh", "production": "kWh", "power": "kW", "stateOfCharge": "%"}


@dataclass(frozen=True)
class DevicePack:
    """One SenML pack ready to publish.

    Attributes
    ----------
    topic, payload
        Where and what.
    due
        Simulated instant after which the pack may be published: the end of its last interval.
    readings
        Records in the pack.
    sums
        Sum of the values per quantity, in SenML units (for end-to-end checks).
    """

    topic: str
    payload: bytes
    due: pd.Timestamp
    readings: int
    sums: dict[str, float]


def community_packs(
    community: DemoCommunity | None = None,
    start: Any = "2016-06-01T00:00Z",
    end: Any = "2016-06-02T00:00Z",
    *,
    steps_per_pack: int = 96,
    root: str = topics.DEFAULT_ROOT,
    time_shift: pd.Timedelta | None = None,
    max_readings: int | None = None,
) -> Iterator[DevicePack]:
    """The packs of the community's devices over ``[start, end)``, in publication order.

    Parameters
    ----------
    community
        The demo community (built when None).
    start, end
        Simulated period in profile time (UTC, 2016).
    steps_per_pack
        Quarter-hours per pack (96 = one day per device and pack; 1 = live-like packs).
    root
        Topic root.
    time_shift
        Added to every timestamp (whole weeks keep weekdays; e.g. to replay 2016 "now").
    max_readings
        Stop once this many readings were produced (the last pack may be cut).

    Yields
    ------
    DevicePack
        Ordered by due time, then member and asset.
    """
    if steps_per_pack < 1:
        raise ValueError("steps_per_pack must be >= 1")
    community = community or build_demo_community()
    profiles = device_profiles(community, pd.Timestamp(start), pd.Timestamp(end))
    shift = time_shift or pd.Timedelta(0)
    keys = sorted(profiles)
    n = len(next(iter(profiles.values())))
    produced = 0
    for a in range(0, n, steps_per_pack):
        for member, asset in keys:
            frame = profiles[(member, asset)].iloc[a : a + steps_per_pack]
            idx = pd.DatetimeIndex(frame.index) + shift
            times = (idx.as_unit("s").asi8).astype(np.float64)
            cols = {q: (_UNITS[q], frame[q].to_numpy()) for q in frame.columns}
            count = sum(int(np.count_nonzero(~np.isnan(v))) for _, v in cols.values())
            if max_readings is not None and produced + count > max_readings:
                # Cut the pack: whole instants first, then the quantities of the last instant.
                room = max_readings - produced
                if room <= 0:
                    return
                per_instant = len(cols)
                k = max(room // per_instant, 1)
                cols = {q: (u, v[:k]) for q, (u, v) in cols.items()}
                times = times[:k]
                count = k * per_instant
                if count > room:
                    keep = list(cols)[:room]
                    cols = {q: cols[q] for q in keep}
                    count = room
            base = f"urn:dev:bright:{community.key}:{member}:{asset}:"
            payload = senml.encode_series(base, times, cols)
            due = idx[min(len(times), len(idx)) - 1] + STEP
            sums = {q: float(np.nansum(v)) for q, (_, v) in cols.items()}
            yield DevicePack(
                topics.senml_topic(community.key, member, asset, root=root), payload, due, count, sums
            )
            produced += count
            if max_readings is not None and produced >= max_readings:
                return


@dataclass
class SimulationReport:
    """What a simulation published.

    Attributes
    ----------
    messages, readings
        Packs and records published (and acknowledged by the broker).
    sums
        Per quantity, the sum of the published values in SenML units.
    elapsed_s
        Wall time, s.
    """

    messages: int = 0
    readings: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0


class Simulator:
    """Publishes packs to an MQTT broker with QoS 1 and waits for the broker's acknowledgements.

    Unacknowledged packs are kept by the client and re-sent after a reconnection (a broker
    restart loses nothing that was not acknowledged).

    Parameters
    ----------
    url
        Broker URL (``mqtt://host:port``).
    client_id
        MQTT client id.
    window
        Largest number of packs in flight (published, not yet acknowledged).
    """

    def __init__(
        self,
        url: str = "mqtt://127.0.0.1:1883",
        *,
        client_id: str = "bright-edge-simulator",
        window: int = 500,
    ) -> None:
        import paho.mqtt.client as mqtt

        from bright.edge.mqtt import parse_url

        host, port, user, password, tls = parse_url(url)
        self._host, self._port = host, port
        self.window = window
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set()
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 4)
        self._connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set() if not rc.is_failure else None
        self.client.on_disconnect = lambda c, u, f, rc, p: self._connected.clear()
        # Acknowledgements are tracked by packet id: a message published while the broker was away
        # keeps an error code in its MQTTMessageInfo even once re-sent and acknowledged.
        self._lock = threading.Lock()
        self._outstanding: set[int] = set()
        self._early: set[int] = set()  # acknowledged before publish() returned
        self.client.on_publish = self._on_publish

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            if mid in self._outstanding:
                self._outstanding.discard(mid)
            else:
                self._early.add(mid)

    def __enter__(self) -> Simulator:
        self.client.connect_async(self._host, self._port, 30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.client.loop_stop()
            raise TimeoutError(f"no connection to the MQTT broker {self._host}:{self._port}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _wait_below(self, limit: int, deadline: float) -> None:
        """Wait until fewer than ``limit`` packs are unacknowledged (0: every one acknowledged)."""
        while True:
            with self._lock:
                if len(self._outstanding) < max(limit, 1) and (limit > 0 or not self._outstanding):
                    return
            if _time.monotonic() > deadline:
                raise TimeoutError("the broker did not acknowledge every pack in time")
            _time.sleep(0.002)

    def _publish(self, topic: str, payload: bytes) -> None:
        # publish() keeps a QoS 1 message while the broker is unreachable and re-sends it later.
        info = self.client.publish(topic, payload, qos=1)
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._outstanding.add(info.mid)

    def publish(
        self,
        packs: Iterator[DevicePack] | list[DevicePack],
        *,
        speed: float | None = None,
        start: Any = None,
        stop: threading.Event | None = None,
        timeout_s: float = 600.0,
    ) -> SimulationReport:
        """Publish packs (QoS 1) and wait until the broker acknowledged every one.

        Parameters
        ----------
        packs
            From :func:`community_packs`.
        speed
            Simulated seconds per real second (1440 = one day per minute); None = no pacing.
        start
            Simulated instant at which the run starts (default: the first pack's first interval).
        stop
            Set it to stop early.
        timeout_s
            Longest wait for the acknowledgements, s.

        Returns
        -------
        SimulationReport
        """
        report = SimulationReport()
        t0 = _time.perf_counter()
        deadline = _time.monotonic() + timeout_s
        sim0: pd.Timestamp | None = None if start is None else pd.Timestamp(start)
        for pack in packs:
            if stop is not None and stop.is_set():
                break
            if speed is not None:
                if sim0 is None:
                    sim0 = pack.due - STEP
                wait = (pack.due - sim0).total_seconds() / speed - (_time.perf_counter() - t0)
                if wait > 0:
                    if stop is None:
                        _time.sleep(wait)
                    elif stop.wait(wait):
                        break
            self._wait_below(self.window, deadline)
            self._publish(pack.topic, pack.payload)
            report.messages += 1
            report.readings += pack.readings
            for q, s in pack.sums.items():
                report.sums[q] = report.sums.get(q, 0.0) + s
        self._wait_below(0, deadline)
        report.elapsed_s = _time.perf_counter() - t0
        return report


def simulate(
    url: str = "mqtt://127.0.0.1:1883",
    *,
    start: Any = "2016-06-01T00:00Z",
    end: Any = "2016-06-02T00:00Z",
    speed: float | None = 1440.0,
    steps_per_pack: int = 1,
    root: str = topics.DEFAULT_ROOT,
    municipality: str = "Ixelles",
    shift_to_now: bool = False,
    max_readings: int | None = None,
    stop: threading.Event | None = None,
) -> SimulationReport:
    """Build the demo community and publish its devices' readings (``bright edge simulate``).

    Parameters
    ----------
    url
        Broker URL.
    start, end
        Simulated period in profile time (UTC, 2016).
    speed
        Simulated seconds per real second (1440 = one day per minute); None = as fast as possible.
    steps_per_pack
        Quarter-hours per pack.
    root
        Topic root.
    municipality
        Municipality of the demo school (as ``bright demo``).
    shift_to_now
        Shift timestamps by whole weeks so that ``start`` falls in the current week (live demos).
    max_readings
        Stop after this many readings.
    stop
        Set it to stop early.

    Returns
    -------
    SimulationReport
    """
    community = build_demo_community(municipality)
    shift = None
    if shift_to_now:
        weeks = (pd.Timestamp.now(tz="UTC") - pd.Timestamp(start)) // pd.Timedelta(days=7)
        shift = pd.Timedelta(days=7) * int(weeks)
    packs = community_packs(
        community,
        start,
        end,
        steps_per_pack=steps_per_pack,
        root=root,
        time_shift=shift,
        max_readings=max_readings,
    )
    with Simulator(url) as sim:
        return sim.publish(packs, speed=speed, stop=stop)
