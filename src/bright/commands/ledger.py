"""``bright ledger``: verify proofs offline, list and sign heads, settle, export proofs, anchor on an EVM chain.

Mounted in the main CLI with ``app.add_typer(ledger_app, name="ledger")``.

``bright ledger verify BUNDLE --key DID [--key DID ...]``   offline check of a proof bundle (exit 0/1)
``bright ledger identity``                                 the node's DID (created on first use)
``bright ledger heads [--sign] [--cosign] [--limit N]``    heads with cosignatures and finality
``bright ledger settle --start ISO --end ISO``             settle the community and record it
``bright ledger proof INDEX [-o bundle.json]``             export a record's proof bundle
``bright ledger forks``                                    fork alarms
``bright ledger anchor --rpc URL [--contract ADDR | --deploy]``   anchor pending interval roots
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from bright.services.ledger import LedgerNode

ledger_app = typer.Typer(
    help="B-DLT ledger: identity, heads, proofs, offline verification, EVM anchor.", no_args_is_help=True
)
# Texts printed hold URNs, DIDs and item ids such as [nep_1]: no Rich markup or emoji codes.
console = Console(emoji=False, markup=False, highlight=False)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
    ),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Node data directory holding keys/ (env BRIGHT_DATA_DIR)")
]


def _fail(message: object) -> NoReturn:
    console.print(f"error: {message}", style="red")
    raise typer.Exit(code=1)


def _node(database: str | None, data_dir: Path | None) -> LedgerNode:
    from bright.config import Settings
    from bright.services.ledger import LedgerNode
    from bright.twin.db import make_engine
    from bright.twin.service import TwinService

    settings = Settings.from_env(database_url=database)
    twin = TwinService(make_engine(settings.database_url), settings)
    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    return LedgerNode.open(settings, twin=twin, **overrides)


@ledger_app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="Proof bundle (JSON) from /api/ledger/records/{i}/proof")],
    key: Annotated[
        list[str] | None, typer.Option("--key", help="Trusted did:key (repeat for the operator and members)")
    ] = None,
) -> None:
    """Verify a proof bundle offline with nothing but the bundle and the trusted public keys."""
    from bright.ledger.verify import verify_bundle_file

    if not bundle.is_file():
        raise typer.BadParameter(f"{bundle} is not a file")
    report = verify_bundle_file(bundle, trusted_keys=key or None)
    typer.echo(report.summary())
    raise typer.Exit(code=0 if report.ok else 1)


@ledger_app.command()
def identity(database: DatabaseOpt = None, data_dir: DataDirOpt = None) -> None:
    """Print the node's DID (the key is created on first use, mode 0600) and its community."""
    node = _node(database, data_dir)
    doc = node.identity_document()
    console.print(f"did: {doc['did']}\ncommunity: {doc['community']}\nlog size: {doc['logSize']}")


@ledger_app.command()
def heads(
    database: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
    limit: Annotated[int, typer.Option(help="Heads to list, largest first")] = 10,
    sign: Annotated[bool, typer.Option("--sign", help="Sign a head over the whole log first")] = False,
    cosign: Annotated[bool, typer.Option("--cosign", help="Ask the configured peers to cosign it")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List the signed tree heads with their cosignatures and finality."""
    node = _node(database, data_dir)
    if cosign:
        result = node.request_cosignatures()
        for outcome in result.outcomes:
            console.print(f"peer {outcome.url}: {outcome.status} {outcome.detail}")
    elif sign:
        node.sign_head()
    items = [node.head_json(h) for h in node.heads(limit=limit)]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table(title=f"Tree heads of {node.community} ({node.store.size} records)")
    for col in ("size", "root", "signed at", "cosignatures", "final"):
        table.add_column(col, justify="right" if col in ("size", "cosignatures") else "left")
    for item in items:
        fin = item["finality"]
        final = (
            "-"
            if fin is None
            else f"{'yes' if fin['final'] else 'no'} ({len(fin['signers'])}/{fin['required']})"
        )
        table.add_row(
            str(item["size"]),
            item["root"][:16] + "...",
            item["timestamp"],
            str(len(item["cosignatures"])),
            final,
        )
    console.print(table)


@ledger_app.command()
def settle(
    start: Annotated[
        str | None, typer.Option(help="Start (ISO 8601; local date = Brussels midnight)")
    ] = None,
    end: Annotated[str | None, typer.Option(help="End, exclusive")] = None,
    pricing: Annotated[str | None, typer.Option(help="fixed, mid_market or auction")] = None,
    database: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Settle the community over a period and append one signed record per member and quarter-hour."""
    node = _node(database, data_dir)
    options: dict[str, Any] = {"pricing": pricing} if pricing else {}
    try:
        result = node.settle(start=start, end=end, **options)
    except Exception as exc:
        _fail(exc)
    console.print(
        f"{result.records} settlement records over {result.intervals} intervals appended "
        f"({result.skipped_existing} already recorded, {result.incomplete} incomplete, "
        f"{len(result.conflicting)} conflicting); log size {node.store.size}"
    )


@ledger_app.command()
def proof(
    index: Annotated[int, typer.Argument(help="Leaf index of the record")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the bundle here")] = None,
    size: Annotated[int | None, typer.Option(help="Head size to prove against (default latest)")] = None,
    database: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Export the proof bundle of a record (verify it with ``bright ledger verify``)."""
    from bright.ledger.verify import bundle_to_bytes

    node = _node(database, data_dir)
    try:
        bundle = node.proof_bundle(index, size=size)
    except Exception as exc:
        _fail(exc)
    data = bundle_to_bytes(bundle)
    if output is None:
        typer.echo(data.decode())
    else:
        output.write_bytes(data)
        console.print(f"bundle of record {index} written to {output}; operator key {node.did}")


@ledger_app.command()
def forks(database: DatabaseOpt = None, data_dir: DataDirOpt = None) -> None:
    """List the fork alarms (both heads are kept as evidence)."""
    node = _node(database, data_dir)
    items = node.forks()
    if not items:
        console.print("no fork detected")
    for item in items:
        console.print(f"FORK {item['description']}", style="red")


@ledger_app.command()
def anchor(
    rpc: Annotated[
        str, typer.Option("--rpc", help="JSON-RPC URL of the EVM node (anvil: http://127.0.0.1:8545)")
    ],
    contract: Annotated[str | None, typer.Option(help="RootAnchor contract address")] = None,
    deploy: Annotated[bool, typer.Option("--deploy", help="Deploy the contract if none is known")] = False,
    sender: Annotated[
        str | None, typer.Option(help="Unlocked sending account (default: the node's first)")
    ] = None,
    limit: Annotated[int, typer.Option(help="Most intervals to anchor now")] = 100,
    database: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Anchor the pending settlement-interval roots on an EVM chain and verify them."""
    from bright.ledger.anchor import AnchorError

    node = _node(database, data_dir)
    try:
        receipts = node.anchor(rpc, contract=contract, deploy=deploy, sender=sender, limit=limit)
    except AnchorError as exc:
        _fail(exc)
    sent = sum(1 for r in receipts if r.tx_hash)
    address = receipts[0].contract if receipts else (contract or "-")
    console.print(
        f"{len(receipts)} interval root(s) anchored and verified on {rpc} "
        f"({sent} transaction(s), {len(receipts) - sent} already on chain); contract {address}"
    )
