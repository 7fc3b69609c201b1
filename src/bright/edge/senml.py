"""SenML (RFC 8428) JSON packs of meter and device readings, and their conversion to BRIGHT readings.

A SenML *pack* is a JSON array of *records*. Base fields (``bn`` base name, ``bt`` base time,
``bu`` base unit, ``bv`` base value, ``bs`` base sum, ``bver`` base version) apply to the record
that carries them and to every later record until another record overrides them. Resolving a pack
(RFC 8428 §4.6) gives records that stand alone:

- name = ``bn`` + ``n``: non-empty, starting with a letter or digit, made of ``A-Z a-z 0-9 - : . / _``;
- time = ``bt`` + ``t`` in seconds (both default to 0). A resolved time >= 2**28 s (1978-07-04) is
  absolute, seconds since the Unix epoch (UTC); a smaller one is *relative* to "now" (0 = now,
  -60 = one minute ago), resolved with the receiver's clock;
- unit = ``u``, else ``bu``;
- value = ``bv`` + ``v`` for a numeric value; ``vs``, ``vb`` and ``vd`` are string, boolean and
  data values; a record carries exactly one value field, or none when it carries a sum;
- sum = ``bs`` + ``s``;
- version = ``bver`` (default 10): equal in every record of a pack; only 10 is understood. A field
  whose label ends with ``_`` is a *must-understand* extension: a record carrying one is rejected.

Nothing is dropped silently: a record that cannot be resolved or converted is returned as a
:class:`Rejection` naming its index in the pack and the reason; the other records go on.

BRIGHT readings
---------------
The *quantity* of a record is the last segment of its resolved name (after the last ``:`` or
``/``): ``urn:dev:p1:5414...:offtake`` and ``offtake`` are both an offtake reading; the prefix
identifies the device and is not used (the MQTT topic names the entity). Quantities, their SenML
units and what they become (:data:`QUANTITIES`):

============================  ====================  =====================  =========================
quantity                      SenML units           BRIGHT attribute       stored as
============================  ====================  =====================  =========================
offtake, injection,           Wh, kWh, J            bright:offtakeKwh ...  kWh of the interval that
production (``v``)                                                         STARTS at t (15 min)
offtake, injection,           Wh, kWh, J            bright:offtake-        cumulative register, kWh
production (``s``)                                  RegisterKwh ...
power                         W, kW                 bright:powerKw         kW, + = offtake/charging
stateOfCharge                 %, /                  bright:stateOfCharge   fraction 0-1
voltage                       V, mV                 bright:voltageV        V
current                       A, mA                 bright:currentA        A
temperature                   Cel, K                bright:temperatureCel  degC
============================  ====================  =====================  =========================

For an energy quantity the sum ``s`` is the running total of its interval values (a meter
register, "integrated sum of the values over time"), in the same energy unit.

Physical range (per entity, :class:`Limits`): an interval energy lies in
``[0, max_power_kw * interval_h]`` and starts on the interval grid (``t`` multiple of
``interval_s`` from the epoch); a register is >= 0 and does not decrease within a pack; power lies
in ``[-max_power_kw, max_power_kw]``; a state of charge in ``[0, 1]``; a voltage in ``[0, 1000]`` V;
a current in ``[-5000, 5000]`` A; a temperature in ``[-60, 150]`` degC. NaN, infinite and null
values are rejected (a missing reading is simply not sent).
"""

from __future__ import annotations

import json
import math
import re
import time as _time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import orjson

from bright.twin.context import BRIGHT_NS

__all__ = [
    "QUANTITIES",
    "RELATIVE_TIME_LIMIT_S",
    "SECONDARY_UNITS",
    "SENML_UNITS",
    "Limits",
    "Pack",
    "Quantity",
    "Readings",
    "Record",
    "Rejection",
    "SenMLError",
    "convert",
    "decode",
    "encode_series",
    "parse",
    "quantity_of",
    "resolve",
    "to_readings",
]

#: Resolved times below this (2**28 s) are relative to "now" (RFC 8428 §4.5.3).
RELATIVE_TIME_LIMIT_S = 2**28
#: The SenML version this module understands (``bver``).
SENML_VERSION = 10

