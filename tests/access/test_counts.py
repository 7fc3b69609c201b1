"""``count=true`` tells a filtered caller how many entities it may see, not how many match."""

from __future__ import annotations

from typing import Any

from bright.twin.context import BRIGHT_CONTEXT_URL

from .conftest import NGSI, AccessNode

CTX = {
    "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
}


def _get(node: AccessNode, who: dict[str, str], **params: Any) -> tuple[list[str], int]:
    r = node.client.get(NGSI + "/entities", params={"count": "true", **params}, headers={**CTX, **who})
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()], int(r.headers["NGSILD-Results-Count"])


def test_count_is_what_the_caller_may_see(node: AccessNode) -> None:
    node.add_community("big", 6)
    node.add_community("small", 3)
    member = node.token("member", member_id="urn:ngsi-ld:EnergyProsumer:big:m2")
    gov = node.token("local_government")
    anonymous: dict[str, str] = {}
    types = "Meter,EnergyCommunity,Building"
    # The manager sees everything: 9 meters, 2 communities, 2 buildings.
    assert _get(node, node.manager, type=types, limit="0")[1] == 13
    # member: own meter, both cards, its community's building (6 members >= k); not the 3-member
    # community's building. gov: the cards and the 6-member community's building. anonymous: cards.
    expected = {"member": (member, 4), "gov": (gov, 3), "anonymous": (anonymous, 2)}
    for label, (who, n_visible) in expected.items():
        # Every entity the caller may see, page by page.
        seen: list[str] = []
        offset = 0
        while True:
            ids, _count = _get(node, who, type=types, limit="4", offset=str(offset))
            seen += ids
            offset += 4
            if offset >= 13:
                break
        assert len(set(seen)) == n_visible, (label, seen)
        for limit in ("0", "1", "4", "100"):
            ids, count = _get(node, who, type=types, limit=limit)
            assert count == len(set(seen)), (label, limit, count, seen)
            assert len(ids) <= count
    assert "urn:ngsi-ld:Meter:big:m2" in _get(node, member, type="Meter", limit="100")[0]
    # Before any filtering: the number of all matching entities would have leaked with limit=0.
    assert _get(node, anonymous, type="Meter", limit="0")[1] == 0
    assert _get(node, gov, type="Meter", limit="0")[1] == 0
    assert _get(node, member, type="Meter", limit="0")[1] == 1
    # More than one recount page (1000 entities): 3 cards + 349 x (meter, device, prosumer) = 1050.
    node.add_community("huge", 340)
    many = "EnergyCommunity,Meter,PhotovoltaicDevice,EnergyProsumer"
    assert _get(node, node.manager, type=many, limit="0")[1] == 1050
    assert _get(node, anonymous, type=many, limit="0")[1] == 3
    assert _get(node, member, type=many, limit="2")[1] == 3 + 3  # cards + own meter, device, prosumer
