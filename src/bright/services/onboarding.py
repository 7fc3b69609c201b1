"""Create and run an energy community: guided creation, invitations, members, consents, leaving.

The use case starts where neighbours (or a school) decide to create a community. This module is
the whole flow over the twin, the same for the REST API (:mod:`bright.api.onboarding`), the web
wizard (:mod:`bright.web.onboarding`) and tests:

1. :meth:`Onboarding.create_community` writes the ``EnergyCommunity`` from a :class:`CommunitySetup`
   (card, legal form REC/CEC, perimeter and locality, sharing method, tariffs, data-policy choice);
2. :meth:`Onboarding.invite` issues a signed, expiring, single-use invitation (a link and an e-mail
   text to copy; sent over SMTP only when ``BRIGHT_SMTP_URL`` is configured);
3. :meth:`Onboarding.join` registers the invited person: an ``EnergyProsumer``, the ``Meter`` of its
   access point (EAN checked with :func:`check_ean`), its ``Building`` and assets, and its consents;
4. :meth:`Onboarding.set_consent` grants or revokes a purpose (``sharing``, ``sbright``,
   ``network``, ``offer:<offer id>``): ``Consent`` entities the policy engine reads;
5. :meth:`Onboarding.set_sharing_key`, :meth:`Onboarding.dso_pack` and :func:`statutes_checklist`
   prepare the declaration to the DSO and the regulator;
6. :meth:`Onboarding.export_member` (GDPR access and portability) and :meth:`Onboarding.leave`
   (erasure or anonymisation per the community's policy).

Entity ids of members carry a random slug (``m-3f9a1c2b``), never a name or an EAN, so ids that
must outlive a member (signed ledger records) hold no personal data.

The EAN rule (Belgian access points, GS1 GSRN of 18 digits)
-------------------------------------------------------------
An access-point EAN has 18 digits, starts with ``54`` (GS1 Belgium & Luxembourg) and ends with a
GS1 mod-10 check digit: from the right-most of the first 17 digits leftwards, digits are weighted
3, 1, 3, 1...; the check digit is ``(10 - sum mod 10) mod 10``. ``541448000000000011`` is valid
(weighted sum 29, check digit 1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import smtplib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    delete,
    insert,
    inspect,
    or_,
    select,
    update,
)

from bright.services.community import BRIGHT_NS, LOCALITY_LEVELS, TERMS
from bright.twin import migrations
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.entities import check_entity_id
from bright.twin.errors import AlreadyExists, BadRequestData, ResourceNotFound
from bright.twin.series import SeriesStore
from bright.twin.service import MAX_LIMIT, TwinService
from bright.twin.vocabulary import bright_context

__all__ = [
    "CONSENT_PURPOSES",
    "LEGAL_FORMS",
    "PERIMETERS",
    "CommunitySetup",
    "Invitation",
    "Onboarding",
    "OnboardingError",
    "check_ean",
    "consent_id",
    "ean_check_digit",
    "statutes_checklist",
]

#: Legal forms of an energy community under EU law (RED II art. 22, IEMD art. 16).
LEGAL_FORMS = {"REC": "RenewableEnergyCommunity", "CEC": "CitizenEnergyCommunity"}
#: The perimeter of a community: the least local grid level its members share (Brussels A-C).
PERIMETERS = ("building", "lv_cabin", "substation")
#: Fixed consent purposes; a service offer is ``offer:<offer id>``.
CONSENT_PURPOSES = ("sharing", "sbright", "network")
#: Roles a member can take in the sharing (SDM roleType).
MEMBER_ROLES = ("consumer", "producer", "prosumer")
#: What happens to a leaving member's data: erased, or kept anonymised for the community's history.
LEAVE_POLICIES = ("erase", "anonymise")
#: Asset types a member can declare, with the attributes the join form may set (BRIGHT @context).
ASSET_TYPES: dict[str, dict[str, str | None]] = {
    "PhotovoltaicDevice": {"peakPower": "KWT", "tilt": None, "azimuth": None},
    "Battery": {"capacity": "KWH", "maxChargePower": "KWT", "maxDischargePower": "KWT"},
    "EVChargingStation": {"chargingPower": "KWT", "numberOfSockets": None},
    "HeatPump": {"power": "KWT"},
}
INVITATION_DAYS = 14
#: Attribute IRIs this module adds on top of the BRIGHT @context.
ONB = {
    "perimeter": BRIGHT_NS + "perimeter",
    "localityName": BRIGHT_NS + "localityName",
    "dataPolicy": BRIGHT_NS + "dataPolicy",
    "leavePolicy": BRIGHT_NS + "leavePolicy",
    "postalCode": BRIGHT_NS + "postalCode",
    "municipality": BRIGHT_NS + "municipality",
    "email": BRIGHT_NS + "email",
    "joinedAt": BRIGHT_NS + "joinedAt",
    "formerMemberOf": BRIGHT_NS + "formerMemberOf",
}
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_OFFER_RE = re.compile(r"^offer:[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class OnboardingError(BadRequestData, ValueError):
    """Bad onboarding input; ``field`` (also in the ProblemDetails) names the form field to blame."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        if field is None:
            super().__init__(detail)
        else:
            super().__init__(detail, field=field)
        self.field = field


# --------------------------------------------------------------------------------------------------
# EAN
# --------------------------------------------------------------------------------------------------


def ean_check_digit(first17: str) -> int:
    """GS1 mod-10 check digit of the first 17 digits of an 18-digit EAN (weights 3,1,3... from the right).

    Parameters
    ----------
    first17 : str
        The 17 leading digits.
    """
    if len(first17) != 17 or not first17.isdigit():
        raise OnboardingError(f"{first17!r} is not 17 digits", field="ean")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(first17)))
    return (10 - total % 10) % 10


def check_ean(value: Any, *, field: str = "ean") -> str:
    """A Belgian access-point EAN (18 digits, prefix 54, GS1 check digit); spaces are ignored.

    Raises
    ------
    OnboardingError
        Naming what is wrong: length, non-digits, prefix or the expected check digit.
    """
    text = re.sub(r"\s+", "", str(value or ""))
    if not text.isdigit():
        raise OnboardingError(f"EAN {value!r} must contain only digits", field=field)
    if len(text) != 18:
        raise OnboardingError(
            f"EAN {text} has {len(text)} digits; a Belgian access point has 18", field=field
        )
    if not text.startswith("54"):
        raise OnboardingError(f"EAN {text} does not start with 54 (GS1 Belgium)", field=field)
    expected = ean_check_digit(text[:17])
    if int(text[17]) != expected:
        raise OnboardingError(
            f"EAN {text} has check digit {text[17]}, expected {expected} (GS1 mod 10)", field=field
        )
    return text


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def slugify(text: str) -> str:
    """Lower-case ASCII slug of a name (``Les Tournesols d'Ixelles`` -> ``les-tournesols-d-ixelles``)."""
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:63]


def _price(raw: Mapping[str, Any], name: str, *, required: bool = True) -> float | None:
    value = raw.get(name)
    if value is None or value == "":
        if required:
            raise OnboardingError(f"{name} is required (EUR/kWh)", field=name)
        return None
    try:
        number = float(str(value).replace(",", "."))
    except ValueError:
        raise OnboardingError(f"{name} {value!r} is not a number (EUR/kWh)", field=name) from None
    if not np.isfinite(number) or number < 0 or number > 5:
        raise OnboardingError(f"{name} {number} must be within 0..5 EUR/kWh", field=name)
    return number


