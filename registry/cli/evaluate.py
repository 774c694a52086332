"""`assay evaluate`: run one model on a held-out dataset under a policy, on this machine.

No server is involved: the whole pipeline (`validators.runtime.pipeline.evaluate_model`) runs
here, the model in the sandbox. The command parses, shows progress on stderr, writes the files
into `--out` (all of them, or none: they are written into a temporary directory beside it that
is renamed into place) and prints the scorecard. Only typer at module level, like every module
of the package; the pipeline, rich and the server's settings are imported inside the command.

Exit codes: 0 the policy passed; 1 it failed, or the model failed (NaN scores, a wrong shape, a
crash, a hang: the model's fault); 2 bad input (a refused manifest, policy, dataset or artifact,
every problem listed) or an error of the machine (an unavailable sandbox names the setting).
"""

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from registry.cli.common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    JsonOption,
    console,
    dump,
    fail,
    print_json,
)

if TYPE_CHECKING:
    from validators.manifest import ModelManifest
    from validators.policy import Policy
    from validators.problems import Problem
    from validators.runtime.pipeline import EvaluationRun

PREDICTIONS_FILE = "predictions.csv"
BASELINE_FILE = "baseline-predictions.csv"
POLICY_FILE = "policy.json"
RESULT_FILE = "result.json"
STAGES_FILE = "stages.json"

_WEAKER_HINT = (
    "the sandbox could not apply every isolation measure on this machine; to run with the "
    "measures it can apply (each result records which), set ASSAY_SANDBOX_ALLOW_WEAKER=true"
)


def _fail_problems(
    problems: "list[Problem]", *, detail: str, error: str, json_output: bool
) -> NoReturn:
    fail(
        detail,
        code=EXIT_USAGE,
        json_output=json_output,
        error=error,
        problems=[problem.model_dump() for problem in problems],
    )


def _read_inputs(
    manifest: Path,
    policy: Path,
    baseline_manifest: Path | None,
    *,
    json_output: bool,
) -> "tuple[ModelManifest, Policy, ModelManifest | None]":
    """Gives back the parsed manifests and policy; every refusal of any of them is listed."""
    from validators.manifest import ModelManifest, parse_manifest
    from validators.policy import load_policy
    from validators.problems import InputInvalid, Problem

    problems: list[Problem] = []

    def read_manifest(path: Path, role: str) -> ModelManifest | None:
        try:
            return parse_manifest(path.read_bytes())
        except OSError as exc:
            problems.append(
                Problem(path=role, message=f"cannot read {path} ({exc.strerror or exc})")
            )
        except InputInvalid as exc:
            problems.extend(
                Problem(path=f"{role}.{p.path}" if p.path else role, message=p.message)
                for p in exc.problems
            )
        return None

    parsed = read_manifest(manifest, "manifest")
    parsed_baseline = (
        read_manifest(baseline_manifest, "baseline_manifest")
        if baseline_manifest is not None
        else None
    )
    loaded = None
    try:
        loaded = load_policy(policy)
    except InputInvalid as exc:
        problems.extend(
            Problem(path=f"policy.{p.path}" if p.path else "policy", message=p.message)
            for p in exc.problems
        )
    if problems or parsed is None or loaded is None:
        _fail_problems(
            problems,
            detail=f"the inputs were refused: {len(problems)} problem(s)",
            error="invalid_input",
            json_output=json_output,
        )
    return parsed, loaded, parsed_baseline


def _default_out() -> Path:
    return Path.cwd() / f"evaluation-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def _check_out(out: Path, *, json_output: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        fail(
            f"{out} already exists and is not an empty directory; give --out a new or empty "
            "directory, so no earlier evaluation is overwritten",
            code=EXIT_USAGE,
            json_output=json_output,
            error="usage",
        )


