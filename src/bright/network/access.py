"""Who is asking: the principal of a request, and the roles of a BRIGHT node.

Every request a node serves has a :class:`Principal`. The authentication middleware
(:mod:`bright.api.auth`) sets it on ``request.state.principal`` from an API token, a dashboard
session or a signed request from a peer node; a request without credentials is the anonymous
``public`` principal. Policy enforcement, the role table and the audit log read it through
:func:`principal_of`.

Two small tables complete what a principal is: :class:`TokenSubjects` (``api_token_subjects``,
migration 74: the party an API token acts as, e.g. a service provider's id, instead of
``token:<name>``) and :class:`SubscriptionPrincipals` (``access_subscription_principals``,
migration 75: who created each NGSI-LD subscription, whose reads its notifications follow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, insert, select

from bright.twin import migrations

__all__ = [
    "ANONYMOUS",
    "OPEN_ACCESS",
    "ROLES",
    "USER_GROUPS",
    "Principal",
    "SubscriptionPrincipals",
    "TokenSubjectError",
    "TokenSubjects",
    "check_token_subject",
    "principal_of",
]

#: The ten user groups of the use case, then the node-level roles. ``public`` is the anonymous
#: visitor; ``peer`` a node of the same network calling with a signed request.
USER_GROUPS = (
    "member",
    "manager",
    "school_staff",
    "local_government",
    "energy_company",
    "ngo",
    "researcher",
    "technology_provider",
    "network_organiser",
    "investor",
)
ROLES = (*USER_GROUPS, "public", "peer")


@dataclass(frozen=True)
class Principal:
    """The caller of one request.

    Attributes
    ----------
    role
        One of :data:`ROLES`.
    subject
        User name, token name or peer node id (``urn:ngsi-ld:Node:...``); None when anonymous.
    kind
        ``anonymous``, ``user`` (dashboard session or API token), ``node`` (a signed peer request)
        or ``open`` (no credentials on a node running with ``BRIGHT_AUTH=open``).
    community_id
        The community the principal belongs to (members, managers), if any.
    member_id
        The member entity id of a ``member`` principal, if any.
    tenant
        The NGSI-LD tenant the credentials were issued for (None: the default tenant).
    attributes
        Anything else the authenticator learnt (e.g. the peer's key id).
    """

    role: str = "public"
    subject: str | None = None
    kind: str = "anonymous"
    community_id: str | None = None
    member_id: str | None = None
    tenant: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        """True for a caller that presented no credentials."""
        return self.kind == "anonymous"


ANONYMOUS = Principal()
#: The caller without credentials on a node running with ``BRIGHT_AUTH=open`` (no access control,
#: for the ETSI conformance run and tests): it acts as the node's manager. See docs/access.md.
OPEN_ACCESS = Principal(role="manager", kind="open")


def principal_of(request: Any) -> Principal:
    """The principal the authentication middleware attached to ``request`` (anonymous if none)."""
    state = getattr(request, "state", None)
    found = getattr(state, "principal", None) if state is not None else None
    return found if isinstance(found, Principal) else ANONYMOUS


# --------------------------------------------------------------------------------------------------
# Subjects of API tokens issued for a party (a service provider)
# --------------------------------------------------------------------------------------------------

#: Entity types a token subject may not name: members act through member tokens (``member_id``),
#: nodes through signed requests.
_NOT_A_TOKEN_SUBJECT = ("EnergyProsumer", "Node")


class TokenSubjectError(ValueError):
    """A subject an API token cannot be issued for (the message names why)."""


def check_token_subject(subject: str) -> str:
    """``subject`` if an API token may act as it (an NGSI-LD entity id of a party), else an error.

    A token normally acts as ``token:<name>``. A token issued for a party, e.g. a service
    provider ``urn:ngsi-ld:ServiceProvider:esco-1``, acts as that id: the id the provider's
    Agreements name as assignee (docs/offers.md). Allowed: ``urn:ngsi-ld:<Type>:<id>`` with a type
    other than EnergyProsumer and Node, at most 256 characters, no white space.

    Raises
    ------
    TokenSubjectError
        Naming what is wrong.
    """
    s = subject.strip()
    if not s or len(s) > 256 or any(c.isspace() for c in s):
        raise TokenSubjectError(f"subject {subject!r} must have 1 to 256 characters and no white space")
    parts = s.split(":")
    if len(parts) < 4 or parts[0] != "urn" or parts[1] != "ngsi-ld" or not parts[2] or not parts[3]:
        raise TokenSubjectError(
            f"subject {subject!r} is not an NGSI-LD entity id urn:ngsi-ld:<Type>:<id> "
            "(e.g. urn:ngsi-ld:ServiceProvider:esco-1)"
        )
    if parts[2] in _NOT_A_TOKEN_SUBJECT:
        raise TokenSubjectError(
            f"subject {subject!r}: a token cannot act as a {parts[2]} (members use member tokens, "
            "nodes sign their requests)"
        )
    return s


token_subjects_table = Table(
    "api_token_subjects",
    MetaData(),
    Column("token_id", String(32), primary_key=True),
    Column("subject", String(256), nullable=False),
)


def _create_token_subjects(conn: Connection) -> None:
    token_subjects_table.create(conn, checkfirst=True)


migrations.register(74, "access: subjects of API tokens issued for a party", _create_token_subjects)


class TokenSubjects:
    """The principal subject of API tokens issued for a party (table ``api_token_subjects``).

    Parameters
    ----------
    engine
        The node's database; the table is created by migration step 74.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrations.migrate(engine)
        self._known: dict[str, str | None] = {}

    def set(self, token_id: str, subject: str) -> None:
        """Record the subject of a token (once, at its creation)."""
        with self.engine.begin() as conn:
            conn.execute(insert(token_subjects_table).values(token_id=token_id, subject=subject))
        self._known[token_id] = subject

    def get(self, token_id: str) -> str | None:
        """The subject a token was issued for, None for a plain token (cached: it never changes)."""
        if token_id not in self._known:
            t = token_subjects_table
            with self.engine.connect() as conn:
                found = conn.execute(select(t.c.subject).where(t.c.token_id == token_id)).scalar()
            self._known[token_id] = None if found is None else str(found)
        return self._known[token_id]

    def all(self) -> dict[str, str]:
        """Token id -> subject, for the token lists."""
        t = token_subjects_table
        with self.engine.connect() as conn:
            return {str(r[0]): str(r[1]) for r in conn.execute(select(t.c.token_id, t.c.subject))}


# --------------------------------------------------------------------------------------------------
# Who created each subscription (notifications are filtered with that principal)
# --------------------------------------------------------------------------------------------------

subscription_principals_table = Table(
    "access_subscription_principals",
    MetaData(),
    Column("tenant", String(128), primary_key=True),
    Column("subscription_id", String(512), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("subject", String(256), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("community_id", String(512), nullable=True),
    Column("member_id", String(512), nullable=True),
    Column("principal_tenant", String(128), nullable=True),
    Column("did", String(256), nullable=True),
    Column("purpose", String(256), nullable=True),
)


def _create_subscription_principals(conn: Connection) -> None:
    subscription_principals_table.create(conn, checkfirst=True)


migrations.register(
    75, "access: the principal that created each subscription", _create_subscription_principals
)


class SubscriptionPrincipals:
    """The principal (and declared purpose) that created each NGSI-LD subscription.

    Recorded by the access middleware when ``POST /ngsi-ld/v1/subscriptions`` succeeds; the
    notifications of the subscription are filtered as a read by that principal would be.

    Parameters
    ----------
    engine
        The node's database; the table is created by migration step 75.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrations.migrate(engine)
        self._known: dict[tuple[str, str], tuple[Principal, str | None] | None] = {}

    def record(self, tenant: str, subscription_id: str, principal: Principal, purpose: str | None) -> None:
        """Remember who created ``subscription_id`` in ``tenant`` (replacing an older record)."""
        t = subscription_principals_table
        did = principal.attributes.get("did")
        row = {
            "role": principal.role,
            "subject": (principal.subject or None) and principal.subject[:256],
            "kind": principal.kind,
            "community_id": principal.community_id,
            "member_id": principal.member_id,
            "principal_tenant": principal.tenant,
            "did": did if isinstance(did, str) else None,
            "purpose": purpose,
        }
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.tenant == tenant, t.c.subscription_id == subscription_id))
            conn.execute(insert(t).values(tenant=tenant, subscription_id=subscription_id, **row))
        self._known[(tenant, subscription_id)] = (principal, purpose)

    def forget(self, tenant: str, subscription_id: str) -> None:
        """Drop the record of a deleted subscription."""
        t = subscription_principals_table
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.tenant == tenant, t.c.subscription_id == subscription_id))
        self._known[(tenant, subscription_id)] = None

    def get(self, tenant: str, subscription_id: str) -> tuple[Principal, str | None] | None:
        """(principal, purpose) of the creator, None when unknown (created by the node itself)."""
        key = (tenant, subscription_id)
        if key not in self._known:
            t = subscription_principals_table
            with self.engine.connect() as conn:
                r = (
                    conn.execute(
                        select(t).where(t.c.tenant == tenant, t.c.subscription_id == subscription_id)
                    )
                    .mappings()
                    .first()
                )
            if r is None:
                return None  # not cached: a record may arrive from another worker
            else:
                attributes: dict[str, Any] = {"did": r["did"]} if r["did"] else {}
                p = Principal(
                    role=str(r["role"]),
                    subject=r["subject"],
                    kind=str(r["kind"]),
                    community_id=r["community_id"],
                    member_id=r["member_id"],
                    tenant=r["principal_tenant"],
                    attributes=attributes,
                )
                self._known[key] = (p, r["purpose"])
        return self._known[key]
