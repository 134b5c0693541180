"""``edgeseq export``: Keras -> TFLite / ONNX artifacts in a bundle, then verify them."""

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from edgeseq.cli import app
from edgeseq.cli.common import DataDir, JsonFlag, QuietFlag, finish, print_verify, progress, save_reports, user_errors
from edgeseq.errors import EXIT_FAILED
from edgeseq.formats import Format, Quant


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="A .keras file (zoo or your own) or a run directory.")],
    format: Annotated[Optional[List[Format]], typer.Option("--format", "-f", help="Format to export; repeat for "
                                                           "several (default: every format).")] = None,
    quant: Annotated[Optional[List[Quant]], typer.Option("--quant", help="Quantization; repeat for several "
                                                         "(default: every one).")] = None,
    calib: Annotated[int, typer.Option(min=1, help="Training images that calibrate int8 (the first N; at least 100 "
                                       "more stay held out for the int8 search).")] = 300,
    out: Annotated[Optional[Path], typer.Option(help="Bundle directory (default: bundle/ beside the model).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out even when it holds another model's bundle "
                                        "or other files.")] = False,
    data_dir: DataDir = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check every artifact against Keras afterwards.")] = True,
    quiet: QuietFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Convert a Keras model to TFLite and ONNX at each quantization and write a bundle a device can use
    without TensorFlow: the artifacts, manifest.json and reference.npz.

    int8 and dynamic come from a search on 5,000 held-out training images and 1,000 camera-like copies (never
    test images): standard recipes and weights rounded by output error, other ranges or 16-bit activations, then
    the most sensitive layers float, each scored on agreement, integer share, size and latency against fp32 (see
    sensitivity-<artifact>.md); integer artifacts slower than fp32 or not 2x smaller are flagged.

    Each conversion runs in a separate process: one that crashes is reported failed and the others go on.
    The bundle is built beside --out and swapped in whole at the end, so an interrupted export leaves the
    previous bundle intact. Then every artifact is verified against the Keras original (see `edgeseq
    verify`). Exit codes: 0 all made and passing, 1 an artifact failed to convert or fails its thresholds,
    2 invalid option, 3 TensorFlow missing, 4 bad input (model, card, data, destination)."""
    with user_errors("export", as_json) as reply:
        from edgeseq.export.bundle import export_bundle
        from edgeseq.schema import to_json

        formats, quants = list(dict.fromkeys(format or Format)), list(dict.fromkeys(quant or Quant))
        echo = (lambda *a, **k: None) if as_json else typer.echo
        say = (lambda text: None) if quiet else lambda text: typer.echo(text, err=True)

        def started(n: int) -> None:
            say(f"exporting {model} -> {n} artifacts (each conversion in its own process)")
            shown.start(n)

        with progress("export", quiet) as shown:
            result = export_bundle(model, formats=formats, quants=quants, out_dir=out, calibration_size=calib,
                                   data_dir=data_dir, force=force, on_start=started,
                                   on_artifact=lambda aid, status: shown.advance(f"converted {aid}: {status}"))
        for failed in result.failed:
            typer.echo(f"  {failed.id} FAILED: {failed.error}", err=True)
        echo(f"bundle: {result.bundle_dir}")
        reply.result = {"bundle": str(result.bundle_dir), "manifest": to_json(result.manifest), "verify": None}
        if verify:
            from edgeseq.verify import verify as run_verify, write_report

            with progress("verify", quiet) as shown:
                reply.result["verify"] = report = run_verify(result.bundle_dir, data_dir=data_dir, on_start=shown.start,
                                                             on_artifact=lambda row: shown.advance(row["id"]))
            if not as_json:
                print_verify(report)
            save_reports(lambda folder: write_report(report, folder), None, result.bundle_dir, result.bundle_dir.name)
    failed = result.failed or (reply.result["verify"] and not reply.result["verify"]["passed"])
    finish("export", as_json, reply.result, EXIT_FAILED if failed else 0)
