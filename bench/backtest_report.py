"""Day-ahead backtest report of the member forecasts on real series (issue 6).

Rolling origin, no leakage: every delivery day D is forecast at D-1 12:00 local time from the
history known then; the learned models retrain every week on the 365 days before the issue time
(the whole known past when shorter). Scores per model: MAE, rMAE (MAE / (P99 - P1) of the measured
series), skill against seasonal naive, pinball loss, CRPS (from the three quantiles) and the
coverage of the 80 % interval (0.1 - 0.9 quantiles).

Series:
* the UCI Sceaux household (real, 2006-2010): test days = the last 365 full days of the series,
  2009-11-26 .. 2010-11-25; hyper-parameters were chosen on 2008-12-01 .. 2009-11-30 only. The
  household is in France: local clock Europe/Paris, French public holidays.
* SimBench 2016 household profiles (H0-A, H0-B, H0-C, H0-G, H0-L) and an office/school profile
  (G1-A), and the eight PV profiles (PV1..PV8, scored on daylight intervals only): test days
  2016-07-01 .. 2016-12-30, trained on what 2016 had before each issue. SimBench is German: clock
  Europe/Berlin, German holidays, sun for central Germany; PV profiles are per unit of kWp (1 kWp).

* a community of 10 members built from the UCI household (shifted by 5 k weeks, scaled): the
  community's day-ahead forecast as the sum of the members, scored for four ways of getting its
  band: summing the members' quantiles (not valid), bottom-up median with the band of the summed
  past member errors, MinT-shrink median with the community model's band, the community model alone.

Run: ``.venv/bin/python bench/backtest_report.py [--only uci|simbench|pv|community] [--csv scores.csv]
[--plot-dir docs/img]`` (the plot is the UCI household's backtest: its last week and the skill per
model, drawn by :func:`bright.commands.forecast.plot_backtest`, as ``bright backtest --plot`` does).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from bright import datasets
from bright.energy.forecast.backtest import (
    BacktestResult,
    Predictor,
    Trainer,
    crps_from_quantiles,
    interval_coverage,
    mae,
    pinball_loss,
    rolling_origin,
)
from bright.energy.forecast.baselines import Forecast, persistence, profile_average, seasonal_naive
from bright.energy.forecast.features import Site, day_ahead_issue_time, delivery_day_index, solar_geometry
from bright.energy.forecast.hierarchy import reconcile_forecasts
from bright.energy.forecast.pv import PVSystem, pv_reference_forecast
from bright.energy.forecast.select import forecast_member, train_member_model

SCEAUX = Site(latitude_deg=48.78, longitude_deg=2.29, altitude_m=100.0, tz="Europe/Paris", country="FR")
GERMANY = Site(latitude_deg=51.2, longitude_deg=10.4, altitude_m=200.0, tz="Europe/Berlin", country="DE")


def baseline(fn: Callable[..., object], site: Site) -> Trainer:
    def train(known: pd.Series, issue: pd.Timestamp) -> Predictor:
        return lambda h, i, t: fn(h, i, t, tz=site.tz)  # type: ignore[return-value]

    return train


def learned_load(site: Site, name: str) -> Trainer:
    """The product path: train_member_model, then forecast_member (with its fallbacks)."""

    def train(known: pd.Series, issue: pd.Timestamp) -> Predictor:
        out = train_member_model(known, until=issue, site=site, member=name)
        model = out.model

        def predict(h: pd.Series, i: pd.Timestamp, t: pd.DatetimeIndex):  # type: ignore[no-untyped-def]
            return forecast_member(h, i, "day-ahead", model=model, site=site, member=name)

        return predict

    return train


def learned_pv(system: PVSystem, name: str) -> Trainer:
    def train(known: pd.Series, issue: pd.Timestamp) -> Predictor:
        out = train_member_model(known, until=issue, kind="pv", pv_system=system, member=name)
        model = out.model

        def predict(h: pd.Series, i: pd.Timestamp, t: pd.DatetimeIndex):  # type: ignore[no-untyped-def]
            return forecast_member(h, i, "day-ahead", kind="pv", model=model, pv_system=system, member=name)

        return predict

    return train


def physical_pv(system: PVSystem) -> Trainer:
    def train(known: pd.Series, issue: pd.Timestamp) -> Predictor:
        return lambda h, i, t: pv_reference_forecast(system, h, i, t)

    return train


def load_models(site: Site, name: str) -> dict[str, Trainer]:
    return {
        "seasonal_naive": baseline(seasonal_naive, site),
        "persistence": baseline(persistence, site),
        "profile_average": baseline(profile_average, site),
        "gbm": learned_load(site, name),
    }


def table(scores: pd.DataFrame) -> str:
    lines = [
        "| model | MAE | rMAE | skill vs s-naive | pinball | CRPS | 80 % coverage | days |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, r in scores.iterrows():
        lines.append(
            f"| {model} | {r['mae']:.4f} | {r['rmae']:.3f} | {r['skill']:+.1%} | {r['pinball']:.4f} | {r['crps']:.4f} | "
            f"{r['coverage']:.1%} | {int(r['days'])} |"
        )
    return "\n".join(lines)


def used(result: BacktestResult, model: str) -> str:
    f = result.frame[result.frame["model"] == model]
    per_day = f.groupby("issue_time")["used_model"].first().value_counts()
    return ", ".join(f"{k}: {v} d" for k, v in per_day.items())


def run_uci(plot_dir: str | None = None) -> pd.DataFrame:
    y = datasets.uci_household()["energy_kwh"].rename("uci")
    days = pd.date_range("2009-11-26", "2010-11-25", freq="D")
    t0 = time.perf_counter()
    res = rolling_origin(y, load_models(SCEAUX, "uci"), days=days, tz=SCEAUX.tz, retrain_every_days=7)
    scores = res.scores()
    print("### UCI Sceaux household, day-ahead offtake (kWh per 15 min), 365 test days\n")
    print(table(scores))
    print(f"\ngbm forecasts made by: {used(res, 'gbm')}; run time {time.perf_counter() - t0:.0f} s\n")
    if plot_dir is not None:
        from pathlib import Path

        from bright.commands.forecast import plot_backtest

        path = Path(plot_dir) / "forecast-backtest-uci.png"
        plot_backtest(res.frame, scores, path, title="UCI Sceaux household, day-ahead offtake backtest")
        print(f"plot written to {path}\n")
    return scores.assign(series="uci")


def run_simbench_loads() -> pd.DataFrame:
    profiles = datasets.simbench_profiles()
    days = pd.date_range("2016-07-01", "2016-12-30", freq="D")
    parts = []
    for col in ("H0-A", "H0-B", "H0-C", "H0-G", "H0-L", "G1-A"):
        y = (profiles[col] * 0.25).rename(col)  # per-unit power -> kWh per 15 min at 1 kW peak
        t0 = time.perf_counter()
        res = rolling_origin(y, load_models(GERMANY, col), days=days, tz=GERMANY.tz, retrain_every_days=7)
        scores = res.scores()
        print(f"### SimBench {col}, day-ahead, {len(days)} test days\n")
        print(table(scores))
        print(f"\ngbm forecasts made by: {used(res, 'gbm')}; run time {time.perf_counter() - t0:.0f} s\n")
        parts.append(scores.assign(series=col))
    both = pd.concat(parts)
    mean = both.groupby(level=0, sort=False)[
        ["mae", "rmae", "skill", "pinball", "crps", "coverage", "days"]
    ].mean()
    print("### SimBench load profiles, mean over the six series\n")
    print(table(mean))
    print()
    return both


def run_simbench_pv() -> pd.DataFrame:
    profiles = datasets.simbench_profiles()
    days = pd.date_range("2016-07-01", "2016-12-30", freq="D")
    system = PVSystem(kwp=1.0, tilt_deg=35.0, azimuth_deg=180.0, site=GERMANY)
    parts = []
    for col in [f"PV{i}" for i in range(1, 9)]:
        y = (profiles[col] * 0.25).rename(col)
        t0 = time.perf_counter()
        models = {
            "seasonal_naive": baseline(seasonal_naive, GERMANY),
            "persistence": baseline(persistence, GERMANY),
            "pv_clear_sky": physical_pv(system),
            "pv_gbm": learned_pv(system, col),
        }
        res = rolling_origin(y, models, days=days, tz=GERMANY.tz, retrain_every_days=14)
        sun = solar_geometry(pd.DatetimeIndex(res.frame["target"].unique()), site=GERMANY)["sun_up"]
        daylight = res.frame["target"].map(sun).to_numpy() > 0
        scores = BacktestResult(res.frame[daylight].reset_index(drop=True), res.levels).scores()
        print(f"### SimBench {col} (1 kWp), day-ahead, daylight intervals, {len(days)} test days\n")
        print(table(scores))
        print(
            f"\npv_gbm forecasts made by: {used(res, 'pv_gbm')}; run time {time.perf_counter() - t0:.0f} s\n"
        )
        parts.append(scores.assign(series=col))
    both = pd.concat(parts)
    mean = both.groupby(level=0, sort=False)[
        ["mae", "rmae", "skill", "pinball", "crps", "coverage", "days"]
    ].mean()
    print("### SimBench PV profiles, mean over PV1..PV8 (daylight intervals)\n")
    print(table(mean))
    print()
    return both


def community_members(n: int) -> pd.DataFrame:
    """n members: the UCI household shifted by 5 k weeks and scaled (as in bench_forecast.py)."""
    y = datasets.uci_household()["energy_kwh"]
    cols = {}
    for k in range(n):
        scale = 0.5 + 1.5 * ((k * 37) % 100) / 99.0
        cols[f"m{k:02d}"] = pd.Series(y.to_numpy(), index=y.index).shift(k * 5 * 7 * 96) * scale
    return pd.DataFrame(cols).loc["2008-06-01":]


def frame_forecast(
    frame: pd.DataFrame, name: str, targets: pd.DatetimeIndex, issue: pd.Timestamp, levels: tuple[float, ...]
) -> Forecast:
    """One day's forecast of one series, back from a backtest frame indexed by target."""
    return Forecast(frame.loc[targets, list(levels)], issue, "gbm", member=name)


