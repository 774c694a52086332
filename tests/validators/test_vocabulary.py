"""Tests of the vocabulary: one entry per metric the engine computes, and every copy agreeing.

The vocabulary is the one place for the facts about tasks, score scales, interval methods and
metrics. Some modules still spell a fact out (the engine's kernels, the result types, the
command line, which must start without importing validators); these tests fail when a metric,
a task or a scale is added to one place and not the other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

from validators import vocabulary
from validators.vocabulary import (
    AVERAGES,
    CALIBRATION_METRIC_NAMES,
    CI_METHODS,
    DIRECTED_METRIC_NAMES,
    METRIC_NAMES,
    METRICS,
    ONE_SIDED_UPPER_METRICS,
    SCORE_SCALE_PLURALS,
    SCORE_SCALES,
    TASKS,
    ScoreOutput,
    higher_is_better,
    metric_title,
)

ROOT = Path(__file__).resolve().parents[2]


def family(*names: str) -> set[str]:
    """Return the metrics whose family is one of `names`."""
    return {metric for metric, info in METRICS.items() if info.family in names}


# --------------------------------------------------------------------------------------------
# The metrics: every one the engine computes has a title, a direction and a family
# --------------------------------------------------------------------------------------------


def test_the_metric_table_is_keyed_by_every_metric_name_in_order() -> None:
    assert tuple(METRICS) == METRIC_NAMES


def test_the_metrics_are_exactly_those_a_binary_result_holds() -> None:
    from validators.results import BINARY_METRIC_NAMES, BinaryMetrics, Estimate

    estimates = [
        name for name, field in BinaryMetrics.model_fields.items() if field.annotation is Estimate
    ]
    assert METRIC_NAMES == BINARY_METRIC_NAMES == tuple(estimates)


def test_the_engine_computes_every_metric_and_no_other() -> None:
    from validators.evaluation import binary_metrics

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    computed = binary_metrics(labels, rng.random(200), ci="none")
    estimates = {
        name
        for name in type(computed).model_fields
        if type(getattr(computed, name)).__name__ == "Estimate"
    }
    assert estimates == set(METRICS)


def test_every_metric_has_a_distinct_title() -> None:
    titles = [info.title for info in METRICS.values()]
    assert all(title.strip() == title and title for title in titles)
    assert len(set(titles)) == len(titles)


def test_the_count_families_are_the_metrics_of_the_count_kernel() -> None:
    from validators.metrics import COUNT_METRICS

    assert family("proportion", "count") == set(COUNT_METRICS)


def test_the_proportions_are_the_metrics_that_get_score_intervals() -> None:
    # The engine derives its list from the vocabulary; what it does with it is the check here.
    from validators.evaluation import EvaluationSettings

    settings = EvaluationSettings.create(ci="wilson")
    for name, info in METRICS.items():
        assert (settings.method_for(name) == "wilson") == (info.family == "proportion"), name


def test_the_ranking_family_depends_on_the_order_of_the_scores_alone() -> None:
    # A ranking metric cannot change under a strictly increasing map of the scores; every other
    # metric with an estimate here moves (the map changes the probabilities themselves).
    from validators.evaluation import binary_metrics

    rng = np.random.default_rng(1)
    scores = rng.random(2_000)
    labels = (rng.random(scores.size) < scores).astype(int)
    squeezed = scores**3
    plain = binary_metrics(labels, scores, ci="none", threshold=0.5)
    mapped = binary_metrics(labels, squeezed, ci="none", threshold=0.5**3)
    for name, info in METRICS.items():
        before, after = getattr(plain, name).estimate, getattr(mapped, name).estimate
        if info.family == "ranking":
            assert after == pytest.approx(before, abs=1e-12), name
        elif info.family in ("loss", "calibration"):
            assert after != pytest.approx(before, abs=1e-6), name


def test_the_one_sided_metrics_are_the_ece_variants_calibration_reports() -> None:
    from validators.metrics.calibration import ECE_METRICS

    assert frozenset(ECE_METRICS) == ONE_SIDED_UPPER_METRICS
    assert family("calibration") >= ONE_SIDED_UPPER_METRICS


def test_directions_say_which_model_is_better() -> None:
    # A calibrated, discriminating model against a noisy, overconfident one on the same cases:
    # every metric with a direction must prefer the first, the way its direction says.
    from validators.evaluation import binary_metrics

    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, 20_000)
    good = 1.0 / (1.0 + np.exp(-logits))
    labels = (rng.random(logits.size) < good).astype(int)
    poor = 1.0 / (1.0 + np.exp(-3.0 * (logits + rng.normal(0.0, 3.0, logits.size))))
    ours, theirs = binary_metrics(labels, good, ci="none"), binary_metrics(labels, poor, ci="none")
    for name, info in METRICS.items():
        if info.direction is None:
            continue
        better, worse = getattr(ours, name).estimate, getattr(theirs, name).estimate
        assert (better > worse) == (info.direction == "higher"), name
        assert higher_is_better(name) == (info.direction == "higher"), name


def test_metrics_without_a_direction_have_an_ideal_rather_than_a_best() -> None:
    assert {m for m, info in METRICS.items() if info.direction is None} == {
        "prevalence",
        "calibration_slope",
        "calibration_intercept",
    }
    # As it always has, a metric with no direction (or no entry) reads higher-is-better.
    assert higher_is_better("prevalence") and higher_is_better("latency_p50_ms")


def test_directed_metrics_are_those_with_a_direction_in_order() -> None:
    assert (
        tuple(name for name, info in METRICS.items() if info.direction is not None)
        == DIRECTED_METRIC_NAMES
    )


def test_calibration_criteria_bound_the_calibration_family_and_the_brier_score() -> None:
    assert set(CALIBRATION_METRIC_NAMES) == family("calibration") | {"brier"}


def test_a_title_is_read_by_name() -> None:
    assert metric_title("auroc") == "AUROC"
    assert metric_title("not_a_metric") == "not_a_metric"


# --------------------------------------------------------------------------------------------
# Tasks, score scales, interval methods, averages: the copies that remain agree
# --------------------------------------------------------------------------------------------


def literal_values(annotation: object) -> tuple[object, ...]:
    """Return the values of a Literal annotation, looking through Optional."""
    args = typing.get_args(annotation)
    if all(isinstance(arg, str) for arg in args):
        return args
    return next(typing.get_args(arg) for arg in args if typing.get_args(arg))


def test_tasks_agree_everywhere() -> None:
    from validators.data.predictions import Predictions
    from validators.manifest import ModelManifest
    from validators.policy import Policy
    from validators.results import EvaluationResult

    assert TASKS == ("binary", "multilabel")
    for model in (EvaluationResult, Policy, ModelManifest):
        assert literal_values(model.model_fields["task"].annotation) == TASKS, model
    assert literal_values(typing.get_type_hints(Predictions)["task"]) == TASKS


def test_score_scales_agree_everywhere() -> None:
    from validators.manifest import OutputSpec
    from validators.metrics import ScoreScale
    from validators.policy import Policy
    from validators.results import BinaryMetrics

    assert typing.get_args(ScoreScale) == SCORE_SCALES
    assert literal_values(BinaryMetrics.model_fields["scores"].annotation) == SCORE_SCALES
    assert literal_values(Policy.model_fields["scores"].annotation) == SCORE_SCALES
    assert tuple(SCORE_SCALE_PLURALS) == SCORE_SCALES
    assert set(SCORE_SCALE_PLURALS.values()) == set(typing.get_args(ScoreOutput))
    assert literal_values(OutputSpec.model_fields["kind"].annotation) == typing.get_args(
        ScoreOutput
    )


def test_ci_methods_agree_everywhere() -> None:
    from validators.evaluation import EvaluationSettings
    from validators.metrics import CiMethod
    from validators.policy import CiSpec

    assert typing.get_args(CiMethod) == CI_METHODS
    assert literal_values(CiSpec.model_fields["method"].annotation) == CI_METHODS
    for method in CI_METHODS:  # the engine's settings accept every method the policy names
        EvaluationSettings.create(ci=method)
    with pytest.raises(ValueError, match="ci must be"):
        EvaluationSettings.create(ci="jackknife")  # type: ignore[arg-type]


def test_averages_are_the_fields_of_multilabel_metrics() -> None:
    from validators.results import AveragedMetrics, MultilabelMetrics

    averaged = {
        name
        for name, field in MultilabelMetrics.model_fields.items()
        if field.annotation is AveragedMetrics
    }
    assert averaged == set(AVERAGES)


# --------------------------------------------------------------------------------------------
# A leaf
# --------------------------------------------------------------------------------------------


def test_the_vocabulary_imports_the_standard_library_only() -> None:
    tree = ast.parse(Path(vocabulary.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_importing_the_vocabulary_loads_nothing_else_of_ours() -> None:
    code = (
        "import sys, validators.vocabulary\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'validators', 'registry', 'pydantic', 'numpy'} and m not in "
        "{'validators', 'validators.vocabulary'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"
