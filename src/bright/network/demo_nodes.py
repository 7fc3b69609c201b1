"""The Brussels demo network as running processes: community nodes, the city node, the whole story.

``bright demo`` (``make demo``) runs :func:`run_demo`:

1. **build** (parallel worker processes): each community of
   :func:`bright.services.demo_network.plan_network` gets its own SQLite database under the demo
   directory, built by :func:`bright.services.demo_network.build_community` (twin, a year of
   metering, balance and settlement, S-BRIGHT, forecasts, flexibility schedule, 2030 mobility,
   card). With ``--mqtt URL`` the last days of metering come through the MQTT simulator
   (:class:`bright.edge.simulator.Simulator`) into the node's ingest (:class:`bright.edge.mqtt.MqttIngest`);
2. **nodes**: the city node (``--role network``) on the dashboard port, then one node process per
   community on its own port, each in its own process group, registered with the city
   (``BRIGHT_PARENT_URL``) and with two other community nodes as ledger witnesses
   (``BRIGHT_LEDGER_PEERS``); the orchestrator waits for ``/health`` and the registrations;
3. **ledger**: each node records the settlement of the last metered day (signed records, one tree
   head per quarter-hour) and asks its witnesses to countersign the head; a proof bundle of one
   record is then verified offline with the operator's and witnesses' keys;
4. **federation**: the city answers ``type=EnergyCommunity`` from every node; the city aggregate
   (``GET /api/network/aggregate``, if the city node has it) is checked against the sum of the
   communities' own KPIs;
5. **discovery**: "communities like this school's", ranked over the cards the city sees;
6. a **summary** table, then the network dashboard is served on ``http://127.0.0.1:8000`` (the
   city node, with ``/demo``: the network and a link to every community node) until Ctrl-C.

Every child ends with the orchestrator: nodes run in their own process groups and are stopped
(SIGTERM, then SIGKILL after a grace period) from ``finally`` blocks, an ``atexit`` handler and the
SIGINT/SIGTERM handlers. ``python -m bright.network.demo_nodes node ...`` is the entry point of one
node process.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import math
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from bright.services.demo_network import (
    BuildContext,
    CommunityBuild,
    CommunityPlan,
    StageResult,
    build_community,
    demo_period,
    plan_network,
)

__all__ = [
    "DemoOptions",
    "DemoResult",
    "NodeProcess",
    "NodeSupervisor",
    "free_port",
    "mqtt_live_ingest",
    "run_demo",
]

#: Community stages reported in the summary, in order.
COMMUNITY_STAGES = (
    "twin",
    "metering",
    "live_ingest",
    "balance",
    "settlement",
    "sbright",
    "forecast",
    "schedule",
    "mobility",
    "offers",
    "knowledge",
    "card",
)
#: Network stages reported in the summary, in order.
NETWORK_STAGES = ("nodes", "ledger", "federation", "aggregate", "discovery", "policies")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


@dataclass
class NodeProcess:
    """One node process of the demo network.

    Attributes
    ----------
    name
        Node id (the community key, or ``city``).
    role
        ``community`` or ``network``.
    port
        Its TCP port on the host.
    database_url
        Its own database.
    env
        Extra environment of the process (``BRIGHT_*``).
    log_path
        Where its output goes.
    proc
        The running process, once started.
    """

    name: str
    role: str
    host: str
    port: int
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class NodeSupervisor:
    """Starts node processes in their own process groups and ends every one of them.

    ``stop()`` runs from ``finally`` blocks, at interpreter exit (``atexit``) and is idempotent;
    a node that does not end within ``grace_s`` of SIGTERM is killed (SIGKILL to its group).
    """

    def __init__(self, *, grace_s: float = 8.0) -> None:
        self.nodes: list[NodeProcess] = []
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._stopped = False
        atexit.register(self.stop)

    def start(self, node: NodeProcess) -> NodeProcess:
        """Start ``python -m bright.network.demo_nodes node`` for ``node`` in a new process group."""
        env = {**os.environ, **node.env, "PYTHONUNBUFFERED": "1"}
        cmd = [
            sys.executable,
            "-m",
            "bright.network.demo_nodes",
            "node",
            "--host",
            node.host,
            "--port",
            str(node.port),
            "--database",
            node.database_url,
            "--role",
            node.role,
        ]
        out: Any = subprocess.DEVNULL
        if node.log_path is not None:
            node.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = node.log_path.open("ab")
        try:
            node.proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        with self._lock:
            self.nodes.append(node)
            self._stopped = False
        return node

    def pids(self) -> list[int]:
        """Process ids of the started nodes."""
        return [n.proc.pid for n in self.nodes if n.proc is not None]

    def wait_healthy(self, nodes: Sequence[NodeProcess], *, timeout_s: float = 90.0) -> dict[str, float]:
        """Wait until every node answers ``GET /health``; returns seconds to health per node.

        Raises
        ------
        RuntimeError
            A node exited or did not answer in time (its log is named).
        """
        t0 = time.perf_counter()
        ready: dict[str, float] = {}
        with httpx.Client(timeout=2.0) as client:
            while len(ready) < len(nodes):
                for n in nodes:
                    if n.name in ready:
                        continue
                    if n.proc is not None and n.proc.poll() is not None:
                        raise RuntimeError(
                            f"node {n.name} exited with code {n.proc.returncode} (log: {n.log_path})"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(n.url + "/health").status_code == 200:
                            ready[n.name] = time.perf_counter() - t0
                if time.perf_counter() - t0 > timeout_s:
                    missing = [n.name for n in nodes if n.name not in ready]
                    raise RuntimeError(f"nodes {missing} not healthy after {timeout_s:.0f} s")
                time.sleep(0.2)
        return ready

    def stop(self) -> None:
        """End every node: SIGTERM to each process group, SIGKILL after the grace period."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            nodes = list(self.nodes)
        live = [n for n in nodes if n.proc is not None and n.proc.poll() is None]
        # Community nodes first, so they can delete their registrations at the city on the way out.
        live.sort(key=lambda n: n.role == "network")
        deadline = time.monotonic() + self.grace_s
        for i, n in enumerate(live):
            assert n.proc is not None
            if n.role == "network" and i > 0:
                for m in live[:i]:
                    assert m.proc is not None
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        m.proc.wait(max(0.1, min(3.0, deadline - time.monotonic())))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(n.proc.pid, signal.SIGTERM)
        for n in live:
            assert n.proc is not None
            try:
                n.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(n.proc.pid, signal.SIGKILL)
                n.proc.wait(5)
        for n in nodes:  # anything a node started in its group
            if n.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(n.proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def _signals_end(supervisor: NodeSupervisor) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the run as Ctrl-C does (KeyboardInterrupt): ``finally`` stops the nodes."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # SIGINT too: a shell starts background jobs with SIGINT ignored, and Ctrl-C must still stop.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, on_term)
    try:
        yield
    finally:
        supervisor.stop()
        for old, handler in previous.items():
            signal.signal(old, handler)


# --------------------------------------------------------------------------------------------------
# Live ingest through MQTT
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MqttLiveIngest:
    """The ``live_ingest`` hook: publish the live window with the MQTT simulator into the node's ingest.

    The node's ingest (:class:`bright.edge.mqtt.MqttIngest` over an :class:`~bright.edge.mqtt.Ingestor`
    on the community's database, client id and topic root of this run) is started, the simulator
    publishes every member's meter (``offtake``, ``injection``) and PV (``production``) packs of
    one day each with QoS 1, and the hook returns once the ingest wrote every reading.
    """

    url: str
    root: str
    timeout_s: float = 120.0

    def __call__(
        self, plan: CommunityPlan, database_url: str, frames: dict[str, pd.DataFrame]
    ) -> dict[str, Any]:
        # One topic root per community: the builds run side by side and each ingest subscribes to
        # ``<root>/+/+/senml``; a shared root would deliver a community's packs to the others.
        root = f"{self.root}-{plan.key}"
        return mqtt_live_ingest(self.url, root, plan, database_url, frames, timeout_s=self.timeout_s)


def _packs(plan: CommunityPlan, frames: dict[str, pd.DataFrame], root: str) -> list[Any]:
    import numpy as np

    from bright.edge import senml, topics
    from bright.edge.simulator import STEP, DevicePack

    packs = []
    for asset, frame_names, prefix in (
        ("meter", ("offtake", "injection"), "Meter"),
        ("pv", ("production",), "PhotovoltaicDevice"),
    ):
        for m in plan.members:
            col = f"urn:ngsi-ld:{prefix}:{plan.key}:{m.key}"
            if col not in frames[frame_names[0]].columns:
                continue
            index = pd.DatetimeIndex(frames[frame_names[0]].index)
            for a in range(0, len(index), 96):
                idx = index[a : a + 96]
                times = idx.as_unit("s").asi8.astype(np.float64)
                cols = {q: ("kWh", frames[q][col].to_numpy()[a : a + 96]) for q in frame_names}
                payload = senml.encode_series(f"urn:dev:bright:{plan.key}:{m.key}:{asset}:", times, cols)
                count = sum(len(v) for _, v in cols.values())
                sums = {q: float(np.nansum(v)) for q, (_, v) in cols.items()}
                packs.append(
                    DevicePack(
                        topics.senml_topic(plan.key, m.key, asset, root=root),
                        payload,
                        idx[-1] + STEP,
                        count,
                        sums,
                    )
                )
    return packs


def mqtt_live_ingest(
    url: str,
    root: str,
    plan: CommunityPlan,
    database_url: str,
    frames: dict[str, pd.DataFrame],
    *,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Publish ``frames`` through the broker at ``url`` and ingest them into ``database_url``.

    Returns
    -------
    dict
        ``published`` and ``written`` readings, ``quarantined``, ``messages``, ``seconds``.

    Raises
    ------
    TimeoutError
        The ingest did not write every reading within ``timeout_s``.
    """
    from bright.edge.mqtt import Ingestor, MqttIngest, MqttSettings
    from bright.edge.simulator import Simulator
    from bright.twin.db import make_engine

    t0 = time.perf_counter()
    engine = make_engine(database_url)
    ingest = MqttIngest(
        Ingestor(engine, root=root),
        MqttSettings(url=url, client_id=f"{root}-{plan.key}-ingest", root=root, session_expiry_s=60),
    )
    ingest.start(wait_connected=10.0)
    try:
        packs = _packs(plan, frames, root)
        with Simulator(url, client_id=f"{root}-{plan.key}-sim") as sim:
            report = sim.publish(packs, speed=None, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        while ingest.stats.written + ingest.stats.quarantined < report.readings:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{plan.key}: {ingest.stats.written} of {report.readings} readings written in {timeout_s:.0f} s"
                )
            time.sleep(0.05)
    finally:
        ingest.stop()
        engine.dispose()
    if ingest.stats.quarantined:
        raise ValueError(
            f"{plan.key}: {ingest.stats.quarantined} readings quarantined (see bright edge quarantine)"
        )
    return {
        "messages": report.messages,
        "published": report.readings,
        "written": ingest.stats.written,
        "quarantined": ingest.stats.quarantined,
        "seconds": round(time.perf_counter() - t0, 2),
    }


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOptions:
    """How to run the demo network.

    Attributes
    ----------
    directory
        Demo directory (databases, node data, logs); emptied first.
    host
        Interface of every node.
    city_port
        Port of the city node, which serves the network dashboard (8000).
    first_port
        Port of the first community node (the others follow); 0: free ports.
    schools
        Communities around real schools (the three other kinds are always added unless ``kinds``).
    kinds
        The other kinds of community.
    size
        Scale of the member counts (1 for the demo; smaller for tests).
    days
        Metered days ending on 2016-12-31 (None: the whole year 2016).
    live_days
        With ``mqtt_url``: the last days of metering that go through the MQTT simulator.
    mqtt_url
        Broker for the live ingest (None: readings written directly).
    workers
        Worker processes that build the communities in parallel.
    serve
        Keep the network running (until Ctrl-C) after the summary.
    """

    directory: Path = Path("demo-network")
    host: str = "127.0.0.1"
    city_port: int = 8000
    first_port: int = 8001
    schools: int = 3
    kinds: tuple[str, ...] = ("social_housing", "houses", "sme")
    size: float = 1.0
    days: int | None = None
    live_days: int = 2
    mqtt_url: str | None = None
    workers: int = 2
    serve: bool = True


@dataclass
class DemoResult:
    """What a demo run did: the community builds, the network stages and the nodes."""

    plans: list[CommunityPlan]
    builds: dict[str, CommunityBuild] = field(default_factory=dict)
    network: dict[str, StageResult] = field(default_factory=dict)
    nodes: dict[str, NodeProcess] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def stage_statuses(self) -> dict[str, str]:
        """Per stage, ``ok`` when it ran for real everywhere, else the first other status."""
        out: dict[str, str] = {}
        for name in COMMUNITY_STAGES:
            statuses = [b.stage(name).status for b in self.builds.values()]
            bad = [s for s in statuses if s != "ok"]
            out[name] = bad[0] if bad else "ok"
        for name in NETWORK_STAGES:
            if name in self.network:
                out[name] = self.network[name].status
        return out


def _generated_knowledge(plan: CommunityPlan, index: int) -> tuple[Any, list[Any]]:
    """A base card and practices/initiatives of the documented generator, re-pointed at ``plan``."""
    from bright.network.demo_network import demo_network

    net = demo_network(60, seed=11)
    cards = net.cards_of(plan.kind)
    template = cards[index % len(cards)]
    items: list[Any] = []
    for item in (*net.practices, *net.initiatives):
        if item.community != template.id:
            continue
        kind = "Practice" if item.kind == "practice" else "Initiative"
        new_id = f"urn:ngsi-ld:{kind}:{plan.key}:{item.id.rsplit(':', 1)[-1]}"
        update: dict[str, Any] = {"id": new_id, "community": plan.community_id}
        if getattr(item, "contact", None) is not None:
            update["contact"] = None
        items.append(item.model_copy(update=update))
    return template, items


def knowledge_stage(ctx: BuildContext) -> dict[str, Any]:
    """The community's practices and initiatives (texts of the documented generator for its kind)."""
    from bright.network.discovery import NetworkDirectory

    _, items = _generated_knowledge(ctx.plan, ctx.index)
    NetworkDirectory(ctx.twin).publish_items(items)
    return {
        "practices": sum(1 for it in items if it.kind == "practice"),
        "initiatives": sum(1 for it in items if it.kind == "initiative"),
    }


def card_stage(ctx: BuildContext) -> dict[str, Any]:
    """The community's public card: the manager's fields, then counts, technologies and KPIs from the twin."""
    from bright.network.cards import Contact
    from bright.network.discovery import NetworkDirectory

    plan = ctx.plan
    template, _ = _generated_knowledge(plan, ctx.index)
    base = template.model_copy(
        update={
            "id": plan.community_id,
            "name": plan.name,
            "description": {"en": plan.description},
            "lat": float(plan.site["lat"]),
            "lon": float(plan.site["lon"]),
            "municipality": plan.site["municipality"],
            "postcode": str(plan.site["postcode"]),
            "legal_form": plan.legal_form,
            "sharing_method": plan.sharing_method,
            "contact": Contact(organisation=plan.name, email=f"info@{plan.key}.example"),
            "founding_year": 2024,
            "node_url": ctx.node_url,
        }
    )
    directory = NetworkDirectory(ctx.twin)
    directory.publish_card(base)
    card = directory.refresh_card(plan.community_id)
    return {"kpis": card.kpis.model_dump(), "members": card.members.total}


#: Stages of this layer added to each community's build.
NETWORK_BUILD_STAGES = (("knowledge", knowledge_stage), ("card", card_stage))


def _worker_init() -> None:
    # Workers ignore Ctrl-C: the orchestrator stops them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _build_one(
    plan: CommunityPlan,
    database_url: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    live_days: int,
    hook: MqttLiveIngest | None,
    node_url: str,
    index: int,
) -> CommunityBuild:
    return build_community(
        plan,
        database_url,
        start=start,
        end=end,
        live_days=live_days if hook is not None else 0,
        live_ingest=hook,
        node_url=node_url,
        index=index,
        extra_stages=NETWORK_BUILD_STAGES,
    )


def _timed(name: str, fn: Callable[[], dict[str, Any] | None]) -> StageResult:
    t0, c0 = time.perf_counter(), time.process_time()
    result = StageResult(name)
    try:
        result.figures = fn() or {}
    except _Skip as skip:
        result.status = f"skipped: {skip}"
    except Exception as exc:
        result.status = f"failed: {type(exc).__name__}: {exc}"
    result.wall_s = time.perf_counter() - t0
    result.cpu_s = time.process_time() - c0
    return result


class _Skip(Exception):
    pass


def _json(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 400:
        raise RuntimeError(f"{what}: HTTP {resp.status_code} {resp.text[:300]}")
    return resp.json()


def _ledger(
    client: httpx.Client, node: NodeProcess, witnesses: Sequence[NodeProcess], day: tuple[str, str]
) -> dict[str, Any]:
    """Settle the last day on the node's ledger, have the witnesses countersign, verify a proof offline."""
    from bright.ledger.verify import verify_bundle

    rec = _json(
        client.post(node.url + "/api/ledger/settlements", json={"start": day[0], "end": day[1]}),
        f"{node.name}: ledger settlement",
    )
    heads = _json(client.post(node.url + "/api/ledger/heads"), f"{node.name}: cosigning")
    operator = _json(client.get(node.url + "/api/ledger/identity"), f"{node.name}: identity")["did"]
    keys = [operator]
    for w in witnesses:
        keys.append(_json(client.get(w.url + "/api/ledger/identity"), f"{w.name}: identity")["did"])
    bundle = _json(
        client.get(node.url + f"/api/ledger/records/{rec['firstIndex']}/proof"), f"{node.name}: proof bundle"
    )
    report = verify_bundle(bundle, trusted_keys=keys)
    cosigned = [p for p in heads["peers"] if p["status"] == "cosigned"]
    finality = heads["head"].get("finality") or {}
    if not report.ok:
        raise RuntimeError(f"{node.name}: the proof bundle of record {rec['firstIndex']} does not verify")
    return {
        "records": rec["records"],
        "intervals": rec["intervals"],
        "size": heads["head"]["size"],
        "cosigned": len(cosigned),
        "witnesses": len(witnesses),
        "final": finality.get("final"),
        "verified": bool(report.ok),
    }


def _kpi_sums(
    client: httpx.Client, nodes: Sequence[NodeProcess], frequency: str, period: str
) -> dict[str, float]:
    """Sum over the nodes of their communities' own KPI entities of one period (read from each node)."""
    sums: dict[str, float] = {}
    headers = {"Link": _LINK}
    for n in nodes:
        ents = _json(
            client.get(
                n.url + "/ngsi-ld/v1/entities",
                params={"type": "KeyPerformanceIndicator", "limit": "1000", "options": "keyValues"},
                headers=headers,
            ),
            f"{n.name}: KPIs",
        )
        for e in ents:
            if e.get("calculationFrequency") != frequency or e.get("pricingMethod"):
                continue
            if not str(e.get("calculationPeriod", {}).get("from", "")).startswith(period):
                continue
            ind = e.get("indicator")
            if ind in ("offtake_kwh", "injection_kwh", "shared_kwh", "co2_avoided_kg"):
                sums[ind] = sums.get(ind, 0.0) + float(e["kpiValue"])
    return sums


_LINK = (
    '<https://w3id.org/bright/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; '
    'type="application/ld+json"'
)


def run_demo(
    options: DemoOptions,
    *,
    console: Any = None,
    on_ready: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Build and run the demo network; serve it until Ctrl-C when ``options.serve``.

    Parameters
    ----------
    options
        What to run.
    console
        A ``rich.console.Console`` for the progress bars and the summary (None: quiet).
    on_ready
        Called with the result once every stage ran, while the nodes still run (tests check
        the network there); the nodes are stopped when it returns unless ``options.serve``.

    Returns
    -------
    DemoResult
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    t_start = time.perf_counter()
    directory = options.directory.resolve()
    _clean(directory)
    plans = plan_network(schools=options.schools, kinds=options.kinds, size=options.size)
    result = DemoResult(plans)
    start, end = demo_period(options.days)
    ports = _ports(options, len(plans))
    check_ports_free(options.host, [options.city_port, *ports] if options.city_port else ports)
    supervisor = NodeSupervisor()
    run_id = f"brightdemo{os.getpid()}"
    hook = MqttLiveIngest(options.mqtt_url, run_id) if options.mqtt_url else None
    city = NodeProcess(
        "city",
        "network",
        options.host,
        options.city_port or free_port(options.host),
        f"sqlite:///{directory / 'city.db'}",
        log_path=directory / "logs" / "city.log",
    )
    nodes = [
        NodeProcess(p.key, "community", options.host, port, f"sqlite:///{directory / (p.key + '.db')}",
                    log_path=directory / "logs" / f"{p.key}.log")
        for p, port in zip(plans, ports, strict=True)
    ]  # fmt: skip
    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )
    with _signals_end(supervisor), progress:
        # 1. The communities, in parallel worker processes.
        t0 = time.perf_counter()
        tasks = {p.key: progress.add_task(p.name[:34], total=1, stage="waiting") for p in plans}
        counters = {k: 0 for k in tasks}
        kinds_seen: dict[str, int] = {}
        jobs = []
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=max(1, options.workers), mp_context=ctx, initializer=_worker_init
        ) as pool:
            try:
                for p, n in zip(plans, nodes, strict=True):
                    i = kinds_seen.get(p.kind, 0)
                    kinds_seen[p.kind] = i + 1
                    jobs.append(
                        pool.submit(
                            _build_one, p, n.database_url, start, end, options.live_days, hook, n.url, i
                        )
                    )
                    progress.update(tasks[p.key], stage="queued")
                for fut in as_completed(jobs):
                    b = fut.result()
                    result.builds[b.key] = b
                    counters[b.key] = 1
                    bad = [s for s in b.stages if s.status.startswith("failed")]
                    progress.update(
                        tasks[b.key],
                        completed=1,
                        stage=f"built in {b.wall_s:.0f} s" + (f", {len(bad)} failed" if bad else ""),
                    )
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                for proc in list(getattr(pool, "_processes", {}).values()):
                    with contextlib.suppress(Exception):
                        proc.terminate()
                raise
        result.builds = {p.key: result.builds[p.key] for p in plans}
        result.timings["build"] = time.perf_counter() - t0

        # 2. The nodes.
        t0 = time.perf_counter()
        node_task = progress.add_task("nodes: city + communities", total=len(nodes) + 1, stage="starting")
        result.nodes = {"city": city, **{n.name: n for n in nodes}}
        network_stage = _timed("nodes", lambda: _start_nodes(supervisor, city, nodes, progress, node_task))
        result.network["nodes"] = network_stage
        result.timings["nodes"] = time.perf_counter() - t0
        if not network_stage.ok:
            raise RuntimeError(f"the nodes did not start: {network_stage.status}")

        # 3.-5. Ledger, federation, aggregate, discovery.
        net_task = progress.add_task("network: ledger, city, discovery", total=5, stage="ledger")
        t0 = time.perf_counter()
        last_day = (
            (end - pd.Timedelta(days=1)).tz_convert("Europe/Brussels").isoformat(),
            end.tz_convert("Europe/Brussels").isoformat(),
        )
        with httpx.Client(timeout=60.0) as client:

            def ledger() -> dict[str, Any]:
                out: dict[str, Any] = {}
                with ThreadPoolExecutor(max_workers=3) as threads:
                    futs = {
                        threads.submit(_ledger, client, n, _witnesses(nodes, i), last_day): n.name
                        for i, n in enumerate(nodes)
                    }
                    for f in as_completed(futs):
                        out[futs[f]] = f.result()
                return out

            result.network["ledger"] = _timed("ledger", ledger)
            progress.update(net_task, advance=1, stage="federation")
            result.network["federation"] = _timed("federation", lambda: _federation(client, city, nodes))
            progress.update(net_task, advance=1, stage="aggregate")
            result.network["aggregate"] = _timed("aggregate", lambda: _aggregate(client, city, nodes))
            progress.update(net_task, advance=1, stage="discovery")
            result.network["discovery"] = _timed("discovery", lambda: _discovery(client, city, plans))
            progress.update(net_task, advance=1, stage="policies")
            result.network["policies"] = _timed("policies", lambda: _policies(client, nodes, plans))
            progress.update(net_task, advance=1, stage="done")
        result.timings["network"] = time.perf_counter() - t0
        result.timings["total"] = time.perf_counter() - t_start
        progress.stop()
        if console is not None:
            print_summary(result, console)
        if on_ready is not None:
            on_ready(result)
        if options.serve:
            if console is not None:
                console.print(
                    f"\n[bold]The network dashboard: {city.url}/demo[/bold]  (city node: {city.url}/ , "
                    f"aggregate: {city.url}/api/network/aggregate)  - Ctrl-C stops every node"
                )
            _wait_forever(supervisor)
    return result


def _ports(options: DemoOptions, n: int) -> list[int]:
    if options.first_port:
        return [options.first_port + i for i in range(n)]
    return [free_port(options.host) for _ in range(n)]


def check_ports_free(host: str, ports: Sequence[int]) -> None:
    """Refuse to start when a port is taken (a previous demo still running, another server).

    Raises
    ------
    RuntimeError
        Naming the busy ports and how to choose others.
    """
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                busy.append(port)
    if busy:
        raise RuntimeError(
            f"port(s) {', '.join(map(str, busy))} on {host} are in use (a demo still running?); "
            "stop it or choose other ports with --port (the city; the communities take the next ones)"
        )


def _clean(directory: Path) -> None:
    """Empty the demo directory (only what a previous run made: databases, node data, logs)."""
    import shutil

    directory.mkdir(parents=True, exist_ok=True)
    for p in directory.iterdir():
        if p.is_dir() and (p.name == "logs" or p.name.endswith("-data")):
            shutil.rmtree(p)
        elif p.suffix == ".db" or p.name.endswith((".db-wal", ".db-shm")):
            p.unlink()


def _witnesses(nodes: Sequence[NodeProcess], i: int) -> list[NodeProcess]:
    """The two next community nodes (ring order) witness node ``i``'s ledger."""
    if len(nodes) < 2:
        return []
    k = min(2, len(nodes) - 1)
    return [nodes[(i + j) % len(nodes)] for j in range(1, k + 1)]


def _start_nodes(
    supervisor: NodeSupervisor, city: NodeProcess, nodes: Sequence[NodeProcess], progress: Any, task: Any
) -> dict[str, Any]:
    common = {"BRIGHT_AUTH": "open", "BRIGHT_REGISTRATION_REFRESH_S": "60", "BRIGHT_FORWARD_TIMEOUT_S": "15"}
    city.env = {**common, "BRIGHT_ROLE": "network", "BRIGHT_NODE_ID": "city", "BRIGHT_PUBLIC_URL": city.url,
                "BRIGHT_DEMO_NODES": ",".join(f"{n.name}={n.url}" for n in nodes)}  # fmt: skip
    for i, n in enumerate(nodes):
        n.env = {
            **common,
            "BRIGHT_ROLE": "community",
            "BRIGHT_NODE_ID": n.name,
            "BRIGHT_PUBLIC_URL": n.url,
            "BRIGHT_PARENT_URL": city.url,
            "BRIGHT_LEDGER_PEERS": ",".join(w.url for w in _witnesses(nodes, i)),
        }
    from bright.services.ledger import default_data_dir

    # Each node's own data directory (its key, as the ledger's default, and its dashboard's session
    # secret, which would otherwise be shared by every database of the demo directory).
    for n in (city, *nodes):
        n.env["BRIGHT_DATA_DIR"] = str(default_data_dir(n.database_url))
    members = join_network(city, nodes)
    accounts = add_web_accounts(nodes)
    supervisor.start(city)
    # The city first: the communities register with it as they start.
    ready = supervisor.wait_healthy([city])
    progress.update(task, advance=1, stage="city up")
    for n in nodes:
        supervisor.start(n)
    t0 = time.perf_counter()
    pending = list(nodes)
    while pending:
        ready.update(supervisor.wait_healthy(pending[:1]))
        pending.pop(0)
        progress.update(task, advance=1, stage=f"{len(nodes) - len(pending)} communities up")
    # Registrations are made at start-up; wait until the city knows every node.
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=5.0) as client:
        while True:
            regs = client.get(city.url + "/ngsi-ld/v1/csourceRegistrations", params={"type": "EnergyCommunity"},
                              headers={"Link": _LINK}).json()  # fmt: skip
            if len(regs) >= len(nodes) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    if len(regs) < len(nodes):
        raise RuntimeError(f"only {len(regs)} of {len(nodes)} nodes registered with the city")
    return {
        "nodes": len(nodes) + 1,
        "members": members,
        "web_accounts": accounts,
        "registered": len(regs),
        "pids": supervisor.pids(),
        "seconds_to_health": round(time.perf_counter() - t0, 1),
    }


