"""The S-BRIGHT questionnaire: what an energy-community member is asked, in English, French and Dutch.

Thirty-one items, about five to six minutes, grouped into ten dimensions. Each dimension rests on a
validated instrument where one exists (revised NEP, SOEP risk item, ESS trust item, Brief Sense of
Community Scale, ATI scale); the remaining short scales (financial motive, comfort/autonomy, social
norms, energy literacy) are adapted from the studies recorded in :data:`INSTRUMENTS`. The item texts
are our own wording, written to be faithful to each construct; they are not the published wording.

The questionnaire is versioned: answers are stored with :attr:`Questionnaire.version`, and a new
wording or a new item makes a new version, so that scores are only ever compared within a version.

Answers are personal data. This module only describes the items and checks answers; it performs no
I/O (storage and consent are the twin's business).

Examples
--------
>>> q = questionnaire_by_version("sbright-q-1.0")
>>> q.item("ati_3").reverse_keyed
True
>>> checked = q.validate_answers({"nep_1": 4, "risk_1": 7}, respondent="M01")
>>> checked.complete, len(checked.missing_items)
(False, 29)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import pandas as pd

#: Languages in which every text of the questionnaire is available (ISO 639-1).
LANGUAGES: tuple[str, ...] = ("en", "fr", "nl")

#: Version identifier of the current questionnaire.
QUESTIONNAIRE_VERSION = "sbright-q-1.0"


class QuestionnaireError(ValueError):
    """Base class of the questionnaire's input errors."""


class UnknownItemError(QuestionnaireError):
    """An answer refers to an item that is not in the questionnaire version."""


class AnswerOutOfRangeError(QuestionnaireError):
    """An answer is not one of the values allowed by the item's response scale.

    Attributes
    ----------
    item_id : str
        Identifier of the offending item.
    respondent : str
        Identifier of the respondent (member), empty when not given.
    value : object
        The rejected answer.
    """

    def __init__(self, message: str, *, item_id: str, respondent: str, value: object) -> None:
        super().__init__(message)
        self.item_id = item_id
        self.respondent = respondent
        self.value = value


def _texts(en: str, fr: str, nl: str) -> Mapping[str, str]:
    return MappingProxyType({"en": en, "fr": fr, "nl": nl})


@dataclass(frozen=True)
class Reference:
    """A bibliographic reference.

    Parameters
    ----------
    authors : str
        Authors as cited, e.g. ``"Dunlap, R. E., Van Liere, K. D., Mertig, A. G., Jones, R. E."``.
    year : int
        Year of publication.
    title : str
        Title of the work.
    venue : str
        Journal (with volume, issue and pages) or publisher.
    """

    authors: str
    year: int
    title: str
    venue: str

    def citation(self) -> str:
        """Return the reference as one line: authors (year). title. venue."""
        return f"{self.authors} ({self.year}). {self.title}. {self.venue}."


@dataclass(frozen=True)
class Instrument:
    """A measurement instrument from which items are taken or adapted.

    Parameters
    ----------
    id : str
        Short identifier, e.g. ``"nep_r"``.
    name : str
        Name of the instrument.
    reference : Reference
        The study that introduced or validated it.
    adaptation : str
        How the items used here relate to the instrument (subset, adapted wording, ...).
    """

    id: str
    name: str
    reference: Reference
    adaptation: str


@dataclass(frozen=True)
class ResponseOption:
    """One allowed answer.

    Parameters
    ----------
    value : int
        The stored answer code (dimensionless).
    text : Mapping[str, str]
        Label shown to the respondent, per language; numeric points of an 11-point scale without an
        anchor are labelled by their number.
    """

    value: int
    text: Mapping[str, str]


@dataclass(frozen=True)
class ResponseScale:
    """An ordered set of response options.

    Parameters
    ----------
    id : str
        Identifier of the scale, e.g. ``"agree5"``.
    options : tuple[ResponseOption, ...]
        Allowed answers, in the order they are shown.
    """

    id: str
    options: tuple[ResponseOption, ...]

    @property
    def values(self) -> tuple[int, ...]:
        """Allowed answer codes, in display order."""
        return tuple(o.value for o in self.options)

    @property
    def minimum(self) -> int:
        """Smallest answer code."""
        return min(self.values)

    @property
    def maximum(self) -> int:
        """Largest answer code."""
        return max(self.values)


