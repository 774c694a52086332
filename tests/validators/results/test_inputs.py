"""Tests of the `inputs` block: left out when empty, covered by the statistics digest when set."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from tests.validators.test_policy import result
from validators.results import EvaluationInputs, EvaluationResult, policy_digest


def inputs(**overrides: object) -> EvaluationInputs:
    """Inputs of an ONNX model evaluated on a 200-case dataset under policy `test` v1."""
    fields: dict[str, object] = {
        "model_sha256": "a" * 64,
        "model_format": "onnx",
        "dataset_digest": "b" * 64,
        "dataset_cases": 200,
        "policy_name": "test",
        "policy_version": "1",
        "policy_sha256": "c" * 64,
        "seed": 0,
    }
    return EvaluationInputs.model_validate({**fields, **overrides})


def test_a_result_without_inputs_has_no_inputs_key() -> None:
    assert "inputs" not in json.loads(result().model_dump_json())


def test_a_result_without_inputs_keeps_the_digest_computed_before_the_block() -> None:
    plain = result()
    content = plain.model_dump(mode="json", exclude={"statistics_digest", "speed", "runtime"})
    provenance = content.pop("provenance")
    content["provenance"] = {
        key: provenance[key]
        for key in ("seed", "replicates", "level", "ci_method", "bootstrap_unit")
    }
    text = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert plain.statistics_digest == hashlib.sha256(text.encode()).hexdigest()


def test_the_digest_covers_every_field_of_the_inputs() -> None:
    base = result().model_copy(update={"inputs": inputs()})
    assert base.statistics_digest != result().statistics_digest
    for field, value in (
        ("model_sha256", "d" * 64),
        ("dataset_digest", "d" * 64),
        ("policy_sha256", "d" * 64),
        ("seed", 1),
    ):
        changed = base.model_copy(update={"inputs": inputs(**{field: value})})
        assert changed.statistics_digest != base.statistics_digest, field


def test_changed_inputs_are_refused_against_their_digest() -> None:
    document = json.loads(result().model_copy(update={"inputs": inputs()}).model_dump_json())
    assert EvaluationResult.model_validate(document).inputs == inputs()
    document["inputs"]["model_sha256"] = "e" * 64
    with pytest.raises(ValidationError, match="statistics_digest"):
        EvaluationResult.model_validate(document)


def test_a_digest_is_lowercase_hex_of_64_characters() -> None:
    with pytest.raises(ValidationError):
        inputs(model_sha256="sha256:" + "a" * 64)


def test_the_policy_digest_ignores_key_order() -> None:
    assert policy_digest({"a": 1, "b": [1, 2]}) == policy_digest({"b": [1, 2], "a": 1})
    assert policy_digest({"a": 1}) != policy_digest({"a": 2})
