"""The runner: score a vendor model on a dataset's tensors inside the sandbox, and time it.

`run_model` starts the child (`validators.runtime.runner_child`), sends it the model's bytes and
then the tensors batch by batch (a feeding thread reads the next batch from the decode cache
while the child infers this one), checks every answer (shape, dtype, finite values), and gives
back a `RunOutcome`: `succeeded` with the scores, or `failed` (the model's fault: it cannot be
loaded, raises, returns NaN/infinity or the wrong shape, crashes, hangs, runs out of memory) or
`error` (the infrastructure's: the runtime cannot start, CUDA is missing) with one reason. The
child is killed on every way out, so the caller never hangs. With a speed protocol, the same
child then runs the speed benchmark (`validators.runtime.speed`).

The child never sees a path, a case id or a label: only the model's bytes and tensors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from validators.manifest import ModelManifest
from validators.results.speed import (
    IsolationMeasures,
    RuntimeInfo,
    SpeedProtocolUsed,
    SpeedResult,
)
from validators.runtime.formats import ArtifactFormat, IntakeRefused, detect_format
from validators.runtime.frames import (
    FrameClosed,
    FrameError,
    FrameReader,
    FrameTimeout,
    write_frame,
)
from validators.runtime.sandbox import (
    SandboxLimits,
    SandboxTimeout,
    SandboxUnavailable,
    signal_name,
    start,
)
from validators.runtime.shared_tensors import WINDOW_BYTES, share

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "ChildDied",
    "Device",
    "RunFailure",
    "RunOutcome",
    "RunStatus",
    "RunnerSettings",
    "at_operating_point",
    "choose_device",
    "cuda_visible",
    "run_model",
    "to_probabilities",
]

RunStatus = Literal["succeeded", "failed", "error"]
Device = Literal["cpu", "cuda"]
ProgressCallback = Callable[[int, int], None]

_CHILD_MODULE = "validators.runtime.runner_child"
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class RunnerSettings:
    """How the runner runs a model: batch, threads, device, limits and timeouts."""

    batch_size: int = 32
    batches_per_request: int = 8
    """Batches the child runs per request and answers in one frame (fewer when that many rows
    would not fit one mapped window): a small model's batch takes well under a millisecond, and
    a wake-up of each process per batch would cost it a tenth of its throughput on two cores.
    The model still sees batches of `batch_size`."""
    intra_op_threads: int | None = None
    """Threads inside one operator; None: every core this process may use."""
    inter_op_threads: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    memory_limit_bytes: int = 8 * 1024**3
    """Address-space cap of the child on the CPU (an address-space cap breaks CUDA start-up)."""
    device_memory_fraction: float = 0.9
    """On CUDA: the share of the GPU's memory the model may use."""
    cpu_seconds: int = 6 * 3600
    load_timeout_s: float = 600.0
    batch_timeout_s: float = 600.0
    """Longest wait for one batch's scores (or the whole speed benchmark) before the model is
    declared hung."""
    total_timeout_s: float = 4 * 3600.0
    """Wall-clock limit of the whole child, after which the sandbox kills its process group."""
    hide: tuple[Path, ...] = ()
    """Paths the child must not see besides ASSAY_HOME (the dataset root, the database)."""
    allow_weaker_isolation: bool = False
    """Run even where a sandbox measure cannot be set up (recorded in the runtime info)."""


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: the status, the reason when not succeeded, the scores, and where it ran.

    `scores` are as the model returned them, shaped [N, labels] (a binary model's [N] becomes
    [N, 1]); `probabilities` are the scores in [0, 1] (sigmoid of logits); `positive` is the
    decision at the manifest's operating point (`thresholds`).
    """

    status: RunStatus
    reason: str | None = None
    scores: NDArray[np.float32] | None = None
    probabilities: NDArray[np.float64] | None = None
    positive: NDArray[np.bool_] | None = None
    runtime: RuntimeInfo | None = None
    speed: SpeedResult | None = None


class RunFailure(Exception):
    """A run ended early: `status` is "failed" (the model) or "error" (the infrastructure)."""

    def __init__(self, status: Literal["failed", "error"], reason: str) -> None:
        super().__init__(reason)
        self.status: Literal["failed", "error"] = status
        self.reason = reason


class ChildDied(RunFailure):
    """The child ended without answering."""


def cuda_visible() -> bool:
    """Return whether this machine shows an NVIDIA device (the driver's control node exists)."""
    return os.path.exists("/dev/nvidiactl")


def _runtime_has_cuda(model_format: ArtifactFormat) -> bool:
    if model_format == "onnx":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    import torch

    return bool(torch.cuda.is_available())


def choose_device(
    requested: Literal["auto", "cpu", "cuda"],
    *,
    gpu_visible: bool,
    runtime_has_cuda: Callable[[], bool],
) -> Device:
    """Return the device to run on: CUDA only when present and the runtime can use it.

    `requested` "cuda" without CUDA raises RunFailure("error"): the hospital asked for a GPU
    and the machine or the runtime cannot give one, which is no fault of the model.
    """
    if requested == "cpu":
        return "cpu"
    available = gpu_visible and runtime_has_cuda()
    if available:
        return "cuda"
    if requested == "cuda":
        raise RunFailure(
            "error",
            "CUDA was requested but this machine shows no NVIDIA GPU or the runtime was built "
            "without CUDA; run on a GPU host with a CUDA build, or choose device cpu.",
        )
    return "cpu"


def to_probabilities(scores: NDArray[Any], manifest: ModelManifest) -> NDArray[np.float64]:
    """Return scores as probabilities: the sigmoid of logits, probabilities unchanged."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64)
    if manifest.output.kind == "logits":
        # exp of a large negative logit overflows harmlessly to inf, giving 0.
        with np.errstate(over="ignore"):
            return np.asarray(1.0 / (1.0 + np.exp(-values)), dtype=np.float64)
    return values


def at_operating_point(scores: NDArray[Any], manifest: ModelManifest) -> NDArray[np.bool_]:
    """Return the decisions [N, labels]: score >= the label's threshold, on the output's scale.

    Compared on the scale the manifest declares (logits or probabilities), so a logit threshold
    is never rounded through the sigmoid, and in float32, the scores' own type: a model that
    returns exactly its threshold 0.7 returns float32(0.7), which is below the double 0.7.
    """
    import numpy as np

    limits = np.array([manifest.thresholds[label] for label in manifest.labels], dtype=np.float32)
    return np.asarray(np.asarray(scores, dtype=np.float32) >= limits, dtype=np.bool_)


def _threads(settings: RunnerSettings) -> int:
    if settings.intra_op_threads is not None:
        return max(1, settings.intra_op_threads)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _load_head(
    model_format: ArtifactFormat, manifest: ModelManifest, device: Device, settings: RunnerSettings
) -> dict[str, Any]:
    head: dict[str, Any] = {
        "op": "load",
        "format": model_format,
        "device": device,
        "intra_op_threads": _threads(settings),
        "inter_op_threads": max(1, settings.inter_op_threads),
        "device_memory_fraction": settings.device_memory_fraction,
        "device_memory_bytes": 0,
    }
    if device == "cuda":
        from validators.runtime.speed import gpu_description

        gpu = gpu_description()
        if not gpu or not gpu["memory"]:
            # Without the device's size there is no cap to set, and no model runs uncapped.
            raise RunFailure(
                "error",
                "CUDA was chosen but NVML (libnvidia-ml) cannot report the GPU's memory, so the "
                "model's device-memory cap cannot be set; install the NVIDIA driver's NVML "
                "library, or choose device cpu.",
            )
        head["device_memory_bytes"] = int(gpu["memory"] * settings.device_memory_fraction)
    if model_format == "safetensors":
        from validators.runtime.architectures import resolve_architecture

        architecture, args = resolve_architecture(manifest)
        head.update(
            architecture=architecture.name,
            constructor=architecture.constructor,
            architecture_args=args,
        )
    return head


class _Child:
    """The running sandboxed child, and how to say why it ended."""

    def __init__(
        self, settings: RunnerSettings, device: Device, device_memory: int, pass_fds: tuple[int]
    ) -> None:
        limits = SandboxLimits(
            wall_seconds=settings.total_timeout_s,
            cpu_seconds=settings.cpu_seconds,
            memory_bytes=settings.memory_limit_bytes,
            device_memory_bytes=device_memory if device == "cuda" else None,
        )
        try:
            self.sandboxed = start(
                _CHILD_MODULE,
                [],
                limits=limits,
                hide=settings.hide,
                allow_weaker=settings.allow_weaker_isolation,
                pass_fds=pass_fds,
                device=device,
            )
        except SandboxUnavailable as exc:
            raise RunFailure("error", str(exc)) from exc
        except (SandboxTimeout, OSError) as exc:
            raise RunFailure("error", f"the sandbox could not be started: {exc}") from exc
        self.stdin = self.sandboxed.stdin
        self.answers = FrameReader(self.sandboxed.stdout.fileno())

    def isolation(self) -> IsolationMeasures | None:
        """Return the isolation measures that applied, as the result records them."""
        measures = self.sandboxed.isolation
        if measures is None:
            return None
        return IsolationMeasures.model_validate(measures.as_dict())

    def alive(self) -> bool:
        """Return whether the child still runs."""
        try:
            self.sandboxed.wait(timeout=0)
        except subprocess.TimeoutExpired:
            return True
        return False

    def death(self, waiting: str) -> ChildDied:
        """Return why the child ended while the runner was `waiting` for something."""
        try:
            ending = self.sandboxed.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.sandboxed.kill("caller", "it stopped answering")
            ending = self.sandboxed.wait()
        tail = " ".join(self.sandboxed.stderr_text().split())
        code = ending.returncode
        if ending.killed_by == "memory":
            why = f"{ending.reason}, out of memory"
        elif ending.killed_by == "timeout":
            why = ending.reason
        elif code < 0 and -code == signal.SIGXCPU:
            why = "it used up its CPU-time limit"
        elif code < 0:
            why = f"it was killed by {signal_name(-code)}"
        else:
            why = f"it exited with status {code}"
        if "MemoryError" in tail or "out of memory" in tail.lower():
            why += ", out of memory"
        detail = f" (last output: {tail[-300:]})" if tail else ""
        return ChildDied("failed", f"the model's process ended {waiting}: {why}{detail}")

    def close(self) -> None:
        """Kill the child if it still runs and release it (idempotent)."""
        self.sandboxed.close()


@contextmanager
def _started(
    settings: RunnerSettings, device: Device, head: dict[str, Any], tensors: NDArray[np.float32]
) -> Iterator[_Child]:
    """Yield the started child, with the tensors passed to it read-only; end it on the way out."""
    try:
        shared = share(tensors)
    except OSError as exc:
        raise RunFailure(
            "error", f"the tensors could not be handed to the model's process ({exc})"
        ) from exc
    try:
        head["tensors"] = shared.describe()
        child = _Child(settings, device, int(head["device_memory_bytes"]), (shared.fd,))
    finally:
        # The child holds its own copy of the descriptor from here on.
        shared.close()
    try:
        yield child
    finally:
        child.close()


def _answer(
    child: _Child, *, deadline: float, max_payload: int, waiting: str
) -> tuple[dict[str, Any], bytes]:
    """Return the child's next frame; its refusals, death or silence raise RunFailure."""
    try:
        head, payload = child.answers.read(deadline=deadline, max_payload=max_payload)
    except FrameTimeout:
        raise RunFailure(
            "failed",
            f"the model did not answer {waiting} before its time limit; it was stopped "
            "(a hang, or far too slow for this machine)",
        ) from None
    except FrameError as exc:
        if isinstance(exc, FrameClosed) or not child.alive():
            raise child.death(waiting) from None
        raise RunFailure("failed", f"the model's process sent a malformed answer: {exc}") from None
    if head.get("ok") is not True:
        status = head.get("status")
        reason = str(head.get("reason", "no reason given"))[:2000]
        raise RunFailure("error" if status == "error" else "failed", reason)
    return head, payload


def _check_scores(
    head: dict[str, Any], payload: bytes, rows: int, manifest: ModelManifest, start: int
) -> NDArray[np.float32]:
    """Return one batch's scores as [rows, labels] after checking shape, dtype and values."""
    import numpy as np

    shape = head.get("shape")
    answered = head.get("rows", rows)
    declared = [answered if dim == "N" else dim for dim in manifest.output.shape]
    if head.get("dtype") != "float32":
        raise RunFailure(
            "failed",
            f"the model returned {head.get('dtype')} scores; the manifest declares float32 "
            f"{manifest.output.shape}",
        )
    if answered != rows or shape != declared or len(payload) != 4 * rows * len(manifest.labels):
        raise RunFailure(
            "failed",
            f"the model returned scores of shape {shape} for a batch of {answered}; the manifest "
            f"declares {manifest.output.shape}, so {declared} was expected",
        )
    scores = np.frombuffer(payload, dtype=np.float32).reshape(rows, len(manifest.labels))
    finite = np.isfinite(scores)
    if not finite.all():
        bad_row = int(np.argwhere(~finite)[0][0])
        kind = "NaN" if np.isnan(scores).any() else "infinite"
        raise RunFailure(
            "failed",
            f"the model returned {kind} scores ({int((~finite).sum())} values, first in the "
            f"batch starting at case {start + 1}, row {bad_row + 1}); scores must be finite",
        )
    if manifest.output.kind == "probabilities" and ((scores < 0) | (scores > 1)).any():
        raise RunFailure(
            "failed",
            "the model returned scores outside [0, 1] though the manifest declares "
            "probabilities; declare logits or return probabilities",
        )
    return scores


def _request_rows(tensors: NDArray[np.float32], settings: RunnerSettings) -> int:
    """Return the rows of one request: whole batches, as many as fit one mapped window."""
    row_bytes = max(1, int(tensors[0].nbytes))
    fit = max(1, WINDOW_BYTES // (row_bytes * settings.batch_size))
    return settings.batch_size * max(1, min(settings.batches_per_request, fit))


def _feed(
    child: _Child,
    total: int,
    request: dict[str, Any],
    request_rows: int,
    errors: list[BaseException],
) -> None:
    """Ask for every request's rows; on its own thread, so the requests queue up ahead."""
    try:
        for start in range(0, total, request_rows):
            stop = min(total, start + request_rows)
            write_frame(child.stdin, {**request, "start": start, "stop": stop})
    except (BrokenPipeError, OSError, ValueError) as exc:
        # The child died or was killed: the reading side reports why.
        errors.append(exc)


def _score(
    child: _Child,
    tensors: NDArray[np.float32],
    manifest: ModelManifest,
    settings: RunnerSettings,
    run_deadline: float,
    progress: ProgressCallback | None,
) -> NDArray[np.float32]:
    import numpy as np

    total = len(tensors)
    request_rows = _request_rows(tensors, settings)
    # The child checks each batch's shape against the declaration, so a wrong one is reported
    # on the batch the model saw rather than on the request's rows.
    request = {"op": "infer", "batch": settings.batch_size, "declared": manifest.output.shape}
    out = np.empty((total, len(manifest.labels)), dtype=np.float32)
    errors: list[BaseException] = []
    feeder = threading.Thread(
        target=_feed,
        args=(child, total, request, request_rows, errors),
        daemon=True,
    )
    feeder.start()
    try:
        for start in range(0, total, request_rows):
            rows = min(request_rows, total - start)
            batches = -(-rows // settings.batch_size)
            deadline = min(run_deadline, time.monotonic() + settings.batch_timeout_s * batches)
            head, payload = _answer(
                child,
                deadline=deadline,
                # Room for a wrong shape, so it is reported as one, yet bounded.
                max_payload=max(64 * rows * len(manifest.labels), 1 << 20),
                waiting=f"while scoring cases {start + 1} to {start + rows}",
            )
            out[start : start + rows] = _check_scores(head, payload, rows, manifest, start)
            if progress is not None:
                progress(start + rows, total)
    except BaseException:
        # Kill the child now: the feeder's next write then fails and the thread ends.
        child.close()
        raise
    finally:
        feeder.join(timeout=30)
    return out


def _speed(
    child: _Child,
    tensors: NDArray[np.float32],
    protocol: SpeedProtocolUsed,
    settings: RunnerSettings,
    run_deadline: float,
    decode: tuple[float | None, int],
) -> SpeedResult:
    from validators.runtime.speed import summarize

    rows = min(len(tensors), max(protocol.batch_sizes))
    head = {"op": "speed", "start": 0, "stop": rows, **protocol.model_dump(mode="json")}
    write_frame(child.stdin, head)
    answer, _ = _answer(
        child,
        deadline=min(run_deadline, time.monotonic() + settings.batch_timeout_s),
        max_payload=0,
        waiting="during the speed benchmark",
    )
    try:
        return summarize(
            answer["speed"], protocol, decode_ms_per_case=decode[0], decode_cases=decode[1]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFailure("error", f"the speed benchmark's answer is malformed: {exc}") from exc


def run_model(
    model_path: Path,
    manifest: ModelManifest,
    tensors: NDArray[np.float32],
    *,
    settings: RunnerSettings | None = None,
    speed: SpeedProtocolUsed | None = None,
    decode: tuple[float | None, int] = (None, 0),
    progress: ProgressCallback | None = None,
) -> RunOutcome:
    """Return the outcome of scoring `tensors` ([N, C, H, W] float32) with the model in a sandbox.

    `speed` runs the speed protocol after scoring (on the first rows of `tensors`); `decode` is
    (milliseconds per case, cases timed) from `validators.runtime.speed.measure_decode`, added
    into the end-to-end figure. Never raises for the model's faults: they are the outcome.
    """
    settings = settings or RunnerSettings()
    expected = (manifest.input.channels, manifest.input.height, manifest.input.width)
    if tuple(tensors.shape[1:]) != expected or len(tensors) == 0:
        return RunOutcome(
            "error",
            f"the tensors are shaped {list(tensors.shape)}; the manifest's input needs "
            f"[N>0, {', '.join(map(str, expected))}]: open the decode cache for this manifest",
        )
    try:
        model_format = detect_format(model_path)
        device = choose_device(
            settings.device,
            gpu_visible=cuda_visible(),
            runtime_has_cuda=lambda: _runtime_has_cuda(model_format),
        )
        head = _load_head(model_format, manifest, device, settings)
        model_bytes = model_path.read_bytes()
    except RunFailure as exc:
        return RunOutcome(exc.status, exc.reason)
    except IntakeRefused as exc:  # intake should have refused it; the run refuses it again
        return RunOutcome("failed", f"the model cannot be run: {exc.detail}")
    except OSError as exc:
        return RunOutcome(
            "error", f"the model file {model_path} could not be read ({exc}); check the store"
        )
    run_deadline = time.monotonic() + settings.total_timeout_s
    runtime: RuntimeInfo | None = None
    try:
        with _started(settings, device, head, tensors) as child:
            try:
                runtime = _load(child, head, model_bytes, settings, run_deadline)
                del model_bytes
                scores = _score(child, tensors, manifest, settings, run_deadline, progress)
                measured = (
                    _speed(child, tensors, speed, settings, run_deadline, decode) if speed else None
                )
                write_frame(child.stdin, {"op": "end"})
            except (BrokenPipeError, ConnectionResetError):
                raise child.death("while receiving its input") from None
    except RunFailure as exc:
        return RunOutcome(exc.status, exc.reason, runtime=runtime)
    return RunOutcome(
        "succeeded",
        scores=scores,
        probabilities=to_probabilities(scores, manifest),
        positive=at_operating_point(scores, manifest),
        runtime=runtime,
        speed=measured,
    )


def _load(
    child: _Child,
    head: dict[str, Any],
    model_bytes: bytes,
    settings: RunnerSettings,
    run_deadline: float,
) -> RuntimeInfo:
    """Return the runtime the child loaded the model on; its failures raise RunFailure."""
    deadline = min(run_deadline, time.monotonic() + settings.load_timeout_s)
    try:
        write_frame(child.stdin, head, model_bytes)
        _answer(child, deadline=deadline, max_payload=0, waiting="while starting")
    except (BrokenPipeError, ConnectionResetError):
        death = child.death("while starting")
        raise RunFailure("error", death.reason.replace("model's", "runner's")) from None
    except ChildDied as exc:
        # Before the runtime was imported nothing of the model has run: the machine is at fault.
        raise RunFailure("error", exc.reason.replace("model's", "runner's")) from None
    ready, _ = _answer(child, deadline=deadline, max_payload=0, waiting="while loading the model")
    try:
        return RuntimeInfo.model_validate({**ready["runtime"], "isolation": child.isolation()})
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFailure(
            "error", f"the runner's child described its runtime wrongly: {exc}"
        ) from exc
