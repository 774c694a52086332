"""The synthetic example predictions: the file contract, the same cases twice, and a model that
passes the example policy against its deployed predecessor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from validators.data.predictions import read_predictions
from validators.data.synthetic import write_example_predictions
from validators.evaluation import evaluate_predictions
from validators.policy import load_policy

ROOT = Path(__file__).resolve().parents[3]


def test_both_files_follow_the_contract_on_the_same_cases(tmp_path: Path) -> None:
    files = write_example_predictions(tmp_path, n_cases=600, n_patients=250, seed=3)
    new, old = read_predictions(files.predictions), read_predictions(files.baseline)
    assert new.task == old.task == "binary"
    assert new.n_cases == 600 and new.n_patients == 250
    assert new.case_ids.tolist() == old.case_ids.tolist()
    np.testing.assert_array_equal(new.y_true, old.y_true)
    assert not np.array_equal(new.y_score, old.y_score)
    # The new model separates the classes better than the deployed one it would replace.
    assert roc_auc_score(new.y_true, new.y_score) > roc_auc_score(old.y_true, old.y_score)
    assert set(new.attributes) == {"sex", "age", "site", "scanner_manufacturer", "view"}
    assert 0.3 < new.y_true.mean() < 0.6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.csv", "predictions.csv"]


def test_the_seed_fixes_every_byte(tmp_path: Path) -> None:
    first = write_example_predictions(tmp_path / "a", n_cases=200, n_patients=90, seed=7)
    again = write_example_predictions(tmp_path / "b", n_cases=200, n_patients=90, seed=7)
    other = write_example_predictions(tmp_path / "c", n_cases=200, n_patients=90, seed=8)
    assert first.predictions.read_bytes() == again.predictions.read_bytes()
    assert first.baseline.read_bytes() == again.baseline.read_bytes()
    assert first.predictions.read_bytes() != other.predictions.read_bytes()


@pytest.mark.parametrize(("cases", "patients"), [(0, 1), (10, 0), (10, 11)])
def test_impossible_sizes_are_refused_and_nothing_is_written(
    tmp_path: Path, cases: int, patients: int
) -> None:
    with pytest.raises(ValueError, match=r"n_cases|n_patients"):
        write_example_predictions(tmp_path / "out", n_cases=cases, n_patients=patients)
    assert not (tmp_path / "out").exists()


def test_the_new_model_passes_the_example_policy_against_the_deployed_one(tmp_path: Path) -> None:
    files = write_example_predictions(tmp_path)
    result = evaluate_predictions(
        read_predictions(files.predictions),
        policy=load_policy(ROOT / "policies" / "example-binary.yaml"),
        baseline=read_predictions(files.baseline),
    )
    assert result.verdict is not None and result.verdict.passed
    outcomes = {c.id: c.outcome for c in result.verdict.criteria}
    assert outcomes["auroc-non-inferior"] == "pass"
    assert outcomes["calibration-slope"] == "pass"  # the scores are calibrated by construction
