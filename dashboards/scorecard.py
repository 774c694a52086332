"""Renders an `EvaluationResult` as terminal tables: the scorecard `assay score` prints.

Overall metrics with their intervals, each subgroup table with its flags, the differences to
overall and to the reference group, the fairness gaps, what was run, where and how fast (when the
result carries it: `dashboards.scorecard_run`), and the verdict with each criterion.
Numbers come from the result only; nothing is recomputed. rich is imported inside the functions
(the command line starts without it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from validators.results import (
    AVERAGED_METRIC_NAMES,
    DEFAULT_SUBGROUP_METRICS,
    BinaryMetrics,
    CriterionResult,
    Disparity,
    Estimate,
    EvaluationResult,
    GroupResult,
    MultilabelMetrics,
    SubgroupTable,
)
from validators.vocabulary import SCORE_SCALE_PLURALS, metric_title

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

__all__ = ["render_scorecard", "scorecard_renderables", "scorecard_text"]

BINARY_FIELDS: tuple[str, ...] = tuple(
    name for name, info in BinaryMetrics.model_fields.items() if info.annotation is Estimate
)
_OUTCOME_STYLE = {"pass": "green", "fail": "bold red", "insufficient_data": "yellow"}
_OUTCOME_TEXT = {"pass": "pass", "fail": "FAIL", "insufficient_data": "insufficient data"}


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _bound_text(value: float) -> str:
    return "unbounded" if math.isinf(value) else _number(value)


def _interval(estimate: Estimate) -> str:
    """Return the interval as text: two bounds, one side ("at most 0.04"), or nothing."""
    lower, upper = estimate.bound("lower"), estimate.bound("upper")
    if estimate.sides == "upper" and upper is not None:
        return f"at most {_bound_text(upper)}"
    if estimate.sides == "lower" and lower is not None:
        return f"at least {_bound_text(lower)}"
    if lower is None or upper is None:
        return ""
    return f"{_bound_text(lower)} to {_bound_text(upper)}"


def _title(metric: str, metrics: BinaryMetrics | None = None) -> str:
    """Return the metric's title, with its target where the result says it."""
    title = metric_title(metric)
    if metrics is not None and metric == "sensitivity_at_specificity":
        return f"{title} {metrics.target_specificity:g}"
    if metrics is not None and metric == "specificity_at_sensitivity":
        return f"{title} {metrics.target_sensitivity:g}"
    return title


def _cell(estimate: Estimate | None, *, emphasize_nonzero: bool = False) -> Text:
    """Return a two-line cell: the estimate, and its interval beneath (dim)."""
    from rich.text import Text

    if estimate is None:
        return Text("-", style="dim")
    if estimate.status == "suppressed":
        return Text("suppressed", style="dim")
    if estimate.status == "undefined":
        return Text("undefined", style="yellow")
    style = ""
    lower, upper = estimate.bound("lower"), estimate.bound("upper")
    if emphasize_nonzero and lower is not None and upper is not None:
        style = "bold" if lower > 0 or upper < 0 else ""
    text = Text(_number(estimate.estimate), style=style)
    if estimate.status == "partial":
        text.append(" (partial)", style="yellow")
    interval = _interval(estimate)
    if interval:
        text.append("\n" + interval, style="dim")
    return text


def _table(title: str, columns: Sequence[tuple[str, str]]) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in columns:
        table.add_column(name, justify="right" if justify == "right" else "left")
    return table


_METHOD_TEXTS = {
    "wilson": "Wilson",
    "wilson_clustered": "Wilson, design effect",
    "mover_wilson": "MOVER (Wilson)",
    "mover_wilson_clustered": "MOVER (Wilson, design effect)",
    "delong": "DeLong",
    "obuchowski": "Obuchowski (clustered)",
}


_METHOD_PREFIXES = {
    "bootstrap_percentile_": "bootstrap by ",
    "debiased_least_favourable_upper_": "debiased, least-favourable bound by ",
    "debiased_bootstrap_upper_": "debiased, bootstrap bound by ",
}


def _method_text(estimate: Estimate) -> str:
    """Return how an interval was computed, in words ("bootstrap by patient", "Wilson")."""
    method = estimate.method
    for prefix, words in _METHOD_PREFIXES.items():
        if method.startswith(prefix):
            return words + method.removeprefix(prefix)
    return _METHOD_TEXTS.get(method, method)


