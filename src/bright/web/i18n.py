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

# --- creating and running a community (issue 16, bright.web.onboarding): key -> (en, fr, nl) ---
# fmt: off
_ONBOARDING: dict[str, tuple[str, str, str]] = {
    "onb.title": ("Create and run a community", "Créer et gérer une communauté", "Een gemeenschap oprichten en beheren"),
    "onb.intro": (
        "Set up the community, invite members, collect consents and prepare the DSO declaration.",
        "Configurez la communauté, invitez les membres, recueillez les consentements et préparez la déclaration au GRD.",
        "Richt de gemeenschap in, nodig leden uit, verzamel toestemmingen en bereid de aangifte bij de DNB voor.",
    ),
    "onb.tenant": ("Hosted as tenant {tenant}", "Hébergée comme locataire {tenant}", "Gehost als tenant {tenant}"),
    "onb.new": ("Create a community", "Créer une communauté", "Een gemeenschap oprichten"),
    "onb.members": ("members", "membres", "leden"),
    "onb.none": ("No community yet.", "Pas encore de communauté.", "Nog geen gemeenschap."),
    "onb.step.card": ("1. The community card", "1. La carte de la communauté", "1. De kaart van de gemeenschap"),
    "onb.name": ("Name", "Nom", "Naam"),
    "onb.slug": ("Short name (in its id)", "Nom court (dans son identifiant)", "Korte naam (in de id)"),
    "onb.slug_hint": ("letters, digits, hyphens; from the name when empty", "lettres, chiffres, tirets ; tiré du nom si vide", "letters, cijfers, koppeltekens; uit de naam indien leeg"),
    "onb.description": ("Description", "Description", "Beschrijving"),
    "onb.postal_code": ("Postal code", "Code postal", "Postcode"),
    "onb.municipality": ("Municipality", "Commune", "Gemeente"),
    "onb.step.legal": ("2. Legal form", "2. Forme juridique", "2. Rechtsvorm"),
    "onb.legal_form": ("Legal form", "Forme juridique", "Rechtsvorm"),
    "onb.legal.REC": ("Renewable energy community (REC)", "Communauté d'énergie renouvelable (CER)", "Hernieuwbare-energiegemeenschap (HEG)"),
    "onb.legal.CEC": ("Citizen energy community (CEC)", "Communauté d'énergie citoyenne (CEC)", "Burgerenergiegemeenschap (BEG)"),
    "onb.step.perimeter": ("3. Perimeter and locality", "3. Périmètre et localité", "3. Perimeter en lokaliteit"),
    "onb.perimeter": ("Perimeter", "Périmètre", "Perimeter"),
    "onb.locality": ("Locality", "Localité", "Lokaliteit"),
    "onb.locality.building": ("one building", "un bâtiment", "één gebouw"),
    "onb.locality.lv_cabin": ("behind one LV cabin", "derrière une cabine BT", "achter één LS-cabine"),
    "onb.locality.substation": ("behind one substation", "derrière un poste", "achter één onderstation"),
    "onb.locality_name": ("Building address or DSO name of the cabin/substation", "Adresse du bâtiment ou nom GRD de la cabine/du poste", "Adres van het gebouw of DNB-naam van de cabine/het onderstation"),
    "onb.locality_hint": ("as on the DSO's documents", "comme sur les documents du GRD", "zoals op de documenten van de DNB"),
    "onb.step.sharing": ("4. Sharing", "4. Partage", "4. Delen"),
    "onb.sharing_method": ("Sharing method", "Méthode de partage", "Verdeelmethode"),
    "onb.method.pro_rata": ("pro rata of consumption", "au prorata de la consommation", "pro rata van het verbruik"),
    "onb.method.fixed": ("fixed percentages", "pourcentages fixes", "vaste percentages"),
    "onb.method.hybrid": ("hybrid (fixed, then pro rata)", "hybride (fixe, puis prorata)", "hybride (vast, dan pro rata)"),
    "onb.method.maximum": ("maximum sharing", "partage maximal", "maximaal delen"),
    "onb.step.tariffs": ("5. Tariffs (EUR/kWh)", "5. Tarifs (EUR/kWh)", "5. Tarieven (EUR/kWh)"),
    "onb.supplier_price": ("Supplier price", "Prix du fournisseur", "Prijs van de leverancier"),
    "onb.feed_in_price": ("Feed-in value", "Valeur d'injection", "Injectievergoeding"),
    "onb.community_price": ("Community price", "Prix communautaire", "Gemeenschapsprijs"),
    "onb.step.data": ("6. Data policy", "6. Politique de données", "6. Gegevensbeleid"),
    "onb.card_open": ("The community card is open data", "La carte de la communauté est ouverte", "De kaart van de gemeenschap is open data"),
    "onb.kpis_open": ("Community KPIs are open data", "Les indicateurs de la communauté sont ouverts", "De indicatoren van de gemeenschap zijn open data"),
    "onb.member_private": ("Member data stays private: only the member and the manager see it.", "Les données des membres restent privées : seuls le membre et le gestionnaire les voient.", "Ledengegevens blijven privé: alleen het lid en de beheerder zien ze."),
    "onb.create": ("Create the community", "Créer la communauté", "De gemeenschap oprichten"),
    "onb.tariffs_line": ("Supplier {supplier} · feed-in {feed_in} · community {community} EUR/kWh", "Fournisseur {supplier} · injection {feed_in} · communauté {community} EUR/kWh", "Leverancier {supplier} · injectie {feed_in} · gemeenschap {community} EUR/kWh"),
    "onb.members_title": ("Members and consents", "Membres et consentements", "Leden en toestemmingen"),
    "onb.role": ("Role", "Rôle", "Rol"),
    "onb.role.consumer": ("consumer", "consommateur", "verbruiker"),
    "onb.role.producer": ("producer", "producteur", "producent"),
    "onb.role.prosumer": ("prosumer", "prosommateur", "prosument"),
    "onb.purpose.sharing": ("Sharing", "Partage", "Delen"),
    "onb.purpose.sbright": ("S-BRIGHT", "S-BRIGHT", "S-BRIGHT"),
    "onb.purpose.network": ("Network", "Réseau", "Netwerk"),
    "onb.purpose_text.sharing": ("My meter data may be used to share energy in the community (required to be declared to the DSO)", "Mes données de comptage peuvent servir au partage d'énergie (nécessaire pour la déclaration au GRD)", "Mijn meetgegevens mogen dienen om energie te delen (nodig voor de aangifte bij de DNB)"),
    "onb.purpose_text.sbright": ("My questionnaire answers may be used for the S-BRIGHT profile", "Mes réponses au questionnaire peuvent servir au profil S-BRIGHT", "Mijn antwoorden op de vragenlijst mogen dienen voor het S-BRIGHT-profiel"),
    "onb.purpose_text.network": ("My member-level data may be shared with the network of communities", "Mes données individuelles peuvent être partagées avec le réseau des communautés", "Mijn individuele gegevens mogen gedeeld worden met het netwerk van gemeenschappen"),
    "onb.granted_on": ("granted {date}", "accordé le {date}", "gegeven op {date}"),
    "onb.revoked_on": ("revoked {date}", "retiré le {date}", "ingetrokken op {date}"),
    "onb.no_members": ("No member yet: invite them below.", "Pas encore de membre : invitez-les ci-dessous.", "Nog geen leden: nodig ze hieronder uit."),
    "onb.invite_title": ("Invite a member", "Inviter un membre", "Een lid uitnodigen"),
    "onb.email_optional": ("E-mail (optional)", "E-mail (facultatif)", "E-mail (optioneel)"),
    "onb.invite": ("Create an invitation", "Créer une invitation", "Een uitnodiging maken"),
    "onb.invite_link": ("Personal link:", "Lien personnel :", "Persoonlijke link:"),
    "onb.invite_expires": ("Valid until {date} (UTC), once.", "Valable jusqu'au {date} (UTC), une fois.", "Geldig tot {date} (UTC), één keer."),
    "onb.email_text": ("E-mail text to copy", "Texte de l'e-mail à copier", "E-mailtekst om te kopiëren"),
    "onb.key_title": ("Sharing key", "Clé de répartition", "Verdeelsleutel"),
    "onb.save_key": ("Save the key", "Enregistrer la clé", "De sleutel opslaan"),
    "onb.dso_title": ("DSO and regulator", "GRD et régulateur", "DNB en regulator"),
    "onb.dso_download": ("Download the DSO pack (CSV)", "Télécharger le dossier GRD (CSV)", "Het DNB-pakket downloaden (CSV)"),
    "onb.statutes": ("Statutes checklist", "Liste de contrôle des statuts", "Checklist van de statuten"),
    "onb.back": ("Back to the community", "Retour à la communauté", "Terug naar de gemeenschap"),
    "onb.join_title": ("Join {name}", "Rejoindre {name}", "Lid worden van {name}"),
    "onb.you": ("You", "Vous", "U"),
    "onb.your_name": ("Your name", "Votre nom", "Uw naam"),
    "onb.access_point": ("Your access point", "Votre point d'accès", "Uw toegangspunt"),
    "onb.ean_hint": ("18 digits starting with 54, on your energy bill", "18 chiffres commençant par 54, sur votre facture", "18 cijfers die met 54 beginnen, op uw factuur"),
    "onb.assets": ("Your installations (optional)", "Vos installations (facultatif)", "Uw installaties (optioneel)"),
    "onb.pv_kwp": ("Solar panels (kWp)", "Panneaux solaires (kWc)", "Zonnepanelen (kWp)"),
    "onb.battery_kwh": ("Home battery (kWh)", "Batterie domestique (kWh)", "Thuisbatterij (kWh)"),
    "onb.ev_kw": ("EV charger (kW)", "Borne de recharge (kW)", "Laadpaal (kW)"),
    "onb.heat_pump_kw": ("Heat pump (kW)", "Pompe à chaleur (kW)", "Warmtepomp (kW)"),
    "onb.consents": ("Consents", "Consentements", "Toestemmingen"),
    "onb.account": ("Your account (to see your data and change your consents)", "Votre compte (pour voir vos données et modifier vos consentements)", "Uw account (om uw gegevens te zien en uw toestemmingen te wijzigen)"),
    "onb.join": ("Join the community", "Rejoindre la communauté", "Lid worden"),
    "onb.welcome": ("Welcome!", "Bienvenue !", "Welkom!"),
    "onb.joined_text": ("You are now a member of {name}.", "Vous êtes maintenant membre de {name}.", "U bent nu lid van {name}."),
    "onb.questionnaire_text": ("The S-BRIGHT questionnaire:", "Le questionnaire S-BRIGHT :", "De S-BRIGHT-vragenlijst:"),
    "onb.go_me": ("Log in to manage your consents", "Se connecter pour gérer vos consentements", "Aanmelden om uw toestemmingen te beheren"),
    "onb.my_consents": ("My consents and data", "Mes consentements et mes données", "Mijn toestemmingen en gegevens"),
    "onb.status": ("Status", "Statut", "Status"),
    "onb.revoke": ("Revoke", "Retirer", "Intrekken"),
    "onb.grant": ("Grant", "Accorder", "Geven"),
    "onb.export": ("Download all my data (ZIP)", "Télécharger toutes mes données (ZIP)", "Al mijn gegevens downloaden (ZIP)"),
    "onb.leave": ("Leave the community and erase my data", "Quitter la communauté et effacer mes données", "De gemeenschap verlaten en mijn gegevens wissen"),
    "onb.left": ("You left the community", "Vous avez quitté la communauté", "U hebt de gemeenschap verlaten"),
    "onb.left_text": ("Your data was handled per the community's policy: {mode}.", "Vos données ont été traitées selon la politique de la communauté : {mode}.", "Uw gegevens werden behandeld volgens het beleid van de gemeenschap: {mode}."),
    "onb.managers_only": ("Only a manager of this community can open this page.", "Seul un gestionnaire de la communauté peut ouvrir cette page.", "Alleen een beheerder van deze gemeenschap kan deze pagina openen."),
    "onb.members_only": ("This page is for members.", "Cette page est réservée aux membres.", "Deze pagina is voor leden."),
    "onb.leave_confirm": ("Confirm that you want to leave.", "Confirmez que vous voulez partir.", "Bevestig dat u wilt vertrekken."),
}
# fmt: on
MESSAGES.update({key: {"en": en, "fr": fr, "nl": nl} for key, (en, fr, nl) in _ONBOARDING.items()})


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


