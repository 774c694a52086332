"""Input checks, the array types, safe division and the undefined-value reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from validators.vocabulary import CiMethodName
from validators.vocabulary import ScoreScale as ScoreScale  # re-exported: the engine names it here

FloatArray: TypeAlias = NDArray[np.float64]
BoolArray: TypeAlias = NDArray[np.bool_]
IntArray: TypeAlias = NDArray[np.intp]
CiMethod = CiMethodName

NO_POSITIVES = "no positive cases (TP + FN = 0)"
NO_NEGATIVES = "no negative cases (TN + FP = 0)"
NO_WEIGHT = "no cases (the weights sum to zero)"


# --------------------------------------------------------------------------------------------
# Validation and formatting
# --------------------------------------------------------------------------------------------


def _one_dimensional(values: ArrayLike, name: str) -> NDArray[Any]:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{name} must hold one value per case (shape [N]); got shape {array.shape}"
        )
    return array


def _first_bad(mask: BoolArray) -> str:
    where = np.flatnonzero(mask)
    return f"{where.size} value{'s' if where.size != 1 else ''} (first at index {where[0]})"


def validate_labels(y_true: ArrayLike, *, name: str = "y_true") -> BoolArray:
    """Return binary labels as booleans; refuse anything but 0/1 or True/False."""
    labels = _one_dimensional(y_true, name)
    if labels.dtype == np.bool_:
        return labels.astype(np.bool_, copy=False)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(
            f"{name} must hold binary labels 0/1 or True/False; got values of type {labels.dtype}"
        )
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        found = np.unique(labels[bad])[:5].tolist()
        raise ValueError(
            f"{name} must hold binary labels 0/1 or True/False; found {found} in {_first_bad(bad)}"
        )
    as_bool: BoolArray = labels == 1
    return as_bool


def _validate_scores(y_score: ArrayLike, *, name: str) -> FloatArray:
    raw = _one_dimensional(y_score, name)
    if raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.number):
        raise ValueError(f"{name} must hold numeric scores; got values of type {raw.dtype}")
    scores = raw.astype(np.float64)
    nan = np.isnan(scores)
    if nan.any():
        raise ValueError(
            f"{name} holds NaN in {_first_bad(nan)}; expected a finite score for every case"
        )
    infinite = np.isinf(scores)
    if infinite.any():
        raise ValueError(
            f"{name} holds infinite values in {_first_bad(infinite)}; "
            "expected a finite score for every case"
        )
    return scores


def validate_binary(y_true: ArrayLike, y_score: ArrayLike) -> tuple[BoolArray, FloatArray]:
    """Return labels as booleans and scores as float64 after checking what a metric needs.

    Refuses, with a `ValueError` that says what was expected: no cases, labels other than 0/1,
    NaN or infinite scores, and labels and scores of different lengths.
    """
    labels = validate_labels(y_true)
    scores = _validate_scores(y_score, name="y_score")
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(
            f"y_true has {labels.shape[0]} values but y_score has {scores.shape[0]}; "
            "expected one label and one score per case"
        )
    if labels.shape[0] == 0:
        raise ValueError("no cases: expected at least one label and one score")
    return labels, scores


def validate_probabilities(y_prob: FloatArray, *, name: str = "y_prob") -> FloatArray:
    """Return the scores unchanged after checking they are probabilities in [0, 1]."""
    outside = (y_prob < 0.0) | (y_prob > 1.0)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{name} must be probabilities in [0, 1]; found {y_prob[first]!r} in "
            f"{_first_bad(outside)}; pass scores='logit' if these are logits"
        )
    return y_prob


def validate_sample_weight(sample_weight: ArrayLike | None, n_cases: int) -> FloatArray | None:
    """Return sample weights as float64, or None; refuse negative, NaN or misshapen weights."""
    if sample_weight is None:
        return None
    weights = _validate_scores(sample_weight, name="sample_weight")
    if weights.shape[0] != n_cases:
        raise ValueError(
            f"sample_weight has {weights.shape[0]} values for {n_cases} cases; expected one each"
        )
    negative = weights < 0
    if negative.any():
        raise ValueError(
            f"sample_weight must be >= 0; found negative weights in {_first_bad(negative)}"
        )
    return weights


def sigmoid(logits: FloatArray) -> FloatArray:
    """Return the logistic function of `logits`, without overflow for large magnitudes."""
    out = np.empty_like(logits, dtype=np.float64)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp_negative = np.exp(logits[~positive])
    out[~positive] = exp_negative / (1.0 + exp_negative)
    return out


def _weight_row(sample_weight: FloatArray | None, n_cases: int) -> NDArray[Any]:
    """Return the `[1, N]` weight matrix of a point estimate: unit or sample weights."""
    if sample_weight is None:
        return np.ones((1, n_cases), dtype=np.int64)
    return sample_weight[np.newaxis, :]


# --------------------------------------------------------------------------------------------
# Division, undefined values and their reasons
# --------------------------------------------------------------------------------------------


class MetricValue(NamedTuple):
    """A metric's value, or None with the reason it is undefined on these data."""

    value: float | None
    reason: str | None

    @property
    def defined(self) -> bool:
        """Whether the metric has a value."""
        return self.value is not None


