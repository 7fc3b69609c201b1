"""S-BRIGHT engagement use cases: questionnaire answers, member profiles and the community mix.

A member answers the S-BRIGHT questionnaire (:mod:`bright.social.questionnaire`) after giving
consent. This module

1. checks the consent (``given`` and a date are required; otherwise nothing is stored) and the
   answers (an out-of-range answer is rejected with the item named, an incomplete set is stored and
   flagged), and stores them as **personal data** in the node's own table ``sbright_answers``,
   never in an open NGSI-LD entity;
2. scores them (:func:`bright.social.scoring.score_respondent`);
3. segments the community (:func:`bright.social.segmentation.segment_members`): the answers of its
   consenting members, with the load-profile covariates computed from each member's metered offtake
   (:func:`bright.social.profile_features.load_profile_features`) and the flexible assets the twin
   says it controls. A community of a few dozen members cannot support a latent class model on its
   own (127 parameters per class), so the respondents are pooled with a *reference sample*: the
   documented simulator (:func:`bright.social.segmentation.simulate_respondents`) tops the pool up
   to ``reference_size`` respondents, and real answers replace simulated ones as they arrive (with
   ``reference_size`` or more real respondents the model is the community's alone);
4. stores each member's profile (category, scores, assets, load features, structural gain under a
   time-of-use tariff, recommended services and incentives with the studies they rest on) in
   ``sbright_profiles`` and the community mix (categories, shares, recommendations, model quality,
   Cronbach's alpha of the respondents at hand) in ``sbright_mixes``; the mix, an aggregate, is
   also published as an ``EngagementMix`` entity once at least 5 members are classified.

``seed_simulated_answers`` gives the demo members answers drawn from the documented generator.
Withdrawing consent (:meth:`EngagementService.withdraw`) erases the member's answers and profile.

Errors are NGSI-LD errors (HTTP 400/404 ProblemDetails in the API) that are also ``ValueError``s
where the input is at fault; messages name the member, the item or the field.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
)

from bright.services.community import TERMS, Community, load_community
from bright.social.matching import (
    Recommendation,
    Recommendations,
    StructuralGain,
    TimeOfUseTariff,
    recommend,
    structural_winners,
)
from bright.social.profile_features import (
    COVARIATE_COLUMNS,
    FlexibleAssets,
    LoadProfileFeatures,
    ProfileDataError,
    load_profile_features,
)
from bright.social.questionnaire import (
    LANGUAGES,
    QUESTIONNAIRE_V1,
    AnswerOutOfRangeError,
    Questionnaire,
    QuestionnaireError,
    UnknownItemError,
    questionnaire_by_version,
)
from bright.social.scoring import (
    dimension_reliability,
    dimension_scores,
    dimension_z_scores,
    score_respondent,
)
from bright.social.segmentation import (
    K_RANGE,
    Segmentation,
    SegmentationError,
    segment_members,
    simulate_respondents,
)
from bright.twin import migrations
from bright.twin.context import BRIGHT_NS
from bright.twin.errors import BadRequestData, InternalError, ResourceNotFound
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context

__all__ = [
    "CONSENT_TEXTS",
    "CONSENT_VERSION",
    "DEFAULT_TARIFF",
    "AnswerRejected",
    "Consent",
    "ConsentRequired",
    "EngagementConfig",
    "EngagementService",
    "SubmissionResult",
    "questionnaire_document",
]

#: Version of the consent statement members agree to (stored with every answer set).
CONSENT_VERSION = "sbright-consent-1"
#: The consent statement, per language (shown with the questionnaire).
CONSENT_TEXTS: Mapping[str, str] = {
    "en": (
        "I agree that my answers to this questionnaire are stored by my energy community's node as "
        "personal data, combined with my metering data to suggest services and incentives that suit "
        "me, and used in statistics of the community that name no member. My answers never leave "
        "the node. I can withdraw this consent at any time; my answers and profile are then erased."
    ),
    "fr": (
        "J'accepte que mes réponses à ce questionnaire soient conservées par le nœud de ma "
        "communauté d'énergie comme données personnelles, combinées à mes données de comptage pour "
        "me proposer des services et des incitants adaptés, et utilisées dans des statistiques de la "
        "communauté qui ne nomment aucun membre. Mes réponses ne quittent jamais le nœud. Je peux "
        "retirer ce consentement à tout moment ; mes réponses et mon profil sont alors effacés."
    ),
    "nl": (
        "Ik ga ermee akkoord dat mijn antwoorden op deze vragenlijst door het knooppunt van mijn "
        "energiegemeenschap als persoonsgegevens worden bewaard, gecombineerd met mijn meetgegevens "
        "om mij passende diensten en stimulansen voor te stellen, en gebruikt in statistieken van de "
        "gemeenschap die geen enkel lid noemen. Mijn antwoorden verlaten het knooppunt nooit. Ik kan "
        "deze toestemming altijd intrekken; mijn antwoorden en profiel worden dan gewist."
    ),
}
#: A representative static three-period time-of-use tariff (EUR/kWh, energy component) against which
#: structural winners are flagged; the reference is the community's revenue-neutral flat price, so
#: only the ratios of the three prices matter.
DEFAULT_TARIFF = TimeOfUseTariff(0.40, 0.28, solar_price_eur_per_kwh=0.22)
#: Smallest number of classified members for the mix to be published as an open entity.
MIN_AGGREGATE_MEMBERS = 5
_REFERENCE_PREFIX = "reference:"

# --------------------------------------------------------------------------------------------------
# Tables (personal data: answers and profiles stay in the node's own tables)
# --------------------------------------------------------------------------------------------------

metadata = MetaData()
_ID = BigInteger().with_variant(Integer(), "sqlite")

answers_table = Table(
    "sbright_answers",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("member_id", String(512), nullable=False),
    Column("community_id", String(512), nullable=False),
    Column("version", String(64), nullable=False),
    Column("answers", Text, nullable=False),  # JSON {item: code or null}, questionnaire order
    Column("missing_items", Text, nullable=False),  # JSON [item ids]
    Column("consent_given", Boolean, nullable=False),
    Column("consent_at", String(32), nullable=False),  # RFC 3339 UTC
    Column("consent_version", String(64), nullable=False),
    Column("submitted_at", String(32), nullable=False),
    Column("source", String(16), nullable=False),  # "member" or "simulated"
    Index("ix_sbright_answers_member", "tenant", "member_id", "id"),
    Index("ix_sbright_answers_community", "tenant", "community_id"),
)
profiles_table = Table(
    "sbright_profiles",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("member_id", String(512), primary_key=True),
    Column("community_id", String(512), nullable=False),
    Column("computed_at", String(32), nullable=False),
    Column("profile", Text, nullable=False),  # JSON document (see EngagementService.profile)
)
mixes_table = Table(
    "sbright_mixes",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("community_id", String(512), primary_key=True),
    Column("computed_at", String(32), nullable=False),
    Column("mix", Text, nullable=False),  # JSON document (see EngagementService.mix)
)


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


migrations.register(50, "S-BRIGHT: questionnaire answers, member profiles, community mixes", _create_tables)


# --------------------------------------------------------------------------------------------------
# Errors and inputs
# --------------------------------------------------------------------------------------------------


class ConsentRequired(BadRequestData, ValueError):
    """Answers were submitted without a recorded consent (flag and date); nothing was stored."""


class AnswerRejected(BadRequestData, ValueError):
    """An answer is out of range or refers to an unknown item; the ProblemDetails carry ``item``."""


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Consent:
    """A member's consent to the processing of their answers.

    Attributes
    ----------
    given : bool
        True when the member agreed (must be True to store anything).
    date : datetime
        When the member agreed (timezone-aware; stored in UTC to the second).
    text_version : str
        Version of the consent statement agreed to (:data:`CONSENT_VERSION`).
    """

    given: bool
    date: datetime
    text_version: str = CONSENT_VERSION

    @classmethod
    def parse(cls, raw: Any, *, member: str = "", now: datetime | None = None) -> Consent:
        """Read a consent from a :class:`Consent` or a JSON object ``{"given", "date", "textVersion"}``.

        Parameters
        ----------
        raw : Consent, Mapping or None
            The consent as submitted.
        member : str, optional
            Member id, for error messages.
        now : datetime, optional
            Current time (a consent dated more than a day ahead of it is refused).

        Returns
        -------
        Consent

        Raises
        ------
        ConsentRequired
            If the consent is absent, not given, undated, not an RFC 3339 date-time with a zone,
            or dated in the future.
        """
        who = f" of member {member}" if member else ""
        given: Any
        date: Any
        version: Any
        if isinstance(raw, Consent):
            given, date, version = raw.given, raw.date, raw.text_version
        elif isinstance(raw, Mapping):
            given = raw.get("given")
            date = raw.get("date")
            version = raw.get("textVersion", raw.get("text_version", CONSENT_VERSION))
        elif raw is None:
            raise ConsentRequired(
                f"answers{who} need the member's consent: send consent.given = true and consent.date"
            )
        else:
            raise ConsentRequired(f"consent{who} must be an object {{given, date}}, got {type(raw).__name__}")
        if given is not True:
            raise ConsentRequired(
                f"consent{who} is not given (consent.given = {given!r}): nothing was stored"
            )
        if date is None or date == "":
            raise ConsentRequired(f"consent{who} has no date (consent.date, RFC 3339 with a zone)")
        if isinstance(date, str):
            try:
                date = datetime.fromisoformat(date.replace("Z", "+00:00"))
            except ValueError:
                raise ConsentRequired(f"consent.date{who} {date!r} is not an RFC 3339 date-time") from None
        if not isinstance(date, datetime) or date.tzinfo is None:
            raise ConsentRequired(f"consent.date{who} must be a date-time with a time zone, got {date!r}")
        if date > (now or _now()) + timedelta(days=1):
            raise ConsentRequired(f"consent.date{who} {_iso(date)} is in the future")
        if not isinstance(version, str) or not version:
            raise ConsentRequired(f"consent.textVersion{who} must be a non-empty string")
        return cls(True, date.astimezone(UTC).replace(microsecond=0), version)

    def to_json(self) -> dict[str, Any]:
        """JSON object ``{"given", "date", "textVersion"}``."""
        return {"given": self.given, "date": _iso(self.date), "textVersion": self.text_version}


@dataclass(frozen=True)
class EngagementConfig:
    """How the community is segmented and members are matched.

    Attributes
    ----------
    reference_size : int
        Respondents in the pooled sample: simulated reference respondents top up the community's
        real ones to this number (0: the community's respondents alone).
    k_range : tuple of int
        Candidate numbers of classes, chosen by BIC (reduced to k <= n / 5 when the pool is small).
    n_init : int
        Random EM starts per k.
    bootstrap_reps, bootstrap_n_init : int
        Bootstrap refits for the stability ARI, and their EM starts.
    seed : int
        Seed of the reference sample and of the EM starts (results are reproducible).
    reference_missing_rate : float
        Share of answers missing at random in the reference sample (0-1).
    tariff : TimeOfUseTariff
        Time-of-use tariff (EUR/kWh) for the structural winners.
    history_days : int
        Days of metered offtake (ending at the latest reading) the load features use.
    """

    reference_size: int = 600
    k_range: tuple[int, ...] = K_RANGE
    n_init: int = 4
    bootstrap_reps: int = 3
    bootstrap_n_init: int = 2
    seed: int = 0
    reference_missing_rate: float = 0.03
    tariff: TimeOfUseTariff = DEFAULT_TARIFF
    history_days: int = 365

    @classmethod
    def from_settings(cls, settings: Any = None) -> EngagementConfig:
        """Read overrides from ``settings.extra`` or the environment.

        ``engagement_reference_size``, ``engagement_n_init``, ``engagement_bootstrap_reps``,
        ``engagement_seed`` and ``engagement_k_max`` (classes tried: 2..k_max), as ``settings.extra``
        keys or ``BRIGHT_ENGAGEMENT_...`` environment variables.
        """
        extra: Mapping[str, str] = getattr(settings, "extra", None) or {}

        def pick(name: str) -> str | None:
            return extra.get(name) or os.environ.get(f"BRIGHT_{name.upper()}") or None

        values: dict[str, Any] = {}
        for key, name in (
            ("engagement_reference_size", "reference_size"),
            ("engagement_n_init", "n_init"),
            ("engagement_bootstrap_reps", "bootstrap_reps"),
            ("engagement_seed", "seed"),
        ):
            raw = pick(key)
            if raw is not None:
                values[name] = int(raw)
        k_max = pick("engagement_k_max")
        if k_max is not None:
            values["k_range"] = tuple(range(2, int(k_max) + 1))
        return cls(**values)


@dataclass(frozen=True)
class SubmissionResult:
    """What a submission stored and what it gave back.

    Attributes
    ----------
    member_id, community_id : str
        The member and its community.
    version : str
        Questionnaire version of the answers.
    submitted_at : datetime
        When the answers were stored (UTC).
    consent : Consent
        The consent recorded with them.
    scores : Mapping[str, float]
        Dimension scores in [0, 1] (NaN when too few items of the dimension were answered).
    missing_items : tuple of str
        Items left unanswered (the set is then flagged incomplete, not rejected).
    profile : dict or None
        The member's profile after the community was re-segmented (None with ``refresh=False``).
    """

    member_id: str
    community_id: str
    version: str
    submitted_at: datetime
    consent: Consent
    scores: Mapping[str, float]
    missing_items: tuple[str, ...]
    profile: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """True when every item was answered."""
        return not self.missing_items

    def to_json(self) -> dict[str, Any]:
        """JSON document of the submission (scores NaN as null)."""
        return {
            "member": self.member_id,
            "community": self.community_id,
            "questionnaireVersion": self.version,
            "submittedAt": _iso(self.submitted_at),
            "consent": self.consent.to_json(),
            "complete": self.complete,
            "missingItems": list(self.missing_items),
            "scores": {d: _num(v) for d, v in self.scores.items()},
            "profile": self.profile,
        }


def _num(value: Any, digits: int = 4) -> float | None:
    """A finite float rounded for JSON, or None for NaN/None."""
    if value is None:
        return None
    f = float(value)
    return round(f, digits) if math.isfinite(f) else None


# --------------------------------------------------------------------------------------------------
# Questionnaire as a document
# --------------------------------------------------------------------------------------------------


def questionnaire_document(
    questionnaire: Questionnaire = QUESTIONNAIRE_V1, *, lang: str = "en"
) -> dict[str, Any]:
    """The questionnaire as shown to a member, in one language.

    Correct answers of the knowledge items and the keying of the items are not disclosed.

    Parameters
    ----------
    questionnaire : Questionnaire, optional
        The version to render.
    lang : {"en", "fr", "nl"}
        Language of the texts.

    Returns
    -------
    dict
        ``version``, ``language``, ``intro``, ``consent`` ({text, textVersion}), ``dimensions`` and
        ``items`` (id, dimension, text, options [{value, label}]).

    Raises
    ------
    BadRequestData
        For a language other than en, fr, nl.
    """
    if lang not in LANGUAGES:
        raise BadRequestData(f"language {lang!r} is not available; use one of {', '.join(LANGUAGES)}")
    return {
        "version": questionnaire.version,
        "language": lang,
        "intro": questionnaire.intro[lang],
        "consent": {"text": CONSENT_TEXTS[lang], "textVersion": CONSENT_VERSION},
        "dimensions": [{"id": d.id, "name": d.name[lang]} for d in questionnaire.dimensions],
        "items": [
            {
                "id": it.id,
                "dimension": it.dimension,
                "text": it.text[lang],
                "options": [{"value": o.value, "label": o.text[lang]} for o in it.scale.options],
            }
            for it in questionnaire.items
        ],
    }


# --------------------------------------------------------------------------------------------------
# Rendering results as JSON
# --------------------------------------------------------------------------------------------------


def _recommendation_json(rec: Recommendation) -> dict[str, Any]:
    offer = rec.offer
    return {
        "offer": offer.id,
        "kind": offer.kind,
        "name": offer.names["en"],
        "names": dict(offer.names),
        "summary": offer.summary,
        "suitability": _num(rec.suitability, 3),
        "reasons": list(rec.reasons),
        "fallback": rec.fallback,
        "references": [
            {
                "citation": ev.reference.citation(),
                "authors": ev.reference.authors,
                "year": ev.reference.year,
                "title": ev.reference.title,
                "venue": ev.reference.venue,
                "finding": ev.finding,
            }
            for ev in offer.evidence
        ],
    }


def _recommendations_json(recs: Recommendations, basis: str) -> dict[str, Any]:
    return {
        "basis": basis,
        "services": [_recommendation_json(r) for r in recs.services],
        "incentives": [_recommendation_json(r) for r in recs.incentives],
        "notes": list(recs.notes),
    }


def _structural_json(gain: StructuralGain | None) -> dict[str, Any] | None:
    if gain is None:
        return None
    return {
        "winner": gain.winner,
        "loser": gain.loser,
        "relativeGain": _num(gain.relative_gain),
        "weightedPriceEurPerKwh": _num(gain.weighted_price_eur_per_kwh),
        "referencePriceEurPerKwh": _num(gain.reference_price_eur_per_kwh),
        "billDifferenceEur": _num(gain.bill_difference_eur, 2),
        "energyKwh": _num(gain.energy_kwh, 1),
        "threshold": gain.threshold,
    }


def _features_json(f: LoadProfileFeatures | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "peakShare": _num(f.peak_share),
        "eveningPeakRatio": _num(f.evening_peak_ratio),
        "dayToDayVariability": _num(f.day_to_day_variability),
        "baseLoadShare": _num(f.base_load_share),
        "meanPowerKw": _num(f.mean_power_kw),
        "coverage": _num(f.coverage),
        "completeDays": f.n_complete_days,
    }


# --------------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------------


@dataclass
class _MemberData:
    """What the segmentation and matching know of one member (answers excepted)."""

    member_id: str
    assets: FlexibleAssets
    features: LoadProfileFeatures | None
    structural: StructuralGain | None
    notes: list[str] = field(default_factory=list)


_ASSET_TYPES = {
    "EVChargingStation": "electric_vehicle",
    "HeatPump": "heat_pump",
    "Battery": "home_battery",
    "PhotovoltaicDevice": "pv",
}


class EngagementService:
    """Questionnaire answers, member profiles and community mixes of one node.

    Parameters
    ----------
    twin : TwinService
        The node's entities (members, their meters and assets; the mix is published there).
    series : SeriesStore, optional
        The node's time series (members' offtake); created on the twin's engine when omitted.
    config : EngagementConfig, optional
        Segmentation and matching settings.

    Examples
    --------
    >>> svc = EngagementService(twin)                                              # doctest: +SKIP
    >>> svc.submit_answers("urn:ngsi-ld:EnergyProsumer:c1:home01", {"nep_1": 5, ...},
    ...                    consent={"given": True, "date": "2024-05-01T10:00:00Z"})  # doctest: +SKIP
    >>> svc.profile("urn:ngsi-ld:EnergyProsumer:c1:home01")["category"]["name"]      # doctest: +SKIP
    'Eco-committed'
    """

    def __init__(
        self, twin: TwinService, series: SeriesStore | None = None, *, config: EngagementConfig | None = None
    ) -> None:
        self.twin = twin
        self.engine: Engine = twin.engine
        self.series = series if series is not None else SeriesStore(twin.engine)
        self.config = config or EngagementConfig()
        migrations.migrate(self.engine)

    # -- members ----------------------------------------------------------------------------------

    def community_of(self, member_id: str, *, tenant: str = "") -> str:
        """The community (``memberOf``) of an ``EnergyProsumer``.

        Raises
        ------
        ResourceNotFound
            If the member does not exist or is not an EnergyProsumer.
        BadRequestData
            If it belongs to no community.
        """
        ctx = bright_context()
        doc = self.twin.store.get(tenant, member_id) if self.twin.store.tenant_exists(tenant) else None
        if doc is None:
            raise ResourceNotFound(f"member {member_id} not found")
        if ctx.expand("EnergyProsumer") not in doc.get("type", []):
            raise ResourceNotFound(f"entity {member_id} is not an EnergyProsumer (a community member)")
        objects = [
            inst.get("object")
            for inst in doc.get("attrs", {}).get(ctx.expand("memberOf"), [])
            if isinstance(inst.get("object"), str)
        ]
        if not objects:
            raise BadRequestData(f"member {member_id} belongs to no community (no memberOf relationship)")
        return str(objects[0])

    # -- answers ----------------------------------------------------------------------------------

    def submit_answers(
        self,
        member_id: str,
        answers: Mapping[str, object],
        *,
        consent: Consent | Mapping[str, Any] | None,
        version: str = QUESTIONNAIRE_V1.version,
        tenant: str = "",
        source: str = "member",
        refresh: bool = True,
    ) -> SubmissionResult:
        """Validate, store and score a member's answers; re-segment the community.

        Parameters
        ----------
        member_id : str
            Entity id of the member's ``EnergyProsumer``.
        answers : Mapping[str, object]
            Answer code per item id; null/absent = not answered (the set is flagged incomplete).
        consent : Consent or Mapping
            ``{"given": true, "date": "<RFC 3339>"}``; required.
        version : str, optional
            Questionnaire version the answers belong to.
        tenant : str, optional
            NGSI-LD tenant of the member.
        source : {"member", "simulated"}
            Who produced the answers (simulated answers are for demos and are flagged as such).
        refresh : bool, optional
            Re-segment the community and return the member's new profile (default True).

        Returns
        -------
        SubmissionResult

        Raises
        ------
        ConsentRequired
            Without a given and dated consent (nothing is stored).
        AnswerRejected
            For an out-of-range answer or an unknown item (the item is named; nothing is stored).
        ResourceNotFound
            For an unknown member or questionnaire version.
        """
        community_id = self.community_of(member_id, tenant=tenant)
        agreed = Consent.parse(consent, member=member_id)
        questionnaire = self._questionnaire(version)
        if not isinstance(answers, Mapping):
            raise BadRequestData(f"answers of member {member_id} must be an object {{item id: code}}")
        try:
            scored = score_respondent(answers, respondent=member_id, questionnaire=questionnaire)
            checked = questionnaire.validate_answers(answers, respondent=member_id)
        except AnswerOutOfRangeError as exc:
            raise AnswerRejected(str(exc), item=exc.item_id) from None
        except UnknownItemError as exc:
            unknown = next((k for k in answers if k not in questionnaire.item_ids), None)
            raise AnswerRejected(str(exc), item=unknown) from None
        if source not in ("member", "simulated"):
            raise BadRequestData(f"source {source!r} must be 'member' or 'simulated'")
        submitted = _now()
        with self.engine.begin() as conn:
            conn.execute(
                answers_table.insert().values(
                    tenant=tenant,
                    member_id=member_id,
                    community_id=community_id,
                    version=questionnaire.version,
                    answers=orjson.dumps(dict(checked.answers)).decode(),
                    missing_items=orjson.dumps(list(checked.missing_items)).decode(),
                    consent_given=True,
                    consent_at=_iso(agreed.date),
                    consent_version=agreed.text_version,
                    submitted_at=_iso(submitted),
                    source=source,
                )
            )
        profile = None
        if refresh:
            self.refresh_community(community_id, tenant=tenant)
            profile = self.profile(member_id, tenant=tenant)
        return SubmissionResult(
            member_id=member_id,
            community_id=community_id,
            version=questionnaire.version,
            submitted_at=submitted,
            consent=agreed,
            scores=dict(scored.scores),
            missing_items=scored.missing_items,
            profile=profile,
        )

    @staticmethod
    def _questionnaire(version: str) -> Questionnaire:
        try:
            return questionnaire_by_version(version)
        except (QuestionnaireError, KeyError):
            raise ResourceNotFound(f"questionnaire version {version!r} is unknown") from None

    def withdraw(self, member_id: str, *, tenant: str = "", refresh: bool = True) -> int:
        """Erase a member's answers and profile (consent withdrawn); re-segment the community.

        Parameters
        ----------
        member_id : str
            The member.
        tenant : str, optional
            Its tenant.
        refresh : bool, optional
            Re-segment the community without the member (default True).

        Returns
        -------
        int
            Number of answer sets erased.
        """
        with self.engine.begin() as conn:
            rows = (
                conn.execute(
                    select(answers_table.c.community_id).where(
                        answers_table.c.tenant == tenant, answers_table.c.member_id == member_id
                    )
                )
                .scalars()
                .all()
            )
            conn.execute(
                delete(answers_table).where(
                    answers_table.c.tenant == tenant, answers_table.c.member_id == member_id
                )
            )
            conn.execute(
                delete(profiles_table).where(
                    profiles_table.c.tenant == tenant, profiles_table.c.member_id == member_id
                )
            )
        if refresh:
            for community_id in sorted(set(rows)):
                self.refresh_community(community_id, tenant=tenant)
        return len(rows)

    def latest_answers(
        self, community_id: str, *, tenant: str = ""
    ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
        """The latest consented answer set of every member of a community.

        Returns
        -------
        answers : pandas.DataFrame
            One row per member (index = member id), one column per item of the current
            questionnaire (codes as floats, NaN when unanswered).
        meta : dict
            Per member: ``submittedAt``, ``consent``, ``source``, ``version``, ``missingItems``.
        """
        t = answers_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t).where(t.c.tenant == tenant, t.c.community_id == community_id).order_by(t.c.id)
            ).all()
        latest: dict[str, Any] = {}
        for row in rows:
            if row.consent_given and row.version == QUESTIONNAIRE_V1.version:
                latest[row.member_id] = row
        data = {
            m: {k: (np.nan if v is None else float(v)) for k, v in orjson.loads(r.answers).items()}
            for m, r in latest.items()
        }
        frame = pd.DataFrame.from_dict(
            data, orient="index", columns=list(QUESTIONNAIRE_V1.item_ids), dtype=float
        )
        meta = {
            m: {
                "submittedAt": r.submitted_at,
                "consent": {
                    "given": bool(r.consent_given),
                    "date": r.consent_at,
                    "textVersion": r.consent_version,
                },
                "source": r.source,
                "version": r.version,
                "missingItems": orjson.loads(r.missing_items),
            }
            for m, r in latest.items()
        }
        return frame, meta

    # -- member data from the twin ------------------------------------------------------------------

    def _assets(self, community: Community) -> dict[str, FlexibleAssets]:
        ctx = bright_context()
        controls = ctx.expand("controls")
        docs = community.twin.store.get_many(community.tenant, list(community.member_ids))
        owned: dict[str, list[str]] = {}
        for mid, doc in docs.items():
            objs: list[str] = []
            for inst in doc.get("attrs", {}).get(controls, []):
                obj = inst.get("object", inst.get("objectList"))
                objs.extend([str(o) for o in obj] if isinstance(obj, list) else [str(obj)] if obj else [])
            owned[mid] = objs
        devices = community.twin.store.get_many(
            community.tenant, sorted({d for v in owned.values() for d in v})
        )
        by_iri = {ctx.expand(name): flag for name, flag in _ASSET_TYPES.items()}
        out: dict[str, FlexibleAssets] = {}
        for mid in community.member_ids:
            flags: dict[str, bool] = {}
            for device in owned.get(mid, []):
                for t in devices.get(device, {}).get("type", []):
                    if t in by_iri:
                        flags[by_iri[t]] = True
            out[mid] = FlexibleAssets(**flags)
        return out

    def _offtake(self, community: Community) -> pd.DataFrame:
        """Members' offtake (kWh per interval) over the last ``history_days`` of readings."""
        attr = bright_context().expand("offtake")
        lasts = [
            info.last
            for info in self.series.series(community.tenant, attribute=attr)
            if info.entity_id in set(community.meter_ids)
            and info.dataset_id is None
            and info.last is not None
        ]
        if not lasts:
            return pd.DataFrame(columns=list(community.member_ids), dtype=float)
        end = max(lasts) + community.resolution
        start = end - pd.Timedelta(days=self.config.history_days)
        frame = self.series.read(list(community.meter_ids), attr, start, end, tenant=community.tenant)
        frame.columns = pd.Index(community.member_ids)
        return frame

    def _member_data(self, community: Community) -> dict[str, _MemberData]:
        assets = self._assets(community)
        offtake = self._offtake(community)
        data = {mid: _MemberData(mid, assets[mid], None, None) for mid in community.member_ids}
        for mid in community.member_ids:
            col = offtake[mid] if mid in offtake.columns else pd.Series(dtype=float)
            if col.notna().sum() == 0:
                data[mid].notes.append("no metered offtake: load-profile features unknown")
                continue
            try:
                data[mid].features = load_profile_features(col, member=mid)
            except ProfileDataError as exc:
                data[mid].notes.append(f"load-profile features not computed: {exc}")
        usable = [m for m in community.member_ids if m in offtake.columns and offtake[m].notna().any()]
        if usable:
            frame = offtake[usable]
            prices = self.config.tariff.prices(pd.DatetimeIndex(frame.index))
            try:
                gains = structural_winners(frame, prices)
            except ValueError as exc:  # MatchingError / ProfileDataError: no priced offtake
                gains = {}
                for m in usable:
                    data[m].notes.append(f"structural gain not computed: {exc}")
            for m, gain in gains.items():
                data[m].structural = gain
        return data

    # -- segmentation -----------------------------------------------------------------------------

    def _pool(
        self, answers: pd.DataFrame, data: Mapping[str, _MemberData]
    ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
        """Real respondents topped up with reference respondents; their covariates."""
        rows = {}
        for mid in answers.index:
            d = data[mid]
            f = d.features
            rows[mid] = {
                "peak_share": np.nan if f is None else f.peak_share,
                "evening_peak_ratio": np.nan if f is None else f.evening_peak_ratio,
                "day_to_day_variability": np.nan if f is None else f.day_to_day_variability,
                "base_load_share": np.nan if f is None else f.base_load_share,
                "n_flexible_assets": float(d.assets.n_flexible),
                "has_pv": float(d.assets.pv),
            }
        covariates = pd.DataFrame.from_dict(
            rows, orient="index", columns=list(COVARIATE_COLUMNS), dtype=float
        )
        n_ref = max(0, self.config.reference_size - len(answers))
        if n_ref == 0:
            return answers, covariates, 0
        ref = simulate_respondents(
            n_ref, missing_rate=self.config.reference_missing_rate, seed=self.config.seed
        )
        ids = [_REFERENCE_PREFIX + str(i) for i in ref.answers.index]
        ref_answers = ref.answers.set_axis(ids, axis=0)
        ref_cov = ref.covariates.set_axis(ids, axis=0)
        return (
            pd.concat([answers, ref_answers[answers.columns]]),
            pd.concat([covariates, ref_cov[covariates.columns]]),
            n_ref,
        )

    def _segment(
        self, pool: pd.DataFrame, covariates: pd.DataFrame
    ) -> tuple[Segmentation | None, str | None]:
        answered = pool.notna().mean(axis=1) >= 0.5
        n = int(answered.sum())
        ks = tuple(k for k in self.config.k_range if 5 * k <= n)
        if not ks:
            return None, f"{n} usable respondents is too few for a latent class model (at least 10)"
        try:
            seg = segment_members(
                pool,
                covariates,
                k_range=ks,
                n_init=self.config.n_init,
                bootstrap_reps=self.config.bootstrap_reps,
                bootstrap_n_init=self.config.bootstrap_n_init,
                random_state=self.config.seed,
            )
        except SegmentationError as exc:
            return None, str(exc)
        return seg, None

    def refresh_community(self, community_id: str, *, tenant: str = "") -> dict[str, Any]:
        """Segment a community's respondents, store every member's profile and the community mix.

        Parameters
        ----------
        community_id : str
            Entity id of the ``EnergyCommunity``.
        tenant : str, optional
            Its tenant.

        Returns
        -------
        dict
            The community mix (see :meth:`mix`).
        """
        community = load_community(self.twin, self.series, community_id, tenant=tenant)
        answers, meta = self.latest_answers(community_id, tenant=tenant)
        answers = answers.loc[[m for m in answers.index if m in set(community.member_ids)]]
        data = self._member_data(community)
        computed = _iso(_now())
        seg: Segmentation | None = None
        reason: str | None = None
        n_ref = 0
        if len(answers):
            pool, covariates, n_ref = self._pool(answers, data)
            seg, reason = self._segment(pool, covariates)
        else:
            reason = "no member has answered the questionnaire yet"
        pool_z = self._pool_z(answers, seg)
        profiles = {
            mid: self._profile(
                mid, community_id, answers.loc[mid], meta[mid], data[mid], seg, pool_z, computed
            )
            for mid in answers.index
        }
        mix = self._mix(community, answers, seg, reason, n_ref, profiles, computed)
        with self.engine.begin() as conn:
            conn.execute(
                delete(profiles_table).where(
                    profiles_table.c.tenant == tenant, profiles_table.c.community_id == community_id
                )
            )
            if profiles:
                conn.execute(
                    profiles_table.insert(),
                    [
                        {
                            "tenant": tenant,
                            "member_id": mid,
                            "community_id": community_id,
                            "computed_at": computed,
                            "profile": orjson.dumps(p).decode(),
                        }
                        for mid, p in profiles.items()
                    ],
                )
            conn.execute(
                delete(mixes_table).where(
                    mixes_table.c.tenant == tenant, mixes_table.c.community_id == community_id
                )
            )
            conn.execute(
                mixes_table.insert().values(
                    tenant=tenant,
                    community_id=community_id,
                    computed_at=computed,
                    mix=orjson.dumps(mix).decode(),
                )
            )
        self._publish(community, mix)
        return mix

    def _pool_z(self, answers: pd.DataFrame, seg: Segmentation | None) -> pd.DataFrame:
        """Members' own dimension z-scores (against the respondents at hand)."""
        if answers.empty:
            return pd.DataFrame()
        scores = dimension_scores(answers)
        return dimension_z_scores(scores)

    def _profile(
        self,
        member_id: str,
        community_id: str,
        row: pd.Series,
        meta: Mapping[str, Any],
        data: _MemberData,
        seg: Segmentation | None,
        pool_z: pd.DataFrame,
        computed: str,
    ) -> dict[str, Any]:
        scored = score_respondent(
            {str(k): (None if not np.isfinite(v) else int(v)) for k, v in row.items()}, respondent=member_id
        )
        category: dict[str, Any] | None = None
        notes = list(data.notes)
        if seg is not None and member_id in seg.member_ids:
            i = seg.member_ids.index(member_id)
            c = seg.classes[int(seg.labels[i])]
            category = {
                "label": c.label,
                "name": c.name,
                "names": dict(c.names),
                "archetype": c.archetype,
                "description": c.description,
                "probability": _num(float(seg.posterior[i, c.label]), 3),
            }
            recs = recommend(
                c.dimension_z,
                category=c.name,
                assets=data.assets,
                features=data.features,
                structural=data.structural,
            )
            basis = "category"
        else:
            if seg is not None and member_id in seg.excluded:
                notes.append(
                    "too few items answered to be classified: recommendations from the member's own scores"
                )
            else:
                notes.append("community not segmented: recommendations from the member's own scores")
            own = pool_z.loc[member_id].to_dict() if member_id in pool_z.index else {}
            recs = recommend(
                {str(k): float(v) for k, v in own.items()},
                assets=data.assets,
                features=data.features,
                structural=data.structural,
            )
            basis = "own answers"
        questionnaire = QUESTIONNAIRE_V1
        return {
            "member": member_id,
            "community": community_id,
            "questionnaireVersion": meta["version"],
            "submittedAt": meta["submittedAt"],
            "computedAt": computed,
            "source": meta["source"],
            "consent": meta["consent"],
            "complete": not scored.missing_items,
            "missingItems": list(scored.missing_items),
            "unscoredDimensions": list(scored.unscored_dimensions),
            "scores": {
                d.id: {
                    "score": _num(scored.scores[d.id]),
                    "answered": scored.answered[d.id],
                    "items": len(questionnaire.items_of(d.id)),
                    "name": dict(d.name),
                }
                for d in questionnaire.dimensions
            },
            "category": category,
            "assets": data.assets.flags(),
            "loadProfile": _features_json(data.features),
            "structural": _structural_json(data.structural),
            "recommendations": _recommendations_json(recs, basis),
            "notes": notes,
        }

    def _mix(
        self,
        community: Community,
        answers: pd.DataFrame,
        seg: Segmentation | None,
        reason: str | None,
        n_ref: int,
        profiles: Mapping[str, dict[str, Any]],
        computed: str,
    ) -> dict[str, Any]:
        members = [m for m in answers.index if seg is not None and m in seg.member_ids]
        categories: list[dict[str, Any]] = []
        model: dict[str, Any] | None = None
        if seg is not None:
            idx = [seg.member_ids.index(m) for m in members]
            labels = seg.labels[idx] if idx else np.zeros(0, dtype=int)
            counts = np.bincount(labels, minlength=seg.n_classes) if idx else np.zeros(seg.n_classes, int)
            for c in seg.classes:
                n_c = int(counts[c.label])
                recs = recommend(c.dimension_z, category=c.name)
                categories.append(
                    {
                        "label": c.label,
                        "name": c.name,
                        "names": dict(c.names),
                        "archetype": c.archetype,
                        "description": c.description,
                        "members": n_c,
                        "share": _num(n_c / len(members), 4) if members else None,
                        "referenceShare": _num(c.share, 4),
                        "dimensionZ": {d: _num(v, 3) for d, v in c.dimension_z.items()},
                        "recommendations": _recommendations_json(recs, "category"),
                    }
                )
            categories.sort(key=lambda c: (-(c["members"]), c["label"]))
            post = seg.posterior[idx] if idx else np.zeros((0, seg.n_classes))
            with np.errstate(divide="ignore", invalid="ignore"):
                ent = -np.nansum(np.where(post > 0, post * np.log(post), 0.0))
            rel = (
                1.0 - ent / (len(idx) * math.log(seg.n_classes))
                if idx and seg.n_classes > 1
                else float("nan")
            )
            model = {
                "classes": seg.n_classes,
                "selection": [
                    {"k": f.n_classes, "bic": _num(f.bic, 1), "converged": f.converged} for f in seg.selection
                ],
                "respondents": len(seg.member_ids),
                "realRespondents": len(answers) - sum(1 for m in answers.index if m in seg.excluded),
                "referenceRespondents": n_ref,
                "reference": (
                    f"simulated reference sample (bright.social.segmentation.simulate_respondents, "
                    f"seed {self.config.seed}, {n_ref} respondents)"
                    if n_ref
                    else None
                ),
                "covariates": list(seg.covariates_used),
                "imputedCovariateValues": seg.imputed_covariate_values,
                "quality": {
                    "relativeEntropy": _num(seg.quality.relative_entropy),
                    "membersRelativeEntropy": _num(rel),
                    "smallestClassShare": _num(seg.quality.smallest_class_share),
                    "bootstrapAri": [_num(a) for a in seg.quality.bootstrap_ari],
                    "bootstrapAriMedian": _num(seg.quality.bootstrap_ari_median),
                },
            }
        reliability = None
        if len(answers) >= 2:
            reliability = {
                d: {"alpha": _num(r.alpha, 3), "items": r.n_items, "respondents": r.n_respondents}
                for d, r in dimension_reliability(answers, missing="pairwise").items()
            }
        excluded = [m for m in answers.index if seg is not None and m in seg.excluded]
        return {
            "community": community.id,
            "name": community.name,
            "questionnaireVersion": QUESTIONNAIRE_V1.version,
            "computedAt": computed,
            "members": len(community.member_ids),
            "respondents": len(answers),
            "classified": len(members),
            "incomplete": sum(1 for p in profiles.values() if not p["complete"]),
            "excluded": len(excluded),
            "simulatedAnswers": sum(1 for p in profiles.values() if p["source"] == "simulated"),
            "structuralWinners": sum(
                1 for p in profiles.values() if p["structural"] is not None and p["structural"]["winner"]
            ),
            "segmented": seg is not None,
            "reason": reason,
            "categories": categories,
            "model": model,
            "reliability": reliability,
        }

    def _publish(self, community: Community, mix: Mapping[str, Any]) -> None:
        """Publish the mix as an open ``EngagementMix`` entity (aggregate over >= 5 members)."""
        if mix["classified"] < MIN_AGGREGATE_MEMBERS:
            return
        slug = community.id.rsplit(":", 1)[-1] if community.id.startswith("urn:ngsi-ld:") else community.id
        entity = {
            "id": f"urn:ngsi-ld:EngagementMix:{slug}",
            "type": "EngagementMix",
            "name": {"type": "Property", "value": f"Engagement mix of {community.name or community.id}"},
            TERMS["refEnergyCommunity"]: {"type": "Relationship", "object": community.id},
            BRIGHT_NS + "questionnaireVersion": {"type": "Property", "value": mix["questionnaireVersion"]},
            BRIGHT_NS + "respondents": {"type": "Property", "value": mix["classified"]},
            BRIGHT_NS + "engagementCategories": {
                "type": "Property",
                "value": [
                    {
                        "name": c["name"],
                        "archetype": c["archetype"],
                        "share": c["share"],
                        "services": [r["offer"] for r in c["recommendations"]["services"]],
                        "incentives": [r["offer"] for r in c["recommendations"]["incentives"]],
                    }
                    for c in mix["categories"]
                    if c["members"] > 0
                ],
            },
        }
        res = self.twin.batch_upsert(community.tenant, [entity], bright_context())
        if res["errors"]:
            first = res["errors"][0]
            raise InternalError(
                f"EngagementMix entity {first['entityId']} was rejected: {first['error'].get('detail')}"
            )

    # -- reading results --------------------------------------------------------------------------

    def profile(self, member_id: str, *, tenant: str = "") -> dict[str, Any]:
        """The stored profile of a member.

        Returns
        -------
        dict
            ``member``, ``community``, ``category`` ({label, name, names, archetype, description,
            probability} or null), ``scores`` per dimension ({score 0-1, answered, items, name}),
            ``complete``/``missingItems``, ``assets``, ``loadProfile`` (features), ``structural``
            (gain under the time-of-use tariff), ``recommendations`` ({basis, services, incentives,
            notes}, each offer with its suitability, reasons and references), ``consent``, ``notes``.

        Raises
        ------
        ResourceNotFound
            If the member has no stored answers.
        """
        with self.engine.connect() as conn:
            text = conn.execute(
                select(profiles_table.c.profile).where(
                    profiles_table.c.tenant == tenant, profiles_table.c.member_id == member_id
                )
            ).scalar_one_or_none()
        if text is None:
            raise ResourceNotFound(f"member {member_id} has no engagement profile (no answers stored)")
        result: dict[str, Any] = orjson.loads(text)
        return result

    def mix(self, community_id: str, *, tenant: str = "", compute: bool = True) -> dict[str, Any]:
        """The community's engagement mix: categories, shares, recommendations and model quality.

        Parameters
        ----------
        community_id : str
            The community.
        tenant : str, optional
            Its tenant.
        compute : bool, optional
            Segment the community now if no mix is stored yet (default True).

        Raises
        ------
        ResourceNotFound
            If the community does not exist (or has no mix and ``compute`` is False).
        """
        with self.engine.connect() as conn:
            text = conn.execute(
                select(mixes_table.c.mix).where(
                    mixes_table.c.tenant == tenant, mixes_table.c.community_id == community_id
                )
            ).scalar_one_or_none()
        if text is None:
            if not compute:
                raise ResourceNotFound(f"community {community_id} has no engagement mix yet")
            return self.refresh_community(community_id, tenant=tenant)
        result: dict[str, Any] = orjson.loads(text)
        return result

    # -- demo ----------------------------------------------------------------------------------------

    def seed_simulated_answers(
        self,
        community_id: str,
        *,
        tenant: str = "",
        seed: int = 11,
        missing_rate: float = 0.03,
        consent_date: datetime | None = None,
    ) -> list[str]:
        """Give every member of a community answers drawn from the documented simulator (demo).

        Respondents are drawn with :func:`bright.social.segmentation.simulate_respondents` (the five
        documented classes and shares) and assigned to the members in order; the answers are stored
        with ``source = "simulated"`` and a consent dated ``consent_date`` (now by default), then the
        community is segmented once.

        Parameters
        ----------
        community_id : str
            The community.
        tenant : str, optional
            Its tenant.
        seed : int, optional
            Seed of the simulated answers.
        missing_rate : float, optional
            Share of answers left missing at random (0-1).
        consent_date : datetime, optional
            Date of the simulated consent.

        Returns
        -------
        list of str
            The members given answers.
        """
        community = load_community(self.twin, self.series, community_id, tenant=tenant)
        members = list(community.member_ids)
        sim = simulate_respondents(len(members), missing_rate=missing_rate, seed=seed)
        consent = Consent(True, consent_date or _now())
        for mid, (_, row) in zip(members, sim.answers.iterrows(), strict=True):
            self.submit_answers(
                mid,
                {str(k): (None if not np.isfinite(v) else int(v)) for k, v in row.items()},
                consent=consent,
                tenant=tenant,
                source="simulated",
                refresh=False,
            )
        self.refresh_community(community_id, tenant=tenant)
        return members

    def members_with_answers(self, community_id: str, *, tenant: str = "") -> Sequence[str]:
        """Members of a community with a stored answer set."""
        frame, _ = self.latest_answers(community_id, tenant=tenant)
        return list(frame.index)
