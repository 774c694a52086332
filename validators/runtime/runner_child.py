"""The runner's child: load one model from bytes and turn tensors into scores, inside the sandbox.

Started by `validators.runtime.runner` as `python -m validators.runtime.runner_child`. It reads
frames (`validators.runtime.frames`) on stdin and answers on its real stdout:

- `load` (payload: the model file's bytes; head: format, device, threads, and for safetensors
  the allowlisted architecture and its arguments) -> `{"ok": true, "runtime": {...}}`;
- `infer` (head: `start`, `stop`, rows of the tensors the parent passed as a read-only
  descriptor, `validators.runtime.shared_tensors`) -> `{"ok": true, "shape": [...]}` and the
  float32 scores;
- `speed` (head: the protocol, and `start`/`stop` of the sample rows) -> `{"ok": true, "speed":
  {...}}`;
- `end` -> the child exits.

Any failure is answered `{"ok": false, "status": "failed" | "error", "reason": ...}`: `error`
when the runtime itself cannot be imported or started (the infrastructure), `failed` when the
model cannot be loaded or run (the model). The child never sees a path, a case id or a label.
A reader thread maps the next batch's rows (with read-ahead) while the current one is inferred.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from typing import Any, BinaryIO

from validators.runtime.frames import FrameError, read_frame, write_frame
from validators.runtime.shared_tensors import RowWindows
from validators.runtime.speed import LoadedModel, nvml_memory_used, resident_peak_bytes

__all__ = ["LoadedModel", "OnnxModel", "TorchModel", "load_model", "main"]

_MAX_INPUT_PAYLOAD = 4 * 1024 * 1024 * 1024 - 1
_REASON_CHARS = 500


class ModelFault(Exception):
    """The model (not the machine) is at fault: it cannot be loaded or run."""


class InfrastructureFault(Exception):
    """The runtime cannot be imported or started here: not the model's fault."""


def _out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(
        marker in text for marker in ("out of memory", "failed to allocate", "can't allocate")
    )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:_REASON_CHARS]}"


