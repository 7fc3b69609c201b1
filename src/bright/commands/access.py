"""``bright token``, ``bright audit`` and ``bright peers``: access control from the command line.

Mounted in the main CLI (``app.add_typer(token_app, name="token")``, ``app.command("audit")(audit)``,
``app.add_typer(peers_app, name="peers")``). They work on the node's database directly, as its
operator (the one who can read the database is the node's manager).

``bright token create NAME --role ROLE [--community ID] [--member ID] [--tenant T] [--subject URN]``  prints it once
``bright token list``                                                              never prints secrets
``bright token revoke TOKEN_ID``
``bright audit [--since ISO] [--until ISO] [--peer NODE] [--decision D] [--tenant T] [--limit N] [--json]``
``bright peers list [--all]`` / ``join DID NODE_ID [--url URL] [--name N] [--role member|organiser]`` / ``leave KEY``
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

token_app = typer.Typer(help="API tokens of the node: create, list, revoke.", no_args_is_help=True)
peers_app = typer.Typer(help="Member nodes of this node's network: list, join, leave.", no_args_is_help=True)
console = Console(emoji=False, markup=False, highlight=False)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
    ),
]


def _fail(message: object) -> NoReturn:
    console.print(f"error: {message}", style="red")
    raise typer.Exit(code=1)


def _engine(database: str | None) -> Any:
    from bright.config import Settings
    from bright.twin.db import make_engine

    return make_engine(Settings.from_env(database_url=database).database_url)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What the token is for (city-dashboard, school-staff...)")],
    role: Annotated[str, typer.Option(help="Role of the holder (docs/roles.md)")],
    community: Annotated[str | None, typer.Option(help="Community of the holder")] = None,
    member: Annotated[str | None, typer.Option(help="EnergyProsumer id (member tokens)")] = None,
    tenant: Annotated[str | None, typer.Option(help="NGSI-LD tenant the token is valid for")] = None,
    subject: Annotated[
        str | None,
        typer.Option(help="Act as this party, e.g. urn:ngsi-ld:ServiceProvider:esco-1 (default token:NAME)"),
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Create an API token; it is printed once and never again (only its hash is stored)."""
    from bright.network.access import TokenSubjectError, TokenSubjects
    from bright.network.membership import Membership
    from bright.web.users import UserInputError, create_token

    engine = _engine(database)
    if subject is not None:
        from bright.api.auth import check_subject_of_token

        try:
            subject = check_subject_of_token(Membership(engine), subject, role)
        except TokenSubjectError as exc:
            _fail(exc)
    try:
        token, value = create_token(
            engine,
            name,
            role,
            community_id=community,
            member_id=member,
            tenant=tenant,
            created_by="cli",
        )
    except UserInputError as exc:
        _fail(exc)
    if subject is not None:
        TokenSubjects(engine).set(token.token_id, subject)
    acts_as = f", acts as {subject}" if subject else ""
    console.print(
        f"token {token.token_id} ({token.name}, role {token.role}{acts_as}); keep it now, it is not shown again:"
    )
    print(value)


@token_app.command("list")
def token_list(database: DatabaseOpt = None) -> None:
    """List the tokens (ids, names, roles, dates; never their secrets)."""
    from bright.network.access import TokenSubjects
    from bright.web.users import list_tokens

    engine = _engine(database)
    subjects = TokenSubjects(engine).all()
    table = Table("id", "name", "role", "subject", "community", "member", "tenant", "created", "revoked")
    for t in list_tokens(engine):
        table.add_row(
            t.token_id,
            t.name,
            t.role,
            subjects.get(t.token_id, f"token:{t.name}"),
            t.community_id or "",
            t.member_id or "",
            t.tenant or "",
            t.created_at.strftime("%Y-%m-%d %H:%M"),
            t.revoked_at.strftime("%Y-%m-%d %H:%M") if t.revoked_at else "",
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token id (bright token list)")],
    database: DatabaseOpt = None,
) -> None:
    """Revoke a token at once (kept in the list with its revocation date)."""
    from bright.web.users import UserInputError, revoke_token

    try:
        token = revoke_token(_engine(database), token_id)
    except UserInputError as exc:
        _fail(exc)
    console.print(f"token {token.token_id} ({token.name}) revoked")


