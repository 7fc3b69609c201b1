"""MQTT ingest of SenML readings into the twin (``bright edge run --mqtt mqtt://127.0.0.1:1883``).

Delivery guarantee
------------------
The node subscribes with QoS 1 under a fixed client id and a persistent session (MQTT 5
``clean_start=False`` with a session expiry interval; MQTT 3.1.1 ``clean_session=False``), so the
broker keeps the messages that arrive while the node is away. Messages are acknowledged by hand
(paho-mqtt ``manual_ack``) and only **after** the transaction holding their readings (and their
quarantine entries) has committed: a crash of the node, of the broker or of the link before the
commit leaves the message unacknowledged and the broker delivers it again. Writes are idempotent
(a series keeps one value per instant), so a redelivered message changes nothing. An
acknowledgement is sent only on the connection that delivered the message: after a reconnect the
broker re-sends what was pending and it is written (again) and acknowledged then.

Throughput
----------
The network thread of paho only queues messages. The writer takes up to ``max_batch_messages``
packs (or ``max_batch_readings`` readings, or what arrived within ``max_delay_s`` of the first
one), resolves them, writes every series they touch in **one** transaction per batch (the series
store merges into its chunks), then acknowledges them in order. The MQTT 5 *receive maximum* lets
the broker keep that many unacknowledged messages in flight towards the node.

Validation
----------
Each pack goes through :mod:`bright.edge.senml`: the topic names the entity
(:mod:`bright.edge.topics`), which must exist in the twin (checked through a cache, one query per
batch for the entities not in it); units, NaN and physical ranges are checked per record against
the entity's :class:`~bright.edge.senml.Limits` (:func:`limits_of`). Refused records and payloads
go to the quarantine (:mod:`bright.edge.quarantine`) in the same transaction as the accepted ones.

Reconnection uses paho's exponential backoff (``reconnect_min_s`` doubling up to
``reconnect_max_s``); a failing database write is retried with the same backoff and the messages
are kept (unacknowledged) meanwhile.
"""

from __future__ import annotations

import logging
import math
import queue
import signal
import threading
import time as _time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from bright.edge import senml, topics
from bright.edge.quarantine import Quarantine, ReplayReport, entry_row
from bright.edge.senml import Limits, Rejection
from bright.twin.context import BRIGHT_NS, DEFAULT_VOCAB
from bright.twin.series import SeriesError, SeriesStore
from bright.twin.store import EntityEvent, TwinStore

__all__ = [
    "DEFAULT_MAX_POWER_KW",
    "BatchResult",
    "CommittedReadings",
    "EntityDirectory",
    "Ingestor",
    "Message",
    "MqttIngest",
    "MqttSettings",
    "limits_of",
    "parse_url",
    "run",
]

log = logging.getLogger("bright.edge.mqtt")

#: Largest power (kW) of an entity that states none: a large LV connection (e.g. a school).
DEFAULT_MAX_POWER_KW = 250.0
#: A PV array's AC power may exceed its kWp rating (cold, clear sky, cloud edges) by this factor.
PV_OVERLOAD = 1.25
_MAX_POWER_IRIS = (f"{DEFAULT_VOCAB}maxPower", f"{BRIGHT_NS}maxPowerKw", f"{BRIGHT_NS}maxPower")
_TYPE = {
    "pv": "https://smartdatamodels.org/dataModel.GreenEnergy/PhotovoltaicDevice",
    "battery": f"{BRIGHT_NS}Battery",
    "ev": "https://smartdatamodels.org/dataModel.Transportation/EVChargingStation",
    "heatpump": f"{BRIGHT_NS}HeatPump",
}
_W_UNITS = {"WTT": 1e-3, "KWT": 1.0, "MAW": 1e3}
_ENERGY_ATTRIBUTES = frozenset(q.attribute for q in senml.QUANTITIES.values() if q.kind == "energy")


# --- entity limits ----------------------------------------------------------------------------------
def _number(doc: Mapping[str, Any], iri: str) -> float | None:
    """The first numeric value of attribute ``iri`` (converted to kW when its unitCode is a power)."""
    for inst in doc.get("attrs", {}).get(iri, []):
        v = inst.get("value")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v) * _W_UNITS.get(str(inst.get("unitCode", "KWT")).upper(), 1.0)
    return None


