"""The ledger of a node: identity on first start, settlement records per quarter-hour, heads per
interval, proofs verified offline, and the DVPP (offers, merit order, activations, statements)."""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.config import Settings
from bright.ledger.identity import KEY_FILE_NAME, NodeIdentity
from bright.ledger.records import FlexOffer, Settlement, SignedRecord, sign_record
from bright.ledger.verify import verify_bundle
from bright.services.community import TERMS, load_community
from bright.services.demo import DemoCommunity, build_demo_community, meter_series
from bright.services.energy import community_settlement
from bright.services.ledger import (
    Allocation,
    FlexNeed,
    LedgerConfig,
    LedgerInputError,
    LedgerNode,
    OfferState,
    merit_order,
)
from bright.twin.db import make_engine
from bright.twin.errors import ResourceNotFound
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context

PRICES = {"supplierEnergyPrice": 0.30, "feedInPrice": 0.05, "gridFee": 0.12}


@functools.lru_cache(maxsize=1)
def _demo() -> tuple[DemoCommunity, dict[str, pd.DataFrame]]:
    community = build_demo_community()
    frames = meter_series(community)
    window = slice(pd.Timestamp("2016-06-01", tz="UTC"), pd.Timestamp("2016-06-01 05:45", tz="UTC"))
    return community, {k: frames[k].loc[window] for k in ("offtake", "injection")}


def _cid() -> str:
    return f"urn:ngsi-ld:EnergyCommunity:{_demo()[0].key}"


def _member(key: str) -> str:
    return f"urn:ngsi-ld:EnergyProsumer:{_demo()[0].key}:{key}"


def _device(kind: str, key: str) -> str:
    return f"urn:ngsi-ld:{kind}:{_demo()[0].key}:{key}"


def _priced(entity: dict[str, Any], prices: dict[str, float]) -> dict[str, Any]:
    """The community entity with these prices (EUR/kWh), set by IRI over whatever the demo has."""
    ctx = bright_context()
    iris = {TERMS[k] for k in prices}
    out = {k: v for k, v in entity.items() if k in ("id", "type", "@context") or ctx.expand(k) not in iris}
    out.update({TERMS[k]: {"type": "Property", "value": v} for k, v in prices.items()})
    return out


def _twin(url: str, *, readings: bool = True) -> TwinService:
    community, frames = _demo()
    engine = make_engine(url)
    twin = TwinService(engine, Settings(database_url=url))
    entities = [_priced(community.entities[0], PRICES), *community.entities[1:]]
    res = twin.batch_upsert("", entities, bright_context())
    assert not res["errors"], res["errors"][:1]
    if readings:
        series = SeriesStore(engine)
        for name, frame in frames.items():
            series.write(frame, attribute=bright_context().expand(name), unit_code="KWH")
    return twin


@pytest.fixture
def node(tmp_path) -> Iterator[LedgerNode]:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    twin = _twin(url, readings=False)
    n = LedgerNode(twin.engine, LedgerConfig(tmp_path / "data", community=_cid()), twin=twin)
    yield n
    n.close()
    twin.engine.dispose()


