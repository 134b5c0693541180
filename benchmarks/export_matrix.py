"""Export every trained zoo model to all formats and quantizations, verify each artifact, and record the
matrix: size, agreement, accuracy delta, output error, int8 coverage, pass/fail with the reason, and the
wall time of export + verify per model.

    python benchmarks/train_zoo.py --data-dir ../shared/data/mnist      # first: the trained run directories
    python benchmarks/export_matrix.py --data-dir ../shared/data/mnist  # then: ~6 minutes on 2 CPU cores

Writes benchmarks/results/export_matrix.json and .md. Re-running with --models replaces those rows.
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
from edgeseq.formats import Format, Quant, Thresholds
from edgeseq.report import VERIFY_HEADERS, markdown_table, verify_details, verify_row
from edgeseq.training.zoo import ZooName

RESULTS = Path(__file__).parent / "results"
ZOO_THRESHOLDS = Thresholds(int8_min_mac_share=0.95)  # the zoo's bar; verify's default is 90 % for any model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[n.value for n in ZooName], choices=[n.value for n in ZooName])
    parser.add_argument("--runs", type=Path, default=Path("runs/zoo"), help="run directories from train_zoo.py")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    command = "python benchmarks/export_matrix.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    from edgeseq.export.bundle import drift_stem, export_bundle
    from edgeseq.verify import verify, write_report

    source = locate(args.data_dir)
    train, test = load_split("train", source=source), load_split("test", source=source)
    models = {}
    for name in args.models:
        run = args.runs / name
        started = time.perf_counter()
        result = export_bundle(run, formats=list(Format), quants=list(Quant), train_split=train, test_split=test,
                               force=True)
        exported = time.perf_counter() - started
        report = verify(result.bundle_dir, data_dir=args.data_dir, thresholds=ZOO_THRESHOLDS)
        write_report(report, result.bundle_dir)
        total = time.perf_counter() - started
        models[name] = {"model": name, "export_seconds": round(exported, 1), "export_verify_seconds": round(total, 1),
                        "passed": report["passed"], "evaluated_on": report["evaluated_on"],
                        "artifacts": report["artifacts"], "command": command, "created": report["created"]}
        models[name]["drift_markdown"] = [path.read_text() for fmt in Format
                                          if (path := result.bundle_dir / f"{drift_stem(fmt)}.md").is_file()]
        passed = sum(r["passed"] for r in report["artifacts"])
        print(f"{name:8s} {passed}/{len(report['artifacts'])} pass, export+verify {total:.0f} s", flush=True)
        for row in report["artifacts"]:
            for reason in row["reasons"]:
                print(f"    {row['id']}: {reason}", flush=True)

    path = RESULTS / "export_matrix.json"
    if path.is_file():
        earlier = {m["model"]: m for m in json.loads(path.read_text())["models"]}
        models = {**earlier, **models}
    report = {"schema": "edgeseq.bench.export_matrix/1", "host": host(),
              "versions": package_versions("edgeseq", "tensorflow", "keras", "tf2onnx", "onnxruntime", "ai-edge-litert"),
              "models": [models[n.value] for n in ZooName if n.value in models]}
    atomic.write_json(path, report)
    atomic.write_text(RESULTS / "export_matrix.md", markdown(report))
    return 0


def markdown(report: dict) -> str:
    h = report["host"]
    v = report["versions"]
    out = ["# Export matrix: every zoo model x format x quantization, verified against Keras", "",
           "Reproduce: `python benchmarks/train_zoo.py --data-dir ../shared/data/mnist && "
           "python benchmarks/export_matrix.py --data-dir ../shared/data/mnist`", "",
           f"Host: {h['cpu']} ({h['cpu_count']} cores), {h['os']}; TensorFlow {v.get('tensorflow')}, tf2onnx "
           f"{v.get('tf2onnx')}, ONNX Runtime {v.get('onnxruntime')}, ai-edge-litert {v.get('ai-edge-litert')}.",
           "Every artifact runs at batch 1 on the 10k MNIST test set. Thresholds: fp32 100 % agreement and "
           "max|Δ| ≤ 1e-4; fp16 and dynamic ≥ 99.9 %; int8 ≥ 99.5 %, accuracy drop ≤ 0.3 pts, ≥ 95 % of MACs in int8.",
           "", "| model | artifacts passing | export + verify |", "|---|---:|---:|"]
    for m in report["models"]:
        out.append(f"| {m['model']} | {sum(r['passed'] for r in m['artifacts'])} / {len(m['artifacts'])} "
                   f"| {m['export_verify_seconds']:.0f} s |")
    out += ["", "## int8, every model x format", "",
            "| model | format | agreement | Δacc pts | size vs fp32 | int8 MACs | recipe | verdict |",
            "|---|---|---:|---:|---:|---:|---|---|"]
    for m in report["models"]:
        for r in (r for r in m["artifacts"] if r.get("quant") == "int8"):
            cells = dict(zip(VERIFY_HEADERS, verify_row(r)))
            out.append(f"| {m['model']} | {r['format']} | {cells['agreement']} | {cells['Δacc pts']} | "
                       f"{cells['vs fp32']} | {cells['int8 MACs']} | {_recipe(r)} | {cells['verdict']} |")
    for m in report["models"]:
        out += ["", f"## {m['model']}", "", markdown_table(VERIFY_HEADERS, [verify_row(r) for r in m["artifacts"]]), ""]
        out += verify_details(m["artifacts"])
        for drift_md in m.get("drift_markdown") or []:
            out += ["", drift_md]
    return "\n".join(out) + "\n"


def _recipe(row: dict) -> str:
    recipe = row.get("recipe") or {}
    chosen = recipe.get("candidate")
    if (recipe.get("while_loop") or {}).get("cell"):
        return f"WHILE kept; {chosen}"
    return chosen or recipe.get("format") or recipe.get("weights") or "-"


if __name__ == "__main__":
    sys.exit(main())
