"""The demo network end to end: a reduced network (3 communities + the city) through every step.

Checks numbers across components: the city's aggregate (federated reads of every node) against the
KPIs each node publishes and against the figures each build computed; the ledger's signed
settlement records against the node's sharing and settlement APIs; proofs verified offline with
the operator's and witnesses' keys; and every node process gone after shutdown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from bright.network.demo_nodes import DemoOptions, DemoResult, run_demo
from bright.services.demo_network import plan_network

pytestmark = pytest.mark.xdist_group("demo_network")

DAYS = 10


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def _ledger_sums(database_url: str) -> dict[str, Any]:
    """Sums of the signed settlement records of a node's log, read from its database."""
    from bright.config import Settings
    from bright.services.ledger import LedgerNode

    node = LedgerNode.open(Settings(database_url=database_url))
    try:
        shared = amount = records = 0
        for i in range(node.store.size):
            rec = node.record(i)
            if rec.kind != "settlement":
                continue
            records += 1
            shared += int(rec.body["shared_offtake_wh"])
            amount += int(rec.body["amount_cents"])
        return {"records": records, "shared_offtake_wh": shared, "amount_cents": amount}
    finally:
        node.close()


CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def _screenshots(city_url: str, school_url: str, school_id: str) -> None:
    """The README tour's screenshots (docs/img/demo-*.png), when Playwright and chromium are here."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return
    if not Path(CHROMIUM).exists():
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            resp = page.goto(f"{city_url}/demo", wait_until="networkidle")
            assert resp is not None and resp.status == 200
            # The network page lists every community with its figures and its node.
            assert page.locator("#communities tr").count() == 4
            page.screenshot(path=str(IMG / "demo-network.png"), full_page=True)
            resp = page.goto(f"{school_url}/communities/{school_id}", wait_until="networkidle")
            assert resp is not None and resp.status == 200
            page.screenshot(path=str(IMG / "demo-school-node.png"), full_page=True)
            page.goto(f"{school_url}/login")
            page.get_by_label("User name").fill("manager")
            page.get_by_label("Password").fill("manager-demo")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_load_state()
            resp = page.goto(f"{school_url}/communities/{school_id}/sharing", wait_until="networkidle")
            assert resp is not None and resp.status == 200, resp and resp.status
            page.screenshot(path=str(IMG / "demo-school-sharing.png"), full_page=True)
        finally:
            browser.close()


def test_reduced_demo_network_end_to_end(tmp_path: Path) -> None:
    options = DemoOptions(
        directory=tmp_path / "demo",
        city_port=0,
        first_port=0,
        schools=1,
        kinds=("houses", "sme"),
        size=0.5,
        days=DAYS,
        workers=2,
        serve=False,
    )
    checked: dict[str, Any] = {}

    def check(result: DemoResult) -> None:
        statuses = result.stage_statuses()
        for stage in ("twin", "metering", "balance", "settlement", "sbright", "forecast", "schedule", "card"):
            assert statuses[stage] == "ok", (stage, statuses[stage])
        for stage in ("nodes", "ledger", "federation", "aggregate", "discovery"):
            assert statuses[stage] == "ok", (stage, statuses[stage])
        assert statuses["live_ingest"].startswith("skipped")  # no broker given
        # The other components' steps (mobility 2030, service offers, data policies) ran for real.
        for stage in ("mobility", "offers", "policies"):
            assert statuses[stage] == "ok", (stage, statuses[stage])
        for plan in result.plans:
            assert result.builds[plan.key].stage("mobility").figures["year"] == 2030
            assert result.network["policies"].figures[plan.key]["in_force"] >= 1
        city = result.nodes["city"]
        nodes = [result.nodes[p.key] for p in result.plans]
        assert len(nodes) == 3 and result.network["nodes"].figures["registered"] == 3

        # Federation: the city answers for the three communities.
        assert result.network["federation"].figures["communities"] == 3

        # The city's aggregate = the sum of what each node publishes = the sum of what each build computed.
        agg = result.network["aggregate"].figures
        assert agg["communities"] == 3 and agg["reporting"] == 3 and agg["partial"] is False
        assert agg["members"] == sum(len(p.members) for p in result.plans)
        assert agg["pv_kwp"] == pytest.approx(sum(m.pv_kwp for p in result.plans for m in p.members), abs=0.5)
        for ind in ("offtake_kwh", "injection_kwh", "shared_kwh", "co2_avoided_kg"):
            built = sum(b.stage("balance").figures[ind] for b in result.builds.values())
            assert agg[f"nodes_{ind}"] == pytest.approx(built, rel=1e-9), ind
            assert agg[f"city_{ind}"] == pytest.approx(built, rel=1e-9), ind
        assert agg["self_sufficiency"] == pytest.approx(agg["city_shared_kwh"] / agg["city_offtake_kwh"])
        assert 0 < agg["city_shared_kwh"] < agg["city_offtake_kwh"]

        # The settlement prices exactly the shared energy: purchases = community price x shared kWh.
        for b in result.builds.values():
            st, bal = b.stage("settlement").figures, b.stage("balance").figures
            assert st["shared_kwh"] == pytest.approx(bal["shared_kwh"], rel=1e-9)
            assert st["community_purchase_eur"] == pytest.approx(0.17 * st["shared_kwh"], rel=1e-9)
            assert st["community_purchase_eur"] == pytest.approx(
                st["community_sales_eur"] + st["community_account_eur"]
            )

        # The ledger: the last day's signed records match the node's sharing and settlement APIs,
        # the witnesses countersigned, a proof verified offline.
        ledger = result.network["ledger"].figures
        day = (pd.Timestamp("2017-01-01", tz="Europe/Brussels") - pd.Timedelta(days=1)).date().isoformat()
        with httpx.Client(timeout=30) as client:
            for plan, node in zip(result.plans, nodes, strict=True):
                fig = ledger[plan.key]
                assert fig["verified"] is True
                assert fig["cosigned"] == fig["witnesses"] == 2
                assert fig["records"] == fig["intervals"] * len(plan.members) == 96 * len(plan.members)
                params = {"start": day, "end": "2017-01-01"}
                cid = plan.community_id
                sharing = client.get(f"{node.url}/api/communities/{cid}/sharing", params=params).json()
                settle = client.get(f"{node.url}/api/communities/{cid}/settlement", params=params).json()
                sums = _ledger_sums(node.database_url)
                assert sums["records"] == fig["records"]
                n = sums["records"]
                assert abs(sums["shared_offtake_wh"] - 1000 * sharing["community"]["shared_kwh"]) <= 0.5 * n
                # What members pay the community for shared kWh minus what it pays for their injection.
                money = settle["community"]["community_eur"] - settle["community"]["community_sales_eur"]
                assert abs(sums["amount_cents"] - 100 * money) <= 0.5 * n
            # The dashboard page of the network links every community node.
            page = client.get(f"{city.url}/demo").text
            for node in nodes:
                assert node.url in page
            # ... and it is what http://127.0.0.1:8000/ opens.
            home = client.get(f"{city.url}/", follow_redirects=False)
            assert home.status_code == 307 and home.headers["location"] == "/demo"
        _screenshots(city.url, nodes[0].url, result.plans[0].community_id)
        # Discovery ranks the two other communities for the school's.
        like = result.network["discovery"].figures["like"]
        assert {m["name"] for m in like} == {p.name for p in result.plans if p.kind != "school"}
        checked["pids"] = result.network["nodes"].figures["pids"]

    t0 = time.perf_counter()
    result = run_demo(options, on_ready=check)
    assert checked["pids"] and len(checked["pids"]) == 4
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in checked["pids"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(p) for p in checked["pids"]), "a node process survived the shutdown"
    assert all(n.proc is not None and n.proc.poll() is not None for n in result.nodes.values())
    import multiprocessing

    assert not multiprocessing.active_children(), "a build worker survived"
    print(f"reduced demo network in {time.perf_counter() - t0:.1f} s wall")


_SUPERVISED = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from bright.network.demo_nodes import NodeProcess, NodeSupervisor, _signals_end, _wait_forever, free_port
    d = Path(sys.argv[1])
    s = NodeSupervisor(grace_s=5)
    nodes = [NodeProcess(f"n{i}", "community", "127.0.0.1", free_port(), f"sqlite:///{d / f'n{i}.db'}",
                         env={"BRIGHT_AUTH": "open"}, log_path=d / f"n{i}.log") for i in range(2)]
    try:
        with _signals_end(s):
            for n in nodes:
                s.start(n)
            s.wait_healthy(nodes)
            print(json.dumps(s.pids()), flush=True)
            _wait_forever(s)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_end_every_node(tmp_path: Path, sig: signal.Signals) -> None:
    # Started as a shell starts a background job: SIGINT ignored; Ctrl-C must still stop it.
    pids: list[int] = []
    proc = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISED, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no output"
        pids = json.loads(line)
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert "stopped" in out, err
        assert proc.returncode == 0
        assert all(_gone(p) for p in pids), "a node outlived the orchestrator"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in pids:  # never leave a node behind, even when the test failed
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def test_plan_network_has_the_kinds_and_real_schools() -> None:
    plans = plan_network()
    assert [p.kind for p in plans] == ["school", "school", "school", "social_housing", "houses", "sme"]
    from bright import datasets

    schools = datasets.brussels_schools()
    for p in plans[:3]:
        row = schools[schools["site_id"].astype(str) == p.key.removeprefix("school-")]
        assert len(row) == 1 and float(row["lat"].iloc[0]) == pytest.approx(p.site["lat"])
    assert len({p.key for p in plans}) == 6
    housing = plans[3]
    key = housing.sharing_key()
    assert key is not None and sum(key.values()) == pytest.approx(100.0)
    assert all(m.pv_kwp == 0 for m in housing.members if f"{housing.key}:{m.key}" in " ".join(key))
    houses = plans[4]
    assert sum(1 for m in houses.members if m.pv_kwp > 0) >= len(houses.members) // 2
    with pytest.raises(ValueError, match="unknown community kind 'castle'"):
        plan_network(kinds=("castle",))


def test_live_window_through_mqtt_gives_the_same_year(tmp_path: Path, mqtt_broker: tuple[str, int]) -> None:
    """The last days through the MQTT simulator and the node's ingest = the same readings written directly."""
    import uuid

    from bright.network.demo_nodes import MqttLiveIngest
    from bright.services.demo_network import build_community, demo_period

    host, port = mqtt_broker
    plan = plan_network(schools=0, kinds=("houses",), size=0.5)[0]
    start, end = demo_period(7)
    stages = ("twin", "metering", "live_ingest", "balance")
    direct = build_community(plan, f"sqlite:///{tmp_path / 'direct.db'}", start=start, end=end, only=stages)
    hook = MqttLiveIngest(f"mqtt://{host}:{port}", f"brightdemotest{uuid.uuid4().hex[:8]}", timeout_s=60)
    live = build_community(
        plan,
        f"sqlite:///{tmp_path / 'live.db'}",
        start=start,
        end=end,
        live_days=2,
        live_ingest=hook,
        only=stages,
    )
    assert [s.status for s in direct.stages] == [
        "ok",
        "ok",
        "skipped: no --mqtt broker: readings written directly",
        "ok",
    ]
    assert all(s.ok for s in live.stages), [s.status for s in live.stages]
    ingest = live.stage("live_ingest").figures
    members_with_pv = sum(1 for m in plan.members if m.pv_kwp)
    # Two days of quarter-hours: offtake and injection of every meter, production of every PV device.
    assert ingest["published"] == ingest["written"] == 2 * 96 * (2 * len(plan.members) + members_with_pv)
    assert ingest["quarantined"] == 0
    assert (
        live.stage("metering").figures["values"] + ingest["written"]
        == direct.stage("metering").figures["values"]
    )
    for ind in ("offtake_kwh", "injection_kwh", "shared_kwh"):
        assert live.stage("balance").figures[ind] == pytest.approx(
            direct.stage("balance").figures[ind], rel=1e-9
        )


