"""HTTP plumbing shared by the APIs: media types, Link headers, bodies, ProblemDetails responses."""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from bright.twin.errors import (
    BadRequestData,
    InvalidRequest,
    NgsiLdError,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)

JSON = "application/json"
JSON_LD = "application/ld+json"
GEO_JSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
LINK_REL = "http://www.w3.org/ns/json-ld#context"
_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


def problem_response(err: NgsiLdError) -> Response:
    return Response(
        content=dumps(err.problem()),
        status_code=err.status,
        media_type="application/json" if err.status != 500 else "application/problem+json",
    )


def context_link(url: str) -> str:
    return f'<{url}>; rel="{LINK_REL}"; type="{JSON_LD}"'


def link_context(request: Request) -> str | None:
    """The @context URL of the request's Link header (rel json-ld#context), if any.

    Raises
    ------
    BadRequestData
        Several context links, or a malformed one.
    """
    header = request.headers.get("link")
    if not header:
        return None
    found: list[str] = []
    for m in _LINK_RE.finditer(header):
        url, params = m.group(1), m.group(2)
        if LINK_REL in params:
            found.append(url.strip())
    if len(found) > 1:
        raise BadRequestData("more than one JSON-LD @context Link header")
    if found and not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", found[0]):
        raise BadRequestData(f"the @context Link {found[0]!r} is not an absolute URL")
    return found[0] if found else None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def check_content_type(request: Request, *, patch: bool = False) -> str:
    """Accept JSON and JSON-LD bodies (and merge-patch for PATCH), else 415."""
    mt = media_type(request)
    allowed = {JSON, JSON_LD} | ({MERGE_PATCH} if patch else set())
    if mt not in allowed:
        raise UnsupportedMediaType(
            f"Content-Type {mt or '(none)'!r} is not supported; use {', '.join(sorted(allowed))}"
        )
    return mt


def accept(request: Request, *, geo: bool = True) -> str:
    """Negotiate the response media type from the Accept header (JSON, JSON-LD, GeoJSON)."""
    header = request.headers.get("accept", "")
    if not header.strip():
        return JSON
    offers = [JSON, JSON_LD] + ([GEO_JSON] if geo else [])
    best, best_q = None, -1.0
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        mt = bits[0].lower()
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        cands = offers if mt in ("*/*", "application/*") else [mt] if mt in offers else []
        for c in cands:
            if q > best_q or (q == best_q and best in (None,) and c == JSON):
                best, best_q = c, q
        if mt in ("*/*", "application/*") and q >= best_q and q > 0:
            best, best_q = JSON, q
    if best is None or best_q <= 0:
        raise NotAcceptable(
            f"none of the accepted media types ({header}) can be produced; use {', '.join(offers)}"
        )
    return best


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body as JSON, with clear errors for empty, oversized or malformed bodies."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {max_bytes} bytes")
    body = await request.body()
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body of {len(body)} bytes exceeds the limit of {max_bytes} bytes")
    if not body.strip():
        raise InvalidRequest("the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None


def json_response(
    body: Any,
    *,
    status: int = 200,
    media: str = JSON,
    context_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON/JSON-LD response; for JSON (not LD) the @context goes in a Link header."""
    h = dict(headers or {})
    if media == JSON and context_url:
        h["Link"] = context_link(context_url)
    return Response(content=dumps(body), status_code=status, media_type=media, headers=h)