def join_network(city: NodeProcess, nodes: Sequence[NodeProcess]) -> int:
    """Make every node a member of every other node's network (the organiser's job), before they start.

    Each node's key (the ledger identity, created here on first use, in the node's data directory)
    is added to the ``network_members`` table of the others (:class:`bright.network.membership.Membership`):
    the city as ``organiser``, the communities as ``member``. Signed requests between the nodes
    (registration at the city, federated queries, cosigning) are then accepted.

    Returns
    -------
    int
        Memberships written.
    """
    from bright.config import Settings
    from bright.ledger.identity import NodeIdentity
    from bright.network.membership import Membership
    from bright.services.ledger import LedgerConfig
    from bright.twin.db import make_engine

    everyone = [city, *nodes]
    dids = {
        n.name: NodeIdentity.load_or_create(
            LedgerConfig.from_settings(Settings(database_url=n.database_url)).key_dir
        ).did
        for n in everyone
    }
    written = 0
    for n in everyone:
        engine = make_engine(n.database_url)
        try:
            membership = Membership(engine)
            for other in everyone:
                if other is n:
                    continue
                membership.join(
                    dids[other.name],
                    other.name,
                    url=other.url,
                    name=other.name,
                    role="organiser" if other.role == "network" else "member",
                )
                written += 1
        finally:
            engine.dispose()
    return written


