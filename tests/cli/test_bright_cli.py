"""The bright command line: import files, build the demo community."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bright.cli import app
from bright.twin.db import make_engine
from bright.twin.service import TwinService

runner = CliRunner()


def test_import_upserts_and_reports_rejects(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    good = [
        {"id": f"urn:ngsi-ld:Meter:{i}", "type": "Meter", "offtake": {"type": "Property", "value": i}}
        for i in range(50)
    ]
    path = tmp_path / "meters.json"
    path.write_text(json.dumps(good))
    graph = tmp_path / "graph.jsonld"
    graph.write_text(
        json.dumps(
            {
                "@context": "https://w3id.org/bright/context.jsonld",
                "@graph": [
                    {
                        "id": "urn:ngsi-ld:Meter:x",
                        "type": "Meter",
                        "accessPointId": {"type": "Property", "value": "541448000000000009"},
                    }
                ],
            }
        )
    )
    res = runner.invoke(app, ["import", str(path), str(graph), "--database", db, "--batch", "20"])
    assert res.exit_code == 0, res.output
    assert "imported 51 entities, rejected 0" in res.output
    svc = TwinService(make_engine(db))
    assert svc.store.get("", "urn:ngsi-ld:Meter:49") is not None
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "urn:ngsi-ld:Meter:y", "type": "Meter"}\n{"id": "not a uri", "type": "Meter"}\n')
    res = runner.invoke(app, ["import", str(bad), "--database", db])
    assert res.exit_code == 1
    assert "rejected" in res.output and "not a uri" in res.output
    assert svc.store.get("", "urn:ngsi-ld:Meter:y") is not None


def test_demo_builds_a_valid_community(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    res = runner.invoke(app, ["demo", "--single", "--no-serve", "--database", db])
    assert res.exit_code == 0, res.output
    svc = TwinService(make_engine(db))
    ctx = svc.resolve_context("https://w3id.org/bright/context.jsonld")
    from bright.twin.store import EntityQuery

    members, _ = svc.store.query(
        "", EntityQuery(type_query=None, limit=100, ids=None, attrs=[ctx.expand("memberOf")])
    )
    assert len(members) == 14
    school = next(d for d in members if d["id"].endswith(":school"))
    assert school["attrs"][ctx.expand("annualConsumption")][0]["value"] == 60_000


def test_import_series_csv_converts_local_time_and_reports_rejects(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'series.db'}"
    csv = tmp_path / "meters.csv"
    # The autumn repeat: 02:00 local appears twice (CEST, then CET) -> two distinct UTC quarter-hours.
    csv.write_text(
        "time,urn:ngsi-ld:Meter:a\n2016-10-30 01:45,1.0\n2016-10-30 02:00,2.0\n2016-10-30 02:00,3.0\n"
        "2016-10-30 02:15,oops\n"
    )
    res = runner.invoke(app, ["import", str(csv), "--series", "csv", "--unit", "kWh", "--database", db])
    assert res.exit_code == 1  # a rejected record fails the import (strict), after writing the rest
    assert "oops" in res.output
    from bright.twin.series import SeriesStore
    from bright.twin.vocabulary import bright_context

    s = SeriesStore(make_engine(db)).history("urn:ngsi-ld:Meter:a", bright_context().expand("offtake"))
    assert [str(t) for t in s.index] == [
        "2016-10-29 23:45:00+00:00",
        "2016-10-30 00:00:00+00:00",
        "2016-10-30 01:00:00+00:00",
    ]
    assert s.tolist() == [1.0, 2.0, 3.0]


def test_import_the_simbench_file_with_a_column_map(tmp_path: Path) -> None:
    """The real SimBench file (local time, a spring gap and an autumn repeat) imports whole."""
    db = f"sqlite:///{tmp_path / 'sb.db'}"
    src = Path(__file__).parents[2] / "src/bright/data/profiles/simbench_2016_profiles_15min.csv.gz"
    res = runner.invoke(
        app,
        [
            "import",
            str(src),
            "--series",
            "csv",
            "--column",
            "H0-A=urn:ngsi-ld:Meter:h0a",
            "--time-format",
            "%d.%m.%Y %H:%M",
            "--unit",
            "kWh",
            "--database",
            db,
        ],
    )
    assert res.exit_code == 0, res.output
    from bright.twin.series import SeriesStore
    from bright.twin.vocabulary import bright_context

    s = SeriesStore(make_engine(db)).history("urn:ngsi-ld:Meter:h0a", bright_context().expand("offtake"))
    assert len(s) == 35_136 and s.index.is_unique  # 92 + 100 quarter-hours on the DST days


def test_demo_network_refuses_a_busy_port_before_building(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = runner.invoke(
            app, ["demo", "--no-serve", "--directory", str(tmp_path / "net"), "--port", str(port)]
        )
    assert res.exit_code == 1
    assert f"port(s) {port}" in res.output and "in use" in res.output
    assert not list((tmp_path / "net").glob("*.db"))  # nothing was built
