"""Benchmark 3: start-up time of `assay --help`, against `mlflow --help`.

Each command is run as a fresh process, alternating between the two so that a change in the
machine's load affects both alike, after one untimed run each (to fill the page cache). The bare
interpreter (`python -c pass`) is timed the same way as the floor neither can go below.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from benchmarks._common import REPO_ROOT, VENV_BIN, BenchmarkError, median, progress, ratio

NAME = "startup"
TARGET_S = 0.5


def _time_once(command: list[str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"},
        check=False,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise BenchmarkError(
            f"{' '.join(command)} exited with {completed.returncode}: "
            f"{completed.stderr.decode(errors='replace')[-1000:]}"
        )
    return elapsed


def run(*, runs: int) -> dict[str, Any]:
    """Times each command `runs` times; gives medians, all timings and the ratio."""
    commands = {
        "assay": [str(VENV_BIN / "assay"), "--help"],
        "mlflow": [str(VENV_BIN / "mlflow"), "--help"],
        "python": [str(VENV_BIN / "python"), "-c", "pass"],
    }
    for command in commands.values():
        _time_once(command)
    timings: dict[str, list[float]] = {name: [] for name in commands}
    for index in range(runs):
        for name, command in commands.items():
            timings[name].append(_time_once(command))
        progress(
            f"start-up run {index + 1}/{runs}: assay {timings['assay'][-1]:.3f} s, "
            f"mlflow {timings['mlflow'][-1]:.3f} s"
        )
    medians = {name: median(values) for name, values in timings.items()}
    return {
        "runs": runs,
        "commands": {
            name: " ".join([os.path.relpath(command[0], REPO_ROOT), *command[1:]])
            for name, command in commands.items()
        },
        "target_s": TARGET_S,
        "target_met": medians["assay"] < TARGET_S,
        "median_s": medians,
        "timings_s": {name: [round(v, 4) for v in values] for name, values in timings.items()},
        "ratios": {"assay_over_mlflow": ratio(medians["assay"], medians["mlflow"])},
    }