def add_web_accounts(nodes: Sequence[NodeProcess]) -> int:
    """The dashboard's demo accounts on every community node (``manager``/``manager-demo``,
    ``member``/``member-demo`` for the community's first household or member, ``public``/``public-demo``)."""
    from bright.twin.db import make_engine
    from bright.web.users import add_demo_users

    made = 0
    for n in nodes:
        engine = make_engine(n.database_url)
        try:
            from bright.services.community import list_communities
            from bright.twin.service import TwinService

            twin = TwinService(engine)
            for summary in list_communities(twin):
                community = summary.id
                member = _first_member(twin, community)
                made += len(add_demo_users(engine, community, member))
        finally:
            engine.dispose()
    return made


def _first_member(twin: Any, community_id: str) -> str:
    from bright.services.community import load_community
    from bright.twin.series import SeriesStore

    community = load_community(twin, SeriesStore(twin.engine), community_id)
    homes = [m for m in community.member_ids if ":home" in m]
    return (homes or list(community.member_ids))[0]


def _city_communities(
    client: httpx.Client, city: NodeProcess, expected: int, *, attempts: int = 3
) -> tuple[list[dict[str, Any]], str]:
    """The EnergyCommunity entities the city returns from its nodes (normalized), and its warnings.

    A node that did not answer within the forwarding timeout is named in ``NGSILD-Warning`` and
    missing from the answer; the query is then asked again (up to ``attempts`` times).
    """
    from bright.network.cards import PUBLIC_ATTRIBUTES
    from bright.twin.vocabulary import bright_context

    # Only the card's public attributes: the nodes' policies do not let member-level attributes
    # (hasMember...) leave a node, and an entity asked for with them is withheld.
    attrs = ",".join(sorted(bright_context().compact(i) for i in PUBLIC_ATTRIBUTES))
    ents: list[dict[str, Any]] = []
    warning = ""
    for attempt in range(attempts):
        resp = client.get(
            city.url + "/ngsi-ld/v1/entities",
            params={"type": "EnergyCommunity", "limit": "100", "attrs": attrs},
            headers={"Link": _LINK, "Accept": "application/json"},
        )
        ents = _json(resp, "city: federated query")
        warning = resp.headers.get("NGSILD-Warning", "")
        if len({e["id"] for e in ents}) >= expected:
            break
        time.sleep(1.0 + attempt)
    return ents, warning


