"""Train every zoo model with its seed recipe and record test accuracy, wall time and device.

    python benchmarks/train_zoo.py --data-dir ../shared/data/mnist            # all six, ~20 min on 2 CPU cores
    python benchmarks/train_zoo.py --models lstm --tag gpu                     # one model, results tagged

Writes benchmarks/results/train_zoo[-TAG].json and .md (the table beside the seed's figures) and keeps
the run directories (model.keras + card.json) under --runs for the export benchmarks. Re-running a
subset of models replaces their rows and keeps the others; every row records the command that made it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from edgeseq import atomic
from edgeseq.data import load_split, locate
from edgeseq.fingerprint import host, package_versions
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
    args = parser.parse_args(argv)

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
        "`--models NAME` for one row. Accuracy is on the full 10k test set; the seed column is the figure to reach.",
        "",
        f"Host: {h['cpu']} ({h['cpu_count']} cores), {h['os']}, Python {h['python']}; "
        f"Keras {report['versions'].get('keras')} on {report['keras_backend']}",
        "",
        "| model | params | metric (10k test) | achieved | seed | reached | epochs | batch | train s | s/epoch | device | run at |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for r in report["rows"]:
        d = r["device"]
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['metric']} | {r['achieved']:.2%} | {r['seed_target']:.1%} "
                     f"| {'yes' if r['meets_seed'] else 'NO'} | {r['epochs']} | {r['batch_size']} | {r['train_seconds']:.0f} "
                     f"| {r['seconds_per_epoch']:.1f} | {d['type']} ({d['name']}) | {r['created']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