def _m(en: str, fr: str, nl: str) -> dict[str, str]:
    return {"en": en, "fr": fr, "nl": nl}


#: Messages of the analysis, sharing-key, S-BRIGHT, ledger and network pages.
MESSAGES.update(
    {
        # menus
        "nav.community": _m("Community menu", "Menu de la communauté", "Menu van de gemeenschap"),
        "nav.energy": _m("Energy", "Énergie", "Energie"),
        "nav.forecast": _m("Forecast", "Prévision", "Voorspelling"),
        "nav.flexibility": _m("Flexibility", "Flexibilité", "Flexibiliteit"),
        "nav.fairness": _m("Fairness", "Équité", "Billijkheid"),
        "nav.sharing_key": _m("Sharing key", "Clé de répartition", "Verdeelsleutel"),
        "nav.questionnaire": _m("My questionnaire", "Mon questionnaire", "Mijn vragenlijst"),
        # forecast
        "forecast.title": _m("Day-ahead forecast", "Prévision du lendemain", "Voorspelling voor morgen"),
        "forecast.legend": _m("Day and target", "Jour et cible", "Dag en doel"),
        "forecast.day": _m("Day (YYYY-MM-DD)", "Jour (AAAA-MM-JJ)", "Dag (JJJJ-MM-DD)"),
        "forecast.target": _m("Community or member", "Communauté ou membre", "Gemeenschap of lid"),
        "forecast.none": _m(
            "No forecast is stored for {day}.",
            "Aucune prévision n'est enregistrée pour le {day}.",
            "Geen voorspelling opgeslagen voor {day}.",
        ),
        "forecast.make": _m(
            "Make the forecast of {day}", "Faire la prévision du {day}", "Voorspelling van {day} maken"
        ),
        "forecast.make_hint": _m(
            "Trains a model per member and quantity on the readings known the day before at 12:00 (can take a minute).",
            "Entraîne un modèle par membre et grandeur sur les relevés connus la veille à 12 h (peut prendre une minute).",
            "Traint een model per lid en grootheid op de metingen die de dag ervoor om 12 u gekend zijn (kan een minuut duren).",
        ),
        "forecast.consumption": _m("Consumption", "Consommation", "Verbruik"),
        "forecast.production": _m("PV production", "Production PV", "PV-productie"),
        "forecast.median_total": _m(
            "Forecast (median), day", "Prévision (médiane), jour", "Voorspelling (mediaan), dag"
        ),
        "forecast.median": _m("Forecast (median)", "Prévision (médiane)", "Voorspelling (mediaan)"),
        "forecast.band": _m("80 % band (q10–q90)", "Bande de 80 % (q10–q90)", "80 %-band (q10–q90)"),
        "forecast.measured": _m("Measured", "Mesuré", "Gemeten"),
        "forecast.mae": _m(
            "Mean absolute error (per 15 min)",
            "Erreur absolue moyenne (par 15 min)",
            "Gemiddelde absolute fout (per 15 min)",
        ),
        "forecast.coverage": _m(
            "Measured inside the 80 % band", "Mesures dans la bande de 80 %", "Metingen binnen de 80 %-band"
        ),
        "forecast.model": _m("Model", "Modèle", "Model"),
        "forecast.reason": _m("Why this model", "Pourquoi ce modèle", "Waarom dit model"),
        "forecast.issued": _m("Issued", "Émise", "Uitgegeven"),
        "forecast.stored_model": _m(
            "Stored model and scores", "Modèle enregistré et scores", "Opgeslagen model en scores"
        ),
        "forecast.trained_until": _m("trained until {day}", "entraîné jusqu'au {day}", "getraind tot {day}"),
        "forecast.chart": _m(
            "Forecast, band and measurement", "Prévision, bande et mesure", "Voorspelling, band en meting"
        ),
        "forecast.backtest": _m(
            "Backtest the last 14 days", "Tester sur les 14 derniers jours", "Backtest op de laatste 14 dagen"
        ),
        "forecast.backtest_busy": _m("computing…", "calcul…", "bezig…"),
        "forecast.backtest_caption": _m(
            "Rolling-origin backtest of {quantity}, {first} to {last}, issued D-1 12:00",
            "Test à origine glissante de {quantity}, du {first} au {last}, émis J-1 12 h",
            "Rolling-origin backtest van {quantity}, {first} tot {last}, uitgegeven D-1 12 u",
        ),
        "forecast.skill": _m(
            "Skill vs seasonal naive", "Gain vs naïf saisonnier", "Skill t.o.v. seizoensnaïef"
        ),
        "forecast.days": _m("Days", "Jours", "Dagen"),
        "forecast.prev_day": _m("Previous day", "Jour précédent", "Vorige dag"),
        "forecast.next_day": _m("Next day", "Jour suivant", "Volgende dag"),
        "forecast.err_days": _m(
            "Days must be a whole number from 1 to 60.",
            "Le nombre de jours doit être un entier de 1 à 60.",
            "Het aantal dagen moet een geheel getal van 1 tot 60 zijn.",
        ),
        # flexibility
        "flex.title": _m("Flexibility schedule", "Planning de flexibilité", "Flexibiliteitsplanning"),
        "flex.legend": _m("Day, mode and limit", "Jour, mode et limite", "Dag, modus en limiet"),
        "flex.mode": _m("Mode", "Mode", "Modus"),
        "flex.mode_individual": _m("Every member alone", "Chaque membre seul", "Elk lid apart"),
        "flex.mode_community": _m("The community together", "La communauté ensemble", "De gemeenschap samen"),
        "flex.mode_compare": _m("Compare both", "Comparer les deux", "Beide vergelijken"),
        "flex.limit": _m("Connection limit", "Limite de raccordement", "Aansluitlimiet"),
        "flex.err_mode": _m("Choose one of: {modes}.", "Choisissez parmi : {modes}.", "Kies uit: {modes}."),
        "flex.err_limit": _m(
            "Give a number of kW above 0, or leave empty.",
            "Indiquez un nombre de kW supérieur à 0, ou laissez vide.",
            "Geef een aantal kW groter dan 0, of laat leeg.",
        ),
        "flex.status": _m("Status", "Statut", "Status"),
        "flex.cost": _m("Cost of the day", "Coût de la journée", "Kost van de dag"),
        "flex.value": _m("Value of flexibility", "Valeur de la flexibilité", "Waarde van flexibiliteit"),
        "flex.sources": _m(
            "Prices: {prices} · forecasts: {forecasts}",
            "Prix : {prices} · prévisions : {forecasts}",
            "Prijzen: {prices} · voorspellingen: {forecasts}",
        ),
        "flex.chart_flows": _m(
            "Community flows and price",
            "Flux de la communauté et prix",
            "Stromen van de gemeenschap en prijs",
        ),
        "flex.chart_devices": _m("Setpoints per device", "Consignes par appareil", "Setpunten per toestel"),
        "flex.devices": _m("Devices", "Appareils", "Toestellen"),
        "flex.device": _m("Device", "Appareil", "Toestel"),
        "flex.kind": _m("Kind", "Type", "Soort"),
        "flex.energy_in": _m("Energy in", "Énergie absorbée", "Energie in"),
        "flex.energy_out": _m("Energy out", "Énergie restituée", "Energie uit"),
        "flex.stack": _m(
            "Value stacking per commitment",
            "Cumul des valeurs par engagement",
            "Gestapelde waarde per verbintenis",
        ),
        "flex.stack_hint": _m(
            "Value = what the member would pay without flexibility − what it pays with the schedule (hover a cell for both).",
            "Valeur = ce que le membre paierait sans flexibilité − ce qu'il paie avec le planning (survolez une cellule).",
            "Waarde = wat het lid zou betalen zonder flexibiliteit − wat het betaalt met de planning (beweeg over een cel).",
        ),
        "flex.ref_opt": _m(
            "reference {ref} EUR, scheduled {opt} EUR",
            "référence {ref} EUR, planifié {opt} EUR",
            "referentie {ref} EUR, gepland {opt} EUR",
        ),
        "flex.no_stack": _m(
            "No value to stack on this day.", "Aucune valeur ce jour-là.", "Geen waarde op deze dag."
        ),
        "flex.total": _m("Total", "Total", "Totaal"),
        "flex.unmet": _m(
            "What was not met, and why",
            "Ce qui n'a pas été tenu, et pourquoi",
            "Wat niet gehaald werd, en waarom",
        ),
        "flex.all_met": _m(
            "Every commitment was met.",
            "Tous les engagements ont été tenus.",
            "Alle verbintenissen werden gehaald.",
        ),
        "flex.item": _m("Commitment", "Engagement", "Verbintenis"),
        "flex.constraint": _m("Constraint", "Contrainte", "Beperking"),
        "flex.time": _m("Time", "Heure", "Tijd"),
        "flex.shortfall": _m("Shortfall", "Manque", "Tekort"),
        "flex.penalty": _m("Penalty", "Pénalité", "Boete"),
        "flex.compare": _m("Alone vs together", "Seul ou ensemble", "Alleen of samen"),
        "flex.price": _m("Price", "Prix", "Prijs"),
        "flex.net": _m("Net import", "Prélèvement net", "Netto afname"),
        # fairness
        "fair.title": _m(
            "Fairness (Shapley values)", "Équité (valeurs de Shapley)", "Billijkheid (Shapley-waarden)"
        ),
        "fair.about": _m(
            "What each member brings to the community's savings, averaged over every order of joining, beside what the settlement gave it.",
            "Ce que chaque membre apporte aux économies de la communauté, en moyenne sur tous les ordres d'adhésion, à côté de ce que le règlement lui a donné.",
            "Wat elk lid bijdraagt aan de besparing van de gemeenschap, gemiddeld over alle volgordes van toetreden, naast wat de afrekening het gaf.",
        ),
        "fair.err_year": _m(
            "Choose a day, a week or a month (a year takes too long here).",
            "Choisissez un jour, une semaine ou un mois (une année prend trop de temps ici).",
            "Kies een dag, week of maand (een jaar duurt hier te lang).",
        ),
        "fair.total": _m(
            "Savings of the community", "Économies de la communauté", "Besparing van de gemeenschap"
        ),
        "fair.gap": _m(
            "Gap settlement vs Shapley", "Écart règlement vs Shapley", "Verschil afrekening vs Shapley"
        ),
        "fair.method": _m("Computation", "Calcul", "Berekening"),
        "fair.exact": _m(
            "exact (every coalition)", "exact (toutes les coalitions)", "exact (alle coalities)"
        ),
        "fair.sampled": _m("sampled ({n} orders)", "échantillonné ({n} ordres)", "gesampled ({n} volgordes)"),
        "fair.chart": _m(
            "Shapley value and settled savings per member",
            "Valeur de Shapley et économies réglées par membre",
            "Shapley-waarde en afgerekende besparing per lid",
        ),
        "fair.ci": _m("95 % interval", "Intervalle à 95 %", "95 %-interval"),
        "fair.settled": _m("Settled savings", "Économies réglées", "Afgerekende besparing"),
        "fair.diff": _m("Settled − Shapley", "Réglé − Shapley", "Afgerekend − Shapley"),
        # sharing key
        "key.title": _m("Sharing key", "Clé de répartition", "Verdeelsleutel"),
        "key.about": _m(
            "Choose how the injection of the community is shared; preview a day before saving.",
            "Choisissez comment l'injection de la communauté est répartie ; prévisualisez un jour avant d'enregistrer.",
            "Kies hoe de injectie van de gemeenschap verdeeld wordt; bekijk een dag vooraf voor u bewaart.",
        ),
        "key.method_legend": _m("Method", "Méthode", "Methode"),
        "key.method": _m("Key type", "Type de clé", "Soort sleutel"),
        "key.m_fixed": _m("Fixed key, one round", "Clé fixe, un tour", "Vaste sleutel, één ronde"),
        "key.m_fixed_multi_round": _m(
            "Fixed key, several rounds", "Clé fixe, plusieurs tours", "Vaste sleutel, meerdere rondes"
        ),
        "key.m_pro_rata": _m(
            "Pro rata of consumption", "Au prorata de la consommation", "Pro rata van het verbruik"
        ),
        "key.m_hybrid": _m(
            "Hybrid: fixed part, then pro rata",
            "Hybride : part fixe, puis prorata",
            "Hybride: vast deel, dan pro rata",
        ),
        "key.m_maximum": _m(
            "Maximum sharing (reference)", "Partage maximal (référence)", "Maximaal delen (referentie)"
        ),
        "key.hybrid": _m(
            "Fixed part of the hybrid key", "Part fixe de la clé hybride", "Vast deel van de hybride sleutel"
        ),
        "key.day": _m("Preview day (YYYY-MM-DD)", "Jour d'aperçu (AAAA-MM-JJ)", "Voorbeelddag (JJJJ-MM-DD)"),
        "key.percent_legend": _m(
            "Fixed key: percent of the pool per member",
            "Clé fixe : pourcentage du volume par membre",
            "Vaste sleutel: percentage van de pool per lid",
        ),
        "key.keyed_only": _m(
            "Used by: {methods}. The percentages sum to 100.",
            "Utilisée par : {methods}. Les pourcentages totalisent 100.",
            "Gebruikt door: {methods}. De percentages tellen op tot 100.",
        ),
        "key.preview": _m("Preview", "Aperçu", "Voorbeeld"),
        "key.save": _m("Save", "Enregistrer", "Bewaren"),
        "key.saved": _m(
            "The sharing setting was saved.",
            "Le réglage de répartition a été enregistré.",
            "De verdeelinstelling werd bewaard.",
        ),
        "key.preview_title": _m(
            "Shared energy on {day}", "Énergie partagée le {day}", "Gedeelde energie op {day}"
        ),
        "key.current": _m("Current setting", "Réglage actuel", "Huidige instelling"),
        "key.proposed": _m("Proposed setting", "Réglage proposé", "Voorgestelde instelling"),
        "key.chart": _m(
            "Shared energy received per member",
            "Énergie partagée reçue par membre",
            "Ontvangen gedeelde energie per lid",
        ),
        "key.err_method": _m(
            "Choose one of: {methods}.", "Choisissez parmi : {methods}.", "Kies uit: {methods}."
        ),
        "key.err_hybrid": _m(
            "Give a percentage from 0 to 100.",
            "Indiquez un pourcentage de 0 à 100.",
            "Geef een percentage van 0 tot 100.",
        ),
        "key.err_producer": _m(
            "A producer-only member receives nothing: give 0 or leave empty.",
            "Un membre uniquement producteur ne reçoit rien : indiquez 0 ou laissez vide.",
            "Een lid dat enkel produceert ontvangt niets: geef 0 of laat leeg.",
        ),
        "key.err_sum": _m(
            "The percentages sum to {total} %, not 100 %.",
            "Les pourcentages totalisent {total} %, et non 100 %.",
            "De percentages tellen op tot {total} %, niet 100 %.",
        ),
        # S-BRIGHT
        "sb.title": _m("S-BRIGHT questionnaire", "Questionnaire S-BRIGHT", "S-BRIGHT-vragenlijst"),
        "sb.profile": _m("Your profile", "Votre profil", "Uw profiel"),
        "sb.probability": _m("probability", "probabilité", "waarschijnlijkheid"),
        "sb.no_category": _m(
            "No category yet (too few answers in the community).",
            "Pas encore de catégorie (trop peu de réponses dans la communauté).",
            "Nog geen categorie (te weinig antwoorden in de gemeenschap).",
        ),
        "sb.scores": _m("Scores per dimension", "Scores par dimension", "Scores per dimensie"),
        "sb.dimension": _m("Dimension", "Dimension", "Dimensie"),
        "sb.score": _m("Score", "Score", "Score"),
        "sb.answered": _m("Answered", "Répondu", "Beantwoord"),
        "sb.services": _m("Recommended services", "Services recommandés", "Aanbevolen diensten"),
        "sb.incentives": _m("Recommended incentives", "Incitants recommandés", "Aanbevolen stimulansen"),
        "sb.suitability": _m("suitability", "adéquation", "geschiktheid"),
        "sb.why": _m("why", "pourquoi", "waarom"),
        "sb.evidence": _m("{n} studies", "{n} études", "{n} studies"),
        "sb.consented": _m(
            "Consent given on {date}.", "Consentement donné le {date}.", "Toestemming gegeven op {date}."
        ),
        "sb.simulated": _m(
            "simulated answers (demo)", "réponses simulées (démo)", "gesimuleerde antwoorden (demo)"
        ),
        "sb.form": _m("Answer the questionnaire", "Répondre au questionnaire", "De vragenlijst invullen"),
        "sb.consent": _m(
            "I agree to the processing of my answers as described above.",
            "J'accepte le traitement de mes réponses décrit ci-dessus.",
            "Ik ga akkoord met de verwerking van mijn antwoorden zoals hierboven beschreven.",
        ),
        "sb.submit": _m("Send my answers", "Envoyer mes réponses", "Mijn antwoorden versturen"),
        "sb.withdraw": _m(
            "Withdraw my consent and erase my answers",
            "Retirer mon consentement et effacer mes réponses",
            "Mijn toestemming intrekken en mijn antwoorden wissen",
        ),
        "sb.saved": _m(
            "Your answers were saved; your profile is below.",
            "Vos réponses ont été enregistrées ; votre profil est ci-dessous.",
            "Uw antwoorden werden bewaard; uw profiel staat hieronder.",
        ),
        "sb.withdrawn": _m(
            "Your answers and profile were erased.",
            "Vos réponses et votre profil ont été effacés.",
            "Uw antwoorden en profiel werden gewist.",
        ),
        "sb.no_profile": _m(
            "This member has not answered the questionnaire.",
            "Ce membre n'a pas répondu au questionnaire.",
            "Dit lid heeft de vragenlijst niet ingevuld.",
        ),
        "sb.err_consent": _m(
            "Tick the consent box: without consent nothing is stored.",
            "Cochez la case de consentement : sans consentement rien n'est enregistré.",
            "Vink de toestemming aan: zonder toestemming wordt niets bewaard.",
        ),
        "sb.err_option": _m(
            "Choose one of the answers shown.",
            "Choisissez une des réponses proposées.",
            "Kies een van de getoonde antwoorden.",
        ),
        "sb.mix": _m(
            "Engagement of the community", "Engagement de la communauté", "Betrokkenheid van de gemeenschap"
        ),
        "sb.mix_about": _m(
            "The members' S-BRIGHT categories (from their consented answers) and what suits each group.",
            "Les catégories S-BRIGHT des membres (selon leurs réponses consenties) et ce qui convient à chaque groupe.",
            "De S-BRIGHT-categorieën van de leden (uit hun antwoorden met toestemming) en wat elke groep past.",
        ),
        "sb.mix_hidden": _m(
            "Shown once at least {n} members are classified.",
            "Affiché dès que {n} membres au moins sont classés.",
            "Getoond zodra minstens {n} leden ingedeeld zijn.",
        ),
        "sb.classified": _m("Members classified", "Membres classés", "Ingedeelde leden"),
        "sb.categories": _m("Categories", "Catégories", "Categorieën"),
        "sb.chart": _m("Members per category", "Membres par catégorie", "Leden per categorie"),
        "sb.model": _m("Model quality", "Qualité du modèle", "Kwaliteit van het model"),
        "sb.converged": _m("Converged", "Convergé", "Geconvergeerd"),
        "sb.entropy": _m("relative entropy", "entropie relative", "relatieve entropie"),
        # ledger and DVPP
        "ledger.title": _m("Ledger", "Registre", "Register"),
        "ledger.about": _m(
            "Signed settlement and flexibility records in a Merkle log; heads cosigned by the members' nodes.",
            "Enregistrements signés de règlement et de flexibilité dans un journal de Merkle ; têtes cosignées par les nœuds des membres.",
            "Ondertekende afrekenings- en flexibiliteitsrecords in een Merkle-log; koppen medeondertekend door de knooppunten van de leden.",
        ),
        "ledger.community": _m("Community", "Communauté", "Gemeenschap"),
        "ledger.size": _m("Records", "Enregistrements", "Records"),
        "ledger.quorum": _m("Quorum", "Quorum", "Quorum"),
        "ledger.members": _m("members", "membres", "leden"),
        "ledger.peers": _m("Peers", "Pairs", "Peers"),
        "ledger.verify_title": _m(
            "Check a record's inclusion proof",
            "Vérifier la preuve d'inclusion d'un enregistrement",
            "Inclusiebewijs van een record controleren",
        ),
        "ledger.record": _m("Record number", "Numéro d'enregistrement", "Recordnummer"),
        "ledger.verify": _m(
            "Check in this browser", "Vérifier dans ce navigateur", "In deze browser controleren"
        ),
        "ledger.ok": _m(
            "Included: the path leads to the signed head's root",
            "Inclus : le chemin mène à la racine de la tête signée",
            "Opgenomen: het pad leidt naar de wortel van de ondertekende kop",
        ),
        "ledger.bad": _m(
            "NOT included: the roots differ",
            "NON inclus : les racines diffèrent",
            "NIET opgenomen: de wortels verschillen",
        ),
        "ledger.leaf": _m("Leaf hash", "Empreinte de la feuille", "Hash van het blad"),
        "ledger.root": _m("Root", "Racine", "Wortel"),
        "ledger.head": _m("Signed head", "Tête signée", "Ondertekende kop"),
        "ledger.final": _m("final", "définitive", "definitief"),
        "ledger.not_final": _m("not final yet", "pas encore définitive", "nog niet definitief"),
        "ledger.bundle": _m(
            "Proof bundle (for bright ledger verify)",
            "Paquet de preuve (pour bright ledger verify)",
            "Bewijsbundel (voor bright ledger verify)",
        ),
        "ledger.err_index": _m(
            "Give a record number (0, 1, 2 …).",
            "Indiquez un numéro d'enregistrement (0, 1, 2 …).",
            "Geef een recordnummer (0, 1, 2 …).",
        ),
        "ledger.err_range": _m(
            "The log has {size} records.",
            "Le journal contient {size} enregistrements.",
            "Het log bevat {size} records.",
        ),
        "ledger.heads": _m("Signed tree heads", "Têtes d'arbre signées", "Ondertekende boomkoppen"),
        "ledger.time": _m("Time", "Heure", "Tijd"),
        "ledger.cosignatures": _m("Cosignatures", "Cosignatures", "Medeondertekeningen"),
        "ledger.finality": _m("Finality", "Finalité", "Finaliteit"),
        "ledger.no_heads": _m(
            "No head signed yet.", "Aucune tête signée pour l'instant.", "Nog geen kop ondertekend."
        ),
        "ledger.forks": _m("Fork alarms", "Alertes de fourche", "Vorkalarmen"),
        "ledger.no_forks": _m("No fork detected.", "Aucune fourche détectée.", "Geen vork gedetecteerd."),
        "ledger.equivocator": _m("signer", "signataire", "ondertekenaar"),
        "ledger.settle": _m("Record a settlement", "Enregistrer un règlement", "Een afrekening vastleggen"),
        "ledger.start": _m("From (YYYY-MM-DD)", "Du (AAAA-MM-JJ)", "Van (JJJJ-MM-DD)"),
        "ledger.end": _m(
            "To, excluded (YYYY-MM-DD)", "Au, exclu (AAAA-MM-JJ)", "Tot, niet inbegrepen (JJJJ-MM-DD)"
        ),
        "ledger.settle_button": _m("Settle and record", "Régler et enregistrer", "Afrekenen en vastleggen"),
        "ledger.settled": _m(
            "The settlement was recorded and its heads signed.",
            "Le règlement a été enregistré et ses têtes signées.",
            "De afrekening werd vastgelegd en de koppen ondertekend.",
        ),
        "dvpp.title": _m("Flexibility earnings", "Gains de flexibilité", "Flexibiliteitsopbrengsten"),
        "dvpp.offers": _m("Offers", "Offres", "Aanbiedingen"),
        "dvpp.offered": _m("Energy offered", "Énergie offerte", "Aangeboden energie"),
        "dvpp.activations": _m("Activations", "Activations", "Activaties"),
        "dvpp.used": _m("Energy used", "Énergie utilisée", "Gebruikte energie"),
        "dvpp.earned": _m("Earned", "Gagné", "Verdiend"),
        "dvpp.direction": _m("Direction", "Sens", "Richting"),
        "dvpp.window": _m("Window", "Fenêtre", "Venster"),
        "dvpp.no_offers": _m(
            "No offer in the log.", "Aucune offre dans le journal.", "Geen aanbieding in het log."
        ),
        "dvpp.no_activations": _m(
            "No activation yet.", "Aucune activation pour l'instant.", "Nog geen activatie."
        ),
        "dvpp.records": _m("Records", "Enregistrements", "Records"),
        # network
        "net.title": _m("Network of communities", "Réseau des communautés", "Netwerk van gemeenschappen"),
        "net.about": _m(
            "Community cards published on this node, on a map drawn without any map server, and a search for communities like yours.",
            "Les fiches des communautés publiées sur ce nœud, sur une carte dessinée sans serveur de cartes, et une recherche de communautés comme la vôtre.",
            "De fiches van de gemeenschappen op dit knooppunt, op een kaart zonder kaartserver, en een zoekfunctie naar gemeenschappen zoals de uwe.",
        ),
        "net.map": _m(
            "{n} communities (grey: school sites of Brussels)",
            "{n} communautés (gris : implantations scolaires de Bruxelles)",
            "{n} gemeenschappen (grijs: schoolsites in Brussel)",
        ),
        "net.search": _m("Find communities", "Trouver des communautés", "Gemeenschappen zoeken"),
        "net.q": _m(
            "Words (e.g. school, solar, heat pump)",
            "Mots (p. ex. école, solaire, pompe à chaleur)",
            "Woorden (bv. school, zon, warmtepomp)",
        ),
        "net.like": _m("Like this community", "Comme cette communauté", "Zoals deze gemeenschap"),
        "net.municipality": _m("Municipality", "Commune", "Gemeente"),
        "net.min_members": _m("At least (members)", "Au moins (membres)", "Minstens (leden)"),
        "net.max_members": _m("At most (members)", "Au plus (membres)", "Hoogstens (leden)"),
        "net.with": _m("With", "Avec", "Met"),
        "net.schools": _m("schools", "écoles", "scholen"),
        "net.has_pv": _m("PV", "PV", "PV"),
        "net.has_storage": _m("storage", "stockage", "opslag"),
        "net.has_ev": _m("EV chargers", "bornes de recharge", "laadpalen"),
        "net.has_heat_pumps": _m("heat pumps", "pompes à chaleur", "warmtepompen"),
        "net.find": _m("Find", "Chercher", "Zoeken"),
        "net.results": _m("{n} communities found", "{n} communautés trouvées", "{n} gemeenschappen gevonden"),
        "net.score": _m("score", "score", "score"),
        "net.cards": _m("Community cards", "Fiches des communautés", "Fiches van de gemeenschappen"),
        "net.found": _m("Found", "Trouvées", "Gevonden"),
        "net.school_sites": _m("School sites", "Implantations scolaires", "Schoolsites"),
        "net.schools_n": _m("school(s)", "école(s)", "school/scholen"),
        "net.storage": _m("storage", "stockage", "opslag"),
        "net.heat_pumps": _m("heat pumps", "pompes à chaleur", "warmtepompen"),
        "net.no_cards": _m(
            "No community card is published on this node yet.",
            "Aucune fiche de communauté n'est encore publiée sur ce nœud.",
            "Nog geen fiche van een gemeenschap op dit knooppunt.",
        ),
        "net.publish": _m("Publish our cards", "Publier nos fiches", "Onze fiches publiceren"),
        "net.refresh": _m(
            "Publish / recount from the twin",
            "Publier / recompter depuis le jumeau",
            "Publiceren / hertellen uit de tweeling",
        ),
        "net.refreshed": _m(
            "The card was published.", "La fiche a été publiée.", "De fiche werd gepubliceerd."
        ),
        "net.err_whole": _m(
            "Give a whole number ≥ 0 (results: 1 to 100).",
            "Indiquez un nombre entier ≥ 0 (résultats : 1 à 100).",
            "Geef een geheel getal ≥ 0 (resultaten: 1 tot 100).",
        ),
        "net.err_range": _m(
            "At most must not be below at least.",
            "« Au plus » ne peut être inférieur à « au moins ».",
            "Hoogstens mag niet kleiner zijn dan minstens.",
        ),
        "net.err_like": _m(
            "This community has no card here.",
            "Cette communauté n'a pas de fiche ici.",
            "Deze gemeenschap heeft hier geen fiche.",
        ),
    }
)