@dataclass(frozen=True)
class Item:
    """One question.

    Parameters
    ----------
    id : str
        Identifier, stable within a questionnaire version (e.g. ``"bscs_4"``).
    dimension : str
        Identifier of the dimension the item measures (a key of :data:`DIMENSIONS`).
    instrument : str
        Identifier of the source instrument (a key of :data:`INSTRUMENTS`).
    text : Mapping[str, str]
        Question or statement, per language.
    scale : ResponseScale
        Allowed answers.
    reverse_keyed : bool
        True when a high answer means a LOW level of the dimension (scored as ``max + min - x``).
    correct_value : int or None
        For knowledge items, the answer code that is correct (scored 1, any other answer 0).
    """

    id: str
    dimension: str
    instrument: str
    text: Mapping[str, str]
    scale: ResponseScale
    reverse_keyed: bool = False
    correct_value: int | None = None

    @property
    def is_knowledge_item(self) -> bool:
        """True for an item scored right/wrong rather than on an ordinal scale."""
        return self.correct_value is not None


@dataclass(frozen=True)
class Dimension:
    """A construct measured by one or more items.

    Parameters
    ----------
    id : str
        Identifier, e.g. ``"environmental_concern"``.
    name : Mapping[str, str]
        Display name per language.
    instrument : str
        Identifier of the source instrument.
    """

    id: str
    name: Mapping[str, str]
    instrument: str


@dataclass(frozen=True)
class ValidatedAnswers:
    """Answers of one respondent after validation.

    Parameters
    ----------
    respondent : str
        Identifier of the respondent (member).
    version : str
        Questionnaire version the answers belong to.
    answers : Mapping[str, int | None]
        One entry per item of the questionnaire, in questionnaire order; ``None`` when not answered.
    missing_items : tuple[str, ...]
        Items left unanswered.
    """

    respondent: str
    version: str
    answers: Mapping[str, int | None]
    missing_items: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """True when every item was answered."""
        return not self.missing_items


@dataclass(frozen=True)
class Questionnaire:
    """A versioned questionnaire.

    Parameters
    ----------
    version : str
        Version identifier stored with every answer set.
    items : tuple[Item, ...]
        Items in display order.
    dimensions : tuple[Dimension, ...]
        Dimensions measured, in reporting order.
    instruments : Mapping[str, Instrument]
        Source instruments by identifier.
    intro : Mapping[str, str]
        Short introduction shown before the first item, per language.
    """

    version: str
    items: tuple[Item, ...]
    dimensions: tuple[Dimension, ...]
    instruments: Mapping[str, Instrument]
    intro: Mapping[str, str]
    _by_id: Mapping[str, Item] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {it.id: it for it in self.items}
        if len(by_id) != len(self.items):
            raise QuestionnaireError(f"questionnaire {self.version}: duplicate item identifiers")
        dims = {d.id for d in self.dimensions}
        for it in self.items:
            if it.dimension not in dims:
                raise QuestionnaireError(f"item {it.id}: unknown dimension {it.dimension!r}")
            if it.instrument not in self.instruments:
                raise QuestionnaireError(f"item {it.id}: unknown instrument {it.instrument!r}")
            for lang in LANGUAGES:
                if not it.text.get(lang):
                    raise QuestionnaireError(f"item {it.id}: no text in language {lang!r}")
                for opt in it.scale.options:
                    if not opt.text.get(lang):
                        raise QuestionnaireError(f"item {it.id}: option {opt.value} has no {lang!r} label")
            if it.correct_value is not None and it.correct_value not in it.scale.values:
                raise QuestionnaireError(f"item {it.id}: correct value is not an allowed answer")
        object.__setattr__(self, "_by_id", MappingProxyType(by_id))

    @property
    def item_ids(self) -> tuple[str, ...]:
        """Item identifiers in display order."""
        return tuple(it.id for it in self.items)

    @property
    def dimension_ids(self) -> tuple[str, ...]:
        """Dimension identifiers in reporting order."""
        return tuple(d.id for d in self.dimensions)

    def item(self, item_id: str) -> Item:
        """Return the item with this identifier.

        Raises
        ------
        UnknownItemError
            If the questionnaire version has no such item.
        """
        try:
            return self._by_id[item_id]
        except KeyError:
            raise UnknownItemError(f"item {item_id!r} is not in questionnaire {self.version}") from None

    def items_of(self, dimension: str) -> tuple[Item, ...]:
        """Return the items measuring ``dimension``, in display order.

        Raises
        ------
        QuestionnaireError
            If the dimension is unknown.
        """
        if dimension not in self.dimension_ids:
            raise QuestionnaireError(f"dimension {dimension!r} is not in questionnaire {self.version}")
        return tuple(it for it in self.items if it.dimension == dimension)

    def validate_answers(self, answers: Mapping[str, object], *, respondent: str = "") -> ValidatedAnswers:
        """Check one respondent's answers against the response scales.

        Parameters
        ----------
        answers : Mapping[str, object]
            Answer code per item identifier. ``None``, NaN or ``pd.NA`` means "not answered"; items
            absent from the mapping are also unanswered. Codes must be integers (an integral float
            such as ``3.0`` is accepted, as produced by a pandas column with missing values).
        respondent : str, optional
            Identifier of the respondent, used in error messages.

        Returns
        -------
        ValidatedAnswers
            One entry per questionnaire item; unanswered items listed in ``missing_items`` (the
            answer set is then flagged incomplete, not rejected).

        Raises
        ------
        UnknownItemError
            If an answer refers to an item not in this version.
        AnswerOutOfRangeError
            If an answer is not an allowed code of its item; the message names the item, the
            respondent and the allowed values.
        """
        who = f" of respondent {respondent!r}" if respondent else ""
        for key in answers:
            if key not in self._by_id:
                raise UnknownItemError(f"answer{who} refers to unknown item {key!r} (version {self.version})")
        out: dict[str, int | None] = {}
        missing: list[str] = []
        for it in self.items:
            raw = answers.get(it.id)
            code = _answer_code(raw)
            if code is None:
                out[it.id] = None
                missing.append(it.id)
                continue
            if isinstance(code, str) or code not in it.scale.values:
                raise AnswerOutOfRangeError(
                    f"answer {raw!r} to item {it.id!r}{who} is out of range: allowed values are "
                    f"{_describe_values(it.scale.values)}",
                    item_id=it.id,
                    respondent=respondent,
                    value=raw,
                )
            out[it.id] = code
        return ValidatedAnswers(
            respondent=respondent,
            version=self.version,
            answers=MappingProxyType(out),
            missing_items=tuple(missing),
        )


