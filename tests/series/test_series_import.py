"""Time-series import: CSV with units and local time (the real SimBench DST file), DSO exports, temporal JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from bright.twin.db import make_engine
from bright.twin.series import SeriesError, SeriesStore
from bright.twin.timeseries_import import (
    INJECTION,
    OFFTAKE,
    import_csv,
    import_dso_export,
    import_temporal_json,
    localize_series,
    parse_csv,
    parse_dso_export,
    parse_temporal_json,
)

SIMBENCH = Path("/work/shared/data/profiles/simbench_2016_profiles_15min.csv.gz")
if not SIMBENCH.exists():  # the copy bundled with the package
    SIMBENCH = (
        Path(__file__).resolve().parents[2] / "src/bright/data/profiles/simbench_2016_profiles_15min.csv.gz"
    )
LOAD = "https://w3id.org/bright/ns#loadPerUnit"
# GSRN check digits computed by hand (weights 3, 1, 3, ... from the right of the 17 first digits):
# 54144882000000001 -> 1x3 + 2x1 + 8x3 + 8x1 + 4x3 + 4x1 + 1x3 + 4x1 + 5x3 = 75 -> check 5.
EAN_A = "541448820000000015"
# 54144882000000002 -> 2x3 + 72 = 78 -> check 2.
EAN_B = "541448820000000022"


@pytest.fixture(scope="module")
def postgres_store(pg_module_url: str) -> Iterator[SeriesStore]:
    engine = make_engine(pg_module_url)
    try:
        yield SeriesStore(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[SeriesStore]:
    if request.param == "postgresql":
        pg: SeriesStore = request.getfixturevalue("postgres_store")
        with pg.engine.begin() as conn:
            conn.execute(text("TRUNCATE series_chunks, series RESTART IDENTITY"))
        yield pg
        return
    engine = make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
    try:
        yield SeriesStore(engine)
    finally:
        engine.dispose()


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


# --- the SimBench file: a real spring gap and autumn repeat -----------------------------------------
@pytest.fixture(scope="module")
def simbench() -> tuple[pd.DataFrame, object]:
    raw = pd.read_csv(SIMBENCH)
    parsed = parse_csv(SIMBENCH, time_format="%d.%m.%Y %H:%M", tz="Europe/Brussels")
    return raw, parsed


def test_simbench_local_time_becomes_35136_distinct_utc_quarter_hours(simbench) -> None:
    raw, parsed = simbench
    report = parsed.report
    assert (report.rows_read, len(report.rejected), report.missing, report.blank_lines) == (35_136, 0, 0, 0)
    assert report.values_read == 35_136 * 52
    wide = parsed.frame.pivot(index="time", columns="entity_id", values="value")
    assert wide.shape == (35_136, 52) and wide.index.is_unique
    # A regular UTC grid: 2016-01-01 00:00 CET is 2015-12-31 23:00 UTC; no step other than 15 min,
    # so nothing lost in the spring gap and nothing doubled in the autumn repeat.
    assert wide.index[0] == ts("2015-12-31 23:00") and wide.index[-1] == ts("2016-12-31 22:45")
    assert set(np.diff(wide.index.asi8)) == {15 * 60 * 10**6}
    # Spring: 27.03 01:45 CET (00:45 UTC) is followed by 03:00 CEST (01:00 UTC).
    # Autumn: line 29094 '30.10.2016 02:00' (first) is CEST = 00:00 UTC, line 29098 (repeat) CET = 01:00 UTC.
    assert wide.loc[ts("2016-10-30 00:00"), "BL-H"] == 0.81979
    assert wide.loc[ts("2016-10-30 01:00"), "BL-H"] == 0.75972
    # Every column's sum is preserved.
    np.testing.assert_allclose(wide[raw.columns[1:]].sum().to_numpy(), raw[raw.columns[1:]].sum().to_numpy())
    assert report.first == ts("2015-12-31 23:00") and report.last == ts("2016-12-31 22:45")


def test_simbench_import_round_trip(store: SeriesStore) -> None:
    columns = {
        "H0-A": "urn:ngsi-ld:Meter:h0a",
        "G1-A": "urn:ngsi-ld:Meter:g1a",
        "PV1": "urn:ngsi-ld:Meter:pv1",
    }
    report = import_csv(store, SIMBENCH, attribute=LOAD, columns=columns, time_format="%d.%m.%Y %H:%M")
    assert report.ok and report.values_written == 3 * 35_136 and report.series == 3
    got = store.read(list(columns.values()), LOAD)
    raw = pd.read_csv(SIMBENCH, usecols=list(columns))
    assert got.shape == (35_136, 3) and got.index.is_unique
    for col, entity in columns.items():
        assert got[entity].sum() == pytest.approx(raw[col].sum(), rel=1e-12)
    # Re-importing the file is idempotent.
    again = import_csv(store, SIMBENCH, attribute=LOAD, columns=columns, time_format="%d.%m.%Y %H:%M")
    assert again.values_written == 3 * 35_136
    assert sum(s.count for s in store.series()) == 3 * 35_136


# --- generic CSV ---------------------------------------------------------------------------------
BAD_CSV = """\
Tijd;meter 1;meter 2
2024-03-31 01:30;2.000,0;1000
2024-03-31 01:45;abc;1000
2024-03-31 02:15;500;500

