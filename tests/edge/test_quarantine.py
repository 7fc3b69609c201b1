"""The quarantine table on SQLite and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest

from bright.edge.quarantine import Quarantine, entry_row, summarize
from bright.edge.senml import Rejection
from bright.twin.db import make_engine

US = 1_717_200_000_000_000  # 2024-06-01T00:00Z in microseconds


@pytest.fixture
def q(db_url):
    engine = make_engine(db_url)
    yield Quarantine(engine)
    engine.dispose()


def _fill(q: Quarantine) -> list[int]:
    return [
        q.add(
            "",
            "b/c1/m1/senml",
            b'[{"n":"x"}]',
            [Rejection(None, None, "unknown Meter")],
            size=1,
            received_us=US,
        ),
        q.add(
            "",
            "b/c1/m_2/senml",
            b"[1,2,3]",
            [Rejection(0, "a", "bad unit"), Rejection(2, "c", "NaN")],
            received_us=US + 1,
        ),
        q.add("t2", "b/c2/m1/senml", b"\xff", [Rejection(None, None, "not JSON")], received_us=US + 2),
    ]


def test_entries_keep_payload_topic_and_reasons(q):
    ids = _fill(q)
    e = q.get(ids[1])
    assert (e.topic, e.payload, e.tenant) == ("b/c1/m_2/senml", b"[1,2,3]", "")
    assert e.records == [0, 2] and e.rejected == 2 and e.status == "open" and e.attempts == 0
    assert e.rejections == [
        {"record": 0, "name": "a", "reason": "bad unit"},
        {"record": 2, "name": "c", "reason": "NaN"},
    ]
    assert e.reason == "record 0: bad unit (and 1 more)"
    assert e.received == pd.Timestamp("2024-06-01T00:00:00.000001Z")
    whole = q.get(ids[0])
    assert whole.records is None and whole.rejected == 1 and whole.reason == "payload: unknown Meter"
    d = q.get(ids[2]).as_dict()
    assert d["payload"] == "ff" and d["tenant"] == "t2"  # not UTF-8: shown in hex
    with pytest.raises(KeyError):
        q.get(999_999)


def test_list_filters_and_pages(q):
    ids = _fill(q)
    assert [e.id for e in q.list()] == ids  # oldest first
    assert [e.id for e in q.list(tenant="")] == ids[:2]
    # '_' in the prefix is a character, not a LIKE wildcard: 'b/c1/m_' matches m_2 only.
    assert [e.id for e in q.list(topic="b/c1/m_")] == [ids[1]]
    assert [e.id for e in q.list(topic="b/c1/")] == ids[:2]
    assert [e.id for e in q.list(limit=1, offset=1)] == [ids[1]]
    assert q.count() == 3 and q.count(tenant="t2") == 1 and q.count(status="replayed") == 0
    with pytest.raises(ValueError, match="status"):
        q.list(status="done")


def test_replay_marks_fixed_entries_and_updates_the_others(q):
    ids = _fill(q)
    seen = []

    def process(tenant, topic, payload, records, connection):
        seen.append((tenant, topic, records))
        if topic == "b/c1/m1/senml":
            return 1, []  # fixed
        return 0, [Rejection(2, "c", "still NaN")]

    rep = q.replay(process)
    assert rep.replayed == [ids[0]] and rep.still_open == ids[1:] and rep.readings_written == 1
    assert seen[1] == ("", "b/c1/m_2/senml", [0, 2])  # only the refused records are retried
    assert q.get(ids[0]).status == "replayed" and q.get(ids[0]).attempts == 1
    e = q.get(ids[1])
    assert e.status == "open" and e.attempts == 1 and e.records == [2] and e.reason == "record 2: still NaN"
    # A replay of chosen ids only touches those.
    rep = q.replay(process, [ids[2]])
    assert rep.still_open == [ids[2]] and q.get(ids[1]).attempts == 1


def test_delete_by_id_status_and_age(q):
    ids = _fill(q)
    assert q.delete([ids[0]]) == 1
    assert q.delete([]) == 0
    assert q.delete(before="2024-06-01T00:00:00.000002Z") == 1  # ids[1] only
    with pytest.raises(ValueError, match="refusing to delete every entry"):
        q.delete()
    with pytest.raises(ValueError, match="no time zone"):
        q.delete(before="2024-06-01T00:00")
    assert q.delete(status="open") == 1 and q.count(status=None) == 0


def test_entry_rows_need_a_reason():
    with pytest.raises(ValueError, match="at least one rejection"):
        entry_row("", "t", b"", [])
    assert summarize([]) == ""


def test_ids_beyond_the_64_bit_column_are_refused_not_overflowed(q):
    """Regression: an id > 2**63-1 reached the driver (SQLite OverflowError -> HTTP 500)."""
    ids = _fill(q)
    with pytest.raises(ValueError, match=r"1\.\.9223372036854775807; got 9223372036854775808"):
        q.delete([ids[0], 2**63])
    with pytest.raises(ValueError, match="got 0"):
        q.replay(lambda *a: (0, []), [0])
    with pytest.raises(KeyError):
        q.get(2**63)
    assert q.count(status=None) == 3  # nothing deleted by the refused call
    assert q.delete([2**63 - 1]) == 0  # the largest id is a valid (absent) id


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "needle"),
    [
        ("POST", "/api/edge/quarantine/replay", [1, 2**63], "ids", "got 9223372036854775808"),
        ("POST", "/api/edge/quarantine/replay", [2**70], "ids", "got 1180591620717411303424"),
        ("POST", "/api/edge/quarantine/replay", [0], "ids", "got 0"),
        ("GET", "/api/edge/quarantine?offset=9223372036854775808", None, "offset", "offset must be"),
        ("GET", "/api/edge/quarantine?limit=0", None, "limit", "limit must be"),
    ],
)
def test_api_names_the_out_of_range_parameter(
    db_url: str, method: str, path: str, body: object, field: str, needle: str
) -> None:
    """Regression (schemathesis): huge integer ids gave a 500; now 400 BadRequestData naming them."""
    from fastapi.testclient import TestClient

    from bright.api.app import create_app
    from bright.config import Settings

    app = create_app(Settings(database_url=db_url, auth="open"))
    try:
        with TestClient(app) as client:
            r = client.request(method, path, json=body)
            assert r.status_code == 400, r.text
            problem = r.json()
            assert problem["type"].endswith("/BadRequestData") and problem["field"] == field
            assert needle in problem["detail"]
            ok = client.post("/api/edge/quarantine/replay", json=[2**63 - 1])
            assert ok.status_code == 200 and ok.json()["replayed"] == [] == ok.json()["still_open"]
            big = client.delete(f"/api/edge/quarantine/{2**63}")
            assert big.status_code == 400 and "entry_id" in big.json()["detail"]
    finally:
        app.state.twin.engine.dispose()
