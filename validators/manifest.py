"""The model manifest a vendor submits with every model version, and its validation.

The manifest says what the model expects (input size, channels, intensity handling), what it
returns (logits or probabilities, output shape), the operating point per label, the architecture
for safetensors weights, and the model-card text the governance committee reads.

`parse_manifest` lists every problem at once, each with a dotted path into the manifest, so a
vendor can fix them all in one round trip. Only pydantic and the standard library are imported
here: the service imports this module at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, NoReturn, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from validators.jsontext import MAX_JSON_DEPTH, json_text_problems
from validators.problems import (
    InputInvalid,
    Problem,
    loads_strict_json,
    pydantic_message,
    raise_located,
)
from validators.text import NAME_CHECK, TEXT_CHECK, Name, unsafe_character_problem
from validators.vocabulary import ScoreOutput, Task

__all__ = [
    "MANIFEST_MAX_BYTES",
    "ArchitectureSpec",
    "DicomWindow",
    "InputSpec",
    "Intensity",
    "ManifestInvalid",
    "ManifestProblem",
    "MeanStd",
    "MinMax",
    "ModelCard",
    "ModelManifest",
    "OutputSpec",
    "manifest_json_schema",
    "parse_manifest",
]

MANIFEST_MAX_BYTES = 1024 * 1024
"""Largest manifest accepted, in bytes of JSON; model cards are text, not documents."""

_CARD_TEXT_MAX = 20_000
_CARD_LIST_MAX = 100


class _Strict(BaseModel):
    """Base for every manifest model: unknown keys are errors and numbers must be finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _raise_problems(problems: Iterable[tuple[tuple[str | int, ...], str]]) -> NoReturn:
    """Raise one ValidationError carrying several located problems (see raise_located)."""
    raise_located("ModelManifest", "manifest_rule", problems)


def _check_label_text(label: str) -> str:
    if label != label.strip():
        raise PydanticCustomError(
            "label_whitespace", "a label must not start or end with whitespace"
        )
    unsafe = unsafe_character_problem(label)
    if unsafe is not None:
        raise PydanticCustomError("unsafe_character", unsafe)
    # Stricter than other names: a label names a dataset column, so no invisible separators.
    for position, char in enumerate(label, start=1):
        if not char.isprintable():
            raise PydanticCustomError(
                "label_control",
                f"a label must contain printable characters only; U+{ord(char):04X} at "
                f"position {position} is not",
            )
    return label


def _check_unique(labels: list[str]) -> list[str]:
    seen: set[str] = set()
    duplicates: list[tuple[tuple[str | int, ...], str]] = []
    for index, label in enumerate(labels):
        if label in seen:
            duplicates.append(((index,), f"label {label!r} appears more than once"))
        seen.add(label)
    if duplicates:
        _raise_problems(duplicates)
    return labels


Label = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_check_label_text),
]
Labels = Annotated[list[Label], Field(min_length=1, max_length=1000), AfterValidator(_check_unique)]
StrictInt = Annotated[int, Strict()]
CardText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=_CARD_TEXT_MAX), TEXT_CHECK
]
CardList = Annotated[list[CardText], Field(max_length=_CARD_LIST_MAX)]


class DicomWindow(_Strict):
    """Window the pixel values (after DICOM rescale slope and intercept) and scale to [0, 1].

    With `center` and `width` the model's window applies to every image; without them each
    DICOM file's own VOI window (WindowCenter/WindowWidth) does, and an image without one is
    refused.
    """

    kind: Literal["dicom_window"]
    center: float | None = Field(
        default=None,
        description="Window center, in the image's rescaled units (e.g. HU); omit with width "
        "to use each file's own window.",
    )
    width: float | None = Field(
        default=None,
        gt=0,
        description="Window width; values are clipped to center +- width/2, then scaled to "
        "[0, 1]; omit with center to use each file's own window.",
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.center is None) != (self.width is None):
            given, missing = ("center", "width") if self.width is None else ("width", "center")
            _raise_problems(
                [
                    (
                        (missing,),
                        f"{given} is given without {missing}: give both, or neither to use "
                        "each DICOM file's own window",
                    )
                ]
            )
        return self


