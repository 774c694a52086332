"""Names and labels refuse control and bidirectional-override characters, naming them."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from validators.text import Name, Text


class Named(BaseModel):
    name: Name = Field(max_length=200)
    description: Text | None = None


HOSTILE = [
    ("\x1b[2J", "U+001B ESCAPE", 1),
    ("build\x07", "U+0007 BELL", 6),
    ("a\x00b", "U+0000 NULL", 2),
    ("v1\x7f", "U+007F DELETE", 3),
    ("x\x9b31m", "U+009B CONTROL SEQUENCE INTRODUCER", 2),
    ("ok\rapproved", "U+000D CARRIAGE RETURN", 3),
    ("two\nlines", "U+000A LINE FEED", 4),
    ("tab\there", "U+0009 CHARACTER TABULATION", 4),
    ("v1\u202e0.2", "U+202E RIGHT-TO-LEFT OVERRIDE", 3),
    ("\u202dx", "U+202D LEFT-TO-RIGHT OVERRIDE", 1),
    ("a\u2066b", "U+2066 LEFT-TO-RIGHT ISOLATE", 2),
    ("a\u2069", "U+2069 POP DIRECTIONAL ISOLATE", 2),
    ("a\u200fb", "U+200F RIGHT-TO-LEFT MARK", 2),
    ("a\u061cb", "U+061C ARABIC LETTER MARK", 2),
    ("a\u2028b", "U+2028 LINE SEPARATOR", 2),
]


def _message(**fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Named.model_validate(fields)
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    assert errors[0]["type"] == "unsafe_character"
    return str(errors[0]["msg"])


@pytest.mark.parametrize(("value", "named", "position"), HOSTILE)
def test_a_name_with_a_control_or_bidi_character_is_refused_naming_it(
    value: str, named: str, position: int
) -> None:
    message = _message(name=value)
    assert named in message
    assert f"at position {position}" in message


@pytest.mark.parametrize(
    "value",
    [
        "acme",
        "Thorax CAD 2.1 (rc)",
        "Müller-Lüdenscheidt",
        "日本語モデル",
        "نموذج",
        "a\u200cb",
        "🩻",
    ],
)
def test_printable_names_in_any_script_are_accepted(value: str) -> None:
    assert Named(name=value).name == value


def test_every_further_unsafe_character_is_counted() -> None:
    message = _message(name="\x1b[31m\x1b[0m\u202e")
    assert "at position 1 and 2 more" in message


def test_text_allows_newline_and_tab_but_nothing_else() -> None:
    assert Named(name="m", description="line one\n\tline two\n").description is not None
    message = _message(name="m", description="line one\r\nline two")
    assert "U+000D CARRIAGE RETURN" in message and "newline and tab are allowed" in message
    assert "U+001B" in _message(name="m", description="\x1b]0;title\x07")
    assert "U+202E" in _message(name="m", description="see \u202eevil")


def test_the_json_schema_carries_the_rule_as_a_pattern() -> None:
    import re

    properties = Named.model_json_schema()["properties"]
    name_pattern = properties["name"]["pattern"]
    assert properties["name"]["maxLength"] == 200
    assert re.fullmatch(name_pattern, "Thorax CAD 2.1")
    for value, _named, _position in HOSTILE:
        assert not re.fullmatch(name_pattern, value), value
    text_pattern = properties["description"]["anyOf"][0]["pattern"]
    assert re.fullmatch(text_pattern, "a\n\tb")
    assert not re.fullmatch(text_pattern, "a\rb")
