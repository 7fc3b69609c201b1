"""B-DLT REST API: the node's identity, tree heads, peer cosigning, proofs, forks, and the DVPP.

Ledger (``/api/ledger``):

``GET  /identity``                     DID, DID document, community, quorum, members, peers
``GET  /heads?limit&offset``            signed tree heads with their cosignatures and finality
``POST /heads``                         sign a head over the log now and ask the peers to cosign it
``GET  /heads/{size}``                  one head
``POST /heads/{size}/cosign``           a peer asks this node to check and cosign its head:
                                        ``{"head": {...}, "consistency": {old_size, new_size, path} | null}``
                                        -> ``{"cosignature": {signer, signature}}``; 409 with
                                        ``previousSize`` (proof needed) or ``fork`` (both heads)
``GET  /consistency?from&to``           RFC 9162 consistency proof between two sizes of the log
``GET  /records/{index}/proof?size``    proof bundle of a record (``bright ledger verify``)
``GET  /forks``                         fork alarms with both heads as evidence
``POST /settlements``                   settle the community over ``{start, end}`` and record it

Virtual power plant (``/api/dvpp``):

``GET/POST /offers``                    flexibility offers (device, window, kW, EUR/kWh), or a signed record
``GET/POST /activations``               activations; POST a need ``{start, end, direction, powerKw}``
``POST /activations/{id}/settlement``   ``{"deliveredKwh": ...}``: the metered settlement
``GET  /members/{id}/statement``        what a member offered, what was used, what it earned

Mounted with :func:`install`. The node's private key never appears in a response, a log line or an
error (a test scans them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from bright.api.http import json_response, read_json
from bright.ledger.heads import HeadError, SignedTreeHead
from bright.ledger.identity import IdentityError
from bright.ledger.merkle import ConsistencyProof, ProofError
from bright.ledger.records import RecordError, SignedRecord
from bright.services.ledger import LedgerInputError, LedgerNode, parse_need

__all__ = ["dvpp_router", "install", "ledger_router"]

ledger_router = APIRouter(prefix="/api/ledger", tags=["ledger (B-DLT)"])
dvpp_router = APIRouter(prefix="/api/dvpp", tags=["virtual power plant (DVPP)"])


def _node(request: Request) -> LedgerNode:
    node: LedgerNode = request.app.state.ledger
    return node


@contextmanager
def _input_errors() -> Iterator[None]:
    """Malformed heads, proofs and records are the client's fault (400)."""
    try:
        yield
    except (HeadError, ProofError, RecordError, IdentityError) as exc:
        raise LedgerInputError(str(exc)) from None


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise LedgerInputError("the body must be a JSON object")
    return body


def _int_param(value: str | None, name: str, default: int | None = None) -> int | None:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise LedgerInputError(f"{name} must be an integer, got {value!r}") from None


# --------------------------------------------------------------------------------------------------
# Ledger
# --------------------------------------------------------------------------------------------------


@ledger_router.get("/identity", summary="The node's ledger identity (DID, DID document)")
def get_identity(request: Request) -> Response:
    """The node's ``did:key``, its DID document, the community whose log it operates, the quorum,
    the members counted for finality and the peers asked to cosign."""
    return json_response(_node(request).identity_document())


@ledger_router.get("/heads", summary="Signed tree heads of the node's log")
def get_heads(request: Request, limit: int = 20, offset: int = 0) -> Response:
    """Heads, largest first, each with its cosignatures and finality (signers, required, final)."""
    node = _node(request)
    heads = node.heads(limit=limit, offset=offset)
    return json_response(
        {"community": node.community, "size": node.store.size, "heads": [node.head_json(h) for h in heads]}
    )


@ledger_router.post("/heads", summary="Sign a head now and collect the peers' cosignatures")
async def post_heads(request: Request, cosign: bool = True) -> Response:
    """Sign a tree head over the whole log (or reuse the current one) and, with ``cosign=true``,
    ask every configured peer to cosign it."""
    node = _node(request)
    if not cosign:
        head = await run_in_threadpool(node.sign_head)
        return json_response({"head": node.head_json(head), "peers": []})
    result = await run_in_threadpool(node.request_cosignatures)
    return json_response(
        {"head": node.head_json(result.head), "peers": [o.to_json() for o in result.outcomes]}
    )


@ledger_router.get("/heads/{size}", summary="One signed tree head")
def get_head(request: Request, size: int) -> Response:
    node = _node(request)
    return json_response(node.head_json(node.head(size)))