2024-03-31 03:00;;1000
2024-03-31 03:00;7;7
not a date;1;1
2024-03-31 03:15;inf;4000
"""


def test_csv_units_separators_and_rejections(store: SeriesStore, tmp_path) -> None:
    report = import_csv(
        store,
        io.StringIO(BAD_CSV),
        attribute=OFFTAKE,
        time_column="Tijd",
        columns={"meter 1": "urn:m1", "meter 2": "urn:m2"},
        unit="W",
        quantity="energy",
        sep=";",
        decimal=",",
        thousands=".",
        rejects_path=tmp_path / "rejects.csv",
    )
    # Lines 2 to 9: seven data rows and one blank line.
    assert (report.rows_read, report.blank_lines) == (7, 1)
    rejected = [(r.line, r.column, r.reason.split(":")[0]) for r in report.rejected]
    assert rejected == [
        (3, "meter 1", "not a finite number"),
        (4, "Tijd", "local time does not exist in Europe/Brussels (spring DST gap)"),
        (7, "Tijd", "duplicate timestamp"),
        (8, "Tijd", "unparsable timestamp (pass time_format=)"),
        (9, "meter 1", "not a finite number"),
    ]
    assert report.rejected[0].raw == "2024-03-31 01:45;abc;1000"
    assert report.missing == 1  # line 6, meter 1: empty, counted, not written
    assert report.unit_code == "KWH"
    # Mean power over 15 min -> energy: 2,000 W x 0.25 h = 0.5 kWh; 1,000 W -> 0.25 kWh.
    got = store.read(["urn:m1", "urn:m2"], OFFTAKE)
    assert got.index.tolist() == [
        ts("2024-03-31 00:30"),
        ts("2024-03-31 00:45"),
        ts("2024-03-31 01:00"),
        ts("2024-03-31 01:15"),
    ]
    assert got["urn:m1"].tolist()[0] == 0.5 and np.isnan(got["urn:m1"].iloc[1:]).all()
    assert got["urn:m2"].tolist() == [0.25, 0.25, 0.25, 1.0]
    assert report.values_written == 5
    lines = (tmp_path / "rejects.csv").read_text().splitlines()
    assert lines[0] == "line,column,reason,raw" and len(lines) == 6
    assert lines[1].startswith("3,meter 1,not a finite number")


def test_csv_autumn_repeat_offsets_and_zone_less_stamps() -> None:
    csv = "time,p\n" + "\n".join(
        f"2024-10-27 {hm},{v}"
        for hm, v in [
            ("01:45", 1),
            ("02:00", 2),
            ("02:30", 3),
            ("02:00", 4),
            ("02:30", 5),
            ("02:00", 6),
            ("03:00", 7),
        ]
    )
    parsed = parse_csv(io.StringIO(csv), unit="kW")
    f = parsed.frame.set_index("time")["value"]
    # First 02:00 is CEST (00:00 UTC), the repeat is CET (01:00 UTC); a third 02:00 is rejected.
    assert f.to_dict() == {
        ts("2024-10-26 23:45"): 1.0,
        ts("2024-10-27 00:00"): 2.0,
        ts("2024-10-27 00:30"): 3.0,
        ts("2024-10-27 01:00"): 4.0,
        ts("2024-10-27 01:30"): 5.0,
        ts("2024-10-27 02:00"): 7.0,
    }
    assert [(r.line, r.reason.split(":")[0]) for r in parsed.report.rejected] == [
        (7, "autumn DST hour appears more than twice")
    ]
    assert parsed.unit_code == "KWT" and parsed.kind == "power"
    stamped = parse_csv(
        io.StringIO("time,p\n2024-10-27T02:00+02:00,1\n2024-10-27T02:00+01:00,2\n2024-10-27T00:00Z,3\n")
    )
    assert stamped.frame["time"].tolist() == [ts("2024-10-27 00:00"), ts("2024-10-27 01:00")]
    assert stamped.report.rejected[0].line == 4 and "duplicate" in stamped.report.rejected[0].reason
    naive = parse_csv(io.StringIO("time,p\n2024-01-01 00:00,1\n"), tz=None)
    assert naive.frame.empty and "no source time zone" in naive.report.rejected[0].reason


def test_units_and_bad_options() -> None:
    csv = "time,a\n2024-01-01T00:00Z,1.5\n"
    assert parse_csv(io.StringIO(csv), unit="MWh").frame["value"].tolist() == [1500.0]
    assert parse_csv(io.StringIO(csv), unit="Wh").frame["value"].tolist() == [0.0015]
    # 1.5 kWh in a quarter-hour is a mean power of 1.5 / 0.25 h = 6 kW.
    assert parse_csv(io.StringIO(csv), unit="kWh", quantity="power").frame["value"].tolist() == [6.0]
    # Hourly power readings: 1.5 MW x 1 h = 1,500 kWh.
    p = parse_csv(io.StringIO(csv), unit="MW", quantity="energy", interval="1h")
    assert p.frame["value"].tolist() == [1500.0] and p.unit_code == "KWH"
    assert parse_csv(io.StringIO(csv), scale=4.0).frame["value"].tolist() == [6.0]
    with pytest.raises(SeriesError, match="unit 'kVA'"):
        parse_csv(io.StringIO(csv), unit="kVA")
    with pytest.raises(SeriesError, match="no time column 'when'"):
        parse_csv(io.StringIO(csv), time_column="when")
    with pytest.raises(SeriesError, match=r"column\(s\) \['b'\] not in the file"):
        parse_csv(io.StringIO(csv), columns={"b": "urn:b"})


def test_localize_series_counts_repeats_per_group() -> None:
    # Two meters interleaved: each has its own first and second 02:00 on the autumn day.
    local = pd.DatetimeIndex(["2024-10-27 02:00"] * 4 + ["2024-03-31 02:30", "2024-01-01 00:00"])
    utc, why = localize_series(
        local, "Europe/Brussels", np.array(["a", "b", "a", "b", "a", "a"], dtype=object)
    )
    assert list(pd.DatetimeIndex(utc[:4])) == [
        pd.Timestamp(x)
        for x in ["2024-10-27 00:00", "2024-10-27 00:00", "2024-10-27 01:00", "2024-10-27 01:00"]
    ]
    assert why[:4].tolist() == [None] * 4
    assert "spring DST gap" in why[4] and pd.isna(utc[4])
    assert pd.Timestamp(utc[5]) == pd.Timestamp("2023-12-31 23:00")


# --- DSO export ----------------------------------------------------------------------------------
DSO = f"""\
EAN;date;start time;end time;register;volume kWh;validation status
{EAN_A};27-03-2016;01:45;03:00;offtake;0,125;valid
{EAN_A};27-03-2016;01:45;03:00;injection;0,000;valid
{EAN_A};27-03-2016;03:00;03:15;offtake;0,250;estimated
{EAN_A};30-10-2016;02:45;02:00;Afname dag;0,300;valid
{EAN_A};30-10-2016;02:45;02:00;Afname nacht;0,100;valid
{EAN_A};30-10-2016;02:45;03:00;Afname dag;0,400;valid
{EAN_A};30-10-2016;02:45;03:00;Afname nacht;0,000;missing
{EAN_B};30-10-2016;02:45;03:00;offtake;0,100;valid
{EAN_B};30-10-2016;03:00;03:15;offtake;-0,100;valid
541448820000000016;30-10-2016;03:00;03:15;offtake;0,100;valid
{EAN_B};30-10-2016;03:15;03:30;reactive;0,100;valid
{EAN_B};27-03-2016;02:15;02:30;offtake;0,100;valid
"""


def test_dso_export_across_dst(store: SeriesStore, tmp_path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(DSO, encoding="utf-8")
    report = import_dso_export(store, path, rejects_path=tmp_path / "rejects.csv")
    rejected = [(r.line, r.column, r.reason.split(":")[0]) for r in report.rejected]
    assert rejected == [
        (9, "end time", "end time is not 15 minutes after the start"),  # 02:45 CEST ends at 02:00 CET
        (10, "volume kWh", "negative volume (gross offtake and injection are >= 0)"),
        (11, "EAN", "EAN is not an 18-digit GSRN with a valid check digit"),
        (12, "register", "unknown register (offtake/injection expected)"),
        (13, "start time", "local time does not exist in Europe/Brussels (spring DST gap)"),
    ]
    assert report.rows_read == 12 and report.statuses == {"valid": 5, "estimated": 1, "missing": 1}
    assert report.missing == 1
    a = f"urn:ngsi-ld:Meter:{EAN_A}"
    off = store.read(a, OFFTAKE)[a]
    # 27.03 01:45 CET = 00:45 UTC; 03:00 CEST = 01:00 UTC.
    # 30.10 02:45 first = CEST (00:45 UTC): day 0.300 + night 0.100 = 0.4 kWh;
    # the repeat = CET (01:45 UTC): day 0.400 + night missing -> NaN (explicitly missing, not 0.4).
    assert off.index.tolist() == [
        ts("2016-03-27 00:45"),
        ts("2016-03-27 01:00"),
        ts("2016-10-30 00:45"),
        ts("2016-10-30 01:45"),
    ]
    assert off.iloc[:3].tolist() == pytest.approx([0.125, 0.25, 0.4]) and np.isnan(off.iloc[3])
    assert store.read(a, INJECTION)[a].tolist() == [0.0]
    assert {s.unit_code for s in store.series()} == {"KWH"}
    assert len((tmp_path / "rejects.csv").read_text().splitlines()) == 6


def test_dso_export_missing_column_is_named() -> None:
    with pytest.raises(SeriesError, match="no 'validation status' column"):
        parse_dso_export(
            io.StringIO(f"EAN;date;start time;end time;register;volume kWh\n{EAN_A};x;x;x;x;x\n")
        )


# --- NGSI-LD temporal JSON ---------------------------------------------------------------------------
def test_temporal_json_import(store: SeriesStore) -> None:
    doc = [
        {
            "id": "urn:ngsi-ld:Vehicle:1",
            "type": "Vehicle",
            "speed": [
                {"type": "Property", "value": 120, "observedAt": "2020-08-01T12:03:00Z", "unitCode": "KMH"},
                {
                    "type": "Property",
                    "value": 80,
                    "observedAt": "2020-08-01T14:05:00+02:00",
                    "unitCode": "KMH",
                },
                {"type": "Property", "value": float("nan"), "observedAt": "2020-08-01T12:07:00Z"},
                {"type": "Property", "value": "fast", "observedAt": "2020-08-01T12:08:00Z"},
                {"type": "Property", "value": 90, "observedAt": "2020-08-01T12:09:00"},
                {"type": "Property", "value": 95, "observedAt": "2020-08-01T12:10:00Z", "unitCode": "MTS"},
                {
                    "type": "Property",
                    "value": 70,
                    "observedAt": "2020-08-01T12:11:00Z",
                    "datasetId": "urn:ds:gps",
                    "unitCode": "KMH",
                },
            ],
            "fuelLevel": {
                "type": "Property",
                "values": [[67, "2020-08-01T12:03:00Z"], [53, "2020-08-01T13:05:00Z"]],
            },
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
        }
    ]
    report = import_temporal_json(
        store, io.StringIO(json.dumps(doc)), expand=lambda t: f"https://example.org/{t}"
    )
    reasons = [(r.column, r.reason) for r in report.rejected]
    assert reasons == [
        ("urn:ngsi-ld:Vehicle:1/speed[2]", "value nan is not a finite number"),
        ("urn:ngsi-ld:Vehicle:1/speed[3]", "value 'fast' is not a number"),
        ("urn:ngsi-ld:Vehicle:1/speed[4]", "observedAt '2020-08-01T12:09:00' has no time zone"),
        ("urn:ngsi-ld:Vehicle:1/speed[5]", "unitCode 'MTS' differs from 'KMH' earlier in the series"),
        ("urn:ngsi-ld:Vehicle:1/owner[0]", "Relationship is not a numeric Property"),
    ]
    assert (report.rows_read, report.values_written, report.series) == (10, 5, 3)
    v = "urn:ngsi-ld:Vehicle:1"
    speed = store.history(v, "https://example.org/speed")
    assert speed.to_dict() == {ts("2020-08-01 12:03"): 120.0, ts("2020-08-01 12:05"): 80.0}
    assert store.history(v, "https://example.org/speed", dataset_id="urn:ds:gps").tolist() == [70.0]
    assert store.history(v, "https://example.org/fuelLevel").tolist() == [67.0, 53.0]
    units = {(s.attribute, s.dataset_id): s.unit_code for s in store.series()}
    assert units[("https://example.org/speed", None)] == "KMH"
    assert units[("https://example.org/fuelLevel", None)] is None


def test_temporal_json_parse_only_and_bad_json(tmp_path) -> None:
    frame, report = parse_temporal_json(
        {"id": "urn:e", "p": {"type": "Property", "value": 1.5, "observedAt": "2024-01-01T00:00:00Z"}}
    )
    assert frame[["entity_id", "attribute", "value"]].values.tolist() == [["urn:e", "p", 1.5]] and report.ok
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "urn:e", "p": [', encoding="utf-8")
    with pytest.raises(SeriesError, match=r"bad\.json: not JSON"):
        import_temporal_json(None, bad)  # type: ignore[arg-type]
