"""The webcam loop on 640x480 frames: frame rate with four artifacts (capture excluded), and the whole
pipeline's digit accuracy (detection + preprocessing + model) against the demo video's ground truth,
beside the model's accuracy on the very same MNIST digits unprocessed (so preprocessing loss shows);
then the frame rate on 12-megapixel page photos (4000x3000 and 3024x4032).

    python benchmarks/export_matrix.py ...      # first: runs/zoo/lstm/bundle
    python benchmarks/webcam_fps.py --data-dir ../shared/data/mnist

Writes benchmarks/results/webcam.json and .md. Targets: >= 30 fps with four artifacts; >= 97 % accuracy.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeseq import atomic
from edgeseq.data import load_split
from edgeseq.fingerprint import device
from edgeseq.runtimes import open_runner
from edgeseq.webcam.demo import write_demo_video
from edgeseq.webcam.loop import run_webcam
from edgeseq.webcam.scenes import write_scenes

RESULTS = Path(__file__).parent / "results"
FOUR = ["tflite-fp32", "tflite-dynamic", "onnx-fp32", "onnx-int8"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path("runs/zoo/lstm/bundle"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", type=int, default=8, help="12-megapixel page photos to time")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    test = load_split("test", args.data_dir)
    with tempfile.TemporaryDirectory() as scratch:
        video = Path(scratch) / "demo.mp4"
        sidecar = write_demo_video(video, frames=args.frames, seed=args.seed, test=test)
        speed = run_webcam(args.bundle, str(video), out_dir=Path(scratch) / "fps", headless=True, keras=False,
                           only=FOUR, threads=1, write_video=False)
        full = run_webcam(args.bundle, str(video), out_dir=Path(scratch) / "all", headless=True, keras=False,
                          write_video=False)
        # The same four artifacts on 12-megapixel phone photos of pages (detection at its working resolution).
        photos = Path(scratch) / "photos"
        pages = write_scenes(photos, per_condition=args.photos, seed=args.seed, test=test, conditions=["page-12mp"])
        large = run_webcam(args.bundle, str(photos), out_dir=Path(scratch) / "large", headless=True, keras=False,
                           only=FOUR, threads=1, write_video=False)
    indices = np.concatenate([f["test_indices"] for f in sidecar["frames"]])
    reference = full["reference"]
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    ref_file = next(a["file"] for a in manifest["artifacts"] if a["id"] == reference)
    pristine = float((open_runner(args.bundle / ref_file).run(test.images[indices]).argmax(-1) == test.labels[indices]).mean())
    report = {
        "schema": "edgeseq.bench.webcam/1",
        "command": "python benchmarks/webcam_fps.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "device": device(), "bundle": str(args.bundle), "frames": speed["frames"], "frame_size": sidecar["size"],
        "four_artifacts": {"backends": speed["backends"], "fps_processing": speed["fps"]["processing"],
                           "frame_ms": speed["frame_ms"], "latency_ms_per_digit": speed["latency_ms_per_digit"],
                           "meets_30fps": speed["fps"]["processing"] >= 30},
        "photos_12mp": {"frames": large["frames"], "sizes": sorted({tuple(f["size"]) for f in pages["frames"]}),
                        "digits": large["digits"], "fps_processing": large["fps"]["processing"], "frame_ms": large["frame_ms"],
                        "read_right": (large.get("ground_truth") or {}).get("accuracy")},
        "accuracy": {"digits": full["ground_truth"]["digits"], "missed_by_detection": full["ground_truth"]["missed_by_detection"],
                     "pipeline": full["ground_truth"]["accuracy"], "model_on_pristine_digits": round(pristine, 4),
                     "reference": reference, "agreement_with_reference": full["agreement_with_reference"]},
    }
    atomic.write_json(RESULTS / "webcam.json", report)
    a, f = report["accuracy"], report["four_artifacts"]
    lines = ["# Webcam loop: frame rate and whole-pipeline accuracy", "",
             f"Command: `{report['command']}`  ",
             f"Device: {report['device']['cpu']} ({report['device']['cpu_count']} cores); bundle `{args.bundle}`; "
             f"{report['frames']} synthetic 640x480 frames (`edgeseq demo-video --seed {args.seed}`).", "",
             f"- Four artifacts ({', '.join(f['backends'])}), one thread each, capture excluded: "
             f"**{f['fps_processing']} fps** (frame p50 {f['frame_ms']['p50']} ms, p99 {f['frame_ms']['p99']} ms); target 30.",
             f"- The same four artifacts on {report['photos_12mp']['frames']} 12-megapixel page photos "
             f"({', '.join('x'.join(map(str, s)) for s in report['photos_12mp']['sizes'])}, `edgeseq demo-scenes --condition "
             f"page-12mp`, {report['photos_12mp']['digits']} digits): **{report['photos_12mp']['fps_processing']} fps** "
             f"(frame p50 {report['photos_12mp']['frame_ms']['p50']} ms), capture and JPEG decoding excluded.",
             f"- Ground truth: {a['digits']} digits, {a['missed_by_detection']} missed by detection. The model on the same "
             f"digits straight from MNIST: {a['model_on_pristine_digits']:.2%}.", "",
             "| backend | pipeline accuracy | agreement with " + a["reference"] + " |", "|---|---:|---:|"]
    lines += [f"| {n} | {acc:.2%} | {a['agreement_with_reference'][n]:.2%} |" for n, acc in a["pipeline"].items()]
    atomic.write_text(RESULTS / "webcam.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if f["meets_30fps"] else 1


if __name__ == "__main__":
    sys.exit(main())
