"""Loading a policy: YAML or JSON in, a `Policy` out, or every problem at once with its path.

`load_policy` and `parse_policy` list every problem, each with a dotted path into the document
(`criteria.2.value`), as the model manifest does; `policy_json_schema` gives the document's
JSON Schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from validators.policy.criterion import CriterionBase
from validators.policy.registry import criterion_kinds
from validators.policy.spec import CROSS_FIELD, Criterion, Policy, Threshold, cross_field_problems
from validators.problems import (
    InputInvalid,
    Problem,
    load_strict_yaml,
    loads_strict_json,
    pydantic_message,
)
from validators.vocabulary import ScoreScale, Task

__all__ = [
    "POLICY_MAX_BYTES",
    "PolicyInvalid",
    "PolicyProblem",
    "load_policy",
    "parse_policy",
    "policy_json_schema",
]

POLICY_MAX_BYTES = 1024 * 1024
"""Largest policy file accepted: a policy is a page of settings, not a document."""


class PolicyProblem(Problem):
    """One thing wrong with a policy: where (dotted path, "" for the whole) and what."""


class PolicyInvalid(InputInvalid):
    """The policy was refused; `problems` lists every reason with its path."""

    document = "the policy"
    code = "invalid_policy"
    whole = "(policy)"
    problems: Sequence[PolicyProblem]


_TYPE_TAGS = frozenset({"float", "str", "int", "bool", "list", "dict"})


def _dotted(loc: Sequence[str | int]) -> str:
    """Render a pydantic location as a dotted path, dropping the union tags pydantic inserts."""
    parts: list[str] = []
    for index, part in enumerate(loc):
        # criteria.<i>.<kind tag>: the tag is pydantic's, not a key of the document.
        tag = index == 2 and loc[0] == "criteria" and isinstance(loc[1], int)
        if tag and part in criterion_kinds():
            continue
        # A union member's type name (float, dict[str,float], list[...]) is not a key either.
        if isinstance(part, str) and (
            part in _TYPE_TAGS or "[" in part or part.startswith(("constrained-", "function-"))
        ):
            continue
        parts.append(str(part))
    return ".".join(parts)


_SCALAR_ERRORS = frozenset(
    {
        "literal_error",
        "string_type",
        "float_type",
        "float_parsing",
        "int_type",
        "int_parsing",
        "bool_type",
    }
)


_CONTAINER_ERRORS = frozenset({"dict_type", "list_type"})


def _wrong_branch(detail: Mapping[str, Any]) -> bool:
    """Whether an error is a union branch that plainly did not apply (a scalar for a list...)."""
    value = detail.get("input")
    if detail["type"] in _SCALAR_ERRORS:
        return isinstance(value, list | dict)
    if detail["type"] in _CONTAINER_ERRORS:
        return not isinstance(value, list | dict)
    return False


def _problems_from(error: ValidationError) -> list[PolicyProblem]:
    details = error.errors(include_url=False)
    paths = [
        ".".join(str(p) for p in d["loc"]) if d["type"] == CROSS_FIELD else _dotted(d["loc"])
        for d in details
    ]
    # A union (threshold: number or mapping; a table: name or list) reports every branch; keep
    # the branch that matches the shape of what was written when another error explains it.
    crowded = {path for path in paths if paths.count(path) > 1}
    problems: list[PolicyProblem] = []
    for detail, path in zip(details, paths, strict=True):
        is_branch = any(
            isinstance(p, str) and ("[" in p or p in _TYPE_TAGS or p.startswith("constrained-"))
            for p in detail["loc"]
        )
        if (
            is_branch
            and _wrong_branch(detail)
            and (path in crowded or any(other.startswith(path + ".") for other in paths))
        ):
            continue
        message = pydantic_message(
            detail, unknown_field="unknown field; check the spelling against docs/policies.md"
        )
        if detail["type"] == "literal_error":
            expected = (detail.get("ctx") or {}).get("expected", "")
            message = f"got {detail.get('input')!r}; expected one of {expected}"
        if detail["type"] == "union_tag_invalid":
            message = f"unknown criterion kind; expected one of {', '.join(criterion_kinds())}"
        if detail["type"] == "string_pattern_mismatch" and path.rsplit(".", 1)[-1] == "id":
            message = (
                f"got {detail.get('input')!r}; an id starts with a letter or digit and holds "
                "only letters, digits and _ . : -"
            )
        if detail["type"] == "union_tag_not_found":
            message = f"a criterion needs its kind: one of {', '.join(criterion_kinds())}"
        problem = PolicyProblem(path=path, message=message)
        if problem not in problems:
            problems.append(problem)
    return problems


_PARTS: dict[str, TypeAdapter[Any]] = {
    "task": TypeAdapter(Task),
    "threshold": TypeAdapter(Threshold),
    "scores": TypeAdapter(ScoreScale),
}


_CRITERION: TypeAdapter[Any] = TypeAdapter(Criterion)


def _cross_field_problems_of_raw(data: Mapping[str, Any]) -> list[PolicyProblem]:
    """Check the cross-field rules on the parts that are valid on their own.

    Used when the whole policy failed validation, so that an author with a typo in one criterion
    and a duplicate id in another hears about both at once.
    """
    parts: dict[str, Any] = {}
    for name, adapter in _PARTS.items():
        try:
            parts[name] = adapter.validate_python(data[name]) if name in data else None
        except ValidationError:
            parts[name] = None
    if "scores" not in data:
        parts["scores"] = "probability"
    criteria: list[CriterionBase | None] = []
    raw = data.get("criteria")
    raw_items = raw if isinstance(raw, list) else []
    for item in raw_items:
        try:
            criteria.append(_CRITERION.validate_python(item))
        except ValidationError:
            criteria.append(None)
    return [
        PolicyProblem(path=".".join(str(part) for part in loc), message=message)
        for loc, message in cross_field_problems(
            task=parts["task"],
            threshold=parts["threshold"],
            scores=parts["scores"],
            criteria=criteria,
            ids=[item.get("id") if isinstance(item, Mapping) else None for item in raw_items],
        )
    ]


def parse_policy(data: Mapping[str, Any], *, source: str = "the policy") -> Policy:
    """Return the validated policy, or raise PolicyInvalid listing every problem."""
    if not isinstance(data, Mapping):
        raise PolicyInvalid(
            [PolicyProblem(path="", message="a policy is a mapping of fields (name, version...)")],
            source=source,
        )
    try:
        return Policy.model_validate(dict(data))
    except ValidationError as exc:
        problems = _problems_from(exc)
        for problem in _cross_field_problems_of_raw(data):
            if problem not in problems:
                problems.append(problem)
        raise PolicyInvalid(problems, source=source) from exc


def _whole(message: str, source: str) -> PolicyInvalid:
    return PolicyInvalid([PolicyProblem(path="", message=message)], source=source)


def load_policy(path: str | Path) -> Policy:
    """Return the policy in a YAML or JSON file (by suffix; YAML otherwise), or PolicyInvalid."""
    file = Path(path)
    source = str(file)
    try:
        raw = file.read_bytes()
    except FileNotFoundError as exc:
        raise _whole(f"no policy file at {file}", source) from exc
    except OSError as exc:
        raise _whole(f"the policy file cannot be read: {exc.strerror}", source) from exc
    if len(raw) > POLICY_MAX_BYTES:
        raise _whole(f"the policy is {len(raw)} bytes; the limit is {POLICY_MAX_BYTES}", source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _whole(
            f"the policy must be UTF-8 text; byte {exc.start} is not UTF-8", source
        ) from exc
    data: object
    if file.suffix.lower() == ".json":
        try:
            data = loads_strict_json(text)
        except json.JSONDecodeError as exc:
            raise _whole(
                f"the policy is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                source,
            ) from exc
        except ValueError as exc:
            raise _whole(f"the policy is not valid JSON: {exc}", source) from exc
    else:
        try:
            data = load_strict_yaml(text)
        except ValueError as exc:
            raise _whole(f"the policy is {exc}", source) from exc
    if not isinstance(data, Mapping):
        raise _whole("a policy is a mapping of fields (name, version, task, criteria...)", source)
    return parse_policy(data, source=source)


def policy_json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of an evaluation policy."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Assay evaluation policy"
    return schema
