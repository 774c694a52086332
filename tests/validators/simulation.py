"""Coverage simulations: a runner over worker processes and the acceptance rules.

The designs, with their true values, are in `coverage_designs.py`. `run_design(design, datasets)`
evaluates datasets on 2 worker processes (spawn start, BLAS and OpenMP threads 1 each) and
returns one `Summary` per check of the design: coverage with its Monte Carlo standard error
SE = sqrt(c (1 - c) / n), the acceptance band and whether it passes.

    python -m tests.validators.simulation [--datasets N] [--design NAME] [--workers 2]

prints the markdown table of docs/statistics.md ("Coverage"); `--truths` recomputes the truths by
a 10^7-sample Monte Carlo.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.pool import Pool

import numpy as np
from numpy.typing import NDArray

from tests.validators.coverage_designs import (
    DESIGNS,
    NOMINAL,
    Check,
    CheckKind,
    Design,
    monte_carlo_truths,
)
from validators.results import Estimate

__all__ = [
    "DesignResult",
    "Summary",
    "make_pool",
    "markdown_table",
    "run_design",
]

BAND_SLACK = 0.01
"""Two-sided coverage passes within NOMINAL +- (2 SE + BAND_SLACK)."""
ECE_LIMIT = 0.05
ECE_SHARE_BELOW = 0.80
UNDERCOVER = 0.90

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

# Interval shape codes in the records.
_TWO, _LOWER, _UPPER, _POINT, _UNDEFINED = 0, 1, 2, 3, 4


def _record(estimate: Estimate) -> tuple[float, float, float, int]:
    """Return (estimate, lower, upper, shape): a missing side of a one-sided bound is infinite."""
    if estimate.status != "ok" or estimate.estimate is None:
        return math.nan, math.nan, math.nan, _UNDEFINED
    if not estimate.has_interval:
        return estimate.estimate, math.nan, math.nan, _POINT
    lower = estimate.bound("lower")
    upper = estimate.bound("upper")
    shape = {"two": _TWO, "lower": _LOWER, "upper": _UPPER}[estimate.sides]
    return (
        estimate.estimate,
        -math.inf if lower is None else lower,
        math.inf if upper is None else upper,
        shape,
    )


@dataclass
class _Chunk:
    ks: NDArray[np.int64]
    records: dict[str, NDArray[np.float64]]  # quantity -> [len(ks), 4]
    methods: dict[str, Counter[str]]
    seconds: float
    cpu_seconds: float


def _evaluate_chunk(design: Design, ks: Sequence[int]) -> _Chunk:
    started, cpu = time.perf_counter(), time.process_time()
    records: dict[str, list[tuple[float, float, float, int]]] = {}
    methods: dict[str, Counter[str]] = {}
    for k in ks:
        for quantity, estimate in design.evaluate_dataset(int(k)).items():
            records.setdefault(quantity, []).append(_record(estimate))
            methods.setdefault(quantity, Counter())[estimate.method] += 1
    return _Chunk(
        ks=np.asarray(ks, dtype=np.int64),
        records={q: np.array(r, dtype=np.float64) for q, r in records.items()},
        methods=methods,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu,
    )


def _evaluate_chunk_star(args: tuple[Design, Sequence[int]]) -> _Chunk:
    return _evaluate_chunk(*args)


def _limit_threads() -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(1)


def make_pool(workers: int = 2) -> Pool:
    """Return a pool of `workers` spawned processes, each with one BLAS / OpenMP thread."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    try:
        return multiprocessing.get_context("spawn").Pool(workers, initializer=_limit_threads)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class Summary:
    """The outcome of one check over the datasets of a design."""

    design: str
    quantity: str
    kind: CheckKind
    truth: float
    methods: str
    n: int
    hits: int
    value: float  # coverage, share, or the mean estimate (mean-zero)
    se: float
    lower_limit: float
    upper_limit: float
    passed: bool
    mean_width: float
    zero_width: float
    undefined: float
    one_sided: float
    mean_estimate: float
    mean_estimate_se: float
    upper_below_limit: float
    lower_above_estimate: float

    def statistic_text(self) -> str:
        if self.kind == "mean-zero":
            return f"mean {self.value:.4f} ± {self.se:.4f}"
        if self.kind == "upper-below":
            return f"upper < {ECE_LIMIT}: {100 * self.value:.1f}% ± {100 * self.se:.1f}"
        return f"{100 * self.value:.1f}% ± {100 * self.se:.1f}"

    def band_text(self) -> str:
        if self.kind == "mean-zero":
            return f"{self.lower_limit:.4f} to {self.upper_limit:.4f}"
        if self.kind == "two-sided":
            return f"{100 * self.lower_limit:.1f}-{100 * self.upper_limit:.1f}%"
        if self.kind == "undercover":
            return f"≤ {100 * self.upper_limit:.1f}% (must fail)"
        return f"≥ {100 * self.lower_limit:.1f}%"


