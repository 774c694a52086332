"""`python -m benchmarks`: run the benchmarks and write docs/benchmarks.md and .json."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    decode_cache,
    evaluate_pipeline,
    fairness,
    http_reads,
    large_artifact,
    runner_overhead,
    startup,
    submission_latency,
)
from benchmarks._common import REPO_ROOT, BenchmarkError, machine, now_iso, progress
from benchmarks.report import render

NAMES = (
    large_artifact.NAME,
    submission_latency.NAME,
    startup.NAME,
    fairness.NAME,
    http_reads.NAME,
    decode_cache.NAME,
    decode_cache.PHANTOMS_NAME,
    runner_overhead.NAME,
    evaluate_pipeline.NAME,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure Assay beside MLflow and fairlearn and write docs/benchmarks.md.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: a 50 MB artifact, 10 submissions, 5 start-ups, fairness on 20,000 "
        "cases with 200 replicates; written to bench-out/",
    )
    parser.add_argument(
        "--size-mb", type=int, help="size of the large artifact in MB (default 500; quick 50)"
    )
    parser.add_argument(
        "--count", type=int, help="small submissions per side (default 100; quick 10)"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where benchmarks.md and benchmarks.json go (default docs/; quick bench-out/)",
    )
    return parser


def _command(argv: list[str]) -> str:
    args = shlex.join(argv)
    if os.environ.get("MAKELEVEL"):
        return "make bench" + (f" BENCH_ARGS={shlex.quote(args)}" if args else "")
    python = os.path.relpath(sys.executable, REPO_ROOT)
    return f"{python} -m benchmarks" + (f" {args}" if args else "")


def _load(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    except (OSError, ValueError):
        return {}


def _load_average() -> float:
    """The 1-minute load average: other work on the machine skews the timings."""
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    os.environ["DO_NOT_TRACK"] = "1"
    quick = bool(args.quick)
    size_mb = args.size_mb or (50 if quick else 500)
    count = args.count or (10 if quick else 100)
    output_dir: Path = args.output_dir or (REPO_ROOT / ("bench-out" if quick else "docs"))
    selected = args.only or list(NAMES)
    command = _command(argv)

    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        workdir = Path(tmp)
        plan: dict[str, Callable[[], dict[str, Any]]] = {
            large_artifact.NAME: lambda: large_artifact.run(
                workdir=workdir, size_bytes=size_mb * 1_000_000, repeats=1 if quick else 3
            ),
            submission_latency.NAME: lambda: submission_latency.run(workdir=workdir, count=count),
            startup.NAME: lambda: startup.run(runs=5 if quick else 10),
            fairness.NAME: lambda: fairness.run(
                rows=20_000 if quick else 100_000,
                replicates=200 if quick else 1000,
                fairlearn_replicates=3 if quick else 20,
                repeats=1 if quick else 3,
            ),
            http_reads.NAME: lambda: http_reads.run(
                workdir=workdir,
                duration_s=2 if quick else 5,
                postgres_url=http_reads.postgres_url_from_environment(),
            ),
            decode_cache.NAME: lambda: decode_cache.run(
                workdir=workdir, images=100 if quick else 400, repeats=1 if quick else 7
            ),
            decode_cache.PHANTOMS_NAME: lambda: decode_cache.run_phantoms(
                workdir=workdir, images=50 if quick else 200, repeats=1 if quick else 3
            ),
            runner_overhead.NAME: lambda: runner_overhead.run(
                workdir=workdir,
                cases=1024 if quick else 16384,
                batch_size=32,
                repeats=1 if quick else 9,
            ),
            evaluate_pipeline.NAME: lambda: evaluate_pipeline.run(
                workdir=workdir, cases=200 if quick else 2000, repeats=1 if quick else 3
            ),
        }
        fresh: dict[str, Any] = {}
        failures: list[str] = []
        for name in NAMES:
            if name not in selected:
                continue
            progress(f"=== {name} ===")
            started = time.perf_counter()
            load_before = _load_average()
            try:
                result = plan[name]()
            except BenchmarkError as exc:
                progress(f"{name} could not be measured: {exc}")
                failures.append(name)
                continue
            fresh[name] = {
                "measured_at": now_iso(),
                "command": command,
                "load_average_1min": {"before": load_before, "after": _load_average()},
                **result,
            }
            progress(f"{name} done in {time.perf_counter() - started:.0f} s")

    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / "benchmarks.json", output_dir / "benchmarks.md"
    previous = _load(json_path).get("benchmarks", {})
    results = {
        "generated_at": now_iso(),
        "command": command,
        "quick": quick,
        "machine": machine(),
        "benchmarks": {
            name: fresh.get(name) or previous[name]
            for name in NAMES
            if name in fresh or name in previous
        },
    }
    page = render(results)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(page)
    progress(f"wrote {os.path.relpath(md_path)} and {os.path.relpath(json_path)}")
    if failures:
        progress(f"not measured: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
