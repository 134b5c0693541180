"""``edgeseq bench``: accuracy and latency of every artifact, on the device, without TensorFlow."""

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from edgeseq.cli import app
from edgeseq.cli.common import (DataDir, JsonFlag, QuietFlag, check_out, finish, positive, progress, save_reports, table,
                                user_errors)
from edgeseq.errors import EXIT_FAILED, EXIT_INTERRUPTED
from edgeseq.runtimes import Provider


@app.command("bench")
def bench_command(
    paths: Annotated[List[Path], typer.Argument(help="Bundle directories and/or .tflite/.onnx files; with "
                                                "--compare, two bench.json reports.")],
    batch: Annotated[List[int], typer.Option(min=1, help="Batch size to time (repeat for several).")] = [1],  # noqa: B006
    threads: Annotated[Optional[int], typer.Option(min=1, help="Runtime threads (default: the runtime's).")] = None,
    provider: Annotated[Optional[Provider], typer.Option(help="ONNX Runtime execution provider "
                                                         "(default: the best available).")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per artifact and batch size.")] = 200,
    seconds: Annotated[Optional[float], typer.Option(callback=positive, help="Time budget per artifact instead of --runs.")] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = 20,
    cold_start: Annotated[bool, typer.Option("--cold-start/--no-cold-start", help="Measure load + first "
                                             "inference and peak memory in a fresh process.")] = True,
    accuracy: Annotated[bool, typer.Option("--accuracy/--no-accuracy", help="Measure accuracy and agreement.")] = True,
    raw: Annotated[bool, typer.Option("--raw", help="Keep every timed sample in bench.json (default: 2,000 of "
                                      "them, evenly spread, and a histogram of all).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Where to write bench.json, bench.md and plots "
                                                "(default: bench/ in the first bundle, else ./bench).")] = None,
    keras: Annotated[bool, typer.Option("--keras", help="Also time the Keras original the bundle came from "
                                        "(needs TensorFlow): the baseline exporting beats.")] = False,
    compare: Annotated[bool, typer.Option("--compare", help="Compare two bench.json reports instead.")] = False,
    data_dir: DataDir = None,
    quiet: QuietFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Time every artifact (warm-up, then timed runs: mean, std, min, p50, p90, p99, max, throughput),
    measure cold start and peak memory in a fresh process, and accuracy and agreement with the Keras
    original (on the test set the bundle carries), with a fingerprint of the device (CPU, SIMD features, board).

    Prints the results, then writes bench.json (versioned), bench.md and PNG plots; an interrupted run
    (Ctrl-C) writes bench.partial.json beside the last complete report and exits 130.
    `edgeseq bench --compare A.json B.json` prints what changed. Exit codes: 0 everything measured,
    1 something could not be measured (or a regression / an artifact missing from one side with
    --compare), 2 invalid option, 4 bad input (missing, malformed or tampered bundle or report)."""
    with user_errors("bench", as_json) as reply:
        from edgeseq import bench as benchmod
        from edgeseq.report import BENCH_HEADERS, bench_row, compare_markdown

        if compare:
            _compare(benchmod, paths, as_json, compare_markdown)
            return
        config = benchmod.BenchConfig(batch_sizes=tuple(batch), threads=threads, provider=provider.value if provider else None,
                                      warmup=warmup, runs=runs, seconds=seconds, cold_start=cold_start, accuracy=accuracy, raw=raw)
        check_out(out)
        with progress("bench", quiet) as shown:
            reply.result = report = benchmod.bench(paths, config, data_dir=data_dir, keras=keras,
                                                   on_progress=lambda aid, done, total: (shown.start(total), shown.advance(aid)))
        if not as_json:
            _show(report, config, BENCH_HEADERS, bench_row)
        default = paths[0] / "bench" if paths[0].is_dir() else Path("bench")
        files = save_reports(lambda folder: benchmod.write_report(report, folder), out, default,
                             f"{paths[0].resolve().name}-bench")
        if any(f.suffix == ".svg" for f in files):
            typer.echo("note: matplotlib is not installed here: the plots were written as SVG", err=True)
        failed = benchmod.problems(report)
    if report["interrupted"]:
        typer.echo("interrupted: bench.partial.json holds what was measured before Ctrl-C; "
                   "the last complete bench.json is untouched", err=True)
    for problem in failed:
        typer.echo(f"error: {problem}", err=True)
    finish("bench", as_json, report, EXIT_INTERRUPTED if report["interrupted"] else EXIT_FAILED if failed else 0)


def _show(report: dict, config, headers, bench_row) -> None:
    for warning in report["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    for b in config.batch_sizes:
        typer.echo(f"batch {b}:")
        typer.echo(table(headers, [bench_row(r, b) for r in report["artifacts"]]))


def _compare(benchmod, paths: List[Path], as_json: bool, compare_markdown) -> None:
    if len(paths) != 2:
        raise benchmod.InvalidValueError("comparing takes exactly two bench.json reports")
    diff = benchmod.compare(*(benchmod.read_report(p) for p in paths))
    if not as_json:
        typer.echo(compare_markdown(diff))
    for side, ids in (("before", diff["only_before"]), ("after", diff["only_after"])):
        if ids:
            typer.echo(f"only in the {side} report, not compared: {', '.join(ids)}", err=True)
    for row in diff["rows"]:
        for problem in row["unmeasured"]:
            typer.echo(f"not compared: {row['id']}: {problem}", err=True)
    finish("bench", as_json, diff, EXIT_FAILED if diff["regressed"] or not diff["complete"] else 0)