@dataclass
class DesignResult:
    """Every check of a design over `n` datasets, the raw records and the time taken."""

    design: Design
    n: int
    summaries: list[Summary]
    records: dict[str, NDArray[np.float64]]
    wall_seconds: float
    worker_seconds: float
    worker_cpu_seconds: float

    @property
    def per_dataset_seconds(self) -> float:
        """Worker time per dataset (one process, one BLAS thread)."""
        return self.worker_seconds / self.n

    @property
    def per_dataset_cpu_seconds(self) -> float:
        """CPU time per dataset (all threads of the worker)."""
        return self.worker_cpu_seconds / self.n

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.summaries)

    def hits(self, quantity: str) -> NDArray[np.bool_]:
        """Whether each dataset's interval of `quantity` contains the truth (two-sided read)."""
        return _hits(self.records[quantity], self.design.truths()[quantity], "two-sided")

    def failures(self) -> str:
        return "\n".join(
            f"{s.quantity} ({s.kind}): {s.statistic_text()}, band {s.band_text()}"
            for s in self.summaries
            if not s.passed
        )


def _hits(records: NDArray[np.float64], truth: float, kind: CheckKind) -> NDArray[np.bool_]:
    lower, upper, shape = records[:, 1], records[:, 2], records[:, 3]
    has_interval = shape <= _UPPER
    with np.errstate(invalid="ignore"):
        if kind == "lower":
            inside = lower <= truth
        elif kind == "upper":
            inside = truth <= upper
        else:
            inside = (lower <= truth) & (truth <= upper)
    return np.asarray(has_interval & inside)


def _summarize(
    design: Design,
    check: Check,
    records: NDArray[np.float64],
    methods: Counter[str],
) -> Summary:
    truth = design.truths()[check.quantity]
    n = records.shape[0]
    estimate, lower, upper, shape = records.T
    defined = shape <= _POINT
    two = shape == _TWO
    ok_estimates = estimate[defined]
    mean_estimate = float(ok_estimates.mean()) if ok_estimates.size else math.nan
    mean_estimate_se = (
        float(ok_estimates.std(ddof=1) / math.sqrt(ok_estimates.size))
        if ok_estimates.size > 1
        else math.nan
    )
    with np.errstate(invalid="ignore"):
        below = (shape <= _UPPER) & (upper < ECE_LIMIT)
        lower_above = float(np.mean((shape <= _UPPER) & (lower > estimate)))
        widths = (upper - lower)[two]
    if check.kind == "mean-zero":
        value, se = mean_estimate, mean_estimate_se
        low, high = truth - 2 * se, truth + 2 * se
        hits = int(defined.sum())
        passed = bool(low <= value <= high) and hits == n
    else:
        hit = below if check.kind == "upper-below" else _hits(records, truth, check.kind)
        hits = int(hit.sum())
        value = hits / n
        se = math.sqrt(value * (1.0 - value) / n)
        if check.kind == "two-sided":
            low, high = NOMINAL - (2 * se + BAND_SLACK), NOMINAL + (2 * se + BAND_SLACK)
        elif check.kind == "undercover":
            low, high = 0.0, UNDERCOVER
        elif check.kind == "upper-below":
            low, high = ECE_SHARE_BELOW, 1.0
        else:
            low, high = NOMINAL - 2 * se, 1.0
        passed = low <= value <= high
    return Summary(
        design=design.label,
        quantity=check.quantity,
        kind=check.kind,
        truth=truth,
        methods=", ".join(sorted(methods)),
        n=n,
        hits=hits,
        value=value,
        se=se,
        lower_limit=low,
        upper_limit=high,
        passed=passed,
        mean_width=float(widths.mean()) if widths.size else math.nan,
        zero_width=float(np.mean(two & (upper == lower))),
        undefined=float(np.mean(shape >= _POINT)),
        one_sided=float(np.mean((shape == _LOWER) | (shape == _UPPER))),
        mean_estimate=mean_estimate,
        mean_estimate_se=mean_estimate_se,
        upper_below_limit=float(below.mean()),
        lower_above_estimate=lower_above,
    )


def _chunks(start: int, datasets: int, size: int) -> Iterator[list[int]]:
    for first in range(start, start + datasets, size):
        yield list(range(first, min(first + size, start + datasets)))


