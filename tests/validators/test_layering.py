"""The import layering of `validators/`: acyclic, kernels below engines, no file too long.

Every module under `validators/` is parsed with `ast` (nothing is imported), and every import is
counted, at module level or inside a function: a lazy import is still an edge, so hiding a
back-edge inside a function does not make the layering right (DESIGN.md, "Layout").
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "validators"
MAX_LINES = 650

# Files allowed over the limit, each with its reason; none today.
LINE_LIMIT_EXCLUDED: frozenset[str] = frozenset()

# Layer -> the prefixes it must never import (a prefix matches the module or anything below it).
FORBIDDEN = {
    "validators.metrics": (
        "validators.resampling",
        "validators.evaluation",
        "validators.policy",
        "validators.suppression",
    ),
    "validators.resampling": (
        "validators.evaluation",
        "validators.policy",
        "validators.suppression",
    ),
    "validators.results": (
        "validators.metrics",
        "validators.resampling",
        "validators.evaluation",
        "validators.policy",
    ),
    # The vendor view reads typed results only, so the engine can call it without a cycle.
    "validators.suppression": (
        "validators.resampling",
        "validators.evaluation",
        "validators.policy",
    ),
    # The policy judges typed results; it never runs the engine (the engine reads the policy).
    "validators.policy": (
        "validators.metrics",
        "validators.resampling",
        "validators.evaluation",
        "validators.suppression",
    ),
    # Facts about tasks and metrics that every layer reads: it reads none of them.
    "validators.vocabulary": ("validators",),
    "validators": ("registry", "dashboards"),
}


def module_name(path: Path) -> str:
    """Return the dotted module name of a file under the repository root."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Return every module under validators/, by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_in(source: str, package: str) -> Iterator[str]:
    """Yield every absolute module name `source` imports anywhere (relative ones resolved)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            # `from validators import results` imports the submodule validators.results.
            for alias in node.names:
                yield f"{base}.{alias.name}"


def imported_names(path: Path) -> Iterator[str]:
    """Yield every absolute module name the file imports anywhere (relative ones resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package)


def internal_edges() -> dict[str, set[str]]:
    """Return, per validators module, the validators modules it imports."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for imported in imported_names(path):
            # `from validators.metrics import X` is an edge to validators.metrics (X may be a
            # name, not a module), so keep the longest known module prefix.
            parts = imported.split(".")
            for cut in range(len(parts), 0, -1):
                candidate = ".".join(parts[:cut])
                if candidate in known:
                    if candidate != name:
                        targets.add(candidate)
                    break
        edges[name] = targets
    return edges


def within(module: str, prefix: str) -> bool:
    """Return whether `module` is `prefix` or a module below it."""
    return module == prefix or module.startswith(prefix + ".")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_find_cycle_reports_a_cycle_and_accepts_a_chain() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_inside_functions_and_relative_imports_are_edges() -> None:
    source = (
        "from . import sibling\n"
        "def f() -> None:\n"
        "    from validators.evaluation import x\n"
        "    import validators.policy\n"
    )
    found = set(imports_in(source, "validators.metrics"))
    assert {"validators.metrics.sibling", "validators.evaluation", "validators.policy"} <= found


def test_no_import_cycle_among_validators_modules() -> None:
    cycle = find_cycle(internal_edges())
    assert cycle is None, (
        f"validators has an import cycle: {' -> '.join(cycle or [])}; move the shared piece "
        f"down into the lower layer (metrics < resampling < evaluation)"
    )


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    offending = []
    for name, path in modules().items():
        if not within(name, layer):
            continue
        for imported in imported_names(path):
            for prefix in FORBIDDEN[layer]:
                if within(imported, prefix):
                    offending.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not offending, f"{layer} must not import {', '.join(FORBIDDEN[layer])}: " + "; ".join(
        sorted(set(offending))
    )


def test_the_layers_exist() -> None:
    names = modules()
    for layer in ("validators.results", "validators.metrics", "validators.resampling"):
        assert layer in names, f"{layer} is missing: the layering test checks nothing for it"
    assert "validators.evaluation" in names


def test_no_validators_file_is_over_the_line_limit() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in LINE_LIMIT_EXCLUDED:
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long.append(f"{relative} ({lines} lines)")
    assert not too_long, f"over {MAX_LINES} lines, split them: {', '.join(too_long)}"