def limits_of(
    doc: Mapping[str, Any], *, default_max_power_kw: float = DEFAULT_MAX_POWER_KW, interval_s: int = 900
) -> Limits:
    """The physical limits of an entity's readings, from its stored document.

    The largest power is, in order: the entity's ``maxPower`` attribute (kW, or W with unitCode
    ``WTT``); for a PV device its ``peakPower`` (kWp) x :data:`PV_OVERLOAD`; for a battery the larger
    of ``maxChargePower`` and ``maxDischargePower``; for an EV charger ``chargingPower`` x
    ``numberOfSockets``; for a heat pump its ``power``; otherwise ``default_max_power_kw``.

    Parameters
    ----------
    doc
        The stored entity document (expanded attribute IRIs, as :class:`TwinStore` keeps it).
    default_max_power_kw
        Largest power of an entity that states none, kW.
    interval_s
        Length of the energy intervals, s.

    Returns
    -------
    Limits
    """
    p = next((v for iri in _MAX_POWER_IRIS if (v := _number(doc, iri)) is not None and v > 0), None)
    types = set(doc.get("type", []))
    if p is None and _TYPE["pv"] in types:
        kwp = _number(doc, f"{BRIGHT_NS}peakPowerKwp")
        p = None if kwp is None else kwp * PV_OVERLOAD
    if p is None and _TYPE["battery"] in types:
        vals = [_number(doc, f"{BRIGHT_NS}maxChargePowerKw"), _number(doc, f"{BRIGHT_NS}maxDischargePowerKw")]
        known = [v for v in vals if v is not None]
        p = max(known) if known else None
    if p is None and _TYPE["ev"] in types:
        kw = _number(doc, f"{BRIGHT_NS}chargingPowerKw")
        sockets = _number(doc, f"{BRIGHT_NS}numberOfSockets") or 1.0
        p = None if kw is None else kw * sockets
    if p is None and _TYPE["heatpump"] in types:
        p = _number(doc, f"{BRIGHT_NS}powerKw")
    if p is None or p <= 0:
        p = default_max_power_kw
    return Limits(max_power_kw=float(p), interval_s=interval_s)


class EntityDirectory:
    """Which entities exist in the twin and their limits, cached.

    Known entities are cached for ``ttl_s``, unknown ones for ``missing_ttl_s`` (short, so that a
    meter created after its first readings were quarantined is found soon). When the ingest runs in
    the same process as the twin, register :meth:`on_entity_event` in ``TwinStore.listeners`` and
    changes apply at once.

    Parameters
    ----------
    store
        The twin's entity store.
    default_max_power_kw
        Largest power of an entity that states none, kW.
    interval_s
        Length of the energy intervals, s.
    ttl_s, missing_ttl_s
        Cache lifetimes of known and unknown entities, s.
    """

    def __init__(
        self,
        store: TwinStore,
        *,
        default_max_power_kw: float = DEFAULT_MAX_POWER_KW,
        interval_s: int = 900,
        ttl_s: float = 60.0,
        missing_ttl_s: float = 5.0,
        clock: Callable[[], float] = _time.monotonic,
    ) -> None:
        self.store = store
        self.default_max_power_kw = default_max_power_kw
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.missing_ttl_s = missing_ttl_s
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Limits | None]] = {}
        self._lock = threading.Lock()
        self.lookups = 0  # database queries made (for tests and stats)

    def limits(self, tenant: str, entity_ids: Iterable[str]) -> dict[str, Limits | None]:
        """Limits per entity id (None for an entity that does not exist); one query for the misses."""
        now = self._clock()
        out: dict[str, Limits | None] = {}
        missing: list[str] = []
        with self._lock:
            for eid in dict.fromkeys(entity_ids):
                hit = self._cache.get((tenant, eid))
                if hit is not None and hit[0] > now:
                    out[eid] = hit[1]
                else:
                    missing.append(eid)
        if missing:
            docs = self.store.get_many(tenant, missing)
            self.lookups += 1
            with self._lock:
                for eid in missing:
                    doc = docs.get(eid)
                    lim = (
                        None
                        if doc is None
                        else limits_of(
                            doc, default_max_power_kw=self.default_max_power_kw, interval_s=self.interval_s
                        )
                    )
                    self._cache[(tenant, eid)] = (
                        now + (self.ttl_s if doc is not None else self.missing_ttl_s),
                        lim,
                    )
                    out[eid] = lim
        return out

    def invalidate(self, tenant: str | None = None, entity_id: str | None = None) -> None:
        """Forget cached entries (all, a tenant's, or one entity's)."""
        with self._lock:
            if tenant is None and entity_id is None:
                self._cache.clear()
                return
            for key in [
                k
                for k in self._cache
                if (tenant is None or k[0] == tenant) and (entity_id is None or k[1] == entity_id)
            ]:
                del self._cache[key]

    def on_entity_event(self, event: EntityEvent) -> None:
        """A :class:`TwinStore` listener: drop the cached entry of a changed entity."""
        self.invalidate(event.tenant, event.entity_id)


