"""The ``edgeseq`` command line: one thin module per command, all registered on one Typer app.

Importing this package loads neither TensorFlow, Keras nor OpenCV: commands import their library
modules inside the function body.
"""

import signal

import typer

app = typer.Typer(
    name="edgeseq",
    help="Train small Keras models, export them to TFLite and ONNX, and prove on the device that they "
    "still compute what was trained.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)

from edgeseq.cli import bench, evaluate, export, pipeline, train, verify, webcam, zoo  # noqa: E402  (registers the commands)

__all__ = ["app", "main", "bench", "evaluate", "export", "pipeline", "train", "verify", "webcam", "zoo"]


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (systemd, docker stop, timeout) cleans up as Ctrl-C does


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    app()
