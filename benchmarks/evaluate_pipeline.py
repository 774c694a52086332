"""Benchmark 9: `assay evaluate` of the good reference model on 2,000 phantoms, end to end.

The command runs as a user runs it, in its own process (`assay evaluate --model good.onnx
--manifest ... --dataset DIR --policy policies/example-binary.yaml --out ... --cache-dir ...`),
twice: cold (an empty decode cache: every image decoded) and warm (the cache verified, nothing
decoded). Each run writes `stages.json`: wall time and peak resident memory at the end of each
stage (intake, decoding, inference, benchmark, statistics); the whole command's wall time and
its peak memory (the largest process: the command itself, a decoding worker or the sandboxed
model) are measured from here.

Reference, in this process: what a hand-written script does for the same verdict without Assay's
pipeline: read and preprocess every image in one loop (`load_case_tensor`), score them with an
onnxruntime session (same threads, same batch), and `evaluate_predictions` under the same
policy; no intake, no sandbox, no decode cache, no speed protocol.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    REPO_ROOT,
    BenchmarkError,
    benchmark_environment,
    progress,
    ratio,
)

NAME = "evaluate"
POLICY = REPO_ROOT / "policies" / "example-binary.yaml"
STAGE_NAMES = ("intake", "decoding", "inference", "benchmark", "statistics")


def _command_run(
    model: Path, manifest: Path, dataset: Path, out: Path, cache: Path, home: Path
) -> dict[str, Any]:
    """Runs `assay evaluate` in its own process; gives its wall time, stages and verdict."""
    arguments = [
        "--model",
        str(model),
        "--manifest",
        str(manifest),
        "--dataset",
        str(dataset),
        "--policy",
        str(POLICY),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--json",
    ]
    code = "import sys; sys.argv[0] = 'assay'; from registry.cli import main; main()"
    env = {**benchmark_environment(), "ASSAY_HOME": str(home)}
    started = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, "-c", code, "evaluate", *arguments],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if finished.returncode not in (0, 1) or not (out / "stages.json").exists():
        raise BenchmarkError(
            f"assay evaluate exited with {finished.returncode}: {finished.stderr[-600:]}"
        )
    stages = json.loads((out / "stages.json").read_text())
    peaks = [
        max(stage["peak_rss_bytes"], stage["children_peak_rss_bytes"]) for stage in stages["stages"]
    ]
    result = json.loads((out / "result.json").read_text())
    speed = result.get("speed") or {}
    return {
        "wall_s": wall,
        "exit_code": finished.returncode,
        "decoded": stages["decoded"],
        "largest_process_peak_bytes": max(peaks),
        "stages": stages["stages"],
        "auroc": result["overall"]["auroc"]["estimate"],
        "passed": (result.get("verdict") or {}).get("passed"),
        "model_peak_resident_bytes": speed.get("peak_memory_bytes"),
        "batches": [
            {
                "batch_size": b["batch_size"],
                "latency_p50_ms": b["latency_p50_ms"],
                "latency_p95_ms": b["latency_p95_ms"],
                "throughput_per_s": b["throughput_per_s"],
                "end_to_end_ms_per_case": b["end_to_end_ms_per_case"],
            }
            for b in speed.get("batches", [])
        ],
    }


def _hand_rolled(model: Path, manifest_path: Path, dataset_root: Path) -> dict[str, Any]:
    """Times the same verdict by hand in this process: loop decode, raw session, statistics."""
    import io

    import numpy as np

    from validators.data.datasets import load_dataset
    from validators.data.predictions import read_predictions
    from validators.data.preprocess import load_case_tensor
    from validators.evaluation import evaluate_predictions
    from validators.manifest import parse_manifest
    from validators.policy import load_policy
    from validators.runtime.pipeline import effective_policy, write_predictions
    from validators.runtime.runner_child import OnnxModel

    manifest = parse_manifest(manifest_path.read_bytes())
    policy = effective_policy(load_policy(POLICY), manifest, scale="logit")
    started = time.perf_counter()
    dataset = load_dataset(dataset_root)
    tensors = np.stack([load_case_tensor(dataset, c, manifest.input) for c in dataset.cases])
    decoded = time.perf_counter()
    session = OnnxModel(
        model.read_bytes(),
        {"device": "cpu", "intra_op_threads": len(os.sched_getaffinity(0)), "inter_op_threads": 1},
    )
    scores = np.concatenate(
        [
            np.asarray(
                session.infer(np.ascontiguousarray(tensors[s : s + 32])), np.float32
            ).reshape(-1, 1)
            for s in range(0, len(tensors), 32)
        ]
    )
    inferred = time.perf_counter()
    text = write_predictions(dataset, manifest, scores.astype(np.float64))
    evaluate_predictions(read_predictions(io.StringIO(text)), policy=policy)
    ended = time.perf_counter()
    return {
        "wall_s": ended - started,
        "decoding_s": decoded - started,
        "inference_s": inferred - decoded,
        "statistics_s": ended - inferred,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Gives back the run with the median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]


def run(*, workdir: Path, cases: int, repeats: int) -> dict[str, Any]:
    """Writes the phantoms; runs `assay evaluate` cold and warm and the reference, alternating.

    Each repeat starts from an empty decode cache (cold), runs again on it (warm), then runs the
    hand-written reference; the run with the median wall time of each kind is reported whole
    (its stages), and every run's wall time is kept.
    """
    from validators.data.phantoms import write_phantom_dataset
    from validators.runtime.reference_models import reference_models

    references = reference_models(0, progress=progress)
    model = references.artifact("good", "onnx")
    manifest = references.manifest("good", "onnx")
    dataset = workdir / "evaluate-phantoms"
    progress(f"writing {cases} DICOM phantoms")
    write_phantom_dataset(dataset, format="dicom", cases=cases, seed=20_000)
    home = workdir / "evaluate-home"
    runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": [], "reference": []}
    for attempt in range(repeats):
        cache = workdir / f"evaluate-cache-{attempt}"
        for kind in ("cold", "warm"):
            out = workdir / f"evaluate-{kind}-{attempt}"
            measured = _command_run(model, manifest, dataset, out, cache, home)
            runs[kind].append(measured)
            stages = ", ".join(f"{s['stage']} {s['seconds']:.2f} s" for s in measured["stages"])
            progress(f"{kind} {attempt + 1}/{repeats}: {measured['wall_s']:.1f} s ({stages})")
        runs["reference"].append(_hand_rolled(model, manifest, dataset))
        progress(f"hand-rolled reference: {runs['reference'][-1]['wall_s']:.1f} s")
    cold, warm, reference = (_median_run(runs[kind]) for kind in ("cold", "warm", "reference"))
    benchmark_s = next(s["seconds"] for s in cold["stages"] if s["stage"] == "benchmark")
    return {
        "model": "good reference model (ONNX, seed 0)",
        "cases": cases,
        "policy": "policies/example-binary.yaml",
        "threads": len(os.sched_getaffinity(0)),
        "repeats": repeats,
        "cold": cold,
        "warm": warm,
        "reference": reference,
        "wall_s_runs": {kind: [round(r["wall_s"], 2) for r in runs[kind]] for kind in runs},
        "ratios": {
            "cold_over_hand_rolled": ratio(cold["wall_s"], reference["wall_s"]),
            "cold_without_speed_protocol_over_hand_rolled": ratio(
                cold["wall_s"] - benchmark_s, reference["wall_s"]
            ),
        },
    }


# --- the page ----------------------------------------------------------------------------------


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024**2:,.0f} MiB"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _runs_text(runs: dict[str, list[float]]) -> str:
    return "; ".join(
        f"{kind} {', '.join(f'{v:.1f}' for v in values)} s" for kind, values in runs.items()
    )


def summary_rows(benchmarks: dict[str, Any]) -> list[str]:
    """Gives back the summary table's row for this benchmark (none when not measured)."""
    entry = benchmarks.get(NAME)
    if not entry:
        return []
    cold, reference = entry["cold"], entry["reference"]
    return [
        f"| `assay evaluate`, good reference model, {entry['cases']:,} DICOM phantoms, cold "
        "cache: wall time (reference: a hand-written loop decode, raw onnxruntime and "
        f"`evaluate_predictions`, no sandbox and no speed protocol) | {cold['wall_s']:.1f} s | "
        f"{reference['wall_s']:.1f} s | {_x(entry['ratios']['cold_over_hand_rolled'])} | |"
    ]


