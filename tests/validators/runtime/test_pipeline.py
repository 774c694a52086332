"""The evaluation pipeline end to end on 60 DICOM phantoms with a tiny ONNX model in the sandbox."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.validators.runtime.evaluation_inputs import (
    CASES,
    dicom_manifest,
    model_files,
    phantom_dataset,
    pipeline_settings,
    policy_document,
)
from validators.data.predictions import read_predictions
from validators.evaluation import evaluate_predictions
from validators.policy import Policy, parse_policy
from validators.results import (
    EvaluationInputs,
    EvaluationResult,
    RuntimeInfo,
    SpeedResult,
    statistics_digest_of,
)
from validators.runtime.pipeline import (
    STAGES,
    EvaluationRun,
    EvaluationSetupInvalid,
    ModelFailed,
    effective_policy,
    evaluate_model,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def dataset(workdir: Path) -> Path:
    return phantom_dataset(workdir / "dataset")


@pytest.fixture(scope="module")
def run(workdir: Path, dataset: Path) -> EvaluationRun:
    policy = parse_policy(policy_document())
    return evaluate_model(
        model_files(workdir / "models"),
        dataset,
        policy,
        settings=pipeline_settings(workdir / "cache"),
        baseline=model_files(workdir / "models", weight=2.0),
    )


def test_the_result_carries_every_block_typed(run: EvaluationRun) -> None:
    result = run.result
    assert isinstance(result.inputs, EvaluationInputs)
    assert isinstance(result.runtime, RuntimeInfo) and result.runtime.format == "onnx"
    assert result.runtime.isolation is not None
    assert isinstance(result.speed, SpeedResult)
    assert sorted(b.batch_size for b in result.speed.batches) == [1, 4]
    assert result.inputs.dataset_cases == CASES
    assert result.inputs.baseline_model_sha256 is not None
    assert result.verdict is not None and result.verdict.passed
    # The speed criterion was judged on the benchmark's figure, not left without data.
    latency = next(c for c in result.verdict.criteria if c.id == "latency")
    assert latency.outcome == "pass" and latency.observed is not None


def test_the_result_round_trips_through_json_with_its_digest(run: EvaluationRun) -> None:
    text = run.result.model_dump_json()
    assert EvaluationResult.model_validate_json(text) == run.result


def test_the_digest_covers_the_inputs_but_not_the_measurements(run: EvaluationRun) -> None:
    result = run.result
    assert result.inputs is not None
    other_model = result.model_copy(
        update={"inputs": result.inputs.model_copy(update={"model_sha256": "0" * 64})}
    )
    assert statistics_digest_of(other_model) != result.statistics_digest
    no_speed = result.model_copy(update={"speed": None, "runtime": None})
    assert statistics_digest_of(no_speed) == result.statistics_digest


def test_the_stages_are_timed_in_order(run: EvaluationRun) -> None:
    assert [m.stage for m in run.stages] == list(STAGES)
    assert all(m.seconds >= 0 and m.peak_rss_bytes > 0 for m in run.stages)


def test_the_predictions_file_follows_the_contract(run: EvaluationRun) -> None:
    header = run.predictions_csv.splitlines()[0].split(",")
    assert header[:4] == ["case_id", "patient_id", "label", "score"]
    # Manifest attributes, then the DICOM acquisition tags read from the headers.
    assert {"sex", "age", "manufacturer", "manufacturer_model"} <= set(header[4:])
    assert len(run.predictions_csv.splitlines()) == CASES + 1


def test_scoring_the_written_files_reproduces_the_statistics(run: EvaluationRun) -> None:
    assert run.baseline_csv is not None
    again = evaluate_predictions(
        read_predictions(io.StringIO(run.predictions_csv)),
        policy=run.policy,
        baseline=read_predictions(io.StringIO(run.baseline_csv)),
    )
    # `assay score` runs no model: it has no inputs, speed or runtime blocks, so its verdict on
    # the speed criterion lacks data; every statistic is the same to the last bit.
    evaluated = run.result.model_copy(update={"inputs": None, "speed": None, "runtime": None})
    assert again.overall == evaluated.overall
    assert again.subgroups == evaluated.subgroups
    assert again.disparities == evaluated.disparities
    assert again.policy == evaluated.policy
    assert again.verdict is not None and evaluated.verdict is not None
    same = [c for c in again.verdict.criteria if c.id != "latency"]
    assert same == [c for c in evaluated.verdict.criteria if c.id != "latency"]


def test_the_effective_policy_is_the_manifests_operating_point() -> None:
    policy = Policy.default()
    logits = dicom_manifest(thresholds={"lesion": 0.7})
    at_point = effective_policy(policy, logits, scale="logit")
    # Rounded to float32, the scores' own type, as the runner compares.
    assert at_point.threshold == pytest.approx(0.7, abs=1e-7) and at_point.threshold != 0.7
    assert at_point.scores == "logit"
    as_probability = effective_policy(policy, logits, scale="probability")
    assert as_probability.scores == "probability"
    assert isinstance(as_probability.threshold, float) and 0.66 < as_probability.threshold < 0.67


def test_a_model_returning_nan_fails_with_the_runners_reason(workdir: Path, dataset: Path) -> None:
    with pytest.raises(ModelFailed) as caught:
        evaluate_model(
            model_files(workdir / "models", variant="nan"),
            dataset,
            parse_policy(policy_document()),
            settings=pipeline_settings(workdir / "cache"),
        )
    assert caught.value.status == "failed" and caught.value.role == "model"
    assert "NaN" in caught.value.reason


def test_inputs_that_do_not_fit_list_every_problem(workdir: Path, dataset: Path) -> None:
    multilabel = parse_policy(
        policy_document(
            task="multilabel",
            threshold={"a": 0.5, "b": 0.5},
            criteria=[],
            subgroups={"attributes": []},
        )
    )
    with pytest.raises(EvaluationSetupInvalid) as caught:
        evaluate_model(
            model_files(workdir / "models"),
            dataset,
            multilabel,
            settings=pipeline_settings(workdir / "cache"),
            baseline=model_files(workdir / "models", weight=2.0),
        )
    paths = [problem.path for problem in caught.value.problems]
    assert paths == ["model.task", "baseline.task"]
    assert "binary" in caught.value.problems[0].message


def test_a_multilabel_model_writes_a_column_pair_per_label_and_reproduces(
    workdir: Path, dataset: Path
) -> None:
    import csv
    import shutil

    multilabel_root = workdir / "multilabel"
    shutil.copytree(dataset, multilabel_root)
    with open(dataset / "cases.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for index, row in enumerate(rows):
        label = row.pop("label")
        row["label:lesion"], row["label:effusion"] = label, "1" if index % 3 == 0 else "0"
    columns = ["case_id", "patient_id", "path", "label:lesion", "label:effusion"]
    columns += [c for c in rows[0] if c not in columns]
    with open(multilabel_root / "cases.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    model = model_files(workdir / "models", variant="two_outputs")
    manifest = dicom_manifest(
        task="multilabel",
        labels=["effusion", "lesion"],
        output={"kind": "logits", "shape": ["N", 2]},
        thresholds={"effusion": 0.25, "lesion": 0.0},
    )
    policy = parse_policy(
        policy_document(task="multilabel", threshold={"effusion": 0.5, "lesion": 0.5}, criteria=[])
    )
    run = evaluate_model(
        type(model)(model.artifact, manifest),
        multilabel_root,
        policy,
        settings=pipeline_settings(workdir / "cache"),
    )
    header = run.predictions_csv.splitlines()[0].split(",")
    assert header[:6] == [
        "case_id",
        "patient_id",
        "label:effusion",
        "score:effusion",
        "label:lesion",
        "score:lesion",
    ]
    assert run.policy.threshold == {"effusion": 0.25, "lesion": 0.0}
    again = evaluate_predictions(
        read_predictions(io.StringIO(run.predictions_csv)), policy=run.policy
    )
    assert again.overall == run.result.overall
