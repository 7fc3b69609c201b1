"""Hosting many communities on one node: NGSI-LD tenants with quotas, managers, backup and restore.

A hosted community is an NGSI-LD tenant (the ``NGSILD-Tenant`` header): every table of the node
keys its rows by tenant, so two tenants never see each other's entities, series, history,
subscriptions or registrations. This module adds what a host needs on top:

- the **registry** (``hosted_tenants``, migration step 161): name, title, community, manager
  account, quotas (entities and stored series points) and creation date; step 162 registers the
  tenants an older node already holds, so an upgrade keeps every tenant (and gives it the default
  quotas);
- **quotas** checked before writes (:meth:`TenantRegistry.check_write`, called by the API's
  quota middleware): a tenant at its entity quota
  gets ``403`` on requests that create entities, one at its series-point quota ``413`` on every
  write; both as ProblemDetails of type ``https://w3id.org/bright/errors/TenantQuotaExceeded``;
  with ``BRIGHT_STRICT_TENANTS=1`` writes to a tenant that is not registered get ``403``;
- **backup and restore of one tenant** (:func:`backup_tenant`, :func:`restore_tenant`): a ZIP whose
  layout is documented in docs/onboarding.md ("Backup format");
- **deletion** of one tenant and all its rows (:meth:`TenantRegistry.delete`);
- the **registration at a parent node** of each tenant as its own context source
  (:func:`registration_body`, :func:`register_at_parent`): the NGSI-LD ``tenant`` member of the
  registration makes the parent forward with that tenant.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
)

from bright.twin import migrations
from bright.twin.errors import AlreadyExists, BadRequestData, NgsiLdError, ResourceNotFound
from bright.twin.schema import entities

__all__ = [
    "BACKUP_FORMAT",
    "DEFAULT_MAX_ENTITIES",
    "DEFAULT_MAX_SERIES_POINTS",
    "HostedTenant",
    "TenantQuotaExceeded",
    "TenantRegistry",
    "TenantUsage",
    "backup_tenant",
    "check_tenant_name",
    "register_at_parent",
    "registration_body",
    "restore_tenant",
]

#: Default quotas of a hosted tenant: 50 members with their meters, buildings and assets take about
#: 300 entities; a year of quarter-hours of offtake and injection per member is 3.5 million points.
DEFAULT_MAX_ENTITIES = 20_000
DEFAULT_MAX_SERIES_POINTS = 50_000_000
BACKUP_FORMAT = "bright-tenant-backup"
BACKUP_VERSION = 1
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")

metadata = MetaData()
tenants_table = Table(
    "hosted_tenants",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("title", Text, nullable=False),
    Column("community_id", Text, nullable=True),
    Column("manager", String(64), nullable=True),
    Column("max_entities", BigInteger, nullable=False),
    Column("max_series_points", BigInteger, nullable=False),
    Column("created_at", String(32), nullable=False),
)


def _create(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _adopt_existing(conn: Connection) -> None:
    """Register the tenants a node held before the registry existed (upgrade path)."""
    names = {r[0] for r in conn.execute(select(entities.c.tenant).distinct()) if r[0]}
    known = {r[0] for r in conn.execute(select(tenants_table.c.name))}
    now = _iso(datetime.now(UTC))
    for name in sorted(names - known):
        conn.execute(
            insert(tenants_table).values(
                name=name,
                title=name,
                max_entities=DEFAULT_MAX_ENTITIES,
                max_series_points=DEFAULT_MAX_SERIES_POINTS,
                created_at=now,
            )
        )


migrations.register(161, "hosting: registry of hosted tenants with quotas", _create)
migrations.register(162, "hosting: register the tenants already held", _adopt_existing)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_tenant_name(name: str) -> str:
    """A tenant name as the NGSI-LD API accepts it (1-128 of letters, digits, ``-_.:/``).

    Raises
    ------
    BadRequestData
        Naming the rule.
    """
    if not isinstance(name, str) or not _TENANT_RE.match(name):
        raise BadRequestData(
            f"tenant name {name!r} must be 1-128 letters, digits or -_.:/ and start with a letter or digit"
        )
    return name


class TenantQuotaExceeded(NgsiLdError):
    """A hosted tenant reached a quota (403: entities; 413: series points) or is not hosted (403)."""

    kind, status, title = "TenantQuotaExceeded", 403, "The tenant's quota does not allow this write"

    @property
    def type_uri(self) -> str:
        return "https://w3id.org/bright/errors/TenantQuotaExceeded"


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant stores: entities (not deleted) and series points (instants stored, NaN included)."""

    entities: int
    series_points: int