def _federation(client: httpx.Client, city: NodeProcess, nodes: Sequence[NodeProcess]) -> dict[str, Any]:
    """What the city answers for the communities: one per node, merged from every node."""
    ents, warning = _city_communities(client, city, len(nodes))
    ids = sorted({e["id"] for e in ents})
    if len(ids) < len(nodes):
        raise RuntimeError(
            f"the city returned {len(ids)} of {len(nodes)} communities: {warning or 'no warning'}"
        )
    return {"communities": len(ids), "ids": ids, "nodes": len(nodes), "warning": warning}


def _aggregate(client: httpx.Client, city: NodeProcess, nodes: Sequence[NodeProcess]) -> dict[str, Any]:
    """The city's aggregate for the year (``/api/network/aggregate``) beside the sum of the nodes' KPIs."""
    for attempt in range(3):  # a node too slow to answer makes the aggregate partial: ask again
        resp = client.get(city.url + "/api/network/aggregate", params={"frequency": "yearly"})
        if resp.status_code == 404 and "aggregate" not in resp.text:
            raise _Skip("the city node has no /api/network/aggregate")
        agg = _json(resp, "city: aggregate")
        if not agg.get("partial"):
            break
        time.sleep(1.0 + attempt)
    period = agg.get("period") or ""
    sums = _kpi_sums(client, nodes, "yearly", period[:10])
    kpis = agg["totals"]["kpis"]
    out: dict[str, Any] = {
        "period": period,
        "communities": agg["totals"]["communities"],
        "reporting": agg["totals"]["reporting"],
        "members": agg["totals"]["members"]["total"],
        "pv_kwp": agg["totals"]["technologies"]["pv_kwp"],
        "partial": agg.get("partial"),
    }
    worst = 0.0
    for ind, total in sums.items():
        city_value = float(kpis.get(ind, {}).get("value", math.nan))
        out[f"city_{ind}"] = city_value
        out[f"nodes_{ind}"] = total
        worst = max(worst, abs(city_value - total) / max(abs(total), 1e-9))
    out["max_relative_gap"] = worst
    out["self_sufficiency"] = kpis.get("self_sufficiency", {}).get("value")
    return out