def test_network_page_shows_each_community_and_escapes() -> None:
    from bright.network.demo_nodes import network_page

    agg = {
        "period": "2016-01-01",
        "totals": {
            "communities": 2,
            "members": {"total": 20},
            "technologies": {"pv_kwp": 150.0},
            "kpis": {"shared_kwh": {"value": 12_345.0}, "self_sufficiency": {"value": 0.125}},
        },
        "nodes": [{"node": "a", "communities": ["urn:ngsi-ld:EnergyCommunity:a"]}],
        "communities": [
            {
                "id": "urn:ngsi-ld:EnergyCommunity:a",
                "name": "<École> & co",
                "node": "a",
                "municipality": "Ixelles",
                "members": {"total": 12},
                "technologies": {"pv_kwp": 100.0},
                "kpis": {"offtake_kwh": 50_000.0, "shared_kwh": 10_000.0, "self_sufficiency": 0.2},
            },
            {
                "id": "urn:ngsi-ld:EnergyCommunity:b",
                "name": "B",
                "node": "b",
                "municipality": None,
                "members": {"total": 8},
                "technologies": {"pv_kwp": 50.0},
                "kpis": {},
            },
        ],
    }
    page = network_page(agg, "a=http://127.0.0.1:9001,b=http://127.0.0.1:9002", "http://127.0.0.1:9000")
    assert "&lt;École&gt; &amp; co" in page and "<École>" not in page
    assert "http://127.0.0.1:9001/communities/urn:ngsi-ld:EnergyCommunity:a" in page
    assert "http://127.0.0.1:9002/communities/urn:ngsi-ld:EnergyCommunity:b" in page
    assert "12.3 MWh" in page and "12.5%" in page and "20.0%" in page and "50.0" in page
    assert page.count("<tr>") == 3  # the header and one row per community
    empty = network_page(None, "", "http://127.0.0.1:9000", "city down")
    assert "No aggregate: city down" in empty