def run_design(
    design: Design,
    datasets: int,
    *,
    workers: int = 2,
    pool: Pool | None = None,
    start: int = 0,
) -> DesignResult:
    """Evaluate datasets start..start+datasets-1 of `design` and summarize every check.

    With `workers` 1 and no `pool` the datasets run in this process; otherwise on `pool`, or
    on a pool of `workers` spawned processes made for the call.
    """
    if datasets < 1:
        raise ValueError(f"datasets must be at least 1; got {datasets}")
    started = time.perf_counter()
    size = max(1, min(25, datasets // (8 * max(workers, 1))))
    tasks = [(design, ks) for ks in _chunks(start, datasets, size)]
    own_pool = pool is None and workers > 1
    if own_pool:
        pool = make_pool(workers)
    try:
        if pool is None:
            chunks = [_evaluate_chunk_star(task) for task in tasks]
        else:
            chunks = list(pool.imap_unordered(_evaluate_chunk_star, tasks))
    finally:
        if own_pool and pool is not None:
            pool.close()
            pool.join()
    chunks.sort(key=lambda c: int(c.ks[0]))
    quantities = list(chunks[0].records)
    records = {q: np.concatenate([c.records[q] for c in chunks]) for q in quantities}
    methods: dict[str, Counter[str]] = {q: Counter() for q in quantities}
    for chunk in chunks:
        for q, counter in chunk.methods.items():
            methods[q].update(counter)
    summaries = [
        _summarize(design, check, records[check.quantity], methods[check.quantity])
        for check in design.checks
    ]
    return DesignResult(
        design=design,
        n=datasets,
        summaries=summaries,
        records=records,
        wall_seconds=time.perf_counter() - started,
        worker_seconds=sum(c.seconds for c in chunks),
        worker_cpu_seconds=sum(c.cpu_seconds for c in chunks),
    )


def markdown_table(results: Sequence[DesignResult]) -> str:
    """Return the coverage table: one row per check."""
    lines = [
        "| design | quantity | truth | method | check | coverage ± SE | band | pass "
        "| mean width | zero width | one-sided |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for s in result.summaries:
            width = "—" if math.isnan(s.mean_width) else f"{s.mean_width:.3f}"
            lines.append(
                f"| {s.design} | {s.quantity} | {s.truth:.4f} | {s.methods} | {s.kind} "
                f"| {s.statistic_text()} | {s.band_text()} | {'pass' if s.passed else 'FAIL'} "
                f"| {width} | {100 * s.zero_width:.1f}% | {100 * s.one_sided:.1f}% |"
            )
    return "\n".join(lines)


def diagnostics(results: Sequence[DesignResult]) -> str:
    """Return one line per design: datasets, time, and the ECE diagnostics where they apply."""
    lines = []
    for r in results:
        line = (
            f"- {r.design.label}: {r.n} datasets, {r.wall_seconds:.0f} s wall, "
            f"{1000 * r.per_dataset_seconds:.0f} ms per dataset per worker "
            f"({1000 * r.per_dataset_cpu_seconds:.0f} ms CPU)"
        )
        for s in r.summaries:
            if s.quantity == "ece" and s.kind in ("mean-zero", "upper"):
                line += (
                    f"; ECE mean estimate {s.mean_estimate:.4f} ± {s.mean_estimate_se:.4f} "
                    f"(truth {s.truth:.4f}), upper bound < {ECE_LIMIT} in "
                    f"{100 * s.upper_below_limit:.1f}%, lower bound above the estimate in "
                    f"{100 * s.lower_above_estimate:.1f}%"
                )
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.validators.simulation",
        description="Coverage of Assay's intervals by simulation: prints a markdown table.",
    )
    parser.add_argument("--datasets", type=int, default=4000, help="datasets per design")
    parser.add_argument(
        "--design",
        action="append",
        choices=sorted(DESIGNS),
        help="a design to run (repeatable; default: all)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--naive-datasets",
        type=int,
        default=500,
        help="datasets for clustered_naive (images resampled as if independent)",
    )
    parser.add_argument(
        "--truths", action="store_true", help="recompute the truths by a 10^7-sample Monte Carlo"
    )
    args = parser.parse_args(argv)
    if args.truths:
        for name, values in monte_carlo_truths().items():
            design = DESIGNS[name]
            for quantity, value in values.items():
                stated = design.truths().get(quantity)
                shown = "" if stated is None else f" (stated {stated:.6f})"
                print(f"{name}: {quantity} = {value:.6f}{shown}")
        return 0
    names = args.design or list(DESIGNS)
    pool = make_pool(args.workers) if args.workers > 1 else None
    results = []
    try:
        for name in names:
            n = args.naive_datasets if name == "clustered_naive" else args.datasets
            result = run_design(DESIGNS[name], n, workers=args.workers, pool=pool)
            print(
                f"{name}: {result.wall_seconds:.0f} s, "
                f"{1000 * result.per_dataset_seconds:.0f} ms/dataset "
                f"({1000 * result.per_dataset_cpu_seconds:.0f} ms CPU)",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    print(markdown_table(results))
    print()
    print(diagnostics(results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
