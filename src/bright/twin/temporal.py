"""Attribute history of the twin: every instance with a time is kept and served by the temporal API.

Two stores back the history of an attribute:

- plain numeric instances (a number, ``observedAt``, optionally ``unitCode`` and ``datasetId``:
  meter readings, forecasts, schedules) go to the compact :class:`~bright.twin.series.SeriesStore`,
  where the analytics read them as DataFrames;
- every other instance (strings, relationships, geometries, instances with sub-attributes) is kept
  whole as JSON in ``temporal_instances``, one row per instance.

Reads merge both, ordered by time. Writing the same instant of the same attribute and dataset
twice replaces the earlier instance (both stores), so replays and retries are idempotent.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql

from bright.twin import migrations
from bright.twin.db import copy_rows, staging_table
from bright.twin.entities import format_datetime, parse_datetime
from bright.twin.errors import BadRequestData, ResourceNotFound
from bright.twin.series import SeriesStore, instance_id, instance_time

_meta = MetaData()
temporal_instances = Table(
    "temporal_instances",
    _meta,
    Column("pk", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("entity_id", Text, nullable=False),
    Column("attr", Text, nullable=False),
    Column("dataset_id", Text, nullable=False, default=""),  # '' = the default instance
    Column("t", String(32), nullable=False),  # observedAt (else createdAt), 'YYYY-MM-DDTHH:MM:SS.ffffffZ'
    Column("created_at", String(32), nullable=False),
    Column("modified_at", String(32), nullable=False),
    Column("instance_id", Text, nullable=False, unique=True),
    Column("doc", JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    UniqueConstraint("tenant", "entity_id", "attr", "dataset_id", "t", name="uq_temporal_instant"),
)
# Reads of one entity's history use the unique key's (tenant, entity_id) prefix: no other index
# (an index on (tenant, entity_id, t) cost a quarter of the writes of a batch's history).


def _create(conn: Connection) -> None:
    _meta.create_all(conn, checkfirst=True)


def _drop_time_index(conn: Connection) -> None:
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_temporal_entity_time")


migrations.register(15, "temporal instances", _create)
migrations.register(16, "temporal instances: read through the unique key only", _drop_time_index)

NUMERIC_KEYS = {
    "type",
    "value",
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
    "instanceId",
}


@lru_cache(maxsize=4096)
def canonical_time(text: str) -> str:
    """Fixed-width UTC text for ordering (microseconds always present).

    Cached: a batch stamps most instances with the same request time.
    """
    dt = datetime.fromisoformat(parse_datetime(text, "time").replace("Z", "+00:00"))
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_plain_numeric(inst: dict[str, Any]) -> bool:
    """A reading that fits the compact series store without losing anything."""
    v = inst.get("value")
    return (
        inst.get("type") == "Property"
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(float(v))
        and "observedAt" in inst
        and set(inst) <= NUMERIC_KEYS
    )


@dataclass(frozen=True)
class TimeFilter:
    """``timerel`` with ``timeAt``/``endTimeAt`` (UTC text) on ``timeproperty``.

    ``before``: t < timeAt; ``after``: t > timeAt; ``between``: timeAt <= t < endTimeAt.
    """

    timerel: str | None = None
    time_at: str | None = None
    end_time_at: str | None = None
    timeproperty: str = "observedAt"

    @classmethod
    def parse(
        cls, timerel: str | None, time_at: str | None, end_time_at: str | None, timeproperty: str | None
    ) -> TimeFilter:
        """Validate the temporal query parameters (BadRequestData naming the parameter)."""
        tp = timeproperty or "observedAt"
        if tp not in ("observedAt", "createdAt", "modifiedAt", "deletedAt"):
            raise BadRequestData(f"timeproperty {tp!r} is not observedAt, createdAt, modifiedAt or deletedAt")
        if timerel is None:
            if time_at is not None or end_time_at is not None:
                raise BadRequestData("timeAt/endTimeAt need timerel")
            return cls(None, None, None, tp)
        if timerel not in ("before", "after", "between"):
            raise BadRequestData(f"timerel {timerel!r} is not before, after or between")
        if time_at is None:
            raise BadRequestData("timerel needs timeAt")
        t1 = canonical_time(time_at)
        t2 = None
        if timerel == "between":
            if end_time_at is None:
                raise BadRequestData("timerel=between needs endTimeAt")
            t2 = canonical_time(end_time_at)
            if t2 <= t1:
                raise BadRequestData(f"endTimeAt {end_time_at} is not after timeAt {time_at}")
        return cls(timerel, t1, t2, tp)

    def bounds(self) -> tuple[str | None, str | None, bool]:
        """(start, end, start_exclusive) over canonical times: [start, end) or (start, end)."""
        if self.timerel == "before":
            return None, self.time_at, False
        if self.timerel == "after":
            return self.time_at, None, True
        if self.timerel == "between":
            return self.time_at, self.end_time_at, False
        return None, None, False


class TemporalStore:
    """History of attribute instances (see module docstring).

    Parameters
    ----------
    engine
        The node's database (the table is created by the migration step 15).
    series
        The numeric series store that keeps plain readings.
    """

    def __init__(self, engine: Engine, series: SeriesStore) -> None:
        self.engine = engine
        self.series = series
        self.postgres = engine.dialect.name == "postgresql"
        migrations.migrate(engine)

    # --- writes -------------------------------------------------------------------------------
    def add(self, tenant: str, entity_id: str, attrs: dict[str, list[dict[str, Any]]], now: str) -> int:
        """Append instances (``attrs``: attribute IRI -> instances); returns how many were stored."""
        return self.add_many(tenant, [(entity_id, attrs)], now)

    def add_many(
        self, tenant: str, items: list[tuple[str, dict[str, list[dict[str, Any]]]]], now: str
    ) -> int:
        """Append the instances of many entities in one transaction (bulk writes, batch upserts).

        Plain numeric readings go to the series store as one long frame per unit code; the other
        instances are upserted into ``temporal_instances`` in one statement (the same instant of
        the same attribute and dataset replaces the stored instance).
        """
        numeric: dict[str | None, list[tuple[str, str, str | None, str, float]]] = {}
        rows: list[tuple[str, ...]] = []
        # Instance ids: one random UUID per call and a counter (unique, and cheap for big batches).
        prefix = f"urn:ngsi-ld:instance:{uuid.uuid4()}-"
        ids = (f"{prefix}{n}" for n in itertools.count())
        for entity_id, attrs in items:
            self._split(tenant, entity_id, attrs, now, numeric, rows, ids)
        # One instance per instant of an attribute and dataset: the last one wins.
        if rows:
            rows = list({(r[1], r[2], r[3], r[4]): r for r in rows}.values())
        with self.engine.begin() as conn:
            for unit, points in numeric.items():
                entity_ids, attrs_, datasets, times, values = zip(*points, strict=True)
                frame = pd.DataFrame(
                    {
                        "entity_id": entity_ids,
                        "attribute": attrs_,
                        "dataset_id": datasets,
                        "time": pd.to_datetime(list(times), utc=True, format="ISO8601"),
                        "value": values,
                    }
                )
                self.series.write(frame, tenant=tenant, unit_code=unit, connection=conn)
            if rows:
                self._upsert_instances(conn, rows)
        return sum(len(p) for p in numeric.values()) + len(rows)

    def _upsert_instances(self, conn: Connection, rows: list[tuple[str, ...]]) -> None:
        """Insert JSON instances, replacing a stored one of the same instant (one statement)."""
        cols = "tenant, entity_id, attr, dataset_id, t, created_at, modified_at, instance_id, doc"
        conflict = (
            "ON CONFLICT (tenant, entity_id, attr, dataset_id, t) DO UPDATE SET "
            "created_at = excluded.created_at, modified_at = excluded.modified_at, "
            "instance_id = excluded.instance_id, doc = excluded.doc"
        )
        if self.postgres:
            # Streamed into a staging table, then one set-based upsert (no statement per row).
            staging_table(
                conn,
                "temporal_incoming",
                "tenant text, entity_id text, attr text, dataset_id text, t text, created_at text, "
                "modified_at text, instance_id text, doc jsonb",
            )
            copy_rows(conn, "temporal_incoming", cols.split(", "), rows)
            conn.exec_driver_sql(
                f"INSERT INTO temporal_instances ({cols}) SELECT {cols} FROM temporal_incoming {conflict}"
            )
            return
        conn.exec_driver_sql(
            f"INSERT INTO temporal_instances ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) {conflict}", rows
        )

    def _split(
        self,
        tenant: str,
        entity_id: str,
        attrs: dict[str, list[dict[str, Any]]],
        now: str,
        numeric: dict[str | None, list[tuple[str, str, str | None, str, float]]],
        rows: list[tuple[str, ...]],
        ids: Iterator[str],
    ) -> None:
        for attr, instances in attrs.items():
            for inst in instances:
                if is_plain_numeric(inst):
                    numeric.setdefault(inst.get("unitCode"), []).append(
                        (entity_id, attr, inst.get("datasetId"), inst["observedAt"], float(inst["value"]))
                    )
                    continue
                t = canonical_time(
                    inst.get("observedAt") or inst.get("modifiedAt") or inst.get("createdAt") or now
                )
                doc = {k: v for k, v in inst.items() if k != "instanceId"} if "instanceId" in inst else inst
                rows.append(
                    (
                        tenant,
                        entity_id,
                        attr,
                        inst.get("datasetId") or "",
                        t,
                        inst.get("createdAt", now),
                        inst.get("modifiedAt", now),
                        next(ids),
                        orjson.dumps(doc).decode(),
                    )
                )

    def delete_entity(self, tenant: str, entity_id: str) -> int:
        with self.engine.begin() as conn:
            n = conn.execute(
                delete(temporal_instances).where(
                    temporal_instances.c.tenant == tenant, temporal_instances.c.entity_id == entity_id
                )
            ).rowcount
            n += self.series.delete(entity_id, tenant=tenant, all_datasets=True, connection=conn)
        return int(n or 0)

    def delete_attribute(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        *,
        dataset_id: str | None = None,
        delete_all: bool = False,
    ) -> int:
        """Delete an attribute's history (one dataset, or all with ``delete_all``)."""
        conds = [
            temporal_instances.c.tenant == tenant,
            temporal_instances.c.entity_id == entity_id,
            temporal_instances.c.attr == attr,
        ]
        if not delete_all:
            conds.append(temporal_instances.c.dataset_id == (dataset_id or ""))
        with self.engine.begin() as conn:
            n = conn.execute(delete(temporal_instances).where(*conds)).rowcount or 0
            n += self.series.delete(
                entity_id,
                attr,
                tenant=tenant,
                dataset_id=dataset_id,
                all_datasets=delete_all,
                connection=conn,
            )
        return int(n)

    def _series_instance(self, instance: str) -> pd.Timestamp | None:
        try:
            return instance_time(instance)
        except ValueError:
            return None

    def delete_instance(self, tenant: str, entity_id: str, attr: str, instance: str) -> None:
        """Delete one instance by its instanceId (ResourceNotFound if it is not there)."""
        at = self._series_instance(instance)
        with self.engine.begin() as conn:
            if at is not None:
                found = 0
                for info in self.series.series(tenant, entity_id=entity_id, attribute=attr):
                    found += self.series.delete(
                        entity_id, attr, at=at, tenant=tenant, dataset_id=info.dataset_id, connection=conn
                    )
            else:
                found = (
                    conn.execute(
                        delete(temporal_instances).where(
                            temporal_instances.c.tenant == tenant,
                            temporal_instances.c.entity_id == entity_id,
                            temporal_instances.c.attr == attr,
                            temporal_instances.c.instance_id == instance,
                        )
                    ).rowcount
                    or 0
                )
        if not found:
            raise ResourceNotFound(f"no instance {instance} of attribute {attr} of {entity_id}")

    def modify_instance(
        self, tenant: str, entity_id: str, attr: str, instance: str, new: dict[str, Any], now: str
    ) -> None:
        """Replace one instance (keeping its instanceId when it is a stored JSON instance)."""
        at = self._series_instance(instance)
        if at is not None:
            if not any(
                len(
                    self.series.history(
                        entity_id,
                        attr,
                        at,
                        at + pd.Timedelta(microseconds=1),
                        tenant=tenant,
                        dataset_id=i.dataset_id,
                    )
                )
                for i in self.series.series(tenant, entity_id=entity_id, attribute=attr)
            ):
                raise ResourceNotFound(f"no instance {instance} of attribute {attr} of {entity_id}")
            self.delete_instance(tenant, entity_id, attr, instance)
            self.add(
                tenant,
                entity_id,
                {attr: [{**new, "observedAt": new.get("observedAt", format_datetime(at))}]},
                now,
            )
            return
        with self.engine.begin() as conn:
            row = conn.execute(
                select(temporal_instances.c.pk, temporal_instances.c.doc).where(
                    temporal_instances.c.tenant == tenant,
                    temporal_instances.c.entity_id == entity_id,
                    temporal_instances.c.attr == attr,
                    temporal_instances.c.instance_id == instance,
                )
            ).first()
            if row is None:
                raise ResourceNotFound(f"no instance {instance} of attribute {attr} of {entity_id}")
            doc = {**row[1], **{k: v for k, v in new.items() if k not in ("createdAt", "instanceId")}}
            doc["modifiedAt"] = now
            t = canonical_time(doc.get("observedAt") or doc.get("createdAt") or now)
            conn.execute(
                temporal_instances.update()
                .where(temporal_instances.c.pk == row[0])
                .values(doc=doc, t=t, modified_at=now)
            )

    # --- reads ---------------------------------------------------------------------------------
    def has_history(self, tenant: str, entity_id: str) -> bool:
        with self.engine.connect() as conn:
            hit = conn.execute(
                select(temporal_instances.c.pk)
                .where(temporal_instances.c.tenant == tenant, temporal_instances.c.entity_id == entity_id)
                .limit(1)
            ).first()
        return hit is not None or bool(self.series.series(tenant, entity_id=entity_id))

    def history(
        self,
        tenant: str,
        entity_id: str,
        *,
        attrs: Iterable[str] | None = None,
        when: TimeFilter | None = None,
        last_n: int | None = None,
        dataset_ids: Iterable[str] | None = None,
        include_series: bool = True,
    ) -> dict[str, list[dict[str, Any]]]:
        """Instances per attribute IRI in time order (``last_n``: the last ones of each attribute).

        ``include_series=False`` leaves out the compact numeric series (aggregations read them
        through :meth:`SeriesStore.aggregate` instead of materialising every instance).
        """
        when = when or TimeFilter()
        wanted = set(attrs) if attrs is not None else None
        ds_filter = set(dataset_ids) if dataset_ids is not None else None
        start, end, exclusive = when.bounds()
        out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        column = {
            "observedAt": temporal_instances.c.t,
            "createdAt": temporal_instances.c.created_at,
            "modifiedAt": temporal_instances.c.modified_at,
        }.get(when.timeproperty, temporal_instances.c.t)
        conds = [temporal_instances.c.tenant == tenant, temporal_instances.c.entity_id == entity_id]
        if wanted is not None:
            conds.append(temporal_instances.c.attr.in_(wanted))
        if start is not None:
            conds.append(column > start if exclusive else column >= start)
        if end is not None:
            conds.append(column < end)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    temporal_instances.c.attr,
                    temporal_instances.c.dataset_id,
                    temporal_instances.c.t,
                    temporal_instances.c.instance_id,
                    temporal_instances.c.doc,
                )
                .where(and_(*conds))
                .order_by(temporal_instances.c.t)
            ).all()
        for attr, ds, t, iid, doc in rows:
            if ds_filter is not None and (ds or "@none") not in ds_filter:
                continue
            out.setdefault(attr, []).append((t, {**doc, "instanceId": iid}))
        if include_series and when.timeproperty == "observedAt":
            s_start = pd.Timestamp(start) + pd.Timedelta(microseconds=1) if start and exclusive else start
            for info in self.series.series(tenant, entity_id=entity_id):
                if wanted is not None and info.attribute not in wanted:
                    continue
                if ds_filter is not None and (info.dataset_id or "@none") not in ds_filter:
                    continue
                hist = self.series.history(
                    entity_id,
                    info.attribute,
                    s_start,
                    end,
                    tenant=tenant,
                    dataset_id=info.dataset_id,
                    last_n=last_n,
                )
                for ts, value in hist.items():
                    stamp = pd.Timestamp(str(ts))
                    inst: dict[str, Any] = {
                        "type": "Property",
                        "value": int(value) if float(value).is_integer() else float(value),
                        "observedAt": format_datetime(stamp.to_pydatetime()),
                        "instanceId": instance_id(stamp),
                    }
                    if info.unit_code:
                        inst["unitCode"] = info.unit_code
                    if info.dataset_id:
                        inst["datasetId"] = info.dataset_id
                    out.setdefault(info.attribute, []).append((stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), inst))
        result: dict[str, list[dict[str, Any]]] = {}
        for attr, items in out.items():
            items.sort(key=lambda x: x[0])
            if last_n is not None:
                items = items[-last_n:]
            result[attr] = [inst for _, inst in items]
        return result


