"""Database engines for a twin node: SQLite (embedded default) and PostgreSQL (production).

One SQLAlchemy 2 engine per node. SQLite runs in WAL mode with foreign keys on and a busy
timeout, and gets the ``regexp`` function the query language needs. PostgreSQL URLs are routed to
psycopg 3. The schema is created or upgraded by :func:`migrate` (Alembic-style numbered steps kept
in :mod:`bright.twin.migrations`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url


def normalize_url(url: str) -> str:
    """Map user-facing URLs to SQLAlchemy drivers (``postgresql://`` -> psycopg 3)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if u.drivername == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return u.render_as_string(hide_password=False)


def _json_dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for ``url`` with the per-backend settings BRIGHT relies on."""
    url = normalize_url(url)
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if url.startswith("sqlite"):
        from sqlalchemy.pool import StaticPool

        memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_conn: Any, _record: Any) -> None:
            from bright.twin.query import install_sqlite_functions

            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()
            install_sqlite_functions(dbapi_conn)

        return engine
    # Server-side prepared statements let PostgreSQL switch to generic plans that ignore the
    # selectivity of a query's terms (seconds instead of milliseconds on 100k entities).
    kwargs.setdefault("connect_args", {"prepare_threshold": None})
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Stream rows into a PostgreSQL table with ``COPY ... FROM STDIN``, in the open transaction.

    The bulk path of the twin's writes: rows are encoded by psycopg's C code and the server
    inserts them without parsing or planning a statement per row.
    """
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def staging_table(conn: Connection, name: str, columns: str) -> None:
    """An empty session-private PostgreSQL table ``name`` (``columns``: SQL column definitions).

    Rows copied into it (:func:`copy_rows`) feed one set-based ``INSERT``/``UPDATE`` ...
    ``SELECT``; it is emptied when the transaction ends.
    """
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT DELETE ROWS")
    conn.exec_driver_sql(f"DELETE FROM {name}")
