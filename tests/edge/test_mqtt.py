"""MQTT ingest against a real Mosquitto: mosquitto_pub and the simulator, quarantine, broker restart.

The shared broker on 127.0.0.1:1883 (``mqtt_broker`` fixture) is used with a unique topic root and
client ids per test. The restart test runs a Mosquitto of its own on a free port (persistence on)
and kills it with SIGKILL in the middle of a stream.
"""

from __future__ import annotations

import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest
from sqlalchemy import func, select

from bright.edge import mqtt as edge_mqtt
from bright.edge.live import LiveBoard
from bright.edge.mqtt import Ingestor, MqttIngest, MqttSettings
from bright.edge.senml import QUANTITIES
from bright.edge.simulator import Simulator, community_packs
from bright.services.demo import build_demo_community
from bright.twin.db import make_engine
from bright.twin.series import chunks_table, series_table
from bright.twin.service import TwinService

B = "https://w3id.org/bright/ns#"
T0 = 1_717_200_000  # 2024-06-01T00:00Z


def _required() -> bool:
    return os.environ.get("BRIGHT_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        msg = f"{name} is not installed (Debian package {'mosquitto-clients' if name.endswith(('_pub', '_sub')) else 'mosquitto'})"
        if _required():
            pytest.fail(f"{msg} and BRIGHT_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(msg)
    return path


def wait_until(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def forget_session(host: str, port: int, client_id: str) -> None:
    """Drop a persistent session from the shared broker (clean start, session expiry 0)."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    try:
        c.connect(host, port, clean_start=True)
        c.loop_start()
        time.sleep(0.05)
        c.disconnect()
        c.loop_stop()
    except OSError:
        pass


@pytest.fixture(scope="module")
def community():
    return build_demo_community()


@pytest.fixture
def twin(tmp_path, community):
    engine = make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
    svc = TwinService(engine)
    assert not svc.batch_upsert(
        "", community.entities, svc.resolve_context(community.entities[0]["@context"])
    )["errors"]
    yield engine
    engine.dispose()


@pytest.fixture
def root() -> str:
    return f"bright-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ingest(twin, mqtt_broker, root) -> Iterator[MqttIngest]:
    host, port = mqtt_broker
    cid = f"bright-test-ingest-{uuid.uuid4().hex[:8]}"
    ing = MqttIngest(
        Ingestor(twin, root=root), MqttSettings(url=f"mqtt://{host}:{port}", client_id=cid, root=root)
    )
    ing.start()
    yield ing
    ing.stop()
    forget_session(host, port, cid)


def stored(engine) -> tuple[int, dict[str, float], dict[str, int]]:
    s, c = series_table, chunks_table
    with engine.connect() as conn:
        rows = conn.execute(
            select(s.c.attr, func.sum(c.c.v_sum), func.sum(c.c.n))
            .select_from(s.join(c, c.c.series_id == s.c.id))
            .group_by(s.c.attr)
        ).all()
    return sum(int(n) for _, _, n in rows), {a: float(v) for a, v, _ in rows}, {a: int(n) for a, _, n in rows}


def expected(packs) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in packs:
        for q, v in p.sums.items():
            iri = QUANTITIES[q].attribute
            out[iri] = out.get(iri, 0.0) + v * (0.01 if q == "stateOfCharge" else 1.0)
    return out


def test_readings_published_with_mosquitto_pub_land_in_the_twin(ingest, twin, mqtt_broker, root, community):
    host, port = mqtt_broker
    pub = _binary("mosquitto_pub")
    c = community.key
    good = orjson.dumps(
        [
            {"bn": f"urn:dev:p1:{c}:home01:", "bt": T0, "bu": "kWh", "n": "offtake", "v": 0.125},
            {"n": "offtake", "t": 900, "v": 0.25},
            {"n": "injection", "t": 900, "v": 0.0},
            {"n": "power", "u": "W", "t": 1000, "v": 1500},
        ]
    ).decode()
    subprocess.run(
        [pub, "-h", host, "-p", str(port), "-q", "1", "-t", f"{root}/{c}/home01/senml", "-m", good],
        check=True,
        timeout=10,
    )
    wait_until(lambda: ingest.stats.written >= 4, what="4 readings written")
    h = ingest.ingestor.series.history(f"urn:ngsi-ld:Meter:{c}:home01", B + "offtakeKwh")
    assert h.tolist() == [0.125, 0.25]
    assert ingest.ingestor.series.history(f"urn:ngsi-ld:Meter:{c}:home01", B + "powerKw").tolist() == [1.5]
    assert ingest.stats.acked >= 1
    # A device's status (retained, its MQTT will) is kept as its last word.
    status = f"{root}/{c}/home01/pv/status"
    subprocess.run(
        [pub, "-h", host, "-p", str(port), "-q", "1", "-t", status, "-m", '{"online": true}'],
        check=True,
        timeout=10,
    )
    wait_until(lambda: f"urn:ngsi-ld:PhotovoltaicDevice:{c}:home01" in ingest.stats.status, what="the status")
    assert ingest.stats.status[f"urn:ngsi-ld:PhotovoltaicDevice:{c}:home01"] == {"online": True}


def test_bad_payloads_end_in_quarantine_with_reasons(ingest, mqtt_broker, root, community):
    host, port = mqtt_broker
    pub = _binary("mosquitto_pub")
    c = community.key
    cases = {
        f"{root}/{c}/nobody/senml": '[{"n":"offtake","u":"kWh","v":0.1,"t":1717200000}]',
        f"{root}/{c}/home02/senml": '[{"bt":1717200000,"n":"power","u":"kW","v":NaN},{"n":"power","u":"kW","v":9999}]',
        f"{root}/{c}/home03/senml": "this is not senml",
        f"{root}/{c}/home04/battery/senml": '[{"bt":1717200000,"n":"stateOfCharge","u":"%","v":50}]',  # no battery there
    }
    for topic, payload in cases.items():
        subprocess.run(
            [pub, "-h", host, "-p", str(port), "-q", "1", "-t", topic, "-m", payload], check=True, timeout=10
        )
    q = ingest.ingestor.quarantine
    wait_until(lambda: q.count(topic=root) == 4, what="4 quarantine entries")
    by_topic = {e.topic: e for e in q.list(topic=root)}
    assert "unknown Meter" in by_topic[f"{root}/{c}/nobody/senml"].reason
    nan = by_topic[f"{root}/{c}/home02/senml"]
    assert [r["reason"] for r in nan.rejections] == [
        "value is NaN (a missing reading is not sent)",
        "power value 9999 kW is beyond the entity's 250 kW",
    ]
    assert "not JSON" in by_topic[f"{root}/{c}/home03/senml"].reason
    assert "unknown Battery" in by_topic[f"{root}/{c}/home04/battery/senml"].reason
    assert by_topic[f"{root}/{c}/home03/senml"].payload == b"this is not senml"


def test_simulator_readings_land_in_the_twin_with_live_updates(ingest, twin, mqtt_broker, root, community):
    host, port = mqtt_broker
    board = LiveBoard()
    ingest.ingestor.listeners.append(board.update)
    packs = list(
        community_packs(community, "2016-06-01T00:00Z", "2016-06-02T00:00Z", steps_per_pack=16, root=root)
    )
    with Simulator(f"mqtt://{host}:{port}", client_id=f"bright-test-sim-{uuid.uuid4().hex[:8]}") as sim:
        rep = sim.publish(packs)
    assert rep.messages == len(packs) and rep.readings == sum(p.readings for p in packs)
    wait_until(lambda: stored(twin)[0] >= rep.readings, what="every reading stored")
    n, sums, _ = stored(twin)
    assert n == rep.readings == 96 * (14 * 3 + 9 * 2 + 3 * 4)
    for iri, v in expected(packs).items():
        assert math.isclose(sums[iri], v, rel_tol=1e-9, abs_tol=1e-9), iri
    assert ingest.ingestor.quarantine.count(topic=root) == 0
    # The live board holds the newest reading of each series, as committed.
    meter = f"urn:ngsi-ld:Meter:{community.key}:school"
    t, kw = board.get("", meter, B + "powerKw")
    last = ingest.ingestor.series.history(meter, B + "powerKw", last_n=1)
    assert t == pd.Timestamp("2016-06-01T23:45Z") == last.index[-1] and kw == last.iloc[-1]


def test_a_node_restart_resumes_its_persistent_session(twin, mqtt_broker, root, community):
    """Readings published while the node is down are delivered when it comes back (same client id)."""
    host, port = mqtt_broker
    cid = f"bright-test-ingest-{uuid.uuid4().hex[:8]}"
    settings = MqttSettings(url=f"mqtt://{host}:{port}", client_id=cid, root=root)
    first = MqttIngest(Ingestor(twin, root=root), settings)
    first.start()
    first.stop()  # the session (and its subscriptions) stays on the broker
    packs = list(
        community_packs(community, "2016-06-01T00:00Z", "2016-06-01T04:00Z", steps_per_pack=4, root=root)
    )
    with Simulator(f"mqtt://{host}:{port}", client_id=f"bright-test-sim-{uuid.uuid4().hex[:8]}") as sim:
        rep = sim.publish(packs)
    second = MqttIngest(Ingestor(twin, root=root), settings)
    second.start()
    try:
        wait_until(lambda: stored(twin)[0] >= rep.readings, what="the readings queued while away")
        assert stored(twin)[0] == rep.readings
    finally:
        second.stop()
        forget_session(host, port, cid)


def test_run_entry_point_ingests_until_stopped(tmp_path, community, mqtt_broker, root):
    host, port = mqtt_broker
    db = f"sqlite:///{tmp_path / 'run.db'}"
    engine = make_engine(db)
    svc = TwinService(engine)
    svc.batch_upsert("", community.entities, svc.resolve_context(community.entities[0]["@context"]))
    stop = threading.Event()
    reports: list[int] = []
    cid = f"bright-test-run-{uuid.uuid4().hex[:8]}"
    worker = threading.Thread(
        target=edge_mqtt.run,
        kwargs={
            "mqtt_url": f"mqtt://{host}:{port}",
            "database_url": db,
            "root": root,
            "client_id": cid,
            "stats_every_s": 0.1,
            "stop": stop,
            "report": lambda st: reports.append(st.written),
        },
    )
    worker.start()
    try:
        wait_until(lambda: bool(reports), what="the ingest to run")
        packs = list(
            community_packs(community, "2016-06-01T10:00Z", "2016-06-01T11:00Z", steps_per_pack=4, root=root)
        )
        with Simulator(f"mqtt://{host}:{port}", client_id=f"bright-test-sim-{uuid.uuid4().hex[:8]}") as sim:
            rep = sim.publish(packs)
        wait_until(lambda: bool(reports) and reports[-1] >= rep.readings, what="the readings written")
    finally:
        stop.set()
        worker.join(timeout=15)
        forget_session(host, port, cid)
    assert not worker.is_alive() and stored(engine)[0] == rep.readings
    engine.dispose()


# --- a broker of our own, killed in the middle of a stream ------------------------------------------
class OwnBroker:
    def __init__(self, directory: Path) -> None:
        self.binary = _binary("mosquitto")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = directory / "mosquitto.conf"
        # Persistence on, the in-memory state (sessions, subscriptions, queued messages) saved every
        # 100 changes, so that a SIGKILL keeps the node's session. No queue limit: a node's broker
        # must never drop a slow consumer's messages.
        # Started as root, mosquitto drops to the 'mosquitto' user, which cannot write our temporary
        # directory: run it as the current user.
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"persistence true\npersistence_location {directory}/\nautosave_interval 100\n"
            "autosave_on_changes true\nmax_queued_messages 0\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._listening, timeout=10, what="mosquitto to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_broker(tmp_path) -> Iterator[OwnBroker]:
    broker = OwnBroker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def test_a_broker_killed_mid_stream_loses_nothing(twin, own_broker, community):
    """SIGKILL the broker in the middle of a stream, keep publishing while it is down, restart it.

    The first half of the stream is published and delivered; the broker is killed (no clean
    shutdown); the meters go on publishing the second half into the outage (their client keeps
    the unacknowledged packs and re-sends them); the broker comes back from its persistence file
    with the node's session, and the node reconnects and resumes. Count and sums must be exact.
    (The kill is placed after the broker delivered what it acknowledged: Mosquitto acknowledges a
    QoS 1 message before it is on disk, so a SIGKILL in those microseconds would lose it inside
    the broker whatever the clients do; see docs/edge.md.)
    """
    root = "bright"
    ing = MqttIngest(
        Ingestor(twin, root=root),
        MqttSettings(url=own_broker.url, client_id="node", root=root, reconnect_min_s=1, reconnect_max_s=1),
    )
    ing.start()
    # 4 days of the community in packs of one hour: 2,496 packs, 27,648 readings.
    packs = list(
        community_packs(community, "2016-03-01T00:00Z", "2016-03-05T00:00Z", steps_per_pack=4, root=root)
    )
    half = len(packs) // 2
    try:
        with Simulator(own_broker.url, client_id="meters", window=50) as sim:
            first = sim.publish(packs[:half], speed=4 * 86_400.0)
            wait_until(lambda: ing.stats.received >= half, what="the first half delivered")
            own_broker.kill()  # SIGKILL: no clean shutdown, no final save
            restarter = threading.Timer(1.0, own_broker.start)
            restarter.start()
            second = sim.publish(packs[half:], speed=4 * 86_400.0, timeout_s=60)  # into the outage
            restarter.join()
        wait_until(
            lambda: stored(twin)[0] >= first.readings + second.readings, timeout=30, what="every reading"
        )
        n, sums, counts = stored(twin)
        assert ing.stats.connects >= 2 and ing.stats.write_errors == 0
    finally:
        ing.stop()
    assert n == first.readings + second.readings == 96 * 4 * (14 * 3 + 9 * 2 + 3 * 4)
    for iri, v in expected(packs).items():
        assert math.isclose(sums[iri], v, rel_tol=1e-9, abs_tol=1e-9), iri
    assert counts[B + "offtakeKwh"] == 96 * 4 * (14 + 3)


def test_a_failing_database_keeps_the_messages_until_the_write_succeeds(
    ingest, twin, mqtt_broker, root, community
):
    from sqlalchemy.exc import OperationalError

    host, port = mqtt_broker
    real = ingest.ingestor.process
    failures = [2]

    def flaky(messages, **kw):
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(messages, **kw)

    ingest.ingestor.process = flaky  # type: ignore[method-assign]
    packs = list(
        community_packs(community, "2016-06-01T12:00Z", "2016-06-01T13:00Z", steps_per_pack=4, root=root)
    )
    with Simulator(f"mqtt://{host}:{port}", client_id=f"bright-test-sim-{uuid.uuid4().hex[:8]}") as sim:
        rep = sim.publish(packs)
    wait_until(lambda: stored(twin)[0] >= rep.readings, timeout=15, what="the readings after the retries")
    assert ingest.stats.write_errors == 2 and stored(twin)[0] == rep.readings