MESSAGES.update(
    {
        "nav.mobility": _m("Mobility", "Mobilité", "Mobiliteit"),
        "mob.title": _m("Mobility scenarios", "Scénarios de mobilité", "Mobiliteitsscenario's"),
        "mob.about": _m(
            "What more EVs, smart charging, V2G, new chargers or more PV would do to the community, over its last year at 15 min.",
            "Ce que plus de véhicules électriques, la recharge intelligente, le V2G, de nouvelles bornes ou plus de PV feraient à la communauté, sur sa dernière année au quart d'heure.",
            "Wat meer elektrische wagens, slim laden, V2G, nieuwe laadpalen of meer PV met de gemeenschap zouden doen, over haar laatste jaar per kwartier.",
        ),
        "mob.none": _m(
            "No scenario has been run for this community yet.",
            "Aucun scénario n'a encore été calculé pour cette communauté.",
            "Nog geen scenario berekend voor deze gemeenschap.",
        ),
        "mob.pick": _m(
            "Scenarios to compare (at most {n})",
            "Scénarios à comparer (au plus {n})",
            "Te vergelijken scenario's (hoogstens {n})",
        ),
        "mob.compare": _m("Compare", "Comparer", "Vergelijken"),
        "mob.duration": _m(
            "Load-duration curve of the net import (kW)",
            "Monotone du prélèvement net (kW)",
            "Belastingsduurcurve van de netto afname (kW)",
        ),
        "mob.profile": _m(
            "Mean daily profile of the net import (kW)",
            "Profil journalier moyen du prélèvement net (kW)",
            "Gemiddeld dagprofiel van de netto afname (kW)",
        ),
        "mob.kpis": _m("Scenarios side by side", "Scénarios côte à côte", "Scenario's naast elkaar"),
        "mob.run": _m("Run a scenario", "Calculer un scénario", "Een scenario berekenen"),
        "mob.define": _m("The scenario", "Le scénario", "Het scenario"),
        "mob.name": _m("Name", "Nom", "Naam"),
        "mob.policy": _m("Charging policy", "Stratégie de recharge", "Laadstrategie"),
        "mob.n_evs": _m("EVs added", "Véhicules électriques ajoutés", "Toegevoegde elektrische wagens"),
        "mob.ev_site_limit_kw": _m(
            "Limit on EV power (kW)", "Limite de puissance des VE (kW)", "Limiet op EV-vermogen (kW)"
        ),
        "mob.connection_limit_kw": _m(
            "Connection limit (kW)", "Limite de raccordement (kW)", "Aansluitlimiet (kW)"
        ),
        "mob.added_pv_kwp": _m("PV added (kWp)", "PV ajouté (kWc)", "Toegevoegde PV (kWp)"),
        "mob.shared_replacing": _m(
            "EVs replaced by shared cars",
            "VE remplacés par des voitures partagées",
            "EV's vervangen door deelwagens",
        ),
        "mob.follow": _m(
            "Keep EV power within the connection's headroom",
            "Garder la puissance des VE sous la marge du raccordement",
            "EV-vermogen binnen de ruimte van de aansluiting houden",
        ),
        "mob.run_button": _m(
            "Run (about a minute)", "Calculer (environ une minute)", "Berekenen (ongeveer een minuut)"
        ),
        "mob.running": _m("Running…", "Calcul en cours…", "Bezig…"),
        "mob.hours": _m("hours", "heures", "uren"),
        "mob.time_of_day": _m("time of day", "heure", "tijdstip"),
    }
)

