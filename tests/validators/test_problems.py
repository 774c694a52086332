"""The shared input problems and strict loaders of validators/problems.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from validators.problems import (
    Problem,
    load_strict_yaml,
    loads_strict_json,
    pydantic_message,
    raise_located,
)


def test_a_problem_is_frozen_and_compares_by_value() -> None:
    problem = Problem(path="a.b", message="wrong")
    assert problem == Problem(path="a.b", message="wrong")
    with pytest.raises(ValidationError):
        problem.path = "c"  # type: ignore[misc]


def test_strict_json_refuses_a_key_given_twice() -> None:
    with pytest.raises(ValueError, match="the key 'a' appears twice in one object"):
        loads_strict_json('{"a": 1, "a": 2}')


def test_strict_json_words_a_duplicate_key_as_asked() -> None:
    with pytest.raises(ValueError, match=r"^dup a$"):
        loads_strict_json('{"a": 1, "a": 2}', key_message=lambda key: f"dup {key}")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_strict_json_refuses_non_standard_constants(constant: str) -> None:
    with pytest.raises(ValueError, match=f"{constant} is not valid JSON"):
        loads_strict_json(f'{{"a": {constant}}}')


def test_strict_json_reads_a_plain_document() -> None:
    assert loads_strict_json('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


def test_strict_yaml_reads_only_true_and_false_as_booleans() -> None:
    assert load_strict_yaml("on: lower\nyes: no\nflag: true\n") == {
        "on": "lower",
        "yes": "no",
        "flag": True,
    }


def test_strict_yaml_refuses_a_key_given_twice_with_its_line() -> None:
    with pytest.raises(ValueError, match="not valid YAML at line 2 column 1: the key 'a' appears"):
        load_strict_yaml("a: 1\na: 2\n")


def test_raise_located_carries_every_problem_with_its_location() -> None:
    with pytest.raises(ValidationError) as caught:
        raise_located("Thing", "thing_rule", [(("a", 0), "first"), (("b",), "second")])
    errors = caught.value.errors(include_url=False)
    assert [(e["loc"], e["msg"], e["type"]) for e in errors] == [
        (("a", 0), "first", "thing_rule"),
        (("b",), "second", "thing_rule"),
    ]


def test_pydantic_message_drops_the_value_error_prefix_and_names_unknown_fields() -> None:
    assert pydantic_message(
        {"type": "value_error", "msg": "Value error, bad"}, unknown_field="?"
    ) == ("bad")
    assert pydantic_message({"type": "extra_forbidden", "msg": "Extra"}, unknown_field="typo") == (
        "typo"
    )
    assert pydantic_message({"type": "int_type", "msg": "not int"}, unknown_field="?") == "not int"
