"""The evaluation pipeline: one model on one held-out dataset under one policy, end to end.

`evaluate_model` is what `assay evaluate` runs (and what the registry's worker will run): static
intake of the artifact in the sandbox, the dataset checked and hashed (`load_dataset`), its
tensors decoded once into the decode cache (`open_cache`), the model scored in the sandboxed
runner, the speed benchmark in the same child, the per-case predictions written in DESIGN.md's
predictions-file contract, and the statistics and verdict (`evaluate_predictions`) on exactly
that file, so `assay score` of the file (with the written effective policy) reproduces them.
With a baseline model, it is run on the same tensors (or its own spec's) for non-inferiority.

This module sits above `validators.evaluation` (it calls the engine; the engine never imports
the runtime), and below the command line, which only parses, prints and writes files.

Heavy libraries (numpy, onnxruntime, torch) are imported inside the functions that use them.
"""

from __future__ import annotations

import csv
import hashlib
import math
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from validators.manifest import ModelManifest
from validators.problems import InputInvalid, Problem
from validators.results.evaluation import EvaluationInputs, EvaluationResult, policy_digest
from validators.runtime.runner import RunnerSettings, RunOutcome
from validators.runtime.speed import resident_peak_bytes

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from validators.data.datasets import Dataset
    from validators.policy import Policy

__all__ = [
    "STAGES",
    "EvaluationRun",
    "EvaluationSetupInvalid",
    "ModelFailed",
    "ModelFiles",
    "PipelineSettings",
    "StageMeasure",
    "effective_policy",
    "evaluate_model",
    "write_predictions",
]

Stage = Literal["intake", "decoding", "inference", "benchmark", "statistics"]
STAGES: tuple[Stage, ...] = ("intake", "decoding", "inference", "benchmark", "statistics")
"""The stages of a run, in order; `EvaluationRun.stages` times each."""

ProgressCallback = Callable[[int, int], None]
StepCallback = Callable[[str], None]


class EvaluationSetupInvalid(InputInvalid):
    """The model, its manifest, the dataset and the policy do not fit together (every problem)."""

    document = "the evaluation's inputs"
    code = "evaluation_inputs_invalid"
    whole = "(inputs)"


class ModelFailed(Exception):
    """The model's run ended early: `status` "failed" (the model's fault) or "error" (ours).

    `role` says which model: "model" or "baseline".
    """

    def __init__(self, outcome: RunOutcome, role: str) -> None:
        reason = outcome.reason or "no reason given"
        super().__init__(f"the {role} {outcome.status}: {reason}")
        self.status: Literal["failed", "error"] = "error" if outcome.status == "error" else "failed"
        self.reason = reason
        self.role = role
        self.outcome = outcome


@dataclass(frozen=True)
class ModelFiles:
    """A model to run: its artifact (ONNX or safetensors) and its parsed manifest."""

    artifact: Path
    manifest: ModelManifest


@dataclass(frozen=True)
class PipelineSettings:
    """Where the decode cache lives and how the stages run."""

    cache_dir: Path
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    decode_workers: int | None = None
    """Processes decoding images into the cache; None: every core this process may use."""
    hide: tuple[Path, ...] = ()
    """Paths no sandboxed child may see besides ASSAY_HOME, the dataset root and the cache."""
    intake_timeout_s: float = 300.0


@dataclass(frozen=True)
class StageMeasure:
    """One stage's wall time, and the peak resident memory seen when it ended.

    `peak_rss_bytes` is this process's lifelong peak (getrusage), so it only grows from stage
    to stage: the stage where it jumps is the one that needed the memory. `children_peak_rss_bytes`
    is the largest peak of any child that ended so far (the decoding workers, intake's and the
    runner's sandboxed children).
    """

    stage: Stage
    seconds: float
    peak_rss_bytes: int
    children_peak_rss_bytes: int


@dataclass(frozen=True)
class EvaluationRun:
    """What a run produced: the result, the rows of its predictions files, and its stages."""

    result: EvaluationResult
    policy: Policy
    """The effective policy: the one given, at the manifest's operating point and scale."""
    dataset: Dataset
    predictions_csv: str
    baseline_csv: str | None
    stages: tuple[StageMeasure, ...]
    decoded: int
    """Cases decoded by this run: 0 when the decode cache was already there."""


