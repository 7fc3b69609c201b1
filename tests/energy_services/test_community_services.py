"""Community services on the demo community's real data: loading from the twin, readings, use cases
equal to the pure computations, results written back (series, KPI entities), the ``share`` command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bright.commands.share import app as share_app
from bright.energy.balance import balance
from bright.energy.fairness import shapley
from bright.energy.market import DoubleAuction, FixedPrice, MidMarket, Tariff, monthly_statements, settle
from bright.energy.sharing import (
    AccessPoint,
    Locality,
    MeterReadings,
    Role,
    SharingKey,
    SharingMethod,
    TariffType,
    share,
)
from bright.services.community import (
    TERMS,
    CommunityInputError,
    load_community,
    parse_instant,
    readings,
    readings_span,
    resolve_range,
)
from bright.services.demo import DemoCommunity, build_demo_community, meter_series
from bright.services.energy import (
    community_balance,
    community_fairness,
    community_settlement,
    community_sharing,
    sharing_dataset_id,
)
from bright.twin.db import make_engine
from bright.twin.errors import ResourceNotFound
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context

TZ = "Europe/Brussels"
# Data written to the node: local 2016-03-20 .. 2016-07-01 (covers the spring DST change and June).
DATA_START = pd.Timestamp("2016-03-20", tz=TZ).tz_convert("UTC")
DATA_END = pd.Timestamp("2016-07-01", tz=TZ).tz_convert("UTC")
JUNE = (
    pd.Timestamp("2016-06-01", tz=TZ).tz_convert("UTC"),
    pd.Timestamp("2016-06-15", tz=TZ).tz_convert("UTC"),
)
PRICES = {"supplierEnergyPrice": 0.30, "feedInPrice": 0.05, "gridFee": 0.12, "communityPrice": 0.18}
REDUCTION = {"A": 0.06, "B": 0.05, "C": 0.03}
QH = pd.Timedelta("15min")


# --------------------------------------------------------------------------------------------------
# A twin node holding the demo community (real SimBench/UCI profiles)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> tuple[DemoCommunity, dict[str, pd.DataFrame]]:
    community = build_demo_community()
    frames = meter_series(community)
    return community, {k: frames[k].loc[DATA_START : DATA_END - QH] for k in ("offtake", "injection")}


def community_id(demo: DemoCommunity) -> str:
    return str(demo.entities[0]["id"])


def settings_patch(cid: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": cid, "type": "EnergyCommunity"}
    for term, value in PRICES.items():
        body[TERMS[term]] = {"type": "Property", "value": value}
    body[TERMS["networkChargeReduction"]] = {"type": "Property", "value": REDUCTION}
    body[TERMS["emissionFactor"]] = {"type": "Property", "value": 0.15}
    for term, value in extra.items():
        body[TERMS.get(term, term)] = {"type": "Property", "value": value}
    return body


def build_node(
    url: str, demo: tuple[DemoCommunity, dict[str, pd.DataFrame]], **extra: Any
) -> tuple[TwinService, SeriesStore]:
    community, frames = demo
    engine = make_engine(url)
    twin, store = TwinService(engine), SeriesStore(engine)
    ctx = bright_context()
    assert not twin.batch_upsert("", community.entities, ctx)["errors"]
    res = twin.batch_upsert("", [settings_patch(community_id(community), **extra)], ctx, replace=False)
    assert not res["errors"], res["errors"]
    for name, frame in frames.items():
        store.write(frame, attribute=ctx.expand(name), unit_code="KWH")
    return twin, store


@pytest.fixture
def node(
    tmp_path: Path, demo: tuple[DemoCommunity, dict[str, pd.DataFrame]]
) -> Iterator[tuple[TwinService, SeriesStore]]:
    twin, store = build_node(f"sqlite:///{tmp_path / 'node.db'}", demo)
    yield twin, store
    twin.engine.dispose()


@pytest.fixture(scope="module")
def shared_node(
    tmp_path_factory: pytest.TempPathFactory, demo: tuple[DemoCommunity, dict[str, pd.DataFrame]]
) -> Iterator[tuple[TwinService, SeriesStore]]:
    """A read-only node shared by the tests that do not write."""
    twin, store = build_node(f"sqlite:///{tmp_path_factory.mktemp('shared') / 'node.db'}", demo)
    yield twin, store
    twin.engine.dispose()


# --------------------------------------------------------------------------------------------------
# The reference: the pure computations on the same data, built by hand from the demo's definition
# --------------------------------------------------------------------------------------------------


def member_id(demo: DemoCommunity, key: str) -> str:
    return f"urn:ngsi-ld:EnergyProsumer:{demo.key}:{key}"


def reference_readings(
    demo: tuple[DemoCommunity, dict[str, pd.DataFrame]], start: pd.Timestamp, end: pd.Timestamp
) -> MeterReadings:
    community, frames = demo
    rename = {
        f"urn:ngsi-ld:Meter:{community.key}:{m.key}": member_id(community, m.key) for m in community.members
    }
    off = frames["offtake"].loc[start : end - QH].rename(columns=rename)
    inj = frames["injection"].loc[start : end - QH].rename(columns=rename)
    return MeterReadings.from_frames(off, inj)


def reference_points(community: DemoCommunity) -> list[AccessPoint]:
    # "building" members share the community's building, cabin and substation; "lv_cabin" members its
    # cabin and substation: the community as a whole is tariff type B (same LV cabin).
    out = []
    for m in community.members:
        place = Locality("b", "c", "s") if m.locality == "building" else Locality(None, "c", "s")
        out.append(AccessPoint(member_id(community, m.key), Role(m.role), place))
    return out


REFERENCE_TARIFF = Tariff(0.30, 0.05, 0.12, {TariffType.A: 0.06, TariffType.B: 0.05, TariffType.C: 0.03})


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def test_load_community_reads_members_access_points_and_settings(demo, shared_node) -> None:
    twin, store = shared_node
    community, _ = demo
    c = load_community(twin, store, community_id(community))
    assert c.name == community.name
    assert c.member_ids == tuple(member_id(community, m.key) for m in community.members)  # hasMember order
    assert c.meter_ids[0] == f"urn:ngsi-ld:Meter:{community.key}:school"
    assert [m.role.value for m in c.members] == [m.role for m in community.members]
    assert [m.locality for m in c.members] == [m.locality for m in community.members]
    assert all(m.access_point_id is not None and len(m.access_point_id) == 18 for m in c.members)
    assert c.sharing_method is SharingMethod.PRO_RATA and c.sharing_key is None
    assert c.group_type is TariffType.B  # households in the building + others on the LV cabin
    assert c.setting("supplierEnergyPrice") == 0.30 and c.setting("emissionFactor") == 0.15
    assert c.network_reduction_eur_per_kwh == {TariffType.A: 0.06, TariffType.B: 0.05, TariffType.C: 0.03}
    assert readings_span(c) == (DATA_START, DATA_END)
    # coalitions of "building" members only are type A (the fairness game uses that)
    building = [p for p, m in zip(c.access_points(), c.members, strict=True) if m.locality == "building"]
    from bright.energy.sharing import tariff_type

    assert tariff_type(building) is TariffType.A


def test_sharing_key_by_member_meter_or_ean(demo, tmp_path) -> None:
    community, _ = demo
    school, bakery, home = (member_id(community, k) for k in ("school", "bakery", "home04"))
    meter = f"urn:ngsi-ld:Meter:{community.key}:bakery"
    twin, store = build_node(f"sqlite:///{tmp_path / 'k.db'}", demo, sharingMethod="fixed")
    ean = load_community(twin, store, community_id(community)).member(home).access_point_id
    key = {school: 50.0, meter: 30.0, ean: 20.0}
    twin.batch_upsert(
        "", [settings_patch(community_id(community), sharingKey=key)], bright_context(), replace=False
    )
    c = load_community(twin, store, community_id(community))
    assert c.sharing_method is SharingMethod.FIXED
    assert c.sharing_key is not None
    assert c.sharing_key.fractions == pytest.approx({school: 0.5, bakery: 0.3, home: 0.2})


def test_readings_equal_the_meters_series(demo, shared_node) -> None:
    twin, store = shared_node
    community, _ = demo
    c = load_community(twin, store, community_id(community))
    got = readings(c, *JUNE)
    want = reference_readings(demo, *JUNE)
    assert got.member_ids == want.member_ids
    assert got.index is not None and got.index.equals(want.index)
    assert len(got.index) == 14 * 96
    np.testing.assert_array_equal(got.offtake_kwh, want.offtake_kwh)
    np.testing.assert_array_equal(got.injection_kwh, want.injection_kwh)
    whole = readings(c)  # default: the span all meters cover
    assert whole.index is not None and (whole.index[0], whole.index[-1] + QH) == (DATA_START, DATA_END)


def test_time_parameters() -> None:
    assert parse_instant("2016-06-01", tz=TZ) == pd.Timestamp("2016-05-31T22:00Z")
    assert parse_instant("2016-01-01T10:15", tz=TZ) == pd.Timestamp("2016-01-01T09:15Z")
    assert parse_instant("2016-06-01T00:00Z") == pd.Timestamp("2016-06-01T00:00Z")
    assert resolve_range(month="2016-10", tz=TZ) == (
        pd.Timestamp("2016-09-30T22:00Z"),
        pd.Timestamp("2016-10-31T23:00Z"),  # October has 25 h on its last Sunday: 2,980 quarter-hours
    )
    for bad, message in (
        (lambda: parse_instant("yesterday"), "not an ISO 8601"),
        (lambda: parse_instant("2016-03-27T02:30", tz=TZ), "does not exist"),  # spring DST gap
        (lambda: resolve_range("2016-06-02", "2016-06-01"), "must be after start"),
        (lambda: resolve_range("2016-06-01", month="2016-06"), "either month or start/end"),
        (lambda: resolve_range(month="2016-13"), "not YYYY-MM"),
        (lambda: resolve_range(month="2016-06", tz="Mars/Olympus"), "not an IANA time zone"),
    ):
        with pytest.raises(CommunityInputError, match=message):
            bad()


# --------------------------------------------------------------------------------------------------
# Bad input is rejected with a message naming it
# --------------------------------------------------------------------------------------------------


def _patch(twin: TwinService, body: dict[str, Any]) -> None:
    res = twin.batch_upsert("", [body], bright_context(), replace=False)
    assert not res["errors"], res["errors"]


def test_bad_community_data_is_named(demo, node) -> None:
    twin, store = node
    community, _ = demo
    cid = community_id(community)
    home = member_id(community, "home03")

    with pytest.raises(ResourceNotFound, match="urn:ngsi-ld:EnergyCommunity:nowhere not found"):
        load_community(twin, store, "urn:ngsi-ld:EnergyCommunity:nowhere")
    with pytest.raises(ResourceNotFound, match="is not an EnergyCommunity"):
        load_community(twin, store, home)

    # a key that does not sum to 100 %
    _patch(twin, settings_patch(cid, sharingKey={home: 60.0, member_id(community, "bakery"): 30.0}))
    with pytest.raises(CommunityInputError, match=r"sharingKey of .*sum to 90 % instead of 100 %"):
        load_community(twin, store, cid)
    # a key naming someone who is not a member
    _patch(twin, settings_patch(cid, sharingKey={"urn:ngsi-ld:EnergyProsumer:stranger": 100.0}))
    with pytest.raises(
        CommunityInputError, match="names 'urn:ngsi-ld:EnergyProsumer:stranger', which is not a member"
    ):
        load_community(twin, store, cid)
    _patch(twin, settings_patch(cid, sharingKey={home: 100.0}))
    # a price that is not a number
    _patch(twin, settings_patch(cid, supplierEnergyPrice="cheap"))
    with pytest.raises(CommunityInputError, match=r"supplierEnergyPrice of .* is 'cheap'"):
        load_community(twin, store, cid)
    _patch(twin, settings_patch(cid))
    # a member without a meter
    twin.delete_attribute("", home, "isMeteredBy", bright_context())
    with pytest.raises(CommunityInputError, match=f"member {home} of community {cid} has no meter"):
        load_community(twin, store, cid)


def test_member_listed_but_missing_and_unknown_role(demo, node) -> None:
    twin, store = node
    community, _ = demo
    cid = community_id(community)
    ghost = "urn:ngsi-ld:EnergyProsumer:ghost"
    doc = twin.store.get("", cid)
    assert doc is not None
    members = doc["attrs"][bright_context().expand("hasMember")][0]["object"]
    _patch(
        twin,
        {
            "id": cid,
            "type": "EnergyCommunity",
            "hasMember": {"type": "Relationship", "object": [*members, ghost]},
        },
    )
    with pytest.raises(CommunityInputError, match=f"member {ghost} listed in hasMember .* does not exist"):
        load_community(twin, store, cid)
    _patch(
        twin, {"id": cid, "type": "EnergyCommunity", "hasMember": {"type": "Relationship", "object": members}}
    )
    meter = f"urn:ngsi-ld:Meter:{community.key}:home05"
    _patch(
        twin,
        {
            "id": member_id(community, "home06"),
            "type": "EnergyProsumer",
            "isMeteredBy": {"type": "Relationship", "object": meter},
        },
    )
    with pytest.raises(CommunityInputError, match=f"share the meter {meter}"):
        load_community(twin, store, cid)


def test_mismatched_ranges_negative_and_off_grid_readings_are_named(demo, node) -> None:
    twin, store = node
    community, _ = demo
    cid = community_id(community)
    offtake = bright_context().expand("offtake")
    meter = f"urn:ngsi-ld:Meter:{community.key}:home07"
    c = load_community(twin, store, cid)

    # home07's offtake ends a day early: a period up to DATA_END is not covered
    store.delete(meter, offtake, DATA_END - pd.Timedelta(days=1), tenant="")
    last_day = (DATA_END - pd.Timedelta(days=2), DATA_END)
    with pytest.raises(
        CommunityInputError,
        match=rf"member {member_id(community, 'home07')} \(meter {meter}\): offtake readings end at",
    ):
        readings(c, *last_day)
    # without explicit bounds, the common span is used (and says so)
    span = readings_span(c)
    assert span is not None and span[1] == DATA_END - pd.Timedelta(days=1)
    with pytest.raises(CommunityInputError, match=r"start at .* after the requested start"):
        readings(c, DATA_START - pd.Timedelta(days=1), JUNE[1])

    # a negative reading names the member and the interval
    t = JUNE[0] + pd.Timedelta(hours=12)
    store.write(
        pd.DataFrame({meter: [-0.25]}, index=pd.DatetimeIndex([t])), attribute=offtake, unit_code="KWH"
    )
    with pytest.raises(
        CommunityInputError,
        match=rf"offtake_kwh of member '{member_id(community, 'home07')}' at interval 48 "
        r"\(2016-06-01T10:00:00\+00:00\) is -0.25 kWh",
    ):
        readings(c, *JUNE)
    # a reading off the quarter-hour grid
    store.write(
        pd.DataFrame({meter: [0.1]}, index=pd.DatetimeIndex([t + pd.Timedelta(minutes=5)])),
        attribute=offtake,
        unit_code="KWH",
    )
    with pytest.raises(
        CommunityInputError, match=rf"meter {meter}: offtake reading at .* is off the 0 days 00:15:00 grid"
    ):
        readings(c, *JUNE)
    with pytest.raises(CommunityInputError, match="not on the 0 days 00:15:00 grid"):
        readings(c, JUNE[0] + pd.Timedelta(minutes=5), JUNE[1])
    # missing readings stay missing: a NaN quarter-hour is not shared, and says so
    store.write(
        pd.DataFrame({meter: [np.nan, np.nan]}, index=pd.DatetimeIndex([t, t + pd.Timedelta(minutes=5)])),
        attribute=offtake,
        unit_code="KWH",
    )
    store.delete(meter, offtake, t + pd.Timedelta(minutes=5), t + pd.Timedelta(minutes=6), tenant="")
    data = readings(c, *JUNE)
    assert np.isnan(data.offtake_kwh[48, c.member_ids.index(member_id(community, "home07"))])
    run = community_sharing(c, start=JUNE[0], end=JUNE[1])
    assert run.result.missing.sum() == 1 and run.result.missing[48]
    assert np.isnan(run.result.shared_offtake_kwh[48]).all()


def test_readings_place_a_gap_and_check_every_stored_register(demo, node) -> None:
    """An interval absent from the store is NaN in its row (the others as stored); a register a role
    does not need is still checked when it has a series; a gap at the first interval is named."""
    twin, store = node
    community, _ = demo
    c = load_community(twin, store, community_id(community))
    offtake, injection = bright_context().expand("offtake"), bright_context().expand("injection")
    home = f"urn:ngsi-ld:Meter:{community.key}:home07"
    t = JUNE[0] + pd.Timedelta(hours=30)
    store.delete(home, offtake, t, t + QH, tenant="")
    got, want = readings(c, *JUNE), reference_readings(demo, *JUNE)
    column = c.member_ids.index(member_id(community, "home07"))
    row = int((t - JUNE[0]) / QH)
    assert np.isnan(got.offtake_kwh[row, column])
    expected = want.offtake_kwh.copy()
    expected[row, column] = np.nan
    np.testing.assert_array_equal(got.offtake_kwh, expected)
    np.testing.assert_array_equal(got.injection_kwh, want.injection_kwh)
    # the first interval of the period missing in the middle of a series: missing, not uncovered
    store.delete(home, offtake, JUNE[0], JUNE[0] + QH, tenant="")
    first = readings(c, *JUNE)
    assert np.isnan(first.offtake_kwh[0, column]) and not np.isnan(first.offtake_kwh[0, column - 1])
    # a period starting before the series does is named
    with pytest.raises(
        CommunityInputError, match=r"member .* offtake readings start at .* after the requested start"
    ):
        readings(c, DATA_START - QH, JUNE[1])
    # a consumer's injection series that stops early is checked like any stored register
    bakery = f"urn:ngsi-ld:Meter:{community.key}:bakery"
    store.delete(bakery, injection, JUNE[1] - pd.Timedelta(days=1), tenant="")
    with pytest.raises(
        CommunityInputError,
        match=rf"member {member_id(community, 'bakery')} \(meter {bakery}\): injection readings end at",
    ):
        readings(c, *JUNE)


def test_consumer_without_injection_series_reads_zero_but_prosumer_is_rejected(demo, node) -> None:
    twin, store = node
    community, _ = demo
    c = load_community(twin, store, community_id(community))
    injection = bright_context().expand("injection")
    bakery = f"urn:ngsi-ld:Meter:{community.key}:bakery"  # consumer: no injection register
    store.delete(bakery, injection, tenant="")
    data = readings(c, *JUNE)
    assert (data.injection_kwh[:, 1] == 0.0).all()
    school = f"urn:ngsi-ld:Meter:{community.key}:school"  # prosumer: its injection is needed
    store.delete(school, injection, tenant="")
    with pytest.raises(
        CommunityInputError,
        match=f"member {member_id(community, 'school')} \\(meter {school}\\) has no injection readings",
    ):
        readings(c, *JUNE)


# --------------------------------------------------------------------------------------------------
# Use cases equal the pure computations
# --------------------------------------------------------------------------------------------------


def test_use_cases_equal_the_pure_functions(demo, shared_node) -> None:
    twin, store = shared_node
    community, _ = demo
    c = load_community(twin, store, community_id(community))
    data = reference_readings(demo, *JUNE)
    points = reference_points(community)
    pure = share(data, "pro_rata", access_points=points)

    run = community_sharing(c, start=JUNE[0], end=JUNE[1])
    assert run.method is SharingMethod.PRO_RATA and run.group_type is TariffType.B
    np.testing.assert_array_equal(run.result.shared_offtake_kwh, pure.shared_offtake_kwh)
    np.testing.assert_array_equal(run.result.shared_injection_kwh, pure.shared_injection_kwh)
    # energy is conserved and the June fortnight shares something real
    assert run.result.shared_kwh.sum() == pytest.approx(run.result.shared_injection_kwh.sum(), abs=1e-9)
    assert run.result.shared_kwh.sum() > 100.0

    report = community_balance(c, start=JUNE[0], end=JUNE[1], freq="1D", tz=TZ)
    want = balance(pure, freq="D", tz=TZ, emission_factor_kg_per_kwh=0.15)
    pd.testing.assert_frame_equal(report.community_frame(), want.community, check_names=False)
    assert len(report.community_frame()) == 14
    members = report.members_frame()
    assert len(members) == 14 * 14
    np.testing.assert_array_equal(
        members["shared_offtake_kwh"].to_numpy().reshape(14, 14), want.shared_offtake_kwh.to_numpy()
    )

    for pricing, rule in (("mid_market", MidMarket()), ("fixed", FixedPrice(0.18))):
        got = community_settlement(c, start=JUNE[0], end=JUNE[1], pricing=pricing, tz=TZ)
        ref = settle(pure, REFERENCE_TARIFF, rule, group_type=TariffType.B)
        np.testing.assert_allclose(got.settlement.savings_eur, ref.savings_eur, rtol=0, atol=1e-12)
        pd.testing.assert_frame_equal(got.statements, monthly_statements(ref, tz=TZ))
        assert got.community_totals()["savings_eur"] == pytest.approx(
            float(np.nansum(ref.savings_eur)), abs=1e-9
        )

    # fairness over two days (14 members: all 16,384 coalitions)
    two_days = (JUNE[0], JUNE[0] + pd.Timedelta(days=2))
    fair = community_fairness(c, start=two_days[0], end=two_days[1], pricing="mid_market")
    ref_values = shapley(
        reference_readings(demo, *two_days), REFERENCE_TARIFF, method="pro_rata", access_points=points
    )
    assert fair.shapley.exact
    np.testing.assert_allclose(fair.shapley.value_eur, ref_values.value_eur, rtol=0, atol=1e-12)
    assert fair.shapley.value_eur.sum() == pytest.approx(
        fair.shapley.grand_coalition_eur, abs=1e-9
    )  # efficiency


def test_keyed_methods_and_auction_use_the_community_settings(demo, tmp_path) -> None:
    community, _ = demo
    school, bakery = member_id(community, "school"), member_id(community, "bakery")
    consumers = [member_id(community, m.key) for m in community.members if m.role == "consumer"]
    key = {m: (40.0 if m == bakery else 60.0 / (len(consumers) - 1)) for m in consumers}
    twin, store = build_node(
        f"sqlite:///{tmp_path / 'a.db'}",
        demo,
        sharingMethod="fixed_multi_round",
        sharingKey=key,
        auctionFee=0.01,
    )
    bids = {member_id(community, m.key): 0.20 + 0.01 * i for i, m in enumerate(community.members)}
    asks = {school: 0.08, member_id(community, "home01"): 0.10}
    for who, price in bids.items():
        body: dict[str, Any] = {
            "id": who,
            "type": "EnergyProsumer",
            TERMS["bidPrice"]: {"type": "Property", "value": price},
        }
        if who in asks:
            body[TERMS["askPrice"]] = {"type": "Property", "value": asks[who]}
        _patch(twin, body)
    c = load_community(twin, store, community_id(community))
    data = reference_readings(demo, *JUNE)
    points = reference_points(community)
    sk = SharingKey.from_percent(key)
    for method in ("fixed", "fixed_multi_round", "hybrid", "maximum"):
        got = community_sharing(c, start=JUNE[0], end=JUNE[1], method=method)
        want = share(data, method, key=sk, access_points=points)
        np.testing.assert_array_equal(got.result.shared_offtake_kwh, want.shared_offtake_kwh)
    # multi-round places more than single-round, never more than maximum sharing
    totals = {
        m: community_sharing(c, start=JUNE[0], end=JUNE[1], method=m).result.shared_kwh.sum()
        for m in ("fixed", "fixed_multi_round", "maximum")
    }
    assert totals["fixed"] < totals["fixed_multi_round"] <= totals["maximum"] + 1e-9

    got = community_settlement(c, start=JUNE[0], end=JUNE[1], pricing="auction")
    ref = settle(
        share(data, "fixed_multi_round", key=sk, access_points=points),
        REFERENCE_TARIFF,
        DoubleAuction(bids, asks, 0.01),
        group_type=TariffType.B,
    )
    assert got.settlement.auction is not None and ref.auction is not None
    np.testing.assert_array_equal(got.settlement.auction.matched_buy_kwh, ref.auction.matched_buy_kwh)
    np.testing.assert_allclose(got.settlement.community_account_eur, ref.community_account_eur, atol=1e-12)
    assert got.community_totals()["auction_matched_kwh"] > 0

    # a keyed method without a key, fixed pricing without a price, an unknown pricing
    with pytest.raises(CommunityInputError, match="the fixed method needs a sharing key"):
        community_sharing(
            load_community(*build_node(f"sqlite:///{tmp_path / 'b.db'}", demo), community_id(community)),
            method="fixed",
        )
    with pytest.raises(CommunityInputError, match="pricing 'barter' is unknown"):
        community_settlement(c, pricing="barter")
    with pytest.raises(CommunityInputError, match="sharing method 'greedy' is unknown"):
        community_sharing(c, method="greedy")


def test_price_series_of_the_community_is_used_per_interval(demo, node) -> None:
    twin, store = node
    community, _ = demo
    cid = community_id(community)
    hours = pd.date_range(JUNE[0], JUNE[1], freq="1h", inclusive="left")
    hourly = pd.Series(0.20 + 0.10 * (hours.hour >= 17), index=hours, name=cid)  # evening peak price
    store.write(hourly, attribute=TERMS["supplierEnergyPrice"], unit_code="EUR")
    c = load_community(twin, store, cid)
    got = community_settlement(c, start=JUNE[0], end=JUNE[1], pricing="mid_market")
    per_qh = hourly.reindex(pd.date_range(JUNE[0], JUNE[1], freq="15min", inclusive="left"), method="ffill")
    np.testing.assert_array_equal(got.settlement.supplier_energy_eur_per_kwh, per_qh.to_numpy())
    ref = settle(
        share(reference_readings(demo, *JUNE), "pro_rata", access_points=reference_points(community)),
        Tariff(per_qh.to_numpy(), 0.05, 0.12, REFERENCE_TARIFF.network_reduction_eur_per_kwh),
        MidMarket(),
        group_type=TariffType.B,
    )
    np.testing.assert_allclose(got.settlement.savings_eur, ref.savings_eur, atol=1e-12)
    # beyond the series, no price is in force: named, not guessed
    with pytest.raises(
        CommunityInputError,
        match=r"supplierEnergyPrice series of .* has no value in force at 2016-06-14T22:00:00\+00:00",
    ):
        community_settlement(c, start=JUNE[0], end=JUNE[1] + pd.Timedelta(days=1), pricing="mid_market")


@settings(max_examples=8, deadline=None)
@given(
    start_qh=st.integers(0, 96 * 100),
    length_qh=st.integers(1, 96 * 3),
    method=st.sampled_from(["pro_rata", "maximum"]),
)
def test_any_period_shares_like_the_pure_function(
    demo, shared_node, start_qh: int, length_qh: int, method: str
) -> None:
    # any quarter-hour-aligned sub-period of the data gives the pure result on the same slice, and
    # conserves energy: sum of shared offtake == sum of shared injection, no one above its offtake
    twin, store = shared_node
    community, _ = demo
    start = DATA_START + start_qh * QH
    end = min(start + length_qh * QH, DATA_END)
    c = load_community(twin, store, community_id(community))
    got = community_sharing(c, start=start, end=end, method=method).result
    want = share(reference_readings(demo, start, end), method, access_points=reference_points(community))
    np.testing.assert_array_equal(got.shared_offtake_kwh, want.shared_offtake_kwh)
    assert got.shared_offtake_kwh.sum() == pytest.approx(got.shared_injection_kwh.sum(), abs=1e-9)
    assert (got.shared_offtake_kwh <= got.offtake_kwh + 1e-12).all()


# --------------------------------------------------------------------------------------------------
# Results written back to the twin
# --------------------------------------------------------------------------------------------------


def test_kpis_and_sharing_series_are_written_to_the_twin(demo, node) -> None:
    twin, store = node
    community, _ = demo
    cid = community_id(community)
    c = load_community(twin, store, cid)
    report = community_balance(c, start=JUNE[0], end=JUNE[1], freq="1D", tz=TZ, write=True)
    assert len(report.kpi_ids) == 14 * 10  # 14 days x 10 community KPIs
    assert report.sharing.series_written == 2 * 14 * 96 * 14

    # KPI entities are ordinary NGSI-LD entities: query them by type and indicator
    ctx = bright_context()
    eq = twin.build_query(
        {"type": "KeyPerformanceIndicator", "q": f'{TERMS["indicator"]}=="shared_kwh"', "limit": "100"}, ctx
    )
    docs, _ = twin.store.query("", eq)
    assert len(docs) == 14
    june3 = next(d for d in docs if d["id"].endswith(":shared_kwh:pro_rata:daily:2016-06-03"))
    kpi = june3["attrs"][ctx.expand("kpiValue")][0]
    assert kpi["unitCode"] == "KWH"
    assert kpi["value"] == report.community_frame().loc["2016-06-03", "shared_kwh"].item()
    assert june3["attrs"][ctx.expand("calculationPeriod")][0]["value"] == {
        "from": "2016-06-03T00:00:00+02:00",
        "to": "2016-06-04T00:00:00+02:00",
    }
    assert june3["attrs"][TERMS["refEnergyCommunity"]][0]["object"] == cid
    assert june3["attrs"][ctx.expand("calculationFrequency")][0]["value"] == "daily"

    # the shared volumes are on each member's meter, default instance = the community's own method
    shared = store.read(list(c.meter_ids), TERMS["sharedOfftake"], *JUNE)
    np.testing.assert_array_equal(shared.to_numpy(), report.sharing.result.shared_offtake_kwh)
    assert sharing_dataset_id(c, SharingMethod.PRO_RATA) is None
    # a what-if method goes under its own datasetId and leaves the official numbers alone
    maximum = community_sharing(c, start=JUNE[0], end=JUNE[1], method="maximum", write=True)
    what_if = store.read(
        list(c.meter_ids), TERMS["sharedOfftake"], *JUNE, dataset_id="urn:ngsi-ld:Dataset:sharing:maximum"
    )
    np.testing.assert_array_equal(what_if.to_numpy(), maximum.result.shared_offtake_kwh)
    instances = store.series("", entity_id=c.meter_ids[0], attribute=TERMS["sharedOfftake"])
    assert [i.dataset_id for i in instances] == [None, "urn:ngsi-ld:Dataset:sharing:maximum"]
    np.testing.assert_array_equal(
        store.read(list(c.meter_ids), TERMS["sharedOfftake"], *JUNE).to_numpy(), shared.to_numpy()
    )

    # a re-run replaces the KPIs (same ids), settlement and fairness add theirs
    again = community_balance(c, start=JUNE[0], end=JUNE[1], freq="1D", tz=TZ, write=True)
    assert again.kpi_ids == report.kpi_ids
    money = community_settlement(c, start=JUNE[0], end=JUNE[1], pricing="mid_market", write=True)
    assert len(money.kpi_ids) == 4  # one (partial) month x 4 indicators
    doc = twin.store.get("", next(i for i in money.kpi_ids if ":savings_eur:" in i))
    assert doc is not None
    assert doc["attrs"][ctx.expand("kpiValue")][0]["value"] == pytest.approx(
        money.community_totals()["savings_eur"]
    )
    with pytest.raises(CommunityInputError, match="KPI entities are written per day, month or year"):
        community_balance(c, start=JUNE[0], end=JUNE[1], freq="1h", write=True)


# --------------------------------------------------------------------------------------------------
# The share command
# --------------------------------------------------------------------------------------------------


def test_share_command_writes_csv_and_parquet(demo, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    twin, _ = build_node(url, demo)
    twin.engine.dispose()
    community, _ = demo
    runner = CliRunner()
    args = [
        "--community",
        community_id(community),
        "--start",
        "2016-06-01",
        "--end",
        "2016-06-08",
        "--database",
        url,
    ]
    res = runner.invoke(
        share_app, [*args, "--pricing", "mid_market", "--output", str(tmp_path / "june.parquet"), "--write"]
    )
    assert res.exit_code == 0, res.output
    assert "pro_rata sharing, tariff type B" in res.output and "KPI entities" in res.output
    res = runner.invoke(share_app, [*args, "--method", "maximum", "--output", str(tmp_path / "june.csv")])
    assert res.exit_code == 0, res.output

    week = (JUNE[0], JUNE[0] + pd.Timedelta(days=7))
    data = reference_readings(demo, *week)
    points = reference_points(community)
    parquet = pd.read_parquet(tmp_path / "june.parquet")
    assert len(parquet) == 7 * 96 * 14
    assert str(parquet["interval_start"].dt.tz) == TZ and parquet["interval_start"].iloc[0] == week[0]
    pure = share(data, "pro_rata", access_points=points)
    np.testing.assert_array_equal(
        parquet["shared_offtake_kwh"].to_numpy().reshape(-1, 14), pure.shared_offtake_kwh
    )
    ref = settle(pure, REFERENCE_TARIFF, MidMarket(), group_type=TariffType.B)
    np.testing.assert_allclose(parquet["savings_eur"].to_numpy().reshape(-1, 14), ref.savings_eur, atol=1e-12)

    csv = pd.read_csv(tmp_path / "june.csv")
    assert csv["interval_start"].iloc[0] == "2016-06-01T00:00:00+02:00"
    maximum = share(data, "maximum", access_points=points)
    np.testing.assert_allclose(
        csv["shared_offtake_kwh"].to_numpy().reshape(-1, 14),
        maximum.shared_offtake_kwh,
        rtol=1e-11,
        atol=1e-12,
    )

    bad = runner.invoke(share_app, [*args, "--method", "fixed"])
    assert bad.exit_code == 1 and "needs a sharing key" in bad.output
    bad = runner.invoke(share_app, [*args, "--output", str(tmp_path / "june.xlsx")])
    assert bad.exit_code != 0 and ".csv or .parquet" in bad.output
    bad = runner.invoke(share_app, ["--community", "urn:ngsi-ld:EnergyCommunity:none", "--database", url])
    assert bad.exit_code == 1 and "not found" in bad.output