def audit(
    since: Annotated[str | None, typer.Option(help="From this instant (ISO 8601, UTC if naive)")] = None,
    until: Annotated[str | None, typer.Option(help="Until this instant (excluded)")] = None,
    peer: Annotated[str | None, typer.Option(help="Only this peer node (node id)")] = None,
    decision: Annotated[
        str | None, typer.Option(help="allowed, filtered, refused, denied or unauthenticated")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Only requests to this NGSI-LD tenant ('' = default; all if omitted)")
    ] = None,
    limit: Annotated[int, typer.Option(help="Most entries, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
    database: DatabaseOpt = None,
) -> None:
    """The access audit log: every access by a peer node and every refused request."""
    from bright.network.policy import AuditLog, parse_instant

    try:
        start = parse_instant(since, "--since") if since else None
        end = parse_instant(until, "--until") if until else None
    except ValueError as exc:
        _fail(exc)
    entries = AuditLog(_engine(database)).entries(
        since=start, until=end, peer=peer, decision=decision, tenant=tenant, limit=limit
    )
    if as_json:
        for e in entries:
            print(json.dumps(e.to_json()))
        return
    table = Table("at (UTC)", "who", "request", "status", "decision", "policy / reason")
    for e in entries:
        who = f"{e.role} {e.subject or ''}".strip()
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            who,
            f"{e.method} {e.path}",
            str(e.status),
            e.decision + (f" ({e.filtered} removed)" if e.filtered else ""),
            e.policy_uid or e.reason or "",
        )
    console.print(table)


@peers_app.command("list")
def peers_list(
    include_left: Annotated[bool, typer.Option("--all", help="Also the nodes that left")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Member nodes of the network, as this node knows them."""
    from bright.network.membership import Membership

    table = Table("node id", "DID", "url", "role", "joined", "left")
    for m in Membership(_engine(database)).members(include_left=include_left):
        table.add_row(
            m.node_id,
            m.did,
            m.url or "",
            m.role,
            m.joined_at.strftime("%Y-%m-%d %H:%M"),
            m.left_at.strftime("%Y-%m-%d %H:%M") if m.left_at else "",
        )
    console.print(table)


@peers_app.command("join")
def peers_join(
    did: Annotated[str, typer.Argument(help="The node's did:key (GET /api/network/node on that node)")],
    node_id: Annotated[str, typer.Argument(help="Its node id (BRIGHT_NODE_ID)")],
    url: Annotated[str | None, typer.Option(help="Base URL it serves at")] = None,
    name: Annotated[str | None, typer.Option(help="Human name")] = None,
    role: Annotated[str, typer.Option(help="member or organiser")] = "member",
    database: DatabaseOpt = None,
) -> None:
    """Admit a node: its signed requests are accepted from now on."""
    from bright.network.membership import Membership, MembershipError

    try:
        m = Membership(_engine(database)).join(did, node_id, url=url, name=name, role=role)
    except MembershipError as exc:
        _fail(exc)
    console.print(f"{m.node_id} ({m.did}) joined as {m.role}")


@peers_app.command("leave")
def peers_leave(
    key: Annotated[str, typer.Argument(help="DID or node id")],
    database: DatabaseOpt = None,
) -> None:
    """Remove a node and delete its context source registrations on this node."""
    from bright.network.membership import Membership, MembershipError
    from bright.network.registrations import RegistrationStore

    engine = _engine(database)

    class _Registrations:
        """The registration store alone (no running node): delete rows directly."""

        def __init__(self) -> None:
            self.store = RegistrationStore(engine)

        def delete(self, tenant: str, rid: str) -> None:
            self.store.delete(tenant, rid)

    try:
        m, removed = Membership(engine).leave(key, registrations=_Registrations())
    except MembershipError as exc:
        _fail(exc)
    console.print(f"{m.node_id} left; registrations deleted: {', '.join(removed) or 'none'}")
