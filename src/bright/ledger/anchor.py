"""Optional EVM anchor of a community's ledger roots (extra ``bright[evm]``).

A small Vyper contract, ``contracts/RootAnchor.vy``, stores one Merkle root per settlement interval
per community and emits ``RootAnchored(community, interval, tree_size, root, submitter)``. Anchoring
a root on a public or consortium chain (Energy Web Chain is EVM-based) lets anyone check that a
community's operator has not rewritten its log, without trusting the operator or its members.

What this module does:

* the contract's ABI by hand: :func:`keccak256` (the original Keccak padding, not NIST SHA-3),
  function selectors and the fixed-size argument encoding the three calls need (no ``web3`` or
  ``eth-abi`` dependency);
* :func:`anchor_pending` sends one ``anchor`` transaction per pending interval through plain JSON-RPC
  over ``httpx`` (``eth_sendTransaction`` from an account the node unlocks, as anvil and a node with
  a managed key do), waits for the receipt, checks the ``RootAnchored`` event and reads the stored
  root back with ``eth_call``; an interval anchored before with the same root is reported, with a
  different root it is refused (:class:`AnchorConflict`);
* :func:`compile_contract` (needs the ``vyper`` compiler) and :func:`deploy_contract`;
  :func:`embedded_contract` deploys it on titanoboa's embedded EVM (py-evm) for tests.

Install the extra with ``pip install 'bright[evm]'`` (titanoboa, which brings vyper); a local chain
for tests is anvil (``npm i -g @foundry-rs/anvil``, then ``anvil`` listens on 127.0.0.1:8545 with
ten unlocked accounts). Without them everything but compilation and the embedded EVM works:
:class:`EvmUnavailable` names what is missing.

This module does network I/O (JSON-RPC), unlike the rest of :mod:`bright.ledger`; it holds no
state: the node's pending intervals and receipts are kept by :mod:`bright.services.ledger`.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "ANCHOR_EVENT",
    "CONTRACT_PATH",
    "AnchorConflict",
    "AnchorError",
    "AnchorReceipt",
    "CompiledContract",
    "EvmUnavailable",
    "JsonRpc",
    "PendingRoot",
    "anchor_calldata",
    "anchor_pending",
    "community_key",
    "compile_contract",
    "contract_source",
    "decode_anchor_event",
    "deploy_contract",
    "embedded_contract",
    "evm_available",
    "function_selector",
    "keccak256",
    "roots_calldata",
    "stored_root",
]

#: Path of the Vyper source of the anchor contract.
CONTRACT_PATH = Path(__file__).with_name("contracts") / "RootAnchor.vy"
#: Canonical signature of the contract's event.
ANCHOR_EVENT = "RootAnchored(bytes32,uint256,uint256,bytes32,address)"
_ANCHOR_FUNCTION = "anchor(bytes32,uint256,uint256,bytes32)"
_ROOTS_FUNCTION = "roots(bytes32,uint256)"
_INSTALL_HINT = "install the extra with pip install 'bright[evm]'"


class AnchorError(RuntimeError):
    """An anchoring step failed (RPC error, reverted transaction, unexpected stored root)."""


class AnchorConflict(AnchorError):
    """The chain already holds a different root for an interval of the community."""


class EvmUnavailable(AnchorError):
    """The Vyper compiler or titanoboa is not installed; the message says how to install it."""


# --------------------------------------------------------------------------------------------------
# Keccak-256 and the ABI (pure)
# --------------------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_RATE_BYTES = 136  # 1088-bit rate of Keccak-256 (capacity 512 bits)


def _round_constants() -> tuple[int, ...]:
    """The 24 iota constants, from the LFSR x^8 + x^6 + x^5 + x^4 + 1 (Keccak reference)."""
    lfsr, out = 1, []
    for _ in range(24):
        rc = 0
        for j in range(7):
            if lfsr & 1:
                rc |= 1 << ((1 << j) - 1)
            lfsr = ((lfsr << 1) ^ 0x71) & 0xFF if lfsr & 0x80 else (lfsr << 1) & 0xFF
        out.append(rc)
    return tuple(out)


def _rotations() -> tuple[int, ...]:
    """Rho offsets by lane index x + 5 y: (t + 1)(t + 2) / 2 mod 64 along the (x, y) -> (y, 2x + 3y) walk."""
    offsets = [0] * 25
    x, y = 1, 0
    for t in range(24):
        offsets[x + 5 * y] = ((t + 1) * (t + 2) // 2) % 64
        x, y = y, (2 * x + 3 * y) % 5
    return tuple(offsets)


_RC = _round_constants()
_ROT = _rotations()


def _rol(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK64 if shift else value


def _keccak_f(lanes: list[int]) -> list[int]:
    """Keccak-f[1600] on 25 64-bit lanes (index x + 5 y)."""
    a = lanes
    for rc in _RC:
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ _rol(c[(x + 1) % 5], 1) for x in range(5)]
        a = [a[i] ^ d[i % 5] for i in range(25)]
        b = [0] * 25
        for x in range(5):
            for y in range(5):
                b[y + 5 * ((2 * x + 3 * y) % 5)] = _rol(a[x + 5 * y], _ROT[x + 5 * y])
        a = [b[i] ^ ((~b[(i + 1) % 5 + 5 * (i // 5)]) & b[(i + 2) % 5 + 5 * (i // 5)]) for i in range(25)]
        a[0] ^= rc
    return a


def keccak256(data: bytes) -> bytes:
    """Keccak-256 as Ethereum uses it (original Keccak padding 0x01, not SHA3-256's 0x06).

    Parameters
    ----------
    data : bytes
        Message.

    Returns
    -------
    bytes
        32-byte digest.

    Examples
    --------
    >>> keccak256(b"").hex()[:16]
    'c5d2460186f7233c'
    """
    padded = bytearray(data)
    padded.append(0x01)
    padded.extend(b"\0" * (-len(padded) % _RATE_BYTES))
    padded[-1] |= 0x80
    lanes = [0] * 25
    for offset in range(0, len(padded), _RATE_BYTES):
        block = padded[offset : offset + _RATE_BYTES]
        for i in range(_RATE_BYTES // 8):
            lanes[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        lanes = _keccak_f(lanes)
    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])


def function_selector(signature: str) -> bytes:
    """First 4 bytes of the Keccak-256 of a canonical function signature (``transfer(address,uint256)``)."""
    return keccak256(signature.encode("ascii"))[:4]


def community_key(community: str) -> bytes:
    """The contract's key of a community: Keccak-256 of its identifier in UTF-8 (32 bytes)."""
    if not isinstance(community, str) or not community:
        raise AnchorError("a community identifier is a non-empty string")
    return keccak256(community.encode("utf-8"))


def _word_uint(value: int, what: str) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**256:
        raise AnchorError(f"{what} must be an integer in [0, 2**256), got {value!r}")
    return value.to_bytes(32, "big")


def _word_bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise AnchorError(f"{what} must be 32 bytes")
    return value


def anchor_calldata(community: bytes, interval: int, size: int, root: bytes) -> bytes:
    """ABI call data of ``anchor(bytes32 community, uint256 interval, uint256 tree_size, bytes32 root)``.

    Parameters
    ----------
    community : bytes
        32-byte community key (:func:`community_key`).
    interval : int
        Interval start, Unix seconds.
    size : int
        Number of records under the root.
    root : bytes
        32-byte Merkle root.

    Returns
    -------
    bytes
        4-byte selector followed by four 32-byte words (132 bytes).
    """
    return (
        function_selector(_ANCHOR_FUNCTION)
        + _word_bytes32(community, "community key")
        + _word_uint(interval, "interval")
        + _word_uint(size, "tree size")
        + _word_bytes32(root, "root")
    )


def roots_calldata(community: bytes, interval: int) -> bytes:
    """ABI call data of the getter ``roots(bytes32, uint256) -> bytes32``."""
    return (
        function_selector(_ROOTS_FUNCTION)
        + _word_bytes32(community, "community key")
        + _word_uint(interval, "interval")
    )


@dataclass(frozen=True)
class PendingRoot:
    """A root waiting to be anchored.

    Attributes
    ----------
    community : str
        Community identifier (its key on chain is :func:`community_key`).
    interval_start : datetime
        Start of the settlement interval (UTC).
    size : int
        Size of the signed head whose root this is.
    root : bytes
        32-byte Merkle root.
    """

    community: str
    interval_start: datetime
    size: int
    root: bytes


@dataclass(frozen=True)
class AnchorReceipt:
    """A root stored on chain.

    Attributes
    ----------
    community, interval_start, size, root
        As in :class:`PendingRoot`.
    chain_id : int
        EIP-155 chain id.
    contract : str
        Address of the RootAnchor contract.
    tx_hash : str or None
        Transaction that stored it (None when it was already on chain with the same root).
    block_number : int or None
        Block of the transaction.
    """

    community: str
    interval_start: datetime
    size: int
    root: bytes
    chain_id: int
    contract: str
    tx_hash: str | None
    block_number: int | None


def decode_anchor_event(log: dict[str, Any]) -> tuple[bytes, int, int, bytes, str]:
    """Decode a ``RootAnchored`` log entry of a receipt.

    Returns
    -------
    (community key, interval, tree size, root, submitter address)

    Raises
    ------
    AnchorError
        If the entry is not a ``RootAnchored`` event.
    """
    topics = [bytes.fromhex(str(t)[2:]) for t in log.get("topics", [])]
    data = bytes.fromhex(str(log.get("data", "0x"))[2:])
    if len(topics) != 3 or topics[0] != keccak256(ANCHOR_EVENT.encode()) or len(data) != 96:
        raise AnchorError("log entry is not a RootAnchored event")
    return (
        topics[1],
        int.from_bytes(topics[2], "big"),
        int.from_bytes(data[:32], "big"),
        data[32:64],
        "0x" + data[76:96].hex(),
    )


# --------------------------------------------------------------------------------------------------
# JSON-RPC
# --------------------------------------------------------------------------------------------------


class JsonRpc:
    """A minimal Ethereum JSON-RPC client over HTTP.

    Parameters
    ----------
    url : str
        Endpoint (``http://127.0.0.1:8545``).
    transport : httpx.BaseTransport, optional
        HTTP transport (tests use ``httpx.MockTransport``).
    timeout_s : float, optional
        Request timeout, s.
    """

    def __init__(
        self, url: str, *, transport: httpx.BaseTransport | None = None, timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self._client = httpx.Client(transport=transport, timeout=timeout_s)
        self._next_id = 0

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Call a method; returns its ``result``.

        Raises
        ------
        AnchorError
            On a transport error, a non-JSON answer or a JSON-RPC error (its message is kept).
        """
        self._next_id += 1
        try:
            response = self._client.post(
                self.url,
                json={"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": list(params)},
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise AnchorError(f"{method} at {self.url}: {type(exc).__name__}: {exc}") from None
        if not isinstance(body, dict):
            raise AnchorError(f"{method} at {self.url}: not a JSON-RPC answer")
        if body.get("error"):
            error = body["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise AnchorError(f"{method} at {self.url} failed: {message}")
        return body.get("result")

    def chain_id(self) -> int:
        """EIP-155 chain id (``eth_chainId``)."""
        return int(self.call("eth_chainId"), 16)

    def default_account(self) -> str:
        """First account the node manages (``eth_accounts``)."""
        accounts = self.call("eth_accounts")
        if not accounts:
            raise AnchorError(f"{self.url} manages no account: pass the sender explicitly")
        return str(accounts[0])

    def send_transaction(self, tx: dict[str, Any]) -> str:
        """Send a transaction from an unlocked account; returns its hash."""
        return str(self.call("eth_sendTransaction", [tx]))

    def wait_receipt(self, tx_hash: str, *, timeout_s: float = 60.0, poll_s: float = 0.1) -> dict[str, Any]:
        """Poll ``eth_getTransactionReceipt`` until the transaction is mined.

        Raises
        ------
        AnchorError
            If it is not mined within ``timeout_s`` or it reverted.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            receipt = self.call("eth_getTransactionReceipt", [tx_hash])
            if receipt:
                if int(str(receipt.get("status", "0x1")), 16) != 1:
                    raise AnchorError(f"transaction {tx_hash} reverted")
                return dict(receipt)
            if time.monotonic() > deadline:
                raise AnchorError(f"transaction {tx_hash} not mined after {timeout_s:g} s")
            time.sleep(poll_s)

    def eth_call(self, to: str, data: bytes) -> bytes:
        """Read-only call at the latest block; returns the raw return data."""
        result = self.call("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"])
        return bytes.fromhex(str(result)[2:])

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def stored_root(
    rpc_url: str,
    contract: str,
    community: str,
    interval_start: datetime,
    *,
    transport: httpx.BaseTransport | None = None,
) -> bytes | None:
    """The root the contract holds for a community's interval, or None if none was anchored.

    Parameters
    ----------
    rpc_url : str
        JSON-RPC endpoint.
    contract : str
        RootAnchor address.
    community : str
        Community identifier.
    interval_start : datetime
        Interval start (timezone-aware).
    transport : httpx.BaseTransport, optional
        HTTP transport (tests).
    """
    rpc = JsonRpc(rpc_url, transport=transport)
    try:
        return _stored_root(rpc, contract, community_key(community), int(interval_start.timestamp()))
    finally:
        rpc.close()


def _stored_root(rpc: JsonRpc, contract: str, key: bytes, interval: int) -> bytes | None:
    data = rpc.eth_call(contract, roots_calldata(key, interval))
    if len(data) != 32:
        raise AnchorError(f"roots() of {contract} returned {len(data)} bytes: is it a RootAnchor contract?")
    return None if data == bytes(32) else data


def anchor_pending(
    rpc_url: str,
    contract: str,
    pending: Iterable[PendingRoot],
    *,
    sender: str | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = 60.0,
    poll_s: float = 0.05,
) -> list[AnchorReceipt]:
    """Anchor roots on chain, one ``anchor`` transaction per interval, and verify each one.

    For every pending root: if the contract already holds the same root the receipt has no
    transaction; otherwise the transaction is sent from ``sender`` (an account the node unlocks:
    anvil's first account by default), its receipt must be successful and carry the matching
    ``RootAnchored`` event, and ``roots(community, interval)`` must then return the root.

    Parameters
    ----------
    rpc_url : str
        JSON-RPC endpoint.
    contract : str
        RootAnchor address.
    pending : iterable of PendingRoot
        Roots to anchor, in order.
    sender : str, optional
        Sending account (default: the node's first account).
    transport : httpx.BaseTransport, optional
        HTTP transport (tests).
    timeout_s, poll_s : float, optional
        How long to wait for each receipt, and how often to poll, s.

    Returns
    -------
    list of AnchorReceipt
        One per root, in order (the ones anchored before the first failure if one fails).

    Raises
    ------
    AnchorConflict
        If the chain holds another root for an interval (nothing more is sent).
    AnchorError
        On an RPC error, a reverted transaction, or a stored root that does not read back.
    """
    rpc = JsonRpc(rpc_url, transport=transport)
    try:
        chain_id = rpc.chain_id()
        account = sender or rpc.default_account()
        receipts: list[AnchorReceipt] = []
        for item in pending:
            key = community_key(item.community)
            interval = int(item.interval_start.timestamp())
            label = f"interval {item.interval_start.astimezone(UTC).isoformat()} of {item.community}"
            current = _stored_root(rpc, contract, key, interval)
            if current is not None:
                if current != item.root:
                    raise AnchorConflict(
                        f"{label} is already anchored with root {current.hex()[:16]}..., "
                        f"not {item.root.hex()[:16]}...: the log and the chain disagree"
                    )
                receipts.append(
                    AnchorReceipt(
                        item.community,
                        item.interval_start,
                        item.size,
                        item.root,
                        chain_id,
                        contract,
                        None,
                        None,
                    )
                )
                continue
            tx_hash = rpc.send_transaction(
                {
                    "from": account,
                    "to": contract,
                    "data": "0x" + anchor_calldata(key, interval, item.size, item.root).hex(),
                }
            )
            receipt = rpc.wait_receipt(tx_hash, timeout_s=timeout_s, poll_s=poll_s)
            events = []
            for entry in receipt.get("logs", []):
                if str(entry.get("address", "")).lower() != contract.lower():
                    continue
                try:
                    events.append(decode_anchor_event(entry))
                except AnchorError:
                    continue
            if not any(
                e[0] == key and e[1] == interval and e[2] == item.size and e[3] == item.root for e in events
            ):
                raise AnchorError(f"transaction {tx_hash} for {label} emitted no matching RootAnchored event")
            if _stored_root(rpc, contract, key, interval) != item.root:
                raise AnchorError(
                    f"after transaction {tx_hash} the contract does not return the root of {label}"
                )
            receipts.append(
                AnchorReceipt(
                    item.community,
                    item.interval_start,
                    item.size,
                    item.root,
                    chain_id,
                    contract,
                    tx_hash,
                    int(str(receipt.get("blockNumber", "0x0")), 16),
                )
            )
        return receipts
    finally:
        rpc.close()


# --------------------------------------------------------------------------------------------------
# Compilation and deployment (need the extra)
# --------------------------------------------------------------------------------------------------


def contract_source() -> str:
    """The Vyper source of the RootAnchor contract."""
    return CONTRACT_PATH.read_text("utf-8")


def evm_available() -> dict[str, bool]:
    """Which optional EVM tools are importable: ``{"vyper": ..., "boa": ...}``."""
    return {name: importlib.util.find_spec(name) is not None for name in ("vyper", "boa")}


@dataclass(frozen=True)
class CompiledContract:
    """Compiler output: ABI (JSON list) and deployment bytecode."""

    abi: list[dict[str, Any]]
    bytecode: bytes


@lru_cache(maxsize=1)
def compile_contract() -> CompiledContract:
    """Compile ``RootAnchor.vy`` with the Vyper compiler.

    Raises
    ------
    EvmUnavailable
        If ``vyper`` is not installed (``pip install 'bright[evm]'``).
    """
    try:
        import vyper
    except ImportError:
        raise EvmUnavailable(f"the Vyper compiler is not installed: {_INSTALL_HINT}") from None
    out = vyper.compile_code(contract_source(), output_formats=["bytecode", "abi"])
    code = str(out["bytecode"])
    return CompiledContract(
        abi=list(out["abi"]), bytecode=bytes.fromhex(code[2:] if code.startswith("0x") else code)
    )


def deploy_contract(
    rpc_url: str,
    *,
    sender: str | None = None,
    bytecode: bytes | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = 60.0,
) -> str:
    """Deploy RootAnchor through JSON-RPC; returns its address.

    Parameters
    ----------
    rpc_url : str
        JSON-RPC endpoint.
    sender : str, optional
        Deploying account (default: the node's first account).
    bytecode : bytes, optional
        Deployment bytecode (default: :func:`compile_contract`, which needs vyper).
    transport : httpx.BaseTransport, optional
        HTTP transport (tests).
    timeout_s : float, optional
        How long to wait for the receipt, s.
    """
    code = bytecode if bytecode is not None else compile_contract().bytecode
    rpc = JsonRpc(rpc_url, transport=transport)
    try:
        account = sender or rpc.default_account()
        tx_hash = rpc.send_transaction({"from": account, "data": "0x" + code.hex()})
        receipt = rpc.wait_receipt(tx_hash, timeout_s=timeout_s)
        address = receipt.get("contractAddress")
        if not address:
            raise AnchorError(f"deployment transaction {tx_hash} created no contract")
        return str(address)
    finally:
        rpc.close()


def embedded_contract() -> Any:
    """Deploy RootAnchor on titanoboa's embedded EVM and return the contract object.

    Raises
    ------
    EvmUnavailable
        If titanoboa is not installed (``pip install 'bright[evm]'``).
    """
    try:
        import boa
    except ImportError:
        raise EvmUnavailable(f"titanoboa (embedded EVM) is not installed: {_INSTALL_HINT}") from None
    return boa.loads(contract_source())


def interval_of(seconds: int) -> datetime:
    """The interval start (UTC) of a contract key ``interval`` in Unix seconds."""
    return datetime.fromtimestamp(seconds, UTC)