@dataclass(frozen=True)
class CommunitySetup:
    """What the creation wizard asks.

    Attributes
    ----------
    name : str
        Display name of the community (the card).
    slug : str
        Id part: ``urn:ngsi-ld:EnergyCommunity:<slug>``.
    legal_form : str
        ``REC`` (renewable energy community) or ``CEC`` (citizen energy community).
    perimeter : str
        Least local grid level the members share: ``building``, ``lv_cabin`` or ``substation``.
    locality_name : str
        The building's address, or the DSO's name of the LV cabin or substation.
    postal_code, municipality : str
        Where it is (the card).
    description : str
        Short text of the card.
    sharing_method : str
        ``fixed``, ``pro_rata``, ``hybrid``... (:mod:`bright.energy.sharing`).
    supplier_price, feed_in_price, community_price : float
        Energy component of the supplier contract, feed-in value, price of a shared kWh (EUR/kWh).
    card_open, kpis_open : bool
        Data policy: the community card and its KPIs are open data.
    member_data : str
        Data policy for member-level data: ``private`` (the default) or ``community`` (visible to the
        other members).
    leave_policy : str
        ``erase`` (default) or ``anonymise``: what happens to the data of a member who leaves.
    """

    name: str
    slug: str
    legal_form: str
    perimeter: str
    locality_name: str
    postal_code: str
    municipality: str
    description: str
    sharing_method: str
    supplier_price: float
    feed_in_price: float
    community_price: float
    card_open: bool = True
    kpis_open: bool = True
    member_data: str = "private"
    leave_policy: str = "erase"

    @property
    def community_id(self) -> str:
        return f"urn:ngsi-ld:EnergyCommunity:{self.slug}"

    def data_policy(self) -> dict[str, Any]:
        """The data-policy choice as recorded on the community (and seeded as ODRL when available)."""
        return {
            "card": "open" if self.card_open else "members",
            "kpis": "open" if self.kpis_open else "members",
            "memberData": self.member_data,
            "aggregateMinMembers": 5,
        }

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> CommunitySetup:
        """Read and check the wizard's fields; :class:`OnboardingError` names the first bad field."""
        name = str(raw.get("name") or "").strip()
        if not 3 <= len(name) <= 120:
            raise OnboardingError("name must have 3 to 120 characters", field="name")
        slug = str(raw.get("slug") or "").strip() or slugify(name)
        if not _SLUG_RE.match(slug):
            raise OnboardingError(
                f"slug {slug!r} must be 2-63 lower-case letters, digits or hyphens", field="slug"
            )
        legal = str(raw.get("legal_form") or "").strip().upper()
        if legal not in LEGAL_FORMS:
            raise OnboardingError(f"legal_form {legal!r} must be REC or CEC", field="legal_form")
        perimeter = str(raw.get("perimeter") or "").strip()
        if perimeter not in PERIMETERS:
            raise OnboardingError(
                f"perimeter {perimeter!r} must be one of {', '.join(PERIMETERS)}", field="perimeter"
            )
        method = str(raw.get("sharing_method") or "pro_rata").strip()
        if method not in ("fixed", "fixed_multi_round", "pro_rata", "hybrid", "maximum"):
            raise OnboardingError(f"sharing_method {method!r} is unknown", field="sharing_method")
        supplier = _price(raw, "supplier_price")
        feed_in = _price(raw, "feed_in_price")
        community = _price(raw, "community_price")
        assert supplier is not None and feed_in is not None and community is not None
        if not feed_in <= community <= supplier:
            raise OnboardingError(
                f"community_price {community} should lie between feed_in_price {feed_in} and "
                f"supplier_price {supplier} (EUR/kWh), or nobody gains from sharing",
                field="community_price",
            )
        member_data = str(raw.get("member_data") or "private")
        if member_data not in ("private", "community"):
            raise OnboardingError("member_data must be private or community", field="member_data")
        leave = str(raw.get("leave_policy") or "erase")
        if leave not in LEAVE_POLICIES:
            raise OnboardingError("leave_policy must be erase or anonymise", field="leave_policy")
        return cls(
            name=name,
            slug=slug,
            legal_form=legal,
            perimeter=perimeter,
            locality_name=str(raw.get("locality_name") or "").strip()[:200],
            postal_code=str(raw.get("postal_code") or "").strip()[:16],
            municipality=str(raw.get("municipality") or "").strip()[:120],
            description=str(raw.get("description") or "").strip()[:1000],
            sharing_method=method,
            supplier_price=supplier,
            feed_in_price=feed_in,
            community_price=community,
            card_open=_flag(raw.get("card_open", True)),
            kpis_open=_flag(raw.get("kpis_open", True)),
            member_data=member_data,
            leave_policy=leave,
        )


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def check_purpose(purpose: Any) -> str:
    """A consent purpose: ``sharing``, ``sbright``, ``network`` or ``offer:<offer id>``."""
    text = str(purpose or "").strip()
    if text in CONSENT_PURPOSES or _OFFER_RE.match(text):
        return text
    raise OnboardingError(
        f"consent purpose {text!r} is unknown; use sharing, sbright, network or offer:<offer id>",
        field="purpose",
    )


