"""A small synthetic home for fast valuation tests (no data files)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, GridConnection, HeatPump
from bright.energy.offers import MemberHome


def small_home(days: int = 2, *, seed: int = 0, start: str = "2024-01-15") -> MemberHome:
    """``days`` winter days at 15 min: load, PV, a 10 kWh battery, an EV home overnight, a heat pump."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(
        pd.Timestamp(start, tz="Europe/Brussels").tz_convert("UTC"), periods=96 * days, freq="15min"
    )
    hour = np.asarray(index.tz_convert("Europe/Brussels").hour + index.minute / 60.0)
    load = 0.3 + 0.4 * np.exp(-((hour - 19.0) ** 2) / 6.0) + 0.1 * rng.random(len(index))
    pv = np.clip(3.0 * np.sin(np.pi * (hour - 8.0) / 9.0), 0.0, None)
    price = 0.08 + 0.07 * np.exp(-((hour - 18.5) ** 2) / 4.0) - 0.04 * np.exp(-((hour - 3.0) ** 2) / 6.0)
    price = price + 0.01 * rng.standard_normal(len(index))
    t_out = 3.0 + 4.0 * np.sin(np.pi * (hour - 9.0) / 12.0)
    sessions = []
    for d in range(days):
        day = pd.Timestamp(start, tz="Europe/Brussels") + pd.Timedelta(days=d)
        sessions.append(
            EVSession(
                (day + pd.Timedelta(hours=18)).tz_convert("UTC"),
                (day + pd.Timedelta(hours=31)).tz_convert("UTC"),
                10.0,
            )
        )
    eta = math.sqrt(0.9)
    return MemberHome(
        member_id="urn:ngsi-ld:EnergyProsumer:test-1",
        index=index,
        base_load_kw=load,
        import_price_eur_per_kwh=price + 0.15,
        export_price_eur_per_kwh=price - 0.01,
        pv_kw=pv,
        battery=Battery("battery", 10.0, 5.0, 5.0, eta, eta, initial_soc_kwh=5.0),
        ev=ElectricVehicle("ev", 60.0, 7.4, sessions),
        heat_pump=HeatPump(
            "heat_pump", 3.0, 3.0, 6.0, 12.0, t_out, 20.0, comfort_min_c=19.0, comfort_max_c=23.0
        ),
        connection=GridConnection(17.0, 17.0),
    )
