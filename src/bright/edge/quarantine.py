"""The quarantine of an edge node: payloads, or records of them, that the ingest refused.

Nothing that reaches the node is dropped without a trace. A payload the ingest cannot use at all
(not SenML, a topic outside the tree, an unknown meter) is kept whole; a pack of which only some
records are refused (bad unit, NaN, out of physical range ...) has its good records written and
is kept with the indices of the refused ones. Each entry holds the raw payload, the topic, the
tenant, when it was received, one reason per refused record, and its status:

- ``open``: waiting for a fix (create the missing meter, correct a limit, fix the bridge);
- ``replayed``: re-processed successfully by :meth:`Quarantine.replay` (kept as an audit trail
  until deleted).

A replay runs the refused part of each payload through the same pipeline as live traffic, in one
transaction per entry: either the entry is marked replayed, or it stays open with the new reasons
and one more attempt. Entries are rows of ``edge_quarantine`` (SQLAlchemy Core, SQLite and
PostgreSQL), created by migration step 30.
"""

from __future__ import annotations

import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from bright.edge.senml import Rejection
from bright.twin import migrations

__all__ = [
    "Quarantine",
    "QuarantineEntry",
    "ReplayReport",
    "Replayer",
    "quarantine_table",
]

metadata = MetaData()
_ID = BigInteger().with_variant(Integer(), "sqlite")

quarantine_table = Table(
    "edge_quarantine",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("received_us", BigInteger, nullable=False),  # epoch microseconds (UTC)
    Column("topic", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),  # summary: the first reason and how many more
    Column("details", Text, nullable=False),  # JSON [{"record", "name", "reason"}]
    Column("records", Text, nullable=True),  # JSON [indices] refused; NULL = the whole payload
    Column("rejected", Integer, nullable=False),  # records refused (the pack size when whole)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_attempt_us", BigInteger, nullable=True),
    Index("ix_edge_quarantine_status", "status", "received_us"),
)

STATUSES = ("open", "replayed")
#: Largest entry id the column holds (signed 64-bit on PostgreSQL and SQLite).
MAX_ID = 2**63 - 1


def _entry_ids(ids: Sequence[int]) -> list[int]:
    """``ids`` as ints, refusing what no entry can have (the driver would overflow, not miss)."""
    out = [int(i) for i in ids]
    bad = [i for i in out if not 1 <= i <= MAX_ID]
    if bad:
        raise ValueError(f"quarantine entry ids are 1..{MAX_ID}; got {bad[0]}")
    return out


