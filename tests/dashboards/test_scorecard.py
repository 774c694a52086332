"""Tests of the terminal scorecard: what it names and how (the numbers are tested elsewhere)."""

from __future__ import annotations

from dashboards.scorecard import scorecard_text
from tests.validators.test_policy import binary, est, result
from validators.vocabulary import METRICS


def test_the_overall_table_names_every_metric_by_its_vocabulary_title() -> None:
    text = scorecard_text(result(overall=binary()), width=200)
    rows = [line.strip() for line in text.splitlines()]
    for name, info in METRICS.items():
        # The two targeted metrics carry their target after the title ("... specificity 0.9").
        assert any(row.startswith(f"{info.title} ") for row in rows), name


def test_the_header_says_the_scale_in_the_plural() -> None:
    logits = binary().model_copy(update={"scores": "logit", "threshold": 0.0})
    assert "threshold 0 on logits" in scorecard_text(result(overall=logits), width=200)
    assert "threshold 0.5 on probabilities" in scorecard_text(result(), width=200)


def test_an_undefined_metric_is_named_and_said_undefined() -> None:
    text = scorecard_text(result(overall=binary(ppv=est(None, status="undefined"))), width=200)
    (row,) = [line.strip() for line in text.splitlines() if line.strip().startswith("PPV ")]
    assert "undefined" in row and "no positive cases" in row
