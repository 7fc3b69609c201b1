"""Requests a node sends are signed: notifications (subscriptions.py), forwards (federation.py)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from bright.ledger.identity import PublicIdentity
from bright.network.signing import MemoryNonceCache, authority_of, verify_request

from .conftest import NGSI, AccessNode


class _Receiver(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Receiver.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_notifications_are_signed_with_the_node_key(node: AccessNode) -> None:
    _Receiver.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        sub = {
            "id": "urn:ngsi-ld:Subscription:signed",
            "type": "Subscription",
            "entities": [{"type": "Thing"}],
            "notification": {
                "endpoint": {"uri": f"http://127.0.0.1:{port}/notify", "accept": "application/json"}
            },
        }
        assert node.client.post(NGSI + "/subscriptions", json=sub, headers=node.manager).status_code == 201
        r = node.client.post(
            NGSI + "/entities",
            json={"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "size": {"type": "Property", "value": 1}},
            headers=node.manager,
        )
        assert r.status_code == 201
        deadline = time.monotonic() + 15
        while not _Receiver.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _Receiver.seen, "no notification arrived"
        path, headers, body = _Receiver.seen[0]
        did = node.app.state.access.identity.did
        assert f'keyid="{did}"' in headers["signature-input"]
        url = f"http://127.0.0.1:{port}{path}"
        verified = verify_request(
            "POST",
            url,
            authority_of("http", f"127.0.0.1:{port}"),
            headers,
            body,
            known_key=lambda k: PublicIdentity.from_did(k) if k == did else None,
            nonces=MemoryNonceCache(),
        )
        assert verified.keyid == did
    finally:
        server.shutdown()
        server.server_close()
