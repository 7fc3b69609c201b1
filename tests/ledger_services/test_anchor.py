"""The optional EVM anchor: Keccak-256 and the ABI by hand, anchoring through JSON-RPC (against an
in-test JSON-RPC chain that executes the contract's rules), and, when the extra is installed, the
real contract on titanoboa's embedded EVM and on anvil."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import missing_service

from bright.ledger import anchor
from bright.ledger.anchor import (
    ANCHOR_EVENT,
    AnchorConflict,
    AnchorError,
    PendingRoot,
    anchor_calldata,
    community_key,
    decode_anchor_event,
    function_selector,
    keccak256,
    roots_calldata,
)
from bright.ledger.records import Settlement
from bright.services import anchoring
from bright.services.anchoring import anchor_pending, stored_root
from bright.services.ledger import LedgerConfig, LedgerNode
from bright.twin.db import make_engine

CONTRACT = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
SENDER = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


# ------------------------------------------------------------------------------------------- Keccak


def test_keccak256_known_vectors() -> None:
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"abc").hex() == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    assert (
        keccak256(b"The quick brown fox jumps over the lazy dog").hex()
        == "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15"
    )
    # The ERC-20 selectors everybody knows.
    assert function_selector("transfer(address,uint256)").hex() == "a9059cbb"
    assert function_selector("balanceOf(address)").hex() == "70a08231"
    assert keccak256(b"Transfer(address,address,uint256)").hex().startswith("ddf252ad")


def _sha3_with_our_permutation(data: bytes) -> bytes:
    """SHA3-256 = the same sponge and permutation with the 0x06 domain padding."""
    rate = anchor._RATE_BYTES
    padded = bytearray(data) + b"\x06"
    padded += b"\0" * (-len(padded) % rate)
    padded[-1] |= 0x80
    lanes = [0] * 25
    for offset in range(0, len(padded), rate):
        for i in range(rate // 8):
            lanes[i] ^= int.from_bytes(padded[offset + 8 * i : offset + 8 * i + 8], "little")
        lanes = anchor._keccak_f(lanes)
    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=600))
def test_the_permutation_matches_hashlib_sha3_on_multi_block_messages(data: bytes) -> None:
    assert _sha3_with_our_permutation(data) == hashlib.sha3_256(data).digest()


def test_calldata_layout() -> None:
    key = community_key("urn:ngsi-ld:EnergyCommunity:c1")
    assert key == keccak256(b"urn:ngsi-ld:EnergyCommunity:c1")
    data = anchor_calldata(key, 1714557600, 1_400, b"\x11" * 32)
    assert len(data) == 4 + 4 * 32
    assert data[:4] == function_selector("anchor(bytes32,uint256,uint256,bytes32)")
    assert data[4:36] == key
    assert int.from_bytes(data[36:68], "big") == 1714557600
    assert int.from_bytes(data[68:100], "big") == 1_400
    assert data[100:] == b"\x11" * 32
    assert roots_calldata(key, 7)[:4] == function_selector("roots(bytes32,uint256)")
    with pytest.raises(AnchorError):
        anchor_calldata(key, -1, 1, b"\x11" * 32)
    with pytest.raises(AnchorError):
        anchor_calldata(key, 1, 1, b"\x11" * 31)


# ------------------------------------------------------------------------- a JSON-RPC chain in-test


class FakeChain:
    """Enough of an Ethereum node for the anchor: accounts, calls, transactions, receipts, and the
    RootAnchor rules (first submitter owns a community, one root per interval, event emitted)."""

    def __init__(self) -> None:
        self.roots: dict[tuple[bytes, int], bytes] = {}
        self.sizes: dict[tuple[bytes, int], int] = {}
        self.submitters: dict[bytes, str] = {}
        self.receipts: dict[str, dict[str, Any]] = {}
        self.block = 0
        self.sent: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        call = json.loads(request.content)
        method, params = call["method"], call["params"]
        try:
            result = getattr(self, method)(*params)
        except ValueError as exc:
            return httpx.Response(
                200, json={"jsonrpc": "2.0", "id": call["id"], "error": {"code": 3, "message": str(exc)}}
            )
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": call["id"], "result": result})

    def eth_chainId(self) -> str:
        return hex(31337)

    def eth_accounts(self) -> list[str]:
        return [SENDER]

    def eth_call(self, tx: dict[str, Any], _block: str) -> str:
        data = bytes.fromhex(tx["data"][2:])
        assert data[:4] == function_selector("roots(bytes32,uint256)")
        key = (data[4:36], int.from_bytes(data[36:68], "big"))
        return "0x" + self.roots.get(key, bytes(32)).hex()

    def eth_sendTransaction(self, tx: dict[str, Any]) -> str:
        self.sent.append(tx)
        data = bytes.fromhex(tx["data"][2:])
        self.block += 1
        tx_hash = "0x" + keccak256(json.dumps(tx).encode() + bytes([self.block])).hex()
        if "to" not in tx:
            self.receipts[tx_hash] = {
                "status": "0x1",
                "contractAddress": CONTRACT,
                "logs": [],
                "blockNumber": hex(self.block),
            }
            return tx_hash
        community, interval = data[4:36], int.from_bytes(data[36:68], "big")
        size, root = int.from_bytes(data[68:100], "big"), data[100:132]
        owner = self.submitters.setdefault(community, tx["from"])
        if owner != tx["from"] or (community, interval) in self.roots or root == bytes(32):
            self.receipts[tx_hash] = {"status": "0x0", "logs": [], "blockNumber": hex(self.block)}
            return tx_hash
        self.roots[(community, interval)] = root
        self.sizes[(community, interval)] = size
        log = {
            "address": CONTRACT,
            "topics": [
                "0x" + keccak256(ANCHOR_EVENT.encode()).hex(),
                "0x" + community.hex(),
                "0x" + interval.to_bytes(32, "big").hex(),
            ],
            "data": "0x"
            + (size.to_bytes(32, "big") + root + bytes(12) + bytes.fromhex(tx["from"][2:])).hex(),
        }
        self.receipts[tx_hash] = {"status": "0x1", "logs": [log], "blockNumber": hex(self.block)}
        return tx_hash

    def eth_getTransactionReceipt(self, tx_hash: str) -> dict[str, Any] | None:
        return self.receipts.get(tx_hash)


@pytest.fixture
def chain() -> FakeChain:
    return FakeChain()


def _pending(n: int, community: str = "urn:ngsi-ld:EnergyCommunity:c1") -> list[PendingRoot]:
    t0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
    return [
        PendingRoot(community, t0 + timedelta(minutes=15 * i), 14 * (i + 1), bytes([i + 1]) * 32)
        for i in range(n)
    ]


def test_anchor_pending_round_trip(chain: FakeChain) -> None:
    transport = httpx.MockTransport(chain.handle)
    receipts = anchor_pending("http://chain", CONTRACT, _pending(3), transport=transport)
    assert [r.tx_hash is not None for r in receipts] == [True, True, True]
    assert [r.block_number for r in receipts] == [1, 2, 3] and receipts[0].chain_id == 31337
    assert all(tx["from"] == SENDER for tx in chain.sent)
    for p in _pending(3):
        assert (
            stored_root("http://chain", CONTRACT, p.community, p.interval_start, transport=transport)
            == p.root
        )
    # Anchoring again sends nothing: the roots are already there, the same.
    again = anchor_pending("http://chain", CONTRACT, _pending(3), transport=transport)
    assert [r.tx_hash for r in again] == [None, None, None] and len(chain.sent) == 3
    # A different root for an anchored interval is a conflict (the log and the chain disagree).
    changed = [PendingRoot(p.community, p.interval_start, p.size, b"\xee" * 32) for p in _pending(1)]
    with pytest.raises(AnchorConflict, match="already anchored"):
        anchor_pending("http://chain", CONTRACT, changed, transport=transport)


def test_anchor_reports_reverts_and_rpc_errors(chain: FakeChain) -> None:
    transport = httpx.MockTransport(chain.handle)
    anchor_pending("http://chain", CONTRACT, _pending(1), transport=transport)
    # Another account cannot anchor this community's intervals: the transaction reverts.
    later = [
        PendingRoot(p.community, p.interval_start + timedelta(hours=1), p.size, p.root) for p in _pending(1)
    ]
    with pytest.raises(AnchorError, match="reverted"):
        anchor_pending("http://chain", CONTRACT, later, sender="0x" + "ab" * 20, transport=transport)

    def broken(request: httpx.Request) -> httpx.Response:
        call = json.loads(request.content)
        return httpx.Response(
            200,
            json={"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32601, "message": "no such method"}},
        )

    with pytest.raises(AnchorError, match=r"eth_chainId .* no such method"):
        anchor_pending("http://chain", CONTRACT, _pending(1), transport=httpx.MockTransport(broken))


def test_event_decoding() -> None:
    key, root = community_key("c"), b"\x22" * 32
    log = {
        "topics": [
            "0x" + keccak256(ANCHOR_EVENT.encode()).hex(),
            "0x" + key.hex(),
            "0x" + (900).to_bytes(32, "big").hex(),
        ],
        "data": "0x" + ((5).to_bytes(32, "big") + root + bytes(12) + bytes.fromhex(SENDER[2:])).hex(),
    }
    assert decode_anchor_event(log) == (key, 900, 5, root, SENDER)
    with pytest.raises(AnchorError):
        decode_anchor_event({**log, "topics": log["topics"][:2]})


def test_node_anchors_its_settlement_intervals(tmp_path, chain: FakeChain) -> None:
    transport = httpx.MockTransport(chain.handle)
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    node = LedgerNode(engine, LedgerConfig(tmp_path / "data", community="urn:ngsi-ld:EnergyCommunity:c1"))
    t0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
    for i in range(3):  # three intervals of two members, one head each
        node.append_records(
            [
                Settlement(
                    node.community,
                    f"m{m}",
                    t0 + timedelta(minutes=15 * i),
                    offtake_wh=100,
                    injection_wh=0,
                    shared_offtake_wh=50,
                    shared_injection_wh=0,
                    amount_cents=1,
                )
                for m in range(2)
            ]
        )
    pending = node.pending_anchors()
    assert [(p.interval_start.minute, p.size) for p in pending] == [(0, 2), (15, 4), (30, 6)]
    assert pending[1].root == node.store.log.root(4)
    with pytest.raises(AnchorError, match="--contract or --deploy"):
        node.anchor("http://chain", transport=transport)
    receipts = node.anchor("http://chain", contract=CONTRACT, limit=2, transport=transport)
    assert [r.size for r in receipts] == [2, 4]
    assert [p.size for p in node.pending_anchors()] == [6]
    assert node.anchor_contract(31337) == CONTRACT  # remembered for the next run
    assert [r.size for r in node.anchor("http://chain", transport=transport)] == [6]
    assert node.pending_anchors() == [] and [a["size"] for a in node.anchors()] == [6, 4, 2]
    # Deploying needs bytecode: given here, so no compiler is needed.
    fresh = LedgerNode(
        make_engine(f"sqlite:///{tmp_path / 'other.db'}"), LedgerConfig(tmp_path / "d2", community="x")
    )
    assert anchoring.deploy_contract("http://chain", bytecode=b"\x60\x00", transport=transport) == CONTRACT
    assert fresh.anchor("http://chain", contract=CONTRACT, transport=transport) == []
    engine.dispose()


# --------------------------------------------------------------------- the real contract (extra)

_ROOT = Path(__file__).resolve().parents[2]


def _need_module(name: str, what: str) -> None:
    """Skip (or fail under BRIGHT_REQUIRE_SERVICES=1: make test installs the extra) without ``name``."""
    if importlib.util.find_spec(name) is None:
        missing_service(f"{what} (optional extra: pip install 'bright[evm]')")


def _anvil_binary() -> str | None:
    """anvil from PATH or from ``.tools/`` (where ``make test`` installs the npm package)."""
    local = _ROOT / ".tools" / "node_modules" / ".bin" / "anvil"
    return shutil.which("anvil") or (str(local) if local.exists() else None)


def test_contract_on_the_embedded_evm() -> None:
    _need_module("boa", "titanoboa (embedded EVM)")
    import boa

    contract = anchoring.embedded_contract()
    key, root = community_key("urn:ngsi-ld:EnergyCommunity:c1"), b"\x33" * 32
    contract.anchor(key, 1714557600, 14, root)
    assert contract.roots(key, 1714557600) == root and contract.sizes(key, 1714557600) == 14
    with boa.reverts("interval already anchored"):
        contract.anchor(key, 1714557600, 14, b"\x44" * 32)
    with boa.env.prank("0x" + "ab" * 20), boa.reverts("community anchored by another account"):
        contract.anchor(key, 1714558500, 28, root)
    # Our hand-made call data is what the compiled ABI expects.
    boa.env.raw_call(contract.address, data=anchor_calldata(key, 1714558500, 28, b"\x55" * 32))
    assert contract.roots(key, 1714558500) == b"\x55" * 32


@pytest.fixture
def anvil() -> Iterator[str]:
    binary = _anvil_binary()
    if binary is None:
        missing_service("anvil (npm package @foundry-rs/anvil; make test installs it under .tools/)")
        raise AssertionError("unreachable")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--silent"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(
                    url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1
                )
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_anchor_round_trip_on_anvil(anvil: str, tmp_path) -> None:
    _need_module("vyper", "the Vyper compiler")
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    node = LedgerNode(engine, LedgerConfig(tmp_path / "data", community="urn:ngsi-ld:EnergyCommunity:c1"))
    t0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
    for i in range(2):
        node.append_records(
            [
                Settlement(
                    node.community,
                    "m0",
                    t0 + timedelta(minutes=15 * i),
                    offtake_wh=100,
                    injection_wh=0,
                    shared_offtake_wh=0,
                    shared_injection_wh=0,
                    amount_cents=0,
                )
            ]
        )
    receipts = node.anchor(anvil, deploy=True)
    assert len(receipts) == 2 and all(r.tx_hash for r in receipts)
    for r in receipts:
        assert stored_root(anvil, r.contract, r.community, r.interval_start) == r.root
    assert node.anchor(anvil) == []
    engine.dispose()
