"""Resampling: the vectorized case- and patient-level bootstrap, and the percentile, Wilson,
clustered Wilson, MOVER, DeLong and Obuchowski intervals.

The bootstrap never calls a metric once per replicate. A `BootstrapPlan` draws, for each replicate
r, how many times each case (or each patient, the cluster bootstrap) is resampled: a row of integer
weights. Rows are produced in blocks `W` of shape `[R_block, N]` (bounded memory), and every
metric is computed for all rows of a block at once from sufficient statistics: confusion counts
are `W @ indicators`; AUROC and average precision come from one sort of the scores, done before
resampling, and running sums of the gathered weights (`validators.metrics.ranking_batch`);
Brier, log loss and ECE are `W @ per-case losses`. Because the same `W` serves every population,
a subgroup is just a mask over the same replicates, and differences between groups are paired.

Replicate r's weights depend only on (seed, r, number of units): replicates are drawn in groups
of 64 consecutive ones (fewer for large samples), group g from a PCG64 stream seeded by
`SeedSequence(seed, spawn_key=(g,))`, so results are reproducible to the last digit whatever the
block size, and any replicate can be regenerated with its group.

Modules: `plan` (the plan and its weight blocks), `batches` (kernels over a weight block),
`percentile` (percentile and Wilson intervals), `intervals` (clustered Wilson, Obuchowski),
`mover` (differences and ratios of correlated proportions), `delong` (DeLong's interval and
paired test). This layer imports the kernels (`validators.metrics`) and the typed results, never
the evaluation built on it: `validators.evaluation` assembles the typed results.
"""

from __future__ import annotations

from validators.resampling.batches import (
    auroc_batch,
    confusion_counts_batch,
    grouped_confusion_counts_batch,
)
from validators.resampling.delong import (
    DelongComparison,
    DelongInterval,
    delong_auc_variance,
    delong_interval,
    delong_paired_test,
)
from validators.resampling.intervals import (
    ClusteredAucInterval,
    ClusteredWilson,
    ClusteredWilsonBatch,
    Quantile,
    cluster_correlation,
    cluster_index,
    cluster_totals,
    clustered_wilson_batch,
    clustered_wilson_interval,
    midranks,
    obuchowski_auc_variance,
    obuchowski_interval,
    one_per_case,
    wilson_bounds,
    z_quantile,
)
from validators.resampling.mover import (
    MoverInterval,
    group_minus_overall,
    group_over_overall,
    mover_difference,
    mover_ratio,
)
from validators.resampling.percentile import Interval, percentile_interval, wilson_interval
from validators.resampling.plan import BootstrapPlan, WeightBlock, score_order

__all__ = [
    "BootstrapPlan",
    "ClusteredAucInterval",
    "ClusteredWilson",
    "ClusteredWilsonBatch",
    "DelongComparison",
    "DelongInterval",
    "Interval",
    "MoverInterval",
    "Quantile",
    "WeightBlock",
    "auroc_batch",
    "cluster_correlation",
    "cluster_index",
    "cluster_totals",
    "clustered_wilson_batch",
    "clustered_wilson_interval",
    "confusion_counts_batch",
    "delong_auc_variance",
    "delong_interval",
    "delong_paired_test",
    "group_minus_overall",
    "group_over_overall",
    "grouped_confusion_counts_batch",
    "midranks",
    "mover_difference",
    "mover_ratio",
    "obuchowski_auc_variance",
    "obuchowski_interval",
    "one_per_case",
    "percentile_interval",
    "score_order",
    "wilson_bounds",
    "wilson_interval",
    "z_quantile",
]
