"""Mobility scenarios of a community in the twin: inputs read from the twin, runs with their figures,
results written and read back, comparison, plot data and the 2030 demo scenario (both backends)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from mobility_twin import CID, CONNECTION_KW, END, N_STEPS, PV_KWP, START, build_twin

from bright.services.community import CommunityInputError, load_community
from bright.services.mobility import (
    DEFAULT_EMISSION_KG_PER_KWH,
    METRICS,
    MOBILITY_DATASET,
    SCENARIO_TERMS,
    SCENARIO_TYPE,
    SERIES,
    compare_stored,
    list_scenarios,
    load_inputs,
    parse_spec,
    run_demo_scenario,
    run_scenarios,
    scenario_curves,
    scenario_entity_id,
    stored_scenario,
)
from bright.twin.errors import ResourceNotFound
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context


@pytest.fixture
def twin(db_url: str) -> Iterator[tuple[TwinService, SeriesStore, dict[str, pd.DataFrame]]]:
    t, s, written = build_twin(db_url)
    yield t, s, written
    t.engine.dispose()


def test_inputs_are_the_twin_as_metered(
    twin: tuple[TwinService, SeriesStore, dict[str, pd.DataFrame]],
) -> None:
    svc, series, written = twin
    c = load_community(svc, series, CID)
    inputs = load_inputs(c)
    assert inputs.model.start == START and inputs.model.n_steps == N_STEPS and inputs.model.end == END
    # Base load = offtake - injection + PV production, summed over the members, kWh / 0.25 h = kW.
    prod = written["production"].sum(axis=1).to_numpy()
    net = (written["offtake"] - written["injection"]).sum(axis=1).to_numpy()
    np.testing.assert_allclose(inputs.model.pv_kw, prod / 0.25, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(inputs.model.base_kw, (net + prod) / 0.25, rtol=1e-9, atol=1e-9)
    assert inputs.pv_kwp == pytest.approx(PV_KWP)
    # The twin's chargers: home02's 11 kW in a house; the school's 2 x 22 kW at work.
    assert inputs.chargers == {"home": ((11.0, 1.0),), "work": ((22.0, 2.0),)}
    # The demo community's prices: 0.30 EUR/kWh supplier energy, no grid fee, 0.05 feed-in.
    np.testing.assert_allclose(inputs.model.import_price_eur_per_kwh, 0.30)
    np.testing.assert_allclose(inputs.model.export_price_eur_per_kwh, 0.05)
    np.testing.assert_allclose(inputs.model.emission_kg_per_kwh, DEFAULT_EMISSION_KG_PER_KWH)
    assert inputs.sources["emission"].startswith("default 0.16")
    assert inputs.model.connection_limit_kw == CONNECTION_KW and inputs.model.transformer_limit_kva is None
    with pytest.raises(CommunityInputError, match="outside the readings"):
        load_inputs(c, start="2016-06-01")


def test_runs_figures_persistence_and_comparison(
    twin: tuple[TwinService, SeriesStore, dict[str, pd.DataFrame]],
) -> None:
    svc, series, _ = twin
    c = load_community(svc, series, CID)
    specs = [
        {"name": "today", "n_evs": 0},
        {"name": "uncontrolled", "year": 2030, "n_evs": 10, "seed": 3},
        {"name": "edf wide", "year": 2030, "n_evs": 10, "seed": 3, "policy": "earliest_deadline_first",
         "ev_site_limit_kw": 500.0},
        {"name": "edf 12 kW", "year": 2030, "n_evs": 10, "seed": 3, "policy": "earliest_deadline_first",
         "ev_site_limit_kw": 12.0, "lv_cabin_limit_kva": 50.0, "power_factor": 0.95},
        {"name": "connection", "year": 2030, "n_evs": 10, "seed": 3, "policy": "pv_following",
         "follow_connection_limit": True, "connection_limit_kw": 30.0},
        {"name": "v2g", "year": 2030, "n_evs": 10, "seed": 3, "policy": "vehicle_to_grid"},
    ]  # fmt: skip
    seen: list[tuple[int, int, str]] = []
    runs = run_scenarios(c, specs, progress=lambda d, n, s: seen.append((d, n, s)))
    assert seen[0] == (0, 6, "today") and seen[-1] == (6, 6, "done")
    by = {r.spec.name: r for r in runs}
    today, unc, wide, tight, conn, v2g = (by[n].kpis for n in by)
    assert today["n_vehicles"] == 0 and today["ev_charged_kwh"] == 0 and today["peak_increase_kw"] == 0
    assert today["peak_import_kw"] == pytest.approx(today["baseline_peak_import_kw"])
    for k in (unc, wide, v2g):  # feasible: every request delivered
        assert k["n_vehicles"] == 10 and k["requested_kwh"] > 100
        assert k["delivered_kwh"] == pytest.approx(k["requested_kwh"], rel=1e-9)
        assert k["unmet_kwh"] == pytest.approx(0.0, abs=1e-6)
    # The same fleet (same seed) under every policy; a non-binding EDF limit is uncontrolled charging.
    assert wide["requested_kwh"] == unc["requested_kwh"] == tight["requested_kwh"]
    np.testing.assert_allclose(
        by["edf wide"].result.charge_kw, by["uncontrolled"].result.charge_kw, atol=1e-9
    )
    # Limit-aware policies never exceed their limit: EV power <= 12 kW, net import <= the connection.
    assert by["edf 12 kW"].result.charge_kw.max() <= 12.0 + 1e-9
    assert by["uncontrolled"].result.charge_kw.max() > 12.0
    base_net = by["today"].result.net_kw
    assert np.all(by["connection"].result.net_kw <= np.maximum(30.0, base_net) + 1e-9)
    # EV charging only fills the headroom (and cuts exports): no more hours above 30 kW than before.
    assert 0 < conn["hours_above_connection_h"] <= np.sum(np.abs(base_net) > 30.0) * 0.25
    # V2G gives energy back and still delivers every request (nobody leaves below the departure SoC).
    assert v2g["ev_discharged_kwh"] > 1.0
    # Units of the stored figures: hours on the 15-min grid, cost = imports x 0.30 - exports x 0.05.
    assert (tight["hours_above_transformer_h"] * 4) == pytest.approx(
        round(tight["hours_above_transformer_h"] * 4)
    )
    assert math.isnan(unc["hours_above_transformer_h"])
    assert unc["cost_eur"] == pytest.approx(unc["import_kwh"] * 0.30 - unc["export_kwh"] * 0.05, rel=1e-9)
    assert unc["co2_kg"] == pytest.approx(unc["import_kwh"] * 0.16, rel=1e-9)

    # Written: one entity per scenario and its three series, read back as computed.
    assert {s.name for s in list_scenarios(c)} == set(by)
    stored = stored_scenario(c, "edf 12 kW")
    assert stored.id == scenario_entity_id(CID, "edf 12 kW") == "urn:ngsi-ld:MobilityScenario:mob:edf-12-kw"
    assert stored == stored_scenario(c, stored.id)
    assert stored.policy == "earliest_deadline_first" and stored.year == 2030
    assert stored.parameters["ev_site_limit_kw"] == 12.0
    assert stored.start == START and stored.end == END
    for metric in METRICS:
        want = tight[metric]
        got = stored.kpis[metric]
        assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, abs=1e-6), metric
    for key, (attribute, _) in SERIES.items():
        frame = series.read(stored.id, attribute, START, END, dataset_id=MOBILITY_DATASET)
        want_series = {"site_load": "net_kw", "ev_charge": "charge_kw", "ev_discharge": "discharge_kw"}[key]
        np.testing.assert_allclose(frame[stored.id].to_numpy(), getattr(by["edf 12 kW"].result, want_series))
    doc = svc.store.get("", stored.id)
    assert doc is not None and SCENARIO_TYPE in doc["type"]

    # Side by side, in the order asked; a re-run of a name replaces it.
    table = compare_stored(c, ["uncontrolled", "edf 12 kW", stored_scenario(c, "today").id])
    assert list(table.columns) == ["uncontrolled", "edf 12 kW", "today"] and list(table.index) == list(
        METRICS
    )
    assert table.loc["peak_import_kw", "edf 12 kW"] <= table.loc["peak_import_kw", "uncontrolled"]
    again = run_scenarios(c, [{"name": "today", "n_evs": 2, "seed": 1}])
    assert stored_scenario(c, "today").kpis["n_vehicles"] == 2 == again[0].kpis["n_vehicles"]
    assert len(list_scenarios(c)) == 6

    # Plot data from the stored series.
    dur = scenario_curves(c, ["uncontrolled", "edf 12 kW"], curve="duration", points=50)
    assert len(dur["x"]) == 50 and dur["x"][-1] == pytest.approx(N_STEPS * 0.25)
    curve = np.array(dur["series"]["uncontrolled"])
    assert np.all(np.diff(curve) <= 1e-9) and curve[0] == pytest.approx(unc["peak_import_kw"], abs=1e-4)
    prof = scenario_curves(c, ["uncontrolled"], curve="daily_profile", quantity="ev_charge")
    assert len(prof["x"]) == 96
    assert np.mean(prof["series"]["uncontrolled"]) * 24 * 21 == pytest.approx(unc["ev_charged_kwh"], rel=1e-4)
    peaks = scenario_curves(c, ["uncontrolled"], curve="daily_peak")
    assert len(peaks["x"]) == 21 and max(peaks["series"]["uncontrolled"]) == pytest.approx(
        max(np.max(by["uncontrolled"].result.net_kw), 0.0), abs=1e-4
    )
    hourly = scenario_curves(c, ["edf 12 kW"], curve="timeseries", quantity="ev_charge", resolution="1h")
    assert len(hourly["x"]) == 21 * 24 and max(hourly["series"]["edf 12 kW"]) <= 12.0 + 1e-6
    with pytest.raises(CommunityInputError, match="curve"):
        scenario_curves(c, ["today"], curve="pie")
    with pytest.raises(ResourceNotFound):
        stored_scenario(c, "nope")


def test_spec_validation_names_the_problem() -> None:
    with pytest.raises(CommunityInputError, match=r"scenario 'x': unknown field 'evs' \(allowed: name, year"):
        parse_spec({"name": "x", "evs": 3})
    with pytest.raises(CommunityInputError, match="give n_evs or adoption, not both"):
        parse_spec({"name": "x", "n_evs": 3, "adoption": {"fleet_size": 9, "midpoint_year": 2030,
                                                           "growth_per_year": 0.4}})  # fmt: skip
    with pytest.raises(CommunityInputError, match="earliest_deadline_first needs"):
        parse_spec({"name": "x", "n_evs": 3, "policy": "earliest_deadline_first"})
    with pytest.raises(CommunityInputError, match="policy"):
        parse_spec({"name": "x", "policy": "fastest"})
    with pytest.raises(CommunityInputError, match=r"chargers\.0\.power_kw"):
        parse_spec({"name": "x", "chargers": [{"location": "home", "power_kw": -1}]})
    with pytest.raises(CommunityInputError, match="JSON object"):
        parse_spec(["x"])
    spec = parse_spec({"name": "a", "year": 2030, "adoption": {"fleet_size": 100, "midpoint_year": 2030,
                                                                 "growth_per_year": 0.4}})  # fmt: skip
    assert spec.evs == 50  # half the fleet at the midpoint year


def test_changes_pv_shared_cars_chargers(
    twin: tuple[TwinService, SeriesStore, dict[str, pd.DataFrame]],
) -> None:
    svc, series, _ = twin
    c = load_community(svc, series, CID)
    runs = run_scenarios(
        c,
        [
            {"name": "more pv", "added_pv_kwp": PV_KWP, "pv_scale": 1.0},
            {"name": "shared", "n_evs": 9, "shared_replacing": 8, "seed": 2},
            {"name": "chargers", "n_evs": 6, "seed": 2, "chargers": [{"location": "home", "power_kw": 3.7}]},
        ],
        write=False,
    )
    more, shared, chargers = (r.kpis for r in runs)
    # Community-optimal through the flexibility solver: the same cost as the bundled LP.
    optimal = run_scenarios(
        c,
        [
            {"name": f"opt {solver}", "n_evs": 4, "seed": 9, "policy": "community_optimal",
             "optimal_solver": solver, "start": "2016-06-06", "end": "2016-06-09"}
            for solver in ("lp", "flex")
        ],
        write=False,
    )  # fmt: skip
    lp, flex = (r.kpis for r in optimal)
    assert flex["cost_eur"] == pytest.approx(lp["cost_eur"], abs=1e-3)
    assert flex["unmet_kwh"] == pytest.approx(lp["unmet_kwh"], abs=1e-6)
    today_pv = float(load_inputs(c).model.pv_kw.sum() * 0.25)
    assert more["pv_kwh"] == pytest.approx(2 * today_pv, rel=1e-9)  # PV_KWP added: twice the PV
    assert shared["n_vehicles"] == 1 + 2 and shared["n_shared_cars"] == 2  # ceil(8 / 4) shared cars
    # New 3.7 kW home chargers: no home session above 3.7 kW (work sessions keep the school's 22 kW).
    assert runs[2].scenario.fleet.home_chargers == ((3.7, 1.0),)
    assert chargers["unmet_kwh"] == pytest.approx(0.0, abs=1e-6)
    assert list_scenarios(c) == []  # write=False
    with pytest.raises(CommunityInputError, match="appear more than once"):
        run_scenarios(c, [{"name": "A b"}, {"name": "a-b"}])
    # Without a connection limit in the twin, following it is impossible, and said so.
    svc.delete_attribute("", CID, SCENARIO_TERMS["connectionLimit"], bright_context())
    bare = load_community(svc, series, CID)
    assert load_inputs(bare).model.connection_limit_kw is None
    with pytest.raises(CommunityInputError, match="follow_connection_limit needs a connection limit"):
        run_scenarios(
            bare, [{"name": "x", "n_evs": 2, "policy": "pv_following", "follow_connection_limit": True}]
        )


def test_demo_scenario_2030(twin: tuple[TwinService, SeriesStore, dict[str, pd.DataFrame]]) -> None:
    svc, series, _ = twin
    result = run_demo_scenario(svc, CID, 2030, series=series)
    a = result.assumptions
    # 3 households (home02, home03 houses, home04 apartment) x 1 car + 2 school sockets x 4 cars = 11;
    # logistic share in 2030: 1 / (1 + exp(0.4)) = 0.401 -> 4 EVs, 1 at home and 3 at work.
    assert (a["households"], a["workplace_sockets"], result.fleet_size) == (3, 2.0, 11)
    assert (result.n_evs, result.home_evs, result.work_evs) == (4, 1, 3)
    assert "connection_limit_kw" not in a  # the twin's 60 kW is used, not the demo's default
    assert a["lv_cabin_limit_kva"] == 160.0 and a["power_factor"] == 0.95
    assert result.runs[1].inputs.model.connection_limit_kw == CONNECTION_KW
    names = list(result.table.columns)
    assert names == ["today", "2030 uncontrolled", "2030 smart", "2030 PV-following", "2030 V2G"]
    t = result.table
    assert t.loc["n_vehicles", "today"] == 0 and (t.loc["n_vehicles"].iloc[1:] == 4).all()
    # Smart charging adds no peak: import kept under today's peak.
    assert t.loc["peak_import_kw", "2030 smart"] <= t.loc["peak_import_kw", "today"] + 1e-6
    assert t.loc["peak_import_kw", "2030 uncontrolled"] >= t.loc["peak_import_kw", "2030 smart"]
    assert t.loc["unmet_kwh", "2030 uncontrolled"] == pytest.approx(0.0, abs=1e-6)
    assert t.loc["ev_discharged_kwh", "2030 V2G"] > 0
    assert t.loc["hours_above_transformer_h"].notna().all()  # the demo's 160 kVA cabin
    c = load_community(svc, series, CID)
    assert {s.name for s in list_scenarios(c)} == set(names)
