"""Subgroup replicates: the weight stream and the groups' batches on a thread pool."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from validators.evaluation.groups import _FPR, _SELECTION, _TPR
from validators.evaluation.population import RANKING_METRICS, BinaryPopulation
from validators.metrics.counts import ConfusionCountsBatch
from validators.metrics.validation import BoolArray, FloatArray, safe_divide_array
from validators.resampling.batches import grouped_confusion_counts_batch
from validators.resampling.plan import BootstrapPlan

# --------------------------------------------------------------------------------------------
# Replicates
# --------------------------------------------------------------------------------------------


def _workers() -> int:
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, 4))


def _rates(counts: ConfusionCountsBatch) -> dict[str, FloatArray]:
    """Return the rates the fairness gaps need: TPR, FPR and the selection rate."""
    total = counts.tp + counts.fp + counts.tn + counts.fn
    return {
        _TPR: safe_divide_array(counts.tp, counts.tp + counts.fn),
        _FPR: safe_divide_array(counts.fp, counts.fp + counts.tn),
        _SELECTION: safe_divide_array(counts.tp + counts.fp, total),
    }


def _lean_batch(
    population: BinaryPopulation,
    weights: NDArray[Any],
    names: frozenset[str],
    counts: ConfusionCountsBatch | None,
) -> dict[str, FloatArray]:
    """Return the asked metrics (all in LEAN_METRICS) and the rates for each weight row."""
    out, counts = population.lean(weights, names, counts)
    out.update(_rates(counts))
    return out


def _full_batch(
    population: BinaryPopulation, weights: NDArray[Any], names: frozenset[str]
) -> dict[str, FloatArray]:
    batch = population.evaluate(weights)
    out = {name: batch.metrics[name].values for name in names}
    out.update(_rates(batch.counts))
    return out


@dataclass(frozen=True)
class _Job:
    """What to compute for one population per replicate: these metrics, lean or in full."""

    names: frozenset[str]
    lean: bool

    @property
    def keys(self) -> list[str]:
        return [*sorted(self.names), _TPR, _FPR, _SELECTION]

    @property
    def by_matrix(self) -> bool:
        # Without a ranking metric, counts come from one matrix product shared by all groups.
        return self.lean and not self.names & RANKING_METRICS


class _WeightStream:
    """The plan's weight blocks, drawn in order on a thread of their own, `ahead` blocks ahead.

    Started as soon as the plan exists, the drawing overlaps the work that does not use the
    weights (attribute columns, populations, point estimates) as well as the kernels.
    """

    def __init__(self, plan: BootstrapPlan, *, ahead: int = 2) -> None:
        self.plan = plan
        self.starts = list(range(0, plan.replicates, plan.block_size))
        self._drawer = ThreadPoolExecutor(max_workers=1)
        self._pending = [self._submit(start) for start in self.starts[:ahead]]
        self._next = len(self._pending)

    def _submit(self, start: int) -> Future[NDArray[Any]]:
        stop = min(start + self.plan.block_size, self.plan.replicates)
        return self._drawer.submit(self.plan.weights, start, stop)

    def __iter__(self) -> Iterator[tuple[int, int, NDArray[Any]]]:
        """Yield (start, stop, weights) for each block in turn."""
        for start in self.starts:
            weights = self._pending.pop(0).result()
            if self._next < len(self.starts):
                self._pending.append(self._submit(self.starts[self._next]))
                self._next += 1
            yield start, start + weights.shape[0], weights

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._drawer.shutdown(wait=True)


def _collect(
    stream: _WeightStream,
    populations: Sequence[BinaryPopulation],
    jobs: Sequence[_Job],
    *,
    labels: BoolArray,
    predicted: BoolArray,
    pool: ThreadPoolExecutor,
) -> list[dict[str, FloatArray]]:
    """Return, per population, each asked metric and rate in every replicate (NaN: undefined)."""
    plan = stream.plan
    tables = [{key: np.empty(plan.replicates) for key in job.keys} for job in jobs]
    by_matrix = [k for k, job in enumerate(jobs) if job.by_matrix]
    masks = np.zeros((len(by_matrix), plan.n_cases), dtype=bool)
    for row, k in enumerate(by_matrix):
        masks[row, populations[k].index] = True
    # The next blocks' weights are being drawn on their own thread while this block's run.
    for start, stop, weights in stream:
        counts: list[ConfusionCountsBatch | None] = [None] * len(populations)
        if by_matrix:
            shared = grouped_confusion_counts_batch(weights, labels, predicted, masks)
            for k, batch in zip(by_matrix, shared, strict=True):
                counts[k] = batch
        work = [
            (tables[k], populations[k], weights, counts[k], start, stop, jobs[k])
            for k in range(len(populations))
        ]
        # The slowest (full) populations first, so that none is left running alone.
        work.sort(key=lambda item: item[6].lean)
        list(pool.map(lambda item: _fill(*item), work))
    return tables


def _fill(
    table: dict[str, FloatArray],
    population: BinaryPopulation,
    weights: NDArray[Any],
    counts: ConfusionCountsBatch | None,
    start: int,
    stop: int,
    job: _Job,
) -> None:
    """Write one population's values for replicates start..stop-1 into its table."""
    values = (
        _lean_batch(population, weights, job.names, counts)
        if job.lean
        else _full_batch(population, weights, job.names)
    )
    for key, column in table.items():
        column[start:stop] = values[key]
