"""Batch kernels over a weight block: confusion counts, grouped counts and AUROC."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from validators.metrics.counts import ConfusionCountsBatch
from validators.metrics.ranking import RankedCases, ranking_batch
from validators.metrics.validation import BoolArray, MetricBatch
from validators.resampling.plan import _EXACT_FLOAT32

# --------------------------------------------------------------------------------------------
# Batch kernels over a weight block
# --------------------------------------------------------------------------------------------


def _exact_float(weights: NDArray[Any]) -> NDArray[np.floating]:
    """Return the weights as a float matrix in which their integer sums are exact."""
    if weights.dtype in (np.float32, np.float64):
        return weights
    if np.issubdtype(weights.dtype, np.integer) and int(weights.sum(axis=1).max()) < _EXACT_FLOAT32:
        return weights.astype(np.float32)
    return weights.astype(np.float64)


def grouped_confusion_counts_batch(
    weights: NDArray[Any],
    y_true: BoolArray,
    y_pred: BoolArray,
    masks: BoolArray,
) -> list[ConfusionCountsBatch]:
    """Return confusion counts per replicate for each population mask (`masks` is `[G, N]`).

    One matrix product `W @ [positive, called positive, true positive, member]` for all groups;
    exact for integer weights.
    """
    masks = np.atleast_2d(masks)
    columns = np.stack([y_true & masks, y_pred & masks, y_true & y_pred & masks, masks], axis=2)
    indicator = columns.transpose(1, 0, 2).reshape(y_true.shape[0], -1)
    w = _exact_float(weights)
    sums = (w @ indicator.astype(w.dtype)).astype(np.float64)
    out = []
    for g in range(masks.shape[0]):
        positive, called, tp, total = (sums[:, 4 * g + k] for k in range(4))
        fp = called - tp
        fn = positive - tp
        out.append(ConfusionCountsBatch(tp=tp, fp=fp, tn=total - positive - fp, fn=fn))
    return out


def confusion_counts_batch(
    weights: NDArray[Any],
    y_true: BoolArray,
    y_pred: BoolArray,
    *,
    mask: BoolArray | None = None,
) -> ConfusionCountsBatch:
    """Return (TP, FP, TN, FN) per weight row, each `[R]`, over the cases in `mask` (or all)."""
    population = np.ones(y_true.shape[0], dtype=bool) if mask is None else mask
    return grouped_confusion_counts_batch(weights, y_true, y_pred, population[None, :])[0]


def auroc_batch(weights: NDArray[Any], ranked: RankedCases) -> MetricBatch:
    """Return the AUROC per weight row of the population `ranked` was built for."""
    return ranking_batch(weights, ranked).auroc
