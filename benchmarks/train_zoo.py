"""Train every zoo model with its seed recipe and record test accuracy, wall time and device.

    python benchmarks/train_zoo.py --data-dir ../shared/data/mnist            # all six, ~20 min on 2 CPU cores
    python benchmarks/train_zoo.py --models lstm --tag gpu                     # one model, results tagged
    python benchmarks/train_zoo.py --backend tensorflow jax --epochs 2         # s/epoch per model and backend

With ``--backend``, each model trains for ``--epochs`` epochs in a fresh process per backend (Keras picks
its backend at import), and the per-backend table (first epoch, with compilation, and the steady epochs
after it) goes into benchmarks/results/train_zoo_backends[-TAG].json and into train_zoo.md beside the
seed-recipe table. ``--distribute`` trains data parallel over every visible device (JAX).

Writes benchmarks/results/train_zoo[-TAG].json and .md (the table beside the seed's figures) and keeps
the run directories (model.keras + card.json) under --runs for the export benchmarks. Re-running a
subset of models replaces their rows and keeps the others; every row records the command that made it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from edgeseq import atomic
from edgeseq.data import load_split, locate
from edgeseq.fingerprint import cpu_flags, host, package_versions
from edgeseq.lazy import keras as _keras
from edgeseq.training import zoo
from edgeseq.training.train import seed_check, train

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[n.value for n in zoo.ZooName], choices=[n.value for n in zoo.ZooName])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--runs", type=Path, default=Path("runs/zoo"), help="where run directories go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix for the result files (e.g. the machine)")
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, help="time epochs per backend instead")
    parser.add_argument("--epochs", type=int, default=2, help="with --backend: epochs per model (>= 2)")
    parser.add_argument("--distribute", action="store_true", help="with --backend: data parallel (JAX)")
    parser.add_argument("--ceiling", choices=[n.value for n in zoo.ZooName], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ceiling:  # one backend's feed ceiling, in the fresh process --backend starts for it
        print(json.dumps(_feed_ceiling(args.ceiling, args.data_dir)))
        return 0
    if args.backend:
        return backends(args, "python benchmarks/train_zoo.py " + shlex.join(sys.argv[1:] if argv is None else argv))

    command = "python benchmarks/train_zoo.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    source = locate(args.data_dir)
    train_split, test_split = load_split("train", source=source), load_split("test", source=source)
    keras = _keras()
    rows = []
    for name in args.models:
        keras.backend.clear_session()
        started = time.perf_counter()
        result = train(name, out_dir=args.runs / name, seed=args.seed, train_split=train_split,
                       test_split=test_split, progress=False)
        wall = time.perf_counter() - started
        card = result.card
        metric, achieved, target, met = seed_check(card)
        rows.append({
            "model": name, "parameters": card["parameters"], "metric": metric, "achieved": achieved,
            "seed_target": target, "meets_seed": met, "epochs": card["training"]["epochs"],
            "batch_size": card["recipe"]["batch_size"], "train_seconds": card["training"]["seconds"],
            "steps_per_execution": card["training"].get("feed", {}).get("steps_per_execution", 1),
            "seconds_per_epoch": round(card["training"]["seconds"] / card["training"]["epochs"], 2),
            "wall_seconds": round(wall, 1), "device": card["training"]["device"], "run_dir": str(result.run_dir),
            "recipe": card["recipe"], "versions": card["versions"], "created": card["created"], "command": command,
        })
        print(f"{name:8s} {metric} {achieved:.4f} (seed {target:.3f}) {'ok' if met else 'BELOW SEED'} "
              f"{card['training']['seconds']:.0f} s on {card['training']['device']['type']}", flush=True)

    stem = "train_zoo" + (f"-{args.tag}" if args.tag else "")
    rows = _merged(RESULTS / f"{stem}.json", rows)
    report = {
        "schema": "edgeseq.bench.train_zoo/1",
        "command": "python benchmarks/train_zoo.py --data-dir DIR  (all models; see each row's command)",
        "host": host(),
        "versions": package_versions("edgeseq", "keras", "tensorflow", "jax", "numpy"),
        "keras_backend": keras.backend.backend(),
        "rows": rows,
    }
    atomic.write_json(RESULTS / f"{stem}.json", report)
    atomic.write_text(RESULTS / f"{stem}.md", markdown(report))
    print(markdown(report))
    return 0 if all(r["meets_seed"] for r in rows) else 1


BACKENDS = ("tensorflow", "jax", "torch")


def _epochs_on(backend: str, name: str, args, steps_per_execution: int | None = None) -> dict:
    """One model's timed epochs on one backend, trained by the CLI in a fresh process."""
    row = {"backend": backend, "model": name}
    if importlib.util.find_spec(backend) is None:
        return {**row, "error": f"{backend} is not installed here"}
    out = args.runs / "backends" / backend / (name + ("-1step" if steps_per_execution == 1 else ""))
    command = [sys.executable, "-m", "edgeseq", "train", name, "--epochs", str(args.epochs), "--seed", str(args.seed),
               "--out", str(out), "--json", "-q"] + (["--data-dir", str(args.data_dir)] if args.data_dir else []) \
        + (["--distribute"] if args.distribute else []) \
        + (["--steps-per-execution", str(steps_per_execution)] if steps_per_execution else [])
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend})
    if done.returncode != 0:
        return {**row, "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    card = json.loads(done.stdout)["result"]["card"]
    seconds = card["training"]["epoch_seconds"]
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    return {**row, "epochs": len(seconds), "first_epoch_s": seconds[0], "steady_epoch_s": round(steady, 2),
            "samples_per_s": round(card["training"]["train_images"] / steady), "batch_size": card["recipe"]["batch_size"],
            "feed": card["training"].get("feed"), "metric": card["metrics"]["seed_target"]["metric"],
            "achieved": card["metrics"]["test"][card["metrics"]["seed_target"]["metric"]],
            "device": card["training"]["device"], "versions": card["versions"], "weights_sha256": _weights_digest(out)}


def _weights_digest(run_dir: Path) -> str:
    """SHA-256 over a run's weight arrays in order (the .keras file itself also holds the compile config)."""
    import h5py

    digest = hashlib.sha256()
    with zipfile.ZipFile(run_dir / "model.keras") as archive, \
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        weights.visititems(lambda name, item: digest.update(name.encode() + np.asarray(item).tobytes())
                           if isinstance(item, h5py.Dataset) else None)
    return digest.hexdigest()


def _feed_ceiling(name: str, data_dir: Path | None) -> dict:
    """Samples/s of the same fit (images, batch, steps per execution, backend) of a model that does almost
    nothing (a Dense(10) on each row's mean): what the input pipeline and the trainer allow at most."""
    from edgeseq.training import feed as feeds

    keras = _keras()
    recipe = zoo.get(name).recipe
    images = load_split("train", source=locate(data_dir)).images
    images = images[: len(images) - int(len(images) * recipe.val_split)]
    labels = np.zeros(len(images), dtype=np.int64)
    feed = feeds.plan(keras.backend.backend(), recipe.batch_size, len(images))
    inputs = keras.Input(zoo.INPUT_SHAPE)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling1D()(inputs)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=feed.steps_per_execution)
    model.fit(images, labels, batch_size=recipe.batch_size, epochs=1, shuffle=True, verbose=0)  # compiles
    started = time.perf_counter()
    model.fit(images, labels, batch_size=recipe.batch_size, epochs=2, shuffle=True, verbose=0)
    return {"samples_per_s": round(2 * len(images) / (time.perf_counter() - started)),
            "steps_per_execution": feed.steps_per_execution}