def _write_out(out: Path, run: "EvaluationRun") -> None:
    """Writes every file into a temporary directory beside `out`, then renames it to `out`."""
    import shutil
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        (staging / PREDICTIONS_FILE).write_text(run.predictions_csv, encoding="utf-8")
        if run.baseline_csv is not None:
            (staging / BASELINE_FILE).write_text(run.baseline_csv, encoding="utf-8")
        (staging / POLICY_FILE).write_text(
            json.dumps(run.policy.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )
        (staging / RESULT_FILE).write_text(run.result.model_dump_json(indent=2) + "\n")
        (staging / STAGES_FILE).write_text(json.dumps(_stages(run), indent=2) + "\n")
        os.chmod(staging, 0o755)
        if out.exists():
            out.rmdir()  # empty, checked before the run
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stages(run: "EvaluationRun") -> dict[str, Any]:
    return {
        "decoded": run.decoded,
        "stages": [
            {
                "stage": m.stage,
                "seconds": round(m.seconds, 3),
                "peak_rss_bytes": m.peak_rss_bytes,
                "children_peak_rss_bytes": m.children_peak_rss_bytes,
            }
            for m in run.stages
        ],
    }


def _cache_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    from registry.settings import get_settings

    return get_settings().home_dir / "decode-cache"


def evaluate(
    model: Annotated[
        Path,
        typer.Option(
            "--model", metavar="FILE", show_default=False, help="The model: ONNX or safetensors."
        ),
    ],
    manifest: Annotated[
        Path,
        typer.Option("--manifest", metavar="FILE", show_default=False, help="Its manifest JSON."),
    ],
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset", metavar="DIR", show_default=False, help="The held-out dataset's root."
        ),
    ],
    policy: Annotated[
        Path,
        typer.Option(
            "--policy", metavar="FILE", show_default=False, help="Evaluation policy (YAML/JSON)."
        ),
    ],
    cases: Annotated[
        Path | None,
        typer.Option(
            "--cases",
            metavar="CSV",
            show_default=False,
            help="The dataset manifest (default: cases.csv in DIR).",
        ),
    ] = None,
    baseline_model: Annotated[
        Path | None,
        typer.Option(
            "--baseline-model",
            metavar="FILE",
            show_default=False,
            help="The model being replaced, for non_inferiority criteria.",
        ),
    ] = None,
    baseline_manifest: Annotated[
        Path | None,
        typer.Option(
            "--baseline-manifest", metavar="FILE", show_default=False, help="Its manifest."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            show_default=False,
            help="New directory for the predictions, the policy used and the result "
            "(default: ./evaluation-<time>).",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            metavar="DIR",
            show_default=False,
            help="Decode cache (default: ASSAY_HOME/decode-cache).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Run a model on a held-out dataset in the sandbox and judge it: the whole pipeline, locally.

    Intake, decoding, sandboxed inference, the speed benchmark and the statistics; writes the
    predictions and the result to --out and prints the scorecard. Exit codes: 0 passed, 1 the
    policy or the model failed, 2 bad input or an error.
    """
    if (baseline_model is None) != (baseline_manifest is None):
        fail(
            "--baseline-model and --baseline-manifest go together; give both or neither",
            code=EXIT_USAGE,
            json_output=json_output,
            error="usage",
        )
    target = (out or _default_out()).absolute()
    _check_out(target, json_output=json_output)
    try:
        run = _run(
            model,
            manifest,
            dataset,
            policy,
            cases=cases,
            baseline=(baseline_model, baseline_manifest),
            cache_dir=_cache_dir(cache_dir),
            json_output=json_output,
        )
    except ModuleNotFoundError as exc:
        fail(
            f"assay evaluate needs the server installation (pip install 'assay[server]'): {exc}",
            code=EXIT_USAGE,
            json_output=json_output,
            error="server_not_installed",
        )
    _write_out(target, run)
    result = run.result
    if json_output:
        print_json(dump(result))
    else:
        from dashboards.scorecard import render_scorecard

        stdout = console()
        render_scorecard(result, console=stdout if stdout.is_terminal else console(width=160))
    typer.echo(
        f"wrote {PREDICTIONS_FILE}, {POLICY_FILE}, {RESULT_FILE} and {STAGES_FILE} to {target}",
        err=True,
    )
    if result.verdict is not None and not result.verdict.passed:
        raise typer.Exit(EXIT_REFUSED)


def _run(
    model: Path,
    manifest: Path,
    dataset: Path,
    policy: Path,
    *,
    cases: Path | None,
    baseline: tuple[Path | None, Path | None],
    cache_dir: Path,
    json_output: bool,
) -> "EvaluationRun":
    """Gives back the pipeline's run; every refusal or failure is printed with its exit code."""
    from registry.settings import get_settings
    from validators.data.cache import CacheError
    from validators.data.datasets import DatasetInvalid
    from validators.runtime.intake import IntakeFailed
    from validators.runtime.pipeline import (
        EvaluationSetupInvalid,
        ModelFailed,
        ModelFiles,
        PipelineSettings,
        evaluate_model,
    )
    from validators.runtime.runner import RunnerSettings

    parsed, loaded, parsed_baseline = _read_inputs(
        manifest, policy, baseline[1], json_output=json_output
    )
    settings = get_settings()
    pipeline = PipelineSettings(
        cache_dir=cache_dir,
        runner=RunnerSettings(allow_weaker_isolation=settings.sandbox_allow_weaker),
        hide=tuple(settings.sandbox_hidden_paths()),
    )
    baseline_files = (
        ModelFiles(baseline[0], parsed_baseline)
        if baseline[0] is not None and parsed_baseline is not None
        else None
    )
    with _progress() as (decoding, inference, step):
        try:
            return evaluate_model(
                ModelFiles(model, parsed),
                dataset,
                loaded,
                settings=pipeline,
                cases="cases.csv" if cases is None else Path.cwd() / cases,
                baseline=baseline_files,
                decode_progress=decoding,
                inference_progress=inference,
                on_step=step,
            )
        except (EvaluationSetupInvalid, DatasetInvalid) as exc:
            _fail_problems(
                list(exc.problems),
                detail=f"{exc.source}: {len(exc.problems)} problem(s), each below",
                error=exc.code,
                json_output=json_output,
            )
        except ModelFailed as exc:
            unavailable = exc.status == "error" and "ALLOW_WEAKER" not in exc.reason
            hint = _WEAKER_HINT if unavailable and "sandbox" in exc.reason.lower() else None
            fail(
                f"the {exc.role} {exc.status}: {exc.reason}",
                code=EXIT_REFUSED if exc.status == "failed" else EXIT_USAGE,
                json_output=json_output,
                error=f"model_{exc.status}",
                hint=hint,
            )
        except (IntakeFailed, CacheError) as exc:
            fail(str(exc), code=EXIT_USAGE, json_output=json_output, error="error")


class _Progress:
    """Two progress bars (decoding, inference) and step lines, on stderr."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bars = Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(stderr=True),
        )
        self.tasks: dict[str, Any] = {}

    def bar(self, name: str) -> Any:
        def update(done: int, total: int) -> None:
            if name not in self.tasks:
                self.tasks[name] = self.bars.add_task(name, total=total)
            self.bars.update(self.tasks[name], completed=done, total=total)

        return update

    def step(self, text: str) -> None:
        self.bars.console.print(f"[dim]{text}[/dim]")


class _progress:
    """Context manager yielding (decoding, inference, step) callbacks over one rich Progress."""

    def __enter__(self) -> tuple[Any, Any, Any]:
        self.progress = _Progress()
        self.progress.bars.start()
        return self.progress.bar("decoding"), self.progress.bar("inference"), self.progress.step

    def __exit__(self, *exc: object) -> None:
        self.progress.bars.stop()
