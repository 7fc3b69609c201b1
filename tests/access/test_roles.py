"""The role table of docs/roles.md, walked cell by cell against a node with access control."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bright.ledger.identity import NodeIdentity
from bright.network.access import ROLES
from bright.network.policy import ODRL_CONTEXT
from bright.network.signing import signed_headers

from .conftest import NGSI, AccessNode

ROLES_MD = Path(__file__).resolve().parents[2] / "docs" / "roles.md"
#: Columns that need credentials at all: without them the answer is 401, not a policy's 403.
CREDENTIAL_COLUMNS = {"write entities", "write own consent", "edit policies", "admit nodes", "read audit"}
BIG, SMALL = "urn:ngsi-ld:EnergyCommunity:big", "urn:ngsi-ld:EnergyCommunity:small"


def role_table() -> tuple[list[str], dict[str, dict[str, str]]]:
    """The first table of docs/roles.md: columns and role -> column -> cell."""
    lines = [ln.strip() for ln in ROLES_MD.read_text("utf-8").splitlines()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| role | open data"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return header[1:], rows


def test_the_table_covers_every_role() -> None:
    columns, rows = role_table()
    assert set(rows) == set(ROLES)
    assert len(columns) == 11
    assert all(cell in ("yes", "no", "n/a") for row in rows.values() for cell in row.values())


class Caller:
    """Sends the probes of one role (a token, nothing, or a signed peer request)."""

    def __init__(self, node: AccessNode, role: str) -> None:
        self.node = node
        self.role = role
        self.member = "urn:ngsi-ld:EnergyProsumer:big:m0" if role == "member" else None
        self.identity: NodeIdentity | None = None
        self.headers: dict[str, str] = {}
        if role == "peer":
            self.identity = NodeIdentity.generate()
            node.app.state.access.membership.join(self.identity.did, "peer-node", url="http://peer.example")
        elif role == "member":
            self.headers = node.token("member", community_id=BIG, member_id=self.member)
        elif role != "public":
            self.headers = node.token(role)

    def send(self, method: str, path: str, body: Any = None) -> int:
        content = json.dumps(body).encode() if body is not None else b""
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.identity is not None:
            headers.update(
                signed_headers(self.identity, method, "http://testserver" + path, headers, content)
            )
        r = self.node.client.request(method, path, content=content or None, headers=headers)
        return r.status_code


def probe(caller: Caller, column: str) -> int:
    n = caller.role
    if column == "open data":
        return caller.send("GET", f"{NGSI}/entities/{BIG}")
    if column == "aggregates ≥ k":
        return caller.send("GET", f"/api/communities/{BIG}")
    if column == "aggregates < k":
        return caller.send("GET", f"/api/communities/{SMALL}")
    if column == "community data":
        return caller.send("GET", f"{NGSI}/entities/urn:ngsi-ld:Building:big:hall")
    if column == "another member's data":
        return caller.send("GET", f"{NGSI}/entities/urn:ngsi-ld:Meter:big:m1")
    if column == "own member data":
        return caller.send("GET", f"{NGSI}/entities/urn:ngsi-ld:Meter:big:m0")
    if column == "write entities":
        return caller.send("POST", f"{NGSI}/entities", {"id": f"urn:ngsi-ld:Thing:{n}", "type": "Thing"})
    if column == "write own consent":
        member = caller.member or "urn:ngsi-ld:EnergyProsumer:big:m2"
        return caller.send(
            "POST",
            f"{NGSI}/entities",
            {
                "id": f"urn:ngsi-ld:Consent:{n}",
                "type": "Consent",
                "member": {"type": "Relationship", "object": member},
                "purpose": {"type": "Property", "value": "sharing"},
                "grantedAt": {"type": "Property", "value": "2026-01-01T00:00:00Z"},
            },
        )
    if column == "edit policies":
        odrl = {
            "@context": ODRL_CONTEXT,
            "@type": "Set",
            "uid": f"urn:ngsi-ld:DataPolicy:by-{n}",
            "permission": [{"target": "https://w3id.org/bright/assets#open-data", "action": "read"}],
        }
        return caller.send("POST", "/api/policies", {"odrl": odrl})
    if column == "admit nodes":
        return caller.send(
            "POST", "/api/network/members", {"did": NodeIdentity.generate().did, "nodeId": f"joined-by-{n}"}
        )
    if column == "read audit":
        return caller.send("GET", "/api/audit")
    raise AssertionError(f"no probe for column {column!r}")


@pytest.fixture
def table_node(node: AccessNode) -> AccessNode:
    node.add_community("big", 6)
    node.add_community("small", 3)
    return node


@pytest.mark.parametrize("role", ROLES)
def test_role_table_is_enforced(table_node: AccessNode, role: str) -> None:
    columns, rows = role_table()
    caller = Caller(table_node, role)
    seen = {}
    for column in columns:
        expected = rows[role][column]
        if expected == "n/a":
            continue
        status = probe(caller, column)
        seen[column] = status
        if expected == "yes":
            assert 200 <= status < 300, (role, column, status)
        else:
            assert status in (401, 403), (role, column, status)
            # Without credentials: 401 where credentials are needed at all, else a policy's 403.
            anonymous_write = role == "public" and column in CREDENTIAL_COLUMNS
            assert status == (401 if anonymous_write else 403), (role, column, status)
