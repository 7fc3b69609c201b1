"""A realistic network of community cards in Brussels, with practices in English, French and Dutch.

Four kinds of communities, placed at real places of the Brussels school register
(:func:`bright.datasets.brussels_schools`):

- ``school``: a community around a real primary or secondary school (the school's own site): one
  to three schools, the neighbouring households, a few shops, sometimes a public building; PV on
  the school roofs, often a battery, chargers in the school car park;
- ``social_housing``: a social-housing block near a real school (300-1,500 m away): many
  households, collective PV and heat pumps, fixed sharing keys that favour tenants;
- ``houses``: a neighbourhood of single-family homes: PV on most roofs, home batteries, EV
  chargers and heat pumps;
- ``sme``: an SME zone in one of the municipalities with business parks: large roofs, big PV,
  storage, fleet charging; often a citizen energy community (CEC).

Counts, technologies and sizes are drawn from ranges typical of Brussels communities. The annual
KPIs come from a simple annual model (not a simulation): PV yields 950 kWh/kWp; a share of it is used
behind the member's own meter; of the rest (injection), the community absorbs
``eta * min(injection, offtake)`` with ``eta = 1 / (1 + 0.9 * injection / offtake)`` raised by storage
and dynamic keys; self-consumption and self-sufficiency are then defined as in
:mod:`bright.energy.balance` (shared / injection, shared / offtake); CO2 avoided = 0.16 kgCO2e per
shared kWh. The practices are drawn from ~40 hand-written texts (:data:`PRACTICE_TEXTS`), each
with a title in the three languages and its body in the language it was written in.

Deterministic for a seed. At benchmark scale (10,000 cards) there are more school communities than
school sites: sites are then reused, moved by up to ~200 m.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bright import datasets
from bright.network.cards import CommunityCard, Contact
from bright.network.knowledge import Initiative, Practice, community_texts, fold

__all__ = ["KINDS", "PRACTICE_TEXTS", "DemoNetwork", "PracticeText", "demo_network", "summary"]

KINDS = ("school", "social_housing", "houses", "sme")
_SHARE = {"school": 0.4, "social_housing": 0.2, "houses": 0.25, "sme": 0.15}
_BUSINESS_MUNICIPALITIES = (
    "Anderlecht",
    "Forest",
    "Evere",
    "Bruxelles",
    "Molenbeek-Saint-Jean",
    "Schaerbeek",
)
_GRID_KG_PER_KWH = 0.16
_PV_YIELD_KWH_PER_KWP = 950.0


@dataclass(frozen=True)
class PracticeText:
    """A hand-written practice: titles in en/fr/nl, body in its own language."""

    key: str
    kinds: tuple[str, ...]
    topics: tuple[str, ...]
    lang: str
    kind_of: str
    outcome: str
    cost_eur: tuple[float, float]
    title: dict[str, str]
    worked: str
    failed: str


def _p(
    key: str,
    kinds: str,
    topics: str,
    lang: str,
    outcome: str,
    cost: tuple[float, float],
    en: str,
    fr: str,
    nl: str,
    worked: str,
    failed: str,
    kind_of: str = "practice",
) -> PracticeText:
    k = KINDS if kinds == "all" else tuple(kinds.split())
    return PracticeText(
        key,
        k,
        tuple(topics.split()),
        lang,
        kind_of,
        outcome,
        cost,
        {"en": en, "fr": fr, "nl": nl},
        worked,
        failed,
    )


#: The hand-written practices and lessons learned.
PRACTICE_TEXTS: tuple[PracticeText, ...] = (
    _p(
        "coop-school-roof",
        "school",
        "solar_school financing",
        "fr",
        "worked",
        (60_000, 140_000),
        "Solar panels on the school roof financed by a citizen cooperative",
        "Panneaux solaires sur le toit de l'école financés par une coopérative citoyenne",
        "Zonnepanelen op het schooldak gefinancierd door een burgercoöperatie",
        "La coopérative a financé les panneaux sur le toit du gymnase. L'école rembourse l'investissement "
        "sur quinze ans par le prix de l'électricité partagée, moins cher que celui de son fournisseur.",
        "L'étude de stabilité de la toiture a pris six mois de plus que prévu et a renchéri le projet.",
    ),
    _p(
        "energy-ambassadors",
        "school",
        "pedagogy",
        "nl",
        "worked",
        (500, 2_000),
        "Energy ambassadors in every class",
        "Des ambassadeurs de l'énergie dans chaque classe",
        "Energie-ambassadeurs in elke klas",
        "Elke klas kiest twee energie-ambassadeurs die wekelijks de meter aflezen en de productie van de "
        "zonnepanelen op het bord tonen. De leerlingen doven zelf de lichten in lege lokalen.",
        "Zonder vaste leerkracht als trekker viel het project na de paasvakantie stil.",
    ),
    _p(
        "entrance-dashboard",
        "school",
        "pedagogy monitoring",
        "en",
        "worked",
        (1_500, 4_000),
        "A live dashboard of the school's solar production in the entrance hall",
        "Un tableau de bord de la production solaire dans le hall d'entrée de l'école",
        "Een live dashboard van de zonneproductie in de inkomhal van de school",
        "A screen in the entrance hall shows the solar production, the energy shared with the neighbours "
        "and the CO2 avoided. Parents read it while waiting and several joined the community.",
        "The first screen showed kW values nobody understood; we switched to households supplied today.",
    ),
    _p(
        "fixed-vs-prorata",
        "all",
        "sharing_keys",
        "fr",
        "mixed",
        (0, 1_000),
        "Choosing between fixed and pro-rata sharing keys",
        "Choisir entre clés de répartition fixes et au prorata",
        "Kiezen tussen vaste en pro-rata verdeelsleutels",
        "Nous avons simulé une année avec les deux clés de répartition. Le prorata partage plus d'énergie, "
        "la clé fixe est plus facile à expliquer aux membres. Nous avons choisi une clé hybride.",
        "La première clé fixe donnait trop à l'école pendant les vacances: le surplus repartait sur le réseau.",
    ),
    _p(
        "dso-declaration",
        "all",
        "dso_declaration governance",
        "fr",
        "worked",
        (0, 500),
        "Declaring the community to Sibelga and Brugel",
        "Déclarer la communauté à Sibelga et à Brugel",
        "De gemeenschap aanmelden bij Sibelga en Brugel",
        "Le dossier de déclaration auprès du gestionnaire de réseau a été accepté en trois semaines grâce à "
        "la liste complète des codes EAN et aux mandats signés par chaque membre.",
        "Un membre avait changé de fournisseur pendant la procédure, ce qui a bloqué son point d'accès.",
    ),
    _p(
        "school-ev-evening",
        "school",
        "ev_charging",
        "nl",
        "worked",
        (8_000, 25_000),
        "Shared EV chargers at the school car park used by neighbours in the evening",
        "Bornes de recharge du parking de l'école partagées avec les voisins le soir",
        "Laadpalen op de schoolparking 's avonds gedeeld met de buurt",
        "Overdag laden de leerkrachten hun auto op zonne-energie, 's avonds en in het weekend de buren. "
        "De laadpalen draaien zo bijna de hele dag.",
        "De parking moest 's nachts open blijven; de gemeente vroeg een aparte toegangsregeling.",
    ),
    _p(
        "collective-heat-pump",
        "social_housing",
        "heat_pumps",
        "fr",
        "mixed",
        (150_000, 400_000),
        "Collective heat pump in a social housing block",
        "Pompe à chaleur collective dans un immeuble de logements sociaux",
        "Collectieve warmtepomp in een sociaal woonblok",
        "La pompe à chaleur collective remplace la vieille chaudière au gaz et tourne en priorité aux heures "
        "de production solaire. Les charges de chauffage des locataires ont baissé.",
        "Sans isolation préalable des façades, la pompe à chaleur a dû être surdimensionnée et coûte plus cher.",
    ),
    _p(
        "door-to-door",
        "social_housing",
        "tenant_engagement energy_poverty",
        "fr",
        "worked",
        (2_000, 6_000),
        "Door-to-door visits with tenants to explain the community",
        "Visites porte-à-porte pour expliquer la communauté aux locataires",
        "Huisbezoeken om de gemeenschap aan de huurders uit te leggen",
        "Deux locataires formés comme relais ont fait du porte-à-porte avec l'asbl de quartier. Les "
        "inscriptions sont passées de 12 à 47 ménages en deux mois.",
        "Les courriers officiels de la société de logement n'avaient presque rien donné.",
    ),
    _p(
        "low-income-key",
        "social_housing",
        "sharing_keys energy_poverty",
        "nl",
        "worked",
        (0, 1_000),
        "A sharing key that favours low-income tenants",
        "Une clé de répartition qui favorise les locataires à faible revenu",
        "Een verdeelsleutel die huurders met een laag inkomen bevoordeelt",
        "De vaste verdeelsleutel geeft huishoudens met een sociaal tarief een dubbel aandeel van de "
        "gedeelde zonne-energie. Hun energierekening daalde gemiddeld met 15 procent.",
        "Het verzamelen van de inkomensgegevens vroeg een toestemming die veel huurders eerst weigerden.",
    ),
    _p(
        "regional-subsidy",
        "school houses sme",
        "financing",
        "en",
        "worked",
        (0, 5_000),
        "Combining the regional subsidy with a third-party investor",
        "Combiner la prime régionale et un tiers-investisseur",
        "De gewestelijke premie combineren met een derde investeerder",
        "The regional solar subsidy covered the feasibility study and a third-party investor financed the "
        "panels. The members pay nothing upfront and buy the shared energy at a fixed price.",
        "The investor's contract locked the price for 20 years without indexation clauses we understood.",
    ),
    _p(
        "school-battery",
        "school",
        "storage flexibility",
        "en",
        "mixed",
        (30_000, 80_000),
        "A school battery to shift midday solar to after-school activities",
        "Une batterie à l'école pour décaler le solaire de midi vers les activités du soir",
        "Een schoolbatterij om middagzon te verschuiven naar naschoolse activiteiten",
        "The battery charges from the solar surplus at noon and supplies the sports hall in the evening. "
        "It also lowers the school's peak and its capacity tariff.",
        "On energy savings alone the battery does not pay back; the peak reduction makes the case.",
        kind_of="lesson",
    ),
    _p(
        "smart-meters-first",
        "houses social_housing",
        "monitoring dso_declaration",
        "nl",
        "worked",
        (0, 2_000),
        "Smart meters installed before the launch",
        "Compteurs intelligents installés avant le lancement",
        "Slimme meters geplaatst vóór de start",
        "We vroegen de netbeheerder om alle slimme meters te plaatsen vóór de start van de gemeenschap. "
        "Vanaf de eerste maand hadden we kwartierwaarden per lid.",
        "Twee leden met een oude meter konden pas drie maanden later meedoen.",
    ),
    _p(
        "cooperative-one-vote",
        "all",
        "governance",
        "fr",
        "worked",
        (1_500, 4_000),
        "A cooperative with one vote per member as legal entity",
        "Une coopérative avec une voix par membre comme entité juridique",
        "Een coöperatie met één stem per lid als rechtspersoon",
        "Nous avons créé une société coopérative agréée: chaque membre a une voix, quel que soit le nombre "
        "de parts. L'école et les ménages se sentent à égalité.",
        "La rédaction des statuts avec un notaire a coûté plus cher que prévu.",
    ),
    _p(
        "sms-solar-hours",
        "houses social_housing",
        "flexibility tenant_engagement",
        "en",
        "worked",
        (500, 3_000),
        "Text messages to shift laundry and dishwashers to solar hours",
        "Des SMS pour décaler lessives et lave-vaisselle aux heures solaires",
        "Sms'jes om was en vaatwas naar de zonne-uren te verschuiven",
        "The day before a sunny day, members receive a text message with the best hours to run the washing "
        "machine. The shared energy rose by 8 percent over the summer.",
        "After a few weeks many members ignored the messages; a weekly summary worked better.",
    ),
    _p(
        "group-purchase-pv",
        "houses",
        "solar_roofs financing",
        "nl",
        "worked",
        (4_000, 9_000),
        "Group purchase of solar panels for the neighbourhood",
        "Achat groupé de panneaux solaires pour le quartier",
        "Groepsaankoop van zonnepanelen voor de wijk",
        "Met een groepsaankoop kregen 32 gezinnen zonnepanelen van dezelfde installateur, 18 procent "
        "goedkoper dan een individuele offerte. De installatie duurde drie weken.",
        "Enkele daken bleken te zwak of te veel in de schaduw; die gezinnen bleven alleen verbruiker.",
    ),
    _p(
        "warehouse-surplus",
        "sme",
        "solar_roofs sharing_keys",
        "en",
        "worked",
        (120_000, 400_000),
        "Sharing the surplus of a warehouse roof with neighbouring SMEs",
        "Partager le surplus de la toiture d'un entrepôt avec les PME voisines",
        "Het overschot van een magazijndak delen met naburige kmo's",
        "The logistics company's roof produces far more than the warehouse uses at the weekend. The "
        "surplus now supplies the garage, the print shop and the bakery next door.",
        "Agreeing on a price for the shared kWh between five companies took half a year.",
    ),
    _p(
        "bakery-ovens",
        "sme",
        "flexibility",
        "fr",
        "mixed",
        (2_000, 10_000),
        "Running the bakery's ovens at the solar peak",
        "Faire tourner les fours de la boulangerie au pic solaire",
        "De ovens van de bakkerij laten draaien op de zonnepiek",
        "La boulangerie a déplacé une partie de la cuisson des viennoiseries vers la fin de matinée, quand "
        "la production solaire de la zone est la plus forte.",
        "Le pain du matin ne peut pas attendre: seul un tiers de la consommation des fours est déplaçable.",
        kind_of="lesson",
    ),
    _p(
        "fleet-charging",
        "sme",
        "ev_charging flexibility",
        "nl",
        "worked",
        (20_000, 90_000),
        "Charging the company fleet during solar hours on the business park",
        "Recharger la flotte d'entreprise aux heures solaires sur le parc d'activités",
        "Bedrijfswagens laden tijdens de zonne-uren op het bedrijventerrein",
        "De bestelwagens laden tussen 10 en 16 uur met een slim laadsysteem dat het zonne-overschot van de "
        "zone volgt. De piek op de aansluiting bleef onder de contractuele grens.",
        "Wagens die pas 's avonds terugkomen, laden nog altijd op netstroom.",
    ),
    _p(
        "standby-hunt",
        "school",
        "pedagogy",
        "fr",
        "worked",
        (100, 800),
        "Pupils hunt the school's standby consumption",
        "Les élèves traquent les consommations en veille de l'école",
        "Leerlingen sporen het sluimerverbruik van de school op",
        "Avec des wattmètres prêtés par la commune, les élèves de sixième ont mesuré les appareils en "
        "veille le week-end. Les minuteries installées ensuite économisent 4 % de la consommation.",
        "Le local informatique est resté allumé: personne n'osait couper les serveurs.",
    ),
    _p(
        "summer-surplus",
        "school",
        "sharing_keys solar_school",
        "en",
        "mixed",
        (0, 500),
        "What to do with the summer surplus when the school is closed",
        "Que faire du surplus d'été quand l'école est fermée",
        "Wat met het zomeroverschot als de school dicht is",
        "In July and August the school roof produces most and the school uses least. With a dynamic key, "
        "the surplus goes to the households of the community instead of the grid.",
        "With our first fixed key most of the summer surplus was not shared at all.",
        kind_of="lesson",
    ),
    _p(
        "ean-list",
        "all",
        "dso_declaration",
        "en",
        "failed",
        (0, 300),
        "Getting the list of access points (EAN codes) right",
        "Établir correctement la liste des points d'accès (codes EAN)",
        "De lijst van toegangspunten (EAN-codes) juist opstellen",
        "We now check every EAN code against the latest bill of the member before sending the list.",
        "Our first declaration was refused: three EAN codes had a typing error and one was an old meter.",
        kind_of="lesson",
    ),
    _p(
        "bill-line-by-line",
        "social_housing houses",
        "tenant_engagement monitoring",
        "nl",
        "worked",
        (300, 1_500),
        "Explaining the energy bill line by line",
        "Expliquer la facture d'énergie ligne par ligne",
        "De energiefactuur lijn per lijn uitleggen",
        "Op een bewonersavond legden we de factuur lijn per lijn uit, met de gedeelde energie apart. "
        "Daarna kwamen er veel minder vragen en klachten.",
        "De factuur van de leverancier toont de gedeelde energie niet; we maken nu zelf een maandoverzicht.",
    ),
    _p(
        "sisp-roofs",
        "social_housing",
        "solar_roofs governance",
        "fr",
        "worked",
        (80_000, 250_000),
        "A partnership with the social housing company to use its roofs",
        "Un partenariat avec la société de logement social pour utiliser ses toitures",
        "Een partnerschap met de sociale huisvestingsmaatschappij om haar daken te gebruiken",
        "La société immobilière de service public met ses toitures à disposition et la communauté gère "
        "l'installation. Les locataires reçoivent l'électricité partagée à prix réduit.",
        "La convention d'occupation des toitures a dû passer par trois conseils d'administration.",
    ),
    _p(
        "hp-group-buy",
        "houses",
        "heat_pumps financing",
        "nl",
        "mixed",
        (9_000, 16_000),
        "Group purchase of heat pumps with one installer",
        "Achat groupé de pompes à chaleur avec un seul installateur",
        "Groepsaankoop van warmtepompen met één installateur",
        "Veertien gezinnen kochten samen een lucht-waterwarmtepomp. De installateur plande de werken per "
        "straat en de buren hielpen elkaar met de premieaanvragen.",
        "Voor de buitenunits op de stoep waren geluidsmetingen en een stedenbouwkundige vergunning nodig.",
    ),
    _p(
        "insulation-first",
        "houses social_housing",
        "heat_pumps energy_poverty",
        "fr",
        "worked",
        (300, 900),
        "Insulation first: an energy audit before any heat pump",
        "L'isolation d'abord: un audit énergétique avant toute pompe à chaleur",
        "Eerst isoleren: een energie-audit vóór elke warmtepomp",
        "Chaque ménage reçoit un audit énergétique avant de choisir une pompe à chaleur. Isoler la toiture "
        "d'abord permet une pompe plus petite et moins chère.",
        "Les propriétaires bailleurs refusaient souvent de payer l'isolation pour leurs locataires.",
    ),
    _p(
        "parents-crowdfunding",
        "school",
        "financing solar_school",
        "fr",
        "worked",
        (500, 3_000),
        "Crowdfunding among the pupils' parents",
        "Un financement participatif auprès des parents d'élèves",
        "Crowdfunding bij de ouders van de leerlingen",
        "Les parents ont acheté des parts de 100 euros; en six semaines, 40 % du projet solaire était "
        "financé. La fête de l'école a servi de lancement.",
        "Les parts n'étaient pas accessibles à toutes les familles; nous avons ajouté des parts de 20 euros.",
    ),
    _p(
        "internal-rules",
        "all",
        "governance",
        "fr",
        "worked",
        (0, 1_000),
        "Writing the internal rules together with the members",
        "Rédiger le règlement d'ordre intérieur avec les membres",
        "Het huishoudelijk reglement samen met de leden schrijven",
        "Trois ateliers ont suffi pour écrire le règlement: entrée et sortie des membres, prix du kWh "
        "partagé, et que faire en cas de panne de l'installation.",
        "Nous avions oublié de prévoir le cas d'un membre qui déménage en cours d'année.",
    ),
    _p(
        "monthly-statement",
        "all",
        "monitoring tenant_engagement",
        "en",
        "worked",
        (0, 2_000),
        "A monthly statement every member understands",
        "Un relevé mensuel que chaque membre comprend",
        "Een maandoverzicht dat elk lid begrijpt",
        "Each member receives a one-page statement: energy taken from the community, from the grid, what it "
        "saved, and a comparison with last month. Questions to the board dropped by half.",
        "The first version listed quarter-hour values; nobody read it.",
    ),
    _p(
        "cpas-partnership",
        "social_housing",
        "energy_poverty tenant_engagement",
        "nl",
        "worked",
        (0, 3_000),
        "Working with the public social welfare centre (CPAS/OCMW) to reach vulnerable households",
        "Travailler avec le CPAS pour toucher les ménages vulnérables",
        "Samenwerken met het OCMW om kwetsbare gezinnen te bereiken",
        "De energiecel van het OCMW stelt de gemeenschap voor aan gezinnen met betalingsachterstanden. "
        "Samen met de gedeelde zonne-energie krijgen ze energieadvies aan huis.",
        "De privacyregels maakten het moeilijk om lijsten uit te wisselen; elke aanmelding gaat via het gezin zelf.",
    ),
    _p(
        "students-install",
        "school",
        "pedagogy solar_school",
        "fr",
        "worked",
        (2_000, 8_000),
        "Technical students install and maintain the solar panels",
        "Les élèves du technique installent et entretiennent les panneaux",
        "Leerlingen uit het technisch onderwijs plaatsen en onderhouden de panelen",
        "Les élèves de la section électricité ont posé une partie des panneaux avec l'installateur et "
        "assurent le nettoyage annuel. Le projet fait partie de leur qualification.",
        "L'assurance de l'école ne couvrait pas le travail en hauteur; il a fallu un avenant.",
    ),
    _p(
        "v2g-pilot",
        "houses",
        "ev_charging flexibility storage",
        "en",
        "mixed",
        (15_000, 40_000),
        "A bidirectional charging (V2G) pilot in the street",
        "Un projet pilote de recharge bidirectionnelle (V2G) dans la rue",
        "Een proefproject met bidirectioneel laden (V2G) in de straat",
        "Four cars with bidirectional chargers give back solar energy to the neighbours in the evening. "
        "They cover a good part of the evening peak of the street.",
        "Few car models support V2G and the chargers are still expensive; the pilot is not yet profitable.",
        kind_of="lesson",
    ),
    _p(
        "battery-sizing",
        "houses",
        "storage",
        "nl",
        "failed",
        (5_000, 12_000),
        "Home batteries: a lesson about sizing",
        "Batteries domestiques: une leçon de dimensionnement",
        "Thuisbatterijen: een les over dimensionering",
        "Wie nu een batterij koopt, kiest de grootte op basis van een jaar kwartierwaarden van de meter.",
        "De eerste thuisbatterijen waren te groot: in de winter raakten ze nooit vol en in de gemeenschap "
        "was er al weinig overschot te delen.",
        kind_of="lesson",
    ),
    _p(
        "multi-round-keys",
        "all",
        "sharing_keys",
        "en",
        "worked",
        (0, 500),
        "Multi-round fixed keys so that no surplus is wasted",
        "Des clés fixes en plusieurs tours pour ne pas perdre de surplus",
        "Vaste sleutels in meerdere rondes zodat geen overschot verloren gaat",
        "With fixed keys in several rounds, what one member cannot take is offered again to the others. "
        "The shared energy rose by 11 percent compared with a single round.",
        "Members found the multi-round results harder to check by hand.",
    ),
    _p(
        "weekend-surplus",
        "school",
        "sharing_keys solar_school",
        "fr",
        "worked",
        (0, 500),
        "Sharing the school surplus with the neighbourhood at weekends",
        "Partager le surplus de l'école avec le quartier le week-end",
        "Het overschot van de school in het weekend met de buurt delen",
        "Le week-end, toute la production du toit de l'école est partagée avec les ménages voisins. Les "
        "familles lancent leurs lessives le samedi midi.",
        "Au début, peu de voisins étaient membres: le surplus du week-end partait sur le réseau.",
    ),
    _p(
        "quarter-hour-data",
        "houses sme",
        "monitoring dso_declaration",
        "nl",
        "worked",
        (0, 1_000),
        "Getting quarter-hourly data from the grid operator's portal",
        "Obtenir les données quart-horaires via le portail du gestionnaire de réseau",
        "Kwartierdata ophalen via het portaal van de netbeheerder",
        "Met de volmacht van elk lid halen we de kwartierwaarden maandelijks op uit het portaal van de "
        "netbeheerder en laden ze in de digitale tweeling.",
        "Het portaal levert de data met enkele dagen vertraging; een dagelijkse opvolging is niet mogelijk.",
    ),
    _p(
        "energy-cafe",
        "social_housing houses",
        "tenant_engagement",
        "fr",
        "worked",
        (200, 1_200),
        "An energy café once a month",
        "Un café énergie une fois par mois",
        "Eén keer per maand een energiecafé",
        "Chaque premier mercredi du mois, le café énergie accueille les membres dans la salle commune: "
        "questions sur les factures, trucs pour consommer aux heures solaires, café offert.",
        "En été, presque personne ne venait; nous faisons une pause en juillet et août.",
    ),
    _p(
        "esco-contract",
        "sme",
        "financing storage",
        "en",
        "mixed",
        (0, 10_000),
        "An energy performance contract with an ESCO",
        "Un contrat de performance énergétique avec une ESCO",
        "Een energieprestatiecontract met een ESCO",
        "An energy service company installed PV and a battery on the business park and is paid from the "
        "guaranteed savings. The companies had no investment to make.",
        "Measuring the guaranteed savings led to long discussions about the baseline.",
    ),
    _p(
        "common-areas-first",
        "social_housing",
        "solar_roofs energy_poverty",
        "en",
        "worked",
        (30_000, 90_000),
        "The common areas as the first member",
        "Les communs comme premier membre",
        "De gemeenschappelijke delen als eerste lid",
        "We started with the lifts, stairwell lighting and ventilation of the block as the first consumer "
        "of the roof's solar energy. The lower service charges convinced tenants to join.",
        "Splitting the common-area savings between tenants needed the landlord's agreement.",
    ),
    _p(
        "school-heat-pump",
        "school",
        "heat_pumps solar_school",
        "nl",
        "worked",
        (120_000, 300_000),
        "A heat pump replaces the school's gas boiler and runs on solar hours",
        "Une pompe à chaleur remplace la chaudière au gaz de l'école et tourne aux heures solaires",
        "Een warmtepomp vervangt de gasketel van de school en draait op de zonne-uren",
        "De warmtepomp warmt de school op tijdens de zonne-uren en het gebouw houdt de warmte vast tot "
        "het einde van de lesdag. Het gasverbruik daalde met driekwart.",
        "In de koudste weken moest de oude gasketel nog bijspringen.",
    ),
    _p(
        "onboarding-kit",
        "all",
        "governance tenant_engagement",
        "en",
        "worked",
        (0, 800),
        "Welcoming new members with a one-page onboarding kit",
        "Accueillir les nouveaux membres avec un kit d'une page",
        "Nieuwe leden verwelkomen met een startkit van één pagina",
        "New members receive one page in French, Dutch and English: what the community is, how sharing "
        "works, what to sign, and whom to ask.",
        "Our first welcome pack was a 30-page statute document.",
    ),
    _p(
        "cold-storage-flex",
        "sme",
        "flexibility",
        "nl",
        "worked",
        (5_000, 20_000),
        "Cold storage as a flexible load",
        "Les chambres froides comme charge flexible",
        "Koelcellen als flexibel verbruik",
        "De koelcellen van de groothandel koelen extra af tijdens de zonne-uren en rusten 's avonds. De "
        "temperatuur blijft binnen de grenzen van het voedselagentschap.",
        "Bij een hittegolf is er geen marge meer om het verbruik te verschuiven.",
    ),
    _p(
        "school-energy-week",
        "school",
        "pedagogy",
        "nl",
        "worked",
        (300, 1_500),
        "An energy week with the whole school",
        "Une semaine de l'énergie avec toute l'école",
        "Een energieweek met de hele school",
        "Tijdens de energieweek volgen alle klassen lessen over zonne-energie en delen van stroom. De "
        "oudste leerlingen geven een rondleiding op het dak voor de ouders.",
        "Een week was te kort om iets te veranderen aan de gewoonten; nu volgt er een maandelijkse opvolging.",
    ),
)


# --- initiatives ----------------------------------------------------------------------------------

_INITIATIVES: dict[str, tuple[dict[str, str], ...]] = {
    "school": (
        {
            "en": "Solar panels on the school roof",
            "fr": "Panneaux solaires sur le toit de l'école",
            "nl": "Zonnepanelen op het schooldak",
        },
        {
            "en": "Energy classes for pupils",
            "fr": "Cours sur l'énergie pour les élèves",
            "nl": "Energielessen voor leerlingen",
        },
        {
            "en": "Charging points in the school car park",
            "fr": "Bornes de recharge au parking de l'école",
            "nl": "Laadpunten op de schoolparking",
        },
        {
            "en": "School battery for the sports hall",
            "fr": "Batterie pour la salle de sport",
            "nl": "Batterij voor de sporthal",
        },
        {
            "en": "Sharing the summer surplus with neighbours",
            "fr": "Partager le surplus d'été avec les voisins",
            "nl": "Zomeroverschot delen met de buren",
        },
    ),
    "social_housing": (
        {
            "en": "Solar roofs for tenants",
            "fr": "Toitures solaires pour les locataires",
            "nl": "Zonnedaken voor huurders",
        },
        {"en": "Collective heat pump", "fr": "Pompe à chaleur collective", "nl": "Collectieve warmtepomp"},
        {"en": "Monthly energy café", "fr": "Café énergie mensuel", "nl": "Maandelijks energiecafé"},
        {
            "en": "Fighting energy poverty with the CPAS",
            "fr": "Lutte contre la précarité énergétique avec le CPAS",
            "nl": "Energiearmoede bestrijden met het OCMW",
        },
    ),
    "houses": (
        {
            "en": "Group purchase of solar panels",
            "fr": "Achat groupé de panneaux solaires",
            "nl": "Groepsaankoop zonnepanelen",
        },
        {
            "en": "Heat pumps street by street",
            "fr": "Pompes à chaleur rue par rue",
            "nl": "Warmtepompen straat per straat",
        },
        {"en": "Shared EV chargers", "fr": "Bornes de recharge partagées", "nl": "Gedeelde laadpalen"},
        {
            "en": "Home batteries pilot",
            "fr": "Projet pilote de batteries domestiques",
            "nl": "Proefproject thuisbatterijen",
        },
    ),
    "sme": (
        {
            "en": "Large roofs for the business park",
            "fr": "Grandes toitures pour le parc d'activités",
            "nl": "Grote daken voor het bedrijventerrein",
        },
        {
            "en": "Fleet charging on solar",
            "fr": "Recharge de la flotte au solaire",
            "nl": "Vloot laden op zonne-energie",
        },
        {
            "en": "Shared battery for peak shaving",
            "fr": "Batterie partagée pour écrêter la pointe",
            "nl": "Gedeelde batterij voor piekafvlakking",
        },
        {"en": "Flexible cold storage", "fr": "Chambres froides flexibles", "nl": "Flexibele koelcellen"},
    ),
}
_GOALS = {
    "school": ("education", "local_renewables", "lower_bills", "climate"),
    "social_housing": ("energy_poverty", "lower_bills", "social_cohesion", "heat_transition"),
    "houses": ("local_renewables", "e_mobility", "heat_transition", "lower_bills"),
    "sme": ("lower_bills", "grid_support", "e_mobility", "local_renewables"),
}
_DESCRIPTIONS = {
    "school": {
        "en": "A renewable energy community around {school}: the school roofs share their solar energy with "
        "the neighbouring households and shops, and the pupils learn with it.",
        "fr": "Une communauté d'énergie renouvelable autour de l'école {school}: les toitures de l'école "
        "partagent leur énergie solaire avec les ménages et commerces voisins, et les élèves apprennent avec elle.",
        "nl": "Een hernieuwbare-energiegemeenschap rond {school}: de schooldaken delen hun zonne-energie met "
        "de buren en de winkels, en de leerlingen leren ermee.",
    },
    "social_housing": {
        "en": "Tenants of a social housing block in {place} share the solar energy of their roofs and lower "
        "their bills together.",
        "fr": "Les locataires d'un immeuble de logements sociaux à {place} partagent l'énergie solaire de "
        "leurs toitures et réduisent ensemble leurs factures.",
        "nl": "Huurders van een sociaal woonblok in {place} delen de zonne-energie van hun daken en verlagen "
        "samen hun energierekening.",
    },
    "houses": {
        "en": "Families of a residential neighbourhood in {place} share the production of their solar roofs, "
        "with home batteries, heat pumps and electric cars.",
        "fr": "Des familles d'un quartier résidentiel de {place} partagent la production de leurs toits "
        "solaires, avec batteries, pompes à chaleur et voitures électriques.",
        "nl": "Gezinnen uit een woonwijk in {place} delen de productie van hun zonnedaken, met "
        "thuisbatterijen, warmtepompen en elektrische wagens.",
    },
    "sme": {
        "en": "Small and medium enterprises of a business zone in {place} share the production of their large "
        "roofs and charge their fleets on it.",
        "fr": "Les PME d'une zone d'activités à {place} partagent la production de leurs grandes toitures et y "
        "rechargent leurs flottes.",
        "nl": "Kmo's van een bedrijvenzone in {place} delen de productie van hun grote daken en laden er hun "
        "bedrijfswagens mee.",
    },
}
_HOUSING_NAMES = (
    ("Résidence des Tilleuls", "fr"),
    ("Cité des Érables", "fr"),
    ("Clos des Bouleaux", "fr"),
    ("Lindenhof", "nl"),
    ("Esdoornhof", "nl"),
    ("Résidence du Moulin", "fr"),
    ("Kastanjeblok", "nl"),
    ("Cité des Peupliers", "fr"),
)


@dataclass(frozen=True)
class DemoNetwork:
    """The generated network: cards, practices and initiatives (all public data)."""

    cards: tuple[CommunityCard, ...]
    practices: tuple[Practice, ...]
    initiatives: tuple[Initiative, ...]
    kinds: dict[str, str]

    def texts(self) -> dict[str, str]:
        """Per card id, the titles of its practices and initiatives (for discovery)."""
        return community_texts([*self.practices, *self.initiatives])

    def cards_of(self, kind: str) -> list[CommunityCard]:
        """The cards of one kind (``school``, ``social_housing``, ``houses``, ``sme``)."""
        return [c for c in self.cards if self.kinds[c.id] == kind]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", fold(text)).strip("-")[:40].strip("-") or "community"


def _counts(n: int) -> dict[str, int]:
    counts = {k: round(_SHARE[k] * n) for k in KINDS}
    if n >= 6:
        counts["school"] = max(counts["school"], 3)
        for k in KINDS[1:]:
            counts[k] = max(counts[k], 1)
    while sum(counts.values()) > n:
        k = max(counts, key=lambda x: counts[x])
        counts[k] -= 1
    while sum(counts.values()) < n:
        counts["school"] += 1
    return counts


def _schools() -> pd.DataFrame:
    s = datasets.brussels_schools()
    ordinary = s["level"].isin(["Fondamental", "Secondaire"]) & ~s["kind"].fillna("").str.contains(
        "Artistique|Promotion", regex=True
    )
    return s[ordinary].sort_values("site_id", kind="stable").reset_index(drop=True)


def _offset(
    rng: np.random.Generator, lat: float, lon: float, lo_m: float, hi_m: float
) -> tuple[float, float]:
    """A point lo..hi metres away in a random direction."""
    d = rng.uniform(lo_m, hi_m) / 1000.0
    a = rng.uniform(0, 2 * np.pi)
    dlat = d * np.cos(a) / 111.32
    dlon = d * np.sin(a) / (111.32 * np.cos(np.radians(lat)))
    return float(lat + dlat), float(lon + dlon)


def _languages(rng: np.random.Generator) -> tuple[str, ...]:
    r = rng.uniform()
    if r < 0.45:
        return ("fr",)
    if r < 0.75:
        return ("fr", "nl")
    if r < 0.87:
        return ("nl",)
    return ("fr", "nl", "en")


def _kpis(
    rng: np.random.Generator,
    kind: str,
    members: dict[str, int],
    pv_kwp: float,
    storage_kwh: float,
    method: str,
) -> dict[str, Any]:
    cons = (
        members["households"] * 2_800
        + members["schools"] * 60_000
        + members["smes"] * 45_000
        + members["public_buildings"] * 90_000
    )
    pv = pv_kwp * _PV_YIELD_KWH_PER_KWP
    behind = {"school": 0.45, "social_housing": 0.3, "houses": 0.35, "sme": 0.5}[kind] * rng.uniform(
        0.85, 1.15
    )
    injection = pv * (1 - behind)
    offtake = max(cons - pv * behind, 1.0)
    if injection <= 0:
        return {
            "period": "2025",
            "self_sufficiency": 0.0,
            "self_consumption": None,
            "shared_kwh": 0.0,
            "co2_avoided_kg": 0.0,
        }
    eta = 1.0 / (1.0 + 0.9 * injection / offtake)
    eta += 0.1 * min(1.0, storage_kwh / max(injection / 365.0, 1e-9))
    eta += {"pro_rata": 0.03, "max_sharing": 0.04, "hybrid": 0.01, "fixed_multi_round": 0.01, "fixed": -0.03}[
        method
    ]
    eta = float(np.clip(eta + rng.normal(0, 0.03), 0.05, 0.97))
    shared = eta * min(injection, offtake)
    return {
        "period": "2025",
        "self_sufficiency": round(shared / offtake, 4),
        "self_consumption": round(shared / injection, 4),
        "shared_kwh": round(shared, 0),
        "co2_avoided_kg": round(shared * _GRID_KG_PER_KWH, 0),
    }


def _members_and_tech(
    rng: np.random.Generator, kind: str
) -> tuple[dict[str, int], dict[str, float], str, str]:
    """Members by type, technologies, sharing method and legal form of one community."""
    if kind == "school":
        schools = int(rng.choice([1, 1, 1, 1, 1, 1, 1, 2, 2, 3]))
        hh = int(rng.integers(5, 61))
        m = {
            "households": hh,
            "schools": schools,
            "smes": int(rng.integers(0, 4)),
            "public_buildings": int(rng.integers(0, 3)),
        }
        pv = schools * rng.uniform(30, 200) + hh * rng.uniform(0.1, 0.4) * rng.uniform(3, 6)
        storage = float(rng.choice([0, 0, 0, 1, 1])) * rng.uniform(20, 100)
        ev = int(rng.integers(0, 7))
        hp = int(rng.integers(0, 4))
        method = str(rng.choice(["pro_rata", "pro_rata", "fixed", "hybrid", "fixed_multi_round"]))
        legal = "REC" if rng.uniform() < 0.85 else "CEC"
    elif kind == "social_housing":
        hh = int(rng.integers(20, 151))
        m = {"households": hh, "schools": 0, "smes": 0, "public_buildings": int(rng.integers(0, 2))}
        pv = rng.uniform(20, 120)
        storage = float(rng.uniform() < 0.15) * rng.uniform(30, 80)
        ev = int(rng.integers(0, 3))
        hp = int(rng.integers(0, 5))
        method = str(rng.choice(["fixed", "fixed", "hybrid", "fixed_multi_round", "pro_rata"]))
        legal = "REC" if rng.uniform() < 0.9 else "other"
    elif kind == "houses":
        hh = int(rng.integers(8, 51))
        m = {"households": hh, "schools": 0, "smes": int(rng.integers(0, 2)), "public_buildings": 0}
        pv = hh * rng.uniform(0.5, 0.8) * rng.uniform(3, 8)
        storage = hh * rng.uniform(0.1, 0.4) * rng.uniform(5, 13)
        ev = int(hh * rng.uniform(0.2, 0.6))
        hp = int(hh * rng.uniform(0.1, 0.4))
        method = str(rng.choice(["pro_rata", "pro_rata", "pro_rata", "hybrid", "max_sharing"]))
        legal = "REC" if rng.uniform() < 0.8 else "CEC"
    else:
        smes = int(rng.integers(4, 31))
        m = {
            "households": int(rng.integers(0, 11)),
            "schools": 0,
            "smes": smes,
            "public_buildings": int(rng.integers(0, 2)),
        }
        pv = rng.uniform(100, 800)
        storage = float(rng.uniform() < 0.5) * rng.uniform(50, 500)
        ev = int(rng.integers(4, 31))
        hp = int(rng.integers(0, 6))
        method = str(rng.choice(["pro_rata", "hybrid", "fixed", "fixed_multi_round"]))
        legal = "CEC" if rng.uniform() < 0.5 else "REC"
    m["other"] = 0
    tech = {
        "pv_kwp": round(float(pv), 1),
        "storage_kwh": round(float(storage), 1),
        "ev_chargers": ev,
        "heat_pumps": hp,
    }
    return m, tech, method, legal


def demo_network(
    n_cards: int = 60,
    *,
    practices_per_card: float = 5.0,
    seed: int = 11,
) -> DemoNetwork:
    """Generate a network of community cards around real Brussels places, with their practices.

    Parameters
    ----------
    n_cards
        Number of communities (1..100,000): 40 % school, 20 % social housing, 25 % single-family
        neighbourhoods, 15 % SME zones (at least 3 school communities and one of each other kind
        from 6 cards on).
    practices_per_card
        Mean number of practices per community (Poisson; 5 gives 50,000 practices for 10,000 cards).
    seed
        Random seed (the same seed gives the same network).

    Returns
    -------
    DemoNetwork

    Raises
    ------
    ValueError
        ``n_cards`` or ``practices_per_card`` out of range.
    """
    if not 1 <= n_cards <= 100_000:
        raise ValueError(f"n_cards must be within 1..100000, got {n_cards}")
    if not 0 <= practices_per_card <= 50:
        raise ValueError(f"practices_per_card must be within 0..50, got {practices_per_card}")
    rng = np.random.default_rng(seed)
    schools = _schools()
    counts = _counts(n_cards)
    order = rng.permutation(len(schools))
    by_kind_text = {k: [p for p in PRACTICE_TEXTS if k in p.kinds] for k in KINDS}
    business = schools[schools["municipality"].isin(_BUSINESS_MUNICIPALITIES)].reset_index(drop=True)
    cards: list[CommunityCard] = []
    practices: list[Practice] = []
    initiatives: list[Initiative] = []
    kinds: dict[str, str] = {}
    used = 0
    seq = 0
    for kind in KINDS:
        for _ in range(counts[kind]):
            seq += 1
            if kind == "school":
                site = schools.iloc[int(order[used % len(order)])]
                lat, lon = float(site["lat"]), float(site["lon"])
                if used >= len(order):  # beyond the register: the same sites, moved a little
                    lat, lon = _offset(rng, lat, lon, 20, 200)
                used += 1
            else:
                pool = business if kind == "sme" and len(business) else schools
                site = pool.iloc[int(rng.integers(len(pool)))]
                lat, lon = _offset(rng, float(site["lat"]), float(site["lon"]), 300, 1500)
            place = str(site["municipality"])
            langs = _languages(rng)
            lang = langs[0]
            if kind == "school":
                school_name = str(site["name"]).strip()
                school_name = school_name.title() if school_name.isupper() else school_name
                name = {
                    "fr": f"Communauté d'énergie {school_name}",
                    "nl": f"Energiegemeenschap {school_name}",
                    "en": f"{school_name} energy community",
                }[lang]
            elif kind == "social_housing":
                base, _l = _HOUSING_NAMES[int(rng.integers(len(_HOUSING_NAMES)))]
                name = f"{base} ({place})"
                school_name = ""
            elif kind == "houses":
                name = {
                    "fr": f"Quartier solaire {place}",
                    "nl": f"Zonnewijk {place}",
                    "en": f"{place} solar neighbourhood",
                }[lang]
                name += f" {int(rng.integers(1, 20))}"
                school_name = ""
            else:
                name = {"fr": f"Zone PME {place}", "nl": f"Kmo-zone {place}", "en": f"{place} SME zone"}[lang]
                name += f" {int(rng.integers(1, 9))}"
                school_name = ""
            key = f"net-{kind.replace('_', '-')}-{seq:05d}"
            cid = f"urn:ngsi-ld:EnergyCommunity:{key}"
            members, tech, method, legal = _members_and_tech(rng, kind)
            founded = int(rng.integers(2019, 2026))
            kpis = _kpis(rng, kind, members, tech["pv_kwp"], tech["storage_kwh"], method)
            goal_pool = _GOALS[kind]
            goals = tuple(goal_pool[: int(rng.integers(2, len(goal_pool) + 1))])
            options = _INITIATIVES[kind]
            picked = rng.choice(
                len(options), size=int(rng.integers(1, min(3, len(options)) + 1)), replace=False
            )
            titles = [options[int(k)] for k in sorted(picked)]
            slug = _slug(name)
            contact = Contact(organisation=name, email=f"info@{slug}.example", url=f"https://{slug}.example")
            scope = {
                "school": ("/education/school",),
                "social_housing": ("/housing/social",),
                "houses": ("/housing/houses",),
                "sme": ("/business/sme",),
            }[kind] + (f"/place/brussels/{_slug(place)}",)
            description = {
                lg: _DESCRIPTIONS[kind][lg].format(school=school_name, place=place) for lg in langs
            }
            card = CommunityCard(
                id=cid,
                name=name,
                description=description,
                lon=round(lon, 6),
                lat=round(lat, 6),
                municipality=place,
                postcode=str(site["postcode"]),
                radius_km=round(float(rng.uniform(0.2, 1.0 if kind != "sme" else 1.5)), 2),
                legal_form=legal,  # type: ignore[arg-type]
                founding_year=founded,
                members=members,  # type: ignore[arg-type]
                technologies=tech,  # type: ignore[arg-type]
                sharing_method=method,  # type: ignore[arg-type]
                goals=goals,
                kpis=kpis,  # type: ignore[arg-type]
                initiatives=tuple(t[lang] for t in titles),
                languages=langs,
                contact=contact,
                scope=scope,
                offered_tools=("sharing-calculator", "forecast") if rng.uniform() < 0.15 else (),
            )
            cards.append(card)
            kinds[cid] = kind
            for j, names in enumerate(titles):
                initiatives.append(
                    Initiative(
                        id=f"urn:ngsi-ld:Initiative:{key}:{j + 1:02d}",
                        community=cid,
                        title={lg: names[lg] for lg in langs if lg in names} or {"en": names["en"]},
                        status=str(rng.choice(["planned", "running", "running", "done"])),  # type: ignore[arg-type]
                        start_year=min(2026, founded + int(rng.integers(0, 3))),
                        budget_eur=float(round(rng.uniform(2_000, 150_000), -2)),
                    )
                )
            pool_texts = by_kind_text[kind]
            n_practices = min(len(pool_texts), int(rng.poisson(practices_per_card)))
            chosen = (
                rng.choice(len(pool_texts), size=n_practices, replace=False) if n_practices else np.array([])
            )
            for j, t_index in enumerate(sorted(int(x) for x in chosen)):
                t = pool_texts[t_index]
                scale = 1.0 + 0.02 * members["households"] if t.cost_eur[1] > 10_000 else 1.0
                lo, hi = t.cost_eur
                cost = float(round(rng.uniform(lo, hi) * min(scale, 2.0), -1)) if hi > 0 else 0.0
                title_langs = set(langs) | {t.lang}
                practices.append(
                    Practice(
                        id=f"urn:ngsi-ld:Practice:{key}:{j + 1:02d}",
                        community=cid,
                        kind_of=t.kind_of,  # type: ignore[arg-type]
                        title={lg: t.title[lg] for lg in sorted(title_langs) if lg in t.title},
                        what_worked={t.lang: t.worked},
                        what_failed={t.lang: t.failed},
                        topics=t.topics,
                        outcome=t.outcome,  # type: ignore[arg-type]
                        cost_eur=cost,
                        year=min(2026, founded + int(rng.integers(0, 3))),
                        contact=contact,
                    )
                )
    return DemoNetwork(tuple(cards), tuple(practices), tuple(initiatives), kinds)


def summary(network: DemoNetwork) -> pd.DataFrame:
    """Cards, members, PV and practices per kind (a quick look at a generated network)."""
    rows: list[dict[str, Any]] = []
    per_card: dict[str, int] = {}
    for p in network.practices:
        per_card[p.community] = per_card.get(p.community, 0) + 1
    for kind in KINDS:
        cards: Sequence[CommunityCard] = network.cards_of(kind)
        rows.append(
            {
                "kind": kind,
                "cards": len(cards),
                "members": sum(c.members.total for c in cards),
                "pv_kwp": round(sum(c.technologies.pv_kwp for c in cards), 1),
                "practices": sum(per_card.get(c.id, 0) for c in cards),
            }
        )
    return pd.DataFrame(rows).set_index("kind")