#: Units of the SenML Units registry (RFC 8428 §12.1, with the units RFC 8798 added).
SENML_UNITS = frozenset(
    {
        "m", "kg", "g", "s", "A", "K", "cd", "mol", "Hz", "rad", "sr", "N", "Pa", "J", "W", "C", "V",
        "F", "Ohm", "S", "Wb", "T", "H", "Cel", "lm", "lx", "Bq", "Gy", "Sv", "kat", "m2", "m3", "l",
        "m/s", "m/s2", "m3/s", "l/s", "W/m2", "cd/m2", "bit", "bit/s", "lat", "lon", "pH", "dB", "dBW",
        "Bspl", "count", "/", "%", "%RH", "%EL", "EL", "1/s", "1/min", "beat/min", "beats", "S/m",
        "B", "VA", "VAs", "var", "vars", "J/m", "kg/m3", "deg",
    }
)  # fmt: skip
#: Units of the SenML Secondary Units registry (RFC 8798): scaled forms of registry units.
SECONDARY_UNITS = frozenset(
    {
        "ms", "min", "h", "MHz", "kW", "kVA", "kvar", "Ah", "Wh", "kWh", "varh", "kvarh", "kVAh",
        "Wh/km", "KiB", "GB", "MBit/s", "B/s", "MB/s", "mV", "mA", "dBm", "ug/m3", "mm/h", "m/h",
        "ppm", "/100", "/1000", "hPa", "mm", "cm", "km", "km/h",
    }
)  # fmt: skip
_KNOWN_UNITS = SENML_UNITS | SECONDARY_UNITS
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-:./_]*$")
_BASE_LABELS = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})


class SenMLError(ValueError):
    """A payload that is not a SenML pack at all (not JSON, not an array of objects, empty)."""