def _discovery(client: httpx.Client, city: NodeProcess, plans: Sequence[CommunityPlan]) -> dict[str, Any]:
    """ "Communities like this school's" over the cards the city sees (federated query)."""
    from bright.network.cards import card_from_entity
    from bright.network.discovery import DiscoveryIndex

    ents, warning = _city_communities(client, city, len(plans))
    cards = [card_from_entity(e) for e in ents]
    school = next(p for p in plans if p.kind == "school")
    if school.community_id not in {c.id for c in cards}:
        raise RuntimeError(f"the city did not return {school.name}'s card: {warning or 'no warning'}")
    index = DiscoveryIndex(cards, {})
    matches = index.search(like=school.community_id, limit=3)
    return {
        "reference": school.name,
        "cards": len(cards),
        "like": [
            {"name": m.card.name, "score": round(float(m.score), 3), "why": m.explanation} for m in matches
        ],
    }


def _policies(
    client: httpx.Client, nodes: Sequence[NodeProcess], plans: Sequence[CommunityPlan]
) -> dict[str, Any]:
    """Each community's data policies (ODRL 2.2): the node's defaults written as DataPolicy entities."""
    out: dict[str, Any] = {}
    for plan, node in zip(plans, nodes, strict=True):
        resp = client.post(node.url + "/api/policies/seed")
        if resp.status_code == 404:
            raise _Skip("the nodes have no /api/policies")
        created = _json(resp, f"{node.name}: policies").get("created")
        listed = _json(
            client.get(node.url + "/api/policies", params={"community": plan.community_id}),
            f"{node.name}: policies in force",
        )
        out[plan.key] = {"created": created, "in_force": len(listed)}
    return out