class _Clock:
    """Times the stages and records the peak memory at the end of each."""

    def __init__(self) -> None:
        self.measures: list[StageMeasure] = []

    @contextmanager
    def stage(self, name: Stage) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.add(name, time.perf_counter() - started)

    def add(self, name: Stage, seconds: float, *, own_peak: int | None = None) -> None:
        """Record a stage that ended now (`own_peak`: this process's peak when it really ended)."""
        self.measures.append(
            StageMeasure(
                name,
                seconds,
                own_peak if own_peak is not None else resident_peak_bytes(resource.RUSAGE_SELF),
                resident_peak_bytes(resource.RUSAGE_CHILDREN),
            )
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- checking the inputs together --------------------------------------------------------------


def _fit_problems(
    model: ModelManifest, policy: Policy, dataset_labels: Sequence[str], role: str
) -> list[Problem]:
    """Return what does not fit between one manifest, the policy and the dataset's labels."""
    problems: list[Problem] = []
    if model.task != policy.task:
        problems.append(
            Problem(
                path=f"{role}.task",
                message=f"the {role} manifest is for a {model.task} task but the policy "
                f"{policy.name!r} judges {policy.task} models; use a {model.task} policy",
            )
        )
    if model.task == "binary":
        if len(dataset_labels) != 1:
            problems.append(
                Problem(
                    path=f"{role}.labels",
                    message=f"the {role} is binary but the dataset has {len(dataset_labels)} "
                    f"label columns ({', '.join(dataset_labels)}); give a dataset with one "
                    "`label` column",
                )
            )
    else:
        missing = [label for label in model.labels if label not in dataset_labels]
        if missing:
            problems.append(
                Problem(
                    path=f"{role}.labels",
                    message=f"the dataset has no label:<name> column for {', '.join(missing)} "
                    f"(it has {', '.join(dataset_labels)}); add them or use a model for these "
                    "labels",
                )
            )
    return problems


def _baseline_problems(model: ModelManifest, baseline: ModelManifest) -> list[Problem]:
    if list(baseline.labels) != list(model.labels):
        return [
            Problem(
                path="baseline.labels",
                message=f"the baseline's labels {baseline.labels} differ from the model's "
                f"{model.labels}; a baseline scores the same labels",
            )
        ]
    return []


def effective_policy(policy: Policy, manifest: ModelManifest, *, scale: str) -> Policy:
    """Return the policy at the manifest's operating point, on the scale the scores are written.

    The manifest's `thresholds` are the operating point (the policy's `threshold` and `scores`
    are for `assay score`, where there is no manifest). A threshold is rounded to float32, the
    scores' own type, so the statistics call a case positive exactly when the runner did
    (`runner.at_operating_point`). With `scale` "probability" and logit thresholds, the
    thresholds go through the sigmoid (only when a baseline's scale differs from the model's).
    """
    import numpy as np

    from validators.policy import parse_policy

    def point(label: str) -> float:
        value = float(np.float32(manifest.thresholds[label]))
        if scale == "probability" and manifest.output.kind == "logits":
            value = 1.0 / (1.0 + math.exp(-value))
        return value

    threshold: float | dict[str, float]
    if manifest.task == "binary":
        threshold = point(manifest.labels[0])
    else:
        threshold = {label: point(label) for label in manifest.labels}
    document = {**policy.model_dump(mode="json"), "threshold": threshold, "scores": scale}
    return parse_policy(document, source=f"the policy {policy.name!r} at the model's thresholds")


# --- the predictions file ----------------------------------------------------------------------


def write_predictions(
    dataset: Dataset, manifest: ModelManifest, scores: NDArray[np.float64]
) -> str:
    """Return the predictions CSV (DESIGN.md's contract) of `scores` [N, labels] on `dataset`.

    Rows in the dataset's case order: case_id, patient_id, then `label` and `score` (binary) or
    `label:<name>` and `score:<name>` per label, then every attribute column of the dataset
    (DICOM acquisition tags included), empty where a case has no value. Scores are written in
    Python's shortest round-trip form, so reading the file back gives the same numbers.
    """
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    binary = manifest.task == "binary"
    truth = [dataset.labels[0]] if binary else list(manifest.labels)
    prediction_columns = (
        ["label", "score"]
        if binary
        else [f"{kind}:{label}" for label in manifest.labels for kind in ("label", "score")]
    )
    attributes = list(dataset.attribute_names)
    writer.writerow(["case_id", "patient_id", *prediction_columns, *attributes])
    for row, case in enumerate(dataset.cases):
        cells: list[str] = [case.case_id, case.patient_id]
        for k, label in enumerate(truth):
            cells += [str(int(case.labels[label])), repr(float(scores[row, k]))]
        cells += [case.attributes.get(name, "") for name in attributes]
        writer.writerow(cells)
    return buffer.getvalue()


# --- the run -----------------------------------------------------------------------------------


def _intake(model: ModelFiles, settings: PipelineSettings, role: str) -> list[Problem]:
    """Return the problems static intake (in the sandbox) finds in the artifact; none: accepted."""
    from validators.runtime.intake import IntakeRefused, inspect_in_subprocess

    try:
        inspect_in_subprocess(
            model.artifact,
            model.manifest,
            timeout_s=settings.intake_timeout_s,
            hide=settings.hide,
        )
    except IntakeRefused as exc:
        located = [
            Problem(
                path=f"{role}.{p.get('path', '')}".rstrip("."),
                message=f"{p.get('message', '')} ({exc.detail})",
            )
            for p in exc.problems
        ]
        return located or [Problem(path=role, message=f"{model.artifact}: {exc.detail}")]
    return []


def _dataset_or_problems(
    root: Path, cases: str | Path, attributes: Sequence[str], earlier: list[Problem]
) -> Dataset:
    """Return the checked dataset; its refusal lists the earlier problems too, when any."""
    from validators.data.datasets import DatasetInvalid, load_dataset

    try:
        return load_dataset(root, cases, attributes=attributes)
    except DatasetInvalid as exc:
        if not earlier:
            raise
        located = [
            Problem(path=f"dataset.{p.path}" if p.path else "dataset", message=p.message)
            for p in exc.problems
        ]
        raise EvaluationSetupInvalid([*earlier, *located]) from exc


def _run(
    model: ModelFiles,
    tensors: NDArray[np.float32],
    settings: RunnerSettings,
    *,
    speed: Any,
    decode: tuple[float | None, int],
    progress: ProgressCallback | None,
    role: str,
) -> RunOutcome:
    from validators.runtime.runner import run_model

    outcome = run_model(
        model.artifact,
        model.manifest,
        tensors,
        settings=settings,
        speed=speed,
        decode=decode,
        progress=progress,
    )
    if outcome.status != "succeeded" or outcome.scores is None:
        raise ModelFailed(outcome, role)
    return outcome


def _scores_on(outcome: RunOutcome, manifest: ModelManifest, scale: str) -> NDArray[np.float64]:
    """Return the scores to write: as the model returned them, or as probabilities."""
    import numpy as np

    if scale == "probability" and manifest.output.kind == "logits":
        assert outcome.probabilities is not None
        return np.asarray(outcome.probabilities, dtype=np.float64)
    assert outcome.scores is not None
    return np.asarray(outcome.scores, dtype=np.float64)


def evaluate_model(
    model: ModelFiles,
    dataset_root: Path,
    policy: Policy,
    *,
    settings: PipelineSettings,
    cases: str | Path = "cases.csv",
    baseline: ModelFiles | None = None,
    decode_progress: ProgressCallback | None = None,
    inference_progress: ProgressCallback | None = None,
    on_step: StepCallback | None = None,
) -> EvaluationRun:
    """Return the evaluation of `model` on the dataset at `dataset_root` under `policy`.

    Raises EvaluationSetupInvalid (the artifact refused at intake, or model, dataset and policy
    that do not fit, every problem listed), DatasetInvalid (the dataset, every problem with its
    manifest line), CacheError (the cache directory cannot hold the tensors), IntakeFailed
    (intake could not finish) and ModelFailed (the run: "failed" for the model's fault, "error"
    for the infrastructure's, with the runner's reason).
    """
    from validators.data.cache import open_cache
    from validators.data.predictions import read_predictions
    from validators.evaluation import evaluate_predictions
    from validators.runtime.formats import detect_format
    from validators.runtime.speed import measure_decode

    step = on_step or (lambda _: None)
    clock = _Clock()
    with clock.stage("intake"):
        step("intake: inspecting the model")
        # Every refusal is gathered before any is reported: the artifacts', the dataset's and
        # how they fit the policy, so one run lists every problem to fix.
        problems = _intake(model, settings, "model")
        if baseline is not None:
            problems += _intake(baseline, settings, "baseline")
        step("checking the dataset")
        needed = [*policy.subgroups.attributes]
        dataset = _dataset_or_problems(dataset_root, cases, needed, problems)
        problems += _fit_problems(model.manifest, policy, dataset.labels, "model")
        if baseline is not None:
            problems += _fit_problems(baseline.manifest, policy, dataset.labels, "baseline")
            problems += _baseline_problems(model.manifest, baseline.manifest)
        if problems:
            raise EvaluationSetupInvalid(problems)
        scale = (
            "logit"
            if model.manifest.output.kind == "logits"
            and (baseline is None or baseline.manifest.output.kind == "logits")
            else "probability"
        )
        effective = effective_policy(policy, model.manifest, scale=scale)

    hide = (*settings.hide, dataset.root, Path(settings.cache_dir).resolve())
    runner = _with_hidden(settings.runner, hide)
    with clock.stage("decoding"):
        step("decoding")
        cached = open_cache(
            dataset,
            model.manifest.input,
            settings.cache_dir,
            workers=settings.decode_workers,
            progress=decode_progress,
        )
        baseline_tensors = cached.tensors
        decoded = cached.decoded
        if baseline is not None and baseline.manifest.input != model.manifest.input:
            other = open_cache(
                dataset,
                baseline.manifest.input,
                settings.cache_dir,
                workers=settings.decode_workers,
                progress=decode_progress,
            )
            baseline_tensors, decoded = other.tensors, decoded + other.decoded

    protocol = effective.speed_protocol()
    started = time.perf_counter()
    scored_at: list[tuple[float, int]] = []

    def inference_done(done: int, total: int) -> None:
        if done == total:
            scored_at.append((time.perf_counter(), resident_peak_bytes(resource.RUSAGE_SELF)))
        if inference_progress is not None:
            inference_progress(done, total)

    step("end-to-end decoding sample")
    decode = measure_decode(dataset, model.manifest.input, sample=protocol.decode_sample)
    decode_s = time.perf_counter() - started
    step("inference")
    run_started = time.perf_counter()
    outcome = _run(
        model,
        cached.tensors,
        runner,
        speed=protocol,
        decode=decode,
        progress=inference_done,
        role="model",
    )
    # The runner scores, then times, in one child: the last batch's answer divides the two.
    ended = time.perf_counter()
    scored, peak_when_scored = scored_at[-1] if scored_at else (ended, None)
    baseline_outcome = None
    baseline_s = 0.0
    if baseline is not None:
        step("baseline inference")
        baseline_started = time.perf_counter()
        baseline_outcome = _run(
            baseline,
            baseline_tensors,
            runner,
            speed=None,
            decode=(None, 0),
            progress=inference_progress,
            role="baseline",
        )
        baseline_s = time.perf_counter() - baseline_started
    # The model's child ends only after the benchmark, so both stages see its peak among the
    # children; this process's own peak is taken when the last batch's scores came back (after
    # the baseline's run, when there is one).
    clock.add(
        "inference",
        scored - run_started + baseline_s,
        own_peak=peak_when_scored if baseline is None else None,
    )
    clock.add("benchmark", ended - scored + decode_s)

    with clock.stage("statistics"):
        step("statistics")
        predictions_csv = write_predictions(
            dataset, model.manifest, _scores_on(outcome, model.manifest, scale)
        )
        baseline_csv = (
            write_predictions(
                dataset, baseline.manifest, _scores_on(baseline_outcome, baseline.manifest, scale)
            )
            if baseline is not None and baseline_outcome is not None
            else None
        )
        inputs = EvaluationInputs(
            model_sha256=_sha256(model.artifact),
            model_format=detect_format(model.artifact),
            dataset_digest=dataset.digest,
            dataset_cases=dataset.n_cases,
            policy_name=policy.name,
            policy_version=policy.version,
            policy_sha256=policy_digest(policy.model_dump(mode="json")),
            seed=effective.ci.seed,
            baseline_model_sha256=_sha256(baseline.artifact) if baseline is not None else None,
        )
        result = evaluate_predictions(
            read_predictions(_text(predictions_csv)),
            policy=effective,
            baseline=read_predictions(_text(baseline_csv)) if baseline_csv else None,
            on_progress=step,
            speed=outcome.speed,
            runtime=outcome.runtime,
            inputs=inputs,
        )
    return EvaluationRun(
        result=result,
        policy=effective,
        dataset=dataset,
        predictions_csv=predictions_csv,
        baseline_csv=baseline_csv,
        stages=tuple(clock.measures),
        decoded=decoded,
    )


def _text(content: str) -> Any:
    import io

    return io.StringIO(content)


def _with_hidden(settings: RunnerSettings, hide: Sequence[Path]) -> RunnerSettings:
    from dataclasses import replace

    merged = tuple(dict.fromkeys((*settings.hide, *hide)))
    return replace(settings, hide=merged)