@dataclass(frozen=True)
class HostedTenant:
    """A registry entry.

    Attributes
    ----------
    name : str
        The NGSI-LD tenant.
    title : str
        Display name.
    community_id : str or None
        The community it hosts.
    manager : str or None
        User name of its manager account.
    max_entities, max_series_points : int
        Quotas.
    created_at : str
        RFC 3339 UTC.
    """

    name: str
    title: str
    community_id: str | None
    manager: str | None
    max_entities: int
    max_series_points: int
    created_at: str

    def to_json(self, usage: TenantUsage | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "communityId": self.community_id,
            "manager": self.manager,
            "quota": {"entities": self.max_entities, "seriesPoints": self.max_series_points},
            "createdAt": self.created_at,
        }
        if usage is not None:
            out["usage"] = {"entities": usage.entities, "seriesPoints": usage.series_points}
        return out


def _strict_default() -> bool:
    return os.environ.get("BRIGHT_STRICT_TENANTS", "").strip().lower() in {"1", "true", "yes", "on"}


class TenantRegistry:
    """The hosted tenants of one node.

    Parameters
    ----------
    engine : Engine
        The node's database.
    strict : bool, optional
        Refuse writes to tenants that are not registered (default ``BRIGHT_STRICT_TENANTS``).
    """

    def __init__(self, engine: Engine, *, strict: bool | None = None) -> None:
        self.engine = engine
        self.strict = _strict_default() if strict is None else strict
        migrations.migrate(engine)
        self._cache: dict[str, tuple[float, HostedTenant | None, TenantUsage | None]] = {}

    @staticmethod
    def _row(r: Any) -> HostedTenant:
        return HostedTenant(
            r.name,
            r.title,
            r.community_id,
            r.manager,
            int(r.max_entities),
            int(r.max_series_points),
            r.created_at,
        )

    def create(
        self,
        name: str,
        *,
        title: str | None = None,
        community_id: str | None = None,
        manager: str | None = None,
        max_entities: int = DEFAULT_MAX_ENTITIES,
        max_series_points: int = DEFAULT_MAX_SERIES_POINTS,
    ) -> HostedTenant:
        """Register a tenant (its data appears with its first write).

        Raises
        ------
        AlreadyExists
            The name is registered.
        BadRequestData
            A bad name or a quota < 1.
        """
        check_tenant_name(name)
        if max_entities < 1 or max_series_points < 1:
            raise BadRequestData("quotas must be >= 1")
        row = {
            "name": name,
            "title": title or name,
            "community_id": community_id,
            "manager": manager,
            "max_entities": int(max_entities),
            "max_series_points": int(max_series_points),
            "created_at": _iso(datetime.now(UTC)),
        }
        with self.engine.begin() as conn:
            if conn.execute(select(tenants_table.c.name).where(tenants_table.c.name == name)).first():
                raise AlreadyExists(f"tenant {name!r} already exists")
            conn.execute(insert(tenants_table).values(**row))
        self._cache.pop(name, None)
        return HostedTenant(
            name,
            str(row["title"]),
            community_id,
            manager,
            int(max_entities),
            int(max_series_points),
            str(row["created_at"]),
        )

    def update(self, name: str, **values: Any) -> HostedTenant:
        """Change title, community, manager or quotas of a registered tenant."""
        allowed = {"title", "community_id", "manager", "max_entities", "max_series_points"}
        unknown = set(values) - allowed
        if unknown:
            raise BadRequestData(f"cannot change {sorted(unknown)} of a tenant")
        self.get(name)
        with self.engine.begin() as conn:
            conn.execute(tenants_table.update().where(tenants_table.c.name == name).values(**values))
        self._cache.pop(name, None)
        return self.get(name)

    def find(self, name: str) -> HostedTenant | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(tenants_table).where(tenants_table.c.name == name)).first()
        return None if r is None else self._row(r)

    def get(self, name: str) -> HostedTenant:
        """The registered tenant; ResourceNotFound otherwise."""
        found = self.find(name)
        if found is None:
            raise ResourceNotFound(f"tenant {name!r} is not hosted on this node")
        return found

    def of_manager(self, username: str) -> HostedTenant | None:
        """The tenant whose manager account is ``username``, if any."""
        with self.engine.connect() as conn:
            r = conn.execute(select(tenants_table).where(tenants_table.c.manager == username)).first()
        return None if r is None else self._row(r)

    def list(self) -> list[HostedTenant]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tenants_table).order_by(tenants_table.c.name)).all()
        return [self._row(r) for r in rows]

    def usage(self, name: str) -> TenantUsage:
        """Entities and stored series points of a tenant (two indexed aggregate queries)."""
        from bright.twin.series import chunks_table, series_table

        with self.engine.connect() as conn:
            n_ent = conn.execute(
                select(func.count())
                .select_from(entities)
                .where(entities.c.tenant == name, entities.c.deleted_at.is_(None))
            ).scalar_one()
            points = conn.execute(
                select(func.coalesce(func.sum(chunks_table.c.n), 0))
                .select_from(chunks_table.join(series_table, chunks_table.c.series_id == series_table.c.id))
                .where(series_table.c.tenant == name)
            ).scalar_one()
        return TenantUsage(int(n_ent), int(points))

    def _cached(self, name: str, max_age_s: float = 2.0) -> tuple[HostedTenant | None, TenantUsage | None]:
        hit = self._cache.get(name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < max_age_s:
            return hit[1], hit[2]
        tenant = self.find(name)
        usage = self.usage(name) if tenant is not None else None
        self._cache[name] = (now, tenant, usage)
        return tenant, usage

    def check_write(self, name: str, *, new_entities: int = 0, adds_points: bool = True) -> None:
        """Refuse a write the tenant's quotas (or strict hosting) do not allow.

        Parameters
        ----------
        name : str
            The tenant ('' = the node's own default tenant: no quota).
        new_entities : int
            Entities the write may create.
        adds_points : bool
            Whether the write may store series points.

        Raises
        ------
        TenantQuotaExceeded
            403 for the entity quota or an unregistered tenant under strict hosting, 413 for the
            series-point quota; the detail names the tenant, the usage and the quota.
        """
        if not name:
            return
        tenant, usage = self._cached(name)
        if tenant is None:
            if self.strict:
                raise TenantQuotaExceeded(
                    f"tenant {name!r} is not hosted on this node; create it first (bright tenants create)",
                    tenant=name,
                )
            return
        assert usage is not None
        if new_entities and usage.entities + new_entities > tenant.max_entities:
            raise TenantQuotaExceeded(
                f"tenant {name!r} holds {usage.entities} entities; creating {new_entities} more exceeds its "
                f"quota of {tenant.max_entities}",
                tenant=name,
                quota="entities",
                usage=usage.entities,
                limit=tenant.max_entities,
            )
        if adds_points and usage.series_points >= tenant.max_series_points:
            raise TenantQuotaExceeded(
                f"tenant {name!r} stores {usage.series_points} series points, its quota is "
                f"{tenant.max_series_points}; delete history or raise the quota",
                status=413,
                tenant=name,
                quota="seriesPoints",
                usage=usage.series_points,
                limit=tenant.max_series_points,
            )

    def forget_usage(self, name: str) -> None:
        """Drop the cached usage of a tenant (after a bulk load or a deletion)."""
        self._cache.pop(name, None)

    def delete(self, name: str, *, keep_registration: bool = False) -> dict[str, int]:
        """Delete every row of a tenant in every table, and its registry entry.

        Rows are found by the ``tenant`` column of each table of the live schema (tables added later
        are covered); accounts (tables without a tenant column but with ``community_id``) by the
        tenant's communities. Child rows follow their parents (ON DELETE CASCADE).

        Returns
        -------
        dict
            Rows deleted per table.
        """
        check_tenant_name(name)
        counts = _delete_tenant_rows(self.engine, name)
        if not keep_registration:
            with self.engine.begin() as conn:
                n = conn.execute(delete(tenants_table).where(tenants_table.c.name == name)).rowcount
            if n:
                counts["hosted_tenants"] = int(n)
        self._cache.pop(name, None)
        return counts


def _live_tables(engine: Engine) -> MetaData:
    meta = MetaData()
    meta.reflect(bind=engine, only=lambda name, _m: not name.startswith("sqlite_"))
    return meta


def _community_ids(conn: Connection, tenant: str) -> list[str]:
    from bright.twin.vocabulary import bright_context

    iri = bright_context().expand("EnergyCommunity")
    return list(
        conn.execute(
            select(entities.c.id).where(entities.c.tenant == tenant, entities.c.type == iri)
        ).scalars()
    )


def _delete_tenant_rows(engine: Engine, tenant: str) -> dict[str, int]:
    meta = _live_tables(engine)
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        communities = _community_ids(conn, tenant)
        for table in reversed(meta.sorted_tables):
            if table.name == "hosted_tenants":
                continue
            if "tenant" in table.c:
                stmt = delete(table).where(table.c.tenant == tenant)
            elif "community_id" in table.c and communities:
                stmt = delete(table).where(table.c.community_id.in_(communities))
            else:
                continue
            n = int(conn.execute(stmt).rowcount or 0)
            if n:
                counts[table.name] = n
    return counts


# --------------------------------------------------------------------------------------------------
# Backup and restore of one tenant
# --------------------------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$b64"}:
        return base64.b64decode(value["$b64"])
    if isinstance(value, dict) and set(value) == {"$datetime"}:
        return datetime.fromisoformat(value["$datetime"])
    return value


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(
        json.dumps({k: _encode(v) for k, v in r.items()}, separators=(",", ":")) + "\n" for r in rows
    )


#: Tables saved by their own rules (entities with their index, series with their chunks).
_SPECIAL = {"entities", "entity_types", "entity_scopes", "attr_index", "geo_index", "series", "series_chunks",
            "hosted_tenants", "bright_migrations"}  # fmt: skip


def _autoincrement_pk(table: Table) -> set[str]:
    pks = list(table.primary_key.columns)
    if len(pks) == 1 and pks[0].type.python_type is int and pks[0].name in ("pk", "id"):
        return {pks[0].name}
    return set()


def backup_tenant(engine: Engine, tenant: str, path: Path | str | None = None) -> bytes:
    """Write one tenant to a backup ZIP (format in docs/onboarding.md); returns the bytes.

    The archive holds ``manifest.json`` (format, version, tenant, migration steps, row counts, the
    registry entry), ``entities.jsonl`` (stored documents, expanded IRIs), ``series.jsonl`` (one
    catalogue entry per line with its chunks, binary arrays in base64) and ``tables/<table>.jsonl``
    for every other table with a ``tenant`` column (and account tables by ``community_id``).
    """
    from bright.twin.series import chunks_table, series_table

    migrations.migrate(engine)
    meta = _live_tables(engine)
    counts: dict[str, int] = {}
    buf = io.BytesIO()
    with engine.connect() as conn, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        docs = conn.execute(
            select(entities.c.doc)
            .where(entities.c.tenant == tenant, entities.c.deleted_at.is_(None))
            .order_by(entities.c.pk)
        ).scalars()
        lines = [json.dumps(d if isinstance(d, dict) else json.loads(d), separators=(",", ":")) for d in docs]
        zf.writestr("entities.jsonl", "".join(line + "\n" for line in lines))
        counts["entities"] = len(lines)
        out = []
        chunk_cols = [c.name for c in chunks_table.c if c.name != "series_id"]
        for s in conn.execute(
            select(series_table).where(series_table.c.tenant == tenant).order_by(series_table.c.id)
        ):
            row = {k: v for k, v in s._mapping.items() if k not in ("id", "tenant")}
            chunks = [
                {k: _encode(v) for k, v in c._mapping.items()}
                for c in conn.execute(
                    select(*[chunks_table.c[n] for n in chunk_cols])
                    .where(chunks_table.c.series_id == s.id)
                    .order_by(chunks_table.c.chunk_start)
                )
            ]
            out.append(json.dumps({"series": row, "chunks": chunks}, separators=(",", ":")) + "\n")
        zf.writestr("series.jsonl", "".join(out))
        counts["series"] = len(out)
        communities = _community_ids(conn, tenant)
        for table in meta.sorted_tables:
            if table.name in _SPECIAL:
                continue
            if "tenant" in table.c:
                stmt = select(table).where(table.c.tenant == tenant)
            elif "community_id" in table.c and communities:
                stmt = select(table).where(table.c.community_id.in_(communities))
            else:
                continue
            skip = _autoincrement_pk(table)
            rows = [
                {k: v for k, v in r._mapping.items() if k not in skip and k != "tenant"}
                for r in conn.execute(stmt)
            ]
            if rows:
                zf.writestr(f"tables/{table.name}.jsonl", _jsonl(rows))
                counts[table.name] = len(rows)
        reg = conn.execute(select(tenants_table).where(tenants_table.c.name == tenant)).first()
        steps = sorted(conn.execute(select(migrations.migrations_table.c.step)).scalars())
        manifest = {
            "format": BACKUP_FORMAT,
            "version": BACKUP_VERSION,
            "tenant": tenant,
            "createdAt": _iso(datetime.now(UTC)),
            "migrations": steps,
            "counts": counts,
            "registry": None if reg is None else {k: v for k, v in reg._mapping.items()},
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def read_manifest(data: bytes) -> dict[str, Any]:
    """The manifest of a backup; BadRequestData for anything that is not a BRIGHT tenant backup."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            manifest = json.loads(zf.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise BadRequestData(f"not a BRIGHT tenant backup: {exc}") from None
    if manifest.get("format") != BACKUP_FORMAT:
        raise BadRequestData(f"not a BRIGHT tenant backup (format {manifest.get('format')!r})")
    if int(manifest.get("version", 0)) > BACKUP_VERSION:
        raise BadRequestData(f"backup version {manifest.get('version')} is newer than this node reads")
    return manifest


def _unique_columns(table: Table) -> list[str]:
    """Columns that are unique on their own (node-wide keys, not per tenant)."""
    out = [c.name for c in table.primary_key.columns] if len(table.primary_key.columns) == 1 else []
    for cons in table.constraints:
        cols = list(getattr(cons, "columns", []))
        if isinstance(cons, UniqueConstraint) and len(cols) == 1:
            out.append(cols[0].name)
    out.extend(c.name for c in table.c if c.unique)
    return list(dict.fromkeys(out))


def _without_collisions(
    conn: Connection, table: Table, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Rows whose node-wide unique keys are free (a copy restored next to its original).

    A history instance id (``instance_id``) that is taken gets a new one; any other taken key
    (an account name, a token id, an invitation) skips the row: it belongs to the original.
    """
    skipped = 0
    for name in _unique_columns(table):
        wanted = [r[name] for r in rows if r.get(name) is not None]
        taken: set[Any] = set()
        for start in range(0, len(wanted), 500):
            taken.update(
                conn.execute(
                    select(table.c[name]).where(table.c[name].in_(wanted[start : start + 500]))
                ).scalars()
            )
        if not taken:
            continue
        kept = []
        for r in rows:
            if r.get(name) not in taken:
                kept.append(r)
            elif name == "instance_id":
                kept.append({**r, name: f"urn:ngsi-ld:instance:{uuid.uuid4()}"})
            else:
                skipped += 1
        rows = kept
    return rows, skipped


def restore_tenant(
    engine: Engine, source: Path | str | bytes, *, tenant: str | None = None, replace: bool = False
) -> dict[str, int]:
    """Restore a tenant from :func:`backup_tenant` (into another name with ``tenant``).

    The database is first migrated to this release, so a backup of an older node restores into a
    newer one. Entities are re-indexed as they are inserted.

    Raises
    ------
    AlreadyExists
        The target tenant holds data and ``replace`` is False.
    BadRequestData
        Not a backup, or a table the backup holds is missing here.
    """
    from bright.twin.series import chunks_table, series_table
    from bright.twin.store import TwinStore

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    manifest = read_manifest(data)
    target = check_tenant_name(tenant or manifest["tenant"]) if (tenant or manifest["tenant"]) else ""
    migrations.migrate(engine)
    registry = TenantRegistry(engine, strict=False)
    usage = registry.usage(target)
    if usage.entities or usage.series_points:
        if not replace:
            raise AlreadyExists(f"tenant {target!r} holds data; restore with replace to overwrite it")
        _delete_tenant_rows(engine, target)
    meta = _live_tables(engine)
    counts: dict[str, int] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        docs = [json.loads(line) for line in zf.read("entities.jsonl").decode().splitlines() if line]
        store = TwinStore(engine, create=False)
        for start in range(0, len(docs), 2000):
            store.write_batch(target, docs[start : start + 2000], merge=None)
        counts["entities"] = len(docs)
        n_series = 0
        with engine.begin() as conn:
            for line in zf.read("series.jsonl").decode().splitlines():
                if not line:
                    continue
                item = json.loads(line)
                sid = conn.execute(
                    insert(series_table).values(tenant=target, **item["series"]).returning(series_table.c.id)
                ).scalar_one()
                if item["chunks"]:
                    conn.execute(
                        insert(chunks_table),
                        [{**{k: _decode(v) for k, v in c.items()}, "series_id": sid} for c in item["chunks"]],
                    )
                n_series += 1
        counts["series"] = n_series
        names = [n for n in zf.namelist() if n.startswith("tables/") and n.endswith(".jsonl")]
        with engine.begin() as conn:
            for name in names:
                table_name = name[len("tables/") : -len(".jsonl")]
                if table_name not in meta.tables:
                    raise BadRequestData(f"the backup holds table {table_name!r}, unknown to this node")
                table = meta.tables[table_name]
                rows = [json.loads(line) for line in zf.read(name).decode().splitlines() if line]
                values = []
                for r in rows:
                    row = {k: _decode(v) for k, v in r.items() if k in table.c}
                    if "tenant" in table.c:
                        row["tenant"] = target
                    values.append(row)
                values, skipped = _without_collisions(conn, table, values)
                if values:
                    conn.execute(insert(table), values)
                counts[table_name] = len(values)
                if skipped:
                    counts[f"skipped:{table_name}"] = skipped
    reg = manifest.get("registry")
    if target and registry.find(target) is None:
        registry.create(
            target,
            title=(reg or {}).get("title") or target,
            community_id=(reg or {}).get("community_id"),
            manager=(reg or {}).get("manager"),
            max_entities=int((reg or {}).get("max_entities") or DEFAULT_MAX_ENTITIES),
            max_series_points=int((reg or {}).get("max_series_points") or DEFAULT_MAX_SERIES_POINTS),
        )
    return counts


# --------------------------------------------------------------------------------------------------
# Each tenant as its own node of the network
# --------------------------------------------------------------------------------------------------


def registration_body(
    tenant: str,
    *,
    node_id: str,
    public_url: str,
    types: Iterable[str],
    refresh_s: float = 3600.0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The context source registration of one hosted tenant at a parent node.

    Its id is ``urn:ngsi-ld:ContextSourceRegistration:<node_id>:<tenant>``; the NGSI-LD ``tenant``
    member tells the parent to send ``NGSILD-Tenant: <tenant>`` when it forwards, so each hosted
    community answers as its own node behind the one endpoint.
    """
    check_tenant_name(tenant)
    moment = now or datetime.now(UTC)
    return {
        "id": f"urn:ngsi-ld:ContextSourceRegistration:{node_id}:{tenant}",
        "type": "ContextSourceRegistration",
        "registrationName": f"{node_id}/{tenant}",
        "information": [{"entities": [{"type": t} for t in sorted(types)]}],
        "endpoint": public_url.rstrip("/"),
        "tenant": tenant,
        "mode": "inclusive",
        "operations": ["federationOps"],
        "expiresAt": _iso(moment + timedelta(seconds=3 * refresh_s)),
    }


def register_at_parent(
    engine: Engine,
    tenant: str,
    *,
    node_id: str,
    public_url: str,
    client: Any,
    parent_url: str = "",
    parent_tenant: str = "",
) -> dict[str, Any]:
    """Create or refresh the registration of a hosted tenant at the parent (httpx-style ``client``).

    Returns the registration body sent. Raises BadRequestData when the parent refuses it or the
    tenant holds no entity type yet.
    """
    from bright.twin.store import TwinStore

    types = sorted(TwinStore(engine, create=False).types(tenant))
    if not types:
        raise BadRequestData(f"tenant {tenant!r} holds no entity yet; nothing to register")
    body = registration_body(tenant, node_id=node_id, public_url=public_url, types=types)
    base = parent_url.rstrip("/") + "/ngsi-ld/v1/csourceRegistrations"
    headers = {"Content-Type": "application/json"}
    if parent_tenant:
        headers["NGSILD-Tenant"] = parent_tenant
    fragment = {k: v for k, v in body.items() if k not in ("id", "type")}
    r = client.patch(f"{base}/{body['id']}", json=fragment, headers=headers)
    if r.status_code == 404:
        r = client.post(base, json=body, headers=headers)
    if r.status_code not in (201, 204):
        raise BadRequestData(
            f"the parent refused the registration of {tenant!r}: HTTP {r.status_code} {r.text[:200]}"
        )
    return body