def _create(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


migrations.register(30, "edge: quarantine of refused readings", _create)


@dataclass(frozen=True)
class QuarantineEntry:
    """One quarantined payload.

    Attributes
    ----------
    id
        Row id.
    tenant, topic
        Where the payload was going and where it came from.
    received
        When it was received (UTC).
    payload
        The raw payload, byte for byte.
    reason
        Summary: the first reason and the number of others.
    rejections
        Every refused record: ``{"record": index or None, "name": ..., "reason": ...}``.
    records
        Indices of the refused records, None when the whole payload was refused.
    rejected
        Number of refused records.
    status
        ``open`` or ``replayed``.
    attempts
        Replays tried so far.
    last_attempt
        When the last replay was tried (UTC), or None.
    """

    id: int
    tenant: str
    received: pd.Timestamp
    topic: str
    payload: bytes
    reason: str
    rejections: list[dict[str, Any]]
    records: list[int] | None
    rejected: int
    status: str
    attempts: int
    last_attempt: pd.Timestamp | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (payload as text when it is UTF-8, else hex)."""
        try:
            payload: str = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            payload = self.payload.hex()
        return {
            "id": self.id,
            "tenant": self.tenant,
            "received": self.received.isoformat().replace("+00:00", "Z"),
            "topic": self.topic,
            "payload": payload,
            "reason": self.reason,
            "rejections": self.rejections,
            "records": self.records,
            "rejected": self.rejected,
            "status": self.status,
            "attempts": self.attempts,
            "lastAttempt": None
            if self.last_attempt is None
            else self.last_attempt.isoformat().replace("+00:00", "Z"),
        }


class Replayer(Protocol):
    """Re-processes a quarantined payload inside ``connection``'s transaction.

    Returns the number of readings written and the records still refused (an empty list means
    the entry is fixed).
    """

    def __call__(
        self,
        tenant: str,
        topic: str,
        payload: bytes,
        records: list[int] | None,
        connection: Connection,
    ) -> tuple[int, list[Rejection]]: ...


@dataclass
class ReplayReport:
    """What a replay did.

    Attributes
    ----------
    replayed
        Ids of the entries now fully accepted (status ``replayed``).
    still_open
        Ids of the entries still refused (with their new reasons).
    readings_written
        Readings written by the replay.
    """

    replayed: list[int] = field(default_factory=list)
    still_open: list[int] = field(default_factory=list)
    readings_written: int = 0


def _now_us() -> int:
    return _time.time_ns() // 1000


def _ts(us: int | None) -> pd.Timestamp | None:
    return None if us is None else pd.Timestamp(int(us), unit="us", tz="UTC")


def summarize(rejections: Sequence[Rejection]) -> str:
    """One line: the first reason (with its record) and how many others there are."""
    if not rejections:
        return ""
    first = rejections[0]
    where = "payload" if first.index is None else f"record {first.index}"
    more = len(rejections) - 1
    return f"{where}: {first.reason}" + (f" (and {more} more)" if more else "")


def entry_row(
    tenant: str,
    topic: str,
    payload: bytes,
    rejections: Sequence[Rejection],
    *,
    size: int | None = None,
    received_us: int | None = None,
) -> dict[str, Any]:
    """The ``edge_quarantine`` row of a refused payload (for bulk inserts in a caller's transaction).

    Parameters
    ----------
    tenant, topic, payload
        Where the payload was going, its topic and its raw bytes.
    rejections
        Why: one per refused record, or one with ``index=None`` for the whole payload.
    size
        Records in the pack, counted as refused when the whole payload is; None if unknown.
    received_us
        Reception time, epoch microseconds; default now.
    """
    if not rejections:
        raise ValueError("a quarantine entry needs at least one rejection")
    whole = any(r.index is None for r in rejections)
    indices = None if whole else sorted({int(r.index) for r in rejections if r.index is not None})
    return {
        "tenant": tenant,
        "received_us": _now_us() if received_us is None else int(received_us),
        "topic": topic,
        "payload": bytes(payload),
        "reason": summarize(rejections),
        "details": orjson.dumps([r.as_dict() for r in rejections]).decode(),
        "records": None if indices is None else orjson.dumps(indices).decode(),
        "rejected": (size or len(rejections)) if whole else len(indices or []),
        "status": "open",
        "attempts": 0,
        "last_attempt_us": None,
    }


class Quarantine:
    """The quarantine table of a node.

    Parameters
    ----------
    engine
        The node's SQLAlchemy engine (SQLite or PostgreSQL).
    create
        Apply pending migrations (creates ``edge_quarantine``).

    Examples
    --------
    >>> q = Quarantine(make_engine("sqlite:///twin.db"))                      # doctest: +SKIP
    >>> [e.reason for e in q.list(limit=5)]                                     # doctest: +SKIP
    ['payload: unknown meter urn:ngsi-ld:Meter:c1:m9 (not in the twin)']
    """

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        self.engine = engine
        if create:
            migrations.migrate(engine)

    # --- writing ------------------------------------------------------------------------------
    def add(
        self,
        tenant: str,
        topic: str,
        payload: bytes,
        rejections: Sequence[Rejection],
        *,
        size: int | None = None,
        received_us: int | None = None,
        connection: Connection | None = None,
    ) -> int:
        """Quarantine a payload; returns the entry id. See :func:`entry_row` for the parameters."""
        row = entry_row(tenant, topic, payload, rejections, size=size, received_us=received_us)
        stmt = insert(quarantine_table).values(row).returning(quarantine_table.c.id)
        if connection is not None:
            return int(connection.execute(stmt).scalar_one())
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).scalar_one())

    @staticmethod
    def add_rows(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows made by :func:`entry_row` inside ``connection``'s transaction."""
        if rows:
            connection.execute(insert(quarantine_table), list(rows))

    # --- reading ------------------------------------------------------------------------------
    def _where(self, tenant: str | None, status: str | None, topic: str | None) -> list[Any]:
        q = quarantine_table.c
        cond: list[Any] = []
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
            cond.append(q.status == status)
        if tenant is not None:
            cond.append(q.tenant == tenant)
        if topic is not None:
            # A prefix: 'bright/school-371/' lists a whole community. LIKE wildcards are escaped.
            esc = topic.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            cond.append(q.topic.like(esc + "%", escape="\\"))
        return cond

    def list(
        self,
        *,
        tenant: str | None = None,
        status: str | None = "open",
        topic: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[QuarantineEntry]:
        """Entries, oldest first.

        Parameters
        ----------
        tenant
            Only this tenant's entries; None for all.
        status
            ``open`` (default), ``replayed``, or None for both.
        topic
            Only entries whose topic starts with this prefix.
        limit, offset
            The page.
        """
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        q = quarantine_table
        stmt = (
            select(q)
            .where(*self._where(tenant, status, topic))
            .order_by(q.c.received_us, q.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(stmt)]

    def count(
        self, *, tenant: str | None = None, status: str | None = "open", topic: str | None = None
    ) -> int:
        """Number of entries matching the filters of :meth:`list`."""
        q = quarantine_table
        stmt = select(func.count()).select_from(q).where(*self._where(tenant, status, topic))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def get(self, entry_id: int) -> QuarantineEntry:
        """One entry; KeyError if there is none with this id."""
        q = quarantine_table
        row = None
        if 1 <= int(entry_id) <= MAX_ID:  # beyond the column's range no entry exists
            with self.engine.connect() as conn:
                row = conn.execute(select(q).where(q.c.id == int(entry_id))).first()
        if row is None:
            raise KeyError(f"no quarantine entry {entry_id}")
        return _entry(row)

    # --- deleting -----------------------------------------------------------------------------
    def delete(
        self,
        ids: Sequence[int] | None = None,
        *,
        tenant: str | None = None,
        status: str | None = None,
        before: Any = None,
    ) -> int:
        """Delete entries; returns how many.

        Parameters
        ----------
        ids
            These entries; None to delete by the filters only.
        tenant, status
            Only entries of this tenant / with this status.
        before
            Only entries received before this instant (tz-aware timestamp or ISO string).
        """
        q = quarantine_table
        cond = self._where(tenant, status, None)
        if ids is not None:
            if not ids:
                return 0
            cond.append(q.c.id.in_(_entry_ids(ids)))
        if before is not None:
            ts = pd.Timestamp(before)
            if ts.tzinfo is None:
                raise ValueError(f"before {before!r} has no time zone")
            cond.append(q.c.received_us < int(ts.tz_convert("UTC").value // 1000))
        if not cond:
            raise ValueError("refusing to delete every entry without a filter: pass ids, status or before")
        with self.engine.begin() as conn:
            return int(conn.execute(delete(q).where(*cond)).rowcount or 0)

    # --- replaying ----------------------------------------------------------------------------
    def replay(
        self,
        process: Replayer,
        ids: Sequence[int] | None = None,
        *,
        tenant: str | None = None,
        topic: str | None = None,
        limit: int = 10_000,
    ) -> ReplayReport:
        """Re-process open entries after a fix, one transaction per entry.

        Parameters
        ----------
        process
            The pipeline (e.g. :meth:`bright.edge.mqtt.Ingestor.replayer`): writes what it accepts in
            the given connection and returns what it still refuses.
        ids
            These entries (open ones only); None for every open entry matching the filters.
        tenant, topic
            Filters as for :meth:`list`.
        limit
            Largest number of entries replayed in one call.

        Returns
        -------
        ReplayReport
        """
        q = quarantine_table
        stmt = select(q).where(*self._where(tenant, "open", topic)).order_by(q.c.received_us, q.c.id)
        if ids is not None:
            stmt = stmt.where(q.c.id.in_(_entry_ids(ids)))
        report = ReplayReport()
        with self.engine.connect() as conn:
            entries = [_entry(r) for r in conn.execute(stmt.limit(limit))]
        for e in entries:
            with self.engine.begin() as conn:
                written, still = process(e.tenant, e.topic, e.payload, e.records, conn)
                now = _now_us()
                if not still:
                    conn.execute(
                        update(q)
                        .where(q.c.id == e.id)
                        .values(status="replayed", attempts=e.attempts + 1, last_attempt_us=now)
                    )
                else:
                    row = entry_row(e.tenant, e.topic, e.payload, still, size=e.rejected)
                    conn.execute(
                        update(q)
                        .where(q.c.id == e.id)
                        .values(
                            reason=row["reason"],
                            details=row["details"],
                            records=row["records"],
                            rejected=row["rejected"],
                            attempts=e.attempts + 1,
                            last_attempt_us=now,
                        )
                    )
            report.readings_written += written
            (report.replayed if not still else report.still_open).append(e.id)
        return report


def _entry(r: Any) -> QuarantineEntry:
    return QuarantineEntry(
        id=int(r.id),
        tenant=r.tenant,
        received=pd.Timestamp(int(r.received_us), unit="us", tz="UTC"),
        topic=r.topic,
        payload=bytes(r.payload),
        reason=r.reason,
        rejections=orjson.loads(r.details),
        records=None if r.records is None else orjson.loads(r.records),
        rejected=int(r.rejected),
        status=r.status,
        attempts=int(r.attempts),
        last_attempt=_ts(r.last_attempt_us),
    )