@dataclass(slots=True)
class Record:
    """A resolved SenML record (no base fields, absolute time).

    Attributes
    ----------
    index
        Position of the record in its pack (0-based).
    name
        Resolved name (base name + name).
    time
        Time of the measurement, seconds since the Unix epoch (UTC).
    unit
        SenML unit, or None.
    value
        Numeric value (base value added), in ``unit``; None when the record has another value
        field or only a sum.
    string_value, bool_value, data_value
        The ``vs``, ``vb`` and ``vd`` values, None when absent.
    sum
        Sum (base sum added), in ``unit``; None when absent.
    update_time
        Maximum time before the next reading, s (``ut``), or None.
    """

    index: int
    name: str
    time: float
    unit: str | None
    value: float | None
    string_value: str | None = None
    bool_value: bool | None = None
    data_value: str | None = None
    sum: float | None = None
    update_time: float | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record (or a whole pack) that was not accepted.

    Attributes
    ----------
    index
        The record's position in its pack; None when the whole payload is rejected.
    name
        The record's resolved name when known.
    reason
        Why, in words, naming the offending field and value.
    """

    index: int | None
    name: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"record": self.index, "name": self.name, "reason": self.reason}


@dataclass
class Pack:
    """A resolved pack: the good records and the rejected ones, both in pack order.

    Attributes
    ----------
    records
        Resolved records.
    rejected
        Records that could not be resolved, with the reason.
    size
        Number of records in the pack.
    """

    records: list[Record]
    rejected: list[Rejection]
    size: int


def decode(payload: bytes | bytearray | memoryview | str) -> list[Any]:
    """Decode a SenML JSON payload into its list of records (dicts).

    Standard JSON is decoded with orjson. A payload that is JSON except for ``NaN``/``Infinity``
    tokens (which some devices emit) is decoded leniently so that the offending records can be
    rejected one by one instead of losing the pack.

    Parameters
    ----------
    payload
        The raw MQTT payload (UTF-8 JSON).

    Returns
    -------
    list
        The pack's records; a single JSON object is taken as a pack of one record.

    Raises
    ------
    SenMLError
        Not JSON, not an array of objects, or an empty array.
    """
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        try:
            text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else str(payload)
            if isinstance(payload, memoryview):
                text = bytes(payload).decode("utf-8")
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise SenMLError(f"not JSON ({exc})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise SenMLError(f"a SenML pack is a JSON array of records, not {type(data).__name__}")
    if not data:
        raise SenMLError("the SenML pack is empty")
    return data


_PLAIN_LABELS = frozenset({"n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"}) | _BASE_LABELS
_names: dict[str, bool] = {}


def _valid_name(name: str) -> bool:
    """RFC 8428 name rule, memoised (a pack repeats a few names many times)."""
    ok = _names.get(name)
    if ok is None:
        if len(_names) > 65_536:
            _names.clear()
        ok = _names[name] = bool(_NAME_RE.match(name))
    return ok


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(x: Any) -> bool:
    return _number(x) and math.isfinite(x)


def resolve(records: Sequence[Any], *, now: float | None = None) -> Pack:
    """Resolve the records of a pack (RFC 8428 §4.6).

    Parameters
    ----------
    records
        The decoded pack (see :func:`decode`).
    now
        The receiver's clock for relative times, seconds since the epoch (UTC); default: the
        current time.

    Returns
    -------
    Pack
        Resolved records and per-record rejections (bad base fields reject the record that
        carries them and the records that depend on them).
    """
    clock = _time.time() if now is None else float(now)
    out: list[Record] = []
    rejected: list[Rejection] = []
    bn: str = ""
    bt: float = 0.0
    bu: str | None = None
    bv: float | None = None
    bs: float | None = None
    version: Any = None
    base_error: str | None = None  # a broken base field spoils the records after it
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            rejected.append(Rejection(i, None, f"record {i} is a {type(rec).__name__}, not a JSON object"))
            continue
        # Base fields first: they apply to this record too.
        if "bn" in rec or "bt" in rec or "bu" in rec or "bv" in rec or "bs" in rec or "bver" in rec:
            problem = None
            if "bver" in rec:
                ver = rec["bver"]
                if not (_number(ver) and float(ver).is_integer() and ver > 0):
                    problem = f"bver {ver!r} is not a positive integer"
                elif version is not None and ver != version:
                    problem = f"bver {ver} differs from the pack's version {version}"
                elif ver != SENML_VERSION:
                    problem = f"SenML version {ver} is not supported (only {SENML_VERSION})"
                else:
                    version = ver
            if "bn" in rec:
                if isinstance(rec["bn"], str):
                    bn = rec["bn"]
                else:
                    problem = f"bn {rec['bn']!r} is not a string"
            if "bt" in rec:
                if _finite(rec["bt"]):
                    bt = float(rec["bt"])
                else:
                    problem = f"bt {rec['bt']!r} is not a finite number"
            if "bu" in rec:
                if isinstance(rec["bu"], str):
                    bu = rec["bu"]
                else:
                    problem = f"bu {rec['bu']!r} is not a string"
            if "bv" in rec:
                if _finite(rec["bv"]):
                    bv = float(rec["bv"])
                else:
                    problem = f"bv {rec['bv']!r} is not a finite number"
            if "bs" in rec:
                if _finite(rec["bs"]):
                    bs = float(rec["bs"])
                else:
                    problem = f"bs {rec['bs']!r} is not a finite number"
            if problem is not None:
                base_error = problem
                rejected.append(Rejection(i, None, problem))
                continue
            if base_error is not None and any(k in rec for k in ("bn", "bt", "bu", "bv", "bs")):
                base_error = None  # the sender set its base fields anew
        if base_error is not None:
            rejected.append(Rejection(i, None, f"depends on a rejected base field ({base_error})"))
            continue
        if not _PLAIN_LABELS.issuperset(rec):
            must = [k for k in rec if isinstance(k, str) and k.endswith("_")]
            if must:
                rejected.append(Rejection(i, None, f"must-understand field {must[0]!r} is not supported"))
                continue
        n = rec.get("n", "")
        if n.__class__ is not str:
            rejected.append(Rejection(i, None, f"n {n!r} is not a string"))
            continue
        name = bn + n
        if not _valid_name(name):
            reason = (
                "the record has no name (bn + n is empty)"
                if not name
                else f"name {name!r} is not a valid SenML name"
            )
            rejected.append(Rejection(i, name or None, reason))
            continue
        t: Any = rec.get("t", 0.0)
        if not (type(t) is float or type(t) is int) or not math.isfinite(t):
            rejected.append(Rejection(i, name, f"t {t!r} is not a finite number"))
            continue
        when = bt + t
        if when < RELATIVE_TIME_LIMIT_S:
            when += clock
        unit = rec.get("u", bu)
        if unit is not None and unit.__class__ is not str:
            rejected.append(Rejection(i, name, f"u {unit!r} is not a string"))
            continue
        value: float | None = None
        vs = vb = vd = None
        if "v" in rec and not ("vs" in rec or "vb" in rec or "vd" in rec):  # the common case
            raw: Any = rec["v"]
            if not (type(raw) is float or type(raw) is int):
                reason = "value is null" if raw is None else f"value {raw!r} is not a number"
                rejected.append(Rejection(i, name, reason))
                continue
            if not math.isfinite(raw):
                shown = "NaN" if math.isnan(raw) else "infinite"
                rejected.append(Rejection(i, name, f"value is {shown} (a missing reading is not sent)"))
                continue
            value = float(raw) + bv if bv is not None else float(raw)
        else:
            kinds = [k for k in ("v", "vs", "vb", "vd") if k in rec]
            if len(kinds) > 1:
                rejected.append(
                    Rejection(i, name, f"the record has {len(kinds)} value fields ({', '.join(kinds)})")
                )
                continue
            if not kinds and "s" not in rec:
                rejected.append(Rejection(i, name, "the record has neither a value nor a sum"))
                continue
            if kinds:
                k = kinds[0]
                raw = rec[k]
                if k == "vs":
                    if not isinstance(raw, str):
                        rejected.append(Rejection(i, name, f"vs {raw!r} is not a string"))
                        continue
                    vs = raw
                elif k == "vb":
                    if not isinstance(raw, bool):
                        rejected.append(Rejection(i, name, f"vb {raw!r} is not a boolean"))
                        continue
                    vb = raw
                else:
                    if not isinstance(raw, str):
                        rejected.append(Rejection(i, name, f"vd {raw!r} is not a base64 string"))
                        continue
                    vd = raw
        total: float | None = None
        if "s" in rec:
            raw = rec["s"]
            if not _finite(raw):
                rejected.append(Rejection(i, name, f"sum {raw!r} is not a finite number"))
                continue
            total = float(raw) + (bs or 0.0)
        ut = rec.get("ut")
        if ut is not None and not _finite(ut):
            rejected.append(Rejection(i, name, f"ut {ut!r} is not a finite number"))
            continue
        out.append(Record(i, name, when, unit, value, vs, vb, vd, total, None if ut is None else float(ut)))
    return Pack(out, rejected, len(records))


def parse(payload: bytes | bytearray | memoryview | str, *, now: float | None = None) -> Pack:
    """Decode and resolve a SenML JSON payload; see :func:`decode` and :func:`resolve`.

    Parameters
    ----------
    payload
        The raw payload (UTF-8 JSON).
    now
        The receiver's clock for relative times, seconds since the epoch; default now.

    Returns
    -------
    Pack

    Raises
    ------
    SenMLError
        The payload is not a SenML pack at all.

    Examples
    --------
    >>> p = parse(b'[{"bn":"urn:dev:p1:1:","bt":1.7e9,"bu":"kWh","n":"offtake","v":0.25},'
    ...           b'{"n":"offtake","t":900,"v":0.5}]')
    >>> [(r.name, r.time, r.value) for r in p.records]
    [('urn:dev:p1:1:offtake', 1700000000.0, 0.25), ('urn:dev:p1:1:offtake', 1700000900.0, 0.5)]
    """
    return resolve(decode(payload), now=now)


# --- BRIGHT quantities ------------------------------------------------------------------------------
QuantityKind = Literal["energy", "power", "level"]


@dataclass(frozen=True)
class Quantity:
    """A quantity BRIGHT stores from SenML records.

    Attributes
    ----------
    name
        The quantity's name (last segment of a record's name).
    attribute
        Attribute IRI of the values (``v``).
    unit_code
        UN/CEFACT code stored with the series (``KWH``, ``KWT``, ``C62``...).
    kind
        ``energy`` (kWh per interval, summed on aggregation), ``power`` (signed rate) or ``level``
        (a state: SoC, voltage, current, temperature; averaged).
    units
        SenML unit -> ``(divisor, offset)``: stored value = SenML value / divisor + offset (a
        division, so that 700 Wh is exactly 0.7 kWh).
    lower, upper
        Fixed physical bounds of the stored value (None: from :class:`Limits`).
    register_attribute
        Attribute IRI of the cumulative register (``s``) of an energy quantity, else None.
    """

    name: str
    attribute: str
    unit_code: str
    kind: QuantityKind
    units: Mapping[str, tuple[float, float]]
    lower: float | None = None
    upper: float | None = None
    register_attribute: str | None = None


_ENERGY_UNITS = {"Wh": (1e3, 0.0), "kWh": (1.0, 0.0), "J": (3.6e6, 0.0)}


def _energy(name: str, term: str) -> Quantity:
    return Quantity(
        name,
        f"{BRIGHT_NS}{term}Kwh",
        "KWH",
        "energy",
        _ENERGY_UNITS,
        register_attribute=f"{BRIGHT_NS}{term}RegisterKwh",
    )


#: The quantities a SenML record may carry, by name (see the module docstring).
QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        _energy("offtake", "offtake"),
        _energy("injection", "injection"),
        _energy("production", "production"),
        Quantity("power", f"{BRIGHT_NS}powerKw", "KWT", "power", {"W": (1e3, 0.0), "kW": (1.0, 0.0)}),
        Quantity(
            "stateOfCharge", f"{BRIGHT_NS}stateOfCharge", "C62", "level", {"%": (100.0, 0.0), "/": (1.0, 0.0)},
            lower=0.0, upper=1.0,
        ),
        Quantity(
            "voltage", f"{BRIGHT_NS}voltageV", "VLT", "level", {"V": (1.0, 0.0), "mV": (1e3, 0.0)},
            lower=0.0, upper=1000.0,
        ),
        Quantity(
            "current", f"{BRIGHT_NS}currentA", "AMP", "level", {"A": (1.0, 0.0), "mA": (1e3, 0.0)},
            lower=-5000.0, upper=5000.0,
        ),
        Quantity(
            "temperature", f"{BRIGHT_NS}temperatureCel", "CEL", "level", {"Cel": (1.0, 0.0), "K": (1.0, -273.15)},
            lower=-60.0, upper=150.0,
        ),
    )
}  # fmt: skip


def quantity_of(name: str) -> str:
    """The quantity segment of a resolved record name: what follows the last ``:`` or ``/``."""
    q = _quantity_names.get(name)
    if q is None:
        if len(_quantity_names) > 65_536:
            _quantity_names.clear()
        q = _quantity_names[name] = name[max(name.rfind(":"), name.rfind("/")) + 1 :]
    return q


_quantity_names: dict[str, str] = {}


@dataclass(frozen=True)
class Limits:
    """Physical limits of one entity's readings.

    Attributes
    ----------
    max_power_kw
        Largest power magnitude the entity can carry, kW (e.g. its connection or inverter rating).
    interval_s
        Length of the energy intervals, s (900 = 15 min); interval energies start on this grid.
    """

    max_power_kw: float
    interval_s: int = 900

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_power_kw) and self.max_power_kw > 0):
            raise ValueError(f"max_power_kw {self.max_power_kw!r} must be a positive number of kW")
        if not (isinstance(self.interval_s, int) and self.interval_s > 0):
            raise ValueError(f"interval_s {self.interval_s!r} must be a positive number of seconds")

    @property
    def max_interval_kwh(self) -> float:
        """Largest energy of one interval, kWh: ``max_power_kw * interval_s / 3600``."""
        return self.max_power_kw * self.interval_s / 3600.0


@dataclass
class Readings:
    """Accepted readings of one entity, column-wise.

    Attributes
    ----------
    entity_id
        The entity the readings belong to.
    attribute
        Attribute IRI per reading.
    unit_code
        UN/CEFACT unit code per reading.
    time_us
        Instant per reading, epoch microseconds (UTC; interval START for energies).
    value
        Value per reading in the unit of ``unit_code`` (kWh, kW, fraction, V, A, degC).
    index
        Index of the source record in its pack.
    """

    entity_id: str
    attribute: list[str] = field(default_factory=list)
    unit_code: list[str] = field(default_factory=list)
    time_us: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    index: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.value)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(time_us, value)`` as int64 and float64 arrays."""
        return np.asarray(self.time_us, dtype=np.int64), np.asarray(self.value, dtype=np.float64)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat().replace("+00:00", "Z")


