"""``edgeseq export``: Keras -> TFLite / ONNX artifacts in a bundle, then verify them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from edgeseq.cli import app
from edgeseq.cli.common import DataDir, JsonFlag, save_reports, user_errors
from edgeseq.cli.verify import print_report
from edgeseq.errors import EXIT_FAILED


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="A .keras file (zoo or your own) or a run directory.")],
    format: Annotated[str, typer.Option("--format", "-f", help="tflite, onnx, a comma list, or all.")] = "all",
    quant: Annotated[str, typer.Option("--quant", "-q", help="fp32, fp16, dynamic, int8, a comma list, or all.")] = "all",
    calib: Annotated[int, typer.Option(min=1, help="Training images that calibrate int8 (at least 100 more stay "
                                       "held out to choose between int8 candidates).")] = 300,
    out: Annotated[Optional[Path], typer.Option(help="Bundle directory (default: bundle/ beside the model).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out even when it holds another model's bundle "
                                        "or other files.")] = False,
    data_dir: DataDir = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check every artifact against Keras afterwards.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Convert a Keras model to TFLite and ONNX at each quantization and write a bundle a device can use
    without TensorFlow: the artifacts, manifest.json and reference.npz.

    Each conversion runs in a separate process: one that crashes is reported failed and the others go on.
    The bundle is built beside --out and swapped in whole at the end, so an interrupted export leaves the
    previous bundle intact. Then every artifact is verified against the Keras original (see `edgeseq
    verify`). Exit codes: 0 all made and passing, 1 an artifact failed to convert or fails its thresholds,
    2 invalid option, 3 TensorFlow missing, 4 bad input (model, card, data, destination)."""
    with user_errors():
        from edgeseq.export.bundle import export_bundle
        from edgeseq.formats import Format, Quant, expand
        from edgeseq.schema import to_json

        formats, quants = expand(format, Format), expand(quant, Quant)
        echo = (lambda *a, **k: None) if as_json else typer.echo
        result = export_bundle(model, formats=formats, quants=quants, out_dir=out, calibration_size=calib,
                               data_dir=data_dir, force=force,
                               on_artifact=lambda aid, status: echo(f"  converted {aid}: {status}"),
                               on_start=lambda n: echo(f"exporting {model} -> {n} artifacts (each conversion in its own process)"))
        for failed in result.failed:
            echo(f"  {failed.id} FAILED: {failed.error}", err=True)
        echo(f"bundle: {result.bundle_dir}")
        report = None
        if verify:
            from edgeseq.verify import verify as run_verify, write_report

            report = run_verify(result.bundle_dir, data_dir=data_dir)
        if as_json:
            typer.echo(json.dumps({"bundle": str(result.bundle_dir), "manifest": to_json(result.manifest),
                                   "verify": report}, indent=2))
        elif report:
            print_report(report)
        if report:
            save_reports(lambda folder: write_report(report, folder), None, result.bundle_dir, result.bundle_dir.name)
    if result.failed or (report and not report["passed"]):
        raise typer.Exit(EXIT_FAILED)