def safe_divide_array(numerator: ArrayLike, denominator: ArrayLike) -> FloatArray:
    """Return `numerator / denominator` elementwise, NaN where the denominator is 0.

    This is the one place where division by zero is decided: x / 0 is undefined for every x,
    0 / 0 included, never 0 and never infinite. NaN marks undefined entries inside the kernels;
    it never reaches a result, where it becomes status `undefined` with its reason.
    """
    num, den = np.broadcast_arrays(
        np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    )
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def safe_divide(
    numerator: float, denominator: float, *, reason: str = "the denominator is zero"
) -> MetricValue:
    """Return `numerator / denominator`, or undefined with `reason` when the denominator is 0."""
    value = float(safe_divide_array(numerator, denominator))
    return MetricValue(None, reason) if np.isnan(value) else MetricValue(value, None)


class _Reasons:
    """Per-replicate reasons for undefined values, recorded as the kernels divide."""

    def __init__(self, size: int) -> None:
        self.codes = np.zeros(size, dtype=np.int16)
        self.texts: list[str] = []

    def mark(self, where: BoolArray, reason: str) -> None:
        """Record `reason` for the entries of `where` that have no reason yet."""
        fresh = where & (self.codes == 0)
        if fresh.any():
            if reason not in self.texts:
                self.texts.append(reason)
            self.codes[fresh] = self.texts.index(reason) + 1

    def divide(self, numerator: ArrayLike, denominator: ArrayLike, reason: str) -> FloatArray:
        """Divide through `safe_divide_array`, recording `reason` where the denominator is 0."""
        self.mark(np.asarray(denominator) == 0, reason)
        return safe_divide_array(numerator, denominator)

    def finish(self, values: FloatArray) -> MetricBatch:
        """Return the values with their reasons; a NaN without a recorded reason gets one."""
        values = np.asarray(values, dtype=np.float64).copy()
        self.mark(np.isnan(values), "not defined on these data")
        values[self.codes != 0] = np.nan
        return MetricBatch(values=values, codes=self.codes, texts=tuple(self.texts))


@dataclass(frozen=True, eq=False)
class MetricBatch:
    """One metric over R weight rows: values (NaN where undefined) and why each is undefined.

    A value may be +inf or -inf: a likelihood ratio with no false positives, a calibration slope
    under complete separation. An infinite value is defined (a bootstrap interval counts it as
    the extreme it is, never drops it); `infinite` says why it is infinite, and `value()` reports
    an infinite row as undefined with that reason, since a stored estimate is always finite.
    """

    values: FloatArray
    codes: NDArray[np.int16]
    texts: tuple[str, ...]
    infinite: str | None = None

    def reason(self, row: int = 0) -> str | None:
        """Return why row `row` is undefined, or None when it is defined."""
        code = int(self.codes[row])
        return None if code == 0 else self.texts[code - 1]

    def value(self, row: int = 0) -> MetricValue:
        """Return row `row` as a `MetricValue` (an infinite row as undefined, with why)."""
        reason = self.reason(row)
        if reason:
            return MetricValue(None, reason)
        value = float(self.values[row])
        if np.isinf(value):
            return MetricValue(None, self.infinite or f"the value is {value}")
        return MetricValue(value, None)

    @classmethod
    def undefined(cls, size: int, reason: str) -> MetricBatch:
        """Return a metric undefined in every row for one reason."""
        return cls(np.full(size, np.nan), np.ones(size, dtype=np.int16), (reason,))


def _reasons_for(values: FloatArray, reason: str) -> MetricBatch:
    collector = _Reasons(values.shape[0])
    collector.mark(np.isnan(values), reason)
    return collector.finish(values)


def check_level(level: float) -> None:
    """Refuse a confidence level outside (0, 1)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1; got {level!r}")
