"""Stacked revenue settled in the energy-sharing statement layout and recorded in the ledger."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from tests.offers.home import small_home

from bright.energy.offers import evaluate_bundle, split_revenue
from bright.services.ledger import LedgerConfig, LedgerNode
from bright.services.offers import (
    OfferInputError,
    demo_offers,
    record_revenue,
    revenue_statements,
    with_service_revenue,
)
from bright.twin.db import make_engine


def test_revenue_statements_and_ledger(tmp_path) -> None:
    fcr = next(o for o in demo_offers() if o.id.endswith("fcr-aggregator"))
    a = evaluate_bundle(small_home(2, seed=1), [fcr]).joint
    b = evaluate_bundle(small_home(2, seed=2), [fcr]).joint
    members = {"urn:ngsi-ld:EnergyProsumer:c1:a": a, "urn:ngsi-ld:EnergyProsumer:c1:b": b}
    month = "2024-01"
    gross = {m: p.monthly_streams_eur[(month, fcr.id)] for m, p in members.items()}
    total = math.fsum(gross.values())
    assert total == pytest.approx(2 * 3.0 * 48 * 0.012)
    reserve = {m: p.offers[fcr.id].reserve_kwh for m, p in members.items()}
    split = split_revenue(
        total,
        method="pro_rata",
        provider_share=fcr.provider_share,
        community_share=0.05,
        contributions=reserve,
    )
    assert split.provider_eur + split.community_eur + math.fsum(split.members.values()) == pytest.approx(
        total
    )
    lines = revenue_statements({(month, fcr.id): split})
    assert list(lines.index.names) == ["month", "member_id"]
    assert lines["service_revenue_eur"].sum() == pytest.approx(math.fsum(split.members.values()))
    assert lines["provider_share_eur"].sum() == pytest.approx(split.provider_eur)
    # the energy-sharing statements of the month get the revenue lines
    energy = pd.DataFrame(
        {"net_cost_eur": [40.0, 55.0, 30.0]},
        index=pd.MultiIndex.from_tuples(
            [
                (pd.Timestamp("2024-01-01", tz="Europe/Brussels"), m)
                for m in [*members, "urn:ngsi-ld:EnergyProsumer:c1:c"]
            ],
            names=["month", "member_id"],
        ),
    )
    merged = with_service_revenue(energy, lines)
    first = next(iter(members))
    assert merged.loc[
        (pd.Timestamp("2024-01-01", tz="Europe/Brussels"), first), "net_cost_after_services_eur"
    ] == pytest.approx(40.0 - split.members[first])
    assert merged["service_revenue_eur"].iloc[-1] == 0.0
    # the members' shares in the ledger, signed and under a tree head
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    node = LedgerNode(engine, LedgerConfig(tmp_path / "data", community="urn:ngsi-ld:EnergyCommunity:c1"))
    indices = record_revenue(node, split, offer_id=fcr.id, month=month, energy_kwh=reserve)
    assert len(indices) == 2
    for m, eur in split.members.items():
        st = node.statement(m)
        assert st["totals"]["earnedCents"] == round(eur * 100)
        assert st["activations"][0]["start"] == "2023-12-31T23:00:00Z"
    with pytest.raises(OfferInputError, match="already recorded"):
        record_revenue(node, split, offer_id=fcr.id, month=month)
    engine.dispose()
