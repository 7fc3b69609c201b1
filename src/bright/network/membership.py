"""Members of a network of nodes: who may call this node with a signed request.

A network (a city, a district, a federation of communities) is a set of nodes, each identified
by its node key: the Ed25519 ``did:key`` of :mod:`bright.ledger.identity`. Every node keeps the
list of the members it trusts in its ``network_members`` table (migration step 72); the network
organiser adds (join) and removes (leave) members through ``/api/network/members`` or
``bright network join/leave``. A signed request (:mod:`bright.network.signing`) whose key is not
an active member is refused (401); one whose key is, runs as the principal ``peer`` with the
member's node id as subject.

A node that leaves is unregistered: every context source registration of this node that points
at the member's URL, or that the member created under its node id
(``urn:ngsi-ld:ContextSourceRegistration:<node id>``, see
:class:`bright.network.federation.ParentRegistration`), is deleted, so its data drops out of the
network's answers at once. The member row is kept with its ``left_at`` instant (audit trail); a
member may join again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Column, Connection, DateTime, Engine, MetaData, String, Table, insert, select, update

from bright.ledger.identity import IdentityError, PublicIdentity
from bright.network.access import Principal
from bright.twin import migrations
from bright.twin.errors import NgsiLdError

__all__ = [
    "MEMBER_ROLES",
    "Membership",
    "MembershipError",
    "NetworkMember",
]

#: A member node is a community node (``member``) or the network's organiser node (``organiser``).
MEMBER_ROLES = ("member", "organiser")
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")

_meta = MetaData()
members_table = Table(
    "network_members",
    _meta,
    Column("did", String(128), primary_key=True),
    Column("node_id", String(128), nullable=False),
    Column("url", String(512), nullable=True),
    Column("name", String(256), nullable=True),
    Column("role", String(16), nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("left_at", DateTime(timezone=True), nullable=True),
)


def _create(conn: Connection) -> None:
    _meta.create_all(conn, checkfirst=True)


migrations.register(72, "access: members of the node's network", _create)


class MembershipError(ValueError):
    """A bad join or leave (malformed DID, unknown member...); the message names the field."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class NetworkMember:
    """One member node of the network.

    Attributes
    ----------
    did
        The node's ``did:key`` (its Ed25519 public key).
    node_id
        Its node id (the ``Via`` name and registration name of :mod:`bright.network.federation`).
    url
        Base URL it serves at, if known.
    name
        Human name (the community or city).
    role
        ``member`` or ``organiser``.
    joined_at, left_at
        UTC instants; ``left_at`` None while it is a member.
    """

    did: str
    node_id: str
    url: str | None
    name: str | None
    role: str
    joined_at: datetime
    left_at: datetime | None

    @property
    def active(self) -> bool:
        return self.left_at is None

    def principal(self) -> Principal:
        """The principal of a signed request from this node."""
        return Principal(
            role="peer",
            subject=self.node_id,
            kind="node",
            attributes={"did": self.did, "url": self.url, "network_role": self.role},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "did": self.did,
            "nodeId": self.node_id,
            "url": self.url,
            "name": self.name,
            "role": self.role,
            "joinedAt": self.joined_at.isoformat().replace("+00:00", "Z"),
            "leftAt": self.left_at.isoformat().replace("+00:00", "Z") if self.left_at else None,
        }


def _row(row: Any) -> NetworkMember:
    joined = _utc(row["joined_at"])
    assert joined is not None
    return NetworkMember(
        str(row["did"]),
        str(row["node_id"]),
        row["url"],
        row["name"],
        str(row["role"]),
        joined,
        _utc(row["left_at"]),
    )