def _wait_forever(supervisor: NodeSupervisor) -> None:
    """Sleep until Ctrl-C or SIGTERM; ends early (with an error) when a node dies."""
    while True:
        for n in supervisor.nodes:
            if n.proc is not None and n.proc.poll() is not None:
                raise RuntimeError(f"node {n.name} exited with code {n.proc.returncode} (log: {n.log_path})")
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------


def _fmt(v: Any, spec: str = ",.0f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def print_summary(result: DemoResult, console: Any) -> None:
    """The summary tables: the communities, the network, what ran for real."""
    from rich.table import Table

    table = Table(title="The Brussels demo network (real 2016 profiles)")
    for col in ("community", "kind", "members", "PV kWp", "shared MWh", "self-suff.", "savings EUR",
                "S-BRIGHT (largest)", "tomorrow EUR", "ledger rec/cosig", "EVs 2030"):  # fmt: skip
        table.add_column(
            col, justify="left" if col in ("community", "kind", "S-BRIGHT (largest)") else "right"
        )
    ledger = result.network.get("ledger")
    for plan in result.plans:
        b = result.builds[plan.key]
        bal, st, sb, sc, mob = (
            b.stage(s).figures for s in ("balance", "settlement", "sbright", "schedule", "mobility")
        )
        cats = sb.get("categories") or {}
        top = max(cats, key=lambda k: cats[k]) if cats else "-"
        led = (ledger.figures.get(plan.key) if ledger is not None and ledger.ok else None) or {}
        table.add_row(
            plan.name[:32],
            plan.kind.replace("_", " "),
            str(len(plan.members)),
            _fmt(sum(m.pv_kwp for m in plan.members)),
            _fmt((bal.get("shared_kwh") or math.nan) / 1000, ",.1f"),
            _fmt(bal.get("self_sufficiency"), ".1%"),
            _fmt(st.get("savings_eur")),
            top,
            _fmt(sc.get("cost_eur"), ",.2f"),
            f"{led['records']}/{led['cosigned']}" if led else "-",
            str(mob["n_evs"]) if isinstance(mob.get("n_evs"), int) else "-",
        )
    console.print(table)
    for plan in result.plans:
        node = result.nodes.get(plan.key)
        if node is not None:
            console.print(f"  {node.url}/  {plan.name}")
    agg = result.network.get("aggregate")
    if agg is not None and agg.ok:
        f = agg.figures
        console.print(
            f"city aggregate {f['period']}: {f['communities']} communities, {f['members']} members, "
            f"{_fmt(f['pv_kwp'])} kWp; shared {_fmt(f.get('city_shared_kwh', math.nan) / 1000, ',.1f')} MWh "
            f"(sum of the nodes' KPIs {_fmt(f.get('nodes_shared_kwh', math.nan) / 1000, ',.1f')} MWh); "
            f"self-sufficiency {_fmt(f.get('self_sufficiency'), '.1%')}"
        )
    disc = result.network.get("discovery")
    if disc is not None and disc.ok:
        console.print(f"communities like {disc.figures['reference']}:")
        for m in disc.figures["like"]:
            console.print(f"  {m['score']:.2f}  {m['name']}: {m['why']}")
    stages = Table(title="What ran")
    for col in ("stage", "status", "wall s (sum)", "CPU s (sum)"):
        stages.add_column(col, justify="right" if "s (" in col else "left")
    for name, status in result.stage_statuses().items():
        if name in result.network:
            wall, cpu = result.network[name].wall_s, result.network[name].cpu_s
        else:
            wall = sum(b.stage(name).wall_s for b in result.builds.values())
            cpu = sum(b.stage(name).cpu_s for b in result.builds.values())
        color = "green" if status == "ok" else ("yellow" if status.startswith("skipped") else "red")
        stages.add_row(name, f"[{color}]{status[:90]}[/{color}]", f"{wall:.1f}", f"{cpu:.1f}")
    console.print(stages)
    t = result.timings
    console.print(
        f"built in {t.get('total', math.nan):.0f} s wall: communities {t.get('build', math.nan):.0f} s, "
        f"nodes {t.get('nodes', math.nan):.0f} s, network stages {t.get('network', math.nan):.0f} s"
    )


# --------------------------------------------------------------------------------------------------
# One node process
# --------------------------------------------------------------------------------------------------


def _cell(value: Any, spec: str = ",.0f", scale: float = 1.0) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return format(value / scale if scale != 1.0 else value, spec)


def network_page(
    aggregate: dict[str, Any] | None, nodes: str, city_url: str, error: str | None = None
) -> str:
    """The demo network's dashboard page (``/demo`` on the city node): the city's aggregate of the
    year, each community's open figures and a link to its own node's dashboard.

    Parameters
    ----------
    aggregate
        ``CityAggregate.to_json()`` of the year (None when it could not be computed).
    nodes
        ``name=url`` pairs of the community nodes, comma-separated (``BRIGHT_DEMO_NODES``).
    city_url
        Base URL of the city node.
    error
        Why there is no aggregate, shown instead of the figures.
    """
    esc = html.escape
    urls = dict(item.partition("=")[::2] for item in filter(None, nodes.split(",")))
    node_of: dict[str, str] = {}
    for n in (aggregate or {}).get("nodes", []):
        for cid in n.get("communities", []):
            node_of[cid] = n.get("node", "")
    rows = []
    for c in (aggregate or {}).get("communities", []):
        k = c.get("kpis") or {}
        name = str(c.get("node") or node_of.get(c["id"], ""))
        url = urls.get(name, "")
        link = f"<a href='{esc(url)}/communities/{esc(c['id'])}'>{esc(url)}</a>" if url else esc(name)
        rows.append(
            "<tr>"
            f"<td>{esc(str(c.get('name')))}</td><td>{esc(str(c.get('municipality') or ''))}</td><td>{link}</td>"
            f"<td class=n>{_cell(c['members']['total'], 'd')}</td>"
            f"<td class=n>{_cell(c['technologies']['pv_kwp'])}</td>"
            f"<td class=n>{_cell(k.get('offtake_kwh'), ',.1f', 1000)}</td>"
            f"<td class=n>{_cell(k.get('shared_kwh'), ',.1f', 1000)}</td>"
            f"<td class=n>{_cell(k.get('self_sufficiency'), '.1%')}</td>"
            f"<td class=n>{_cell(k.get('co2_avoided_kg'))}</td>"
            "</tr>"
        )
    totals = (aggregate or {}).get("totals") or {}
    tk = totals.get("kpis") or {}

    def total(name: str) -> Any:
        return (tk.get(name) or {}).get("value")

    summary = (
        f"<p class=big>{totals.get('communities', 0)} communities · {totals.get('members', {}).get('total', 0)} "
        f"members · {_cell(totals.get('technologies', {}).get('pv_kwp'))} kWp of PV · shared "
        f"{_cell(total('shared_kwh'), ',.1f', 1000)} MWh · self-sufficiency {_cell(total('self_sufficiency'), '.1%')} "
        f"· CO2 avoided {_cell(total('co2_avoided_kg'), ',.1f', 1000)} t</p>"
        f"<p>Period {esc(str((aggregate or {}).get('period') or '-'))} (yearly KPIs), read by the city node from "
        "every community node (open data only: cards and community KPIs).</p>"
        if aggregate
        else f"<p>No aggregate: {esc(error or 'unknown')}</p>"
    )
    c = esc(city_url)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>BRIGHT demo network</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#1b2733}"
        "h1{margin-bottom:.2rem}.big{font-size:1.25rem;font-weight:600}"
        "table{border-collapse:collapse;margin-top:1rem}td,th{border-bottom:1px solid #ddd;padding:.4rem .7rem;"
        "text-align:left}.n{text-align:right}th{background:#0d2b45;color:#fff}</style></head><body>"
        "<h1>The Brussels demo network</h1>"
        + summary
        + "<table id='communities'><tr><th>community</th><th>municipality</th><th>its node</th><th>members</th>"
        "<th>PV kWp</th><th>offtake MWh</th><th>shared MWh</th><th>self-sufficiency</th><th>CO2 avoided kg</th></tr>"
        + "".join(rows)
        + "</table>"
        f"<p>The city node: <a href='{c}/api/network/aggregate?frequency=yearly'>aggregate of the year</a> · "
        f"<a href='{c}/api/network/aggregate'>of the last month</a> · "
        f"<a href='{c}/ngsi-ld/v1/entities?type=https://smartdatamodels.org/dataModel.Energy/EnergyCommunity"
        f"&options=keyValues'>communities (federated NGSI-LD query)</a> · <a href='{c}/docs'>API</a></p>"
        "<p>On each community node: the dashboard (log in as <code>manager</code> / <code>manager-demo</code>), "
        "<code>/api/network/cards</code>, <code>/api/ledger/heads</code>, <code>/docs</code>.</p>"
        "</body></html>"
    )


