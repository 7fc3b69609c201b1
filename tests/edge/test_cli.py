"""``bright edge`` commands: import-csv, quarantine list/replay/delete, simulate."""

from __future__ import annotations

import json
import uuid

import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from bright.edge.cli import edge_app
from bright.edge.mqtt import Ingestor, Message
from bright.edge.quarantine import Quarantine
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.db import make_engine
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService

runner = CliRunner()
B = "https://w3id.org/bright/ns#"


def gsrn(body: str) -> str:
    """An 18-digit EAN with its GS1 check digit (weights 3, 1, 3 ... from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def test_import_csv_of_a_dso_export_reports_rejects(tmp_path):
    ean = gsrn("54144882000000001")
    src = tmp_path / "export.csv"
    src.write_text(
        "EAN;date;start time;end time;register;volume kWh;validation status\n"
        f"{ean};01-06-2024;10:00;10:15;offtake;0,125;valid\n"
        f"{ean};01-06-2024;10:00;10:15;injection;0,000;valid\n"
        f"{ean};01-06-2024;10:15;10:30;offtake;-1,0;valid\n",
        encoding="utf-8",
    )
    db = f"sqlite:///{tmp_path / 'twin.db'}"
    res = runner.invoke(
        edge_app, ["import-csv", str(src), "--database", db, "--rejects", str(tmp_path / "rej.csv")]
    )
    assert res.exit_code == 0, res.output
    assert "2 values written" in res.output and "1 rejected" in res.output and "line 4" in res.output
    assert (tmp_path / "rej.csv").read_text().count("\n") == 2  # header + 1 reject
    # 10:00 local (CEST) is 08:00 UTC.
    h = SeriesStore(make_engine(db)).history(f"urn:ngsi-ld:Meter:{ean}", B + "offtakeKwh")
    assert h.to_dict() == {pd.Timestamp("2024-06-01T08:00Z"): 0.125}
    strict = runner.invoke(edge_app, ["import-csv", str(src), "--database", db, "--strict"])
    assert strict.exit_code == 1


def test_import_csv_of_a_generic_file(tmp_path):
    src = tmp_path / "pv.csv"
    src.write_text(
        "time,urn:ngsi-ld:PhotovoltaicDevice:c1:m1\n2024-06-01T12:00:00Z,2000\n2024-06-01T12:15:00Z,2400\n"
    )
    db = f"sqlite:///{tmp_path / 'twin.db'}"
    res = runner.invoke(
        edge_app,
        [
            "import-csv",
            str(src),
            "--format",
            "csv",
            "--attribute",
            "production",
            "--unit",
            "W",
            "--quantity",
            "energy",
            "--database",
            db,
        ],
    )
    assert res.exit_code == 0, res.output
    # 2000 W over a quarter-hour is 0.5 kWh.
    h = SeriesStore(make_engine(db)).history("urn:ngsi-ld:PhotovoltaicDevice:c1:m1", B + "productionKwh")
    assert h.tolist() == [0.5, 0.6]
    bad = runner.invoke(edge_app, ["import-csv", str(src), "--format", "xml", "--database", db])
    assert bad.exit_code != 0 and "use dso, csv or json" in bad.output


@pytest.fixture
def quarantined(tmp_path):
    db = f"sqlite:///{tmp_path / 'twin.db'}"
    engine = make_engine(db)
    ing = Ingestor(engine)
    payload = orjson.dumps([{"bt": 1_717_200_000, "n": "offtake", "u": "kWh", "v": 0.2}])
    ing.process([Message("bright/c1/m1/senml", payload), Message("bright/c1/m1/senml", b"nonsense")])
    return db, engine


def test_quarantine_list_replay_delete(quarantined):
    db, engine = quarantined
    res = runner.invoke(edge_app, ["quarantine", "list", "--database", db, "--json"])
    assert res.exit_code == 0, res.output
    entries = {
        json.loads(line)["topic"] + str(i): json.loads(line) for i, line in enumerate(res.output.splitlines())
    }
    by_reason = {("unknown" if "unknown Meter" in e["reason"] else "json"): e for e in entries.values()}
    assert (
        by_reason["unknown"]["reason"]
        == "payload: unknown Meter urn:ngsi-ld:Meter:c1:m1 (no such entity in the twin)"
    )
    assert by_reason["json"]["reason"].startswith("payload: not JSON")
    assert by_reason["json"]["payload"] == "nonsense"
    table = runner.invoke(edge_app, ["quarantine", "list", "--database", db])
    assert "quarantine (2 open)" in table.output
    # Still unknown: the replay fails and says why.
    res = runner.invoke(edge_app, ["quarantine", "replay", "--database", db])
    assert res.exit_code == 1 and "2 still refused" in res.output
    svc = TwinService(engine)
    svc.batch_upsert(
        "", [{"id": "urn:ngsi-ld:Meter:c1:m1", "type": "Meter"}], svc.resolve_context(BRIGHT_CONTEXT_URL)
    )
    res = runner.invoke(edge_app, ["quarantine", "replay", str(by_reason["unknown"]["id"]), "--database", db])
    assert res.exit_code == 0 and "replayed 1 entries (1 readings written)" in res.output
    res = runner.invoke(edge_app, ["quarantine", "delete", "--status", "replayed", "--database", db])
    assert "deleted 1 entries" in res.output
    assert runner.invoke(edge_app, ["quarantine", "delete", "--database", db]).exit_code != 0  # no filter
    res = runner.invoke(edge_app, ["quarantine", "delete", str(by_reason["json"]["id"]), "--database", db])
    assert "deleted 1 entries" in res.output and Quarantine(engine).count(status=None) == 0


def test_simulate_publishes_to_the_broker(mqtt_broker):
    host, port = mqtt_broker
    root = f"bright-test-{uuid.uuid4().hex[:10]}"
    res = runner.invoke(
        edge_app,
        [
            "simulate",
            "--mqtt",
            f"mqtt://{host}:{port}",
            "--speed",
            "0",
            "--steps-per-pack",
            "4",
            "--max-readings",
            "500",
            "--root",
            root,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "500 readings" in res.output
