"""Ledger persistence on SQLite and PostgreSQL: reload, heads, forks, tamper detection."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from bright.ledger.heads import ForkDetected, HeadError, SignedTreeHead, cosign
from bright.ledger.identity import NodeIdentity
from bright.ledger.records import Settlement, SignedRecord, sign_record
from bright.ledger.store import LedgerIntegrityError, LedgerStore, StoreError

COMMUNITY = "urn:bright:community:schaerbeek"
OPERATOR = NodeIdentity.from_seed(bytes([7]) * 32)
PEERS = [NodeIdentity.from_seed(bytes([i + 20]) * 32) for i in range(4)]
START = datetime(2024, 5, 1, tzinfo=UTC)
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _records(count: int, first: int = 0) -> list[bytes]:
    """Leaf bytes of settlements of 5 members over consecutive quarter-hours."""
    leaves = []
    for n in range(first, first + count):
        settlement = Settlement(
            COMMUNITY, f"EAN5414480000000000{n % 5:02d}", START + timedelta(minutes=15 * (n // 5)),
            offtake_wh=100 + n, injection_wh=0, shared_offtake_wh=n % 50, shared_injection_wh=0, amount_cents=n,
        )  # fmt: skip
        leaves.append(sign_record(settlement, OPERATOR).to_bytes())
    return leaves


def _head(store: LedgerStore, size: int | None = None, minute: int = 0) -> SignedTreeHead:
    return SignedTreeHead.for_log(
        store.log, OPERATOR, community=COMMUNITY, size=size, timestamp=START + timedelta(minutes=minute)
    )


@pytest.fixture
def pg_engine() -> Iterator[sa.Engine]:
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        admin.dispose()
        if os.environ.get("BRIGHT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL is required (BRIGHT_REQUIRE_SERVICES=1) but unreachable: {error}")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    name = f"bright_ledger_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = sa.create_engine(PG_URL.rsplit("/", 1)[0] + "/" + name)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def engine(request: pytest.FixtureRequest, tmp_path) -> sa.Engine:
    if request.param == "sqlite":
        return sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    return request.getfixturevalue("pg_engine")


def test_append_reload_and_heads_round_trip(engine: sa.Engine) -> None:
    store = LedgerStore(engine, "ledger_")
    assert store.append(_records(10)) == range(0, 10)
    first = _head(store)
    store.add_head(first.with_cosignatures(*(cosign(first, peer) for peer in PEERS[:2])))
    assert store.append(_records(15, first=10)) == range(10, 25)
    second = _head(store, minute=15)
    store.add_head(second.with_cosignatures(cosign(second, PEERS[0])))
    # Later cosignatures for a stored head are merged, duplicates ignored.
    store.add_head(second.with_cosignatures(cosign(second, PEERS[0]), cosign(second, PEERS[3])))

    reopened = LedgerStore(engine, "ledger_")
    assert reopened.size == 25
    assert reopened.log.root() == store.log.root()
    assert reopened.leaf(12) == _records(1, first=12)[0]
    assert SignedRecord.from_bytes(reopened.leaf(3)).verify()
    assert reopened.leaves(5, 8) == _records(3, first=5)
    latest = reopened.latest_head()
    assert latest is not None and latest.without_cosignatures() == second.without_cosignatures()
    assert latest.valid_cosigners() == {PEERS[0].did, PEERS[3].did}
    assert [head.size for head in reopened.heads()] == [10, 25]
    assert reopened.heads(size=10)[0].valid_cosigners() == {PEERS[0].did, PEERS[1].did}
    assert reopened.heads(size=10, with_cosignatures=False)[0].cosignatures == ()
    with pytest.raises(StoreError, match="no record at index 25"):
        reopened.leaf(25)


def test_tables_are_append_only(engine: sa.Engine) -> None:
    store = LedgerStore(engine, "ro_")
    store.append(_records(3))
    store.add_head(_head(store))
    for statement in (
        "UPDATE ro_leaves SET data = data WHERE idx = 1",
        "DELETE FROM ro_leaves WHERE idx = 2",
        "DELETE FROM ro_heads",
    ):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert LedgerStore(engine, "ro_").size == 3


def test_fork_is_detected_stored_as_evidence_and_not_stored_as_head(engine: sa.Engine) -> None:
    store = LedgerStore(engine, "fork_")
    store.append(_records(6))
    honest = _head(store)
    store.add_head(honest)
    rival_log = LedgerStore(sa.create_engine("sqlite://"), "rival_")
    rival_log.append(_records(5) + _records(1, first=99))  # the same operator signs another history
    forked = SignedTreeHead.for_log(rival_log.log, OPERATOR, community=COMMUNITY, timestamp=START)
    with pytest.raises(ForkDetected) as raised:
        store.add_head(forked, local=False)  # as received from a peer
    assert raised.value.evidence.equivocator == OPERATOR.did
    assert store.forks() == [raised.value.evidence]
    assert store.heads(local=None) == [honest]
    # Two conflicting heads inside one batch are caught too, and nothing of the batch is stored.
    other_log = LedgerStore(sa.create_engine("sqlite://"), "other_")
    other_log.append(_records(4, first=40))
    batch = [
        SignedTreeHead.for_log(log, OPERATOR, community=COMMUNITY, size=4, timestamp=START)
        for log in (rival_log.log, other_log.log)
    ]
    with pytest.raises(ForkDetected) as raised:
        store.add_heads(batch, local=False)
    assert raised.value.evidence.size == 4
    assert len(store.forks()) == 2
    assert store.heads(local=None) == [honest]


def test_heads_that_do_not_match_the_log_are_refused(engine: sa.Engine) -> None:
    store = LedgerStore(engine, "bad_")
    store.append(_records(4))
    with pytest.raises(HeadError, match="covers more than the 4 stored records"):
        other = LedgerStore(sa.create_engine("sqlite://"), "x_")
        other.append(_records(5))
        store.add_head(SignedTreeHead.for_log(other.log, OPERATOR, community=COMMUNITY, timestamp=START))
    other = LedgerStore(sa.create_engine("sqlite://"), "y_")
    other.append(_records(3, first=50) + _records(1))
    with pytest.raises(HeadError, match="does not match the stored records"):
        store.add_head(SignedTreeHead.for_log(other.log, OPERATOR, community=COMMUNITY, timestamp=START))
    head = _head(store)
    with pytest.raises(HeadError, match="invalid signature"):
        store.add_head(
            SignedTreeHead(head.community, head.size, head.root, head.timestamp, head.signer, bytes(64))
        )
    assert store.heads(local=None) == []


def test_peer_heads_are_kept_apart_from_local_heads(engine: sa.Engine) -> None:
    store = LedgerStore(engine, "peer_")
    other = LedgerStore(sa.create_engine("sqlite://"), "o_")
    other.append(_records(7))
    peer_head = SignedTreeHead.for_log(other.log, PEERS[1], community="urn:other", timestamp=START)
    store.add_head(peer_head, local=False)
    assert store.heads() == []
    assert store.heads(local=False) == [peer_head]
    assert LedgerStore(engine, "peer_").heads(local=False, community="urn:other") == [peer_head]


def test_prefixes_isolate_logs_and_are_validated(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'two.db'}")
    a, b = LedgerStore(engine, "a_"), LedgerStore(engine, "b_")
    a.append(_records(3))
    assert (LedgerStore(engine, "a_").size, LedgerStore(engine, "b_").size) == (3, 0)
    assert b.table_names() == ["b_leaves", "b_signers", "b_heads", "b_cosignatures", "b_forks"]
    for bad in ("", "1abc", "drop table;", "x" * 40):
        with pytest.raises(StoreError, match="table prefix"):
            LedgerStore(engine, bad)


def test_second_writer_is_refused(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    first, second = LedgerStore(engine), LedgerStore(engine)
    first.append(_records(2))
    with pytest.raises(StoreError, match="another writer"):
        second.append(_records(1, first=2))
    assert LedgerStore(engine).size == 2
    with pytest.raises(StoreError, match="not bytes"):
        first.append(["text"])  # type: ignore[list-item]


# --------------------------------------------------------------------------- tampering (SQLite)


@pytest.fixture
def sealed(tmp_path) -> sa.Engine:
    """A SQLite log of 20 records with heads at sizes 8 and 20, and its triggers dropped (an attacker)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'sealed.db'}")
    store = LedgerStore(engine)
    store.append(_records(8))
    store.add_head(_head(store))
    store.append(_records(12, first=8))
    store.add_head(_head(store, minute=15))
    with engine.begin() as conn:
        for table in ("leaves", "heads"):
            for action in ("update", "delete"):
                conn.execute(sa.text(f"DROP TRIGGER ledger_{table}_no_{action}"))
    return engine


