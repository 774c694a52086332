"""`assay evaluate` end to end on 60 DICOM phantoms: exit codes, the files written, refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from registry.cli import app
from tests.validators.runtime.evaluation_inputs import (
    dicom_manifest,
    model_files,
    phantom_dataset,
    write_manifest,
    write_policy,
)
from tests.validators.runtime.models import FULL_SANDBOX
from validators.results import EvaluationResult

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate-cli")
    good = model_files(root / "models")
    nan = model_files(root / "models", variant="nan")
    return {
        "root": root,
        "dataset": phantom_dataset(root / "dataset"),
        "model": good.artifact,
        "nan": nan.artifact,
        "manifest": write_manifest(good.manifest, root / "manifest.json"),
        "baseline": model_files(root / "models", weight=2.0).artifact,
        "passing": write_policy(root / "passing.json"),
        "failing": write_policy(root / "failing.json", auroc_min=0.999),
        "cache": root / "cache",
    }


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    from registry.settings import get_settings

    monkeypatch.setenv("ASSAY_HOME", str(tmp_path / "home"))
    # The tests check the command, not the isolation (tests/validators/runtime/test_sandbox*).
    monkeypatch.setenv("ASSAY_SANDBOX_ALLOW_WEAKER", "false" if FULL_SANDBOX else "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def evaluate(inputs: dict[str, Path], out: Path, *extra: str, **given: Path) -> Result:
    chosen = {
        "model": inputs["model"],
        "manifest": inputs["manifest"],
        "dataset": inputs["dataset"],
        "policy": inputs["passing"],
        **given,
    }
    arguments = [f"--{name.replace('_', '-')}={path}" for name, path in chosen.items()]
    return CliRunner().invoke(
        app,
        ["evaluate", *arguments, f"--out={out}", f"--cache-dir={inputs['cache']}", *extra],
    )


def test_a_passing_model_exits_0_and_writes_every_file(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    ran = evaluate(inputs, out)
    assert ran.exit_code == 0, ran.output
    assert sorted(p.name for p in out.iterdir()) == [
        "policy.json",
        "predictions.csv",
        "result.json",
        "stages.json",
    ]
    result = EvaluationResult.model_validate_json((out / "result.json").read_text())
    assert result.inputs is not None and result.speed is not None and result.runtime is not None
    assert "Speed on" in ran.output and "Runtime" in ran.output and "PASSED" in ran.output
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == [
        "intake",
        "decoding",
        "inference",
        "benchmark",
        "statistics",
    ]


def test_assay_score_of_the_written_files_gives_the_same_statistics(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    ran = evaluate(
        inputs,
        out,
        "--json",
        baseline_model=inputs["baseline"],
        baseline_manifest=inputs["manifest"],
    )
    assert ran.exit_code == 0, ran.output
    evaluated = EvaluationResult.model_validate_json((out / "result.json").read_text())
    scored = CliRunner().invoke(
        app,
        [
            "score",
            str(out / "predictions.csv"),
            "--policy",
            str(out / "policy.json"),
            "--baseline",
            str(out / "baseline-predictions.csv"),
            "--json",
        ],
    )
    again = EvaluationResult.model_validate(json.loads(scored.stdout))
    without_run = evaluated.model_copy(update={"inputs": None, "speed": None, "runtime": None})
    assert again.overall == without_run.overall
    assert again.subgroups == without_run.subgroups
    assert again.fairness == without_run.fairness
    assert again.policy == without_run.policy


def test_a_failing_verdict_exits_1(inputs: dict[str, Path], tmp_path: Path) -> None:
    ran = evaluate(inputs, tmp_path / "out", policy=inputs["failing"])
    assert ran.exit_code == 1, ran.output
    assert "FAILED" in ran.output
    assert (tmp_path / "out" / "result.json").exists()


def test_a_model_returning_nan_exits_1_with_the_reason_and_writes_nothing(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    ran = evaluate(inputs, tmp_path / "out", "--json", model=inputs["nan"])
    assert ran.exit_code == 1, ran.output
    assert "NaN" in ran.output
    assert json.loads(ran.stdout)["error"] == "model_failed"
    assert not (tmp_path / "out").exists()


def test_refused_manifest_and_policy_list_every_problem_and_exit_2(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    bad_manifest = tmp_path / "manifest.json"
    document = json.loads(inputs["manifest"].read_text())
    bad_manifest.write_text(json.dumps({**document, "task": "segmentation", "labels": []}))
    bad_policy = tmp_path / "policy.json"
    bad_policy.write_text(json.dumps({"name": "p", "version": "1", "task": "binary", "ci": 3}))
    ran = evaluate(inputs, tmp_path / "out", "--json", manifest=bad_manifest, policy=bad_policy)
    assert ran.exit_code == 2, ran.output
    paths = [problem["path"] for problem in json.loads(ran.stdout)["problems"]]
    assert any(path.startswith("manifest.") for path in paths)
    assert any(path.startswith("policy") for path in paths)


def test_a_refused_dataset_lists_its_problems_and_exits_2(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "dataset"
    broken.mkdir()
    (broken / "cases.csv").write_text("case_id,patient_id,path,label\nc1,p1,missing.dcm,2\n")
    ran = evaluate(inputs, tmp_path / "out", "--json", dataset=broken)
    assert ran.exit_code == 2, ran.output
    document = json.loads(ran.stdout)
    assert document["error"] == "dataset_invalid" and len(document["problems"]) >= 2


def test_a_non_empty_out_directory_is_refused_before_the_run(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("earlier")
    ran = evaluate(inputs, tmp_path / "out")
    assert ran.exit_code == 2
    assert "not an empty directory" in ran.output


def test_a_baseline_model_needs_its_manifest(inputs: dict[str, Path], tmp_path: Path) -> None:
    ran = evaluate(inputs, tmp_path / "out", baseline_model=inputs["baseline"])
    assert ran.exit_code == 2
    assert "--baseline-manifest" in ran.output


def test_the_manifest_of_another_task_than_the_policy_is_refused(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    multilabel = write_manifest(
        dicom_manifest(
            task="multilabel",
            labels=["a", "b"],
            output={"kind": "logits", "shape": ["N", 2]},
            thresholds={"a": 0.0, "b": 0.0},
        ),
        tmp_path / "multilabel.json",
    )
    ran = evaluate(inputs, tmp_path / "out", "--json", manifest=multilabel)
    assert ran.exit_code == 2, ran.output
    assert json.loads(ran.stdout)["problems"]


def test_an_unavailable_sandbox_exits_2_and_names_the_setting(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.settings import get_settings
    from validators.runtime import sandbox

    monkeypatch.setenv("ASSAY_SANDBOX_ALLOW_WEAKER", "false")
    get_settings.cache_clear()
    monkeypatch.setattr(sandbox, "_namespace_support", lambda: ((), "unshare is not installed"))
    ran = evaluate(inputs, tmp_path / "out", "--json")
    assert ran.exit_code == 2, ran.output
    assert json.loads(ran.stdout)["error"] == "model_error"
    assert "ASSAY_SANDBOX_ALLOW_WEAKER" in ran.output
    assert not (tmp_path / "out").exists()


def test_a_pickle_is_refused_at_intake_and_exits_2(inputs: dict[str, Path], tmp_path: Path) -> None:
    import pickle

    unsafe = tmp_path / "model.pt"
    unsafe.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    ran = evaluate(inputs, tmp_path / "out", "--json", model=unsafe)
    assert ran.exit_code == 2, ran.output
    document = json.loads(ran.stdout)
    assert document["error"] == "evaluation_inputs_invalid"
    assert any("ONNX" in problem["message"] for problem in document["problems"])
