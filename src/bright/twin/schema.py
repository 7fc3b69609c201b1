"""Database tables of a twin node (SQLAlchemy Core), identical on SQLite and PostgreSQL.

``entities`` holds one row per NGSI-LD entity and tenant with the entity document in *expanded*
form (attribute names and types as full IRIs). ``attr_index`` flattens every queryable leaf of that
document (attribute values, sub-attributes, metadata such as ``observedAt``, keys of compound
values) into typed rows so that ``q``, ``scopeQ``, ``attrs`` and type filters run as indexed SQL
instead of loading entities into Python. ``geo_index`` keeps the bounding box of every GeoProperty
instance for a first geo filter in SQL, refined exactly with shapely.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql

metadata = MetaData()

# JSONB on PostgreSQL (GIN-indexable), JSON text on SQLite.
JsonDoc = JSON().with_variant(postgresql.JSONB(), "postgresql")
PK = BigInteger().with_variant(Integer(), "sqlite")

entities = Table(
    "entities",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False, default=""),
    Column("id", Text, nullable=False),
    # The entity's first type IRI, for the common single-type filter; all types live in entity_types.
    Column("type", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("modified_at", String(32), nullable=False),
    Column("deleted_at", String(32), nullable=True),
    Column("doc", JsonDoc, nullable=False),
    UniqueConstraint("tenant", "id", name="uq_entities_tenant_id"),
)
Index("ix_entities_tenant_type_id", entities.c.tenant, entities.c.type, entities.c.id)
# Pages are served in creation order: (tenant, pk) lets the database walk it and stop at the limit.
Index("ix_entities_tenant_pk", entities.c.tenant, entities.c.pk)

entity_types = Table(
    "entity_types",
    metadata,
    Column("entity_pk", PK, ForeignKey("entities.pk", ondelete="CASCADE"), nullable=False),
    Column("type", Text, nullable=False),
)
Index("ix_entity_types_type", entity_types.c.type, entity_types.c.entity_pk)
Index("ix_entity_types_pk", entity_types.c.entity_pk)

entity_scopes = Table(
    "entity_scopes",
    metadata,
    Column("entity_pk", PK, ForeignKey("entities.pk", ondelete="CASCADE"), nullable=False),
    Column("scope", Text, nullable=False),
)
Index("ix_entity_scopes_scope", entity_scopes.c.scope, entity_scopes.c.entity_pk)
Index("ix_entity_scopes_pk", entity_scopes.c.entity_pk)

# One row per queryable leaf. ``attr`` is the expanded attribute IRI; ``path`` addresses the leaf
# inside the attribute ('' = its value, see bright.twin.query for the grammar); ``kind`` is
# 'n' (number, in num), 's' (string, in txt), 'b' (boolean, num 0/1), 'd' (date-time, txt as
# ISO-8601 UTC 'YYYY-MM-DDTHH:MM:SS.ffffffZ', comparable as text; a time of day as
# 'THH:MM:SS.ffffffZ'), 'r' (Relationship object, in txt), 'x' (null/other, existence only).
attr_index = Table(
    "attr_index",
    metadata,
    Column("entity_pk", PK, ForeignKey("entities.pk", ondelete="CASCADE"), nullable=False),
    Column("attr", Text, nullable=False),
    Column("path", Text, nullable=False, default=""),
    Column("dataset_id", Text, nullable=True),
    Column("kind", String(1), nullable=False),
    Column("num", Float, nullable=True),
    Column("txt", Text, nullable=True),
)
Index("ix_attr_index_num", attr_index.c.attr, attr_index.c.path, attr_index.c.num, attr_index.c.entity_pk)
Index("ix_attr_index_txt", attr_index.c.attr, attr_index.c.path, attr_index.c.txt, attr_index.c.entity_pk)
# Correlated lookups (does entity X have attr A with num > n?) must start from the entity:
# (entity_pk, attr, path, num) beats (attr, path, num) for them, or the planner scans a range per entity.
Index("ix_attr_index_pk", attr_index.c.entity_pk, attr_index.c.attr, attr_index.c.path, attr_index.c.num)

geo_index = Table(
    "geo_index",
    metadata,
    Column("entity_pk", PK, ForeignKey("entities.pk", ondelete="CASCADE"), nullable=False),
    Column("attr", Text, nullable=False),
    Column("dataset_id", Text, nullable=True),
    Column("min_x", Float, nullable=False),
    Column("min_y", Float, nullable=False),
    Column("max_x", Float, nullable=False),
    Column("max_y", Float, nullable=False),
    Column("geojson", Text, nullable=False),
)
Index("ix_geo_index_attr_box", geo_index.c.attr, geo_index.c.min_x, geo_index.c.max_x)
Index("ix_geo_index_pk", geo_index.c.entity_pk)

jsonld_contexts = Table(
    "jsonld_contexts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("url", Text, nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # Hosted | Cached | ImplicitlyCreated
    Column("created_at", String(32), nullable=False),
    Column("last_usage", String(32), nullable=True),
    Column("usage_count", Integer, nullable=False, default=0),
    Column("body", Text, nullable=False),
)
