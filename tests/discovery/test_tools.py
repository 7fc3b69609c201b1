"""The tools catalogue and the runner: schemas, worked examples, errors, nothing kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.network.cards import parse_card
from bright.network.tools import ToolError, catalogue, network_tools, run_tool
from bright.twin.errors import OperationNotSupported, ResourceNotFound

THIRD = 100 / 3


def test_catalogue_lists_the_tools_with_json_schemas() -> None:
    tools = catalogue()
    assert {"sharing-calculator", "mobility-scenarios", "forecast", "scheduler", "s-bright"} <= set(tools)
    sharing = tools["sharing-calculator"].describe()
    assert sharing["status"] == "available"
    assert sharing["run"] == "/api/network/tools/sharing-calculator/run"
    assert sharing["keepsData"] is False
    schema = sharing["inputSchema"]
    assert schema["type"] == "object"
    assert {"member_ids", "offtake_kwh", "injection_kwh"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    assert "members" in sharing["outputSchema"]["properties"]
    planned = tools["scheduler"].describe()
    assert planned["status"] == "planned" and planned["run"] is None and planned["inputSchema"] is None


def test_sharing_calculator_worked_example() -> None:
    # P injects 2 kWh; A, B, C take 0.1, 0.5, 1.0 kWh; equal fixed keys offer each 2/3 kWh:
    # A gets 0.1, B 0.5, C 0.6667 -> 1.2667 kWh shared; self-sufficiency 1.2667 / 1.6 = 79.17 %,
    # self-consumption 1.2667 / 2 = 63.33 %; peak offtake 1.6 kWh / 0.25 h = 6.4 kW.
    out = run_tool(
        "sharing-calculator",
        {
            "member_ids": ["P", "A", "B", "C"],
            "offtake_kwh": [[0, 0.1, 0.5, 1.0], [0, 0.2, None, 0.2]],
            "injection_kwh": [[2, 0, 0, 0], [1, 0, 0, 0]],
            "method": "fixed",
            "key_percent": {"A": THIRD, "B": THIRD, "C": THIRD},
            "emission_factor_kg_per_kwh": 0.16,
            "include_intervals": True,
        },
    )
    assert out["n_intervals"] == 2 and out["missing_intervals"] == 1
    assert out["shared_kwh"] == pytest.approx(0.1 + 0.5 + 2 / 3)
    assert out["offtake_kwh"] == pytest.approx(1.6)
    assert out["self_sufficiency"] == pytest.approx((0.1 + 0.5 + 2 / 3) / 1.6)
    assert out["self_consumption_rate"] == pytest.approx((0.1 + 0.5 + 2 / 3) / 2)
    assert out["residual_injection_kwh"] == pytest.approx(2 - (0.1 + 0.5 + 2 / 3))
    assert out["co2_avoided_kg"] == pytest.approx(0.16 * (0.1 + 0.5 + 2 / 3))
    assert out["peak_offtake_kw"] == pytest.approx(6.4)
    c = next(m for m in out["members"] if m["id"] == "C")
    assert c["shared_offtake_kwh"] == pytest.approx(2 / 3)
    assert c["self_sufficiency"] == pytest.approx(2 / 3)
    p = next(m for m in out["members"] if m["id"] == "P")
    assert p["self_sufficiency"] is None  # no offtake: undefined, not 0
    # the interval with a missing reading is not shared: null, never 0
    assert out["shared_kwh_per_interval"][0] == pytest.approx(0.1 + 0.5 + 2 / 3)
    assert out["shared_kwh_per_interval"][1] is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"member_ids": ["a"], "offtake_kwh": [[1, 2]], "injection_kwh": [[0]]},
            r"offtake_kwh\[0\] has 2 values",
        ),
        (
            {"member_ids": ["a"], "offtake_kwh": [[1]], "injection_kwh": [[0]], "colour": "red"},
            "field colour",
        ),
        ({"member_ids": ["a"], "offtake_kwh": [[-1]], "injection_kwh": [[0]]}, "member 'a'.*-1"),
        (
            {"member_ids": ["a", "b"], "offtake_kwh": [[1, 1]], "injection_kwh": [[0, 1]], "method": "fixed"},
            "needs a sharing key",
        ),
        (
            {"member_ids": ["a"], "offtake_kwh": [[1]], "injection_kwh": [[0]], "method": "magic"},
            "field method",
        ),
        (
            {
                "member_ids": ["a"],
                "offtake_kwh": [[1]],
                "injection_kwh": [[0]],
                "start": "2024-01-01T00:00:00",
            },
            "time zone",
        ),
    ],
)
def test_bad_requests_name_the_field(payload: dict[str, object], message: str) -> None:
    with pytest.raises(ToolError, match=message):
        run_tool("sharing-calculator", payload)


def test_unknown_and_planned_tools() -> None:
    with pytest.raises(ResourceNotFound):
        run_tool("teleporter", {})
    with pytest.raises(OperationNotSupported) as err:
        run_tool("scheduler", {})
    assert err.value.status == 501


def test_forecast_tool_repeats_a_regular_day() -> None:
    # eight identical days (a smooth daily wave): the profile average of tomorrow is that wave
    t = np.arange(96 * 8)
    wave = 0.2 + 0.1 * np.sin(2 * np.pi * t / 96)
    out = run_tool("forecast", {"start": "2024-06-03T00:00:00Z", "history_kwh": wave.tolist()})
    assert out["model"] == "profile_average"
    index = pd.DatetimeIndex(out["index"])
    assert len(index) == 96 and index[0] == pd.Timestamp("2024-06-11T22:00:00Z")  # next Brussels day
    slot = (index.hour * 4 + index.minute // 15).to_numpy()
    assert np.allclose(out["quantiles"]["0.5"], 0.2 + 0.1 * np.sin(2 * np.pi * slot / 96))
    with pytest.raises(ToolError, match="needs the installation"):
        run_tool("forecast", {"kind": "pv", "start": "2024-06-03T00:00:00Z", "history_kwh": wave.tolist()})


def test_mobility_tool_runs_each_policy() -> None:
    base = np.full(192, 5.0)
    pv = np.clip(np.sin(np.linspace(0, 4 * np.pi, 192)), 0, None) * 4
    out = run_tool(
        "mobility-scenarios",
        {"start": "2024-06-03T00:00:00Z", "base_kwh": base.tolist(), "pv_kwh": pv.tolist(), "n_evs": 3},
    )
    assert out["n_steps"] == 192
    assert set(out["scenarios"]) == {"uncontrolled", "pv_following"}
    for metrics in out["scenarios"].values():
        assert metrics["pv_kwh"] == pytest.approx(pv.sum())  # kWh per step summed
        assert metrics["load_kwh"] == pytest.approx(base.sum() + metrics["ev_charged_kwh"])
        assert metrics["cost_eur"] is None  # no prices given: undefined
    with pytest.raises(ToolError, match="quarter-hour"):
        run_tool(
            "mobility-scenarios",
            {"start": "2024-06-03T00:07:00Z", "base_kwh": base.tolist(), "pv_kwh": pv.tolist(), "n_evs": 1},
        )


def test_tools_other_nodes_offer() -> None:
    base = {"name": "x", "lon": 4.3, "lat": 50.8}
    a = parse_card(
        {
            **base,
            "id": "urn:ngsi-ld:EnergyCommunity:a",
            "offered_tools": ["forecast"],
            "node_url": "https://a.example/",
        }
    )
    b = parse_card({**base, "id": "urn:ngsi-ld:EnergyCommunity:b"})
    found = network_tools([a, b])
    assert found == [
        {
            "tool": "forecast",
            "community": a.id,
            "name": "x",
            "node": "https://a.example/",
            "run": "https://a.example/api/network/tools/forecast/run",
        }
    ]
    assert network_tools([a], exclude=a.id) == []


readings = st.lists(st.floats(0, 5, allow_nan=False), min_size=3, max_size=3)


@settings(max_examples=30, deadline=None)
@given(off=st.lists(readings, min_size=1, max_size=6), inj=st.lists(readings, min_size=6, max_size=6))
def test_sharing_never_exceeds_offtake_or_injection(off: list[list[float]], inj: list[list[float]]) -> None:
    inj = inj[: len(off)]
    out = run_tool(
        "sharing-calculator", {"member_ids": ["a", "b", "c"], "offtake_kwh": off, "injection_kwh": inj}
    )
    assert out["shared_kwh"] <= min(out["offtake_kwh"], out["injection_kwh"]) + 1e-9
    assert out["shared_kwh"] == pytest.approx(sum(m["shared_offtake_kwh"] for m in out["members"]), abs=1e-9)
    assert out["shared_kwh"] == pytest.approx(
        sum(m["shared_injection_kwh"] for m in out["members"]), abs=1e-9
    )
