"""Text that may be stored: no NUL, no lone surrogate, and JSON nested no deeper than a bound.

PostgreSQL refuses NUL in `text` and `\\u0000` in `jsonb`, and neither database can encode a
lone UTF-16 surrogate that a JSON `\\ud800` escape produces; SQLite would store what PostgreSQL
refuses. Refusing these at every boundary where text arrives (request bodies, query and path
parameters, headers, the manifest, the metadata of an artifact) makes both databases behave the
same, with a 422 that names the field instead of a 500 from the driver. Deep nesting is refused
for the same reason: code that walks a document recursively must not meet a document deeper than
the interpreter's stack.
"""

from __future__ import annotations

import re

__all__ = ["MAX_JSON_DEPTH", "json_text_problems", "text_problem"]

MAX_JSON_DEPTH = 64
"""No document Assay accepts needs more levels than this (a manifest uses four)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Return why the text cannot be stored, or None when it can."""
    if (index := value.find("\x00")) >= 0:
        return f"contains U+0000 NUL at position {index + 1}, a character no text field may hold"
    if (found := _SURROGATE.search(value)) is not None:
        return (
            f"contains U+{ord(found.group()):04X}, a lone UTF-16 surrogate, at position "
            f"{found.start() + 1}: it is not valid Unicode text"
        )
    return None


def _join(path: str, key: str | int) -> str:
    part = str(key)[:100].replace("\x00", "\\u0000")
    part = _SURROGATE.sub("\ufffd", part)
    return f"{path}.{part}" if path else part


def json_text_problems(
    document: object, *, max_depth: int = MAX_JSON_DEPTH, limit: int = 100
) -> list[tuple[str, str]]:
    """Return (dotted path, message) for each string or key that cannot be stored, and depth.

    The walk is iterative, so a document of any depth is examined without recursion; at most
    `limit` problems are gathered.
    """
    problems: list[tuple[str, str]] = []
    stack: list[tuple[object, str, int]] = [(document, "", 0)]
    while stack and len(problems) < limit:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if (reason := text_problem(value)) is not None:
                problems.append((path, reason))
            continue
        if not isinstance(value, dict | list):
            continue
        if depth >= max_depth:
            problems.append((path, f"nested more than {max_depth} levels deep"))
            continue
        if isinstance(value, dict):
            items = list(value.items())
            for key, child in reversed(items):
                child_path = _join(path, key)
                if isinstance(key, str) and (reason := text_problem(key)) is not None:
                    problems.append((child_path, f"the key {reason}"))
                stack.append((child, child_path, depth + 1))
        else:
            for index in range(len(value) - 1, -1, -1):
                stack.append((value[index], _join(path, index), depth + 1))
    return problems
