"""The ingest pipeline without a broker: validation, writes, quarantine and replay, on both backends."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest

from bright.edge.mqtt import EntityDirectory, Ingestor, Message, limits_of
from bright.edge.quarantine import Quarantine
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.db import make_engine
from bright.twin.service import TwinService
from bright.twin.store import TwinStore

B = "https://w3id.org/bright/ns#"
T0 = 1_717_200_000  # 2024-06-01T00:00Z
ENTITIES = [
    {"id": "urn:ngsi-ld:Meter:c1:m1", "type": "Meter"},
    {
        "id": "urn:ngsi-ld:Meter:c1:m2",
        "type": "Meter",
        "maxPower": {"type": "Property", "value": 4000, "unitCode": "WTT"},
    },
    {
        "id": "urn:ngsi-ld:PhotovoltaicDevice:c1:m1",
        "type": "PhotovoltaicDevice",
        "peakPower": {"type": "Property", "value": 4.0},
    },
    {
        "id": "urn:ngsi-ld:Battery:c1:m1",
        "type": "Battery",
        "capacity": {"type": "Property", "value": 10.0},
        "maxChargePower": {"type": "Property", "value": 5.0},
        "maxDischargePower": {"type": "Property", "value": 6.0},
    },
]


@pytest.fixture
def node(db_url):
    engine = make_engine(db_url)
    svc = TwinService(engine)
    assert not svc.batch_upsert("", ENTITIES, svc.resolve_context(BRIGHT_CONTEXT_URL))["errors"]
    ingestor = Ingestor(engine, root="t", clock=lambda: T0 + 3600.0)
    yield ingestor, svc
    engine.dispose()


def pack(*records) -> bytes:
    return orjson.dumps(list(records))


def offtake_day(member: str = "m1", n: int = 4, kwh: float = 0.25) -> Message:
    recs = [{"bn": f"urn:dev:p1:{member}:", "bt": T0, "bu": "kWh", "n": "offtake", "v": kwh}]
    recs += [{"n": "offtake", "t": 900 * k, "v": kwh} for k in range(1, n)]
    return Message(f"t/c1/{member}/senml", pack(*recs))


def test_readings_land_in_the_twin_series(node):
    ing, _ = node
    res = ing.process(
        [
            offtake_day(n=4, kwh=0.25),
            Message("t/c1/m1/senml", pack({"bt": T0, "n": "offtake", "u": "kWh", "s": 1520.5})),
            Message(
                "t/c1/m1/pv/senml",
                pack({"bt": T0, "n": "power", "u": "W", "v": 3100}, {"n": "production", "u": "Wh", "v": 700}),
            ),
        ]
    )
    assert (res.messages, res.readings, res.rejected, res.quarantined) == (3, 7, 0, 0)
    h = ing.series.history("urn:ngsi-ld:Meter:c1:m1", B + "offtakeKwh")
    assert h.to_numpy().tolist() == [0.25] * 4
    assert h.index[0] == pd.Timestamp("2024-06-01T00:00Z") and h.index[-1] == pd.Timestamp(
        "2024-06-01T00:45Z"
    )
    kinds = {
        i.attribute: (i.kind, i.unit_code) for i in ing.series.series(entity_id="urn:ngsi-ld:Meter:c1:m1")
    }
    # Interval energies sum on aggregation; a register is a level and averages.
    assert kinds == {B + "offtakeKwh": ("energy", "KWH"), B + "offtakeRegisterKwh": ("power", "KWH")}
    pv = ing.series.history("urn:ngsi-ld:PhotovoltaicDevice:c1:m1", B + "powerKw")
    assert pv.tolist() == [3.1]
    assert ing.series.history("urn:ngsi-ld:PhotovoltaicDevice:c1:m1", B + "productionKwh").tolist() == [0.7]


def test_relative_times_resolve_with_the_ingest_clock(node):
    ing, _ = node
    ing.process([Message("t/c1/m1/senml", pack({"n": "power", "u": "kW", "v": 2.0, "t": -60}))])
    h = ing.series.history("urn:ngsi-ld:Meter:c1:m1", B + "powerKw")
    assert h.index[0] == pd.Timestamp(T0 + 3600 - 60, unit="s", tz="UTC")


def test_redelivered_messages_change_nothing(node):
    ing, _ = node
    msg = offtake_day(n=8)
    ing.process([msg])
    again = ing.process([msg, msg])  # QoS 1 may deliver twice
    assert again.readings == 16
    h = ing.series.history("urn:ngsi-ld:Meter:c1:m1", B + "offtakeKwh")
    assert len(h) == 8 and h.sum() == pytest.approx(2.0)


def test_bad_records_are_quarantined_and_the_good_ones_written(node):
    ing, _ = node
    raw = pack(
        {"bn": "urn:dev:p1:m2:", "bt": T0, "n": "power", "u": "kW", "v": 3.0},
        {"n": "power", "u": "kW", "t": 10, "v": 4.5},  # m2's maxPower is 4000 W
        {"n": "power", "u": "kw", "t": 20, "v": 1.0},  # not a SenML unit
        {"n": "offtake", "u": "kWh", "t": 30, "v": 0.1},  # energy off the 15-minute grid
        {"n": "power", "u": "W", "t": 40, "v": 2000},
    )
    res = ing.process([Message("t/c1/m2/senml", raw)])
    assert (res.readings, res.rejected, res.quarantined) == (2, 3, 1)
    (e,) = ing.quarantine.list()
    assert e.topic == "t/c1/m2/senml" and e.payload == raw and e.records == [1, 2, 3]
    reasons = [r["reason"] for r in e.rejections]
    assert "beyond the entity's 4 kW" in reasons[0]
    assert "'kw' is not a SenML unit" in reasons[1]
    assert "does not start a 15-minute interval" in reasons[2]
    assert e.reason.startswith("record 1: power value 4.5 kW is beyond") and e.reason.endswith("(and 2 more)")
    assert ing.series.history("urn:ngsi-ld:Meter:c1:m2", B + "powerKw").tolist() == [3.0, 2.0]


def test_unknown_meters_and_foreign_topics_are_quarantined_whole(node):
    ing, _ = node
    res = ing.process(
        [
            offtake_day("m9", n=3),
            Message("t/c1/m1/status", b"{}"),
            Message("t/c1/m1/senml", b"garbage"),
            offtake_day("m1", n=2),
        ]
    )
    assert (res.readings, res.quarantined) == (2, 3)
    reasons = {e.topic: e for e in ing.quarantine.list()}
    assert (
        reasons["t/c1/m9/senml"].reason
        == "payload: unknown Meter urn:ngsi-ld:Meter:c1:m9 (no such entity in the twin)"
    )
    assert reasons["t/c1/m9/senml"].records is None and reasons["t/c1/m9/senml"].rejected == 3
    assert "does not carry SenML" in reasons["t/c1/m1/status"].reason
    assert "not JSON" in reasons["t/c1/m1/senml"].reason


def test_replay_after_the_meter_is_created(node):
    ing, svc = node
    ing.process([offtake_day("m9", n=3)])
    rep = ing.replay()
    assert rep.replayed == [] and len(rep.still_open) == 1  # still unknown
    svc.batch_upsert(
        "", [{"id": "urn:ngsi-ld:Meter:c1:m9", "type": "Meter"}], svc.resolve_context(BRIGHT_CONTEXT_URL)
    )
    rep = ing.replay()
    assert rep.readings_written == 3 and len(rep.replayed) == 1
    assert ing.series.history("urn:ngsi-ld:Meter:c1:m9", B + "offtakeKwh").sum() == pytest.approx(0.75)
    (e,) = ing.quarantine.list(status="replayed")
    assert e.attempts == 2 and e.last_attempt is not None
    assert ing.quarantine.count() == 0


def test_replay_of_records_only_retries_the_refused_ones(node):
    ing, svc = node
    raw = pack(
        {"bn": "x:", "bt": T0, "n": "power", "u": "kW", "v": 3.0},
        {"n": "power", "u": "kW", "t": 10, "v": 4.5},
    )
    ing.process([Message("t/c1/m2/senml", raw)])
    # Fix: raise m2's limit to 5 kW; the replay writes only record 1 (record 0 is already stored).
    svc.batch_upsert(
        "",
        [{"id": "urn:ngsi-ld:Meter:c1:m2", "type": "Meter", "maxPower": {"type": "Property", "value": 5.0}}],
        svc.resolve_context(BRIGHT_CONTEXT_URL),
    )
    rep = ing.replay()
    assert rep.readings_written == 1 and len(rep.replayed) == 1
    assert ing.series.history("urn:ngsi-ld:Meter:c1:m2", B + "powerKw").tolist() == [3.0, 4.5]


def test_a_series_store_refusal_does_not_block_the_other_messages(node):
    ing, _ = node
    # An offtake series imported earlier in Wh: SenML offtake is written in kWh and conflicts.
    ing.series.write(
        pd.DataFrame(
            {"urn:ngsi-ld:Meter:c1:m2": [250.0]}, index=pd.DatetimeIndex([pd.Timestamp("2024-01-01T00:00Z")])
        ),
        attribute=B + "offtakeKwh",
        unit_code="WHR",
    )
    res = ing.process([offtake_day("m2", n=2), offtake_day("m1", n=2)])
    assert res.readings == 2 and res.quarantined == 1
    (e,) = ing.quarantine.list()
    assert e.topic == "t/c1/m2/senml" and "refused by the series store" in e.reason and "WHR" in e.reason
    assert len(ing.series.history("urn:ngsi-ld:Meter:c1:m1", B + "offtakeKwh")) == 2
    # Alone in its batch, the message is quarantined too (never raised into the MQTT writer).
    res = ing.process([offtake_day("m2", n=1)])
    assert (res.readings, res.quarantined) == (0, 1) and ing.quarantine.count() == 2


def test_listeners_receive_committed_readings(node):
    ing, _ = node
    seen = []
    ing.listeners.append(seen.append)
    ing.process([offtake_day(n=3)])
    (c,) = seen
    assert (
        len(c) == 3
        and set(c.entity_id) == {"urn:ngsi-ld:Meter:c1:m1"}
        and c.value.sum() == pytest.approx(0.75)
    )


# --- limits and the entity cache ------------------------------------------------------------------
def test_limits_come_from_the_entity(db_url):
    store = TwinStore(make_engine(db_url))
    svc = TwinService(store.engine)
    svc.batch_upsert("", ENTITIES, svc.resolve_context(BRIGHT_CONTEXT_URL))
    docs = store.get_many("", [e["id"] for e in ENTITIES])
    assert limits_of(docs["urn:ngsi-ld:Meter:c1:m1"]).max_power_kw == 250.0  # the default
    assert limits_of(docs["urn:ngsi-ld:Meter:c1:m1"], default_max_power_kw=40).max_power_kw == 40
    assert limits_of(docs["urn:ngsi-ld:Meter:c1:m2"]).max_power_kw == 4.0  # 4000 W
    assert limits_of(docs["urn:ngsi-ld:PhotovoltaicDevice:c1:m1"]).max_power_kw == 5.0  # 4 kWp x 1.25
    assert limits_of(docs["urn:ngsi-ld:Battery:c1:m1"]).max_power_kw == 6.0
    store.engine.dispose()


def test_the_directory_caches_and_listens_to_the_twin(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
    svc = TwinService(engine)
    clock = [0.0]
    directory = EntityDirectory(svc.store, ttl_s=60, missing_ttl_s=5, clock=lambda: clock[0])
    svc.store.listeners.append(directory.on_entity_event)
    assert directory.limits("", ["urn:ngsi-ld:Meter:c1:m1"]) == {"urn:ngsi-ld:Meter:c1:m1": None}
    directory.limits("", ["urn:ngsi-ld:Meter:c1:m1"])
    assert directory.lookups == 1  # the miss is cached
    svc.batch_upsert("", ENTITIES[:1], svc.resolve_context(BRIGHT_CONTEXT_URL))  # listener drops the entry
    assert directory.limits("", ["urn:ngsi-ld:Meter:c1:m1"])["urn:ngsi-ld:Meter:c1:m1"] is not None
    assert directory.lookups == 2
    directory.limits("", ["urn:ngsi-ld:Meter:c1:m1"])
    clock[0] = 61.0  # expired
    directory.limits("", ["urn:ngsi-ld:Meter:c1:m1"])
    assert directory.lookups == 3
    engine.dispose()


def test_quarantine_rows_survive_a_failed_write_of_nothing(tmp_path):
    # A payload with only refused records still commits its quarantine entry.
    engine = make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
    ing = Ingestor(engine, root="t")
    res = ing.process([Message("t/c1/m1/senml", b"[]")])
    assert res.quarantined == 1 and Quarantine(engine).list()[0].reason == "payload: the SenML pack is empty"
    engine.dispose()
