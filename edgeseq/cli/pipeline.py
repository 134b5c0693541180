"""``edgeseq pipeline``: train, evaluate, export, verify and bench in one run folder with one report."""

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from edgeseq.cli import app
from edgeseq.cli.common import DataDir, JsonFlag, check_out, finish, user_errors
from edgeseq.errors import EXIT_FAILED


@app.command("pipeline")
def pipeline_command(
    model: Annotated[str, typer.Argument(help="A zoo model name (see `edgeseq zoo`) or a .keras file.")],
    quick: Annotated[bool, typer.Option("--quick", help="Train one epoch instead of the seed recipe.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/pipeline-NAME).")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per artifact in the bench stage.")] = 200,
    data_dir: DataDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No stage lines on stderr.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train (zoo models, seed recipe) or take your .keras model, evaluate it, export every format and
    quantization, verify each artifact against it, bench them all beside Keras, and write report.md.

    Writes report.md and its typed twin pipeline.json. Exit codes: 0 everything passes, 1 an artifact
    fails to convert or fails its thresholds (the report says which and why), 2 invalid option, 4 bad
    input."""
    with user_errors("pipeline", as_json):
        check_out(out)
        from edgeseq.pipeline import run_pipeline

        result = run_pipeline(model, out_dir=out, quick=quick, data_dir=data_dir, bench_runs=runs,
                              say=(lambda line: None) if quiet else lambda line: typer.echo(f"== {line}", err=True))
    if as_json:
        from edgeseq.schema import PipelineReport, read_document, to_json

        document = to_json(read_document(result.run_dir / "pipeline.json", PipelineReport))
        finish("pipeline", as_json, document, 0 if result.passed else EXIT_FAILED)
        return
    typer.echo(f"Verdict: {result.verdict}.")
    typer.echo(f"report: {result.report_path}  (stage seconds: "
               + ", ".join(f"{k} {v}" for k, v in result.seconds.items()) + ")")
    if not result.passed:
        raise typer.Exit(EXIT_FAILED)
