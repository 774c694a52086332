"""Tests of the registry of criterion kinds: one registry, and each kind judging itself.

A criterion kind is one class in one module of `validators/policy/criteria/`; the policy's union
of criteria, its JSON Schema and its messages are derived from the registry, so the last test
adds a kind as one new module (in a copy of the library) and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from typing import Literal

import pytest

from validators.policy import (
    CriterionBase,
    Policy,
    PolicyInvalid,
    criterion_classes,
    criterion_kinds,
    parse_policy,
    policy_json_schema,
    register,
)
from validators.policy.registry import kind_of

ROOT = Path(__file__).resolve().parents[3]
MINIMAL = {"name": "p", "version": "1", "task": "binary"}


def union_members() -> set[type]:
    """Return the classes of the discriminated union of `Policy.criteria`."""
    (item,) = typing.get_args(Policy.model_fields["criteria"].annotation)
    union = typing.get_args(item)[0]  # Annotated[Union[...], Field(discriminator="kind")]
    return set(typing.get_args(union))


def test_the_union_of_criteria_is_exactly_the_registry() -> None:
    assert union_members() == set(criterion_classes())
    assert criterion_kinds() == tuple(sorted(kind_of(cls) for cls in criterion_classes()))


def test_every_registered_kind_judges_itself() -> None:
    for cls in criterion_classes():
        assert issubclass(cls, CriterionBase), cls
        assert "judge" in vars(cls), f"{cls.__name__} inherits judge instead of defining it"


def test_a_kind_that_does_not_judge_itself_cannot_be_made() -> None:
    class Silent(CriterionBase):
        kind: Literal["silent"]

    with pytest.raises(TypeError, match="abstract method judge"):
        Silent(kind="silent", id="a", description="d")


def test_the_schema_lists_exactly_the_registered_kinds() -> None:
    schema = policy_json_schema()
    items = schema["properties"]["criteria"]["items"]
    assert set(items["discriminator"]["mapping"]) == set(criterion_kinds())
    referenced = {entry["$ref"].rsplit("/", 1)[-1] for entry in items["oneOf"]}
    assert referenced == {cls.__name__ for cls in criterion_classes()}


def test_an_unknown_kind_is_refused_naming_every_registered_kind() -> None:
    document = {**MINIMAL, "criteria": [{"kind": "speedy", "id": "a", "description": "d"}]}
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(document)
    (problem,) = caught.value.problems
    assert problem.path == "criteria.0"
    assert problem.message == (
        f"unknown criterion kind; expected one of {', '.join(criterion_kinds())}"
    )


def test_a_kind_declared_twice_is_refused() -> None:
    class AnotherMetric(CriterionBase):
        kind: Literal["metric"]

    with pytest.raises(TypeError, match="'metric' is declared twice"):
        register(AnotherMetric)
    assert "AnotherMetric" not in {cls.__name__ for cls in criterion_classes()}


def test_a_class_without_one_literal_kind_cannot_register() -> None:
    class Untagged(CriterionBase):
        kind: str

    with pytest.raises(TypeError, match="kind: Literal"):
        register(Untagged)


NEW_KIND = '''
"""A criterion kind written for the test: always met, saying what it was given."""

from __future__ import annotations

from typing import Literal

from validators.policy.criterion import CriterionBase, JudgingContext
from validators.policy.judging import criterion_result
from validators.policy.registry import register
from validators.results import CriterionResult, EvaluationResult


@register
class AlwaysMetCriterion(CriterionBase):
    """Met by every result."""

    kind: Literal["always_met"]
    note: str

    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return a pass that names the task and the minimum group size."""
        return criterion_result(
            self, "pass", f"{self.note} on {result.task}, groups of {context.min_group_size}."
        )
'''

PROBE = """
import json
from tests.validators.test_policy import result
from validators.policy import criterion_kinds, evaluate_policy, parse_policy, policy_json_schema

policy = parse_policy({
    "name": "p", "version": "1", "task": "binary",
    "criteria": [{"kind": "always_met", "id": "new", "description": "d", "note": "met"}],
})
verdict = evaluate_policy(policy, result())
mapping = policy_json_schema()["properties"]["criteria"]["items"]["discriminator"]["mapping"]
print(json.dumps({
    "kinds": list(criterion_kinds()),
    "schema": sorted(mapping),
    "outcome": verdict.criteria[0].outcome,
    "reason": verdict.criteria[0].reason,
}))
"""


def test_a_new_kind_is_one_new_module_and_nothing_else(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "validators", tmp_path / "validators", ignore=shutil.ignore_patterns("__pycache__")
    )
    (tmp_path / "validators" / "policy" / "criteria" / "always_met.py").write_text(NEW_KIND)
    # The copy comes first (the working directory), the repository after it for the tests' helpers.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    run = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert found["kinds"] == sorted([*criterion_kinds(), "always_met"])
    assert found["schema"] == found["kinds"]
    assert (found["outcome"], found["reason"]) == ("pass", "met on binary, groups of 11.")


def _criterion(**fields: object) -> object:
    policy = parse_policy_dict({"criteria": [{"id": "c", "description": "d", **fields}]})
    return policy.criteria[0]


def parse_policy_dict(extra: dict[str, object]) -> typing.Any:
    from validators.policy import parse_policy

    base: dict[str, object] = {"name": "p", "version": "1", "task": "binary"}
    return parse_policy({**base, **extra})


def test_each_kind_says_what_the_engine_must_compute_for_it() -> None:
    # The engine asks criterion.needs() instead of testing classes: the subgroup tables named,
    # the metrics needing group intervals or disparities, and a baseline comparison.
    subgroup = _criterion(
        kind="subgroup_metric", metric="sensitivity", op=">=", value=0.8, attributes=["sex"]
    )
    disparity = _criterion(
        kind="disparity", metric="ppv", attributes=[["sex", "site"]], min=-0.1, max=0.1
    )
    worse = _criterion(kind="non_inferiority", metric="auroc", margin=0.02)
    overall = _criterion(kind="metric", metric="auroc", on="lower", op=">=", value=0.8)
    assert subgroup.needs().tables == (("sex",),)
    assert subgroup.needs().subgroup_metrics == ("sensitivity",)
    assert subgroup.needs().disparity_metrics == ()
    assert disparity.needs().tables == (("sex", "site"),)
    assert disparity.needs().subgroup_metrics == disparity.needs().disparity_metrics == ("ppv",)
    assert worse.needs().baseline == ("auroc", None, "auto")
    assert overall.needs() == type(overall.needs())()
