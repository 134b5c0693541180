"""What every command shares: error mapping, common options, plain-text tables."""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer
from typing_extensions import Annotated

from edgeseq.data import ENV_VAR
from edgeseq import __version__
from edgeseq.atomic import jsonable
from edgeseq.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EdgeseqError
from edgeseq.outputs import report_dir, require_writable
from edgeseq.progress import Progress

DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help=f"Folder with the MNIST IDX .gz files or mnist.npz (default: ${ENV_VAR}, "
                 "then the Keras cache, then a checked download)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (the same envelope on every "
                                        "command: schema, command, ok, exit_code, error, result).")]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display on stderr.")]


def progress(what: str, quiet: bool, total: Optional[int] = None, every: float = 0.0) -> Progress:
    """The one progress display (:mod:`edgeseq.progress`) for a command's long step."""
    return Progress(what, total, quiet=quiet, every=every)


ENVELOPE = "edgeseq.cli/1"


def envelope(command: str, result, exit_code: int, error: Optional[str] = None) -> str:
    """What every command prints with ``--json``: the same keys around each command's own result."""
    return json.dumps({"schema": ENVELOPE, "command": command, "edgeseq": __version__, "ok": exit_code == 0,
                       "exit_code": exit_code, "error": error, "result": result}, indent=2, default=jsonable)


def finish(command: str, as_json: bool, result, exit_code: int = 0) -> None:
    """End a command: the envelope on stdout with ``--json``, then the exit code."""
    if as_json:
        typer.echo(envelope(command, result, exit_code))
    if exit_code:
        raise typer.Exit(exit_code)


class Reply:
    """What a command has so far: a failure after measuring still hands it to the ``--json`` envelope."""

    result = None


def _fail(command: Optional[str], as_json: bool, reply: Reply, message: str, code: int) -> None:
    typer.echo(message, err=True)
    if as_json and command:
        typer.echo(envelope(command, reply.result, code, message))
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors(command: Optional[str] = None, as_json: bool = False) -> Iterator[Reply]:
    """Known problems become one line on stderr (and, with ``--json``, an envelope holding it and whatever
    the command had measured on stdout) and their exit code; Ctrl-C exits 130."""
    reply = Reply()
    try:
        yield reply
    except EdgeseqError as exc:
        _fail(command, as_json, reply, f"error: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        _fail(command, as_json, reply, "interrupted", EXIT_INTERRUPTED)
    except OSError as exc:  # the file system said no (a file where a folder goes, full, read-only, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(command, as_json, reply, f"error: {where}{exc.strerror or exc}", EXIT_BAD_INPUT)


def finite(value: Optional[float]) -> Optional[float]:
    """Typer callback: NaN and infinity are not numbers a threshold or a time budget can be (exit 2)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def fraction(value: Optional[float]) -> Optional[float]:
    """Typer callback: a finite number in [0, 1]."""
    finite(value)
    if value is not None and not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"{value} is not a fraction in [0, 1]")
    return value


def non_negative(value: Optional[float]) -> Optional[float]:
    finite(value)
    if value is not None and value < 0:
        raise typer.BadParameter(f"{value} is negative")
    return value


def positive(value: Optional[float]) -> Optional[float]:
    finite(value)
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value} is not > 0")
    return value


def save_reports(write: Callable[[Path], List[Path]], requested: Optional[Path], default: Path, label: str) -> List[Path]:
    """Write reports (after the results were printed) where :func:`edgeseq.outputs.report_dir` says; the
    note on a fallback and the list of files go to stderr, so that ``--json`` output stays parseable."""
    folder, note = report_dir(requested, default, label)
    if note:
        typer.echo(f"note: {note}", err=True)
    files = write(folder)
    typer.echo("wrote: " + ", ".join(str(f) for f in files), err=True)
    return files


def check_out(requested: Optional[Path]) -> None:
    """An explicit output folder that cannot be written is refused before anything is measured."""
    if requested is not None:
        require_writable(requested)


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


def print_verify(report: dict) -> None:
    """A verify report as a table, each failing threshold on a line of its own."""
    from edgeseq.report import VERIFY_HEADERS, verify_row

    typer.echo(f"{report['model']}: evaluated on the {report['evaluated_on']}")
    typer.echo(table(VERIFY_HEADERS, [verify_row(r) for r in report["artifacts"]]))
    for row in report["artifacts"]:
        for reason in row["reasons"]:
            typer.echo(f"  {row['id']} FAIL: {reason}")
        for flag in row.get("flags", []):
            typer.echo(f"  {row['id']} not worth having: {flag}")
    passed = sum(r["passed"] for r in report["artifacts"])
    typer.echo(f"{passed} of {len(report['artifacts'])} artifacts pass")
