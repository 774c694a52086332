"""Benchmark 8: inference through the sandboxed runner against the same runtime outside it.

The example CNN (`validators.runtime.example`, ONNX, [N, 1, 64, 64] -> [N, 1] logits) scores the
same float32 tensors at the same batch size with the same onnxruntime session options and the
same threads, two ways:

- raw: an `OnnxModel` (the runner child's own session wrapper) built in this process, scoring
  the tensors batch by batch, no pipes, no child;
- sandboxed: `run_model`, the child started through `sandbox.start` (namespaces, `nobody`,
  rlimits), the tensors passed as one read-only descriptor and mapped a batch at a time while
  the previous batch is inferred, requests and scores framed over its pipes, every answer's
  shape, dtype and values checked by the parent.

Throughput is steady state: cases per second from the end of the first batch to the end of the
last, on both sides, so the sandbox's start-up, the runtime's import and the model's load (a
fixed cost per run, reported apart) do not count against the runner. The runs alternate (raw,
sandboxed) and repeat; the medians are compared, and best against best. Target: sandboxed ÷ raw
throughput at least 0.9.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import BenchmarkError, median, progress, ratio

NAME = "runner-overhead"
TARGET = 0.9


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def _raw(model_bytes: bytes, tensors: np.ndarray, batch_size: int, threads: int) -> float:
    """Return the raw steady-state throughput (cases/s) of the same session outside the sandbox."""
    from validators.runtime.runner_child import OnnxModel

    model = OnnxModel(
        model_bytes,
        {"device": "cpu", "intra_op_threads": threads, "inter_op_threads": 1},
    )
    first_done = 0.0
    for index, start in enumerate(range(0, len(tensors), batch_size)):
        batch = np.ascontiguousarray(tensors[start : start + batch_size], dtype=np.float32)
        scores = model.infer(batch)
        if not np.isfinite(scores).all():
            raise BenchmarkError("the raw run returned non-finite scores")
        if index == 0:
            first_done = time.perf_counter()
    elapsed = time.perf_counter() - first_done
    return (len(tensors) - min(batch_size, len(tensors))) / elapsed


def _sandboxed(
    model_path: Path, manifest: Any, tensors: np.ndarray, batch_size: int, threads: int
) -> tuple[float, float, dict[str, Any]]:
    """Return (steady-state cases/s, start-up and load seconds, isolation) through the runner."""
    from validators.runtime.runner import RunnerSettings, run_model

    marks: list[float] = []
    started = time.perf_counter()
    outcome = run_model(
        model_path,
        manifest,
        tensors,
        settings=RunnerSettings(batch_size=batch_size, intra_op_threads=threads, device="cpu"),
        progress=lambda done, total: marks.append(time.perf_counter()),
    )
    if outcome.status != "succeeded" or outcome.runtime is None:
        raise BenchmarkError(f"the sandboxed run did not succeed: {outcome.reason}")
    isolation = outcome.runtime.isolation
    steady = (len(tensors) - min(batch_size, len(tensors))) / (marks[-1] - marks[0])
    return steady, marks[0] - started, isolation.model_dump() if isolation else {}


def run(*, workdir: Path, cases: int, batch_size: int, repeats: int) -> dict[str, Any]:
    """Times raw and sandboxed inference of the example CNN, alternating; gives the medians."""
    from validators.manifest import parse_manifest
    from validators.runtime.example import EXAMPLE_IMAGE_SIZE, write_example_model

    model_path, manifest_path = write_example_model(workdir / "runner-overhead")
    manifest = parse_manifest(manifest_path.read_bytes())
    model_bytes = model_path.read_bytes()
    size = EXAMPLE_IMAGE_SIZE
    tensors = np.random.default_rng(0).random((cases, 1, size, size), dtype=np.float32)
    threads = _threads()
    raw: list[float] = []
    sandboxed: list[float] = []
    startup: list[float] = []
    isolation: dict[str, Any] = {}
    for attempt in range(repeats):
        raw.append(_raw(model_bytes, tensors, batch_size, threads))
        steady, start_s, isolation = _sandboxed(model_path, manifest, tensors, batch_size, threads)
        sandboxed.append(steady)
        startup.append(start_s)
        progress(
            f"run {attempt + 1}/{repeats}: raw {raw[-1]:.0f} cases/s, sandboxed "
            f"{sandboxed[-1]:.0f} cases/s (start-up and load {start_s:.2f} s)"
        )
    return {
        "model": "example CNN (ONNX, 1x64x64 -> 1 logit)",
        "cases": cases,
        "batch_size": batch_size,
        "threads": threads,
        "repeats": repeats,
        "raw_cases_per_s": {"median": median(raw), "best": max(raw), "runs": raw},
        "sandboxed_cases_per_s": {
            "median": median(sandboxed),
            "best": max(sandboxed),
            "runs": sandboxed,
        },
        "sandbox_startup_and_load_s_median": median(startup),
        "ratios": {
            "sandboxed_over_raw": ratio(median(sandboxed), median(raw)),
            "sandboxed_over_raw_best": ratio(max(sandboxed), max(raw)),
            # Each pair ran back to back, so its ratio sees the same machine load.
            "sandboxed_over_raw_paired_median": median(
                [boxed / plain for boxed, plain in zip(sandboxed, raw, strict=True)]
            ),
        },
        "isolation": isolation,
        "target": TARGET,
    }


# --- the page ----------------------------------------------------------------------------------


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def summary_rows(benchmarks: dict[str, Any]) -> list[str]:
    """Gives back the summary table's row for this benchmark (none when not measured)."""
    entry = benchmarks.get(NAME)
    if not entry:
        return []
    share = entry["ratios"]["sandboxed_over_raw"]
    met = share is not None and share >= entry["target"]
    return [
        f"| inference through the sandboxed runner, example CNN, batch {entry['batch_size']}, "
        f"{entry['threads']} threads: cases/s (reference: the same onnxruntime session in "
        f"process) | {entry['sandboxed_cases_per_s']['median']:,.0f} | "
        f"{entry['raw_cases_per_s']['median']:,.0f} | {_x(share)} | "
        f">= {entry['target']} {'met' if met else 'not met'} |"
    ]


