"""What communities learned: practices and lessons, initiatives, documents, questions between communities.

Each item is an NGSI-LD entity linked to its community's card (``refEnergyCommunity``), with its
texts as ``LanguageProperty`` values in English, French and/or Dutch:

- :class:`Practice` (``bright:Practice``): a practice or a lesson learned: what worked, what failed,
  topics, outcome, cost (EUR), year, an organisation to contact;
- :class:`Initiative` (``bright:Initiative``): a project with a status, a start year, a budget
  (EUR) and partner organisations;
- :class:`CommunityDocument` (``bright:CommunityDocument``): a published document (URL, media type,
  language, licence);
- :class:`Question` (``bright:CommunityQuestion``): a message from a member of one community to
  another community, delivered to that community's node (:func:`question_entity` gives the entity
  to POST there). A question carries the asking *community* and an organisation's reply address,
  never a person's name or address.

Full-text search (:class:`KnowledgeIndex`) is Okapi BM25 over an inverted index kept as a sparse
term x document matrix of precomputed BM25 weights, so that a query is the sum of a few sparse rows:

    score(d, q) = sum_{t in q} idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)),   k1 = 1.2, b = 0.75

Each language version of an item is one document (title counted twice); the item's score is its best
version's. Text is analysed by :func:`analyze`: lower case, accents folded (é -> e, ë -> e),
stop words of the three languages removed, a light suffix stemmer common to en/fr/nl
(:func:`stem`: batteries / battery / batterie -> ``batteri``), and a small bilingual lexicon that
adds a concept token to words of the same meaning in the three languages (``zonnepanelen``,
``panneaux solaires`` and ``solar panels`` all carry ``~solar``), so a French query also finds Dutch
and English practices.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bright.network.cards import (
    BRIGHT_NS,
    IRI,
    CardError,
    Contact,
    EntityView,
    compact,
    entity_view,
)
from bright.twin.context import BRIGHT_CONTEXT_URL

__all__ = [
    "KIND_TYPES",
    "KNOWLEDGE_TERMS",
    "LANGUAGES",
    "TOPICS",
    "CommunityDocument",
    "Hit",
    "Initiative",
    "Item",
    "KnowledgeError",
    "KnowledgeIndex",
    "Practice",
    "Question",
    "analyze",
    "analyze_pairs",
    "community_texts",
    "fold",
    "item_from_entity",
    "new_question",
    "question_entity",
    "question_from_entity",
    "stem",
]

LANGUAGES = ("en", "fr", "nl")
TOPICS = (
    "solar_school",
    "solar_roofs",
    "pedagogy",
    "sharing_keys",
    "ev_charging",
    "heat_pumps",
    "storage",
    "tenant_engagement",
    "energy_poverty",
    "dso_declaration",
    "financing",
    "governance",
    "monitoring",
    "flexibility",
)

#: New vocabulary: short term -> IRI (to be added to the BRIGHT @context).
KNOWLEDGE_TERMS: dict[str, str] = {
    "Practice": BRIGHT_NS + "Practice",
    "Initiative": BRIGHT_NS + "Initiative",
    "CommunityDocument": BRIGHT_NS + "CommunityDocument",
    "CommunityQuestion": BRIGHT_NS + "CommunityQuestion",
    "title": BRIGHT_NS + "title",
    "whatWorked": BRIGHT_NS + "whatWorked",
    "whatFailed": BRIGHT_NS + "whatFailed",
    "topics": BRIGHT_NS + "topics",
    "practiceKind": BRIGHT_NS + "practiceKind",
    "outcome": BRIGHT_NS + "outcome",
    "cost": BRIGHT_NS + "costEur",
    "year": BRIGHT_NS + "year",
    "status": BRIGHT_NS + "status",
    "startYear": BRIGHT_NS + "startYear",
    "budget": BRIGHT_NS + "budgetEur",
    "partners": BRIGHT_NS + "partners",
    "documentUrl": BRIGHT_NS + "documentUrl",
    "mediaType": BRIGHT_NS + "mediaType",
    "inLanguage": BRIGHT_NS + "inLanguage",
    "license": "http://purl.org/dc/terms/license",
    "subject": BRIGHT_NS + "subject",
    "messageText": BRIGHT_NS + "messageText",
    "toCommunity": BRIGHT_NS + "toCommunity",
    "fromCommunity": BRIGHT_NS + "fromCommunity",
    "about": BRIGHT_NS + "about",
    "replyTo": BRIGHT_NS + "replyTo",
    "sentAt": BRIGHT_NS + "sentAt",
}
_K = {**IRI, **KNOWLEDGE_TERMS}
KIND_TYPES = {
    "practice": KNOWLEDGE_TERMS["Practice"],
    "initiative": KNOWLEDGE_TERMS["Initiative"],
    "document": KNOWLEDGE_TERMS["CommunityDocument"],
}
_ITEM_ID = re.compile(
    r"^urn:ngsi-ld:(Practice|Initiative|CommunityDocument|CommunityQuestion):[A-Za-z0-9._:\-]+$"
)
_LANG = re.compile(r"^[a-z]{2}$")


class KnowledgeError(CardError):
    """A practice, initiative, document or question is invalid; the message names it and the field."""


# --- text analysis --------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss", "’": "'", "ĳ": "ij"})
_STOP_EN = (
    "a an and are as at be been but by can for from had has have how in into is it its of on or our "
    "so than that the their them then there these they this to was we were what when which who will "
    "with you your not no do did also more most all any each very"
)
_STOP_FR = (
    "au aux avec ce ces cet cette dans de des du elle en est et etre il ils je la le les leur leurs "
    "lui ma mais me mes moi mon ne nos notre nous on ou par pas pour qu que qui sa se ses son sur ta "
    "te tes toi ton tu un une vos votre vous ete sont ont fait plus tres tout tous toutes aussi comme"
)
_STOP_NL = (
    "aan al als bij dan dat de deze die dit door een en er haar heb hebben heeft het hij hoe hun ik "
    "in is je kan maar met na naar niet nog of om onder ons onze ook op over te tot uit van voor was "
    "we werd worden wordt zijn zo zoals ze zich meer veel wij wat welke"
)
#: Stop words of the three languages (folded: no accents).
STOPWORDS = frozenset(" ".join((_STOP_EN, _STOP_FR, _STOP_NL)).split())
# (suffix, replacement), longest first; applied once, if at least 3 letters stay.
_SUFFIXES = (
    ("issements", "iss"),
    ("issement", "iss"),
    ("ements", ""),
    ("ement", ""),
    ("ations", ""),
    ("ation", ""),
    ("ingen", ""),
    ("heden", "heid"),
    ("ities", ""),
    ("ity", ""),
    ("ites", ""),
    ("ite", ""),
    ("ing", ""),
    ("ies", "i"),
    ("eaux", "eau"),
    ("aux", "al"),
    ("itions", ""),
    ("ition", ""),
    ("eurs", "eur"),
    ("euses", "eur"),
    ("euse", "eur"),
    ("ed", ""),
    ("ly", ""),
    ("en", ""),
    ("es", ""),
    ("s", ""),
)


def fold(text: str) -> str:
    """Lower case with accents removed and ligatures spelled out (``Élève`` -> ``eleve``)."""
    low = text.lower()
    if low.isascii():
        return low
    flat = unicodedata.normalize("NFKD", low.translate(_LIGATURES))
    return "".join(c for c in flat if not unicodedata.combining(c))


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light stem common to English, French and Dutch (folded input).

    One suffix of a short list is removed (keeping at least 3 letters), then a final ``e`` is dropped
    and a final ``y`` becomes ``i``: ``installations``/``installation``/``installed`` -> ``install``,
    ``batteries``/``battery``/``batterie`` -> ``batteri``, ``ecoles``/``ecole`` -> ``ecol``.
    Digits are kept as they are.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) + len(repl) >= 3:
            word = word[: -len(suffix)] + repl
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word.endswith("y"):
        word = word[:-1] + "i"
    return word


# Concept -> (stems matched exactly, word parts matched at the start or end of long compounds).
_CONCEPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "solar": (
        ("solar", "solair", "photovoltaiqu", "photovoltaic", "pv", "zonn", "zon"),
        ("zonne", "zonnepan"),
    ),
    "school": (("school", "schol", "ecol", "lycee", "athene", "colleg"), ("school", "schol")),
    "pupil": (("pupil", "student", "elev", "leerling", "jongeren", "jeun"), ("leerling",)),
    "teacher": (("teacher", "enseign", "professeur", "leerkracht", "lerar", "docent"), ("leerkracht",)),
    "roof": (("roof", "toit", "toitur", "dak", "dak"), ("dak", "daken")),
    "battery": (("batteri", "storag", "stockag", "opslag", "accu"), ("batterij", "thuisbatterij")),
    "charging": (("charg", "charger", "recharg", "born", "laad", "laadpal", "laadpunt"), ("laad",)),
    "car": (("car", "voitur", "vehicul", "auto", "wagen", "ev"), ("elektrischeauto",)),
    "heatpump": (("heatpump", "warmtepomp", "pac"), ("warmtepomp",)),
    "heat": (("heat", "heating", "chaleur", "chauffag", "warmt", "verwarm"), ("verwarm",)),
    "sharing": (("shar", "partag", "repart", "deel", "del", "gedeeld", "verdel"), ("verdeel", "deel")),
    "key": (("key", "cle", "sleutel"), ("sleutel", "verdeelsleutel")),
    "tenant": (("tenant", "locatair", "huurder", "resident", "bewoner", "habitant"), ("huurder", "bewoner")),
    "social_housing": (("social", "sociaal", "sociale", "logement"), ("sociaalwon",)),
    "grid": (("grid", "reseau", "net", "netbeheerder", "dso", "grd", "sibelga"), ("netbeheer",)),
    "declaration": (("declar", "registr", "aanmeld", "melding", "inschrijv"), ("aanmeld",)),
    "financing": (
        ("financ", "fund", "subsid", "subvention", "prim", "loan", "pret", "lening", "crowdfund", "invest"),
        ("financier", "subsidie"),
    ),
    "cost": (
        ("cost", "cout", "kost", "pric", "prix", "prijs", "tarif", "bill", "factur", "rekening"),
        ("kost",),
    ),
    "meter": (("meter", "compteur", "teller", "smart", "intelligent", "slim", "slimm"), ("meter",)),
    "pedagogy": (
        ("pedagog", "educat", "lesson", "lec", "cour", "les", "onderwijs", "didact", "klas", "class"),
        ("onderwijs",),
    ),
    "energy_poverty": (("poverti", "precarit", "armoed"), ("energiearmoed",)),
    "engagement": (("engag", "particip", "betrok", "mobilis", "mobiliz", "workshop", "atelier"), ("betrok",)),
    "insulation": (("insul", "isol", "isolat"), ("isolatie",)),
    "flexibility": (("flexibl", "flexibilit", "flexibiliteit", "shift", "deplac", "verschuiv"), ("flexib",)),
}
_EXACT: dict[str, list[str]] = {}
for _concept, (_stems, _prefixes) in _CONCEPTS.items():
    for _s in _stems:
        _EXACT.setdefault(_s, []).append("~" + _concept)
_PARTS = tuple((p, "~" + c) for c, (_, parts) in _CONCEPTS.items() for p in parts)


@lru_cache(maxsize=200_000)
def _terms(word: str) -> tuple[str, ...]:
    s = stem(word)
    out = [s, *_EXACT.get(s, ())]
    if len(word) > 6:  # parts of compounds (zonnepanelen, schooldak, laadpalen)
        for part, concept in _PARTS:
            if concept not in out and (word.startswith(part) or word.endswith(part)):
                out.append(concept)
    return tuple(out)


def analyze(text: str) -> list[str]:
    """Index terms of a text: folded, stop words removed, stemmed, plus cross-language concept terms.

    Examples
    --------
    >>> analyze("Panneaux solaires sur l'école")
    ['panneau', 'solair', '~solar', 'ecol', '~school']
    """
    out: list[str] = []
    for w in _WORD.findall(fold(text)):
        if w in STOPWORDS or (len(w) < 2 and not w.isdigit()):
            continue
        out.extend(_terms(w))
    return out


def analyze_pairs(text: str) -> list[tuple[str, str]]:
    """``(term, surface word)`` pairs of :func:`analyze` (to show matched terms as words)."""
    out: list[tuple[str, str]] = []
    for w in _WORD.findall(fold(text)):
        if w in STOPWORDS or (len(w) < 2 and not w.isdigit()):
            continue
        out.extend((t, w) for t in _terms(w))
    return out


# --- items ----------------------------------------------------------------------------------------

TextMap = dict[str, str]


def _check_texts(v: TextMap, what: str, *, required: bool = False, max_len: int = 8000) -> TextMap:
    if required and not any(t.strip() for t in v.values()):
        raise ValueError(f"{what} needs a text in at least one language")
    for lang, text in v.items():
        if not _LANG.match(lang):
            raise ValueError(f"{what}: language {lang!r} is not an ISO 639-1 code")
        if len(text) > max_len:
            raise ValueError(f"{what} ({lang}) is longer than {max_len} characters")
    return {k: t for k, t in v.items() if t.strip()}


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    community: str = Field(description="id of the community's card (urn:ngsi-ld:EnergyCommunity:...)")
    title: TextMap

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ITEM_ID.match(v):
            raise ValueError(f"{v!r} is not a knowledge item id (urn:ngsi-ld:Practice:<key>...)")
        return v

    @field_validator("community")
    @classmethod
    def _community(cls, v: str) -> str:
        if not v.startswith("urn:ngsi-ld:EnergyCommunity:"):
            raise ValueError(f"{v!r} is not an EnergyCommunity id")
        return v

    @field_validator("title")
    @classmethod
    def _title(cls, v: TextMap) -> TextMap:
        v = _check_texts(v, "title", required=True, max_len=300)
        return v

    @property
    def kind(self) -> str:
        raise NotImplementedError

    def languages(self) -> tuple[str, ...]:
        """Languages the item has a text in."""
        return tuple(sorted(set().union(*(m.keys() for m in self.texts().values()))))

    def texts(self) -> dict[str, TextMap]:
        """Text fields by name, each a language map."""
        return {"title": self.title}

    def _base_entity(self, type_name: str) -> dict[str, Any]:
        e: dict[str, Any] = {"id": self.id, "type": compact(KNOWLEDGE_TERMS[type_name])}
        e[compact(_K["refEnergyCommunity"])] = {"type": "Relationship", "object": self.community}
        for name, texts in self.texts().items():
            if texts:
                e[compact(_K[name])] = {"type": "LanguageProperty", "languageMap": dict(texts)}
        return e


def _prop(e: dict[str, Any], name: str, value: Any, unit: str | None = None) -> None:
    if value is None or value == [] or value == ():
        return
    attr: dict[str, Any] = {"type": "Property", "value": list(value) if isinstance(value, tuple) else value}
    if unit:
        attr["unitCode"] = unit
    e[compact(_K[name])] = attr


class Practice(_Item):
    """A practice or lesson learned of a community.

    Attributes
    ----------
    id
        ``urn:ngsi-ld:Practice:<key>``.
    community
        The card id of the community it belongs to.
    kind_of
        ``practice`` (something to copy) or ``lesson`` (a lesson learned).
    title, what_worked, what_failed
        Texts by language (``en``, ``fr``, ``nl``).
    topics
        Topics from :data:`TOPICS`.
    outcome
        ``worked``, ``mixed`` or ``failed``.
    cost_eur
        What it cost the community (investment and fees), EUR.
    year
        Year it was done.
    contact
        Organisation to ask (never a person).
    """

    kind_of: Literal["practice", "lesson"] = "practice"
    what_worked: TextMap = Field(default_factory=dict)
    what_failed: TextMap = Field(default_factory=dict)
    topics: tuple[str, ...] = ()
    outcome: Literal["worked", "mixed", "failed"] = "worked"
    cost_eur: float | None = Field(default=None, ge=0, le=1e9)
    year: int | None = Field(default=None, ge=1990, le=2100)
    contact: Contact | None = None

    @field_validator("what_worked", "what_failed")
    @classmethod
    def _texts(cls, v: TextMap) -> TextMap:
        return _check_texts(v, "text")

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in v if t not in TOPICS]
        if bad:
            raise ValueError(f"unknown topic {bad[0]!r}; use one of {list(TOPICS)}")
        return tuple(dict.fromkeys(v))

    @property
    def kind(self) -> str:
        return "practice"

    def texts(self) -> dict[str, TextMap]:
        return {"title": self.title, "whatWorked": self.what_worked, "whatFailed": self.what_failed}

    def to_entity(self, *, context: bool = True) -> dict[str, Any]:
        """The practice as a normalized NGSI-LD entity (BRIGHT @context)."""
        e = self._base_entity("Practice")
        _prop(e, "practiceKind", self.kind_of)
        _prop(e, "topics", self.topics)
        _prop(e, "outcome", self.outcome)
        _prop(e, "cost", self.cost_eur, "EUR")
        _prop(e, "year", self.year)
        if self.contact is not None:
            _prop(
                e,
                "contactPoint",
                {"contactType": "organisation", **self.contact.model_dump(exclude_none=True)},
            )
        if context:
            e["@context"] = BRIGHT_CONTEXT_URL
        return e


class Initiative(_Item):
    """An initiative or project of a community (status, start year, budget in EUR, partner organisations)."""

    description: TextMap = Field(default_factory=dict)
    status: Literal["planned", "running", "done"] = "running"
    start_year: int | None = Field(default=None, ge=1990, le=2100)
    budget_eur: float | None = Field(default=None, ge=0, le=1e10)
    partners: tuple[str, ...] = ()

    @field_validator("description")
    @classmethod
    def _texts(cls, v: TextMap) -> TextMap:
        return _check_texts(v, "description")

    @property
    def kind(self) -> str:
        return "initiative"

    def texts(self) -> dict[str, TextMap]:
        return {"title": self.title, "description": self.description}

    def to_entity(self, *, context: bool = True) -> dict[str, Any]:
        """The initiative as a normalized NGSI-LD entity (BRIGHT @context)."""
        e = self._base_entity("Initiative")
        _prop(e, "status", self.status)
        _prop(e, "startYear", self.start_year)
        _prop(e, "budget", self.budget_eur, "EUR")
        _prop(e, "partners", self.partners)
        if context:
            e["@context"] = BRIGHT_CONTEXT_URL
        return e


class CommunityDocument(_Item):
    """A document a community publishes (guide, template, report): where it is and under which licence."""

    description: TextMap = Field(default_factory=dict)
    url: str = Field(max_length=1000)
    media_type: str = Field(default="application/pdf", max_length=100)
    language: str | None = None
    license: str | None = Field(default=None, max_length=300)

    @field_validator("description")
    @classmethod
    def _texts(cls, v: TextMap) -> TextMap:
        return _check_texts(v, "description")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s]+$", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @property
    def kind(self) -> str:
        return "document"

    def texts(self) -> dict[str, TextMap]:
        return {"title": self.title, "description": self.description}

    def to_entity(self, *, context: bool = True) -> dict[str, Any]:
        """The document as a normalized NGSI-LD entity (BRIGHT @context)."""
        e = self._base_entity("CommunityDocument")
        _prop(e, "documentUrl", self.url)
        _prop(e, "mediaType", self.media_type)
        _prop(e, "inLanguage", self.language)
        _prop(e, "license", self.license)
        if context:
            e["@context"] = BRIGHT_CONTEXT_URL
        return e


Item = Practice | Initiative | CommunityDocument


class Question(BaseModel):
    """A question from a member of one community to another community, delivered to that node.

    Attributes
    ----------
    id
        ``urn:ngsi-ld:CommunityQuestion:<uuid>``.
    to_community
        Card id of the community asked.
    from_community
        Card id of the asking community, if it has one.
    about
        Id of the practice, initiative or document the question is about, if any.
    subject, text, lang
        The question and its language.
    reply_to
        Where to answer: an organisation's contact (never a person's).
    sent_at
        When it was sent (UTC, ISO 8601).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    to_community: str
    from_community: str | None = None
    about: str | None = None
    subject: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=5000)
    lang: str = "en"
    reply_to: Contact
    sent_at: str

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not v.startswith("urn:ngsi-ld:CommunityQuestion:") or not _ITEM_ID.match(v):
            raise ValueError(f"{v!r} is not a CommunityQuestion id")
        return v

    @field_validator("to_community", "from_community")
    @classmethod
    def _community(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("urn:ngsi-ld:EnergyCommunity:"):
            raise ValueError(f"{v!r} is not an EnergyCommunity id")
        return v

    @field_validator("lang")
    @classmethod
    def _lang(cls, v: str) -> str:
        if not _LANG.match(v):
            raise ValueError(f"{v!r} is not an ISO 639-1 language code")
        return v

    @model_validator(mode="after")
    def _not_to_self(self) -> Question:
        if self.from_community is not None and self.from_community == self.to_community:
            raise ValueError("a community cannot ask itself")
        return self

    def to_entity(self, *, context: bool = True) -> dict[str, Any]:
        """The NGSI-LD entity to POST to the asked community's node."""
        e: dict[str, Any] = {"id": self.id, "type": compact(KNOWLEDGE_TERMS["CommunityQuestion"])}
        e[compact(_K["toCommunity"])] = {"type": "Relationship", "object": self.to_community}
        if self.from_community:
            e[compact(_K["fromCommunity"])] = {"type": "Relationship", "object": self.from_community}
        if self.about:
            e[compact(_K["about"])] = {"type": "Relationship", "object": self.about}
        _prop(e, "subject", self.subject)
        e[compact(_K["messageText"])] = {"type": "LanguageProperty", "languageMap": {self.lang: self.text}}
        _prop(e, "replyTo", {"contactType": "organisation", **self.reply_to.model_dump(exclude_none=True)})
        e[compact(_K["sentAt"])] = {
            "type": "Property",
            "value": {"@type": "DateTime", "@value": self.sent_at},
        }
        if context:
            e["@context"] = BRIGHT_CONTEXT_URL
        return e


def _invalid(exc: ValidationError, what: str) -> KnowledgeError:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "item"
    return KnowledgeError(f"{what}: field {where}: {err['msg']}")


def new_question(
    to_community: str,
    subject: str,
    text: str,
    reply_to: Contact | Mapping[str, Any],
    *,
    lang: str = "en",
    from_community: str | None = None,
    about: str | None = None,
    sent_at: datetime | None = None,
    question_id: str | None = None,
) -> Question:
    """A validated question to another community.

    Parameters
    ----------
    to_community
        Card id of the community asked.
    subject, text, lang
        The question and its language (ISO 639-1).
    reply_to
        The asking organisation's contact (``organisation`` and ``email`` and/or ``url``).
    from_community
        Card id of the asking community, if any.
    about
        Id of the practice / initiative / document it is about, if any.
    sent_at
        When it is sent (default now, UTC).
    question_id
        The id (default a new ``urn:ngsi-ld:CommunityQuestion:<uuid4>``).

    Raises
    ------
    KnowledgeError
        An invalid field (the message names it), e.g. a personal reply address.
    """
    when = (sent_at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        contact = reply_to if isinstance(reply_to, Contact) else Contact.model_validate(dict(reply_to))
        return Question(
            id=question_id or f"urn:ngsi-ld:CommunityQuestion:{uuid.uuid4()}",
            to_community=to_community,
            from_community=from_community,
            about=about,
            subject=subject,
            text=text,
            lang=lang,
            reply_to=contact,
            sent_at=when,
        )
    except ValidationError as exc:
        raise _invalid(exc, f"question to {to_community}") from None


def question_entity(
    to_community: str,
    subject: str,
    text: str,
    reply_to: Contact | Mapping[str, Any],
    **options: Any,
) -> dict[str, Any]:
    """The NGSI-LD entity of a question to another community, ready to POST to its node.

    Same parameters as :func:`new_question`. The federation layer delivers it to the asked
    community's node (``POST /api/network/questions`` or ``/ngsi-ld/v1/entities``).
    """
    return new_question(to_community, subject, text, reply_to, **options).to_entity()


def parse_item(kind: str, data: Mapping[str, Any]) -> Item:
    """Validate a practice / initiative / document given as JSON (``kind`` says which).

    Raises
    ------
    KnowledgeError
        Unknown kind or an invalid field (the message names the item and the field).
    """
    models: dict[str, type[BaseModel]] = {
        "practice": Practice,
        "initiative": Initiative,
        "document": CommunityDocument,
    }
    if kind not in models:
        raise KnowledgeError(f"unknown kind {kind!r}; use one of {sorted(models)}")
    try:
        return models[kind].model_validate(dict(data))  # type: ignore[return-value]
    except ValidationError as exc:
        raise _invalid(exc, f"{kind} {data.get('id', '?')}") from None


def _tm(v: Any) -> TextMap:
    if isinstance(v, dict):
        return {str(k): str(t) for k, t in v.items() if isinstance(t, str) and _LANG.match(str(k))}
    if isinstance(v, str):
        return {"en": v}
    return {}


def _tuple(v: Any) -> tuple[str, ...]:
    if isinstance(v, list | tuple):
        return tuple(str(x) for x in v)
    return (str(v),) if isinstance(v, str) else ()


def _contact(v: Any) -> dict[str, Any] | None:
    if not isinstance(v, dict):
        return None
    return {k: v[k] for k in ("organisation", "email", "url") if k in v}


def item_from_entity(entity: Mapping[str, Any] | EntityView) -> Item:
    """The practice, initiative or document of an entity (any form); only its public attributes.

    Raises
    ------
    KnowledgeError
        Not a knowledge entity, or an invalid attribute.
    """
    v = entity if isinstance(entity, EntityView) else entity_view(entity)

    def g(name: str) -> Any:
        return v.attrs.get(_K[name])

    common = {"id": v.id, "community": g("refEnergyCommunity"), "title": _tm(g("title"))}
    try:
        if KIND_TYPES["practice"] in v.types:
            return Practice.model_validate(
                {
                    **common,
                    "kind_of": g("practiceKind") or "practice",
                    "what_worked": _tm(g("whatWorked")),
                    "what_failed": _tm(g("whatFailed")),
                    "topics": _tuple(g("topics")),
                    "outcome": g("outcome") or "worked",
                    "cost_eur": g("cost"),
                    "year": g("year"),
                    "contact": _contact(g("contactPoint")),
                }
            )
        if KIND_TYPES["initiative"] in v.types:
            return Initiative.model_validate(
                {
                    **common,
                    "description": _tm(g("description")),
                    "status": g("status") or "running",
                    "start_year": g("startYear"),
                    "budget_eur": g("budget"),
                    "partners": _tuple(g("partners")),
                }
            )
        if KIND_TYPES["document"] in v.types:
            return CommunityDocument.model_validate(
                {
                    **common,
                    "description": _tm(g("description")),
                    "url": g("documentUrl"),
                    "media_type": g("mediaType") or "application/pdf",
                    "language": g("inLanguage"),
                    "license": g("license"),
                }
            )
    except ValidationError as exc:
        raise _invalid(exc, f"entity {v.id}") from None
    raise KnowledgeError(f"entity {v.id} is not a Practice, Initiative or CommunityDocument")


def question_from_entity(entity: Mapping[str, Any]) -> Question:
    """The question of a ``CommunityQuestion`` entity (any form).

    Raises
    ------
    KnowledgeError
        Not a question, or an invalid attribute.
    """
    v = entity_view(entity)
    if KNOWLEDGE_TERMS["CommunityQuestion"] not in v.types:
        raise KnowledgeError(f"entity {v.id} is not a CommunityQuestion")

    def g(name: str) -> Any:
        return v.attrs.get(_K[name])

    text = _tm(g("messageText"))
    lang, body = next(iter(text.items())) if text else ("en", "")
    sent = g("sentAt")
    try:
        return Question.model_validate(
            {
                "id": v.id,
                "to_community": g("toCommunity"),
                "from_community": g("fromCommunity"),
                "about": g("about"),
                "subject": g("subject"),
                "text": body,
                "lang": lang,
                "reply_to": _contact(g("replyTo")),
                "sent_at": sent.get("@value") if isinstance(sent, dict) else sent,
            }
        )
    except ValidationError as exc:
        raise _invalid(exc, f"entity {v.id}") from None


# --- search ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes
    ----------
    item
        The practice, initiative or document.
    score
        Its BM25 score (best language version).
    lang
        Language of the version that matched.
    snippet
        The sentence of that version with the most query terms (at most 240 characters).
    matched
        The query words found in it.
    """

    item: Item
    score: float
    lang: str
    snippet: str
    matched: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The hit as JSON (the item's public fields, score, language, snippet)."""
        return {
            "id": self.item.id,
            "kind": self.item.kind,
            "community": self.item.community,
            "score": round(self.score, 4),
            "lang": self.lang,
            "title": self.item.title.get(self.lang) or next(iter(self.item.title.values())),
            "snippet": self.snippet,
            "matched": list(self.matched),
            "item": self.item.model_dump(mode="json"),
        }


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class KnowledgeIndex:
    """BM25 inverted index over the language versions of practices, initiatives and documents.

    Build with :meth:`build`; query with :meth:`search`. The index is immutable: rebuild it when the
    items change (the node does so lazily after a committed change).

    Attributes
    ----------
    items
        The indexed items.
    weights
        Sparse BM25 weights, terms x documents (CSR, float32).
    vocabulary
        Term -> row of ``weights``.
    doc_item, doc_lang
        Item index and language code of each document (a language version of an item).
    """

    items: list[Item]
    weights: sp.csr_matrix
    vocabulary: dict[str, int]
    doc_item: NDArray[np.int64]
    doc_lang: NDArray[np.int8]
    item_kind: NDArray[np.int8]
    item_community: NDArray[np.int64]
    communities: list[str]
    topic_sets: list[frozenset[str]] = field(default_factory=list)
    k1: float = 1.2
    b: float = 0.75

    @classmethod
    def build(cls, items: Iterable[Item], *, k1: float = 1.2, b: float = 0.75) -> KnowledgeIndex:
        """Index items: one document per language version (title twice, then the other texts).

        Parameters
        ----------
        items
            Practices, initiatives and documents (ids must be unique).
        k1, b
            BM25 term-frequency saturation and length normalisation.

        Raises
        ------
        KnowledgeError
            Two items share an id.
        """
        items = list(items)
        seen: set[str] = set()
        for it in items:
            if it.id in seen:
                raise KnowledgeError(f"item {it.id} appears twice")
            seen.add(it.id)
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[int] = []
        lengths: list[int] = []
        doc_item: list[int] = []
        doc_lang: list[int] = []
        memo: dict[str, list[str]] = {}
        lang_code = {lang: i for i, lang in enumerate(LANGUAGES)}
        for i, it in enumerate(items):
            texts = it.texts()
            for lang in it.languages():
                if lang not in lang_code:
                    continue
                title = texts["title"].get(lang, "")
                body = " \n".join(m.get(lang, "") for name, m in texts.items() if name != "title")
                terms: list[str] = []
                for chunk, times in ((title, 2), (body, 1)):
                    if not chunk:
                        continue
                    toks = memo.get(chunk)
                    if toks is None:
                        toks = memo[chunk] = analyze(chunk)
                    terms.extend(toks * times)
                if not terms:
                    continue
                d = len(doc_item)
                counts: dict[int, int] = {}
                for t in terms:
                    j = vocab.setdefault(t, len(vocab))
                    counts[j] = counts.get(j, 0) + 1
                rows.extend(counts)
                cols.extend([d] * len(counts))
                tfs.extend(counts.values())
                lengths.append(len(terms))
                doc_item.append(i)
                doc_lang.append(lang_code[lang])
        n_docs = len(doc_item)
        r = np.asarray(rows, dtype=np.int64)
        c = np.asarray(cols, dtype=np.int64)
        tf = np.asarray(tfs, dtype=np.float64)
        dl = np.asarray(lengths, dtype=np.float64)
        if n_docs:
            df = np.bincount(r, minlength=len(vocab)).astype(np.float64)
            idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
            norm = k1 * (1.0 - b + b * dl / dl.mean())
            w = idf[r] * tf * (k1 + 1.0) / (tf + norm[c])
        else:
            w = np.zeros(0)
        weights = sp.csr_matrix((w.astype(np.float32), (r, c)), shape=(len(vocab), n_docs))
        communities = sorted({it.community for it in items})
        cindex = {cid: k for k, cid in enumerate(communities)}
        kinds = {"practice": 0, "initiative": 1, "document": 2}
        return cls(
            items=items,
            weights=weights,
            vocabulary=vocab,
            doc_item=np.asarray(doc_item, dtype=np.int64),
            doc_lang=np.asarray(doc_lang, dtype=np.int8),
            item_kind=np.asarray([kinds[it.kind] for it in items], dtype=np.int8),
            item_community=np.asarray([cindex[it.community] for it in items], dtype=np.int64),
            communities=communities,
            topic_sets=[frozenset(getattr(it, "topics", ())) for it in items],
            k1=k1,
            b=b,
        )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_documents(self) -> int:
        """Indexed language versions."""
        return int(self.doc_item.size)

    def search(
        self,
        q: str,
        *,
        lang: str | None = None,
        kind: str | None = None,
        community: str | None = None,
        topic: str | None = None,
        limit: int = 10,
    ) -> list[Hit]:
        """Items ranked by BM25 for a free-text query, best first (one hit per item).

        Parameters
        ----------
        q
            The query, in any of the three languages.
        lang
            Only versions written in this language (``en``, ``fr``, ``nl``).
        kind
            Only ``practice``, ``initiative`` or ``document``.
        community
            Only items of this community (card id).
        topic
            Only practices with this topic.
        limit
            Number of hits, 1..100.

        Raises
        ------
        KnowledgeError
            Empty query, unknown language/kind/topic, or a limit out of range.
        """
        if not 1 <= limit <= 100:
            raise KnowledgeError(f"limit must be within 1..100, got {limit}")
        if lang is not None and lang not in LANGUAGES:
            raise KnowledgeError(f"lang must be one of {list(LANGUAGES)}, got {lang!r}")
        kinds = {"practice": 0, "initiative": 1, "document": 2}
        if kind is not None and kind not in kinds:
            raise KnowledgeError(f"kind must be one of {sorted(kinds)}, got {kind!r}")
        if topic is not None and topic not in TOPICS:
            raise KnowledgeError(f"unknown topic {topic!r}; use one of {list(TOPICS)}")
        if not q.strip():
            raise KnowledgeError("the query q is empty")
        terms = [t for t in dict.fromkeys(analyze(q)) if t in self.vocabulary]
        if not terms or self.n_documents == 0:
            return []
        rows = self.weights[[self.vocabulary[t] for t in terms]]
        scores = np.asarray(rows.sum(axis=0), dtype=np.float64).ravel()
        keep = scores > 0
        if lang is not None:
            keep &= self.doc_lang == LANGUAGES.index(lang)
        if kind is not None:
            keep &= self.item_kind[self.doc_item] == kinds[kind]
        if community is not None:
            if community not in self.communities:
                return []
            keep &= self.item_community[self.doc_item] == self.communities.index(community)
        candidates = np.flatnonzero(keep)
        if topic is not None:
            candidates = candidates[[topic in self.topic_sets[i] for i in self.doc_item[candidates]]]
        if candidates.size == 0:
            return []
        # best version per item: sort candidates by score, keep each item's first
        want = min(candidates.size, limit * 4)
        while True:
            top = candidates[np.argpartition(-scores[candidates], want - 1)[:want]]
            top = top[np.argsort(-scores[top], kind="stable")]
            _, first = np.unique(self.doc_item[top], return_index=True)
            best = top[np.sort(first)]
            if best.size >= limit or want == candidates.size:
                break
            want = min(candidates.size, want * 4)
        q_terms = set(terms)
        return [self._hit(int(d), float(scores[d]), q_terms) for d in best[:limit]]

    def _hit(self, d: int, score: float, q_terms: set[str]) -> Hit:
        item = self.items[int(self.doc_item[d])]
        lang = LANGUAGES[int(self.doc_lang[d])]
        texts = [m.get(lang, "") for m in item.texts().values()]
        best, best_n = "", -1
        words: set[str] = set()
        for text in texts:
            for sentence in _SENTENCE.split(text):
                pairs = [(t, w) for t, w in analyze_pairs(sentence) if t in q_terms]
                if len({t for t, _ in pairs}) > best_n:
                    best, best_n = sentence, len({t for t, _ in pairs})
                words.update(w for _, w in pairs)
        snippet = best if len(best) <= 240 else best[:237].rsplit(" ", 1)[0] + "..."
        return Hit(item=item, score=score, lang=lang, snippet=snippet, matched=tuple(sorted(words)))


def community_texts(items: Sequence[Item]) -> dict[str, str]:
    """Per community card id, the titles of its practices, initiatives and documents (all languages)."""
    out: dict[str, list[str]] = {}
    for it in items:
        out.setdefault(it.community, []).extend(it.title.values())
    return {k: "\n".join(v) for k, v in out.items()}
