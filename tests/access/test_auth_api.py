"""Authentication: writes are never anonymous, API tokens, sessions, the open mode."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bright.api.auth import ANONYMOUS_WRITES, READ_POSTS
from bright.cli import app as cli
from bright.web.users import create_user, list_tokens

from .conftest import NGSI, AccessNode, build_node

WRITES = ("post", "put", "patch", "delete")


def _fill(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}",
        lambda m: "1" if "size" in m.group(0) or "index" in m.group(0) else "urn:ngsi-ld:Thing:x",
        path,
    )


def test_every_write_route_refuses_anonymous_callers(node: AccessNode) -> None:
    """Walks the node's OpenAPI description: new routers are covered without being listed."""
    paths = node.app.openapi()["paths"]
    checked = 0
    for path, ops in paths.items():
        if not path.startswith(("/api", "/ngsi-ld")):
            continue
        for method in (m for m in ops if m in WRITES):
            url = _fill(path)
            if any(p.match(url) for p in READ_POSTS) and method == "post":
                continue
            if any(method.upper() in ms and pat.match(url) for pat, ms, _ in ANONYMOUS_WRITES):
                continue
            r = node.client.request(method.upper(), url, json={"id": "urn:ngsi-ld:Thing:x", "type": "Thing"})
            assert r.status_code == 401, (method, url, r.status_code, r.text)
            problem = r.json()
            assert problem["type"].endswith("/Unauthorized")
            assert "API token" in problem["detail"] and "Signature-Input" in problem["detail"]
            assert r.headers["www-authenticate"].startswith("Bearer")
            checked += 1
    assert checked >= 30
    assert node.service.store.get("", "urn:ngsi-ld:Thing:x") is None


def test_login_form_is_an_allowed_anonymous_write(node: AccessNode) -> None:
    create_user(node.engine, "alice", "s3cret-pw", "manager")
    bad = node.client.post("/login", data={"username": "alice", "password": "wrong"}, follow_redirects=False)
    assert bad.status_code == 400
    ok = node.client.post(
        "/login", data={"username": "alice", "password": "s3cret-pw"}, follow_redirects=False
    )
    assert ok.status_code == 303 and "bright_session" in ok.cookies
    # The session cookie authenticates API writes too.
    r = node.client.post(
        NGSI + "/entities",
        json={"id": "urn:ngsi-ld:Thing:s", "type": "Thing"},
        cookies={"bright_session": ok.cookies["bright_session"]},
    )
    assert r.status_code == 201, r.text
    forged = node.client.post(
        NGSI + "/entities",
        json={"id": "urn:ngsi-ld:Thing:f", "type": "Thing"},
        cookies={"bright_session": "e30.00"},
    )
    assert forged.status_code == 401


def test_tokens_created_listed_revoked_by_a_manager(node: AccessNode) -> None:
    c = node.client
    assert c.post("/api/tokens", json={"name": "x", "role": "researcher"}).status_code == 401
    researcher = node.token("researcher")
    r = c.post("/api/tokens", json={"name": "x", "role": "researcher"}, headers=researcher)
    assert r.status_code == 403 and r.json()["policy"].endswith("#researcher")
    bad = c.post("/api/tokens", json={"name": "x", "role": "pirate"}, headers=node.manager)
    assert bad.status_code == 400 and "pirate" in bad.json()["detail"]
    made = c.post(
        "/api/tokens", json={"name": "city-dashboard", "role": "local_government"}, headers=node.manager
    )
    assert made.status_code == 201
    value = made.json()["token"]
    assert value.startswith("brt_") and len(value) > 40
    listed = c.get("/api/tokens", headers=node.manager)
    assert listed.status_code == 200
    assert value not in listed.text and value.rsplit("_", 1)[1] not in listed.text
    assert any(t["name"] == "city-dashboard" and t["revokedAt"] is None for t in listed.json())
    mine = {"Authorization": f"Bearer {value}"}
    assert c.get("/api/policies", headers=mine).status_code == 200
    revoked = c.delete(f"/api/tokens/{made.json()['id']}", headers=node.manager)
    assert revoked.status_code == 200 and revoked.json()["revokedAt"]
    refused = c.get("/api/policies", headers=mine)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    # The secret is never stored: only its SHA-256.
    with node.engine.connect() as conn:
        rows = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM api_tokens").all()]
    assert not any(value.rsplit("_", 1)[1] in str(row) for row in rows)


@pytest.mark.parametrize("header", ["Basic YWxpY2U6eA==", "Bearer brt_nope_nope", "Bearer "])
def test_bad_authorization_is_401_even_for_reads(node: AccessNode, header: str) -> None:
    r = node.client.get(NGSI + "/entities?type=Thing", headers={"Authorization": header})
    assert r.status_code == 401


def test_wrong_tenant_token_refused(node: AccessNode) -> None:
    t = node.token("researcher", tenant="district-a")
    r = node.client.get(NGSI + "/entities?type=Thing", headers={**t, "NGSILD-Tenant": "district-b"})
    assert r.status_code == 403 and "district-a" in r.json()["detail"]


def test_open_mode_keeps_anonymous_writes(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIGHT_DATA_DIR", str(tmp_path / "web"))
    n = build_node(db_url, tmp_path, auth="open")
    try:
        r = n.client.post(NGSI + "/entities", json={"id": "urn:ngsi-ld:Thing:o", "type": "Thing"})
        assert r.status_code == 201
        assert n.client.get(NGSI + "/entities/urn:ngsi-ld:Thing:o").status_code == 200
        # Bad credentials are still refused in open mode.
        assert (
            n.client.get(
                NGSI + "/entities?type=Thing", headers={"Authorization": "Bearer brt_x_y"}
            ).status_code
            == 401
        )
    finally:
        n.client.__exit__(None, None, None)
        n.engine.dispose()


def test_token_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    made = runner.invoke(cli, ["token", "create", "school", "--role", "school_staff", "-d", db])
    assert made.exit_code == 0, made.output
    value = made.output.strip().splitlines()[-1]
    assert value.startswith("brt_")
    listed = runner.invoke(cli, ["token", "list", "-d", db])
    assert listed.exit_code == 0 and "school" in listed.output and value not in listed.output
    from bright.twin.db import make_engine

    engine = make_engine(db)
    (token,) = list_tokens(engine)
    assert runner.invoke(cli, ["token", "revoke", token.token_id, "-d", db]).exit_code == 0
    assert list_tokens(engine)[0].revoked_at is not None
    bad = runner.invoke(cli, ["token", "create", "x", "--role", "king", "-d", db])
    assert bad.exit_code == 1 and "king" in bad.output
    engine.dispose()