def _answer_code(raw: object) -> int | str | None:
    """Map a raw answer to an integer code, ``None`` (missing) or ``"invalid"``."""
    if raw is None or raw is pd.NA:
        return None
    if isinstance(raw, bool):
        return "invalid"
    if isinstance(raw, numbers.Integral):
        return int(raw)
    if isinstance(raw, numbers.Real):
        f = float(raw)
        if math.isnan(f):
            return None
        if f.is_integer():
            return int(f)
    return "invalid"


def _describe_values(values: Iterable[int]) -> str:
    vals = sorted(values)
    if vals == list(range(vals[0], vals[-1] + 1)):
        return f"the integers {vals[0]} to {vals[-1]}"
    return ", ".join(str(v) for v in vals)


# ---------------------------------------------------------------------------------------------
# Response scales

AGREE5 = ResponseScale(
    "agree5",
    (
        ResponseOption(1, _texts("Strongly disagree", "Pas du tout d'accord", "Helemaal oneens")),
        ResponseOption(2, _texts("Disagree", "Plutôt pas d'accord", "Oneens")),
        ResponseOption(
            3, _texts("Neither agree nor disagree", "Ni d'accord ni pas d'accord", "Niet eens, niet oneens")
        ),
        ResponseOption(4, _texts("Agree", "Plutôt d'accord", "Eens")),
        ResponseOption(5, _texts("Strongly agree", "Tout à fait d'accord", "Helemaal eens")),
    ),
)
"""Five-point agreement scale (1 = strongly disagree ... 5 = strongly agree)."""

AGREE6 = ResponseScale(
    "agree6",
    (
        ResponseOption(1, _texts("Completely disagree", "Pas du tout d'accord", "Helemaal oneens")),
        ResponseOption(2, _texts("Largely disagree", "Pas d'accord", "Grotendeels oneens")),
        ResponseOption(3, _texts("Slightly disagree", "Plutôt pas d'accord", "Een beetje oneens")),
        ResponseOption(4, _texts("Slightly agree", "Plutôt d'accord", "Een beetje eens")),
        ResponseOption(5, _texts("Largely agree", "D'accord", "Grotendeels eens")),
        ResponseOption(6, _texts("Completely agree", "Tout à fait d'accord", "Helemaal eens")),
    ),
)
"""Six-point agreement scale of the ATI scale (1 = completely disagree ... 6 = completely agree)."""


def _eleven_point(scale_id: str, low: Mapping[str, str], high: Mapping[str, str]) -> ResponseScale:
    opts = []
    for v in range(11):
        if v == 0:
            text = _texts(*(f"0 - {low[lang]}" for lang in LANGUAGES))
        elif v == 10:
            text = _texts(*(f"10 - {high[lang]}" for lang in LANGUAGES))
        else:
            text = _texts(str(v), str(v), str(v))
        opts.append(ResponseOption(v, text))
    return ResponseScale(scale_id, tuple(opts))


RISK11 = _eleven_point(
    "risk11",
    _texts(
        "I avoid risks whenever I can",
        "J'évite les risques autant que possible",
        "Ik vermijd risico's zoveel mogelijk",
    ),
    _texts(
        "I am fully prepared to take risks",
        "Je suis tout à fait prêt(e) à prendre des risques",
        "Ik ben volledig bereid om risico's te nemen",
    ),
)
"""0-10 willingness to take risks (SOEP general risk item)."""

