"""The EVM anchor of a community's ledger roots, pure part (extra ``bright[evm]`` to compile).

A small Vyper contract, ``contracts/RootAnchor.vy``, stores one Merkle root per settlement interval
per community and emits ``RootAnchored(community, interval, tree_size, root, submitter)``. Anchoring
a root on a public or consortium chain (Energy Web Chain is EVM-based) lets anyone check that a
community's operator has not rewritten its log, without trusting the operator or its members.

This module holds what needs no network: :func:`keccak256` (the original Keccak padding, not NIST
SHA-3), function selectors and the fixed-size argument encoding of the contract's calls (no
``web3`` or ``eth-abi`` dependency), the decoding of its event, the data types of a pending root and
of a receipt, and :func:`compile_contract` (needs the ``vyper`` compiler, from the extra).

Talking to a chain (JSON-RPC over HTTP, deploying, anchoring the pending roots, the embedded EVM of
titanoboa) is an adapter: :mod:`bright.services.anchoring`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "ANCHOR_EVENT",
    "CONTRACT_PATH",
    "EVM_INSTALL_HINT",
    "AnchorConflict",
    "AnchorError",
    "AnchorReceipt",
    "CompiledContract",
    "EvmUnavailable",
    "PendingRoot",
    "anchor_calldata",
    "community_key",
    "compile_contract",
    "contract_source",
    "decode_anchor_event",
    "evm_available",
    "function_selector",
    "keccak256",
    "roots_calldata",
]

#: Path of the Vyper source of the anchor contract.
CONTRACT_PATH = Path(__file__).with_name("contracts") / "RootAnchor.vy"
#: Canonical signature of the contract's event.
ANCHOR_EVENT = "RootAnchored(bytes32,uint256,uint256,bytes32,address)"
_ANCHOR_FUNCTION = "anchor(bytes32,uint256,uint256,bytes32)"
_ROOTS_FUNCTION = "roots(bytes32,uint256)"
EVM_INSTALL_HINT = "install the extra with pip install 'bright[evm]'"


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
        raise EvmUnavailable(f"the Vyper compiler is not installed: {EVM_INSTALL_HINT}") from None
    out = vyper.compile_code(contract_source(), output_formats=["bytecode", "abi"])
    code = str(out["bytecode"])
    return CompiledContract(
        abi=list(out["abi"]), bytecode=bytes.fromhex(code[2:] if code.startswith("0x") else code)
    )


def interval_of(seconds: int) -> datetime:
    """The interval start (UTC) of a contract key ``interval`` in Unix seconds."""
    return datetime.fromtimestamp(seconds, UTC)
