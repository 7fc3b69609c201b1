"""``bright offers`` and ``bright bundle``: the service catalogue and members' bundle comparisons.

Mounted in the main CLI with ``app.add_typer(offers_app, name="offers")`` and
``app.add_typer(bundle_app, name="bundle")``.

``bright offers list``                        the published offers (``--json`` for the terms)
``bright offers publish FILE.json``           publish an offer (its terms as JSON) or ``--demo COMMUNITY``
``bright bundle evaluate``                    value bundles for a member over a year (rich table);
                                              ``--offer ID`` repeated builds one bundle, default the
                                              ten demo bundles on the demo home; ``--days N`` shortens
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from bright.energy.offers import BundleComparison
    from bright.services.offers import OfferService

offers_app = typer.Typer(
    help="B-BRIGHT: service offers around flexibility (ESCO, FCR, EV, care, security).", no_args_is_help=True
)
bundle_app = typer.Typer(
    help="Compare bundles of offers for one member (value stacking).", no_args_is_help=True
)
console = Console(emoji=False, markup=False, highlight=False)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
    ),
]
TenantOpt = Annotated[str, typer.Option(help="NGSILD-Tenant of the community")]


def _service(database: str | None) -> OfferService:
    from bright.config import Settings
    from bright.services.offers import OfferService
    from bright.twin.db import make_engine
    from bright.twin.service import TwinService

    settings = Settings.from_env(database_url=database)
    return OfferService(TwinService(make_engine(settings.database_url), settings))


def _fail(message: str) -> NoReturn:
    console.print(f"error: {message}")
    raise typer.Exit(1)


@offers_app.command("list")
def list_offers(
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the published offers."""
    offers = _service(database).offers(tenant=tenant)
    if as_json:
        typer.echo(json.dumps([o.to_json() for o in offers], indent=2))
        return
    table = Table(title=f"{len(offers)} offers")
    for col in ("offer", "provider", "kind", "fee EUR/month", "provider share", "data", "control"):
        table.add_column(col)
    for o in offers:
        table.add_row(
            o.id.rsplit(":", 1)[-1],
            o.provider_id.rsplit(":", 1)[-1],
            o.provider_kind,
            f"{o.fee_eur_per_month:.2f}",
            f"{o.provider_share:.0%}",
            ", ".join(d.stream for d in o.data_needs) or "-",
            ", ".join(c.describe() for c in o.control) or "-",
        )
    console.print(table)


@offers_app.command("publish")
def publish(
    file: Annotated[
        Path | None, typer.Argument(help="The offer's terms (JSON, as `offers list --json`)")
    ] = None,
    demo: Annotated[str | None, typer.Option(help="Publish the six demo offers in this community")] = None,
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
) -> None:
    """Publish an offer from a JSON file, or the demo catalogue."""
    from bright.services.offers import OfferInputError, seed_demo_offers

    svc = _service(database)
    if demo:
        ids = seed_demo_offers(svc, demo, tenant=tenant)
        console.print(f"published {len(ids)} offers in {demo}")
        return
    if file is None:
        _fail("give a JSON file or --demo COMMUNITY")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"{file}: {exc}")
    try:
        offer = svc.publish(raw, tenant=tenant)
    except OfferInputError as exc:
        _fail(str(exc))
    console.print(f"published {offer.id}")


def print_comparison(cmp: BundleComparison) -> None:
    """The comparison as a rich table: value, best single offer, stacking gain, plan."""
    table = Table(
        title=f"bundles of {cmp.member_id} (energy cost without offers {cmp.baseline_cost_eur:,.0f} EUR)"
    )
    for col, just in (
        ("bundle", "left"),
        ("offers", "right"),
        ("value EUR", "right"),
        ("best single", "left"),
        ("alone EUR", "right"),
        ("gain EUR", "right"),
        ("plan", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for b in cmp.bundles:
        best, value = b.best_single
        plan = (
            "joint"
            if b.chosen is b.joint
            else "leave out " + ", ".join(k.rsplit(":", 1)[-1] for k in b.idle_offers)
        )
        table.add_row(
            b.name,
            str(len(b.offer_ids)),
            f"{b.value_eur:,.0f}",
            best.rsplit(":", 1)[-1],
            f"{value:,.0f}",
            f"{b.stacking_gain_eur:,.0f}",
            plan,
        )
    console.print(table)


@bundle_app.command("evaluate")
def evaluate(
    offer: Annotated[
        list[str] | None, typer.Option("--offer", help="Offer id (repeat) forming one bundle")
    ] = None,
    community: Annotated[str | None, typer.Option(help="Community (with --offer: published offers)")] = None,
    member: Annotated[str, typer.Option(help="Member id")] = "urn:ngsi-ld:EnergyProsumer:demo-1",
    days: Annotated[
        int | None, typer.Option(help="Evaluate the first N days only (default the year)")
    ] = None,
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Value bundles for a member over a year at 15 min; the ten demo bundles by default."""
    from bright.energy.offers import OfferError
    from bright.services.offers import OfferInputError, demo_bundle_comparison
    from bright.twin.errors import NgsiLdError

    try:
        if offer:
            if not community:
                _fail("--offer needs --community (the offers are read from the node)")
            svc = _service(database)
            cmp = svc.evaluate(community, member, {"bundle": list(offer)}, tenant=tenant, days=days)
        else:
            with console.status("evaluating the ten demo bundles over the year ..."):
                cmp = demo_bundle_comparison(member, days=days)
    except (OfferError, OfferInputError, NgsiLdError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps([b.to_json() for b in cmp.bundles], indent=2))
        return
    print_comparison(cmp)


def print_demo_offers(twin: object, community_id: str, member_id: str, *, days: int = 28) -> None:
    """The demo step: publish the six demo offers in the community and print one member's ten
    bundles over the first ``days`` days of 2023 (``bright bundle evaluate`` does the whole year)."""
    from bright.services.offers import OfferService, demo_bundle_comparison, seed_demo_offers

    ids = seed_demo_offers(OfferService(twin), community_id)  # type: ignore[arg-type]
    console.print(
        f"{len(ids)} service offers published (ESCO, FCR aggregator, EV charging, AAL, security, community)"
    )
    with console.status(f"valuing ten bundles of offers for one member over {days} days..."):
        cmp = demo_bundle_comparison(member_id, days=days)
    print_comparison(cmp)