def _check_range(q: Quantity, x: float, limits: Limits, what: str) -> str | None:
    if q.kind == "energy":
        hi = limits.max_interval_kwh
        if x < 0:
            return f"{what} {x:g} kWh is negative (gross energies are >= 0)"
        if x > hi:
            return (
                f"{what} {x:g} kWh exceeds {hi:g} kWh, the most {limits.max_power_kw:g} kW can deliver "
                f"in {limits.interval_s // 60} min"
            )
        return None
    if q.kind == "power":
        if abs(x) > limits.max_power_kw:
            return f"{what} {x:g} kW is beyond the entity's {limits.max_power_kw:g} kW"
        return None
    lo = -math.inf if q.lower is None else q.lower
    hi = math.inf if q.upper is None else q.upper
    if not lo <= x <= hi:
        return f"{what} {x:g} {q.unit_code} is outside [{lo:g}, {hi:g}]"
    return None


def to_readings(
    pack: Pack,
    entity_id: str,
    limits: Limits,
    *,
    only: Iterable[int] | None = None,
    quantities: Mapping[str, Quantity] = QUANTITIES,
) -> tuple[Readings, list[Rejection]]:
    """Convert a resolved pack into BRIGHT readings of one entity, checking units and ranges.

    Parameters
    ----------
    pack
        The resolved pack (its own rejections are passed through).
    entity_id
        The entity the pack's readings belong to (from the MQTT topic).
    limits
        The entity's physical limits (kW, interval length in s).
    only
        Convert only the records at these indices (a quarantine replay); None for all.
    quantities
        The quantity table (default :data:`QUANTITIES`).

    Returns
    -------
    readings : Readings
        Accepted readings, in pack order.
    rejected : list of Rejection
        The pack's rejections and the records refused here (unknown quantity, unit not in the
        SenML registry or not a unit of the quantity, non-numeric value, out of range, energy off
        the interval grid, decreasing register), in pack order.
    """
    keep = None if only is None else set(only)
    out = Readings(entity_id)
    rejected = [r for r in pack.rejected if keep is None or r.index in keep]
    step = limits.interval_s
    last_register: dict[str, tuple[float, float]] = {}
    a_attr, a_unit, a_time, a_val, a_idx = out.attribute, out.unit_code, out.time_us, out.value, out.index
    for rec in pack.records:
        i = rec.index
        if keep is not None and i not in keep:
            continue
        qname = quantity_of(rec.name)
        q = quantities.get(qname)
        if q is None:
            rejected.append(
                Rejection(
                    i, rec.name, f"unknown quantity {qname!r}; use one of {', '.join(sorted(quantities))}"
                )
            )
            continue
        unit = rec.unit
        if unit is None:
            rejected.append(
                Rejection(i, rec.name, f"{qname} has no unit (give u or bu: {', '.join(q.units)})")
            )
            continue
        conv = q.units.get(unit)
        if conv is None:
            if unit in _KNOWN_UNITS:
                reason = f"unit {unit!r} does not measure {qname} (use {', '.join(q.units)})"
            else:
                reason = f"unit {unit!r} is not a SenML unit (units are case-sensitive: {', '.join(q.units)})"
            rejected.append(Rejection(i, rec.name, reason))
            continue
        if rec.value is None and rec.sum is None:
            kind = (
                "string"
                if rec.string_value is not None
                else "boolean"
                if rec.bool_value is not None
                else "data"
            )
            rejected.append(Rejection(i, rec.name, f"{qname} needs a numeric value, not a {kind} value"))
            continue
        if rec.sum is not None and q.register_attribute is None:
            rejected.append(
                Rejection(i, rec.name, f"a sum of {qname} is not supported (send energy registers as sums)")
            )
            continue
        divisor, offset = conv
        t_us = round(rec.time * 1e6)
        problem = None
        value = reg = None
        if rec.value is not None:
            value = rec.value / divisor + offset
            problem = _check_range(q, value, limits, f"{qname} value")
            if problem is None and q.kind == "energy" and t_us % (step * 1_000_000):
                problem = (
                    f"{qname} energy at {_iso(rec.time)} does not start a {step // 60}-minute interval "
                    f"(the time of an interval energy is a multiple of {step} s)"
                )
        if problem is None and rec.sum is not None:
            reg = rec.sum / divisor
            if reg < 0:
                problem = f"{qname} register {reg:g} kWh is negative"
            else:
                prev = last_register.get(qname)
                if prev is not None and rec.time > prev[0] and reg < prev[1]:
                    problem = f"{qname} register decreased from {prev[1]:g} to {reg:g} kWh"
        if problem is not None:
            rejected.append(Rejection(i, rec.name, problem))
            continue
        if value is not None:
            a_attr.append(q.attribute)
            a_unit.append(q.unit_code)
            a_time.append(t_us)
            a_val.append(value)
            a_idx.append(i)
        if reg is not None:
            last_register[qname] = (rec.time, reg)
            a_attr.append(q.register_attribute)  # type: ignore[arg-type]
            a_unit.append("KWH")
            a_time.append(t_us)
            a_val.append(reg)
            a_idx.append(i)
    if rejected:
        rejected.sort(key=lambda r: -1 if r.index is None else r.index)
    return out, rejected


