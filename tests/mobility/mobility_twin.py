"""A small twin for the mobility service, API and CLI tests: a slice of the demo community.

The school (80 kWp PV, a 2-socket 22 kW charger in a school building: workplace), the bakery,
home02 (a house: 4.5 kWp, an 11 kW charger), home03 (a house: 6 kWp, a battery) and home04 (an
apartment: a heat pump), with three weeks of real quarter-hourly metering and PV production
(local Monday 2016-06-06 .. Monday 2016-06-27, summer time), and a 60 kW connection limit.
"""

from __future__ import annotations

import pandas as pd

from bright.config import Settings
from bright.services import demo
from bright.services.mobility import SCENARIO_TERMS
from bright.twin.db import make_engine
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context

KEYS = ("school", "bakery", "home02", "home03", "home04")
KEY = "mob"
CID = f"urn:ngsi-ld:EnergyCommunity:{KEY}"
START = pd.Timestamp("2016-06-05 22:00", tz="UTC")  # local Monday 2016-06-06 00:00 CEST
END = pd.Timestamp("2016-06-26 22:00", tz="UTC")  # 21 days, 2,016 quarter-hours
N_STEPS = 21 * 96
CONNECTION_KW = 60.0
PV_KWP = 80.0 + 4.5 + 6.0


def build_twin(
    db_url: str, *, connection_kw: float | None = CONNECTION_KW
) -> tuple[TwinService, SeriesStore, dict[str, pd.DataFrame]]:
    """The slice in a fresh database; returns the twin, its series and the metering written."""
    members = [m for m in demo.default_members() if m.key in KEYS]
    school = demo.pick_school("Ixelles")
    extra = {}
    if connection_kw is not None:
        extra[SCENARIO_TERMS["connectionLimit"]] = {
            "type": "Property",
            "value": connection_kw,
            "unitCode": "KWT",
        }
    entities = demo.community_entities(KEY, "Mobility test community", school, members)
    entities[0].update(extra)
    twin = TwinService(make_engine(db_url), Settings(database_url=db_url))
    res = twin.batch_upsert("", entities, twin.resolve_context(entities[0]["@context"]))
    assert not res["errors"], res["errors"]
    series = SeriesStore(twin.engine)
    frames = demo.meter_series(demo.DemoCommunity(KEY, "Mobility test community", school, members, entities))
    written = {}
    for name, frame in frames.items():
        part = frame.loc[(frame.index >= START) & (frame.index < END)]
        series.write(part, attribute=bright_context().expand(name), unit_code="KWH")
        written[name] = part
    return twin, series, written
