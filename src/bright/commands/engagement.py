"""``bright engagement``: the S-BRIGHT questionnaire, answers, member profiles and the community mix.

Mounted in the main CLI with ``app.add_typer(engagement_app, name="engagement")``.

``bright engagement questionnaire --lang fr``      print the questionnaire (or ``--json``)
``bright engagement submit MEMBER answers.json``   store a member's answers (the file holds
                                                   ``{"answers": {...}, "consent": {"given", "date"}}``)
``bright engagement seed [COMMUNITY]``             simulated answers for the demo members
``bright engagement mix [COMMUNITY]``              the community's categories and recommendations
``bright engagement profile MEMBER``               a member's category, scores and recommendations
``bright engagement withdraw MEMBER``              erase a member's answers (consent withdrawn)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from bright.services.engagement import EngagementService

engagement_app = typer.Typer(
    help="S-BRIGHT: questionnaire, member profiles and the community's engagement mix.", no_args_is_help=True
)
# Texts printed hold URNs, DIDs and item ids such as [nep_1]: no Rich markup or emoji codes.
console = Console(emoji=False, markup=False, highlight=False)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
    ),
]
TenantOpt = Annotated[str, typer.Option(help="NGSILD-Tenant of the community")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the JSON document instead of a table")]


def _service(database: str | None) -> EngagementService:
    from bright.config import Settings
    from bright.services.engagement import EngagementConfig, EngagementService
    from bright.twin.db import make_engine
    from bright.twin.service import TwinService

    settings = Settings.from_env(database_url=database)
    twin = TwinService(make_engine(settings.database_url), settings)
    return EngagementService(twin, config=EngagementConfig.from_settings(settings))


def _community(svc: EngagementService, community: str | None, tenant: str) -> str:
    if community:
        return community
    from bright.services.community import list_communities

    found = list_communities(svc.twin, tenant=tenant)
    if len(found) != 1:
        raise typer.BadParameter(
            f"{len(found)} communities in the database; name one: {', '.join(c.id for c in found) or '-'}"
        )
    return found[0].id


def _fail(exc: Exception) -> NoReturn:
    console.print(f"error: {exc}", style="red")
    raise typer.Exit(code=1)


@engagement_app.command()
def questionnaire(
    lang: Annotated[str, typer.Option(help="Language: en, fr or nl")] = "en",
    as_json: JsonOpt = False,
) -> None:
    """Print the current questionnaire and the consent statement."""
    from bright.services.engagement import questionnaire_document

    try:
        doc = questionnaire_document(lang=lang)
    except Exception as exc:  # BadRequestData for an unknown language
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    console.print(f"{doc['version']}  {doc['intro']}")
    for number, item in enumerate(doc["items"], 1):
        options = "  ".join(f"{o['value']}={o['label']}" for o in item["options"])
        console.print(f"{number:2d}. [{item['id']}] {item['text']}\n     {options}")
    console.print(f"\n{doc['consent']['text']} ({doc['consent']['textVersion']})", style="italic")


@engagement_app.command()
def submit(
    member: Annotated[str, typer.Argument(help="Entity id of the member (EnergyProsumer)")],
    answers_file: Annotated[Path, typer.Argument(help="JSON file {answers, consent}")],
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
) -> None:
    """Store a member's answers (with its consent), score them and re-segment the community."""
    try:
        body = json.loads(answers_file.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(f"{answers_file}: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("answers"), dict):
        raise typer.BadParameter(f"{answers_file} must hold an object with 'answers' and 'consent'")
    svc = _service(database)
    try:
        result = svc.submit_answers(member, body["answers"], consent=body.get("consent"), tenant=tenant)
    except Exception as exc:
        _fail(exc)
    state = "complete" if result.complete else f"incomplete ({len(result.missing_items)} items unanswered)"
    console.print(f"answers of {member} stored: {state}")
    if result.profile is not None:
        print_profile(result.profile)


@engagement_app.command()
def seed(
    community: Annotated[str | None, typer.Argument(help="Community id (default: the only one)")] = None,
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
    seed_value: Annotated[int, typer.Option("--seed", help="Seed of the simulated answers")] = 11,
) -> None:
    """Give every member simulated answers (the documented generator) and show the mix (demo)."""
    svc = _service(database)
    cid = _community(svc, community, tenant)
    with console.status("simulating answers and segmenting the community..."):
        members = svc.seed_simulated_answers(cid, tenant=tenant, seed=seed_value)
    console.print(f"simulated answers stored for {len(members)} members of {cid}")
    print_mix(svc.mix(cid, tenant=tenant))


@engagement_app.command()
def mix(
    community: Annotated[str | None, typer.Argument(help="Community id (default: the only one)")] = None,
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
    refresh: Annotated[bool, typer.Option("--refresh", help="Segment the community again first")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show the community's categories, their shares and what suits each."""
    svc = _service(database)
    cid = _community(svc, community, tenant)
    try:
        doc = svc.refresh_community(cid, tenant=tenant) if refresh else svc.mix(cid, tenant=tenant)
    except Exception as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        print_mix(doc)


@engagement_app.command()
def profile(
    member: Annotated[str, typer.Argument(help="Entity id of the member")],
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Show a member's category, scores and recommended services and incentives."""
    svc = _service(database)
    try:
        doc = svc.profile(member, tenant=tenant)
    except Exception as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        print_profile(doc)


@engagement_app.command()
def withdraw(
    member: Annotated[str, typer.Argument(help="Entity id of the member")],
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
) -> None:
    """Erase a member's answers and profile (consent withdrawn)."""
    svc = _service(database)
    erased = svc.withdraw(member, tenant=tenant)
    console.print(f"{erased} answer set(s) of {member} erased")


def print_mix(doc: dict[str, Any]) -> None:
    """Print a community mix (:meth:`EngagementService.mix`) as a table with the model's quality."""
    title = f"Engagement mix of {doc.get('name') or doc['community']}"
    if not doc["segmented"]:
        console.print(f"{title}: not segmented ({doc['reason']})")
        return
    table = Table(title=title)
    for col in ("category", "members", "share", "services", "incentives"):
        table.add_column(col, justify="right" if col in ("members", "share") else "left")
    for cat in doc["categories"]:
        if not cat["members"]:
            continue
        recs = cat["recommendations"]
        table.add_row(
            cat["name"],
            str(cat["members"]),
            f"{cat['share']:.0%}",
            ", ".join(r["name"] for r in recs["services"]),
            ", ".join(r["name"] for r in recs["incentives"]),
        )
    console.print(table)
    model = doc["model"]
    q = model["quality"]
    console.print(
        f"{doc['classified']} of {doc['members']} members classified ({doc['incomplete']} incomplete, "
        f"{doc['simulatedAnswers']} simulated); k = {model['classes']} by BIC over "
        f"{model['respondents']} respondents ({model['referenceRespondents']} from the reference sample); "
        f"relative entropy {q['relativeEntropy']}, bootstrap ARI {q['bootstrapAriMedian']}; "
        f"{doc['structuralWinners']} structural winner(s)"
    )


def print_profile(doc: dict[str, Any]) -> None:
    """Print a member's profile (:meth:`EngagementService.profile`): category, scores, offers."""
    cat = doc["category"]
    console.print(
        f"{doc['member']}: {cat['name'] if cat else 'not classified'}"
        + (f" (p = {cat['probability']})" if cat else "")
    )
    if cat:
        console.print(f"  {cat['description']}")
    scores = ", ".join(
        f"{v['name']['en'].lower()} {v['score']:.2f}"
        for v in doc["scores"].values()
        if v["score"] is not None
    )
    console.print(f"  scores (0-1): {scores}")
    recs = doc["recommendations"]
    for kind in ("services", "incentives"):
        for r in recs[kind]:
            refs = "; ".join(f"{ref['authors'].split(',')[0]} {ref['year']}" for ref in r["references"])
            console.print(f"  {kind[:-1]}: {r['name']} ({r['suitability']:+.2f}) [{refs}]")
    for note in recs["notes"] + doc["notes"]:
        console.print(f"  note: {note}")