# B-BRIGHT service offers and bundles (issue 15: web/offers.py, templates offers_*.html)
MESSAGES.update(
    {
        key: {"en": en, "fr": fr, "nl": nl}
        for key, (en, fr, nl) in {
            "of.title": ("Service offers", "Offres de services", "Dienstaanbod"),
            "of.recommended": ("Offers for you", "Offres pour vous", "Aanbod voor u"),
            "of.category": (
                "Ordered for your profile: {category}",
                "Classées selon votre profil : {category}",
                "Gerangschikt volgens uw profiel: {category}",
            ),
            "of.pick": ("Bundle", "Paquet", "Bundel"),
            "of.offer": ("Offer", "Offre", "Aanbod"),
            "of.why": ("Why first", "Pourquoi en premier", "Waarom eerst"),
            "of.fee": (
                "Fee EUR/month · provider share",
                "Prix EUR/mois · part du fournisseur",
                "Prijs EUR/maand · deel aanbieder",
            ),
            "of.grants": (
                "Data and control asked",
                "Données et contrôle demandés",
                "Gevraagde gegevens en sturing",
            ),
            "of.days": ("Days evaluated", "Jours évalués", "Geëvalueerde dagen"),
            "of.compare": ("Compare the bundle", "Comparer le paquet", "Bundel vergelijken"),
            "of.comparison": (
                "Bundle against the best single offer",
                "Paquet face à la meilleure offre seule",
                "Bundel tegenover het beste losse aanbod",
            ),
            "of.best_single": ("best single offer", "meilleure offre seule", "beste losse aanbod"),
            "of.gain": ("gain of stacking", "gain du cumul", "winst van het stapelen"),
            "of.idle": ("Better left out", "Mieux vaut ne pas prendre", "Beter weglaten"),
            "of.value": ("Value in the bundle EUR", "Valeur dans le paquet EUR", "Waarde in de bundel EUR"),
            "of.alone": ("Alone EUR", "Seule EUR", "Alleen EUR"),
            "of.subscribe_title": ("Subscribe", "Souscrire", "Inschrijven"),
            "of.subscribe": (
                "Subscribe with my consent",
                "Souscrire avec mon consentement",
                "Inschrijven met mijn toestemming",
            ),
            "of.unsubscribe": (
                "Unsubscribe (withdraw consent)",
                "Résilier (retirer le consentement)",
                "Uitschrijven (toestemming intrekken)",
            ),
            "of.consent": (
                "I allow {provider} to use, for {purpose}:",
                "J'autorise {provider} à utiliser, pour {purpose} :",
                "Ik sta {provider} toe te gebruiken, voor {purpose}:",
            ),
            "of.active": (
                "Subscribed since {date}",
                "Souscrit depuis le {date}",
                "Ingeschreven sinds {date}",
            ),
            "of.revoked": (
                "Consent withdrawn on {date}",
                "Consentement retiré le {date}",
                "Toestemming ingetrokken op {date}",
            ),
            "of.subscribed": (
                "Subscribed: your consent is recorded.",
                "Souscription enregistrée avec votre consentement.",
                "Ingeschreven: uw toestemming is vastgelegd.",
            ),
            "of.unsubscribed": (
                "Unsubscribed: the provider's access has ended.",
                "Résilié : l'accès du fournisseur a pris fin.",
                "Uitgeschreven: de toegang van de aanbieder is beëindigd.",
            ),
            "of.err_consent": (
                "Tick the consent box to subscribe.",
                "Cochez la case de consentement pour souscrire.",
                "Vink het toestemmingsvak aan om in te schrijven.",
            ),
            "of.err_none": (
                "Tick at least one offer.",
                "Cochez au moins une offre.",
                "Vink minstens één aanbod aan.",
            ),
            "of.err_days": (
                "Choose 7, 28 or 365 days.",
                "Choisissez 7, 28 ou 365 jours.",
                "Kies 7, 28 of 365 dagen.",
            ),
            "of.provider_title": (
                "Subscribers and granted data",
                "Abonnés et données accordées",
                "Abonnees en toegekende gegevens",
            ),
            "of.provider_offers": (
                "{n} offers published.",
                "{n} offres publiées.",
                "{n} aanbiedingen gepubliceerd.",
            ),
            "of.no_subscribers": ("No subscriber yet.", "Pas encore d'abonné.", "Nog geen abonnees."),
            "of.agreement": ("agreement", "accord", "overeenkomst"),
            "of.target": ("Stream or device", "Flux ou appareil", "Stroom of toestel"),
            "of.action": ("Action", "Action", "Actie"),
            "of.stream": ("What", "Quoi", "Wat"),
            "of.retention": ("Kept (days)", "Conservé (jours)", "Bewaard (dagen)"),
            "of.hours": ("Hours", "Heures", "Uren"),
        }.items()
    }
)

