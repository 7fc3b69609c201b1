"""Ledger and DVPP REST API, the ``bright ledger`` commands, and the scan for the node's private key
in every response, error, log line, command output, entity and database row."""

from __future__ import annotations

import base64
import functools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bright.api import ledger as ledger_api
from bright.api.app import create_app
from bright.commands.ledger import ledger_app
from bright.config import Settings
from bright.ledger.identity import KEY_FILE_NAME
from bright.services.community import TERMS
from bright.services.demo import DemoCommunity, build_demo_community, meter_series
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.series import SeriesStore
from bright.twin.vocabulary import bright_context

LINK = f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


@functools.lru_cache(maxsize=1)
def _demo() -> tuple[DemoCommunity, dict[str, pd.DataFrame]]:
    community = build_demo_community()
    frames = meter_series(community)
    window = slice(pd.Timestamp("2016-06-01 10:00", tz="UTC"), pd.Timestamp("2016-06-01 11:45", tz="UTC"))
    return community, {k: frames[k].loc[window] for k in ("offtake", "injection")}


def _ids() -> tuple[str, str, str]:
    key = _demo()[0].key
    return (
        f"urn:ngsi-ld:EnergyCommunity:{key}",
        f"urn:ngsi-ld:EnergyProsumer:{key}:home03",
        f"urn:ngsi-ld:Battery:{key}:home03",
    )


def _priced(entity: dict[str, Any], prices: dict[str, float]) -> dict[str, Any]:
    """The community entity with these prices (EUR/kWh), set by IRI over whatever the demo has."""
    ctx = bright_context()
    iris = {TERMS[k] for k in prices}
    out = {k: v for k, v in entity.items() if k in ("id", "type", "@context") or ctx.expand(k) not in iris}
    out.update({TERMS[k]: {"type": "Property", "value": v} for k, v in prices.items()})
    return out


@pytest.fixture
def node_app(tmp_path) -> Iterator[tuple[TestClient, Settings]]:
    community, frames = _demo()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'node.db'}", extra={"data_dir": str(tmp_path / "data")}
    )
    app = create_app(settings)
    twin = app.state.twin
    prices = {"supplierEnergyPrice": 0.30, "feedInPrice": 0.05, "gridFee": 0.12}
    entities = [_priced(community.entities[0], prices), *community.entities[1:]]
    assert not twin.batch_upsert("", entities, bright_context())["errors"]
    series = SeriesStore(twin.engine)
    for name, frame in frames.items():
        series.write(frame, attribute=bright_context().expand(name), unit_code="KWH")
    ledger_api.install(app)  # the key is created here, on the node's first start
    with TestClient(app) as client:
        yield client, settings
    twin.engine.dispose()


def _offer(client: TestClient, **changes: object) -> object:
    _, member, device = _ids()
    body = {
        "member": member,
        "device": device,
        "direction": "up",
        "windowStart": "2016-06-01T16:00:00Z",
        "windowEnd": "2016-06-01T20:00:00Z",
        "powerKw": 3,
        "priceEurPerKwh": 0.15,
    }
    body.update(changes)
    return client.post("/api/dvpp/offers", json=body)


