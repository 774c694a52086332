"""Rewrite the examples the docs show from the code: docs/scoring.md and docs/statistics.md.

`test_the_complete_example_in_the_docs_is_what_the_code_prints` holds the docs to the code; when
the statistics change on purpose, run `.venv/bin/python -m tests.registry.scoring_example` and
review the diff of docs/scoring.md. The example's CSV and policy blocks are its input; the
scorecard block (as printed 200 columns wide) and the JSON block (in the docs' layout: a flat
object or a list of scalars on one line) are rewritten. In docs/statistics.md the "A complete
result" JSON is rewritten by running the Python block above it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from registry.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "scoring.md"


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def layout(value: Any, indent: int = 0) -> str:
    """Return JSON with flat objects and scalar lists on one line, the rest indented by 2."""
    if _scalar(value) or (isinstance(value, list) and all(_scalar(v) for v in value)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and all(_scalar(v) for v in value.values()):
        return json.dumps(value, ensure_ascii=False)
    pad = " " * (indent + 2)
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [f"{pad}{layout(v, indent + 2)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    if not value:
        return "{}"
    items = [f"{pad}{json.dumps(k)}: {layout(v, indent + 2)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


def blocks(text: str, language: str) -> list[str]:
    """Return the fenced code blocks of `language` in a Markdown text, each ending in a newline."""
    fence = f"```{language}\n"
    return [part.split("\n```", 1)[0] + "\n" for part in text.split(fence)[1:]]


def _block(text: str, language: str, predicate: Any, where: str = "docs/scoring.md") -> str:
    for block in blocks(text, language):
        if predicate(block):
            return block
    raise SystemExit(f"{where} has no {language} block of the example")


def main() -> None:
    text = DOCS.read_text(encoding="utf-8")
    csv = _block(text, "csv", lambda b: b.count("\n") > 30)
    policy = _block(text, "yaml", lambda b: "name: docs-example" in b)
    old = _block(text, "json", lambda b: True)
    with tempfile.TemporaryDirectory() as folder:
        files = [str(Path(folder) / "example.csv"), "--policy", str(Path(folder) / "policy.yaml")]
        (Path(folder) / "example.csv").write_text(csv, encoding="utf-8")
        (Path(folder) / "policy.yaml").write_text(policy, encoding="utf-8")
        result = CliRunner().invoke(app, ["score", *files, "--json"])
        scorecard = CliRunner().invoke(app, ["score", *files], env={"COLUMNS": "200"})
    for run in (result, scorecard):
        if run.exit_code != 0:
            raise SystemExit(f"assay score exited {run.exit_code}: {run.output}")
    new = layout(json.loads(result.stdout)) + "\n"
    text = text.replace(old, new, 1)
    prompt = "$ assay score example.csv --policy policy.yaml\n"
    console = _block(text, "console", lambda b: b.startswith(prompt))
    printed = "\n".join(line.rstrip() for line in scorecard.stdout.rstrip().splitlines())
    text = text.replace(console, f"{prompt}{printed}\n", 1)
    DOCS.write_text(text, encoding="utf-8")
    print(f"rewrote the scorecard and the JSON example in {DOCS.relative_to(ROOT)}")


def statistics_example() -> None:
    """Rewrite the JSON of "A complete result" in docs/statistics.md by running its code."""
    path = ROOT / "docs" / "statistics.md"
    text = path.read_text(encoding="utf-8")
    section = text[text.index("## A complete result") :]
    where = 'docs/statistics.md, "A complete result"'
    code = _block(section, "python", lambda b: "EvaluationResult(" in b, where)
    old = _block(section, "json", lambda b: True, where)
    namespace: dict[str, Any] = {}
    exec(compile(code.replace("print(", "_ = ("), "docs/statistics.md", "exec"), namespace)
    new = layout(json.loads(namespace["result"].model_dump_json())) + "\n"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    print("rewrote the complete result in docs/statistics.md")


if __name__ == "__main__":
    main()
    statistics_example()
