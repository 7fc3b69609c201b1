"""The ledger (B-DLT) in the dashboard: heads, cosignatures, finality, forks, proofs, DVPP statements.

- ``/ledger`` (everyone: heads hold hashes and signatures, no personal data): the node's identity
  (DID, community, quorum, members, peers), the signed tree heads with their cosignatures and
  finality, fork alarms, and a form that checks a record's **inclusion proof in the browser**: the
  page's script fetches ``/api/ledger/records/{index}/proof``, hashes the record's canonical JSON
  (RFC 8785 for the ledger's values) as an RFC 9162 leaf, folds the audit path and compares the
  root with the signed head's (``static/ledger.js``, SHA-256 in plain JavaScript so it also works
  on a node served over plain http). The signatures themselves are checked by
  ``bright ledger verify`` with the bundle the page links to.
- ``POST /ledger/settlements`` (manager): settle the community over a period and record it
  (:meth:`bright.services.ledger.LedgerNode.settle`).
- ``/communities/{id}/members/{member}/dvpp`` (manager, that member): the member's flexibility offers,
  activations and earnings in the virtual power plant, each record with its proof check.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bright.services.ledger import LedgerNode
from bright.twin.errors import NgsiLdError
from bright.web import i18n
from bright.web.app import TENANT, WebError, _cache, _community, _lang, _render, current_user
from bright.web.questionnaire import _member_of

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _node(request: Request) -> LedgerNode | None:
    node = getattr(request.app.state, "ledger", None)
    return node if isinstance(node, LedgerNode) else None


def _ledger_context(node: LedgerNode, limit: int) -> dict[str, Any]:
    identity = node.identity_document()
    heads = [node.head_json(h) for h in node.heads(limit=limit)]
    return {
        "identity": identity,
        "heads": heads,
        "size": node.store.size,
        "forks": node.forks(),
    }


@router.get("/ledger", response_class=HTMLResponse)
def ledger_page(request: Request) -> HTMLResponse:
    node = _node(request)
    lang = _lang(request)
    errors: dict[str, str] = {}
    record = (request.query_params.get("record") or "").strip()
    if record:
        if not record.isdigit():
            errors["record"] = i18n.translate("ledger.err_index", lang)
        elif node is not None and int(record) >= node.store.size:
            errors["record"] = i18n.translate("ledger.err_range", lang, size=node.store.size)
    ctx = _ledger_context(node, 20) if node is not None else None
    return _render(
        request,
        "ledger.html",
        status=400 if errors else 200,
        ledger=ctx,
        errors=errors,
        form={"record": record, "start": "", "end": ""},
    )


@router.post("/ledger/settlements", response_model=None)
async def ledger_settle(request: Request) -> Response:
    """The manager records the settlement of a period in the log (one head per interval)."""
    user = current_user(request)
    lang = _lang(request)
    if not user.is_manager:
        raise WebError(403, i18n.translate("error.403", lang))
    node = _node(request)
    if node is None:
        raise WebError(404, i18n.translate("error.404", lang))
    raw = await request.form()
    form = {k: str(v).strip() for k, v in raw.items()}
    errors: dict[str, str] = {}
    for name in ("start", "end"):
        if not form.get(name):
            errors[name] = i18n.translate("auth.required", lang)
    if not errors:
        try:
            await run_in_threadpool(node.settle, start=form["start"], end=form["end"], tenant=TENANT)
        except (NgsiLdError, ValueError) as exc:
            detail = exc.detail if isinstance(exc, NgsiLdError) else str(exc)
            errors["end" if "end" in detail.lower() and "start" not in detail.lower() else "start"] = detail
    if errors:
        return _render(
            request,
            "ledger.html",
            status=400,
            ledger=_ledger_context(node, 20),
            errors=errors,
            form={"record": "", **form},
        )
    _cache(request).clear()
    return RedirectResponse("/ledger?settled=1", status_code=303)


@router.get("/communities/{community_id}/members/{member_id}/dvpp", response_class=HTMLResponse)
def dvpp_page(request: Request, community_id: str, member_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    mid = _member_of(request, community, member_id)
    node = _node(request)
    statement = node.statement(mid) if node is not None else None
    return _render(
        request,
        "dvpp.html",
        community=community,
        member=community.member(mid),
        statement=statement,
    )
