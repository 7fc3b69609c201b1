"""The manager's administration pages: data policies, members' consents, the audit log, hosting.

- ``/admin/policies`` (manager): the ODRL 2.2 policies in force on the manager's tenant (stored
  ``DataPolicy`` entities first, then the defaults of the node and of each community that no stored
  one replaces: the same list as ``GET /api/policies``);
- ``/admin/policy?id=...`` (manager): one policy in words (who may or may not do what with which
  asset, under which constraints) beside its ODRL JSON; ``/admin/policy/edit?id=...`` and
  ``/admin/policies/new`` edit or create one. The form goes through the REST API's own validation
  (:func:`bright.api.policies.parse_policy_body`, which calls :func:`bright.network.policy.parse_policy`),
  and its message is shown next to the field at fault (``odrl``, ``community`` or ``id``);
  ``POST /admin/policy/delete?id=...`` removes a stored policy (a default one comes back);
- ``/admin/consents`` (manager): each member's ``Consent`` entities (purpose, granted, revoked);
- ``/admin/audit`` (manager): the node's access audit log of the manager's tenant, newest first,
  filtered by time (``since``, ``until``: ISO 8601, naive = UTC), peer node id and decision,
  :data:`PAGE_SIZE` rows a page (:meth:`bright.network.policy.AuditLog.entries`, the function
  behind ``GET /api/audit``);
- ``/admin/hosting`` (the node's administrator: the manager of the default tenant): the hosted
  communities (tenants) with their quotas, usage and links to their onboarding pages
  (:class:`bright.services.tenants.TenantRegistry`).

A manager of a hosted tenant sees and edits that tenant's policies, consents and audit rows only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bright.network.policy import (
    ANYONE,
    ASSETS,
    CONTROL,
    DATA_POLICY_PREFIX,
    MIN_MEMBERS,
    ODRL_CONTEXT,
    PARTIES,
    Constraint,
    Policy,
    Rule,
    default_policies,
    parse_instant,
)
from bright.services.community import list_communities
from bright.twin.context import CORE_CONTEXT_URL
from bright.twin.errors import NgsiLdError
from bright.web import i18n
from bright.web.app import WebError, _lang, _render, current_user
from bright.web.users import User

__all__ = [
    "DECISIONS",
    "PAGE_SIZE",
    "PolicyView",
    "describe_policy",
    "parse_audit_filters",
    "policies_in_force",
    "router",
]

router = APIRouter(include_in_schema=False)

#: Rows of the audit log on one page.
PAGE_SIZE = 50
#: Decisions of the audit log (``AuditEntry.decision``).
DECISIONS = ("allowed", "filtered", "denied", "unauthenticated")


def _t(request: Request, key: str, **values: object) -> str:
    return i18n.translate(key, _lang(request), **values)


def _manager(request: Request) -> tuple[User, str] | Response:
    """The manager and their tenant ('' = the node's own); a login redirect or a 403 page otherwise."""
    from bright.web.onboarding import manager_tenant

    user = current_user(request)
    if user.username is None:
        return RedirectResponse(f"/login?next={quote(str(request.url.path))}", status_code=303)
    tenant = manager_tenant(request, user)
    if tenant is None:
        raise WebError(403, _t(request, "adm.managers_only"))
    return user, tenant


def _access(request: Request) -> Any:
    access = getattr(request.app.state, "access", None)
    if access is None:
        raise WebError(404, _t(request, "unavailable"))
    return access


# --- policies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyView:
    """A policy in force: the parsed policy, its entity id and whether it is stored (else a default)."""

    policy: Policy
    id: str
    stored: bool


def policies_in_force(access: Any, tenant: str) -> list[PolicyView]:
    """The policies in force on a tenant, in the order of ``GET /api/policies``.

    Stored ``DataPolicy`` entities first, then the default policies of the node and of each of its
    communities whose uid no stored policy takes.
    """
    own = access.policies.ownership(tenant)
    out = [PolicyView(p, p.entity_id or p.uid, True) for p in own.policies]
    uids = {p.uid for p in own.policies}
    for cid in [None, *sorted(own.community_members)]:
        for p in default_policies(cid, k=access.policies.k):
            if p.uid not in uids:
                out.append(PolicyView(p, p.uid, False))
    return out


def _party(iri: str, t: Any) -> str:
    if iri == ANYONE:
        return str(t("adm.anyone"))
    if iri.startswith(PARTIES):
        return str(t("adm.role", role=iri[len(PARTIES) :]))
    return iri


def _asset(iri: str, t: Any) -> str:
    if iri.startswith(ASSETS):
        return str(t("adm.asset." + iri[len(ASSETS) :]))
    return iri


def _action(name: str, t: Any) -> str:
    return str(t("adm.action." + ("control" if name == CONTROL else name)))


def _constraint(c: Constraint, t: Any) -> str:
    left = "minMembers" if c.left == MIN_MEMBERS else c.left
    values = ", ".join(str(v) for v in c.right)
    return str(t("adm.constraint", left=t("adm.left." + left), op=t("adm.op." + c.operator), right=values))


def describe_rule(rule: Rule, t: Any) -> dict[str, Any]:
    """A rule in words: kind, parties, actions, assets and constraints (in the page's language)."""
    return {
        "kind": rule.kind,
        "who": [_party(a, t) for a in rule.assignees] or [str(t("adm.anyone"))],
        "actions": [_action(a, t) for a in rule.actions],
        "targets": [_asset(a, t) for a in rule.targets],
        "constraints": [_constraint(c, t) for c in rule.constraints],
    }


def describe_policy(policy: Policy, t: Any) -> list[dict[str, Any]]:
    """Every rule of a policy in words (see :func:`describe_rule`)."""
    return [describe_rule(r, t) for r in policy.rules]


def _translator(request: Request) -> Any:
    lang = _lang(request)
    return lambda key, **values: i18n.translate(key, lang, **values)


def _find(request: Request, tenant: str, policy_id: str) -> PolicyView:
    for view in policies_in_force(_access(request), tenant):
        if policy_id in (view.id, view.policy.uid):
            return view
    raise WebError(404, _t(request, "adm.no_policy", id=policy_id))


def _community_ids(request: Request, tenant: str) -> list[str]:
    twin = request.app.state.twin
    return [c.id for c in list_communities(twin, tenant=tenant, limit=1000)]


@router.get("/admin/policies", response_class=HTMLResponse)
def policies_page(request: Request) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    _, tenant = who
    access = _access(request)
    t = _translator(request)
    views = policies_in_force(access, tenant)
    rows = [{"view": v, "rules": describe_policy(v.policy, t)} for v in views]
    invalid = access.policies.ownership(tenant).invalid
    return _render(request, "admin_policies.html", rows=rows, invalid=invalid, tenant=tenant)


@router.get("/admin/policy", response_class=HTMLResponse)
def policy_page(request: Request, id: str = "") -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    view = _find(request, who[1], id)
    return _render(
        request,
        "admin_policy.html",
        view=view,
        rules=describe_policy(view.policy, _translator(request)),
        odrl=json.dumps(view.policy.document, indent=2, ensure_ascii=False),
    )


def _blank_odrl() -> str:
    doc = {
        "@context": ODRL_CONTEXT,
        "@type": "Set",
        "uid": DATA_POLICY_PREFIX + "my-policy",
        "permission": [
            {
                "target": ASSETS + "aggregates",
                "assignee": PARTIES + "researcher",
                "action": ["read", "use"],
                "constraint": [{"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}],
            }
        ],
    }
    return json.dumps(doc, indent=2)


def _form_page(
    request: Request, tenant: str, form: dict[str, str], errors: dict[str, str], *, editing: str | None,
    status: int = 200,
) -> HTMLResponse:  # fmt: skip
    return _render(
        request,
        "admin_policy_form.html",
        status=status,
        form=form,
        errors=errors,
        editing=editing,
        communities=_community_ids(request, tenant),
    )


def validate_policy_form(
    form: dict[str, str], policy_id: str | None
) -> tuple[Policy | None, str, dict[str, str]]:
    """The policy of a form and its entity id, or the errors by field (``odrl``, ``community``, ``id``).

    The JSON is read here; the policy is validated by the REST API's own function
    (:func:`bright.api.policies.parse_policy_body`), whose message is put next to the field it names.
    """
    from bright.api.policies import parse_policy_body

    text = form.get("odrl", "")
    try:
        odrl = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, "", {"odrl": f"JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"}
    body: dict[str, Any] = {"odrl": odrl}
    if form.get("community", "").strip():
        body["community"] = form["community"].strip()
    if policy_id is None and form.get("id", "").strip():
        body["id"] = form["id"].strip()
    try:
        policy, eid = parse_policy_body(body, policy_id)
    except NgsiLdError as exc:
        detail = exc.detail
        field = "odrl"
        if detail.startswith("community:"):
            field = "community"
        elif not detail.startswith("ODRL policy refused"):
            field = "id"
        return None, "", {field: detail}
    return policy, eid, {}


def _save(request: Request, tenant: str, policy: Policy, eid: str, *, replace: bool) -> None:
    from bright.network.policy import policy_entity

    service = request.app.state.twin
    ctx = service.resolve_context(CORE_CONTEXT_URL)
    entity = policy_entity(policy, eid)
    if replace and service.store.get(tenant, eid) is not None:
        service.replace_entity(tenant, eid, entity, ctx)
    else:
        service.create_entity(tenant, entity, ctx)
    _access(request).policies.invalidate(tenant)


@router.get("/admin/policies/new", response_class=HTMLResponse)
def new_policy_form(request: Request) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    return _form_page(request, who[1], {"odrl": _blank_odrl(), "community": "", "id": ""}, {}, editing=None)


@router.post("/admin/policies/new", response_model=None)
async def new_policy_submit(request: Request) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    tenant = who[1]
    form = {k: str(v) for k, v in (await request.form()).items()}
    policy, eid, errors = validate_policy_form(form, None)
    status = 400
    if policy is not None:
        try:
            _save(request, tenant, policy, eid, replace=False)
        except NgsiLdError as exc:  # an id already taken: 409
            errors, status = {"id": exc.detail}, exc.status
    if errors:
        return _form_page(request, tenant, form, errors, editing=None, status=status)
    return RedirectResponse(f"/admin/policy?{urlencode({'id': eid, 'saved': '1'})}", status_code=303)


@router.get("/admin/policy/edit", response_class=HTMLResponse)
def edit_policy_form(request: Request, id: str = "") -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    view = _find(request, who[1], id)
    form = {
        "odrl": json.dumps(view.policy.document, indent=2, ensure_ascii=False),
        "community": view.policy.community or "",
        "id": view.id,
    }
    return _form_page(request, who[1], form, {}, editing=view.id)


@router.post("/admin/policy/edit", response_model=None)
async def edit_policy_submit(request: Request, id: str = "") -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    tenant = who[1]
    view = _find(request, tenant, id)
    form = {k: str(v) for k, v in (await request.form()).items()}
    form["id"] = view.id
    policy, eid, errors = validate_policy_form(form, view.id)
    status = 400
    if policy is not None:
        try:
            _save(request, tenant, policy, eid, replace=True)
        except NgsiLdError as exc:
            errors, status = {"odrl": exc.detail}, exc.status
    if errors:
        return _form_page(request, tenant, form, errors, editing=view.id, status=status)
    return RedirectResponse(f"/admin/policy?{urlencode({'id': eid, 'saved': '1'})}", status_code=303)


@router.post("/admin/policy/delete", response_model=None)
def delete_policy(request: Request, id: str = "") -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    tenant = who[1]
    view = _find(request, tenant, id)
    if not view.stored:
        raise WebError(400, _t(request, "adm.default_kept"))
    request.app.state.twin.delete_entity(tenant, view.id)
    _access(request).policies.invalidate(tenant)
    return RedirectResponse("/admin/policies?removed=1", status_code=303)


# --- consents ------------------------------------------------------------------------------------


@router.get("/admin/consents", response_class=HTMLResponse)
def consents_page(request: Request) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    tenant = who[1]
    from bright.api.onboarding import onboarding_of

    svc = onboarding_of(request)
    communities = []
    for c in list_communities(request.app.state.twin, tenant=tenant, limit=1000):
        members = sorted(svc.members(c.id, tenant=tenant), key=lambda m: str(m["id"]))
        communities.append({"id": c.id, "name": c.name, "members": members})
    return _render(request, "admin_consents.html", communities=communities)


# --- audit log -----------------------------------------------------------------------------------


def parse_audit_filters(params: dict[str, str], lang: str = "en") -> tuple[dict[str, Any], dict[str, str]]:
    """The audit form: (arguments of ``AuditLog.entries`` without tenant/limit/offset plus ``page``,
    field errors).

    ``since`` and ``until`` are ISO 8601 (naive: UTC; a ``datetime-local`` value fits), ``until``
    after ``since``; ``decision`` one of :data:`DECISIONS`; ``page`` a whole number >= 1.
    """
    errors: dict[str, str] = {}
    out: dict[str, Any] = {"since": None, "until": None, "peer": None, "decision": None, "page": 1}
    for name in ("since", "until"):
        raw = (params.get(name) or "").strip()
        if raw:
            try:
                out[name] = parse_instant(raw, name)
            except ValueError:
                errors[name] = i18n.translate("adm.err_instant", lang)
    if out["since"] and out["until"] and out["until"] <= out["since"]:
        errors["until"] = i18n.translate("adm.err_order", lang)
    decision = (params.get("decision") or "").strip()
    if decision:
        if decision in DECISIONS:
            out["decision"] = decision
        else:
            errors["decision"] = i18n.translate("adm.err_decision", lang, choices=", ".join(DECISIONS))
    out["peer"] = (params.get("peer") or "").strip() or None
    raw_page = (params.get("page") or "").strip()
    if raw_page:
        if raw_page.isdigit() and int(raw_page) >= 1:
            out["page"] = int(raw_page)
        else:
            errors["page"] = i18n.translate("net.err_whole", lang)
    return out, errors


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(request: Request) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    tenant = who[1]
    params = {k: str(v) for k, v in request.query_params.items()}
    filters, errors = parse_audit_filters(params, _lang(request))
    entries: list[Any] = []
    more = False
    page = int(filters["page"])
    if not errors:
        found = _access(request).audit.entries(
            since=filters["since"],
            until=filters["until"],
            peer=filters["peer"],
            decision=filters["decision"],
            tenant=tenant,
            limit=PAGE_SIZE + 1,
            offset=(page - 1) * PAGE_SIZE,
        )
        more = len(found) > PAGE_SIZE
        entries = found[:PAGE_SIZE]
    query = {k: v for k, v in params.items() if k in ("since", "until", "peer", "decision") and v}

    def page_link(n: int) -> str:
        return "/admin/audit?" + urlencode({**query, "page": str(n)})

    return _render(
        request,
        "admin_audit.html",
        status=400 if errors else 200,
        form=params,
        errors=errors,
        entries=entries,
        page=page,
        prev_link=page_link(page - 1) if page > 1 else None,
        next_link=page_link(page + 1) if more else None,
        decisions=DECISIONS,
    )


# --- hosting -------------------------------------------------------------------------------------


@router.get("/admin/hosting", response_class=HTMLResponse)
def hosting_page(request: Request) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    if who[1] != "":
        raise WebError(403, _t(request, "adm.node_admin_only"))
    from bright.api.onboarding import registry_of

    registry = registry_of(request.app)
    rows = []
    for hosted in registry.list():
        usage = registry.usage(hosted.name)
        rows.append(
            {
                "tenant": hosted,
                "usage": usage,
                "entities_share": usage.entities / hosted.max_entities,
                "points_share": usage.series_points / hosted.max_series_points,
            }
        )
    return _render(request, "admin_hosting.html", rows=rows)
