"""``bright offers`` and ``bright bundle evaluate`` on a fresh database."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bright.cli import app
from bright.config import Settings
from bright.services.demo import build_demo_community
from bright.twin.db import make_engine
from bright.twin.service import TwinService


def test_publish_list_and_evaluate(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    twin = TwinService(make_engine(url), Settings(database_url=url))
    community = build_demo_community()
    assert not twin.batch_upsert(
        "", community.entities, twin.resolve_context(community.entities[0]["@context"])
    )["errors"]
    cid = community.entities[0]["id"]
    runner = CliRunner()
    out = runner.invoke(app, ["offers", "publish", "--demo", cid, "--database", url])
    assert out.exit_code == 0, out.output
    assert "published 6 offers" in out.output
    listed = runner.invoke(app, ["offers", "list", "--json", "--database", url])
    assert listed.exit_code == 0
    offers = json.loads(listed.output)
    assert len(offers) == 6 and {o["providerKind"] for o in offers} >= {
        "esco",
        "dr_aggregator",
        "care_operator",
    }
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**offers[0], "providerShare": 2}), encoding="utf-8")
    refused = runner.invoke(app, ["offers", "publish", str(bad), "--database", url])
    assert refused.exit_code == 1 and "provider_share" in refused.output
    member = f"urn:ngsi-ld:EnergyProsumer:{community.key}:home02"
    one = runner.invoke(
        app,
        [
            "bundle",
            "evaluate",
            "--community",
            cid,
            "--member",
            member,
            "--days",
            "1",
            "--json",
            "--database",
            url,
            "--offer",
            offers[1]["id"],
            "--offer",
            offers[2]["id"],
        ],
    )
    assert one.exit_code == 0, one.output
    result = json.loads(one.output)[0]
    assert result["valueEur"] >= result["bestSingle"]["valueEur"] - 0.01
    demo = runner.invoke(app, ["bundle", "evaluate", "--days", "2"], env={"COLUMNS": "200"})
    assert demo.exit_code == 0, demo.output
    assert "energy trio" in demo.output and "everything" in demo.output
    twin.engine.dispose()
