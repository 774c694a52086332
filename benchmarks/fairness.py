"""Benchmark 4: subgroup metrics with bootstrap intervals, against fairlearn's `MetricFrame`.

The issue's reference job: 100,000 cases, three attributes (sex 2 levels, site 4, age in 4
bands: 10 groups), AUROC, sensitivity, specificity and PPV overall and per group with 1,000
bootstrap replicates, plus the paired disparities and fairness gaps that come with them
(`validators.evaluation.evaluate_binary_with_subgroups`, overall with the same four metrics).

Each Assay configuration runs in a fresh process (`python -m benchmarks.fairness --child ...`)
that builds the data, imports the library, then times one call and reports its own peak RSS
(`ru_maxrss`: the whole process, interpreter and data included). Three configurations:

- `reference`: the job above (target: under 5 s and 2 GiB);
- `intersection`: the same plus the sex x site x age-band intersection (32 more groups), which is
  what fairlearn computes when given the three columns: the ratio uses this one, so that Assay
  does at least fairlearn's work;
- `complete`: the reference groups with every overall metric and curve, what `assay score` runs.

fairlearn runs in this process on the same data: `MetricFrame(metrics={auroc, sensitivity,
specificity, ppv}, y_true, y_pred=scores, sensitive_features=<the three columns>)`, once without
and once with `n_boot` (20 by default, `ci_quantiles=[0.025, 0.975]`); its time per replicate is
the difference divided by `n_boot`, so its point estimates are not charged to its replicates.
Ours per replicate is the whole call (point estimates included) divided by the replicates.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks._common import (
    REPO_ROOT,
    BenchmarkError,
    benchmark_environment,
    median,
    progress,
    ratio,
)

NAME = "fairness"
TARGET_S = 5.0
TARGET_PEAK_MIB = 2048.0
FLOOR_SPEEDUP = 100.0
AIM_SPEEDUP = 1000.0
THRESHOLD = 0.5
METRICS = ("auroc", "sensitivity", "specificity", "ppv")
CONFIGURATIONS = ("reference", "intersection", "complete")


def make_data(
    rows: int, *, seed: int = 0
) -> tuple[NDArray[np.bool_], NDArray[np.float64], dict[str, NDArray[np.object_]]]:
    """Return labels, probabilities (4 decimals, so with ties) and sex, site and age columns."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array(["F", "M"], dtype=object), rows)
    site = rng.choice(np.array(["A", "B", "C", "D"], dtype=object), rows, p=[0.4, 0.3, 0.2, 0.1])
    age = rng.integers(1, 96, rows).astype(object)  # bands 0-18, 18-40, 40-65, 65+
    labels = rng.random(rows) < 0.2
    signal = 1.6 - 0.5 * (site == "D") - 0.2 * (sex == "F")
    scores = 1.0 / (1.0 + np.exp(-(rng.normal(size=rows) + signal * labels - 1.0)))
    return labels, np.round(scores, 4), {"sex": sex, "site": site, "age": age}


def _child(rows: int, replicates: int, configuration: str) -> dict[str, Any]:
    """Time one Assay call in this (fresh) process; return its time and peak memory."""
    import scipy.special  # noqa: F401  (library import, as fairlearn's, is not timed)

    from validators.evaluation import (
        EvaluationSettings,
        SubgroupAnalysisSpec,
        evaluate_binary_with_subgroups,
    )

    labels, scores, attributes = make_data(rows)
    intersections = (("sex", "site", "age"),) if configuration == "intersection" else ()
    spec = SubgroupAnalysisSpec(
        metrics=METRICS, disparity_metrics=METRICS, intersections=intersections
    )
    settings = EvaluationSettings.create(threshold=THRESHOLD, replicates=replicates, seed=0)
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    overall, tables, disparities, gaps = evaluate_binary_with_subgroups(
        labels,
        scores,
        attributes,
        spec=spec,
        settings=settings,
        overall_metrics="all" if configuration == "complete" else "spec",
    )
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_before_call_mib": round(before_kib / 1024, 1),
        "groups": sum(len(t.groups) for t in tables),
        "disparities": len(disparities),
        "fairness_gaps": len(gaps),
        "overall_auroc": overall.auroc.estimate,
    }


def _run_child(rows: int, replicates: int, configuration: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.fairness",
        "--child",
        configuration,
        "--rows",
        str(rows),
        "--replicates",
        str(replicates),
    ]
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=benchmark_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchmarkError(
            f"the {configuration} run exited with {completed.returncode}: "
            f"{completed.stderr[-1500:]}"
        )
    loaded: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return loaded