TRUST_PEOPLE11 = _eleven_point(
    "trust_people11",
    _texts(
        "You can never be too careful", "On n'est jamais trop prudent", "Je kunt niet voorzichtig genoeg zijn"
    ),
    _texts(
        "Most people can be trusted",
        "On peut faire confiance à la plupart des gens",
        "De meeste mensen zijn te vertrouwen",
    ),
)
"""0-10 generalised trust (ESS item)."""

TRUST_OPERATOR11 = _eleven_point(
    "trust_operator11",
    _texts("No trust at all", "Aucune confiance", "Helemaal geen vertrouwen"),
    _texts("Complete trust", "Confiance totale", "Volledig vertrouwen"),
)
"""0-10 trust in the community operator."""

KETTLE_OPTIONS = ResponseScale(
    "literacy_kettle",
    (
        ResponseOption(1, _texts("0.5 kWh", "0,5 kWh", "0,5 kWh")),
        ResponseOption(2, _texts("1 kWh", "1 kWh", "1 kWh")),
        ResponseOption(3, _texts("2 kWh", "2 kWh", "2 kWh")),
        ResponseOption(4, _texts("60 kWh", "60 kWh", "60 kWh")),
        ResponseOption(5, _texts("I don't know", "Je ne sais pas", "Ik weet het niet")),
    ),
)
"""Options of the kettle knowledge item (2 kW x 0.5 h = 1 kWh, code 2 is correct)."""

SOLAR_OPTIONS = ResponseScale(
    "literacy_solar",
    (
        ResponseOption(
            1, _texts("Early morning (6-9 h)", "Tôt le matin (6-9 h)", "Vroeg in de ochtend (6-9 u)")
        ),
        ResponseOption(
            2, _texts("Around midday (11-16 h)", "Autour de midi (11-16 h)", "Rond de middag (11-16 u)")
        ),
        ResponseOption(3, _texts("Evening (18-21 h)", "En soirée (18-21 h)", "'s Avonds (18-21 u)")),
        ResponseOption(
            4,
            _texts(
                "About the same all day",
                "À peu près autant toute la journée",
                "Ongeveer evenveel de hele dag",
            ),
        ),
        ResponseOption(5, _texts("I don't know", "Je ne sais pas", "Ik weet het niet")),
    ),
)
"""Options of the solar-timing knowledge item (code 2, around midday, is correct)."""


# ---------------------------------------------------------------------------------------------
# Instruments and their references

