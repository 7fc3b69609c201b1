"""EV fleet and charging-session generator, calibrated on measured sessions.

A fleet is a set of vehicles (battery, consumption, daily distance, where they charge and at what
power). Every user of a vehicle (one for a private car, several for a shared car) is *active* on a
local day with probability ``daily_kwh / mean kWh per measured active user-day`` (times the weekday
profile, at most 1), so that its expected energy per day equals its daily distance times its
consumption. An active day copies a measured user-day of the same day type and season (smoothed
bootstrap, see :mod:`bright.energy.mobility.calibration`): its sessions, with the plug-in times
shifted together by a Gaussian offset and each kWh and dwell multiplied by a log-normal kernel.

Sessions of one vehicle never overlap: a session ends at the latest when the vehicle's next one
starts (for a shared car: when the next user takes it), and two plug-ins in the same step merge.
Every request is feasible on its own: it is capped at the charging power times the dwell and at the
usable battery; what the caps remove is reported in ``capped_kwh``. The horizon starts with no car
plugged in.

Charging locations (``LOCATIONS``): ``home`` is the calibrated case (the measured sessions are
residential garages). ``work`` and ``public`` keep the calibrated kWh but replace the timing by a
stated assumption (commuter arrival and office-day dwell; short public stops). ``shared`` is a car
shared by several users (see :class:`FleetParameters`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bright.energy.mobility.calibration import (
    KS_TOLERANCE,
    N_SEASONS,
    SEASONS,
    Calibration,
    MobilityInputError,
    day_type_of_weekday,
    ks_distance,
    season_of_month,
)

LOCATIONS = ("home", "work", "public", "shared")
HOME, WORK, PUBLIC, SHARED = 0, 1, 2, 3
STEP_H = 0.25
STEP = pd.Timedelta(minutes=15)
BRUSSELS = "Europe/Brussels"


@dataclass(frozen=True)
class FleetParameters:
    """Vehicle mix and behaviour assumptions of a generated fleet.

    Mixes are tuples of ``(value, share)`` pairs; shares are normalised.

    Attributes
    ----------
    battery_kwh
        Usable battery capacity mix, kWh.
    consumption_kwh_per_100km
        Range of the uniform consumption draw per vehicle, kWh/100 km.
    daily_km_mean
        Mean distance per private car and calendar day (driving and non-driving days), km.
        ``None`` calibrates it so that a car's mean energy per day equals the measured one at the
        mean consumption (:func:`daily_km_mean`).
    daily_km_sigma
        Log-normal spread of the daily distance across vehicles (sigma of ln km).
    location_share
        Share of private vehicles charging at home, at work, at a public charger. A vehicle charges
        at one place in the community; its charging elsewhere is outside the community's meter.
    home_chargers, work_chargers, public_chargers, shared_chargers
        Charger power mix per location, kW.
    onboard_kw
        On-board charger (AC) limit mix, kW; a session's power is ``min(charger, on-board)``.
    target_soc
        State of charge the driver wants at departure (fraction of the usable battery).
    min_arrival_soc
        Lowest arrival state of charge; requests are capped at ``(target - min) * battery``.
    work_arrival_h, work_dwell_h
        Mean and standard deviation of the local arrival hour and of the dwell (h) of workplace
        sessions, Monday to Friday only (an assumption, not calibrated).
    public_dwell_median_h, public_dwell_sigma
        Log-normal dwell of public sessions: median (h) and sigma of ln h (an assumption).
    users_per_shared_car
        Private cars (users) one shared car replaces.
    shared_km_factor
        Distance a shared car drives relative to the sum of its users' private distances (1 = the
        same trips; car-sharing members often drive less, use < 1 to say so).
    """

    battery_kwh: tuple[tuple[float, float], ...] = ((40.0, 0.30), (58.0, 0.35), (77.0, 0.25), (100.0, 0.10))
    consumption_kwh_per_100km: tuple[float, float] = (15.0, 20.0)
    daily_km_mean: float | None = None
    daily_km_sigma: float = 0.5
    location_share: tuple[float, float, float] = (1.0, 0.0, 0.0)
    home_chargers: tuple[tuple[float, float], ...] = ((3.7, 0.3), (11.0, 0.7))
    work_chargers: tuple[tuple[float, float], ...] = ((11.0, 1.0),)
    public_chargers: tuple[tuple[float, float], ...] = ((22.0, 1.0),)
    shared_chargers: tuple[tuple[float, float], ...] = ((22.0, 1.0),)
    onboard_kw: tuple[tuple[float, float], ...] = ((7.4, 0.35), (11.0, 0.65))
    target_soc: float = 0.9
    min_arrival_soc: float = 0.1
    work_arrival_h: tuple[float, float] = (8.5, 0.75)
    work_dwell_h: tuple[float, float] = (8.5, 1.0)
    public_dwell_median_h: float = 1.0
    public_dwell_sigma: float = 0.5
    users_per_shared_car: int = 4
    shared_km_factor: float = 1.0

    def __post_init__(self) -> None:
        for name in ("battery_kwh", "home_chargers", "work_chargers", "public_chargers", "shared_chargers"):
            _check_mix(name, getattr(self, name))
        _check_mix("onboard_kw", self.onboard_kw)
        lo, hi = self.consumption_kwh_per_100km
        if not 0 < lo <= hi:
            raise MobilityInputError(f"consumption_kwh_per_100km: {self.consumption_kwh_per_100km}")
        if self.daily_km_mean is not None and not self.daily_km_mean >= 0:
            raise MobilityInputError(f"daily_km_mean: {self.daily_km_mean}, expected >= 0")
        if not self.daily_km_sigma >= 0:
            raise MobilityInputError(f"daily_km_sigma: {self.daily_km_sigma}, expected >= 0")
        if len(self.location_share) != 3 or min(self.location_share) < 0 or sum(self.location_share) <= 0:
            raise MobilityInputError(f"location_share: {self.location_share}, expected 3 shares >= 0")
        if not 0 <= self.min_arrival_soc < self.target_soc <= 1:
            raise MobilityInputError(
                f"min_arrival_soc, target_soc: {self.min_arrival_soc}, {self.target_soc}; "
                "expected 0 <= min < target <= 1"
            )
        if self.users_per_shared_car < 1 or not self.shared_km_factor >= 0:
            raise MobilityInputError(
                f"users_per_shared_car, shared_km_factor: {self.users_per_shared_car}, {self.shared_km_factor}"
            )


def _check_mix(name: str, mix: tuple[tuple[float, float], ...]) -> None:
    if len(mix) == 0 or any(v <= 0 or s < 0 for v, s in mix) or sum(s for _, s in mix) <= 0:
        raise MobilityInputError(f"{name}: {mix}, expected (value > 0, share >= 0) pairs with shares > 0")


def _draw_mix(rng: np.random.Generator, mix: tuple[tuple[float, float], ...], n: int) -> np.ndarray:
    values = np.array([v for v, _ in mix], dtype=np.float64)
    shares = np.array([s for _, s in mix], dtype=np.float64)
    return values[rng.choice(values.size, size=n, p=shares / shares.sum())]


@dataclass(frozen=True, eq=False)
class Fleet:
    """Per-vehicle attributes of a generated fleet (arrays of length ``n_vehicles``).

    Attributes
    ----------
    battery_kwh
        Usable battery capacity, kWh.
    consumption_kwh_per_km
        Energy drawn from the grid per km driven, kWh/km.
    daily_km
        Mean distance per calendar day, km.
    location
        Index into ``LOCATIONS`` of where the vehicle charges.
    charger_kw
        Rated power of the vehicle's charger, kW.
    max_power_kw
        Charging power limit, ``min(charger, on-board charger)``, kW.
    users
        Users served: 1 for a private car, ``users_per_shared_car`` for a shared car.
    user_vehicle, user_daily_km
        Per user (length ``users.sum()``): the vehicle it drives and its mean distance per calendar
        day in that vehicle, km (already scaled by ``shared_km_factor`` for shared cars).
    """

    battery_kwh: np.ndarray
    consumption_kwh_per_km: np.ndarray
    daily_km: np.ndarray
    location: np.ndarray
    charger_kw: np.ndarray
    max_power_kw: np.ndarray
    users: np.ndarray
    user_vehicle: np.ndarray
    user_daily_km: np.ndarray

    @property
    def daily_kwh(self) -> np.ndarray:
        """Mean energy need per calendar day, kWh."""
        return self.daily_km * self.consumption_kwh_per_km

    def __len__(self) -> int:
        return int(self.battery_kwh.size)


@dataclass(frozen=True, eq=False)
class ChargingSessions:
    """Charging sessions on a regular step grid, as a struct of numpy arrays (one entry per session).

    A session occupies steps ``arrival .. departure - 1``; step ``k`` starts at ``start + k * step_h``.

    Attributes
    ----------
    start
        UTC start of step 0.
    n_steps
        Number of steps of the horizon.
    vehicle
        Vehicle index (into ``vehicles`` when present).
    arrival, departure
        First step plugged in and first step gone (exclusive), ``0 <= arrival < departure <= n_steps``.
    energy_kwh
        Energy requested by departure, kWh (at the meter).
    max_power_kw
        Charging power limit of the session (and discharge limit under V2G), kW.
    battery_kwh
        Usable battery capacity, kWh.
    arrival_soc
        State of charge at plug-in, fraction of ``battery_kwh``; the departure target is
        ``arrival_soc + energy_kwh / battery_kwh``.
    location
        Index into ``LOCATIONS``.
    step_h
        Step length, hours.
    capped_kwh
        Energy the generator's caps (power x dwell, usable battery, horizon end) removed from the
        drawn requests, kWh (0 for hand-made sessions).
    tz
        Local time zone of the community (for reporting plug-in times).
    vehicles
        The generated fleet, or ``None`` for hand-made sessions.
    """

    start: pd.Timestamp
    n_steps: int
    vehicle: np.ndarray
    arrival: np.ndarray
    departure: np.ndarray
    energy_kwh: np.ndarray
    max_power_kw: np.ndarray
    battery_kwh: np.ndarray
    arrival_soc: np.ndarray
    location: np.ndarray
    step_h: float = STEP_H
    capped_kwh: float = 0.0
    tz: str = BRUSSELS
    vehicles: Fleet | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = self.arrival.size
        for name in ("vehicle", "departure", "energy_kwh", "max_power_kw", "battery_kwh", "arrival_soc"):
            if getattr(self, name).shape != (n,):
                raise MobilityInputError(
                    f"sessions.{name}: shape {getattr(self, name).shape}, expected ({n},)"
                )
        if self.location.shape != (n,):
            raise MobilityInputError(f"sessions.location: shape {self.location.shape}, expected ({n},)")
        if self.n_steps < 1 or not self.step_h > 0:
            raise MobilityInputError(f"sessions: n_steps {self.n_steps}, step_h {self.step_h}")
        checks = (
            ("arrival", self.arrival < 0),
            ("departure", (self.departure <= self.arrival) | (self.departure > self.n_steps)),
            ("energy_kwh", ~np.isfinite(self.energy_kwh) | (self.energy_kwh < 0)),
            ("max_power_kw", ~np.isfinite(self.max_power_kw) | (self.max_power_kw <= 0)),
            ("battery_kwh", ~(self.battery_kwh > 0)),
            ("arrival_soc", ~((self.arrival_soc >= 0) & (self.arrival_soc <= 1))),
            ("energy_kwh", self.arrival_soc + self.energy_kwh / self.battery_kwh > 1 + 1e-9),
        )
        for name, bad in checks:
            idx = np.flatnonzero(bad)
            if idx.size:
                i = int(idx[0])
                raise MobilityInputError(
                    f"sessions.{name}: {getattr(self, name)[i]!r} in session {i} "
                    f"(arrival {self.arrival[i]}, departure {self.departure[i]}, n_steps {self.n_steps})"
                )

    @classmethod
    def build(
        cls,
        start: pd.Timestamp,
        n_steps: int,
        arrival: np.ndarray,
        departure: np.ndarray,
        energy_kwh: np.ndarray,
        max_power_kw: np.ndarray | float,
        *,
        battery_kwh: np.ndarray | float | None = None,
        arrival_soc: np.ndarray | float = 0.0,
        vehicle: np.ndarray | None = None,
        step_h: float = STEP_H,
    ) -> ChargingSessions:
        """Sessions from plain arrays (hand-made cases, imports of metered sessions).

        Parameters
        ----------
        start
            UTC start of step 0 (tz-aware).
        n_steps
            Number of steps of the horizon.
        arrival, departure
            First step plugged in and first step gone, per session.
        energy_kwh
            Energy requested, kWh per session.
        max_power_kw
            Power limit per session (or one for all), kW.
        battery_kwh
            Usable battery, kWh; ``None`` sizes it to the request (``energy / (1 - arrival_soc)``,
            at least 1 kWh).
        arrival_soc
            State of charge at arrival, fraction.
        vehicle
            Vehicle index per session; ``None`` gives each session its own vehicle.
        step_h
            Step length, hours.
        """
        arrival = np.asarray(arrival, dtype=np.int64)
        n = arrival.size
        energy = np.asarray(energy_kwh, dtype=np.float64)
        soc = np.broadcast_to(np.asarray(arrival_soc, dtype=np.float64), (n,)).copy()
        if battery_kwh is None:
            battery = np.maximum(energy / np.maximum(1.0 - soc, 1e-9), 1.0)
        else:
            battery = np.broadcast_to(np.asarray(battery_kwh, dtype=np.float64), (n,)).copy()
        return cls(
            start=_utc(start, "start"),
            n_steps=int(n_steps),
            vehicle=np.arange(n, dtype=np.int64) if vehicle is None else np.asarray(vehicle, dtype=np.int64),
            arrival=arrival,
            departure=np.asarray(departure, dtype=np.int64),
            energy_kwh=energy,
            max_power_kw=np.broadcast_to(np.asarray(max_power_kw, dtype=np.float64), (n,)).copy(),
            battery_kwh=battery,
            arrival_soc=soc,
            location=np.zeros(n, dtype=np.int8),
            step_h=step_h,
        )

    def __len__(self) -> int:
        return int(self.arrival.size)

    @property
    def departure_soc(self) -> np.ndarray:
        """State of charge the driver wants at departure, fraction."""
        return self.arrival_soc + self.energy_kwh / self.battery_kwh

    @property
    def index(self) -> pd.DatetimeIndex:
        """UTC start of every step of the horizon."""
        return pd.date_range(self.start, periods=self.n_steps, freq=pd.Timedelta(hours=self.step_h))

    def feasible_alone(self) -> np.ndarray:
        """Whether each request fits its dwell at full power (ignoring any site limit)."""
        return self.energy_kwh <= self.max_power_kw * (self.departure - self.arrival) * self.step_h + 1e-9


def _utc(ts: pd.Timestamp | str, name: str) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    if t.tz is None:
        raise MobilityInputError(f"{name}: {t} is naive, expected a timezone-aware timestamp")
    return t.tz_convert("UTC")


def draw_fleet(
    n_vehicles: int,
    rng: np.random.Generator,
    parameters: FleetParameters,
    calibration: Calibration,
    *,
    n_shared: int = 0,
) -> Fleet:
    """Draw the vehicles of a fleet: ``n_vehicles - n_shared`` private cars then ``n_shared`` shared cars.

    Parameters
    ----------
    n_vehicles
        Total number of vehicles.
    rng
        Random generator (consumed in a fixed order, so a seed reproduces the fleet).
    parameters
        Vehicle mix and behaviour.
    calibration
        Provides the measured session rate when ``parameters.daily_km_mean`` is ``None``.
    n_shared
        How many of the vehicles are shared cars.

    Returns
    -------
    Fleet
    """
    if n_vehicles < 0 or not 0 <= n_shared <= n_vehicles:
        raise MobilityInputError(f"n_vehicles, n_shared: {n_vehicles}, {n_shared}")
    p = parameters
    n_private = n_vehicles - n_shared
    battery = _draw_mix(rng, p.battery_kwh, n_vehicles)
    consumption = rng.uniform(*p.consumption_kwh_per_100km, size=n_vehicles) / 100.0
    km_mean = daily_km_mean(p, calibration)
    # Log-normal across vehicles with the requested mean: median = mean * exp(-sigma^2 / 2).
    mu = np.log(max(km_mean, 1e-12)) - 0.5 * p.daily_km_sigma**2
    users = np.where(np.arange(n_vehicles) < n_private, 1, p.users_per_shared_car)
    user_vehicle = np.repeat(np.arange(n_vehicles), users)
    z = rng.standard_normal(user_vehicle.size)
    user_km = np.exp(mu + p.daily_km_sigma * z) if km_mean > 0 else np.zeros(user_vehicle.size)
    user_km = np.where(users[user_vehicle] > 1, p.shared_km_factor * user_km, user_km)
    daily_km = np.bincount(user_vehicle, weights=user_km, minlength=n_vehicles)
    shares = np.asarray(p.location_share, dtype=np.float64)
    location = rng.choice(3, size=n_vehicles, p=shares / shares.sum()).astype(np.int8)
    location[n_private:] = SHARED
    charger = np.zeros(n_vehicles)
    mixes = (p.home_chargers, p.work_chargers, p.public_chargers, p.shared_chargers)
    drawn = [_draw_mix(rng, mix, n_vehicles) for mix in mixes]
    for loc in range(len(LOCATIONS)):
        charger = np.where(location == loc, drawn[loc], charger)
    onboard = _draw_mix(rng, p.onboard_kw, n_vehicles)
    return Fleet(
        battery_kwh=battery,
        consumption_kwh_per_km=consumption,
        daily_km=daily_km,
        location=location,
        charger_kw=charger,
        max_power_kw=np.minimum(charger, onboard),
        users=users.astype(np.int64),
        user_vehicle=user_vehicle,
        user_daily_km=user_km,
    )


def daily_km_mean(parameters: FleetParameters, calibration: Calibration) -> float:
    """Mean daily distance per private car, km: the parameter, or the value calibrated on the sessions.

    The calibrated value makes a car's expected energy per day equal to the measured one:
    ``active_day_share * mean_day_energy_kwh / mean consumption``.
    """
    if parameters.daily_km_mean is not None:
        return float(parameters.daily_km_mean)
    mean_consumption = 0.5 * sum(parameters.consumption_kwh_per_100km) / 100.0
    return float(calibration.active_day_share * calibration.mean_day_energy_kwh / mean_consumption)


def generate_sessions(
    calibration: Calibration,
    n_vehicles: int,
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    seed: int | np.random.Generator | None,
    *,
    parameters: FleetParameters | None = None,
    n_shared: int = 0,
    tz: str = BRUSSELS,
) -> ChargingSessions:
    """Generate a fleet and its charging sessions on the 15-min grid ``[start, end)``.

    Parameters
    ----------
    calibration
        Statistics of measured sessions (:func:`calibrate`).
    n_vehicles
        Number of vehicles (private and shared).
    start, end
        Timezone-aware bounds of the horizon, on the quarter-hour.
    seed
        Seed (or generator) of ``numpy.random.default_rng``; the same seed gives the same sessions.
    parameters
        Fleet assumptions; defaults to :class:`FleetParameters` ``()``.
    n_shared
        How many of the ``n_vehicles`` are shared cars.
    tz
        Local time zone of the community: plug-in times are drawn on its wall clock.

    Returns
    -------
    ChargingSessions
        Sessions sorted by arrival step then vehicle, with ``vehicles`` set.

    Raises
    ------
    MobilityInputError
        If the horizon is empty, naive or off the quarter-hour grid, or the counts are invalid.
    """
    p = parameters if parameters is not None else FleetParameters()
    t0, t1 = _utc(start, "start"), _utc(end, "end")
    if t1 <= t0 or (t0 - t0.floor("15min")) or (t1 - t1.floor("15min")):
        raise MobilityInputError(f"start, end: [{t0}, {t1}) must be a non-empty range on the 15-min grid")
    n_steps = int((t1 - t0) / STEP)
    rng = np.random.default_rng(seed)
    fleet = draw_fleet(n_vehicles, rng, p, calibration, n_shared=n_shared)

    first_day = t0.tz_convert(tz).tz_localize(None).normalize()
    last_day = (t1 - pd.Timedelta(1, "ns")).tz_convert(tz).tz_localize(None).normalize()
    days = pd.date_range(first_day, last_day, freq="D")
    weekday = days.weekday.to_numpy()
    day_type = day_type_of_weekday(weekday)
    season = season_of_month(days.month.to_numpy())

    # Active user-days: Bernoulli with the user's rate times the weekday profile.
    user_loc = fleet.location[fleet.user_vehicle]
    consumption = fleet.consumption_kwh_per_km[fleet.user_vehicle]
    rate = fleet.user_daily_km * consumption / calibration.mean_day_energy_kwh
    workday_factor = np.where(weekday < 5, 7.0 / 5.0, 0.0)
    factor = np.where(
        (user_loc == WORK)[:, None], workday_factor[None, :], calibration.weekday_factor[weekday][None, :]
    )
    active = rng.random(factor.shape) < np.minimum(rate[:, None] * factor, 1.0)
    user, day = np.nonzero(active)
    n_active = user.size
    cell = day_type[day] * N_SEASONS + season[day]
    size = calibration.cell_hi[cell] - calibration.cell_lo[cell]
    copied = calibration.cell_lo[cell] + (rng.random(n_active) * size).astype(np.int64)
    shift_min = rng.standard_normal(n_active) * calibration.time_bandwidth_h * 60.0
    work_min = (p.work_arrival_h[0] + p.work_arrival_h[1] * rng.standard_normal(n_active)) * 60.0
    is_work_day = user_loc[user] == WORK

    # Expand active days into their sessions (a workday is one session carrying the day's kWh).
    count = np.where(is_work_day, 1, calibration.day_count[copied])
    rep = np.repeat(np.arange(n_active), count)
    n = rep.size
    rank = np.arange(n) - np.repeat(np.cumsum(count) - count, count)
    pooled = calibration.day_first[copied][rep] + rank
    day_energy = np.add.reduceat(calibration.energy_kwh, calibration.day_first)
    veh = fleet.user_vehicle[user][rep]
    loc = fleet.location[veh]
    work = is_work_day[rep]
    minute = np.where(work, work_min[rep], calibration.plugin_minute[pooled] + shift_min[rep])
    energy = np.where(work, day_energy[copied][rep], calibration.energy_kwh[pooled])
    energy = energy * np.exp(calibration.log_bandwidth_energy * rng.standard_normal(n))
    dwell = calibration.dwell_h[pooled] * np.exp(calibration.log_bandwidth_dwell * rng.standard_normal(n))
    mean_d, sd_d = p.work_dwell_h
    work_dwell = np.clip(mean_d + sd_d * rng.standard_normal(n), 1.0, 14.0)
    public_dwell = p.public_dwell_median_h * np.exp(p.public_dwell_sigma * rng.standard_normal(n))
    dwell = np.where(work, work_dwell, np.where(loc == PUBLIC, public_dwell, dwell))

    # Local wall clock -> UTC step. The autumn repeat is read as summer time, the spring gap shifts on.
    local = days.to_numpy()[day][rep] + np.round(minute * 60.0).astype("timedelta64[s]")
    utc = (
        pd.DatetimeIndex(local)
        .tz_localize(tz, ambiguous=np.ones(n, dtype=bool), nonexistent="shift_forward")
        .tz_convert("UTC")
    )
    arrival = ((utc - t0) // STEP).to_numpy().astype(np.int64)
    departure = arrival + np.maximum(1, np.round(dwell / STEP_H)).astype(np.int64)

    # Vehicle order; plug-ins of one vehicle in the same step merge (kWh add up, longest dwell).
    order = np.lexsort((arrival, veh))
    veh, arrival, departure, energy = veh[order], arrival[order], departure[order], energy[order]
    first = np.flatnonzero(np.r_[True, (veh[1:] != veh[:-1]) | (arrival[1:] != arrival[:-1])])
    if n:
        energy = np.add.reduceat(energy, first)
        departure = np.maximum.reduceat(departure, first)
        veh, arrival = veh[first], arrival[first]
    # A session ends at the latest when the same vehicle's next one starts, and at the horizon's end.
    same_next = np.zeros(veh.size, dtype=bool)
    same_next[:-1] = veh[1:] == veh[:-1]
    departure[:-1] = np.where(same_next[:-1], np.minimum(departure[:-1], arrival[1:]), departure[:-1])
    inside = (arrival >= 0) & (arrival < n_steps)
    veh, arrival, departure, energy = veh[inside], arrival[inside], departure[inside], energy[inside]
    departure = np.minimum(departure, n_steps)

    max_power = fleet.max_power_kw[veh]
    battery = fleet.battery_kwh[veh]
    usable = battery * (p.target_soc - p.min_arrival_soc)
    capped = np.minimum(np.minimum(energy, max_power * (departure - arrival) * STEP_H), usable)
    chrono = np.lexsort((veh, arrival))
    return ChargingSessions(
        start=t0,
        n_steps=n_steps,
        vehicle=veh[chrono],
        arrival=arrival[chrono],
        departure=departure[chrono],
        energy_kwh=capped[chrono],
        max_power_kw=max_power[chrono],
        battery_kwh=battery[chrono],
        arrival_soc=(p.target_soc - capped / battery)[chrono],
        location=fleet.location[veh][chrono],
        step_h=STEP_H,
        capped_kwh=float(np.sum(energy - capped)),
        tz=tz,
        vehicles=fleet,
    )


def plugin_hours(sessions: ChargingSessions) -> np.ndarray:
    """Local plug-in time of day of each session, hours (on the step grid, e.g. 17.75 = 17:45)."""
    utc = sessions.start + pd.to_timedelta(sessions.arrival * sessions.step_h, unit="h")
    local = pd.DatetimeIndex(utc).tz_convert(sessions.tz)
    return local.hour.to_numpy() + local.minute.to_numpy() / 60.0


def fit_report(generated: ChargingSessions, measured: pd.DataFrame) -> pd.DataFrame:
    """KS distances between generated home sessions and measured sessions, per day type and season.

    Both plug-in times are compared on the 15-min grid the simulation uses (a measured plug-in at
    17:52 counts as 17:45); measured dwells are rounded to the quarter-hour (at least one). The
    all-season rows compare the two samples as they are, so they also reflect a different mix of
    seasons (a generated year has each season once; the measured sessions are winter-heavy); the
    per-season rows compare like with like.

    Parameters
    ----------
    generated
        Output of :func:`generate_sessions`; only ``home`` sessions are compared.
    measured
        Measured sessions with ``plugin_local`` (naive local), ``energy_kwh`` and ``duration_h``.

    Returns
    -------
    pandas.DataFrame
        One row per (quantity, day type, season): ``quantity`` (``plugin_hour``, ``energy_kwh``,
        ``dwell_h``), ``day_type`` (``all``, ``weekday``, ``weekend``), ``season`` (``all`` or one
        of ``SEASONS``, the latter with day type ``all``), ``n_measured``, ``n_generated``, ``ks``
        (NaN if a sample is empty) and ``tolerance`` (:data:`KS_TOLERANCE` for plug-in hour and kWh
        over all seasons; NaN, i.e. reported only, for the dwell and the per-season rows).
    """
    home = generated.location == HOME
    utc = generated.start + pd.to_timedelta(generated.arrival[home] * generated.step_h, unit="h")
    local = pd.DatetimeIndex(utc).tz_convert(generated.tz)
    g_hour = local.hour.to_numpy() + local.minute.to_numpy() / 60.0
    g_type = day_type_of_weekday(local.weekday.to_numpy())
    g_season = season_of_month(local.month.to_numpy())
    g_energy = generated.energy_kwh[home]
    g_dwell = (generated.departure - generated.arrival)[home] * generated.step_h

    plugin = pd.DatetimeIndex(measured["plugin_local"])
    m_hour = plugin.hour.to_numpy() + (plugin.minute.to_numpy() // 15) * 0.25
    m_type = day_type_of_weekday(plugin.weekday.to_numpy())
    m_season = season_of_month(plugin.month.to_numpy())
    m_energy = measured["energy_kwh"].to_numpy(dtype=np.float64)
    m_dwell = np.maximum(1.0, np.round(measured["duration_h"].to_numpy(dtype=np.float64) / 0.25)) * 0.25

    groups: list[tuple[str, str, np.ndarray, np.ndarray]] = [
        ("all", "all", np.ones(g_type.size, bool), np.ones(m_type.size, bool)),
        ("weekday", "all", g_type == 0, m_type == 0),
        ("weekend", "all", g_type == 1, m_type == 1),
    ]
    groups += [("all", name, g_season == k, m_season == k) for k, name in enumerate(SEASONS)]
    rows = []
    for quantity, g, m, tol in (
        ("plugin_hour", g_hour, m_hour, KS_TOLERANCE),
        ("energy_kwh", g_energy, m_energy, KS_TOLERANCE),
        ("dwell_h", g_dwell, m_dwell, float("nan")),
    ):
        for day_type, season, gm, mm in groups:
            n_m, n_g = int(np.sum(~np.isnan(m[mm]))), int(gm.sum())
            rows.append(
                {
                    "quantity": quantity,
                    "day_type": day_type,
                    "season": season,
                    "n_measured": n_m,
                    "n_generated": n_g,
                    "ks": ks_distance(g[gm], m[mm]) if n_m and n_g else float("nan"),
                    "tolerance": tol if season == "all" else float("nan"),
                }
            )
    return pd.DataFrame(rows)