class Membership:
    """The members of this node's network, in its database.

    Parameters
    ----------
    engine
        The node's database (table created on first use).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrations.migrate(engine)

    def join(
        self,
        did: str,
        node_id: str,
        *,
        url: str | None = None,
        name: str | None = None,
        role: str = "member",
    ) -> NetworkMember:
        """Add (or re-admit) a member node.

        Raises
        ------
        MembershipError
            A DID that is not an Ed25519 ``did:key``, a malformed node id or URL, an unknown role.
        """
        try:
            PublicIdentity.from_did(did)
        except IdentityError as exc:
            raise MembershipError(f"did: {exc}") from None
        if not isinstance(node_id, str) or not _NODE_ID.match(node_id):
            raise MembershipError(f"nodeId {node_id!r} must be 1-128 letters, digits or . _ : -")
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise MembershipError(f"url {url!r} is not an http(s) base URL")
            url = url.rstrip("/")
        if role not in MEMBER_ROLES:
            raise MembershipError(f"role {role!r} is not one of {', '.join(MEMBER_ROLES)}")
        now = datetime.now(UTC)
        values = {
            "node_id": node_id,
            "url": url,
            "name": name,
            "role": role,
            "joined_at": now,
            "left_at": None,
        }
        with self.engine.begin() as conn:
            found = conn.execute(select(members_table.c.did).where(members_table.c.did == did)).first()
            if found:
                conn.execute(update(members_table).where(members_table.c.did == did).values(**values))
            else:
                conn.execute(insert(members_table).values(did=did, **values))
        return NetworkMember(did, node_id, url, name, role, now, None)

    def get(self, key: str) -> NetworkMember | None:
        """A member by DID or node id (active or not)."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(members_table).where(
                        (members_table.c.did == key) | (members_table.c.node_id == key)
                    )
                )
                .mappings()
                .first()
            )
        return _row(row) if row is not None else None

    def members(self, *, include_left: bool = False) -> list[NetworkMember]:
        """Members, by joining date."""
        stmt = select(members_table).order_by(members_table.c.joined_at, members_table.c.did)
        if not include_left:
            stmt = stmt.where(members_table.c.left_at.is_(None))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(stmt).mappings()]

    def active_key(self, did: str) -> PublicIdentity | None:
        """The public identity of ``did`` if it is an active member, else None."""
        member = self.get(did)
        if member is None or not member.active or member.did != did:
            return None
        return PublicIdentity.from_did(did)

    def leave(self, key: str, *, registrations: Any = None) -> tuple[NetworkMember, list[str]]:
        """Remove a member and unregister it.

        Parameters
        ----------
        key
            The member's DID or node id.
        registrations
            The node's :class:`bright.network.registrations.RegistrationManager` (its registrations
            pointing at the member are deleted); None: only the membership ends.

        Returns
        -------
        tuple
            The member (with ``left_at``) and the ids of the registrations deleted.

        Raises
        ------
        MembershipError
            No such member.
        """
        member = self.get(key)
        if member is None:
            raise MembershipError(f"no network member with DID or node id {key!r}")
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(update(members_table).where(members_table.c.did == member.did).values(left_at=now))
        removed = self.unregister(member, registrations) if registrations is not None else []
        return NetworkMember(
            member.did, member.node_id, member.url, member.name, member.role, member.joined_at, now
        ), removed

    @staticmethod
    def unregister(member: NetworkMember, registrations: Any) -> list[str]:
        """Delete every registration (all tenants) of the member; returns their ids."""
        own_id = f"urn:ngsi-ld:ContextSourceRegistration:{member.node_id}"
        base = urlsplit(member.url) if member.url else None
        removed: list[str] = []
        for reg in registrations.store.list(None):
            endpoint = str(reg.doc.get("endpoint") or "")
            ep = urlsplit(endpoint) if endpoint else None
            same_node = (
                base is not None and ep is not None and (ep.scheme, ep.netloc) == (base.scheme, base.netloc)
            )
            if reg.id == own_id or same_node:
                try:
                    registrations.delete(reg.tenant, reg.id)
                except NgsiLdError:  # expired: the manager no longer shows it; drop the row
                    registrations.store.delete(reg.tenant, reg.id)
                removed.append(reg.id)
        return removed