class MinMax(_Strict):
    """Clip the pixel values to [min, max] and scale them linearly to [0, 1]."""

    kind: Literal["minmax"]
    min: float = Field(description="Value mapped to 0.")
    max: float = Field(description="Value mapped to 1; must be greater than min.")

    @model_validator(mode="after")
    def _max_above_min(self) -> Self:
        if self.max <= self.min:
            _raise_problems([(("max",), f"max ({self.max}) must be greater than min ({self.min})")])
        return self


class MeanStd(_Strict):
    """Standardize the pixel values per channel as (x - mean) / std.

    The statistics apply to the pixel values as decoded (after DICOM rescale slope and
    intercept; 0..255 for 8-bit PNG/JPEG), not to values already scaled to [0, 1].
    """

    kind: Literal["meanstd"]
    mean: list[float] = Field(
        min_length=1, max_length=4, description="One value, or one per input channel."
    )
    std: list[Annotated[float, Field(gt=0)]] = Field(
        min_length=1, max_length=4, description="One positive value, or one per input channel."
    )


Intensity = Annotated[DicomWindow | MinMax | MeanStd, Field(discriminator="kind")]


class InputSpec(_Strict):
    """The one image tensor the model takes, shaped [N, channels, height, width]."""

    channels: StrictInt = Field(ge=1, le=4, description="Number of image channels (1 to 4).")
    height: StrictInt = Field(ge=8, le=4096, description="Image height in pixels after resizing.")
    width: StrictInt = Field(ge=8, le=4096, description="Image width in pixels after resizing.")
    dtype: Literal["float32"] = Field(
        default="float32", description="Element type of the input tensor; float32 only."
    )
    layout: Literal["NCHW"] = Field(default="NCHW", description="Axis order; NCHW only.")
    intensity: Intensity = Field(description="How pixel values are mapped before inference.")

    @model_validator(mode="after")
    def _statistics_match_channels(self) -> Self:
        if isinstance(self.intensity, MeanStd):
            problems = [
                (
                    ("intensity", name),
                    f"give 1 value or {self.channels} (one per channel), not {len(values)}",
                )
                for name, values in (("mean", self.intensity.mean), ("std", self.intensity.std))
                if len(values) not in (1, self.channels)
            ]
            if problems:
                _raise_problems(problems)
        return self