class OnnxModel:
    """An ONNX model on onnxruntime, CUDA provider first when the device is CUDA."""

    def __init__(self, model_bytes: bytes, head: dict[str, Any]) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise InfrastructureFault(f"onnxruntime cannot be imported: {_short(exc)}") from exc
        self._ort = ort
        self.device = str(head["device"])
        self.intra = int(head["intra_op_threads"])
        self.inter = int(head["inter_op_threads"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra
        options.inter_op_num_threads = self.inter
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No thread spinning after a run: the parent's feeding thread shares these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise InfrastructureFault(
                    "CUDA was chosen but this onnxruntime has no CUDAExecutionProvider"
                )
            cuda_options = {
                "device_id": 0,
                "gpu_mem_limit": int(head["device_memory_bytes"]),
                "arena_extend_strategy": "kSameAsRequested",
            }
            providers = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
        # Taken before the session exists, so the peak counts the weights and the CUDA context.
        self._device_baseline = _device_used_bytes() if self.device == "cuda" else None
        self._device_peak = 0
        try:
            self.session = ort.InferenceSession(model_bytes, options, providers=providers)
        except Exception as exc:
            raise ModelFault(f"onnxruntime could not load the model: {_short(exc)}") from exc
        active = self.session.get_providers()
        if self.device == "cuda" and active[0] != "CUDAExecutionProvider":
            raise InfrastructureFault(
                f"CUDA was chosen but onnxruntime started {active[0]} (CUDA could not start)"
            )
        self.provider = active[0]
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def infer(self, batch: Any) -> Any:
        """Return the first output of the graph on `batch`."""
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def time_one(self, batch: Any) -> float:
        """Return the seconds of one run (synchronous: `run` copies the output to the host).

        On CUDA the device memory in use is polled after the clock stops (NVML; onnxruntime has
        no peak counter), so the poll is neither timed nor paid while scoring.
        """
        start = time.perf_counter()
        self.infer(batch)
        elapsed = time.perf_counter() - start
        if self._device_baseline is not None:
            used = _device_used_bytes()
            if used is not None:
                self._device_peak = max(self._device_peak, used - self._device_baseline)
        return elapsed

    def runtime_info(self) -> dict[str, Any]:
        """Return format, runtime, version, provider, threads and device."""
        return {
            "format": "onnx",
            "runtime": "onnxruntime",
            "runtime_version": self._ort.__version__,
            "execution_provider": self.provider,
            "intra_op_threads": self.intra,
            "inter_op_threads": self.inter,
            "device": self.device,
        }

    def peak_memory(self) -> tuple[int | None, str]:
        """Return the device memory above the start (CUDA) or the resident peak (CPU)."""
        if self.device == "cuda":
            return (self._device_peak if self._device_baseline is not None else None), "device"
        return resident_peak_bytes(), "resident"

    def reset_peak_memory(self) -> None:
        """Start a new device-memory peak; resident peaks cannot be reset."""
        self._device_peak = 0


def _device_used_bytes() -> int | None:
    return nvml_memory_used()


class TorchModel:
    """Safetensors weights in the MONAI network Assay builds from the manifest's architecture."""

    def __init__(self, model_bytes: bytes, head: dict[str, Any]) -> None:
        try:
            import torch
            from monai.networks import nets
            from safetensors.torch import load as load_safetensors
        except ImportError as exc:
            raise InfrastructureFault(f"torch or MONAI cannot be imported: {_short(exc)}") from exc
        self._torch = torch
        self.device = str(head["device"])
        self.intra = int(head["intra_op_threads"])
        self.inter = int(head["inter_op_threads"])
        torch.set_num_threads(self.intra)
        try:
            torch.set_num_interop_threads(self.inter)
        except RuntimeError:  # already set once in this process; keep the first setting
            self.inter = torch.get_num_interop_threads()
        if self.device == "cuda":
            if not torch.cuda.is_available():
                raise InfrastructureFault("CUDA was chosen but torch cannot see a CUDA device")
            torch.cuda.set_per_process_memory_fraction(float(head["device_memory_fraction"]), 0)
        self.architecture = str(head["architecture"])
        constructor = getattr(nets, str(head["constructor"]))
        network = constructor(**head["architecture_args"])
        try:
            weights = load_safetensors(model_bytes)
        except Exception as exc:
            raise ModelFault(f"the safetensors file cannot be read: {_short(exc)}") from exc
        _check_state_dict(network.state_dict(), weights, self.architecture)
        network.load_state_dict(weights, strict=True)
        self.network = network.to(self.device).eval()

    def infer(self, batch: Any) -> Any:
        """Return the network's logits on `batch` as a float32 host array."""
        import numpy as np

        torch = self._torch
        with torch.inference_mode():
            # The rows are a read-only mapping: torch gets its own writable copy, so no layer
            # can write into it (a segmentation fault that would be blamed on the model).
            tensor = torch.from_numpy(np.array(batch)).to(self.device, non_blocking=True)
            return self.network(tensor).float().cpu().numpy()

    def time_one(self, batch: Any) -> float:
        """Return the seconds of one forward pass: CUDA events around it on a GPU."""
        torch = self._torch
        if self.device != "cuda":
            start = time.perf_counter()
            self.infer(batch)
            return time.perf_counter() - start
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        begin.record()
        self.infer(batch)
        end.record()
        torch.cuda.synchronize()
        return float(begin.elapsed_time(end)) / 1000.0

    def runtime_info(self) -> dict[str, Any]:
        """Return format, runtime, version, provider, threads, device and architecture."""
        return {
            "format": "safetensors",
            "runtime": "torch",
            "runtime_version": str(self._torch.__version__),
            "execution_provider": "cuda" if self.device == "cuda" else "cpu",
            "intra_op_threads": self.intra,
            "inter_op_threads": self.inter,
            "device": self.device,
            "architecture": self.architecture,
        }

    def peak_memory(self) -> tuple[int | None, str]:
        """Return torch's peak allocated device memory (CUDA) or the resident peak (CPU)."""
        if self.device == "cuda":
            return int(self._torch.cuda.max_memory_allocated()), "device"
        return resident_peak_bytes(), "resident"

    def reset_peak_memory(self) -> None:
        """Start a new device-memory peak; resident peaks cannot be reset."""
        if self.device == "cuda":
            self._torch.cuda.reset_peak_memory_stats()


def _check_state_dict(expected: dict[str, Any], given: dict[str, Any], architecture: str) -> None:
    """Raise ModelFault naming missing keys, extra keys and shape mismatches, if any."""
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    mismatched = sorted(
        f"{key} {list(given[key].shape)} (expected {list(expected[key].shape)})"
        for key in set(expected) & set(given)
        if tuple(given[key].shape) != tuple(expected[key].shape)
    )
    parts = []
    for title, names in (("missing", missing), ("unexpected", extra), ("wrong shape", mismatched)):
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            parts.append(f"{len(names)} {title}: {shown}")
    if parts:
        raise ModelFault(
            f"the weights do not match {architecture} as Assay builds it ({'; '.join(parts)}); "
            "export the state_dict of that exact network"
        )


def load_model(model_bytes: bytes, head: dict[str, Any]) -> LoadedModel:
    """Return the model the `load` head asks for; raise ModelFault or InfrastructureFault."""
    if head.get("format") == "onnx":
        return OnnxModel(model_bytes, head)
    if head.get("format") == "safetensors":
        return TorchModel(model_bytes, head)
    raise InfrastructureFault(f"unknown model format {head.get('format')!r}")


def _import_runtime(model_format: str) -> None:
    """Import the runtime of `model_format`, or raise InfrastructureFault saying why not."""
    try:
        if model_format == "onnx":
            import onnxruntime  # noqa: F401
        elif model_format == "safetensors":
            import monai.networks.nets  # noqa: F401
            import safetensors.torch  # noqa: F401
            import torch  # noqa: F401
        else:
            raise InfrastructureFault(f"unknown model format {model_format!r}")
    except ImportError as exc:
        raise InfrastructureFault(
            f"the {model_format} runtime cannot be imported: {_short(exc)}"
        ) from exc


Batch = tuple[dict[str, Any], Any]


def _reader(
    stream: BinaryIO, shared: dict[str, Any], batches: queue.Queue[Batch | BaseException | None]
) -> None:
    """Put each request from `stream` on `batches` with its rows mapped, then None at the end.

    Mapping here, on its own thread, lets the kernel read the next rows in (read-ahead) while
    the main thread infers the current ones. A broken stream or a bad range puts its error.
    """
    windows = RowWindows(shared)
    try:
        while True:
            frame = read_frame(stream, max_payload=0)
            if frame is None:
                batches.put(None)
                return
            head, _ = frame
            if head.get("op") == "end":
                batches.put(None)
                return
            start, stop = int(head.get("start", 0)), int(head.get("stop", 0))
            batches.put((head, windows.rows(start, stop)))
    except BaseException as exc:  # handed to the main thread, which reports it
        batches.put(exc)


def _failure(status: str, reason: str) -> dict[str, Any]:
    return {"ok": False, "status": status, "reason": reason}


def _infer_in_batches(
    model: LoadedModel, rows: Any, batch_size: int, declared: list[int | str]
) -> tuple[Any, int]:
    """Return (scores, rows) of `rows` run in batches of `batch_size`, as one contiguous array.

    A batch whose scores are not shaped as `declared` ("N" its rows) or not float32 is answered
    alone, as it came, with its own row count: the parent then reports the model's fault on the
    batch the model actually saw.
    """
    import numpy as np

    parts: list[Any] = []
    for start in range(0, len(rows), max(1, batch_size)):
        batch = rows[start : start + batch_size]
        scores = np.asarray(model.infer(batch))
        expected = [len(batch) if dim == "N" else dim for dim in declared]
        if list(scores.shape) != expected or scores.dtype != np.float32:
            return np.ascontiguousarray(scores), len(batch)
        parts.append(scores)
    whole = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return np.ascontiguousarray(whole), len(rows)


def _serve(model: LoadedModel, shared: dict[str, Any], stdin: BinaryIO, out: BinaryIO) -> None:

    from validators.runtime.speed import measure_in_child

    # Two batches ahead at most: the next is mapped while this one runs, memory stays bounded.
    batches: queue.Queue[Batch | BaseException | None] = queue.Queue(maxsize=2)
    threading.Thread(target=_reader, args=(stdin, shared, batches), daemon=True).start()
    while True:
        item = batches.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            write_frame(out, _failure("error", f"a request could not be read: {_short(item)}"))
            return
        head, batch = item
        op = head.get("op")
        try:
            if op == "infer":
                scores, answered = _infer_in_batches(
                    model, batch, int(head.get("batch") or len(batch)), list(head["declared"])
                )
                write_frame(
                    out,
                    {
                        "ok": True,
                        "rows": answered,
                        "shape": list(scores.shape),
                        "dtype": str(scores.dtype),
                    },
                    scores.data,
                )
            elif op == "speed":
                write_frame(out, {"ok": True, "speed": measure_in_child(model, batch, head)})
            else:
                write_frame(out, _failure("error", f"unknown operation {op!r}"))
                return
        except Exception as exc:
            rows = len(batch)
            if _out_of_memory(exc):
                reason = f"the model ran out of memory running a batch of {rows}: {_short(exc)}"
            else:
                reason = f"the model raised an error running a batch of {rows}: {_short(exc)}"
            write_frame(out, _failure("failed", reason))
            return


def main() -> None:
    """Serve the runner on stdin/stdout until `end`, the end of input, or a fatal failure."""
    # The real stdout carries frames only; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stdin = sys.stdin.buffer
    try:
        first = read_frame(stdin, max_payload=_MAX_INPUT_PAYLOAD)
    except FrameError as exc:
        write_frame(out, _failure("error", f"the load frame could not be read: {exc}"))
        return
    if first is None or first[0].get("op") != "load":
        write_frame(out, _failure("error", "the first frame was not a load request"))
        return
    head, model_bytes = first
    del first  # the model's bytes are dropped once loaded: only `model_bytes` may hold them
    try:
        _import_runtime(str(head.get("format")))
    except InfrastructureFault as exc:
        write_frame(out, _failure("error", str(exc)))
        return
    # From here on a crash is the model's doing: the parent tells the two apart by this frame.
    write_frame(out, {"ok": True, "stage": "imported"})
    try:
        model = load_model(model_bytes, head)
    except InfrastructureFault as exc:
        write_frame(out, _failure("error", str(exc)))
        return
    except ModelFault as exc:
        write_frame(out, _failure("failed", str(exc)))
        return
    except Exception as exc:
        status = "failed"
        reason = f"the model could not be loaded: {_short(exc)}"
        if _out_of_memory(exc):
            reason = f"the model ran out of memory while loading: {_short(exc)}"
        write_frame(out, _failure(status, reason))
        return
    del model_bytes
    write_frame(out, {"ok": True, "runtime": model.runtime_info()})
    _serve(model, head["tensors"], stdin, out)


if __name__ == "__main__":
    main()
