"""The webcam loop: preprocessing on synthetic frames, every kind of source, every fault, and the loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq.errors import DataError

cv2 = pytest.importorskip("cv2")
from edgeseq.webcam import preprocess  # noqa: E402
from edgeseq.webcam.capture import open_source  # noqa: E402
from edgeseq.webcam.demo import write_demo_video  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def digits(splits):
    """A few real MNIST test digits (28x28, ink bright) and their labels."""
    _, test = splits
    return test.images[:12], test.labels[:12]


def paper(width=640, height=480, level=220):
    return np.full((height, width, 3), level, np.uint8)


def draw(frame, digit, x, y, side, ink=30):
    """Paste a 28x28 MNIST digit as dark ink, ``side`` pixels square, at (x, y)."""
    big = cv2.resize(digit, (side, side), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    region = frame[y : y + side, x : x + side].astype(np.float32)
    frame[y : y + side, x : x + side] = (region * (1 - big[..., None]) + ink * big[..., None]).astype(np.uint8)
    return frame


def centre_of_mass(image):
    total = image.sum()
    return ((image.sum(axis=1) * np.arange(28)).sum() / total, (image.sum(axis=0) * np.arange(28)).sum() / total)


@pytest.mark.parametrize("x, y, side", [(20, 20, 120), (480, 320, 140), (300, 200, 48), (150, 100, 300)])
def test_position_and_scale(digits, x, y, side):
    images, _ = digits
    (found,) = preprocess.find_digits(draw(paper(), images[0], x, y, side))
    bx, by, bw, bh = found.box
    assert x <= bx + bw / 2 <= x + side and y <= by + bh / 2 <= y + side
    cy, cx = centre_of_mass(found.image)
    assert abs(cy - 14.0) < 0.5 and abs(cx - 14.0) < 0.5  # centred by centre of mass where MNIST has it
    ys, xs = np.nonzero(found.image > 0.1)
    assert 17 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 22  # scaled into the 20x20 box
    assert found.image.dtype == np.float32 and 0 <= found.image.min() and found.image.max() <= 1


def test_mnist_constants_are_mnists_own(splits):
    """The centre and the stroke width to_mnist aims at are measured on MNIST, the way to_mnist measures."""
    _, test = splits
    images = test.images[:1000].astype(np.float32)
    centres = np.array([centre_of_mass(image) for image in images])
    assert np.abs(centres.mean(axis=0) - preprocess.MNIST_CENTRE).max() < 0.1
    strokes = []
    for image in images:
        big = cv2.resize(image, (112, 112), interpolation=cv2.INTER_LINEAR)
        ys, xs = np.nonzero(big > 0.3)
        strokes.append(preprocess._stroke(big[ys.min():ys.max() + 1, xs.min():xs.max() + 1]) / (max(np.ptp(ys), np.ptp(xs)) + 1))
    assert abs(np.median(strokes) / preprocess.MNIST_STROKE - 1) < 0.1, np.median(strokes)


def test_preprocessed_digit_looks_like_its_mnist_original(digits):
    images, _ = digits
    correlations = []
    for image in images:
        (found,) = preprocess.find_digits(draw(paper(), image, 200, 120, 180))
        correlations.append(np.corrcoef(found.image.ravel(), image.ravel())[0, 1])
    # A misplaced crop or a wrong centre scores below 0.3; a one-pixel shift of thin strokes costs ~0.2.
    assert min(correlations) > 0.6 and np.mean(correlations) > 0.75, correlations


def test_contrast_inversion_and_dim_light(digits):
    images, _ = digits
    bright = draw(paper(), images[1], 250, 150, 150)
    (a,) = preprocess.find_digits(bright)
    (b,) = preprocess.find_digits(255 - bright)  # chalk on a blackboard
    (c,) = preprocess.find_digits((bright * 0.35).astype(np.uint8))  # white paper in a dim room
    assert np.corrcoef(a.image.ravel(), b.image.ravel())[0, 1] > 0.9
    assert np.corrcoef(a.image.ravel(), c.image.ravel())[0, 1] > 0.9


def test_several_digits_read_left_to_right_then_down(digits):
    images, _ = digits
    frame = paper()
    for i, x in enumerate((420, 60, 240)):  # drawn out of order
        draw(frame, images[i], x, 40, 120)
    draw(frame, images[3], 100, 300, 120)  # a second line
    boxes = [d.box for d in preprocess.find_digits(frame)]
    assert len(boxes) == 4
    assert [b[0] < 200 for b in boxes[:3]] == [True, False, False] and boxes[0][0] < boxes[1][0] < boxes[2][0]
    assert boxes[3][1] > 250


def test_grid_lines_and_blank_paper(digits):
    images, _ = digits
    frame = paper()
    for k in range(0, 640, 40):
        cv2.line(frame, (k, 0), (k, 479), (170, 170, 170), 1)
    for k in range(0, 480, 40):
        cv2.line(frame, (0, k), (639, k), (170, 170, 170), 1)
    draw(frame, images[2], 260, 160, 140)
    assert len(preprocess.find_digits(frame)) == 1
    assert preprocess.find_digits(paper()) == []


def test_heavy_pen_is_thinned(digits):
    images, _ = digits
    frame = draw(paper(), images[0], 200, 120, 200)
    heavy = cv2.erode(frame, np.ones((9, 9), np.uint8))  # a marker: strokes much thicker than MNIST's
    (thin,) = preprocess.find_digits(frame)
    (thick,) = preprocess.find_digits(heavy)
    assert (thick.image > 0.5).mean() < 1.6 * (thin.image > 0.5).mean()


# ----------------------------------------------------------------------------------- sources and faults


def _video(path, frames=6, fourcc="mp4v"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), (12 * i) % 256, np.uint8))
    writer.release()
    return path


def test_each_kind_of_source(tmp_path):
    video = open_source(_video(tmp_path / "v.mp4"))
    assert video.kind == "video" and len(list(video)) == 6 and video.events == []
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), paper(64, 48))
    (folder / "3.png").write_bytes(b"not a png")
    source = open_source(folder)
    assert source.kind == "folder" and [f.name for f in source] == ["0.png", "1.png", "2.png"]
    assert source.dropped == 1 and source.events == ["3.png: not a readable image, skipped"]
    single = open_source(folder / "1.png")
    assert single.kind == "image" and len(list(single)) == 1


def test_source_faults(tmp_path):
    with pytest.raises(DataError, match="camera 9 does not open"):
        open_source("9")
    with pytest.raises(DataError, match="does not exist"):
        open_source(tmp_path / "nothing.mp4")
    (tmp_path / "fake.mp4").write_text("not a video")
    with pytest.raises(DataError, match="cannot open video"):
        open_source(tmp_path / "fake.mp4")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="is not a readable image"):
        open_source(tmp_path / "bad.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        open_source(tmp_path / "empty")
    avi = _video(tmp_path / "v.avi", frames=20, fourcc="MJPG")
    data = bytearray(avi.read_bytes())
    data[len(data) // 2 : len(data) - 2000] = bytes(len(data) - 2000 - len(data) // 2)  # garbled mid-stream
    avi.write_bytes(bytes(data))
    broken = open_source(avi)
    frames = list(broken)
    assert 0 < len(frames) < 20 and broken.events == [f"video failed at frame {len(frames)} of 20; ended there"]


# ----------------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def demo(tmp_path_factory, splits):
    path = tmp_path_factory.mktemp("demo") / "demo.mp4"
    write_demo_video(path, frames=12, seed=3, test=splits[1])
    return path


def test_demo_video_and_its_ground_truth(demo):
    truth = json.loads(demo.with_suffix(".json").read_text())
    assert truth["schema"] == "edgeseq.demo/1" and len(truth["frames"]) == 12
    assert all(1 <= len(f["labels"]) <= 4 and len(f["boxes"]) == len(f["labels"]) for f in truth["frames"])
    capture = cv2.VideoCapture(str(demo))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and capture.read()[1].shape == (480, 640, 3)


def test_headless_loop_on_the_demo_video(tiny_bundle, demo, tmp_path):
    _, result = tiny_bundle
    cli = runner.invoke(app, ["webcam", str(result.bundle_dir), "--source", str(demo), "--headless", "--out",
                              str(tmp_path), "--json"])
    assert cli.exit_code == 0, cli.output
    summary = json.loads(cli.stdout)["result"]
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 12 and summary["digits"] >= 12 and summary["stopped"] == "source ended"
    assert summary["reference"] == "keras" and len(summary["backends"]) == 9  # Keras + eight artifacts
    assert all(0.8 <= a <= 1 for a in summary["agreement_with_reference"].values())
    assert summary["latency_ms_per_digit"]["onnx-int8"]["p50"] > 0 and summary["fps"]["processing"] > 0
    truth = summary["ground_truth"]
    assert truth["digits"] >= 12 and truth["missed_by_detection"] <= 3 and truth["accuracy"]["keras"] > 0.5
    lines = (tmp_path / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[0])["digits"][0]["predictions"]["tflite-int8"].isdigit()
    assert cv2.VideoCapture(str(tmp_path / "annotated.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 12
    assert not list(tmp_path.glob(".*tmp*"))


def test_ctrl_c_and_faults_still_write_the_summary(tiny_bundle, demo, tmp_path, monkeypatch):
    from edgeseq.webcam import loop

    _, result = tiny_bundle
    real, calls = loop.find_digits, []

    def interrupt_third(image):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(image)

    monkeypatch.setattr(loop, "find_digits", interrupt_third)
    summary = loop.run_webcam(result.bundle_dir, str(demo), out_dir=tmp_path, headless=True, keras=False,
                              only=["tflite-fp32", "onnx-int8"])
    assert summary["interrupted"] and summary["stopped"] == "Ctrl-C" and summary["frames"] == 2
    assert summary["reference"] == "tflite-fp32" and summary["backends"] == ["tflite-fp32", "onnx-int8"]
    assert len((tmp_path / "frames.jsonl").read_text().splitlines()) == 2 and (tmp_path / "annotated.mp4").exists()


def test_loop_faults_are_one_line(tiny_bundle, tmp_path, monkeypatch):
    _, result = tiny_bundle
    cam = runner.invoke(app, ["webcam", str(result.bundle_dir), "--source", "7", "--headless", "--out", str(tmp_path)])
    assert cam.exit_code == 4 and cam.output.strip() == "error: camera 7 does not open (is it connected, and free of other programs?)"
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    blank = tmp_path / "blank"
    blank.mkdir()
    cv2.imwrite(str(blank / "page.png"), paper())
    window = runner.invoke(app, ["webcam", str(result.bundle_dir), "--window", "--source", str(blank / "page.png"),
                                 "--out", str(tmp_path / "win")])  # no display: headless, with a one-line note
    assert window.exit_code == 0 and window.stderr.splitlines()[0] == (
        "note: no display here: running headless instead of showing a window")
    assert (tmp_path / "win" / "annotated" / "page.png").is_file()
    from edgeseq.webcam import loop

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(loop, "gui_available", lambda: False)  # opencv-python-headless
    assert loop.choose_mode(False) == (True, "this OpenCV has no GUI (opencv-python-headless): running headless; "
                                             "pip install opencv-python for a window")
    assert loop.choose_mode(None) == (True, "this OpenCV has no GUI (opencv-python-headless): running headless; "
                                            "pip install opencv-python for a window")
    monkeypatch.delenv("DISPLAY")
    assert loop.choose_mode(None) == (True, None)  # headless by default where there is no display: nothing to say
    pipeline = runner.invoke(app, ["webcam", str(result.bundle_dir), "--headless", "--source",
                                   "videotestsrc ! videoconvert ! appsink"])
    from edgeseq.webcam.capture import has_gstreamer

    if not has_gstreamer():  # PyPI's OpenCV
        assert pipeline.exit_code == 4 and pipeline.output.strip().startswith(
            "error: this OpenCV has no GStreamer support, so it cannot open a GStreamer pipeline")
    else:
        assert pipeline.exit_code == 0, pipeline.output
    picam = runner.invoke(app, ["webcam", str(result.bundle_dir), "--headless", "--source", "picamera2:1"])
    assert picam.exit_code == 4 and picam.output.strip().startswith("error: picamera2 is not installed here")
    only = runner.invoke(app, ["webcam", str(result.bundle_dir), "--only", "tflite-int4", "--source", "0", "--headless"])
    assert only.exit_code == 2 and "has no produced artifact tflite-int4" in only.output
    ok = runner.invoke(app, ["webcam", str(result.bundle_dir), "--source", str(blank), "--out", str(tmp_path / "o"), "--headless"])
    assert ok.exit_code == 0 and "0 digits found, 1 frames without a digit" in ok.output


def test_overlay_marks_agreement_and_dissent():
    from edgeseq.webcam.overlay import GREEN, RED, draw

    frame = paper()
    digits = [{"box": (60, 200, 80, 80), "predictions": {"ref": "7", "a": "7"}},
              {"box": (400, 200, 80, 80), "predictions": {"ref": "3", "a": "8"}}]
    out = draw(frame, digits, "ref", 30.0, {"ref": 0.2, "a": 0.1})
    assert tuple(out[200, 100]) == GREEN and tuple(out[200, 440]) == RED  # the top edges of the two boxes
    assert out[5:20, 5:60].mean() < frame[5:20, 5:60].mean()  # the darkened panel with the frame rate
    assert np.array_equal(frame, paper())  # the input frame is left untouched


def test_recorder_letterboxes_a_changing_video_and_the_hud_scales(tmp_path):
    from edgeseq.webcam.overlay import draw
    from edgeseq.webcam.record import Recorder, letterbox

    recorder = Recorder(tmp_path, 10, per_image=False)
    for size in ((640, 480), (1280, 960), (300, 600)):  # a source that changes its frame size mid-stream
        recorder.write(paper(*size), "frame")
    recorder.close()
    video = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 3 and video.read()[1].shape == (480, 640, 3)
    boxed = letterbox(np.full((600, 300, 3), 200, np.uint8), (640, 480))
    assert boxed.shape == (480, 640, 3) and boxed[:, :100].max() == 0 and boxed[240, 320].min() == 200  # bars, centred
    digits = [{"box": (100, 100, 80, 80), "predictions": {"ref": "7", "a": "7"}}]

    def hud_rows(frame):
        out = draw(frame, digits, "ref", 30.0, {"ref": 1.0, "a": 1.2})
        column = out[:, 2, 0].astype(int) - frame[:, 2, 0].astype(int)
        return int((column < -50).sum())  # rows the darkened panel covers

    small, large = hud_rows(paper(640, 480)), hud_rows(paper(4000, 3000))
    assert small > 20 and large > 5 * small
