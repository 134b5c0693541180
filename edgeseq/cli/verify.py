"""``edgeseq verify``: every artifact of a bundle against the Keras original, with pass/fail per threshold."""

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from edgeseq.cli import app
from edgeseq.cli.common import (DataDir, JsonFlag, QuietFlag, check_out, finish, fraction, non_negative, print_verify,
                                progress, save_reports, user_errors)
from edgeseq.errors import EXIT_FAILED
from edgeseq.formats import Format


@app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory written by `edgeseq export`.")],
    data_dir: DataDir = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Runtime threads (default: the runtime's).")] = None,
    format: Annotated[Optional[List[Format]], typer.Option("--format", "-f", help="Verify only this format's "
                                                           "artifacts (repeat for several): a device with one runtime.")] = None,
    images: Annotated[Optional[int], typer.Option(min=1, help="Verify on the first N test images only (a quick "
                                                  "check: each agreement's 95 % interval says what N can tell).")] = None,
    min_agreement_int8: Annotated[float, typer.Option(callback=fraction, help="int8: minimum top-1 agreement with Keras.")] = 0.995,
    max_drop_int8: Annotated[float, typer.Option(callback=fraction, help="int8: maximum accuracy drop (fraction, 0.003 = 0.3 points).")] = 0.003,
    min_int8_macs: Annotated[float, typer.Option(callback=fraction, help="int8: minimum share of MACs done on integer kernels.")] = 0.90,
    min_agreement_reduced: Annotated[float, typer.Option(callback=fraction, help="fp16 and dynamic: minimum agreement.")] = 0.999,
    max_abs_fp32: Annotated[float, typer.Option(callback=non_negative, help="fp32: maximum |output difference|.")] = 1e-4,
    out: Annotated[Optional[Path], typer.Option(help="Where to write verify.json and verify.md (default: the "
                                                "bundle; a read-only bundle falls back to ./edgeseq-reports/).")] = None,
    quiet: QuietFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Run every artifact of a bundle on the MNIST test set (the bundle carries it: no MNIST needed on the
    device) and compare with the Keras original: agreement with its 95 % interval, accuracy delta, output
    error and int8 coverage.

    The manifest, reference set and each artifact's size and SHA-256 are checked first: a changed or
    foreign artifact is refused. Prints the results, then writes verify.json and verify.md. Exit codes:
    0 all pass, 1 an artifact fails a threshold (named, with by how much), 2 invalid option, 4 bad
    input (missing, malformed or tampered bundle; unwritable --out). Needs no TensorFlow."""
    with user_errors("verify", as_json) as reply:
        from edgeseq.formats import Thresholds
        from edgeseq.verify import verify, write_report

        thresholds = Thresholds(fp32_max_abs=max_abs_fp32, reduced_agreement=min_agreement_reduced,
                                int8_agreement=min_agreement_int8, int8_max_accuracy_drop=max_drop_int8,
                                int8_min_mac_share=min_int8_macs)
        check_out(out)
        with progress("verify", quiet) as shown:
            reply.result = report = verify(bundle, data_dir=data_dir, thresholds=thresholds, threads=threads, limit=images, formats=format,
                                           on_start=shown.start, on_artifact=lambda row: shown.advance(_verdict(row)))
        if not as_json:
            print_verify(report)
        save_reports(lambda folder: write_report(report, folder), out, bundle, bundle.resolve().name)
    finish("verify", as_json, report, 0 if report["passed"] else EXIT_FAILED)


def _verdict(row: dict) -> str:
    return f"{row['id']}: {'PASS' if row['passed'] else 'FAIL'}"
