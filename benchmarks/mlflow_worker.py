"""The MLflow side of the submission benchmarks, in a process of its own.

Run as `python -m benchmarks.mlflow_worker ROOT`: it sets up a local MLflow (SQLite tracking
and registry database, artifacts on local disk, both under ROOT), registers one tiny file to warm
up (schema creation, lazy imports), prints `{"status": "ready", "pid": ...}` and then answers one
JSON line per command read from stdin:

    {"op": "register", "path": "...", "name": "..."}  ->  {"wall_s": ..., "version": "..."}
    {"op": "quit"}

A registration is what a user of MLflow does with a model file: `mlflow.log_artifact` in a new
run, then `mlflow.register_model` of the logged artifact's URI. Running in its own process lets
the caller watch its memory alone.

`MlflowWorker` is the caller's side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from benchmarks._common import REPO_ROOT, BenchmarkError, benchmark_environment

EXPERIMENT = "assay-benchmark"


def _serve(root: Path) -> int:
    # MLflow logs to stdout/stderr; keep a private copy of stdout for the protocol only.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment_id = mlflow.create_experiment(
        EXPERIMENT, artifact_location=(root / "artifacts").as_uri()
    )

    def register(path: Path, name: str) -> str:
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.log_artifact(str(path), artifact_path="model")
            version = mlflow.register_model(mlflow.get_artifact_uri("model"), name)
        return str(version.version)

    def answer(payload: dict[str, Any]) -> None:
        answers.write(json.dumps(payload) + "\n")
        answers.flush()

    warmup = root / "warmup.bin"
    warmup.write_bytes(b"\0" * 1024)
    register(warmup, "warmup")
    answer({"status": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        started = time.perf_counter()
        version = register(Path(command["path"]), command["name"])
        answer({"wall_s": time.perf_counter() - started, "version": version})
    return 0


class MlflowWorker:
    """Starts the worker process and sends it registrations; stopped on exit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log_path = root.parent / f"{root.name}-mlflow.log"
        self.process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> MlflowWorker:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.mlflow_worker", str(self.root)],
                cwd=REPO_ROOT,
                env=benchmark_environment(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        ready = self._read()
        if ready.get("status") != "ready":
            raise BenchmarkError(f"the MLflow worker answered {ready!r} instead of ready")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self._write({"op": "quit"})
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def register(self, path: Path, name: str) -> tuple[float, dict[str, Any]]:
        """Logs and registers the file; gives (wall seconds seen from here, the worker's answer)."""
        started = time.perf_counter()
        self._write({"op": "register", "path": str(path), "name": name})
        reply = self._read()
        return time.perf_counter() - started, reply

    def _write(self, payload: dict[str, Any]) -> None:
        assert self.process is not None
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(payload) + "\n")
        stdin.flush()

    def _read(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            log = self.log_path.read_text(errors="replace").splitlines()[-30:]
            raise BenchmarkError(
                f"the MLflow worker exited with status {self.process.returncode}:\n"
                + "\n".join(log)
            )
        reply: dict[str, Any] = json.loads(line)
        return reply


if __name__ == "__main__":
    raise SystemExit(_serve(Path(sys.argv[1])))
