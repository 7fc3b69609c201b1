"""Data-sharing policies (W3C ODRL 2.2) and their enforcement: who may read or control what.

Policies are NGSI-LD entities of type ``DataPolicy`` (``urn:ngsi-ld:DataPolicy:<slug>``) with a
property ``odrl`` holding the ODRL 2.2 policy (JSON, ``@context``
``http://www.w3.org/ns/odrl.jsonld``, ``@type`` Set, Offer or Agreement, a ``uid``, and
``permission`` / ``prohibition`` rules) and an optional relationship ``community`` (the
EnergyCommunity it governs; none: the whole node).

What a rule can say
-------------------
- ``target``: an entity id, ``<entity id>#<attribute>`` (that attribute only), or one of the asset
  collections of :data:`ASSET_CLASSES`: ``https://w3id.org/bright/assets#open-data`` (community
  cards, KPIs, policies), ``#aggregates`` (anything computed over a community's members),
  ``#community-data`` (other entities of the community: buildings, community results),
  ``#member-data`` (a member's entities: EnergyProsumer, its meter, devices, buildings, consents)
  and ``#member-series`` (the time series of those entities).
- ``assignee``: ``https://w3id.org/bright/parties#<role>`` (any role of
  :data:`bright.network.access.ROLES`), ``...parties#any``, or one principal's subject (a token
  ``token:<name>``, a user name, a peer node id or DID, a provider id). No assignee: anyone.
- ``action``: ``read``, ``use`` (includes read), ``distribute`` (a read by a peer node) and
  ``https://w3id.org/bright/odrl#control`` (device control).
- ``constraint``: ``purpose`` (eq, isA, isAnyOf), ``dateTime`` (gt, gteq, lt, lteq, eq) and
  ``https://w3id.org/bright/odrl#minMembers`` (gteq, gt, eq: the members an aggregate is over;
  the default policies use k = :data:`DEFAULT_K` = 5).

How a request is decided (:meth:`PolicyEngine.decide`)
-------------------------------------------------------
1. The role table first (docs/roles.md): a community manager sees everything of their community;
   a member sees their own data, and their community's aggregates and community data.
2. Then ODRL, over the stored policies plus the defaults of the resource's community
   (:func:`default_policies`; a stored policy with the same uid replaces a default): a matching
   prohibition denies, unless its policy says ``"conflict": "perm"`` and a permission matches; a
   matching permission whose constraints hold allows; otherwise the request is denied and the
   policy that governs the asset class is named.
3. Member-level data (``#member-data``, ``#member-series``) reaches anyone but its member and the
   manager only through a permission with a ``purpose`` constraint **and** an active ``Consent``
   of that member for one of those purposes (``Consent`` entities: relationship ``member``,
   property ``purpose``, ``grantedAt``, optional ``revokedAt``).

The default policies of a community (uids ``urn:ngsi-ld:DataPolicy:<slug>-open``,
``-network`` and ``-member-data``) say: open data for everyone; aggregates and community data for
network members, peers and the user groups over at least k members; member-level data never,
unless an Agreement (``"conflict": "perm"`` lets it) and a consent say so.

Audit
-----
:class:`AuditLog` keeps every access by a peer node and every denial (table ``access_audit``,
migration step 73), for ``GET /api/audit`` and ``bright audit``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)

from bright.network.access import ROLES, Principal
from bright.twin import migrations

__all__ = [
    "ACTIONS",
    "AGGREGATES",
    "ASSETS",
    "ASSET_CLASSES",
    "COMMUNITY_DATA",
    "CONTROL",
    "DEFAULT_K",
    "MEMBER_DATA",
    "MEMBER_SERIES",
    "MIN_MEMBERS",
    "ODRL_CONTEXT",
    "OPEN_DATA",
    "OPEN_ENTITY_TYPES",
    "PARTIES",
    "AuditEntry",
    "AuditLog",
    "Consent",
    "Decision",
    "Ownership",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "Resource",
    "Rule",
    "default_policies",
    "local_name",
    "parse_policy",
    "policy_entity",
]

ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
ODRL_NS = "http://www.w3.org/ns/odrl/2/"
ASSETS = "https://w3id.org/bright/assets#"
OPEN_DATA = ASSETS + "open-data"
AGGREGATES = ASSETS + "aggregates"
COMMUNITY_DATA = ASSETS + "community-data"
MEMBER_DATA = ASSETS + "member-data"
MEMBER_SERIES = ASSETS + "member-series"
ASSET_CLASSES = (OPEN_DATA, AGGREGATES, COMMUNITY_DATA, MEMBER_DATA, MEMBER_SERIES)
BRIGHT_ODRL = "https://w3id.org/bright/odrl#"
CONTROL = BRIGHT_ODRL + "control"
MIN_MEMBERS = BRIGHT_ODRL + "minMembers"
PARTIES = "https://w3id.org/bright/parties#"
ANYONE = PARTIES + "any"
#: Actions a rule may name; ``use`` includes ``read``; a peer's read is also allowed by ``distribute``.
ACTIONS = ("read", "use", "distribute", CONTROL)
POLICY_TYPES = ("Set", "Offer", "Agreement")
LEFT_OPERANDS = ("purpose", "dateTime", MIN_MEMBERS)
OPERATORS = ("eq", "neq", "gt", "gteq", "lt", "lteq", "isA", "isAnyOf", "isNoneOf")
#: Default minimum number of members an aggregate shared with the network is computed over.
DEFAULT_K = 5
DATA_POLICY_PREFIX = "urn:ngsi-ld:DataPolicy:"
MEMBER_LEVEL = (MEMBER_DATA, MEMBER_SERIES)


#: Entity types that are open data on every node: the community card, its KPIs, the policies
#: themselves, and the network's knowledge (practices, initiatives, documents: their contacts are
#: organisations, never persons; docs/discovery.md). Questions (messages) are not in the list.
OPEN_ENTITY_TYPES = frozenset(
    {
        "EnergyCommunity",
        "KeyPerformanceIndicator",
        "DataPolicy",
        "Practice",
        "Initiative",
        "CommunityDocument",
    }
)


class PolicyError(ValueError):
    """An ODRL policy that BRIGHT cannot enforce; the message names the bad part (``permission[0].action``)."""


def local_name(iri: str) -> str:
    """The last segment of an IRI (``.../dataModel.EnergyCommunity/EnergyProsumer`` -> ``EnergyProsumer``)."""
    return re.split(r"[/#:]", iri.rstrip("/#"))[-1]


def _term(value: Any, where: str) -> str:
    if isinstance(value, Mapping):
        value = value.get("@id", value.get("uid", value.get("@value")))
    if not isinstance(value, str) or not value:
        raise PolicyError(f"{where}: expected an IRI or term, got {value!r}")
    for prefix in (ODRL_NS, "odrl:"):
        if value.startswith(prefix):
            return value[len(prefix) :]
    if value.startswith("bright:"):
        return BRIGHT_ODRL + value[len("bright:") :]
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Constraint:
    """``leftOperand operator rightOperand`` of a rule."""

    left: str
    operator: str
    right: tuple[Any, ...]


@dataclass(frozen=True)
class Rule:
    """One permission or prohibition."""

    kind: str
    targets: tuple[str, ...]
    assignees: tuple[str, ...]
    actions: tuple[str, ...]
    constraints: tuple[Constraint, ...]

    def purposes(self) -> tuple[str, ...]:
        out: list[str] = []
        for c in self.constraints:
            if c.left == "purpose" and c.operator in ("eq", "isA", "isAnyOf"):
                out.extend(str(v) for v in c.right)
        return tuple(out)


@dataclass(frozen=True)
class Policy:
    """A parsed ODRL policy.

    Attributes
    ----------
    uid
        The policy's ``uid`` (named in 403 answers).
    type
        ``Set``, ``Offer`` or ``Agreement``.
    rules
        Permissions and prohibitions.
    conflict
        ``perm`` (permissions override this policy's prohibitions) or ``prohibit`` (default).
    community
        The EnergyCommunity it governs, None for the whole node.
    entity_id
        The DataPolicy entity holding it (None for a default not stored).
    document
        The ODRL JSON as given.
    """

    uid: str
    type: str
    rules: tuple[Rule, ...]
    conflict: str
    community: str | None
    entity_id: str | None
    document: dict[str, Any]


def _constraint(raw: Any, where: str) -> Constraint:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: a constraint is an object with leftOperand, operator, rightOperand")
    if "and" in raw or "or" in raw or "xone" in raw or "andSequence" in raw:
        raise PolicyError(f"{where}: logical constraints are not supported; list the constraints instead")
    left = _term(raw.get("leftOperand"), f"{where}.leftOperand")
    if left not in LEFT_OPERANDS:
        raise PolicyError(f"{where}.leftOperand: {left!r} is not supported (use {', '.join(LEFT_OPERANDS)})")
    op = _term(raw.get("operator"), f"{where}.operator")
    if op not in OPERATORS:
        raise PolicyError(f"{where}.operator: {op!r} is not an ODRL operator ({', '.join(OPERATORS)})")
    if "rightOperand" not in raw:
        raise PolicyError(f"{where}.rightOperand is missing")
    right: list[Any] = []
    for n, v in enumerate(_list(raw["rightOperand"])):
        if isinstance(v, Mapping):
            v = v.get("@value", v.get("@id"))
        if left == "dateTime":
            try:
                _instant(str(v))
            except ValueError:
                raise PolicyError(f"{where}.rightOperand[{n}]: {v!r} is not an xsd:dateTime") from None
        elif left == MIN_MEMBERS:
            if isinstance(v, bool) or not isinstance(v, int | float | str) or not str(v).isdigit():
                raise PolicyError(f"{where}.rightOperand[{n}]: {v!r} is not a number of members")
            v = int(v)
        elif not isinstance(v, str) or not v:
            raise PolicyError(f"{where}.rightOperand[{n}]: a purpose is a non-empty string, got {v!r}")
        right.append(v)
    if not right:
        raise PolicyError(f"{where}.rightOperand is empty")
    if left == MIN_MEMBERS and op not in ("gt", "gteq", "eq"):
        raise PolicyError(f"{where}.operator: minMembers takes gt, gteq or eq, not {op!r}")
    if left == "dateTime" and op not in ("gt", "gteq", "lt", "lteq", "eq"):
        raise PolicyError(f"{where}.operator: dateTime takes gt, gteq, lt, lteq or eq, not {op!r}")
    return Constraint(left, op, tuple(right))


def _rule(raw: Any, kind: str, where: str, policy_target: list[str], policy_assignee: list[str]) -> Rule:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: a rule is an object")
    targets = [_term(t, f"{where}.target") for t in _list(raw.get("target"))] or policy_target
    if not targets:
        raise PolicyError(
            f"{where}.target is missing (an entity id, '<id>#<attribute>' or an asset collection)"
        )
    for n, t in enumerate(targets):
        if t.startswith(ASSETS) and t not in ASSET_CLASSES:
            raise PolicyError(
                f"{where}.target[{n}]: {t!r} is not an asset collection ({', '.join(ASSET_CLASSES)})"
            )
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$", t):
            raise PolicyError(f"{where}.target[{n}]: {t!r} is not an IRI")
    assignees = [_term(a, f"{where}.assignee") for a in _list(raw.get("assignee"))] or policy_assignee
    for n, a in enumerate(assignees):
        if a.startswith(PARTIES) and a != ANYONE and a[len(PARTIES) :] not in ROLES:
            raise PolicyError(f"{where}.assignee[{n}]: {a!r} names no role ({', '.join(ROLES)})")
    actions = [_term(a, f"{where}.action") for a in _list(raw.get("action"))]
    if not actions:
        raise PolicyError(f"{where}.action is missing ({', '.join(ACTIONS)})")
    for n, a in enumerate(actions):
        if a not in ACTIONS:
            raise PolicyError(f"{where}.action[{n}]: {a!r} is not supported ({', '.join(ACTIONS)})")
    constraints = [
        _constraint(c, f"{where}.constraint[{n}]") for n, c in enumerate(_list(raw.get("constraint")))
    ]
    if "duty" in raw:
        raise PolicyError(f"{where}.duty: duties are not supported")
    return Rule(kind, tuple(targets), tuple(assignees), tuple(actions), tuple(constraints))


def parse_policy(odrl: Any, *, community: str | None = None, entity_id: str | None = None) -> Policy:
    """Validate an ODRL 2.2 policy and return what the engine evaluates.

    Raises
    ------
    PolicyError
        The message names the part at fault: ``@context``, ``@type``, ``uid``,
        ``permission[1].constraint[0].leftOperand``...
    """
    if not isinstance(odrl, Mapping):
        raise PolicyError("odrl: the policy is a JSON object")
    ctx = _list(odrl.get("@context"))
    if ODRL_CONTEXT not in ctx:
        raise PolicyError(f"@context: must include {ODRL_CONTEXT!r}")
    ptype = _term(odrl.get("@type", odrl.get("type")), "@type")
    if ptype not in POLICY_TYPES:
        raise PolicyError(f"@type: {ptype!r} is not one of {', '.join(POLICY_TYPES)}")
    uid = odrl.get("uid")
    if not isinstance(uid, str) or not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$", uid):
        raise PolicyError(f"uid: {uid!r} is not an IRI")
    conflict = _term(odrl.get("conflict", "prohibit"), "conflict")
    if conflict not in ("perm", "prohibit"):
        raise PolicyError(f"conflict: {conflict!r} is not supported (perm or prohibit)")
    policy_target = [_term(t, "target") for t in _list(odrl.get("target"))]
    policy_assignee = [_term(a, "assignee") for a in _list(odrl.get("assignee"))]
    rules: list[Rule] = []
    for kind in ("permission", "prohibition"):
        for n, raw in enumerate(_list(odrl.get(kind))):
            rules.append(_rule(raw, kind, f"{kind}[{n}]", policy_target, policy_assignee))
    if "obligation" in odrl:
        raise PolicyError("obligation: duties are not supported")
    if not rules:
        raise PolicyError("permission/prohibition: the policy has no rule")
    if ptype == "Agreement" and not all(r.assignees for r in rules):
        raise PolicyError("assignee: every rule of an Agreement names its assignee")
    return Policy(uid, ptype, tuple(rules), conflict, community, entity_id, dict(odrl))


def policy_slug(community_id: str | None) -> str:
    """A slug for a community's default policies (``urn:ngsi-ld:EnergyCommunity:school-371`` -> ``school-371``)."""
    if community_id is None:
        return "node"
    tail = community_id.split(":", 3)[-1] if community_id.startswith("urn:ngsi-ld:") else community_id
    return re.sub(r"[^A-Za-z0-9._\-]+", "-", tail).strip("-") or "community"


def default_policies(community_id: str | None, *, k: int = DEFAULT_K) -> list[Policy]:
    """The three default policies of a community (or of the node, ``None``)."""
    slug = policy_slug(community_id)
    network_parties = [PARTIES + r for r in ROLES if r not in ("public",)]
    docs = [
        {
            "@context": ODRL_CONTEXT,
            "@type": "Set",
            "uid": f"{DATA_POLICY_PREFIX}{slug}-open",
            "permission": [
                {"target": OPEN_DATA, "assignee": ANYONE, "action": ["read", "use", "distribute"]}
            ],
        },
        {
            "@context": ODRL_CONTEXT,
            "@type": "Set",
            "uid": f"{DATA_POLICY_PREFIX}{slug}-network",
            "permission": [
                {
                    "target": [AGGREGATES, COMMUNITY_DATA],
                    "assignee": network_parties,
                    "action": ["read", "use", "distribute"],
                    "constraint": [{"leftOperand": MIN_MEMBERS, "operator": "gteq", "rightOperand": k}],
                }
            ],
        },
        {
            "@context": ODRL_CONTEXT,
            "@type": "Set",
            "uid": f"{DATA_POLICY_PREFIX}{slug}-member-data",
            "conflict": "perm",
            "prohibition": [
                {
                    "target": [MEMBER_DATA, MEMBER_SERIES],
                    "assignee": ANYONE,
                    "action": ["read", "use", "distribute", CONTROL],
                }
            ],
        },
    ]
    return [parse_policy(d, community=community_id, entity_id=None) for d in docs]


def policy_entity(policy: Policy, entity_id: str | None = None) -> dict[str, Any]:
    """The NGSI-LD ``DataPolicy`` entity (normalized, core @context) of a policy."""
    eid = (
        entity_id
        or policy.entity_id
        or (
            policy.uid
            if policy.uid.startswith(DATA_POLICY_PREFIX)
            else DATA_POLICY_PREFIX + policy_slug(policy.uid)
        )
    )
    ent: dict[str, Any] = {
        "id": eid,
        "type": "DataPolicy",
        "odrl": {"type": "JsonProperty", "json": policy.document},
    }
    if policy.community:
        ent["community"] = {"type": "Relationship", "object": policy.community}
    return ent


# --------------------------------------------------------------------------------------------------
# What the twin knows: members, ownership, consents, stored policies
# --------------------------------------------------------------------------------------------------


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _attr_values(doc: Mapping[str, Any], name: str) -> list[Any]:
    """Values/objects of the attributes of ``doc`` (stored form) whose local name is ``name``."""
    out: list[Any] = []
    for iri, insts in (doc.get("attrs") or {}).items():
        if local_name(iri) != name:
            continue
        for inst in insts:
            for key in ("object", "objectList", "value", "json", "vocab"):
                if key in inst:
                    v = inst[key]
                    if isinstance(v, Mapping) and "@value" in v:
                        v = v["@value"]
                    out.extend(v if isinstance(v, list) else [v])
                    break
    return out


def _relationship_objects(doc: Mapping[str, Any], *, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    skipped = set(skip)
    out: list[tuple[str, str]] = []
    for iri, insts in (doc.get("attrs") or {}).items():
        name = local_name(iri)
        if name in skipped:
            continue
        for inst in insts:
            obj = inst.get("object", inst.get("objectList"))
            for o in obj if isinstance(obj, list) else [obj]:
                if isinstance(o, Mapping):
                    o = o.get("object")
                if isinstance(o, str):
                    out.append((name, o))
    return out


def _types(doc: Mapping[str, Any]) -> set[str]:
    raw = doc.get("type")
    return {local_name(str(t)) for t in (raw if isinstance(raw, list) else [raw]) if t}


@dataclass(frozen=True)
class Consent:
    """A member's consent to a purpose (``sharing``, ``sbright``, ``network``, ``offer:<id>``...)."""

    entity_id: str
    member_id: str
    purpose: str
    granted_at: datetime
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.granted_at <= now and (self.revoked_at is None or self.revoked_at > now)


@dataclass
class Ownership:
    """Members, communities and the entities each member owns, in one tenant.

    Attributes
    ----------
    member_community
        EnergyProsumer id -> its community (None if it names none).
    community_members
        EnergyCommunity id -> its member ids.
    owned
        Entity id -> owning member id (the member's meter, devices, building, consents...).
    consents
        Member id -> its consents.
    policies
        Stored DataPolicy entities, parsed (invalid ones are skipped and logged in ``invalid``).
    invalid
        DataPolicy id -> why it cannot be enforced.
    """

    member_community: dict[str, str | None] = field(default_factory=dict)
    community_members: dict[str, set[str]] = field(default_factory=dict)
    owned: dict[str, str] = field(default_factory=dict)
    consents: dict[str, list[Consent]] = field(default_factory=dict)
    policies: list[Policy] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)
    loaded_at: float = 0.0

    def owner_of(self, entity_id: str) -> str | None:
        if entity_id in self.member_community:
            return entity_id
        return self.owned.get(entity_id)

    def community_of_member(self, member_id: str | None) -> str | None:
        if member_id is None:
            return None
        found = self.member_community.get(member_id)
        if found:
            return found
        for cid, members in self.community_members.items():
            if member_id in members:
                return cid
        return None

    def size(self, community_id: str | None) -> int | None:
        if community_id is None:
            return None
        members = set(self.community_members.get(community_id, set()))
        members |= {m for m, c in self.member_community.items() if c == community_id}
        return len(members)


@dataclass(frozen=True)
class Resource:
    """What a request touches, as the policies see it.

    Attributes
    ----------
    asset
        One of :data:`ASSET_CLASSES`.
    entity_id, attribute
        The entity (and attribute) when the resource is one; None for a collection or a REST view.
    community_id
        The community it belongs to (None: node-level).
    owner_member
        The member it belongs to (member-level resources).
    n_members
        Members of its community (what an aggregate is computed over).
    """

    asset: str
    entity_id: str | None = None
    attribute: str | None = None
    community_id: str | None = None
    owner_member: str | None = None
    n_members: int | None = None

    @property
    def member_level(self) -> bool:
        return self.asset in MEMBER_LEVEL


@dataclass(frozen=True)
class Decision:
    """Allowed or not, under which policy, and why.

    Attributes
    ----------
    allowed
        The request (or this part of the answer) may go.
    policy_uid
        The policy (or role-table row) that decided.
    reason
        A sentence for the ProblemDetails ``detail`` and the audit log.
    attributes
        When only some attributes are allowed (rules targeting ``<id>#<attribute>``), their names;
        None: the whole entity.
    """

    allowed: bool
    policy_uid: str
    reason: str
    attributes: frozenset[str] | None = None


ROLE_TABLE_UID = "https://w3id.org/bright/roles"


def _cmp(op: str, left: Any, right: Any) -> bool:
    if op == "eq":
        return bool(left == right)
    if op == "neq":
        return bool(left != right)
    if op == "gt":
        return bool(left > right)
    if op == "gteq":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    if op == "lteq":
        return bool(left <= right)
    raise PolicyError(f"operator {op!r} does not compare values")


class PolicyEngine:
    """Decides requests against the role table, the ODRL policies and the members' consents.

    Parameters
    ----------
    service
        The node's :class:`bright.twin.service.TwinService`.
    k
        Minimum members of an aggregate in the default policies.
    cache_ttl_s
        The tenant's members, ownership, consents and policies are reloaded after a write to an
        EnergyProsumer, EnergyCommunity, Consent or DataPolicy entity, and at least this often
        (other workers' writes).
    """

    WATCHED_TYPES = frozenset({"EnergyProsumer", "EnergyCommunity", "Consent", "DataPolicy"})

    def __init__(self, service: Any, *, k: int = DEFAULT_K, cache_ttl_s: float = 5.0) -> None:
        self.service = service
        self.k = k
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, Ownership] = {}
        self._lock = threading.Lock()
        listeners = getattr(getattr(service, "store", None), "listeners", None)
        if listeners is not None:
            listeners.append(self._on_event)

    # --- what the twin knows -------------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        docs = [d for d in (event.before, event.after) if d]
        if any(_types(d) & self.WATCHED_TYPES for d in docs):
            self.invalidate(event.tenant)

    def invalidate(self, tenant: str | None = None) -> None:
        with self._lock:
            if tenant is None:
                self._cache.clear()
            else:
                self._cache.pop(tenant, None)

    def _all_of_type(self, tenant: str, type_name: str) -> list[dict[str, Any]]:
        from bright.twin.vocabulary import bright_context

        svc = self.service
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            eq = svc.build_query(
                {"type": type_name, "limit": "1000", "offset": str(offset)}, bright_context()
            )
            docs, _ = svc.store.query(tenant, eq)
            out.extend(docs)
            if len(docs) < 1000:
                return out
            offset += 1000

    def ownership(self, tenant: str) -> Ownership:
        """Members, ownership, consents and stored policies of ``tenant`` (cached)."""
        with self._lock:
            hit = self._cache.get(tenant)
        if hit is not None and time.monotonic() - hit.loaded_at < self.cache_ttl_s:
            return hit
        own = Ownership(loaded_at=time.monotonic())
        for doc in self._all_of_type(tenant, "EnergyCommunity"):
            own.community_members[doc["id"]] = {str(m) for m in _attr_values(doc, "hasMember")}
        for doc in self._all_of_type(tenant, "EnergyProsumer"):
            mid = doc["id"]
            communities = [str(c) for c in _attr_values(doc, "memberOf")]
            own.member_community[mid] = communities[0] if communities else None
            for _name, obj in _relationship_objects(doc, skip=("memberOf",)):
                own.owned.setdefault(obj, mid)
        for cid, members in own.community_members.items():
            for m in members:
                if own.member_community.get(m) is None:
                    own.member_community[m] = cid
        now = datetime.now(UTC)
        for doc in self._all_of_type(tenant, "Consent"):
            consenting = [str(m) for m in _attr_values(doc, "member")]
            purposes = [str(p) for p in _attr_values(doc, "purpose")]
            granted = [str(g) for g in _attr_values(doc, "grantedAt")]
            revoked = [str(r) for r in _attr_values(doc, "revokedAt")]
            if not consenting or not purposes:
                continue
            try:
                granted_at = _instant(granted[0]) if granted else now
                revoked_at = _instant(revoked[0]) if revoked else None
            except ValueError:
                own.invalid[doc["id"]] = "grantedAt/revokedAt is not a date-time"
                continue
            own.owned.setdefault(doc["id"], consenting[0])
            for p in purposes:
                own.consents.setdefault(consenting[0], []).append(
                    Consent(doc["id"], consenting[0], p, granted_at, revoked_at)
                )
        for doc in self._all_of_type(tenant, "DataPolicy"):
            raw = _attr_values(doc, "odrl")
            communities = [str(c) for c in _attr_values(doc, "community")]
            try:
                if not raw:
                    raise PolicyError("odrl: the DataPolicy has no odrl property")
                own.policies.append(
                    parse_policy(
                        raw[0], community=communities[0] if communities else None, entity_id=doc["id"]
                    )
                )
            except PolicyError as exc:
                own.invalid[doc["id"]] = str(exc)
        with self._lock:
            self._cache[tenant] = own
        return own

    def policies(self, tenant: str, community_id: str | None) -> list[Policy]:
        """The policies that apply to resources of ``community_id``: stored ones, then defaults."""
        own = self.ownership(tenant)
        # Most specific first (the first matching rule is the one a refusal names): the
        # community's stored policies, its defaults not replaced by a stored one, then node-wide.
        specific = [p for p in own.policies if p.community == community_id]
        node_wide = [p for p in own.policies if p.community is None and community_id is not None]
        uids = {p.uid for p in own.policies}
        defaults = [p for p in default_policies(community_id, k=self.k) if p.uid not in uids]
        return specific + defaults + node_wide

    # --- classification ------------------------------------------------------------------------
    def classify(
        self, tenant: str, doc: Mapping[str, Any], *, series: bool = False, attribute: str | None = None
    ) -> Resource:
        """The resource an entity document is (stored form, or a rendered one from a peer)."""
        own = self.ownership(tenant)
        eid = str(doc.get("id", ""))
        types = _types(doc)
        rels = _relationship_objects(doc)
        owner = own.owner_of(eid)
        if owner is None and "EnergyProsumer" in types:
            owner = eid
        if owner is None and "EnergyCommunity" not in types and "DataPolicy" not in types:
            for _name, obj in rels:
                found = own.owner_of(obj)
                if found is not None:
                    owner = found
                    break
        if owner is not None:
            community = own.community_of_member(owner)
            return Resource(
                MEMBER_SERIES if series else MEMBER_DATA,
                eid,
                attribute,
                community,
                owner,
                own.size(community),
            )
        community = None
        if "EnergyCommunity" in types:
            community = eid
        else:
            for _name, obj in rels:
                if obj in own.community_members:
                    community = obj
                    break
        asset = OPEN_DATA if types & OPEN_ENTITY_TYPES else COMMUNITY_DATA
        return Resource(asset, eid, attribute, community, None, own.size(community))

    def classify_id(self, tenant: str, entity_id: str, *, series: bool = False) -> Resource | None:
        """The resource of a stored entity, or None if the node does not hold it."""
        doc = self.service.store.get(tenant, entity_id)
        return None if doc is None else self.classify(tenant, doc, series=series)

    # --- decisions -----------------------------------------------------------------------------
    def decide(
        self,
        principal: Principal,
        resource: Resource,
        action: str = "read",
        *,
        tenant: str = "",
        purpose: str | None = None,
        now: datetime | None = None,
    ) -> Decision:
        """Whether ``principal`` may ``action`` the resource (see the module documentation)."""
        now = now or datetime.now(UTC)
        role = principal.role
        # 1. The role table: the node's own people.
        if role == "manager" and (principal.community_id in (None, resource.community_id)):
            return Decision(True, f"{ROLE_TABLE_UID}#manager", "the community's manager")
        if role == "member" and principal.member_id:
            if resource.owner_member == principal.member_id:
                return Decision(True, f"{ROLE_TABLE_UID}#member", "the member's own data")
            own_community = principal.community_id or self.ownership(tenant).community_of_member(
                principal.member_id
            )
            if (
                not resource.member_level
                and resource.community_id is not None
                and resource.community_id == own_community
                and action != CONTROL
            ):
                return Decision(True, f"{ROLE_TABLE_UID}#member", "the member's own community")
        # 2. ODRL.
        policies = self.policies(tenant, resource.community_id)
        permitted: list[tuple[Policy, Rule]] = []
        failures: list[tuple[Policy, str]] = []
        prohibited: list[Policy] = []
        attrs: set[str] = set()
        whole = False
        for policy in policies:
            for rule in policy.rules:
                covered = self._covers(rule, resource)
                if (
                    covered is None
                    or not self._assigned(rule, principal)
                    or not self._acts(rule, action, principal)
                ):
                    continue
                why = self._constraints_fail(rule, resource, now)
                if rule.kind == "prohibition":
                    if why is None:
                        prohibited.append(policy)
                    continue
                if why is None and resource.member_level and principal.member_id != resource.owner_member:
                    why = self._consent_missing(rule, resource, tenant, purpose, now)
                if why is not None:
                    failures.append((policy, why))
                    continue
                permitted.append((policy, rule))
                if covered == "*":
                    whole = True
                else:
                    attrs.add(covered)
        if prohibited:
            blocking = [p for p in prohibited if not (p.conflict == "perm" and permitted)]
            hard = [p for p in blocking if p.conflict != "perm"]
            if blocking and not hard and failures:
                # Only a default "never" stands in the way and a permission almost applied: name it.
                p, why = failures[0]
                return Decision(False, p.uid, f"policy {p.uid}: {why}")
            if blocking:
                p = (hard or blocking)[0]
                return Decision(False, p.uid, f"policy {p.uid} prohibits {action} of {self._what(resource)}")
        if permitted:
            p = permitted[0][0]
            return Decision(True, p.uid, f"permitted by policy {p.uid}", None if whole else frozenset(attrs))
        if failures:
            p, why = failures[0]
            return Decision(False, p.uid, f"policy {p.uid}: {why}")
        governing = next(
            (
                p
                for p in policies
                for r in p.rules
                if resource.asset in r.targets or (resource.entity_id and resource.entity_id in r.targets)
            ),
            None,
        )
        uid = governing.uid if governing else f"{ROLE_TABLE_UID}#{role}"
        return Decision(
            False,
            uid,
            f"no policy permits {role} {principal.subject or ''} to {action} {self._what(resource)}".replace(
                "  ", " "
            ),
        )

    @staticmethod
    def _what(resource: Resource) -> str:
        name = local_name(resource.asset)
        if resource.entity_id:
            return f"{name} {resource.entity_id}" + (f"#{resource.attribute}" if resource.attribute else "")
        return name + (f" of {resource.community_id}" if resource.community_id else "")

    @staticmethod
    def _covers(rule: Rule, resource: Resource) -> str | None:
        """'*' when a target covers the whole resource, an attribute name for ``<id>#<attr>``."""
        for t in rule.targets:
            if t == resource.asset:
                return "*"
            if resource.entity_id and t == resource.entity_id:
                return "*"
        for t in rule.targets:
            if resource.entity_id and t.startswith(resource.entity_id + "#"):
                attr = t[len(resource.entity_id) + 1 :]
                if resource.attribute is None or local_name(resource.attribute) == local_name(attr):
                    return attr
        return None

    @staticmethod
    def _assigned(rule: Rule, principal: Principal) -> bool:
        if not rule.assignees:
            return True
        names = {ANYONE, PARTIES + principal.role}
        if principal.subject:
            names.add(principal.subject)
        did = principal.attributes.get("did")
        if isinstance(did, str):
            names.add(did)
        return bool(names & set(rule.assignees))

    @staticmethod
    def _acts(rule: Rule, action: str, principal: Principal) -> bool:
        if action in rule.actions:
            return True
        if action == "read" and "use" in rule.actions:
            return True
        return action == "read" and principal.kind == "node" and "distribute" in rule.actions

    @staticmethod
    def _constraints_fail(rule: Rule, resource: Resource, now: datetime) -> str | None:
        for c in rule.constraints:
            if c.left == "dateTime":
                if not all(_cmp(c.operator, now, _instant(str(v))) for v in c.right):
                    return f"the time constraint dateTime {c.operator} {c.right[0]} does not hold now"
            elif c.left == MIN_MEMBERS:
                n = resource.n_members
                k = int(c.right[0])
                if n is None or not _cmp(c.operator, n, k):
                    over = "an unknown number of" if n is None else str(n)
                    return f"an aggregate over {over} members is below the minimum of {k} members"
        return None

    def _consent_missing(
        self, rule: Rule, resource: Resource, tenant: str, purpose: str | None, now: datetime
    ) -> str | None:
        purposes = rule.purposes()
        if not purposes:
            return "member-level data is only shared for a purpose (the rule has no purpose constraint)"
        if purpose is not None and purpose not in purposes:
            return f"the declared purpose {purpose!r} is not one of {', '.join(purposes)}"
        wanted = [purpose] if purpose else list(purposes)
        consents = self.ownership(tenant).consents.get(resource.owner_member or "", [])
        if any(c.active(now) and c.purpose in wanted for c in consents):
            return None
        return f"member {resource.owner_member} has no active consent for {' or '.join(wanted)}"