def period_seconds(text: str) -> float:
    """An ISO-8601 duration (``PT1H``, ``P1D``, ``P1W``, ``P1M`` as 30 days, ``P1Y`` as 365 days)."""
    import re

    m = re.fullmatch(
        r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?",
        text or "",
    )
    if not m or text in ("P", "PT"):
        raise BadRequestData(f"aggrPeriodDuration {text!r} is not an ISO-8601 duration such as PT1H or P1D")
    y, mo, w, d, h, mi, s = m.groups()
    return (
        int(y or 0) * 365 * 86400
        + int(mo or 0) * 30 * 86400
        + int(w or 0) * 7 * 86400
        + int(d or 0) * 86400
        + int(h or 0) * 3600
        + int(mi or 0) * 60
        + float(s or 0)
    )


AGGR_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")


def aggregate_instances(
    instances: list[dict[str, Any]],
    methods: list[str],
    period: str | None,
    start: str | None,
    end: str | None,
) -> dict[str, list[list[Any]]]:
    """NGSI-LD ``aggregatedValues`` of one attribute: per method, ``[value, bucketStart, bucketEnd]``.

    Buckets of ``period`` start at the first instance at or after ``start``; ``PT0S``/None is one bucket
    over the whole range. Counts use every instance; sum/avg/min/max/stddev/sumsq the numeric ones
    (stddev is the sample standard deviation, n - 1); empty buckets are left out.
    """
    stamped = []
    for inst in instances:
        t = inst.get("observedAt") or inst.get("createdAt")
        if t is None:
            continue
        stamped.append((datetime.fromisoformat(canonical_time(t).replace("Z", "+00:00")), inst))
    if not stamped:
        return {m: [] for m in methods}
    stamped.sort(key=lambda x: x[0])
    if start:
        lo = datetime.fromisoformat(start.replace("Z", "+00:00"))
        stamped = [x for x in stamped if x[0] >= lo]
        if not stamped:
            return {m: [] for m in methods}
    # Buckets start at the first instance of the range (as the series store and the ETSI suite do).
    t0 = stamped[0][0]
    t_end = (
        datetime.fromisoformat(end.replace("Z", "+00:00"))
        if end
        else stamped[-1][0] + timedelta(microseconds=1)
    )
    span = period_seconds(period) if period else 0.0
    buckets: dict[int, list[dict[str, Any]]] = {}
    for t, inst in stamped:
        if t < t0:
            continue
        k = 0 if span == 0 else int((t - t0).total_seconds() // span)
        buckets.setdefault(k, []).append(inst)
    out: dict[str, list[list[Any]]] = {m: [] for m in methods}
    for k in sorted(buckets):
        b_start = t0 + timedelta(seconds=k * span)
        b_end = t_end if span == 0 else b_start + timedelta(seconds=span)
        insts = buckets[k]
        nums = [
            float(i["value"])
            for i in insts
            if isinstance(i.get("value"), int | float) and not isinstance(i.get("value"), bool)
        ]
        keys = [orjson.dumps(i.get("value", i.get("object"))).decode() for i in insts]
        for m in methods:
            if m == "totalCount":
                v: Any = len(insts)
            elif m == "distinctCount":
                v = len(set(keys))
            elif not nums:
                continue
            elif m == "sum":
                v = sum(nums)
            elif m == "avg":
                v = sum(nums) / len(nums)
            elif m == "min":
                v = min(nums)
            elif m == "max":
                v = max(nums)
            elif m == "sumsq":
                v = sum(x * x for x in nums)
            else:  # stddev (sample)
                mean = sum(nums) / len(nums)
                v = math.sqrt(sum((x - mean) ** 2 for x in nums) / (len(nums) - 1)) if len(nums) > 1 else 0.0
            out[m].append([v, format_datetime(b_start), format_datetime(b_end)])
    return out
