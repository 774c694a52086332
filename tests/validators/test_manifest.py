"""Tests of the model manifest schema and its problem listing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from validators.manifest import (
    ManifestInvalid,
    ManifestProblem,
    MeanStd,
    ModelManifest,
    manifest_json_schema,
    parse_manifest,
)


def make_manifest(**overrides: Any) -> dict[str, Any]:
    """Return a valid binary manifest as a dict, with top-level fields replaced."""
    manifest: dict[str, Any] = {
        "name": "Chest X-ray nodule detector",
        "version_label": "2.1.0-rc1",
        "task": "binary",
        "labels": ["nodule"],
        "input": {
            "channels": 1,
            "height": 224,
            "width": 224,
            "intensity": {"kind": "dicom_window", "center": 40.0, "width": 400.0},
        },
        "output": {"kind": "probabilities", "shape": ["N", 1]},
        "thresholds": {"nodule": 0.3},
        "card": {
            "intended_use": "Triage of adult chest radiographs.",
            "intended_users": ["radiologists"],
            "known_limitations": ["Not evaluated on pediatric images."],
            "regulatory_status": "Research use only.",
        },
    }
    manifest.update(copy.deepcopy(overrides))
    return manifest


def make_multilabel(**overrides: Any) -> dict[str, Any]:
    """Return a valid multilabel manifest with three labels."""
    base = make_manifest(
        task="multilabel",
        labels=["effusion", "nodule", "pneumothorax"],
        output={"kind": "logits", "shape": ["N", 3]},
    )
    del base["thresholds"]
    base.update(copy.deepcopy(overrides))
    return base


def problems_of(raw: Any) -> list[ManifestProblem]:
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(raw)
    return caught.value.problems


def paths_of(raw: Any) -> list[str]:
    return [problem.path for problem in problems_of(raw)]


def test_valid_manifest_parses_from_dict_str_and_bytes() -> None:
    raw = make_manifest()
    from_dict = parse_manifest(raw)
    assert parse_manifest(json.dumps(raw)) == from_dict
    assert parse_manifest(json.dumps(raw).encode()) == from_dict
    assert from_dict.input.layout == "NCHW"
    assert from_dict.input.dtype == "float32"
    assert from_dict.thresholds == {"nodule": 0.3}
    assert from_dict.card.intended_users == ["radiologists"]


def test_every_problem_is_listed_with_its_path() -> None:
    raw = make_manifest()
    raw["name"] = ""
    raw["input"]["intensity"]["width"] = -5
    raw["labels"] = ["nodule", "mass", "nodule"]
    paths = paths_of(raw)
    assert paths == ["name", "labels.2", "input.intensity.width"]


def test_field_and_cross_field_problems_are_reported_together() -> None:
    raw = make_manifest(thresholds={"nodule": 0.3, "mass": 0.5})
    raw["input"]["channels"] = 9
    assert sorted(paths_of(raw)) == ["input.channels", "thresholds.mass"]


def test_unknown_fields_are_refused_at_every_level() -> None:
    raw = make_manifest(colour="blue")
    raw["input"]["chanels"] = 1
    raw["card"]["intended_usage"] = "typo"
    problems = problems_of(raw)
    assert {p.path for p in problems} == {"colour", "input.chanels", "card.intended_usage"}
    assert all("unknown field" in p.message for p in problems)


def test_thresholds_default_to_half_for_probabilities() -> None:
    raw = make_manifest()
    del raw["thresholds"]
    assert parse_manifest(raw).thresholds == {"nodule": 0.5}


def test_thresholds_default_to_zero_for_logits() -> None:
    manifest = parse_manifest(make_multilabel())
    assert manifest.thresholds == {"effusion": 0.0, "nodule": 0.0, "pneumothorax": 0.0}


def test_threshold_keys_must_equal_labels() -> None:
    raw = make_multilabel(thresholds={"effusion": 0.1, "nodule": 0.2, "mass": 0.3})
    problems = problems_of(raw)
    assert {(p.path, p.message) for p in problems} == {
        ("thresholds", "no threshold for label 'pneumothorax'"),
        ("thresholds.mass", "'mass' is not one of the labels"),
    }


def test_probability_thresholds_must_lie_strictly_inside_zero_one() -> None:
    assert paths_of(make_manifest(thresholds={"nodule": 1.0})) == ["thresholds.nodule"]


def test_logit_thresholds_may_be_any_finite_number() -> None:
    raw = make_manifest(output={"kind": "logits", "shape": ["N"]}, thresholds={"nodule": -2.5})
    assert parse_manifest(raw).thresholds == {"nodule": -2.5}


def test_binary_task_has_exactly_one_label() -> None:
    raw = make_manifest(labels=["nodule", "mass"])
    del raw["thresholds"]
    assert paths_of(raw) == ["labels"]


@pytest.mark.parametrize("shape", [["N"], ["N", 1]])
def test_binary_output_shapes_accepted(shape: list[Any]) -> None:
    assert parse_manifest(make_manifest(output={"kind": "probabilities", "shape": shape}))


@pytest.mark.parametrize("shape", [["N", 2], ["N", 3, 1], [1, 1], ["N", "C"], ["N", True]])
def test_binary_output_shapes_refused(shape: list[Any]) -> None:
    paths = paths_of(make_manifest(output={"kind": "probabilities", "shape": shape}))
    assert paths and all(path.startswith("output.shape") for path in paths)


def test_multilabel_shape_must_count_the_labels() -> None:
    raw = make_multilabel(output={"kind": "logits", "shape": ["N", 2]})
    problems = problems_of(raw)
    assert [p.path for p in problems] == ["output.shape"]
    assert '["N", 3]' in problems[0].message


def test_multilabel_shape_without_label_axis_is_refused() -> None:
    assert paths_of(make_multilabel(output={"kind": "logits", "shape": ["N"]})) == ["output.shape"]


def test_meanstd_lengths_must_be_one_or_channels() -> None:
    raw = make_manifest()
    raw["input"]["channels"] = 3
    raw["input"]["intensity"] = {"kind": "meanstd", "mean": [0.5, 0.4], "std": [0.2]}
    problems = problems_of(raw)
    assert [p.path for p in problems] == ["input.intensity.mean"]
    raw["input"]["intensity"] = {"kind": "meanstd", "mean": [0.5, 0.4, 0.3], "std": [0.2]}
    intensity = parse_manifest(raw).input.intensity
    assert isinstance(intensity, MeanStd)


def test_meanstd_std_must_be_positive() -> None:
    raw = make_manifest()
    raw["input"]["intensity"] = {"kind": "meanstd", "mean": [0.5], "std": [0.0]}
    assert paths_of(raw) == ["input.intensity.std.0"]


def test_minmax_requires_max_above_min() -> None:
    raw = make_manifest()
    raw["input"]["intensity"] = {"kind": "minmax", "min": 10, "max": 10}
    assert paths_of(raw) == ["input.intensity.max"]


def test_unknown_intensity_kind_is_refused() -> None:
    raw = make_manifest()
    raw["input"]["intensity"] = {"kind": "zscore"}
    assert paths_of(raw) == ["input.intensity"]


@pytest.mark.parametrize(
    ("field", "value"), [("channels", 0), ("channels", 5), ("height", 4), ("width", 5000)]
)
def test_input_dimensions_are_bounded(field: str, value: int) -> None:
    raw = make_manifest()
    raw["input"][field] = value
    assert paths_of(raw) == [f"input.{field}"]


def test_booleans_are_not_integers() -> None:
    raw = make_manifest()
    raw["input"]["channels"] = True
    assert paths_of(raw) == ["input.channels"]


def test_label_whitespace_and_length_are_checked() -> None:
    raw = make_multilabel(
        labels=[" effusion", "x" * 101, ""], output={"kind": "logits", "shape": ["N", 3]}
    )
    assert paths_of(raw) == ["labels.0", "labels.1", "labels.2"]


def test_architecture_section_is_structured() -> None:
    raw = make_manifest(architecture={"name": "DenseNet121", "args": {"init_features": 32}})
    manifest = parse_manifest(raw)
    assert manifest.architecture is not None
    assert manifest.architecture.args == {"init_features": 32}
    assert paths_of(make_manifest(architecture={"name": "x", "kwargs": {}})) == [
        "architecture.kwargs"
    ]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{not json", "line 1 column 2"),
        (b"\xff\xfe{}", "UTF-8"),
        ("[1, 2]", "not a JSON array"),
        ('{"name": "a", "name": "b"}', "appears twice"),
        ('{"thresholds": {"a": NaN}}', "NaN"),
    ],
)
def test_unparseable_input_gives_one_problem_for_the_whole(raw: str | bytes, fragment: str) -> None:
    problems = problems_of(raw)
    assert len(problems) == 1
    assert problems[0].path == ""
    assert "must be a JSON object" in problems[0].message
    assert fragment in problems[0].message


def test_oversized_manifest_is_refused() -> None:
    raw = make_manifest()
    raw["card"]["intended_use"] = "x" * (1024 * 1024)
    problems = problems_of(json.dumps(raw))
    assert problems[0].path == ""
    assert "limit" in problems[0].message


def test_error_message_summarises_the_problems() -> None:
    with pytest.raises(ManifestInvalid, match=r"1 problem\(s\): name: "):
        parse_manifest(make_manifest(name=""))


def test_json_schema_is_a_valid_object_schema() -> None:
    schema = manifest_json_schema()
    json.dumps(schema)
    assert schema["type"] == "object"
    assert {"name", "task", "labels", "input", "output", "thresholds", "card"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {
        "name",
        "version_label",
        "task",
        "labels",
        "input",
        "output",
    }


def test_json_schema_validates_a_manifest_when_jsonschema_is_available() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = manifest_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(make_manifest(), schema)


def test_manifest_round_trips_through_json() -> None:
    manifest = parse_manifest(make_multilabel())
    assert ModelManifest.model_validate_json(manifest.model_dump_json()) == manifest


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "nodule\x1b[2J"),
        ("version_label", "2.1\x07"),
        ("version_label", "1.0\u202e0.2"),
        ("version_label", "1.0\x00"),
    ],
)
def test_names_and_version_labels_refuse_control_and_bidi_characters(
    field: str, value: str
) -> None:
    problems = problems_of(make_manifest(**{field: value}))
    assert [p.path for p in problems] == [field]
    assert "U+" in problems[0].message and "position" in problems[0].message


def test_labels_and_threshold_keys_refuse_bidi_characters() -> None:
    raw = make_manifest(labels=["nod\u2066ule"], thresholds={"nod\u2066ule": 0.3})
    problems = problems_of(raw)
    assert "labels.0" in [p.path for p in problems]
    assert any("U+2066" in p.message for p in problems)


def test_architecture_name_refuses_control_characters() -> None:
    raw = make_manifest(architecture={"name": "DenseNet121\x1b[0m", "args": {}})
    assert paths_of(raw) == ["architecture.name"]


def test_card_text_allows_newlines_but_not_escapes() -> None:
    card = {"intended_use": "Triage.\n\tAdults only.", "known_limitations": ["a\nb"]}
    assert parse_manifest(make_manifest(card=card)).card.intended_use == "Triage.\n\tAdults only."
    hostile = {"intended_use": "Triage\x1b[8m hidden", "known_limitations": ["ok", "\u202eevil"]}
    assert paths_of(make_manifest(card=hostile)) == [
        "card.intended_use",
        "card.known_limitations.1",
    ]