_FIRST_KEYS = frozenset({"bn", "bt", "bu", "bver", "n", "u", "t", "v"})
_REST_KEYS = frozenset({"bu", "n", "u", "t", "v"})


def _fast(
    records: Sequence[Any], entity_id: str, limits: Limits, clock: float, quantities: Mapping[str, Quantity]
) -> Readings | None:
    """The common pack in one pass: base fields (bn, bt, bver) in the first record only, then
    records of ``bu``, ``n``, ``u``, ``t`` and a numeric ``v``, every one valid. Returns None at the first
    thing it does not handle, so that the general path (:func:`resolve`, :func:`to_readings`)
    produces the exact rejections; when it returns readings they equal the general path's."""
    first = records[0]
    if type(first) is not dict or not first.keys() <= _FIRST_KEYS:
        return None
    bn = first.get("bn", "")
    bt = first.get("bt", 0.0)
    bu = first.get("bu")
    if type(bn) is not str or not (type(bt) is float or type(bt) is int) or not math.isfinite(bt):
        return None
    if (bu is not None and type(bu) is not str) or first.get("bver", SENML_VERSION) != SENML_VERSION:
        return None
    out = Readings(entity_id)
    a_attr, a_unit, a_time, a_val, a_idx = out.attribute, out.unit_code, out.time_us, out.value, out.index
    step_us = limits.interval_s * 1_000_000
    max_kwh, max_kw = limits.max_interval_kwh, limits.max_power_kw
    isfinite = math.isfinite
    conversions: dict[tuple[Any, Any], tuple[str, str, float, float, str, float, float]] = {}
    for i, rec in enumerate(records):
        if type(rec) is not dict or (i and not rec.keys() <= _REST_KEYS):
            return None
        if i and "bu" in rec:
            bu = rec["bu"]
            if type(bu) is not str:
                return None
        n = rec.get("n", "")
        unit = rec.get("u", bu)
        conv = conversions.get((n, unit))
        if conv is None:
            if type(n) is not str or type(unit) is not str or not _valid_name(bn + n):
                return None
            q = quantities.get(quantity_of(bn + n))
            if q is None or unit not in q.units:
                return None
            divisor, offset = q.units[unit]
            lo = -math.inf if q.lower is None else q.lower
            hi = math.inf if q.upper is None else q.upper
            conv = conversions[(n, unit)] = (q.attribute, q.unit_code, divisor, offset, q.kind, lo, hi)
        t = rec.get("t", 0.0)
        v = rec.get("v")
        if not (type(t) is float or type(t) is int) or not (type(v) is float or type(v) is int):
            return None
        if not (isfinite(t) and isfinite(v)):
            return None
        when = bt + t
        if when < RELATIVE_TIME_LIMIT_S:
            when += clock
        attr, code, divisor, offset, kind, lo, hi = conv
        x = v / divisor + offset
        t_us = round(when * 1e6)
        if kind == "energy":
            if not 0.0 <= x <= max_kwh or t_us % step_us:
                return None
        elif kind == "power":
            if not -max_kw <= x <= max_kw:
                return None
        elif not lo <= x <= hi:
            return None
        a_attr.append(attr)
        a_unit.append(code)
        a_time.append(t_us)
        a_val.append(x)
        a_idx.append(i)
    return out


