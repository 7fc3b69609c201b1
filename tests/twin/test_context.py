"""JSON-LD @context handling: offline resolution, expansion and compaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bright.twin.context import BRIGHT_CONTEXT_URL, CORE_CONTEXT_URL, ContextResolver
from bright.twin.errors import BadRequestData, LdContextNotAvailable

SUITE = "https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/ngsi-ld-test-suite.jsonld"


def test_core_terms_and_default_vocab() -> None:
    core = ContextResolver().core
    assert core.expand("Property") == "https://uri.etsi.org/ngsi-ld/Property"
    assert core.expand("location") == "https://uri.etsi.org/ngsi-ld/location"
    assert core.expand("speed") == "https://uri.etsi.org/ngsi-ld/default-context/speed"
    assert core.compact("https://uri.etsi.org/ngsi-ld/default-context/speed") == "speed"
    assert core.compact("https://uri.etsi.org/ngsi-ld/location") == "location"


@pytest.mark.parametrize(
    "url",
    [
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
        CORE_CONTEXT_URL,
    ],
)
def test_every_core_version_resolves_offline(url: str) -> None:
    ctx = ContextResolver(fetch=False).resolve(url)
    assert ctx.expand("GeoProperty") == "https://uri.etsi.org/ngsi-ld/GeoProperty"


def test_user_context_terms_and_core_protection() -> None:
    r = ContextResolver()
    ctx = r.resolve(
        [SUITE, {"location": "https://example.org/not-core-location", "kwh": "https://e.org/kwh"}]
    )
    assert ctx.expand("speed") == "https://ngsi-ld-test-suite/context#speed"
    assert ctx.compact("https://ngsi-ld-test-suite/context#speed") == "speed"
    assert ctx.expand("kwh") == "https://e.org/kwh"
    # The core context is protected: a user context cannot redefine location.
    assert ctx.expand("location") == "https://uri.etsi.org/ngsi-ld/location"


def test_prefixes_and_compact_iris() -> None:
    ctx = ContextResolver().resolve({"ex": "https://example.org/ns#", "power": "ex:powerKw"})
    assert ctx.expand("power") == "https://example.org/ns#powerKw"
    assert ctx.expand("ex:other") == "https://example.org/ns#other"
    assert ctx.compact("https://example.org/ns#other") == "ex:other"
    assert ctx.compact("https://example.org/ns#powerKw") == "power"


def test_bright_context_is_bundled() -> None:
    ctx = ContextResolver().resolve(BRIGHT_CONTEXT_URL)
    assert (
        ctx.expand("EnergyCommunity")
        == "https://smartdatamodels.org/dataModel.EnergyCommunity/EnergyCommunity"
    )
    assert ctx.expand("peakPower") == "https://w3id.org/bright/ns#peakPowerKwp"


def test_unknown_remote_context_is_not_fetched() -> None:
    with pytest.raises(LdContextNotAvailable, match="not available offline"):
        ContextResolver(fetch=False).resolve("https://unknown.example.org/context.jsonld")


def test_context_dir_cache(tmp_path: Path) -> None:
    url = "https://models.example.org/energy/context.jsonld"
    (tmp_path / "context.jsonld").write_text(json.dumps({"@context": {"soc": "https://e.org/soc"}}))
    ctx = ContextResolver(context_dir=tmp_path).resolve(url)
    assert ctx.expand("soc") == "https://e.org/soc"


def test_lookup_store_and_invalid_entries() -> None:
    store = {"http://node/ctx/1": {"@context": {"a": "https://e.org/a"}}}
    r = ContextResolver(lookup=store.get)
    assert r.resolve("http://node/ctx/1").expand("a") == "https://e.org/a"
    with pytest.raises(BadRequestData):
        r.resolve([42])
