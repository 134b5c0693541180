"""The ``edgeseq`` command line: one thin module per command, all registered on one Typer app.

Importing this package loads neither TensorFlow, Keras nor OpenCV: commands import their library
modules inside the function body. Commands are registered (and listed by ``--help``) in the order of
the work: train, evaluate, export, verify, bench, webcam, then the whole run in one (pipeline).
"""

import signal
from typing import Optional

import typer
from typing_extensions import Annotated

app = typer.Typer(
    name="edgeseq",
    help="Train small Keras models, export them to TFLite and ONNX, and prove on the device that they "
    "still compute what was trained.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def versions() -> dict:
    """edgeseq, Python and every runtime and framework found here (read from package metadata, nothing imported)."""
    import platform

    from edgeseq import __version__
    from edgeseq.fingerprint import package_versions

    return {"edgeseq": __version__, "python": platform.python_version(),
            **package_versions("numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime",
                               "opencv-python", "opencv-python-headless", "tensorflow", "keras", "tf2onnx", "onnx")}


def _show_version(value: bool) -> None:
    if value:
        found = versions()
        typer.echo(f"edgeseq {found.pop('edgeseq')} (Python {found.pop('python')}); "
                   + (", ".join(f"{name} {v}" for name, v in found.items()) or "no runtime installed"))
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", "-V", callback=_show_version, is_eager=True,
                                                    help="Show edgeseq's version, Python's and the runtimes found, then exit.")] = None,
) -> None:
    """Train small Keras models, export them to TFLite and ONNX, and prove on the device that they still
    compute what was trained. Exit codes: 0 passed, 1 measured and failed, 2 invalid option, 3 missing
    package, 4 bad input, 130 interrupted."""


from edgeseq.cli import train, evaluate, export, verify, bench, webcam, pipeline, zoo  # noqa: E402,I001  (registers the commands, in workflow order)

__all__ = ["app", "main", "versions", "train", "evaluate", "export", "verify", "bench", "webcam", "pipeline", "zoo"]


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (systemd, docker stop, timeout) cleans up as Ctrl-C does


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    app()