INSTRUMENTS: Mapping[str, Instrument] = MappingProxyType(
    {
        "nep_r": Instrument(
            "nep_r",
            "Revised New Ecological Paradigm (NEP) scale",
            Reference(
                "Dunlap, R. E., Van Liere, K. D., Mertig, A. G., Jones, R. E.",
                2000,
                "Measuring endorsement of the New Ecological Paradigm: a revised NEP scale",
                "Journal of Social Issues 56(3), 425-442",
            ),
            "3 of the 15 items (eco-crisis, balance of nature x2), own wording; the balance-of-nature "
            "'resilience' item is reverse-keyed as in the original.",
        ),
        "financial": Instrument(
            "financial",
            "Economic motives for community energy participation",
            Reference(
                "Bauwens, T.",
                2016,
                "Explaining the diversity of motivations behind community renewable energy",
                "Energy Policy 93, 278-290",
            ),
            "2 items written for this questionnaire after the economic-motive construct.",
        ),
        "soep_risk": Instrument(
            "soep_risk",
            "SOEP general risk attitude item",
            Reference(
                "Dohmen, T., Falk, A., Huffman, D., Sunde, U., Schupp, J., Wagner, G. G.",
                2011,
                "Individual risk attitudes: measurement, determinants, and behavioral consequences",
                "Journal of the European Economic Association 9(3), 522-550",
            ),
            "The single 0-10 item, own wording of the stem and anchors.",
        ),
        "ess_trust": Instrument(
            "ess_trust",
            "European Social Survey generalised trust item",
            Reference(
                "Reeskens, T., Hooghe, M.",
                2008,
                "Cross-cultural measurement equivalence of generalized trust. Evidence from the "
                "European Social Survey (2002 and 2004)",
                "Social Indicators Research 85(3), 515-532",
            ),
            "The 0-10 'most people can be trusted' item, own wording.",
        ),
        "operator_trust": Instrument(
            "operator_trust",
            "Trust in the community's managing organisation",
            Reference(
                "Kalkbrenner, B. J., Roosen, J.",
                2016,
                "Citizens' willingness to participate in local renewable energy projects: the role of "
                "community and trust in Germany",
                "Energy Research & Social Science 13, 60-70",
            ),
            "A single 0-10 item in the ESS format, asked about the people running the energy community.",
        ),
        "bscs": Instrument(
            "bscs",
            "Brief Sense of Community Scale (BSCS)",
            Reference(
                "Peterson, N. A., Speer, P. W., McMillan, D. W.",
                2008,
                "Validation of a brief sense of community scale: confirmation of the principal theory "
                "of sense of community",
                "Journal of Community Psychology 36(1), 61-73",
            ),
            "All 8 items (needs fulfilment, membership, influence, emotional connection, 2 each), own "
            "wording, referring to the energy community instead of the neighbourhood.",
        ),
        "ati": Instrument(
            "ati",
            "Affinity for Technology Interaction (ATI) scale",
            Reference(
                "Franke, T., Attig, C., Wessel, D.",
                2019,
                "A personal resource for technology interaction: development and validation of the "
                "affinity for technology interaction (ATI) scale",
                "International Journal of Human-Computer Interaction 35(6), 456-467",
            ),
            "All 9 items on the original 6-point scale, own wording; items 3, 6 and 8 reverse-keyed "
            "as in the original.",
        ),
        "comfort_autonomy": Instrument(
            "comfort_autonomy",
            "Comfort and autonomy concerns about demand-side response",
            Reference(
                "Fell, M. J., Shipworth, D., Huebner, G. M., Elwell, C. A.",
                2015,
                "Public acceptability of domestic demand-side response in Great Britain: the role of "
                "automation and direct load control",
                "Energy Research & Social Science 9, 72-84",
            ),
            "2 items written for this questionnaire after the comfort and control concerns reported.",
        ),
        "social_norms": Instrument(
            "social_norms",
            "Descriptive and injunctive social norms",
            Reference(
                "Cialdini, R. B., Reno, R. R., Kallgren, C. A.",
                1990,
                "A focus theory of normative conduct: recycling the concept of norms to reduce littering "
                "in public places",
                "Journal of Personality and Social Psychology 58(6), 1015-1026",
            ),
            "1 descriptive and 1 injunctive norm item about energy use, written for this questionnaire.",
        ),
        "energy_literacy": Instrument(
            "energy_literacy",
            "Energy literacy (knowledge component)",
            Reference(
                "DeWaters, J. E., Powers, S. E.",
                2011,
                "Energy literacy of secondary students in New York State (USA): a measure of knowledge, "
                "affect, and behavior",
                "Energy Policy 39(3), 1699-1710",
            ),
            "2 multiple-choice knowledge items (energy = power x time; timing of solar output), "
            "written for this questionnaire and scored right (1) / wrong or don't know (0).",
        ),
    }
)
"""Source instruments and the reference each rests on."""


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(
        "environmental_concern",
        _texts("Environmental concern", "Préoccupation environnementale", "Milieubezorgdheid"),
        "nep_r",
    ),
    Dimension(
        "financial_motive",
        _texts("Financial motive", "Motivation financière", "Financieel motief"),
        "financial",
    ),
    Dimension("risk_tolerance", _texts("Risk tolerance", "Goût du risque", "Risicobereidheid"), "soep_risk"),
    Dimension(
        "generalised_trust",
        _texts("Trust in people", "Confiance envers autrui", "Vertrouwen in mensen"),
        "ess_trust",
    ),
    Dimension(
        "operator_trust",
        _texts(
            "Trust in the community operator",
            "Confiance dans le gestionnaire de la communauté",
            "Vertrouwen in de beheerder van de gemeenschap",
        ),
        "operator_trust",
    ),
    Dimension(
        "sense_of_community",
        _texts("Sense of community", "Sentiment d'appartenance", "Gemeenschapsgevoel"),
        "bscs",
    ),
    Dimension(
        "technology_affinity",
        _texts("Technology affinity", "Affinité pour la technologie", "Affiniteit met technologie"),
        "ati",
    ),
    Dimension(
        "comfort_autonomy",
        _texts("Comfort and autonomy", "Confort et autonomie", "Comfort en autonomie"),
        "comfort_autonomy",
    ),
    Dimension("social_norms", _texts("Social norms", "Normes sociales", "Sociale normen"), "social_norms"),
    Dimension(
        "energy_literacy",
        _texts("Energy literacy", "Connaissances énergétiques", "Energiekennis"),
        "energy_literacy",
    ),
)
"""Dimensions in reporting order."""


def _item(
    item_id: str,
    dimension: str,
    instrument: str,
    scale: ResponseScale,
    en: str,
    fr: str,
    nl: str,
    *,
    reverse: bool = False,
    correct: int | None = None,
) -> Item:
    return Item(item_id, dimension, instrument, _texts(en, fr, nl), scale, reverse, correct)


