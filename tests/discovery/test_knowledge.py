"""Practices, initiatives, documents, questions, and the BM25 search across en/fr/nl."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.network.demo_network import PRACTICE_TEXTS, demo_network
from bright.network.knowledge import (
    CommunityDocument,
    Initiative,
    KnowledgeError,
    KnowledgeIndex,
    Practice,
    analyze,
    fold,
    item_from_entity,
    new_question,
    parse_item,
    question_entity,
    question_from_entity,
    stem,
)

C1 = "urn:ngsi-ld:EnergyCommunity:c1"
C2 = "urn:ngsi-ld:EnergyCommunity:c2"


def practice(pid: str, title: dict[str, str], community: str = C1, **extra: object) -> Practice:
    return Practice(id=f"urn:ngsi-ld:Practice:{pid}", community=community, title=title, **extra)  # type: ignore[arg-type]


def test_text_analysis_folds_accents_and_stems_the_three_languages() -> None:
    assert fold("Élève À l'ÉCOLE") == "eleve a l'ecole"
    for a, b in [
        ("batteries", "battery"),
        ("batterie", "battery"),
        ("installations", "installed"),
        ("ecoles", "ecole"),
        ("chargers", "charger"),
    ]:
        assert stem(a) == stem(b), (a, b)
    # stop words of the three languages go; concepts bridge the languages
    fr = analyze("Les panneaux solaires sur le toit de l'école")
    nl = analyze("De zonnepanelen op het schooldak")
    en = analyze("The solar panels on the school roof")
    for concept in ("~solar", "~school", "~roof"):
        assert concept in fr and concept in nl and concept in en, concept
    assert "les" not in fr and "het" not in nl and "the" not in en


def test_bm25_worked_example() -> None:
    # Titles count twice. A = "garden" (2 terms), B = "garden library" (4), C = "museum" (2); avgdl = 8/3.
    idx = KnowledgeIndex.build(
        [
            practice("a", {"en": "garden"}),
            practice("b", {"en": "garden library"}),
            practice("c", {"en": "museum"}),
        ]
    )
    # "library": df 1 -> idf = ln(1 + 2.5 / 1.5) = 0.980829; B: tf 2, K = 1.2 (0.25 + 0.75 * 4 / (8/3)) = 1.65
    # score = 0.980829 * 2 * 2.2 / (2 + 1.65) = 1.182369
    (hit,) = idx.search("library")
    assert hit.item.id.endswith(":b")
    assert hit.score == pytest.approx(math.log(1 + 2.5 / 1.5) * 4.4 / 3.65, rel=1e-6)
    assert hit.score == pytest.approx(1.182369, rel=1e-6)
    # "garden": df 2 -> idf = ln(1.6); A: K = 0.975 -> 0.695132; B: K = 1.65 -> 0.566580 (the shorter first)
    a, b = idx.search("garden")
    assert (a.item.id[-1], b.item.id[-1]) == ("a", "b")
    assert a.score == pytest.approx(math.log(1.6) * 4.4 / 2.975, rel=1e-6)
    assert b.score == pytest.approx(math.log(1.6) * 4.4 / 3.65, rel=1e-6)
    assert idx.search("swimming pool") == []


def test_a_french_question_finds_a_dutch_practice() -> None:
    dutch = practice(
        "nl",
        {"nl": "Zonnepanelen op het schooldak"},
        what_worked={"nl": "De leerlingen volgen de productie van de zonnepanelen op een scherm."},
        topics=("solar_school",),
    )
    other = practice("x", {"en": "Monthly statements for members"}, community=C2, topics=("monitoring",))
    idx = KnowledgeIndex.build([dutch, other])
    (hit,) = idx.search("panneaux solaires sur le toit de l'école")
    assert hit.item == dutch
    assert hit.lang == "nl"
    assert "zonnepanelen" in hit.snippet.lower()
    assert idx.search("panneaux solaires", lang="fr") == []
    assert idx.search("zonnepanelen", community=C2) == []
    assert idx.search("zonnepanelen", topic="solar_school")[0].item == dutch
    assert idx.search("zonnepanelen", kind="initiative") == []


def test_one_hit_per_item_in_the_best_language() -> None:
    both = practice("b", {"en": "Heat pump in the school", "fr": "Pompe à chaleur dans l'école"})
    idx = KnowledgeIndex.build([both])
    hits = idx.search("pompe à chaleur")
    assert len(hits) == 1 and hits[0].lang == "fr"
    assert idx.search("heat pump", lang="en")[0].lang == "en"


def test_initiatives_and_documents_are_searchable_and_round_trip() -> None:
    ini = Initiative(
        id="urn:ngsi-ld:Initiative:c1:1",
        community=C1,
        title={"fr": "Café énergie mensuel"},
        description={"fr": "Chaque mois dans la salle commune"},
        status="running",
        start_year=2024,
        budget_eur=1200,
        partners=("Asbl Quartier",),
    )
    doc = CommunityDocument(
        id="urn:ngsi-ld:CommunityDocument:c1:1",
        community=C1,
        title={"en": "Template of internal rules"},
        url="https://rec.example/rules.pdf",
        language="en",
        license="https://creativecommons.org/licenses/by/4.0/",
    )
    p = practice("p", {"en": "Energy café"}, cost_eur=300.0, year=2024, outcome="mixed", kind_of="lesson")
    for item in (ini, doc, p):
        assert item_from_entity(item.to_entity()) == item
    idx = KnowledgeIndex.build([ini, doc, p])
    assert {h.item.kind for h in idx.search("café")} == {"initiative", "practice"}
    assert idx.search("internal rules", kind="document")[0].item == doc


def test_items_are_validated() -> None:
    with pytest.raises(KnowledgeError, match="topic"):
        parse_item(
            "practice",
            {"id": "urn:ngsi-ld:Practice:x", "community": C1, "title": {"en": "x"}, "topics": ["magic"]},
        )
    with pytest.raises(KnowledgeError, match="at least one language"):
        parse_item("practice", {"id": "urn:ngsi-ld:Practice:x", "community": C1, "title": {"en": " "}})
    with pytest.raises(KnowledgeError, match="person"):
        parse_item(
            "practice",
            {
                "id": "urn:ngsi-ld:Practice:x",
                "community": C1,
                "title": {"en": "x"},
                "contact": {"organisation": "REC", "email": "marie.dubois@example.org"},
            },
        )
    with pytest.raises(KnowledgeError, match="unknown kind"):
        parse_item("recipe", {})
    with pytest.raises(KnowledgeError, match="appears twice"):
        KnowledgeIndex.build([practice("a", {"en": "x"}), practice("a", {"en": "y"})])


def test_search_arguments_are_checked() -> None:
    idx = KnowledgeIndex.build([practice("a", {"en": "garden"})])
    for kwargs, message in [
        ({"lang": "de"}, "lang"),
        ({"kind": "recipe"}, "kind"),
        ({"topic": "magic"}, "topic"),
        ({"limit": 0}, "limit"),
    ]:
        with pytest.raises(KnowledgeError, match=message):
            idx.search("garden", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(KnowledgeError, match="empty"):
        idx.search("  ")


def test_question_entity_to_post_to_the_other_node() -> None:
    reply = {"organisation": "Zonnewijk Jette", "email": "info@zonnewijk.example"}
    entity = question_entity(
        C2, "Roof study", "How long did the stability study take?", reply, lang="en", from_community=C1
    )
    assert entity["id"].startswith("urn:ngsi-ld:CommunityQuestion:")
    q = question_from_entity(entity)
    assert (q.to_community, q.from_community, q.subject, q.lang) == (C2, C1, "Roof study", "en")
    assert q.reply_to.email == "info@zonnewijk.example"
    with pytest.raises(KnowledgeError, match="person"):
        new_question(C2, "s", "t", {"organisation": "REC X", "email": "jan.janssens@example.org"})
    with pytest.raises(KnowledgeError, match="cannot ask itself"):
        new_question(C2, "s", "t", reply, from_community=C2)
    with pytest.raises(KnowledgeError, match="to_community"):
        new_question("urn:ngsi-ld:Person:p1", "s", "t", reply)


def test_demo_practices_cover_the_three_languages_and_the_topics() -> None:
    assert len(PRACTICE_TEXTS) >= 40
    assert {t.lang for t in PRACTICE_TEXTS} == {"en", "fr", "nl"}
    assert all(set(t.title) == {"en", "fr", "nl"} for t in PRACTICE_TEXTS)
    net = demo_network(30, seed=3)
    assert len(net.practices) > 30
    assert all(p.what_worked for p in net.practices)


_WORDS = [
    "solar",
    "école",
    "zonnepanelen",
    "batterie",
    "tenants",
    "huurders",
    "financement",
    "heat",
    "key",
    "garden",
]


@settings(max_examples=30, deadline=None)
@given(words=st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4), limit=st.integers(1, 15))
def test_hits_are_ranked_unique_and_share_a_term(words: list[str], limit: int) -> None:
    idx = _small_index()
    q = " ".join(words)
    hits = idx.search(q, limit=limit)
    assert len(hits) <= limit
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h.item.id for h in hits}) == len(hits)
    q_terms = set(analyze(q))
    for h in hits:
        text = " ".join(m.get(h.lang, "") for m in h.item.texts().values())
        assert q_terms & set(analyze(text))


_INDEX: list[KnowledgeIndex] = []


def _small_index() -> KnowledgeIndex:
    if not _INDEX:
        net = demo_network(40, seed=5)
        _INDEX.append(KnowledgeIndex.build([*net.practices, *net.initiatives]))
    return _INDEX[0]