def _header(result: EvaluationResult) -> Text:
    from rich.text import Text

    provenance = result.provenance
    overall = result.overall
    if isinstance(overall, BinaryMetrics):
        cases, patients = overall.n_cases, overall.n_patients
        operating = f"threshold {overall.threshold:g} on {SCORE_SCALE_PLURALS[overall.scores]}"
    else:
        first = overall.per_label[0].metrics
        cases, patients = first.n_cases, first.n_patients
        operating = f"per-label thresholds on {SCORE_SCALE_PLURALS[first.scores]}"
    policy = result.policy or {}
    name = f"{policy.get('name', '-')} v{policy.get('version', '-')}" if policy else "none"
    if result.verdict is None:
        name = "none (default settings)"
    text = Text("Assay scorecard", style="bold")
    patients_text = f", {_count(patients)} patients" if patients is not None else ""
    text.append(
        f"  {result.task} task, {_count(cases)} cases{patients_text}, {result.view} view\n",
    )
    unit = f" by {provenance.bootstrap_unit}" if provenance.bootstrap_unit else ""
    proportions = (
        ""
        if provenance.ci_method == "none"
        else " (proportions: Wilson"
        + (", with the design effect" if provenance.bootstrap_unit == "patient" else "")
        + ")"
    )
    text.append(
        f"intervals: {provenance.ci_method}{unit}{proportions}, {provenance.replicates:,} "
        f"replicates, {provenance.level:.0%}, seed {provenance.seed}; {operating}; policy {name}",
        style="dim",
    )
    return text


def _overall_binary(metrics: BinaryMetrics, level: float) -> Table:
    table = _table(
        "Overall",
        [
            ("metric", "left"),
            ("estimate", "right"),
            (f"{level:.0%} interval", "right"),
            ("n", "right"),
            ("method", "left"),
            ("note", "left"),
        ],
    )
    for name in BINARY_FIELDS:
        estimate = getattr(metrics, name)
        assert isinstance(estimate, Estimate)
        shown = "-" if estimate.estimate is None else _number(estimate.estimate)
        if estimate.status != "ok":
            shown = estimate.status
        table.add_row(
            _title(name, metrics),
            shown,
            _interval(estimate),
            _count(estimate.n),
            _method_text(estimate),
            estimate.reason or "",
        )
    counts = f"{_count(metrics.n_positive)} positive, {_count(metrics.n_negative)} negative cases"
    table.caption = counts
    table.caption_justify = "left"
    return table


def _overall_multilabel(metrics: MultilabelMetrics) -> Table:
    columns = [*metrics.labels, "macro", "micro"]
    table = _table("Overall", [("metric", "left"), *((c, "right") for c in columns)])
    by_label = {entry.label: entry.metrics for entry in metrics.per_label}
    for name in AVERAGED_METRIC_NAMES:
        cells = [_cell(getattr(by_label[label], name)) for label in metrics.labels]
        cells += [_cell(getattr(metrics.macro, name)), _cell(getattr(metrics.micro, name))]
        table.add_row(_title(name), *cells)
    return table


def _group_binary(group: GroupResult, label: str | None) -> BinaryMetrics | None:
    """Return a group's binary metrics: its own, or those of `label` in a multilabel task."""
    metrics = group.metrics
    if isinstance(metrics, BinaryMetrics):
        return metrics
    if isinstance(metrics, MultilabelMetrics):
        for entry in metrics.per_label:
            if entry.label == label:
                return entry.metrics
    return None


def _group_metric_names(tables: Sequence[SubgroupTable]) -> list[str]:
    """Return the metrics worth a column: those with intervals in some group, or the defaults.

    A multilabel group gives every metric an interval, so its columns stay the defaults.
    """
    chosen = set(DEFAULT_SUBGROUP_METRICS)
    for table in tables:
        for group in table.groups:
            if isinstance(group.metrics, BinaryMetrics):
                for name in BINARY_FIELDS:
                    estimate = getattr(group.metrics, name)
                    if isinstance(estimate, Estimate) and estimate.lower is not None:
                        chosen.add(name)
    return [name for name in BINARY_FIELDS if name in chosen]


def _flag(group: GroupResult) -> Text:
    from rich.text import Text

    if group.status == "empty":
        return Text("empty", style="dim")
    if group.status == "suppressed":
        return Text("suppressed", style="dim")
    if group.insufficient_n:
        return Text("insufficient n", style="yellow")
    return Text("")


def _subgroup_table(table: SubgroupTable, names: Sequence[str], label: str | None = None) -> Table:
    with_patients = any(g.n_patients is not None for g in table.groups)
    columns: list[tuple[str, str]] = [("group", "left"), ("cases", "right")]
    if with_patients:
        columns.append(("patients", "right"))
    columns += [(_title(name), "right") for name in names]
    columns.append(("flag", "left"))
    title = f"Subgroups: {' x '.join(table.attributes)}"
    rendered = _table(title if label is None else f"{title}, label {label}", columns)
    for group in table.groups:
        metrics = _group_binary(group, label)
        row: list[RenderableType] = [group.label, _count(group.n_cases)]
        if with_patients:
            row.append(_count(group.n_patients))
        for name in names:
            row.append(_cell(getattr(metrics, name) if metrics is not None else None))
        row.append(_flag(group))
        rendered.add_row(*row)
    return rendered