def convert(
    records: Sequence[Any],
    entity_id: str,
    limits: Limits,
    *,
    now: float | None = None,
    only: Iterable[int] | None = None,
    quantities: Mapping[str, Quantity] = QUANTITIES,
) -> tuple[Readings, list[Rejection]]:
    """Resolve and convert a decoded pack in one call: :func:`resolve` then :func:`to_readings`.

    A pack made only of plain valid records (the usual meter pack) takes a one-pass path that
    gives the same readings about twice as fast; anything else goes through the general path.

    Parameters
    ----------
    records
        The decoded pack (:func:`decode`).
    entity_id, limits, only, quantities
        As for :func:`to_readings`.
    now
        The receiver's clock for relative times, seconds since the epoch; default now.

    Returns
    -------
    readings : Readings
    rejected : list of Rejection
    """
    clock = _time.time() if now is None else float(now)
    if only is None and records:
        fast = _fast(records, entity_id, limits, clock, quantities)
        if fast is not None:
            return fast, []
    return to_readings(resolve(records, now=clock), entity_id, limits, only=only, quantities=quantities)


# --- encoding (simulator, bridges) -------------------------------------------------------------------
def encode_series(
    base_name: str,
    times_s: Sequence[float] | np.ndarray,
    columns: Mapping[str, tuple[str, Sequence[float] | np.ndarray]],
    *,
    sums: Mapping[str, Sequence[float] | np.ndarray] | None = None,
) -> bytes:
    """A compact SenML pack of several quantities sampled at the same instants.

    The first record carries the base name and base time; later records give times relative to
    it, and each quantity's unit is sent on its first record only when it differs from the
    previous record's (``bu`` switches). NaN values are left out (a missing reading is not sent).

    Parameters
    ----------
    base_name
        Base name, e.g. ``"urn:dev:bright:school-1:home01:"`` (ends with a separator).
    times_s
        Instants, seconds since the epoch (interval starts for energies).
    columns
        Quantity name -> (SenML unit, values per instant).
    sums
        Quantity name -> register values per instant, sent as ``s`` with the same records.

    Returns
    -------
    bytes
        UTF-8 JSON of the pack.
    """
    t = np.asarray(times_s, dtype=np.float64)
    if not t.size:
        raise ValueError("encode_series needs at least one instant")
    t0 = float(t[0])
    rel = (t - t0).tolist()
    recs: list[dict[str, Any]] = []
    current_unit: str | None = None
    sums = sums or {}
    for qname, (unit, values) in columns.items():
        v = np.asarray(values, dtype=np.float64)
        if v.shape != t.shape:
            raise ValueError(f"column {qname!r} has {v.size} values for {t.size} instants")
        s = np.asarray(sums[qname], dtype=np.float64) if qname in sums else None
        ok = ~np.isnan(v)
        vl = v.tolist()
        sl = s.tolist() if s is not None else None
        for k in np.flatnonzero(ok).tolist():
            r: dict[str, Any] = {}
            if not recs:
                r["bn"] = base_name
                r["bt"] = t0
            if unit != current_unit:
                r["bu"] = unit
                current_unit = unit
            r["n"] = qname
            if rel[k]:
                r["t"] = rel[k]
            r["v"] = vl[k]
            if sl is not None and not math.isnan(sl[k]):
                r["s"] = sl[k]
            recs.append(r)
    if not recs:
        raise ValueError("every value is NaN: nothing to encode")
    return orjson.dumps(recs)
