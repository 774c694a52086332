"""Input problems with their field path, and strict loading of the JSON and YAML documents.

Every document Assay reads from a person (the model manifest, a policy, the header of a
safetensors file) is refused with a list of problems, each naming where (a dotted path, "" for
the whole document) and what. The loaders here refuse what the standard ones accept silently: a
key given twice in one object (the last would win) and JSON's non-standard NaN and Infinity; the
YAML loader also reads only true and false as booleans (YAML 1.2), not `on`, `off`, `yes`, `no`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "InputInvalid",
    "Problem",
    "load_strict_yaml",
    "loads_strict_json",
    "pydantic_message",
    "raise_located",
    "refuse_duplicate_keys",
    "reject_constant",
]


class Problem(BaseModel):
    """One thing wrong with an input: where (dotted path, "" for the whole) and what."""

    model_config = ConfigDict(frozen=True)

    path: str
    message: str


class InputInvalid(ValueError):
    """A document was refused; `problems` lists every reason with its path.

    The manifest, the policy and the dataset manifest each refuse with a subclass, so a caller
    (the registry maps every one to a 422 in one place) catches this one type.
    """

    #: What the document is called in messages ("the model manifest", "the policy").
    document = "the input"
    #: The machine-readable error code the registry answers with.
    code = "invalid_input"
    #: How a problem of the whole document (path "") is labelled in the message.
    whole = "(document)"

    problems: Sequence[Problem]

    def __init__(self, problems: Sequence[Problem], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source or self.document
        listed = "; ".join(f"{p.path or self.whole}: {p.message}" for p in problems)
        super().__init__(f"{self.source} has {len(problems)} problem(s): {listed}")


def raise_located(
    title: str, kind: str, problems: Iterable[tuple[tuple[str | int, ...], str]]
) -> NoReturn:
    """Raise one ValidationError (named `title`) carrying several located problems of `kind`.

    pydantic prefixes the locations with the enclosing field names, so a validator of a nested
    model can point at its own fields and the caller still sees the full dotted path.
    """
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=None)
            for loc, message in problems
        ],
    )


def pydantic_message(detail: Mapping[str, Any], *, unknown_field: str) -> str:
    """The message of one pydantic error, without pydantic's "Value error, " prefix.

    An unknown key (extra_forbidden) reads `unknown_field` instead of pydantic's wording.
    """
    message = str(detail["msg"])
    if detail["type"] == "value_error" and message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if detail["type"] == "extra_forbidden":
        message = unknown_field
    return message


def _twice_in_one_object(key: str) -> str:
    return f"the key {key!r} appears twice in one object"


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for json.loads that raises ValueError on a key given twice."""
    return _without_duplicates(pairs, _twice_in_one_object)


def _without_duplicates(
    pairs: list[tuple[str, Any]], key_message: Callable[[str], str]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(key_message(key))
        result[key] = value
    return result


def reject_constant(name: str) -> NoReturn:
    """`parse_constant` for json.loads: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def loads_strict_json(
    text: str, *, key_message: Callable[[str], str] = _twice_in_one_object
) -> object:
    """json.loads that refuses a key given twice and NaN/Infinity with a ValueError.

    `key_message` words the refusal of a duplicate key. json.JSONDecodeError (a ValueError) and
    RecursionError propagate as from json.loads.
    """

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        return _without_duplicates(pairs, key_message)

    return json.loads(text, object_pairs_hook=hook, parse_constant=reject_constant)


@cache
def _strict_yaml_loader() -> type[yaml.SafeLoader]:
    import re

    import yaml

    class _StrictLoader(yaml.SafeLoader):
        """A safe loader with YAML 1.2 booleans that refuses a key given twice.

        PyYAML follows YAML 1.1, where `on`, `off`, `yes` and `no` are booleans: a criterion's
        `on: lower` would arrive as `{True: "lower"}`. Only true and false are booleans here.
        PyYAML would also keep the last of two equal keys silently.
        """

    bool_tag = "tag:yaml.org,2002:bool"
    _StrictLoader.yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag != bool_tag]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _StrictLoader.add_implicit_resolver(
        bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in mapping:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice", key_node.start_mark
                )
            mapping[key] = loader.construct_object(value_node, deep=True)
        return mapping

    _StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return _StrictLoader


def load_strict_yaml(text: str) -> object:
    """Load YAML safely, with YAML 1.2 booleans, refusing a key given twice.

    Raises ValueError "not valid YAML at line L column C: <problem>" (the place when known).
    """
    import yaml

    try:
        return yaml.load(text, Loader=_strict_yaml_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"not valid YAML{where}: {problem}") from exc
