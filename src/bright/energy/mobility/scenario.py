"""Mobility scenarios: what more EVs, smart charging, V2G, chargers, PV and shared cars do to a community.

A :class:`Community` is the current twin reduced to per-step series (load without EVs, PV, prices,
emission factor) and its grid limits. A :class:`Scenario` is a set of changes to it: a number of
EVs (for a year of an adoption path), a charging policy, a charger mix, a PV multiplier, private
cars replaced by shared cars. :func:`evaluate` generates the fleet, runs the policy over the
community's horizon (a year at 15 min) and computes the metrics; :func:`compare` puts scenarios
side by side.

Shared-car rule: replacing ``m`` private EVs by shared cars yields ``ceil(m / k)`` shared cars,
``k = users_per_shared_car``. A shared car drives its ``k`` users' trips (their daily distances
summed, times ``shared_km_factor``) and its sessions are the union of its users' sessions, each
drawn as for a private car; when a user plugs in while the car is still charging for the previous
one, the previous session ends there (the car changes hands). Shared cars charge at
``shared_chargers``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from bright.energy.mobility.calibration import Calibration, MobilityInputError
from bright.energy.mobility.charging import (
    ChargingResult,
    ChargingSolver,
    community_optimal,
    earliest_deadline_first,
    local_hours_mask,
    pv_following,
    step_series,
    time_of_use,
    uncontrolled,
    vehicle_to_grid,
)
from bright.energy.mobility.fleet import (
    BRUSSELS,
    STEP_H,
    ChargingSessions,
    FleetParameters,
    generate_sessions,
)

POLICIES = (
    "uncontrolled",
    "time_of_use",
    "earliest_deadline_first",
    "pv_following",
    "community_optimal",
    "vehicle_to_grid",
)


@dataclass(frozen=True, eq=False)
class Community:
    """The current community as per-step series on a regular grid.

    Attributes
    ----------
    start
        UTC start of step 0 (tz-aware).
    base_kw
        Community load without the EVs of the scenarios, kW per step (mean power, >= 0).
    pv_kw
        PV generation, kW per step (>= 0).
    import_price_eur_per_kwh
        Price of energy taken from the grid, EUR/kWh (constant or per step); ``None`` leaves the
        cost NaN.
    export_price_eur_per_kwh
        Price paid for energy given to the grid, EUR/kWh (constant or per step).
    emission_kg_per_kwh
        Emission factor of grid import, kgCO2e/kWh (constant or per step); ``None`` leaves CO2 NaN.
    connection_limit_kw
        Limit of the community's grid connection, kW; ``None`` if unknown.
    transformer_limit_kva
        Rating of the LV cabin (distribution transformer), kVA; ``None`` if unknown.
    power_factor
        Power factor of the net load, to turn kW into kVA at the transformer.
    step_h
        Step length, hours.
    tz
        Local time zone.
    """

    start: pd.Timestamp
    base_kw: np.ndarray
    pv_kw: np.ndarray
    import_price_eur_per_kwh: np.ndarray | float | None = None
    export_price_eur_per_kwh: np.ndarray | float = 0.0
    emission_kg_per_kwh: np.ndarray | float | None = None
    connection_limit_kw: float | None = None
    transformer_limit_kva: float | None = None
    power_factor: float = 1.0
    step_h: float = STEP_H
    tz: str = BRUSSELS

    def __post_init__(self) -> None:
        start = pd.Timestamp(self.start)
        if start.tz is None:
            raise MobilityInputError(f"community.start: {start} is naive, expected timezone-aware")
        object.__setattr__(self, "start", start.tz_convert("UTC"))
        base = np.asarray(self.base_kw, dtype=np.float64)
        if base.ndim != 1 or base.size == 0:
            raise MobilityInputError(
                f"community.base_kw: shape {base.shape}, expected a non-empty 1-D series"
            )
        n = base.size
        object.__setattr__(self, "base_kw", step_series("community.base_kw", base, n, min_value=0.0))
        object.__setattr__(self, "pv_kw", step_series("community.pv_kw", self.pv_kw, n, min_value=0.0))
        if self.import_price_eur_per_kwh is not None:
            price = step_series(
                "community.import_price_eur_per_kwh", self.import_price_eur_per_kwh, n, min_value=None
            )
            object.__setattr__(self, "import_price_eur_per_kwh", price)
        export = step_series(
            "community.export_price_eur_per_kwh", self.export_price_eur_per_kwh, n, min_value=None
        )
        object.__setattr__(self, "export_price_eur_per_kwh", export)
        if self.emission_kg_per_kwh is not None:
            ef = step_series("community.emission_kg_per_kwh", self.emission_kg_per_kwh, n, min_value=0.0)
            object.__setattr__(self, "emission_kg_per_kwh", ef)
        for name in ("connection_limit_kw", "transformer_limit_kva"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise MobilityInputError(f"community.{name}: {value}, expected > 0")
        if not 0 < self.power_factor <= 1:
            raise MobilityInputError(f"community.power_factor: {self.power_factor}, expected in (0, 1]")

    @classmethod
    def from_kwh(
        cls, start: pd.Timestamp, base_kwh: np.ndarray, pv_kwh: np.ndarray, **kwargs: object
    ) -> Community:
        """Build from energies per step (kWh per interval) instead of mean powers.

        Parameters
        ----------
        start
            UTC start of step 0.
        base_kwh, pv_kwh
            Load without EVs and PV generation, kWh per step.
        **kwargs
            Other :class:`Community` fields (``step_h`` included, default 0.25 h).
        """
        step_h = float(kwargs.get("step_h", STEP_H))  # type: ignore[arg-type]
        base = np.asarray(base_kwh, dtype=np.float64) / step_h
        pv = np.asarray(pv_kwh, dtype=np.float64) / step_h
        return cls(start, base, pv, **kwargs)  # type: ignore[arg-type]

    @property
    def n_steps(self) -> int:
        """Number of steps of the horizon."""
        return int(self.base_kw.size)

    @property
    def end(self) -> pd.Timestamp:
        """UTC end of the horizon (exclusive)."""
        return self.start + pd.Timedelta(hours=self.step_h * self.n_steps)


@dataclass(frozen=True)
class Scenario:
    """Changes to the community, evaluated over the community's horizon.

    Attributes
    ----------
    name
        Label of the scenario (a column of :func:`compare`).
    year
        Year the scenario stands for (informative; the horizon is the community's).
    n_evs
        Private EVs charging in the community before any replacement by shared cars.
    shared_replacing
        How many of those private EVs are replaced by shared cars (see the module's shared-car rule).
    policy
        One of :data:`POLICIES`.
    fleet
        Vehicle mix and charger mix (new chargers: change ``home_chargers``, ``location_share``...).
    pv_scale
        Multiplier on the community's PV (more PV: 1.5 = half as much again).
    ev_site_limit_kw
        Limit on the total EV charging power, kW, for the limit-aware policies.
    follow_connection_limit
        Also keep EV charging within what the connection leaves: ``connection - (base - pv)``.
    import_cap_kw
        Keep the community's import at or below this level where the EVs can: EV charging is
        limited to ``max(import_cap_kw - (base - pv), 0)`` (smart charging "no new peak" when set
        to today's peak import), kW.
    tou_hours
        Local cheap window of the time-of-use policy, ``(start hour, end hour)``.
    v2g_min_soc, v2g_reserve_power_share, v2g_discharge_above_kw, v2g_price_low_eur_per_kwh, \
v2g_price_high_eur_per_kwh, v2g_export, discharge_efficiency
        Vehicle-to-grid settings (see :func:`bright.energy.mobility.vehicle_to_grid`).
    peak_weight_eur_per_kw
        Capacity-tariff weight of the community-optimal policy, EUR/kW per day.
    solver
        Solver of the community-optimal policy (default: the bundled LP).
    seed
        Seed of the fleet generator.
    """

    name: str
    year: int | None = None
    n_evs: int = 0
    shared_replacing: int = 0
    policy: str = "uncontrolled"
    fleet: FleetParameters = field(default_factory=FleetParameters)
    pv_scale: float = 1.0
    ev_site_limit_kw: float | None = None
    follow_connection_limit: bool = False
    import_cap_kw: float | None = None
    tou_hours: tuple[float, float] = (22.0, 7.0)
    v2g_min_soc: float = 0.2
    v2g_reserve_power_share: float = 0.5
    v2g_discharge_above_kw: float = 0.0
    v2g_price_low_eur_per_kwh: float | None = None
    v2g_price_high_eur_per_kwh: float | None = None
    v2g_export: bool = False
    discharge_efficiency: float = 0.9
    peak_weight_eur_per_kw: float = 0.0
    solver: ChargingSolver | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise MobilityInputError(
                f"scenario {self.name!r}: policy {self.policy!r}, expected one of {POLICIES}"
            )
        if self.n_evs < 0 or not 0 <= self.shared_replacing <= self.n_evs:
            raise MobilityInputError(
                f"scenario {self.name!r}: n_evs {self.n_evs}, shared_replacing {self.shared_replacing}; "
                "expected 0 <= shared_replacing <= n_evs"
            )
        if not self.pv_scale >= 0:
            raise MobilityInputError(f"scenario {self.name!r}: pv_scale {self.pv_scale}, expected >= 0")
        if self.import_cap_kw is not None and not self.import_cap_kw >= 0:
            raise MobilityInputError(
                f"scenario {self.name!r}: import_cap_kw {self.import_cap_kw}, expected >= 0"
            )

    @property
    def n_shared_cars(self) -> int:
        """Shared cars: ``ceil(shared_replacing / users_per_shared_car)``."""
        return math.ceil(self.shared_replacing / self.fleet.users_per_shared_car)

    @property
    def n_vehicles(self) -> int:
        """Vehicles charging in the community: remaining private EVs plus shared cars."""
        return self.n_evs - self.shared_replacing + self.n_shared_cars


@dataclass(frozen=True, eq=False)
class ScenarioResult:
    """A scenario evaluated over the community's horizon.

    Attributes
    ----------
    scenario
        The scenario.
    metrics
        Metric name -> value (see :func:`community_metrics`; units in the names).
    charge_kw, discharge_kw
        Aggregate EV charging and discharging power per step, kW.
    net_kw
        Community net load with the EVs: ``base + charge - discharge - pv * pv_scale``, kW per step.
    """

    scenario: Scenario
    metrics: dict[str, float]
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    net_kw: np.ndarray

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.scenario.name


def community_metrics(
    community: Community,
    charge_kw: np.ndarray,
    discharge_kw: np.ndarray | None = None,
    *,
    pv_scale: float = 1.0,
) -> dict[str, float]:
    """Energy, grid, cost and CO2 metrics of the community with an EV charging profile.

    With ``load = base + charge``, ``pv = pv_kw * pv_scale`` and ``net = load - discharge - pv``
    per step (kW), ``import = max(net, 0)`` and ``export = max(-net, 0)``:

    * ``peak_import_kw`` = max import; ``peak_increase_kw`` = that minus the peak import of the
      community as it is (no EVs, ``pv_scale`` 1);
    * ``self_consumption`` = 1 - sum(min(export, pv)) / sum(pv) (share of PV used in the community);
    * ``self_sufficiency`` = 1 - sum(import) / sum(base + charge - discharge) (share of the
      community's net consumption not taken from the grid; V2G round trips and their losses count
      once, as consumption);
    * ``shared_kwh`` = sum(min(charge, max(pv - base, 0))) * dt: PV surplus (after the base load)
      that goes into the EVs;
    * ``hours_above_connection_h`` = time with ``|net| > connection limit``;
      ``hours_above_transformer_h`` = time with ``|net| / power factor > transformer rating``
      (NaN when the limit is unknown);
    * ``cost_eur`` = sum(import * import price - export * export price) * dt (NaN without prices);
      ``co2_kg`` = sum(import * emission factor) * dt (NaN without a factor; exports earn no credit).

    Parameters
    ----------
    community
        The community.
    charge_kw, discharge_kw
        Aggregate EV charging and discharging power per step, kW (>= 0).
    pv_scale
        Multiplier on the community's PV.

    Returns
    -------
    dict
        Metric name (with unit) -> value.
    """
    n, dt = community.n_steps, community.step_h
    charge = step_series("charge_kw", charge_kw, n, min_value=0.0)
    discharge = (
        np.zeros(n) if discharge_kw is None else step_series("discharge_kw", discharge_kw, n, min_value=0.0)
    )
    base = community.base_kw
    pv = community.pv_kw * pv_scale
    load = base + charge
    net = load - discharge - pv
    imp, exp = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    today = np.maximum(base - community.pv_kw, 0.0)
    pv_total = pv.sum()
    consumed = float((load - discharge).sum())
    out: dict[str, float] = {
        "peak_import_kw": float(imp.max()),
        "baseline_peak_import_kw": float(today.max()),
        "peak_increase_kw": float(imp.max() - today.max()),
        "ev_charged_kwh": float(charge.sum() * dt),
        "ev_discharged_kwh": float(discharge.sum() * dt),
        "load_kwh": float(load.sum() * dt),
        "pv_kwh": float(pv_total * dt),
        "import_kwh": float(imp.sum() * dt),
        "export_kwh": float(exp.sum() * dt),
        "self_consumption": float(1.0 - np.minimum(exp, pv).sum() / pv_total)
        if pv_total > 0
        else float("nan"),
        "self_sufficiency": float(1.0 - imp.sum() / consumed) if consumed > 0 else float("nan"),
        "shared_kwh": float(np.minimum(charge, np.maximum(pv - base, 0.0)).sum() * dt),
        "hours_above_connection_h": float("nan"),
        "hours_above_transformer_h": float("nan"),
        "cost_eur": float("nan"),
        "co2_kg": float("nan"),
    }
    if community.connection_limit_kw is not None:
        out["hours_above_connection_h"] = float(np.sum(np.abs(net) > community.connection_limit_kw) * dt)
    if community.transformer_limit_kva is not None:
        over = np.abs(net) / community.power_factor > community.transformer_limit_kva
        out["hours_above_transformer_h"] = float(np.sum(over) * dt)
    if community.import_price_eur_per_kwh is not None:
        c_imp = np.asarray(community.import_price_eur_per_kwh)
        c_exp = np.asarray(community.export_price_eur_per_kwh)
        out["cost_eur"] = float(np.sum(imp * c_imp - exp * c_exp) * dt)
    if community.emission_kg_per_kwh is not None:
        out["co2_kg"] = float(np.sum(imp * np.asarray(community.emission_kg_per_kwh)) * dt)
    return out


def ev_site_limit(community: Community, scenario: Scenario) -> np.ndarray | None:
    """EV charging limit per step implied by a scenario, kW, or ``None`` when there is none.

    The scenario's ``ev_site_limit_kw``; with ``follow_connection_limit``, the connection's
    headroom ``max(connection - (base - pv * pv_scale), 0)``; with ``import_cap_kw``, the headroom
    under the cap ``max(import_cap_kw - (base - pv * pv_scale), 0)``; the smallest of them.
    """
    limit = None
    if scenario.ev_site_limit_kw is not None:
        limit = np.full(community.n_steps, float(scenario.ev_site_limit_kw))
    if scenario.follow_connection_limit:
        if community.connection_limit_kw is None:
            raise MobilityInputError(
                f"scenario {scenario.name!r}: follow_connection_limit needs community.connection_limit_kw"
            )
        headroom = community.connection_limit_kw - (community.base_kw - community.pv_kw * scenario.pv_scale)
        headroom = np.maximum(headroom, 0.0)
        limit = headroom if limit is None else np.minimum(limit, headroom)
    if scenario.import_cap_kw is not None:
        room = np.maximum(
            scenario.import_cap_kw - (community.base_kw - community.pv_kw * scenario.pv_scale), 0.0
        )
        limit = room if limit is None else np.minimum(limit, room)
    return limit


def run_policy(community: Community, scenario: Scenario, sessions: ChargingSessions) -> ChargingResult:
    """Run the scenario's charging policy on sessions over the community's horizon.

    Raises
    ------
    MobilityInputError
        If the sessions do not cover the community's grid, or the policy lacks an input it needs
        (a site limit for earliest-deadline-first, prices for community-optimal).
    """
    if sessions.n_steps != community.n_steps or sessions.start != community.start:
        raise MobilityInputError(
            f"scenario {scenario.name!r}: sessions on [{sessions.start}, {sessions.n_steps} steps) do not "
            f"match the community's [{community.start}, {community.n_steps} steps)"
        )
    pv = community.pv_kw * scenario.pv_scale
    limit = ev_site_limit(community, scenario)
    policy = scenario.policy
    if policy == "uncontrolled":
        return uncontrolled(sessions)
    if policy == "time_of_use":
        cheap = local_hours_mask(
            community.start, community.n_steps, *scenario.tou_hours, step_h=community.step_h, tz=community.tz
        )
        return time_of_use(sessions, cheap)
    if policy == "earliest_deadline_first":
        if limit is None:
            raise MobilityInputError(
                f"scenario {scenario.name!r}: earliest_deadline_first needs ev_site_limit_kw, "
                "follow_connection_limit or import_cap_kw"
            )
        return earliest_deadline_first(sessions, limit)
    if policy == "pv_following":
        return pv_following(sessions, np.maximum(pv - community.base_kw, 0.0), site_limit_kw=limit)
    if policy == "community_optimal":
        if community.import_price_eur_per_kwh is None:
            raise MobilityInputError(f"scenario {scenario.name!r}: community_optimal needs import prices")
        return community_optimal(
            sessions,
            community.base_kw,
            pv,
            community.import_price_eur_per_kwh,
            export_price_eur_per_kwh=community.export_price_eur_per_kwh,
            site_limit_kw=limit,
            peak_weight_eur_per_kw=scenario.peak_weight_eur_per_kw,
            window_steps=round(24 / community.step_h),
            solver=scenario.solver,
        )
    # vehicle_to_grid (the policy name was checked when the scenario was built)
    price = community.import_price_eur_per_kwh
    if price is None and (
        scenario.v2g_price_low_eur_per_kwh is not None or scenario.v2g_price_high_eur_per_kwh is not None
    ):
        raise MobilityInputError(f"scenario {scenario.name!r}: V2G price thresholds need import prices")
    return vehicle_to_grid(
        sessions,
        community.base_kw,
        pv,
        price_eur_per_kwh=None if price is None else np.asarray(price),
        price_low_eur_per_kwh=scenario.v2g_price_low_eur_per_kwh,
        price_high_eur_per_kwh=scenario.v2g_price_high_eur_per_kwh,
        min_soc=scenario.v2g_min_soc,
        reserve_power_share=scenario.v2g_reserve_power_share,
        discharge_above_kw=scenario.v2g_discharge_above_kw,
        discharge_efficiency=scenario.discharge_efficiency,
        export=scenario.v2g_export,
        site_limit_kw=limit,
    )


def evaluate(community: Community, scenario: Scenario, calibration: Calibration) -> ScenarioResult:
    """Generate the scenario's fleet, run its policy and compute the metrics.

    Parameters
    ----------
    community
        The current community (its horizon is the evaluation horizon, typically a year at 15 min).
    scenario
        The changes.
    calibration
        Session statistics for the fleet generator.

    Returns
    -------
    ScenarioResult
        ``metrics`` holds :func:`community_metrics` plus ``n_vehicles``, ``n_shared_cars``,
        ``n_sessions``, ``requested_kwh``, ``delivered_kwh``, ``unmet_kwh`` and
        ``capped_kwh`` (requests the generator had to cap, see :class:`ChargingSessions`).
    """
    if community.step_h != STEP_H:
        raise MobilityInputError(
            f"community.step_h: {community.step_h}, the fleet generator works at {STEP_H} h"
        )
    sessions = generate_sessions(
        calibration,
        scenario.n_vehicles,
        community.start,
        community.end,
        scenario.seed,
        parameters=scenario.fleet,
        n_shared=scenario.n_shared_cars,
        tz=community.tz,
    )
    result = run_policy(community, scenario, sessions)
    metrics = {
        "n_vehicles": float(scenario.n_vehicles),
        "n_shared_cars": float(scenario.n_shared_cars),
        "n_sessions": float(len(sessions)),
        "requested_kwh": float(sessions.energy_kwh.sum()),
        "delivered_kwh": float(np.minimum(result.delivered_kwh, sessions.energy_kwh).sum()),
        "unmet_kwh": float(result.unmet_kwh.sum()),
        "capped_kwh": float(sessions.capped_kwh),
    }
    metrics.update(
        community_metrics(community, result.charge_kw, result.discharge_kw, pv_scale=scenario.pv_scale)
    )
    net = community.base_kw + result.charge_kw - result.discharge_kw - community.pv_kw * scenario.pv_scale
    return ScenarioResult(
        scenario=scenario,
        metrics=metrics,
        charge_kw=result.charge_kw,
        discharge_kw=result.discharge_kw,
        net_kw=net,
    )


def compare(results: Sequence[ScenarioResult]) -> pd.DataFrame:
    """Scenarios side by side: one row per metric, one column per scenario (in the given order).

    Raises
    ------
    MobilityInputError
        If two results share a scenario name.
    """
    names = [r.name for r in results]
    dupes = sorted({x for x in names if names.count(x) > 1})
    if dupes:
        raise MobilityInputError(f"compare: scenario names {dupes} appear more than once")
    table = pd.DataFrame({r.name: pd.Series(r.metrics, dtype="float64") for r in results})
    table.index.name = "metric"
    return table


def ev_adoption(
    years: Sequence[int], *, fleet_size: int, midpoint_year: float, growth_per_year: float
) -> dict[int, int]:
    """EVs per year on a logistic adoption curve.

    ``n(y) = round(fleet_size / (1 + exp(-growth_per_year * (y - midpoint_year))))``.

    Parameters
    ----------
    years
        Years to evaluate.
    fleet_size
        Cars in the neighbourhood when all are electric.
    midpoint_year
        Year at which half of them are electric.
    growth_per_year
        Logistic growth rate, 1/year (0.3-0.5 spans 10-15 years from 10 % to 90 %).

    Returns
    -------
    dict
        Year -> number of EVs.
    """
    if fleet_size < 0 or not growth_per_year > 0:
        raise MobilityInputError(f"fleet_size, growth_per_year: {fleet_size}, {growth_per_year}")
    return {
        int(y): round(fleet_size / (1.0 + math.exp(-growth_per_year * (y - midpoint_year)))) for y in years
    }


def scenarios_by_year(template: Scenario, n_evs_by_year: Mapping[int, int]) -> list[Scenario]:
    """One scenario per year from a template: same changes, that year's number of EVs.

    The shared-car replacement keeps its share of the template's EVs (rounded down). Names are
    ``"<template name> <year>"``; each year gets its own seed (template seed + year).
    """
    out = []
    share = template.shared_replacing / template.n_evs if template.n_evs else 0.0
    for year, n in sorted(n_evs_by_year.items()):
        out.append(
            replace(
                template,
                name=f"{template.name} {year}",
                year=year,
                n_evs=int(n),
                shared_replacing=math.floor(share * n),
                seed=template.seed + int(year),
            )
        )
    return out
