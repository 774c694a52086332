"""Tests of `assay score`: a predictions file scored locally, as a table or as typed JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from registry.cli import app
from tests.registry.scoring_example import blocks
from tests.validators.evaluation.test_predictions import write_predictions
from validators.results import EvaluationResult

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["score", *args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def predictions_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_predictions(tmp_path_factory.mktemp("score") / "predictions.csv")


def test_the_scales_offered_are_the_vocabulary_scales() -> None:
    # The command line spells the scales out (it imports nothing of validators at start-up).
    from registry.cli.scoring import ScoreScale
    from validators.vocabulary import SCORE_SCALES

    assert tuple(ScoreScale) == SCORE_SCALES
    assert (
        "'ratio' is not one of 'probability', 'logit'" in run("x.csv", "--scores", "ratio").output
    )


def write_policy(path: Path, *criteria: dict[str, Any], **fields: Any) -> Path:
    """Write a JSON policy with 200 replicates (fast) and the given criteria."""
    document = {
        "name": "cli-test",
        "version": "1",
        "task": "binary",
        "ci": {"replicates": 200},
        **fields,
        "criteria": [
            {"id": f"c{i}", "description": "A criterion.", **criterion}
            for i, criterion in enumerate(criteria)
        ],
    }
    path.write_text(json.dumps(document))
    return path


AUROC_AT_LEAST = {"kind": "metric", "metric": "auroc", "on": "lower", "op": ">="}


def test_scorecard_without_policy(predictions_csv: Path) -> None:
    result = run(str(predictions_csv))
    assert result.exit_code == 0, result.output
    for heading in ("Assay scorecard", "Overall", "Subgroups: sex", "Subgroups: age_band"):
        assert heading in result.stdout
    assert "insufficient n" in result.stdout  # site=D has fewer than 11 cases
    assert "No policy given" in result.stdout


def test_passing_policy_exits_0(predictions_csv: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json", {**AUROC_AT_LEAST, "value": 0.7})
    result = run(str(predictions_csv), "--policy", str(policy))
    assert result.exit_code == 0, result.output
    assert "Verdict: PASSED" in result.stdout
    assert "Policy criteria" in result.stdout


def test_failing_policy_exits_1(predictions_csv: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json", {**AUROC_AT_LEAST, "value": 0.999})
    result = run(str(predictions_csv), "--policy", str(policy))
    assert result.exit_code == 1, result.output
    assert "Verdict: FAILED" in result.stdout
    assert "1 required criterion failed (c0)" in result.stdout


def test_a_failed_advisory_criterion_still_exits_0(predictions_csv: Path, tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path / "p.json", {**AUROC_AT_LEAST, "value": 0.999, "severity": "advisory"}
    )
    result = run(str(predictions_csv), "--policy", str(policy))
    assert result.exit_code == 0, result.output
    assert "Verdict: PASSED" in result.stdout and "advisory not met: c0" in result.stdout


def test_example_policy_fails_closed_on_the_small_site(predictions_csv: Path) -> None:
    # site=D has fewer than 11 cases: the required per-group criteria lack data there.
    result = run(str(predictions_csv), "--policy", str(ROOT / "policies" / "example-binary.yaml"))
    assert result.exit_code == 1, result.output
    assert "lacked data (sensitivity-every-group" in result.stdout


def test_json_parses_into_the_result(predictions_csv: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json", {**AUROC_AT_LEAST, "value": 0.7})
    result = run(str(predictions_csv), "--policy", str(policy), "--json")
    assert result.exit_code == 0, result.output
    parsed = EvaluationResult.model_validate_json(result.stdout)
    assert parsed.verdict is not None and parsed.verdict.passed
    assert parsed.policy is not None and parsed.policy["name"] == "cli-test"


def test_json_of_a_failing_policy_exits_1(predictions_csv: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json", {**AUROC_AT_LEAST, "value": 0.999})
    result = run(str(predictions_csv), "--policy", str(policy), "--json")
    assert result.exit_code == 1
    parsed = EvaluationResult.model_validate_json(result.stdout)
    assert parsed.verdict is not None and not parsed.verdict.passed


def test_threshold_and_scores_options(predictions_csv: Path) -> None:
    result = run(str(predictions_csv), "--threshold", "0.3", "--scores", "probability", "--json")
    assert result.exit_code == 0, result.output
    parsed = EvaluationResult.model_validate_json(result.stdout)
    assert parsed.policy is not None and parsed.policy["threshold"] == 0.3


def test_vendor_view_has_no_numbers_for_a_small_group(
    predictions_csv: Path, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "p.json")
    result = run(str(predictions_csv), "--policy", str(policy), "--view", "vendor", "--json")
    assert result.exit_code == 0, result.output
    parsed = EvaluationResult.model_validate_json(result.stdout)
    assert parsed.view == "vendor"
    site = next(t for t in parsed.subgroups if t.attributes == ["site"])
    small = next(g for g in site.groups if g.label == "site=D")
    assert small.status == "suppressed"
    assert (small.n_cases, small.n_patients, small.metrics) == (None, None, None)
    table = run(str(predictions_csv), "--policy", str(policy), "--view", "vendor")
    assert "suppressed" in table.stdout


def test_bad_csv_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("case_id,patient_id,label,score\nc1,p1,1,0.9\nc2,p2,0,0.2\nc3,p3,1,high\n")
    result = run(str(path))
    assert result.exit_code == 2
    assert "column 'score': line 4 has 'high'" in result.stderr
    assert result.stdout == ""


def test_bad_csv_with_json_prints_the_error_document(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("case_id,patient_id,label,score\nc1,p1,2,0.9\n")
    result = run(str(path), "--json")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["error"] == "predictions_invalid"
    assert "line 2" in document["detail"]


def test_probabilities_above_one_suggest_logits(tmp_path: Path) -> None:
    path = tmp_path / "logits.csv"
    path.write_text("case_id,patient_id,label,score\nc1,p1,1,2.5\nc2,p2,0,-1.0\n")
    result = run(str(path))
    assert result.exit_code == 2
    assert "line 2 has 2.5" in result.stderr and "--scores logit" in result.stderr


def test_missing_file(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.csv"))
    assert result.exit_code == 2
    assert "no predictions file at" in result.stderr


def test_bad_policy_lists_its_problems(predictions_csv: Path, tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text(
        "name: p\nversion: 1.10\ntask: binary\ncriteria:\n"
        "  - {id: a, description: d, kind: metric, metric: aucroc, op: '>=', value: 0.8}\n"
    )
    result = run(str(predictions_csv), "--policy", str(policy))
    assert result.exit_code == 2
    assert "is not a valid policy: 2 problem(s)" in result.stderr
    assert "  version: the version is text" in result.stderr
    assert "  criteria.0.metric: got 'aucroc'; expected one of" in result.stderr
    as_json = run(str(predictions_csv), "--policy", str(policy), "--json")
    document = json.loads(as_json.stdout)
    assert document["error"] == "policy_invalid"
    assert {p["path"] for p in document["problems"]} == {"version", "criteria.0.metric"}


def test_policy_for_another_task(predictions_csv: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json", task="multilabel")
    result = run(str(predictions_csv), "--policy", str(policy))
    assert result.exit_code == 2
    assert "is for a multilabel task but the predictions file is binary" in result.stderr


def test_baseline_with_other_cases(predictions_csv: Path, tmp_path: Path) -> None:
    baseline = write_predictions(tmp_path / "baseline.csv", n_cases=1990)
    policy = write_policy(
        tmp_path / "p.json", {"kind": "non_inferiority", "metric": "auroc", "margin": 0.02}
    )
    result = run(str(predictions_csv), "--policy", str(policy), "--baseline", str(baseline))
    assert result.exit_code == 2
    assert "the baseline lacks 10 case(s)" in result.stderr


def test_baseline_non_inferiority(predictions_csv: Path, tmp_path: Path) -> None:
    baseline = write_predictions(tmp_path / "baseline.csv", separation=0.6)
    policy = write_policy(
        tmp_path / "p.json", {"kind": "non_inferiority", "metric": "auroc", "margin": 0.02}
    )
    result = run(str(predictions_csv), "--policy", str(policy), "--baseline", str(baseline))
    assert result.exit_code == 0, result.output
    assert "Verdict: PASSED" in result.stdout
    worse = run(str(baseline), "--policy", str(policy), "--baseline", str(predictions_csv))
    assert worse.exit_code == 1


def test_baseline_without_a_criterion_warns(predictions_csv: Path) -> None:
    result = run(str(predictions_csv), "--baseline", str(predictions_csv), "--json")
    assert result.exit_code == 0
    assert "only checked" in result.stderr
    EvaluationResult.model_validate_json(result.stdout)  # stdout holds only the result


# The bootstrap's calibration intercept and slope come from one Newton fit per replicate that
# stops at a relative step of 1e-5 (validators' batched logistic fit: its error is then near
# 1e-7, "far below the bootstrap's Monte Carlo error"). A last-bit difference in a BLAS sum can
# stop a replicate one step earlier or later, so their interval bounds agree to that precision,
# not to the 1e-9 that every other number of the example keeps.
_REPLICATE_FITS = (
    ".calibration_intercept.lower",
    ".calibration_intercept.upper",
    ".calibration_slope.lower",
    ".calibration_slope.upper",
)


def _close(ours: Any, theirs: Any, path: str = "") -> None:
    """Assert two JSON values are equal, floats to 1e-9 (BLAS sums may differ in the last bits)."""
    if isinstance(ours, dict):
        assert isinstance(theirs, dict) and ours.keys() == theirs.keys(), path
        for key in ours:
            _close(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(ours) == len(theirs), path
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _close(a, b, f"{path}.{index}")
    elif isinstance(ours, float) and isinstance(theirs, float | int):
        rel = 1e-6 if path.endswith(_REPLICATE_FITS) else 1e-9
        assert ours == pytest.approx(theirs, rel=rel, abs=1e-12), path
    else:
        assert ours == theirs, path


def test_the_complete_example_in_the_docs_is_what_the_code_prints(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "scoring.md").read_text(encoding="utf-8")
    csv = next(block for block in blocks(text, "csv") if block.count("\n") > 30)
    policy = next(block for block in blocks(text, "yaml") if "name: docs-example" in block)
    (documented,) = blocks(text, "json")
    (tmp_path / "example.csv").write_text(csv)
    (tmp_path / "policy.yaml").write_text(policy)
    result = run(str(tmp_path / "example.csv"), "--policy", str(tmp_path / "policy.yaml"), "--json")
    assert result.exit_code == 0, result.output
    ours, theirs = json.loads(result.stdout), json.loads(documented)
    # Each digest must match its own numbers (validation refuses a stale one); the numbers are
    # then compared to their precision below, since a digest of floats differs with any last bit.
    EvaluationResult.model_validate(theirs)
    EvaluationResult.model_validate(ours)
    ours.pop("statistics_digest")
    theirs.pop("statistics_digest")
    for key in (
        "created_at",
        "assay_version",
        "python_version",
        "numpy_version",
        "sklearn_version",
    ):
        ours["provenance"].pop(key)
        theirs["provenance"].pop(key)
    _close(ours, theirs)


def test_example_predictions_then_score_with_the_baseline(tmp_path: Path) -> None:
    written = CliRunner().invoke(
        app, ["example-predictions", "--out", str(tmp_path), "--cases", "900", "--patients", "400"]
    )
    assert written.exit_code == 0, written.output
    assert "Wrote 900 synthetic cases of 400 patients" in written.stdout
    assert f"assay score {tmp_path / 'predictions.csv'} --baseline" in written.stdout
    policy = write_policy(
        tmp_path / "p.json",
        {"kind": "non_inferiority", "metric": "auroc", "margin": 0.05},
    )
    result = run(
        str(tmp_path / "predictions.csv"),
        "--baseline",
        str(tmp_path / "baseline.csv"),
        "--policy",
        str(policy),
    )
    assert result.exit_code == 0, result.output
    assert "Verdict: PASSED" in result.stdout


def test_example_predictions_json_and_bad_sizes(tmp_path: Path) -> None:
    written = CliRunner().invoke(
        app, ["example-predictions", "--out", str(tmp_path), "--cases", "50", "--json"]
    )
    assert written.exit_code == 2, written.output  # 800 patients cannot fit in 50 cases
    assert "n_patients must be between 1 and n_cases (50)" in written.output
    assert not (tmp_path / "predictions.csv").exists()
    written = CliRunner().invoke(
        app,
        [
            "example-predictions",
            "--out",
            str(tmp_path),
            "--cases",
            "50",
            "--patients",
            "20",
            "--json",
        ],
    )
    assert written.exit_code == 0, written.output
    document = json.loads(written.stdout)
    assert document == {
        "predictions": str(tmp_path / "predictions.csv"),
        "baseline": str(tmp_path / "baseline.csv"),
        "cases": 50,
        "patients": 20,
    }


def test_multilabel_file_gets_a_table_per_label_and_labelled_disparities(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 400
    truth = rng.random((n, 2)) < [0.4, 0.3]
    scores = 1 / (1 + np.exp(-(2.0 * (2 * truth - 1) + rng.normal(size=(n, 2)))))
    lines = ["case_id,patient_id,label:effusion,score:effusion,label:nodule,score:nodule,site"]
    lines += [
        f"c{i},p{i},{int(truth[i, 0])},{scores[i, 0]:.5f},{int(truth[i, 1])},{scores[i, 1]:.5f},"
        f"{'AB'[i % 2]}"
        for i in range(n)
    ]
    path = tmp_path / "multilabel.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run(str(path))
    assert result.exit_code == 0, result.output
    for heading in ("Subgroups: site, label effusion", "Subgroups: site, label nodule"):
        assert heading in result.stdout
    assert " label " in result.stdout.split("Disparities")[1].splitlines()[2]
    document = json.loads(run(str(path), "--json").stdout)
    assert {d["label"] for d in document["disparities"]} == {"effusion", "nodule"}
    group = document["subgroups"][0]["groups"][0]
    assert group["metrics"]["task"] == "multilabel"
    assert group["metrics"]["macro"]["auroc"]["lower"] is not None
    # Each label's table shows that label's numbers.
    for k, label in enumerate(("effusion", "nodule")):
        auroc = group["metrics"]["per_label"][k]["metrics"]["auroc"]["estimate"]
        section = result.stdout.split(f"Subgroups: site, label {label}")[1]
        row = next(line for line in section.splitlines() if line.strip().startswith("site=A"))
        assert f"{auroc:.3f}" in row.split()


def test_two_score_columns_exit_2_naming_the_column(tmp_path: Path) -> None:
    """Not scored on the first `score` (pandas would have renamed the second to `score.1`)."""
    path = tmp_path / "two-scores.csv"
    path.write_text(
        "case_id,patient_id,label,score,score\nc1,p1,1,0.9,0.1\nc2,p2,0,0.2,0.8\nc3,p3,1,0.7,0.3\n"
    )
    result = run(str(path))
    assert result.exit_code == 2, result.output
    assert (
        "column 'score' appears 2 times (columns 4 and 5); each column name must appear once."
        in result.stderr
    )
    assert result.stdout == ""