@ledger_router.post("/heads/{size}/cosign", summary="Check and cosign a peer's tree head")
async def post_cosign(request: Request, size: int) -> Response:
    """Cosign the head of another node's log after checking its signature, its operator, forks
    (same size, another root: 409 with ``fork``, the evidence is kept) and its consistency with the
    last head seen (409 with ``previousSize`` when a proof is needed)."""
    node = _node(request)
    body = await _body(request)
    unknown = sorted(set(body) - {"head", "consistency"})
    if unknown or "head" not in body:
        raise LedgerInputError("the body must be {head, consistency}")
    with _input_errors():
        head = SignedTreeHead.from_json(body["head"])
        raw = body.get("consistency")
        proof = None if raw is None else ConsistencyProof.from_json(raw)
    if head.size != size:
        raise LedgerInputError(f"the head has size {head.size}, the path says {size}")
    with _input_errors():
        cosignature = await run_in_threadpool(node.receive_head, head, proof)
    return json_response({"cosignature": cosignature.to_json(), "signer": node.did})


@ledger_router.get("/consistency", summary="Consistency proof between two sizes of the log")
def get_consistency(request: Request) -> Response:
    node = _node(request)
    old = _int_param(request.query_params.get("from"), "from")
    new = _int_param(request.query_params.get("to"), "to", node.store.size)
    if old is None:
        raise LedgerInputError("from (the older size) is required")
    return json_response(node.consistency_proof(old, new).to_json())


@ledger_router.get("/records/{index}/proof", summary="Proof bundle of one record")
def get_proof(request: Request, index: int, size: int | None = None) -> Response:
    """A self-contained bundle (record, inclusion proof, signed head with cosignatures, keys,
    finality rule) that ``bright ledger verify BUNDLE --key DID`` checks offline."""
    node = _node(request)
    with _input_errors():
        bundle = node.proof_bundle(index, size=size)
    return json_response(bundle)


@ledger_router.get("/forks", summary="Fork alarms")
def get_forks(request: Request) -> Response:
    """Every fork this node detected or was told about, with both heads as evidence."""
    return json_response({"forks": _node(request).forks()})


@ledger_router.post("/settlements", summary="Settle the community and record it", status_code=201)
async def post_settlements(request: Request) -> Response:
    """Body ``{start, end, method?, pricing?, supplierEnergyPriceEurPerKwh?, feedInPriceEurPerKwh?,
    gridFeeEurPerKwh?, communityPriceEurPerKwh?}`` (prices in EUR/kWh override the community's): runs
    the community settlement over the period and appends one signed record per member and
    quarter-hour, one head per interval."""
    node = _node(request)
    body = await _body(request)
    options: dict[str, Any] = {k: body[k] for k in ("method", "pricing") if body.get(k) is not None}
    for key, name in _PRICE_FIELDS.items():
        if body.get(key) is not None:
            options[name] = body[key]
    unknown = sorted(set(body) - {"start", "end", "method", "pricing", *_PRICE_FIELDS})
    if unknown:
        raise LedgerInputError(f"unknown field(s) {', '.join(unknown)}")
    with _input_errors():
        result = await run_in_threadpool(
            node.settle, start=body.get("start"), end=body.get("end"), tenant=_tenant(request), **options
        )
    return json_response(result.to_json(), status=201)


_PRICE_FIELDS = {
    "supplierEnergyPriceEurPerKwh": "supplier_energy_eur_per_kwh",
    "feedInPriceEurPerKwh": "feed_in_eur_per_kwh",
    "gridFeeEurPerKwh": "grid_fee_eur_per_kwh",
    "communityPriceEurPerKwh": "community_price_eur_per_kwh",
}


def _tenant(request: Request) -> str:
    tenant = request.headers.get("ngsild-tenant", "").strip()
    if tenant and (len(tenant) > 128 or not all(c.isalnum() or c in "-_.:/" for c in tenant)):
        raise LedgerInputError(f"NGSILD-Tenant {tenant!r} is not a valid tenant name")
    return tenant


# --------------------------------------------------------------------------------------------------
# DVPP
# --------------------------------------------------------------------------------------------------


@dvpp_router.get("/offers", summary="Flexibility offers in the community's log")
def get_offers(request: Request, member: str | None = None) -> Response:
    return json_response({"offers": _node(request).offers(member=member)})


