"""Import of time series into the twin's series store: CSV, DSO 15-minute exports, NGSI-LD temporal JSON.

Every importer validates row by row and returns an :class:`ImportReport`: rows read, values
written, missing cells, and every rejected record with its line number (or JSON location), column
and reason. Rejected records are never written and never dropped silently: they are in the report
and, on request, in a rejects CSV. Valid records are written in one transaction.

Local time
----------
Files in local time (``tz``, e.g. ``Europe/Brussels``) are converted to UTC across DST, per series:

- the autumn hour that appears twice (02:00-02:59 on the last Sunday of October) is read as summer
  time (CEST, UTC+2) the first time a stamp appears and as winter time (CET, UTC+1) the second time;
  a third occurrence is rejected as a duplicate;
- the spring hour (02:00-02:59 on the last Sunday of March) does not exist: a row stamped in it is
  rejected ("not a valid local time");
- any other stamp that repeats within a series is rejected as a duplicate of the earlier line.

Timestamps carrying an offset (``2024-03-31T03:00:00+02:00``) or ``Z`` are taken as they are.

Units
-----
Energy is converted to kWh per interval (``KWH``) and power to kW (``KWT``): W, kW, MW, Wh, kWh,
MWh (or their UN/CEFACT codes WTT, KWT, MAW, WHR, KWH, MWH). ``quantity="energy"`` turns a power
reading into the energy of its interval, E [kWh] = P [kW] x interval [h] (a mean power over a
15-minute interval gives P / 4 kWh); ``quantity="power"`` does the reverse, P = E / interval.

DSO 15-minute export layout
---------------------------
One row per quarter-hour, access point and register, ``;``-separated, decimal comma, local time,
as the Belgian DSOs (Fluvius, Sibelga, ORES) export them::

    EAN;date;start time;end time;register;volume kWh;validation status
    541448820000000017;27-03-2016;01:45;03:00;offtake;0,125;valid
    541448820000000017;27-03-2016;01:45;03:00;injection;0,000;valid

- ``EAN``: the access point's 18-digit GSRN (GS1 check digit verified);
- ``date`` (dd-mm-yyyy, also dd/mm/yyyy, dd.mm.yyyy or yyyy-mm-dd) and ``start time`` (HH:MM) of
  the quarter-hour in local time; ``end time`` its local end (checked: 15 minutes later in UTC,
  so 01:45 -> 03:00 on the spring day and 02:45 -> 02:00 in the autumn repeat are right);
- ``register``: ``offtake`` / ``injection`` (also ``afname``/``injectie``, ``prélèvement``/
  ``injection``; day/night registers such as ``afname dag`` and ``afname nacht`` are summed into
  one direction per quarter-hour, NaN when one of them is missing);
- ``volume kWh``: gross energy of the quarter-hour, >= 0;
- ``validation status``: kept in the report; ``missing`` (``ontbrekend``, ``manquant``,
  ``not available``) writes an explicitly missing value (NaN) whatever the volume says.

Offtake goes to ``bright:offtakeKwh`` and injection to ``bright:injectionKwh`` of the entity
``urn:ngsi-ld:Meter:<EAN>`` (both configurable).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from bright.twin.series import Kind, SeriesError, SeriesStore

__all__ = [
    "INJECTION",
    "OFFTAKE",
    "ImportReport",
    "ParsedSeries",
    "RejectedRecord",
    "import_csv",
    "import_dso_export",
    "import_temporal_json",
    "localize_series",
    "parse_csv",
    "parse_dso_export",
    "parse_temporal_json",
]

OFFTAKE = "https://w3id.org/bright/ns#offtakeKwh"
INJECTION = "https://w3id.org/bright/ns#injectionKwh"
BRUSSELS = "Europe/Brussels"

Source = str | Path | IO[str] | IO[bytes]

# unit -> (quantity, factor to kWh or kW)
_UNITS: dict[str, tuple[Kind, float]] = {
    "w": ("power", 1e-3),
    "wtt": ("power", 1e-3),
    "kw": ("power", 1.0),
    "kwt": ("power", 1.0),
    "mw": ("power", 1e3),
    "maw": ("power", 1e3),
    "wh": ("energy", 1e-3),
    "whr": ("energy", 1e-3),
    "kwh": ("energy", 1.0),
    "mwh": ("energy", 1e3),
}
_UNIT_CODE: dict[Kind, str] = {"energy": "KWH", "power": "KWT"}

_MISSING_STATUSES = frozenset({"missing", "ontbrekend", "manquant", "not available", "niet beschikbaar"})
_OFFTAKE_REGISTERS = ("offtake", "afname", "prélèvement", "prelevement", "consumption")
_INJECTION_REGISTERS = ("injection", "injectie", "production")
_DSO_COLUMNS = {
    "ean": ("ean", "ean id", "ean code", "code ean", "ean-code"),
    "date": ("date", "datum", "van datum", "from date", "date de début"),
    "start": ("start time", "van tijdstip", "from time", "heure de début"),
    "end": ("end time", "tot tijdstip", "to time", "heure de fin"),
    "register": ("register", "registre"),
    "volume": ("volume kwh", "volume (kwh)", "volume", "volume_kwh"),
    "status": ("validation status", "validatiestatus", "statut de validation", "status"),
}
_ZONE_RE = r"(?:Z|[+-]\d\d(?::?\d\d)?)\s*$"


@dataclass(frozen=True)
class RejectedRecord:
    """A record that was not imported.

    Attributes
    ----------
    line
        1-based line of the source file (None for JSON).
    column
        The CSV column, or the JSON location ``<entity id>/<attribute>[<index>]``; None when the
        whole line is rejected.
    reason
        Why, in words.
    raw
        The original text of the line (CSV) or of the instance (JSON).
    """

    line: int | None
    column: str | None
    reason: str
    raw: str


@dataclass
class ImportReport:
    """What an import did.

    Attributes
    ----------
    source
        File name or a description of the source.
    rows_read
        Data rows (CSV lines after the header, blank lines excluded) or JSON instances read.
    values_read
        Values (cells or instances) read.
    values_written
        Values written to the store (explicitly missing ones included).
    missing
        Empty cells / values flagged missing: written as NaN with ``keep_missing`` (and always for
        DSO rows whose status says missing), otherwise not written.
    blank_lines
        Blank lines skipped.
    rejected
        The rejected records, in source order.
    series
        Series written.
    statuses
        DSO validation statuses and their counts.
    first, last
        First and last instant imported (UTC).
    unit_code
        The unit code written (single-unit imports).
    """

    source: str
    rows_read: int = 0
    values_read: int = 0
    values_written: int = 0
    missing: int = 0
    blank_lines: int = 0
    rejected: list[RejectedRecord] = field(default_factory=list)
    series: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    unit_code: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.rejected

    def write_rejects(self, path: str | Path) -> Path:
        """Write the rejected records as a CSV (line, column, reason, raw) and return its path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["line", "column", "reason", "raw"])
            for r in self.rejected:
                w.writerow(["" if r.line is None else r.line, r.column or "", r.reason, r.raw])
        return p

    def summary(self) -> str:
        """One line for a CLI."""
        return (
            f"{self.source}: {self.rows_read} rows read, {self.values_written} values written to "
            f"{self.series} series, {self.missing} missing, {len(self.rejected)} rejected"
        )