def section(entry: dict[str, Any], provenance: str) -> list[str]:
    """Gives back the runner-overhead section of docs/benchmarks.md."""
    raw, boxed, ratios = entry["raw_cases_per_s"], entry["sandboxed_cases_per_s"], entry["ratios"]
    isolation = entry.get("isolation") or {}
    measures = ", ".join(isolation.get("namespaces", [])) or "none"
    return [
        "## Sandboxed runner: inference throughput against the raw runtime",
        "",
        f"{entry['model']}, {entry['cases']} random float32 tensors, batch "
        f"{entry['batch_size']}, {entry['threads']} intra-op threads, one inter-op thread, the "
        "same onnxruntime session options on both sides. Raw: the runner child's session "
        "wrapper in this process. Sandboxed: `run_model` (a fresh child in new "
        f"{measures} namespaces as {isolation.get('user', 'unknown')}, rlimits; the tensors "
        "passed as one read-only descriptor, mapped in windows while the previous rows are "
        "inferred; requests of eight batches and their scores framed over pipes, every answer "
        "checked). "
        "Steady-state throughput from the end of the first batch to the end of the last; "
        f"{entry['repeats']} alternating runs.",
        "",
        "| run | cases/s (median) | cases/s (best) |",
        "| --- | --- | --- |",
        f"| raw onnxruntime (reference) | {raw['median']:,.0f} | {raw['best']:,.0f} |",
        f"| sandboxed runner | {boxed['median']:,.0f} | {boxed['best']:,.0f} |",
        "",
        f"Sandboxed ÷ raw: {_x(ratios['sandboxed_over_raw'])} median against median, "
        f"{_x(ratios.get('sandboxed_over_raw_paired_median'))} the median of the "
        "back-to-back pairs' ratios (each pair under the same load), "
        f"{_x(ratios['sandboxed_over_raw_best'])} best against best (target >= "
        f"{entry['target']}). The sandbox's start-up, the runtime's import and the model's load "
        f"cost {entry['sandbox_startup_and_load_s_median']:.2f} s per run (median), once per "
        "evaluation, outside the throughput.",
        "",
        provenance,
        "",
    ]
