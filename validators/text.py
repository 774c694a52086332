"""Names and labels that are safe to show: no control or bidirectional-override characters.

A name or label that a vendor or an admin types ends up in terminals (`assay versions`), HTML
pages and audit payloads that other people read. A control character there can rewrite the
reader's terminal (ESC sequences, BEL, a carriage return that overprints the line) and a
bidirectional override can make `approved-v1` display as something else (trojan-source style).
So every name and label the API takes is refused if it holds one, with a message that names the
character as U+XXXX and its position.

`Name` is for one-line names and labels; `Text` is for free text (descriptions, model-card
fields) and also lets through newline and tab. Both only add a check: lengths stay on each field.

This module lives in `validators` because the model manifest (validators/manifest.py) needs it and
`validators` imports nothing of `registry`; the service's models import it from here. Only the
standard library and pydantic are imported.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

__all__ = [
    "BIDI_CONTROLS",
    "NAME_CHECK",
    "TEXT_CHECK",
    "Name",
    "Text",
    "UnsafeCharacterCheck",
    "first_unsafe_character",
    "unsafe_character_problem",
]

BIDI_CONTROLS = frozenset(
    "\u061c"  # ARABIC LETTER MARK
    "\u200e\u200f"  # LEFT-TO-RIGHT MARK, RIGHT-TO-LEFT MARK
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings, pop, overrides
    "\u2066\u2067\u2068\u2069"  # isolates
)
"""The Unicode bidirectional formatting characters (Unicode Bidi Algorithm, table 1)."""

_LINE_SEPARATORS = frozenset("\u2028\u2029")
_TEXT_ALLOWED = frozenset("\n\t")

# The same rule for JSON Schema readers (API clients, fuzzers): a string of anything but C0 and
# C1 controls, DEL, the bidi controls and the line and paragraph separators. (Lone surrogates are
# refused by pydantic before the check runs; a surrogate range would not compile in every regex
# dialect that reads JSON Schema, so the pattern leaves them out.)
_NAME_PATTERN = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069"
    "\\u2028\\u2029]*$"
)
_TEXT_PATTERN = _NAME_PATTERN.replace("\\u0000-\\u001f", "\\u0000-\\u0008\\u000b-\\u001f")

_CONTROL_NAMES = {
    0x00: "NULL",
    0x07: "BELL",
    0x08: "BACKSPACE",
    0x09: "CHARACTER TABULATION",
    0x0A: "LINE FEED",
    0x0D: "CARRIAGE RETURN",
    0x1B: "ESCAPE",
    0x7F: "DELETE",
    0x9B: "CONTROL SEQUENCE INTRODUCER",
}


def _kind(char: str) -> str | None:
    """Why `char` is refused in a name, or None when it is allowed."""
    category = unicodedata.category(char)
    if category == "Cc":
        return "a control character"
    if char in BIDI_CONTROLS:
        return "a bidirectional control"
    if char in _LINE_SEPARATORS:
        return "a line separator"
    if category == "Cs":
        return "a lone surrogate, not a character"
    return None


def first_unsafe_character(value: str, *, allow: frozenset[str] = frozenset()) -> int | None:
    """Gives back the index of the first refused character of `value`, or None if it is safe."""
    for index, char in enumerate(value):
        if char not in allow and _kind(char) is not None:
            return index
    return None


def _describe(char: str) -> str:
    code = ord(char)
    name = _CONTROL_NAMES.get(code) or unicodedata.name(char, "")
    label = f"U+{code:04X}" + (f" {name}" if name else "")
    return f"{label} ({_kind(char)})"


def unsafe_character_problem(value: str, *, allow: frozenset[str] = frozenset()) -> str | None:
    """Gives back a sentence naming the first refused character and its position, or None."""
    index = first_unsafe_character(value, allow=allow)
    if index is None:
        return None
    others = sum(1 for char in value[index + 1 :] if char not in allow and _kind(char) is not None)
    more = f" and {others} more such character(s)" if others else ""
    allowed = "; newline and tab are allowed" if allow else ""
    return (
        f"contains {_describe(value[index])} at position {index + 1}{more}: control and "
        f"bidirectional-override characters are not allowed{allowed}"
    )


class UnsafeCharacterCheck:
    """Refuses the characters above in a string; use `NAME_CHECK` or `TEXT_CHECK`.

    One annotation object both validates and adds the rule to the JSON Schema as a `pattern`.
    Put it after any `StringConstraints` in an `Annotated[str, ...]`, so that length errors keep
    pydantic's own wording.
    """

    def __init__(self, *, allow: frozenset[str], pattern: str) -> None:
        self.allow = allow
        self.pattern = pattern

    def check(self, value: str) -> str:
        problem = unsafe_character_problem(value, allow=self.allow)
        if problem is not None:
            raise PydanticCustomError("unsafe_character", problem)
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema: dict[str, Any] = handler(schema)
        json_schema["pattern"] = self.pattern
        return json_schema


NAME_CHECK = UnsafeCharacterCheck(allow=frozenset(), pattern=_NAME_PATTERN)
TEXT_CHECK = UnsafeCharacterCheck(allow=_TEXT_ALLOWED, pattern=_TEXT_PATTERN)

Name = Annotated[str, NAME_CHECK]
"""A one-line name or label: no control, bidi-control or line-separator character."""

Text = Annotated[str, TEXT_CHECK]
"""Free text: as `Name`, except that newline and tab are allowed."""
