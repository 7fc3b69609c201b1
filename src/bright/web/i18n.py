"""The dashboard's message catalogue: English, French and Dutch (the languages of Brussels and Flanders).

A message is looked up by key; a key missing in a language falls back to English, and a key missing
everywhere is shown as itself (a visible gap, never an error page). The language comes from the
``lang`` query parameter (remembered in a cookie), else the ``lang`` cookie, else the browser's
``Accept-Language`` header, else English.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "MESSAGES", "negotiate", "translate"]

#: Supported languages: code -> name in that language (shown in the switch).
LANGUAGES: dict[str, str] = {"en": "English", "fr": "Français", "nl": "Nederlands"}
DEFAULT_LANGUAGE = "en"

#: key -> {language: text}. ``{name}`` placeholders are filled by :func:`translate`.
MESSAGES: dict[str, dict[str, str]] = {
    "app.title": {"en": "BRIGHT dashboard", "fr": "Tableau de bord BRIGHT", "nl": "BRIGHT-dashboard"},
    "app.tagline": {
        "en": "The digital twin node of an energy community",
        "fr": "Le nœud de jumeau numérique d'une communauté d'énergie",
        "nl": "Het digitale-tweelingknooppunt van een energiegemeenschap",
    },
    "app.about": {
        "en": "This node holds the meters, members and results of its energy communities. Public visitors "
        "see community aggregates; members see their own data; managers see everything.",
        "fr": "Ce nœud contient les compteurs, les membres et les résultats de ses communautés d'énergie. "
        "Les visiteurs voient les agrégats; les membres leurs propres données; les gestionnaires tout.",
        "nl": "Dit knooppunt bevat de meters, leden en resultaten van zijn energiegemeenschappen. "
        "Bezoekers zien totalen; leden hun eigen gegevens; beheerders alles.",
    },
    "nav.home": {"en": "Communities", "fr": "Communautés", "nl": "Gemeenschappen"},
    "nav.ngsi": {"en": "Entities", "fr": "Entités", "nl": "Entiteiten"},
    "nav.network": {"en": "Network", "fr": "Réseau", "nl": "Netwerk"},
    "nav.analytics": {"en": "Forecasts", "fr": "Prévisions", "nl": "Voorspellingen"},
    "nav.engagement": {"en": "Engagement", "fr": "Engagement", "nl": "Betrokkenheid"},
    "nav.ledger": {"en": "Ledger", "fr": "Registre", "nl": "Register"},
    "nav.main": {"en": "Main navigation", "fr": "Navigation principale", "nl": "Hoofdnavigatie"},
    "nav.language": {"en": "Language", "fr": "Langue", "nl": "Taal"},
    "nav.skip": {"en": "Skip to content", "fr": "Aller au contenu", "nl": "Naar de inhoud"},
    "auth.login": {"en": "Log in", "fr": "Se connecter", "nl": "Aanmelden"},
    "auth.logout": {"en": "Log out", "fr": "Se déconnecter", "nl": "Afmelden"},
    "auth.username": {"en": "User name", "fr": "Nom d'utilisateur", "nl": "Gebruikersnaam"},
    "auth.password": {"en": "Password", "fr": "Mot de passe", "nl": "Wachtwoord"},
    "auth.bad": {
        "en": "Unknown user name or wrong password.",
        "fr": "Utilisateur inconnu ou mot de passe erroné.",
        "nl": "Onbekende gebruiker of fout wachtwoord.",
    },
    "auth.required": {
        "en": "This field is required.",
        "fr": "Ce champ est requis.",
        "nl": "Dit veld is verplicht.",
    },
    "auth.as": {
        "en": "Signed in as {user} ({role})",
        "fr": "Connecté: {user} ({role})",
        "nl": "Aangemeld: {user} ({role})",
    },
    "auth.public": {"en": "Public view", "fr": "Vue publique", "nl": "Publieke weergave"},
    "role.manager": {"en": "manager", "fr": "gestionnaire", "nl": "beheerder"},
    "role.member": {"en": "member", "fr": "membre", "nl": "lid"},
    "role.public": {"en": "public", "fr": "public", "nl": "publiek"},
    "home.communities": {
        "en": "Communities of this node",
        "fr": "Communautés de ce nœud",
        "nl": "Gemeenschappen van dit knooppunt",
    },
    "home.none": {
        "en": "No community on this node yet.",
        "fr": "Aucune communauté sur ce nœud.",
        "nl": "Nog geen gemeenschap op dit knooppunt.",
    },
    "home.members": {"en": "members", "fr": "membres", "nl": "leden"},
    "home.method": {"en": "sharing", "fr": "partage", "nl": "delen"},
    "home.open": {"en": "Open", "fr": "Ouvrir", "nl": "Openen"},
    "period.legend": {"en": "Period", "fr": "Période", "nl": "Periode"},
    "period.period": {"en": "Period length", "fr": "Durée", "nl": "Duur"},
    "period.date": {"en": "Date in the period", "fr": "Date dans la période", "nl": "Datum in de periode"},
    "period.day": {"en": "Day", "fr": "Jour", "nl": "Dag"},
    "period.week": {"en": "Week", "fr": "Semaine", "nl": "Week"},
    "period.month": {"en": "Month", "fr": "Mois", "nl": "Maand"},
    "period.year": {"en": "Year", "fr": "Année", "nl": "Jaar"},
    "period.ef": {
        "en": "Grid emission factor (kgCO2e/kWh, optional)",
        "fr": "Facteur d'émission du réseau (kgCO2e/kWh, optionnel)",
        "nl": "Emissiefactor van het net (kgCO2e/kWh, optioneel)",
    },
    "period.show": {"en": "Show", "fr": "Afficher", "nl": "Tonen"},
    "period.previous": {"en": "Previous", "fr": "Précédente", "nl": "Vorige"},
    "period.next": {"en": "Next", "fr": "Suivante", "nl": "Volgende"},
    "period.from_to": {
        "en": "From {start} to {end} (exclusive)",
        "fr": "Du {start} au {end} (exclu)",
        "nl": "Van {start} tot {end} (exclusief)",
    },
    "err.date": {
        "en": "Give a date as YYYY-MM-DD (for example 2016-06-15).",
        "fr": "Donnez une date AAAA-MM-JJ (par exemple 2016-06-15).",
        "nl": "Geef een datum als JJJJ-MM-DD (bijvoorbeeld 2016-06-15).",
    },
    "err.period": {
        "en": "Choose day, week, month or year.",
        "fr": "Choisissez jour, semaine, mois ou année.",
        "nl": "Kies dag, week, maand of jaar.",
    },
    "err.number": {
        "en": "Give a finite number, 0 or more.",
        "fr": "Donnez un nombre fini, 0 ou plus.",
        "nl": "Geef een eindig getal, 0 of meer.",
    },
    "err.nodata": {
        "en": "No readings for this period.",
        "fr": "Aucune mesure pour cette période.",
        "nl": "Geen metingen voor deze periode.",
    },
    "kpi.consumption": {
        "en": "Offtake (consumption from the grid)",
        "fr": "Prélèvement (réseau)",
        "nl": "Afname (net)",
    },
    "kpi.production": {
        "en": "Injection (fed into the grid)",
        "fr": "Injection (réseau)",
        "nl": "Injectie (net)",
    },
    "kpi.shared": {
        "en": "Shared in the community",
        "fr": "Partagé dans la communauté",
        "nl": "Gedeeld in de gemeenschap",
    },
    "kpi.grid_in": {
        "en": "Bought from suppliers",
        "fr": "Acheté aux fournisseurs",
        "nl": "Gekocht bij leveranciers",
    },
    "kpi.grid_out": {
        "en": "Sold to suppliers",
        "fr": "Vendu aux fournisseurs",
        "nl": "Verkocht aan leveranciers",
    },
    "kpi.self_sufficiency": {"en": "Self-sufficiency", "fr": "Autosuffisance", "nl": "Zelfvoorziening"},
    "kpi.self_consumption": {"en": "Self-consumption", "fr": "Autoconsommation", "nl": "Zelfverbruik"},
    "kpi.co2": {"en": "CO2 avoided", "fr": "CO2 évité", "nl": "Vermeden CO2"},
    "kpi.peak": {"en": "Peak offtake", "fr": "Pointe de prélèvement", "nl": "Piekafname"},
    "kpi.previous": {"en": "previous period", "fr": "période précédente", "nl": "vorige periode"},
    "kpi.unknown": {"en": "unknown", "fr": "inconnu", "nl": "onbekend"},
    "kpi.co2_hint": {
        "en": "No emission factor on this community: enter one in the period form.",
        "fr": "Pas de facteur d'émission: entrez-en un dans le formulaire.",
        "nl": "Geen emissiefactor: vul er een in het formulier in.",
    },
    "chart.energy": {
        "en": "Energy per interval (kWh)",
        "fr": "Énergie par intervalle (kWh)",
        "nl": "Energie per interval (kWh)",
    },
    "chart.flow": {"en": "Energy flows (kWh)", "fr": "Flux d'énergie (kWh)", "nl": "Energiestromen (kWh)"},
    "chart.gauges": {"en": "Indicators", "fr": "Indicateurs", "nl": "Indicatoren"},
    "chart.compare": {
        "en": "Comparison with the previous period",
        "fr": "Comparaison avec la période précédente",
        "nl": "Vergelijking met de vorige periode",
    },
    "chart.loading": {
        "en": "Loading the chart...",
        "fr": "Chargement du graphique...",
        "nl": "Grafiek laden...",
    },
    "table.members": {"en": "Per member", "fr": "Par membre", "nl": "Per lid"},
    "table.member": {"en": "Member", "fr": "Membre", "nl": "Lid"},
    "table.role": {"en": "Role", "fr": "Rôle", "nl": "Rol"},
    "table.hidden": {
        "en": "Member figures are visible to the community's manager and to each member for their own data.",
        "fr": "Les chiffres par membre sont visibles par le gestionnaire, et par chaque membre pour ses données.",
        "nl": "Cijfers per lid zijn zichtbaar voor de beheerder, en voor elk lid voor de eigen gegevens.",
    },
    "member.profile": {"en": "Profile", "fr": "Profil", "nl": "Profiel"},
    "member.devices": {"en": "Devices", "fr": "Équipements", "nl": "Toestellen"},
    "member.access_point": {
        "en": "Access point (EAN)",
        "fr": "Point d'accès (EAN)",
        "nl": "Toegangspunt (EAN)",
    },
    "member.locality": {"en": "Locality", "fr": "Localité", "nl": "Lokaliteit"},
    "member.energy": {"en": "Energy", "fr": "Énergie", "nl": "Energie"},
    "member.mine": {"en": "My page", "fr": "Ma page", "nl": "Mijn pagina"},
    "sharing.title": {
        "en": "Sharing and settlement",
        "fr": "Partage et décompte",
        "nl": "Delen en afrekening",
    },
    "sharing.method": {"en": "Sharing method", "fr": "Méthode de partage", "nl": "Verdeelmethode"},
    "sharing.received": {
        "en": "Shared kWh received",
        "fr": "kWh partagés reçus",
        "nl": "Ontvangen gedeelde kWh",
    },
    "sharing.given": {"en": "Shared kWh given", "fr": "kWh partagés donnés", "nl": "Gegeven gedeelde kWh"},
    "sharing.month": {"en": "Month", "fr": "Mois", "nl": "Maand"},
    "sharing.prices": {"en": "Prices (EUR/kWh)", "fr": "Prix (EUR/kWh)", "nl": "Prijzen (EUR/kWh)"},
    "sharing.pricing": {
        "en": "Price of shared energy",
        "fr": "Prix de l'énergie partagée",
        "nl": "Prijs van gedeelde energie",
    },
    "sharing.supplier": {
        "en": "Supplier energy price",
        "fr": "Prix de l'énergie du fournisseur",
        "nl": "Energieprijs leverancier",
    },
    "sharing.feed_in": {"en": "Feed-in value", "fr": "Valeur d'injection", "nl": "Injectievergoeding"},
    "sharing.grid_fee": {"en": "Grid fee", "fr": "Tarif de réseau", "nl": "Nettarief"},
    "sharing.community_price": {
        "en": "Community price",
        "fr": "Prix communautaire",
        "nl": "Gemeenschapsprijs",
    },
    "sharing.statement": {
        "en": "Monthly statement (EUR)",
        "fr": "Décompte mensuel (EUR)",
        "nl": "Maandafrekening (EUR)",
    },
    "sharing.compute": {
        "en": "Draw up the statement",
        "fr": "Établir le décompte",
        "nl": "Afrekening opmaken",
    },
    "sharing.no_prices": {
        "en": "Enter the prices to draw up the statement (this community has none stored).",
        "fr": "Entrez les prix pour établir le décompte (cette communauté n'en a pas).",
        "nl": "Vul de prijzen in om de afrekening op te maken (deze gemeenschap heeft er geen).",
    },
    "sharing.fairness": {
        "en": "Fairness (Shapley values, JSON)",
        "fr": "Équité (valeurs de Shapley, JSON)",
        "nl": "Billijkheid (Shapley-waarden, JSON)",
    },
    "sharing.savings": {"en": "Savings", "fr": "Économies", "nl": "Besparing"},
    "sharing.net": {"en": "Net cost", "fr": "Coût net", "nl": "Nettokost"},
    "ngsi.title": {
        "en": "Entity browser (NGSI-LD)",
        "fr": "Navigateur d'entités (NGSI-LD)",
        "nl": "Entiteitenbrowser (NGSI-LD)",
    },
    "ngsi.type": {"en": "Entity type", "fr": "Type d'entité", "nl": "Entiteitstype"},
    "ngsi.q": {
        "en": 'Query (q), e.g. roleType=="prosumer"',
        "fr": 'Requête (q), p. ex. roleType=="prosumer"',
        "nl": 'Query (q), bv. roleType=="prosumer"',
    },
    "ngsi.search": {"en": "Search", "fr": "Chercher", "nl": "Zoeken"},
    "ngsi.count": {"en": "{n} entities", "fr": "{n} entités", "nl": "{n} entiteiten"},
    "ngsi.any": {"en": "(any type)", "fr": "(tout type)", "nl": "(elk type)"},
    "error.title": {
        "en": "Something went wrong",
        "fr": "Une erreur s'est produite",
        "nl": "Er ging iets mis",
    },
    "error.404": {
        "en": "This page does not exist.",
        "fr": "Cette page n'existe pas.",
        "nl": "Deze pagina bestaat niet.",
    },
    "error.403": {
        "en": "You may not see this page. Log in with an account that may.",
        "fr": "Vous ne pouvez pas voir cette page. Connectez-vous avec un compte autorisé.",
        "nl": "U mag deze pagina niet zien. Meld u aan met een account dat dat mag.",
    },
    "error.500": {
        "en": "The node could not build this page; the details are in its log.",
        "fr": "Le nœud n'a pas pu construire cette page; les détails sont dans son journal.",
        "nl": "Het knooppunt kon deze pagina niet maken; de details staan in zijn logboek.",
    },
    "error.back": {
        "en": "Back to the communities",
        "fr": "Retour aux communautés",
        "nl": "Terug naar de gemeenschappen",
    },
    "unavailable": {
        "en": "not available on this node",
        "fr": "non disponible sur ce nœud",
        "nl": "niet beschikbaar op dit knooppunt",
    },
}


def translate(key: str, lang: str, /, **values: object) -> str:
    """The message ``key`` in ``lang`` (English when missing; the key itself when unknown).

    Parameters
    ----------
    key
        Message key, e.g. ``"nav.home"``.
    lang
        Language code (``en``, ``fr`` or ``nl``).
    values
        Values of the ``{name}`` placeholders.
    """
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry.get(DEFAULT_LANGUAGE, key)
    return text.format(**values) if values else text


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The language to answer in: query parameter, cookie, then the best ``Accept-Language`` match.

    Parameters
    ----------
    query, cookie
        ``lang`` from the query string and from the cookie (ignored unless supported).
    accept_language
        The browser's header, e.g. ``"fr-BE,fr;q=0.9,en;q=0.5"``.
    """
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower()[:2]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if code in LANGUAGES and q > best_q:
            best, best_q = code, q
    return best


def catalogue(lang: str) -> Mapping[str, str]:
    """Every message in ``lang`` (English where missing), for the page scripts."""
    return {key: translate(key, lang) for key in MESSAGES}
