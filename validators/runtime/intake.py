"""Static intake of a vendor model file: recognise, check against the manifest, report.

Nothing in the artifact is executed: ONNX is parsed as a protobuf and checked with
`onnx.checker`; safetensors headers are parsed by hand and compared with a network Assay builds
itself on the meta device. Pickle, TorchScript and `.pt2` files are refused from their bytes.

`inspect_artifact` runs in-process. `inspect_in_subprocess` runs the same code in the sandbox
(`validators.runtime.sandbox`: no network, no view of ASSAY_HOME, user `nobody`, an address-space
limit and a timeout), so a hostile file that makes a parser allocate without bound, loop forever or
misbehave costs a failed child, not the service. The
report types live in `validators.runtime.reports` and are re-exported here. Run this module as
`python -m validators.runtime.intake PATH MEMORY_LIMIT CPU_SECONDS` with the manifest JSON on
stdin to get the child's one-line JSON answer.

Heavy libraries (onnx, torch, monai) are imported inside functions only: the service imports this
module at start-up.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from validators.manifest import ModelManifest
from validators.runtime import sandbox
from validators.runtime.formats import IntakeRefused, detect_format
from validators.runtime.reports import (
    IntakeCheck,
    IntakeReport,
    OnnxDetails,
    SafetensorsDetails,
    TensorSpec,
)

__all__ = [
    "DEFAULT_MEMORY_LIMIT_BYTES",
    "DEFAULT_TIMEOUT_S",
    "IntakeCheck",
    "IntakeFailed",
    "IntakeRefused",
    "IntakeReport",
    "OnnxDetails",
    "SafetensorsDetails",
    "TensorSpec",
    "inspect_artifact",
    "inspect_in_subprocess",
]

DEFAULT_MEMORY_LIMIT_BYTES = 8 * 1024**3
DEFAULT_TIMEOUT_S = 300.0


class IntakeFailed(RuntimeError):
    """Intake could not finish (crash, out of memory, timeout); the artifact was not judged."""


def inspect_artifact(path: Path, manifest: ModelManifest) -> IntakeReport:
    """Return the intake report for the file at `path`, or raise IntakeRefused."""
    artifact_format = detect_format(path)
    if artifact_format == "onnx":
        from validators.runtime.onnx_check import inspect_onnx

        report = inspect_onnx(path, manifest)
    else:
        from validators.runtime.safetensors_check import inspect_safetensors

        report = inspect_safetensors(path, manifest)
    _refuse_unstorable_text(report)
    return report


def _refuse_unstorable_text(report: IntakeReport) -> None:
    """Refuse a file whose names or metadata (copied into the report) hold NUL or surrogates.

    The report is stored with the version; PostgreSQL cannot store `\u0000` in JSON.
    """
    from validators.jsontext import json_text_problems

    problems = json_text_problems(report.model_dump(mode="json"))
    if problems:
        raise IntakeRefused(
            "invalid_artifact",
            f"The artifact's names or metadata hold text that cannot be stored ({problems[0][0]}: "
            f"{problems[0][1]}); rename them and resubmit.",
            [{"path": path, "message": message} for path, message in problems],
        )


def inspect_in_subprocess(
    path: Path,
    manifest: ModelManifest,
    *,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    hide: Sequence[Path] = (),
) -> IntakeReport:
    """Return the intake report computed in a sandboxed, resource-limited child process.

    The artifact is copied into the child's private working directory, so the child needs no
    access to the artifact store; `hide` names further paths it must not see (ASSAY_HOME always).
    Raises IntakeRefused exactly as `inspect_artifact` would, and IntakeFailed when the child
    crashes, runs out of memory or time, or answers with something that is not its protocol.
    """
    cpu_seconds = math.ceil(timeout_s) + 5
    source = Path(path)
    input_name = "artifact" + "".join(c for c in source.suffix if c.isalnum() or c == ".")
    args = [f"{sandbox.INPUT_DIR}/{input_name}", str(int(memory_limit_bytes)), str(cpu_seconds)]
    limits = sandbox.SandboxLimits(
        wall_seconds=timeout_s,
        cpu_seconds=cpu_seconds,
        memory_bytes=int(memory_limit_bytes),
        file_size_bytes=sandbox.DEFAULT_MAX_FILE_WRITE_BYTES,
    )
    try:
        child = sandbox.run_module(
            "validators.runtime.intake",
            args,
            manifest.model_dump_json().encode(),
            timeout_s=timeout_s,
            limits=limits,
            inputs={input_name: source},
            hide=hide,
        )
    except subprocess.TimeoutExpired:
        raise IntakeFailed(
            f"model intake did not finish within {timeout_s:g} s and was stopped; the file may "
            "be too large or crafted to stall the parser"
        ) from None
    except OSError as exc:
        raise IntakeFailed(
            f"the artifact could not be opened for intake ({type(exc).__name__}: {exc})"
        ) from exc
    except sandbox.SandboxUnavailable as exc:
        raise IntakeFailed(str(exc)) from exc
    return _answer_from_child(child.returncode, child.stdout, child.stderr, memory_limit_bytes)


def _answer_from_child(
    returncode: int, stdout: bytes, stderr: bytes, memory_limit_bytes: int
) -> IntakeReport:
    tail = stderr.decode("utf-8", "replace").strip()[-2000:]
    if returncode < 0:
        signal_name = sandbox.signal_name(-returncode)
        raise IntakeFailed(
            f"the model intake process was killed by {signal_name} (out of memory, CPU time "
            f"or a crash in a parser); memory limit {memory_limit_bytes} bytes. {tail}".strip()
        )
    answer: Any = sandbox.read_answer(stdout)
    if not isinstance(answer, dict) or answer.get("status") not in ("ok", "refused", "error"):
        raise IntakeFailed(
            f"the model intake process exited with status {returncode} without an answer. {tail}"
        )
    if answer["status"] == "ok":
        return IntakeReport.model_validate(answer["report"])
    if answer["status"] == "refused":
        raise IntakeRefused(answer["code"], answer["detail"], answer.get("problems", []))
    if answer.get("memory_error"):
        raise IntakeFailed(
            f"the model intake process ran out of memory under its limit of {memory_limit_bytes} "
            "bytes; the file may be too large for intake or crafted to exhaust memory"
        )
    raise IntakeFailed(f"the model intake process failed: {answer.get('error', 'unknown error')}")


def _child_main(argv: list[str]) -> int:
    """Run intake for one file in this (child) process; print one JSON line; return 0."""
    answer_stream = sandbox.answer_stream()
    answer: dict[str, Any]
    try:
        path_text, memory_text, cpu_text = argv
        sandbox.apply_limits(int(memory_text), int(cpu_text))
        manifest = ModelManifest.model_validate_json(sys.stdin.buffer.read())
        report = inspect_artifact(Path(path_text), manifest)
        answer = {"status": "ok", "report": report.model_dump(mode="json")}
    except IntakeRefused as refusal:
        answer = {
            "status": "refused",
            "code": refusal.code,
            "detail": refusal.detail,
            "problems": refusal.problems,
        }
    except MemoryError:
        answer = {"status": "error", "error": "MemoryError", "memory_error": True}
    except Exception as exc:  # report any failure as an answer, not a traceback
        answer = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    sandbox.write_answer(answer_stream, answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