def _purpose_slug(purpose: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", purpose)


def consent_id(member_id: str, purpose: str) -> str:
    """``urn:ngsi-ld:Consent:<member slug>:<purpose slug>`` (member slug: the member id's last part)."""
    return f"urn:ngsi-ld:Consent:{member_id.rsplit(':', 1)[-1]}:{_purpose_slug(purpose)}"


# --------------------------------------------------------------------------------------------------
# Tables: invitations and the signing key (migration step 160)
# --------------------------------------------------------------------------------------------------

metadata = MetaData()
invitations_table = Table(
    "onboarding_invitations",
    metadata,
    Column("id", String(32), primary_key=True),  # random, the token's nonce
    Column("tenant", String(128), nullable=False),
    Column("community_id", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
    Column("used_at", String(32), nullable=True),
    Column("member_id", Text, nullable=True),  # the member who joined with it (erased on leave)
    Column("username", String(64), nullable=True),  # the member's dashboard account
)
keys_table = Table(
    "onboarding_keys",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("secret", String(128), nullable=False),
)
leaves_table = Table(
    "onboarding_departures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("community_id", Text, nullable=False),
    Column("left_at", String(32), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("receipt", Text, nullable=False),  # JSON counts, no personal data
)


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


migrations.register(160, "onboarding: invitations, signing key, departures", _create_tables)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Invitation:
    """An issued invitation: the token, the link to open, the e-mail text to copy."""

    id: str
    tenant: str
    community_id: str
    token: str
    url: str
    expires_at: str
    email_subject: str
    email_text: str
    sent_to: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "communityId": self.community_id,
            "token": self.token,
            "url": self.url,
            "expiresAt": self.expires_at,
            "email": {"subject": self.email_subject, "text": self.email_text},
            "sentTo": self.sent_to,
        }


@dataclass(frozen=True)
class SmtpSettings:
    """Optional mail server for invitations: ``BRIGHT_SMTP_URL`` (``smtp://user:pass@host:port``,
    ``smtps://`` for TLS) and ``BRIGHT_SMTP_FROM``. Without them, invitations are texts to copy."""

    url: str
    sender: str

    @classmethod
    def from_env(cls) -> SmtpSettings | None:
        url = os.environ.get("BRIGHT_SMTP_URL", "").strip()
        if not url:
            return None
        return cls(url, os.environ.get("BRIGHT_SMTP_FROM", "bright@localhost"))

    def send(self, to: str, subject: str, text: str) -> None:
        parts = urlparse(self.url)
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, to, subject
        msg.set_content(text)
        smtp_cls = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
        with smtp_cls(parts.hostname or "localhost", parts.port or 25, timeout=10) as smtp:
            if parts.username:
                smtp.login(parts.username, parts.password or "")
            smtp.send_message(msg)


# --------------------------------------------------------------------------------------------------
# The use cases
# --------------------------------------------------------------------------------------------------

AccountMaker = Callable[[str, str, str, str], None]
"""``(username, password, community_id, member_id)``: creates the member's dashboard account."""


def _prop(value: Any, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def _rel(obj: str | list[str]) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def _when(moment: datetime) -> dict[str, Any]:
    return {"type": "Property", "value": {"@type": "DateTime", "@value": _iso(moment)}}


def _value(doc: Mapping[str, Any] | None, iri: str) -> Any:
    if not doc:
        return None
    for inst in doc.get("attrs", {}).get(iri, []):
        for key in ("value", "object", "objectList"):
            if key in inst:
                val = inst[key]
                if isinstance(val, dict) and "@value" in val:
                    return val["@value"]
                return val
    return None


class Onboarding:
    """Create and run communities on one node (any tenant).

    Parameters
    ----------
    twin : TwinService
        The node's entities.
    series : SeriesStore, optional
        The node's time series (created on the twin's engine when omitted).
    base_url : str
        Public base URL of the node, for invitation links (``http://127.0.0.1:8000``).
    smtp : SmtpSettings, optional
        Mail server for invitations; default from ``BRIGHT_SMTP_URL``; None sends nothing.
    """

    def __init__(
        self,
        twin: TwinService,
        series: SeriesStore | None = None,
        *,
        base_url: str = "",
        smtp: SmtpSettings | None = None,
    ) -> None:
        self.twin = twin
        self.engine: Engine = twin.engine
        self.series = series if series is not None else SeriesStore(twin.engine)
        self.base_url = base_url.rstrip("/")
        self.smtp = smtp if smtp is not None else SmtpSettings.from_env()
        self.ctx = bright_context()
        migrations.migrate(self.engine)

    # -- helpers ------------------------------------------------------------------------------------

    def _iri(self, term: str) -> str:
        return ONB.get(term) or TERMS.get(term) or self.ctx.expand(term)

    def _upsert(self, tenant: str, entities: list[dict[str, Any]], *, replace: bool = True) -> None:
        body = [{**e, "@context": BRIGHT_CONTEXT_URL} for e in entities]
        result = self.twin.batch_upsert(tenant, body, self.ctx, replace=replace)
        if result["errors"]:
            first = result["errors"][0]
            detail = first.get("error", {}).get("detail", "rejected")
            raise OnboardingError(f"entity {first.get('entityId')}: {detail}")

    def _query(self, tenant: str, params: dict[str, str]) -> list[dict[str, Any]]:
        if not self.twin.store.tenant_exists(tenant):
            return []
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            eq = self.twin.build_query({**params, "limit": str(MAX_LIMIT), "offset": str(offset)}, self.ctx)
            docs, _ = self.twin.store.query(tenant, eq)
            out.extend(docs)
            if len(docs) < MAX_LIMIT:
                return out
            offset += MAX_LIMIT

    def community_doc(self, community_id: str, *, tenant: str = "") -> dict[str, Any]:
        """The stored EnergyCommunity; ResourceNotFound otherwise."""
        check_entity_id(community_id)
        doc = self.twin.store.get(tenant, community_id) if self.twin.store.tenant_exists(tenant) else None
        if doc is None or self.ctx.expand("EnergyCommunity") not in doc.get("type", []):
            raise ResourceNotFound(f"community {community_id} not found")
        return doc

    def member_doc(self, community_id: str, member_id: str, *, tenant: str = "") -> dict[str, Any]:
        """A member (EnergyProsumer ``memberOf`` the community); ResourceNotFound otherwise."""
        check_entity_id(member_id)
        doc = self.twin.store.get(tenant, member_id) if self.twin.store.tenant_exists(tenant) else None
        if doc is None or _value(doc, self.ctx.expand("memberOf")) != community_id:
            raise ResourceNotFound(f"community {community_id} has no member {member_id}")
        return doc

    # -- 1. creation --------------------------------------------------------------------------------

    def create_community(
        self,
        setup: CommunitySetup | Mapping[str, Any],
        *,
        tenant: str = "",
        seed_policies: Callable[[str, str, dict[str, Any]], list[str]] | None = None,
    ) -> dict[str, Any]:
        """Write the community entity from the wizard's answers.

        Parameters
        ----------
        setup : CommunitySetup or mapping
            The wizard's fields (see :meth:`CommunitySetup.parse`).
        tenant : str
            NGSI-LD tenant of the community.
        seed_policies : callable, optional
            ``(tenant, community_id, choice) -> [DataPolicy ids]`` from the policy layer; without it
            the choice is only recorded on the community (``dataPolicy``) for the policy layer.

        Returns
        -------
        dict
            ``{"id", "tenant", "dataPolicy", "policies"}``.

        Raises
        ------
        AlreadyExists
            A community with that slug exists in the tenant.
        """
        s = setup if isinstance(setup, CommunitySetup) else CommunitySetup.parse(setup)
        if self.twin.store.tenant_exists(tenant) and self.twin.store.get(tenant, s.community_id) is not None:
            raise AlreadyExists(f"community {s.community_id} already exists")
        choice = s.data_policy()
        entity: dict[str, Any] = {
            "id": s.community_id,
            "type": "EnergyCommunity",
            "name": _prop(s.name),
            "communityType": _prop(LEGAL_FORMS[s.legal_form]),
            "legalForm": _prop(s.legal_form),
            "sharingMethod": _prop(s.sharing_method),
            "pricingMethod": _prop("fixed"),
            "supplierEnergyPrice": _prop(s.supplier_price),
            "feedInPrice": _prop(s.feed_in_price),
            "communityPrice": _prop(s.community_price),
            "foundingYear": _prop(_now().year),
            ONB["perimeter"]: _prop(s.perimeter),
            ONB["leavePolicy"]: _prop(s.leave_policy),
            ONB["dataPolicy"]: _prop({**choice, "policies": []}),
        }
        for term, text in (
            ("description", s.description),
            ("localityName", s.locality_name),
            ("postalCode", s.postal_code),
            ("municipality", s.municipality),
        ):
            if text:
                entity[ONB.get(term, term)] = _prop(text)
        self._upsert(tenant, [entity])
        policies = seed_policies(tenant, s.community_id, choice) if seed_policies else []
        if policies:
            record = {
                "id": s.community_id,
                "type": "EnergyCommunity",
                ONB["dataPolicy"]: _prop({**choice, "policies": policies}),
            }
            self._upsert(tenant, [record], replace=False)
        return {"id": s.community_id, "tenant": tenant, "dataPolicy": choice, "policies": policies}

    def summary(self, community_id: str, *, tenant: str = "") -> dict[str, Any]:
        """The community's card, settings, members with their consents, and open invitations."""
        doc = self.community_doc(community_id, tenant=tenant)
        members = self.members(community_id, tenant=tenant)
        key = _value(doc, TERMS["sharingKey"])
        with self.engine.connect() as conn:
            open_invites = conn.execute(
                select(invitations_table.c.id, invitations_table.c.expires_at).where(
                    invitations_table.c.tenant == tenant,
                    invitations_table.c.community_id == community_id,
                    invitations_table.c.used_at.is_(None),
                )
            ).all()
        return {
            "id": community_id,
            "tenant": tenant,
            "name": _value(doc, self.ctx.expand("name")),
            "legalForm": _value(doc, self.ctx.expand("legalForm")),
            "perimeter": _value(doc, ONB["perimeter"]),
            "localityName": _value(doc, ONB["localityName"]),
            "postalCode": _value(doc, ONB["postalCode"]),
            "municipality": _value(doc, ONB["municipality"]),
            "sharingMethod": _value(doc, self.ctx.expand("sharingMethod")),
            "sharingKey": key,
            "tariffs": {
                "supplier_eur_per_kwh": _value(doc, TERMS["supplierEnergyPrice"]),
                "feed_in_eur_per_kwh": _value(doc, TERMS["feedInPrice"]),
                "community_eur_per_kwh": _value(doc, TERMS["communityPrice"]),
            },
            "dataPolicy": _value(doc, ONB["dataPolicy"]),
            "leavePolicy": _value(doc, ONB["leavePolicy"]) or "erase",
            "members": members,
            "openInvitations": [{"id": r.id, "expiresAt": r.expires_at} for r in open_invites],
        }

    # -- 2. invitations -----------------------------------------------------------------------------

    def _secret(self) -> bytes:
        with self.engine.begin() as conn:
            row = conn.execute(select(keys_table.c.secret).where(keys_table.c.name == "invitations")).first()
            if row is not None:
                return bytes.fromhex(row[0])
            secret = secrets.token_bytes(32)
            conn.execute(insert(keys_table).values(name="invitations", secret=secret.hex()))
        return self._secret()  # a concurrent first start wins; everyone reads the stored one

    def _sign(self, payload: str) -> str:
        return _b64(
            hmac.new(self._secret(), payload.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        )

    def invite(
        self,
        community_id: str,
        *,
        tenant: str = "",
        email: str | None = None,
        days: int = INVITATION_DAYS,
        lang: str = "en",
    ) -> Invitation:
        """Issue a signed, expiring, single-use invitation to join ``community_id``.

        The token is ``base64url(json {i, t, c, x}) "." base64url(HMAC-SHA256)`` with the node's
        invitation key (kept in ``onboarding_keys``); the invitation row records its use. With
        ``email`` and a configured SMTP server the text is also sent; otherwise it is returned to be
        copied into any mail client.
        """
        doc = self.community_doc(community_id, tenant=tenant)
        if email is not None and email != "" and not _EMAIL_RE.match(email):
            raise OnboardingError(f"e-mail address {email!r} is not valid", field="email")
        if not 1 <= days <= 90:
            raise OnboardingError(f"an invitation is valid 1 to 90 days, not {days}", field="days")
        now = _now()
        nonce = secrets.token_hex(12)
        expires = now + timedelta(days=days)
        payload = _b64(
            json.dumps(
                {"i": nonce, "t": tenant, "c": community_id, "x": int(expires.timestamp())},
                separators=(",", ":"),
            ).encode()
        )
        token = f"{payload}.{self._sign(payload)}"
        with self.engine.begin() as conn:
            conn.execute(
                insert(invitations_table).values(
                    id=nonce,
                    tenant=tenant,
                    community_id=community_id,
                    created_at=_iso(now),
                    expires_at=_iso(expires),
                )
            )
        url = f"{self.base_url}/onboarding/join?token={token}"
        name = _value(doc, self.ctx.expand("name")) or community_id
        subject, text = _email_text(lang, str(name), url, _iso(expires))
        sent_to = None
        if email and self.smtp is not None:
            self.smtp.send(email, subject, text)
            sent_to = email
        return Invitation(nonce, tenant, community_id, token, url, _iso(expires), subject, text, sent_to)

    def check_invitation(self, token: str) -> dict[str, Any]:
        """The invitation a token stands for: ``{"id", "tenant", "communityId", "name"}``.

        Raises
        ------
        OnboardingError
            A malformed, forged, expired or already used token (field ``token``).
        """
        if not token or "." not in token:
            raise OnboardingError("the invitation token is missing or malformed", field="token")
        payload, mac = token.rsplit(".", 1)
        # Compare bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not a
        # forged-token answer); a token is base64url, so any other character is simply not valid.
        given = mac.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(self._sign(payload).encode("ascii"), given):
            raise OnboardingError("the invitation token is not valid (signature)", field="token")
        try:
            body = json.loads(_unb64(payload))
            nonce, tenant, cid, exp = str(body["i"]), str(body["t"]), str(body["c"]), int(body["x"])
        except (ValueError, KeyError, TypeError, OverflowError):
            raise OnboardingError("the invitation token is malformed", field="token") from None
        if exp < _now().timestamp():
            raise OnboardingError("the invitation has expired; ask the manager for a new one", field="token")
        with self.engine.connect() as conn:
            row = conn.execute(select(invitations_table).where(invitations_table.c.id == nonce)).first()
        if row is None:
            raise OnboardingError("the invitation was withdrawn", field="token")
        if row.used_at is not None:
            raise OnboardingError("the invitation was already used", field="token")
        doc = self.community_doc(cid, tenant=tenant)
        return {
            "id": nonce,
            "tenant": tenant,
            "communityId": cid,
            "name": _value(doc, self.ctx.expand("name")),
        }

    # -- 3. members -----------------------------------------------------------------------------------

    def join(
        self,
        token: str,
        form: Mapping[str, Any],
        *,
        make_account: AccountMaker | None = None,
    ) -> dict[str, Any]:
        """Register the person holding an invitation as a member.

        Parameters
        ----------
        token : str
            The invitation token (:meth:`invite`).
        form : mapping
            ``name``, ``email`` (optional), ``ean`` (18 digits, :func:`check_ean`), ``role``
            (consumer/producer/prosumer), ``locality`` (default: the community's perimeter),
            ``category`` of the building (default ``house``), ``assets`` (list of
            ``{"type": "PhotovoltaicDevice", "peakPower": 4.2, ...}``), ``consents`` (mapping
            purpose -> bool), ``username`` and ``password`` for a dashboard account (optional).
        make_account : callable, optional
            Creates the dashboard account (the web layer passes :func:`bright.web.users.create_user`).

        Returns
        -------
        dict
            ``{"memberId", "meterId", "communityId", "tenant", "consents", "questionnaire"}``.
        """
        inv = self.check_invitation(token)
        tenant, cid = inv["tenant"], inv["communityId"]
        community = self.community_doc(cid, tenant=tenant)
        name = str(form.get("name") or "").strip()
        if not 2 <= len(name) <= 120:
            raise OnboardingError("name must have 2 to 120 characters", field="name")
        email = str(form.get("email") or "").strip()
        if email and not _EMAIL_RE.match(email):
            raise OnboardingError(f"e-mail address {email!r} is not valid", field="email")
        role = str(form.get("role") or "consumer")
        if role not in MEMBER_ROLES:
            raise OnboardingError(f"role {role!r} must be consumer, producer or prosumer", field="role")
        ean = check_ean(form.get("ean"))
        perimeter = _value(community, ONB["perimeter"]) or "beyond"
        locality = str(form.get("locality") or perimeter)
        if locality not in LOCALITY_LEVELS:
            raise OnboardingError(f"locality {locality!r} is unknown", field="locality")
        category = str(form.get("category") or "house")
        username = str(form.get("username") or "").strip()
        password = str(form.get("password") or "")
        if username and not password:
            raise OnboardingError("a password is required with a user name", field="password")
        consents = form.get("consents") or {}
        if not isinstance(consents, Mapping):
            raise OnboardingError("consents must map a purpose to true/false", field="consents")
        purposes = {check_purpose(p): _flag(v) for p, v in consents.items()}
        self._check_unique_ean(tenant, ean, None)
        slug = f"m-{secrets.token_hex(4)}"
        key = cid.rsplit(":", 1)[-1]
        pid = f"urn:ngsi-ld:EnergyProsumer:{key}:{slug}"
        mid = f"urn:ngsi-ld:Meter:{key}:{slug}"
        bid = f"urn:ngsi-ld:Building:{key}:{slug}"
        now = _now()
        prosumer: dict[str, Any] = {
            "id": pid,
            "type": "EnergyProsumer",
            "name": _prop(name),
            "roleType": _prop(role),
            "timezone": _prop("Europe/Brussels"),
            "memberOf": _rel(cid),
            "isMeteredBy": _rel(mid),
            "represents": _rel(bid),
            ONB["joinedAt"]: _when(now),
        }
        if email:
            prosumer[ONB["email"]] = _prop(email)
        building = {"id": bid, "type": "Building", "category": _prop([category])}
        meter = {
            "id": mid,
            "type": "Meter",
            "accessPointId": _prop(ean),
            "meterType": _prop("smart"),
            "locality": _prop(locality),
            "locatedIn": _rel(bid),
        }
        assets = self._asset_entities(key, slug, bid, form.get("assets") or [])
        if assets:
            ids = [a["id"] for a in assets]
            prosumer["controls"] = _rel(ids[0] if len(ids) == 1 else ids)
        self._upsert(tenant, [building, meter, *assets, prosumer])
        self._add_member(tenant, cid, pid)
        for purpose, granted in purposes.items():
            if granted:
                self.set_consent(cid, pid, purpose, True, tenant=tenant)
        if username and make_account is not None:
            try:
                make_account(username, password, cid, pid)
            except OnboardingError:
                # No half-registered member: undo the entities, the consents and the membership.
                self._drop_member(tenant, cid, pid)
                created = [pid, mid, bid, *(a["id"] for a in assets)]
                created += [consent_id(pid, p) for p in purposes]
                self.twin.store.delete_many(tenant, created)
                erase_rows(self.engine, tenant, created)
                raise
        with self.engine.begin() as conn:
            conn.execute(
                update(invitations_table)
                .where(invitations_table.c.id == inv["id"])
                .values(used_at=_iso(now), member_id=pid, username=username or None)
            )
        return {
            "memberId": pid,
            "meterId": mid,
            "communityId": cid,
            "tenant": tenant,
            "consents": self.consents(cid, pid, tenant=tenant),
            "questionnaire": self.questionnaire_link(pid),
        }

    def _check_unique_ean(self, tenant: str, ean: str, meter_id: str | None) -> None:
        for doc in self._query(tenant, {"type": "Meter", "q": f'accessPointId=="{ean}"'}):
            if doc["id"] != meter_id:
                raise OnboardingError(f"EAN {ean} is already bound to meter {doc['id']}", field="ean")

    def _asset_entities(self, key: str, slug: str, building: str, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise OnboardingError("assets must be a list of objects", field="assets")
        out: list[dict[str, Any]] = []
        for n, item in enumerate(raw):
            if not isinstance(item, Mapping) or item.get("type") not in ASSET_TYPES:
                raise OnboardingError(
                    f"asset {n}: type must be one of {', '.join(ASSET_TYPES)}", field="assets"
                )
            kind = str(item["type"])
            ent: dict[str, Any] = {
                "id": f"urn:ngsi-ld:{kind}:{key}:{slug}-{n}",
                "type": kind,
                "locatedIn": _rel(building),
            }
            for attr, unit in ASSET_TYPES[kind].items():
                if item.get(attr) not in (None, ""):
                    try:
                        number = float(item[attr])
                    except (TypeError, ValueError):
                        raise OnboardingError(f"asset {n}: {attr} is not a number", field="assets") from None
                    ent[attr] = _prop(int(number) if attr == "numberOfSockets" else number, unit)
            out.append(ent)
        return out

    def _add_member(self, tenant: str, community_id: str, member_id: str) -> None:
        doc = self.community_doc(community_id, tenant=tenant)
        listed = [o for o in _objects(doc, self.ctx.expand("hasMember")) if o != member_id] + [member_id]
        self.twin.append_attributes(tenant, community_id, {"hasMember": _rel(listed)}, self.ctx)

    def _drop_member(self, tenant: str, community_id: str, member_id: str) -> None:
        doc = self.community_doc(community_id, tenant=tenant)
        listed = [o for o in _objects(doc, self.ctx.expand("hasMember")) if o != member_id]
        if listed:
            self.twin.append_attributes(tenant, community_id, {"hasMember": _rel(listed)}, self.ctx)
        elif doc["attrs"].get(self.ctx.expand("hasMember")):
            self.twin.delete_attribute(tenant, community_id, "hasMember", self.ctx, delete_all=True)
        key = _value(doc, TERMS["sharingKey"])
        if isinstance(key, Mapping) and member_id in key:
            # The key named the member: it no longer sums to 100 %, the manager sets a new one.
            self.twin.delete_attribute(tenant, community_id, TERMS["sharingKey"], self.ctx, delete_all=True)

    def members(self, community_id: str, *, tenant: str = "") -> list[dict[str, Any]]:
        """The members with their EAN, locality, role and consents (manager's view)."""
        docs = self._query(tenant, {"type": "EnergyProsumer", "q": f'memberOf=="{community_id}"'})
        meters = self.twin.store.get_many(
            tenant, [m for d in docs for m in _objects(d, self.ctx.expand("isMeteredBy"))]
        )
        consents = self._consents_of(tenant, community_id)
        out = []
        for d in docs:
            meter_ids = _objects(d, self.ctx.expand("isMeteredBy"))
            meter = meters.get(meter_ids[0]) if meter_ids else None
            out.append(
                {
                    "id": d["id"],
                    "name": _value(d, self.ctx.expand("name")),
                    "email": _value(d, ONB["email"]),
                    "role": _value(d, self.ctx.expand("roleType")),
                    "meterId": meter_ids[0] if meter_ids else None,
                    "ean": _value(meter, self.ctx.expand("accessPointId")),
                    "locality": _value(meter, self.ctx.expand("locality")),
                    "consents": consents.get(d["id"], []),
                }
            )
        return out

    def bind_meter(
        self, community_id: str, member_id: str, ean: Any, *, locality: str | None = None, tenant: str = ""
    ) -> str:
        """Bind (or re-bind) the member's meter to an access point EAN; returns the meter id."""
        doc = self.member_doc(community_id, member_id, tenant=tenant)
        code = check_ean(ean)
        meters = _objects(doc, self.ctx.expand("isMeteredBy"))
        slug = member_id.rsplit(":", 1)[-1]
        meter_id = meters[0] if meters else f"urn:ngsi-ld:Meter:{community_id.rsplit(':', 1)[-1]}:{slug}"
        self._check_unique_ean(tenant, code, meter_id)
        if locality is not None and locality not in LOCALITY_LEVELS:
            raise OnboardingError(f"locality {locality!r} is unknown", field="locality")
        ent: dict[str, Any] = {"id": meter_id, "type": "Meter", "accessPointId": _prop(code)}
        if locality is not None:
            ent["locality"] = _prop(locality)
        self._upsert(tenant, [ent], replace=False)
        if not meters:
            self._upsert(
                tenant,
                [{"id": member_id, "type": "EnergyProsumer", "isMeteredBy": _rel(meter_id)}],
                replace=False,
            )
        return meter_id

    def add_assets(
        self, community_id: str, member_id: str, assets: Sequence[Mapping[str, Any]], *, tenant: str = ""
    ) -> list[str]:
        """Declare more assets of a member (PV, battery, EV charger, heat pump); returns their ids."""
        doc = self.member_doc(community_id, member_id, tenant=tenant)
        slug = member_id.rsplit(":", 1)[-1]
        buildings = _objects(doc, self.ctx.expand("represents"))
        existing = _objects(doc, self.ctx.expand("controls"))
        ents = self._asset_entities(
            community_id.rsplit(":", 1)[-1],
            f"{slug}-{len(existing)}",
            buildings[0] if buildings else "",
            assets,
        )
        if not buildings:
            for e in ents:
                e.pop("locatedIn", None)
        self._upsert(tenant, ents)
        ids = existing + [e["id"] for e in ents]
        self._upsert(
            tenant,
            [{"id": member_id, "type": "EnergyProsumer", "controls": _rel(ids[0] if len(ids) == 1 else ids)}],
            replace=False,
        )
        return [e["id"] for e in ents]

    @staticmethod
    def questionnaire_link(member_id: str) -> str:
        """Where the member answers the S-BRIGHT questionnaire (needs the ``sbright`` consent)."""
        return f"/api/members/{member_id}/questionnaire"

    # -- 4. consents ----------------------------------------------------------------------------------

    def set_consent(
        self,
        community_id: str,
        member_id: str,
        purpose: str,
        granted: bool,
        *,
        tenant: str = "",
        at: datetime | None = None,
        on_revoke: Callable[[str, str, str], None] | None = None,
    ) -> dict[str, Any]:
        """Grant or revoke a consent; the ``Consent`` entity keeps the dates.

        Granting writes ``grantedAt`` (and drops a previous ``revokedAt``); revoking keeps
        ``grantedAt`` and writes ``revokedAt``. Revoking ``sbright`` erases the member's questionnaire
        answers and profile (:meth:`bright.services.engagement.EngagementService.withdraw`);
        ``on_revoke(tenant, member_id, purpose)`` lets other layers react too.

        Raises
        ------
        OnboardingError
            Unknown purpose, or revoking a consent never granted.
        """
        self.member_doc(community_id, member_id, tenant=tenant)
        purpose = check_purpose(purpose)
        moment = at or _now()
        cid = consent_id(member_id, purpose)
        current = self.twin.store.get(tenant, cid)
        if granted:
            ent = {
                "id": cid,
                "type": "Consent",
                "member": _rel(member_id),
                "community": _rel(community_id),
                "purpose": _prop(purpose),
                "grantedAt": _when(moment),
            }
            self._upsert(tenant, [ent])  # replace: a renewed consent has no revokedAt
        else:
            if current is None:
                raise OnboardingError(f"member {member_id} never consented to {purpose!r}", field="purpose")
            revoked_iri = self.ctx.expand("revokedAt")
            if not current["attrs"].get(revoked_iri):
                self._upsert(
                    tenant, [{"id": cid, "type": "Consent", "revokedAt": _when(moment)}], replace=False
                )
            if purpose == "sbright":
                from bright.services.engagement import EngagementService

                EngagementService(self.twin, self.series).withdraw(member_id, tenant=tenant)
            if on_revoke is not None:
                on_revoke(tenant, member_id, purpose)
        return self._consent_json(self.twin.store.get(tenant, cid) or {})

    def _consent_json(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": doc.get("id"),
            "purpose": _value(doc, self.ctx.expand("purpose")),
            "grantedAt": _value(doc, self.ctx.expand("grantedAt")),
            "revokedAt": _value(doc, self.ctx.expand("revokedAt")),
            "active": _value(doc, self.ctx.expand("revokedAt")) is None,
        }

    def _consents_of(self, tenant: str, community_id: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for d in self._query(tenant, {"type": "Consent", "q": f'community=="{community_id}"'}):
            member = _value(d, self.ctx.expand("member"))
            out.setdefault(str(member), []).append(self._consent_json(d))
        for items in out.values():
            items.sort(key=lambda c: str(c["purpose"]))
        return out

    def consents(self, community_id: str, member_id: str, *, tenant: str = "") -> list[dict[str, Any]]:
        """A member's consents, active or revoked, with their dates."""
        self.member_doc(community_id, member_id, tenant=tenant)
        return self._consents_of(tenant, community_id).get(member_id, [])

    def has_consent(self, community_id: str, member_id: str, purpose: str, *, tenant: str = "") -> bool:
        """Whether the member's consent to ``purpose`` is granted and not revoked."""
        doc = self.twin.store.get(tenant, consent_id(member_id, purpose))
        return (
            doc is not None
            and _value(doc, self.ctx.expand("grantedAt")) is not None
            and _value(doc, self.ctx.expand("revokedAt")) is None
        )

    # -- 5. sharing key and the DSO pack --------------------------------------------------------------

    def set_sharing_key(
        self, community_id: str, percents: Mapping[str, Any], *, tenant: str = "", method: str | None = None
    ) -> dict[str, float]:
        """Set the fixed sharing key (percent per member, summing to 100) and optionally the method.

        Raises
        ------
        OnboardingError
            A name that is not a member, a negative or non-numeric share, or a sum other than 100 %
            (tolerance 0.01).
        """
        self.community_doc(community_id, tenant=tenant)
        members = {m["id"] for m in self.members(community_id, tenant=tenant)}
        key: dict[str, float] = {}
        for who, pct in percents.items():
            if who not in members:
                raise OnboardingError(
                    f"sharing key names {who!r}, which is not a member", field="sharing_key"
                )
            try:
                value = float(str(pct).replace(",", "."))
            except ValueError:
                raise OnboardingError(
                    f"share of {who} {pct!r} is not a number", field="sharing_key"
                ) from None
            if not np.isfinite(value) or value < 0:
                raise OnboardingError(f"share of {who} must be >= 0 %", field="sharing_key")
            key[who] = value
        total = sum(key.values())
        if abs(total - 100.0) > 0.01:
            raise OnboardingError(f"the sharing key sums to {total:g} %, not 100 %", field="sharing_key")
        ent: dict[str, Any] = {"id": community_id, "type": "EnergyCommunity", "sharingKey": _prop(key)}
        if method is not None:
            if method not in ("fixed", "fixed_multi_round", "pro_rata", "hybrid", "maximum"):
                raise OnboardingError(f"sharing method {method!r} is unknown", field="sharing_method")
            ent["sharingMethod"] = _prop(method)
        self._upsert(tenant, [ent], replace=False)
        return key

    def dso_pack(self, community_id: str, *, tenant: str = "") -> pd.DataFrame:
        """The access points to declare to the DSO, in the documented CSV layout (docs/onboarding.md).

        One row per member whose ``sharing`` consent is active: ``community_id``, ``community_name``,
        ``legal_form``, ``perimeter``, ``locality_name``, ``ean``, ``locality``, ``role``,
        ``key_percent`` (the fixed key renormalised over the declared members; empty without a key),
        ``sharing_method``, ``consent_granted_at``. Members without an active ``sharing`` consent are
        not declared: their meter data may not be used for sharing.
        """
        doc = self.community_doc(community_id, tenant=tenant)
        key = _value(doc, TERMS["sharingKey"]) or {}
        rows = []
        for m in self.members(community_id, tenant=tenant):
            sharing = [c for c in m["consents"] if c["purpose"] == "sharing" and c["active"]]
            if not sharing:
                continue
            rows.append(
                {
                    "community_id": community_id,
                    "community_name": _value(doc, self.ctx.expand("name")),
                    "legal_form": _value(doc, self.ctx.expand("legalForm")),
                    "perimeter": _value(doc, ONB["perimeter"]),
                    "locality_name": _value(doc, ONB["localityName"]) or "",
                    "ean": m["ean"],
                    "locality": m["locality"],
                    "role": m["role"],
                    "key_raw": float(key[m["id"]]) if isinstance(key, Mapping) and m["id"] in key else np.nan,
                    "sharing_method": _value(doc, self.ctx.expand("sharingMethod")),
                    "consent_granted_at": sharing[0]["grantedAt"],
                }
            )
        frame = pd.DataFrame(
            rows,
            columns=[
                "community_id", "community_name", "legal_form", "perimeter", "locality_name", "ean",
                "locality", "role", "key_raw", "sharing_method", "consent_granted_at",
            ],
        )  # fmt: skip
        total = frame["key_raw"].sum(min_count=1)
        frame.insert(8, "key_percent", (100.0 * frame["key_raw"] / total).round(4) if total > 0 else np.nan)
        return frame.drop(columns=["key_raw"]).sort_values("ean", ignore_index=True)

    # -- 6. leaving: export, erasure, anonymisation ---------------------------------------------------

    def _member_entities(self, tenant: str, member_doc: Mapping[str, Any]) -> list[str]:
        """Ids of everything a member owns: itself, meter, building, assets, consents."""
        ids = [str(member_doc["id"])]
        for term in ("isMeteredBy", "represents", "controls"):
            ids.extend(_objects(member_doc, self.ctx.expand(term)))
        ids.extend(
            d["id"] for d in self._query(tenant, {"type": "Consent", "q": f'member=="{member_doc["id"]}"'})
        )
        return list(dict.fromkeys(ids))

    def export_member(self, community_id: str, member_id: str, *, tenant: str = "") -> dict[str, Any]:
        """Everything the node holds about a member (GDPR access and portability), as JSON.

        ``entities`` (NGSI-LD, keyValues with the BRIGHT @context), ``series`` (every stored value of
        the member's entities: ``{entity, attribute, unitCode, values: [[ISO time, value]...]}``),
        ``consents``, ``questionnaire`` (S-BRIGHT answers and profile) and ``statements`` (monthly
        settlement lines of the member, when the community can be settled).
        """
        from bright.twin.entities import RenderOptions, render_entity

        doc = self.member_doc(community_id, member_id, tenant=tenant)
        ids = self._member_entities(tenant, doc)
        docs = self.twin.store.get_many(tenant, ids)
        entities = [
            render_entity(docs[i], self.ctx, RenderOptions(fmt="keyValues")) for i in ids if i in docs
        ]
        series_out = []
        for eid in ids:
            for info in self.series.series(tenant, entity_id=eid):
                frame = self.series.read(eid, info.attribute, tenant=tenant, dataset_id=info.dataset_id)
                col = frame[eid] if eid in frame else pd.Series(dtype=float)
                series_out.append(
                    {
                        "entity": eid,
                        "attribute": self.ctx.compact(info.attribute),
                        "datasetId": info.dataset_id,
                        "unitCode": info.unit_code,
                        "values": [
                            [t.strftime("%Y-%m-%dT%H:%M:%SZ"), None if np.isnan(v) else float(v)]
                            for t, v in zip(col.index, col.to_numpy(), strict=True)
                        ],
                    }
                )
        from bright.services.engagement import answers_table, profiles_table

        with self.engine.connect() as conn:
            answers = [
                {
                    "submittedAt": r.submitted_at,
                    "version": r.version,
                    "answers": json.loads(r.answers),
                    "consentAt": r.consent_at,
                }
                for r in conn.execute(
                    select(answers_table).where(
                        answers_table.c.tenant == tenant, answers_table.c.member_id == member_id
                    )
                )
            ]
            profile_row = conn.execute(
                select(profiles_table.c.profile).where(
                    profiles_table.c.tenant == tenant, profiles_table.c.member_id == member_id
                )
            ).first()
        return {
            "format": "bright-member-export/1",
            "exportedAt": _iso(_now()),
            "tenant": tenant,
            "communityId": community_id,
            "memberId": member_id,
            "entities": entities,
            "series": series_out,
            "consents": self.consents(community_id, member_id, tenant=tenant),
            "questionnaire": {
                "answers": answers,
                "profile": json.loads(profile_row[0]) if profile_row else None,
            },
            "statements": self._statements(community_id, member_id, tenant),
        }

    def _statements(self, community_id: str, member_id: str, tenant: str) -> list[dict[str, Any]]:
        from bright.services.community import load_community
        from bright.services.energy import community_settlement

        try:
            community = load_community(self.twin, self.series, community_id, tenant=tenant)
            member = community.member(member_id)
            if not self.series.series(tenant, entity_id=member.meter_id):
                return []
            report = community_settlement(community, tz="Europe/Brussels")
        except (BadRequestData, ResourceNotFound, ValueError):
            return []
        rows = report.statements.reset_index()
        rows = rows[rows["member_id"] == member_id]
        out: list[dict[str, Any]] = []
        for rec in rows.to_dict(orient="records"):
            out.append({str(k): (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in rec.items()})
        return out

    def export_member_zip(self, community_id: str, member_id: str, *, tenant: str = "") -> bytes:
        """The export as a ZIP: ``member.json`` (all of it) plus one CSV per series."""
        data = self.export_member(community_id, member_id, tenant=tenant)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("member.json", json.dumps(data, indent=1, ensure_ascii=False))
            for n, s in enumerate(data["series"]):
                lines = ["time,value"] + [f"{t},{'' if v is None else v}" for t, v in s["values"]]
                name = re.sub(r"[^A-Za-z0-9]+", "_", f"{s['entity'].rsplit(':', 1)[-1]}_{s['attribute']}")
                zf.writestr(f"series/{n:02d}_{name}.csv", "\n".join(lines) + "\n")
            zf.writestr(
                "README.txt",
                "Your data as held by the BRIGHT node of your energy community (GDPR art. 15 and 20).\n"
                "member.json: entities (NGSI-LD keyValues), series, consents, questionnaire, statements.\n"
                "series/: one CSV per metered quantity, UTC interval start, value in its unit.\n",
            )
        return buf.getvalue()

    def leave(
        self, community_id: str, member_id: str, *, tenant: str = "", mode: str | None = None
    ) -> dict[str, Any]:
        """A member leaves: erase (default) or anonymise their data, per the community's policy.

        ``erase`` deletes the member's entities, their history, their series, consents, questionnaire
        answers and profile, forecasting models, dashboard account and invitation. ``anonymise``
        keeps the meter's readings for the community's history under a new random meter id with no
        EAN, name or link to the person, and erases the rest. Either way the member is dropped from
        ``hasMember`` (and a sharing key naming them is removed: the manager sets a new one).

        Returns
        -------
        dict
            The receipt: mode and row counts per table (no personal data).
        """
        community = self.community_doc(community_id, tenant=tenant)
        doc = self.member_doc(community_id, member_id, tenant=tenant)
        mode = mode or str(_value(community, ONB["leavePolicy"]) or "erase")
        if mode not in LEAVE_POLICIES:
            raise OnboardingError(f"mode {mode!r} must be erase or anonymise", field="mode")
        ids = self._member_entities(tenant, doc)
        meters = _objects(doc, self.ctx.expand("isMeteredBy"))
        receipt: dict[str, int] = {}
        if mode == "anonymise" and meters:
            anon = f"urn:ngsi-ld:Meter:{community_id.rsplit(':', 1)[-1]}:anon-{secrets.token_hex(6)}"
            meter_doc = self.twin.store.get(tenant, meters[0])
            self._upsert(
                tenant,
                [
                    {
                        "id": anon,
                        "type": "Meter",
                        "locality": _prop(_value(meter_doc, self.ctx.expand("locality")) or "beyond"),
                        ONB["formerMemberOf"]: _rel(community_id),
                    }
                ],
            )
            receipt["series_reassigned"] = _rekey_series(self.engine, tenant, meters[0], anon)
            receipt["anonymous_meter"] = 1
        self._drop_member(tenant, community_id, member_id)
        from bright.services.engagement import EngagementService

        EngagementService(self.twin, self.series).withdraw(member_id, tenant=tenant, refresh=False)
        receipt["entities"] = len(self.twin.store.delete_many(tenant, ids))
        receipt.update(erase_rows(self.engine, tenant, ids))
        with self.engine.begin() as conn:
            conn.execute(
                insert(leaves_table).values(
                    tenant=tenant,
                    community_id=community_id,
                    left_at=_iso(_now()),
                    mode=mode,
                    receipt=json.dumps(receipt, sort_keys=True),
                )
            )
        return {"mode": mode, "counts": receipt}


def _objects(doc: Mapping[str, Any] | None, iri: str) -> list[str]:
    out: list[str] = []
    for inst in (doc or {}).get("attrs", {}).get(iri, []):
        obj = inst.get("object", inst.get("objectList"))
        if isinstance(obj, list):
            out.extend(str(o) for o in obj)
        elif obj is not None:
            out.append(str(obj))
    return list(dict.fromkeys(out))


def _rekey_series(engine: Engine, tenant: str, old: str, new: str) -> int:
    from bright.twin.series import series_table

    with engine.begin() as conn:
        res = conn.execute(
            update(series_table)
            .where(series_table.c.tenant == tenant, series_table.c.entity_id == old)
            .values(entity_id=new)
        )
    return int(res.rowcount or 0)


#: Columns that hold an entity or member id in the node's own tables (erased on leave).
ID_COLUMNS = ("entity_id", "member_id", "target_id")
#: Tables of attribute history whose rows (of other entities) may name the member in their value.
HISTORY_TABLES = ("temporal_instances",)


def erase_rows(engine: Engine, tenant: str, ids: Sequence[str]) -> dict[str, int]:
    """Delete every row of any table of the database that names one of ``ids`` in an id column.

    The tables are read from the live schema (so tables other modules add later are covered): a
    column named ``entity_id``, ``member_id`` or ``target_id`` equal to one of ``ids`` (and, when the
    table has one, ``tenant`` equal to ``tenant``) marks a row of the member. Child rows go with
    their parents (``ON DELETE CASCADE``: series chunks with the series).

    Returns
    -------
    dict
        Rows deleted per table (tables with none are left out).
    """
    counts: dict[str, int] = {}
    if not ids:
        return counts
    meta = MetaData()
    meta.reflect(bind=engine, only=lambda name, _m: not name.startswith("sqlite_"))
    with engine.begin() as conn:
        for table in meta.sorted_tables:
            cols = [c for c in ID_COLUMNS if c in table.c]
            if not cols:
                continue
            for col in cols:
                stmt = delete(table).where(table.c[col].in_(list(ids)))
                if "tenant" in table.c:
                    # The default tenant is '' in the twin's tables, NULL in some others (tokens).
                    same = table.c.tenant == tenant
                    stmt = stmt.where(or_(same, table.c.tenant.is_(None)) if tenant == "" else same)
                n = int(conn.execute(stmt).rowcount or 0)
                if n:
                    counts[table.name] = counts.get(table.name, 0) + n
        # History of other entities that named the member (the community's hasMember, its key).
        for name in HISTORY_TABLES:
            history = meta.tables.get(name)
            if history is None or "doc" not in history.c:
                continue
            mentions = or_(*[cast(history.c.doc, Text).contains(i, autoescape=True) for i in ids])
            n = int(conn.execute(delete(history).where(history.c.tenant == tenant, mentions)).rowcount or 0)
            if n:
                counts[name] = counts.get(name, 0) + n
    return counts


def table_names(engine: Engine) -> list[str]:
    """The tables of the live schema (for tests and audits)."""
    return sorted(t for t in inspect(engine).get_table_names() if not t.startswith("sqlite_"))


# --------------------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------------------

_EMAILS = {
    "en": (
        "Invitation to join the energy community {name}",
        "Hello,\n\nyou are invited to join the energy community {name}.\nOpen this link to register "
        "your access point (EAN) and choose what your data may be used for:\n\n{url}\n\nThe link is "
        "personal and valid until {expires} (UTC).\n",
    ),
    "fr": (
        "Invitation à rejoindre la communauté d'énergie {name}",
        "Bonjour,\n\nvous êtes invité·e à rejoindre la communauté d'énergie {name}.\nOuvrez ce lien "
        "pour enregistrer votre point d'accès (EAN) et choisir l'usage de vos données :\n\n{url}\n\n"
        "Le lien est personnel et valable jusqu'au {expires} (UTC).\n",
    ),
    "nl": (
        "Uitnodiging voor de energiegemeenschap {name}",
        "Hallo,\n\nu bent uitgenodigd om lid te worden van de energiegemeenschap {name}.\nOpen deze "
        "link om uw toegangspunt (EAN) te registreren en te kiezen waarvoor uw gegevens mogen dienen:"
        "\n\n{url}\n\nDe link is persoonlijk en geldig tot {expires} (UTC).\n",
    ),
}


def _email_text(lang: str, name: str, url: str, expires: str) -> tuple[str, str]:
    subject, body = _EMAILS.get(lang, _EMAILS["en"])
    return subject.format(name=name), body.format(name=name, url=url, expires=expires)


@dataclass(frozen=True)
class ChecklistItem:
    """One line of the statutes checklist: what, why (legal basis), and whether the twin shows it done."""

    key: str
    text: str
    basis: str
    done: bool | None = None


@dataclass
class Checklist:
    items: list[ChecklistItem] = field(default_factory=list)

    def markdown(self, title: str) -> str:
        lines = [f"# Statutes checklist: {title}", ""]
        for it in self.items:
            box = "x" if it.done else " "
            lines.append(f"- [{box}] **{it.text}** ({it.basis})")
        return "\n".join(lines) + "\n"

    def to_json(self) -> list[dict[str, Any]]:
        return [{"key": i.key, "text": i.text, "basis": i.basis, "done": i.done} for i in self.items]


def statutes_checklist(summary: Mapping[str, Any]) -> Checklist:
    """What the statutes of a REC/CEC must settle before the declaration, checked against the twin.

    Parameters
    ----------
    summary : mapping
        :meth:`Onboarding.summary` of the community.
    """
    legal = summary.get("legalForm")
    members = summary.get("members") or []
    declared = [m for m in members if any(c["purpose"] == "sharing" and c["active"] for c in m["consents"])]
    key = summary.get("sharingKey")
    method = summary.get("sharingMethod")
    items = [
        ChecklistItem("legal_form", f"Legal form chosen: {legal or '?'} (REC or CEC)",
                      "RED II art. 22 / IEMD art. 16", legal in LEGAL_FORMS),
        ChecklistItem("purpose", "Primary purpose: environmental, economic or social community benefits, "
                      "not financial profit", "RED II art. 2(16), IEMD art. 2(11)", None),
        ChecklistItem("open_membership", "Open and voluntary membership; members may leave (exit terms)",
                      "RED II art. 22(1)", None),
        ChecklistItem("control", "Effective control by members or shareholders in the proximity "
                      "(REC) or by natural persons, local authorities, small enterprises (CEC)",
                      "RED II art. 2(16), IEMD art. 2(11)", None),
        ChecklistItem("perimeter", f"Perimeter declared: {summary.get('perimeter') or '?'} "
                      f"({summary.get('localityName') or 'locality name missing'})",
                      "Brussels electricity ordinance, art. 28", bool(summary.get("perimeter"))
                      and bool(summary.get("localityName"))),
        ChecklistItem("members", f"At least two members declared with their EAN ({len(declared)} now)",
                      "DSO declaration", len(declared) >= 2),
        ChecklistItem("sharing_key", f"Sharing method and key agreed ({method or '?'}"
                      f"{', key set' if key else ''})", "DSO declaration",
                      bool(method) and (method not in ("fixed", "fixed_multi_round", "hybrid") or bool(key))),
        ChecklistItem("prices", "Price of shared energy set (community price between feed-in and supplier)",
                      "internal rules", summary.get("tariffs", {}).get("community_eur_per_kwh") is not None),
        ChecklistItem("data", "Data-protection rules: member data private by default, consents per "
                      "purpose, leaving and erasure", "GDPR art. 6, 7, 17, 20",
                      bool(summary.get("dataPolicy"))),
        ChecklistItem("regulator", "Authorisation or notification to the regulator (BRUGEL in Brussels)",
                      "Brussels electricity ordinance", None),
    ]  # fmt: skip
    return Checklist(items)


def dso_csv(frame: pd.DataFrame) -> bytes:
    """The DSO pack as CSV (UTF-8, comma, header line, EAN as text)."""
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
