"""``edgeseq webcam``, ``edgeseq demo-video`` and ``edgeseq demo-scenes``: every artifact side by side on
camera frames, and frames with ground truth to try it on."""

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from edgeseq.cli import app
from edgeseq.cli.common import DataDir, JsonFlag, QuietFlag, check_out, finish, positive, progress, table, user_errors
from edgeseq.errors import EXIT_INTERRUPTED


@app.command("webcam")
def webcam_command(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory written by `edgeseq export`.")],
    source: Annotated[str, typer.Option(help="Camera index (0); `picamera2` or `picamera2:1` (Raspberry Pi camera); "
                                        "a GStreamer pipeline ending in appsink (a Jetson's CSI camera; needs an OpenCV "
                                        "built with GStreamer); a video file; a folder of images; an image.")] = "0",
    headless: Annotated[Optional[bool], typer.Option("--headless/--window", help="Record to --out instead of "
                                                     "showing a window (default: headless when there is no display; "
                                                     "--window falls back to headless, with a note, where there is no "
                                                     "display or this OpenCV has no GUI).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for annotated.mp4 (camera, video) or annotated/*.png (folder, "
                                      "image), frames.jsonl and summary.json.")] = Path("webcam"),
    max_frames: Annotated[Optional[int], typer.Option(min=1, help="Stop after N frames.")] = None,
    keras: Annotated[Optional[bool], typer.Option("--keras/--no-keras", help="Run the Keras original too "
                                                  "(default: when TensorFlow and the source model are here).")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Runtime threads per backend.")] = None,
    only: Annotated[Optional[str], typer.Option(help="Comma list of artifact ids to run (default: all).")] = None,
    quiet: QuietFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Find handwritten digits in each frame (dark ink on light paper, read left to right), preprocess them
    the way MNIST was made, run every artifact of the bundle side by side, and show or record whether they
    agree with the reference (the Keras original, or the fp32 artifact on a device without TensorFlow).

    Frames of any size work (a 640x480 webcam, a 12-megapixel photo); squared and ruled paper, shadows and
    a page photographed on a desk are handled. The ground truth of `edgeseq demo-video` (its .json sidecar)
    and `edgeseq demo-scenes` (scenes.json in the folder) is picked up and scored. Ctrl-C, 'q' in the
    window, or the end of the source stop the loop; the summary is always written."""
    with user_errors("webcam", as_json):
        from edgeseq.webcam.loop import run_webcam

        with progress("webcam", quiet, total=max_frames, every=2.0) as shown:
            summary = run_webcam(bundle, source, out_dir=out, headless=headless, max_frames=max_frames, keras=keras,
                                 threads=threads, only=[a.strip() for a in only.split(",")] if only else None,
                                 on_frame=lambda record: shown.advance(f"{len(record['digits'])} digits"),
                                 on_note=lambda note: typer.echo(f"note: {note}", err=True))
    if as_json:
        finish("webcam", as_json, summary, EXIT_INTERRUPTED if summary["interrupted"] else 0)
        return
    typer.echo(f"{summary['frames']} frames from {summary['source']['description']} ({summary['stopped']}); "
               f"{summary['digits']} digits found, {summary['frames_without_digits']} frames without a digit, "
               f"{summary['dropped_frames']} dropped")
    for event in summary["events"]:
        typer.echo(f"  event: {event}")
    truth = summary.get("ground_truth", {})
    rows = []
    for name in summary["backends"]:
        lat = summary["latency_ms_per_digit"].get(name) or {}
        agreement = summary["agreement_with_reference"][name]
        accuracy = (truth.get("accuracy") or {}).get(name)
        rows.append([name + (" (reference)" if name == summary["reference"] else ""),
                     "-" if agreement is None else f"{agreement:.2%}", "-" if accuracy is None else f"{accuracy:.2%}",
                     f"{lat['p50']:.3f}" if lat else "-", f"{lat['p99']:.3f}" if lat else "-"])
    typer.echo(table(["backend", "agreement", "accuracy (truth)", "p50 ms/digit", "p99 ms/digit"], rows))
    fps = summary["fps"]
    typer.echo(f"frame rate: {fps['processing']} fps processing, {fps['wall']} fps wall"
               + (f"; ground truth: {truth['digits']} digits, {truth['missed_by_detection']} missed by detection" if truth else ""))
    annotated = "".join(f", {out}/{a}" for a in summary["annotated"])
    typer.echo(f"wrote: {out}/summary.json, {out}/frames.jsonl{annotated}")
    if summary["interrupted"]:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command("demo-video")
def demo_video_command(
    out: Annotated[Path, typer.Argument(help="The .mp4 to write; its ground truth goes beside it as .json.")],
    frames: Annotated[int, typer.Option(min=1, help="Frames to render.")] = 120,
    fps: Annotated[float, typer.Option(callback=positive, help="Frames per second of the video.")] = 15.0,
    max_digits: Annotated[int, typer.Option(min=1, max=6, help="Most digits in one frame.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same video.")] = 0,
    data_dir: DataDir = None,
    quiet: QuietFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Write a synthetic camera video of MNIST test digits with known labels: dark ink on textured paper
    under uneven light, with blur, noise, small rotations and several digits per frame."""
    with user_errors("demo-video", as_json):
        check_out(out.parent)
        from edgeseq.webcam.demo import sidecar_path, write_demo_video

        with progress("demo-video", quiet, total=frames, every=2.0) as shown:
            sidecar = write_demo_video(out, frames=frames, fps=fps, seed=seed, data_dir=data_dir, max_digits=max_digits,
                                       on_frame=lambda index: shown.advance())
    digits = sum(len(f["labels"]) for f in sidecar["frames"])
    if as_json:
        finish("demo-video", as_json, {"video": str(out), "sidecar": str(sidecar_path(out)), "frames": frames, "digits": digits})
        return
    typer.echo(f"wrote {out} ({frames} frames, {digits} digits) and {sidecar_path(out)}")


@app.command("demo-scenes")
def demo_scenes_command(
    out: Annotated[Path, typer.Argument(help="Folder for the frames (JPEG) and scenes.json, their ground truth.")],
    per_condition: Annotated[int, typer.Option(min=1, help="Frames per condition.")] = 8,
    condition: Annotated[Optional[str], typer.Option(help="Comma list of conditions (default: all): plain, squared, ruled, "
                                                    "perspective, defocus, noise-jpeg, uneven-light, dim, fine-pen, marker, "
                                                    "pen-lifts, small, large, colour, column, grid, page-12mp.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same frames.")] = 0,
    data_dir: DataDir = None,
    quiet: QuietFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Write camera-like frames of handwritten digits with every digit's box and label, condition by
    condition: plain, squared and ruled paper, a page on a desk at an angle, defocus, JPEG noise, uneven
    and dim light, fine pen, marker, pen lifts, small and large digits, coloured paper, columns, grids and
    12-megapixel pages. Digits are MNIST test images and digits drawn from strokes. `edgeseq webcam
    --source OUT` scores the whole pipeline against the truth; benchmarks/webcam_realism.py scores detection."""
    with user_errors("demo-scenes", as_json):
        check_out(out)
        from edgeseq.webcam.scenes import CONDITIONS, TRUTH_FILE, write_scenes

        chosen = [c.strip() for c in condition.split(",")] if condition else None
        total = per_condition * (len(chosen) if chosen else len(CONDITIONS))
        with progress("demo-scenes", quiet, total=total, every=2.0) as shown:
            truth = write_scenes(out, per_condition=per_condition, seed=seed, data_dir=data_dir, conditions=chosen,
                                 on_frame=lambda index: shown.advance())
    digits = sum(len(f["labels"]) for f in truth["frames"])
    if as_json:
        finish("demo-scenes", as_json, {"folder": str(out), "truth": str(out / TRUTH_FILE), "frames": len(truth["frames"]),
                                        "digits": digits, "conditions": list(truth["conditions"])})
        return
    typer.echo(f"wrote {len(truth['frames'])} frames ({digits} digits, {len(truth['conditions'])} conditions) to {out}, "
               f"ground truth in {out / TRUTH_FILE}")