def test_settlement_heads_proofs_and_dvpp_over_the_api(node_app: tuple[TestClient, Settings]) -> None:
    client, _ = node_app
    community, member, _ = _ids()
    identity = client.get("/api/ledger/identity").json()
    assert identity["community"] == community and identity["did"].startswith("did:key:z6Mk")
    # Two hours of the demo community, settled at mid-market: 8 quarter-hours x 14 members.
    settled = client.post(
        "/api/ledger/settlements",
        json={"start": "2016-06-01T10:00:00Z", "end": "2016-06-01T12:00:00Z", "pricing": "mid_market"},
    )
    assert settled.status_code == 201, settled.text
    assert (settled.json()["records"], settled.json()["intervals"]) == (112, 8)
    heads = client.get("/api/ledger/heads", params={"limit": 2}).json()
    assert [h["size"] for h in heads["heads"]] == [112, 98]
    assert heads["heads"][0]["finality"] is None  # no member has cosigned: finality undefined
    assert client.get("/api/ledger/heads/98").json()["size"] == 98
    assert client.get("/api/ledger/heads/97").status_code == 404
    proof = client.get("/api/ledger/records/17/proof").json()
    assert proof["entries"][0]["index"] == 17 and proof["head"]["size"] == 112
    consistency = client.get("/api/ledger/consistency", params={"from": 98, "to": 112}).json()
    assert (consistency["old_size"], consistency["new_size"]) == (98, 112)
    assert client.get("/api/ledger/records/112/proof").status_code == 404
    # DVPP: an offer, a need, the activation, the statement.
    offer = _offer(client)
    assert offer.status_code == 201  # type: ignore[attr-defined]
    body = offer.json()  # type: ignore[attr-defined]
    assert (body["index"], body["offer"]["powerKw"], body["offer"]["priceCentsPerMwh"]) == (112, 3.0, 15000)
    assert body["record"]["kind"] == "flex_offer" and body["record"]["body"]["power_w"] == 3000
    need = {"start": "2016-06-01T17:00:00Z", "end": "2016-06-01T17:45:00Z", "direction": "up", "powerKw": 2}
    activation = client.post("/api/dvpp/activations", json=need).json()
    # 2 kW x 0.75 h = 1.5 kWh x 0.15 EUR/kWh = 0.225 EUR -> 22 cents (half to even).
    act = activation["activations"][0]
    assert (act["energyKwh"], act["amountCents"], activation["shortfallKw"]) == (1.5, 22, 0.0)
    settle = client.post(
        f"/api/dvpp/activations/{act['activationId']}/settlement", json={"deliveredKwh": 1.0}
    )
    assert settle.status_code == 201 and settle.json()["amountCents"] == 15
    statement = client.get(f"/api/dvpp/members/{member}/statement").json()
    assert statement["totals"]["earnedCents"] == 15 and statement["totals"]["offeredKwh"] == 12.0
    assert client.get("/api/dvpp/offers", params={"member": member}).json()["offers"][0]["activations"] == 1
    assert len(client.get("/api/dvpp/activations").json()["activations"]) == 1
    # Bad input is a 400 naming the field, never a 500.
    assert _offer(client, powerKw="3").status_code == 400  # type: ignore[attr-defined]
    bad_window = _offer(client, windowStart="2016-06-01T16:05:00Z")
    assert bad_window.status_code == 400 and "window_start" in bad_window.json()["detail"]  # type: ignore[attr-defined]
    assert _offer(client, colour="red").status_code == 400  # type: ignore[attr-defined]
    assert client.post("/api/dvpp/activations", json={**need, "powerKw": -1}).status_code == 400
    assert client.post("/api/dvpp/activations", json={"start": need["start"]}).status_code == 400
    assert client.post("/api/dvpp/offers", json={"record": {"kind": "flex_offer"}}).status_code == 400
    # The identity is an entity of the twin.
    found = client.get("/ngsi-ld/v1/entities", params={"type": "LedgerNode"}, headers={"Link": LINK}).json()
    assert [e["id"] for e in found] == [f"urn:ngsi-ld:LedgerNode:{identity['did'][8:]}"]


