"""Distributed NGSI-LD operations: a city/network node answering with its community nodes' data.

A node with context source registrations (:mod:`bright.network.registrations`) forwards the
requests those registrations cover to the registered nodes, in parallel, each under its own
timeout, and merges what comes back (clause 4.3.6):

- **inclusive**: the source holds (part of) the entity besides the local node; query results are
  merged attribute by attribute, writes go to both.
- **exclusive**: the registered attributes of the registered entities live *only* at the source:
  writes of those attributes go there and not to the local store; queries fetch them there.
- **redirect**: the registered entities live only at the source(s): everything is forwarded.
- **auxiliary**: the source may complete an entity, never overrides local or inclusive data and
  never receives writes.

Entities with the same id are merged: for each attribute and datasetId the instance with the
latest ``observedAt`` (else ``modifiedAt``) wins, auxiliary instances only fill gaps.

Loops are cut with the HTTP ``Via`` header: every forwarded request carries this node's id;
a request whose ``Via`` already names this node is refused (508 LoopDetected). A source that does
not answer in time, or answers with an error, does not fail a query: the answer is partial and
says which source is missing in an ``NGSILD-Warning`` header (clause 6.3.17).

A community node can keep itself registered at a parent (city) node: :class:`ParentRegistration`
creates a registration there for the entity types it holds and refreshes its ``expiresAt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import httpx

from bright.network.registrations import Registration, RegistrationManager
from bright.network.signing import async_request_hooks
from bright.twin.entities import format_datetime

log = logging.getLogger("bright.network.federation")

NGSILD = "/ngsi-ld/v1"
WARNING_HEADER = "NGSILD-Warning"


@dataclass(frozen=True)
class FederationConfig:
    """How a node takes part in a network of nodes.

    Attributes
    ----------
    node_id
        This node's identifier in ``Via`` headers and in its registration at the parent.
    public_url
        Base URL other nodes reach this node at (``http://host:port``), registered at the parent.
    parent_url
        Base URL of the parent (city/network) node to register with, or None.
    parent_tenant
        Tenant of the registration at the parent ('' = default tenant).
    registration_types
        Entity types (IRIs) to register; the types the node currently holds when empty.
    refresh_s
        Seconds between refreshes of the registration at the parent; it expires after 3 of them.
    forward_timeout_s
        Default time a context source gets to answer, in seconds (``management.timeout`` of a
        registration, in ms, overrides it).
    notification_retries, notification_backoff_s, notification_timeout_s
        Notification delivery: extra attempts, first retry delay (s, doubled each retry), request
        timeout (s).
    """

    node_id: str = field(default_factory=lambda: f"bright-{uuid.uuid4().hex[:12]}")
    public_url: str | None = None
    parent_url: str | None = None
    parent_tenant: str = ""
    registration_types: tuple[str, ...] = ()
    refresh_s: float = 60.0
    forward_timeout_s: float = 1.5
    notification_retries: int = 2
    notification_backoff_s: float = 0.5
    notification_timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Any = None, **overrides: Any) -> FederationConfig:
        """Read the configuration from ``settings.extra`` and ``BRIGHT_*`` environment variables.

        ``BRIGHT_NODE_ID``, ``BRIGHT_PUBLIC_URL``, ``BRIGHT_PARENT_URL``, ``BRIGHT_PARENT_TENANT``,
        ``BRIGHT_REGISTRATION_REFRESH_S``, ``BRIGHT_FORWARD_TIMEOUT_S`` (settings.extra keys are the
        same names in lower case without the prefix: ``node_id``, ``public_url``...).
        """
        extra: Mapping[str, str] = getattr(settings, "extra", None) or {}

        def pick(name: str) -> str | None:
            return extra.get(name) or os.environ.get(f"BRIGHT_{name.upper()}") or None

        values: dict[str, Any] = {}
        node = pick("node_id")
        if node:
            values["node_id"] = node
        elif settings is not None and getattr(settings, "node_name", None):
            values["node_id"] = f"{settings.node_name}-{uuid.uuid4().hex[:8]}"
        for key in ("public_url", "parent_url", "parent_tenant"):
            v = pick(key)
            if v is not None:
                values[key] = v
        for key, env in (("refresh_s", "registration_refresh_s"), ("forward_timeout_s", "forward_timeout_s")):
            v = pick(env)
            if v is not None:
                values[key] = float(v)
        types = pick("registration_types")
        if types:
            values["registration_types"] = tuple(t.strip() for t in types.split(",") if t.strip())
        values.update(overrides)
        return cls(**values)


# --------------------------------------------------------------------------------------------------
# Via header
# --------------------------------------------------------------------------------------------------


def via_names(via: str | None) -> list[str]:
    """The received-by names in a ``Via`` header (``1.1 city-a, 1.1 district-b`` -> both names)."""
    if not via:
        return []
    out = []
    for hop in via.split(","):
        parts = hop.strip().split()
        if len(parts) >= 2:
            out.append(parts[1])
        elif parts:
            out.append(parts[0])
    return out


def loop_detected(via: str | None, node_id: str) -> bool:
    """True when this node already handled the request (its id is in ``Via``)."""
    return node_id in via_names(via)


def forwarded_via(via: str | None, node_id: str) -> str:
    """The ``Via`` header of a request this node forwards (RFC 9110 clause 7.6.3)."""
    hop = f"1.1 {node_id}"
    return f"{via}, {hop}" if via else hop


# --------------------------------------------------------------------------------------------------
# Query strings
# --------------------------------------------------------------------------------------------------


def query_items(raw: str) -> list[tuple[str, str]]:
    """Split a raw query string into (name, raw value) pairs, keeping order and encoding."""
    out = []
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out.append((unquote(name), value))
    return out


def build_query(items: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={v}" for k, v in items)


_SAFE_IN_QUERY = ":/,;=@!$'()*+"
_SAFE_IN_PATH = ":@!$&'()*+,;="


def forward_query(
    raw: str,
    *,
    drop: Iterable[str] = ("local",),
    drop_items: Iterable[tuple[str, str]] = (),
    extra: Sequence[tuple[str, str]] = (),
) -> str:
    """The query string a context source receives: the client's, minus ``drop``, plus ``extra``.

    The client's parameters keep their order; values are written in one canonical encoding
    (URI characters such as ``:`` and ``,`` left as they are, the rest percent-encoded), so a
    source sees ``id=urn:ngsi-ld:Vehicle:1`` however the client encoded it. ``drop_items`` removes
    exact name/value pairs (e.g. an option that only restates the default).
    """
    dropped = set(drop)
    gone = {(k, v) for k, v in drop_items}
    items = []
    for k, v in query_items(raw):
        value = unquote(v)
        if k in dropped or (k, value) in gone:
            continue
        items.append((k, quote(value, safe=_SAFE_IN_QUERY)))
    items += [(k, quote(v, safe=_SAFE_IN_QUERY)) for k, v in extra]
    return build_query(items)


def forward_path(raw_path: str) -> str:
    """The path a context source receives, in canonical form.

    Percent-encoding is normalised (entity ids appear as ``urn:ngsi-ld:...``); the collection
    resources (``/entities``, ``/entityOperations/{op}``) lose a trailing slash, as NGSI-LD names
    them; entity-scoped paths keep the client's form.
    """
    segments = [quote(unquote(s), safe=_SAFE_IN_PATH) for s in raw_path.split("/")]
    path = "/".join(segments)
    rest = path[len(NGSILD) :] if path.startswith(NGSILD) else path
    parts = [p for p in rest.split("/") if p]
    if path.endswith("/") and (parts == ["entities"] or (len(parts) == 2 and parts[0] == "entityOperations")):
        path = path.rstrip("/")
    return path


# --------------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------------


def _stamp(inst: Mapping[str, Any]) -> str:
    return str(inst.get("observedAt") or inst.get("modifiedAt") or "")


def merge_entities(sources: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Merge documents of one entity coming from several places.

    Parameters
    ----------
    sources
        ``(mode, doc)`` pairs in priority order: ``local`` first, then registrations' modes
        (``inclusive``, ``exclusive``, ``redirect``, ``auxiliary``). Documents are in stored
        (expanded) form.

    Returns
    -------
    dict
        One document: union of types and scopes; per attribute and datasetId, the instance with
        the latest ``observedAt``/``modifiedAt`` (the first one on ties); auxiliary instances only
        where no other source has the attribute.
    """
    items = list(sources)
    if not items:
        raise ValueError("merge_entities needs at least one document")
    primary = [(m, d) for m, d in items if m != "auxiliary"]
    aux = [(m, d) for m, d in items if m == "auxiliary"]
    first = (primary or aux)[0][1]
    out: dict[str, Any] = {k: v for k, v in first.items() if k != "attrs"}
    out["type"] = list(dict.fromkeys(t for _, d in items for t in d.get("type", [])))
    scopes = [s for _, d in items for s in d.get("scope") or []]
    if scopes:
        out["scope"] = list(dict.fromkeys(scopes))
    attrs: dict[str, dict[Any, dict[str, Any]]] = {}
    for _mode, doc in primary:
        for iri, insts in doc.get("attrs", {}).items():
            slot = attrs.setdefault(iri, {})
            for inst in insts:
                ds = inst.get("datasetId")
                old = slot.get(ds)
                if old is None or _stamp(inst) > _stamp(old):
                    slot[ds] = inst
    for _mode, doc in aux:
        for iri, insts in doc.get("attrs", {}).items():
            if iri in attrs:
                continue
            attrs[iri] = {inst.get("datasetId"): inst for inst in insts}
    out["attrs"] = {iri: list(slot.values()) for iri, slot in attrs.items()}
    stamps = [str(d["modifiedAt"]) for _, d in items if d.get("modifiedAt")]
    if stamps:
        out["modifiedAt"] = max(stamps)
    return out


def merge_results(
    local: Iterable[dict[str, Any]], remote: Iterable[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Merge query results: local documents first (in their order), then entities only remote."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for doc in local:
        groups.setdefault(doc["id"], []).append(("local", doc))
    for mode, doc in remote:
        groups.setdefault(doc["id"], []).append((mode, doc))
    return [merge_entities(g) if len(g) > 1 else g[0][1] for g in groups.values()]


# --------------------------------------------------------------------------------------------------
# Forwarding
# --------------------------------------------------------------------------------------------------


@dataclass
class Forward:
    """One request to a context source."""

    registration: Registration
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None
    entity_ids: tuple[str, ...] = ()


@dataclass
class ForwardResult:
    """What a context source answered (or why it did not)."""

    forward: Forward
    status: int | None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.status != 207

    def problem(self) -> dict[str, Any]:
        """A ProblemDetails for a failed forward, naming the source."""
        reg = self.forward.registration
        if self.status is None:
            return {
                "type": "https://uri.etsi.org/ngsi-ld/errors/GatewayTimeout"
                if self.error and "Timeout" in self.error
                else "https://uri.etsi.org/ngsi-ld/errors/BadGateway",
                "title": "A context source did not answer",
                "status": 504 if self.error and "Timeout" in self.error else 502,
                "detail": f"{reg.endpoint} (registration {reg.id}) did not answer: {self.error}",
            }
        if isinstance(self.body, dict) and "type" in self.body and "status" in self.body:
            return dict(self.body)
        return {
            "type": "https://uri.etsi.org/ngsi-ld/errors/InternalError"
            if self.status >= 500
            else (
                "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
                if self.status == 404
                else "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"
                if self.status == 409
                else "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
            ),
            "title": "A context source refused the operation",
            "status": self.status,
            "detail": f"{reg.endpoint} (registration {reg.id}) answered HTTP {self.status}",
        }

    def warning(self) -> str:
        reg = self.forward.registration
        why = self.error or f"HTTP {self.status}"
        return f'199 - "context source {reg.endpoint} (registration {reg.id}) did not answer: {why}"'


class Federation:
    """Forwards requests to registered context sources and keeps the parent registration alive.

    Parameters
    ----------
    service
        The twin service of this node.
    registrations
        The node's registrations.
    config
        Node identity, parent node and timeouts.
    """

    def __init__(self, service: Any, registrations: RegistrationManager, config: FederationConfig) -> None:
        self.service = service
        self.registrations = registrations
        self.config = config
        self._client: httpx.AsyncClient | None = None
        self.parent: ParentRegistration | None = None
        if config.parent_url and config.public_url:
            self.parent = ParentRegistration(service, config)

    @property
    def node_id(self) -> str:
        return self.config.node_id

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
                event_hooks=async_request_hooks(self.service),  # signed (RFC 9421) when a key is attached
            )
        if self.parent is not None:
            await self.parent.start()

    async def stop(self) -> None:
        if self.parent is not None:
            await self.parent.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def targets(
        self,
        tenant: str,
        operation: str,
        *,
        entity_id: str | None = None,
        types: Iterable[str] = (),
        alternatives: Iterable[str] = (),
    ) -> list[tuple[Registration, str]]:
        """Registrations that cover an entity (or type) for an operation, with the operation to use.

        ``alternatives`` are operations the request can be turned into when a registration does
        not support ``operation`` itself (e.g. a retrieval answered with ``queryEntity``).
        """
        types = list(types)
        out = []
        for reg in self.registrations.live(tenant):
            if not reg.covers(entity_id, types):
                continue
            if reg.mode == "exclusive" and reg.attributes(entity_id, types) is None:
                # An exclusive registration claims named attributes; without any it claims nothing.
                continue
            for op in (operation, *alternatives):
                if reg.supports(op):
                    out.append((reg, op))
                    break
        return out

    def timeout_of(self, reg: Registration) -> float:
        return reg.timeout_s or self.config.forward_timeout_s

    async def send(self, forwards: Sequence[Forward]) -> list[ForwardResult]:
        """Send requests to context sources in parallel, each under its registration's timeout."""
        if not forwards:
            return []
        client = self._client
        own = client is None
        if client is None:
            client = httpx.AsyncClient(event_hooks=async_request_hooks(self.service))
        try:
            return list(await asyncio.gather(*(self._one(client, f) for f in forwards)))
        finally:
            if own:
                await client.aclose()

    async def _one(self, client: httpx.AsyncClient, fwd: Forward) -> ForwardResult:
        start = time.perf_counter()
        timeout = self.timeout_of(fwd.registration)
        try:
            r = await asyncio.wait_for(
                client.request(fwd.method, fwd.url, headers=fwd.headers, content=fwd.body, timeout=timeout),
                timeout=timeout + 0.05,
            )
        except (TimeoutError, httpx.TimeoutException) as exc:
            log.debug("forwarded %s %s -> timeout", fwd.method, fwd.url)
            return ForwardResult(
                fwd,
                None,
                error=f"Timeout after {timeout:g} s ({type(exc).__name__})",
                elapsed_s=time.perf_counter() - start,
            )
        except httpx.HTTPError as exc:
            return ForwardResult(
                fwd, None, error=f"{type(exc).__name__}: {exc}", elapsed_s=time.perf_counter() - start
            )
        log.debug("forwarded %s %s -> %s", fwd.method, fwd.url, r.status_code)
        body: Any = None
        if r.content:
            try:
                body = r.json()
            except ValueError:
                body = r.text
        return ForwardResult(fwd, r.status_code, body, dict(r.headers), elapsed_s=time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# Reading open entities from every registered node
# --------------------------------------------------------------------------------------------------


@dataclass
class SourceEntities:
    """What one registered node answered to a query of open entities (or why it did not).

    Attributes
    ----------
    registration
        The registration the node was found through.
    entities
        Normalized entities it returned (compacted with the requested @context).
    error
        Why it did not answer (timeout, refused connection, HTTP status), None when it did.
    elapsed_s
        Time spent on this node, in seconds (all pages).
    """

    registration: Registration
    entities: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def node(self) -> str:
        """The node's name: its registration's ``registrationName``, else the registration id."""
        return str(self.registration.doc.get("registrationName") or self.registration.id)

    def warning(self) -> str:
        """An ``NGSILD-Warning`` value naming the node that did not answer."""
        reg = self.registration
        return f'199 - "context source {reg.endpoint} (registration {reg.id}) did not answer: {self.error}"'


def context_link(url: str) -> str:
    """A ``Link`` header value carrying a JSON-LD @context URL (clause 6.3.5)."""
    return f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


async def query_sources(
    fed: Federation,
    tenant: str,
    types: Mapping[str, str],
    *,
    context_url: str,
    attrs: Sequence[str] = (),
    q: str | None = None,
    page: int = 1000,
    max_pages: int = 50,
) -> list[SourceEntities]:
    """Ask every node registered for some types for its entities of those types, in parallel.

    One node per endpoint (and tenant) is asked, once, even if it has several registrations or
    is registered for several of the types. Each node gets its registration's timeout per page;
    pages of ``page`` entities are fetched until a page comes back short (at most
    ``max_pages``). The request carries ``Via`` with this node's id (a node that forwards it
    back here is refused: no loop) and the @context in a ``Link`` header, so the answer comes
    compacted with that @context.

    Parameters
    ----------
    fed
        This node's federation (its registrations, client and timeouts).
    tenant
        Tenant whose registrations are used.
    types
        The entity types: term of ``context_url`` -> IRI (the IRIs match registrations).
    context_url
        The @context of the query and of the answer (e.g. the BRIGHT context every node bundles).
    attrs
        Only these attributes (terms of ``context_url``) are asked for; all when empty.
    q
        An NGSI-LD ``q`` filter (terms of ``context_url``).

    Returns
    -------
    list of SourceEntities
        One per node, in registration order; failed nodes carry ``error`` and no entities.
    """
    seen: set[tuple[str, str]] = set()
    regs: list[Registration] = []
    for reg, _op in fed.targets(tenant, "queryEntity", types=list(types.values())):
        key = (reg.endpoint, str(reg.doc.get("tenant") or ""))
        if key not in seen:
            seen.add(key)
            regs.append(reg)
    if not regs:
        return []
    params: list[tuple[str, str]] = [("type", ",".join(types)), ("limit", str(page))]
    if attrs:
        params.append(("attrs", ",".join(attrs)))
    if q:
        params.append(("q", q))

    def forward(reg: Registration, offset: int) -> Forward:
        headers = {
            "Accept": "application/json",
            "Link": context_link(context_url),
            "Via": forwarded_via(None, fed.node_id),
        }
        if reg.doc.get("tenant"):
            headers["NGSILD-Tenant"] = str(reg.doc["tenant"])
        query = "&".join(
            f"{k}={quote(v, safe=_SAFE_IN_QUERY)}" for k, v in [*params, ("offset", str(offset))]
        )
        return Forward(reg, "GET", f"{reg.endpoint}{NGSILD}/entities?{query}", headers)

    async def one(reg: Registration) -> SourceEntities:
        out = SourceEntities(reg)
        offset = 0
        for _ in range(max_pages):
            (res,) = await fed.send([forward(reg, offset)])
            out.elapsed_s += res.elapsed_s
            if not res.ok or not isinstance(res.body, list):
                out.entities = []
                out.error = res.error or (
                    f"HTTP {res.status}" if not res.ok else "the answer is not a list of entities"
                )
                return out
            out.entities += [e for e in res.body if isinstance(e, dict) and "id" in e]
            offset += len(res.body)
            if len(res.body) < page:
                break
        return out

    return list(await asyncio.gather(*(one(r) for r in regs)))


# --------------------------------------------------------------------------------------------------
# Registration at a parent node
# --------------------------------------------------------------------------------------------------


class ParentRegistration:
    """Keeps this node registered as an inclusive context source of its parent node.

    The registration (id ``urn:ngsi-ld:ContextSourceRegistration:<node_id>``) lists the entity
    types this node holds (or ``config.registration_types``), points at ``config.public_url`` and
    expires after three refresh periods, so a node that disappears drops out of the parent's
    answers; on a clean stop the registration is deleted.
    """

    def __init__(self, service: Any, config: FederationConfig) -> None:
        self.service = service
        self.config = config
        self.registration_id = f"urn:ngsi-ld:ContextSourceRegistration:{config.node_id}"
        # Delete the registration at the parent on a clean stop (False keeps it, as a crash would).
        self.unregister_on_stop = True
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def body(self, now: datetime | None = None) -> dict[str, Any] | None:
        """The registration document, or None while the node holds no entity type to offer."""
        types = list(self.config.registration_types)
        if not types:
            tenant = ""
            types = sorted(self.service.store.types(tenant))
        if not types:
            return None
        now = now or datetime.now(UTC)
        expires = now + timedelta(seconds=3 * self.config.refresh_s)
        assert self.config.public_url is not None
        return {
            "id": self.registration_id,
            "type": "ContextSourceRegistration",
            "registrationName": self.config.node_id,
            "information": [{"entities": [{"type": t} for t in types]}],
            "endpoint": self.config.public_url.rstrip("/"),
            "mode": "inclusive",
            "operations": ["federationOps"],
            "expiresAt": format_datetime(expires),
            "management": {"timeout": int(self.config.forward_timeout_s * 1000)},
        }

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.config.parent_tenant:
            h["NGSILD-Tenant"] = self.config.parent_tenant
        return h

    async def refresh(self, client: httpx.AsyncClient) -> bool:
        """Create or update the registration at the parent; True when the parent accepted it."""
        body = self.body()
        if body is None:
            return False
        assert self.config.parent_url is not None
        base = self.config.parent_url.rstrip("/") + NGSILD + "/csourceRegistrations"
        fragment = {k: v for k, v in body.items() if k not in ("id", "type")}
        try:
            r = await client.patch(
                f"{base}/{self.registration_id}", json=fragment, headers=self._headers(), timeout=5.0
            )
            if r.status_code == 404:
                r = await client.post(base, json=body, headers=self._headers(), timeout=5.0)
        except httpx.HTTPError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("registration at parent %s failed: %s", self.config.parent_url, self.last_error)
            return False
        if r.status_code in (201, 204):
            self.last_ok = time.monotonic()
            self.last_error = None
            return True
        self.last_error = f"HTTP {r.status_code}: {r.text[:200]}"
        log.warning("registration at parent %s refused: %s", self.config.parent_url, self.last_error)
        return False

    async def unregister(self, client: httpx.AsyncClient) -> None:
        assert self.config.parent_url is not None
        url = f"{self.config.parent_url.rstrip('/')}{NGSILD}/csourceRegistrations/{self.registration_id}"
        try:
            await client.delete(url, headers=self._headers(), timeout=2.0)
        except httpx.HTTPError as exc:
            log.info("could not unregister from parent %s: %s", self.config.parent_url, exc)

    async def _run(self) -> None:
        async with httpx.AsyncClient(event_hooks=async_request_hooks(self.service)) as client:
            while not self._stop.is_set():
                ok = await self.refresh(client)
                # Retry soon after a failure (parent restarting, no entity yet), else every refresh_s.
                delay = self.config.refresh_s if ok else min(5.0, self.config.refresh_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
            if self.last_ok is not None and self.unregister_on_stop:
                await self.unregister(client)

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="bright-parent-registration")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None


__all__ = [
    "Federation",
    "FederationConfig",
    "Forward",
    "ForwardResult",
    "ParentRegistration",
    "SourceEntities",
    "build_query",
    "context_link",
    "forward_path",
    "forward_query",
    "forwarded_via",
    "loop_detected",
    "merge_entities",
    "merge_results",
    "query_items",
    "query_sources",
    "via_names",
]