def _fairlearn(rows: int, replicates: int) -> dict[str, Any]:
    """Time fairlearn's MetricFrame on the same data, without and with its bootstrap."""
    import pandas as pd
    from fairlearn.metrics import MetricFrame, true_negative_rate
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    labels, scores, attributes = make_data(rows)
    from validators.evaluation import age_band_labels
    from validators.results import DEFAULT_AGE_BANDS

    features = pd.DataFrame(
        {
            "sex": attributes["sex"],
            "site": attributes["site"],
            "age_band": age_band_labels(attributes["age"], DEFAULT_AGE_BANDS),
        }
    )

    def sensitivity(y_true: Any, y_score: Any) -> float:
        return float(recall_score(y_true, np.asarray(y_score) >= THRESHOLD))

    def specificity(y_true: Any, y_score: Any) -> float:
        return float(true_negative_rate(y_true, np.asarray(y_score) >= THRESHOLD))

    def ppv(y_true: Any, y_score: Any) -> float:
        return float(
            precision_score(y_true, np.asarray(y_score) >= THRESHOLD, zero_division=np.nan)
        )

    metrics = {
        "auroc": roc_auc_score,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "ppv": ppv,
    }
    started = time.perf_counter()
    plain = MetricFrame(metrics=metrics, y_true=labels, y_pred=scores, sensitive_features=features)
    point_s = time.perf_counter() - started
    started = time.perf_counter()
    MetricFrame(
        metrics=metrics,
        y_true=labels,
        y_pred=scores,
        sensitive_features=features,
        n_boot=replicates,
        ci_quantiles=[0.025, 0.975],
        random_state=0,
    )
    boot_s = time.perf_counter() - started
    return {
        "replicates": replicates,
        "groups": len(plain.by_group),
        "point_estimates_s": round(point_s, 3),
        "with_bootstrap_s": round(boot_s, 3),
        "per_replicate_s": round((boot_s - point_s) / replicates, 4),
    }


def run(*, rows: int, replicates: int, fairlearn_replicates: int, repeats: int) -> dict[str, Any]:
    """Measure the three Assay configurations and fairlearn; give times, memory and ratios."""
    assay: dict[str, Any] = {}
    for configuration in CONFIGURATIONS:
        runs = []
        for index in range(repeats):
            runs.append(_run_child(rows, replicates, configuration))
            progress(
                f"assay {configuration} run {index + 1}/{repeats}: {runs[-1]['wall_s']:.2f} s, "
                f"peak RSS {runs[-1]['peak_rss_mib']:.0f} MiB"
            )
        wall = median([r["wall_s"] for r in runs])
        assay[configuration] = {
            "wall_s_median": round(wall, 4),
            "wall_s_runs": [r["wall_s"] for r in runs],
            "per_replicate_s": round(wall / replicates, 6),
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs),
            "peak_rss_before_call_mib": runs[0]["peak_rss_before_call_mib"],
            "groups": runs[0]["groups"],
            "disparities": runs[0]["disparities"],
            "fairness_gaps": runs[0]["fairness_gaps"],
        }
    progress(f"fairlearn MetricFrame, n_boot={fairlearn_replicates} on {rows:,} rows ...")
    reference = _fairlearn(rows, fairlearn_replicates)
    progress(
        f"fairlearn: {reference['with_bootstrap_s']:.1f} s, "
        f"{reference['per_replicate_s']:.3f} s per replicate"
    )
    speedups = {
        configuration: ratio(reference["per_replicate_s"], assay[configuration]["per_replicate_s"])
        for configuration in CONFIGURATIONS
    }
    primary = speedups["intersection"]
    ref = assay["reference"]
    return {
        "rows": rows,
        "replicates": replicates,
        "metrics": list(METRICS),
        "threshold": THRESHOLD,
        "assay": assay,
        "fairlearn": reference,
        "speedup_fairlearn_over_assay": speedups,
        "targets": {
            "reference_wall_s": TARGET_S,
            "reference_peak_rss_mib": TARGET_PEAK_MIB,
            "speedup_floor": FLOOR_SPEEDUP,
            "speedup_aim": AIM_SPEEDUP,
        },
        "target_met": {
            "time": ref["wall_s_median"] < TARGET_S,
            "memory": ref["peak_rss_mib_max"] < TARGET_PEAK_MIB,
            "speedup_floor": primary is not None and primary >= FLOOR_SPEEDUP,
            "speedup_aim": primary is not None and primary >= AIM_SPEEDUP,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fairness")
    parser.add_argument("--child", choices=CONFIGURATIONS, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--replicates", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(_child(args.rows, args.replicates, args.child)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
