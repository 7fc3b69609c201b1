"""Mobility scenarios for an energy community: EV fleets, charging policies, V2G and their effect.

* :mod:`~bright.energy.mobility.calibration`: statistics of measured sessions (:func:`calibrate`).
* :mod:`~bright.energy.mobility.fleet`: fleet and session generator (:func:`generate_sessions`).
* :mod:`~bright.energy.mobility.charging`: charging policies on a 15-min grid.
* :mod:`~bright.energy.mobility.scenario`: scenarios, metrics and comparison.
* :mod:`~bright.energy.mobility.load_curves`: duration curve, daily profile and daily peaks to plot.

Pure computations over numpy arrays; see ``docs/mobility.md``.
"""

from bright.energy.mobility.calibration import (
    KS_TOLERANCE,
    Calibration,
    MobilityInputError,
    calibrate,
    ks_distance,
)
from bright.energy.mobility.charging import (
    ChargingProblem,
    ChargingResult,
    ChargingSolver,
    community_optimal,
    earliest_deadline_first,
    flex_charging_solver,
    local_hours_mask,
    pv_following,
    solve_charging_lp,
    time_of_use,
    uncontrolled,
    vehicle_to_grid,
)
from bright.energy.mobility.fleet import (
    LOCATIONS,
    ChargingSessions,
    Fleet,
    FleetParameters,
    draw_fleet,
    fit_report,
    generate_sessions,
    plugin_hours,
)
from bright.energy.mobility.load_curves import daily_peaks, daily_profile, duration_curve
from bright.energy.mobility.scenario import (
    POLICIES,
    Community,
    Scenario,
    ScenarioResult,
    community_metrics,
    compare,
    ev_adoption,
    ev_site_limit,
    evaluate,
    run_policy,
    scenarios_by_year,
)

__all__ = [
    "KS_TOLERANCE",
    "LOCATIONS",
    "POLICIES",
    "Calibration",
    "ChargingProblem",
    "ChargingResult",
    "ChargingSessions",
    "ChargingSolver",
    "Community",
    "Fleet",
    "FleetParameters",
    "MobilityInputError",
    "Scenario",
    "ScenarioResult",
    "calibrate",
    "community_metrics",
    "community_optimal",
    "compare",
    "daily_peaks",
    "daily_profile",
    "draw_fleet",
    "duration_curve",
    "earliest_deadline_first",
    "ev_adoption",
    "ev_site_limit",
    "evaluate",
    "fit_report",
    "flex_charging_solver",
    "generate_sessions",
    "ks_distance",
    "local_hours_mask",
    "plugin_hours",
    "pv_following",
    "run_policy",
    "scenarios_by_year",
    "solve_charging_lp",
    "time_of_use",
    "uncontrolled",
    "vehicle_to_grid",
]
