"""SenML (RFC 8428) resolution and conversion to BRIGHT readings."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.edge import senml
from bright.edge.senml import Limits, SenMLError, decode, encode_series, parse, resolve, to_readings

T0 = 1_717_200_000.0  # 2024-06-01T00:00:00Z, on the quarter-hour grid (1_717_200_000 / 900 = 1_908_000)
BRIGHT = "https://w3id.org/bright/ns#"


def test_base_fields_apply_to_later_records_and_are_overridden():
    pack = resolve(
        [
            {"bn": "urn:dev:p1:42:", "bt": T0, "bu": "kWh", "n": "offtake", "v": 0.25},
            {"n": "offtake", "t": 900, "v": 0.5},
            {"n": "power", "u": "W", "t": 60, "v": 1200},  # u overrides bu for this record only
            {"bn": "urn:dev:pv:7:", "n": "production", "t": 900, "v": 0.75},
        ],
        now=0,
    )
    assert pack.rejected == []
    assert [(r.name, r.time, r.unit, r.value) for r in pack.records] == [
        ("urn:dev:p1:42:offtake", T0, "kWh", 0.25),
        ("urn:dev:p1:42:offtake", T0 + 900, "kWh", 0.5),
        ("urn:dev:p1:42:power", T0 + 60, "W", 1200.0),
        ("urn:dev:pv:7:production", T0 + 900, "kWh", 0.75),
    ]


def test_base_value_and_base_sum_are_added():
    # bv = 1000: v = 0.5 resolves to 1000.5; bs = 12000: s = 3 resolves to 12003.
    pack = resolve(
        [{"bn": "m:", "bt": T0, "bu": "kWh", "bv": 1000, "bs": 12000, "n": "offtake", "v": 0.5, "s": 3}]
    )
    (r,) = pack.records
    assert (r.value, r.sum) == (1000.5, 12003.0)


def test_relative_times_use_the_receivers_clock():
    # No bt: t = -60 is one minute before "now"; t = 0 (absent) is "now"; 2**28 and above are absolute.
    now = 1_700_000_000.0
    pack = resolve(
        [
            {"n": "a", "u": "W", "v": 1, "t": -60},
            {"n": "a", "u": "W", "v": 2},
            {"n": "a", "u": "W", "v": 3, "t": 2**28},
        ],
        now=now,
    )
    assert [r.time for r in pack.records] == [now - 60, now, float(2**28)]


def test_relative_base_time_plus_relative_time_stays_relative():
    pack = resolve(
        [{"bn": "x:", "bt": -900, "n": "power", "u": "kW", "v": 1, "t": 300}], now=10_000_000_000.0
    )
    assert pack.records[0].time == 10_000_000_000.0 - 600


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([{"bver": 11, "n": "a", "v": 1}], "SenML version 11 is not supported"),
        ([{"bver": 10, "n": "a", "v": 1}, {"bver": 5, "n": "b", "v": 2}], "bver 5 differs"),
        ([{"n": "a", "v": 1, "x_": 3}], "must-understand field 'x_'"),
        ([{"n": "", "v": 1}], "no name"),
        ([{"n": "-bad", "v": 1}], "not a valid SenML name"),
        ([{"n": "a b", "v": 1}], "not a valid SenML name"),
        ([{"n": "a", "v": "1.5"}], "value '1.5' is not a number"),
        ([{"n": "a", "v": None}], "value is null"),
        ([{"n": "a", "v": True}], "value True is not a number"),
        ([{"n": "a", "v": 1, "vs": "x"}], "2 value fields"),
        ([{"n": "a"}], "neither a value nor a sum"),
        ([{"n": "a", "v": 1, "t": "now"}], "t 'now' is not a finite number"),
        ([{"n": "a", "s": "big"}], "sum 'big' is not a finite number"),
        ([7], "record 0 is a int"),
    ],
)
def test_bad_records_are_rejected_with_their_reason(records, reason):
    pack = resolve(records, now=T0)
    assert pack.records == [] or len(pack.rejected) == 1
    assert reason in pack.rejected[-1].reason
    assert pack.rejected[-1].index == len(records) - 1


def test_a_broken_base_field_rejects_the_records_that_depend_on_it():
    pack = resolve(
        [
            {"bn": "m:", "bt": "yesterday", "n": "a", "u": "W", "v": 1},
            {"n": "a", "u": "W", "v": 2},  # would inherit the broken bt
            {"bt": T0, "n": "a", "u": "W", "v": 3},  # sets its base fields anew
        ]
    )
    assert [r.index for r in pack.rejected] == [0, 1]
    assert "bt 'yesterday'" in pack.rejected[0].reason
    assert "depends on a rejected base field" in pack.rejected[1].reason
    assert [(r.name, r.value) for r in pack.records] == [("m:a", 3.0)]


def test_nan_tokens_are_rejected_per_record_not_per_pack():
    # NaN is not JSON, but some devices send it: the pack is read leniently, the NaN record refused.
    pack = parse(b'[{"bn":"m:","bt":1717200000,"bu":"W","n":"power","v":NaN},{"n":"power","v":5}]')
    assert [r.value for r in pack.records] == [5.0]
    assert pack.rejected[0].index == 0 and "NaN" in pack.rejected[0].reason


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"not json", "not JSON"), (b'"a string"', "JSON array"), (b"[]", "empty"), (b"\xff\xfe", "not JSON")],
)
def test_payloads_that_are_not_packs_raise(payload, message):
    with pytest.raises(SenMLError, match=message):
        decode(payload)


def test_a_single_object_is_a_pack_of_one():
    assert len(decode(b'{"n":"a","v":1}')) == 1


# --- conversion -------------------------------------------------------------------------------------
def _readings(records, limits=Limits(10.0), **kw):
    return to_readings(resolve(records, now=T0), "urn:ngsi-ld:Meter:c:m", limits, **kw)


def test_units_are_converted_to_bright_units():
    # 250 Wh -> 0.25 kWh; 1.8e6 J -> 0.5 kWh; 2500 W -> 2.5 kW; 80 % -> 0.8; 300 K -> 26.85 degC.
    r, rej = _readings(
        [
            {"bn": "d:", "bt": T0, "n": "offtake", "u": "Wh", "v": 250},
            {"n": "injection", "u": "J", "v": 1.8e6},
            {"n": "power", "u": "W", "v": 2500, "t": 7},
            {"n": "stateOfCharge", "u": "%", "v": 80, "t": 7},
            {"n": "temperature", "u": "K", "v": 300, "t": 7},
            {"n": "voltage", "u": "V", "v": 231.5, "t": 7},
        ]
    )
    assert rej == []
    got = dict(zip(r.attribute, r.value, strict=True))
    assert got[f"{BRIGHT}offtakeKwh"] == pytest.approx(0.25)
    assert got[f"{BRIGHT}injectionKwh"] == pytest.approx(0.5)
    assert got[f"{BRIGHT}powerKw"] == pytest.approx(2.5)
    assert got[f"{BRIGHT}stateOfCharge"] == pytest.approx(0.8)
    assert got[f"{BRIGHT}temperatureCel"] == pytest.approx(26.85)
    assert got[f"{BRIGHT}voltageV"] == 231.5
    assert r.unit_code == ["KWH", "KWH", "KWT", "C62", "CEL", "VLT"]
    assert r.time_us[0] == int(T0) * 1_000_000


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"n": "offtake", "u": "kw", "v": 1}, "'kw' is not a SenML unit"),
        ({"n": "offtake", "u": "V", "v": 1}, "unit 'V' does not measure offtake"),
        ({"n": "offtake", "v": 1}, "offtake has no unit"),
        ({"n": "gasflow", "u": "m3/s", "v": 1}, "unknown quantity 'gasflow'"),
        ({"n": "offtake", "u": "kWh", "vs": "high"}, "needs a numeric value, not a string value"),
        ({"n": "offtake", "u": "kWh", "v": -0.1}, "negative"),
        # 10 kW during 15 min is at most 2.5 kWh.
        ({"n": "offtake", "u": "kWh", "v": 2.6}, "exceeds 2.5 kWh"),
        ({"n": "power", "u": "kW", "v": -10.5, "t": 1}, "beyond the entity's 10 kW"),
        ({"n": "stateOfCharge", "u": "%", "v": 101}, "outside [0, 1]"),
        ({"n": "offtake", "u": "kWh", "v": 0.1, "t": 60}, "does not start a 15-minute interval"),
        ({"n": "power", "u": "W", "s": 5}, "a sum of power is not supported"),
    ],
)
def test_refused_readings_name_the_record_and_why(record, reason):
    r, rej = _readings([{"bn": "dev:1:", "bt": T0, **record}])
    assert len(r) == 0
    assert len(rej) == 1 and rej[0].index == 0 and reason in rej[0].reason, rej


def test_energy_bound_follows_the_entity_limit_and_interval():
    # 40 kW over 5 minutes allows 3.333 kWh; over 15 minutes 10 kWh.
    rec = [{"bn": "d:", "bt": T0, "n": "offtake", "u": "kWh", "v": 3.4}]
    assert len(_readings(rec, Limits(40.0, interval_s=300))[1]) == 1
    assert len(_readings(rec, Limits(40.0, interval_s=900))[0]) == 1


def test_sums_of_energies_are_registers_that_must_not_decrease():
    r, rej = _readings(
        [
            {"bn": "p1:", "bt": T0, "bu": "kWh", "n": "offtake", "v": 0.25, "s": 1520.25},
            {"n": "offtake", "t": 900, "v": 0.5, "s": 1520.75},
            {"n": "offtake", "t": 1800, "s": 1519.0},  # a register going back: refused
        ]
    )
    assert [(a.rsplit("#")[1], v) for a, v in zip(r.attribute, r.value, strict=True)] == [
        ("offtakeKwh", 0.25),
        ("offtakeRegisterKwh", 1520.25),
        ("offtakeKwh", 0.5),
        ("offtakeRegisterKwh", 1520.75),
    ]
    assert len(rej) == 1 and rej[0].index == 2 and "decreased from 1520.75 to 1519" in rej[0].reason


def test_only_converts_the_selected_records():
    recs = [
        {"bn": "d:", "bt": T0, "bu": "kWh", "n": "offtake", "v": 0.1},
        {"n": "offtake", "t": 900, "v": 0.2},
    ]
    r, rej = _readings(recs, only=[1])
    assert (r.value, r.index, rej) == ([0.2], [1], [])


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_power_kw"):
        Limits(0.0)
    with pytest.raises(ValueError, match="interval_s"):
        Limits(1.0, interval_s=0)


# --- encoding -------------------------------------------------------------------------------------
def test_encode_series_uses_base_fields_and_skips_nan():
    payload = encode_series(
        "urn:dev:x:", [T0, T0 + 900], {"offtake": ("kWh", [0.1, np.nan]), "power": ("kW", [0.4, 0.8])}
    )
    recs = orjson.loads(payload)
    assert recs[0] == {"bn": "urn:dev:x:", "bt": T0, "bu": "kWh", "n": "offtake", "v": 0.1}
    assert recs[1] == {"bu": "kW", "n": "power", "v": 0.4}
    assert recs[2] == {"n": "power", "t": 900.0, "v": 0.8}
    assert len(recs) == 3


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(0, 2.5, allow_nan=False), min_size=1, max_size=40),
    power=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=40),
    day=st.integers(0, 3000),
)
def test_encode_then_parse_round_trips_every_value(values, power, day):
    n = min(len(values), len(power))
    times = T0 + 86_400.0 * day + 900.0 * np.arange(n)
    payload = encode_series("urn:dev:m:", times, {"offtake": ("kWh", values[:n]), "power": ("kW", power[:n])})
    r, rej = to_readings(parse(payload, now=0), "e", Limits(10.0))
    assert rej == []
    assert len(r) == 2 * n
    t, v = r.arrays()
    # Exact round trip: JSON floats are shortest-repr, times are whole seconds.
    assert sorted(v.tolist()) == sorted(values[:n] + power[:n])
    assert set(t.tolist()) == {int(x) * 1_000_000 for x in times}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["n", "v", "u", "t", "bt", "bn", "s", "vs"]),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.text(max_size=5),
                st.none(),
                st.booleans(),
                st.integers(),
            ),
        ),
        max_size=12,
    )
)
def test_every_record_is_either_accepted_or_rejected_once(records):
    pack = resolve(records, now=T0)
    indices = sorted([r.index for r in pack.records] + [r.index for r in pack.rejected])
    assert indices == list(range(len(records)))
    assert all(math.isfinite(r.time) for r in pack.records)
    readings, rejected = to_readings(pack, "e", Limits(5.0))
    accepted = set(readings.index)
    refused = {r.index for r in rejected}
    assert not accepted & refused
    assert accepted | refused == {r.index for r in pack.records} | {r.index for r in pack.rejected}


def test_quantity_of_takes_the_last_segment():
    assert senml.quantity_of("urn:dev:mac:0024:offtake") == "offtake"
    assert senml.quantity_of("home/p1/power") == "power"
    assert senml.quantity_of("power") == "power"


# --- the one-pass path equals the general path ------------------------------------------------------
_names = st.sampled_from(["offtake", "injection", "power", "stateOfCharge", "voltage", "gas", ""])
_units = st.sampled_from(["kWh", "Wh", "W", "kW", "%", "V", "kw", None])
_numbers = st.one_of(st.floats(-5, 5, allow_nan=False), st.integers(-3, 3), st.just(float("nan")), st.none())
_record = st.fixed_dictionaries(
    {"n": _names, "v": _numbers},
    optional={
        "u": _units,
        "t": st.sampled_from([0, 900, 1800, 60, -900, 0.5]),
        "bu": _units,
        "s": st.just(1.0),
    },
)


@settings(max_examples=200, deadline=None)
@given(
    first=st.fixed_dictionaries(
        {"bn": st.sampled_from(["urn:dev:1:", "", "x/"]), "bt": st.sampled_from([T0, T0 + 60, -900, 0])},
        optional={"bu": _units, "bver": st.sampled_from([10, 11])},
    ),
    rest=st.lists(_record, max_size=10),
    only=st.one_of(st.none(), st.sets(st.integers(0, 10))),
)
def test_convert_equals_resolve_then_to_readings(first, rest, only):
    records = [
        {k: v for k, v in r.items() if v is not None or k == "v"}
        for r in [{**first, "n": "power", "u": "kW", "v": 1.0}, *rest]
    ]
    limits = Limits(4.0)
    fast, fast_rej = senml.convert(records, "e", limits, now=T0, only=only)
    slow, slow_rej = to_readings(resolve(records, now=T0), "e", limits, only=only)
    assert (fast.attribute, fast.unit_code, fast.time_us, fast.value, fast.index) == (
        slow.attribute,
        slow.unit_code,
        slow.time_us,
        slow.value,
        slow.index,
    )
    assert fast_rej == slow_rej


def test_plain_packs_take_the_one_pass_path():
    plain = orjson.loads(
        encode_series(
            "urn:dev:m:", [T0, T0 + 900], {"offtake": ("kWh", [0.1, 0.2]), "power": ("W", [400, 800])}
        )
    )
    assert senml._fast(plain, "e", Limits(10.0), T0, senml.QUANTITIES) is not None
    plain[1]["v"] = float("nan")  # anything unusual falls back to the general path
    assert senml._fast(plain, "e", Limits(10.0), T0, senml.QUANTITIES) is None
