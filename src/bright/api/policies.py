"""REST API of the node's data-sharing policies and of its access audit log.

- ``GET /api/policies``: the policies in force (stored DataPolicy entities, then the defaults of
  each community not replaced by a stored one), anyone; ``?community=<id>`` narrows them.
- ``GET /api/policies/{id}``: one (a DataPolicy id or a policy uid).
- ``POST /api/policies`` (manager): ``{"odrl": {...}, "community"?: id, "id"?: DataPolicy id}``,
  validated; 400 names the bad ODRL part. ``PUT /api/policies/{id}`` replaces,
  ``DELETE /api/policies/{id}`` removes (a default policy comes back into force).
- ``POST /api/policies/seed`` (manager): write the defaults as entities.
- ``GET /api/audit`` (manager): the audit log of the request's tenant (``NGSILD-Tenant``), newest
  first; ``since``, ``until`` (ISO 8601),
  ``peer`` (node id), ``decision`` (allowed, filtered, denied, unauthenticated), ``limit``,
  ``offset``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bright.api.http import json_response, read_json
from bright.network.policy import (
    DATA_POLICY_PREFIX,
    Policy,
    PolicyError,
    default_policies,
    parse_instant,
    parse_policy,
    policy_entity,
    policy_slug,
    seed_default_policies,
)
from bright.twin.context import CORE_CONTEXT_URL
from bright.twin.entities import check_entity_id
from bright.twin.errors import BadRequestData, ResourceNotFound

router = APIRouter(prefix="/api", tags=["access"])


def _access(request: Request) -> Any:
    return request.app.state.access


def _tenant(request: Request) -> str:
    from bright.api.ngsild import tenant_of

    return tenant_of(request)


def _render(policy: Policy, stored: bool) -> dict[str, Any]:
    return {
        "id": policy.entity_id or policy_entity(policy)["id"],
        "uid": policy.uid,
        "type": policy.type,
        "community": policy.community,
        "stored": stored,
        "odrl": policy.document,
    }


def _in_force(request: Request, community: str | None = None) -> list[dict[str, Any]]:
    access = _access(request)
    tenant = _tenant(request)
    own = access.policies.ownership(tenant)
    stored = [p for p in own.policies if community is None or p.community in (None, community)]
    uids = {p.uid for p in stored}
    out = [_render(p, True) for p in stored]
    communities: list[str | None] = [community] if community else [None, *sorted(own.community_members)]
    for cid in communities:
        out += [_render(p, False) for p in default_policies(cid, k=access.policies.k) if p.uid not in uids]
    return out


@router.get("/policies", summary="The data-sharing policies in force (ODRL 2.2)")
def list_policies(request: Request, community: str | None = None) -> Response:
    body = _in_force(request, community)
    own = _access(request).policies.ownership(_tenant(request))
    headers = {"BRIGHT-Invalid-Policies": ", ".join(sorted(own.invalid))} if own.invalid else None
    return json_response(body, headers=headers)


@router.get("/policies/{policy_id:path}", summary="One policy")
def get_policy(request: Request, policy_id: str) -> Response:
    for p in _in_force(request):
        if policy_id in (p["id"], p["uid"]):
            return json_response(p)
    raise ResourceNotFound(f"no policy {policy_id}")


def parse_policy_body(body: Any, policy_id: str | None) -> tuple[Policy, str]:
    """A DataPolicy from a request body ``{odrl, community?, id?}`` (or a bare ODRL policy) and its
    entity id; BadRequestData names the part that is wrong (the REST API and the dashboard's form)."""
    if not isinstance(body, dict):
        raise BadRequestData('the body is a JSON object: {"odrl": {...}, "community"?: id, "id"?: id}')
    odrl = body.get("odrl", body if "@context" in body else None)
    community = body.get("community")
    if community is not None and (not isinstance(community, str) or not community.startswith("urn:")):
        raise BadRequestData(f"community: {community!r} is not an EnergyCommunity id")
    try:
        policy = parse_policy(odrl, community=community)
    except PolicyError as exc:
        raise BadRequestData(f"ODRL policy refused: {exc}") from None
    eid = (
        policy_id
        or body.get("id")
        or (
            policy.uid
            if policy.uid.startswith(DATA_POLICY_PREFIX)
            else DATA_POLICY_PREFIX + policy_slug(policy.uid)
        )
    )
    if not isinstance(eid, str) or not eid.startswith(DATA_POLICY_PREFIX):
        raise BadRequestData(f"id: {eid!r} must start with {DATA_POLICY_PREFIX}")
    check_entity_id(eid)
    return policy, eid


def _write(request: Request, policy: Policy, eid: str, *, replace: bool) -> None:
    from bright.api.auth import require_role

    require_role(request)
    service = request.app.state.twin
    tenant = _tenant(request)
    ctx = service.resolve_context(CORE_CONTEXT_URL)
    ent = policy_entity(policy, eid)
    if replace:
        if service.store.get(tenant, eid) is None:
            service.create_entity(tenant, ent, ctx)
        else:
            service.replace_entity(tenant, eid, ent, ctx)
    else:
        service.create_entity(tenant, ent, ctx)
    _access(request).policies.invalidate(tenant)


@router.post("/policies", status_code=201, summary="Add a policy (manager)")
async def create_policy(request: Request) -> Response:
    from bright.api.auth import require_role

    require_role(request)
    policy, eid = parse_policy_body(await read_json(request, 1024 * 1024), None)
    _write(request, policy, eid, replace=False)
    return json_response(
        {**_render(policy, True), "id": eid}, status=201, headers={"Location": f"/api/policies/{eid}"}
    )


@router.post("/policies/seed", summary="Write the default policies as DataPolicy entities (manager)")
def seed_policies(request: Request) -> Response:
    from bright.api.auth import require_role

    require_role(request)
    tenant = _tenant(request)
    created = seed_default_policies(request.app.state.twin, tenant, k=_access(request).policies.k)
    _access(request).policies.invalidate(tenant)
    return json_response({"created": created})


@router.put("/policies/{policy_id:path}", status_code=200, summary="Replace a policy (manager)")
async def replace_policy(request: Request, policy_id: str) -> Response:
    from bright.api.auth import require_role

    require_role(request)
    policy, eid = parse_policy_body(await read_json(request, 1024 * 1024), policy_id)
    _write(request, policy, eid, replace=True)
    return json_response({**_render(policy, True), "id": eid})


@router.delete("/policies/{policy_id:path}", status_code=204, summary="Remove a stored policy (manager)")
def delete_policy(request: Request, policy_id: str) -> Response:
    from bright.api.auth import require_role

    require_role(request)
    tenant = _tenant(request)
    service = request.app.state.twin
    if service.store.get(tenant, policy_id) is None:
        raise ResourceNotFound(f"no stored DataPolicy {policy_id}")
    service.delete_entity(tenant, policy_id)
    _access(request).policies.invalidate(tenant)
    return Response(status_code=204)


@router.get("/audit", summary="The access audit log (manager)")
def audit(
    request: Request,
    since: str | None = None,
    until: str | None = None,
    peer: str | None = None,
    decision: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Response:
    from bright.api.auth import require_role

    require_role(request)
    if not 1 <= limit <= 1000 or offset < 0:
        raise BadRequestData(f"limit must be within 1..1000 and offset >= 0 (got {limit}, {offset})")
    try:
        start = parse_instant(since, "since") if since else None
        end = parse_instant(until, "until") if until else None
    except ValueError as exc:
        raise BadRequestData(str(exc)) from None
    # Tenant-scoped: the rows of the requests made to this request's tenant only (a hosted
    # tenant's manager can only address their own tenant, see bright.api.auth).
    entries = _access(request).audit.entries(
        since=start,
        until=end,
        peer=peer,
        decision=decision,
        tenant=_tenant(request),
        limit=limit,
        offset=offset,
    )
    return json_response([e.to_json() for e in entries])