@dvpp_router.post("/offers", summary="Post a flexibility offer", status_code=201)
async def post_offer(request: Request) -> Response:
    """Body: ``{member, device, direction, windowStart, windowEnd, powerKw, priceEurPerKwh, offerId?}``
    (signed by this node for the member), or ``{"record": <flex_offer envelope signed by the
    member's node>}``."""
    node = _node(request)
    body = await _body(request)
    tenant = _tenant(request)
    if "record" in body:
        with _input_errors():
            signed = SignedRecord.from_json(body["record"])
            index, record = await run_in_threadpool(lambda: node.post_offer(signed=signed, tenant=tenant))
    else:
        allowed = {
            "member",
            "device",
            "direction",
            "windowStart",
            "windowEnd",
            "powerKw",
            "priceEurPerKwh",
            "offerId",
        }
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise LedgerInputError(
                f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}"
            )
        missing = sorted(allowed - {"offerId"} - set(body))
        if missing:
            raise LedgerInputError(f"the offer has no {', '.join(missing)}")
        with _input_errors():
            index, record = await run_in_threadpool(
                lambda: node.post_offer(
                    member=body["member"],
                    device=body["device"],
                    direction=body["direction"],
                    window_start=body["windowStart"],
                    window_end=body["windowEnd"],
                    power_kw=body["powerKw"],
                    price_eur_per_kwh=body["priceEurPerKwh"],
                    offer_id=body.get("offerId"),
                    tenant=tenant,
                )
            )
    offer = next(o for o in node.offers(member=str(record.body["member"])) if o["index"] == index)
    return json_response({"index": index, "offer": offer, "record": record.to_json()}, status=201)


@dvpp_router.get("/activations", summary="Activations of offers")
def get_activations(request: Request, member: str | None = None) -> Response:
    return json_response({"activations": _node(request).activations(member=member)})


@dvpp_router.post("/activations", summary="Select offers for a need and activate them", status_code=201)
async def post_activations(request: Request) -> Response:
    """Body: ``{start, end, direction, powerKw, maxPriceEurPerKwh?, needId?}``. Offers are selected
    by the node's selector (merit order by default) and their activations recorded."""
    node = _node(request)
    need = parse_need(await _body(request))
    with _input_errors():
        result = await run_in_threadpool(node.activate, need)
    return json_response(result, status=201)


@dvpp_router.post("/activations/{activation_id}/settlement", summary="Settle an activation", status_code=201)
async def post_activation_settlement(request: Request, activation_id: str) -> Response:
    """Body: ``{"deliveredKwh": <metered energy shifted>}``; the member is paid for what was both
    scheduled and delivered."""
    node = _node(request)
    body = await _body(request)
    if "deliveredKwh" not in body:
        raise LedgerInputError("the settlement needs deliveredKwh")
    with _input_errors():
        result = await run_in_threadpool(node.settle_activation, activation_id, body["deliveredKwh"])
    return json_response(result, status=201)


@dvpp_router.get("/members/{member_id}/statement", summary="A member's DVPP statement")
def get_statement(request: Request, member_id: str) -> Response:
    """What the member offered, what was activated and what it earned, with the record indices to
    ask proofs for."""
    return json_response(_node(request).statement(member_id))


# --------------------------------------------------------------------------------------------------
# Installation
# --------------------------------------------------------------------------------------------------


def install(app: FastAPI, *, node: LedgerNode | None = None, **overrides: Any) -> LedgerNode:
    """Open the node's ledger (creating its key on first start) and mount the ledger and DVPP routes.

    Parameters
    ----------
    app : FastAPI
        The app of :func:`bright.api.app.create_app`.
    node : LedgerNode, optional
        An open ledger (tests); otherwise opened from ``app.state.settings`` on the app's twin.
    **overrides
        Fields of :class:`bright.services.ledger.LedgerConfig` (``data_dir``, ``peers``...).

    Returns
    -------
    LedgerNode
        Also stored on ``app.state.ledger``; its identity is published in the twin.
    """
    if node is None:
        node = LedgerNode.open(app.state.settings, twin=app.state.twin, **overrides)
    node.publish_identity()
    app.state.ledger = node
    app.include_router(ledger_router)
    app.include_router(dvpp_router)

    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        try:
            async with previous(a) as state:
                yield state
        finally:
            node.close()

    app.router.lifespan_context = lifespan
    return node