@dataclass
class ParsedSeries:
    """A parsed source before writing.

    Attributes
    ----------
    frame
        Long frame with columns ``entity_id``, ``attribute`` (may be None-filled for CSV, set at
        import), ``time`` (UTC), ``value`` (float64 in ``unit_code``; NaN = missing).
    unit_code
        ``KWH``, ``KWT`` or None (no unit given).
    kind
        ``"energy"``, ``"power"`` or None.
    report
        The report so far (``values_written`` is filled by the import).
    """

    frame: pd.DataFrame
    unit_code: str | None
    kind: Kind | None
    report: ImportReport


# --- helpers -----------------------------------------------------------------------------------
def _read_text(source: Source, encoding: str) -> tuple[str, str]:
    """(text, name) of a path (``.gz`` decompressed), a text or a binary stream."""
    if isinstance(source, (str, Path)):
        p = Path(source)
        raw = p.read_bytes()
        if p.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode(encoding).lstrip("\ufeff"), p.name
    data = source.read()
    name = str(getattr(source, "name", "<stream>"))
    if isinstance(data, bytes):
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        data = data.decode(encoding)
    return data.lstrip("\ufeff"), name


def _unit(unit: str | None, quantity: Kind | None, interval: Any) -> tuple[float, str | None, Kind | None]:
    """(factor, unit code, kind) turning values in ``unit`` into kWh per interval or kW."""
    if unit is None:
        if quantity is not None:
            raise SeriesError("quantity= needs a unit to convert from")
        return 1.0, None, None
    key = unit.strip().lower()
    if key not in _UNITS:
        raise SeriesError(
            f"unit {unit!r} is not one of W, kW, MW, Wh, kWh, MWh (or WTT, KWT, MAW, WHR, KWH, MWH)"
        )
    source_kind, factor = _UNITS[key]
    target = quantity or source_kind
    if target not in ("energy", "power"):
        raise SeriesError(f"quantity {quantity!r} must be 'energy' or 'power'")
    if target != source_kind:
        hours = pd.Timedelta(interval) / pd.Timedelta(hours=1)
        if not hours > 0:
            raise SeriesError(f"interval {interval!r} must be a positive duration")
        factor = factor * hours if target == "energy" else factor / hours
    return factor, _UNIT_CODE[target], target


