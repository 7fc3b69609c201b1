"""Nodes on loopback for the network tests: uvicorn servers in threads, each its own SQLite file.

Nodes run with ``auth="open"`` (these tests are not about access control) but they sign their
requests to each other (RFC 9421) and refuse signatures from keys they do not know, whatever the
mode: :func:`connect` admits nodes as members of each other's network first, as an operator
would (``POST /api/network/members``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bright.api.app import create_app
from bright.api.subscriptions import NetworkRuntime, install
from bright.config import Settings
from bright.network.federation import FederationConfig
from bright.twin.db import make_engine
from bright.twin.service import TwinService

NGSI = "/ngsi-ld/v1"


class Node:
    """A BRIGHT node (SQLite file) served by uvicorn in a thread on a free 127.0.0.1 port.

    Parameters
    ----------
    tmp
        Directory of its database (and its key, next to it).
    name
        Its node id (``Via``, registration name).
    parent
        Base URL of the node to register with, if any.
    timeout_s, refresh_s
        Forward timeout and parent-registration refresh period, seconds.
    extra
        ``Settings.extra`` (role, city name...).
    """

    def __init__(
        self,
        tmp: Path,
        name: str,
        *,
        parent: str | None = None,
        timeout_s: float = 1.0,
        refresh_s: float = 0.5,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        db = f"sqlite:///{tmp / name}.db"
        settings = Settings(database_url=db, node_name=name, auth="open", extra=dict(extra or {}))
        self.service = TwinService(make_engine(db), settings)
        self.app = create_app(settings, service=self.service)
        config = FederationConfig(
            node_id=name,
            public_url=self.url,
            parent_url=parent,
            refresh_s=refresh_s,
            forward_timeout_s=timeout_s,
        )
        self.runtime: NetworkRuntime = install(self.app, self.service, config=config)
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive(), f"node {name} stopped while starting"
            assert time.monotonic() < deadline, f"node {name} did not start"
            time.sleep(0.02)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    @property
    def did(self) -> str:
        """The node's DID (its signing key), as it publishes it."""
        r = httpx.get(self.url + "/api/network/node", timeout=10)
        r.raise_for_status()
        return str(r.json()["did"])

    def unsigned(self) -> None:
        """Send requests unsigned from now on: a node in ``open`` mode treats them as its manager's.

        Signed, they come from the role ``peer``, which the role table (docs/roles.md) does not
        let write entities: forwarded writes of exclusive/redirect registrations need this.
        """
        from bright.network.signing import attach_identity

        attach_identity(self.service, None)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Block the node's event loop: the kernel accepts connections, nothing answers."""
        release = threading.Event()
        assert self.loop is not None
        self.loop.call_soon_threadsafe(release.wait)
        try:
            yield
        finally:
            release.set()

    def stop(self, *, crash: bool = False) -> None:
        """Stop serving; ``crash`` keeps the node's registration at its parent (no goodbye)."""
        if not self.thread.is_alive():
            return
        parent = self.runtime.federation.parent
        if crash and parent is not None:
            parent.unregister_on_stop = False
        self.server.should_exit = True
        self.thread.join(15)
        self.service.engine.dispose()

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + NGSI + path, json=body, timeout=10, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + NGSI + path, timeout=10, **kw)


def admit(at: str, did: str, node_id: str, url: str | None = None) -> None:
    """Admit a node (its DID) into the network of the node at ``at`` (operator's request)."""
    body: dict[str, Any] = {"did": did, "nodeId": node_id}
    if url:
        body["url"] = url
    r = httpx.post(at + "/api/network/members", json=body, timeout=10)
    assert r.status_code == 201, r.text


def connect(*nodes: Node) -> None:
    """Make every node a member of every other's network (they accept each other's signatures)."""
    dids = {n.name: n.did for n in nodes}
    for a in nodes:
        for b in nodes:
            if a is not b:
                admit(a.url, dids[b.name], b.name, b.url)


def wait_for(check: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def unsigned_app_from_env() -> Any:
    """ASGI factory of a node that does not sign its outgoing requests (interoperability runs).

    ``uvicorn --factory tests.network.loopback:unsigned_app_from_env`` with ``BRIGHT_AUTH=open``:
    the ETSI IOP tests forward writes between brokers, which a signed request from a ``peer``
    may not do (docs/roles.md); unsigned, an ``open`` node takes them as its manager's.
    """
    from bright.network.signing import attach_identity

    app = create_app(Settings.from_env())
    attach_identity(app.state.twin, None)
    return app