def section(entry: dict[str, Any], provenance: str) -> list[str]:
    """Gives back the `assay evaluate` section of docs/benchmarks.md."""
    cold, warm, reference = entry["cold"], entry["warm"], entry["reference"]
    lines = [
        "## `assay evaluate` end to end",
        "",
        f"{entry['model']}, {entry['cases']:,} DICOM phantoms (256 x 256, resized to the "
        f"model's input), policy `{entry['policy']}` (its speed protocol: 10 warm-up runs, then "
        "at least 50 runs and 2 s at batch sizes 1 and 16), "
        f"{entry['threads']} cores. The command runs in its own process; cold: an empty decode "
        "cache, warm: the cache found and verified; "
        f"{entry.get('repeats', 1)} alternating repeats (cold, warm, reference), the run with "
        "the median wall time of each shown. Peak memory is resident memory at the end "
        "of each stage: the command's own process (its high-water mark, VmHWM, so it only "
        "grows), and the largest child that had ended (decoding workers, intake's and the "
        "model's sandboxed processes; Linux's ru_maxrss, which counts into a child the "
        "command's own peak when the child started, so it is an upper bound).",
        "",
        "| stage | cold: seconds | cold: command's peak | cold: largest child | "
        "warm: seconds | warm: command's peak |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    warm_stages = {s["stage"]: s for s in warm["stages"]}
    for stage in cold["stages"]:
        other = warm_stages.get(stage["stage"], {})
        lines.append(
            f"| {stage['stage']} | {stage['seconds']:.2f} | {_mib(stage['peak_rss_bytes'])} | "
            f"{_mib(stage['children_peak_rss_bytes'])} | {other.get('seconds', 0):.2f} | "
            f"{_mib(other.get('peak_rss_bytes'))} |"
        )
    lines += [
        f"| **whole command** (wall, start-up and writing included) | **{cold['wall_s']:.1f}** "
        f"| | {_mib(cold['largest_process_peak_bytes'])} | **{warm['wall_s']:.1f}** | |",
        "",
        f"Cases decoded: {cold['decoded']:,} cold, {warm['decoded']:,} warm. AUROC "
        f"{cold['auroc']:.3f}; verdict {'passed' if cold['passed'] else 'failed'} (the example "
        "policy's required criteria). The model's peak resident memory in the sandbox, as the "
        f"speed block reports it: {_mib(cold['model_peak_resident_bytes'])} (the child's "
        "ru_maxrss, an upper bound for the same reason). Inference includes the sandbox's "
        "start-up and the model's load; the benchmark stage is the speed protocol plus the "
        "end-to-end decoding sample.",
        "",
        "| batch | p50 ms | p95 ms | cases/s | end to end ms/case |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {b['batch_size']} | {b['latency_p50_ms']:.2f} | {b['latency_p95_ms']:.2f} | "
            f"{b['throughput_per_s']:,.0f} | {b['end_to_end_ms_per_case']:.2f} |"
            for b in cold["batches"]
        ),
        "",
        f"Reference (hand-written, in process): {reference['wall_s']:.1f} s "
        "(the dataset checked and every image decoded in one loop "
        f"{reference['decoding_s']:.1f} s, inference {reference['inference_s']:.2f} s, "
        f"statistics {reference['statistics_s']:.1f} s; "
        "Assay's intake stage holds the same dataset check). "
        f"Every run's wall time: {_runs_text(entry.get('wall_s_runs', {}))}. "
        f"`assay evaluate` cold ÷ reference: {_x(entry['ratios']['cold_over_hand_rolled'])}; "
        "without the speed protocol, which the reference does not run: "
        f"{_x(entry['ratios']['cold_without_speed_protocol_over_hand_rolled'])}.",
        "",
        provenance,
        "",
    ]
    return lines
