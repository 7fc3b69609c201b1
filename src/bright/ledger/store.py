"""Persistence of the ledger on SQLAlchemy 2 Core tables (SQLite or PostgreSQL).

This is the only module of ``bright.ledger`` that does database I/O.  Given an
``sqlalchemy.Engine`` and a table-name prefix ``p`` (default ``ledger_``) it keeps five
append-only tables:

``<p>leaves``        ``idx`` (0, 1, 2, ...), ``data`` (the canonical bytes of a signed record)
``<p>signers``       ``id``, ``did``: every DID that signed a head or cosignature, stored once
``<p>heads``         one row per distinct signed tree head (``digest`` = SHA-256 of its statement),
                     ``local`` = the head is of the log stored here and was checked against it
``<p>cosignatures``  ``key`` = ``head_id * 65536 + signer_id`` -> 64-byte signature
``<p>forks``         fork evidence (JSON with both heads) kept for the alarm

Update and delete are refused by triggers on both backends (defence in depth; tamper evidence
comes from the hashes and signatures, which :meth:`LedgerStore.verify` re-checks on load).

On opening, the store reads the leaves in order, rebuilds the in-memory :class:`MerkleLog`
and checks every local head against it: a changed, reordered or deleted record changes the root
of every head that covers it, a missing index or a head beyond the stored leaves shows a
deletion, and the heads' signatures show a rewritten head.  Records appended after the last
signed head are covered by no signature yet; their protection starts with the next head.

The store assumes a single writer per log (the node that operates it).  A second writer's
conflicting append fails on the primary key and is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bright.ledger.heads import Cosignature, ForkDetected, ForkEvidence, HeadError, SignedTreeHead
from bright.ledger.merkle import MerkleLog

__all__ = ["LedgerIntegrityError", "LedgerStore", "StoreError"]

_PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")
_TABLES = ("leaves", "signers", "heads", "cosignatures", "forks")
_READ_BATCH = 20_000
_SIGNER_BITS = 16  # cosignature key = head_id << 16 | signer_id


class StoreError(ValueError):
    """The store was used wrongly (bad prefix, leaf that is not bytes, concurrent writer...)."""


class LedgerIntegrityError(ValueError):
    """The stored log does not match its signed heads: a record or head was altered or deleted."""


def _key_type() -> sa.types.TypeEngine[int]:
    # INTEGER PRIMARY KEY is SQLite's rowid alias (no separate index); BIGINT on PostgreSQL.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _append_only_ddl(table: sa.Table) -> None:
    name = table.name
    for action in ("UPDATE", "DELETE"):
        event.listen(
            table,
            "after_create",
            sa.DDL(
                f"CREATE TRIGGER {name}_no_{action.lower()} BEFORE {action} ON {name} "
                f"BEGIN SELECT RAISE(ABORT, 'table {name} is append-only'); END"
            ).execute_if(dialect="sqlite"),
        )
    event.listen(
        table,
        "after_create",
        sa.DDL(
            f"CREATE OR REPLACE FUNCTION {name}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION 'table {name} is append-only'; END $$"
        ).execute_if(dialect="postgresql"),
    )
    event.listen(
        table,
        "after_create",
        sa.DDL(
            f"CREATE TRIGGER {name}_append_only BEFORE UPDATE OR DELETE ON {name} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}_append_only()"
        ).execute_if(dialect="postgresql"),
    )


def _inserted_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every table here has an integer primary key
        raise StoreError("the database did not return the new row's id")
    return int(key[0])


def _timestamp_to_int(moment: datetime) -> int:
    return int(moment.timestamp())


def _int_to_timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class LedgerStore:
    """One Merkle log with its heads and cosignatures, persisted through SQLAlchemy Core.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Engine of the node's database (SQLite or PostgreSQL).  For SQLite files, WAL journal
        mode and ``synchronous=NORMAL`` make batched appends much faster (the caller's choice).
    prefix : str, optional
        Prefix of the table names (letters, digits, underscore; at most 31 characters), so that
        several logs can share a database.  Default ``"ledger_"``.
    verify : bool, optional
        Check the stored log against its local heads on opening (default True); see
        :meth:`verify`.

    Raises
    ------
    LedgerIntegrityError
        If ``verify`` and the stored leaves do not match the stored heads.

    Examples
    --------
    >>> import sqlalchemy as sa
    >>> from bright.ledger.identity import NodeIdentity
    >>> store = LedgerStore(sa.create_engine("sqlite://"), "doc_")
    >>> store.append([b"first record", b"second record"])
    range(0, 2)
    >>> operator = NodeIdentity.generate()
    >>> store.add_head(SignedTreeHead.for_log(store.log, operator, community="urn:community:1"))
    >>> store.latest_head().size
    2
    """

    def __init__(self, engine: Engine, prefix: str = "ledger_", *, verify: bool = True) -> None:
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
            raise StoreError(f"table prefix {prefix!r} must match {_PREFIX_RE.pattern}")
        self._engine = engine
        self.prefix = prefix
        self._metadata = sa.MetaData()
        p = prefix
        self.leaves_table = sa.Table(
            f"{p}leaves",
            self._metadata,
            sa.Column("idx", _key_type(), primary_key=True, autoincrement=False),
            sa.Column("data", sa.LargeBinary, nullable=False),
        )
        self.signers_table = sa.Table(
            f"{p}signers",
            self._metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("did", sa.String(200), nullable=False, unique=True),
        )
        self.heads_table = sa.Table(
            f"{p}heads",
            self._metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("digest", sa.LargeBinary(32), nullable=False, unique=True),
            sa.Column("community", sa.String(200), nullable=False),
            sa.Column("size", sa.BigInteger, nullable=False),
            sa.Column("root", sa.LargeBinary(32), nullable=False),
            sa.Column("timestamp", sa.BigInteger, nullable=False),
            sa.Column("signer_id", sa.Integer, sa.ForeignKey(f"{p}signers.id"), nullable=False),
            sa.Column("signature", sa.LargeBinary(64), nullable=False),
            sa.Column("local", sa.Boolean, nullable=False),
            sa.Index(f"{p}heads_size", "size"),
        )
        # One row per cosignature, its (head, signer) pair packed into one integer key: on SQLite
        # the key is the rowid, so a cosignature costs ~74 bytes of which 64 are the signature
        # (a two-column key costs ~85 bytes, which a year of 100-member heads cannot afford).
        self.cosignatures_table = sa.Table(
            f"{p}cosignatures",
            self._metadata,
            sa.Column("key", _key_type(), primary_key=True, autoincrement=False),
            sa.Column("signature", sa.LargeBinary(64), nullable=False),
        )
        self.forks_table = sa.Table(
            f"{p}forks",
            self._metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("community", sa.String(200), nullable=False),
            sa.Column("size", sa.BigInteger, nullable=False),
            sa.Column("evidence", sa.Text, nullable=False),
            sa.Column("detected_at", sa.BigInteger, nullable=False),
        )
        for table in self._metadata.sorted_tables:
            _append_only_ddl(table)
        self._metadata.create_all(engine, checkfirst=True)
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(engine.dialect.paramstyle)
        quoted = engine.dialect.identifier_preparer.quote(self.leaves_table.name)
        self._insert_leaves_sql = (
            f"INSERT INTO {quoted} (idx, data) VALUES ({marker}, {marker})" if marker else None
        )
        self._signer_ids: dict[str, int] = {}
        self._log = MerkleLog()
        self._load(verify=verify)

    # -- log -----------------------------------------------------------------------------

    @property
    def log(self) -> MerkleLog:
        """The in-memory Merkle log mirroring the stored leaves (do not append to it directly)."""
        return self._log

    @property
    def size(self) -> int:
        """Number of stored records."""
        return self._log.size

    def append(self, leaves: Iterable[bytes]) -> range:
        """Append records to the log in one transaction.

        Parameters
        ----------
        leaves : iterable of bytes
            Leaf bytes (``SignedRecord.to_bytes()``), in order.

        Returns
        -------
        range
            Indices given to the records.

        Raises
        ------
        StoreError
            If a leaf is not bytes, or another writer appended to the same log meanwhile.
        """
        data = list(leaves)
        for position, leaf in enumerate(data):
            if not isinstance(leaf, bytes | bytearray):
                raise StoreError(f"leaf {position} of the batch is {type(leaf).__name__}, not bytes")
        first = self._log.size
        rows = [(first + offset, bytes(leaf)) for offset, leaf in enumerate(data)]
        if rows:
            try:
                with self._engine.begin() as conn:
                    # Hot path: the driver's executemany with positional rows; the Core insert
                    # construct costs ~3 us more per row, a sixth of the per-record budget.
                    if self._insert_leaves_sql is not None:
                        conn.exec_driver_sql(self._insert_leaves_sql, rows)
                    else:  # a driver with another parameter style: the portable Core path
                        conn.execute(self.leaves_table.insert(), [{"idx": i, "data": d} for i, d in rows])
            except IntegrityError:
                raise StoreError(
                    f"leaf index {first} is already taken: another writer appended to log {self.prefix!r}; reopen it"
                ) from None
        return self._log.extend(data)

    def leaf(self, index: int) -> bytes:
        """Stored bytes of record ``index``.

        Parameters
        ----------
        index : int
            Leaf index.

        Returns
        -------
        bytes
        """
        with self._engine.connect() as conn:
            data = conn.execute(
                sa.select(self.leaves_table.c.data).where(self.leaves_table.c.idx == index)
            ).scalar_one_or_none()
        if data is None:
            raise StoreError(f"no record at index {index} in log {self.prefix!r}")
        return bytes(data)

    def leaves(self, start: int = 0, end: int | None = None) -> list[bytes]:
        """Stored bytes of records ``start`` (inclusive) to ``end`` (exclusive).

        Parameters
        ----------
        start, end : int
            Leaf range; ``end`` defaults to the size.

        Returns
        -------
        list of bytes
        """
        end = self.size if end is None else end
        table = self.leaves_table
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.data).where(table.c.idx >= start, table.c.idx < end).order_by(table.c.idx)
            ).scalars()
            return [bytes(item) for item in rows]

    # -- loading and verification --------------------------------------------------------

    def _load(self, *, verify: bool) -> None:
        log = MerkleLog()
        table = self.leaves_table
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=_READ_BATCH).execute(
                sa.select(table.c.idx, table.c.data).order_by(table.c.idx)
            )
            for expected, (index, data) in enumerate(result):
                if index != expected:
                    raise LedgerIntegrityError(
                        f"log {self.prefix!r}: record {expected} is missing (the next stored index is {index}): "
                        "records were deleted"
                    )
                log.append(bytes(data))
        self._log = log
        if verify:
            self.verify()

    def verify(self, *, check_signatures: bool = True) -> None:
        """Check every local head against the stored records.

        Parameters
        ----------
        check_signatures : bool, optional
            Also verify each local head's own signature (default True; about 0.1 ms per head).

        Raises
        ------
        LedgerIntegrityError
            Naming the first head that does not match: records changed, reordered or deleted,
            or the head itself altered.
        """
        log = self._log
        for head in self._select_heads(local=True, with_cosignatures=False):
            if head.size > log.size:
                raise LedgerIntegrityError(
                    f"log {self.prefix!r}: {head.describe()} covers {head.size} records but only {log.size} "
                    "are stored: records were deleted"
                )
            if log.root(head.size) != head.root:
                raise LedgerIntegrityError(
                    f"log {self.prefix!r}: the first {head.size} stored records do not match {head.describe()}: "
                    "a record was changed, reordered or deleted"
                )
            if check_signatures and not head.verify_signature():
                raise LedgerIntegrityError(
                    f"log {self.prefix!r}: stored {head.describe()} has an invalid signature"
                )

    # -- heads ---------------------------------------------------------------------------

    def add_head(self, head: SignedTreeHead, *, local: bool = True, check_signatures: bool = True) -> None:
        """Store a signed tree head and its cosignatures (see :meth:`add_heads`)."""
        self.add_heads([head], local=local, check_signatures=check_signatures)

    def add_heads(
        self, heads: Iterable[SignedTreeHead], *, local: bool = True, check_signatures: bool = True
    ) -> None:
        """Store signed tree heads and their cosignatures, merging with heads already stored.

        Parameters
        ----------
        heads : iterable of SignedTreeHead
            Heads to store; cosignatures of a head stored before are added to it.
        local : bool, optional
            True (default) for heads of the log stored here: each must cover stored records and
            match their root.  False for heads received from peers about a log not stored here:
            only checked for forks against the heads already known.
        check_signatures : bool, optional
            Verify the heads' signatures and cosignatures first (default True).  Turn off only
            for heads already verified (e.g. by :func:`bright.ledger.heads.cosign`).

        Raises
        ------
        HeadError
            If a signature is invalid, or a local head does not match the stored log.
        ForkDetected
            If a head conflicts with a stored head of the same community and size; the evidence
            is stored (see :meth:`forks`) before raising, and nothing of the batch is stored.
        """
        batch = list(heads)
        seen: dict[tuple[str, int], SignedTreeHead] = {}
        with self._engine.connect() as conn:
            for head in batch:
                if check_signatures:
                    if not head.verify_signature():
                        raise HeadError(f"invalid signature on {head.describe()}")
                    for cosignature in head.cosignatures:
                        if not head.cosignature_is_valid(cosignature):
                            raise HeadError(
                                f"invalid cosignature by {cosignature.signer} on {head.describe()}"
                            )
                key = (head.community, head.size)
                rival = seen.get(key)
                if rival is None or rival.root == head.root:
                    rival = self._conflicting_head(conn, head)
                if rival is not None:
                    evidence = ForkEvidence(rival, head)
                    self._save_evidence(evidence)
                    raise ForkDetected(evidence)
                seen.setdefault(key, head)
                if local:
                    if head.size > self.size:
                        raise HeadError(f"{head.describe()} covers more than the {self.size} stored records")
                    if self._log.root(head.size) != head.root:
                        raise HeadError(f"{head.describe()} does not match the stored records")
        with self._engine.begin() as conn:
            new_ids: dict[str, int] = {}
            for head in batch:
                head_id = self._store_head(conn, head, local, new_ids)
                self._store_cosignatures(conn, head_id, head.cosignatures, new_ids)
        self._signer_ids.update(new_ids)

    def _signer_id(self, conn: Connection, did: str, new_ids: dict[str, int]) -> int:
        known = self._signer_ids.get(did) or new_ids.get(did)
        if known is not None:
            return known
        table = self.signers_table
        found = conn.execute(sa.select(table.c.id).where(table.c.did == did)).scalar_one_or_none()
        if found is None:
            found = _inserted_id(conn.execute(table.insert().values(did=did)))
            if found >= 1 << _SIGNER_BITS:
                raise StoreError(
                    f"log {self.prefix!r} cannot hold more than {(1 << _SIGNER_BITS) - 1} signers"
                )
        new_ids[did] = int(found)
        return int(found)

    def _store_head(
        self, conn: Connection, head: SignedTreeHead, local: bool, new_ids: dict[str, int]
    ) -> int:
        table = self.heads_table
        digest = head.digest
        found = conn.execute(sa.select(table.c.id).where(table.c.digest == digest)).scalar_one_or_none()
        if found is not None:
            return int(found)
        inserted = conn.execute(
            table.insert().values(
                digest=digest,
                community=head.community,
                size=head.size,
                root=head.root,
                timestamp=_timestamp_to_int(head.timestamp),
                signer_id=self._signer_id(conn, head.signer, new_ids),
                signature=head.signature,
                local=local,
            )
        )
        return _inserted_id(inserted)

    def _store_cosignatures(
        self, conn: Connection, head_id: int, cosignatures: Sequence[Cosignature], new_ids: dict[str, int]
    ) -> None:
        if not cosignatures:
            return
        table = self.cosignatures_table
        first, last = head_id << _SIGNER_BITS, ((head_id + 1) << _SIGNER_BITS) - 1
        present = set(conn.execute(sa.select(table.c.key).where(table.c.key.between(first, last))).scalars())
        rows: list[dict[str, Any]] = []
        for item in cosignatures:
            key = first | self._signer_id(conn, item.signer, new_ids)
            if key not in present:
                present.add(key)
                rows.append({"key": key, "signature": item.signature})
        if rows:
            rows.sort(key=lambda row: row["key"])  # in key order, SQLite fills its pages completely
            conn.execute(table.insert(), rows)

    def _head_query(self) -> sa.Select[Any]:
        heads, signers = self.heads_table, self.signers_table
        return sa.select(
            heads.c.id,
            heads.c.community,
            heads.c.size,
            heads.c.root,
            heads.c.timestamp,
            signers.c.did,
            heads.c.signature,
        ).join(signers, signers.c.id == heads.c.signer_id)

    @staticmethod
    def _head_from_row(row: Any, cosignatures: Sequence[Cosignature] = ()) -> SignedTreeHead:
        return SignedTreeHead(
            row.community,
            int(row.size),
            bytes(row.root),
            _int_to_timestamp(int(row.timestamp)),
            row.did,
            bytes(row.signature),
            tuple(cosignatures),
        )

    def _conflicting_head(self, conn: Connection, head: SignedTreeHead) -> SignedTreeHead | None:
        table = self.heads_table
        row = conn.execute(
            self._head_query()
            .where(table.c.community == head.community, table.c.size == head.size, table.c.root != head.root)
            .limit(1)
        ).first()
        return None if row is None else self._head_from_row(row)

    def _select_heads(
        self,
        *,
        local: bool | None = None,
        size: int | None = None,
        community: str | None = None,
        with_cosignatures: bool = True,
    ) -> list[SignedTreeHead]:
        table = self.heads_table
        query = self._head_query().order_by(table.c.size, table.c.timestamp, table.c.id)
        if local is not None:
            query = query.where(table.c.local == local)
        if size is not None:
            query = query.where(table.c.size == size)
        if community is not None:
            query = query.where(table.c.community == community)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            cosignatures: dict[int, list[Cosignature]] = {}
            if with_cosignatures and rows:
                signers = self.signers_table
                dids = {
                    int(item.id): item.did for item in conn.execute(sa.select(signers.c.id, signers.c.did))
                }
                key = self.cosignatures_table.c.key
                wanted = sorted({int(row.id) for row in rows})
                for start in range(0, len(wanted), 1000):
                    chunk = wanted[start : start + 1000]
                    chosen = set(chunk)
                    for packed, signature in conn.execute(
                        sa.select(key, self.cosignatures_table.c.signature)
                        .where(key.between(chunk[0] << _SIGNER_BITS, ((chunk[-1] + 1) << _SIGNER_BITS) - 1))
                        .order_by(key)
                    ):
                        head_id = packed >> _SIGNER_BITS
                        if head_id in chosen:
                            signer = dids[packed & ((1 << _SIGNER_BITS) - 1)]
                            cosignatures.setdefault(head_id, []).append(Cosignature(signer, bytes(signature)))
        return [self._head_from_row(row, cosignatures.get(row.id, ())) for row in rows]

    def heads(
        self,
        *,
        size: int | None = None,
        community: str | None = None,
        local: bool | None = True,
        with_cosignatures: bool = True,
    ) -> list[SignedTreeHead]:
        """Stored heads, by size then timestamp.

        Parameters
        ----------
        size : int, optional
            Only heads of this size.
        community : str, optional
            Only heads of this community.
        local : bool or None, optional
            True (default): heads of the log stored here; False: peer heads; None: both.
        with_cosignatures : bool, optional
            Load the cosignatures too (default True).

        Returns
        -------
        list of SignedTreeHead
        """
        return self._select_heads(
            local=local, size=size, community=community, with_cosignatures=with_cosignatures
        )

    def latest_head(self) -> SignedTreeHead | None:
        """The local head of the largest size (latest timestamp on a tie), with its cosignatures."""
        table = self.heads_table
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(table.c.size, table.c.timestamp)
                .where(table.c.local.is_(True))
                .order_by(table.c.size.desc(), table.c.timestamp.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        candidates = [
            head
            for head in self._select_heads(local=True, size=int(row.size))
            if _timestamp_to_int(head.timestamp) == row.timestamp
        ]
        return candidates[-1]

    # -- forks ---------------------------------------------------------------------------

    def _save_evidence(self, evidence: ForkEvidence) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                self.forks_table.insert().values(
                    community=evidence.community,
                    size=evidence.size,
                    evidence=orjson.dumps(evidence.to_json(), option=orjson.OPT_SORT_KEYS).decode("utf-8"),
                    detected_at=int(datetime.now(UTC).timestamp()),
                )
            )

    def forks(self) -> list[ForkEvidence]:
        """All fork evidence recorded by :meth:`add_heads`, oldest first."""
        table = self.forks_table
        with self._engine.connect() as conn:
            texts = conn.execute(sa.select(table.c.evidence).order_by(table.c.id)).scalars().all()
        return [ForkEvidence.from_json(orjson.loads(text)) for text in texts]

    def table_names(self) -> list[str]:
        """Names of the store's tables."""
        return [f"{self.prefix}{name}" for name in _TABLES]

    def __repr__(self) -> str:
        return f"LedgerStore(prefix={self.prefix!r}, size={self.size})"
