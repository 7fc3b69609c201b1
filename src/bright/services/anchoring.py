"""Anchoring a community's ledger roots on an EVM chain (the adapter of :mod:`bright.ledger.anchor`).

* :class:`JsonRpc`, a minimal Ethereum JSON-RPC client over ``httpx``;
* :func:`anchor_pending` sends one ``anchor`` transaction per pending interval
  (``eth_sendTransaction`` from an account the node unlocks, as anvil and a node with a managed key
  do), waits for the receipt, checks the ``RootAnchored`` event and reads the stored root back with
  ``eth_call``; an interval anchored before with the same root is reported, with a different root it
  is refused (:class:`~bright.ledger.anchor.AnchorConflict`);
* :func:`deploy_contract` deploys RootAnchor through JSON-RPC; :func:`embedded_contract` deploys it
  on titanoboa's embedded EVM (py-evm), for tests.

Install the extra with ``pip install 'bright[evm]'`` (titanoboa and vyper); a local chain for tests
is anvil (npm package ``@foundry-rs/anvil``; ``make test`` installs it under ``.tools/``), which
listens on 127.0.0.1:8545 with ten unlocked accounts. The node's pending intervals and receipts are
kept by :mod:`bright.services.ledger`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from bright.ledger.anchor import (
    EVM_INSTALL_HINT,
    AnchorConflict,
    AnchorError,
    AnchorReceipt,
    EvmUnavailable,
    PendingRoot,
    anchor_calldata,
    community_key,
    compile_contract,
    contract_source,
    decode_anchor_event,
    roots_calldata,
)

__all__ = ["JsonRpc", "anchor_pending", "deploy_contract", "embedded_contract", "stored_root"]


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
        raise EvmUnavailable(f"titanoboa (embedded EVM) is not installed: {EVM_INSTALL_HINT}") from None
    return boa.loads(contract_source())
