"""Each detection step on small generated frames, and the camera-like scene generator it is measured on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app

cv2 = pytest.importorskip("cv2")
from edgeseq.webcam import glyphs, preprocess, scenes  # noqa: E402

runner = CliRunner()


def paper(width=640, height=480, level=225):
    return np.full((height, width, 3), level, np.uint8)


def ink(frame, cover, x, y, level=35):
    """Lay a coverage image (float in [0, 1]) on the frame as dark ink at (x, y)."""
    h, w = cover.shape
    region = frame[y:y + h, x:x + w].astype(np.float32)
    frame[y:y + h, x:x + w] = (region * (1 - cover[..., None]) + level * cover[..., None]).astype(np.uint8)
    return frame


def strokes(points, height, pen):
    """Coverage of hand-placed strokes (unit-box polylines), ``height`` pixels tall."""
    return glyphs.draw([np.asarray(p, np.float64) for p in points], height, pen)


def boxes(frame):
    return [d.box for d in preprocess.find_digits(frame)]


def squared(frame, step=28, level=165, thickness=1):
    h, w = frame.shape[:2]
    for x in range(5, w, step):
        cv2.line(frame, (x, 0), (x, h - 1), (level, level, level), thickness)
    for y in range(9, h, step):
        cv2.line(frame, (0, y), (w - 1, y), (level, level, level), thickness)
    return frame


def test_working_scale_follows_the_frame():
    assert preprocess.working_scale((480, 640, 3)) == 1.0
    assert preprocess.working_scale((3000, 4000, 3)) == pytest.approx(0.4)
    assert preprocess.working_scale((4032, 3024)) == pytest.approx(1600 / 4032)


def test_polarity_is_judged_locally_not_by_the_frame():
    frame = ink(paper(), strokes([[(0.5, 0), (0.5, 1)]], 120, 8), 300, 100)
    assert not preprocess.is_light_on_dark(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    edge = np.clip((np.arange(480) - 60) / 20.0, 0, 1)  # a shadow's soft edge (a penumbra), then 45 % light
    shadowed = (frame * (1 - 0.55 * edge)[:, None, None]).astype(np.uint8)  # over most of the page, the digit in it
    assert not preprocess.is_light_on_dark(cv2.cvtColor(shadowed, cv2.COLOR_BGR2GRAY))
    assert preprocess.is_light_on_dark(cv2.cvtColor(255 - frame, cv2.COLOR_BGR2GRAY))  # chalk on a board
    (found,) = preprocess.find_digits(shadowed)
    assert 290 <= found.box[0] <= 310 and found.box[3] >= 110


def test_threshold_follows_the_paper_in_a_dim_frame():
    frame = ink(paper(), strokes(glyphs.GLYPHS[7][0], 110, 7), 250, 150)
    dim = (frame * 0.22).astype(np.uint8)  # paper at 50 of 255
    noisy = np.clip(dim + np.random.default_rng(0).normal(0, 3, dim.shape), 0, 255).astype(np.uint8)
    mask = preprocess.ink_mask(preprocess.ink_map(noisy))
    assert (mask[:100] > 0).mean() < 0.002  # the noise of the paper stays below the threshold
    assert len(boxes(noisy)) == 1


def test_squared_paper_gives_no_boxes_of_its_own():
    assert boxes(squared(paper())) == []
    assert boxes(squared(paper(1280, 720), step=40, level=150, thickness=2)) == []
    tilted = squared(paper(900, 700))
    rotate = cv2.getRotationMatrix2D((450, 350), 7, 1.0)
    tilted = cv2.warpAffine(tilted, rotate, (900, 700), borderMode=cv2.BORDER_REPLICATE)  # a page held askew
    assert boxes(tilted) == []


def test_lines_through_a_digit_leave_one_box_with_its_ink():
    frame = squared(paper())
    ink(frame, strokes(glyphs.GLYPHS[8][0], 100, 6), 300, 150)
    found = preprocess.find_digits(frame)
    assert len(found) == 1
    x, y, w, h = found[0].box
    assert 290 <= x <= 320 and 95 <= h <= 112
    ruled = paper()
    ink(ruled, strokes(glyphs.GLYPHS[3][0], 90, 6), 200, 150)
    cv2.line(ruled, (0, 245), (639, 245), (190, 150, 120), 2)  # the ruling the digit sits on
    cv2.line(ruled, (60, 0), (60, 479), (120, 120, 220), 2)  # the margin line
    assert len(boxes(ruled)) == 1


def test_a_grid_line_along_digits_strokes_is_still_erased(mnist_dir):
    """A squared-paper frame (seed 4's) where a vertical grid line runs down an 8's and a 9's strokes and is
    lighter than the threshold between them: thick over most of what the mask holds of it, thin over its
    run. Left standing, it tied all six digits into one box."""
    from edgeseq.data import load_split

    test = load_split("test", mnist_dir)
    scene = scenes.render_scene(scenes.BY_NAME["squared"], np.random.default_rng([4, 1, 3]), test)
    assert len(scene.labels) == 6
    assert len(boxes(scene.image)) == 6


def test_a_marker_digit_filling_the_frame_is_not_hollow():
    """The paper is estimated with a disc wider than the stroke: a narrower one takes a marker's stroke,
    80 px wide here, for paper and leaves only its outline as ink."""
    frame = paper()
    cover = strokes(glyphs.GLYPHS[7][0], 340, 80)
    ink(frame, cover, 150, 10)
    core = np.zeros(frame.shape[:2], bool)
    core[10:10 + cover.shape[0], 150:150 + cover.shape[1]] = cv2.erode((cover > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert np.percentile(preprocess.ink_map(frame)[core], 10) > 0.6
    assert len(boxes(frame)) == 1


def test_stroke_width_is_measured():
    mask = np.zeros((200, 200), np.uint8)
    cv2.line(mask, (40, 20), (40, 180), 255, 7)
    cv2.line(mask, (120, 20), (160, 180), 255, 7)
    width = int((mask[100, :80] > 0).sum())  # what cv2 drew across the upright line
    assert abs(preprocess.stroke_width(mask) - width) <= 1.0


def test_a_broken_four_is_one_box():
    frame = paper()
    # An open-top 4 in two strokes that do not touch, and a 5 whose flag is a separate stroke.
    four = strokes([[(0.2, 0.0), (0.06, 0.6), (0.62, 0.6)], [(0.74, 0.05), (0.72, 1.0)], [(0.8, 0.6), (0.95, 0.6)]], 120, 7)
    five = strokes([[(0.28, 0.06), (0.22, 0.45), (0.5, 0.38), (0.8, 0.55), (0.8, 0.85), (0.5, 1.0), (0.15, 0.9)],
                    [(0.34, 0.0), (0.9, 0.0)]], 120, 7)
    ink(frame, four, 100, 150)
    ink(frame, five, 380, 150)
    found = boxes(frame)
    assert len(found) == 2, found
    assert found[0][0] < 130 and found[0][3] >= 115 and found[1][0] > 350


def test_a_pen_lift_joins_but_two_digits_stay_two():
    rng = np.random.default_rng(4)
    frame = paper()
    one = glyphs.strokes(1, rng)
    lifted = [one[0][:20], one[0][24:]]  # a gap in the middle of the stroke
    ink(frame, glyphs.draw(lifted, 120, 6), 100, 150)
    ink(frame, glyphs.draw(glyphs.strokes(1, rng), 120, 6), 190, 150)  # another 1, 0.5 digit-heights away
    assert len(boxes(frame)) == 2


def test_touching_digits_are_split():
    frame = paper()
    two, three = strokes(glyphs.GLYPHS[2][0], 100, 7), strokes(glyphs.GLYPHS[3][0], 100, 7)
    ink(frame, two, 200, 150)
    ink(frame, three, 200 + two.shape[1] + 14, 150)
    cv2.line(frame, (280, 254), (318, 240), (35, 35, 35), 7)  # the 2's base runs on into the 3, as a hurried hand does
    found = boxes(frame)
    assert len(found) == 2 and found[0][0] < 215 and found[1][0] > 270, found


def test_specks_and_dashes_are_not_digits():
    frame = paper()
    ink(frame, strokes(glyphs.GLYPHS[2][0], 100, 6), 300, 150)
    cv2.circle(frame, (100, 100), 3, (40, 40, 40), -1)  # a dot, smaller than the pen would draw a digit
    cv2.line(frame, (80, 350), (200, 352), (40, 40, 40), 6)  # a dash
    assert len(boxes(frame)) == 1


def test_reading_order_rows_slanted_rows_and_columns():
    grid = [[10 + 60 * c, 10 + 100 * r + 8 * c, 40, 60] for r in range(3) for c in range(5)]  # rows drifting down
    shuffled = [grid[i] for i in np.random.default_rng(0).permutation(len(grid))]
    assert preprocess.reading_order(shuffled) == grid
    column = [[300, 20 + 90 * r, 30, 60] for r in range(6)]
    assert preprocess.reading_order(column[::-1]) == column


def test_a_12_megapixel_frame_with_ten_digits_gives_ten_boxes_in_reading_order():
    frame = paper(4000, 3000, 215)
    rng = np.random.default_rng(7)
    labels, placed = [], []
    for i in range(10):
        digit = int(rng.integers(10))
        cover = glyphs.draw(glyphs.strokes(digit, rng), 260, 22)
        x, y = 300 + (i % 5) * 700, 700 + (i // 5) * 1100
        ink(frame, cover, x, y)
        labels.append(digit)
        placed.append((x, y))
    found = boxes(frame)
    assert len(found) == 10
    for (x, y, w, h), (px, py) in zip(found, placed):
        assert abs(x - px) < 60 and abs(y - py) < 60 and 230 <= h <= 300


# ------------------------------------------------------------------------------------------- scenes


def test_every_condition_renders_with_its_truth(splits):
    test = splits[1]
    for number, condition in enumerate(scenes.CONDITIONS):
        scene = scenes.render_scene(condition, np.random.default_rng([1, number]), test)
        h, w = scene.image.shape[:2]
        assert (w, h) in [tuple(s) for s in condition.sizes], condition.name
        assert len(scene.labels) == len(scene.boxes) == len(scene.sources) >= 1
        for x, y, bw, bh in scene.boxes:
            assert 0 < x and 0 < y and x + bw < w and y + bh < h  # wholly inside the frame
            gray = cv2.cvtColor(scene.image[y:y + bh, x:x + bw], cv2.COLOR_BGR2GRAY)
            assert gray.min() < np.median(cv2.cvtColor(scene.image, cv2.COLOR_BGR2GRAY)) - 25  # ink in the box


def test_scenes_are_reproducible_and_mnist_digits_come_from_the_test_split(splits):
    test = splits[1]
    a = scenes.render_scene(scenes.BY_NAME["perspective"], np.random.default_rng(5), test)
    b = scenes.render_scene(scenes.BY_NAME["perspective"], np.random.default_rng(5), test)
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes
    for source, label in zip(a.sources, a.labels):
        if source.startswith("mnist:"):
            assert test.labels[int(source.split(":")[1])] == label


def test_demo_scenes_command_and_the_loop_scores_it(tmp_path, tiny_bundle, splits, monkeypatch):
    out = tmp_path / "scenes"
    cli = runner.invoke(app, ["demo-scenes", str(out), "--per-condition", "2", "--condition", "plain,squared,page-12mp",
                              "--json"])
    assert cli.exit_code == 0, cli.output
    result = json.loads(cli.stdout)["result"]
    truth = json.loads((out / "scenes.json").read_text())
    assert result["frames"] == 6 == len(truth["frames"]) and truth["schema"] == "edgeseq.scenes/1"
    assert sorted(p.name for p in out.glob("*.jpg")) == [f["file"] for f in truth["frames"]]
    bad = runner.invoke(app, ["demo-scenes", str(tmp_path / "x"), "--condition", "sunny"])
    assert bad.exit_code == 2 and "unknown condition sunny" in bad.output
    _, exported = tiny_bundle
    loop = runner.invoke(app, ["webcam", str(exported.bundle_dir), "--source", str(out), "--headless", "--out",
                               str(tmp_path / "w"), "--no-keras", "--only", "tflite-fp32", "--json"])
    assert loop.exit_code == 0, loop.output
    summary = json.loads(loop.stdout)["result"]
    digits = sum(len(f["labels"]) for f in truth["frames"])
    assert summary["ground_truth"]["digits"] == digits and summary["ground_truth"]["missed_by_detection"] <= 2
    pngs = sorted((tmp_path / "w" / "annotated").glob("*.png"))
    assert len(pngs) == 6 and summary["annotated"] == ["6 files in annotated"]
    sizes = {cv2.imread(str(p)).shape[:2] for p in pngs}
    assert len(sizes) >= 2  # each annotated image at its own size