def test_a_busy_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    import socket

    from bright.network.demo_nodes import check_ports_free, free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port\\(s\\) {port} on 127.0.0.1 are in use"):
            check_ports_free("127.0.0.1", [free_port(), port])
    check_ports_free("127.0.0.1", [free_port()])


def test_concurrent_live_ingests_keep_to_their_community(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    """Two communities built side by side through one broker: each ingest gets only its own packs."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from bright.network.demo_nodes import MqttLiveIngest
    from bright.services.demo_network import build_community, demo_period

    host, port = mqtt_broker
    plans = plan_network(schools=1, kinds=("houses",), size=0.3)
    start, end = demo_period(3)
    hook = MqttLiveIngest(f"mqtt://{host}:{port}", f"brightdemotest{uuid.uuid4().hex[:8]}", timeout_s=60)

    def build(plan: Any) -> Any:
        url = f"sqlite:///{tmp_path / (plan.key + '.db')}"
        return build_community(
            plan,
            url,
            start=start,
            end=end,
            live_days=1,
            live_ingest=hook,
            only=("twin", "metering", "live_ingest"),
        )

    with ThreadPoolExecutor(2) as pool:
        builds = list(pool.map(build, plans))
    for plan, b in zip(plans, builds, strict=True):
        assert b.stage("live_ingest").ok, b.stage("live_ingest").status
        fig = b.stage("live_ingest").figures
        members_with_pv = sum(1 for m in plan.members if m.pv_kwp)
        assert fig["written"] == fig["published"] == 96 * (2 * len(plan.members) + members_with_pv)
        assert fig["quarantined"] == 0
