"""Tests of `EvaluationSettings`: the one object carrying every evaluation setting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from validators.evaluation import EvaluationSettings, evaluate_binary, evaluate_multilabel
from validators.policy import parse_policy

POLICY = {
    "name": "p",
    "version": "1",
    "task": "binary",
    "threshold": 0.3,
    "scores": "probability",
    "target_specificity": 0.8,
    "target_sensitivity": 0.85,
    "calibration_bins": 5,
    "ci": {"method": ["wilson", "delong"], "replicates": 250, "level": 0.9, "seed": 7},
}


def test_from_policy_reads_every_setting_the_policy_gives() -> None:
    settings = EvaluationSettings.from_policy(parse_policy(POLICY))
    assert settings == EvaluationSettings(
        threshold=0.3,
        scores="probability",
        target_specificity=0.8,
        target_sensitivity=0.85,
        n_bins=5,
        level=0.9,
        ci=frozenset({"wilson", "delong"}),
        replicates=250,
        seed=7,
    )


def test_from_policy_takes_overrides_on_top_of_the_policy() -> None:
    settings = EvaluationSettings.from_policy(parse_policy(POLICY), ci="bootstrap", seed=3)
    assert (settings.ci, settings.seed, settings.replicates) == (frozenset({"bootstrap"}), 3, 250)


def test_from_policy_keeps_per_label_thresholds_of_a_multilabel_policy() -> None:
    policy = parse_policy(
        {"name": "p", "version": "1", "task": "multilabel", "threshold": {"a": 0.2, "b": 0.7}}
    )
    settings = EvaluationSettings.from_policy(policy)
    assert settings.threshold_for("a") == policy.threshold_for("a") == 0.2
    assert settings.for_label("b").threshold == 0.7
    assert settings.for_label("b").label_thresholds == ()


def test_create_accepts_one_method_or_several_and_normalises_numbers() -> None:
    assert EvaluationSettings.create(ci="wilson").ci == frozenset({"wilson"})
    assert EvaluationSettings.create(ci=["wilson", "delong"]).ci == frozenset({"wilson", "delong"})
    settings = EvaluationSettings.create(threshold=1, target_sensitivity=1)
    assert isinstance(settings.threshold, float)
    assert isinstance(settings.target_sensitivity, float)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ci": "jackknife"}, "ci must be"),
        ({"ci": ["none", "wilson"]}, "cannot be combined"),
        ({"scores": "odds"}, "scores must be"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"threshold": {"a": float("inf")}}, "the threshold of 'a' must be a finite number"),
        ({"target_specificity": 1.5}, "target_specificity must be between 0 and 1"),
        ({"n_bins": 0}, "n_bins must be at least 1"),
        ({"level": 1.0}, "level must be strictly between 0 and 1"),
        ({"replicates": -1}, "replicates must be 0 or more"),
        ({"seed": -2}, "seed must be a non-negative integer"),
    ],
)
def test_create_refuses_settings_no_evaluation_can_run_with(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        EvaluationSettings.create(**overrides)


def test_an_unknown_setting_is_refused_with_the_known_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown evaluation setting 'thresholds'.*threshold"):
        EvaluationSettings.create(thresholds=[0.5])


def test_a_new_setting_is_one_field_carried_by_updated() -> None:
    # Every field can be overridden through the same keyword path the entry points use.
    base = EvaluationSettings()
    for field in dataclasses.fields(EvaluationSettings):
        value = getattr(base, field.name)
        assert getattr(base.updated(**{field.name: value}), field.name) == value


def test_entry_points_take_the_settings_object_or_keywords_alike() -> None:
    rng = np.random.default_rng(4)
    labels = rng.random(120) < 0.3
    scores = np.clip(rng.random(120) * 0.6 + labels * 0.4, 0, 1)
    settings = EvaluationSettings.create(threshold=0.4, replicates=60, seed=2)
    by_object = evaluate_binary(labels, scores, settings=settings)
    by_keywords = evaluate_binary(labels, scores, threshold=0.4, replicates=60, seed=2)
    assert by_object == by_keywords
    # Keywords apply over the object.
    other_seed = evaluate_binary(labels, scores, settings=settings, seed=3)
    assert other_seed.auroc.lower != by_object.auroc.lower


def test_multilabel_thresholds_must_name_every_label() -> None:
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6], [0.1, 0.3]])
    with pytest.raises(ValueError, match=r"expected one threshold per label \(a, b\)"):
        evaluate_multilabel(truth, scores, ["a", "b"], threshold={"a": 0.5}, ci="none")