_ENV, _FIN, _RISK = "environmental_concern", "financial_motive", "risk_tolerance"
_GTRUST, _OTRUST, _COMM = "generalised_trust", "operator_trust", "sense_of_community"
_TECH, _COMF, _NORM, _LIT = "technology_affinity", "comfort_autonomy", "social_norms", "energy_literacy"

ITEMS_V1: tuple[Item, ...] = (
    # -- environmental concern (revised NEP, 3 items; nep_2 is a reverse-keyed DSP item)
    _item(
        "nep_1", _ENV, "nep_r", AGREE5,
        "If we carry on as we are, we are heading for a serious environmental disaster.",
        "Si nous continuons ainsi, nous allons vers une grave catastrophe écologique.",
        "Als we zo doorgaan, stevenen we af op een ernstige milieuramp.",
    ),
    _item(
        "nep_2", _ENV, "nep_r", AGREE5,
        "Nature is resilient enough to absorb the impact of modern industrial societies.",
        "La nature est assez résistante pour absorber l'impact des sociétés industrielles modernes.",
        "De natuur is veerkrachtig genoeg om de impact van moderne industriële samenlevingen op te vangen.",
        reverse=True,
    ),
    _item(
        "nep_3", _ENV, "nep_r", AGREE5,
        "The balance of nature is fragile and easily disturbed by human activity.",
        "L'équilibre de la nature est fragile et facilement perturbé par les activités humaines.",
        "Het evenwicht in de natuur is kwetsbaar en wordt gemakkelijk verstoord door menselijke activiteiten.",
    ),
    # -- financial motive (2)
    _item(
        "fin_1", _FIN, "financial", AGREE5,
        "Lowering my energy bill is my main reason for taking part in the energy community.",
        "Réduire ma facture d'énergie est la principale raison de ma participation à la communauté d'énergie.",
        "Mijn energiefactuur verlagen is de belangrijkste reden waarom ik deelneem aan de energiegemeenschap.",
    ),
    _item(
        "fin_2", _FIN, "financial", AGREE5,
        "I would change the times at which I use electricity if it saved me money.",
        "Je changerais les moments où j'utilise l'électricité si cela me permettait de faire des économies.",
        "Ik zou mijn elektriciteit op andere momenten gebruiken als ik daarmee geld kan besparen.",
    ),
    # -- general risk attitude (SOEP, 0-10)
    _item(
        "risk_1", _RISK, "soep_risk", RISK11,
        "In general, how willing are you to take risks?",
        "De manière générale, dans quelle mesure êtes-vous prêt(e) à prendre des risques ?",
        "Hoe bereid bent u in het algemeen om risico's te nemen?",
    ),
    # -- trust (0-10)
    _item(
        "trust_1", _GTRUST, "ess_trust", TRUST_PEOPLE11,
        "Generally speaking, do you think most people can be trusted, or that you can never be too "
        "careful with others?",
        "D'une manière générale, pensez-vous qu'on peut faire confiance à la plupart des gens, ou qu'on "
        "n'est jamais trop prudent avec les autres ?",
        "Denkt u dat de meeste mensen over het algemeen te vertrouwen zijn, of dat je in de omgang met "
        "anderen niet voorzichtig genoeg kunt zijn?",
    ),
    _item(
        "trust_2", _OTRUST, "operator_trust", TRUST_OPERATOR11,
        "How much do you trust the people who run your energy community to act in the interest of its "
        "members?",
        "Dans quelle mesure faites-vous confiance aux personnes qui gèrent votre communauté d'énergie pour "
        "agir dans l'intérêt de ses membres ?",
        "In welke mate vertrouwt u erop dat de mensen die uw energiegemeenschap beheren in het belang van "
        "de leden handelen?",
    ),
    # -- Brief Sense of Community Scale (8; needs, membership, influence, emotional connection)
    _item(
        "bscs_1", _COMM, "bscs", AGREE5,
        "I can get what I need from this energy community.",
        "Je peux trouver dans cette communauté d'énergie ce dont j'ai besoin.",
        "Ik kan in deze energiegemeenschap vinden wat ik nodig heb.",
    ),
    _item(
        "bscs_2", _COMM, "bscs", AGREE5,
        "This energy community helps me meet my needs.",
        "Cette communauté d'énergie m'aide à répondre à mes besoins.",
        "Deze energiegemeenschap helpt me om in mijn behoeften te voorzien.",
    ),
    _item(
        "bscs_3", _COMM, "bscs", AGREE5,
        "I feel like a real member of this energy community.",
        "Je me sens vraiment membre de cette communauté d'énergie.",
        "Ik voel me echt lid van deze energiegemeenschap.",
    ),
    _item(
        "bscs_4", _COMM, "bscs", AGREE5,
        "I feel that I belong in this energy community.",
        "J'ai le sentiment d'avoir ma place dans cette communauté d'énergie.",
        "Ik heb het gevoel dat ik bij deze energiegemeenschap hoor.",
    ),
    _item(
        "bscs_5", _COMM, "bscs", AGREE5,
        "I have a say in what happens in this energy community.",
        "J'ai mon mot à dire sur ce qui se passe dans cette communauté d'énergie.",
        "Ik heb inspraak in wat er in deze energiegemeenschap gebeurt.",
    ),
    _item(
        "bscs_6", _COMM, "bscs", AGREE5,
        "Members of this energy community are able to influence one another.",
        "Les membres de cette communauté d'énergie sont capables de s'influencer les uns les autres.",
        "De leden van deze energiegemeenschap kunnen elkaar beïnvloeden.",
    ),
    _item(
        "bscs_7", _COMM, "bscs", AGREE5,
        "I feel connected to this energy community.",
        "Je me sens lié(e) à cette communauté d'énergie.",
        "Ik voel me verbonden met deze energiegemeenschap.",
    ),
    _item(
        "bscs_8", _COMM, "bscs", AGREE5,
        "I have a good bond with other members of this energy community.",
        "J'ai de bonnes relations avec les autres membres de cette communauté d'énergie.",
        "Ik heb een goede band met andere leden van deze energiegemeenschap.",
    ),
    # -- Affinity for Technology Interaction (9, 6-point; ati_3, ati_6, ati_8 reverse-keyed)
    _item(
        "ati_1", _TECH, "ati", AGREE6,
        "I like to get into the details of technical systems.",
        "J'aime me plonger dans les détails des systèmes techniques.",
        "Ik verdiep me graag in de details van technische systemen.",
    ),
    _item(
        "ati_2", _TECH, "ati", AGREE6,
        "I like trying out the functions of new technical systems.",
        "J'aime essayer les fonctions des nouveaux systèmes techniques.",
        "Ik probeer graag de functies van nieuwe technische systemen uit.",
    ),
    _item(
        "ati_3", _TECH, "ati", AGREE6,
        "I mostly deal with technical systems only because I have to.",
        "Je m'occupe surtout de systèmes techniques parce que j'y suis obligé(e).",
        "Ik houd me vooral met technische systemen bezig omdat het moet.",
        reverse=True,
    ),
    _item(
        "ati_4", _TECH, "ati", AGREE6,
        "When I have a new technical system in front of me, I explore it thoroughly.",
        "Quand j'ai un nouveau système technique devant moi, je l'explore en profondeur.",
        "Als ik een nieuw technisch systeem voor me heb, probeer ik het grondig uit.",
    ),
    _item(
        "ati_5", _TECH, "ati", AGREE6,
        "I enjoy taking the time to get to know a new technical system.",
        "J'aime prendre le temps de me familiariser avec un nouveau système technique.",
        "Ik neem graag de tijd om een nieuw technisch systeem te leren kennen.",
    ),
    _item(
        "ati_6", _TECH, "ati", AGREE6,
        "As long as a technical system works, I don't care how or why.",
        "Du moment qu'un système technique fonctionne, peu m'importe comment ou pourquoi.",
        "Zolang een technisch systeem werkt, maakt het mij niet uit hoe of waarom.",
        reverse=True,
    ),
    _item(
        "ati_7", _TECH, "ati", AGREE6,
        "I try to understand exactly how a technical system works.",
        "J'essaie de comprendre précisément comment fonctionne un système technique.",
        "Ik probeer precies te begrijpen hoe een technisch systeem werkt.",
    ),
    _item(
        "ati_8", _TECH, "ati", AGREE6,
        "Knowing the basic functions of a technical system is enough for me.",
        "Connaître les fonctions de base d'un système technique me suffit.",
        "Het is voor mij genoeg om de basisfuncties van een technisch systeem te kennen.",
        reverse=True,
    ),
    _item(
        "ati_9", _TECH, "ati", AGREE6,
        "I try to make full use of what a technical system can do.",
        "J'essaie d'exploiter pleinement les possibilités d'un système technique.",
        "Ik probeer de mogelijkheden van een technisch systeem ten volle te benutten.",
    ),
    # -- comfort / autonomy (2): a high answer = comfort and control come first
    _item(
        "comf_1", _COMF, "comfort_autonomy", AGREE5,
        "I am not prepared to give up any comfort at home (warmth, hot water, meal times) to use energy "
        "at other moments.",
        "Je ne suis pas prêt(e) à renoncer à mon confort à la maison (chaleur, eau chaude, heures des "
        "repas) pour consommer l'énergie à d'autres moments.",
        "Ik ben niet bereid om thuis comfort in te leveren (warmte, warm water, etenstijden) om energie "
        "op andere momenten te gebruiken.",
    ),
    _item(
        "comf_2", _COMF, "comfort_autonomy", AGREE5,
        "I want to decide for myself when my appliances run, rather than leave it to an automatic system.",
        "Je veux décider moi-même quand mes appareils fonctionnent, plutôt que de laisser faire un "
        "système automatique.",
        "Ik wil zelf beslissen wanneer mijn toestellen werken, in plaats van dat over te laten aan een "
        "automatisch systeem.",
    ),
    # -- social norms (descriptive, injunctive)
    _item(
        "norm_1", _NORM, "social_norms", AGREE5,
        "Most people I know make an effort to use energy at good moments, for example when the sun is "
        "shining.",
        "La plupart des gens que je connais font un effort pour consommer l'énergie aux bons moments, par "
        "exemple quand le soleil brille.",
        "De meeste mensen die ik ken doen moeite om energie op goede momenten te gebruiken, bijvoorbeeld "
        "wanneer de zon schijnt.",
    ),
    _item(
        "norm_2", _NORM, "social_norms", AGREE5,
        "People who are important to me think I should adapt my energy use to help the community.",
        "Les personnes qui comptent pour moi pensent que je devrais adapter ma consommation d'énergie "
        "pour aider la communauté.",
        "Mensen die belangrijk voor me zijn vinden dat ik mijn energiegebruik zou moeten aanpassen om de "
        "gemeenschap te helpen.",
    ),
    # -- energy literacy (2 knowledge items)
    _item(
        "lit_1", _LIT, "energy_literacy", KETTLE_OPTIONS,
        "A 2,000 W kettle is switched on for 30 minutes in total. How much electricity does it use?",
        "Une bouilloire de 2 000 W fonctionne au total pendant 30 minutes. Combien d'électricité "
        "consomme-t-elle ?",
        "Een waterkoker van 2.000 W staat in totaal 30 minuten aan. Hoeveel elektriciteit verbruikt hij?",
        correct=2,
    ),
    _item(
        "lit_2", _LIT, "energy_literacy", SOLAR_OPTIONS,
        "On a clear summer day, when do solar panels in Belgium produce the most electricity?",
        "Par une journée d'été ensoleillée, à quel moment les panneaux solaires produisent-ils le plus "
        "d'électricité en Belgique ?",
        "Wanneer produceren zonnepanelen in België op een heldere zomerdag de meeste elektriciteit?",
        correct=2,
    ),
)  # fmt: skip

