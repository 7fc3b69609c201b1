"""Live power and today's energy per member and for the community, as a home-automation energy
dashboard shows them (grid in/out, solar, battery in/out, self-consumed solar, self-sufficiency).

Energy flows
------------
Per interval, with the member's gross grid offtake ``G_in`` and injection ``G_out`` (meter), solar
production ``S`` (PV inverter) and battery charge ``B_in`` and discharge ``B_out`` (battery), all
>= 0 and in kWh (or all in kW for power), the energy is routed with the usual priorities, local
sources first (:func:`energy_flows`)::

    S->grid = min(S, G_out)                 B->grid = min(B_out, G_out - S->grid)
    S->bat  = min(S - S->grid, B_in)        grid->bat = min(G_in, B_in - S->bat)
    S->home = S - S->grid - S->bat          B->home = B_out - B->grid
    grid->home = G_in - grid->bat
    home = S->home + B->home + grid->home   (the member's own consumption)

    self-consumed solar = S - S->grid = S->home + S->bat
    self-consumption    = self-consumed solar / S          (share of the solar used on site)
    self-sufficiency    = (S->home + B->home) / home       (share of consumption from own sources)

Every flow is >= 0 by construction. Measured data that cannot balance (export larger than solar
plus discharge, charge larger than solar plus import) leaves an ``unbalanced`` remainder (>= 0),
reported instead of hidden. An interval with a missing (NaN) input has NaN flows; totals are over
the intervals with every input present and say how many those were. A member without solar or
battery has ``S = 0`` or ``B = 0`` (the device does not exist: zero is the truth, not a guess).

The community totals are the sums of the members' flows (each member's own balance; sharing
between members is :mod:`bright.energy.sharing`'s business), and the ratios are recomputed from
those sums.

Data
----
Today's energy is read from the series store: interval energies of the meter
(``bright:offtakeKwh``, ``bright:injectionKwh``), of the PV device (``bright:productionKwh``) and
of the battery (``offtake`` = charged, ``injection`` = discharged), from local midnight
(Europe/Brussels) to now. Live power is the latest ``bright:powerKw`` reading of each device no
older than ``max_age`` (meter and battery signed, + = offtake / charging); a device that only sends
interval energies shows the mean power of its latest interval. :class:`LiveBoard` keeps the latest
readings in memory from the ingest's commits (:attr:`bright.edge.mqtt.Ingestor.listeners`), so the
live view is updated as readings arrive without reading the database.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bright.edge.mqtt import CommittedReadings
from bright.edge.senml import QUANTITIES
from bright.twin.series import SeriesStore
from bright.twin.store import EntityQuery, TwinStore

__all__ = [
    "FLOW_NAMES",
    "EnergyToday",
    "LiveBoard",
    "LiveView",
    "PowerNow",
    "community_members",
    "energy_flows",
    "flow_totals",
    "live_view",
]

BRUSSELS = "Europe/Brussels"
OFFTAKE = QUANTITIES["offtake"].attribute
INJECTION = QUANTITIES["injection"].attribute
PRODUCTION = QUANTITIES["production"].attribute
POWER = QUANTITIES["power"].attribute
SOC = QUANTITIES["stateOfCharge"].attribute

#: The flows :func:`energy_flows` returns, in order.
FLOW_NAMES = (
    "grid_in", "grid_out", "solar", "battery_in", "battery_out",
    "solar_to_grid", "solar_to_battery", "solar_to_home",
    "battery_to_grid", "battery_to_home", "grid_to_battery", "grid_to_home",
    "home", "self_consumed_solar", "unbalanced",
)  # fmt: skip


def _arr(x: Any, n: int | None, name: str) -> np.ndarray:
    a = np.asarray(0.0 if x is None else x, dtype=float)
    if n is not None:
        a = np.broadcast_to(a, (n,)) if a.ndim == 0 else a
    if a.ndim > 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    neg = a < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise ValueError(f"{name}[{i}] = {a.flat[i]:g} is negative (gross energies and powers are >= 0)")
    return a


def energy_flows(
    grid_in: Any,
    grid_out: Any,
    solar: Any = None,
    battery_in: Any = None,
    battery_out: Any = None,
) -> dict[str, np.ndarray]:
    """Route a member's energy per interval (see the module docstring for the rules).

    Parameters
    ----------
    grid_in, grid_out
        Gross offtake from and injection into the grid per interval, kWh (or kW), >= 0.
    solar
        Solar production per interval, kWh (kW), >= 0; None = no PV.
    battery_in, battery_out
        Battery charge and discharge per interval (AC side), kWh (kW), >= 0; None = no battery.

    Returns
    -------
    dict of numpy.ndarray
        Every name of :data:`FLOW_NAMES`, per interval, in the inputs' unit; NaN where an input is
        NaN.

    Raises
    ------
    ValueError
        A negative input (names the input and the interval) or inputs of different lengths.

    Examples
    --------
    Noon: 1.0 kWh of solar, 0.25 kWh charged into the battery, 0.5 kWh exported, nothing imported:
    the home used 0.25 kWh, all of it solar.

    >>> f = energy_flows(0.0, 0.5, solar=1.0, battery_in=0.25)
    >>> float(f["home"]), float(f["solar_to_grid"]), float(f["self_consumed_solar"])
    (0.25, 0.5, 0.5)
    """
    lengths = {
        np.size(x)
        for x in (grid_in, grid_out, solar, battery_in, battery_out)
        if x is not None and np.ndim(x) > 0
    }
    if len(lengths) > 1:
        raise ValueError(f"inputs have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else None
    g_in = _arr(grid_in, n, "grid_in")
    g_out = _arr(grid_out, n, "grid_out")
    s = _arr(solar, n, "solar")
    b_in = _arr(battery_in, n, "battery_in")
    b_out = _arr(battery_out, n, "battery_out")
    s2g = np.minimum(s, g_out)
    b2g = np.minimum(b_out, g_out - s2g)
    s2b = np.minimum(s - s2g, b_in)
    g2b = np.minimum(g_in, b_in - s2b)
    s2h = s - s2g - s2b
    b2h = b_out - b2g
    g2h = g_in - g2b
    unbalanced = (g_out - s2g - b2g) + (b_in - s2b - g2b)
    out = {
        "grid_in": g_in,
        "grid_out": g_out,
        "solar": s,
        "battery_in": b_in,
        "battery_out": b_out,
        "solar_to_grid": s2g,
        "solar_to_battery": s2b,
        "solar_to_home": s2h,
        "battery_to_grid": b2g,
        "battery_to_home": b2h,
        "grid_to_battery": g2b,
        "grid_to_home": g2h,
        "home": s2h + b2h + g2h,
        "self_consumed_solar": s - s2g,
        "unbalanced": unbalanced,
    }
    missing = np.isnan(g_in) | np.isnan(g_out) | np.isnan(s) | np.isnan(b_in) | np.isnan(b_out)
    if missing.any():
        for k, v in out.items():
            v = np.array(v, dtype=float)
            v[missing] = np.nan
            out[k] = v
    return {k: np.asarray(out[k], dtype=float) for k in FLOW_NAMES}


def flow_totals(flows: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Totals of per-interval flows and the dashboard's ratios.

    Parameters
    ----------
    flows
        Output of :func:`energy_flows` (per interval, kWh).

    Returns
    -------
    dict
        Every flow summed over the intervals where it is known (kWh), ``intervals`` (how many had
        every input), ``self_consumption`` = self-consumed solar / solar and ``self_sufficiency`` =
        (solar->home + battery->home) / home, both fractions 0-1 (NaN when their denominator is 0).
    """
    home = np.asarray(flows["home"], dtype=float)
    ok = ~np.isnan(home)
    out = {k: float(np.asarray(flows[k], dtype=float)[ok].sum()) for k in FLOW_NAMES}
    out["intervals"] = float(np.count_nonzero(ok))
    out.update(_ratios(out))
    return out