def serve_node(host: str, port: int, database: str, role: str) -> None:
    """Run one node of the demo network (uvicorn, until SIGTERM); the city also serves ``/demo``."""
    import uvicorn
    from fastapi.responses import HTMLResponse

    from bright.api.app import create_app
    from bright.config import Settings

    settings = Settings.from_env(database_url=database, extra={"role": role})
    app = create_app(settings)
    if role == "network":
        from fastapi import Request

        nodes = os.environ.get("BRIGHT_DEMO_NODES", "")

        async def demo_page(request: Request) -> HTMLResponse:
            city = getattr(request.app.state, "city", None)
            if city is None:
                return HTMLResponse(
                    network_page(None, nodes, f"http://{host}:{port}", "no city twin on this node")
                )
            try:
                result = await city.aggregate("", frequency="yearly")
            except Exception as exc:  # the page says why rather than failing
                return HTMLResponse(network_page(None, nodes, f"http://{host}:{port}", str(exc)))
            return HTMLResponse(network_page(result.to_json(), nodes, f"http://{host}:{port}"))

        # The module's annotations are strings (PEP 563): give FastAPI the classes themselves.
        demo_page.__annotations__ = {"request": Request, "return": HTMLResponse}
        app.get("/demo", response_class=HTMLResponse, include_in_schema=False)(demo_page)
        # http://127.0.0.1:8000/ opens the network dashboard: the first route wins, so put the
        # redirect before the node's own home page (still reachable as /communities/...).
        from fastapi.responses import RedirectResponse
        from fastapi.routing import APIRoute

        def to_network_page() -> RedirectResponse:
            return RedirectResponse("/demo", status_code=307)

        app.router.routes.insert(0, APIRoute("/", to_network_page, methods=["GET"], include_in_schema=False))

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bright.network.demo_nodes node --host H --port P --database URL --role R``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bright.network.demo_nodes")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node", help="run one node of the demo network")
    node.add_argument("--host", default="127.0.0.1")
    node.add_argument("--port", type=int, required=True)
    node.add_argument("--database", required=True)
    node.add_argument("--role", choices=("community", "network"), default="community")
    args = parser.parse_args(argv)
    serve_node(args.host, args.port, args.database, args.role)


if __name__ == "__main__":  # pragma: no cover - the node processes' entry point
    main()
