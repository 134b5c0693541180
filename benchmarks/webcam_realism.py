"""The webcam pipeline on camera-like frames it was not tuned on, condition by condition.

Renders ``edgeseq demo-scenes`` frames (squared and ruled paper, a page on a desk at an angle, defocus,
JPEG noise, uneven and dim light, fine pen, marker, pen lifts, small and large digits, coloured paper,
columns, grids, 12-megapixel pages; MNIST *test* digits and stroke-drawn ones), runs the detector and
every artifact of a bundle, and scores against the rendered ground truth:

- detection recall and precision (a detection matches a true digit at IoU >= 0.5, one to one);
- digits read right by the reference artifact (a missed digit counts as wrong);
- multi-digit frames read exactly, in reading order;
- each artifact's agreement with the reference on the detected digits, and its digits read right.

    python benchmarks/export_matrix.py --models lstm    # first: runs/zoo/lstm/bundle
    python benchmarks/webcam_realism.py --data-dir ../shared/data/mnist

Writes benchmarks/results/webcam_realism.{json,md}. Targets: recall and precision >= 99 %, read right
>= 97 %, multi-digit frames exact >= 95 %.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgeseq import atomic, bundle as bundles, labels as label_words
from edgeseq.data import load_split
from edgeseq.fingerprint import device
from edgeseq.runtimes import open_runner
from edgeseq.webcam.loop import readings
from edgeseq.webcam.preprocess import find_digits
from edgeseq.webcam.scenes import CONDITIONS, scenes

RESULTS = Path(__file__).parent / "results"
TARGETS = {"recall": 0.99, "precision": 0.99, "read_right": 0.97, "exact_frames": 0.95}  # the bars


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def match(truth: list, found: list, threshold: float = 0.5) -> dict[int, int]:
    """One-to-one matches truth index -> detection index, greedily by IoU (highest first)."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    matched, used = {}, set()
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def score(rows: list[dict], names: list[str], reference: str, model_accuracy: float | None = None) -> dict:
    """The figures over ``rows`` (frames). ``model_accuracy``: the per-digit accuracy the model bound uses
    (default: the model's on these rows' own MNIST digits; per condition, pass the whole set's, which is
    measured on enough digits to mean something)."""
    truth = sum(r["truth"] for r in rows)
    found = sum(r["found"] for r in rows)
    matched = sum(r["matched"] for r in rows)
    multi = [r for r in rows if r["truth"] > 1]
    mnist_multi = [r for r in multi if r["pristine_exact"] is not None]
    by_source = {}
    for kind in ("mnist", "strokes"):
        count = sum(r["source_digits"][kind] for r in rows)
        by_source[kind] = {"digits": count, "read_right": round(sum(r["source_right"][kind] for r in rows) / count, 4) if count else None}
    pristine = sum(r["pristine_right"] for r in rows)
    accuracy = model_accuracy or (pristine / by_source["mnist"]["digits"] if by_source["mnist"]["digits"] else None)
    out = {"frames": len(rows), "digits": truth, "detections": found,
           "recall": round(matched / truth, 4) if truth else None,
           "precision": round(matched / found, 4) if found else None,
           "read_right": {n: round(sum(r["right"][n] for r in rows) / truth, 4) for n in names} if truth else {},
           "agreement": {n: round(sum(r["agree"][n] for r in rows) / found, 4) for n in names} if found else {},
           "multi_digit_frames": len(multi),
           "exact_frames": round(sum(r["exact"] for r in multi) / len(multi), 4) if multi else None,
           "segmented_frames": round(sum(r["segmented"] for r in multi) / len(multi), 4) if multi else None,
           "read_right_by_source": by_source,
           "pristine_read_right": round(pristine / by_source["mnist"]["digits"], 4) if by_source["mnist"]["digits"] else None,
           # A perfect camera pipeline still reads a frame of n digits exactly only when the model reads n
           # digits right: at its accuracy on these very MNIST digits, p ** n on average over the frames.
           "model_bound_exact_frames": round(float(np.mean([accuracy ** r["truth"] for r in multi])), 4) if multi and accuracy else None,
           "mnist_only_multi_digit_frames": len(mnist_multi),
           "mnist_only_exact_frames": round(sum(r["exact"] for r in mnist_multi) / len(mnist_multi), 4) if mnist_multi else None,
           "mnist_only_pristine_exact_frames": (round(sum(r["pristine_exact"] for r in mnist_multi) / len(mnist_multi), 4)
                                                if mnist_multi else None),
           "detect_ms_p50": round(float(np.median([r["detect_ms"] for r in rows])), 1)}
    out["reference_read_right"] = out["read_right"].get(reference)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path("runs/zoo/lstm/bundle"))
    parser.add_argument("--per-condition", type=int, default=30, help="frames per condition")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--conditions", nargs="+", choices=[c.name for c in CONDITIONS])
    parser.add_argument("--dump", type=Path, help="write each frame's misses here (for looking at them)")
    args = parser.parse_args(argv)
    test = load_split("test", args.data_dir)
    manifest = bundles.read_manifest(args.bundle)
    kind, shape = manifest.kind, tuple(manifest.input.shape)
    runners = {a.id: open_runner(args.bundle / a.file) for a in manifest.ok_artifacts()}
    names = list(runners)
    reference = next(n for n in ("tflite-fp32", "onnx-fp32", names[0]) if n in runners)
    words = label_words.DIGIT_NAMES if kind == "spell" else [str(d) for d in range(10)]
    chosen = [c for c in CONDITIONS if not args.conditions or c.name in args.conditions]
    rows: dict[str, list[dict]] = defaultdict(list)
    started = time.perf_counter()
    for number, scene in enumerate(scenes(args.per_condition, args.seed, test, chosen)):
        t0 = time.perf_counter()
        found = find_digits(scene.image)
        detect_ms = (time.perf_counter() - t0) * 1e3
        boxes = [list(d.box) for d in found]
        pairs = match(scene.boxes, boxes)
        read = {}
        if found:
            x = np.stack([d.image for d in found]).reshape((-1, *shape))
            read = {n: readings(kind, r.run(x, batch=1)) for n, r in runners.items()}
        truth_words = [words[label] for label in scene.labels]
        # The same MNIST digits straight from the test set: what the model reads with no camera in between.
        mnist = [int(src.split(":")[1]) if src.startswith("mnist:") else None for src in scene.sources]
        pristine = {}
        if any(i is not None for i in mnist):
            kept = [k for k, i in enumerate(mnist) if i is not None]
            x0 = test.images[[mnist[k] for k in kept]].reshape((-1, *shape))
            pristine = dict(zip(kept, readings(kind, runners[reference].run(x0, batch=1))))
        ordered = [pairs.get(i) for i in range(len(scene.labels))]
        row = {"truth": len(scene.labels), "found": len(found), "matched": len(pairs), "detect_ms": detect_ms,
               "right": {n: sum(read[n][j] == truth_words[i] for i, j in pairs.items()) if found else 0 for n in names},
               "agree": {n: sum(a == b for a, b in zip(read[n], read[reference])) if found else 0 for n in names},
               "exact": bool(found) and read[reference] == truth_words,
               "segmented": len(found) == len(scene.labels) and ordered == list(range(len(scene.labels))),
               "source_digits": {"mnist": len(pristine), "strokes": len(scene.labels) - len(pristine)},
               "source_right": {kind_: sum(read[reference][j] == truth_words[i] for i, j in pairs.items()
                                           if (i in pristine) == (kind_ == "mnist")) if found else 0
                                for kind_ in ("mnist", "strokes")},
               "pristine_right": sum(pristine[k] == truth_words[k] for k in pristine),
               "pristine_exact": (all(pristine[k] == truth_words[k] for k in pristine)
                                  if len(pristine) == len(scene.labels) else None)}
        rows[scene.condition].append(row)
        if args.dump and (len(pairs) < len(scene.labels) or len(found) > len(pairs) or not row["exact"]):
            _dump(args.dump, number, scene, found, read.get(reference, []), truth_words)
        print(f"\r{number + 1} frames, {time.perf_counter() - started:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    every = [r for c in chosen for r in rows[c.name]]
    report = {
        "schema": "edgeseq.bench.webcam_realism/1",
        "command": "python benchmarks/webcam_realism.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "device": device(), "bundle": str(args.bundle), "seed": args.seed, "reference": reference, "targets": TARGETS,
        "all": score(every, names, reference),
    }
    total = report["all"]
    report["conditions"] = {c.name: {"what": c.what, **score(rows[c.name], names, reference, total["pristine_read_right"])}
                            for c in chosen}
    report["meets"] = {"recall": total["recall"] >= TARGETS["recall"], "precision": total["precision"] >= TARGETS["precision"],
                       "read_right": total["reference_read_right"] >= TARGETS["read_right"],
                       "segmented_frames": total["segmented_frames"] >= TARGETS["exact_frames"],
                       "exact_frames": total["exact_frames"] >= TARGETS["exact_frames"]}
    suffix = "" if not args.conditions else "-" + "-".join(args.conditions)
    atomic.write_json(RESULTS / f"webcam_realism{suffix}.json", report)
    text = render(report, names)
    atomic.write_text(RESULTS / f"webcam_realism{suffix}.md", text)
    print(text)
    return 0 if all(report["meets"].values()) else 1


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def render(report: dict, names: list[str]) -> str:
    total, reference = report["all"], report["reference"]
    src = total["read_right_by_source"]
    lines = ["# Webcam pipeline on camera-like frames, per condition", "",
             f"Command: `{report['command']}`  ",
             f"Device: {report['device']['cpu']} ({report['device']['cpu_count']} cores); bundle `{report['bundle']}`; "
             f"reading by `{reference}`; seed {report['seed']}.", "",
             f"- **{total['frames']} frames, {total['digits']} digits** ({src['mnist']['digits']} MNIST test digits, "
             f"{src['strokes']['digits']} drawn from strokes), {len(report['conditions'])} conditions.",
             f"- Detection: recall **{_pct(total['recall'])}**, precision **{_pct(total['precision'])}** (IoU >= 0.5, one to one); "
             "targets 99 % and 99 %.",
             f"- Read right by `{reference}` (a missed digit counts as wrong): **{_pct(total['reference_read_right'])}**; "
             f"target 97 %. MNIST digits {_pct(src['mnist']['read_right'])} (the same digits straight from the test set: "
             f"{_pct(total['pristine_read_right'])}); stroke-drawn {_pct(src['strokes']['read_right'])}.",
             f"- Multi-digit frames ({total['multi_digit_frames']}): every digit found once, nothing else, in reading order: "
             f"**{_pct(total['segmented_frames'])}**; read exactly: **{_pct(total['exact_frames'])}** (target 95 %).",
             f"- The model's own bound on that: reading each digit at its accuracy on these MNIST test digits straight "
             f"from the test set ({_pct(total['pristine_read_right'])}), a perfect pipeline would read "
             f"{_pct(total['model_bound_exact_frames'])} of these frames exactly (p^n, frame by frame). "
             f"Measured on the {total['mnist_only_multi_digit_frames']} multi-digit frames made only of "
             f"MNIST digits (mostly the short ones): {_pct(total['mnist_only_exact_frames'])} read exactly through the camera pipeline, "
             f"{_pct(total['mnist_only_pristine_exact_frames'])} when the model is given the very same digits straight from "
             "MNIST.", "",
             "Model bound: the exact-frame rate a perfect pipeline would reach with the model reading each digit at its "
             f"accuracy on the set's MNIST test digits ({_pct(total['pristine_read_right'])}).", "",
             "| condition | frames | digits | recall | precision | read right | segmented frames | exact frames | model bound | detect ms p50 | what |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, c in report["conditions"].items():
        lines.append(f"| {name} | {c['frames']} | {c['digits']} | {_pct(c['recall'])} | {_pct(c['precision'])} | "
                     f"{_pct(c['reference_read_right'])} | {_pct(c['segmented_frames'])} | {_pct(c['exact_frames'])} | "
                     f"{_pct(c['model_bound_exact_frames'])} | "
                     f"{c['detect_ms_p50']} | {c['what']} |")
    lines += ["", "Every artifact on the same detections (agreement: same reading as the reference):", "",
              "| artifact | read right | agreement with " + reference + " |", "|---|---:|---:|"]
    lines += [f"| {n} | {_pct(total['read_right'][n])} | {_pct(total['agreement'][n])} |" for n in names]
    return "\n".join(lines) + "\n"


def _dump(folder: Path, number: int, scene, found, read: list[str], truth: list[str]) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    image = scene.image.copy()
    thick = max(1, image.shape[0] // 400)
    for box in scene.boxes:
        x, y, w, h = box
        cv2.rectangle(image, (x, y), (x + w, y + h), (0, 200, 0), thick)
    for d, text in zip(found, read):
        x, y, w, h = d.box
        cv2.rectangle(image, (x, y), (x + w, y + h), (0, 0, 255), thick)
        cv2.putText(image, text, (x, y - 3), cv2.FONT_HERSHEY_SIMPLEX, thick * 0.6, (0, 0, 255), thick)
    cv2.imwrite(str(folder / f"{number:04d}-{scene.condition}-{''.join(truth)}-{''.join(read)}.jpg"), image)


if __name__ == "__main__":
    sys.exit(main())
