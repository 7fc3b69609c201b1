"""Loaders for the real data sets bundled with BRIGHT (``bright/data``, see ``data/SOURCES.md``).

Every loader returns timezone-aware UTC timestamps stamped at the START of their interval and keeps
the published units unless the name of the returned column says otherwise. Local time in the files
is converted to UTC across daylight-saving changes without losing or doubling a value: the autumn
repeat is disambiguated by order of appearance, the spring gap simply has no rows.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

BRUSSELS = "Europe/Brussels"


def data_dir() -> Path:
    """Directory of the bundled data sets (override with ``BRIGHT_DATA_DIR``)."""
    override = os.environ.get("BRIGHT_DATA_DIR")
    return Path(override) if override else Path(__file__).parent / "data"


def localize_wall_clock(local: pd.DatetimeIndex | pd.Series, tz: str = BRUSSELS) -> pd.DatetimeIndex:
    """Convert naive local wall-clock stamps, in file order, to UTC.

    Parameters
    ----------
    local
        Naive timestamps in local time, in the order they appear in the file. An autumn hour that
        appears twice is read as summer time the first time and winter time the second.
    tz
        IANA time zone of the wall clock.

    Returns
    -------
    pandas.DatetimeIndex
        The same instants in UTC.

    Raises
    ------
    ValueError
        If a stamp falls in the spring gap (it does not exist in local time).
    """
    idx = pd.DatetimeIndex(local)
    # Per-stamp flag for ambiguous times: True (DST) on first sight, False on the repeat.
    seen: set[pd.Timestamp] = set()
    is_dst = np.zeros(len(idx), dtype=bool)
    for i, ts in enumerate(idx):
        if ts not in seen:
            is_dst[i] = True
            seen.add(ts)
    try:
        aware = idx.tz_localize(tz, ambiguous=is_dst, nonexistent="raise")
    except Exception as exc:  # pytz/zoneinfo raise different classes
        raise ValueError(f"local time not valid in {tz}: {exc}") from exc
    return aware.tz_convert("UTC")


@lru_cache(maxsize=1)
def simbench_profiles() -> pd.DataFrame:
    """SimBench 2016 normalised profiles (per unit of each profile's peak), 15 min, UTC index.

    Columns are the profile names (``H0-A`` households, ``G1-A`` schools/offices, ``PV1``..``PV8`` ...).
    The file is in local time (CET/CEST): 35,136 rows become 35,136 distinct UTC quarter-hours.
    """
    raw = pd.read_csv(data_dir() / "profiles" / "simbench_2016_profiles_15min.csv.gz")
    local = pd.to_datetime(raw.pop("time"), format="%d.%m.%Y %H:%M")
    raw.index = localize_wall_clock(local)
    raw.index.name = "time"
    return raw.astype("float64")


@lru_cache(maxsize=1)
def uci_household() -> pd.DataFrame:
    """The UCI Sceaux household, 15-min means, UTC index.

    Columns: ``power_kw`` (mean active power over the quarter-hour), ``energy_kwh`` (= power x 0.25 h)
    and the three sub-meters in Wh per minute as published. The file is a regular series without
    daylight-saving jumps (its spring-gap stamps exist and no autumn stamp repeats), so it is read as
    fixed-offset CET (UTC+01:00).
    """
    raw = pd.read_csv(data_dir() / "profiles" / "uci_sceaux_household_15min.csv.gz")
    idx = pd.to_datetime(raw.pop("date_time")) - pd.Timedelta(hours=1)
    raw.index = pd.DatetimeIndex(idx).tz_localize("UTC")
    raw.index.name = "time"
    out = pd.DataFrame(
        {
            "power_kw": raw["Global_active_power"].astype("float64"),
            "sub_metering_1_wh_per_min": raw["Sub_metering_1"],
            "sub_metering_2_wh_per_min": raw["Sub_metering_2"],
            "sub_metering_3_wh_per_min": raw["Sub_metering_3"],
        }
    )
    out.insert(1, "energy_kwh", out["power_kw"] * 0.25)
    return out


@lru_cache(maxsize=1)
def dayahead_prices() -> pd.Series:
    """Belgian day-ahead price in EUR/kWh, hourly, UTC index, 2021-01-01 to 2024-07-29.

    Belpex 2021-2022 (EUR/MWh, seconds since 2021-01-01 00:00 CET) is converted to EUR/kWh and
    used up to 2021-12-31; the ENTSO-E series (EUR/kWh, local time) from 2022-01-01 on. Hours the source left
    empty stay NaN.
    """
    belpex = pd.read_csv(
        data_dir() / "prices" / "belpex_2021_2022_hourly.txt",
        sep=r"\s+",
        comment="#",
        header=None,
        names=["seconds", "eur_per_mwh"],
        skiprows=2,
    )
    start = pd.Timestamp("2021-01-01 00:00", tz="Europe/Brussels").tz_convert("UTC")
    b = pd.Series(
        belpex["eur_per_mwh"].to_numpy() / 1000.0,
        index=start + pd.to_timedelta(belpex["seconds"], unit="s"),
    )
    ent = pd.read_csv(data_dir() / "prices" / "be_dayahead_2022_2024_hourly.csv")
    local = pd.to_datetime(ent["time"], format="%d%b%Y %H:%M:%S")
    # The spring-gap hour appears with an empty price: it does not exist, drop it before localising.
    exists = ~(ent["DAM_price"].isna() & _in_spring_gap(local))
    e = pd.Series(
        pd.to_numeric(ent.loc[exists, "DAM_price"]).to_numpy(), index=localize_wall_clock(local[exists])
    )
    prices = pd.concat([b[b.index < e.index[0]], e]).sort_index()
    prices = prices[~prices.index.duplicated(keep="last")]
    prices = prices.loc[: prices.last_valid_index()]
    prices.index.name = "time"
    prices.name = "price_eur_per_kwh"
    return prices.astype("float64")


def _in_spring_gap(local: pd.Series) -> np.ndarray:
    aware = pd.DatetimeIndex(local).tz_localize(BRUSSELS, ambiguous="NaT", nonexistent="NaT")
    ambiguous = pd.DatetimeIndex(local).tz_localize(BRUSSELS, ambiguous=True, nonexistent="NaT")
    return np.asarray(aware.isna()) & np.asarray(ambiguous.isna())


@lru_cache(maxsize=1)
def _epw_raw() -> pd.DataFrame:
    return pd.read_csv(data_dir() / "weather" / "brussels_uccle_tmyx_2007_2021.epw", skiprows=8, header=None)


def weather(year: int = 2016) -> pd.DataFrame:
    """Typical meteorological year for Brussels-Uccle mapped onto ``year``, hourly, UTC index.

    EPW hour ``h`` covers ``h-1 .. h`` local standard time (UTC+01:00); the result is stamped at the
    interval start. In a leap year, 29 February repeats 28 February.

    Returns
    -------
    pandas.DataFrame
        ``temp_air_c`` (deg C), ``ghi_w_m2``, ``dni_w_m2``, ``dhi_w_m2`` (W/m2, mean over the hour),
        ``wind_speed_m_s`` (m/s), ``relative_humidity_pct`` (%).
    """
    raw = _epw_raw()
    cols = {6: "temp_air_c", 8: "relative_humidity_pct", 13: "ghi_w_m2", 14: "dni_w_m2", 15: "dhi_w_m2"}
    cols[21] = "wind_speed_m_s"
    base = raw[list(cols)].rename(columns=cols).astype("float64")
    month, day, hour = raw[1].to_numpy(), raw[2].to_numpy(), raw[3].to_numpy()
    key = pd.MultiIndex.from_arrays([month, day, hour - 1])
    base.index = key
    start = pd.Timestamp(f"{year}-01-01 00:00", tz="UTC") - pd.Timedelta(hours=1)
    stamps = pd.date_range(start, periods=(366 if _leap(year) else 365) * 24, freq="h")
    local = stamps + pd.Timedelta(hours=1)
    want = pd.MultiIndex.from_arrays(
        [local.month, np.where((local.month == 2) & (local.day == 29), 28, local.day), local.hour]
    )
    out = base.reindex(want)
    out.index = stamps
    out.index.name = "time"
    return out


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


@lru_cache(maxsize=1)
def ev_sessions() -> pd.DataFrame:
    """Measured EV charging sessions (Trondheim, 2018-2020), one row per session.

    Columns: ``session_id``, ``garage_id``, ``user_id``, ``user_type``, ``plugin`` and ``plugout``
    (UTC), ``plugin_local`` and ``plugout_local`` (naive Europe/Oslo wall clock), ``energy_kwh``,
    ``duration_h``, ``weekday`` (0 = Monday).
    """
    raw = pd.read_csv(data_dir() / "ev" / "trondheim_ev_sessions_2018_2020.csv", sep=";", decimal=",")
    plugin = pd.to_datetime(raw["Start_plugin"], format="%d.%m.%Y %H:%M")
    plugout = pd.to_datetime(raw["End_plugout"], format="%d.%m.%Y %H:%M")
    oslo = "Europe/Oslo"
    out = pd.DataFrame(
        {
            "session_id": raw["session_ID"],
            "garage_id": raw["Garage_ID"],
            "user_id": raw["User_ID"],
            "user_type": raw["User_type"],
            "plugin_local": plugin,
            "plugout_local": plugout,
            "plugin": plugin.dt.tz_localize(oslo, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert(
                "UTC"
            ),
            "plugout": plugout.dt.tz_localize(
                oslo, ambiguous="NaT", nonexistent="shift_forward"
            ).dt.tz_convert("UTC"),
            "energy_kwh": raw["El_kWh"].astype("float64"),
            "duration_h": raw["Duration_hours"].astype("float64"),
            "weekday": plugin.dt.weekday,
        }
    )
    return out


@lru_cache(maxsize=1)
def brussels_schools() -> pd.DataFrame:
    """School sites of the Brussels-Capital Region (French-speaking network), one row per site.

    Columns: ``site_id`` (FASE number of the site), ``school_id``, ``name``, ``level``, ``kind``,
    ``network``, ``address``, ``postcode``, ``municipality``, ``lat``, ``lon`` (WGS84 degrees).
    Sites listed once per teaching type in the register are merged into one row.
    """
    raw = pd.read_csv(data_dir() / "places" / "brussels_schools_fwb.csv", sep=";", dtype=str)
    out = pd.DataFrame(
        {
            "site_id": raw["N° FASE de l'implantation"],
            "school_id": raw["N° FASE de l'établissement"],
            "name": raw["Nom de l'établissement"].str.strip(),
            "level": raw["Niveau"],
            "kind": raw["Type d'enseignement"],
            "network": raw["Réseau"],
            "address": raw["Adresse de l'implantation"],
            "postcode": raw["Code postal de l'implantation"],
            "municipality": raw["Commune de l'implantation"],
            "lat": pd.to_numeric(raw["Latitude"], errors="coerce"),
            "lon": pd.to_numeric(raw["Longitude"], errors="coerce"),
        }
    )
    out = out.dropna(subset=["lat", "lon"])
    return out.drop_duplicates(subset=["site_id"]).reset_index(drop=True)
