"""``edgeseq train``: fit a zoo model with its seed recipe and write a run directory."""

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from edgeseq.cli import app
from edgeseq.cli.common import DataDir, JsonFlag, check_out, finish, force_cpu, positive, progress, user_errors
from edgeseq.training.zoo import Schedule, ZooName


@app.command("train")
def train_command(
    name: Annotated[ZooName, typer.Argument(help="Zoo model to train (see `edgeseq zoo`).")],
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (default: the seed recipe's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Batch size (default: the recipe's).")] = None,
    lr: Annotated[Optional[float], typer.Option(callback=positive, help="Learning rate (default: the recipe's).")] = None,
    schedule: Annotated[Optional[Schedule], typer.Option(help="Learning-rate schedule (cosine: decay to 1 % "
                                                         "over the run); default: the recipe's.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same model on CPU.")] = 0,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Train on the first N training images only (quick runs).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory to write (default: runs/NAME).")] = None,
    data_dir: DataDir = None,
    mixed_precision: Annotated[bool, typer.Option("--mixed-precision", help="Compute in float16 on GPU "
                                                  "(bfloat16 on CPU), keep weights in float32.")] = False,
    cpu: Annotated[bool, typer.Option("--cpu", help="Train on the CPU even when a GPU is visible.")] = False,
    distribute: Annotated[bool, typer.Option("--distribute", help="Data-parallel over every visible device "
                                             "(JAX backend: KERAS_BACKEND=jax); the recipe's batch size stays "
                                             "the global batch.")] = False,
    steps_per_execution: Annotated[Optional[int], typer.Option(min=1, help="Training steps per call into the "
                                                               "backend (default 32, at most one epoch; PyTorch: 1). "
                                                               "Fewer round trips through Python: faster, the same weights.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display on stderr.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train a zoo model on MNIST, on a GPU when one is visible, and write model.keras, card.json,
    history.json, curves.png and TensorBoard logs into the run directory. The card's test metrics are
    always measured on the whole 10k test set."""
    if cpu:
        force_cpu()
    out = out or Path("runs") / name.value
    with user_errors("train", as_json):
        check_out(out)  # before a training run is spent
        from edgeseq.training.train import seed_check, train

        from edgeseq.training import zoo

        with progress("train", quiet, total=epochs or zoo.get(name).recipe.epochs) as shown:
            result = train(name, out_dir=out, epochs=epochs, batch_size=batch_size, learning_rate=lr,
                           schedule=schedule.value if schedule else None, seed=seed, limit=limit,
                           mixed_precision=mixed_precision, data_dir=data_dir, progress=False, distribute=distribute,
                           steps_per_execution=steps_per_execution,
                           on_epoch=lambda logs, seconds, rate: shown.advance(_epoch_line(logs, rate)))
    card = result.card
    if as_json:
        finish("train", as_json, {"run_dir": str(result.run_dir), "files": [str(f) for f in result.files], "card": card})
        return
    device = card["training"]["device"]
    metric, achieved, target, met = seed_check(card)
    typer.echo(f"trained {card['name']} ({card['parameters']:,} parameters) on {device['type']} "
               f"({device['name']}, {device['backend']} backend): {card['training']['epochs']} epoch{'s' if card['training']['epochs'] != 1 else ''} "
               f"on {card['training']['train_images']:,} images in {card['training']['seconds']:.1f} s")
    typer.echo(f"test {metric} {achieved:.4f} on {card['metrics']['test_examples']:,} images "
               f"(seed target {target:.3f}: {'reached' if met else 'not reached'})")
    typer.echo(f"run directory: {result.run_dir}")
    for f in result.files:
        typer.echo(f"  {f.name}{'/' if f.is_dir() else ''}")


def _epoch_line(logs: dict, samples_per_s: float) -> str:
    shown = [f"{k} {v:.4f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")]
    return ", ".join(shown + [f"{samples_per_s:,.0f} samples/s"])
