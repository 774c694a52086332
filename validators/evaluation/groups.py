"""Subgroups: the analysis spec, attribute levels, groups and tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise, product
from typing import Any

import numpy as np
from numpy.typing import NDArray

from validators.metrics.validation import BoolArray, IntArray
from validators.results.estimates import (
    AGE_BAND,
    AGE_COLUMN,
    BINARY_METRIC_NAMES,
    DEFAULT_AGE_BANDS,
    DEFAULT_SUBGROUP_METRICS,
    MISSING,
    canonical_attribute,
)

DEFAULT_METRICS = DEFAULT_SUBGROUP_METRICS


MAX_INTERSECTION_CELLS = 1000
"""Most groups one intersection may have (the product of its attributes' levels)."""


_TPR, _FPR, _SELECTION = "_tpr", "_fpr", "_selection_rate"


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------


def _check_edges(edges: Sequence[float]) -> tuple[float, ...]:
    cuts = tuple(float(e) for e in edges)
    if not cuts:
        raise ValueError("age bands need at least one edge, e.g. (0, 18, 40, 65)")
    if not all(math.isfinite(c) for c in cuts):
        raise ValueError(f"age band edges must be finite numbers of years; got {list(edges)}")
    if any(b <= a for a, b in pairwise(cuts)):
        raise ValueError(f"age band edges must increase strictly; got {list(edges)}")
    if cuts[0] < 0:
        raise ValueError(f"age band edges start at 0 or above; got {list(edges)}")
    return cuts


def _check_metric_names(names: Sequence[str], what: str) -> None:
    unknown = [name for name in names if name not in BINARY_METRIC_NAMES]
    if unknown:
        raise ValueError(
            f"{what}: unknown metric {unknown[0]!r}; expected names from "
            f"{', '.join(BINARY_METRIC_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: each metric once; got {list(names)}")


@dataclass(frozen=True)
class SubgroupAnalysisSpec:
    """Which groups to form and what to compute for them (from the policy).

    `attributes` empty means every attribute column; `age` (or `age_band`) names the age column,
    banded at `age_bands`. Each intersection names two or more attributes. `metrics` get
    intervals in every group; the other metrics of a group are point estimates (method `none`).
    `disparity_metrics` get differences and ratios to overall and to the reference group.
    A single attribute with more than `max_levels` distinct known values is refused (it is an
    identifier or a date, not a group): name the attributes to evaluate instead.
    """

    attributes: tuple[str, ...] = ()
    intersections: tuple[tuple[str, ...], ...] = ()
    age_bands: tuple[float, ...] = DEFAULT_AGE_BANDS
    min_group_size: int = 11
    metrics: tuple[str, ...] = DEFAULT_METRICS
    disparity_metrics: tuple[str, ...] = DEFAULT_METRICS
    max_levels: int = 50

    def __post_init__(self) -> None:
        _check_edges(self.age_bands)
        if self.min_group_size < 1:
            raise ValueError(f"min_group_size must be at least 1; got {self.min_group_size}")
        if self.max_levels < 2:
            raise ValueError(f"max_levels must be at least 2; got {self.max_levels}")
        _check_metric_names(self.metrics, "metrics")
        _check_metric_names(self.disparity_metrics, "disparity_metrics")
        for combination in self.intersections:
            names = [canonical_attribute(name) for name in combination]
            if len(names) < 2 or len(set(names)) != len(names):
                raise ValueError(
                    f"an intersection names two or more different attributes; got "
                    f"{list(combination)}"
                )


# --------------------------------------------------------------------------------------------
# Attribute values and levels
# --------------------------------------------------------------------------------------------


def _edge_text(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else f"{edge:g}"


def _band_names(cuts: tuple[float, ...]) -> list[str]:
    texts = [_edge_text(c) for c in cuts]
    names = [f"{a}-{b}" for a, b in pairwise(texts)] + [f"{texts[-1]}+"]
    return ([f"<{texts[0]}"] if cuts[0] > 0 else []) + names


def age_band_labels(values: NDArray[Any], edges: Sequence[float]) -> NDArray[np.object_]:
    """Return each case's age band ("0-18", ..., "65+"), None where the age is missing.

    Bands are left-closed: with edges (0, 18, 40, 65) an age of 18 is in "18-40" and 65 in
    "65+". Ages below a first edge above 0 form a band "<first". Values are numbers of years, or
    strings holding one; None, NaN and blank strings are missing. Anything else (text, a negative
    or infinite age) raises `ValueError` naming the first line (row i is line i + 2 of a CSV with
    a header, as in the predictions file).
    """
    cuts = _check_edges(edges)
    names = np.array(_band_names(cuts), dtype=object)
    column = np.asarray(values, dtype=object)
    missing = _missing(column)
    ages = np.full(column.shape[0], np.nan)
    bad = np.zeros(column.shape[0], dtype=bool)
    present = np.flatnonzero(~missing)
    try:
        ages[present] = column[present].astype(np.float64)
    except (TypeError, ValueError):
        for i in present:
            try:
                ages[i] = float(column[i])
            except (TypeError, ValueError):
                bad[i] = True
    bad |= ~missing & (~np.isfinite(ages) | (ages < 0))
    bad &= ~missing
    if bad.any():
        where = np.flatnonzero(bad)
        first = int(where[0])
        raise ValueError(
            f"column {AGE_COLUMN!r}: line {first + 2} has {column[first]!r} but an age is a "
            f"non-negative number of years, or empty when unknown ({where.shape[0]} such "
            f"value{'s' if where.shape[0] != 1 else ''})"
        )
    offset = 0 if cuts[0] > 0 else -1
    band = np.searchsorted(np.asarray(cuts), ages[present], side="right") + offset
    out = np.full(column.shape[0], None, dtype=object)
    out[present] = names[band]
    return out


def _missing(column: NDArray[np.object_]) -> BoolArray:
    """Return where values are missing: None, NaN, or a blank string."""
    missing: BoolArray = np.asarray(column == None) | np.asarray(column != column)  # noqa: E711
    strings = np.flatnonzero(~missing)
    if strings.shape[0]:
        blank = np.char.strip(column[strings].astype(np.str_)) == ""
        missing[strings[blank]] = True
    return missing


def _text(values: NDArray[Any]) -> NDArray[np.str_]:
    """Return each value as stripped text, `MISSING` where it is missing."""
    column = np.asarray(values, dtype=object)
    missing = _missing(column)
    text = np.full(column.shape[0], MISSING, dtype=object)
    present = np.flatnonzero(~missing)
    text[present] = np.char.strip(column[present].astype(np.str_))
    return text.astype(np.str_)


def _level_key(level: str) -> tuple[int, float, str]:
    if level == MISSING:
        return (2, 0.0, level)
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


@dataclass(frozen=True, eq=False)
class _Attribute:
    """One attribute column as level codes: `codes[i]` indexes `levels`."""

    name: str
    codes: IntArray
    levels: tuple[str, ...]


def _attribute(name: str, values: NDArray[Any], *, order: Sequence[str] | None) -> _Attribute:
    text = _text(values)
    found, inverse = np.unique(text, return_inverse=True)
    found_levels = [str(level) for level in found]
    if order is None:
        levels = sorted(found_levels, key=_level_key)
    else:
        levels = [level for level in order if level in set(found_levels)]
        levels += [MISSING] if MISSING in found_levels else []
    position = np.array([levels.index(level) for level in found_levels], dtype=np.intp)
    return _Attribute(name=name, codes=position[inverse], levels=tuple(levels))


# --------------------------------------------------------------------------------------------
# Groups and tables
# --------------------------------------------------------------------------------------------


def group_label(attributes: Mapping[str, str]) -> str:
    """Return a group's label: "sex=F", or "sex=F & age_band=40-65" for an intersection."""
    return " & ".join(f"{name}={value}" for name, value in attributes.items())


@dataclass(eq=False)
class _Group:
    table: int
    values: dict[str, str]
    index: IntArray
    population: int | None = None  # index into the populations, None when empty

    @property
    def label(self) -> str:
        return group_label(self.values)

    @property
    def n_cases(self) -> int:
        return int(self.index.shape[0])

    @property
    def missing(self) -> bool:
        return MISSING in self.values.values()


@dataclass(eq=False)
class _Table:
    attributes: tuple[str, ...]
    groups: list[_Group] = field(default_factory=list)
    reference: _Group | None = None


def _resolve(name: str, available: Mapping[str, _Attribute]) -> _Attribute:
    canonical = canonical_attribute(name)
    if canonical not in available:
        raise ValueError(
            f"attribute {name!r} is not a column of the predictions; expected one of "
            f"{', '.join(sorted(available)) or '(none: the file has no attribute columns)'}"
        )
    return available[canonical]


def _tables(attributes: Mapping[str, _Attribute], spec: SubgroupAnalysisSpec) -> list[_Table]:
    singles = list(spec.attributes) if spec.attributes else list(attributes)
    chosen: list[tuple[_Attribute, ...]] = []
    for name in dict.fromkeys(canonical_attribute(n) for n in singles):
        attribute = _resolve(name, attributes)
        known = len([level for level in attribute.levels if level != MISSING])
        if known > spec.max_levels:
            raise ValueError(
                f"attribute {name!r} has {known} distinct values, more than "
                f"{spec.max_levels}: it looks like an identifier or a date, not a group; name "
                "the attributes to evaluate in the policy (subgroups.attributes)"
            )
        chosen.append((attribute,))
    for combination in spec.intersections:
        parts = tuple(_resolve(name, attributes) for name in combination)
        cells = math.prod(len(part.levels) for part in parts)
        if cells > MAX_INTERSECTION_CELLS:
            raise ValueError(
                f"the intersection {' x '.join(p.name for p in parts)} has {cells} groups, more "
                f"than {MAX_INTERSECTION_CELLS}; intersect attributes with fewer levels"
            )
        chosen.append(parts)
    tables = []
    for number, parts in enumerate(chosen):
        table = _Table(attributes=tuple(part.name for part in parts))
        shape = tuple(len(part.levels) for part in parts)
        combined = np.ravel_multi_index(tuple(part.codes for part in parts), shape)
        order = np.argsort(combined, kind="stable")
        bounds = np.searchsorted(combined[order], np.arange(math.prod(shape) + 1))
        for cell, levels in enumerate(product(*(part.levels for part in parts))):
            index = np.sort(order[bounds[cell] : bounds[cell + 1]])
            values = {part.name: level for part, level in zip(parts, levels, strict=True)}
            table.groups.append(_Group(table=number, values=values, index=index))
        candidates = [g for g in table.groups if g.n_cases and not g.missing]
        # The reference is the largest group with a known value (the first, on a tie).
        table.reference = max(candidates, key=lambda g: g.n_cases, default=None)
        tables.append(table)
    return tables


def group_members(
    attributes: Mapping[str, NDArray[Any]], n_cases: int, spec: SubgroupAnalysisSpec
) -> list[list[IntArray]]:
    """Return the cases (increasing indices into the input) of every group, table by table.

    The tables and groups are those `evaluate_subgroups` returns for the same attributes and
    spec, in the same order (empty groups have no cases).
    """
    return [
        [group.index for group in table.groups]
        for table in _tables(_columns(attributes, n_cases, spec), spec)
    ]


def _columns(
    attributes: Mapping[str, NDArray[Any]], n_total: int, spec: SubgroupAnalysisSpec
) -> dict[str, _Attribute]:
    columns: dict[str, _Attribute] = {}
    for name, raw_values in attributes.items():
        column = np.asarray(raw_values, dtype=object)
        if column.ndim != 1 or column.shape[0] != n_total:
            raise ValueError(
                f"attribute {name!r} has shape {column.shape}; expected one value per case "
                f"({n_total})"
            )
        canonical = canonical_attribute(name)
        if canonical in columns:
            raise ValueError(f"attributes {AGE_COLUMN!r} and {AGE_BAND!r} cannot both be given")
        if name == AGE_COLUMN:
            bands = age_band_labels(column, spec.age_bands)
            columns[canonical] = _attribute(
                canonical, bands, order=_band_names(_check_edges(spec.age_bands))
            )
        else:
            columns[canonical] = _attribute(canonical, column, order=None)
    return columns
