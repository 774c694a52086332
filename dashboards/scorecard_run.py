"""The scorecard's parts about the run itself: what was evaluated, where it ran, how fast.

Shown only when the result carries them (`assay evaluate`); `assay score` runs no model and its
scorecard is unchanged. rich is imported inside the functions, as in `dashboards.scorecard`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from validators.results import EvaluationInputs, RuntimeInfo, SpeedResult

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

__all__ = ["run_renderables"]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value} B"


def _inputs_text(inputs: EvaluationInputs) -> Text:
    from rich.text import Text

    lines = [
        f"model {inputs.model_format} sha256:{inputs.model_sha256}",
        f"dataset {inputs.dataset_digest} ({inputs.dataset_cases:,} cases)",
        f"policy {inputs.policy_name} v{inputs.policy_version} sha256:{inputs.policy_sha256}, "
        f"seed {inputs.seed}",
    ]
    if inputs.baseline_model_sha256:
        lines.append(f"baseline model sha256:{inputs.baseline_model_sha256}")
    text = Text("Inputs\n", style="bold")
    text.append("\n".join(lines), style="dim")
    return text


def _runtime_text(runtime: RuntimeInfo) -> Text:
    from rich.text import Text

    text = Text("Runtime  ", style="bold")
    text.append(
        f"{runtime.format} on {runtime.runtime} {runtime.runtime_version}, "
        f"{runtime.execution_provider}, device {runtime.device}, "
        f"{runtime.intra_op_threads} intra-op / {runtime.inter_op_threads} inter-op threads"
        + (f", architecture {runtime.architecture}" if runtime.architecture else "")
    )
    isolation = runtime.isolation
    if isolation is not None:
        namespaces = ", ".join(isolation.namespaces) or "none"
        text.append(
            f"\nsandbox: user {isolation.user}, namespaces {namespaces}, "
            f"{len(isolation.hidden)} hidden path(s), wall limit {isolation.wall_seconds:g} s",
            style="dim",
        )
        if isolation.weaker:
            text.append(
                f"\nweaker isolation: {', '.join(isolation.weaker)} not applied",
                style="bold yellow",
            )
    return text


def _speed_table(speed: SpeedResult) -> Table:
    from rich import box
    from rich.table import Table

    fingerprint = speed.fingerprint
    device = fingerprint.gpu_name or f"{fingerprint.cpu_model} ({fingerprint.cpu_cores} cores)"
    table = Table(
        title=f"Speed on {device}, {fingerprint.execution_provider}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for name in (
        "batch",
        "runs",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "cases/s",
        "end to end ms/case",
    ):
        table.add_column(name, justify="right")
    for batch in speed.batches:
        table.add_row(
            str(batch.batch_size),
            f"{batch.iterations:,}",
            _ms(batch.latency_p50_ms),
            _ms(batch.latency_p90_ms),
            _ms(batch.latency_p95_ms),
            _ms(batch.latency_p99_ms),
            f"{batch.throughput_per_s:,.0f}",
            _ms(batch.end_to_end_ms_per_case),
        )
    protocol = speed.protocol
    table.caption = (
        f"{protocol.warmup_iterations} warm-up runs, then at least {protocol.min_iterations} runs "
        f"and {protocol.min_time_s:g} s per batch size; end to end adds decoding "
        f"({_ms(speed.decode_ms_per_case)} ms/case over {speed.decode_cases} cases); timing "
        f"{speed.timing}; peak {speed.memory_kind} memory {_bytes(speed.peak_memory_bytes)}"
    )
    table.caption_justify = "left"
    return table


def run_renderables(
    inputs: EvaluationInputs | None, runtime: RuntimeInfo | None, speed: SpeedResult | None
) -> list[RenderableType]:
    """Return the inputs, runtime and speed parts that are present, in that order."""
    parts: list[RenderableType] = []
    if inputs is not None:
        parts.append(_inputs_text(inputs))
    if runtime is not None:
        parts.append(_runtime_text(runtime))
    if speed is not None:
        parts.append(_speed_table(speed))
    return parts
