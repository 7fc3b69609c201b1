"""The numeric time-series store of a twin node: meter readings, forecasts and schedules.

A *series* is the history of one numeric attribute of one entity: ``(tenant, entity id, attribute
IRI, datasetId)``. Millions of 15-minute values per community per year make a row per value too slow
to read back, so values are stored in **chunks**: one database row per series and chunk of time
holding two little-endian binary arrays (int64 epoch microseconds, float64 values) and the chunk's
statistics (instants, valid values, sum, sum of squares, min, max, first and last instant).

Chunk layout
------------
Chunk boundaries are fixed spans counted from Monday 1970-01-05 00:00 UTC, chosen per series at its
first write from the median spacing of its instants: the largest of 1 h, 6 h, 1 day, 7 days,
28 days and 364 days holding at most 4,096 instants (``chunk_span``). Quarter-hour series get
28-day chunks (2,688 values, 21.5 kB of values); hourly ones 28 days; daily ones 364 days;
1-minute ones one day; 1-second ones one hour. A chunk whose instants form a regular grid stores no
time array (its first instant and step rebuild it), so a regular 15-minute series costs 8 bytes per
value. The rows are keyed by ``(series id, chunk start)``: a meter-year is one index range scan of
14 rows. ``series`` is the catalogue (tenant, entity, attribute, datasetId -> id, unitCode, kind,
chunk span, first and last instant).

Writing
-------
Values are validated first (tz-aware timestamps, numbers, no +/-inf; NaN is an explicitly missing
value), then grouped by chunk with numpy and merged read-modify-write into the touched chunks in one
transaction: the same instant written twice keeps the last value, out-of-order writes are merged in
time order, re-writing identical values changes nothing. The first statement of a write upserts the
catalogue rows, which takes the write lock on SQLite and row locks (in key order, so concurrent
writers cannot deadlock) on PostgreSQL: writers of the same series are serialised.

Reading and aggregating
-----------------------
:meth:`SeriesStore.read` runs one SELECT per call (``IN`` over the entity ids) and decodes the
blobs with :func:`numpy.frombuffer`. Resolutions aggregate with ``sum`` for *energy* series
(quantities per interval: kWh, Wh, MWh) and ``mean`` for *power* series (rates and levels: kW,
prices, temperatures), in numpy over the decoded values. :meth:`SeriesStore.aggregate` (NGSI-LD
``aggrMethods``) answers buckets that contain whole chunks from the per-chunk statistics without
reading the chunk's values.

All instants are UTC and stamp the START of their interval; intervals are half-open ``[start, end)``.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    column,
    delete,
    func,
    or_,
    select,
    table,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from bright.twin import migrations
from bright.twin.db import copy_rows, is_postgres, staging_table

__all__ = [
    "AGGREGATION_METHODS",
    "Instance",
    "SeriesError",
    "SeriesInfo",
    "SeriesStore",
    "WriteResult",
    "instance_id",
    "instance_time",
    "kind_for_unit",
    "parse_period",
]

Kind = Literal["energy", "power"]

#: Chunk boundaries are counted from this instant (Monday 1970-01-05 00:00 UTC), in microseconds.
CHUNK_ORIGIN_US = 4 * 86_400 * 1_000_000
#: Candidate chunk spans in seconds, smallest first.
CHUNK_SPANS_S = (3_600, 21_600, 86_400, 7 * 86_400, 28 * 86_400, 364 * 86_400)
#: Largest number of instants a chunk is sized for (from the series' median spacing).
CHUNK_TARGET_VALUES = 4_096
#: Span used when a series starts with a single instant (sized as a quarter-hour series).
DEFAULT_CHUNK_SPAN_S = 28 * 86_400
_MAX_SPAN_US = max(CHUNK_SPANS_S) * 1_000_000
_LO, _HI = -(2**62), 2**62
_BATCH = 500  # keys per IN list
_MAX_BUCKETS = 20_000_000
_US = 1_000_000
_EPOCH = pd.Timestamp(0, tz="UTC")
_ONE_US = pd.Timedelta(microseconds=1)

#: UN/CEFACT unit codes of energy quantities (aggregated by sum); everything else aggregates by mean.
ENERGY_UNITS = frozenset({"KWH", "WHR", "MWH", "GWH", "KJ", "JOU", "MJ", "GJ", "E14", "K3"})

#: Aggregation methods: NGSI-LD ``aggrMethods`` names and their pandas-style aliases.
AGGREGATION_METHODS = {
    "totalCount": "count",
    "count": "count",
    "distinctCount": "distinct_count",
    "distinct_count": "distinct_count",
    "sum": "sum",
    "avg": "mean",
    "mean": "mean",
    "min": "min",
    "max": "max",
    "stddev": "stddev",
    "std": "stddev",
    "sumsq": "sumsq",
}
_COUNT_METHODS = frozenset({"count", "distinct_count"})


class SeriesError(ValueError):
    """Bad time-series input or request; the message names the entity/column and the instant.

    Attributes
    ----------
    entity_id
        The offending entity id or frame column, when one is to blame.
    time
        The first offending instant (ISO 8601), when one is to blame.
    """

    def __init__(self, message: str, *, entity_id: str | None = None, time: str | None = None) -> None:
        super().__init__(message)
        self.entity_id = entity_id
        self.time = time


# --- tables (own MetaData; created by migration step 10) ------------------------------------------
metadata = MetaData()
_ID = BigInteger().with_variant(Integer(), "sqlite")

series_table = Table(
    "series",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("entity_id", Text, nullable=False),
    Column("attr", Text, nullable=False),
    # '' is the default instance (no datasetId): NULL cannot take part in the unique key.
    Column("dataset_id", Text, nullable=False),
    Column("unit_code", String(32), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("chunk_span_s", BigInteger, nullable=False),
    Column("first_us", BigInteger, nullable=True),
    Column("last_us", BigInteger, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("modified_us", BigInteger, nullable=False),
    UniqueConstraint("tenant", "entity_id", "attr", "dataset_id", name="uq_series_key"),
)

chunks_table = Table(
    "series_chunks",
    metadata,
    Column("series_id", _ID, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("chunk_start", BigInteger, primary_key=True, autoincrement=False),  # epoch microseconds
    Column("n", Integer, nullable=False),  # instants stored (NaN included)
    Column("n_valid", Integer, nullable=False),  # non-NaN values
    Column("t_first", BigInteger, nullable=False),
    Column("t_last", BigInteger, nullable=False),
    Column("step_us", BigInteger, nullable=True),  # regular grid step; NULL when `times` is stored
    Column("v_sum", Float, nullable=True),
    Column("v_sumsq", Float, nullable=True),
    Column("v_min", Float, nullable=True),
    Column("v_max", Float, nullable=True),
    Column("modified_us", BigInteger, nullable=False),
    Column("times", LargeBinary, nullable=False),  # '<i8' epoch microseconds, empty when regular
    Column("vals", LargeBinary, nullable=False),  # '<f8' values, NaN = explicitly missing
)


#: The chunk columns a rewrite sets.
_CHUNK_VALUES = ("n", "n_valid", "t_first", "t_last", "step_us", "v_sum", "v_sumsq", "v_min", "v_max",
                 "modified_us", "times", "vals")  # fmt: skip


#: Rows from which PostgreSQL writes go through COPY (below, plain statements are cheaper).
_COPY_MIN_ROWS = 50
_SERIES_COLUMNS = ("tenant", "entity_id", "attr", "dataset_id", "unit_code", "kind", "chunk_span_s", "first_us",
                   "last_us", "created_us", "modified_us")  # fmt: skip
_SERIES_STAGING = (
    "tenant text, entity_id text, attr text, dataset_id text, unit_code text, kind text, chunk_span_s bigint, "
    "first_us bigint, last_us bigint, created_us bigint, modified_us bigint"
)
_CHUNK_COLUMNS = ("series_id", "chunk_start", *_CHUNK_VALUES)


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":
        # Out-of-line without pglz: the arrays do not compress and decompressing costs read time.
        conn.execute(text("ALTER TABLE series_chunks ALTER COLUMN times SET STORAGE EXTERNAL"))
        conn.execute(text("ALTER TABLE series_chunks ALTER COLUMN vals SET STORAGE EXTERNAL"))


migrations.register(10, "time series: catalogue and chunks", _create_tables)


# --- small public types -----------------------------------------------------------------------------
class Instance(NamedTuple):
    """One stored value: ``time`` (UTC, interval start) and ``value`` (NaN = explicitly missing)."""

    time: pd.Timestamp
    value: float


@dataclass(frozen=True)
class SeriesInfo:
    """A catalogue entry.

    Attributes
    ----------
    entity_id, attribute
        The entity id and the attribute IRI.
    dataset_id
        The NGSI-LD datasetId, None for the default instance.
    unit_code
        UN/CEFACT unit code (``KWH``, ``KWT`` ...) or None.
    kind
        ``"energy"`` (aggregates by sum) or ``"power"`` (aggregates by mean).
    first, last
        First and last stored instant (UTC), None when the series holds no value.
    count
        Number of stored non-missing values.
    chunk_span
        The span of the series' chunks.
    created, modified
        When the series was created and last written or deleted from (UTC; NGSI-LD
        ``createdAt``/``modifiedAt`` of the attribute's history).
    """

    entity_id: str
    attribute: str
    dataset_id: str | None
    unit_code: str | None
    kind: str
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    count: int
    chunk_span: pd.Timedelta
    created: pd.Timestamp
    modified: pd.Timestamp


@dataclass(frozen=True)
class WriteResult:
    """What a write did: ``values`` instants written (after de-duplication), ``series`` touched,
    ``chunks_inserted`` and ``chunks_updated`` rows (an identical re-write updates none)."""

    values: int
    series: int
    chunks_inserted: int
    chunks_updated: int


def instance_id(time: Any) -> str:
    """A stable NGSI-LD ``instanceId`` for the value stored at ``time`` in an attribute's history.

    Parameters
    ----------
    time
        The instant (tz-aware), UTC.

    Returns
    -------
    str
        ``urn:ngsi-ld:attribute:instance:<epoch microseconds>``; unique within one attribute's
        history (the key of a stored value is its instant), reversible with :func:`instance_time`.
    """
    return f"urn:ngsi-ld:attribute:instance:{_to_us(time, 'time')}"


_INSTANCE_RE = re.compile(r"^urn:ngsi-ld:attribute:instance:(-?\d+)$")


def instance_time(instance: str) -> pd.Timestamp:
    """The instant of an ``instanceId`` made by :func:`instance_id`; SeriesError for any other id."""
    m = _INSTANCE_RE.match(instance)
    if not m:
        raise SeriesError(f"instanceId {instance!r} does not name a stored time-series value")
    return pd.Timestamp(int(m.group(1)), unit="us", tz="UTC")


def kind_for_unit(unit_code: str | None) -> Kind:
    """``"energy"`` for UN/CEFACT energy (and volume-per-interval) codes, else ``"power"``."""
    return "energy" if unit_code is not None and unit_code.upper() in ENERGY_UNITS else "power"


# --- time helpers -------------------------------------------------------------------------------------
def _iso(us: int | np.integer) -> str:
    ts = pd.Timestamp(int(us), unit="us", tz="UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ts.microsecond:06d}" if ts.microsecond else "") + "Z"


def _to_us(value: Any, what: str) -> int:
    """Epoch microseconds of a tz-aware instant (Timestamp, datetime, ISO string, datetime64 is refused)."""
    if isinstance(value, str):
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError) as exc:
            raise SeriesError(f"{what} {value!r} is not a timestamp") from exc
    elif isinstance(value, (datetime, pd.Timestamp)):
        ts = pd.Timestamp(value)
    elif isinstance(value, date):
        raise SeriesError(f"{what} {value!r} is a date, not an instant with a time zone")
    else:
        raise SeriesError(f"{what} {value!r} is not a timestamp")
    if ts is pd.NaT:
        raise SeriesError(f"{what} is NaT")
    if ts.tzinfo is None:
        raise SeriesError(f"{what} {value!r} has no time zone; pass a UTC (tz-aware) timestamp")
    return int((ts.tz_convert("UTC") - _EPOCH) // _ONE_US)


def _bounds(start: Any, end: Any) -> tuple[int, int]:
    lo = _LO if start is None else _to_us(start, "start")
    hi = _HI if end is None else _to_us(end, "end")
    if hi < lo:
        raise SeriesError(f"the interval ends ({_iso(hi)}) before it starts ({_iso(lo)})")
    return lo, hi


def _now_us() -> int:
    return _time.time_ns() // 1000


def _utc_index(us: np.ndarray, name: str = "time") -> pd.DatetimeIndex:
    return pd.DatetimeIndex(us.astype("datetime64[us]"), name=name).tz_localize("UTC")


# --- periods --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """An aggregation period: calendar ``months`` and ``days`` (wall clock in the bucket time zone)
    plus an absolute duration ``micros`` (microseconds)."""

    months: int = 0
    days: int = 0
    micros: int = 0

    @property
    def calendar(self) -> bool:
        return bool(self.months or self.days)

    @property
    def zero(self) -> bool:
        return not (self.months or self.days or self.micros)

    def offset(self) -> pd.DateOffset:
        return pd.DateOffset(months=self.months, days=self.days, microseconds=self.micros)

    def min_us(self) -> int:
        """A lower bound of one period's length (months of 28 days, days of 23 hours)."""
        return self.months * 28 * 86_400 * _US + self.days * 23 * 3_600 * _US + self.micros


_ISO_DURATION = re.compile(
    r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$"
)


def parse_period(period: Any) -> Period:
    """Parse an aggregation period.

    Parameters
    ----------
    period
        An ISO 8601 duration (``PT15M``, ``PT1H``, ``P1D``, ``P1W``, ``P1M``, ``P1Y``), a pandas
        alias (``15min``, ``1h``, ``1D``, ``1W``, ``1MS``, ``1YS``), a :class:`pandas.Timedelta` or
        :class:`datetime.timedelta`.

    Returns
    -------
    Period
        Years and months are calendar months; days and weeks are calendar days (local days when a
        time zone is given to the reader: 23 or 25 hours across DST); hours and less are absolute.

    Raises
    ------
    SeriesError
        If the period cannot be parsed or is negative.
    """
    if isinstance(period, Period):
        return period
    if isinstance(period, (timedelta, pd.Timedelta, np.timedelta64)):
        micros = int(pd.Timedelta(period) // _ONE_US)
        if micros < 0:
            raise SeriesError(f"period {period!r} is negative")
        return Period(micros=micros)
    if not isinstance(period, str) or not period.strip():
        raise SeriesError(f"period {period!r} is not a duration")
    s = period.strip()
    if s.upper().startswith("P"):
        m = _ISO_DURATION.match(s.upper())
        if not m or s.upper() in ("P", "PT") or s.upper().endswith("T"):
            raise SeriesError(f"period {period!r} is not an ISO 8601 duration (e.g. PT15M, P1D, P1M)")
        y, mo, w, d, h, mi, sec = m.groups()
        seconds = float((sec or "0").replace(",", "."))
        micros = (int(h or 0) * 3600 + int(mi or 0) * 60) * _US + round(seconds * _US)
        return Period(
            months=12 * int(y or 0) + int(mo or 0), days=7 * int(w or 0) + int(d or 0), micros=micros
        )
    try:
        off = pd.tseries.frequencies.to_offset(s)
    except ValueError as exc:
        raise SeriesError(f"period {period!r} is not a duration (e.g. '15min', '1h', '1D', 'P1D')") from exc
    from pandas.tseries import offsets as o

    n = int(off.n)
    if n <= 0:
        raise SeriesError(f"period {period!r} must be positive")
    if isinstance(off, o.Day):
        return Period(days=n)
    if isinstance(off, o.Week):
        return Period(days=7 * n)
    if isinstance(off, (o.MonthBegin, o.MonthEnd)):
        return Period(months=n)
    if isinstance(off, (o.QuarterBegin, o.QuarterEnd)):
        return Period(months=3 * n)
    if isinstance(off, (o.YearBegin, o.YearEnd)):
        return Period(months=12 * n)
    if isinstance(off, o.Tick):
        return Period(micros=int(pd.Timedelta(off) // _ONE_US))
    raise SeriesError(
        f"period {period!r} is not supported (use a fixed duration, days, weeks, months or years)"
    )


def _bucket_edges(period: Period, lo: int, hi: int, *, origin: int | None, tz: str | None) -> np.ndarray:
    """Bucket edges (epoch µs) covering ``[lo, hi)``.

    With ``origin`` the buckets are ``origin + k * period`` (NGSI-LD: the query's start); without,
    they are aligned on the grid: multiples of an absolute period from the epoch, local midnight for
    days, Monday for weeks, the 1st for months, 1 January for years (in ``tz``, default UTC).
    """
    if hi <= lo:
        return np.array([lo, lo], dtype=np.int64)
    if period.zero:
        return np.array([lo if origin is None else origin, hi], dtype=np.int64)
    utc = tz is None or tz == "UTC"
    if not period.months and (utc or not period.days):
        # Absolute periods (and days/weeks in UTC, which all last 24 h): pure integer arithmetic.
        p = period.days * 86_400 * _US + period.micros
        grid0 = CHUNK_ORIGIN_US if period.days and period.days % 7 == 0 and not period.micros else 0
        first = origin if origin is not None else grid0 + ((lo - grid0) // p) * p
        count = -(-(hi - first) // p)
        if count > _MAX_BUCKETS:
            raise SeriesError(f"{count} buckets of {p / _US:g} s requested; narrow the interval")
        return first + p * np.arange(count + 1, dtype=np.int64)
    zone = tz or "UTC"
    if origin is not None:
        anchor = pd.Timestamp(origin, unit="us", tz="UTC").tz_convert(zone)
    else:
        anchor = pd.Timestamp(lo, unit="us", tz="UTC").tz_convert(zone).normalize()
        if period.months:
            anchor = anchor.replace(day=1)
            if period.months % 12 == 0:
                anchor = anchor.replace(month=1)
        elif period.days % 7 == 0:
            anchor = anchor - pd.DateOffset(days=anchor.weekday())
        anchor = anchor.normalize()  # re-localises after DateOffset across a DST change
    count = -(-(hi - int((anchor - _EPOCH) // _ONE_US)) // max(period.min_us(), 1)) + 2
    if count > _MAX_BUCKETS:
        raise SeriesError(f"{count} buckets requested; narrow the interval")
    edges = pd.date_range(anchor, periods=count, freq=period.offset()).tz_convert("UTC").as_unit("us").asi8
    cut = int(np.searchsorted(edges, hi, side="left"))
    return np.asarray(edges[: cut + 1], dtype=np.int64)


# --- numpy kernels ------------------------------------------------------------------------------------
def _bucket_reduce(
    t: np.ndarray, values: np.ndarray, edges: np.ndarray, methods: Iterable[str]
) -> dict[str, np.ndarray]:
    """Reduce time-sorted ``values`` (``(n, m)``) per bucket ``[edges[k], edges[k+1])``.

    Missing values (NaN) are skipped. A bucket without a valid value gives NaN (0 for the counts).
    ``stddev`` is the sample standard deviation (n - 1), NaN with fewer than two values.
    """
    nb, m = len(edges) - 1, values.shape[1]
    seg = np.searchsorted(t, edges, side="left")
    x = values[seg[0] : seg[-1]]
    s = seg - seg[0]
    width = np.diff(s)
    nonempty = width > 0
    starts = s[:-1][nonempty]
    valid = ~np.isnan(x)
    out: dict[str, np.ndarray] = {}
    methods = list(dict.fromkeys(methods))
    count = np.zeros((nb, m))
    total = np.full((nb, m), np.nan)
    if starts.size:
        count[nonempty] = np.add.reduceat(valid.astype(np.int64), starts, axis=0)
        z = np.where(valid, x, 0.0)
        total[nonempty] = np.add.reduceat(z, starts, axis=0)
    empty = count == 0
    total[empty] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    for method in methods:
        if method == "count":
            out[method] = count.copy()
        elif method == "sum":
            out[method] = total.copy()
        elif method == "mean":
            out[method] = mean.copy()
        elif method in ("min", "max"):
            r = np.full((nb, m), np.nan)
            if starts.size:
                ufunc = np.fmin if method == "min" else np.fmax
                r[nonempty] = ufunc.reduceat(x, starts, axis=0)
            out[method] = r
        elif method == "sumsq":
            r = np.full((nb, m), np.nan)
            if starts.size:
                z = np.where(valid, x, 0.0)
                r[nonempty] = np.add.reduceat(z * z, starts, axis=0)
            r[empty] = np.nan
            out[method] = r
        elif method == "stddev":
            r = np.full((nb, m), np.nan)
            if starts.size:
                bucket = np.repeat(np.arange(nb), width)
                d = np.where(valid, x - mean[bucket], 0.0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    r[nonempty] = np.sqrt(np.add.reduceat(d * d, starts, axis=0) / (count[nonempty] - 1))
            r[count < 2] = np.nan
            out[method] = r
        elif method == "distinct_count":
            r = np.zeros((nb, m))
            bucket = np.repeat(np.arange(nb), width)
            for j in range(m):
                ok = valid[:, j]
                b, v = bucket[ok], x[ok, j]
                if not b.size:
                    continue
                order = np.lexsort((v, b))
                b, v = b[order], v[order]
                new = np.r_[True, (b[1:] != b[:-1]) | (v[1:] != v[:-1])]
                r[:, j] = np.bincount(b[new], minlength=nb)
            out[method] = r
        else:  # pragma: no cover - names are normalised by the callers
            raise SeriesError(f"unknown aggregation method {method!r}")
    return out


def _normalise_methods(methods: str | Sequence[str]) -> list[tuple[str, str]]:
    """``[(name as asked, internal method)]``; SeriesError names an unknown method."""
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    out = []
    for name in names:
        if name not in AGGREGATION_METHODS:
            raise SeriesError(
                f"unknown aggregation method {name!r}; use one of {', '.join(sorted(AGGREGATION_METHODS))}"
            )
        out.append((name, AGGREGATION_METHODS[name]))
    if not out:
        raise SeriesError("no aggregation method given")
    return out


# --- chunk codec ----------------------------------------------------------------------------------
def _span_for(times: np.ndarray) -> int:
    """Chunk span (s) for a series whose first write has these sorted instants (epoch µs)."""
    if times.size < 2:
        return DEFAULT_CHUNK_SPAN_S
    step_us = float(np.median(np.diff(times)))
    if step_us <= 0:
        return DEFAULT_CHUNK_SPAN_S
    fitting = [s for s in CHUNK_SPANS_S if s * _US / step_us <= CHUNK_TARGET_VALUES]
    return fitting[-1] if fitting else CHUNK_SPANS_S[0]


def _decode(
    t_first: int, step: int | None, n: int, times: bytes, vals: bytes
) -> tuple[np.ndarray, np.ndarray]:
    v = np.frombuffer(vals, dtype="<f8")
    # No time array: a regular grid from the first instant (a single instant has step 0).
    t = np.frombuffer(times, dtype="<i8") if times else t_first + (step or 0) * np.arange(n, dtype=np.int64)
    return t, v


def _encode(t: np.ndarray, v: np.ndarray, now: int) -> dict[str, Any]:
    """The column values of a chunk holding sorted unique instants ``t`` (µs) and values ``v``."""
    n = int(t.size)
    if n == 1:
        # One instant (a reading recorded from an entity update): plain floats, no array passes.
        t0, v0 = int(t[0]), float(v[0])
        one: dict[str, Any] = {"n": 1, "n_valid": 0, "t_first": t0, "t_last": t0}
        if v0 == v0:  # not NaN
            one.update(n_valid=1, v_sum=v0, v_sumsq=v0 * v0, v_min=v0, v_max=v0)
        else:
            one.update(v_sum=None, v_sumsq=None, v_min=None, v_max=None)
        one.update(step_us=0, times=b"", vals=v.astype("<f8", copy=False).tobytes(), modified_us=now)
        return one
    valid = ~np.isnan(v)
    n_valid = int(np.count_nonzero(valid))
    row: dict[str, Any] = {"n": n, "n_valid": n_valid, "t_first": int(t[0]), "t_last": int(t[-1])}
    if n_valid:
        w = v if n_valid == n else v[valid]
        row.update(
            v_sum=float(w.sum()), v_sumsq=float(np.dot(w, w)), v_min=float(w.min()), v_max=float(w.max())
        )
    else:
        row.update(v_sum=None, v_sumsq=None, v_min=None, v_max=None)
    step: int | None = 0
    times = b""
    if n > 1:
        d = np.diff(t)
        step = int(d[0])
        if not (d == step).all():
            step, times = None, t.astype("<i8", copy=False).tobytes()
    row.update(step_us=step, times=times, vals=v.astype("<f8", copy=False).tobytes(), modified_us=now)
    return row


def _merge(
    t_old: np.ndarray, v_old: np.ndarray, t_new: np.ndarray, v_new: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Union of two sorted unique series; the new value wins at a shared instant."""
    pos = np.searchsorted(t_new, t_old)
    hit = pos < t_new.size
    hit[hit] = t_new[pos[hit]] == t_old[hit]
    keep = ~hit
    t = np.concatenate([t_old[keep], t_new])
    v = np.concatenate([v_old[keep], v_new])
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def _same(t_a: np.ndarray, v_a: np.ndarray, t_b: np.ndarray, v_b: np.ndarray) -> bool:
    return t_a.size == t_b.size and np.array_equal(t_a, t_b) and np.array_equal(v_a, v_b, equal_nan=True)


def _rows(conn: Connection, stmt: Any) -> list[Any]:
    """Rows of a SELECT that returns blobs. On PostgreSQL through a psycopg *binary* cursor: bytea in
    text format is hex-encoded, and decoding it triples the time of a bulk read."""
    if conn.dialect.name != "postgresql":
        return list(conn.execute(stmt))
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor(binary=True) as cur:
        cur.execute(str(compiled), compiled.params)
        return cur.fetchall()


# --- input normalisation ------------------------------------------------------------------------------
#: A fetched chunk: (first instant µs, step µs or None, instants, times blob, values blob).
_RawChunk = tuple[int, Any, int, bytes, bytes]


@dataclass
class _Batch:
    entity_id: str
    attr: str
    dataset_id: str  # '' = default instance
    times: np.ndarray  # sorted unique epoch µs
    values: np.ndarray  # float64


def _numeric(col: pd.Series, label: str, t_us: np.ndarray) -> np.ndarray:
    """``col`` as float64; SeriesError naming ``label`` and the first non-numeric or infinite value."""
    dtype = col.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise SeriesError(
            f"entity {label!r}: boolean values are not numbers (first at {_iso(t_us[0])})",
            entity_id=label,
            time=_iso(t_us[0]),
        )
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        arr = col.to_numpy(dtype="float64", na_value=np.nan)
    else:
        raw = col.to_numpy(dtype=object)
        # Only real numbers pass: no strings (not even '1.5'), booleans or other objects.
        is_num = np.fromiter(
            (
                isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))
                for x in raw
            ),
            dtype=bool,
            count=raw.size,
        )
        is_missing = pd.isna(col).to_numpy()
        bad = ~(is_num | is_missing)
        if bad.any():
            i = int(np.argmax(bad))
            raise SeriesError(
                f"entity {label!r}: value {raw[i]!r} at {_iso(t_us[i])} is not a number",
                entity_id=label,
                time=_iso(t_us[i]),
            )
        arr = np.where(is_missing, np.nan, raw).astype("float64")
    inf = np.isinf(arr)
    if inf.any():
        i = int(np.argmax(inf))
        raise SeriesError(
            f"entity {label!r}: value {arr[i]} at {_iso(t_us[i])} is infinite (use NaN for a missing value)",
            entity_id=label,
            time=_iso(t_us[i]),
        )
    return arr


def _index_us(index: pd.Index, label: str) -> np.ndarray:
    if not isinstance(index, pd.DatetimeIndex):
        raise SeriesError(
            f"{label}: the index must be a tz-aware DatetimeIndex (UTC), not {type(index).__name__}",
            entity_id=label,
        )
    if index.tz is None:
        first = str(index[0]) if len(index) else "-"
        raise SeriesError(
            f"{label}: timestamps have no time zone (first: {first}); localise them (UTC) before writing",
            entity_id=label,
            time=first,
        )
    if index.hasnans:
        i = int(np.argmax(index.isna()))
        raise SeriesError(f"{label}: timestamp #{i} is NaT", entity_id=label)
    return np.asarray(index.tz_convert("UTC").as_unit("us").asi8, dtype=np.int64)


def _last_wins(t: np.ndarray) -> np.ndarray | None:
    """Positions that sort ``t`` keeping the last of equal instants; None if already strictly sorted."""
    if t.size < 2 or bool((t[1:] > t[:-1]).all()):
        return None
    order = np.argsort(t, kind="stable")
    ts = t[order]
    return order[np.r_[ts[1:] != ts[:-1], True]]


def _check_key(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise SeriesError(f"{what} {value!r} must be a non-empty string", entity_id=str(value))
    return value


def _wide_batches(frame: pd.DataFrame, attribute: str, dataset_id: str, skip_missing: bool) -> list[_Batch]:
    cols = list(frame.columns)
    if len(set(cols)) != len(cols):
        dup = next(c for c in cols if cols.count(c) > 1)
        raise SeriesError(f"column {dup!r} appears twice", entity_id=str(dup))
    for c in cols:
        _check_key(c, "column (entity id)")
    label = ", ".join(repr(c) for c in cols[:3]) + (" ..." if len(cols) > 3 else "")
    t = _index_us(frame.index, f"frame of {label}" if cols else "frame")
    arrays = [_numeric(frame.iloc[:, j], cols[j], t) for j in range(len(cols))]
    sel = _last_wins(t)
    if sel is not None:
        t = t[sel]
        arrays = [a[sel] for a in arrays]
    out = []
    for c, v in zip(cols, arrays, strict=True):
        tt = t
        if skip_missing:
            ok = ~np.isnan(v)
            if not ok.all():
                tt, v = t[ok], v[ok]
        if tt.size:
            out.append(_Batch(c, attribute, dataset_id, tt, v))
    return out


def _parse_times(col: pd.Series, entities: np.ndarray) -> np.ndarray:
    """Epoch µs of a long-format ``time`` column; zone-less or unparsable stamps raise."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        if col.isna().any():
            i = int(np.argmax(col.isna().to_numpy()))
            raise SeriesError(f"entity {entities[i]!r}: row {i} has no time", entity_id=str(entities[i]))
        return np.asarray(col.dt.tz_convert("UTC").dt.as_unit("us").astype("int64"), dtype=np.int64)
    if pd.api.types.is_datetime64_dtype(col.dtype):
        i = 0
        raise SeriesError(
            f"entity {entities[i]!r}: time {col.iloc[i]} has no time zone; pass tz-aware UTC timestamps",
            entity_id=str(entities[i]),
            time=str(col.iloc[i]),
        )
    raw = col.to_numpy(dtype=object)
    us = np.empty(raw.size, dtype=np.int64)
    strings = np.fromiter((isinstance(x, str) for x in raw), dtype=bool, count=raw.size)
    if strings.any():
        s = pd.Series(raw[strings], dtype=object).astype(str)
        zoned = s.str.contains(r"(?:Z|[+-]\d\d(?::?\d\d)?)\s*$", regex=True).to_numpy()
        if not zoned.all():
            i = int(np.flatnonzero(strings)[np.argmax(~zoned)])
            raise SeriesError(
                f"entity {entities[i]!r}: time {raw[i]!r} has no time zone",
                entity_id=str(entities[i]),
                time=raw[i],
            )
        parsed = pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce")
        if parsed.isna().any():
            i = int(np.flatnonzero(strings)[np.argmax(parsed.isna().to_numpy())])
            raise SeriesError(
                f"entity {entities[i]!r}: time {raw[i]!r} is not an ISO 8601 timestamp",
                entity_id=str(entities[i]),
                time=str(raw[i]),
            )
        us[strings] = parsed.dt.as_unit("us").astype("int64").to_numpy()
    for k in np.flatnonzero(~strings).tolist():  # datetime objects: rare in a long frame, one by one
        us[k] = _to_us(raw[k], f"entity {entities[k]!r}: time")
    return us


def _long_batches(
    frame: pd.DataFrame, attribute: str | None, dataset_id: str, skip_missing: bool
) -> list[_Batch]:
    missing = {"entity_id", "time", "value"} - set(frame.columns)
    if missing:
        raise SeriesError(f"long-format frame lacks column(s) {sorted(missing)}")
    if "attribute" in frame.columns and attribute is not None:
        raise SeriesError("give the attribute either as the 'attribute' column or as the argument, not both")
    if "attribute" not in frame.columns and attribute is None:
        raise SeriesError("no attribute: pass attribute=... or an 'attribute' column")
    entities = frame["entity_id"].to_numpy(dtype=object)
    bad_entity = np.fromiter(
        (not isinstance(e, str) or not e for e in entities), dtype=bool, count=entities.size
    )
    if bad_entity.any():
        i = int(np.argmax(bad_entity))
        raise SeriesError(
            f"row {i}: entity_id {entities[i]!r} must be a non-empty string", entity_id=str(entities[i])
        )
    attrs = (
        frame["attribute"].to_numpy(dtype=object)
        if "attribute" in frame.columns
        else np.full(len(frame), attribute, dtype=object)
    )
    for a in pd.unique(attrs):
        _check_key(a, "attribute")
    if "dataset_id" in frame.columns:
        ds = frame["dataset_id"].to_numpy(dtype=object)
        ds = np.where(pd.isna(ds), dataset_id, ds)
        for d in pd.unique(ds):
            if not isinstance(d, str):
                raise SeriesError(f"dataset_id {d!r} must be a string (or empty for the default instance)")
    else:
        ds = np.full(len(frame), dataset_id, dtype=object)
    t = _parse_times(frame["time"], entities)
    # Validate the values per entity so the message names the entity.
    v = frame["value"]
    indices: dict[Any, Any] = (
        pd.DataFrame({"e": entities, "a": attrs, "d": ds}).groupby(["e", "a", "d"]).indices
    )
    groups = {k: np.asarray(v) for k, v in indices.items()}
    values = np.empty(len(frame))
    if pd.api.types.is_numeric_dtype(v.dtype) and not pd.api.types.is_bool_dtype(v.dtype):
        values = v.to_numpy(dtype="float64", na_value=np.nan)
        inf = np.isinf(values)
        if inf.any():
            i = int(np.argmax(inf))
            raise SeriesError(
                f"entity {entities[i]!r}: value {values[i]} at {_iso(t[i])} is infinite (use NaN for a missing value)",
                entity_id=str(entities[i]),
                time=_iso(t[i]),
            )
    else:
        for (e, _a, _d), rows in groups.items():
            values[rows] = _numeric(v.iloc[rows], e, t[rows])
    out = []
    for (e, a, d), rows in groups.items():
        tt, vv = t[rows], values[rows]
        sel = _last_wins(tt)
        if sel is not None:
            tt, vv = tt[sel], vv[sel]
        if skip_missing:
            ok = ~np.isnan(vv)
            tt, vv = tt[ok], vv[ok]
        if tt.size:
            out.append(_Batch(e, a, d, tt, vv))
    return out


# --- the store ------------------------------------------------------------------------------------
class SeriesStore:
    """Numeric time series of every tenant of one node, on SQLite or PostgreSQL.

    Parameters
    ----------
    engine
        The node's SQLAlchemy engine (:func:`bright.twin.db.make_engine`).
    create
        Apply pending migrations (creates the ``series`` and ``series_chunks`` tables).

    Examples
    --------
    >>> store = SeriesStore(make_engine("sqlite:///twin.db"))          # doctest: +SKIP
    >>> store.write(offtake_kwh, attribute=OFFTAKE, unit_code="KWH")    # doctest: +SKIP
    >>> store.read(["urn:ngsi-ld:Meter:1"], OFFTAKE, "2024-01-01T00:00Z", "2025-01-01T00:00Z",
    ...            resolution="P1D")                                     # doctest: +SKIP
    """

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        self.engine = engine
        self.postgres = is_postgres(engine)
        if create:
            migrations.migrate(engine)

    # --- writing --------------------------------------------------------------------------------
    def write(
        self,
        frame: pd.DataFrame | pd.Series,
        *,
        tenant: str = "",
        attribute: str | None = None,
        dataset_id: str | None = None,
        unit_code: str | None = None,
        kind: Kind | None = None,
        skip_missing: bool = False,
        connection: Connection | None = None,
    ) -> WriteResult:
        """Write values; the same instant written again replaces the stored value.

        Parameters
        ----------
        frame
            Either a *wide* frame: tz-aware :class:`~pandas.DatetimeIndex` (interval start; any zone,
            stored as UTC) and one column per entity id, values in the series' unit (e.g. kWh per
            interval for an energy series, kW for a power series); a :class:`~pandas.Series` named
            by its entity id is a one-column wide frame. Or a *long* frame with columns
            ``entity_id``, ``time`` (tz-aware, or ISO 8601 strings with a zone), ``value`` and
            optionally ``attribute`` and ``dataset_id``. Within one call, the last row of an
            instant wins. NaN is an explicitly missing value (stored, read back as NaN).
        tenant
            NGSI-LD tenant ('' = default).
        attribute
            Attribute IRI (expanded), required unless the long frame has an ``attribute`` column.
        dataset_id
            NGSI-LD datasetId; None for the default instance.
        unit_code
            UN/CEFACT unit code of the values (``KWH``, ``KWT`` ...), recorded on the series. A
            series keeps its unit: writing another unit raises.
        kind
            ``"energy"`` (resolutions sum) or ``"power"`` (resolutions average); by default from the
            unit (:func:`kind_for_unit`), ``"power"`` without a unit.
        skip_missing
            Do not write NaN values (e.g. a wide frame whose columns cover different periods)
            instead of storing them as explicitly missing.
        connection
            Run inside this connection's transaction (e.g. with an entity update) instead of a
            transaction of its own.

        Returns
        -------
        WriteResult

        Raises
        ------
        SeriesError
            Naive timestamps, non-numeric or infinite values, empty entity ids, a unit or kind
            conflicting with the series' one. The message names the entity/column and the first
            offending instant. Nothing is written when it is raised.
        """
        if kind is not None and kind not in ("energy", "power"):
            raise SeriesError(f"kind {kind!r} must be 'energy' or 'power'")
        if unit_code is not None and (not isinstance(unit_code, str) or not unit_code.strip()):
            raise SeriesError(f"unit_code {unit_code!r} must be a non-empty string")
        ds = "" if dataset_id is None else _check_key(dataset_id, "dataset_id")
        if isinstance(frame, pd.Series):
            if frame.name is None:
                raise SeriesError("a Series needs a name: its entity id")
            frame = frame.to_frame()
        if not isinstance(frame, pd.DataFrame):
            raise SeriesError(f"expected a DataFrame, got {type(frame).__name__}")
        if {"entity_id", "time", "value"} <= set(frame.columns) and not isinstance(
            frame.index, pd.DatetimeIndex
        ):
            batches = _long_batches(frame, attribute, ds, skip_missing)
        else:
            if attribute is None:
                raise SeriesError("no attribute given: pass attribute=<IRI>")
            batches = _wide_batches(frame, _check_key(attribute, "attribute"), ds, skip_missing)
        if not batches:
            return WriteResult(0, 0, 0, 0)
        if connection is not None:
            return self._write(connection, tenant, batches, unit_code, kind)
        with self.engine.begin() as conn:
            return self._write(conn, tenant, batches, unit_code, kind)

    def _upsert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        s = series_table
        ins = (postgresql.insert if self.postgres else sqlite.insert)(s)
        if self.postgres and len(rows) > _COPY_MIN_ROWS:
            # Many series at once (a batch of entities): COPY into a staging table, then one
            # set-based upsert instead of a statement per series.
            staging_table(conn, "series_incoming", _SERIES_STAGING)
            copy_rows(
                conn, "series_incoming", _SERIES_COLUMNS, ([r[c] for c in _SERIES_COLUMNS] for r in rows)
            )
            staged = table("series_incoming", *(column(c) for c in _SERIES_COLUMNS))
            ins = postgresql.insert(s).from_select(
                list(_SERIES_COLUMNS), select(*(staged.c[c] for c in _SERIES_COLUMNS))
            )
            rows = []
        ex = ins.excluded
        stmt = ins.on_conflict_do_update(
            index_elements=[s.c.tenant, s.c.entity_id, s.c.attr, s.c.dataset_id],
            set_={
                "first_us": case(
                    (or_(s.c.first_us.is_(None), ex.first_us < s.c.first_us), ex.first_us), else_=s.c.first_us
                ),
                "last_us": case(
                    (or_(s.c.last_us.is_(None), ex.last_us > s.c.last_us), ex.last_us), else_=s.c.last_us
                ),
                "modified_us": ex.modified_us,
            },
        )
        if rows:
            conn.execute(stmt, rows)
        else:
            conn.execute(stmt)

    def _lookup(
        self, conn: Connection, tenant: str, keys: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Any]:
        """Catalogue rows by (entity, attr, dataset) key, one IN query per (attr, dataset)."""
        s = series_table
        by_attr: dict[tuple[str, str], list[str]] = {}
        for e, a, d in keys:
            by_attr.setdefault((a, d), []).append(e)
        out: dict[tuple[str, str, str], Any] = {}
        for (a, d), ents in by_attr.items():
            for i in range(0, len(ents), _BATCH):
                q = select(s).where(
                    s.c.tenant == tenant,
                    s.c.attr == a,
                    s.c.dataset_id == d,
                    s.c.entity_id.in_(ents[i : i + _BATCH]),
                )
                for row in conn.execute(q):
                    out[(row.entity_id, a, d)] = row
        return out

    def _write(
        self, conn: Connection, tenant: str, batches: list[_Batch], unit_code: str | None, kind: Kind | None
    ) -> WriteResult:
        now = _now_us()
        batches.sort(key=lambda b: (b.entity_id, b.attr, b.dataset_id))
        default_kind = kind or kind_for_unit(unit_code)
        # 1. Catalogue upsert first: the lock that serialises writers of these series.
        self._upsert(
            conn,
            [
                {
                    "tenant": tenant,
                    "entity_id": b.entity_id,
                    "attr": b.attr,
                    "dataset_id": b.dataset_id,
                    "unit_code": unit_code,
                    "kind": default_kind,
                    "chunk_span_s": _span_for(b.times),
                    "first_us": int(b.times[0]),
                    "last_us": int(b.times[-1]),
                    "created_us": now,
                    "modified_us": now,
                }
                for b in batches
            ],
        )
        info = self._lookup(conn, tenant, [(b.entity_id, b.attr, b.dataset_id) for b in batches])
        # 2. Unit and kind: a series keeps them; a series without unit adopts the first one given.
        fixes = []
        for b in batches:
            row = info[(b.entity_id, b.attr, b.dataset_id)]
            if unit_code is not None and row.unit_code is not None and row.unit_code != unit_code:
                raise SeriesError(
                    f"entity {b.entity_id!r}: series {b.attr!r} is in {row.unit_code}, not {unit_code}",
                    entity_id=b.entity_id,
                )
            adopting = unit_code is not None and row.unit_code is None
            if kind is not None and row.kind != kind and not adopting:
                raise SeriesError(
                    f"entity {b.entity_id!r}: series {b.attr!r} is of kind {row.kind!r}, not {kind!r}",
                    entity_id=b.entity_id,
                )
            if adopting:
                fixes.append({"b_id": row.id, "u": unit_code, "k": kind or kind_for_unit(unit_code)})
        if fixes:
            s = series_table
            conn.execute(
                update(s)
                .where(s.c.id == bindparam("b_id"))
                .values(unit_code=bindparam("u"), kind=bindparam("k")),
                fixes,
            )
        # 3. Group every batch by chunk.
        plans: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (series id, chunk start, t, v)
        for b in batches:
            row = info[(b.entity_id, b.attr, b.dataset_id)]
            span = int(row.chunk_span_s) * _US
            if b.times.size == 1:  # one instant, one chunk (the common case of entity updates)
                start = CHUNK_ORIGIN_US + (int(b.times[0]) - CHUNK_ORIGIN_US) // span * span
                plans.append((int(row.id), start, b.times, b.values))
                continue
            cidx = (b.times - CHUNK_ORIGIN_US) // span
            cut = np.flatnonzero(cidx[1:] != cidx[:-1]) + 1
            lo = np.r_[0, cut]
            hi = np.r_[cut, b.times.size]
            for i, j in zip(lo.tolist(), hi.tolist(), strict=True):
                plans.append(
                    (int(row.id), CHUNK_ORIGIN_US + int(cidx[i]) * span, b.times[i:j], b.values[i:j])
                )
        # 4. Fetch the touched chunks that exist, merge, and write.
        existing = self._fetch_chunks(conn, [(sid, cs) for sid, cs, _, _ in plans])
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for sid, cs, t, v in plans:
            old = existing.get((sid, cs))
            if old is None:
                row = _encode(t, v, now)
                row.update(series_id=sid, chunk_start=cs)
                inserts.append(row)
                continue
            t_old, v_old = old
            tm, vm = _merge(t_old, v_old, t, v)
            if _same(tm, vm, t_old, v_old):
                continue  # idempotent re-write
            row = _encode(tm, vm, now)
            row.update(b_sid=sid, b_cs=cs)
            updates.append(row)
        c = chunks_table
        if inserts and self.postgres and len(inserts) > _COPY_MIN_ROWS:
            copy_rows(
                conn, "series_chunks", _CHUNK_COLUMNS, ([r[k] for k in _CHUNK_COLUMNS] for r in inserts)
            )
        elif inserts:
            conn.execute(c.insert(), inserts)
        if updates:
            conn.execute(
                update(c)
                .where(c.c.series_id == bindparam("b_sid"), c.c.chunk_start == bindparam("b_cs"))
                .values({k: bindparam(k) for k in _CHUNK_VALUES}),
                updates,
            )
        return WriteResult(
            values=sum(int(b.times.size) for b in batches),
            series=len(batches),
            chunks_inserted=len(inserts),
            chunks_updated=len(updates),
        )

    def _fetch_chunks(
        self, conn: Connection, pairs: list[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        c = chunks_table
        out: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for i in range(0, len(pairs), _BATCH):
            part = pairs[i : i + _BATCH]
            q = select(
                c.c.series_id, c.c.chunk_start, c.c.t_first, c.c.step_us, c.c.n, c.c.times, c.c.vals
            ).where(tuple_(c.c.series_id, c.c.chunk_start).in_(part))
            for sid, cs, t_first, step, n, times, vals in _rows(conn, q):
                out[(int(sid), int(cs))] = _decode(t_first, step, n, times, vals)
        return out

    # --- reading --------------------------------------------------------------------------------
    def _chunks(
        self,
        conn: Connection,
        tenant: str,
        entity_ids: Sequence[str],
        attribute: str,
        dataset: str,
        lo: int,
        hi: int,
    ) -> tuple[dict[str, list[_RawChunk]], dict[str, tuple[str, str | None]]]:
        """The chunks overlapping ``[lo, hi)`` per entity, in time order (one SELECT per 500 ids),
        and ``(kind, unit_code)`` per entity that has a series."""
        s, c = series_table, chunks_table
        on = and_(
            c.c.series_id == s.c.id,
            c.c.chunk_start < hi,
            c.c.chunk_start >= max(lo, _LO) - _MAX_SPAN_US,
            c.c.t_last >= lo,
        )
        parts: dict[str, list[_RawChunk]] = {}
        meta: dict[str, tuple[str, str | None]] = {}
        ids = list(dict.fromkeys(entity_ids))
        for i in range(0, len(ids), _BATCH):
            q = (
                select(
                    s.c.entity_id,
                    s.c.kind,
                    s.c.unit_code,
                    c.c.t_first,
                    c.c.step_us,
                    c.c.n,
                    c.c.times,
                    c.c.vals,
                )
                .select_from(s.outerjoin(c, on))
                .where(
                    s.c.tenant == tenant,
                    s.c.attr == attribute,
                    s.c.dataset_id == dataset,
                    s.c.entity_id.in_(ids[i : i + _BATCH]),
                )
                .order_by(s.c.entity_id, c.c.chunk_start)
            )
            for eid, kind, unit, t_first, step, n, times, vals in _rows(conn, q):
                if eid not in meta:
                    meta[eid] = (kind, unit)
                    parts[eid] = []
                if n is not None:
                    parts[eid].append((int(t_first), step, int(n), bytes(times), vals))
        return parts, meta

    def _arrays(
        self,
        conn: Connection,
        tenant: str,
        entity_ids: Sequence[str],
        attribute: str,
        dataset: str,
        lo: int,
        hi: int,
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Decoded ``(times, values)`` in ``[lo, hi)`` per entity having values there."""
        parts, _ = self._chunks(conn, tenant, entity_ids, attribute, dataset, lo, hi)
        out = {}
        for eid, chunks in parts.items():
            t, v = _concat(chunks, lo, hi)
            if t.size:
                out[eid] = (t, v)
        return out

    def read(
        self,
        entity_ids: str | Sequence[str],
        attribute: str,
        start: Any = None,
        end: Any = None,
        *,
        tenant: str = "",
        dataset_id: str | None = None,
        resolution: Any = None,
        how: str | None = None,
        tz: str | None = None,
        min_count: int = 1,
    ) -> pd.DataFrame:
        """Read series as a frame: UTC index (interval start), one column per entity id.

        Parameters
        ----------
        entity_ids
            One entity id or a sequence of them; the columns follow this order. An entity without
            data gives an all-NaN column.
        attribute
            Attribute IRI.
        start, end
            Half-open interval ``[start, end)`` (tz-aware timestamps or ISO 8601 strings with a
            zone); None leaves that side open.
        tenant, dataset_id
            As for :meth:`write`.
        resolution
            None for the stored instants (union over the entities; an instant missing for one
            entity is NaN in its column), or a period (``"15min"``, ``"1h"``, ``"1D"``, ``"P1D"``,
            ``"P1M"`` ...): values are aggregated into buckets aligned on the calendar grid of
            ``tz`` (UTC by default), every bucket of ``[start, end)`` present.
        how
            Aggregation method for a resolution: ``sum``, ``mean``/``avg``, ``min``, ``max``,
            ``count``, ``sumsq``, ``stddev``, ``distinct_count``. Default per series: ``sum`` for
            energy series, ``mean`` for power series.
        tz
            IANA zone whose calendar aligns day, week, month and year buckets (e.g.
            ``"Europe/Brussels"``: local days of 23, 24 or 25 hours). The index stays UTC.
        min_count
            A bucket with fewer valid values is NaN (missing stays missing, never 0). Pass the
            number of intervals per bucket (4 for quarter-hours to hours) to require complete
            buckets.

        Returns
        -------
        pandas.DataFrame
            float64 values in the unit of each series; ``df.attrs["unit_codes"]`` and
            ``df.attrs["kinds"]`` map entity ids to the catalogue's unit and kind.
        """
        ids = [entity_ids] if isinstance(entity_ids, str) else list(entity_ids)
        for e in ids:
            _check_key(e, "entity id")
        _check_key(attribute, "attribute")
        lo, hi = _bounds(start, end)
        period = parse_period(resolution) if resolution is not None else None
        if period is not None and period.zero:
            raise SeriesError("resolution must be a positive duration")
        methods = None
        if how is not None and period is None:
            raise SeriesError("how= needs a resolution= to aggregate to")
        if how is not None:
            methods = _normalise_methods([how])[0][1]
        ds = "" if dataset_id is None else dataset_id
        with self.engine.connect() as conn:
            parts, meta = self._chunks(conn, tenant, ids, attribute, ds, lo, hi)
        frame = _assemble(ids, parts, lo, hi)
        frame.attrs["unit_codes"] = {e: meta.get(e, (None, None))[1] for e in ids}
        frame.attrs["kinds"] = {e: meta.get(e, (None, None))[0] for e in ids}
        if period is None:
            return frame
        index = pd.DatetimeIndex(frame.index)
        t = np.asarray(index.as_unit("us").asi8, dtype=np.int64)
        if (lo == _LO or hi == _HI) and not t.size:
            return _empty_frame(ids, {str(k): v for k, v in frame.attrs.items()})
        first = lo if lo != _LO else int(t[0])
        last = hi if hi != _HI else int(t[-1]) + 1
        edges = _bucket_edges(period, first, last, origin=None, tz=tz)
        values = frame.to_numpy()
        result = np.full((len(edges) - 1, len(ids)), np.nan)
        per_method: dict[str, list[int]] = {}
        for j, e in enumerate(ids):
            m = methods or ("sum" if meta.get(e, ("power",))[0] == "energy" else "mean")
            per_method.setdefault(m, []).append(j)
        for m, cols in per_method.items():
            red = _bucket_reduce(t, values[:, cols], edges, [m, "count"])
            r = red[m]
            if m not in _COUNT_METHODS:
                r[red["count"] < max(min_count, 1)] = np.nan
            result[:, cols] = r
        out = pd.DataFrame(result, index=_utc_index(edges[:-1]), columns=pd.Index(ids), copy=False)
        out.attrs.update(frame.attrs)
        return out

    def history(
        self,
        entity_id: str,
        attribute: str,
        start: Any = None,
        end: Any = None,
        *,
        tenant: str = "",
        dataset_id: str | None = None,
        last_n: int | None = None,
        limit: int | None = None,
        include_missing: bool = False,
    ) -> pd.Series:
        """The stored values of one attribute in ``[start, end)`` as a Series (UTC index).

        Parameters
        ----------
        entity_id, attribute, start, end, tenant, dataset_id
            As for :meth:`read`.
        last_n
            Only the last ``last_n`` values of the interval (NGSI-LD ``lastN``), in time order.
            Reads chunks newest first and stops as soon as it has them.
        limit
            Only the first ``limit`` values of the interval (a page of a long history; the next
            page starts after the last instant returned).
        include_missing
            Keep the explicitly missing (NaN) values.

        Returns
        -------
        pandas.Series
            float64 values named ``entity_id``, index ``time`` (UTC, ascending).
        """
        _check_key(entity_id, "entity id")
        _check_key(attribute, "attribute")
        lo, hi = _bounds(start, end)
        for name, n in (("lastN", last_n), ("limit", limit)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
                raise SeriesError(f"{name} {n!r} must be a positive integer")
        ds = "" if dataset_id is None else dataset_id
        with self.engine.connect() as conn:
            if last_n is None:
                data = self._arrays(conn, tenant, [entity_id], attribute, ds, lo, hi)
                t, v = data.get(entity_id, (np.empty(0, np.int64), np.empty(0)))
                if not include_missing:
                    ok = ~np.isnan(v)
                    t, v = t[ok], v[ok]
            else:
                t, v = self._last(
                    conn, tenant, entity_id, attribute, ds, lo, hi, int(last_n), include_missing
                )
        if limit is not None:
            t, v = t[:limit], v[:limit]
        return pd.Series(np.array(v, dtype="float64"), index=_utc_index(np.asarray(t)), name=entity_id)

    def _last(
        self,
        conn: Connection,
        tenant: str,
        entity_id: str,
        attribute: str,
        ds: str,
        lo: int,
        hi: int,
        n: int,
        include_missing: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        s, c = series_table, chunks_table
        sid = conn.execute(
            select(s.c.id).where(
                s.c.tenant == tenant, s.c.entity_id == entity_id, s.c.attr == attribute, s.c.dataset_id == ds
            )
        ).scalar()
        got_t: list[np.ndarray] = []
        got_v: list[np.ndarray] = []
        if sid is None:
            return np.empty(0, np.int64), np.empty(0)
        have, page, below = 0, 2, hi
        # Newest chunks first, in pages of growing size, until lastN values are at hand.
        while have < n:
            q = (
                select(c.c.chunk_start, c.c.t_first, c.c.step_us, c.c.n, c.c.times, c.c.vals)
                .where(
                    c.c.series_id == sid,
                    c.c.chunk_start < below,
                    c.c.chunk_start >= max(lo, _LO) - _MAX_SPAN_US,
                    c.c.t_last >= lo,
                )
                .order_by(c.c.chunk_start.desc())
                .limit(page)
            )
            rows = _rows(conn, q)
            for cs, t_first, step, cnt, times, vals in rows:
                t, v = _decode(t_first, step, cnt, times, vals)
                keep = (t >= lo) & (t < hi)
                if not include_missing:
                    keep &= ~np.isnan(v)
                got_t.append(t[keep])
                got_v.append(v[keep])
                have += int(np.count_nonzero(keep))
                below = cs
            if len(rows) < page:
                break
            page *= 4
        if not got_t:
            return np.empty(0, np.int64), np.empty(0)
        t = np.concatenate(got_t[::-1])[-n:]
        v = np.concatenate(got_v[::-1])[-n:]
        return t, v

    def instances(
        self,
        entity_id: str,
        attribute: str,
        start: Any = None,
        end: Any = None,
        *,
        tenant: str = "",
        dataset_id: str | None = None,
        last_n: int | None = None,
        limit: int | None = None,
        include_missing: bool = False,
    ) -> Iterator[Instance]:
        """The stored ``(time, value)`` instances of one attribute, oldest first.

        The NGSI-LD temporal API's view: parameters as for :meth:`history` (``last_n`` =
        ``lastN``, ``limit`` = page size, explicitly missing values skipped unless
        ``include_missing``). A value's ``instanceId`` is :func:`instance_id` of its time. The
        values are read (and bad arguments raise) when this is called, not when iterated.
        """
        h = self.history(
            entity_id,
            attribute,
            start,
            end,
            tenant=tenant,
            dataset_id=dataset_id,
            last_n=last_n,
            limit=limit,
            include_missing=include_missing,
        )
        return (Instance(ts, float(value)) for ts, value in zip(h.index, h.to_numpy(), strict=True))

    # --- aggregation (NGSI-LD aggregatedValues) -----------------------------------------------------
    def aggregate(
        self,
        entity_id: str,
        attribute: str,
        start: Any = None,
        end: Any = None,
        period: Any = None,
        methods: str | Sequence[str] = ("sum",),
        *,
        tenant: str = "",
        dataset_id: str | None = None,
        include_empty: bool = False,
    ) -> pd.DataFrame:
        """Aggregate one attribute per period (NGSI-LD ``aggrMethods`` / ``aggrPeriodDuration``).

        Parameters
        ----------
        entity_id, attribute, tenant, dataset_id
            As for :meth:`read`.
        start, end
            ``[start, end)``; an open start begins at the first stored value, an open end after
            the last one.
        period
            The bucket length (``"PT1H"``, ``"P1D"``, ``"P1M"`` ...), buckets starting at ``start``
            (NGSI-LD); None or ``"PT0S"`` for one bucket over the whole interval.
        methods
            NGSI-LD names ``totalCount``, ``distinctCount``, ``sum``, ``avg``, ``min``, ``max``,
            ``stddev`` (sample, n - 1), ``sumsq``, as a list or a comma-separated string (the
            pandas-style aliases of :data:`AGGREGATION_METHODS` work too). Missing (NaN) values
            are not counted.
        include_empty
            Keep buckets without any value (counts 0, other methods NaN).

        Returns
        -------
        pandas.DataFrame
            Index ``start`` (UTC bucket start), column ``end`` (bucket end, UTC) and one float64
            column per method, named as asked.

        Notes
        -----
        A chunk lying inside one bucket and the interval is answered from its stored statistics
        (count, sum, sum of squares, min, max) without reading its values; the other chunks are
        decoded. ``stddev`` is then sqrt((sumsq - sum^2/n)/(n - 1)), clamped at 0.
        """
        _check_key(entity_id, "entity id")
        _check_key(attribute, "attribute")
        asked = _normalise_methods(methods)
        wanted = {m for _, m in asked}
        lo, hi = _bounds(start, end)
        p = parse_period(period) if period is not None else Period()
        ds = "" if dataset_id is None else dataset_id
        s, c = series_table, chunks_table
        with self.engine.connect() as conn:
            row = conn.execute(
                select(s.c.id, s.c.first_us, s.c.last_us).where(
                    s.c.tenant == tenant,
                    s.c.entity_id == entity_id,
                    s.c.attr == attribute,
                    s.c.dataset_id == ds,
                )
            ).first()
            if row is None or row.first_us is None:
                return _aggregate_frame(np.empty(0, np.int64), np.empty(0, np.int64), {}, asked)
            if lo == _LO:
                lo = int(row.first_us)
            if hi == _HI:
                hi = int(row.last_us) + 1
            edges = _bucket_edges(p, lo, hi, origin=lo, tz=None)
            nb = len(edges) - 1
            in_range = and_(
                c.c.series_id == row.id,
                c.c.chunk_start < hi,
                c.c.chunk_start >= lo - _MAX_SPAN_US,
                c.c.t_last >= lo,
                c.c.t_first < hi,
            )
            stats = conn.execute(
                select(
                    c.c.chunk_start,
                    c.c.n_valid,
                    c.c.t_first,
                    c.c.t_last,
                    c.c.v_sum,
                    c.c.v_sumsq,
                    c.c.v_min,
                    c.c.v_max,
                )
                .where(in_range)
                .order_by(c.c.chunk_start)
            ).all()
            cs = np.array([r.chunk_start for r in stats], dtype=np.int64)
            t1 = np.array([r.t_first for r in stats], dtype=np.int64)
            t2 = np.array([r.t_last for r in stats], dtype=np.int64)
            b1 = np.searchsorted(edges, t1, side="right") - 1
            b2 = np.searchsorted(edges, t2, side="right") - 1
            whole = (b1 == b2) & (t1 >= lo) & (t2 < hi) & (b1 >= 0) & (b1 < nb)
            if "distinct_count" in wanted:
                whole[:] = False
            raw_starts = cs[~whole].tolist()
            t_parts, v_parts = [], []
            for i in range(0, len(raw_starts), _BATCH):
                q = (
                    select(c.c.t_first, c.c.step_us, c.c.n, c.c.times, c.c.vals)
                    .where(c.c.series_id == row.id, c.c.chunk_start.in_(raw_starts[i : i + _BATCH]))
                    .order_by(c.c.chunk_start)
                )
                for t_first, step, n, times, vals in _rows(conn, q):
                    t, v = _decode(t_first, step, n, times, vals)
                    t_parts.append(t)
                    v_parts.append(v)
        t = np.concatenate(t_parts) if t_parts else np.empty(0, np.int64)
        v = np.concatenate(v_parts) if v_parts else np.empty(0)
        a, b = np.searchsorted(t, [lo, hi])
        t, v = t[a:b], v[a:b].reshape(-1, 1)
        base = ["count", "sum", "sumsq", "min", "max"] + (
            ["distinct_count"] if "distinct_count" in wanted else []
        )
        red = _bucket_reduce(t, v, edges, base)
        count, total, sumsq = red["count"][:, 0], red["sum"][:, 0], red["sumsq"][:, 0]
        vmin, vmax = red["min"][:, 0], red["max"][:, 0]
        if whole.any():
            w = [r for r, ok in zip(stats, whole.tolist(), strict=True) if ok]
            bw = b1[whole]
            nv = np.array([r.n_valid for r in w], dtype=float)
            sm = np.array([r.v_sum if r.v_sum is not None else np.nan for r in w], dtype=float)
            sq = np.array([r.v_sumsq if r.v_sumsq is not None else np.nan for r in w], dtype=float)
            mn = np.array([r.v_min if r.v_min is not None else np.nan for r in w], dtype=float)
            mx = np.array([r.v_max if r.v_max is not None else np.nan for r in w], dtype=float)
            np.add.at(count, bw, nv)
            total = np.where(np.isnan(total), 0.0, total)
            sumsq = np.where(np.isnan(sumsq), 0.0, sumsq)
            np.add.at(total, bw, np.nan_to_num(sm))
            np.add.at(sumsq, bw, np.nan_to_num(sq))
            np.fmin.at(vmin, bw, mn)
            np.fmax.at(vmax, bw, mx)
            total[count == 0] = np.nan
            sumsq[count == 0] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
            var = (sumsq - total * total / count) / (count - 1)
        if "stddev" in wanted and not whole.any():  # every value at hand: the two-pass formula
            std = _bucket_reduce(t, v, edges, ["stddev"])["stddev"][:, 0]
        else:
            std = np.sqrt(np.clip(var, 0.0, None))
            std[count < 2] = np.nan
        results = {
            "count": count,
            "sum": total,
            "mean": mean,
            "min": vmin,
            "max": vmax,
            "sumsq": sumsq,
            "stddev": std,
            "distinct_count": red.get("distinct_count", np.zeros((nb, 1)))[:, 0],
        }
        keep = np.ones(nb, dtype=bool) if include_empty else count > 0
        return _aggregate_frame(
            edges[:-1][keep], edges[1:][keep], {k: r[keep] for k, r in results.items()}, asked
        )

    # --- deleting ---------------------------------------------------------------------------------
    def delete(
        self,
        entity_id: str,
        attribute: str | None = None,
        start: Any = None,
        end: Any = None,
        *,
        at: Any = None,
        tenant: str = "",
        dataset_id: str | None = None,
        all_datasets: bool = False,
        connection: Connection | None = None,
    ) -> int:
        """Delete stored values.

        Parameters
        ----------
        entity_id
            The entity.
        attribute
            Attribute IRI; None for every attribute of the entity.
        start, end
            Delete the values in ``[start, end)``; both None (and no ``at``) deletes the whole
            series, catalogue entry included.
        at
            Delete the single value stored at this instant (NGSI-LD instance delete).
        tenant, dataset_id
            As for :meth:`write`.
        all_datasets
            Every datasetId of the attribute(s), not only ``dataset_id``.
        connection
            Run inside this connection's transaction.

        Returns
        -------
        int
            The number of stored instants deleted (explicitly missing ones included).
        """
        _check_key(entity_id, "entity id")
        if at is not None:
            if start is not None or end is not None:
                raise SeriesError("give either at= or start/end, not both")
            t = _to_us(at, "at")
            lo, hi = t, t + 1
        else:
            lo, hi = _bounds(start, end)
        whole_series = at is None and start is None and end is None
        if connection is not None:
            return self._delete(
                connection, tenant, entity_id, attribute, dataset_id, all_datasets, lo, hi, whole_series
            )
        with self.engine.begin() as conn:
            return self._delete(
                conn, tenant, entity_id, attribute, dataset_id, all_datasets, lo, hi, whole_series
            )

    def _delete(
        self,
        conn: Connection,
        tenant: str,
        entity_id: str,
        attribute: str | None,
        dataset_id: str | None,
        all_datasets: bool,
        lo: int,
        hi: int,
        whole_series: bool,
    ) -> int:
        s, c = series_table, chunks_table
        cond = [s.c.tenant == tenant, s.c.entity_id == entity_id]
        if attribute is not None:
            cond.append(s.c.attr == attribute)
        if not all_datasets:
            cond.append(s.c.dataset_id == ("" if dataset_id is None else dataset_id))
        now = _now_us()
        # A write first: takes the SQLite write lock / PostgreSQL row locks before reading chunks.
        conn.execute(update(s).where(*cond).values(modified_us=now))
        ids = [int(i) for i in conn.execute(select(s.c.id).where(*cond).order_by(s.c.id)).scalars()]
        if not ids:
            return 0
        deleted = 0
        for i in range(0, len(ids), _BATCH):
            part = ids[i : i + _BATCH]
            if whole_series:
                deleted += int(
                    conn.execute(
                        select(func.coalesce(func.sum(c.c.n), 0)).where(c.c.series_id.in_(part))
                    ).scalar_one()
                )
                conn.execute(delete(c).where(c.c.series_id.in_(part)))
                conn.execute(delete(s).where(s.c.id.in_(part)))
                continue
            rows = conn.execute(
                select(
                    c.c.series_id,
                    c.c.chunk_start,
                    c.c.t_first,
                    c.c.t_last,
                    c.c.step_us,
                    c.c.n,
                    c.c.times,
                    c.c.vals,
                ).where(
                    c.c.series_id.in_(part),
                    c.c.chunk_start < hi,
                    c.c.chunk_start >= lo - _MAX_SPAN_US,
                    c.c.t_last >= lo,
                    c.c.t_first < hi,
                )
            ).all()
            drop: list[dict[str, Any]] = []
            rewrite: list[dict[str, Any]] = []
            for r in rows:
                if r.t_first >= lo and r.t_last < hi:
                    drop.append({"b_sid": r.series_id, "b_cs": r.chunk_start})
                    deleted += int(r.n)
                    continue
                t, v = _decode(r.t_first, r.step_us, r.n, r.times, r.vals)
                keep = (t < lo) | (t >= hi)
                gone = int(t.size - np.count_nonzero(keep))
                if not gone:
                    continue
                deleted += gone
                if not keep.any():
                    drop.append({"b_sid": r.series_id, "b_cs": r.chunk_start})
                    continue
                row = _encode(t[keep], v[keep], now)
                row.update(b_sid=r.series_id, b_cs=r.chunk_start)
                rewrite.append(row)
            key = and_(c.c.series_id == bindparam("b_sid"), c.c.chunk_start == bindparam("b_cs"))
            if drop:
                conn.execute(delete(c).where(key), drop)
            if rewrite:
                conn.execute(update(c).where(key).values({k: bindparam(k) for k in _CHUNK_VALUES}), rewrite)
            # First and last instants from what remains.
            bounds = select(func.min(c.c.t_first), func.max(c.c.t_last)).where(c.c.series_id == s.c.id)
            conn.execute(
                update(s)
                .where(s.c.id.in_(part))
                .values(
                    first_us=bounds.with_only_columns(func.min(c.c.t_first)).scalar_subquery(),
                    last_us=bounds.with_only_columns(func.max(c.c.t_last)).scalar_subquery(),
                )
            )
        return deleted

    # --- catalogue --------------------------------------------------------------------------------
    def series(
        self, tenant: str = "", *, entity_id: str | None = None, attribute: str | None = None
    ) -> list[SeriesInfo]:
        """The catalogue: every series of ``tenant`` (optionally of one entity and/or attribute),
        ordered by entity id, attribute and datasetId."""
        s, c = series_table, chunks_table
        # Correlated per series: one PK range scan of its chunk statistics, not of the whole table.
        count = select(func.sum(c.c.n_valid)).where(c.c.series_id == s.c.id).scalar_subquery().label("cnt")
        q = select(s, count).where(s.c.tenant == tenant).order_by(s.c.entity_id, s.c.attr, s.c.dataset_id)
        if entity_id is not None:
            q = q.where(s.c.entity_id == entity_id)
        if attribute is not None:
            q = q.where(s.c.attr == attribute)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            SeriesInfo(
                entity_id=r.entity_id,
                attribute=r.attr,
                dataset_id=r.dataset_id or None,
                unit_code=r.unit_code,
                kind=r.kind,
                first=None if r.first_us is None else pd.Timestamp(int(r.first_us), unit="us", tz="UTC"),
                last=None if r.last_us is None else pd.Timestamp(int(r.last_us), unit="us", tz="UTC"),
                count=int(r.cnt or 0),
                chunk_span=pd.Timedelta(seconds=int(r.chunk_span_s)),
                created=pd.Timestamp(int(r.created_us), unit="us", tz="UTC"),
                modified=pd.Timestamp(int(r.modified_us), unit="us", tz="UTC"),
            )
            for r in rows
        ]


# --- frame assembly -----------------------------------------------------------------------------
def _empty_frame(ids: list[str], attrs: dict[str, Any]) -> pd.DataFrame:
    out = pd.DataFrame(
        np.empty((0, len(ids))), index=_utc_index(np.empty(0, np.int64)), columns=pd.Index(ids), copy=False
    )
    out.attrs.update(attrs)
    return out


def _concat(chunks: list[_RawChunk], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """One entity's decoded chunks concatenated and clipped to ``[lo, hi)``."""
    if not chunks:
        return np.empty(0, np.int64), np.empty(0)
    dec = [_decode(*ch) for ch in chunks]
    t = np.concatenate([d[0] for d in dec]) if len(dec) > 1 else dec[0][0]
    v = np.concatenate([d[1] for d in dec]) if len(dec) > 1 else dec[0][1]
    a, b = np.searchsorted(t, [lo, hi], side="left")
    return t[a:b], v[a:b]


def _signature(chunk: _RawChunk) -> tuple[Any, ...]:
    """Equal signatures = equal instants: (first, step, n) of a regular chunk, its times otherwise."""
    t_first, step, n, times, _ = chunk
    return (n, times) if times else (t_first, step, n)


def _assemble(ids: list[str], parts: dict[str, list[_RawChunk]], lo: int, hi: int) -> pd.DataFrame:
    """A wide frame over the union of the entities' instants in ``[lo, hi)`` (NaN where an entity
    has no value). When every entity has the same instants (the usual meter case), the values are
    copied once, from the fetched buffers straight into the frame's memory."""
    present = [e for e in ids if parts.get(e)]
    if not present:
        return _empty_frame(ids, {})
    sig0 = [_signature(ch) for ch in parts[present[0]]]
    shared = all(
        len(parts[e]) == len(sig0) and [_signature(ch) for ch in parts[e]] == sig0 for e in present[1:]
    )
    if shared:
        t_all = np.concatenate([_decode(*ch)[0] for ch in parts[present[0]]])
        a, b = (int(x) for x in np.searchsorted(t_all, [lo, hi], side="left"))
        index = t_all[a:b]
        out = np.empty((b - a, len(ids)), order="F")
        for j, e in enumerate(ids):
            if e not in parts or not parts[e]:
                out[:, j] = np.nan
                continue
            pos = 0
            for ch in parts[e]:
                n = ch[2]
                s0, s1 = max(pos, a), min(pos + n, b)
                if s1 > s0:
                    out[s0 - a : s1 - a, j] = np.frombuffer(ch[4], dtype="<f8", count=s1 - pos)[s0 - pos :]
                pos += n
    else:
        data = {e: _concat(parts[e], lo, hi) for e in present}
        index = np.unique(np.concatenate([data[e][0] for e in present]))
        out = np.full((index.size, len(ids)), np.nan, order="F")
        for j, e in enumerate(ids):
            if e in data:
                t, v = data[e]
                out[np.searchsorted(index, t), j] = v
    return pd.DataFrame(out, index=_utc_index(np.asarray(index)), columns=pd.Index(ids), copy=False)


def _aggregate_frame(
    starts: np.ndarray, ends: np.ndarray, results: dict[str, np.ndarray], asked: list[tuple[str, str]]
) -> pd.DataFrame:
    cols: dict[str, Any] = {"end": _utc_index(np.asarray(ends, dtype=np.int64), name="end")}
    for name, method in asked:
        cols[name] = results.get(method, np.empty(0)).astype(float)
    out = pd.DataFrame(cols, index=_utc_index(np.asarray(starts, dtype=np.int64), name="start"))
    return out
