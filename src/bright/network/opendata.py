"""Open data of the network: cards, KPIs and practices as CSV, Parquet and JSON-LD, with a DCAT-AP catalogue.

Three datasets, built only from the public models (:class:`~bright.network.cards.CommunityCard`,
:class:`~bright.network.knowledge.Practice`), so no person, member or meter can appear in them:

- ``cards``: one row per community: place, legal form, founding year, members by type,
  technologies, sharing method, goals, languages, the organisation's contact, scope tags;
- ``kpis``: one row per community and KPI period: self-sufficiency, self-consumption, shared kWh,
  CO2 avoided, with members and PV to normalise;
- ``practices``: one row per practice or lesson: community, topics, outcome, cost (EUR), year, and
  the title / what worked / what failed in each language.

Formats: CSV (UTF-8, comma, header, ``;`` inside list cells), Parquet (Apache Arrow types) and
JSON-LD (a ``@graph`` of nodes with an inline ``@context`` mapping every column to its IRI, so a
researcher's RDF tools read it offline). The catalogue is DCAT-AP 3 in JSON-LD: a ``dcat:Catalog`` with
one ``dcat:Dataset`` per dataset (title, description, keywords, licence CC BY 4.0, publisher,
temporal and spatial coverage, update frequency) and one ``dcat:Distribution`` per format
(``dcat:mediaType`` as an IANA media-type IRI, ``dct:format``, ``dcat:downloadURL``, ``dcat:accessURL``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd

from bright.network.cards import CARD_TERMS, IRI, CardError, CommunityCard
from bright.network.knowledge import KNOWLEDGE_TERMS, LANGUAGES, Practice
from bright.twin.context import BRIGHT_NS as _NS

__all__ = [
    "DATASETS",
    "FORMATS",
    "LICENSE",
    "cards_frame",
    "catalog",
    "dataset_frame",
    "export",
    "kpis_frame",
    "practices_frame",
    "to_jsonld",
]

LICENSE = "https://creativecommons.org/licenses/by/4.0/"
FORMATS: dict[str, tuple[str, str]] = {
    # extension -> (media type, EU file-type authority code)
    "csv": ("text/csv", "CSV"),
    "parquet": ("application/vnd.apache.parquet", "PARQUET"),
    "jsonld": ("application/ld+json", "JSON_LD"),
}
DATASETS: dict[str, dict[str, Any]] = {
    "cards": {
        "title": "Energy community cards",
        "description": "The public card of each energy community of the network: place, legal form, "
        "founding year, members by type, technologies, sharing method, goals, languages, contact of the "
        "organisation, scope tags.",
        "keywords": ["energy community", "renewable energy community", "REC", "CEC", "Brussels"],
        "type": "EnergyCommunity",
    },
    "kpis": {
        "title": "Energy community KPIs",
        "description": "Key performance indicators of each community per period: self-sufficiency, "
        "self-consumption, energy shared between members (kWh), CO2 avoided (kgCO2e).",
        "keywords": ["energy sharing", "self-consumption", "self-sufficiency", "KPI"],
        "type": "KeyPerformanceIndicator",
    },
    "practices": {
        "title": "Practices and lessons learned of energy communities",
        "description": "What communities did, what worked and what failed, with topics, outcome and "
        "cost, in English, French and Dutch.",
        "keywords": ["good practice", "lessons learned", "energy community", "multilingual"],
        "type": "Practice",
    },
}

_XSD = "http://www.w3.org/2001/XMLSchema#"
_SDM = "https://smartdatamodels.org/"
# column -> (IRI, xsd type or None for a string)
_CARD_COLUMNS: dict[str, tuple[str, str | None]] = {
    "id": ("@id", None),
    "name": (IRI["name"], None),
    "municipality": (_NS + "municipality", None),
    "postcode": (_NS + "postalCode", None),
    "latitude": ("http://www.w3.org/2003/01/geo/wgs84_pos#lat", "double"),
    "longitude": ("http://www.w3.org/2003/01/geo/wgs84_pos#long", "double"),
    "radius_km": (CARD_TERMS["areaRadius"], "double"),
    "legal_form": (IRI["legalForm"], None),
    "founding_year": (IRI["foundingYear"], "integer"),
    "members": (CARD_TERMS["memberCount"], "integer"),
    "households": (CARD_TERMS["householdCount"], "integer"),
    "schools": (CARD_TERMS["schoolCount"], "integer"),
    "smes": (CARD_TERMS["smeCount"], "integer"),
    "public_buildings": (CARD_TERMS["publicBuildingCount"], "integer"),
    "other_members": (CARD_TERMS["otherMemberCount"], "integer"),
    "pv_kwp": (CARD_TERMS["pvPeakPower"], "double"),
    "storage_kwh": (CARD_TERMS["storageCapacity"], "double"),
    "ev_chargers": (CARD_TERMS["evChargerCount"], "integer"),
    "heat_pumps": (CARD_TERMS["heatPumpCount"], "integer"),
    "sharing_method": (IRI["sharingMethod"], None),
    "goals": (CARD_TERMS["goals"], None),
    "initiatives": (CARD_TERMS["initiatives"], None),
    "languages": (CARD_TERMS["languages"], None),
    "scope": ("https://uri.etsi.org/ngsi-ld/scope", None),
    "contact_organisation": (_NS + "contactOrganisation", None),
    "contact_email": (_NS + "contactEmail", None),
    "contact_url": (_NS + "contactUrl", None),
    "description_en": (IRI["description"], None),
    "description_fr": (IRI["description"], None),
    "description_nl": (IRI["description"], None),
}
_KPI_COLUMNS: dict[str, tuple[str, str | None]] = {
    "id": ("@id", None),
    "community": (_NS + "refEnergyCommunity", None),
    "name": (IRI["name"], None),
    "period": (CARD_TERMS["kpiPeriod"], None),
    "self_sufficiency": (CARD_TERMS["selfSufficiency"], "double"),
    "self_consumption": (CARD_TERMS["selfConsumptionRate"], "double"),
    "shared_kwh": (CARD_TERMS["sharedEnergy"], "double"),
    "co2_avoided_kg": (CARD_TERMS["co2Avoided"], "double"),
    "members": (CARD_TERMS["memberCount"], "integer"),
    "pv_kwp": (CARD_TERMS["pvPeakPower"], "double"),
}
_PRACTICE_COLUMNS: dict[str, tuple[str, str | None]] = {
    "id": ("@id", None),
    "community": (_NS + "refEnergyCommunity", None),
    "kind": (KNOWLEDGE_TERMS["practiceKind"], None),
    "topics": (KNOWLEDGE_TERMS["topics"], None),
    "outcome": (KNOWLEDGE_TERMS["outcome"], None),
    "cost_eur": (KNOWLEDGE_TERMS["cost"], "double"),
    "year": (KNOWLEDGE_TERMS["year"], "integer"),
    "contact_organisation": (_NS + "contactOrganisation", None),
    **{f"title_{lg}": (KNOWLEDGE_TERMS["title"], None) for lg in LANGUAGES},
    **{f"what_worked_{lg}": (KNOWLEDGE_TERMS["whatWorked"], None) for lg in LANGUAGES},
    **{f"what_failed_{lg}": (KNOWLEDGE_TERMS["whatFailed"], None) for lg in LANGUAGES},
}
_COLUMNS = {"cards": _CARD_COLUMNS, "kpis": _KPI_COLUMNS, "practices": _PRACTICE_COLUMNS}
_DTYPES = {"double": "Float64", "integer": "Int64", None: "string"}


def _typed(frame: pd.DataFrame, columns: dict[str, tuple[str, str | None]]) -> pd.DataFrame:
    frame = frame.reindex(columns=list(columns))
    return frame.astype({c: _DTYPES[t] for c, (_, t) in columns.items()})


def _join(values: Sequence[str]) -> str | None:
    return ";".join(values) if values else None


def cards_frame(cards: Sequence[CommunityCard]) -> pd.DataFrame:
    """The ``cards`` dataset: one row per card (public fields only)."""
    rows = []
    for c in cards:
        m, t = c.members, c.technologies
        rows.append(
            {
                "id": c.id,
                "name": c.name,
                "municipality": c.municipality,
                "postcode": c.postcode,
                "latitude": c.lat,
                "longitude": c.lon,
                "radius_km": c.radius_km,
                "legal_form": c.legal_form,
                "founding_year": c.founding_year,
                "members": m.total,
                "households": m.households,
                "schools": m.schools,
                "smes": m.smes,
                "public_buildings": m.public_buildings,
                "other_members": m.other,
                "pv_kwp": t.pv_kwp,
                "storage_kwh": t.storage_kwh,
                "ev_chargers": t.ev_chargers,
                "heat_pumps": t.heat_pumps,
                "sharing_method": c.sharing_method,
                "goals": _join(c.goals),
                "initiatives": _join(c.initiatives),
                "languages": _join(c.languages),
                "scope": _join(c.scope),
                "contact_organisation": c.contact.organisation if c.contact else None,
                "contact_email": c.contact.email if c.contact else None,
                "contact_url": c.contact.url if c.contact else None,
                **{f"description_{lg}": c.description.get(lg) for lg in LANGUAGES},
            }
        )
    return _typed(pd.DataFrame(rows), _CARD_COLUMNS)


def kpis_frame(cards: Sequence[CommunityCard]) -> pd.DataFrame:
    """The ``kpis`` dataset: one row per card with KPIs (the period of its latest KPIs)."""
    rows = []
    for c in cards:
        k = c.kpis
        if all(v is None for v in (k.self_sufficiency, k.self_consumption, k.shared_kwh, k.co2_avoided_kg)):
            continue
        rows.append(
            {
                "id": f"{c.id}:kpi:{k.period or 'latest'}",
                "community": c.id,
                "name": c.name,
                "period": k.period,
                "self_sufficiency": k.self_sufficiency,
                "self_consumption": k.self_consumption,
                "shared_kwh": k.shared_kwh,
                "co2_avoided_kg": k.co2_avoided_kg,
                "members": c.members.total,
                "pv_kwp": c.technologies.pv_kwp,
            }
        )
    return _typed(pd.DataFrame(rows), _KPI_COLUMNS)


def practices_frame(practices: Sequence[Practice]) -> pd.DataFrame:
    """The ``practices`` dataset: one row per practice or lesson, texts in one column per language."""
    rows = []
    for p in practices:
        row: dict[str, Any] = {
            "id": p.id,
            "community": p.community,
            "kind": p.kind_of,
            "topics": _join(p.topics),
            "outcome": p.outcome,
            "cost_eur": p.cost_eur,
            "year": p.year,
            "contact_organisation": p.contact.organisation if p.contact else None,
        }
        for lg in LANGUAGES:
            row[f"title_{lg}"] = p.title.get(lg)
            row[f"what_worked_{lg}"] = p.what_worked.get(lg)
            row[f"what_failed_{lg}"] = p.what_failed.get(lg)
        rows.append(row)
    return _typed(pd.DataFrame(rows), _PRACTICE_COLUMNS)


def dataset_frame(name: str, cards: Sequence[CommunityCard], practices: Sequence[Practice]) -> pd.DataFrame:
    """The frame of dataset ``name`` (``cards``, ``kpis`` or ``practices``).

    Raises
    ------
    CardError
        Unknown dataset.
    """
    if name == "cards":
        return cards_frame(cards)
    if name == "kpis":
        return kpis_frame(cards)
    if name == "practices":
        return practices_frame(practices)
    raise CardError(f"unknown dataset {name!r}; use one of {sorted(DATASETS)}")


def _jsonld_context(name: str) -> dict[str, Any]:
    ctx: dict[str, Any] = {"xsd": _XSD, "bright": _NS, "sdm": _SDM}
    langs = {f"description_{lg}": lg for lg in LANGUAGES}
    for lg in LANGUAGES:
        for base in ("title", "what_worked", "what_failed"):
            langs[f"{base}_{lg}"] = lg
    for col, (iri, xsd) in _COLUMNS[name].items():
        if col == "id":
            continue
        term: dict[str, Any] = {"@id": iri}
        if xsd:
            term["@type"] = _XSD + xsd
        if col in langs:
            term["@language"] = langs[col]
        if col in ("community",):
            term["@type"] = "@id"
        ctx[col] = term
    return ctx


def to_jsonld(name: str, frame: pd.DataFrame) -> dict[str, Any]:
    """A dataset frame as JSON-LD: ``@graph`` of nodes (``@id``, ``@type``) with an inline ``@context``.

    List cells (``a;b``) become JSON arrays; missing values are left out.
    """
    type_iri = {
        "cards": "https://smartdatamodels.org/dataModel.EnergyCommunity/EnergyCommunity",
        "kpis": "https://smartdatamodels.org/dataModel.KeyPerformanceIndicator/KeyPerformanceIndicator",
        "practices": KNOWLEDGE_TERMS["Practice"],
    }[name]
    lists = {"goals", "initiatives", "languages", "scope", "topics"}
    graph = []
    records: list[dict[str, Any]] = frame.to_dict(orient="records")  # type: ignore[assignment]
    for rec in records:
        node: dict[str, Any] = {"@id": rec["id"], "@type": type_iri}
        for col, value in rec.items():
            if (
                col == "id"
                or value is None
                or value is pd.NA
                or (isinstance(value, float) and value != value)
            ):
                continue
            if col in lists and isinstance(value, str):
                node[col] = value.split(";")
            elif hasattr(value, "item"):
                node[col] = value.item()
            else:
                node[col] = value
        graph.append(node)
    return {"@context": _jsonld_context(name), "@graph": graph}


def export(
    name: str, fmt: str, cards: Sequence[CommunityCard], practices: Sequence[Practice]
) -> tuple[bytes, str]:
    """A dataset in a format, as bytes with its media type.

    Parameters
    ----------
    name
        ``cards``, ``kpis`` or ``practices``.
    fmt
        ``csv``, ``parquet`` or ``jsonld``.

    Raises
    ------
    CardError
        Unknown dataset or format.
    """
    if fmt not in FORMATS:
        raise CardError(f"unknown format {fmt!r}; use one of {sorted(FORMATS)}")
    frame = dataset_frame(name, cards, practices)
    media = FORMATS[fmt][0]
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8"), media + "; charset=utf-8"
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False, engine="pyarrow")
        return buf.getvalue(), media
    return orjson.dumps(to_jsonld(name, frame)), media


def _period(
    cards: Sequence[CommunityCard], practices: Sequence[Practice], name: str
) -> tuple[str, str] | None:
    years: list[int] = []
    if name == "cards":
        years = [c.founding_year for c in cards if c.founding_year]
    elif name == "kpis":
        years = [int(c.kpis.period[:4]) for c in cards if c.kpis.period and c.kpis.period[:4].isdigit()]
    else:
        years = [p.year for p in practices if p.year]
    if not years:
        return None
    end = datetime.now(UTC).date().isoformat() if name == "cards" else f"{max(years)}-12-31"
    return f"{min(years)}-01-01", end


def catalog(
    base_url: str,
    cards: Sequence[CommunityCard],
    practices: Sequence[Practice],
    *,
    publisher: str = "BRIGHT network node",
    publisher_url: str | None = None,
    title: str = "BRIGHT energy community network: open data",
) -> dict[str, Any]:
    """The DCAT-AP catalogue (JSON-LD) of the open datasets of this node.

    Parameters
    ----------
    base_url
        The node's public base URL (download URLs are ``{base_url}/api/opendata/{dataset}.{ext}``).
    cards, practices
        The data, for coverage (temporal: founding years, KPI periods, practice years; spatial: the
        bounding box of the cards as a WKT polygon and its centroid).
    publisher, publisher_url
        Who publishes (a ``foaf:Agent``).
    title
        Title of the catalogue.
    """
    base = base_url.rstrip("/")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    agent: dict[str, Any] = {"@type": "foaf:Agent", "foaf:name": publisher}
    if publisher_url:
        agent["@id"] = publisher_url
    spatial = None
    if cards:
        lats = [c.lat for c in cards]
        lons = [c.lon for c in cards]
        w, e, s, n = min(lons), max(lons), min(lats), max(lats)
        spatial = {
            "@type": "dct:Location",
            "dcat:bbox": {
                "@value": f"POLYGON(({w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s}))",
                "@type": "gsp:wktLiteral",
            },
            "dcat:centroid": {"@value": f"POINT({(w + e) / 2} {(s + n) / 2})", "@type": "gsp:wktLiteral"},
        }
    datasets = []
    for name, meta in DATASETS.items():
        ds: dict[str, Any] = {
            "@id": f"{base}/api/opendata/{name}",
            "@type": "dcat:Dataset",
            "dct:identifier": name,
            "dct:title": {"@value": meta["title"], "@language": "en"},
            "dct:description": {"@value": meta["description"], "@language": "en"},
            "dcat:keyword": meta["keywords"],
            "dct:license": {"@id": LICENSE},
            "dct:accessRights": {
                "@id": "http://publications.europa.eu/resource/authority/access-right/PUBLIC"
            },
            "dct:publisher": agent,
            "dct:modified": {"@value": now, "@type": "xsd:dateTime"},
            "dct:accrualPeriodicity": {
                "@id": "http://publications.europa.eu/resource/authority/frequency/CONT"
            },
            "dct:conformsTo": {"@id": "https://github.com/smart-data-models/dataModel.EnergyCommunity"},
            "dcat:distribution": [],
        }
        period = _period(cards, practices, name)
        if period:
            ds["dct:temporal"] = {
                "@type": "dct:PeriodOfTime",
                "dcat:startDate": {"@value": period[0], "@type": "xsd:date"},
                "dcat:endDate": {"@value": period[1], "@type": "xsd:date"},
            }
        if spatial:
            ds["dct:spatial"] = spatial
        for ext, (media, code) in FORMATS.items():
            url = f"{base}/api/opendata/{name}.{ext}"
            ds["dcat:distribution"].append(
                {
                    "@id": url,
                    "@type": "dcat:Distribution",
                    "dct:title": f"{meta['title']} ({code.replace('_', '-')})",
                    "dcat:accessURL": {"@id": url},
                    "dcat:downloadURL": {"@id": url},
                    "dcat:mediaType": {"@id": f"https://www.iana.org/assignments/media-types/{media}"},
                    "dct:format": {
                        "@id": f"http://publications.europa.eu/resource/authority/file-type/{code}"
                    },
                    "dct:license": {"@id": LICENSE},
                }
            )
        datasets.append(ds)
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "xsd": _XSD,
            "gsp": "http://www.opengis.net/ont/geosparql#",
        },
        "@id": f"{base}/api/opendata/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": {"@value": title, "@language": "en"},
        "dct:description": {
            "@value": "Open datasets of the energy communities of the network: community cards, KPIs, "
            "and practices and lessons learned in English, French and Dutch.",
            "@language": "en",
        },
        "dct:publisher": agent,
        "dct:license": {"@id": LICENSE},
        "dct:modified": {"@value": now, "@type": "xsd:dateTime"},
        "dcat:dataset": datasets,
    }
