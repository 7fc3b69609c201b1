"""Network membership and the shared nonce cache, on both database backends."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from bright.cli import app as cli
from bright.ledger.identity import NodeIdentity
from bright.network.membership import Membership, MembershipError
from bright.network.signing import DatabaseNonceCache, SignatureError, signed_headers, verify_request
from bright.twin.db import make_engine

from .conftest import AccessNode


def test_join_validates_and_leave_keeps_the_trail(db_url: str) -> None:
    engine = make_engine(db_url)
    m = Membership(engine)
    ident = NodeIdentity.generate()
    with pytest.raises(MembershipError, match=r"^did:"):
        m.join("did:key:zNotAKey", "a")
    with pytest.raises(MembershipError, match="nodeId"):
        m.join(ident.did, "bad id with spaces")
    with pytest.raises(MembershipError, match="url"):
        m.join(ident.did, "a", url="ftp://x")
    joined = m.join(ident.did, "community-a", url="http://10.0.0.7:8001/", name="A")
    assert joined.url == "http://10.0.0.7:8001" and joined.active
    assert m.active_key(ident.did) is not None and m.active_key(ident.did).did == ident.did
    assert m.get("community-a") == m.get(ident.did)
    left, removed = m.leave("community-a")
    assert left.left_at is not None and removed == []
    assert m.active_key(ident.did) is None
    assert m.members() == [] and len(m.members(include_left=True)) == 1
    with pytest.raises(MembershipError, match="no network member"):
        m.leave("nobody")
    again = m.join(ident.did, "community-a")
    assert again.active and m.active_key(ident.did) is not None
    engine.dispose()


def test_database_nonce_cache_refuses_a_replay_to_another_worker(db_url: str) -> None:
    engine = make_engine(db_url)
    worker_a, worker_b = DatabaseNonceCache(engine), DatabaseNonceCache(engine)
    me = NodeIdentity.generate()
    url = "http://127.0.0.1:9/ngsi-ld/v1/types"
    h = {k.lower(): v for k, v in signed_headers(me, "GET", url).items()}

    def check(cache: DatabaseNonceCache) -> None:
        verify_request(
            "GET",
            url,
            "127.0.0.1:9",
            h,
            b"",
            known_key=lambda k: me.public if k == me.did else None,
            nonces=cache,
        )

    check(worker_a)
    with pytest.raises(SignatureError, match="replayed"):
        check(worker_b)
    assert worker_a.remember(me.did, "y" * 20, time.time() + 300)
    assert not worker_b.remember(me.did, "y" * 20, time.time() + 300)
    engine.dispose()


def test_rest_join_names_the_bad_field_and_cli_lists(node: AccessNode) -> None:
    c = node.client
    r = c.post("/api/network/members", json={"did": "did:key:z123", "nodeId": "x"}, headers=node.manager)
    assert r.status_code == 400 and r.json()["detail"].startswith("did:")
    organiser = node.token("network_organiser")
    ident = NodeIdentity.generate()
    r = c.post(
        "/api/network/members",
        json={"did": ident.did, "nodeId": "n1", "role": "organiser"},
        headers=organiser,
    )
    assert r.status_code == 201 and r.json()["role"] == "organiser"
    assert [m["nodeId"] for m in c.get("/api/network/members", headers=organiser).json()] == ["n1"]
    assert c.get("/api/network/members", headers=node.token("investor")).status_code == 403
    assert c.delete("/api/network/members/unknown", headers=organiser).status_code == 404
    url = node.engine.url.render_as_string(hide_password=False)
    out = CliRunner().invoke(cli, ["peers", "list", "-d", url])
    assert out.exit_code == 0 and "n1" in out.output
    out = CliRunner().invoke(cli, ["peers", "leave", "n1", "-d", url])
    assert out.exit_code == 0 and "left" in out.output
    assert c.get("/api/network/members", headers=organiser).json() == []
