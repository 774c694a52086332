"""The effective policy and the checks of a predictions file against it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from validators.data.predictions import Predictions
from validators.policy import AVERAGES, Policy, parse_policy
from validators.vocabulary import ScoreScale

Progress = Callable[[str], None]
"""Receives a short description of each step as it starts (for a spinner)."""

MAX_LEVELS_BY_DEFAULT = 50
"""An attribute column with more distinct values is not grouped by unless a policy names it."""


class EvaluationInputError(ValueError):
    """The inputs do not fit together (policy, predictions, baseline); the message says how."""


def _quiet(_: str) -> None:
    return None


def _listed(values: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


# --------------------------------------------------------------------------------------------
# The effective policy
# --------------------------------------------------------------------------------------------


def _effective_policy(
    predictions: Predictions,
    policy: Policy | None,
    *,
    threshold: float | None,
    scores: ScoreScale | None,
) -> Policy:
    base = policy if policy is not None else Policy.default(task=predictions.task)
    if base.task != predictions.task:
        raise EvaluationInputError(
            f"the policy {base.name!r} is for a {base.task} task but the predictions file is "
            f"{predictions.task} ({_columns_hint(predictions.task)}); use a {predictions.task} "
            "policy"
        )
    updates: dict[str, Any] = {}
    if threshold is not None:
        updates["threshold"] = threshold
    if scores is not None:
        updates["scores"] = scores
    if updates:
        source = "the policy with the threshold and scores given on the command line"
        base = parse_policy({**base.model_dump(mode="json"), **updates}, source=source)
    if predictions.task == "multilabel":
        _check_labels(predictions, base)
    return base


def _columns_hint(task: str) -> str:
    return "label and score columns" if task == "binary" else "label:<name> and score:<name>"


def _check_labels(predictions: Predictions, policy: Policy) -> None:
    labels = list(predictions.labels)
    if isinstance(policy.threshold, dict):
        missing = [label for label in labels if label not in policy.threshold]
        extra = [label for label in policy.threshold if label not in labels]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"has no threshold for {_listed(missing)}")
            if extra:
                parts.append(f"names {_listed(extra)}, which the predictions file lacks")
            raise EvaluationInputError(
                f"the policy's per-label thresholds do not match the labels of the predictions "
                f"file ({', '.join(labels)}): it {' and '.join(parts)}"
            )
    for criterion in policy.criteria:
        label = getattr(criterion, "label", None)
        if label is not None and label not in AVERAGES and label not in labels:
            raise EvaluationInputError(
                f"criterion {criterion.id!r} names the label {label!r}, which the predictions "
                f"file does not have (labels: {', '.join(labels)}; or macro, micro)"
            )


def _check_probabilities(predictions: Predictions) -> None:
    """Refuse probabilities outside [0, 1], naming the column and line, with the logit hint."""
    columns = (
        [("score", predictions.y_score)]
        if predictions.task == "binary"
        else [
            (f"score:{name}", predictions.y_score[:, k])
            for k, name in enumerate(predictions.labels)
        ]
    )
    for column, values in columns:
        bad = (values < 0.0) | (values > 1.0)
        if bad.any():
            rows = np.flatnonzero(bad)
            lines = ", ".join(str(int(i) + 2) for i in rows[:5])
            more = f" and {rows.shape[0] - 5} more" if rows.shape[0] > 5 else ""
            raise EvaluationInputError(
                f"column {column!r}: line {int(rows[0]) + 2} has {values[rows[0]]:g} but "
                f"probabilities lie in [0, 1] (lines {lines}{more}); if the scores are logits, "
                "pass --scores logit (or scores: logit in the policy)"
            )


def _bootstrap_groups(predictions: Predictions, policy: Policy) -> NDArray[np.str_] | None:
    """Return the patient ids to resample by, or None to resample cases."""
    unit = policy.ci.unit
    if unit == "case":
        return None
    if unit == "patient" or predictions.n_patients < predictions.n_cases:
        return predictions.patient_ids
    return None