def test_bright_ledger_commands(node_app: tuple[TestClient, Settings], tmp_path: Path) -> None:
    client, settings = node_app
    client.post("/api/ledger/settlements", json={"start": "2016-06-01T10:00:00Z", "end": "2016-06-01T10:30:00Z",
                                                  "pricing": "mid_market"})  # fmt: skip
    did = client.get("/api/ledger/identity").json()["did"]
    runner = CliRunner()
    common = ["--database", settings.database_url, "--data-dir", settings.extra["data_dir"]]
    bundle = tmp_path / "bundle.json"
    out = runner.invoke(ledger_app, ["proof", "5", "-o", str(bundle), *common])
    assert out.exit_code == 0, out.output
    ok = runner.invoke(ledger_app, ["verify", str(bundle), "--key", did])
    assert ok.exit_code == 0 and ok.output.startswith("VALID")
    other = runner.invoke(
        ledger_app,
        ["verify", str(bundle), "--key", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"],
    )
    assert other.exit_code == 1 and "not a trusted key" in other.output
    data = json.loads(bundle.read_text())
    data["entries"][0]["record"]["body"]["offtake_wh"] += 1
    bundle.write_text(json.dumps(data))
    assert runner.invoke(ledger_app, ["verify", str(bundle), "--key", did]).exit_code == 1
    heads = runner.invoke(ledger_app, ["heads", "--json", "--limit", "2", *common])
    assert heads.exit_code == 0 and [h["size"] for h in json.loads(heads.output)] == [28, 14]
    assert did in runner.invoke(ledger_app, ["identity", *common]).output
    assert "no fork" in runner.invoke(ledger_app, ["forks", *common]).output
    missing = runner.invoke(ledger_app, ["anchor", "--rpc", "http://127.0.0.1:9", *common])
    assert missing.exit_code == 1 and "eth_chainId" in missing.output


def _key_forms(key_dir: Path) -> list[str]:
    """Every way the private key could leak: raw seed (hex, base64, base64url), PKCS#8 DER, PEM body."""
    pem = (key_dir / KEY_FILE_NAME).read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forms = [
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]
    forms += [base64.b64encode(der).decode(), base64.urlsafe_b64encode(der).decode().rstrip("=")]
    body = "".join(line for line in pem.decode().splitlines() if "PRIVATE KEY" not in line)
    forms += [body, body[:40]]
    # base64 of the seed shifted by one or two bytes does not start on a 3-byte boundary: check the
    # 24-character core of each alignment too.
    for shift in (1, 2):
        forms.append(base64.b64encode(b"\0" * shift + raw).decode()[4:28])
    return [f for f in forms if f]


def test_the_private_key_never_leaks(
    node_app: tuple[TestClient, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    client, settings = node_app
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    requests = [
        ("get", "/api/ledger/identity", None),
        (
            "post",
            "/api/ledger/settlements",
            {"start": "2016-06-01T10:00:00Z", "end": "2016-06-01T10:30:00Z", "pricing": "mid_market"},
        ),
        ("post", "/api/ledger/heads", None),
        ("get", "/api/ledger/heads", None),
        ("get", "/api/ledger/records/3/proof", None),
        ("get", "/api/ledger/forks", None),
        (
            "post",
            "/api/dvpp/offers",
            {
                "member": _ids()[1],
                "device": _ids()[2],
                "direction": "up",
                "windowStart": "2016-06-01T16:00:00Z",
                "windowEnd": "2016-06-01T20:00:00Z",
                "powerKw": 3,
                "priceEurPerKwh": 0.15,
            },
        ),
        ("get", f"/api/dvpp/members/{_ids()[1]}/statement", None),
        # errors
        ("post", "/api/ledger/heads/3/cosign", {"head": {"size": 3}}),
        ("post", "/api/ledger/heads/3/cosign", {"head": client.get("/api/ledger/heads/14").json()}),
        ("get", "/api/ledger/records/99999/proof", None),
        (
            "post",
            "/api/dvpp/offers",
            {"record": {"author": "x", "body": {}, "kind": "flex_offer", "schema": 1, "sig": "!"}},
        ),
        ("get", "/api/ledger/consistency?from=50&to=3", None),
        ("get", "/openapi.json", None),
        ("get", "/ngsi-ld/v1/entities?type=LedgerNode", None),
    ]
    for method, path, body in requests:
        response = client.request(method, path, json=body, headers={"Link": LINK})
        assert response.status_code < 500, (path, response.text)
        texts.append(response.text)
        texts.append(json.dumps(dict(response.headers)))
    runner = CliRunner()
    common = ["--database", settings.database_url, "--data-dir", settings.extra["data_dir"]]
    for args in (["identity"], ["heads", "--json"], ["proof", "2"], ["forks"], ["settle", "--start", "bad"]):
        texts.append(runner.invoke(ledger_app, [*args, *common]).output)
    node = client.app.state.ledger  # type: ignore[attr-defined]
    texts += [repr(node), str(node.identity_document()), repr(node.config)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info) for record in caplog.records if record.exc_info]
    engine = client.app.state.twin.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                texts.append(repr(tuple(row)))
                texts.extend(base64.b64encode(v).decode() for v in row if isinstance(v, bytes))
                texts.extend(v.hex() for v in row if isinstance(v, bytes))
    haystack = "\n".join(texts)
    assert len(haystack) > 10_000  # the scan did look at something
    key_dir = Path(settings.extra["data_dir"]) / "keys"
    for form in _key_forms(key_dir):
        assert form not in haystack, "the private key leaked"
