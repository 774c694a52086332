"""Typed evaluation results: provenance, criteria, the verdict and the whole evaluation."""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal, Self

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    SerializerFunctionWrapHandler,
    computed_field,
    model_serializer,
    model_validator,
)

from validators.results.estimates import BootstrapUnit, _Result
from validators.results.speed import RuntimeInfo, SpeedResult
from validators.results.subgroups import Disparity, FairnessGap, MetricsOf, SubgroupTable
from validators.vocabulary import Task


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


class Provenance(_Result):
    """What produced a result: library versions, the resampling settings and the time."""

    assay_version: str
    python_version: str
    numpy_version: str
    sklearn_version: str | None
    seed: int
    replicates: int = Field(ge=0)
    level: float = Field(gt=0.0, lt=1.0)
    ci_method: str
    bootstrap_unit: BootstrapUnit | None
    created_at: datetime

    @classmethod
    def capture(
        cls,
        *,
        seed: int,
        replicates: int,
        level: float,
        ci_method: str,
        bootstrap_unit: BootstrapUnit | None,
        created_at: datetime | None = None,
    ) -> Provenance:
        """Return the provenance of a result computed now, in this environment."""
        import numpy

        return cls(
            assay_version=_package_version("assay") or "unknown",
            python_version=platform.python_version(),
            numpy_version=numpy.__version__,
            sklearn_version=_package_version("scikit-learn"),
            seed=seed,
            replicates=replicates,
            level=level,
            ci_method=ci_method,
            bootstrap_unit=bootstrap_unit,
            created_at=created_at or datetime.now(UTC),
        )


CriterionOutcome = Literal["pass", "fail", "insufficient_data"]


class CriterionResult(_Result):
    """How one policy criterion came out, with the observed value and the reason."""

    id: str
    description: str
    severity: Literal["required", "advisory"]
    outcome: CriterionOutcome
    reason: str
    observed: float | None = None
    limit: float | None = None


class Verdict(_Result):
    """The policy's verdict: passed only if no required criterion failed or lacked data."""

    policy_name: str
    policy_version: str
    passed: bool
    criteria: list[CriterionResult]
    summary: str


STATISTICAL_PROVENANCE = ("seed", "replicates", "level", "ci_method", "bootstrap_unit")
"""The provenance fields that decide the numbers (the others say when and with what software)."""

MEASUREMENT_BLOCKS = frozenset({"speed", "runtime"})
"""Blocks that measure hardware and software, not statistics: outside the statistics digest."""


class EvaluationInputs(_Result):
    """What was evaluated: the model, the dataset and the policy, each by its digest, and the seed.

    Filled by `assay evaluate` (`validators.runtime.pipeline`), which knows the files; `assay
    score` sees only a predictions file and leaves the block out. Digests are SHA-256 in hex:
    of the artifact's bytes, of the dataset (`validators.data.datasets`: manifest and every
    image file) and of the policy as loaded (`policy_digest`: canonical JSON, so comments and
    key order in the file do not change it).
    """

    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model_format: Literal["onnx", "safetensors"]
    dataset_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    dataset_cases: int = Field(ge=1)
    policy_name: str
    policy_version: str
    policy_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    seed: int = Field(ge=0)
    baseline_model_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


def policy_digest(policy: dict[str, object]) -> str:
    """Return the SHA-256 (hex) of a policy's canonical JSON (keys sorted, no spaces)."""
    text = json.dumps(
        policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


OPTIONAL_BLOCKS = frozenset({*MEASUREMENT_BLOCKS, "inputs"})
"""Blocks left out of the JSON when empty, so results written before them read and verify as
they were."""


class EvaluationResult(_Result):
    """The evaluation of one model on one dataset.

    `overall` holds the metrics on every case; `subgroups`, `disparities` and `fairness` come from
    `validators.evaluation`; `verdict` from `validators.policy` when a policy was given. `view` says
    whether small cells were suppressed for a vendor (`vendor`) or shown flagged (`committee`).

    `statistics_digest` is the SHA-256 of the result's statistical content alone: everything
    but the time and the software versions of the provenance (see `statistics_digest_of`). It
    is derived, never set: it appears in the JSON, and a document whose digest does not match
    its content is refused.
    """

    task: Task
    view: Literal["committee", "vendor"] = "committee"
    provenance: Provenance
    overall: MetricsOf
    subgroups: list[SubgroupTable] = Field(default_factory=list)
    disparities: list[Disparity] = Field(default_factory=list)
    fairness: list[FairnessGap] = Field(default_factory=list)
    verdict: Verdict | None = None
    policy: dict[str, object] | None = None
    speed: SpeedResult | None = None
    runtime: RuntimeInfo | None = None
    inputs: EvaluationInputs | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _digest_matches(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        claimed = None
        if isinstance(data, dict) and "statistics_digest" in data:
            data = dict(data)
            claimed = data.pop("statistics_digest")
        result = handler(data)
        if claimed is not None and claimed != result.statistics_digest:
            raise ValueError(
                f"statistics_digest {claimed} does not match the result's content "
                f"({result.statistics_digest}): the numbers were changed after it was computed"
            )
        return result

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.overall.task != self.task:
            raise ValueError(f"a {self.task} result holds {self.overall.task} metrics")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_measurements(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Return the JSON without empty `speed`, `runtime` and `inputs` (as `assay score` has)."""
        data = handler(self)
        if isinstance(data, dict):
            for block in OPTIONAL_BLOCKS:
                if data.get(block, ...) is None:
                    del data[block]
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def statistics_digest(self) -> str:
        """Return the SHA-256 (hex) of the statistical content; see `statistics_digest_of`."""
        return statistics_digest_of(self)


def statistics_digest_of(result: EvaluationResult) -> str:
    """Return the SHA-256 of a result's statistics: no timestamp, no hardware, no software.

    The content is every field but `provenance`'s time and library versions (its seed,
    replicates, level, interval method and unit stay: they decide the numbers), written as
    canonical JSON (keys sorted, no spaces, floats in Python's shortest round-trip form, which
    is the same on every platform). Equal digests mean equal numbers to the last bit.

    The `speed` and `runtime` blocks are left out (`MEASUREMENT_BLOCKS`): timings and the
    machine's fingerprint differ on every run and every host, while the statistics do not, and
    results written before these blocks existed keep their digest. A speed criterion's observed
    figure is still covered, through the verdict.

    The `inputs` block is covered when present: the digests of the model, dataset and policy
    decide the numbers as much as the seed does, so a signature on the digest binds to what was
    evaluated. When empty (`assay score`, results from before the block) it is absent from the
    content, so those digests are unchanged.
    """
    content = result.model_dump(mode="json", exclude={"statistics_digest", *MEASUREMENT_BLOCKS})
    if content.get("inputs", ...) is None:
        del content["inputs"]
    provenance = content.pop("provenance")
    content["provenance"] = {key: provenance[key] for key in STATISTICAL_PROVENANCE}
    text = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
