"""Bootstrap plans: the seeded weight streams, drawn in blocks of replicates."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from validators.metrics.validation import BoolArray, FloatArray, IntArray
from validators.resampling.intervals import cluster_index
from validators.results.estimates import BootstrapUnit

DRAW_GROUP = 64
"""Replicates drawn by one generator: replicate r comes from group r // 64, row r % 64."""
DRAW_GROUP_ELEMENTS = 1 << 16
"""At most this many draws per generator call: from 65,536 units on, one replicate a group (a
long draw holds the GIL and would stall the kernels running beside the drawing thread; the
per-replicate set-up it saves is negligible at that size)."""

BLOCK_ELEMENTS = 1 << 24
"""Weights per block by default (R_block x N): 16 MiB of int8, a few times that in work arrays."""

_EXACT_FLOAT32 = 1 << 24


# --------------------------------------------------------------------------------------------
# Resampling weights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WeightBlock:
    """Replicates `start` to `stop - 1`: `counts[r, i]` is how often case i is drawn in r."""

    start: int
    stop: int
    counts: NDArray[np.signedinteger[Any]]


@dataclass(frozen=True, eq=False)
class BootstrapPlan:
    """Which cases each bootstrap replicate draws, generated block by block on demand.

    With `clusters` (patient index per case) whole patients are resampled and each case takes
    its patient's count: all images of a patient move together. Otherwise cases are resampled.
    """

    n_cases: int
    replicates: int
    seed: int
    clusters: IntArray | None
    n_clusters: int
    block_size: int
    dtype: type[np.signedinteger[Any]]

    @classmethod
    def create(
        cls,
        n_cases: int,
        *,
        replicates: int = 1000,
        seed: int = 0,
        groups: ArrayLike | None = None,
        block_size: int | None = None,
    ) -> BootstrapPlan:
        """Return a plan for `n_cases`; `groups` (patient ids, one per case) resamples patients."""
        if n_cases < 1:
            raise ValueError(f"the bootstrap needs at least one case; got {n_cases}")
        if replicates < 1:
            raise ValueError(f"replicates must be at least 1; got {replicates}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed}")
        clusters, n_clusters = None, n_cases
        if groups is not None:
            clusters, n_clusters = cluster_index(groups, n_cases)
        size = block_size or max(1, BLOCK_ELEMENTS // n_cases)
        # A row's total is at most (units drawn) x (largest cluster); int32 sums must not overflow.
        largest = 1 if clusters is None else int(np.bincount(clusters).max())
        dtype = np.int32 if n_clusters * largest < 2**31 else np.int64
        return cls(
            n_cases=n_cases,
            replicates=replicates,
            seed=seed,
            clusters=clusters,
            n_clusters=n_clusters,
            block_size=min(size, replicates),
            dtype=dtype,
        )

    @property
    def unit(self) -> BootstrapUnit:
        """What is resampled: cases, or patients."""
        return "case" if self.clusters is None else "patient"

    @property
    def n_units(self) -> int:
        """How many units (cases or patients) each replicate draws."""
        return self.n_clusters

    def weights(self, start: int, stop: int) -> NDArray[np.signedinteger[Any]]:
        """Return the `[stop - start, n_cases]` resampling counts of replicates start..stop-1.

        The counts are stored as int8 (a case is drawn more than 127 times in one replicate
        only with vanishing probability; the block is widened to `dtype` if it happens): the
        kernels' gathers move a quarter of the bytes, and they accumulate in int32, exactly
        (`validators.metrics`). Otherwise the dtype is `dtype`: int32, or int64 if a row's
        total could reach 2^31.
        """
        if not 0 <= start <= stop <= self.replicates:
            raise ValueError(f"replicates {start}..{stop} are outside 0..{self.replicates}")
        compact = self.n_cases * int(np.iinfo(np.int8).max) < 2**31
        out = np.empty((stop - start, self.n_cases), dtype=np.int8 if compact else self.dtype)
        size = self.draw_group
        for group in range(start // size, (stop - 1) // size + 1 if stop > start else 0):
            first = group * size
            low, high = max(start, first), min(stop, first + size)
            counts = self._draw_group(group)[low - first : high - first]
            if out.dtype == np.int8 and int(counts.max()) > np.iinfo(np.int8).max:
                out = out.astype(self.dtype)
            out[low - start : high - start] = (
                counts if self.clusters is None else counts[:, self.clusters]
            )
        return out

    @property
    def draw_group(self) -> int:
        """How many consecutive replicates one generator draws (64, fewer for large samples)."""
        return max(1, min(DRAW_GROUP, DRAW_GROUP_ELEMENTS // self.n_units))

    def _draw_group(self, group: int) -> NDArray[np.int64]:
        """Return the resampling counts per unit of the `draw_group` replicates of `group`.

        One PCG64 stream, seeded by `SeedSequence(seed, spawn_key=(group,))`, draws the units
        of all of them at once, and one `bincount` over row-offset draws counts them: a Python
        step per group, not per replicate (a generator per replicate spent half the time of a
        small evaluation setting itself up).
        """
        size = self.draw_group
        stream = np.random.SeedSequence(self.seed, spawn_key=(group,))
        draws = np.random.Generator(np.random.PCG64(stream)).integers(
            0, self.n_units, size=(size, self.n_units)
        )
        draws += (np.arange(size, dtype=np.int64) * self.n_units)[:, None]
        counts: NDArray[np.int64] = np.bincount(
            draws.ravel(), minlength=size * self.n_units
        ).reshape(size, self.n_units)
        return counts

    def blocks(self) -> Iterator[WeightBlock]:
        """Yield the replicates in blocks of `block_size` rows."""
        for start in range(0, self.replicates, self.block_size):
            stop = min(start + self.block_size, self.replicates)
            yield WeightBlock(start=start, stop=stop, counts=self.weights(start, stop))


def score_order(labels: BoolArray, scores: FloatArray) -> IntArray:
    """Return the order that sorts cases by score, ties by label (negatives first), stably.

    Cases with the same score and label are interchangeable in every metric, so in this order
    the case bootstrap gives the same replicates whatever the input order of such cases. (Cases
    tied on both that differ in a subgroup attribute still keep their input order: callers with
    case ids sort by them first, as `evaluate_predictions` does.)
    """
    order: IntArray = np.lexsort((labels, scores)).astype(np.intp)
    return order
