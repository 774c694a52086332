"""`assay score` and `assay example-predictions`: evaluating a predictions file locally.

No server is involved; the statistics libraries (the `server` extra) are. Both commands are
plain functions, registered in `registry/cli/__init__.py`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from registry.cli.common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    JsonOption,
    console,
    dump,
    fail,
    fail_invalid,
    print_json,
    print_warning,
)


class ScoreScale(StrEnum):
    # The scales of validators.vocabulary.SCORE_SCALES, written out: the command line imports
    # nothing of validators at start-up (a client-only install has none); a test checks they agree.
    probability = "probability"
    logit = "logit"


class ResultView(StrEnum):
    committee = "committee"
    vendor = "vendor"


# The --json error code `assay score` has printed for a refused policy since it was written
# (docs/scoring.md); scripts read it. Another kind of document prints its exception's own code.
_JSON_ERRORS = {"invalid_policy": "policy_invalid"}


@contextmanager
def _scoring(json_output: bool) -> Iterator[None]:
    """Runs `assay score`: bad input (file, policy, options) becomes a message and exit 2."""
    try:
        yield
    except ModuleNotFoundError as exc:
        fail(
            f"assay score needs the statistics libraries (pip install 'assay[server]'): {exc}",
            code=EXIT_USAGE,
            json_output=json_output,
            error="server_not_installed",
        )
    except Exception as exc:
        from validators.data.predictions import PredictionsInvalid
        from validators.problems import InputInvalid

        if isinstance(exc, InputInvalid):
            # Any refused document (today the policy) prints its problems, one a line.
            fail_invalid(
                exc,
                code=EXIT_USAGE,
                json_output=json_output,
                error=_JSON_ERRORS.get(exc.code, exc.code),
            )
        if isinstance(exc, PredictionsInvalid):
            fail(str(exc), code=EXIT_USAGE, json_output=json_output, error="predictions_invalid")
        if isinstance(exc, ValueError):
            # The statistics refuse unusable data with a ValueError that says what was expected.
            fail(str(exc), code=EXIT_USAGE, json_output=json_output, error="invalid_input")
        raise


def _read_predictions(path: Path, role: str) -> Any:
    """Gives back the predictions table; a refusal names the file and its role."""
    from validators.data.predictions import PredictionsInvalid, read_predictions

    try:
        return read_predictions(path)
    except PredictionsInvalid as exc:
        message = str(exc)
        raise PredictionsInvalid(
            message if str(path) in message else f"{role} {path}: {message}"
        ) from exc


def score(
    predictions: Annotated[
        Path,
        typer.Argument(
            show_default=False,
            help="Predictions CSV: case_id, patient_id, label and score (or label:<name> and "
            "score:<name> per label), then attribute columns (sex, age, site...).",
        ),
    ],
    policy: Annotated[
        Path | None,
        typer.Option(
            metavar="POLICY.yaml",
            show_default=False,
            help="Evaluation policy (YAML or JSON). Without one: the default metrics, 95% "
            "bootstrap intervals, every attribute column, and no verdict.",
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            metavar="BASELINE.csv",
            show_default=False,
            help="The same cases scored by the model being replaced (non_inferiority criteria).",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(show_default=False, help="Operating threshold; overrides the policy's."),
    ] = None,
    scores: Annotated[
        ScoreScale | None,
        typer.Option(show_default=False, help="Scale of the scores; overrides the policy's."),
    ] = None,
    view: Annotated[
        ResultView,
        typer.Option(help="committee: every number, small groups flagged; vendor: suppressed."),
    ] = ResultView.committee,
    json_output: JsonOption = False,
) -> None:
    """Evaluate a predictions file: metrics with CIs, subgroups, fairness and the policy verdict.

    Exit codes: 0 evaluated (and the policy passed), 1 the policy failed, 2 bad input.
    """
    import warnings

    status = console(stderr=True).status("reading the predictions", spinner="dots")
    with _scoring(json_output), status, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        from validators.evaluation import evaluate_predictions
        from validators.policy import load_policy

        loaded_policy = load_policy(policy) if policy is not None else None
        table = _read_predictions(predictions, "predictions file")
        reference = None
        if baseline is not None:
            status.update("reading the baseline")
            reference = _read_predictions(baseline, "baseline file")
        result = evaluate_predictions(
            table,
            policy=loaded_policy,
            baseline=reference,
            threshold=threshold,
            scores=scores.value if scores is not None else None,
            view=view.value,
            on_progress=lambda step: status.update(step),
        )
    for warning in caught:
        print_warning(str(warning.message))
    criteria = loaded_policy.criteria if loaded_policy is not None else []
    if baseline is not None and not any(c.kind == "non_inferiority" for c in criteria):
        print_warning("no non_inferiority criterion reads the baseline, so it was only checked.")
    if json_output:
        print_json(dump(result))
    else:
        from dashboards.scorecard import render_scorecard

        out = console()
        # Piped output has no terminal width; tables then keep a readable width of their own.
        render_scorecard(result, console=out if out.is_terminal else console(width=160))
    if result.verdict is not None and not result.verdict.passed:
        raise typer.Exit(EXIT_REFUSED)


def example_predictions(
    out: Annotated[Path, typer.Option(file_okay=False, help="Directory to write into.")],
    cases: Annotated[int, typer.Option(min=1, help="Number of cases (images).")] = 2000,
    patients: Annotated[
        int, typer.Option(min=1, help="Number of patients (at most the number of cases).")
    ] = 800,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the synthetic data.")] = 0,
    json_output: JsonOption = False,
) -> None:
    """Write a synthetic predictions file and a baseline on the same cases, to try `assay score`."""
    with _scoring(json_output):
        from validators.data.synthetic import write_example_predictions

        files = write_example_predictions(Path(out), n_cases=cases, n_patients=patients, seed=seed)
    if json_output:
        print_json(
            {
                "predictions": str(files.predictions),
                "baseline": str(files.baseline),
                "cases": files.n_cases,
                "patients": files.n_patients,
            }
        )
        return
    typer.echo(
        f"Wrote {files.n_cases:,} synthetic cases of {files.n_patients:,} patients "
        f"to {files.predictions}"
    )
    typer.echo(f"  and the deployed model's scores on the same cases to {files.baseline}")
    typer.echo("Score them with:")
    typer.echo(
        f"  assay score {files.predictions} --baseline {files.baseline} "
        "--policy policies/example-binary.yaml"
    )
