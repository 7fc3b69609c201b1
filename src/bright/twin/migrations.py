"""Schema migrations of a twin node: numbered, idempotent steps recorded in ``bright_migrations``.

Each step runs once per database, in order, inside a transaction, so upgrading a node (or every
tenant of a hosted node: tenants share the tables) keeps its data. A new release appends steps;
it never edits a released one.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, inspect, select

from bright.twin import schema

_meta = MetaData()
migrations_table = Table(
    "bright_migrations",
    _meta,
    Column("step", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
)


def _initial(conn: Connection) -> None:
    schema.metadata.create_all(conn, checkfirst=True)


_INDEX_TABLES = ("attr_index", "entity_types", "entity_scopes", "geo_index")


def _index_cascade_by_statement(conn: Connection) -> None:
    """PostgreSQL: index rows follow their entity through one statement trigger, not foreign keys.

    A foreign key checks (and locks) the entity row for every index row inserted: half the cost
    of writing an entity's index on PostgreSQL. Index rows are only written by the store, in the
    transaction that writes their entity, so the check adds nothing; what the keys gave besides
    is ``ON DELETE CASCADE``, which an ``AFTER DELETE ... FOR EACH STATEMENT`` trigger on
    ``entities`` keeps for every delete (the store's, a tenant's removal). SQLite keeps its keys:
    it checks them for almost nothing.
    """
    if conn.dialect.name != "postgresql":
        return
    for table in _INDEX_TABLES:
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_entity_pk_fkey")
    deletes = " ".join(
        f"DELETE FROM {table} WHERE entity_pk IN (SELECT pk FROM gone);" for table in _INDEX_TABLES
    )
    conn.exec_driver_sql(
        "CREATE OR REPLACE FUNCTION bright_entity_index_cascade() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {deletes} RETURN NULL; END $$"
    )
    conn.exec_driver_sql("DROP TRIGGER IF EXISTS entities_index_cascade ON entities")
    conn.exec_driver_sql(
        "CREATE TRIGGER entities_index_cascade AFTER DELETE ON entities REFERENCING OLD TABLE AS gone "
        "FOR EACH STATEMENT EXECUTE FUNCTION bright_entity_index_cascade()"
    )


# (number, name, function). Append only.
STEPS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "entities, indexes and @contexts", _initial),
    (
        2,
        "entity index rows deleted with their entity by a statement trigger (PostgreSQL)",
        _index_cascade_by_statement,
    ),
]

_extra_steps: list[tuple[int, str, Callable[[Connection], None]]] = []


def register(step: int, name: str, fn: Callable[[Connection], None]) -> None:
    """Register a step contributed by another module (time series, ledger...); numbers are global."""
    if any(s[0] == step for s in STEPS + _extra_steps):
        return
    _extra_steps.append((step, name, fn))


def migrate(engine: Engine) -> list[int]:
    """Apply the pending steps; returns the step numbers applied now."""
    applied_now: list[int] = []
    with engine.begin() as conn:
        _meta.create_all(conn, checkfirst=True)
        done = set(conn.execute(select(migrations_table.c.step)).scalars())
    for number, name, fn in sorted(STEPS + _extra_steps, key=lambda s: s[0]):
        if number in done:
            continue
        with engine.begin() as conn:
            fn(conn)
            conn.execute(migrations_table.insert().values(step=number, name=name))
        applied_now.append(number)
    return applied_now


def current_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())
