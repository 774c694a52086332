"""The one registry of criterion kinds: a kind's tag, and the class that parses and judges it.

Every module of `validators/policy/criteria/` is imported once, and each class in it decorated
with `@register` is recorded under its `kind`. The policy's discriminated union of criteria
(`validators.policy.spec.Criterion`), its JSON Schema, its error messages ("expected one of
...") and the verdict all read this registry, so a new kind is one class in one new module.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Union, get_args

from pydantic import Field

if TYPE_CHECKING:
    from validators.policy.criterion import CriterionBase

__all__ = ["criterion_classes", "criterion_kinds", "criterion_union", "register"]

_CRITERIA_PACKAGE = "validators.policy.criteria"
_KINDS: dict[str, type[CriterionBase]] = {}

C = TypeVar("C", bound="type[CriterionBase]")


def kind_of(cls: type[CriterionBase]) -> str:
    """Return the tag a criterion class declares (`kind: Literal["metric"]` gives "metric")."""
    field = cls.model_fields.get("kind")
    tags = get_args(field.annotation) if field is not None else ()
    if len(tags) != 1 or not isinstance(tags[0], str):
        raise TypeError(
            f"criterion class {cls.__name__} must declare its tag as kind: Literal['<kind>'] "
            f"(one text value); it declares {field.annotation if field else 'no kind'}"
        )
    return tags[0]


def register(cls: C) -> C:
    """Return `cls` after recording it as the class of its kind (a class decorator)."""
    kind = kind_of(cls)
    known = _KINDS.get(kind)
    if known is not None and known is not cls:
        raise TypeError(
            f"criterion kind {kind!r} is declared twice, by {known.__module__}.{known.__name__} "
            f"and {cls.__module__}.{cls.__name__}; give the new one another kind"
        )
    _KINDS[kind] = cls
    return cls


@cache
def criterion_classes() -> tuple[type[CriterionBase], ...]:
    """Return every registered criterion class, ordered by kind, after importing every module."""
    package = importlib.import_module(_CRITERIA_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{_CRITERIA_PACKAGE}.{module.name}")
    return tuple(_KINDS[kind] for kind in sorted(_KINDS))


def criterion_kinds() -> tuple[str, ...]:
    """Return the registered kinds, sorted (as error messages list them)."""
    return tuple(kind_of(cls) for cls in criterion_classes())


def criterion_union() -> Any:
    """Return the type of one criterion: the registered classes, told apart by `kind`."""
    classes = criterion_classes()
    # A discriminated union is built from the registry at import time, so it cannot be spelled
    # statically; the type checker sees `CriterionBase` instead (validators.policy.spec).
    return Annotated[Union[classes], Field(discriminator="kind")]  # noqa: UP007