# --- the pipeline -------------------------------------------------------------------------------------
@dataclass
class Message:
    """A received MQTT message.

    Attributes
    ----------
    topic, payload
        As received.
    mid, qos
        MQTT packet id and QoS (for the acknowledgement).
    received_us
        Reception time, epoch microseconds.
    epoch
        The connection that delivered it (acknowledgements go only to that connection).
    """

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1
    received_us: int = 0
    epoch: int = 0


@dataclass(frozen=True)
class CommittedReadings:
    """Readings just committed, for listeners (live view, subscriptions).

    Attributes
    ----------
    tenant
        The tenant written to.
    entity_id, attribute
        Per reading (object arrays).
    time_us
        Per reading, epoch microseconds (UTC).
    value
        Per reading, in the attribute's unit (kWh, kW, fraction, V, A, degC).
    """

    tenant: str
    entity_id: np.ndarray
    attribute: np.ndarray
    time_us: np.ndarray
    value: np.ndarray

    def __len__(self) -> int:
        return int(self.value.size)


@dataclass
class BatchResult:
    """What one batch did.

    Attributes
    ----------
    messages
        Messages processed.
    readings
        Readings written.
    rejected
        Records refused (a whole refused payload counts its records).
    quarantined
        Quarantine entries written.
    write_s
        Time spent in the database transaction, s.
    """

    messages: int = 0
    readings: int = 0
    rejected: int = 0
    quarantined: int = 0
    write_s: float = 0.0


@dataclass
class _Prepared:
    readings: list[senml.Readings] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0


Listener = Callable[[CommittedReadings], None]