def _ceiling_on(backend: str, name: str, args) -> int | None:
    done = subprocess.run([sys.executable, __file__, "--ceiling", name]
                          + (["--data-dir", str(args.data_dir)] if args.data_dir else []),
                          capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend})
    return json.loads(done.stdout.strip().splitlines()[-1])["samples_per_s"] if done.returncode == 0 else None


def _row(backend: str, name: str, args) -> dict:
    """edgeseq's default feed, then Keras' one step per execution (where the default differs), and the
    feed ceiling."""
    row = _epochs_on(backend, name, args)
    if "error" in row:
        return row
    ceiling = {"feed_ceiling_samples_per_s": _ceiling_on(backend, name, args)}
    if row["feed"]["steps_per_execution"] == 1:  # PyTorch: nothing to compare with
        return {**row, **ceiling}
    baseline = _epochs_on(backend, name, args, steps_per_execution=1)
    if "error" in baseline:
        return baseline
    return {**row, **ceiling, "baseline_1step": {k: baseline[k] for k in ("first_epoch_s", "steady_epoch_s", "samples_per_s")},
            "same_weights_as_baseline": baseline["weights_sha256"] == row["weights_sha256"]}


def backends(args, command: str) -> int:
    rows = []
    for backend in args.backend:
        for name in args.models:
            rows.append(_row(backend, name, args))
            r = rows[-1]
            print(f"{backend:10s} {name:8s} " + (r["error"] if "error" in r else
                  f"first {r['first_epoch_s']:.1f} s, then {r['steady_epoch_s']:.1f} s/epoch "
                  f"(1 step/execution: {r.get('baseline_1step', r)['steady_epoch_s']:.1f}; feed ceiling "
                  f"{r['feed_ceiling_samples_per_s'] or 0:,} samples/s)"), flush=True)
    stem = "train_zoo_backends" + (f"-{args.tag}" if args.tag else "")
    report = {"schema": "edgeseq.bench.train_backends/1", "command": command, "host": host(),
              "cpu_flags": cpu_flags(), "epochs": args.epochs, "distribute": args.distribute, "rows": rows}
    atomic.write_json(RESULTS / f"{stem}.json", report)
    seed = RESULTS / ("train_zoo" + (f"-{args.tag}" if args.tag else "") + ".json")
    if seed.is_file():
        atomic.write_text(seed.with_suffix(".md"), markdown(json.loads(seed.read_text())))
    print(backends_markdown(report))
    return 0 if not any("error" in r and "not installed" not in r["error"] for r in rows) else 1