def _check_dim(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError("shape_dim", 'a dimension is "N" or a positive integer')
    return value


ShapeDim = Annotated[int | str, BeforeValidator(_check_dim)]


class OutputSpec(_Strict):
    """The one score tensor the model returns."""

    kind: ScoreOutput = Field(
        description="Whether the scores are raw logits or probabilities in [0, 1]."
    )
    shape: list[ShapeDim] = Field(
        min_length=1,
        max_length=2,
        description='["N"] or ["N", 1] for a binary task, ["N", number of labels] for multilabel.',
    )

    @model_validator(mode="after")
    def _batch_first_then_integers(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.shape[0] != "N":
            problems.append((("shape", 0), 'the first dimension must be the batch axis "N"'))
        for index, dim in enumerate(self.shape[1:], start=1):
            if not isinstance(dim, int) or dim < 1:
                problems.append((("shape", index), f"must be a positive integer, not {dim!r}"))
        if problems:
            _raise_problems(problems)
        return self


class ArchitectureSpec(_Strict):
    """A network Assay builds itself from its allowlist, for safetensors weights."""

    name: Name = Field(min_length=1, max_length=100, description="Allowlisted architecture name.")
    args: dict[str, JsonValue] = Field(
        default_factory=dict, description="Constructor arguments allowed for that architecture."
    )


class ModelCard(_Strict):
    """The model-card text a vendor fills (after the CHAI Applied Model Card)."""

    intended_use: CardText | None = None
    intended_users: CardList | None = None
    target_population: CardText | None = None
    out_of_scope_uses: CardList | None = None
    known_limitations: CardList | None = None
    risks: CardList | None = None
    training_data_summary: CardText | None = None
    regulatory_status: CardText | None = None
    developer: CardText | None = None
    contact: CardText | None = None
    license: CardText | None = None


Thresholds = dict[Annotated[str, StringConstraints(max_length=100), NAME_CHECK], float]

_DEFAULT_THRESHOLD = {"probabilities": 0.5, "logits": 0.0}


class ModelManifest(_Strict):
    """What a vendor declares about one model version; see docs/vendors.md."""

    name: Name = Field(min_length=1, max_length=200, description="Model name shown to reviewers.")
    version_label: Name = Field(
        min_length=1, max_length=100, description="The vendor's own label for this version."
    )
    task: Task = Field(description="binary (one label) or multilabel (independent labels).")
    labels: Labels = Field(description="Label names; exactly one for a binary task.")
    input: InputSpec
    output: OutputSpec
    thresholds: Thresholds = Field(
        default_factory=dict,
        description=(
            "Operating point per label, on the output's scale: in (0, 1) for probabilities, any "
            "finite value for logits. Defaults to 0.5 (probabilities) or 0.0 (logits)."
        ),
    )
    architecture: ArchitectureSpec | None = Field(
        default=None, description="Required for safetensors weights; ONNX models leave it out."
    )
    card: ModelCard = Field(default_factory=ModelCard)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        thresholds_given = "thresholds" in self.model_fields_set
        problems = _cross_field_problems(
            task=self.task,
            labels=self.labels,
            output=self.output,
            thresholds=self.thresholds if thresholds_given else None,
        )
        if problems:
            _raise_problems(problems)
        if not thresholds_given:
            default = _DEFAULT_THRESHOLD[self.output.kind]
            self.thresholds = dict.fromkeys(self.labels, default)
        return self


def _cross_field_problems(
    *,
    task: Task | None,
    labels: Sequence[str] | None,
    output: OutputSpec | None,
    thresholds: dict[str, float] | None,
) -> list[tuple[tuple[str | int, ...], str]]:
    """List the rules that tie fields together; a part that did not validate is passed as None."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if task == "binary" and labels is not None and len(labels) != 1:
        problems.append((("labels",), f"a binary task has exactly 1 label, not {len(labels)}"))
    if task == "binary" and output is not None and output.shape not in (["N"], ["N", 1]):
        problems.append(
            (
                ("output", "shape"),
                f'a binary task returns ["N"] or ["N", 1], not {json.dumps(output.shape)}',
            )
        )
    if (
        task == "multilabel"
        and labels is not None
        and output is not None
        and output.shape != ["N", len(labels)]
    ):
        problems.append(
            (
                ("output", "shape"),
                f'a multilabel task with {len(labels)} labels returns ["N", {len(labels)}], '
                f"not {json.dumps(output.shape)}",
            )
        )
    if thresholds is not None and labels is not None:
        for label in labels:
            if label not in thresholds:
                problems.append((("thresholds",), f"no threshold for label {label!r}"))
        for key in thresholds:
            if key not in labels:
                problems.append(((("thresholds", key)), f"{key!r} is not one of the labels"))
    if thresholds is not None and output is not None and output.kind == "probabilities":
        for key, value in thresholds.items():
            if not 0.0 < value < 1.0:
                problems.append(
                    (
                        ("thresholds", key),
                        f"a threshold on probabilities must be strictly between 0 and 1, "
                        f"not {value}",
                    )
                )
    return problems


class ManifestProblem(Problem):
    """One thing wrong with a manifest: where (dotted path, "" for the whole) and what."""


class ManifestInvalid(InputInvalid):
    """The manifest was refused; `problems` lists every reason with its path."""

    document = "the model manifest"
    code = "invalid_manifest"
    whole = "(manifest)"
    problems: Sequence[ManifestProblem]


_INTENSITY_KINDS = frozenset({"dicom_window", "minmax", "meanstd"})


def _dotted(loc: Sequence[str | int]) -> str:
    """Render a pydantic location as a dotted path, dropping the union tag pydantic inserts."""
    parts: list[str] = []
    for index, part in enumerate(loc):
        if index > 0 and loc[index - 1] == "intensity" and part in _INTENSITY_KINDS:
            continue
        parts.append(str(part))
    return ".".join(parts)


def _problems_from(error: ValidationError) -> list[ManifestProblem]:
    problems: list[ManifestProblem] = []
    for detail in error.errors(include_url=False, include_input=False):
        message = pydantic_message(
            detail, unknown_field="unknown field; check the spelling against the manifest schema"
        )
        problems.append(ManifestProblem(path=_dotted(detail["loc"]), message=message))
    return problems


_PART_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "task": TypeAdapter(Task),
    "labels": TypeAdapter(Labels),
    "output": TypeAdapter(OutputSpec),
    "thresholds": TypeAdapter(Thresholds),
}


def _cross_field_problems_of_raw(data: dict[str, Any]) -> list[ManifestProblem]:
    """Check the cross-field rules on the parts that are valid on their own.

    Used when the whole manifest failed validation, so that a vendor with a typo in one field and
    a threshold for an unknown label hears about both at once.
    """
    parts: dict[str, Any] = {}
    for name, adapter in _PART_ADAPTERS.items():
        if name not in data:
            continue
        try:
            parts[name] = adapter.validate_python(data[name])
        except ValidationError:
            parts[name] = None
    return [
        ManifestProblem(path=_dotted(loc), message=message)
        for loc, message in _cross_field_problems(
            task=parts.get("task"),
            labels=parts.get("labels"),
            output=parts.get("output"),
            thresholds=parts.get("thresholds"),
        )
    ]


def _whole(message: str) -> ManifestInvalid:
    return ManifestInvalid([ManifestProblem(path="", message=message)])


def _load_json(raw: bytes | str) -> object:
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MANIFEST_MAX_BYTES:
        raise _whole(
            f"the manifest is {size} bytes; the limit is {MANIFEST_MAX_BYTES} bytes of JSON"
        )
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _whole(
                f"the manifest must be a JSON object in UTF-8; byte {exc.start} is not UTF-8"
            ) from exc
    try:
        document = loads_strict_json(raw)
    except RecursionError as exc:
        raise _whole(
            f"the manifest is nested more than {MAX_JSON_DEPTH} levels deep; a manifest is a "
            "shallow JSON object"
        ) from exc
    except json.JSONDecodeError as exc:
        raise _whole(
            f"the manifest must be a JSON object; the JSON is invalid at line {exc.lineno} "
            f"column {exc.colno}: {exc.msg}"
        ) from exc
    except ValueError as exc:
        raise _whole(f"the manifest must be a JSON object; {exc}") from exc
    return document


_JSON_TYPE_NAMES: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def parse_manifest(raw: bytes | str | dict[str, Any]) -> ModelManifest:
    """Return the validated manifest, or raise ManifestInvalid listing every problem."""
    data = raw if isinstance(raw, dict) else _load_json(raw)
    if not isinstance(data, dict):
        kind = _JSON_TYPE_NAMES.get(type(data), type(data).__name__)
        raise _whole(f"the manifest must be a JSON object, not a JSON {kind}")
    # Text the database cannot store (NUL, lone surrogates), and nesting deeper than any manifest
    # needs, are refused before any other code walks the document.
    if text_problems := json_text_problems(data):
        raise ManifestInvalid([ManifestProblem(path=p, message=m) for p, m in text_problems])
    try:
        return ModelManifest.model_validate(data)
    except ValidationError as exc:
        problems = _problems_from(exc)
        seen = set(problems)
        for problem in _cross_field_problems_of_raw(data):
            if problem not in seen:
                problems.append(problem)
                seen.add(problem)
        raise ManifestInvalid(problems) from exc


def manifest_json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of the model manifest."""
    schema = ModelManifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Assay model manifest"
    return schema
