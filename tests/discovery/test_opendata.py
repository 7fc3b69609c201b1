"""Open data: CSV, Parquet and JSON-LD datasets and the DCAT-AP catalogue; no private field anywhere."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest

from bright.network.cards import CardError, card_from_twin
from bright.network.demo_network import DemoNetwork, demo_network
from bright.network.opendata import DATASETS, FORMATS, LICENSE, catalog, export
from bright.services.demo import build_demo_community

BASE = "https://node.example"


@pytest.fixture(scope="module")
def net() -> DemoNetwork:
    return demo_network(25, seed=2)


def test_csv_reads_back(net: DemoNetwork) -> None:
    content, media = export("cards", "csv", net.cards, net.practices)
    assert media.startswith("text/csv")
    frame = pd.read_csv(io.BytesIO(content))
    assert len(frame) == 25
    first = net.cards[0]
    row = frame.set_index("id").loc[first.id]
    assert row["name"] == first.name
    assert row["households"] == first.members.households
    assert row["pv_kwp"] == pytest.approx(first.technologies.pv_kwp)
    assert row["members"] == first.members.total
    assert row["goals"] == ";".join(first.goals)
    kpis = pd.read_csv(io.BytesIO(export("kpis", "csv", net.cards, net.practices)[0]))
    assert set(kpis["community"]) <= {c.id for c in net.cards}
    assert kpis["self_sufficiency"].between(0, 1).all()
    practices = pd.read_csv(io.BytesIO(export("practices", "csv", net.cards, net.practices)[0]))
    assert len(practices) == len(net.practices)
    titles = practices[["title_en", "title_fr", "title_nl"]]
    assert titles.notna().any(axis=1).all()  # every practice has a title in one language at least
    first_practice = net.practices[0]
    for lg in ("en", "fr", "nl"):
        got = practices.loc[0, f"title_{lg}"]
        assert (None if pd.isna(got) else got) == first_practice.title.get(lg)


def test_parquet_keeps_the_types(net: DemoNetwork) -> None:
    content, media = export("cards", "parquet", net.cards, net.practices)
    assert media == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(content))
    types = {f.name: str(f.type) for f in table.schema}
    assert types["households"] == "int64"
    assert types["pv_kwp"] == "double"
    assert types["name"] in ("string", "large_string")
    assert table.num_rows == 25
    practices = pq.read_table(io.BytesIO(export("practices", "parquet", net.cards, net.practices)[0]))
    assert practices.num_rows == len(net.practices)


def test_jsonld_terms_are_iris(net: DemoNetwork) -> None:
    for name in DATASETS:
        content, media = export(name, "jsonld", net.cards, net.practices)
        assert media == "application/ld+json"
        doc = json.loads(content)
        ctx = doc["@context"]
        assert doc["@graph"]
        for node in doc["@graph"]:
            assert node["@id"].startswith("urn:ngsi-ld:")
            assert node["@type"].startswith("https://")
            for key in node:
                if key.startswith("@"):
                    continue
                term = ctx[key]
                assert re.match(r"^https?://", term["@id"]), (name, key)
    cards = json.loads(export("cards", "jsonld", net.cards, net.practices)[0])
    ctx = cards["@context"]
    assert ctx["description_fr"]["@language"] == "fr"
    assert ctx["households"]["@type"].endswith("#integer")
    node = next(n for n in cards["@graph"] if n["@id"] == net.cards[0].id)
    assert node["goals"] == list(net.cards[0].goals)


def test_unknown_dataset_or_format() -> None:
    with pytest.raises(CardError, match="unknown dataset"):
        export("members", "csv", [], [])
    with pytest.raises(CardError, match="unknown format"):
        export("cards", "xlsx", [], [])


def test_dcat_catalogue(net: DemoNetwork) -> None:
    cat = catalog(BASE + "/", net.cards, net.practices, publisher="City of Brussels network node")
    assert cat["@type"] == "dcat:Catalog"
    assert cat["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    for key in ("dct:title", "dct:description", "dct:publisher", "dcat:dataset", "dct:license"):
        assert key in cat, key
    assert cat["dct:publisher"]["foaf:name"] == "City of Brussels network node"
    assert {d["dct:identifier"] for d in cat["dcat:dataset"]} == set(DATASETS)
    lats = [c.lat for c in net.cards]
    for ds in cat["dcat:dataset"]:
        for key in (
            "dct:title",
            "dct:description",
            "dct:license",
            "dct:publisher",
            "dct:temporal",
            "dct:spatial",
        ):
            assert key in ds, (ds["dct:identifier"], key)
        assert ds["dct:license"]["@id"] == LICENSE
        start = ds["dct:temporal"]["dcat:startDate"]["@value"]
        end = ds["dct:temporal"]["dcat:endDate"]["@value"]
        assert start <= end
        bbox = ds["dct:spatial"]["dcat:bbox"]["@value"]
        south = float(bbox.split("((")[1].split(",")[0].split()[1])
        assert south == min(lats)
        dists = ds["dcat:distribution"]
        assert len(dists) == len(FORMATS)
        for dist in dists:
            url = dist["dcat:downloadURL"]["@id"]
            assert url.startswith(f"{BASE}/api/opendata/{ds['dct:identifier']}.")
            ext = url.rsplit(".", 1)[1]
            assert (
                dist["dcat:mediaType"]["@id"]
                == f"https://www.iana.org/assignments/media-types/{FORMATS[ext][0]}"
            )
            assert dist["dcat:accessURL"]["@id"] == url


def test_no_private_field_in_open_data() -> None:
    demo = build_demo_community("Ixelles")
    card = card_from_twin(demo.entities)
    eans = [e["accessPointId"]["value"] for e in demo.entities if e["type"] == "Meter"]
    prosumers = [e["id"] for e in demo.entities if e["type"] == "EnergyProsumer"]
    private = [*eans, *prosumers, "Household 1", "Bakery", "annualConsumption", "hasMember"]
    for name in DATASETS:
        for fmt in FORMATS:
            content, _ = export(name, fmt, [card], [])
            for secret in private:
                assert secret.encode() not in content, (name, fmt, secret)
    text = json.dumps(catalog(BASE, [card], []))
    assert not any(secret in text for secret in private)