# --------------------------------------------------------------------------------------------------
# Audit log
# --------------------------------------------------------------------------------------------------

_meta = MetaData()
audit_table = Table(
    "access_audit",
    _meta,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("tenant", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("subject", String(256), nullable=True, index=True),
    Column("kind", String(16), nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("policy_uid", String(512), nullable=True),
    Column("reason", Text, nullable=True),
    Column("filtered", Integer, nullable=False, default=0),
)


def _create_audit(conn: Connection) -> None:
    _meta.create_all(conn, checkfirst=True)


migrations.register(73, "access: audit log of peer accesses and denials", _create_audit)


@dataclass(frozen=True)
class AuditEntry:
    """One audited request.

    Attributes
    ----------
    decision
        ``allowed``, ``filtered`` (allowed with parts removed), ``denied`` (403) or
        ``unauthenticated`` (401).
    filtered
        Entities or objects removed from the answer.
    """

    at: datetime
    tenant: str
    role: str
    subject: str | None
    kind: str
    method: str
    path: str
    status: int
    decision: str
    policy_uid: str | None
    reason: str | None
    filtered: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "tenant": self.tenant,
            "role": self.role,
            "subject": self.subject,
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "decision": self.decision,
            "policy": self.policy_uid,
            "reason": self.reason,
            "filtered": self.filtered,
        }


class AuditLog:
    """The node's access audit log (``access_audit``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrations.migrate(engine)

    def record(self, entry: AuditEntry) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit_table).values(
                    at=entry.at,
                    tenant=entry.tenant,
                    role=entry.role,
                    subject=(entry.subject or None) and entry.subject[:256],
                    kind=entry.kind,
                    method=entry.method,
                    path=entry.path[:4000],
                    status=entry.status,
                    decision=entry.decision,
                    policy_uid=entry.policy_uid,
                    reason=entry.reason,
                    filtered=entry.filtered,
                )
            )

    def entries(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        peer: str | None = None,
        decision: str | None = None,
        tenant: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Entries, newest first, filtered by time ``[since, until)``, peer (node id or DID) and decision.

        ``tenant`` keeps the requests made to that NGSI-LD tenant only (``""``: the default
        tenant); None: every tenant (the node's operator, e.g. ``bright audit``).
        """
        t = audit_table
        stmt = select(t).order_by(t.c.at.desc(), t.c.pk.desc()).limit(limit).offset(offset)
        if tenant is not None:
            stmt = stmt.where(t.c.tenant == tenant)
        if since is not None:
            stmt = stmt.where(t.c.at >= since)
        if until is not None:
            stmt = stmt.where(t.c.at < until)
        if peer is not None:
            stmt = stmt.where(t.c.kind == "node", t.c.subject == peer)
        if decision is not None:
            stmt = stmt.where(t.c.decision == decision)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        out = []
        for r in rows:
            at = r["at"] if r["at"].tzinfo is not None else r["at"].replace(tzinfo=UTC)
            out.append(
                AuditEntry(
                    at,
                    r["tenant"],
                    r["role"],
                    r["subject"],
                    r["kind"],
                    r["method"],
                    r["path"],
                    r["status"],
                    r["decision"],
                    r["policy_uid"],
                    r["reason"],
                    r["filtered"],
                )
            )
        return out


def parse_instant(text: str, what: str) -> datetime:
    """An ISO 8601 instant (``Z`` or offset; naive means UTC) or a ValueError naming ``what``."""
    try:
        return _instant(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an ISO 8601 date-time") from None


def seed_default_policies(service: Any, tenant: str = "", *, k: int = DEFAULT_K) -> list[str]:
    """Write the default policies of every community of ``tenant`` (and of the node) as entities.

    Existing DataPolicy entities are left as they are (a manager's edit is never overwritten).

    Returns
    -------
    list of str
        Ids of the DataPolicy entities created now.
    """
    from bright.twin.context import CORE_CONTEXT_URL

    engine = PolicyEngine(service, k=k, cache_ttl_s=0.0)
    own = engine.ownership(tenant)
    communities: list[str | None] = [None, *sorted(own.community_members)]
    created: list[str] = []
    ctx = service.resolve_context(CORE_CONTEXT_URL)
    for cid in communities:
        for policy in default_policies(cid, k=k):
            ent = policy_entity(policy)
            if service.store.get(tenant, ent["id"]) is not None:
                continue
            service.create_entity(tenant, ent, ctx)
            created.append(ent["id"])
    listeners = service.store.listeners
    if engine._on_event in listeners:
        listeners.remove(engine._on_event)
    return created


def visible_ids(decisions: Mapping[str, Decision]) -> Sequence[str]:
    """Ids whose decision allows them (helper for answers assembled from several decisions)."""
    return [k for k, d in decisions.items() if d.allowed]
