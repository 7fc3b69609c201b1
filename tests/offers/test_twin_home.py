"""A member's home read from the twin: metered net offtake, devices of its building, prices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bright.config import Settings
from bright.services.demo import build_demo_community, meter_series
from bright.services.offers import OfferInputError, OfferService, demo_offers, twin_member_home
from bright.twin.db import make_engine
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context


def test_home_from_the_twin_readings_and_devices(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'twin.db'}"
    twin = TwinService(make_engine(url), Settings(database_url=url))
    community = build_demo_community()
    assert not twin.batch_upsert(
        "", community.entities, twin.resolve_context(community.entities[0]["@context"])
    )["errors"]
    cid = community.entities[0]["id"]
    series = SeriesStore(twin.engine)
    frames = {
        k: v.loc["2016-03-01":"2016-03-04"]
        for k, v in meter_series(community).items()
        if k in ("offtake", "injection")
    }
    for name, frame in frames.items():
        series.write(frame, attribute=bright_context().expand(name), unit_code="KWH")
    school = f"urn:ngsi-ld:EnergyProsumer:{community.key}:school"
    home = twin_member_home(twin, series, cid, school)
    assert home is not None and "twin readings" in home.source
    # whole local days inside the readings
    assert len(home.index) % 96 == 0 and len(home.index) >= 96 * 2
    t = home.index[40]
    meter = frames["offtake"].columns[
        list(frames["offtake"].columns).index(f"urn:ngsi-ld:Meter:{community.key}:school")
    ]
    expected = (frames["offtake"].loc[t, meter] - frames["injection"].loc[t, meter]) / 0.25
    assert home.base_load_kw[40] == pytest.approx(expected)
    assert home.battery is not None and home.battery.capacity_kwh == 60
    assert home.ev is not None and home.ev.charge_power_kw == 11.0
    assert np.isfinite(home.import_price_eur_per_kwh).all()
    # the service evaluates on it (and falls back to the reference home without readings)
    svc = OfferService(twin, series=series)
    for o in demo_offers():
        svc.publish(o)
    fcr = next(o.id for o in demo_offers() if o.id.endswith("fcr-aggregator"))
    cmp = svc.evaluate(cid, school, {"b": [fcr]})
    assert cmp.bundles[0].joint.offers[fcr].reserve_kwh > 0
    assert "twin readings" in svc.member_home(cid, school).source
    bare = OfferService(twin)
    assert "reference" in bare.member_home(cid, school, days=1).source
    # a gap in the readings is named
    gap = frames["offtake"].copy()
    gap.iloc[100, :] = np.nan
    series.write(gap, attribute=bright_context().expand("offtake"), unit_code="KWH")
    with pytest.raises(OfferInputError, match="reading missing at"):
        twin_member_home(twin, series, cid, school)
    assert pd.Timestamp(home.index[0]).tz is not None
    twin.engine.dispose()