def test_identity_is_created_on_first_start_with_owner_only_permissions(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    twin = _twin(url, readings=False)
    settings_ = Settings(database_url=url, extra={"data_dir": str(tmp_path / "data")})
    first = LedgerNode.open(settings_, twin=twin)
    key_dir = tmp_path / "data" / "keys"
    assert stat.S_IMODE(os.stat(key_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(key_dir / KEY_FILE_NAME).st_mode) == 0o600
    assert first.community == _cid()  # the only EnergyCommunity of the twin, pinned on the first write
    first.sign_head()
    again = LedgerNode.open(settings_, twin=twin)
    assert again.did == first.did == NodeIdentity.load(key_dir).did
    # The DID document is published as an entity; it holds the public key only.
    entity_id = first.publish_identity()
    doc = twin.store.get("", entity_id)
    assert doc is not None and entity_id == f"urn:ngsi-ld:LedgerNode:{first.did.removeprefix('did:key:')}"
    published = first.identity_document()
    assert published["didDocument"]["verificationMethod"][0]["publicKeyMultibase"] == first.did[8:]
    with pytest.raises(LedgerInputError, match="pinned"):
        LedgerNode.open(settings_, twin=twin, community="urn:other")
    # A key readable by others is refused at start.
    os.chmod(key_dir / KEY_FILE_NAME, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        LedgerNode.open(settings_, twin=twin)
    twin.engine.dispose()


def test_settlement_records_per_member_and_quarter_hour(db_url: str, tmp_path) -> None:
    twin = _twin(db_url)
    node = LedgerNode(twin.engine, LedgerConfig(tmp_path / "data", community=_cid()), twin=twin)
    community = load_community(twin, SeriesStore(twin.engine), _cid())
    report = community_settlement(community, pricing="mid_market")
    recorded = node.record_settlement(report)
    n_t, n_m = report.sharing.result.offtake_kwh.shape
    assert (n_t, n_m) == (24, 14)  # 6 h of quarter-hours, 14 members
    assert recorded.records == n_t * n_m and recorded.intervals == n_t and recorded.incomplete == 0
    assert node.store.size == n_t * n_m
    # One head per interval, each covering exactly the intervals settled so far.
    sizes = sorted(h.size for h in node.store.heads(local=True))
    assert sizes == [14 * (t + 1) for t in range(n_t)]
    # Record 14 * 5 + 3 is member 3 in interval 5, with the pure computation's figures in Wh and cents.
    record = node.record(14 * 5 + 3).record()
    assert isinstance(record, Settlement)
    r, s = report.sharing.result, report.settlement
    assert record.member == community.member_ids[3]
    assert record.interval_start == datetime(2016, 6, 1, 1, 15, tzinfo=UTC)
    assert record.offtake_wh == round(r.offtake_kwh[5, 3] * 1000)
    assert record.shared_offtake_wh == round(r.shared_offtake_kwh[5, 3] * 1000)
    assert record.amount_cents == round((s.community_purchase_eur[5, 3] - s.community_sales_eur[5, 3]) * 100)
    # Recording again is idempotent.
    again = node.record_settlement(report)
    assert (again.records, again.skipped_existing, again.head) == (0, n_t * n_m, None)
    # A member can prove its line offline with the operator's key alone.
    bundle = node.proof_bundle(14 * 5 + 3)
    report_ok = verify_bundle(bundle, trusted_keys=[node.did])
    assert report_ok.ok and report_ok.records == 1
    tampered = {**bundle, "entries": [dict(bundle["entries"][0])]}
    body = dict(tampered["entries"][0]["record"]["body"])
    body["amount_cents"] += 1
    tampered["entries"][0]["record"] = {**tampered["entries"][0]["record"], "body": body}
    assert not verify_bundle(tampered, trusted_keys=[node.did]).ok
    node.close()
    twin.engine.dispose()


def test_settlement_of_another_community_is_refused(tmp_path) -> None:
    twin = _twin(f"sqlite:///{tmp_path / 'node.db'}")
    node = LedgerNode(twin.engine, LedgerConfig(tmp_path / "data", community="urn:ngsi-ld:EnergyCommunity:x"))
    community = load_community(twin, SeriesStore(twin.engine), _cid())
    with pytest.raises(LedgerInputError, match="this node's log"):
        node.record_settlement(community_settlement(community, pricing="mid_market"))
    twin.engine.dispose()


def _offer(node: LedgerNode, member: str, device: str, kw: float, eur_per_kwh: float) -> int:
    index, _ = node.post_offer(
        member=member,
        device=device,
        direction="up",
        window_start="2016-06-01T16:00:00Z",
        window_end="2016-06-01T20:00:00Z",
        power_kw=kw,
        price_eur_per_kwh=eur_per_kwh,
    )
    return index


def test_dvpp_offers_merit_order_activation_settlement_statement(node: LedgerNode) -> None:
    a, b = _member("home03"), _member("home08")  # both own a 10 kWh battery
    _offer(node, a, _device("Battery", "home03"), 3.0, 0.15)
    _offer(node, b, _device("Battery", "home08"), 4.0, 0.12)
    need = FlexNeed(datetime(2016, 6, 1, 17, tzinfo=UTC), datetime(2016, 6, 1, 18, tzinfo=UTC), "up", 5.0)
    result = node.activate(need)
    # Merit order: B (12 c/kWh) gives its 4 kW first, A (15 c/kWh) the remaining 1 kW.
    # B: 4 kW x 1 h = 4 kWh x 0.12 EUR/kWh = 0.48 EUR; A: 1 kWh x 0.15 = 0.15 EUR.
    acts = {x["member"]: x for x in result["activations"]}
    assert (acts[b]["powerKw"], acts[b]["energyKwh"], acts[b]["amountCents"]) == (4.0, 4.0, 48)
    assert (acts[a]["powerKw"], acts[a]["energyKwh"], acts[a]["amountCents"]) == (1.0, 1.0, 15)
    assert result["shortfallKw"] == 0.0
    # A second need in the same hour only finds A's 2 kW still free: 2 kW short.
    second = node.activate(FlexNeed(need.start, need.end, "up", 4.0))
    assert second["activatedKw"] == 2.0 and second["shortfallKw"] == 2.0
    # A's first activation delivered 0.8 kWh of the 1 kWh scheduled: paid 0.8 x 0.15 = 0.12 EUR.
    settled = node.settle_activation(acts[a]["activationId"], 0.8)
    assert (settled["status"], settled["energyKwh"], settled["amountCents"]) == ("settled", 0.8, 12)
    with pytest.raises(LedgerInputError, match="already settled"):
        node.settle_activation(acts[a]["activationId"], 0.8)
    with pytest.raises(ResourceNotFound):
        node.settle_activation("urn:bright:activation:none", 1.0)
    # Statements: A offered 3 kW x 4 h = 12 kWh; used 0.8 kWh (settled) + 2 kWh (scheduled);
    # earned 0.12 + 2 x 0.15 = 0.42 EUR. B offered 16 kWh, used 4 kWh, earned 0.48 EUR.
    sa, sb = node.statement(a), node.statement(b)
    assert sa["totals"] == {
        "offers": 1,
        "offeredKwh": 12.0,
        "activations": 2,
        "usedKwh": 2.8,
        "earnedEur": 0.42,
        "earnedCents": 42,
    }
    assert (sb["totals"]["offeredKwh"], sb["totals"]["usedKwh"], sb["totals"]["earnedEur"]) == (
        16.0,
        4.0,
        0.48,
    )
    assert sorted(x["status"] for x in sa["activations"]) == ["scheduled", "settled"]
    # Every line of the statement is a record in the log, provable offline.
    for index in sa["records"]:
        assert verify_bundle(node.proof_bundle(index), trusted_keys=[node.did]).ok
    assert node.offers(member=a)[0]["activations"] == 2


def test_dvpp_offers_are_checked_against_the_twin(node: LedgerNode) -> None:
    with pytest.raises(LedgerInputError, match="not controlled by member"):
        _offer(node, _member("home03"), _device("HeatPump", "home04"), 2.0, 0.1)
    with pytest.raises(LedgerInputError, match="not in the twin"):
        _offer(node, _member("nobody"), _device("Battery", "home03"), 2.0, 0.1)
    with pytest.raises(LedgerInputError, match="power_kw"):
        _offer(node, _member("home03"), _device("Battery", "home03"), 0.0, 0.1)
    with pytest.raises(LedgerInputError, match="window_start"):
        node.post_offer(
            member=_member("home03"),
            device=_device("Battery", "home03"),
            window_start="2016-06-01T16:07:00Z",
            window_end="2016-06-01T20:00:00Z",
            power_kw=1,
            price_eur_per_kwh=0.1,
        )
    with pytest.raises(LedgerInputError, match="time zone"):
        node.post_offer(
            member=_member("home03"),
            device=_device("Battery", "home03"),
            window_start="2016-06-01T16:00:00",
            window_end="2016-06-01T20:00:00Z",
            power_kw=1,
            price_eur_per_kwh=0.1,
        )
    assert node.store.size == 0


def test_offer_signed_by_the_members_own_node(node: LedgerNode) -> None:
    member_node = NodeIdentity.generate()
    offer = FlexOffer(
        "urn:bright:offer:own-1",
        node.community,
        _member("home08"),
        _device("Battery", "home08"),
        "down",
        datetime(2016, 6, 1, 11, tzinfo=UTC),
        datetime(2016, 6, 1, 14, tzinfo=UTC),
        power_w=2500,
        price_cents_per_mwh=8000,
    )
    signed = sign_record(offer, member_node)
    index, record = node.post_offer(signed=signed)
    listed = node.offers(member=_member("home08"))[0]
    assert (listed["author"], listed["custodial"], listed["powerKw"], listed["priceEurPerKwh"]) == (
        member_node.did,
        False,
        2.5,
        0.08,
    )
    assert record == signed and node.record(index) == signed
    with pytest.raises(LedgerInputError, match="already in the log"):
        node.post_offer(signed=signed)
    forged = SignedRecord(signed.kind, {**signed.body, "power_w": 9000}, signed.author, signed.signature)
    with pytest.raises(LedgerInputError, match="signature does not verify"):
        node.post_offer(signed=forged)


def test_the_selector_hook_replaces_the_merit_order(node: LedgerNode) -> None:
    _offer(node, _member("home03"), _device("Battery", "home03"), 3.0, 0.15)
    _offer(node, _member("home08"), _device("Battery", "home08"), 4.0, 0.12)
    need = FlexNeed(datetime(2016, 6, 1, 17, tzinfo=UTC), datetime(2016, 6, 1, 17, 30, tzinfo=UTC), "up", 2.0)

    def dearest_first(n: FlexNeed, offers: Any) -> list[Allocation]:
        best = max(offers, key=lambda s: s.offer.price_cents_per_mwh)
        return [Allocation(best, n.power_w)]

    result = node.activate(need, selector=dearest_first)
    # 2 kW x 0.5 h = 1 kWh at 0.15 EUR/kWh = 15 cents, from the dearer offer.
    assert [(x["member"], x["energyKwh"], x["amountCents"]) for x in result["activations"]] == [
        (_member("home03"), 1.0, 15)
    ]

    def greedy(n: FlexNeed, offers: Any) -> list[Allocation]:
        return [Allocation(offers[0], offers[0].available_w + 1)]

    with pytest.raises(LedgerInputError, match="selector allocated"):
        node.activate(need, selector=greedy)


def _state(index: int, power_w: int, price: int) -> OfferState:
    offer = FlexOffer(
        f"urn:bright:offer:{index}",
        "urn:c",
        f"m{index}",
        f"d{index}",
        "up",
        datetime(2016, 6, 1, tzinfo=UTC),
        datetime(2016, 6, 2, tzinfo=UTC),
        power_w=power_w,
        price_cents_per_mwh=price,
    )
    return OfferState(index, offer, "did:key:x", power_w)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 10_000), st.integers(0, 50_000)), min_size=0, max_size=12),
    st.integers(1, 60_000),
)
def test_merit_order_invariants(offers: list[tuple[int, int]], need_w: int) -> None:
    """Never more than needed nor than an offer has; a dearer offer is used only once every cheaper
    one is exhausted; the need is fully covered whenever the offers suffice."""
    states = [_state(i, p, c) for i, (p, c) in enumerate(offers)]
    need = FlexNeed(
        datetime(2016, 6, 1, 10, tzinfo=UTC), datetime(2016, 6, 1, 11, tzinfo=UTC), "up", need_w / 1000
    )
    chosen = merit_order(need, states)
    total = sum(a.power_w for a in chosen)
    assert total == min(need_w, sum(p for p, _ in offers))
    used = {a.offer.index: a.power_w for a in chosen}
    for a in chosen:
        assert 0 < a.power_w <= a.offer.available_w
    for s in states:
        if used.get(s.index, 0) > 0:
            cheaper = [
                t
                for t in states
                if (t.offer.price_cents_per_mwh, t.index) < (s.offer.price_cents_per_mwh, s.index)
            ]
            assert all(used.get(t.index, 0) == t.available_w for t in cheaper)
