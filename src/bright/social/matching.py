"""Matching of member categories to demand-response services and engagement incentives.

Each offer of the catalogue (:data:`OFFERS`) is a documented rule over the ten questionnaire
dimensions, expressed on z-scores (SD against the community), and rests on published evidence
(:attr:`Offer.evidence`). For a profile z (a class profile, or a member's own z-scores)::

    suitability(offer) = sum_d w_d z_d / sum_d |w_d|      (a missing z counts as 0, the average)
                         + context adjustments            (assets, load profile, structural gain)

i.e. the weighted mean of the signed z-scores, in SD units: 0 = an average member, +1 = the
profile sits one SD on the favourable side of every weighted dimension. Context adjustments (each
listed in the recommendation's reasons):

* automated control needs a controllable asset (EV, heat pump, battery, electric water heater): a
  member known to own none is not offered it; +0.3 when one is owned;
* dynamic time-of-use: +0.3 with a controllable asset (automation makes hourly prices manageable);
* manual shifting to solar hours: +0.3 when the evening-peak ratio is >= 1.5 (consumption to move);
* peak-time rebates and community peak events: +0.25 when the peak share is >= 0.25 (flat = 0.167);
* static time-of-use: +0.5 for a structural winner (gains without changing anything: an easy,
  risk-free first step; its gain is not flexibility and must not be counted as such);
* guaranteed savings / bill protection: +0.5 for a structural loser, -0.3 for a structural winner
  (Borenstein 2013: bill protection is what makes opt-in time-varying pricing bearable for those who
  would lose).

The top ``max_services`` services and ``max_incentives`` incentives with suitability >=
``min_suitability`` are recommended; if none reaches it, the single best one is recommended and
flagged as a fallback.

Structural winners
------------------
A member is a structural winner of a time-varying tariff when their consumption-weighted price
under it is below the reference flat price by at least ``threshold`` (relative), with their current
load profile::

    p_member = sum_t q_t p_t / sum_t q_t                      (EUR/kWh; observed intervals only)
    relative_gain = (p_flat - p_member) / p_flat

By default p_flat is the community's revenue-neutral flat price, sum_m,t q p / sum_m,t q: the flat
price that would recover the same money from the same consumption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd

from bright.social.profile_features import (
    DEFAULT_TIMEZONE,
    FlexibleAssets,
    LoadProfileFeatures,
    ProfileDataError,
)
from bright.social.questionnaire import DIMENSIONS, Reference
from bright.social.segmentation import ClassProfile, Segmentation

_DIMS = tuple(d.id for d in DIMENSIONS)


class MatchingError(ValueError):
    """Invalid input to the matching (unknown dimension, misaligned price series, ...)."""


# ---------------------------------------------------------------------------------------------
# Catalogue


@dataclass(frozen=True)
class Evidence:
    """A study an offer rests on, with the finding used.

    Parameters
    ----------
    reference : Reference
        The study.
    finding : str
        What it found that supports the rule (our summary).
    """

    reference: Reference
    finding: str


@dataclass(frozen=True)
class Offer:
    """A demand-response service or an engagement incentive.

    Parameters
    ----------
    id : str
        Identifier, e.g. ``"peak_time_rebate"``.
    kind : {"service", "incentive"}
        Service (what the member does or lets happen) or incentive (how they are engaged).
    names : Mapping[str, str]
        Display name per language (en, fr, nl).
    summary : str
        What is offered (English).
    weights : Mapping[str, float]
        Signed weight per dimension, applied to z-scores.
    evidence : tuple[Evidence, ...]
        Studies the rule rests on.
    """

    id: str
    kind: Literal["service", "incentive"]
    names: Mapping[str, str]
    summary: str
    weights: Mapping[str, float]
    evidence: tuple[Evidence, ...]


def _ref(authors: str, year: int, title: str, venue: str) -> Reference:
    return Reference(authors, year, title, venue)


def _n(en: str, fr: str, nl: str) -> Mapping[str, str]:
    return MappingProxyType({"en": en, "fr": fr, "nl": nl})


FELL_2015 = _ref(
    "Fell, M. J., Shipworth, D., Huebner, G. M., Elwell, C. A.",
    2015,
    "Public acceptability of domestic demand-side response in Great Britain: the role of automation "
    "and direct load control",
    "Energy Research & Social Science 9, 72-84",
)
STENNER_2017 = _ref(
    "Stenner, K., Frederiks, E. R., Hobman, E. V., Cook, S.",
    2017,
    "Willingness to participate in direct load control: the role of consumer distrust",
    "Applied Energy 189, 76-88",
)
FARUQUI_2010 = _ref(
    "Faruqui, A., Sergici, S.",
    2010,
    "Household response to dynamic pricing of electricity: a survey of 15 experiments",
    "Journal of Regulatory Economics 38(2), 193-225",
)
NICOLSON_2018 = _ref(
    "Nicolson, M. L., Fell, M. J., Huebner, G. M.",
    2018,
    "Consumer demand for time of use electricity tariffs: a systematized review of the empirical evidence",
    "Renewable and Sustainable Energy Reviews 97, 276-289",
)
NICOLSON_2017 = _ref(
    "Nicolson, M., Huebner, G., Shipworth, D.",
    2017,
    "Are consumers willing to switch to smart time of use electricity tariffs? The importance of "
    "loss-aversion and electric vehicle ownership",
    "Energy Research & Social Science 23, 82-96",
)
ALLCOTT_2011_RTP = _ref(
    "Allcott, H.",
    2011,
    "Rethinking real-time electricity pricing",
    "Resource and Energy Economics 33(4), 820-842",
)
DUTSCHKE_2013 = _ref(
    "Dütschke, E., Paetz, A.-G.",
    2013,
    "Dynamic electricity pricing - which programs do consumers prefer?",
    "Energy Policy 59, 226-234",
)
WOLAK_2011 = _ref(
    "Wolak, F. A.",
    2011,
    "Do residential customers respond to hourly prices? Evidence from a dynamic pricing experiment",
    "American Economic Review 101(3), 83-87",
)
ITO_2018 = _ref(
    "Ito, K., Ida, T., Tanaka, M.",
    2018,
    "Moral suasion and economic incentives: field experimental evidence from energy demand",
    "American Economic Journal: Economic Policy 10(1), 240-267",
)
BAUWENS_2016 = _ref(
    "Bauwens, T.",
    2016,
    "Explaining the diversity of motivations behind community renewable energy",
    "Energy Policy 93, 278-290",
)
KOBUS_2015 = _ref(
    "Kobus, C. B. A., Klaassen, E. A. M., Mugge, R., Schoormans, J. P. L.",
    2015,
    "A real-life assessment on the effect of smart appliances for shifting households' electricity demand",
    "Applied Energy 147, 335-343",
)
ABRAHAMSE_2005 = _ref(
    "Abrahamse, W., Steg, L., Vlek, C., Rothengatter, T.",
    2005,
    "A review of intervention studies aimed at household energy conservation",
    "Journal of Environmental Psychology 25(3), 273-291",
)
ASENSIO_2015 = _ref(
    "Asensio, O. I., Delmas, M. A.",
    2015,
    "Nonprice incentives and energy conservation",
    "Proceedings of the National Academy of Sciences 112(6), E510-E515",
)
BECKER_1978 = _ref(
    "Becker, L. J.",
    1978,
    "Joint effect of feedback and goal setting on performance: a field study of residential energy "
    "conservation",
    "Journal of Applied Psychology 63(4), 428-433",
)
ABRAHAMSE_2007 = _ref(
    "Abrahamse, W., Steg, L., Vlek, C., Rothengatter, T.",
    2007,
    "The effect of tailored information, goal setting, and tailored feedback on household energy use, "
    "energy-related behaviors, and behavioral antecedents",
    "Journal of Environmental Psychology 27(4), 265-276",
)
ABRAHAMSE_STEG_2013 = _ref(
    "Abrahamse, W., Steg, L.",
    2013,
    "Social influence approaches to encourage resource conservation: a meta-analysis",
    "Global Environmental Change 23(6), 1773-1785",
)
ALLCOTT_2011_NORMS = _ref(
    "Allcott, H.",
    2011,
    "Social norms and energy conservation",
    "Journal of Public Economics 95(9-10), 1082-1095",
)
SCHULTZ_2007 = _ref(
    "Schultz, P. W., Nolan, J. M., Cialdini, R. B., Goldstein, N. J., Griskevicius, V.",
    2007,
    "The constructive, destructive, and reconstructive power of social norms",
    "Psychological Science 18(5), 429-434",
)
BORENSTEIN_2013 = _ref(
    "Borenstein, S.",
    2013,
    "Effective and equitable adoption of opt-in residential dynamic electricity pricing",
    "Review of Industrial Organization 42(2), 127-160",
)
FOWLIE_2021 = _ref(
    "Fowlie, M., Wolfram, C., Baylis, P., Spurlock, C. A., Todd-Blick, A., Cappers, P.",
    2021,
    "Default effects and follow-on behaviour: evidence from an electricity pricing program",
    "Review of Economic Studies 88(6), 2886-2934",
)
EBELING_2015 = _ref(
    "Ebeling, F., Lotz, S.",
    2015,
    "Domestic uptake of green energy promoted by opt-out tariffs",
    "Nature Climate Change 5(9), 868-871",
)

_ENV, _FIN, _RISK = "environmental_concern", "financial_motive", "risk_tolerance"
_GTRUST, _OTRUST, _COMM = "generalised_trust", "operator_trust", "sense_of_community"
_TECH, _COMF, _NORM, _LIT = "technology_affinity", "comfort_autonomy", "social_norms", "energy_literacy"


def _w(**weights: float) -> Mapping[str, float]:
    return MappingProxyType(weights)


SERVICES: tuple[Offer, ...] = (
    Offer(
        "automated_control",
        "service",
        _n("Automated control with override", "Pilotage automatique avec reprise en main",
           "Automatische sturing met manuele overname"),
        "The community schedules a controllable device (EV charging, heat pump, boiler, battery) within "
        "limits the member sets, and the member can override any event from an app or the device.",
        _w(operator_trust=1.0, technology_affinity=0.6, comfort_autonomy=0.3, generalised_trust=0.3),
        (
            Evidence(FELL_2015, "In a British survey experiment, direct load control with the ability to "
                     "override was at least as acceptable as time-of-use tariffs; the sense of keeping "
                     "control mattered."),
            Evidence(STENNER_2017, "In an Australian survey, distrust of the organisation running the "
                     "programme was the main barrier to willingness to accept direct load control."),
        ),
    ),
    Offer(
        "static_time_of_use",
        "service",
        _n("Static time-of-use tariff", "Tarif horaire fixe", "Vast tijdsafhankelijk tarief"),
        "Fixed cheaper and dearer hours, the same every day (e.g. evening peak 17-21 h dearer, solar "
        "hours cheaper), announced in advance.",
        _w(financial_motive=1.0, risk_tolerance=-0.4, energy_literacy=0.3),
        (
            Evidence(FARUQUI_2010, "Across 15 pricing experiments, households lowered peak demand under "
                     "time-of-use rates, and more with higher price ratios and enabling technology."),
            Evidence(NICOLSON_2018, "Across the empirical studies reviewed, stated and actual uptake is "
                     "higher for simple static time-of-use tariffs than for dynamic ones."),
        ),
    ),
    Offer(
        "dynamic_time_of_use",
        "service",
        _n("Dynamic time-of-use tariff", "Tarif dynamique", "Dynamisch tarief"),
        "Prices that follow the day-ahead market or the community's solar surplus hour by hour, "
        "published the day before.",
        _w(financial_motive=0.8, risk_tolerance=0.8, technology_affinity=0.5, energy_literacy=0.4,
           comfort_autonomy=-0.2),
        (
            Evidence(ALLCOTT_2011_RTP, "Households on real-time pricing in Chicago reduced use in "
                     "high-price hours; the gains were real but modest, going to those who respond."),
            Evidence(DUTSCHKE_2013, "Most German consumers prefer simple tariffs; dynamic pricing appeals "
                     "to a minority, and acceptance grew with hands-on experience."),
        ),
    ),
    Offer(
        "peak_time_rebate",
        "service",
        _n("Peak-time rebates", "Remises en période de pointe", "Beloning bij piekmomenten"),
        "A credit per kWh saved below the member's baseline during announced peak events; no penalty "
        "if they do nothing.",
        _w(financial_motive=0.7, risk_tolerance=-0.7, comfort_autonomy=0.2),
        (
            Evidence(WOLAK_2011, "In the Washington DC experiment, households cut peak use under peak-time "
                     "rebates as well as under critical-peak and hourly pricing."),
            Evidence(NICOLSON_2017, "Loss-averse British consumers were less willing to switch to "
                     "time-of-use tariffs: a no-downside design suits them."),
        ),
    ),
    Offer(
        "community_peak_events",
        "service",
        _n("Community peak events", "Événements de pointe communautaires", "Gemeenschappelijke piekacties"),
        "The community calls on members to reduce use together during a few critical hours, reports "
        "the collective result and pairs the call with a (small) reward.",
        _w(sense_of_community=1.0, social_norms=0.6, operator_trust=0.4, generalised_trust=0.2),
        (
            Evidence(ITO_2018, "In a Japanese field experiment, moral-suasion requests lowered peak use but "
                     "the effect faded with repetition, while economic incentives had lasting effects: "
                     "appeals to the community should come with a reward."),
            Evidence(BAUWENS_2016, "Members of Flemish renewable-energy cooperatives differ in motivation; "
                     "for part of them social and community motives, not returns, drive involvement."),
        ),
    ),
    Offer(
        "solar_hours_shifting",
        "service",
        _n("Manual shifting to solar hours", "Déplacement manuel vers les heures solaires",
           "Handmatig verschuiven naar zonne-uren"),
        "A day-ahead 'green hours' signal (community PV surplus) and tips to run washing, dishwashing "
        "and cooking then.",
        _w(environmental_concern=0.8, energy_literacy=0.4, social_norms=0.3, comfort_autonomy=-0.5),
        (
            Evidence(KOBUS_2015, "Dutch households with PV and a time-varying tariff moved a substantial "
                     "share of their washing-machine use to hours of solar production."),
            Evidence(ABRAHAMSE_2005, "Information alone rarely changes energy behaviour; it works better "
                     "combined with feedback and goals."),
        ),
    ),
)  # fmt: skip
"""Demand-response services."""

INCENTIVES: tuple[Offer, ...] = (
    Offer(
        "co2_health_feedback",
        "incentive",
        _n("CO2 and health feedback", "Retour sur le CO2 et la santé", "Feedback over CO2 en gezondheid"),
        "Feedback that translates the member's shifting into avoided CO2 and air pollution.",
        _w(environmental_concern=1.0, social_norms=0.2, financial_motive=-0.3),
        (
            Evidence(ASENSIO_2015, "In a Los Angeles field experiment, feedback framed as pollution and "
                     "children's health cut electricity use by about 8 %, while cost-saving framing did "
                     "not lower it."),
        ),
    ),
    Offer(
        "personal_goals",
        "incentive",
        _n("Personal goals with feedback", "Objectifs personnels avec suivi", "Persoonlijke doelen met feedback"),
        "A shifting or peak-reduction goal the member chooses, with frequent feedback on progress.",
        _w(energy_literacy=0.4, technology_affinity=0.4, financial_motive=0.3, environmental_concern=0.3),
        (
            Evidence(BECKER_1978, "A difficult goal combined with frequent feedback produced the largest "
                     "energy savings in a residential field study."),
            Evidence(ABRAHAMSE_2007, "Tailored information, goal setting and tailored feedback together "
                     "reduced direct household energy use in a Dutch field study."),
        ),
    ),
    Offer(
        "community_challenges",
        "incentive",
        _n("Community challenges", "Défis communautaires", "Gemeenschapsuitdagingen"),
        "Collective targets (e.g. share of consumption in solar hours) with local champions and shared "
        "results.",
        _w(sense_of_community=1.0, social_norms=0.5, generalised_trust=0.2),
        (
            Evidence(ABRAHAMSE_STEG_2013, "Meta-analysis: social-influence approaches (commitment, local "
                     "champions, group feedback) encourage resource conservation, face-to-face ones most."),
        ),
    ),
    Offer(
        "peer_comparison",
        "incentive",
        _n("Comparison with similar households", "Comparaison avec des ménages similaires",
           "Vergelijking met gelijkaardige gezinnen"),
        "Reports comparing the member's peak share with similar households, with an approving message "
        "for those who already do well.",
        _w(social_norms=1.0, financial_motive=0.3, sense_of_community=0.2),
        (
            Evidence(ALLCOTT_2011_NORMS, "Home energy reports comparing households with similar neighbours "
                     "reduced consumption by about 2 % on average, more for high users."),
            Evidence(SCHULTZ_2007, "Descriptive comparison alone pulled low users up (boomerang); adding an "
                     "approving (injunctive) message prevented it."),
        ),
    ),
    Offer(
        "bill_protection",
        "incentive",
        _n("Guaranteed savings / bill protection", "Économies garanties / protection de la facture",
           "Gegarandeerde besparing / factuurbescherming"),
        "For the first year the member pays no more than under their previous tariff; any difference "
        "is refunded.",
        _w(risk_tolerance=-1.0, operator_trust=-0.5, financial_motive=0.4),
        (
            Evidence(BORENSTEIN_2013, "Opt-in dynamic pricing attracts structural winners; transitional "
                     "bill protection limits the losses of others and makes adoption more equitable."),
            Evidence(NICOLSON_2017, "Loss aversion lowered British consumers' willingness to switch to "
                     "time-of-use tariffs."),
        ),
    ),
    Offer(
        "opt_out_default",
        "incentive",
        _n("Participation by default (opt-out)", "Participation par défaut (opt-out)",
           "Standaard deelname (opt-out)"),
        "The member is enrolled in a simple programme by default and can leave at any time at no cost.",
        _w(technology_affinity=-0.6, energy_literacy=-0.4, sense_of_community=-0.3, comfort_autonomy=0.3),
        (
            Evidence(FOWLIE_2021, "In Sacramento, opt-out enrolment in time-varying pricing gave far higher "
                     "participation than opt-in, and most defaulted customers stayed and still reduced "
                     "peak demand."),
            Evidence(EBELING_2015, "Making a green electricity tariff the default raised its uptake about "
                     "tenfold in a German field experiment."),
        ),
    ),
)  # fmt: skip
"""Engagement incentives."""

OFFERS: tuple[Offer, ...] = SERVICES + INCENTIVES
"""The whole catalogue."""

_OFFER_BY_ID: Mapping[str, Offer] = MappingProxyType({o.id: o for o in OFFERS})


def offer(offer_id: str) -> Offer:
    """Return the offer with this identifier.

    Raises
    ------
    MatchingError
        If there is no such offer.
    """
    try:
        return _OFFER_BY_ID[offer_id]
    except KeyError:
        raise MatchingError(f"unknown offer {offer_id!r}") from None


# ---------------------------------------------------------------------------------------------
# Structural winners


@dataclass(frozen=True)
class TimeOfUseTariff:
    """A static time-of-use tariff (energy component only).

    Parameters
    ----------
    peak_price_eur_per_kwh : float
        Price in the peak window, EUR/kWh.
    offpeak_price_eur_per_kwh : float
        Price outside the peak and solar windows, EUR/kWh.
    solar_price_eur_per_kwh : float or None
        Price in the solar window, EUR/kWh; None for a two-period tariff.
    peak_hours : tuple[int, int]
        Peak window [start, end) in local hours.
    solar_hours : tuple[int, int]
        Solar window [start, end) in local hours (ignored without a solar price).
    timezone : str
        IANA timezone of the windows.
    """

    peak_price_eur_per_kwh: float
    offpeak_price_eur_per_kwh: float
    solar_price_eur_per_kwh: float | None = None
    peak_hours: tuple[int, int] = (17, 21)
    solar_hours: tuple[int, int] = (11, 16)
    timezone: str = DEFAULT_TIMEZONE

    def prices(self, index: pd.DatetimeIndex) -> pd.Series:
        """Price of every interval (stamped at its start) under the tariff.

        Parameters
        ----------
        index : pandas.DatetimeIndex
            Timezone-aware interval starts.

        Returns
        -------
        pandas.Series
            Price in EUR/kWh on ``index``.
        """
        if index.tz is None:
            raise MatchingError("the price index must be timezone-aware")
        local = index.tz_convert(self.timezone)
        h = local.hour + local.minute / 60.0
        p = np.full(len(index), float(self.offpeak_price_eur_per_kwh))
        if self.solar_price_eur_per_kwh is not None:
            a, b = self.solar_hours
            p[(h >= a) & (h < b)] = self.solar_price_eur_per_kwh
        a, b = self.peak_hours
        p[(h >= a) & (h < b)] = self.peak_price_eur_per_kwh
        return pd.Series(p, index=index, name="price_eur_per_kwh")


@dataclass(frozen=True)
class StructuralGain:
    """What a member would gain from a time-varying tariff without changing anything.

    Parameters
    ----------
    member : str
        Member identifier.
    energy_kwh : float
        Offtake over the intervals with both offtake and price, kWh.
    weighted_price_eur_per_kwh : float
        Consumption-weighted price under the time-varying tariff, EUR/kWh.
    reference_price_eur_per_kwh : float
        Flat reference price, EUR/kWh.
    relative_gain : float
        (reference - weighted) / reference; positive = cheaper for this member (dimensionless).
    bill_difference_eur : float
        (reference - weighted) x energy, EUR over the period (positive = saving).
    threshold : float
        Relative gain that makes a structural winner (loser: below -threshold).
    """

    member: str
    energy_kwh: float
    weighted_price_eur_per_kwh: float
    reference_price_eur_per_kwh: float
    relative_gain: float
    bill_difference_eur: float
    threshold: float

    @property
    def winner(self) -> bool:
        """True when the member gains at least ``threshold`` without changing anything."""
        return bool(self.relative_gain >= self.threshold)

    @property
    def loser(self) -> bool:
        """True when the member would pay at least ``threshold`` more without changing anything."""
        return bool(self.relative_gain <= -self.threshold)


def _aligned(
    offtake_kwh: pd.Series, price_eur_per_kwh: pd.Series, member: str
) -> tuple[np.ndarray, np.ndarray]:
    for name, s in (("offtake", offtake_kwh), ("price", price_eur_per_kwh)):
        if not isinstance(s.index, pd.DatetimeIndex) or s.index.tz is None:
            raise MatchingError(f"member {member!r}: {name} index must be a timezone-aware DatetimeIndex")
    q = offtake_kwh.astype(float)
    if (q < 0).any():
        t = q.index[(q < 0).to_numpy()][0]
        raise ProfileDataError(f"member {member!r}: negative offtake at {t.isoformat()}")
    p = price_eur_per_kwh.astype(float).reindex(q.index)
    ok = q.notna().to_numpy() & p.notna().to_numpy()
    return q.to_numpy()[ok], p.to_numpy()[ok]


def structural_gain(
    offtake_kwh: pd.Series,
    price_eur_per_kwh: pd.Series,
    *,
    reference_price_eur_per_kwh: float,
    member: str = "",
    threshold: float = 0.02,
) -> StructuralGain:
    """Gain of one member from a time-varying price with an unchanged load profile.

    Parameters
    ----------
    offtake_kwh : pandas.Series
        Gross offtake in kWh per interval (>= 0, NaN missing), timezone-aware index of interval starts.
    price_eur_per_kwh : pandas.Series
        Time-varying price in EUR/kWh on (a superset of) the same intervals; intervals without a
        price are left out, like missing offtake.
    reference_price_eur_per_kwh : float
        Flat price it is compared with, EUR/kWh (> 0).
    member : str, optional
        Member identifier.
    threshold : float, optional
        Relative gain (dimensionless) above which the member is a structural winner.

    Returns
    -------
    StructuralGain

    Raises
    ------
    MatchingError
        On a naive index, a non-positive reference price, or no interval with both offtake and price.

    Examples
    --------
    4 kWh in the peak at 0.40 EUR/kWh and 6 kWh off-peak at 0.20 EUR/kWh: weighted price =
    (1.6 + 1.2) / 10 = 0.28 EUR/kWh; against a flat 0.30 EUR/kWh the gain is 0.02/0.30 = 6.7 %.

    >>> idx = pd.date_range("2024-01-01", periods=2, freq="15min", tz="UTC")
    >>> g = structural_gain(pd.Series([4.0, 6.0], idx), pd.Series([0.4, 0.2], idx),
    ...                     reference_price_eur_per_kwh=0.30, member="M1")
    >>> round(g.weighted_price_eur_per_kwh, 3), round(g.relative_gain, 4), g.winner
    (0.28, 0.0667, True)
    """
    if not reference_price_eur_per_kwh > 0:
        raise MatchingError(f"reference price must be > 0 EUR/kWh, got {reference_price_eur_per_kwh}")
    q, p = _aligned(offtake_kwh, price_eur_per_kwh, member)
    energy = float(q.sum())
    if energy <= 0:
        raise MatchingError(f"member {member!r}: no offtake in intervals that have a price")
    weighted = float(q @ p / energy)
    ref = float(reference_price_eur_per_kwh)
    return StructuralGain(
        member=member,
        energy_kwh=energy,
        weighted_price_eur_per_kwh=weighted,
        reference_price_eur_per_kwh=ref,
        relative_gain=(ref - weighted) / ref,
        bill_difference_eur=(ref - weighted) * energy,
        threshold=threshold,
    )


def structural_winners(
    offtake_kwh: pd.DataFrame,
    price_eur_per_kwh: pd.Series,
    *,
    reference_price_eur_per_kwh: float | None = None,
    threshold: float = 0.02,
) -> dict[str, StructuralGain]:
    """Structural gain of every member of a community.

    Parameters
    ----------
    offtake_kwh : pandas.DataFrame
        Gross offtake in kWh per interval, one column per member, timezone-aware index.
    price_eur_per_kwh : pandas.Series
        Time-varying price in EUR/kWh.
    reference_price_eur_per_kwh : float, optional
        Flat reference price, EUR/kWh. Default: the revenue-neutral flat price of the community,
        sum(q p) / sum(q) over all members and intervals with both values.
    threshold : float, optional
        Relative gain above which a member is a structural winner.

    Returns
    -------
    dict[str, StructuralGain]
        Per member (column name); members without offtake in priced intervals are left out.
    """
    parts = {str(m): _aligned(offtake_kwh[m], price_eur_per_kwh, str(m)) for m in offtake_kwh.columns}
    if reference_price_eur_per_kwh is None:
        total_q = sum(float(q.sum()) for q, _ in parts.values())
        if total_q <= 0:
            raise MatchingError("no offtake in priced intervals: cannot derive a revenue-neutral price")
        reference_price_eur_per_kwh = sum(float(q @ p) for q, p in parts.values()) / total_q
    return {
        m: structural_gain(
            offtake_kwh[col],
            price_eur_per_kwh,
            reference_price_eur_per_kwh=reference_price_eur_per_kwh,
            member=m,
            threshold=threshold,
        )
        for col, m in zip(offtake_kwh.columns, parts, strict=True)
        if float(parts[m][0].sum()) > 0
    }


# ---------------------------------------------------------------------------------------------
# Recommendations


@dataclass(frozen=True)
class Recommendation:
    """One recommended offer.

    Parameters
    ----------
    offer : Offer
        The service or incentive.
    suitability : float
        Suitability score (SD units, see the module docstring).
    reasons : tuple[str, ...]
        Why: the dimensions that drove the score and the context adjustments applied.
    fallback : bool
        True when no offer reached the minimum suitability and this is the best available.
    """

    offer: Offer
    suitability: float
    reasons: tuple[str, ...]
    fallback: bool = False

    @property
    def references(self) -> tuple[Reference, ...]:
        """The studies the offer rests on."""
        return tuple(e.reference for e in self.offer.evidence)


@dataclass(frozen=True)
class Recommendations:
    """Services and incentives recommended for a category or a member.

    Parameters
    ----------
    category : str or None
        Name of the category (class) the profile belongs to, if known.
    services : tuple[Recommendation, ...]
        Recommended services, best first.
    incentives : tuple[Recommendation, ...]
        Recommended incentives, best first.
    ranking : Mapping[str, float]
        Suitability of every offer of the catalogue considered (SD units; excluded offers absent).
    structural : StructuralGain or None
        Structural gain of the member, when load data was given.
    notes : tuple[str, ...]
        Remarks (offers excluded and why, structural winner flag).
    """

    category: str | None
    services: tuple[Recommendation, ...]
    incentives: tuple[Recommendation, ...]
    ranking: Mapping[str, float]
    structural: StructuralGain | None
    notes: tuple[str, ...]

    @property
    def structural_winner(self) -> bool:
        """True when load data shows the member gains from time-of-use without changing anything."""
        return self.structural is not None and self.structural.winner


_DIM_NAMES = {d.id: d.name["en"].lower() for d in DIMENSIONS}


def suitability(
    item: Offer,
    dimension_z: Mapping[str, float],
    *,
    assets: FlexibleAssets | None = None,
    features: LoadProfileFeatures | None = None,
    structural: StructuralGain | None = None,
) -> tuple[float | None, tuple[str, ...]]:
    """Suitability of one offer for a z-profile, with its reasons.

    Parameters
    ----------
    item : Offer
        The offer.
    dimension_z : Mapping[str, float]
        z-score (SD) per dimension; a NaN or absent dimension counts as 0 (the community average).
    assets : FlexibleAssets, optional
        Assets owned, if known.
    features : LoadProfileFeatures, optional
        Load-profile features, if known.
    structural : StructuralGain, optional
        Structural gain under the community's time-of-use tariff, if known.

    Returns
    -------
    score : float or None
        Suitability in SD units, None when the offer does not apply (automated control without any
        controllable asset).
    reasons : tuple[str, ...]
        Drivers and adjustments, in words.
    """
    unknown = [d for d in dimension_z if d not in _DIMS]
    if unknown:
        raise MatchingError(f"unknown dimension(s) in the profile: {', '.join(unknown)}")
    num = 0.0
    drivers: list[tuple[float, str]] = []
    for d, w in item.weights.items():
        z = dimension_z.get(d, float("nan"))
        if z is None or not np.isfinite(z):
            continue
        num += w * z
        if abs(w * z) >= 0.25:
            side = "high" if z > 0 else "low"
            against = " (counts against)" if w * z < 0 else ""
            drivers.append((abs(w * z), f"{side} {_DIM_NAMES[d]} ({z:+.1f} SD){against}"))
    score = num / sum(abs(w) for w in item.weights.values())
    reasons = [text for _, text in sorted(drivers, key=lambda p: -p[0])[:3]]

    if item.id == "automated_control" and assets is not None:
        if not assets.controllable:
            return None, ("no controllable asset (EV, heat pump, battery, electric water heater)",)
        score += 0.3
        reasons.append(f"owns {', '.join(a.replace('_', ' ') for a in assets.controllable)} (+0.3)")
    if item.id == "dynamic_time_of_use" and assets is not None and assets.controllable:
        score += 0.3
        reasons.append("a controllable asset can follow hourly prices automatically (+0.3)")
    if features is not None:
        if (
            item.id == "solar_hours_shifting"
            and np.isfinite(features.evening_peak_ratio)
            and features.evening_peak_ratio >= 1.5
        ):
            score += 0.3
            reasons.append(f"evening use is {features.evening_peak_ratio:.1f}x solar-hour use (+0.3)")
        if (
            item.id in ("peak_time_rebate", "community_peak_events")
            and np.isfinite(features.peak_share)
            and features.peak_share >= 0.25
        ):
            score += 0.25
            reasons.append(f"{features.peak_share:.0%} of daily use falls in the evening peak (+0.25)")
    if structural is not None:
        if item.id == "static_time_of_use" and structural.winner:
            score += 0.5
            reasons.append(f"structural winner: {structural.relative_gain:+.1%} without any change (+0.5)")
        if item.id == "bill_protection":
            if structural.loser:
                score += 0.5
                reasons.append(f"would pay {-structural.relative_gain:.1%} more without change (+0.5)")
            elif structural.winner:
                score -= 0.3
                reasons.append("already gains without change: protection not needed (-0.3)")
    return float(score), tuple(reasons)


def recommend(
    dimension_z: Mapping[str, float],
    *,
    category: str | None = None,
    assets: FlexibleAssets | None = None,
    features: LoadProfileFeatures | None = None,
    structural: StructuralGain | None = None,
    max_services: int = 2,
    max_incentives: int = 2,
    min_suitability: float = 0.1,
) -> Recommendations:
    """Recommend services and incentives for a dimension profile.

    Parameters
    ----------
    dimension_z : Mapping[str, float]
        z-score (SD) per dimension: a class profile (:attr:`ClassProfile.dimension_z`) or a member's
        own z-scores (:func:`bright.social.scoring.dimension_z_scores`).
    category : str, optional
        Category name carried into the result.
    assets : FlexibleAssets, optional
        Assets owned by the member.
    features : LoadProfileFeatures, optional
        The member's load-profile features.
    structural : StructuralGain, optional
        The member's structural gain under the community's time-of-use tariff.
    max_services : int, optional
        Maximum number of services recommended.
    max_incentives : int, optional
        Maximum number of incentives recommended.
    min_suitability : float, optional
        Minimum suitability (SD units) for a recommendation.

    Returns
    -------
    Recommendations

    Examples
    --------
    >>> r = recommend({"environmental_concern": 1.5, "comfort_autonomy": -0.5})
    >>> r.services[0].offer.id, r.incentives[0].offer.id
    ('solar_hours_shifting', 'co2_health_feedback')
    """
    ranking: dict[str, float] = {}
    notes: list[str] = []
    picked: dict[str, list[Recommendation]] = {"service": [], "incentive": []}
    for kind, catalogue, limit in (
        ("service", SERVICES, max_services),
        ("incentive", INCENTIVES, max_incentives),
    ):
        scored: list[tuple[float, Offer, tuple[str, ...]]] = []
        for o in catalogue:
            s, why = suitability(o, dimension_z, assets=assets, features=features, structural=structural)
            if s is None:
                notes.append(f"{o.names['en']} not offered: {why[0]}")
                continue
            ranking[o.id] = s
            scored.append((s, o, why))
        scored.sort(key=lambda t: -t[0])
        chosen = [Recommendation(o, s, why) for s, o, why in scored if s >= min_suitability][:limit]
        if not chosen and scored and limit > 0:
            s, o, why = scored[0]
            chosen = [Recommendation(o, s, why, fallback=True)]
        picked[kind] = chosen
    if structural is not None and structural.winner:
        notes.append(
            f"structural winner: {structural.relative_gain:+.1%} on a time-of-use tariff with the current "
            "profile; this gain is not flexibility and should not be counted as demand response"
        )
    return Recommendations(
        category=category,
        services=tuple(picked["service"]),
        incentives=tuple(picked["incentive"]),
        ranking=MappingProxyType(ranking),
        structural=structural,
        notes=tuple(notes),
    )


def recommend_for_class(profile: ClassProfile, **options: object) -> Recommendations:
    """Recommend services and incentives for a latent class, from its dimension z-profile.

    Parameters
    ----------
    profile : ClassProfile
        A class of a :class:`~bright.social.segmentation.Segmentation`.
    **options
        Passed to :func:`recommend` (e.g. ``max_services``).
    """
    return recommend(profile.dimension_z, category=profile.name, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CommunityMix:
    """One category of the community with its share and what suits it.

    Parameters
    ----------
    label : int
        Class label.
    name : str
        Class name (English).
    share : float
        Share of classified members (0-1).
    description : str
        What sets the class apart.
    recommendations : Recommendations
        Services and incentives for the class.
    """

    label: int
    name: str
    share: float
    description: str
    recommendations: Recommendations


def community_mix(segmentation: Segmentation, **options: object) -> tuple[CommunityMix, ...]:
    """The community's categories, their shares and their recommendations, largest first.

    Parameters
    ----------
    segmentation : Segmentation
        Result of :func:`bright.social.segmentation.segment_members`.
    **options
        Passed to :func:`recommend`.
    """
    return tuple(
        CommunityMix(c.label, c.name, c.share, c.description, recommend_for_class(c, **options))
        for c in segmentation.classes
    )


def recommend_for_member(
    segmentation: Segmentation,
    member: str,
    *,
    assets: FlexibleAssets | None = None,
    features: LoadProfileFeatures | None = None,
    structural: StructuralGain | None = None,
    **options: object,
) -> Recommendations:
    """Recommend for one classified member: their class profile plus their own assets and load data.

    Parameters
    ----------
    segmentation : Segmentation
        The community's segmentation.
    member : str
        Member identifier (must have been classified).
    assets, features, structural : optional
        The member's assets, load-profile features and structural gain.
    **options
        Passed to :func:`recommend`.
    """
    profile = segmentation.class_of(member)
    return recommend(
        profile.dimension_z,
        category=profile.name,
        assets=assets,
        features=features,
        structural=structural,
        **options,  # type: ignore[arg-type]
    )


def suitability_matrix(profiles: Sequence[Mapping[str, float]]) -> pd.DataFrame:
    """Suitability of every offer (columns) for several z-profiles (rows), without context.

    Parameters
    ----------
    profiles : Sequence[Mapping[str, float]]
        z-profiles (SD per dimension).

    Returns
    -------
    pandas.DataFrame
        Suitability in SD units; automated control is scored as if a controllable asset were owned
        but without the +0.3 bonus (no context is applied).
    """
    rows = []
    for z in profiles:
        rows.append({o.id: suitability(o, z)[0] for o in OFFERS})
    return pd.DataFrame(rows, columns=[o.id for o in OFFERS], dtype=float)
