"""``edgeseq evaluate``: test-set metrics, confusion matrix and example grids for any Keras model."""

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from edgeseq.cli import app
from edgeseq.cli.common import DataDir, JsonFlag, check_out, finish, table, user_errors


@app.command("evaluate")
def evaluate_command(
    model: Annotated[Path, typer.Argument(help="A .keras file (zoo or your own) or a run directory.")],
    data_dir: DataDir = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write figures (default: beside the model).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N test images.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Score a model on the MNIST test set and write confusion.png, correct.png, wrong.png and
    evaluation.json (plus samples.md for spelling models)."""
    with user_errors("evaluate", as_json):
        check_out(out)
        from edgeseq.training.evaluate import evaluate

        result = evaluate(model, data_dir=data_dir, out_dir=out, limit=limit)
    if as_json:
        finish("evaluate", as_json, result.to_json())
        return
    typer.echo(f"{result.model}: {result.kind} model, {result.examples:,} test images")
    typer.echo(table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in result.metrics.items()]))
    typer.echo("wrote: " + ", ".join(f.name for f in result.files))