def _ratios(t: Mapping[str, float]) -> dict[str, float]:
    solar, home = t["solar"], t["home"]
    return {
        "self_consumption": t["self_consumed_solar"] / solar if solar > 0 else float("nan"),
        "self_sufficiency": (t["solar_to_home"] + t["battery_to_home"]) / home if home > 0 else float("nan"),
    }


# --- views over the twin --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerNow:
    """Live power of a member (or the community), kW; NaN when unknown.

    Attributes
    ----------
    time
        Instant of the oldest reading used (UTC), None when none was fresh.
    grid_in_kw, grid_out_kw, solar_kw, battery_in_kw, battery_out_kw, home_kw
        Flows now, kW (``home_kw`` is the consumption).
    state_of_charge
        Battery state of charge, fraction 0-1 (NaN without a battery or a reading).
    estimated
        True when some power is the mean of the latest interval rather than a power reading.
    """

    time: pd.Timestamp | None
    grid_in_kw: float
    grid_out_kw: float
    solar_kw: float
    battery_in_kw: float
    battery_out_kw: float
    home_kw: float
    state_of_charge: float = float("nan")
    estimated: bool = False

    def as_dict(self) -> dict[str, Any]:
        d = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in self.__dict__.items()}
        d["time"] = None if self.time is None else self.time.isoformat().replace("+00:00", "Z")
        return d