def run_community(n_members: int = 10) -> pd.DataFrame:
    """Community forecast = sum of members: reconciled medians and honest bands, scored."""
    members = community_members(n_members)
    community = members.sum(axis=1, min_count=n_members).rename("community")
    days = pd.date_range("2009-12-01", "2010-03-31", freq="D")
    t0 = time.perf_counter()
    frames = {}
    for name in [*members.columns, "community"]:
        series = community if name == "community" else members[name].rename(name)
        res = rolling_origin(
            series, {"gbm": learned_load(SCEAUX, name)}, days=days, tz=SCEAUX.tz, retrain_every_days=28
        )
        frames[name] = res.frame.set_index("target")
    levels = (0.1, 0.5, 0.9)
    ids = list(members.columns)
    errors = pd.DataFrame({k: frames[k]["y"] - frames[k][0.5] for k in [*ids, "community"]})
    rows: dict[str, list[pd.DataFrame]] = {
        "sum_of_member_quantiles": [],
        "bottom_up_summed_errors": [],
        "mint_shrink_community_band": [],
        "community_model": [],
    }
    for day in days[28:]:
        issue = day_ahead_issue_time(day, tz=SCEAUX.tz)
        targets = delivery_day_index(day, tz=SCEAUX.tz)
        past = errors.loc[
            (errors.index + pd.Timedelta(minutes=15) <= issue)
            & (errors.index >= issue - pd.Timedelta(days=28))
        ]
        mem = {k: frame_forecast(frames[k], k, targets, issue, levels) for k in ids}
        comm = frame_forecast(frames["community"], "community", targets, issue, levels)
        y = community.reindex(targets).to_numpy()
        naive = sum(m.quantiles.to_numpy() for m in mem.values())
        _, bu = reconcile_forecasts(mem, member_errors=past[ids], tz=SCEAUX.tz, lower_bound=0.0)
        _, mt = reconcile_forecasts(
            mem,
            community=comm,
            method="mint_shrink",
            errors=past[["community", *ids]],
            tz=SCEAUX.tz,
            lower_bound=0.0,
        )
        for key, q in (
            ("sum_of_member_quantiles", naive),
            ("bottom_up_summed_errors", bu.quantiles.to_numpy()),
            ("mint_shrink_community_band", mt.quantiles.to_numpy()),
            ("community_model", comm.quantiles.to_numpy()),
        ):
            rows[key].append(pd.DataFrame(np.column_stack([y, q]), columns=["y", *levels]))
    out = []
    for key, parts in rows.items():
        d = pd.concat(parts, ignore_index=True)
        yv, q = d["y"].to_numpy(), d[list(levels)].to_numpy()
        out.append(
            {
                "method": key,
                "mae": mae(yv, q[:, 1]),
                "pinball": pinball_loss(yv, q, quantiles=levels),
                "crps": crps_from_quantiles(yv, q, quantiles=levels),
                "coverage": interval_coverage(yv, q[:, 0], q[:, 2]),
                "n": len(d),
            }
        )
    scores = pd.DataFrame(out).set_index("method")
    print(
        f"### Community of {n_members} members (UCI household shifted by 5 k weeks, scaled), day-ahead sum\n"
    )
    print("| community forecast | MAE | pinball | CRPS | 80 % coverage |")
    print("|---|---:|---:|---:|---:|")
    for key, r in scores.iterrows():
        print(f"| {key} | {r['mae']:.4f} | {r['pinball']:.4f} | {r['crps']:.4f} | {r['coverage']:.1%} |")
    print(
        f"\n{len(days) - 28} test days after 28 warm-up days (member errors); run time {time.perf_counter() - t0:.0f} s\n"
    )
    return scores.assign(series="community")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["uci", "simbench", "pv", "community"], default=None)
    ap.add_argument("--csv", default=None, help="also write every score row to this CSV file")
    ap.add_argument("--plot-dir", default=None, help="draw the UCI backtest plot (PNG) into this directory")
    args = ap.parse_args()
    parts = []
    if args.only in (None, "uci"):
        parts.append(run_uci(args.plot_dir))
    if args.only in (None, "simbench"):
        parts.append(run_simbench_loads())
    if args.only in (None, "pv"):
        parts.append(run_simbench_pv())
    if args.only in (None, "community"):
        parts.append(run_community())
    if args.csv:
        pd.concat(parts).to_csv(args.csv)


if __name__ == "__main__":
    main()
