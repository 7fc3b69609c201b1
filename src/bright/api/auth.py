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
4. **Audit.** Every request of a peer node and every 401/403 is written to the audit log.

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
from urllib.parse import parse_qsl, unquote

import anyio
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.requests import cookie_parser
from starlette.types import Receive, Scope, Send

from bright.api.http import dumps, json_response, problem_response, read_json
from bright.network.access import ANONYMOUS, OPEN_ACCESS, Principal, principal_of
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
                return p
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
            return found
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
        if principal.kind == "user" and not node_manager and tenant != issued_for:
            raise Forbidden(
                f"these credentials were issued for tenant {principal.tenant or '(default)'!r}, "
                f"not {tenant or '(default)'!r}",
                policy=f"{ROLE_TABLE_UID}#tenant",
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
            await self._run(state, principal, scope, send, method, path, tenant, body, None)
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

    def _entity_filter(
        self,
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

        def keep_attrs(doc: dict[str, Any], d: Decision) -> dict[str, Any]:
            fixed = {"id", "@id", "type", "@type", "@context", "scope", "createdAt", "modifiedAt"}
            if d.attributes is not None:
                wanted = {local_name(a) for a in d.attributes}
                doc = {k: v for k, v in doc.items() if k in fixed or local_name(k) in wanted}
            # Linked entities (join=inline) and relationships naming members the caller may not
            # see are removed from an entity it may see.
            out: dict[str, Any] = {}
            for k, v in doc.items():
                if k in ("id", "@id"):
                    out[k] = v
                elif redactor.names_hidden(v) or (isinstance(v, str) and redactor.hidden(v)):
                    redactor.removed += 1
                else:
                    before = redactor.removed
                    walked = redactor.walk(v)
                    if redactor.removed == before or not _emptied(walked):
                        out[k] = walked
                    # else: every object of a relationship was hidden; an empty one is not valid NGSI-LD
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

        return apply

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
    ) -> None:
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
                        return
                    out = dumps(new)
                    resp_headers = _fix_headers(resp_headers, len(out), filtered, redacted)
                    filtered += redacted
            await send({"type": "http.response.start", "status": status, "headers": resp_headers})
            await send({"type": "http.response.body", "body": out, "more_body": False})
        if principal.kind == "node":
            decision = "filtered" if filtered else ("allowed" if status < 400 else "refused")
            await self._audit(state, principal, tenant, method, path, status, decision, None, None, filtered)

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
    body = await read_json(request, 64 * 1024)
    if not isinstance(body, dict):
        raise BadRequestData("the body is a JSON object: {name, role, communityId?, memberId?, tenant?}")
    try:
        token, value = create_token(
            _engine(request),
            str(body.get("name", "")),
            str(body.get("role", "")),
            community_id=body.get("communityId"),
            member_id=body.get("memberId"),
            tenant=body.get("tenant"),
            created_by=p.subject,
        )
    except UserInputError as exc:
        raise BadRequestData(str(exc)) from None
    return json_response({**token.to_json(), "token": value}, status=201)


@router.get("/tokens", summary="API tokens of the node (manager; never their secrets)")
def list_tokens_route(request: Request) -> Response:
    from bright.web.users import list_tokens

    require_role(request)
    return json_response([t.to_json() for t in list_tokens(_engine(request))])


@router.delete("/tokens/{token_id}", summary="Revoke an API token (manager)")
def revoke_token_route(request: Request, token_id: str) -> Response:
    from bright.web.users import UserInputError, revoke_token

    require_role(request)
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
    )
    app.state.access = state
    if identity is not None:
        attach_identity(service, identity)
        if network is not None:
            attach_identity(network.delivery, identity)
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
