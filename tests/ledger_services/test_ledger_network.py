"""Peer cross-signing between three nodes on loopback (real HTTP, uvicorn servers in threads):
consistency checks, quorum finality, a fork detected by a peer, refusals."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import delete

from bright.api import ledger as ledger_api
from bright.api.app import create_app
from bright.config import Settings
from bright.ledger.heads import SignedTreeHead, is_final
from bright.ledger.identity import NodeIdentity
from bright.ledger.merkle import MerkleLog
from bright.ledger.records import Settlement, sign_record
from bright.ledger.verify import verify_bundle
from bright.services.ledger import LedgerNode, peers_table

COMMUNITY = "urn:ngsi-ld:EnergyCommunity:loopback"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Peer:
    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread
    data_dir: Path

    @property
    def node(self) -> LedgerNode:
        node: LedgerNode = self.app.state.ledger
        return node


def _start(tmp: Path, name: str, port: int, **extra: str) -> Peer:
    settings = Settings(
        database_url=f"sqlite:///{tmp / name}.db",
        node_name=name,
        extra={"data_dir": str(tmp / name), **extra},
    )
    app = create_app(settings)
    ledger_api.install(app)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"node {name} did not start")
        time.sleep(0.02)
    return Peer(f"http://127.0.0.1:{port}", app, server, thread, tmp / name)


def _stop(peer: Peer) -> None:
    peer.server.should_exit = True
    peer.thread.join(10)
    peer.app.state.twin.engine.dispose()


@pytest.fixture
def network(tmp_path) -> Iterator[tuple[Peer, Peer, Peer]]:
    """Operator A (the community's log) and member nodes B, C; A asks B and C to cosign.

    The members counted for finality are A, B and C: with the 2/3 quorum, ceil(2/3 x 3) = 2 of the
    three signatures (A's own included) make a head final.
    """
    ports = [_free_port() for _ in range(3)]
    b = _start(tmp_path, "b", ports[1])
    c = _start(tmp_path, "c", ports[2])
    a_did = NodeIdentity.load_or_create(tmp_path / "a" / "keys").did  # A's key, as on its first start
    a = _start(
        tmp_path,
        "a",
        ports[0],
        ledger_community=COMMUNITY,
        ledger_peers=f"{b.url},{c.url}",
        ledger_members=",".join([a_did, b.node.did, c.node.did]),
    )
    assert a.node.did == a_did
    yield a, b, c
    for peer in (a, b, c):
        if peer.thread.is_alive():
            _stop(peer)


def _settle_interval(node: LedgerNode, start: datetime, members: int = 3) -> None:
    records = [
        Settlement(
            COMMUNITY,
            f"urn:ngsi-ld:EnergyProsumer:loopback:m{m}",
            start,
            offtake_wh=400 + m,
            injection_wh=0,
            shared_offtake_wh=100,
            shared_injection_wh=0,
            amount_cents=2,
        )
        for m in range(members)
    ]
    node.append_records(records)


T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_cross_signing_consistency_and_quorum_finality(network: tuple[Peer, Peer, Peer]) -> None:
    a, b, c = network
    _settle_interval(a.node, T0)
    with httpx.Client(timeout=10) as http:
        first = http.post(f"{a.url}/api/ledger/heads").json()
        assert first["head"]["size"] == 3
        assert [p["status"] for p in first["peers"]] == ["cosigned", "cosigned"]
        assert {x["signer"] for x in first["head"]["cosignatures"]} == {b.node.did, c.node.did}
        fin = first["head"]["finality"]
        assert fin["final"] and fin["required"] == 2 and len(fin["signers"]) == 3
        # Next interval: each peer checks the new head extends the one it cosigned (3 -> 6).
        _settle_interval(a.node, T0 + timedelta(minutes=15))
        second = http.post(f"{a.url}/api/ledger/heads").json()
        assert [p["status"] for p in second["peers"]] == ["cosigned", "cosigned"]
        assert second["head"]["size"] == 6
        seen = b.node.seen_heads()
        assert [h.size for h in seen] == [6, 3] and all(h.signer == a.node.did for h in seen)
        # C goes offline: B alone still makes 2 of 3 with A's own signature: final.
        _stop(c)
        _settle_interval(a.node, T0 + timedelta(minutes=30))
        third = http.post(f"{a.url}/api/ledger/heads").json()
        assert [p["status"] for p in third["peers"]] == ["cosigned", "unreachable"]
        assert third["head"]["finality"]["final"] is True
        heads = http.get(f"{a.url}/api/ledger/heads", params={"limit": 5}).json()["heads"]
        assert [h["size"] for h in heads[:3]] == [9, 6, 3]
        # A record proven against the cosigned head verifies offline with the three keys.
        bundle = http.get(f"{a.url}/api/ledger/records/4/proof", params={"size": 6}).json()
        report = verify_bundle(bundle, trusted_keys=[a.node.did, b.node.did, c.node.did])
        assert report.ok and report.final is True
    # With a unanimity quorum the head of size 9 is not final (2 signers of 3), the one of size 6 is.
    members = [a.node.did, b.node.did, c.node.did]
    assert not is_final(a.node.head(9), members, quorum=1)
    assert is_final(a.node.head(6), members, quorum=1)


def test_peer_asks_for_a_consistency_proof_when_the_operator_forgot(network: tuple[Peer, Peer, Peer]) -> None:
    a, b, _ = network
    _settle_interval(a.node, T0)
    a.node.request_cosignatures()
    _settle_interval(a.node, T0 + timedelta(minutes=15))
    with a.node.engine.begin() as conn:  # the operator lost what the peers last cosigned
        conn.execute(delete(peers_table))
    with httpx.Client(timeout=10) as http:
        head = a.node.sign_head()
        bare = http.post(f"{b.url}/api/ledger/heads/{head.size}/cosign", json={"head": head.to_json()})
        assert bare.status_code == 409 and bare.json()["previousSize"] == 3
    result = a.node.request_cosignatures(head)  # asks, is told 3, sends the 3 -> 6 proof
    assert [o.status for o in result.outcomes] == ["cosigned", "cosigned"]


def test_a_fork_is_detected_by_a_peer(network: tuple[Peer, Peer, Peer]) -> None:
    a, b, c = network
    _settle_interval(a.node, T0)
    a.node.request_cosignatures()  # B and C cosigned size 3
    # The operator equivocates: it shows B another history of size 6 (records 3-5 differ), consistent
    # with the head of size 3 B already holds...
    operator = NodeIdentity.load(a.data_dir / "keys")
    other = MerkleLog()
    for data in a.node.store.leaves(0, 3):
        other.append(data)
    for m in range(3):
        fake = Settlement(COMMUNITY, f"urn:ngsi-ld:EnergyProsumer:loopback:m{m}", T0 + timedelta(minutes=15),
                          offtake_wh=1, injection_wh=0, shared_offtake_wh=0, shared_injection_wh=0,
                          amount_cents=-500)  # fmt: skip
        other.append(sign_record(fake, operator).to_bytes())
    evil = SignedTreeHead.for_log(other, operator, community=COMMUNITY)
    with httpx.Client(timeout=10) as http:
        proof = other.consistency_proof(3, 6).to_json()
        ok = http.post(
            f"{b.url}/api/ledger/heads/6/cosign", json={"head": evil.to_json(), "consistency": proof}
        )
        assert ok.status_code == 200  # B cannot know yet: the evil head extends what it saw
        # ... and the honest history of size 6 to everyone.
        _settle_interval(a.node, T0 + timedelta(minutes=15))
        result = http.post(f"{a.url}/api/ledger/heads").json()
        assert [p["status"] for p in result["peers"]] == ["fork", "cosigned"]
        # B raised the alarm and keeps both heads as evidence; A was told and keeps it too.
        forks_b = http.get(f"{b.url}/api/ledger/forks").json()["forks"]
        assert len(forks_b) == 1
        fork = forks_b[0]
        assert fork["size"] == 6 and fork["equivocator"] == a.node.did and fork["valid"]
        assert {h["root"] for h in fork["heads"]} == {
            evil.to_json()["root"],
            a.node.head(6).to_json()["root"],
        }
        assert http.get(f"{a.url}/api/ledger/forks").json()["forks"][0]["equivocator"] == a.node.did
        assert http.get(f"{c.url}/api/ledger/forks").json()["forks"] == []
        # B refuses to cosign the honest head of that size now.
        again = http.post(f"{b.url}/api/ledger/heads/6/cosign", json={"head": a.node.head(6).to_json()})
        assert again.status_code == 409 and "fork" in again.json()


def test_rewritten_history_and_foreign_operators_are_refused(network: tuple[Peer, Peer, Peer]) -> None:
    a, b, _ = network
    _settle_interval(a.node, T0)
    a.node.request_cosignatures()
    operator = NodeIdentity.load(a.data_dir / "keys")
    # A history of size 6 that does not start with the 3 records B cosigned (record 0 rewritten).
    rewritten = MerkleLog()
    for m in range(6):
        body = Settlement(COMMUNITY, f"urn:ngsi-ld:EnergyProsumer:loopback:m{m % 3}", T0 + timedelta(minutes=15 * (m // 3)),
                          offtake_wh=999, injection_wh=0, shared_offtake_wh=0, shared_injection_wh=0,
                          amount_cents=0)  # fmt: skip
        rewritten.append(sign_record(body, operator).to_bytes())
    head = SignedTreeHead.for_log(rewritten, operator, community=COMMUNITY)
    with httpx.Client(timeout=10) as http:
        url = f"{b.url}/api/ledger/heads/6/cosign"
        refused = http.post(
            url, json={"head": head.to_json(), "consistency": rewritten.consistency_proof(3, 6).to_json()}
        )
        assert refused.status_code == 409 and "does not extend" in refused.json()["detail"]
        # Another node signing heads for the same community is not the pinned operator.
        intruder = NodeIdentity.generate()
        foreign = SignedTreeHead.for_log(rewritten, intruder, community=COMMUNITY)
        assert http.post(url, json={"head": foreign.to_json()}).status_code == 403
        # A head whose signature does not verify, and a path that disagrees with the body.
        forged = {**head.to_json(), "size": 5}
        assert http.post(f"{b.url}/api/ledger/heads/5/cosign", json={"head": forged}).status_code == 400
        assert (
            http.post(f"{b.url}/api/ledger/heads/7/cosign", json={"head": head.to_json()}).status_code == 400
        )
        assert http.post(url, json={"nothing": 1}).status_code == 400
    assert [h.size for h in b.node.seen_heads()] == [3]  # nothing refused was kept as "seen"