@dataclass(frozen=True)
class EnergyToday:
    """Today's energy of a member (or the community) since local midnight, kWh.

    Attributes
    ----------
    start, end
        The period read (UTC): local midnight and now.
    totals
        :func:`flow_totals` of the day (kWh, ratios, ``intervals``).
    expected_intervals
        Quarter-hours from midnight to the last one completed; ``totals["intervals"]`` below this
        means readings are missing.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    totals: dict[str, float]
    expected_intervals: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "end": self.end.isoformat().replace("+00:00", "Z"),
            "expectedIntervals": self.expected_intervals,
            **{k: (None if np.isnan(v) else v) for k, v in self.totals.items()},
        }


@dataclass(frozen=True)
class LiveView:
    """The dashboard: per member and for the community.

    Attributes
    ----------
    community
        Community key.
    now
        When it was computed (UTC).
    members
        Member key -> (live power, today's energy).
    power, today
        Community totals.
    """

    community: str
    now: pd.Timestamp
    members: dict[str, tuple[PowerNow, EnergyToday]]
    power: PowerNow
    today: EnergyToday

    def as_dict(self) -> dict[str, Any]:
        return {
            "community": self.community,
            "now": self.now.isoformat().replace("+00:00", "Z"),
            "power": self.power.as_dict(),
            "today": self.today.as_dict(),
            "members": {
                k: {"power": p.as_dict(), "today": e.as_dict()} for k, (p, e) in self.members.items()
            },
        }


@dataclass
class LiveBoard:
    """Latest readings per entity and attribute, kept in memory from the ingest's commits.

    Register :meth:`update` in :attr:`bright.edge.mqtt.Ingestor.listeners`; :func:`live_view` then
    takes live power from here instead of the database.

    Attributes
    ----------
    latest
        ``(tenant, entity id, attribute IRI)`` -> (epoch microseconds, value).
    """

    latest: dict[tuple[str, str, str], tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, committed: CommittedReadings) -> None:
        """Keep the newest reading of each (entity, attribute) of a committed batch."""
        if not len(committed):
            return
        order = np.argsort(committed.time_us, kind="stable")
        with self._lock:
            for j in order.tolist():
                key = (committed.tenant, str(committed.entity_id[j]), str(committed.attribute[j]))
                t = int(committed.time_us[j])
                old = self.latest.get(key)
                if old is None or t >= old[0]:
                    self.latest[key] = (t, float(committed.value[j]))

    def get(self, tenant: str, entity_id: str, attribute: str) -> tuple[pd.Timestamp, float] | None:
        """The newest ``(time, value)`` of an entity's attribute, or None."""
        with self._lock:
            hit = self.latest.get((tenant, entity_id, attribute))
        return None if hit is None else (pd.Timestamp(hit[0], unit="us", tz="UTC"), hit[1])


def community_members(twin: TwinStore, community: str, *, tenant: str = "") -> list[str]:
    """Member keys of a community: the meters ``urn:ngsi-ld:Meter:<community>:<member>`` in the twin."""
    prefix = f"urn:ngsi-ld:Meter:{community}:"
    docs, _ = twin.query(tenant, EntityQuery(id_pattern="^" + re.escape(prefix), limit=100_000))
    return sorted(d["id"][len(prefix) :] for d in docs if d["id"].startswith(prefix))


def _ids(community: str, member: str) -> dict[str, str]:
    return {
        "meter": f"urn:ngsi-ld:Meter:{community}:{member}",
        "pv": f"urn:ngsi-ld:PhotovoltaicDevice:{community}:{member}",
        "battery": f"urn:ngsi-ld:Battery:{community}:{member}",
    }


def _latest(
    series: SeriesStore,
    board: LiveBoard | None,
    tenant: str,
    entity_id: str,
    now: pd.Timestamp,
    max_age: pd.Timedelta,
    interval: pd.Timedelta,
) -> tuple[float, pd.Timestamp | None, bool, float]:
    """(power kW, time, estimated, state of charge) of a device: latest power reading, else the
    mean power of its latest interval energies (offtake - injection, or production)."""

    def last(attr: str, span: pd.Timedelta = pd.Timedelta(0)) -> tuple[pd.Timestamp, float] | None:
        # A reading is fresh when it ends at most max_age ago (an interval energy ends `span` after
        # its stamp) and does not lie in the future.
        lo = now - max_age - span
        if board is not None:
            hit = board.get(tenant, entity_id, attr)
            return hit if hit is not None and lo <= hit[0] <= now else None
        h = series.history(entity_id, attr, lo, now + pd.Timedelta(microseconds=1), tenant=tenant, last_n=1)
        return None if h.empty else (pd.Timestamp(h.index[-1]), float(h.iloc[-1]))

    soc_hit = last(SOC)
    soc = soc_hit[1] if soc_hit is not None else float("nan")
    p = last(POWER)
    if p is not None:
        return p[1], p[0], False, soc
    hours = interval / pd.Timedelta(hours=1)
    prod = last(PRODUCTION, interval)
    if prod is not None:
        return prod[1] / hours, prod[0], True, soc
    off, inj = last(OFFTAKE, interval), last(INJECTION, interval)
    if off is not None or inj is not None:
        t = max(x[0] for x in (off, inj) if x is not None)
        kwh = (off[1] if off is not None and off[0] == t else 0.0) - (
            inj[1] if inj is not None and inj[0] == t else 0.0
        )
        return kwh / hours, t, True, soc
    return float("nan"), None, False, soc


def _power_now(
    parts: Mapping[str, tuple[float, pd.Timestamp | None, bool, float]], has: Mapping[str, bool]
) -> PowerNow:
    grid, t_g, e_g, _ = parts["meter"]
    solar, t_s, e_s, _ = parts["pv"] if has["pv"] else (0.0, None, False, float("nan"))
    bat, t_b, e_b, soc = parts["battery"] if has["battery"] else (0.0, None, False, float("nan"))
    g_in, g_out = max(grid, 0.0), max(-grid, 0.0)
    b_in, b_out = max(bat, 0.0), max(-bat, 0.0)
    if np.isnan(grid):
        g_in = g_out = float("nan")
    if np.isnan(bat):
        b_in = b_out = float("nan")
    solar = max(solar, 0.0) if not np.isnan(solar) else solar
    f = energy_flows(g_in, g_out, solar, b_in, b_out)
    times = [t for t in (t_g, t_s, t_b) if t is not None]
    return PowerNow(
        time=min(times) if times else None,
        grid_in_kw=g_in,
        grid_out_kw=g_out,
        solar_kw=solar,
        battery_in_kw=b_in,
        battery_out_kw=b_out,
        home_kw=float(f["home"]),
        state_of_charge=soc,
        estimated=e_g or e_s or e_b,
    )


def live_view(
    series: SeriesStore,
    twin: TwinStore,
    community: str,
    *,
    members: Sequence[str] | None = None,
    now: Any = None,
    tenant: str = "",
    tz: str = BRUSSELS,
    max_age: pd.Timedelta = pd.Timedelta(minutes=15),
    interval: pd.Timedelta = pd.Timedelta(minutes=15),
    board: LiveBoard | None = None,
) -> LiveView:
    """Live power and today's energy of each member and of the community.

    Parameters
    ----------
    series, twin
        The node's series store and entity store.
    community
        Community key (as in the entity ids).
    members
        Member keys (default: every meter of the community in the twin).
    now
        The current instant (tz-aware; default now): today is the local day of ``now`` in ``tz``,
        and only readings up to ``now`` count.
    tenant
        NGSI-LD tenant.
    tz
        Zone of the local day (Europe/Brussels).
    max_age
        Oldest power reading shown as live.
    interval
        Length of the energy intervals (15 min).
    board
        Latest readings kept in memory by the ingest (see :class:`LiveBoard`); None reads the
        database.

    Returns
    -------
    LiveView
    """
    now_ts = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if now_ts.tzinfo is None:
        raise ValueError(f"now {now!r} has no time zone")
    now_ts = now_ts.tz_convert("UTC")
    keys = list(members) if members is not None else community_members(twin, community, tenant=tenant)
    start = now_ts.tz_convert(tz).normalize().tz_convert("UTC")
    end = now_ts.floor(interval)  # intervals completed by now
    ids = {m: _ids(community, m) for m in keys}
    existing = set(twin.get_many(tenant, [i for d in ids.values() for i in d.values()]))
    grid_ids = [ids[m]["meter"] for m in keys]
    pv_ids = [ids[m]["pv"] for m in keys]
    bat_ids = [ids[m]["battery"] for m in keys]

    def read(eids: list[str], attr: str) -> pd.DataFrame:
        index = pd.date_range(start, end, freq=interval, inclusive="left")
        if not eids or not len(index):
            return pd.DataFrame(np.nan, index=index, columns=pd.Index(eids))
        frame = series.read(eids, attr, start, end, tenant=tenant)
        return frame.reindex(index)

    g_in, g_out = read(grid_ids, OFFTAKE), read(grid_ids, INJECTION)
    solar = read([i for i in pv_ids if i in existing], PRODUCTION)
    b_in = read([i for i in bat_ids if i in existing], OFFTAKE)
    b_out = read([i for i in bat_ids if i in existing], INJECTION)
    expected = len(g_in.index)
    results: dict[str, tuple[PowerNow, EnergyToday]] = {}
    sums: dict[str, float] = dict.fromkeys((*FLOW_NAMES, "intervals"), 0.0)
    powers: list[PowerNow] = []
    for m in keys:
        d = ids[m]
        has = {"pv": d["pv"] in existing, "battery": d["battery"] in existing}
        flows = (
            energy_flows(
                g_in[d["meter"]].to_numpy(),
                g_out[d["meter"]].to_numpy(),
                solar[d["pv"]].to_numpy() if has["pv"] else None,
                b_in[d["battery"]].to_numpy() if has["battery"] else None,
                b_out[d["battery"]].to_numpy() if has["battery"] else None,
            )
            if expected
            else {k: np.empty(0) for k in FLOW_NAMES}
        )
        totals = flow_totals(flows)
        for k in sums:
            sums[k] += totals[k]
        parts = {
            a: _latest(series, board, tenant, d[a], now_ts, max_age, interval)
            for a in ("meter", "pv", "battery")
            if a == "meter" or has[a]
        }
        power = _power_now(parts, has)
        powers.append(power)
        results[m] = (power, EnergyToday(start, now_ts, totals, expected))
    sums["intervals"] = float(min((r[1].totals["intervals"] for r in results.values()), default=0.0))
    sums.update(_ratios(sums))
    return LiveView(
        community, now_ts, results, _sum_power(powers), EnergyToday(start, now_ts, sums, expected)
    )


def _sum_power(powers: Sequence[PowerNow]) -> PowerNow:
    if not powers:
        nan = float("nan")
        return PowerNow(None, nan, nan, nan, nan, nan, nan)
    cols = ("grid_in_kw", "grid_out_kw", "solar_kw", "battery_in_kw", "battery_out_kw", "home_kw")
    total = {c: float(sum(getattr(p, c) for p in powers)) for c in cols}
    times = [p.time for p in powers if p.time is not None]
    return PowerNow(time=min(times) if times else None, estimated=any(p.estimated for p in powers), **total)
