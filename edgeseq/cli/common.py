"""What every command shares: error mapping, common options, plain-text tables."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

import typer
from typing_extensions import Annotated

from edgeseq.data import ENV_VAR
from edgeseq.errors import EdgeseqError

DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help=f"Folder with the MNIST IDX .gz files or mnist.npz (default: ${ENV_VAR}, "
                 "then the Keras cache, then a checked download)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Known problems become one line on stderr and a non-zero exit; Ctrl-C exits 130."""
    try:
        yield
    except EdgeseqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def force_cpu() -> None:
    """Hide GPUs from every backend; must run before Keras is imported."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    os.environ["JAX_PLATFORMS"] = "cpu"


def table(headers: list[str], rows: list[list]) -> str:
    """A left-aligned plain-text table (numbers right-aligned)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%"))
        return True
    except ValueError:
        return False