def backends_markdown(report: dict) -> str:
    h = report["host"]
    lines = ["## Seconds per epoch by backend", "",
             f"Reproduce: `{report['command']}`. Host: {h['cpu']} ({h['cpu_count']} cores); CPU flags: "
             f"{' '.join(report['cpu_flags']) or 'unknown'}. Each model trains {report['epochs']} epochs of its seed "
             "recipe (batch size, schedule) in a fresh process per backend; the first epoch includes compilation, "
             "steady is the median of the epochs after it. Each model runs twice, back to back: with Keras' one "
             "training step per call into the backend (the baseline) and with edgeseq's default steps per "
             "execution (`training/feed.py`; PyTorch takes one step only, so it runs once); *same weights* compares "
             "a SHA-256 over each run's weight arrays. The "
             "feed ceiling is the samples/s of the same fit with a model that does almost nothing: what the input "
             "pipeline and the trainer allow at most. Compare backends within this table only (one run, one machine).",
             "", "| backend | model | batch | steps/exec | first epoch s | steady s/epoch | samples/s | 1 step/exec s/epoch "
             "| speed-up | same weights | feed ceiling samples/s "
             f"| {'accuracy after ' + str(report['epochs']) + ' epochs'} | device |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['model']} |" + " - |" * 10 + f" {r['error']} |")
            continue
        d, base, ceiling = r["device"], r.get("baseline_1step"), r.get("feed_ceiling_samples_per_s")
        where = f"{d['type']} ({d['name']})" + (f" x{d['count']}" if d.get("count", 1) > 1 else "")
        spe = (r.get("feed") or {}).get("steps_per_execution", 1)
        lines.append(f"| {r['backend']} | {r['model']} | {r['batch_size']} | {spe} | {r['first_epoch_s']:.1f} | "
                     f"{r['steady_epoch_s']:.1f} | {r['samples_per_s']:,} | "
                     + (f"{base['steady_epoch_s']:.1f} | {base['steady_epoch_s'] / r['steady_epoch_s']:.2f}x | "
                        f"{'yes' if r['same_weights_as_baseline'] else 'NO'} | " if base else "- | - | - | ")  # one step per execution only
                     + (f"{ceiling:,}" if ceiling else "-") + f" | {r['achieved']:.2%} | {where} |")
    return "\n".join(lines) + "\n"


def _merged(path: Path, fresh: list[dict]) -> list[dict]:
    """Earlier rows of models not re-run now, then the fresh ones, in zoo order."""
    rows = {}
    if path.is_file():
        earlier = json.loads(path.read_text())
        for r in earlier["rows"]:  # rows written before rows carried their own command and time
            r.setdefault("command", earlier.get("command", ""))
            r.setdefault("created", earlier.get("created", ""))
        rows = {r["model"]: r for r in earlier["rows"]}
    rows.update({r["model"]: r for r in fresh})
    return [rows[n.value] for n in zoo.ZooName if n.value in rows]


def markdown(report: dict) -> str:
    h = report["host"]
    lines = [
        "# Zoo training: seed recipes on MNIST",
        "",
        "Reproduce: `python benchmarks/train_zoo.py --data-dir ../shared/data/mnist` (all six, seed 0), or "
        "`--models NAME` for one row. Accuracy is on the full 10k test set; the seed column is the figure to reach. "
        "Rows trained with one step per execution (before it became 32) have the weights the default gives "
        "(the per-backend table below compares them), not its epoch times.",
        "",
        f"Host: {h['cpu']} ({h['cpu_count']} cores), {h['os']}, Python {h['python']}; "
        f"Keras {report['versions'].get('keras')} on {report['keras_backend']}",
        "",
        "| model | params | metric (10k test) | achieved | seed | reached | epochs | batch | steps/exec | train s | s/epoch | device | run at |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report["rows"]:
        d = r["device"]
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['metric']} | {r['achieved']:.2%} | {r['seed_target']:.1%} "
                     f"| {'yes' if r['meets_seed'] else 'NO'} | {r['epochs']} | {r['batch_size']} | {r.get('steps_per_execution', 1)} "
                     f"| {r['train_seconds']:.0f} "
                     f"| {r['seconds_per_epoch']:.1f} | {d['type']} ({d['name']}) | {r['created']} |")
    for stem in ("train_zoo_backends",):
        path = RESULTS / f"{stem}.json"
        if path.is_file():
            lines += ["", backends_markdown(json.loads(path.read_text())).rstrip()]
    lines += ["", "## On a GPU", "",
              "No GPU machine has been lent to a session that could run this table yet (the one this project can "
              "reach has JAX and PyTorch but no TensorFlow: `KERAS_BACKEND=jax python benchmarks/train_zoo.py "
              "--backend jax --tag gpu` is the command to run there)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
