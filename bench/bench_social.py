"""Benchmark of S-BRIGHT (issue 8): latent class segmentation of 2,000 respondents, k = 2..7.

Run: ``.venv/bin/python bench/bench_social.py`` (about a minute on one core; ``--repeats 1`` for a
quicker run).  Respondents are drawn from the 5 documented simulated classes
(:func:`bright.social.segmentation.simulate_respondents`, seed 2024, 3 % of answers missing at
random, load-profile covariates).  The timed figure is :func:`segment_members` end to end: answer
validation, item coding, EM fits for k = 2..7 with BIC selection, the covariate (structural) model for
the chosen k, posteriors, class profiles and names -- without the bootstrap, which is timed
separately. Times are medians over repeats (``time.perf_counter``, wall clock); CPU time
(``time.process_time``) is given alongside because the reference machine is shared.
Prints a markdown table: figure, measured value, target, pass/fail.
"""

from __future__ import annotations

import argparse
import statistics
import time

from sklearn.metrics import adjusted_rand_score

from bright.social.scoring import dimension_reliability, dimension_scores
from bright.social.segmentation import Segmentation, segment_members, simulate_respondents

N_RESPONDENTS = 2_000
K_RANGE = range(2, 8)
SEED = 2024


def _timed(fn, repeats: int) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    walls, cpus = [], []
    result = None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the timed segmentation")
    parser.add_argument("--bootstrap", type=int, default=10, help="bootstrap refits for the stability ARI")
    args = parser.parse_args()

    sim = simulate_respondents(N_RESPONDENTS, missing_rate=0.03, seed=SEED)

    wall, cpu, res = _timed(
        lambda: segment_members(sim.answers, sim.covariates, k_range=K_RANGE, bootstrap_reps=0),
        args.repeats,
    )
    seg: Segmentation = res  # type: ignore[assignment]
    wall_b, cpu_b, res_b = _timed(
        lambda: segment_members(sim.answers, sim.covariates, k_range=K_RANGE, bootstrap_reps=args.bootstrap),
        1,
    )
    seg_b: Segmentation = res_b  # type: ignore[assignment]
    wall_s, cpu_s, _ = _timed(
        lambda: (dimension_scores(sim.answers), dimension_reliability(sim.answers)), args.repeats
    )

    ari = adjusted_rand_score(sim.true_labels, seg.labels)
    rows = [
        (
            f"segmentation, {N_RESPONDENTS:,} respondents, k = 2..7 + BIC (median of {args.repeats})",
            f"{wall:.2f} s wall ({cpu:.2f} s CPU)",
            "<= 30 s",
            wall <= 30.0,
        ),
        ("k chosen by BIC", str(seg.n_classes), "5 (true)", seg.n_classes == 5),
        ("ARI, recovered vs true classes", f"{ari:.3f}", ">= 0.9", ari >= 0.9),
        (
            "relative entropy",
            f"{seg.quality.relative_entropy:.3f}",
            ">= 0.8",
            seg.quality.relative_entropy >= 0.8,
        ),
        (
            "smallest class share",
            f"{seg.quality.smallest_class_share:.3f}",
            "0.15 (true)",
            abs(seg.quality.smallest_class_share - 0.15) < 0.02,
        ),
        (
            f"bootstrap ARI, median (min) of {args.bootstrap} refits",
            f"{seg_b.quality.bootstrap_ari_median:.3f} ({min(seg_b.quality.bootstrap_ari):.3f})",
            ">= 0.8",
            seg_b.quality.bootstrap_ari_median >= 0.8,
        ),
        (
            f"segmentation + {args.bootstrap} bootstrap refits",
            f"{wall_b:.2f} s wall ({cpu_b:.2f} s CPU)",
            "(info)",
            None,
        ),
        (
            f"dimension scores + Cronbach's alpha, {N_RESPONDENTS:,} respondents",
            f"{wall_s * 1e3:.0f} ms wall ({cpu_s * 1e3:.0f} ms CPU)",
            "(info)",
            None,
        ),
    ]
    print("| figure | measured | target | pass |")
    print("|---|---|---|---|")
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("pass" if ok else "FAIL")
        print(f"| {name} | {value} | {target} | {mark} |")
    print()
    print("BIC by k: " + ", ".join(f"k={f.n_classes}: {f.bic:,.0f}" for f in seg.selection))
    print("classes: " + "; ".join(f"{c.name} {c.share:.0%}" for c in seg.classes))
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