class Ingestor:
    """Turns SenML messages into committed readings and quarantine entries (no MQTT here).

    Parameters
    ----------
    engine
        The twin's database engine.
    tenant
        NGSI-LD tenant written to.
    root
        Root of the topic tree.
    interval_s
        Length of the energy intervals, s (900 = 15 min).
    default_max_power_kw
        Largest power of an entity that states none, kW.
    directory
        The entity cache (a new one by default).
    clock
        Receiver clock for relative SenML times, epoch seconds (default :func:`time.time`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        tenant: str = "",
        root: str = topics.DEFAULT_ROOT,
        interval_s: int = 900,
        default_max_power_kw: float = DEFAULT_MAX_POWER_KW,
        directory: EntityDirectory | None = None,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        self.engine = engine
        self.tenant = tenant
        self.root = root
        self.interval_s = interval_s
        self.series = SeriesStore(engine)
        self.quarantine = Quarantine(engine)
        self.twin = directory.store if directory is not None else TwinStore(engine)
        self.directory = directory or EntityDirectory(
            self.twin, default_max_power_kw=default_max_power_kw, interval_s=interval_s
        )
        self.clock = clock
        self.listeners: list[Listener] = []

    # --- preparation (no database writes) ---------------------------------------------------------
    def _prepare(
        self, messages: Sequence[Message], tenant: str, only: Mapping[int, list[int] | None] | None = None
    ) -> _Prepared:
        out = _Prepared()
        now = self.clock()
        packs: list[tuple[int, topics.Address, list[Any]]] = []
        for k, m in enumerate(messages):
            try:
                addr = topics.parse_topic(m.topic, root=self.root)
                if addr.kind != "senml":
                    raise topics.TopicError(f"topic {m.topic!r} does not carry SenML readings")
                records = senml.decode(m.payload)
            except (topics.TopicError, senml.SenMLError) as exc:
                out.quarantine.append(
                    entry_row(
                        tenant,
                        m.topic,
                        m.payload,
                        [Rejection(None, None, str(exc))],
                        received_us=m.received_us or None,
                    )
                )
                out.rejected += 1
                continue
            packs.append((k, addr, records))
        limits = self.directory.limits(tenant, [a.entity_id for _, a, _ in packs]) if packs else {}
        for k, addr, records in packs:
            m = messages[k]
            lim = limits.get(addr.entity_id)
            if lim is None:
                reason = f"unknown {addr.entity_type} {addr.entity_id} (no such entity in the twin)"
                out.quarantine.append(
                    entry_row(
                        tenant,
                        m.topic,
                        m.payload,
                        [Rejection(None, None, reason)],
                        size=len(records),
                        received_us=m.received_us or None,
                    )
                )
                out.rejected += len(records)
                continue
            sel = None if only is None else only.get(k)
            readings, rejected = senml.convert(records, addr.entity_id, lim, now=now, only=sel)
            if rejected:
                out.quarantine.append(
                    entry_row(
                        tenant,
                        m.topic,
                        m.payload,
                        rejected,
                        size=len(records),
                        received_us=m.received_us or None,
                    )
                )
                out.rejected += len(rejected)
            if len(readings):
                out.readings.append(readings)
        return out

    # --- writing ------------------------------------------------------------------------------------
    def _write(self, conn: Connection, tenant: str, prepared: _Prepared) -> CommittedReadings | None:
        if prepared.quarantine:
            Quarantine.add_rows(conn, prepared.quarantine)
        if not prepared.readings:
            return None
        rs = prepared.readings
        counts = [len(r) for r in rs]
        total = sum(counts)
        ent = np.repeat(np.array([r.entity_id for r in rs], dtype=object), counts)
        attr = np.array(list(chain.from_iterable(r.attribute for r in rs)), dtype=object)
        unit = np.array(list(chain.from_iterable(r.unit_code for r in rs)), dtype=object)
        t = np.fromiter(chain.from_iterable(r.time_us for r in rs), dtype=np.int64, count=total)
        v = np.fromiter(chain.from_iterable(r.value for r in rs), dtype=np.float64, count=total)
        codes, uniques = pd.factorize(attr)
        for j, a in enumerate(uniques):
            sel = codes == j
            u = str(unit[np.argmax(sel)])
            frame = pd.DataFrame(
                {
                    "entity_id": ent[sel],
                    "time": pd.to_datetime(t[sel], unit="us", utc=True),
                    "value": v[sel],
                }
            )
            # Interval energies sum on aggregation; powers, levels and registers average.
            kind: Literal["energy", "power"] = "energy" if a in _ENERGY_ATTRIBUTES else "power"
            self.series.write(frame, tenant=tenant, attribute=str(a), unit_code=u, kind=kind, connection=conn)
        return CommittedReadings(tenant, ent, attr, t, v)

    def process(self, messages: Sequence[Message], *, tenant: str | None = None) -> BatchResult:
        """Validate and write a batch of messages in one transaction.

        Refused payloads and records are quarantined in the same transaction. If the batch's write
        is refused by the series store (e.g. a reading whose unit conflicts with its series), the
        messages are written one transaction each and the refused one is quarantined whole, so one
        bad message never blocks the others.

        Parameters
        ----------
        messages
            The batch.
        tenant
            Tenant to write to (default: the ingestor's).

        Returns
        -------
        BatchResult

        Raises
        ------
        sqlalchemy.exc.SQLAlchemyError
            The database is unavailable: nothing was committed (retry later).
        """
        tenant = self.tenant if tenant is None else tenant
        result = BatchResult(messages=len(messages))
        if not messages:
            return result
        t0 = _time.perf_counter()
        try:
            prepared = self._prepare(messages, tenant)
            with self.engine.begin() as conn:
                committed = self._write(conn, tenant, prepared)
        except SQLAlchemyError:
            raise  # the database: nothing committed, the caller retries
        except Exception as exc:
            log.warning("batch of %d messages refused (%s); writing them one by one", len(messages), exc)
            for m in messages:
                r = self._process_one(m, tenant)
                result.readings += r.readings
                result.rejected += r.rejected
                result.quarantined += r.quarantined
            result.write_s = _time.perf_counter() - t0
            return result
        result.write_s = _time.perf_counter() - t0
        result.readings = len(committed) if committed is not None else 0
        result.rejected = prepared.rejected
        result.quarantined = len(prepared.quarantine)
        if committed is not None:
            self._emit(committed)
        return result

    def _process_one(self, m: Message, tenant: str) -> BatchResult:
        """One message in its own transaction; quarantined whole if its write is refused."""
        size = 0
        try:
            prepared = self._prepare([m], tenant)
            size = sum(len(r) for r in prepared.readings)
            with self.engine.begin() as conn:
                committed = self._write(conn, tenant, prepared)
        except SQLAlchemyError:
            raise
        except Exception as exc:
            reason = (
                f"refused by the series store: {exc}"
                if isinstance(exc, SeriesError)
                else f"could not be processed: {exc!r}"
            )
            if not isinstance(exc, SeriesError):
                log.exception("message on %s could not be processed; quarantined", m.topic)
            with self.engine.begin() as conn:
                Quarantine.add_rows(
                    conn,
                    [
                        entry_row(
                            tenant,
                            m.topic,
                            m.payload,
                            [Rejection(None, None, reason)],
                            size=size or None,
                            received_us=m.received_us or None,
                        )
                    ],
                )
            return BatchResult(messages=1, rejected=max(size, 1), quarantined=1)
        if committed is not None:
            self._emit(committed)
        return BatchResult(
            messages=1,
            readings=len(committed) if committed is not None else 0,
            rejected=prepared.rejected,
            quarantined=len(prepared.quarantine),
        )

    def _emit(self, committed: CommittedReadings) -> None:
        for listener in self.listeners:
            try:
                listener(committed)
            except Exception:  # pragma: no cover - logged, the write stands
                log.exception("readings listener %r failed", listener)

    # --- quarantine replay -------------------------------------------------------------------------
    def replay_entry(
        self, tenant: str, topic: str, payload: bytes, records: list[int] | None, connection: Connection
    ) -> tuple[int, list[Rejection]]:
        """Re-process a quarantined payload (the refused ``records`` only, all when None) inside
        ``connection``; a :class:`~bright.edge.quarantine.Replayer` for
        :meth:`~bright.edge.quarantine.Quarantine.replay`."""
        self.directory.invalidate(tenant)
        prepared = self._prepare([Message(topic, payload)], tenant, only={0: records})
        rejections: list[Rejection] = []
        for row in prepared.quarantine:
            rejections += [
                Rejection(d["record"], d["name"], d["reason"]) for d in orjson.loads(row["details"])
            ]
        prepared.quarantine = []
        try:
            committed = self._write(connection, tenant, prepared)
        except SeriesError as exc:
            return 0, [Rejection(None, None, f"refused by the series store: {exc}")]
        if committed is not None:
            self._emit(committed)
        return (0 if committed is None else len(committed)), rejections

    def replay(self, ids: Sequence[int] | None = None, *, topic: str | None = None) -> ReplayReport:
        """Replay open quarantine entries of this ingestor's tenant (see :meth:`Quarantine.replay`)."""
        return self.quarantine.replay(self.replay_entry, ids, tenant=self.tenant, topic=topic)


# --- MQTT ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MqttSettings:
    """How the ingest connects and batches.

    Attributes
    ----------
    url
        Broker URL: ``mqtt://[user[:password]@]host[:port]`` (1883), ``mqtts://`` for TLS (8883).
    client_id
        Fixed client id: the broker keeps this id's session (subscriptions, pending messages).
    root
        Root of the topic tree.
    protocol
        ``"5"`` (MQTT 5, default) or ``"3.1.1"``.
    session_expiry_s
        How long the broker keeps the session while the node is away, s (MQTT 5).
    receive_maximum
        Unacknowledged messages the broker may have in flight towards the node (MQTT 5).
    keepalive_s
        MQTT keep-alive, s.
    reconnect_min_s, reconnect_max_s
        Reconnection backoff: first delay and cap, s (the delay doubles).
    max_batch_messages, max_batch_readings
        Largest batch written in one transaction, in messages and in records.
    max_delay_s
        Longest wait for a batch to fill after its first message, s.
    """

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "bright-edge-ingest"
    root: str = topics.DEFAULT_ROOT
    protocol: Literal["5", "3.1.1"] = "5"
    session_expiry_s: int = 7 * 86_400
    receive_maximum: int = 2_000
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    max_batch_messages: int = 1_000
    max_batch_readings: int = 200_000
    max_delay_s: float = 0.05


def parse_url(url: str) -> tuple[str, int, str | None, str | None, bool]:
    """``(host, port, username, password, tls)`` of an ``mqtt://`` or ``mqtts://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, user, password, tls


@dataclass
class IngestStats:
    """Counters of a running ingest (read them from any thread)."""

    received: int = 0
    written: int = 0
    rejected: int = 0
    quarantined: int = 0
    batches: int = 0
    acked: int = 0
    not_acked: int = 0  # committed, but the delivering connection was gone: the broker re-sends
    connects: int = 0
    write_errors: int = 0
    status: dict[str, Any] = field(default_factory=dict)


class MqttIngest:
    """The MQTT client of the ingest: subscribes, batches, writes through an :class:`Ingestor`, acks.

    Parameters
    ----------
    ingestor
        The pipeline.
    settings
        Connection and batching settings.

    Examples
    --------
    >>> ingest = MqttIngest(Ingestor(make_engine("sqlite:///twin.db")))   # doctest: +SKIP
    >>> ingest.start(); ...; ingest.stop()                                  # doctest: +SKIP
    """

    def __init__(self, ingestor: Ingestor, settings: MqttSettings | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.ingestor = ingestor
        self.settings = s = settings or MqttSettings()
        if ingestor.root != s.root:
            ingestor.root = s.root
        self.stats = IngestStats()
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._epoch = 0
        self._ack_lock = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._pending: list[Message] = []  # a batch whose write failed, retried first
        host, port, user, password, tls = parse_url(s.url)
        self._host, self._port = host, port
        v5 = s.protocol == "5"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
            reconnect_on_failure=True,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # --- paho callbacks (network thread) -----------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the connection: %s", reason)
            return
        with self._ack_lock:
            self._epoch += 1
        self.stats.connects += 1
        subs = [(f, 1) for f in topics.subscriptions(self.settings.root)]
        subs += [(f, 1) for f in topics.subscriptions(self.settings.root, "status")]
        client.subscribe(subs)
        self._connected.set()
        log.info(
            "connected to %s:%d (session present: %s)",
            self._host,
            self._port,
            getattr(flags, "session_present", None),
        )

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._ack_lock:  # no acknowledgement of this connection's messages from now on
            self._connected.clear()
            self._epoch += 1
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting with backoff", reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        topic = msg.topic
        if topic.endswith("/status"):
            self._on_status(topic, bytes(msg.payload))
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        self.stats.received += 1
        self._queue.put(
            Message(topic, bytes(msg.payload), msg.mid, msg.qos, _time.time_ns() // 1000, self._epoch)
        )

    def _on_status(self, topic: str, payload: bytes) -> None:
        try:
            addr = topics.parse_topic(topic, root=self.settings.root)
            self.stats.status[addr.entity_id] = orjson.loads(payload) if payload else None
        except (topics.TopicError, orjson.JSONDecodeError):
            log.info("ignored status message on %s", topic)

    # --- the writer ---------------------------------------------------------------------------------
    def _next_batch(self) -> list[Message]:
        s = self.settings
        batch = self._pending
        self._pending = []
        if not batch:
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                return []
        records = sum(m.payload.count(b"{") for m in batch)
        deadline = _time.monotonic() + s.max_delay_s
        while len(batch) < s.max_batch_messages and records < s.max_batch_readings:
            try:
                m = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - _time.monotonic()
                if left <= 0:
                    break
                try:
                    m = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            batch.append(m)
            records += m.payload.count(b"{")
        return batch

    def _write_loop(self) -> None:
        delay = float(self.settings.reconnect_min_s)
        while not self._stop.is_set() or not self._queue.empty() or self._pending:
            batch = self._next_batch()
            if not batch:
                if self._stop.is_set():
                    break
                continue
            try:
                result = self.ingestor.process(batch)
            except Exception:  # the database (or a bug): keep the messages unacknowledged and retry
                self.stats.write_errors += 1
                log.exception("writing a batch of %d messages failed; retrying in %.1f s", len(batch), delay)
                self._pending = batch
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, float(self.settings.reconnect_max_s))
                continue
            delay = float(self.settings.reconnect_min_s)
            self._ack(batch)
            st = self.stats
            st.batches += 1
            st.written += result.readings
            st.rejected += result.rejected
            st.quarantined += result.quarantined

    def _ack(self, batch: Sequence[Message]) -> None:
        # In receive order (MQTT requires it), only on the connection that delivered the message.
        with self._ack_lock:
            epoch = self._epoch
            connected = self._connected.is_set()
            for m in batch:
                if m.qos and connected and m.epoch == epoch:
                    self.client.ack(m.mid, m.qos)
                    self.stats.acked += 1
                elif m.qos:
                    self.stats.not_acked += 1

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self, *, wait_connected: float | None = 10.0) -> None:
        """Connect (in the background, with retries) and start the writer thread.

        Parameters
        ----------
        wait_connected
            Wait up to this long for the first connection, s (None: do not wait).

        Raises
        ------
        TimeoutError
            Not connected within ``wait_connected``.
        """
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        s = self.settings
        if s.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.session_expiry_s
            props.ReceiveMaximum = s.receive_maximum
            self.client.connect_async(
                self._host, self._port, s.keepalive_s, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(self._host, self._port, s.keepalive_s)
        self._stop.clear()
        self.client.loop_start()
        self._writer = threading.Thread(target=self._write_loop, name="bright-edge-writer", daemon=True)
        self._writer.start()
        if wait_connected is not None and not self._connected.wait(wait_connected):
            raise TimeoutError(
                f"no connection to the MQTT broker {self._host}:{self._port} within {wait_connected} s"
            )

    def stop(self, *, drain_s: float = 5.0) -> None:
        """Write what was received (up to ``drain_s``), acknowledge it, and disconnect."""
        deadline = _time.monotonic() + drain_s
        while (not self._queue.empty() or self._pending) and _time.monotonic() < deadline:
            _time.sleep(0.02)
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout=max(drain_s, 1.0))
        self.client.disconnect()
        self.client.loop_stop()

    def idle(self) -> bool:
        """Nothing received is waiting to be written."""
        return self._queue.empty() and not self._pending

    @property
    def connected(self) -> bool:
        return self._connected.is_set()


def run(
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    database_url: str | None = None,
    *,
    tenant: str = "",
    root: str = topics.DEFAULT_ROOT,
    client_id: str = "bright-edge-ingest",
    interval_s: int = 900,
    default_max_power_kw: float = DEFAULT_MAX_POWER_KW,
    stats_every_s: float = 10.0,
    stop: threading.Event | None = None,
    report: Callable[[IngestStats], None] | None = None,
) -> IngestStats:
    """Run the ingest until SIGINT/SIGTERM (or ``stop`` is set): ``bright edge run``.

    Parameters
    ----------
    mqtt_url
        Broker URL (``mqtt://host:port``).
    database_url
        The twin's database (default: ``BRIGHT_DATABASE_URL`` or ``sqlite:///bright.db``).
    tenant, root, client_id
        Tenant written to, topic root, fixed MQTT client id (its session is kept by the broker).
    interval_s
        Length of the energy intervals, s.
    default_max_power_kw
        Largest power of an entity that states none, kW.
    stats_every_s
        Call ``report`` with the counters this often, s.
    stop
        Set it to stop (tests, embedding); SIGINT and SIGTERM also stop when run in the main thread.
    report
        Receives the counters every ``stats_every_s`` (default: logged).

    Returns
    -------
    IngestStats
        The final counters.
    """
    from bright.config import Settings
    from bright.twin.db import make_engine

    settings = Settings.from_env(database_url=database_url)
    engine = make_engine(settings.database_url)
    ingestor = Ingestor(
        engine, tenant=tenant, root=root, interval_s=interval_s, default_max_power_kw=default_max_power_kw
    )
    ingest = MqttIngest(ingestor, MqttSettings(url=mqtt_url, client_id=client_id, root=root))
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    ingest.start(wait_connected=None)
    say = report or (
        lambda st: log.info(
            "received %d, written %d readings, quarantined %d", st.received, st.written, st.quarantined
        )
    )
    try:
        while not stop.wait(stats_every_s):
            say(ingest.stats)
    finally:
        ingest.stop()
        say(ingest.stats)
        engine.dispose()
    return ingest.stats