def _tamper(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def test_untouched_log_verifies(sealed: sa.Engine) -> None:
    assert LedgerStore(sealed).size == 20


def test_changed_record_is_detected(sealed: sa.Engine) -> None:
    data = LedgerStore(sealed).leaf(5).replace(b'"amount_cents":5', b'"amount_cents":6')
    with sealed.begin() as conn:
        conn.execute(sa.text("UPDATE ledger_leaves SET data = :d WHERE idx = 5"), {"d": data})
    with pytest.raises(LedgerIntegrityError, match="first 8 stored records do not match"):
        LedgerStore(sealed)


def test_reordered_records_are_detected(sealed: sa.Engine) -> None:
    _tamper(
        sealed,
        "UPDATE ledger_leaves SET idx = -1 WHERE idx = 11",
        "UPDATE ledger_leaves SET idx = 11 WHERE idx = 12",
        "UPDATE ledger_leaves SET idx = 12 WHERE idx = -1",
    )
    with pytest.raises(LedgerIntegrityError, match="first 20 stored records do not match"):
        LedgerStore(sealed)


def test_deleted_record_is_detected(sealed: sa.Engine) -> None:
    _tamper(sealed, "DELETE FROM ledger_leaves WHERE idx = 3")
    with pytest.raises(LedgerIntegrityError, match="record 3 is missing"):
        LedgerStore(sealed)


def test_deleted_and_renumbered_record_is_detected(sealed: sa.Engine) -> None:
    _tamper(
        sealed,
        "DELETE FROM ledger_leaves WHERE idx = 3",
        "UPDATE ledger_leaves SET idx = idx - 1 WHERE idx > 3",
    )
    with pytest.raises(LedgerIntegrityError, match="first 8 stored records do not match"):
        LedgerStore(sealed)


def test_truncated_log_is_detected(sealed: sa.Engine) -> None:
    _tamper(sealed, "DELETE FROM ledger_leaves WHERE idx >= 15")
    with pytest.raises(LedgerIntegrityError, match="records were deleted"):
        LedgerStore(sealed)


def test_rewritten_head_is_detected(sealed: sa.Engine) -> None:
    # The attacker changes a record and recomputes the head's root, but cannot re-sign it.
    store = LedgerStore(sealed)
    records = store.leaves()
    records[2] = _records(1, first=77)[0]
    forged = LedgerStore(sa.create_engine("sqlite://"), "f_")
    forged.append(records)
    with sealed.begin() as conn:
        conn.execute(sa.text("UPDATE ledger_leaves SET data = :d WHERE idx = 2"), {"d": records[2]})
        for size in (8, 20):
            conn.execute(
                sa.text("UPDATE ledger_heads SET root = :r WHERE size = :s"),
                {"r": forged.log.root(size), "s": size},
            )
    with pytest.raises(LedgerIntegrityError, match="invalid signature"):
        LedgerStore(sealed)
    assert LedgerStore(sealed, verify=False).size == 20  # opening without checks is possible, explicitly