def localize_series(
    local: pd.DatetimeIndex | pd.Series, tz: str, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Convert naive local wall-clock stamps to UTC, in file order, per series.

    Parameters
    ----------
    local
        Naive local timestamps in source order (NaT allowed: returned as a rejection).
    tz
        IANA zone (``Europe/Brussels``) or a fixed offset (``+01:00``, ``UTC``).
    groups
        Series key of every row (e.g. ``EAN|register``): repeats are counted per group. None:
        one group.

    Returns
    -------
    utc : numpy.ndarray of datetime64[us]
        The UTC instants (NaT where rejected).
    reasons : numpy.ndarray of object
        None for a good row, else why it is rejected (spring gap, duplicate, third repeat).

    Notes
    -----
    Ambiguous stamps (the autumn hour) are summer time on their first occurrence in a group and
    winter time on the second, the order in which a meter records them.
    """
    idx = pd.DatetimeIndex(local)
    if idx.tz is not None:
        raise SeriesError("localize_series expects naive local timestamps")
    n = len(idx)
    g = np.zeros(n, dtype=np.int64) if groups is None else pd.factorize(np.asarray(groups, dtype=object))[0]
    reasons = np.full(n, None, dtype=object)
    reasons[np.asarray(idx.isna())] = "no timestamp"
    as_dst = idx.tz_localize(tz, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    gap = np.asarray(as_dst.isna()) & ~np.asarray(idx.isna())
    strict = idx.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    ambiguous = np.asarray(strict.isna()) & ~np.asarray(as_dst.isna())
    occurrence = (
        pd.DataFrame({"g": g, "t": idx.as_unit("us").asi8})
        .groupby(["g", "t"], sort=False)
        .cumcount()
        .to_numpy()
    )
    reasons[gap] = f"local time does not exist in {tz} (spring DST gap)"
    dup = ~ambiguous & (occurrence >= 1) & ~gap
    reasons[dup & (reasons == None)] = "duplicate timestamp"  # noqa: E711 - elementwise on object array
    third = ambiguous & (occurrence >= 2)
    reasons[third] = "autumn DST hour appears more than twice"
    utc = idx.tz_localize(tz, ambiguous=ambiguous & (occurrence == 0) | ~ambiguous, nonexistent="NaT")
    out = np.array(utc.tz_convert("UTC").as_unit("us").tz_localize(None).to_numpy(), copy=True)
    out[reasons != None] = np.datetime64("NaT")  # noqa: E711
    return out, reasons


def _parse_stamps(
    raw: pd.Series, time_format: str | None, tz: str | None, groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """UTC instants (datetime64[us], NaT where rejected) and reasons for a column of time strings."""
    s = raw.astype("string").str.strip()
    n = len(s)
    reasons = np.full(n, None, dtype=object)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    empty = (s.isna() | (s == "")).to_numpy()
    reasons[empty] = "no timestamp"
    if time_format is not None and "%z" not in time_format:
        zoned = np.zeros(n, dtype=bool)
    elif time_format is not None:
        zoned = ~empty
    else:
        zoned = s.str.contains(_ZONE_RE, regex=True).fillna(False).to_numpy(dtype=bool) & ~empty
    if zoned.any():
        parsed = pd.to_datetime(s[zoned], utc=True, format=time_format or "ISO8601", errors="coerce")
        ok = parsed.notna().to_numpy()
        z = np.flatnonzero(zoned)
        out[z[ok]] = parsed[ok].dt.tz_localize(None).dt.as_unit("us").to_numpy()
        reasons[z[~ok]] = "unparsable timestamp"
    naive = ~zoned & ~empty
    if naive.any():
        parsed = pd.to_datetime(s[naive], format=time_format or "ISO8601", errors="coerce")
        ok = parsed.notna().to_numpy()
        nz = np.flatnonzero(naive)
        reasons[nz[~ok]] = "unparsable timestamp" + ("" if time_format else " (pass time_format=)")
        good = nz[ok]
        if tz is None:
            reasons[good] = "timestamp without time zone and no source time zone given"
        elif good.size:
            utc, why = localize_series(
                pd.DatetimeIndex(parsed[ok].to_numpy()), tz, None if groups is None else groups[good]
            )
            out[good] = utc
            reasons[good] = why
    # A stamp with an offset can still repeat another row of its series.
    if zoned.any():
        key = pd.DataFrame(
            {
                "g": np.zeros(n, np.int64) if groups is None else pd.factorize(groups)[0],
                "t": out.astype("int64"),
            }
        )
        dup = key.duplicated().to_numpy() & zoned & (reasons == None)  # noqa: E711
        reasons[dup] = "duplicate timestamp"
    out[reasons != None] = np.datetime64("NaT")  # noqa: E711
    return out, reasons


def _numbers(
    col: pd.Series, decimal: str, thousands: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, missing mask, bad mask) of a column read by pandas (numbers, or text where bad)."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        v = col.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(v)
        return v, missing, np.isinf(v)
    s = col.astype("string").str.strip()
    missing = (s.isna() | (s == "")).to_numpy()
    norm = s
    if thousands:
        norm = norm.str.replace(thousands, "", regex=False)
    if decimal != ".":
        norm = norm.str.replace(decimal, ".", regex=False)
    v = np.array(pd.to_numeric(norm, errors="coerce").to_numpy(dtype="float64", na_value=np.nan))
    bad = ~missing & (np.isnan(v) | np.isinf(v))
    v[bad] = np.nan
    return v, missing, bad


def _line(lines: list[str], number: int) -> str:
    """The text of 1-based line ``number`` (without its line break)."""
    return lines[number - 1].rstrip("\r") if 0 < number <= len(lines) else ""


def _finish_report(report: ImportReport, times: np.ndarray) -> None:
    if times.size:
        report.first = pd.Timestamp(times.min()).tz_localize("UTC")
        report.last = pd.Timestamp(times.max()).tz_localize("UTC")


# --- generic CSV --------------------------------------------------------------------------------
def parse_csv(
    source: Source,
    *,
    time_column: str = "time",
    columns: Mapping[str, str] | None = None,
    unit: str | None = None,
    quantity: Kind | None = None,
    interval: str | pd.Timedelta = "15min",
    tz: str | None = BRUSSELS,
    time_format: str | None = None,
    sep: str = ",",
    decimal: str = ".",
    thousands: str | None = None,
    scale: float = 1.0,
    skiprows: int = 0,
    encoding: str = "utf-8",
) -> ParsedSeries:
    """Parse a CSV of a timestamp column and value columns (one per entity).

    Parameters
    ----------
    source
        Path (``.gz`` is decompressed) or stream.
    time_column
        Name of the timestamp column (interval start).
    columns
        CSV column -> entity id; None imports every other column under its own name.
    unit
        Unit of the values: W, kW, MW (power) or Wh, kWh, MWh (energy per interval); None keeps
        the values as they are, without unit (e.g. per-unit profiles).
    quantity
        ``"energy"`` to store kWh per interval (power readings multiplied by ``interval`` in hours),
        ``"power"`` to store kW; None keeps the unit's quantity.
    interval
        Length of one interval, for power <-> energy conversion (default 15 min).
    tz
        Time zone of stamps without offset (IANA name such as ``Europe/Brussels``, ``UTC`` or a
        fixed offset ``+01:00``); None rejects stamps without offset.
    time_format
        :func:`datetime.strptime` format of the stamps (``%d.%m.%Y %H:%M`` for SimBench); None
        reads ISO 8601.
    sep, decimal, thousands
        Field separator, decimal mark (``,`` for decimal commas) and thousands separator.
    scale
        Factor applied to every value before the unit conversion (e.g. a profile's peak in kW).
    skiprows
        Lines before the header.
    encoding
        Text encoding.

    Returns
    -------
    ParsedSeries
        Long frame of the accepted values (missing cells included as NaN) and the report.
    """
    text, name = _read_text(source, encoding)
    factor, unit_code, kind = _unit(unit, quantity, interval)
    factor *= float(scale)
    report = ImportReport(source=name, unit_code=unit_code)
    lines = text.split("\n")
    try:
        header = pd.read_csv(io.StringIO(text), sep=sep, skiprows=skiprows, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SeriesError(f"{name}: not a readable CSV ({exc})") from exc
    if time_column not in header:
        raise SeriesError(f"{name}: no time column {time_column!r} (columns: {', '.join(map(str, header))})")
    mapping = dict(columns) if columns is not None else {c: c for c in header if c != time_column}
    absent = [c for c in mapping if c not in header]
    if absent:
        raise SeriesError(f"{name}: column(s) {absent} not in the file")
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            decimal=decimal,
            thousands=thousands,
            skiprows=skiprows,
            skip_blank_lines=False,
            usecols=[time_column, *mapping],
            dtype={time_column: str},
            keep_default_na=False,
            na_values=[""],
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise SeriesError(f"{name}: not a readable CSV ({exc})") from exc
    if len(set(mapping.values())) != len(mapping):
        raise SeriesError(f"{name}: two columns map to the same entity id")
    first_line = skiprows + 2  # 1-based line of the first data row
    line_no = first_line + np.arange(len(df))
    blank = np.array(df.isna().all(axis=1).to_numpy(), dtype=bool)
    for i in np.flatnonzero(blank):  # an all-empty row is blank only if its line is (not ';;;')
        blank[i] = not _line(lines, int(line_no[i])).strip()
    report.blank_lines = int(blank.sum())
    rows = ~blank
    report.rows_read = int(rows.sum())
    times, reasons = _parse_stamps(df[time_column], time_format, tz, None)
    for i in np.flatnonzero(rows & (reasons != None)):  # noqa: E711
        report.rejected.append(
            RejectedRecord(
                int(line_no[i]),
                time_column,
                f"{reasons[i]}: {df[time_column].iloc[i]!r}",
                _line(lines, int(line_no[i])),
            )
        )
    good_row = rows & (reasons == None)  # noqa: E711
    parts = []
    for col, entity in mapping.items():
        v, missing, bad = _numbers(df[col], decimal, thousands)
        report.values_read += int(rows.sum())
        for i in np.flatnonzero(bad & good_row):
            report.rejected.append(
                RejectedRecord(
                    int(line_no[i]),
                    str(col),
                    f"not a finite number: {df[col].iloc[i]!r}",
                    _line(lines, int(line_no[i])),
                )
            )
        keep = good_row & ~bad
        report.missing += int((missing & keep).sum())
        parts.append(
            pd.DataFrame(
                {
                    "entity_id": entity,
                    "time": times[keep],
                    "value": v[keep] * factor,
                    "line": line_no[keep],
                }
            )
        )
    report.rejected.sort(key=lambda r: (r.line or 0, r.column or ""))
    frame = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["entity_id", "time", "value", "line"])
    )
    frame["time"] = pd.DatetimeIndex(frame["time"]).tz_localize("UTC") if len(frame) else frame["time"]
    _finish_report(report, times[good_row])
    return ParsedSeries(frame=frame, unit_code=unit_code, kind=kind, report=report)


def _write_long(
    store: SeriesStore,
    frame: pd.DataFrame,
    *,
    tenant: str,
    dataset_id: str | None,
    keep_missing: bool,
    unit_of: Callable[[pd.DataFrame], Mapping[str | None, pd.DataFrame]],
    kind: Kind | None,
) -> tuple[int, int]:
    """Write a long frame (one transaction); returns (values written, series)."""
    written = series = 0
    with store.engine.begin() as conn:
        for unit_code, part in unit_of(frame).items():
            long = part[["entity_id", "attribute", "time", "value"]]
            if "dataset_id" in part.columns:
                long = part[["entity_id", "attribute", "dataset_id", "time", "value"]]
            if not len(long):
                continue
            res = store.write(
                long.reset_index(drop=True),
                tenant=tenant,
                dataset_id=dataset_id,
                unit_code=unit_code,
                kind=kind if unit_code is None else None,
                skip_missing=not keep_missing,
                connection=conn,
            )
            written += res.values
            series += res.series
    return written, series


def import_csv(
    store: SeriesStore,
    source: Source,
    *,
    attribute: str,
    tenant: str = "",
    dataset_id: str | None = None,
    keep_missing: bool = False,
    rejects_path: str | Path | None = None,
    **options: Any,
) -> ImportReport:
    """Parse a CSV with :func:`parse_csv` and write it into ``store``.

    Parameters
    ----------
    store
        The series store.
    source
        Path or stream.
    attribute
        Attribute IRI the columns are values of (e.g. ``bright:offtakeKwh`` expanded).
    tenant, dataset_id
        Where to write.
    keep_missing
        Write empty cells as explicitly missing (NaN), overwriting stored values; by default they
        are counted in the report and not written.
    rejects_path
        Also write the rejected records to this CSV.
    **options
        The options of :func:`parse_csv` (``columns``, ``unit``, ``quantity``, ``tz``,
        ``time_format``, ``sep``, ``decimal`` ...).

    Returns
    -------
    ImportReport
    """
    parsed = parse_csv(source, **options)
    frame = parsed.frame.assign(attribute=attribute)
    written, series = _write_long(
        store,
        frame,
        tenant=tenant,
        dataset_id=dataset_id,
        keep_missing=keep_missing,
        unit_of=lambda f: {parsed.unit_code: f},
        kind=parsed.kind,
    )
    parsed.report.values_written, parsed.report.series = written, series
    if rejects_path is not None:
        parsed.report.write_rejects(rejects_path)
    return parsed.report


# --- DSO 15-minute export -----------------------------------------------------------------------
def _gsrn_ok(code: str) -> bool:
    """GS1 check digit of an 18-digit GSRN/EAN (weights 3,1,3,... from the right, check excluded)."""
    if len(code) != 18 or not code.isdigit():
        return False
    digits = [int(c) for c in code[:-1]]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10 == int(code[-1])


def _direction(register: str) -> str | None:
    r = register.strip().lower()
    if r.startswith(_OFFTAKE_REGISTERS):
        return "offtake"
    if r.startswith(_INJECTION_REGISTERS):
        return "injection"
    return None


def parse_dso_export(
    source: Source,
    *,
    tz: str = BRUSSELS,
    sep: str = ";",
    decimal: str = ",",
    date_format: str | None = None,
    interval: str | pd.Timedelta = "15min",
    encoding: str = "utf-8",
) -> ParsedSeries:
    """Parse a DSO quarter-hour export (layout in the module docstring).

    Parameters
    ----------
    source
        Path or stream.
    tz
        Time zone of the ``date``/``start time`` columns.
    sep, decimal
        Field separator and decimal mark.
    date_format
        Format of the ``date`` column; None tries dd-mm-yyyy, dd/mm/yyyy, dd.mm.yyyy, yyyy-mm-dd.
    interval
        The export's interval (15 min).
    encoding
        Text encoding.

    Returns
    -------
    ParsedSeries
        Long frame with ``entity_id`` = EAN, ``attribute`` = ``offtake``/``injection`` (mapped to
        IRIs at import), ``time`` (UTC), ``value`` in kWh per interval (NaN = missing).
    """
    text, name = _read_text(source, encoding)
    report = ImportReport(source=name, unit_code="KWH")
    lines = text.split("\n")
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SeriesError(f"{name}: not a readable CSV ({exc})") from exc
    header = {str(c).strip().lower(): c for c in df.columns}
    cols: dict[str, Any] = {}
    for key, names in _DSO_COLUMNS.items():
        found = next((header[n] for n in names if n in header), None)
        if found is None:
            raise SeriesError(
                f"{name}: no {names[0]!r} column (expected {'; '.join(n[0] for n in _DSO_COLUMNS.values())})"
            )
        cols[key] = found
    line_no = 2 + np.arange(len(df))
    blank = (df.apply(lambda c: c.str.strip()) == "").all(axis=1).to_numpy()
    report.blank_lines = int(blank.sum())
    report.rows_read = int((~blank).sum())
    report.values_read = report.rows_read
    reasons = np.full(len(df), None, dtype=object)
    rcol = np.full(len(df), None, dtype=object)

    def reject(mask: np.ndarray, column: str, why: str | np.ndarray) -> None:
        new = mask & ~blank & (reasons == None)  # noqa: E711
        reasons[new] = why if isinstance(why, str) else why[new]
        rcol[new] = column

    ean_s = df[cols["ean"]].str.strip()
    ean = ean_s.to_numpy(dtype=object)
    ok_ean = {e: _gsrn_ok(e) for e in pd.unique(ean)}  # per distinct EAN, mapped back vectorised
    reject(
        ~ean_s.map(ok_ean).to_numpy(dtype=bool),
        cols["ean"],
        "EAN is not an 18-digit GSRN with a valid check digit",
    )
    reg_s = df[cols["register"]].str.strip().str.lower()
    reg_raw = reg_s.to_numpy(dtype=object)
    dir_of = {r: _direction(r) for r in pd.unique(reg_raw)}
    direction = reg_s.map(dir_of).to_numpy(dtype=object)
    reject(pd.isna(direction), cols["register"], "unknown register (offtake/injection expected)")
    dates = df[cols["date"]].str.strip()
    formats = [date_format] if date_format else ["%d-%m-%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y-%m-%d"]
    sample = next((d for d in dates if d), "")
    fmt = next(
        (
            f
            for f in formats
            if not pd.isna(pd.to_datetime(pd.Series([sample]), format=f, errors="coerce")[0])
        ),
        formats[0],
    )
    start_local = pd.to_datetime(
        dates + " " + df[cols["start"]].str.strip(), format=fmt + " %H:%M", errors="coerce"
    )
    reject(start_local.isna().to_numpy(), cols["start"], f"date/start time not in {fmt} HH:MM")
    groups = (ean_s + "|" + reg_s).to_numpy(dtype=object)
    good = reasons == None  # noqa: E711
    utc = np.full(len(df), np.datetime64("NaT"), dtype="datetime64[us]")
    if good.any():
        u, why = localize_series(pd.DatetimeIndex(start_local[good]), tz, groups[good])
        utc[good] = u
        w = np.full(len(df), None, dtype=object)
        w[good] = why
        reject(w != None, cols["start"], w)  # noqa: E711
    # The end time must be one interval after the start, in real (UTC) time.
    step = pd.Timedelta(interval)
    good = reasons == None  # noqa: E711
    end_txt = df[cols["end"]].str.strip().replace("24:00", "00:00")
    end_hm = pd.to_datetime(end_txt, format="%H:%M", errors="coerce")
    expected = (pd.DatetimeIndex(utc).tz_localize("UTC") + step).tz_convert(tz)
    exp_min = expected.hour * 60 + expected.minute
    got_min = (end_hm.dt.hour * 60 + end_hm.dt.minute).to_numpy(dtype="float64", na_value=np.nan)
    bad_end = good & ~(got_min == np.asarray(exp_min, dtype="float64"))
    reject(
        bad_end, cols["end"], f"end time is not {step / pd.Timedelta(minutes=1):g} minutes after the start"
    )
    # Volumes.
    v, missing, bad = _numbers(df[cols["volume"]], decimal, None)
    reject(bad, cols["volume"], "volume is not a finite number")
    reject(~np.isnan(v) & (v < 0), cols["volume"], "negative volume (gross offtake and injection are >= 0)")
    status = df[cols["status"]].str.strip()
    flagged = status.str.lower().isin(_MISSING_STATUSES).to_numpy()
    good = (reasons == None) & ~blank  # noqa: E711
    report.statuses = dict(Counter(status[good]))
    v = np.where(flagged, np.nan, v)
    report.missing = int((good & (flagged | missing)).sum())
    for i in np.flatnonzero(reasons != None):  # noqa: E711
        col = rcol[i]
        cell = df[col].iloc[i] if col in df.columns else ""
        report.rejected.append(
            RejectedRecord(
                int(line_no[i]), str(col), f"{reasons[i]}: {cell!r}", _line(lines, int(line_no[i]))
            )
        )
    frame = pd.DataFrame(
        {
            "entity_id": ean[good],
            "attribute": direction[good],
            "time": utc[good],
            "value": v[good],
            "register": reg_raw[good],
            "line": line_no[good],
        }
    )
    # Day/night registers of one direction: one value per quarter-hour (NaN if any part is missing).
    keys = ["entity_id", "attribute", "time"]
    grouped = frame.assign(nan=frame["value"].isna()).groupby(keys, sort=True)
    summed = grouped.agg(value=("value", "sum"), nan=("nan", "sum"), line=("line", "min")).reset_index()
    summed.loc[summed["nan"] > 0, "value"] = np.nan
    frame = summed.drop(columns="nan")
    frame["time"] = pd.DatetimeIndex(frame["time"]).tz_localize("UTC")
    _finish_report(report, utc[good])
    return ParsedSeries(frame=frame, unit_code="KWH", kind="energy", report=report)


def import_dso_export(
    store: SeriesStore,
    source: Source,
    *,
    entity_id: str | Callable[[str], str] = "urn:ngsi-ld:Meter:{ean}",
    offtake_attribute: str = OFFTAKE,
    injection_attribute: str = INJECTION,
    tenant: str = "",
    dataset_id: str | None = None,
    rejects_path: str | Path | None = None,
    **options: Any,
) -> ImportReport:
    """Parse a DSO export with :func:`parse_dso_export` and write it into ``store``.

    Parameters
    ----------
    store
        The series store.
    source
        Path or stream.
    entity_id
        A format string with ``{ean}`` or a function EAN -> entity id.
    offtake_attribute, injection_attribute
        Attribute IRIs of the two directions (kWh per quarter-hour, unit ``KWH``).
    tenant, dataset_id
        Where to write.
    rejects_path
        Also write the rejected records to this CSV.
    **options
        Options of :func:`parse_dso_export`.

    Returns
    -------
    ImportReport
        Missing-status rows are written as explicitly missing values (NaN).
    """
    parsed = parse_dso_export(source, **options)
    f = parsed.frame
    to_id = entity_id if callable(entity_id) else (lambda e: entity_id.format(ean=e))
    ids = {e: to_id(e) for e in pd.unique(f["entity_id"])}
    f = f.assign(
        entity_id=f["entity_id"].map(ids),
        attribute=f["attribute"].map({"offtake": offtake_attribute, "injection": injection_attribute}),
    )
    written, series = _write_long(
        store,
        f,
        tenant=tenant,
        dataset_id=dataset_id,
        keep_missing=True,
        unit_of=lambda x: {"KWH": x},
        kind=None,
    )
    parsed.report.values_written, parsed.report.series = written, series
    if rejects_path is not None:
        parsed.report.write_rejects(rejects_path)
    return parsed.report


# --- NGSI-LD temporal JSON ----------------------------------------------------------------------
_RESERVED = frozenset(
    {"id", "@id", "type", "@type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"}
)


def parse_temporal_json(
    document: Any, *, expand: Callable[[str], str] | None = None, source: str = "<json>"
) -> tuple[pd.DataFrame, ImportReport]:
    """Parse NGSI-LD temporal representations of entities into a long frame of numeric instances.

    Parameters
    ----------
    document
        One entity or a list of entities, as parsed JSON: ``{"id", "type", attr: [instances]}``
        where an instance is ``{"type": "Property", "value": <number>, "observedAt": <ISO 8601 with
        zone>, "unitCode"?, "datasetId"?}``, or the simplified ``{"type": "Property", "values":
        [[value, observedAt], ...]}``.
    expand
        Maps an attribute name (term) to its IRI (the @context in force); None keeps names.
    source
        Name for the report.

    Returns
    -------
    frame : pandas.DataFrame
        Columns ``entity_id``, ``attribute``, ``dataset_id`` ('' = default), ``unit_code`` (None
        when not given), ``time`` (ISO strings), ``value``.
    report : ImportReport
        Non-numeric, non-finite (NaN, Infinity), zone-less or unit-inconsistent instances are
        rejected with their location ``<entity id>/<attribute>[<index>]``.
    """
    entities = document if isinstance(document, list) else [document]
    report = ImportReport(source=source)
    rec: dict[str, list[Any]] = {
        k: [] for k in ("entity_id", "attribute", "dataset_id", "unit_code", "time", "value")
    }
    units: dict[tuple[str, str, str], str | None] = {}
    for k, ent in enumerate(entities):
        if not isinstance(ent, dict) or not isinstance(ent.get("id"), str):
            report.rejected.append(RejectedRecord(None, f"[{k}]", "not an entity with an id", _dump(ent)))
            continue
        eid = ent["id"]
        for name, value in ent.items():
            if name in _RESERVED:
                continue
            attr = expand(name) if expand else name
            if isinstance(value, dict) and "values" in value:
                inst = [
                    {
                        "type": value.get("type", "Property"),
                        "value": v[0] if isinstance(v, list) and v else None,
                        "observedAt": v[1] if isinstance(v, list) and len(v) > 1 else None,
                        **({"unitCode": value["unitCode"]} if "unitCode" in value else {}),
                        **({"datasetId": value["datasetId"]} if "datasetId" in value else {}),
                    }
                    for v in value["values"]
                ]
            else:
                inst = value if isinstance(value, list) else [value]
            for j, item in enumerate(inst):
                where = f"{eid}/{name}[{j}]"
                report.rows_read += 1
                report.values_read += 1
                why = _instance_problem(item)
                if why:
                    report.rejected.append(RejectedRecord(None, where, why, _dump(item)))
                    continue
                ds = item.get("datasetId") or ""
                unit = item.get("unitCode")
                key = (eid, attr, ds)
                if key in units and units[key] != unit:
                    report.rejected.append(
                        RejectedRecord(
                            None,
                            where,
                            f"unitCode {unit!r} differs from {units[key]!r} earlier in the series",
                            _dump(item),
                        )
                    )
                    continue
                units[key] = unit
                for col, val in zip(
                    rec, (eid, attr, ds, unit, item["observedAt"], float(item["value"])), strict=True
                ):
                    rec[col].append(val)
    frame = pd.DataFrame(rec)
    if len(frame):
        t = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
        report.first, report.last = t.min(), t.max()
    return frame, report


def _dump(item: Any) -> str:
    try:
        return json.dumps(item, ensure_ascii=False, allow_nan=True)[:500]
    except (TypeError, ValueError):
        return repr(item)[:500]


def _instance_problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "not an attribute instance (object expected)"
    kind = item.get("type", "Property")
    if kind not in ("Property", "https://uri.etsi.org/ngsi-ld/Property"):
        return f"{kind} is not a numeric Property"
    v = item.get("value")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"value {v!r} is not a number"
    if not math.isfinite(float(v)):
        return f"value {v!r} is not a finite number"
    t = item.get("observedAt")
    if not isinstance(t, str) or not t.strip():
        return "no observedAt"
    if not re.search(_ZONE_RE, t):
        return f"observedAt {t!r} has no time zone"
    if pd.isna(pd.to_datetime(t, utc=True, format="ISO8601", errors="coerce")):
        return f"observedAt {t!r} is not an ISO 8601 date-time"
    ds = item.get("datasetId")
    if ds is not None and (not isinstance(ds, str) or not ds):
        return f"datasetId {ds!r} is not a URI"
    unit = item.get("unitCode")
    if unit is not None and (not isinstance(unit, str) or not unit):
        return f"unitCode {unit!r} is not a code"
    return None


def import_temporal_json(
    store: SeriesStore,
    source: Source | dict[str, Any] | list[Any],
    *,
    tenant: str = "",
    expand: Callable[[str], str] | None = None,
    rejects_path: str | Path | None = None,
    encoding: str = "utf-8",
) -> ImportReport:
    """Import NGSI-LD temporal JSON (see :func:`parse_temporal_json`) into ``store``.

    Parameters
    ----------
    store
        The series store.
    source
        Parsed JSON (dict or list), a path, or a stream.
    tenant
        Where to write.
    expand
        Attribute term -> IRI.
    rejects_path
        Also write the rejected records to this CSV.
    encoding
        Text encoding of a file or stream.

    Returns
    -------
    ImportReport
        The instances of each series are written with their ``unitCode`` (one transaction).
    """
    if isinstance(source, (dict, list)):
        doc, name = source, "<json>"
    else:
        text, name = _read_text(source, encoding)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SeriesError(
                f"{name}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from exc
    frame, report = parse_temporal_json(doc, expand=expand, source=name)

    def by_unit(f: pd.DataFrame) -> dict[str | None, pd.DataFrame]:
        if not len(f):
            return {}
        u = f["unit_code"].astype(object).where(f["unit_code"].notna(), "")
        return {(code or None): part for code, part in f.groupby(u, sort=True)}

    if len(frame):
        written, series = _write_long(
            store, frame, tenant=tenant, dataset_id=None, keep_missing=True, unit_of=by_unit, kind=None
        )
        report.values_written, report.series = written, series
    if rejects_path is not None:
        report.write_rejects(rejects_path)
    return report