INTRO_V1 = _texts(
    "This short questionnaire (about 5 minutes) helps your energy community understand what matters to "
    "you, so that it can offer you services that suit you. There are no right or wrong answers, except "
    "for two small knowledge questions at the end. You may skip any question.",
    "Ce court questionnaire (environ 5 minutes) aide votre communauté d'énergie à comprendre ce qui "
    "compte pour vous, afin de vous proposer des services qui vous conviennent. Il n'y a pas de bonnes "
    "ou de mauvaises réponses, sauf pour deux petites questions de connaissances à la fin. Vous pouvez "
    "passer n'importe quelle question.",
    "Deze korte vragenlijst (ongeveer 5 minuten) helpt uw energiegemeenschap te begrijpen wat voor u "
    "belangrijk is, zodat ze u diensten kan aanbieden die bij u passen. Er zijn geen goede of foute "
    "antwoorden, behalve bij twee korte kennisvragen op het einde. U mag elke vraag overslaan.",
)

QUESTIONNAIRE_V1 = Questionnaire(
    version=QUESTIONNAIRE_VERSION,
    items=ITEMS_V1,
    dimensions=DIMENSIONS,
    instruments=INSTRUMENTS,
    intro=INTRO_V1,
)
"""Version 1.0 of the S-BRIGHT questionnaire (31 items, 10 dimensions)."""

_VERSIONS: Mapping[str, Questionnaire] = MappingProxyType({QUESTIONNAIRE_V1.version: QUESTIONNAIRE_V1})


def questionnaire_by_version(version: str) -> Questionnaire:
    """Return the questionnaire of a given version.

    Parameters
    ----------
    version : str
        Version identifier stored with the answers, e.g. ``"sbright-q-1.0"``.

    Raises
    ------
    QuestionnaireError
        If no questionnaire has this version.
    """
    try:
        return _VERSIONS[version]
    except KeyError:
        raise QuestionnaireError(
            f"unknown questionnaire version {version!r}; known: {', '.join(sorted(_VERSIONS))}"
        ) from None
