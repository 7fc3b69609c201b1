"""The node's @context store behind ``/jsonldContexts`` (hosted and cached contexts)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Engine, delete, select, update

from bright.twin.context import is_core_context_url
from bright.twin.entities import now_iso
from bright.twin.errors import BadRequestData, OperationNotSupported, ResourceNotFound
from bright.twin.schema import jsonld_contexts


class ContextStore:
    """Hosted @contexts (added with POST) and cached ones (remote URLs used by requests).

    Parameters
    ----------
    engine
        The node's database.
    base_url
        Public base URL of the node: hosted contexts are served at
        ``{base_url}/ngsi-ld/v1/jsonldContexts/{id}``.
    """

    def __init__(self, engine: Engine, base_url: str = "http://127.0.0.1:8000") -> None:
        self.engine = engine
        self.base_url = base_url.rstrip("/")

    def _url(self, cid: str) -> str:
        return f"{self.base_url}/ngsi-ld/v1/jsonldContexts/{cid}"

    def lookup(self, url: str) -> Any | None:
        """Body of a stored context by URL (used by the resolver), counting the use."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(jsonld_contexts.c.id, jsonld_contexts.c.body).where(jsonld_contexts.c.url == url)
            ).first()
            if row is None:
                return None
            conn.execute(
                update(jsonld_contexts)
                .where(jsonld_contexts.c.id == row[0])
                .values(usage_count=jsonld_contexts.c.usage_count + 1, last_usage=now_iso())
            )
        return json.loads(row[1])

    def add(self, body: dict[str, Any]) -> str:
        """Host a context document; returns its URL."""
        cid = uuid.uuid4().hex
        url = self._url(cid)
        with self.engine.begin() as conn:
            conn.execute(
                jsonld_contexts.insert().values(
                    id=cid, url=url, kind="Hosted", created_at=now_iso(), usage_count=0, body=json.dumps(body)
                )
            )
        return url

    def _row(self, context_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                select(jsonld_contexts).where(
                    (jsonld_contexts.c.id == context_id) | (jsonld_contexts.c.url == context_id)
                )
            ).first()

    def get(self, context_id: str, *, details: bool = False) -> Any:
        if is_core_context_url(context_id):
            from bright.twin.context import core_context_document

            return core_context_document()
        row = self._row(context_id)
        if row is None:
            raise ResourceNotFound(f"no @context {context_id!r} on this node")
        if details:
            return self._details(row)
        return json.loads(row.body)

    def _details(self, row: Any) -> dict[str, Any]:
        out = {
            "URL": row.url,
            "localId": row.id,
            "kind": row.kind,
            "createdAt": row.created_at,
        }
        if row.kind != "Hosted":
            out["lastUsage"] = row.last_usage
            out["numberOfHits"] = row.usage_count
        return out

    def list(self, *, details: bool = False, kind: str | None = None) -> list[Any]:
        stmt = select(jsonld_contexts)
        if kind:
            stmt = stmt.where(jsonld_contexts.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(jsonld_contexts.c.created_at)).all()
        return [self._details(r) if details else r.url for r in rows]

    def cache(self, url: str, body: Any) -> None:
        """Remember a remote context fetched for a request (kind Cached)."""
        with self.engine.begin() as conn:
            exists = conn.execute(select(jsonld_contexts.c.id).where(jsonld_contexts.c.url == url)).first()
            if exists is None:
                conn.execute(
                    jsonld_contexts.insert().values(
                        id=uuid.uuid4().hex,
                        url=url,
                        kind="Cached",
                        created_at=now_iso(),
                        usage_count=1,
                        last_usage=now_iso(),
                        body=json.dumps(body),
                    )
                )

    def delete(self, context_id: str, *, reload: bool = False) -> None:
        if is_core_context_url(context_id):
            raise BadRequestData("the core @context cannot be deleted")
        row = self._row(context_id)
        if row is None:
            raise ResourceNotFound(f"no @context {context_id!r} on this node")
        if reload:
            if row.kind == "Hosted":
                raise BadRequestData("a hosted @context cannot be reloaded")
            raise OperationNotSupported(
                "reloading a cached @context needs network access, disabled on this node"
            )
        with self.engine.begin() as conn:
            conn.execute(delete(jsonld_contexts).where(jsonld_contexts.c.id == row.id))