# --- administration (web/admin_pages.py) and knowledge catalogue (web/catalogue_pages.py) ---------
MESSAGES.update(
    {
        key: {"en": en, "fr": fr, "nl": nl}
        for key, (en, fr, nl) in {
            "nav.admin": ("Administration", "Administration", "Beheer"),
            "nav.catalogue": ("Knowledge", "Savoirs", "Kennis"),
            "adm.nav": ("Administration", "Administration", "Beheer"),
            "adm.managers_only": (
                "Only a manager may open this page.",
                "Seul un gestionnaire peut ouvrir cette page.",
                "Alleen een beheerder mag deze pagina openen.",
            ),
            "adm.node_admin_only": (
                "Only the node's administrator (manager of the node's own tenant) may open this page.",
                "Seul l'administrateur du nœud (gestionnaire du locataire propre du nœud) peut ouvrir cette page.",
                "Alleen de beheerder van het knooppunt (beheerder van de eigen tenant) mag deze pagina openen.",
            ),
            "adm.policies": ("Data policies", "Politiques de données", "Gegevensbeleid"),
            "adm.policies_about": (
                "The ODRL 2.2 policies in force: stored DataPolicy entities first, then the defaults "
                "that no stored policy replaces.",
                "Les politiques ODRL 2.2 en vigueur : d'abord les entités DataPolicy enregistrées, puis "
                "les politiques par défaut qu'aucune ne remplace.",
                "Het geldende ODRL 2.2-beleid: eerst de opgeslagen DataPolicy-entiteiten, dan de "
                "standaardregels die door geen opgeslagen beleid vervangen zijn.",
            ),
            "adm.policy": ("Policy", "Politique", "Beleid"),
            "adm.community": ("Community", "Communauté", "Gemeenschap"),
            "adm.whole_node": ("whole node", "tout le nœud", "heel het knooppunt"),
            "adm.origin": ("Origin", "Origine", "Herkomst"),
            "adm.stored": ("stored", "enregistrée", "opgeslagen"),
            "adm.default": ("default", "par défaut", "standaard"),
            "adm.rules": ("Rules", "Règles", "Regels"),
            "adm.type": ("Type", "Type", "Type"),
            "adm.conflict": ("On conflict", "En cas de conflit", "Bij conflict"),
            "adm.conflict.perm": (
                "permissions win",
                "les permissions l'emportent",
                "toestemmingen gaan voor",
            ),
            "adm.conflict.prohibit": (
                "prohibitions win",
                "les interdictions l'emportent",
                "verboden gaan voor",
            ),
            "adm.permission": ("may", "peut", "mag"),
            "adm.prohibition": ("may not", "ne peut pas", "mag niet"),
            "adm.on": ("on", "sur", "op"),
            "adm.if": ("if", "si", "als"),
            "adm.and": ("and", "et", "en"),
            "adm.anyone": ("anyone", "tout le monde", "iedereen"),
            "adm.role": ("role {role}", "rôle {role}", "rol {role}"),
            "adm.asset.open-data": ("open data", "données ouvertes", "open data"),
            "adm.asset.aggregates": ("aggregates", "agrégats", "totalen"),
            "adm.asset.community-data": (
                "community data",
                "données de la communauté",
                "gemeenschapsgegevens",
            ),
            "adm.asset.member-data": ("member data", "données des membres", "ledengegevens"),
            "adm.asset.member-series": (
                "members' time series",
                "séries temporelles des membres",
                "tijdreeksen van leden",
            ),
            "adm.action.read": ("read", "lire", "lezen"),
            "adm.action.use": ("use", "utiliser", "gebruiken"),
            "adm.action.distribute": ("distribute", "diffuser", "verspreiden"),
            "adm.action.control": ("control devices", "piloter les appareils", "toestellen sturen"),
            "adm.constraint": ("{left} {op} {right}", "{left} {op} {right}", "{left} {op} {right}"),
            "adm.left.purpose": ("the purpose", "la finalité", "het doel"),
            "adm.left.dateTime": ("the time", "le moment", "het tijdstip"),
            "adm.left.minMembers": ("the number of members", "le nombre de membres", "het aantal leden"),
            "adm.op.eq": ("is", "est", "is"),
            "adm.op.neq": ("is not", "n'est pas", "is niet"),
            "adm.op.gt": ("is more than", "est supérieur à", "is meer dan"),
            "adm.op.gteq": ("is at least", "est au moins", "is minstens"),
            "adm.op.lt": ("is less than", "est inférieur à", "is minder dan"),
            "adm.op.lteq": ("is at most", "est au plus", "is hoogstens"),
            "adm.op.isA": ("is a", "est un", "is een"),
            "adm.op.isAnyOf": ("is one of", "est l'un de", "is een van"),
            "adm.op.isNoneOf": ("is none of", "n'est aucun de", "is geen van"),
            "adm.invalid": (
                "These stored policies cannot be enforced:",
                "Ces politiques enregistrées ne peuvent pas être appliquées :",
                "Dit opgeslagen beleid kan niet worden toegepast:",
            ),
            "adm.new": ("New policy", "Nouvelle politique", "Nieuw beleid"),
            "adm.edit": ("Edit", "Modifier", "Bewerken"),
            "adm.remove": (
                "Remove (the default comes back)",
                "Supprimer (la politique par défaut revient)",
                "Verwijderen (de standaard geldt weer)",
            ),
            "adm.removed": ("Policy removed.", "Politique supprimée.", "Beleid verwijderd."),
            "adm.saved": ("Policy saved.", "Politique enregistrée.", "Beleid opgeslagen."),
            "adm.default_kept": (
                "A default policy is not stored: edit it to store a replacement.",
                "Une politique par défaut n'est pas enregistrée : modifiez-la pour la remplacer.",
                "Een standaardbeleid is niet opgeslagen: bewerk het om het te vervangen.",
            ),
            "adm.no_policy": ("No policy {id}.", "Pas de politique {id}.", "Geen beleid {id}."),
            "adm.form_about": (
                "The policy is checked by the same validation as the REST API (POST /api/policies).",
                "La politique est vérifiée par la même validation que l'API REST (POST /api/policies).",
                "Het beleid wordt gecontroleerd zoals door de REST-API (POST /api/policies).",
            ),
            "adm.entity_id": ("DataPolicy id", "Identifiant DataPolicy", "DataPolicy-id"),
            "adm.odrl": ("ODRL 2.2 policy (JSON)", "Politique ODRL 2.2 (JSON)", "ODRL 2.2-beleid (JSON)"),
            "adm.save": ("Save", "Enregistrer", "Opslaan"),
            "adm.consents": ("Consents", "Consentements", "Toestemmingen"),
            "adm.consents_about": (
                "Each member's consents (Consent entities) with the date granted and, if any, withdrawn.",
                "Les consentements de chaque membre (entités Consent), avec leur date d'octroi et de retrait.",
                "De toestemmingen van elk lid (Consent-entiteiten), met de datum van toekenning en intrekking.",
            ),
            "adm.purpose": ("Purpose", "Finalité", "Doel"),
            "adm.granted": ("Granted", "Accordé", "Gegeven"),
            "adm.revoked": ("Withdrawn", "Retiré", "Ingetrokken"),
            "adm.state": ("State", "État", "Status"),
            "adm.active": ("active", "actif", "actief"),
            "adm.withdrawn": ("withdrawn", "retiré", "ingetrokken"),
            "adm.no_consent": ("No consent recorded.", "Aucun consentement.", "Geen toestemming."),
            "adm.audit": ("Audit log", "Journal d'audit", "Auditlogboek"),
            "adm.audit_about": (
                "Requests made to this node's data, newest first, with the access decision.",
                "Les requêtes faites aux données du nœud, les plus récentes d'abord, avec la décision.",
                "Verzoeken aan de gegevens van dit knooppunt, nieuwste eerst, met de beslissing.",
            ),
            "adm.filter": ("Filter", "Filtrer", "Filteren"),
            "adm.since": ("From (ISO 8601, UTC)", "Depuis (ISO 8601, UTC)", "Vanaf (ISO 8601, UTC)"),
            "adm.until": ("Until (ISO 8601, UTC)", "Jusqu'à (ISO 8601, UTC)", "Tot (ISO 8601, UTC)"),
            "adm.peer": ("Peer node", "Nœud pair", "Partnerknooppunt"),
            "adm.decision": ("Decision", "Décision", "Beslissing"),
            "adm.apply": ("Apply", "Appliquer", "Toepassen"),
            "adm.page": ("Page {n}", "Page {n}", "Pagina {n}"),
            "adm.pages": ("Pages", "Pages", "Pagina's"),
            "adm.prev": ("newer", "plus récents", "nieuwer"),
            "adm.next": ("older", "plus anciens", "ouder"),
            "adm.at": ("When (UTC)", "Quand (UTC)", "Wanneer (UTC)"),
            "adm.who": ("Who", "Qui", "Wie"),
            "adm.request": ("Request", "Requête", "Verzoek"),
            "adm.reason": ("Reason", "Raison", "Reden"),
            "adm.filtered": ("Removed", "Retirés", "Verwijderd"),
            "adm.no_entries": ("No entry.", "Aucune entrée.", "Geen regels."),
            "adm.err_instant": (
                "Give a date-time such as 2026-01-31T08:00:00Z.",
                "Donnez une date et heure comme 2026-01-31T08:00:00Z.",
                "Geef een datum en tijd zoals 2026-01-31T08:00:00Z.",
            ),
            "adm.err_order": (
                "The end must come after the start.",
                "La fin doit suivre le début.",
                "Het einde moet na het begin komen.",
            ),
            "adm.err_decision": (
                "Choose one of: {choices}.",
                "Choisissez parmi : {choices}.",
                "Kies uit: {choices}.",
            ),
            "adm.hosting": ("Hosting", "Hébergement", "Hosting"),
            "adm.hosting_about": (
                "The communities this node hosts (NGSI-LD tenants), their quotas and what they use.",
                "Les communautés hébergées par ce nœud (locataires NGSI-LD), leurs quotas et leur usage.",
                "De gemeenschappen die dit knooppunt host (NGSI-LD-tenants), hun quota en verbruik.",
            ),
            "adm.tenant": ("Tenant", "Locataire", "Tenant"),
            "adm.manager": ("Manager", "Gestionnaire", "Beheerder"),
            "adm.entities": ("Entities", "Entités", "Entiteiten"),
            "adm.points": ("Series points", "Points de séries", "Reekspunten"),
            "adm.created": ("Created", "Créé", "Aangemaakt"),
            "adm.no_tenants": (
                "No hosted community.",
                "Aucune communauté hébergée.",
                "Geen gehoste gemeenschap.",
            ),
            "adm.open_onboarding": (
                "onboarding pages (sign in as {manager})",
                "pages d'accueil (connexion en tant que {manager})",
                "onboardingpagina's (aanmelden als {manager})",
            ),
            "adm.onboarding": (
                "Onboarding of this node's communities",
                "Accueil des communautés de ce nœud",
                "Onboarding van de gemeenschappen van dit knooppunt",
            ),
            "cat.nav": ("Knowledge", "Savoirs", "Kennis"),
            "cat.title": (
                "Practices and initiatives",
                "Pratiques et initiatives",
                "Praktijken en initiatieven",
            ),
            "cat.about": (
                "What the network's communities learned, searchable in English, French and Dutch.",
                "Ce que les communautés du réseau ont appris, en anglais, français et néerlandais.",
                "Wat de gemeenschappen van het netwerk leerden, doorzoekbaar in het Engels, Frans en Nederlands.",
            ),
            "cat.search": ("Search", "Recherche", "Zoeken"),
            "cat.q": ("Words (EN, FR or NL)", "Mots (EN, FR ou NL)", "Woorden (EN, FR of NL)"),
            "cat.kind": ("Kind", "Type", "Soort"),
            "cat.kind.practice": ("practice", "pratique", "praktijk"),
            "cat.kind.initiative": ("initiative", "initiative", "initiatief"),
            "cat.kind.document": ("document", "document", "document"),
            "cat.lang_text": ("Language of the text", "Langue du texte", "Taal van de tekst"),
            "cat.topic": ("Topic", "Thème", "Onderwerp"),
            "cat.ckind": ("Kind of community", "Type de communauté", "Soort gemeenschap"),
            "cat.ckind.school": ("schools", "écoles", "scholen"),
            "cat.ckind.households": ("households", "ménages", "huishoudens"),
            "cat.ckind.smes": ("SMEs", "PME", "kmo's"),
            "cat.ckind.public_buildings": ("public buildings", "bâtiments publics", "openbare gebouwen"),
            "cat.ckind.other": ("other", "autre", "andere"),
            "cat.results": ("{n} results", "{n} résultats", "{n} resultaten"),
            "cat.all": ("{n} items on this node", "{n} éléments sur ce nœud", "{n} items op dit knooppunt"),
            "cat.none": ("Nothing yet.", "Rien pour l'instant.", "Nog niets."),
            "cat.err_choice": (
                "Choose one of: {choices}.",
                "Choisissez parmi : {choices}.",
                "Kies uit: {choices}.",
            ),
            "cat.ask": ("Ask this community", "Poser une question", "Een vraag stellen"),
            "cat.tools": ("Shared tools", "Outils partagés", "Gedeelde tools"),
            "cat.tools_about": (
                "Tools this node runs for the network's members: the data is sent, the answer comes back, "
                "nothing is kept.",
                "Outils que ce nœud fait tourner pour les membres du réseau : les données sont envoyées, la "
                "réponse revient, rien n'est gardé.",
                "Tools die dit knooppunt draait voor de leden van het netwerk: de gegevens gaan heen, het "
                "antwoord komt terug, niets wordt bewaard.",
            ),
            "cat.status.available": ("available", "disponible", "beschikbaar"),
            "cat.status.planned": ("planned", "prévu", "gepland"),
            "cat.offered": (
                "Offered by other nodes",
                "Proposés par d'autres nœuds",
                "Aangeboden door andere knooppunten",
            ),
            "cat.none_offered": ("None.", "Aucun.", "Geen."),
            "cat.tool": ("Tool", "Outil", "Tool"),
            "cat.node": ("Node", "Nœud", "Knooppunt"),
            "cat.no_tool": ("No tool {name}.", "Pas d'outil {name}.", "Geen tool {name}."),
            "cat.keeps_nothing": ("keeps no data", "ne garde aucune donnée", "bewaart geen gegevens"),
            "cat.run_with": ("Run it with", "Lancez-le avec", "Start met"),
            "cat.inputs": ("Inputs", "Entrées", "Invoer"),
            "cat.outputs": ("Outputs", "Sorties", "Uitvoer"),
            "cat.field": ("Field", "Champ", "Veld"),
            "cat.type": ("Type", "Type", "Type"),
            "cat.required": ("Required", "Obligatoire", "Verplicht"),
            "cat.description": ("Description", "Description", "Beschrijving"),
            "cat.yes": ("yes", "oui", "ja"),
            "cat.questions": ("Questions", "Questions", "Vragen"),
            "cat.questions_about": (
                "Ask another community about what it does; the answer goes to your organisation.",
                "Posez une question à une autre communauté ; la réponse va à votre organisation.",
                "Stel een vraag aan een andere gemeenschap; het antwoord gaat naar uw organisatie.",
            ),
            "cat.members_only": (
                "Only members and managers may ask questions.",
                "Seuls les membres et les gestionnaires peuvent poser des questions.",
                "Alleen leden en beheerders mogen vragen stellen.",
            ),
            "cat.to": ("Community asked", "Communauté interrogée", "Gevraagde gemeenschap"),
            "cat.f.subject": ("Subject", "Objet", "Onderwerp"),
            "cat.f.text": ("Question", "Question", "Vraag"),
            "cat.f.organisation": ("Your organisation", "Votre organisation", "Uw organisatie"),
            "cat.f.email": ("Organisation's e-mail", "E-mail de l'organisation", "E-mail van de organisatie"),
            "cat.f.url": ("Organisation's website", "Site de l'organisation", "Website van de organisatie"),
            "cat.no_person": (
                "Give an organisation's address, never a person's.",
                "Donnez l'adresse d'une organisation, jamais celle d'une personne.",
                "Geef het adres van een organisatie, nooit van een persoon.",
            ),
            "cat.send": ("Send", "Envoyer", "Versturen"),
            "cat.sent": ("Question delivered ({to}).", "Question remise ({to}).", "Vraag bezorgd ({to})."),
            "cat.delivered": (
                "{n} questions to this node's communities",
                "{n} questions aux communautés de ce nœud",
                "{n} vragen aan de gemeenschappen van dit knooppunt",
            ),
            "cat.err_required": (
                "This field is required.",
                "Ce champ est obligatoire.",
                "Dit veld is verplicht.",
            ),
            "cat.err_contact": (
                "Give an e-mail or a website.",
                "Donnez un e-mail ou un site web.",
                "Geef een e-mail of website.",
            ),
            "city.title": ("City twin", "Jumeau de la ville", "Stadstweeling"),
            "city.about": (
                "The aggregate of the network's communities for one period, and who did not answer.",
                "L'agrégat des communautés du réseau sur une période, et qui n'a pas répondu.",
                "Het totaal van de gemeenschappen van het netwerk over een periode, en wie niet antwoordde.",
            ),
            "city.not_network": (
                "(This node has the role {role}: it aggregates its own communities only.)",
                "(Ce nœud a le rôle {role} : il n'agrège que ses propres communautés.)",
                "(Dit knooppunt heeft de rol {role}: het telt alleen zijn eigen gemeenschappen op.)",
            ),
            "city.period": ("Period", "Période", "Periode"),
            "city.frequency": ("Frequency", "Fréquence", "Frequentie"),
            "city.period_start": ("Period start", "Début de période", "Begin van de periode"),
            "city.computed": (
                "Computed at {at}, period {period}.",
                "Calculé le {at}, période {period}.",
                "Berekend op {at}, periode {period}.",
            ),
            "city.unanswered": (
                "These nodes did not answer; their communities are missing:",
                "Ces nœuds n'ont pas répondu ; leurs communautés manquent :",
                "Deze knooppunten antwoordden niet; hun gemeenschappen ontbreken:",
            ),
            "city.all_answered": (
                "Every node answered.",
                "Tous les nœuds ont répondu.",
                "Alle knooppunten antwoordden.",
            ),
            "city.without_kpis": (
                "Communities without figures for the period:",
                "Communautés sans chiffres pour la période :",
                "Gemeenschappen zonder cijfers voor de periode:",
            ),
            "city.totals": ("Totals", "Totaux", "Totalen"),
            "city.indicator": ("Indicator", "Indicateur", "Indicator"),
            "city.value": ("Value", "Valeur", "Waarde"),
            "city.communities": ("Communities", "Communautés", "Gemeenschappen"),
            "city.chart": (
                "Consumption, injection and shared energy per community (kWh)",
                "Consommation, injection et énergie partagée par communauté (kWh)",
                "Verbruik, injectie en gedeelde energie per gemeenschap (kWh)",
            ),
            "city.injection": ("Injection", "Injection", "Injectie"),
            "city.self_sufficiency": ("Self-sufficiency", "Autosuffisance", "Zelfvoorziening"),
            "city.flexibility": ("Flexibility", "Flexibilité", "Flexibiliteit"),
        }.items()
    }
)
