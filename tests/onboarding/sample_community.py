"""A sample community made through the onboarding API (shared by the onboarding tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi.testclient import TestClient

from bright.services.onboarding import ean_check_digit


def valid_ean(n: int, prefix: str = "5414480000") -> str:
    """An 18-digit Belgian EAN with a correct check digit (``n`` < 10^7)."""
    body = f"{prefix}{n:07d}"
    return body + str(ean_check_digit(body))


SETUP = {
    "name": "Les Tournesols d'Ixelles",
    "legal_form": "REC",
    "perimeter": "lv_cabin",
    "locality_name": "Cabine BT 4821 Rue du Viaduc",
    "postal_code": "1050",
    "municipality": "Ixelles",
    "supplier_price": 0.30,
    "feed_in_price": 0.05,
    "community_price": 0.17,
}


@dataclass
class Community:
    """A community made through the API: its id, tenant and members (id, EAN, name, e-mail)."""

    id: str
    tenant: str
    members: list[dict[str, str]] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"NGSILD-Tenant": self.tenant} if self.tenant else {}


def make_community(
    client: TestClient, tenant: str, *, slug: str = "tournesols", n_members: int = 3, ean_base: int = 0
) -> Community:
    """Create a community and let ``n_members`` join by invitation with sharing and S-BRIGHT consents."""
    headers = {"NGSILD-Tenant": tenant} if tenant else {}
    r = client.post("/api/onboarding/communities", headers=headers, json={**SETUP, "slug": slug})
    assert r.status_code == 201, r.text
    c = Community(r.json()["id"], tenant)
    for i in range(n_members):
        inv = client.post(f"/api/onboarding/communities/{c.id}/invitations", headers=headers, json={})
        assert inv.status_code == 201, inv.text
        name, email, ean = (
            f"Zoé Membre{ean_base + i}",
            f"zoe{ean_base + i}@example.be",
            valid_ean(ean_base + i),
        )
        r = client.post(
            "/api/onboarding/join",
            json={
                "token": inv.json()["token"],
                "name": name,
                "email": email,
                "ean": ean,
                "role": "prosumer" if i == 0 else "consumer",
                "assets": [{"type": "PhotovoltaicDevice", "peakPower": 4.5}] if i == 0 else [],
                "consents": {"sharing": True, "sbright": True},
                "username": f"{slug}-member{i}",
                "password": "a long member password",
            },
        )
        assert r.status_code == 201, r.text
        body = r.json()
        c.members.append(
            {"id": body["memberId"], "meter": body["meterId"], "ean": ean, "name": name, "email": email}
        )
    return c
