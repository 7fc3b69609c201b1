"""Access control of a node: who is calling (authentication) and what they may read or write.

:class:`AccessMiddleware` sits in front of every route of the node (it is the outermost ASGI
middleware, so the distributed operations of :mod:`bright.api.registrations` and every router
added later are covered without being listed). For each request under ``/ngsi-ld`` and ``/api``:

1. **Who.** The principal (:class:`bright.network.access.Principal`, on
   ``request.state.principal``) comes from, in this order: a signed request from a network member
   (RFC 9421 ``Signature-Input``/``Signature``, :mod:`bright.network.signing`, role ``peer``), an
   API token (``Authorization: Bearer brt_...``), the dashboard session cookie, else nobody: the
   anonymous ``public`` principal (``BRIGHT_AUTH=required``, the default) or, with
   ``BRIGHT_AUTH=open``, :data:`bright.network.access.OPEN_ACCESS` (acts as the manager). Bad
   credentials (a forged, stale or replayed signature, an unknown key, a revoked token) are
   refused with 401 whatever the mode.
2. **Writes** (POST, PUT, PATCH, DELETE) are never anonymous: 401 naming the credentials to
   present, except the paths of :data:`ANONYMOUS_WRITES` (the one list of exceptions) and the
   POST forms of NGSI-LD queries (reads). Who may write what is the role table
   (:func:`write_decision`, docs/roles.md); other routers add rows with :func:`allow_write`.
3. **Reads** are decided by the policy engine (:mod:`bright.network.policy`) on the resource the
   request touches, classified generically (:func:`classify_rest`, docs/access.md): denied: 403
   ProblemDetails naming the policy uid; allowed: the answer is filtered to what the caller may
   see (entities of a list, attributes of an entity, objects of a REST answer naming a member).
4. **Audit.** Every request of a peer node and every 401/403 is written to the audit log (per
   tenant: ``GET /api/audit`` lists the rows of the request's tenant).

Also: a principal that carries a tenant (a tenant token, a hosted tenant's manager account) is
refused (403) on any other tenant; an API token may act as a party (``subject``, a service
provider's id); entities a caller may read come back with the attributes it may not see withheld
and an ``NGSILD-Warning`` saying so; ``count=true`` counts what the caller may see; entity
notifications are filtered as a read by the subscription's creator (:func:`filter_notifications`).

The routes of this module: ``/api/tokens`` (manager), ``/api/network/members`` (network
organiser, manager) and ``/api/network/node`` (this node's DID, public).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import anyio
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.requests import cookie_parser
from starlette.types import Receive, Scope, Send

from bright.api.http import dumps, json_response, problem_response, read_json
from bright.network.access import (
    ANONYMOUS,
    OPEN_ACCESS,
    Principal,
    SubscriptionPrincipals,
    TokenSubjectError,
    TokenSubjects,
    check_token_subject,
    principal_of,
)
from bright.network.membership import Membership, MembershipError
from bright.network.policy import (
    AGGREGATES,
    CONTROL,
    MEMBER_DATA,
    OPEN_DATA,
    ROLE_TABLE_UID,
    AuditEntry,
    AuditLog,
    Decision,
    PolicyEngine,
    Resource,
    local_name,
)
from bright.network.signing import (
    DatabaseNonceCache,
    NonceCache,
    SignatureError,
    attach_identity,
    authority_of,
    verify_request,
)
from bright.twin.errors import BadRequestData, Forbidden, NgsiLdError, ResourceNotFound, Unauthorized

__all__ = [
    "ANONYMOUS_WRITES",
    "AccessMiddleware",
    "AccessState",
    "WriteRule",
    "allow_anonymous_write",
    "allow_write",
    "classify_rest",
    "install",
    "require_role",
    "router",
    "write_decision",
]

log = logging.getLogger("bright.api.auth")

NGSILD = "/ngsi-ld/v1"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PURPOSE_HEADER = "bright-purpose"
CREDENTIALS = (
    "an API token (Authorization: Bearer brt_...), a dashboard session (log in at /login) or a "
    "request signed by a network member (Signature-Input and Signature, RFC 9421)"
)

#: Writes allowed without credentials: (path pattern, methods, why). The one list of exceptions.
ANONYMOUS_WRITES: list[tuple[re.Pattern[str], frozenset[str], str]] = [
    (re.compile(r"^/login$"), frozenset({"POST"}), "the dashboard's login form"),
    (re.compile(r"^/logout$"), frozenset({"POST"}), "the dashboard's logout form"),
    (
        re.compile(r"^/api/ledger/heads/\d+/cosign$"),
        frozenset({"POST"}),
        "ledger cosigning: the body is a head signed by the log operator, checked by the ledger",
    ),
]
#: POST operations that are reads (the NGSI-LD query forms).
READ_POSTS = (
    re.compile(r"^/ngsi-ld/v1/entityOperations/query$"),
    re.compile(r"^/ngsi-ld/v1/temporal/entityOperations/query$"),
)


def allow_anonymous_write(pattern: str, reason: str, methods: Iterable[str] = ("POST",)) -> None:
    """Add a write that needs no credentials (a public form, an invitation link); say why."""
    ANONYMOUS_WRITES.append((re.compile(pattern), frozenset(m.upper() for m in methods), reason))


@dataclass(frozen=True)
class WriteRule:
    """A row of the role table for writes: roles allowed to write paths matching ``pattern``."""

    pattern: re.Pattern[str]
    methods: frozenset[str]
    roles: frozenset[str]
    reason: str


#: Extra write rules (other routers register theirs with :func:`allow_write`).
WRITE_RULES: list[WriteRule] = [
    WriteRule(
        re.compile(r"^/api/network/members(/.*)?$"),
        WRITE_METHODS,
        frozenset({"network_organiser"}),
        "the network organiser admits and removes member nodes",
    ),
    WriteRule(
        re.compile(r"^/ngsi-ld/v1/(csourceRegistrations|csourceSubscriptions|subscriptions)(/.*)?$"),
        WRITE_METHODS,
        frozenset({"peer"}),
        "member nodes register as context sources and subscribe",
    ),
    WriteRule(
        re.compile(r"^/api/ledger/heads/\d+/cosign$"),
        frozenset({"POST"}),
        frozenset({"peer"}),
        "member nodes cosign each other's ledger heads",
    ),
]


def allow_write(
    pattern: str, roles: Iterable[str], reason: str, methods: Iterable[str] = tuple(WRITE_METHODS)
) -> None:
    """Let ``roles`` write the paths matching ``pattern`` (a row of the role table)."""
    WRITE_RULES.append(
        WriteRule(re.compile(pattern), frozenset(m.upper() for m in methods), frozenset(roles), reason)
    )


#: Path prefixes whose routes check the caller themselves (with :func:`require_role`).
SELF_GUARDED = ["/api/tokens", "/api/network/members", "/api/network/node", "/api/policies", "/api/audit"]


# --------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------


@dataclass
class AccessState:
    """What the middleware needs, built once per app by :func:`install` (``app.state.access``)."""

    mode: str
    engine: Any
    service: Any
    membership: Membership
    nonces: NonceCache
    policies: PolicyEngine
    audit: AuditLog
    signer: Any = None
    identity: Any = None
    node_id: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    subjects: TokenSubjects | None = None
    subscriptions: SubscriptionPrincipals | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _state(request: Request) -> AccessState:
    state: AccessState | None = getattr(request.app.state, "access", None)
    if state is None:
        raise NgsiLdError("access control is not installed on this node")
    return state


def require_role(request: Request, *roles: str) -> Principal:
    """The caller, if its role is one of ``roles`` (the manager always is); else 401/403."""
    p = principal_of(request)
    if p.role == "manager" or p.role in roles:
        return p
    if p.anonymous:
        raise Unauthorized(f"{request.method} {request.url.path} needs credentials: {CREDENTIALS}")
    wanted = ", ".join(("manager", *roles))
    raise Forbidden(
        f"role {p.role} may not {request.method} {request.url.path} (roles: {wanted})",
        policy=f"{ROLE_TABLE_UID}#{p.role}",
    )


# --------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------


def _segments(path: str) -> list[str]:
    return [unquote(s) for s in path.split("/") if s]


def classify_rest(policies: PolicyEngine, tenant: str, path: str, query: str) -> Resource:
    """The resource a ``GET /api/...`` touches, from its path and query alone.

    - a member: a path segment or a ``member``/``member_id``/``memberId`` parameter that is a
      member (EnergyProsumer) id, an entity a member owns, or any segment after ``members``:
      ``#member-data`` of that member;
    - else a community: a segment or ``community``/``community_id``/``communityId`` parameter
      that is a community id: ``#aggregates`` of that community (its size is the n of k);
    - else ``#open-data`` (node-level views: cards, open data, the ledger's public identity).
    """
    own = policies.ownership(tenant)
    segs = _segments(path)
    params = dict(parse_qsl(query, keep_blank_values=True))
    candidates = segs + [params[k] for k in ("member", "member_id", "memberId") if k in params]
    for n, s in enumerate(candidates):
        owner = own.owner_of(s)
        if owner is None and n > 0 and n < len(segs) and segs[n - 1] == "members":
            owner = s
        if owner is not None:
            community = own.community_of_member(owner)
            return Resource(MEMBER_DATA, s, None, community, owner, own.size(community))
    for s in segs + [params[k] for k in ("community", "community_id", "communityId") if k in params]:
        if s in own.community_members:
            return Resource(AGGREGATES, None, None, s, None, own.size(s))
        if f"urn:ngsi-ld:EnergyCommunity:{s}" in own.community_members:
            cid = f"urn:ngsi-ld:EnergyCommunity:{s}"
            return Resource(AGGREGATES, None, None, cid, None, own.size(cid))
    return Resource(OPEN_DATA)


def _ngsild_entity_target(rest: str) -> tuple[str, str, str | None] | None:
    """(kind, entity id, attribute) of an NGSI-LD path about one entity; kind entity/temporal."""
    m = re.match(r"^/(temporal/)?entities/([^/]+)(?:/attrs/([^/]+))?(?:/.*)?$", rest)
    if not m:
        return None
    return (
        "temporal" if m.group(1) else "entity",
        unquote(m.group(2)),
        unquote(m.group(3)) if m.group(3) else None,
    )


def _strings(value: Any, out: set[str], depth: int = 0) -> None:
    if depth > 12:
        return
    if isinstance(value, str):
        if value.startswith("urn:"):
            out.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out, depth + 1)


def _rendered_as_stored(doc: dict[str, Any]) -> dict[str, Any]:
    """A rendered entity (any format) as the classifier reads it: types and referenced URNs."""
    raw_type = doc.get("type", doc.get("@type"))
    types = raw_type if isinstance(raw_type, list) else [raw_type] if raw_type else []
    found: set[str] = set()
    _strings({k: v for k, v in doc.items() if k not in ("id", "@id")}, found)
    return {
        "id": doc.get("id", doc.get("@id")),
        "type": types,
        "attrs": {"ref": [{"object": o} for o in sorted(found)]},
    }


# --------------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------------


def _body_docs(body: bytes) -> list[dict[str, Any]]:
    if not body.strip():
        return []
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    items = data if isinstance(data, list) else [data]
    return [d for d in items if isinstance(d, dict)]


def write_decision(
    state: AccessState, principal: Principal, method: str, path: str, body: bytes, tenant: str
) -> Decision:
    """Whether ``principal`` may write ``path`` (the write half of the role table, docs/roles.md)."""
    role = principal.role
    if role == "manager":
        return Decision(True, f"{ROLE_TABLE_UID}#manager", "the node's manager")
    for rule in WRITE_RULES:
        if method in rule.methods and rule.pattern.match(path) and role in rule.roles:
            return Decision(True, f"{ROLE_TABLE_UID}#{role}", rule.reason)
    own = state.policies.ownership(tenant)
    if path.startswith(NGSILD + "/"):
        rest = path[len(NGSILD) :]
        entity_write = re.match(r"^/(temporal/)?(entities|entityOperations)(/|$)", rest)
        if entity_write:
            target = _ngsild_entity_target(rest)
            ids: list[str] = [target[1]] if target else []
            docs = _body_docs(body)
            ids += [str(d["id"]) for d in docs if isinstance(d.get("id"), str)]
            ids += [s for s in (d for d in _body_list(body)) if isinstance(s, str)]
            if role == "member" and principal.member_id:
                mine = principal.member_id
                types = {local_name(str(t)) for d in docs for t in _list(d.get("type"))}
                if "DataPolicy" in types:
                    return Decision(False, f"{ROLE_TABLE_UID}#member", "members do not edit data policies")
                ok = bool(ids)
                for eid in dict.fromkeys(ids):
                    owner = own.owner_of(eid)
                    if owner is None and state.service.store.get(tenant, eid) is None:
                        # A new entity: the member's own if it points at the member.
                        refs: set[str] = set()
                        _strings([d for d in docs if d.get("id") == eid], refs)
                        refs.discard(eid)
                        owners = {own.owner_of(r) or (r if r == mine else None) for r in refs}
                        owner = mine if owners == {mine} else None
                    if owner != mine:
                        ok = False
                        break
                if ok:
                    return Decision(True, f"{ROLE_TABLE_UID}#member", "the member's own entities")
                return Decision(
                    False, f"{ROLE_TABLE_UID}#member", "a member writes only their own entities and consents"
                )
            # Anyone else: device control granted by a policy (an Agreement of a service offer).
            if ids and method in ("PATCH", "POST", "PUT") and target is not None:
                resource = state.policies.classify_id(tenant, target[1])
                if resource is not None:
                    d = state.policies.decide(principal, resource, CONTROL, tenant=tenant)
                    if d.allowed:
                        return d
                    return Decision(False, d.policy_uid, d.reason)
    elif (
        path.startswith("/api/")
        and role == "member"
        and principal.member_id
        and principal.member_id in _segments(path)
    ):
        return Decision(True, f"{ROLE_TABLE_UID}#member", "the member's own resources")
    return Decision(False, f"{ROLE_TABLE_UID}#{role}", f"role {role} may not {method} {path} (docs/roles.md)")


def _emptied(value: Any) -> bool:
    """An attribute left without content by redaction (``[]``, or a relationship without object)."""
    if value in ([], {}):
        return True
    if isinstance(value, dict):
        return any(value.get(key) == [] for key in ("object", "objectList", "value"))
    return False


def _bad_data_policy(body: bytes) -> str | None:
    """Why a ``DataPolicy`` entity in a write body cannot be enforced, or None.

    Policies written through the NGSI-LD API are validated like those of ``/api/policies``
    (a fragment without ``odrl`` is left to the entity API).
    """
    from bright.network.policy import PolicyError, parse_policy

    for doc in _body_docs(body):
        if "DataPolicy" not in {local_name(str(t)) for t in _list(doc.get("type"))}:
            continue
        raw = next((v for k, v in doc.items() if local_name(k) == "odrl"), None)
        if isinstance(raw, dict) and raw.get("type") in ("JsonProperty", "Property"):
            raw = raw.get("json", raw.get("value"))
        try:
            parse_policy(raw)
        except PolicyError as exc:
            return f"DataPolicy {doc.get('id')}: ODRL policy refused: {exc}"
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _body_list(body: bytes) -> list[Any]:
    """Plain id lists (the body of ``entityOperations/delete``)."""
    if not body.strip().startswith(b"["):
        return []
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    return [x for x in data if isinstance(x, str)] if isinstance(data, list) else []


# --------------------------------------------------------------------------------------------------
# The middleware
# --------------------------------------------------------------------------------------------------


def _problem(err: NgsiLdError, headers: dict[str, str] | None = None) -> Response:
    resp = problem_response(err)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _with_token_subject(state: AccessState, principal: Principal) -> Principal:
    """A token's principal acting as the party it was issued for (``subject``), if any.

    The token's own name stays in ``attributes["token_name"]`` (the audit log records the subject).
    """
    from dataclasses import replace

    token_id = principal.attributes.get("token_id")
    subjects = state.subjects
    if subjects is None or not isinstance(token_id, str):
        return principal
    subject = subjects.get(token_id)
    if subject is None:
        return principal
    return replace(
        principal, subject=subject, attributes={**principal.attributes, "token_name": principal.subject}
    )


#: Roles a token issued for a party (``subject``) may have: the node's own people (manager,
#: member) and the anonymous/peer roles act as themselves.
SUBJECT_ROLES = frozenset({"school_staff", "local_government", "energy_company", "ngo", "researcher",
                           "technology_provider", "network_organiser", "investor"})  # fmt: skip


def check_subject_of_token(membership: Membership, subject: str, role: str) -> str:
    """``subject`` validated for a token of ``role`` (see :func:`check_token_subject`).

    Also refused: a subject that is a member node of the network (nodes sign their requests) and
    roles that act as themselves (manager, member, public, peer).

    Raises
    ------
    TokenSubjectError
        Naming what is wrong.
    """
    s = check_token_subject(subject)
    if role not in SUBJECT_ROLES:
        raise TokenSubjectError(
            f"a token of role {role!r} cannot act as {s}; subjects are for the roles "
            f"{', '.join(sorted(SUBJECT_ROLES))}"
        )
    for m in membership.members(include_left=True):
        if s in (m.node_id, m.did):
            raise TokenSubjectError(f"subject {s} is a node of the network: nodes sign their requests")
    return s


def _with_hosted_tenant(state: AccessState, principal: Principal) -> Principal:
    """A dashboard account's principal with the hosted tenant it manages, if any.

    The manager account of a hosted tenant (``TenantRegistry.of_manager``, docs/onboarding.md)
    acts in that tenant only; its principal carries ``tenant`` so that
    :meth:`AccessMiddleware._enforce` refuses its requests to any other tenant (inside it, it keeps
    the account's scope). An account
    that manages no hosted tenant keeps the node-wide scope it had.
    """
    from dataclasses import replace

    from bright.services.tenants import TenantRegistry

    if principal.tenant is not None or not principal.subject:
        return principal
    registry = state.extra.get("tenants")
    if not isinstance(registry, TenantRegistry):
        registry = TenantRegistry(state.engine)
        state.extra["tenants"] = registry
    hosted = registry.of_manager(principal.subject)
    if hosted is None:
        return principal
    return replace(principal, tenant=hosted.name)


class _AnswerFilter:
    """An answer filter that also tells which attributes it withheld from the entities it kept.

    Parameters
    ----------
    apply
        ``body -> (filtered body, entities removed, objects redacted)``.
    withheld
        Filled while filtering: entity id -> names of the attributes removed from it.
    count_allowed
        For lists: ``page body -> (entities the caller may see, entities)``, used to make
        ``NGSILD-Results-Count`` exact (:meth:`AccessMiddleware._exact_count`).
    """

    def __init__(
        self,
        apply: Callable[[Any], tuple[Any, int, int]],
        withheld: dict[str, list[str]],
        count_allowed: Callable[[Any], tuple[int, int]] | None = None,
    ) -> None:
        self.apply = apply
        self.withheld = withheld
        self.count_allowed = count_allowed

    def __call__(self, body: Any) -> tuple[Any, int, int]:
        return self.apply(body)


#: Most entities named in the ``NGSILD-Warning`` of withheld attributes (the others are counted).
WARNED_ENTITIES = 20


def withheld_warning(withheld: dict[str, list[str]]) -> str:
    """The ``NGSILD-Warning`` value (warn-code 199, RFC 7234) naming attributes withheld by policy.

    ``199 - "attributes withheld by the data policies: <id> (a, b); <id> (c)"``: at most
    :data:`WARNED_ENTITIES` entities are named, then ``and <n> more entities``.
    """
    parts = []
    for eid in list(withheld)[:WARNED_ENTITIES]:
        names = ", ".join(sorted({local_name(a) for a in withheld[eid]}))
        parts.append(f"{eid} ({names})")
    more = len(withheld) - WARNED_ENTITIES
    text = "; ".join(parts) + (f"; and {more} more entities" if more > 0 else "")
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'199 - "attributes withheld by the data policies: {text}"'


class _Redactor:
    """Removes from an answer every object, key or list item naming a member the caller may not see."""

    def __init__(self, state: AccessState, principal: Principal, tenant: str, purpose: str | None) -> None:
        self.engine = state.policies
        self.own = state.policies.ownership(tenant)
        self.principal = principal
        self.tenant = tenant
        self.purpose = purpose
        self.verdicts: dict[str, bool] = {}
        self.removed = 0

    def take(self) -> int:
        n, self.removed = self.removed, 0
        return n

    def hidden(self, s: str) -> bool:
        owner = self.own.owner_of(s)
        if owner is None:
            return False
        if owner not in self.verdicts:
            community = self.own.community_of_member(owner)
            r = Resource(MEMBER_DATA, owner, None, community, owner, self.own.size(community))
            d = self.engine.decide(self.principal, r, "read", tenant=self.tenant, purpose=self.purpose)
            self.verdicts[owner] = not d.allowed
        return self.verdicts[owner]

    def names_hidden(self, value: Any) -> bool:
        return isinstance(value, dict) and any(isinstance(v, str) and self.hidden(v) for v in value.values())

    def walk(self, value: Any, depth: int = 0) -> Any:
        if depth > 40:
            return value
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if self.hidden(k) or self.names_hidden(v) or (isinstance(v, str) and self.hidden(v)):
                    self.removed += 1
                    continue
                out[k] = self.walk(v, depth + 1)
            return out
        if isinstance(value, list):
            kept = []
            for v in value:
                if (isinstance(v, str) and self.hidden(v)) or self.names_hidden(v):
                    self.removed += 1
                    continue
                kept.append(self.walk(v, depth + 1))
            return kept
        return value


class AccessMiddleware:
    """Authenticate, then enforce the role table and the policies (see the module documentation)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: AccessState | None = getattr(scope["app"].state, "access", None)
        path: str = scope.get("path", "")
        if len(path) > 1 and path.endswith("/"):  # routed like the path without it (StripTrailingSlash)
            path = path.rstrip("/") or "/"
        guarded = path.startswith(("/ngsi-ld/", "/api/")) or path in ("/ngsi-ld", "/api")
        if state is None or not guarded:
            if state is not None:
                principal = await self._cookie_principal(state, scope)
                scope.setdefault("state", {})["principal"] = principal
            await self.app(scope, receive, send)
            return
        method = scope["method"].upper()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        body = b""
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > state.max_body_bytes:
                resp = _problem(
                    BadRequestData(
                        f"request body exceeds the limit of {state.max_body_bytes} bytes", status=413
                    )
                )
                await resp(scope, _replay(b""), send)
                return
        tenant = headers.get("ngsild-tenant", "").strip()
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            principal = await self._authenticate(state, scope, headers, body, method)
        except Unauthorized as err:
            await self._audit(
                state, ANONYMOUS, tenant, method, path, 401, "unauthenticated", None, err.detail
            )
            await _problem(err, {"WWW-Authenticate": 'Bearer realm="bright"'})(scope, _replay(body), send)
            return
        scope.setdefault("state", {})["principal"] = principal
        try:
            await self._enforce(state, principal, scope, send, method, path, query, tenant, headers, body)
        except (Unauthorized, Forbidden) as err:
            status = err.status
            decision = "unauthenticated" if status == 401 else "denied"
            policy = err.extra.get("policy")
            await self._audit(state, principal, tenant, method, path, status, decision, policy, err.detail)
            extra = {"WWW-Authenticate": 'Bearer realm="bright"'} if status == 401 else None
            await _problem(err, extra)(scope, _replay(body), send)

    # --- authentication ------------------------------------------------------------------------
    async def _cookie_principal(self, state: AccessState, scope: Scope) -> Principal:
        from bright.web.users import user_principal

        cookie = None
        for k, v in scope.get("headers", []):
            if k.lower() == b"cookie":
                cookie = cookie_parser(v.decode("latin-1")).get("bright_session", cookie)
        signer = state.signer or getattr(scope["app"].state, "web_signer", None)
        if cookie and signer is not None:
            p = user_principal(signer.loads(cookie))
            if not p.anonymous:
                return await anyio.to_thread.run_sync(lambda: _with_hosted_tenant(state, p))
        return OPEN_ACCESS if state.mode == "open" else ANONYMOUS

    async def _authenticate(
        self, state: AccessState, scope: Scope, headers: dict[str, str], body: bytes, method: str
    ) -> Principal:
        if "signature" in headers or "signature-input" in headers:
            scheme = str(scope.get("scheme", "http"))
            host = headers.get("host", "")
            raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            qs = scope.get("query_string", b"").decode("latin-1")
            target = f"{scheme}://{host}{raw_path}" + (f"?{qs}" if qs else "")
            try:
                verified = await anyio.to_thread.run_sync(
                    lambda: verify_request(
                        method,
                        target,
                        authority_of(scheme, host),
                        headers,
                        body,
                        known_key=state.membership.active_key,
                        nonces=state.nonces,
                    )
                )
            except SignatureError as exc:
                raise Unauthorized(f"signed request refused: {exc}") from None
            member = state.membership.get(verified.keyid)
            assert member is not None
            return member.principal()
        auth = headers.get("authorization")
        if auth is not None:
            scheme_name, _, value = auth.strip().partition(" ")
            if scheme_name.lower() != "bearer" or not value.strip():
                raise Unauthorized(
                    f"the Authorization scheme {scheme_name!r} is not supported; use {CREDENTIALS}"
                )
            from bright.web.users import token_principal

            found = await anyio.to_thread.run_sync(lambda: token_principal(state.engine, value.strip()))
            if found is None:
                raise Unauthorized("the API token is unknown or revoked")
            return await anyio.to_thread.run_sync(lambda: _with_token_subject(state, found))
        return await self._cookie_principal(state, scope)

    # --- enforcement ---------------------------------------------------------------------------
    async def _enforce(
        self,
        state: AccessState,
        principal: Principal,
        scope: Scope,
        send: Send,
        method: str,
        path: str,
        query: str,
        tenant: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        issued_for = principal.tenant or ""
        node_manager = principal.role == "manager" and principal.tenant is None
        asked = {tenant} | {v.strip() for k, v in parse_qsl(query, keep_blank_values=True) if k == "tenant"}
        if principal.kind == "user" and not node_manager and asked != {issued_for}:
            other = sorted(asked - {issued_for})[0] if asked - {issued_for} else tenant
            raise Forbidden(
                f"these credentials were issued for tenant {principal.tenant or '(default)'!r}, "
                f"not {other or '(default)'!r}",
                policy=f"{ROLE_TABLE_UID}#tenant",
                tenant=principal.tenant or "",
            )
        is_read = method not in WRITE_METHODS or any(p.match(path) for p in READ_POSTS)
        if not is_read:
            bad = _bad_data_policy(body) if state.mode == "required" and path.startswith(NGSILD) else None
            if bad is not None:
                await _problem(BadRequestData(bad))(scope, _replay(body), send)
                return
            if principal.kind == "open":
                await self._run(state, principal, scope, send, method, path, tenant, body, None)
                return
            if principal.anonymous:
                if any(method in ms and pat.match(path) for pat, ms, _ in ANONYMOUS_WRITES):
                    await self._run(state, principal, scope, send, method, path, tenant, body, None)
                    return
                raise Unauthorized(
                    f"{method} {path} is a write and writes are never anonymous: present {CREDENTIALS}"
                )
            d = await anyio.to_thread.run_sync(
                lambda: write_decision(state, principal, method, path, body, tenant)
            )
            if not d.allowed:
                raise Forbidden(d.reason, policy=d.policy_uid)
            if path == NGSILD + "/subscriptions" and method == "POST":
                purpose = headers.get(PURPOSE_HEADER) or None
                await self._create_subscription(state, principal, scope, send, tenant, body, purpose)
                return
            status = await self._run(state, principal, scope, send, method, path, tenant, body, None)
            sub = re.match(r"^/ngsi-ld/v1/subscriptions/([^/]+)$", path)
            if sub and method == "DELETE" and status == 204 and state.subscriptions is not None:
                sid = unquote(sub.group(1))
                subs = state.subscriptions
                await anyio.to_thread.run_sync(lambda: subs.forget(tenant, sid))
            return
        if principal.kind == "open" or (principal.role == "manager" and principal.community_id is None):
            await self._run(state, principal, scope, send, method, path, tenant, body, None)
            return
        purpose = headers.get(PURPOSE_HEADER) or None
        filt = await anyio.to_thread.run_sync(
            lambda: self._prepare_read(state, principal, path, query, tenant, purpose)
        )
        await self._run(state, principal, scope, send, method, path, tenant, body, filt)

    def _prepare_read(
        self,
        state: AccessState,
        principal: Principal,
        path: str,
        query: str,
        tenant: str,
        purpose: str | None,
    ) -> Callable[[Any], tuple[Any, int, int]] | None:
        """Decide what can be decided before running the request; return the answer's filter."""
        engine = state.policies
        if any(path.startswith(p) for p in SELF_GUARDED):
            # These routes check their caller; their answers (policies naming a member's meter)
            # are still redacted like any REST answer.
            return self._rest_filter(state, principal, tenant, purpose)
        if path.startswith(NGSILD):
            rest = path[len(NGSILD) :]
            if re.match(r"^/(subscriptions|csourceSubscriptions)(/|$)", rest) and principal.role != "peer":
                raise Forbidden(
                    f"role {principal.role} may not read subscriptions (they name notification endpoints)",
                    policy=f"{ROLE_TABLE_UID}#{principal.role}",
                )
            target = _ngsild_entity_target(rest)
            series = rest.startswith("/temporal/")
            if target is not None:
                resource = engine.classify_id(tenant, target[1], series=series)
                if resource is not None:
                    resource = Resource(
                        resource.asset,
                        resource.entity_id,
                        target[2],
                        resource.community_id,
                        resource.owner_member,
                        resource.n_members,
                    )
                    d = engine.decide(principal, resource, "read", tenant=tenant, purpose=purpose)
                    if not d.allowed:
                        raise Forbidden(d.reason, policy=d.policy_uid)
                return self._entity_filter(state, principal, tenant, series, purpose, single=True)
            if re.match(r"^/(temporal/)?(entities|entityOperations/query)$", rest):
                return self._entity_filter(state, principal, tenant, series, purpose, single=False)
            return None
        resource = classify_rest(engine, tenant, path, query)
        d = engine.decide(principal, resource, "read", tenant=tenant, purpose=purpose)
        if not d.allowed:
            raise Forbidden(d.reason, policy=d.policy_uid)
        return self._rest_filter(state, principal, tenant, purpose)

    @staticmethod
    def _entity_filter(
        state: AccessState,
        principal: Principal,
        tenant: str,
        series: bool,
        purpose: str | None,
        *,
        single: bool,
    ) -> Callable[[Any], tuple[Any, int, int]]:
        engine = state.policies
        redactor = _Redactor(state, principal, tenant, purpose)

        def decide_docs(docs: list[dict[str, Any]]) -> list[Decision | None]:
            ids = [str(d.get("id", d.get("@id", ""))) for d in docs]
            stored = state.service.store.get_many(tenant, [i for i in ids if i])
            out: list[Decision | None] = []
            for doc, eid in zip(docs, ids, strict=True):
                src = stored.get(eid) or _rendered_as_stored(doc)
                resource = engine.classify(tenant, src, series=series)
                out.append(engine.decide(principal, resource, "read", tenant=tenant, purpose=purpose))
            return out

        withheld: dict[str, list[str]] = {}

        def keep_attrs(doc: dict[str, Any], d: Decision) -> dict[str, Any]:
            fixed = {"id", "@id", "type", "@type", "@context", "scope", "createdAt", "modifiedAt"}
            eid = str(doc.get("id", doc.get("@id", "")))
            gone: list[str] = []
            if d.attributes is not None:
                wanted = {local_name(a) for a in d.attributes}
                gone += [k for k in doc if k not in fixed and local_name(k) not in wanted]
                doc = {k: v for k, v in doc.items() if k in fixed or local_name(k) in wanted}
            # Linked entities (join=inline) and relationships naming members the caller may not
            # see are removed from an entity it may see (the entity itself is kept).
            out: dict[str, Any] = {}
            for k, v in doc.items():
                if k in ("id", "@id"):
                    out[k] = v
                elif redactor.names_hidden(v) or (isinstance(v, str) and redactor.hidden(v)):
                    redactor.removed += 1
                    gone.append(k)
                else:
                    before = redactor.removed
                    walked = redactor.walk(v)
                    if redactor.removed == before or not _emptied(walked):
                        out[k] = walked
                    else:  # every object of a relationship was hidden; an empty one is not valid NGSI-LD
                        gone.append(k)
            if gone and eid:
                withheld.setdefault(eid, []).extend(gone)
            return out

        def apply(body: Any) -> tuple[Any, int, int]:
            if single:
                doc = (
                    body.get("properties", body)
                    if isinstance(body, dict) and body.get("type") == "Feature"
                    else body
                )
                if not isinstance(doc, dict) or "id" not in body:
                    return redactor.walk(body), 0, redactor.take()
                d = decide_docs([body])[0]
                assert d is not None
                if not d.allowed:
                    raise Forbidden(d.reason, policy=d.policy_uid)
                return keep_attrs(body, d), 0, redactor.take()
            if isinstance(body, dict) and body.get("type") == "FeatureCollection":
                feats = [f for f in body.get("features", []) if isinstance(f, dict)]
                decisions = decide_docs(feats)
                kept = [
                    redactor.walk(f)
                    for f, d in zip(feats, decisions, strict=True)
                    if d is not None and d.allowed
                ]
                return {**body, "features": kept}, len(feats) - len(kept), redactor.take()
            if not isinstance(body, list):
                return body, 0, 0
            docs = [d for d in body if isinstance(d, dict)]
            decisions = decide_docs(docs)
            kept = [
                keep_attrs(doc, d)
                for doc, d in zip(docs, decisions, strict=True)
                if d is not None and d.allowed
            ]
            return kept, len(docs) - len(kept), redactor.take()

        def count_allowed(body: Any) -> tuple[int, int]:
            """(entities of a page the caller may see, entities of the page)."""
            if isinstance(body, dict) and body.get("type") == "FeatureCollection":
                body = body.get("features", [])
            docs = [d for d in body if isinstance(d, dict)] if isinstance(body, list) else []
            return sum(1 for d in decide_docs(docs) if d is not None and d.allowed), len(docs)

        return _AnswerFilter(apply, withheld, None if single else count_allowed)

    def _rest_filter(
        self, state: AccessState, principal: Principal, tenant: str, purpose: str | None
    ) -> Callable[[Any], tuple[Any, int, int]]:
        redactor = _Redactor(state, principal, tenant, purpose)

        def apply(body: Any) -> tuple[Any, int, int]:
            if redactor.names_hidden(body):
                raise Forbidden(
                    "the answer is about a member whose data this caller may not see",
                    policy=f"{ROLE_TABLE_UID}#{principal.role}",
                )
            out = redactor.walk(body)
            return out, 0, redactor.take()

        return apply

    async def _run(
        self,
        state: AccessState,
        principal: Principal,
        scope: Scope,
        send: Send,
        method: str,
        path: str,
        tenant: str,
        body: bytes,
        filt: Callable[[Any], tuple[Any, int, int]] | None,
    ) -> int:
        """Run the request, filtering its answer with ``filt``; returns the answer's status."""
        started: dict[str, Any] = {}
        chunks: list[bytes] = []
        buffering = filt is not None
        passthrough_started = False

        async def capture(message: MutableMapping[str, Any]) -> None:
            nonlocal buffering, passthrough_started
            if message["type"] == "http.response.start":
                ctype = ""
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-type":
                        ctype = v.decode("latin-1").lower()
                status = int(message["status"])
                if buffering and not ("json" in ctype and 200 <= status < 300):
                    buffering = False
                if buffering:
                    started.update(message)
                    return
                started.update(message)
                passthrough_started = True
                await send(message)
                return
            if buffering and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                return
            await send(message)

        await self.app(scope, _replay(body), capture)
        status = int(started.get("status", 500))
        filtered = 0
        if buffering and not passthrough_started:
            raw = b"".join(chunks)
            out = raw
            resp_headers = list(started.get("headers", []))
            if raw.strip() and filt is not None:
                try:
                    data = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    data = None
                if data is not None:
                    try:
                        new, filtered, redacted = await anyio.to_thread.run_sync(lambda: filt(data))
                    except Forbidden as err:
                        await self._audit(
                            state,
                            principal,
                            tenant,
                            method,
                            path,
                            403,
                            "denied",
                            err.extra.get("policy"),
                            err.detail,
                        )
                        await _problem(err)(scope, _replay(b""), send)
                        return 403
                    out = dumps(new)
                    resp_headers = _fix_headers(resp_headers, len(out), filtered, redacted)
                    if _counted(resp_headers) and isinstance(filt, _AnswerFilter) and filt.count_allowed:
                        exact = await self._exact_count(scope, body, filt.count_allowed)
                        resp_headers = _set_count(resp_headers, exact)
                    withheld = getattr(filt, "withheld", None)
                    if withheld:
                        resp_headers = _warn(resp_headers, withheld)
                        withheld.clear()
                    filtered += redacted
            await send({"type": "http.response.start", "status": status, "headers": resp_headers})
            await send({"type": "http.response.body", "body": out, "more_body": False})
        if principal.kind == "node":
            decision = "filtered" if filtered else ("allowed" if status < 400 else "refused")
            await self._audit(state, principal, tenant, method, path, status, decision, None, None, filtered)
        return status

    async def _create_subscription(
        self,
        state: AccessState,
        principal: Principal,
        scope: Scope,
        send: Send,
        tenant: str,
        body: bytes,
        purpose: str | None,
    ) -> None:
        """``POST /ngsi-ld/v1/subscriptions``, remembering who subscribes before it exists.

        A subscription without ``id`` gets one here (``urn:ngsi-ld:Subscription:<uuid4>``) so that
        its creator is recorded before the first notification can fire; the record is dropped if
        the creation fails (an existing subscription's record is never touched).
        """
        import uuid

        subs = state.subscriptions
        try:
            doc = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            doc = None
        if subs is None or not isinstance(doc, dict):
            await self._run(
                state, principal, scope, send, "POST", NGSILD + "/subscriptions", tenant, body, None
            )
            return
        sid = doc.get("id")
        if sid is None:
            sid = f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
            body = dumps({"id": sid, **doc})
            scope = {
                **scope,
                "headers": [
                    *[(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"],
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        if not isinstance(sid, str):
            await self._run(
                state, principal, scope, send, "POST", NGSILD + "/subscriptions", tenant, body, None
            )
            return
        fresh = await anyio.to_thread.run_sync(lambda: subs.get(tenant, sid) is None)
        if fresh:
            await anyio.to_thread.run_sync(lambda: subs.record(tenant, sid, principal, purpose))
        status = await self._run(
            state, principal, scope, send, "POST", NGSILD + "/subscriptions", tenant, body, None
        )
        if fresh and status != 201:
            await anyio.to_thread.run_sync(lambda: subs.forget(tenant, sid))

    async def _exact_count(
        self, scope: Scope, body: bytes, count_allowed: Callable[[Any], tuple[int, int]]
    ) -> int:
        """How many entities matching the request the caller may see (``count=true``).

        The query is run again page by page (pages of :data:`COUNT_PAGE` entities, ``count``
        off, same filters, same caller) through the app behind this middleware and every entity
        is decided: the cost is one extra query per page plus one decision per matching entity
        (docs/access.md).
        """
        params = [
            (k, v)
            for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            if k not in ("limit", "offset", "count")
        ]
        total = 0
        offset = 0
        while True:
            qs = urlencode([*params, ("limit", str(COUNT_PAGE)), ("offset", str(offset))])
            sub = {**scope, "query_string": qs.encode("latin-1")}
            page: dict[str, Any] = {"status": 500, "body": b""}

            async def collect(message: MutableMapping[str, Any], page: dict[str, Any] = page) -> None:
                if message["type"] == "http.response.start":
                    page["status"] = int(message["status"])
                elif message["type"] == "http.response.body":
                    page["body"] += message.get("body", b"")

            await self.app(sub, _replay(body), collect)
            if not 200 <= page["status"] < 300:
                break
            data = orjson.loads(page["body"] or b"[]")
            allowed, n = await anyio.to_thread.run_sync(count_allowed, data)
            total += allowed
            if n < COUNT_PAGE:
                break
            offset += COUNT_PAGE
        return total

    async def _audit(
        self,
        state: AccessState,
        principal: Principal,
        tenant: str,
        method: str,
        path: str,
        status: int,
        decision: str,
        policy: Any,
        reason: str | None,
        filtered: int = 0,
    ) -> None:
        entry = AuditEntry(
            datetime.now(UTC),
            tenant,
            principal.role,
            principal.subject,
            principal.kind,
            method,
            path,
            status,
            decision,
            str(policy) if policy else None,
            reason,
            filtered,
        )
        try:
            await anyio.to_thread.run_sync(lambda: state.audit.record(entry))
        except Exception:  # pragma: no cover - an audit failure is logged, never hides the answer
            log.exception("could not write the audit log")


#: Page size of the recount of ``count=true`` for filtered callers (the API's largest page).
COUNT_PAGE = 1000


def _counted(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"ngsild-results-count" for k, _ in headers)


def _set_count(headers: list[tuple[bytes, bytes]], count: int) -> list[tuple[bytes, bytes]]:
    """``NGSILD-Results-Count`` set to the exact count of what the caller may see."""
    return [(k, str(count).encode() if k.lower() == b"ngsild-results-count" else v) for k, v in headers]


def _warn(headers: list[tuple[bytes, bytes]], withheld: dict[str, list[str]]) -> list[tuple[bytes, bytes]]:
    """Headers with the notice of withheld attributes: ``NGSILD-Warning`` and their count."""
    value = withheld_warning(withheld).encode("latin-1", "replace")
    n = sum(len(set(v)) for v in withheld.values())
    return [*headers, (b"ngsild-warning", value), (b"bright-attributes-withheld", str(n).encode())]


def _fix_headers(
    headers: list[tuple[bytes, bytes]], length: int, filtered: int, redacted: int = 0
) -> list[tuple[bytes, bytes]]:
    """Content-Length of the new body; the results count lowered by the entities removed."""
    out = []
    for k, v in headers:
        name = k.lower()
        if name == b"content-length":
            continue
        if name == b"ngsild-results-count" and filtered:
            with contextlib.suppress(ValueError):
                v = str(max(0, int(v) - filtered)).encode()
        out.append((k, v))
    out.append((b"content-length", str(length).encode()))
    if filtered or redacted:
        out.append((b"bright-policy-filtered", str(filtered + redacted).encode()))
    return out


# --------------------------------------------------------------------------------------------------
# Routes: tokens, network members, node identity
# --------------------------------------------------------------------------------------------------

router = APIRouter(prefix="/api", tags=["access"])


def _engine(request: Request) -> Any:
    return _state(request).engine


@router.post("/tokens", status_code=201, summary="Create an API token (manager); the token is shown once")
async def create_token_route(request: Request) -> Response:
    from bright.web.users import UserInputError, create_token

    p = require_role(request)
    state = _state(request)
    body = await read_json(request, 64 * 1024)
    if not isinstance(body, dict):
        raise BadRequestData(
            "the body is a JSON object: {name, role, communityId?, memberId?, tenant?, subject?}"
        )
    subject = body.get("subject")
    if subject is not None:
        if not isinstance(subject, str):
            raise BadRequestData(f"subject: {subject!r} is not a string")
        try:
            subject = check_subject_of_token(state.membership, subject, str(body.get("role", "")))
        except TokenSubjectError as exc:
            raise BadRequestData(str(exc)) from None
    tenant = body.get("tenant")
    if p.tenant is not None and tenant not in (None, p.tenant):
        raise Forbidden(
            f"a manager of tenant {p.tenant!r} issues tokens for that tenant only, not {tenant!r}",
            policy=f"{ROLE_TABLE_UID}#tenant",
            tenant=p.tenant,
        )
    try:
        token, value = create_token(
            _engine(request),
            str(body.get("name", "")),
            str(body.get("role", "")),
            community_id=body.get("communityId"),
            member_id=body.get("memberId"),
            tenant=p.tenant if p.tenant is not None else tenant,
            created_by=p.subject,
        )
    except UserInputError as exc:
        raise BadRequestData(str(exc)) from None
    if subject is not None:
        _subjects(state).set(token.token_id, subject)
    return json_response({**token.to_json(), "subject": subject, "token": value}, status=201)


def _subjects(state: AccessState) -> TokenSubjects:
    if state.subjects is None:
        state.subjects = TokenSubjects(state.engine)
    return state.subjects


@router.get("/tokens", summary="API tokens of the node (manager; never their secrets)")
def list_tokens_route(request: Request) -> Response:
    from bright.web.users import list_tokens

    p = require_role(request)
    subjects = _subjects(_state(request)).all()
    tokens = [t for t in list_tokens(_engine(request)) if p.tenant is None or t.tenant == p.tenant]
    return json_response([{**t.to_json(), "subject": subjects.get(t.token_id)} for t in tokens])


@router.delete("/tokens/{token_id}", summary="Revoke an API token (manager)")
def revoke_token_route(request: Request, token_id: str) -> Response:
    from bright.web.users import UserInputError, list_tokens, revoke_token

    p = require_role(request)
    if p.tenant is not None and not any(
        t.token_id == token_id and t.tenant == p.tenant for t in list_tokens(_engine(request))
    ):
        raise ResourceNotFound(f"no API token with id {token_id!r} in tenant {p.tenant!r}")
    try:
        token = revoke_token(_engine(request), token_id)
    except UserInputError as exc:
        raise ResourceNotFound(str(exc)) from None
    return json_response(token.to_json())


@router.get("/network/node", summary="This node's identity in the network (its DID and node id)")
def node_route(request: Request) -> Response:
    state = _state(request)
    return json_response(
        {"did": state.identity.did if state.identity else None, "nodeId": state.node_id, "auth": state.mode}
    )


@router.get("/network/members", summary="Member nodes of this node's network")
def list_members_route(request: Request, include_left: bool = False) -> Response:
    require_role(request, "network_organiser", "peer")
    return json_response([m.to_json() for m in _state(request).membership.members(include_left=include_left)])


@router.post("/network/members", status_code=201, summary="Admit a node to the network (network organiser)")
async def join_route(request: Request) -> Response:
    require_role(request, "network_organiser")
    body = await read_json(request, 64 * 1024)
    if not isinstance(body, dict):
        raise BadRequestData("the body is a JSON object: {did, nodeId, url?, name?, role?}")
    try:
        member = _state(request).membership.join(
            str(body.get("did", "")),
            str(body.get("nodeId", "")),
            url=body.get("url"),
            name=body.get("name"),
            role=str(body.get("role", "member")),
        )
    except MembershipError as exc:
        raise BadRequestData(str(exc)) from None
    return json_response(member.to_json(), status=201)


@router.delete("/network/members/{key:path}", summary="Remove a node from the network and unregister it")
def leave_route(request: Request, key: str) -> Response:
    require_role(request, "network_organiser")
    network = getattr(request.app.state, "network", None)
    try:
        member, removed = _state(request).membership.leave(
            key, registrations=network.registrations if network is not None else None
        )
    except MembershipError as exc:
        raise ResourceNotFound(str(exc)) from None
    return json_response({**member.to_json(), "unregistered": removed})


# --------------------------------------------------------------------------------------------------
# Installation
# --------------------------------------------------------------------------------------------------


def filtered_notification(state: AccessState, note: Any) -> Any | None:
    """A notification as its subscriber may see it, or None when it may see none of its data.

    The subscriber is the principal that created the subscription
    (:class:`bright.network.access.SubscriptionPrincipals`); its notification carries what a
    ``GET /ngsi-ld/v1/entities`` by that principal (with the purpose it declared when it
    subscribed) would return: entities it may not read are removed, attributes withheld, objects
    naming hidden members redacted. A peer node that has left the network gets nothing.
    Subscriptions the node made itself (no recorded creator), and those of the node's manager,
    are not filtered. Context-source notifications (registrations, no entity data) are not
    filtered.
    """
    from dataclasses import replace

    tenant, kind, sid = note.key
    if kind != "entity" or state.subscriptions is None:
        return note
    found = state.subscriptions.get(tenant, sid)
    if found is None:
        return note
    principal, purpose = found
    if principal.kind == "open" or (principal.role == "manager" and principal.community_id is None):
        return note
    did = principal.attributes.get("did")
    if principal.kind == "node" and (not isinstance(did, str) or state.membership.active_key(did) is None):
        log.info("notification of %s dropped: its subscriber node is no longer a member", sid)
        return None
    data = note.body.get("data")
    if not isinstance(data, list):
        return note
    filt = AccessMiddleware._entity_filter(state, principal, tenant, False, purpose, single=False)
    kept, removed, redacted = filt(data)
    if not kept:
        log.info("notification of %s dropped: its subscriber may see none of its data", sid)
        return None
    if removed or redacted:
        log.info("notification of %s filtered: %d entities, %d objects removed", sid, removed, redacted)
    return replace(note, body={**note.body, "data": kept})


def filter_notifications(state: AccessState, delivery: Any) -> None:
    """Make ``delivery`` (a :class:`bright.network.subscriptions.Delivery`) filter what it sends
    with :func:`filtered_notification` (once per delivery)."""
    if getattr(delivery, "_access_filtered", False):
        return
    submit = delivery.submit

    def filtered_submit(note: Any) -> None:
        try:
            out = filtered_notification(state, note)
        except Exception:  # a notification that cannot be decided is not sent
            log.exception("notification of %s not sent: the policy check failed", note.key[2])
            return
        if out is not None:
            submit(out)

    setattr(delivery, "submit", filtered_submit)  # noqa: B010 - the delivery's own attribute
    setattr(delivery, "_access_filtered", True)  # noqa: B010


def install(app: FastAPI) -> AccessState:
    """Add access control to a node's app: the middleware (outermost), tokens, members, policies.

    Call it last in :func:`bright.api.app.create_app`, after every router and middleware.
    The node identity is the ledger's key (``<data dir>/keys``); the policies' defaults are written
    as DataPolicy entities at start-up when ``auth`` is ``required``.
    """
    from contextlib import asynccontextmanager

    from bright.api import policies as policies_api
    from bright.ledger.identity import NodeIdentity
    from bright.services.ledger import LedgerConfig

    existing: AccessState | None = getattr(app.state, "access", None)
    if existing is not None:
        return existing
    settings = app.state.settings
    service = app.state.twin
    try:
        identity = NodeIdentity.load_or_create(LedgerConfig.from_settings(settings).key_dir)
    except Exception as exc:  # an unsafe key file: refuse to sign rather than fail the node
        log.error("node identity not available, outgoing requests are not signed: %s", exc)
        identity = None
    network = getattr(app.state, "network", None)
    state = AccessState(
        mode=settings.auth,
        engine=service.engine,
        service=service,
        membership=Membership(service.engine),
        nonces=DatabaseNonceCache(service.engine),
        policies=PolicyEngine(service),
        audit=AuditLog(service.engine),
        signer=getattr(app.state, "web_signer", None),
        identity=identity,
        node_id=network.federation.node_id if network is not None else None,
        max_body_bytes=settings.max_body_bytes,
        subjects=TokenSubjects(service.engine),
        subscriptions=SubscriptionPrincipals(service.engine),
    )
    app.state.access = state
    if identity is not None:
        attach_identity(service, identity)
        if network is not None:
            attach_identity(network.delivery, identity)
    if network is not None:
        filter_notifications(state, network.delivery)
    app.include_router(router)
    app.include_router(policies_api.router)
    app.add_middleware(AccessMiddleware)

    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> Any:
        current = getattr(app.state, "network", None)
        if identity is not None and current is not None:
            attach_identity(current.delivery, identity)
            state.node_id = current.federation.node_id
        if current is not None:
            filter_notifications(state, current.delivery)
        if state.mode == "required":
            from bright.network.policy import seed_default_policies

            for tenant in sorted({"", *service.store.tenants()}):
                try:
                    seed_default_policies(service, tenant, k=state.policies.k)
                except NgsiLdError as exc:  # pragma: no cover - logged, the node still starts
                    log.warning("default policies of tenant %r not seeded: %s", tenant, exc)
        async with previous(a) as inner:
            yield inner

    app.router.lifespan_context = lifespan
    return state