def _disparity_table(disparities: Sequence[Disparity]) -> Table | None:
    differences = [d for d in disparities if d.kind == "difference"]
    if not differences:
        return None
    names = list(dict.fromkeys(d.metric for d in differences))
    with_labels = any(d.label is not None for d in differences)
    leading = [("label", "left")] if with_labels else []
    rendered = _table(
        "Disparities: group - reference",
        [*leading, ("group", "left"), ("vs", "left"), *((_title(n), "right") for n in names)],
    )
    rendered.caption = "bold: the interval excludes 0; ratios are in the JSON (--json)"
    rendered.caption_justify = "left"
    rows: dict[tuple[str | None, tuple[str, ...], str, str], dict[str, Disparity]] = {}
    for disparity in differences:
        key = (disparity.label, tuple(disparity.attributes), disparity.group, disparity.reference)
        rows.setdefault(key, {})[disparity.metric] = disparity
    current: tuple[str | None, tuple[str, ...]] | None = None
    for (label, attributes, group, reference), cells in rows.items():
        if current is not None and (label, attributes) != current:
            rendered.add_section()
        current = (label, attributes)
        rendered.add_row(
            *([label or ""] if with_labels else []),
            group,
            reference,
            *(_cell(cells[n].value if n in cells else None, emphasize_nonzero=True) for n in names),
        )
    return rendered


def _fairness_table(result: EvaluationResult) -> Table | None:
    if not result.fairness:
        return None
    with_labels = any(gap.label is not None for gap in result.fairness)
    rendered = _table(
        "Fairness gaps (largest minus smallest group rate)",
        [
            *([("label", "left")] if with_labels else []),
            ("attributes", "left"),
            ("gap", "left"),
            ("estimate", "right"),
            (f"{result.provenance.level:.0%} interval", "right"),
            ("note", "left"),
        ],
    )
    for gap in result.fairness:
        value = gap.value
        shown = value.status if value.status != "ok" else _number(value.estimate)
        rendered.add_row(
            *([gap.label or ""] if with_labels else []),
            " x ".join(gap.attributes),
            gap.name.replace("_", " "),
            shown,
            _interval(value),
            value.reason or "",
        )
    return rendered


def _verdict_table(criteria: Iterable[CriterionResult]) -> Table:
    from rich.text import Text

    rendered = _table(
        "Policy criteria",
        [
            ("criterion", "left"),
            ("severity", "left"),
            ("outcome", "left"),
            ("observed", "right"),
            ("limit", "right"),
            ("reason", "left"),
        ],
    )
    for criterion in criteria:
        style = _OUTCOME_STYLE[criterion.outcome]
        if criterion.severity == "advisory" and criterion.outcome != "pass":
            style = "yellow"
        rendered.add_row(
            Text(criterion.id, style="bold"),
            criterion.severity,
            Text(_OUTCOME_TEXT[criterion.outcome], style=style),
            _number(criterion.observed) if criterion.observed is not None else "-",
            _number(criterion.limit) if criterion.limit is not None else "-",
            criterion.reason,
        )
    return rendered


def scorecard_renderables(result: EvaluationResult) -> list[RenderableType]:
    """Return the scorecard's parts, in order, ready for `Console.print`."""
    from rich.text import Text

    parts: list[RenderableType] = [_header(result)]
    overall = result.overall
    if isinstance(overall, BinaryMetrics):
        parts.append(_overall_binary(overall, result.provenance.level))
    else:
        parts.append(_overall_multilabel(overall))
    names = _group_metric_names(result.subgroups)
    if isinstance(overall, MultilabelMetrics):
        parts.extend(
            _subgroup_table(table, names, label)
            for label in overall.labels
            for table in result.subgroups
        )
    else:
        parts.extend(_subgroup_table(table, names) for table in result.subgroups)
    if not result.subgroups:
        parts.append(Text("No subgroups: the predictions file has no attribute columns.", "dim"))
    disparities = _disparity_table(result.disparities)
    if disparities is not None:
        parts.append(disparities)
    fairness = _fairness_table(result)
    if fairness is not None:
        parts.append(fairness)
    from dashboards.scorecard_run import run_renderables

    parts.extend(run_renderables(result.inputs, result.runtime, result.speed))
    verdict = result.verdict
    if verdict is None:
        parts.append(Text("No policy given: no verdict (assay score --policy POLICY.yaml).", "dim"))
        return parts
    if verdict.criteria:
        parts.append(_verdict_table(verdict.criteria))
    line = Text("Verdict: ", style="bold")
    line.append(
        "PASSED" if verdict.passed else "FAILED",
        style="bold green" if verdict.passed else "bold red",
    )
    line.append(f"  {verdict.policy_name} v{verdict.policy_version}. {verdict.summary}")
    parts.append(line)
    return parts


def render_scorecard(result: EvaluationResult, *, console: Console | None = None) -> None:
    """Print the scorecard of `result` on `console` (stdout by default)."""
    from rich.console import Console

    target = console or Console(highlight=False)
    for part in scorecard_renderables(result):
        target.print(part)
        target.print()


def scorecard_text(result: EvaluationResult, *, width: int = 160) -> str:
    """Return the scorecard as plain text (no colours), `width` columns wide."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False)
    render_scorecard(result, console=console)
    return buffer.getvalue()
