"""Fault injection across every command: bad files of every kind edgeseq reads, malformed documents field by
field, tampered and swapped artifacts, paths out of the bundle, unwritable outputs, invalid option values,
and signals at several points of export and bench.

Each case asserts: no traceback, one line ``error: ...`` naming the problem, the documented exit code
(:mod:`edgeseq.errors`), and that nothing good that was there before was damaged. The fixtures are built
once per run (the session's tiny bundle); each case works on its own copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseq.cli import app
from edgeseq.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE

pytest.importorskip("keras")
pytest.importorskip("tf2onnx")
runner = CliRunner()


# ----------------------------------------------------------------------------------- helpers

def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (what 'not damaged' is checked against)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(result, code: int, *needles: str) -> str:
    """The command failed with ``code``, printed no traceback and exactly one ``error:`` line holding ``needles``."""
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in output.splitlines() if line.startswith(("error: ", "Error: ", "Invalid value", "│ Invalid"))
              or "Invalid value" in line]
    assert errors, output
    if code != EXIT_USAGE:
        assert len([e for e in errors if e.startswith("error: ")]) == 1, output
    for needle in needles:
        assert needle in output, (needle, output)
    return output


@pytest.fixture()
def bundle(tiny_bundle, tmp_path) -> Path:
    """A fresh copy of the session's tiny bundle (eight artifacts of a small MLP)."""
    target = tmp_path / "bundle"
    shutil.copytree(tiny_bundle[1].bundle_dir, target, symlinks=True)
    for stale in ("verify.json", "verify.md", "bench"):
        path = target / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return target


def manifest_of(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def write_manifest(bundle: Path, manifest) -> None:
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def entry(manifest: dict, artifact_id: str) -> dict:
    return next(a for a in manifest["artifacts"] if a["id"] == artifact_id)


# The tiny MLP's tflite-int8 sits just under the default 99.5 % on 300 images: faults here are about trust,
# not int8 quality, so a verify that is meant to pass uses thresholds this bundle meets.
LOOSE = ["--min-agreement-int8", "0.95", "--max-drop-int8", "0.05"]


def loose_thresholds():
    from edgeseq.formats import Thresholds

    return Thresholds(int8_agreement=0.95, int8_max_accuracy_drop=0.05)


def verify_cli(bundle: Path, *extra: str, data_dir: Path | None = None):
    args = ["verify", str(bundle), *extra] + (["--data-dir", str(data_dir)] if data_dir else [])
    return runner.invoke(app, args)


# ----------------------------------------------------------------------------------- the manifest

RAW_MANIFESTS = {
    "empty": (b"", "is empty"),
    "whitespace": (b"  \n\t ", "is empty"),
    "random bytes": (bytes(np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8)), "manifest"),
    "not utf-8": (b"\xff\xfe{\"schema\": 1}", "not UTF-8"),
    "json array": (b"[1, 2, 3]", "a JSON object was expected"),
    "json string": (b"\"edgeseq.bundle/1\"", "a JSON object was expected"),
    "json null": (b"null", "a JSON object was expected"),
    "other schema": (b"{\"schema\": \"edgeseq.card/1\"}", "schema 'edgeseq.bundle/1' expected"),
    "no schema": (b"{\"artifacts\": []}", "schema 'edgeseq.bundle/1' expected"),
    "future schema": (b"{\"schema\": \"edgeseq.bundle/2\"}", "found 'edgeseq.bundle/2'"),
    "deeply nested": (b"[" * 100000 + b"]" * 100000, "manifest"),
    "trailing garbage": (b"{\"schema\": \"edgeseq.bundle/1\"} }", "not valid JSON"),
}


@pytest.mark.parametrize("case", list(RAW_MANIFESTS), ids=list(RAW_MANIFESTS))
def test_unreadable_manifest(bundle, case):
    raw, needle = RAW_MANIFESTS[case]
    (bundle / "manifest.json").write_bytes(raw)
    before = snapshot(bundle)
    assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "manifest.json", needle)
    assert snapshot(bundle) == before  # nothing written


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.99])
def test_truncated_manifest(bundle, cut):
    text = (bundle / "manifest.json").read_bytes()
    (bundle / "manifest.json").write_bytes(text[: int(len(text) * cut)])
    assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "manifest.json", "not valid JSON")


def test_manifest_that_is_a_folder_or_missing(bundle, tmp_path):
    (bundle / "manifest.json").unlink()
    assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "is not an edgeseq bundle (no manifest.json)")
    (bundle / "manifest.json").mkdir()
    assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "is a directory")
    assert_one_line_error(verify_cli(tmp_path / "nowhere"), EXIT_BAD_INPUT, "does not exist")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(verify_cli(tmp_path / "file"), EXIT_BAD_INPUT, "not a directory")


TOP_LEVEL = ["created", "source", "input", "output", "preprocessing", "calibration", "reference", "versions", "artifacts"]


@pytest.mark.parametrize("field", TOP_LEVEL)
def test_manifest_missing_section(bundle, field):
    manifest = manifest_of(bundle)
    del manifest[field]
    write_manifest(bundle, manifest)
    assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "manifest.json", f"field {field}", "Field required")


@pytest.mark.parametrize("field", TOP_LEVEL)
def test_manifest_section_of_the_wrong_type(bundle, field):
    manifest = manifest_of(bundle)
    manifest[field] = 17
    write_manifest(bundle, manifest)
    assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "manifest.json", f"field {field}")


ENTRY_FIELDS = ["id", "format", "quant", "file", "status", "convert_seconds", "sha256", "bytes"]


@pytest.mark.parametrize("field", ENTRY_FIELDS)
def test_artifact_entry_missing_field(bundle, field):
    manifest = manifest_of(bundle)
    del entry(manifest, "onnx-int8")[field]
    write_manifest(bundle, manifest)
    output = assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "manifest.json", "field artifacts[")
    assert "onnx-int8" in output or field in output


BAD_VALUES = {
    "format": ("coreml", "artifacts[7].format"),
    "quant": ("int4", "artifacts[7].quant"),
    "status": ("maybe", "artifacts[7].status"),
    "bytes negative": (-1, "artifacts[7].bytes"),
    "bytes text": ("big", "artifacts[7].bytes"),
    "sha256 short": ("abc123", "not a SHA-256"),
    "sha256 upper": ("A" * 64, "not a SHA-256"),
    "file parent": ("../elsewhere.onnx", "is not a plain path inside the bundle"),
    "file absolute": ("/etc/passwd.onnx", "is not a plain path inside the bundle"),
    "file nested": ("logs/x.onnx", "is not a file name in the bundle folder"),
    "file hidden": (".x.onnx", "is not a plain path inside the bundle"),
    "file backslash": ("..\\x.onnx", "is not a plain path inside the bundle"),
    "file drive": ("C:x.onnx", "is not a plain path inside the bundle"),
    "file suffix": ("tiny-int8.tflite", "does not end in .onnx"),
    "id": ("onnx-fp32x", "does not match format"),
    "convert_seconds": (-3, "artifacts[7].convert_seconds"),
    "notes": ("a string", "artifacts[7].notes"),
    "log traversal": ("../../etc/shadow", "is not a plain path inside the bundle"),
    "coverage": ([1, 2], "artifacts[7].coverage"),
    "coverage share": ({"macs": 5, "int8_mac_share": 1.7}, "artifacts[7].coverage.int8_mac_share"),
    "coverage empty": ({}, "coverage needs macs and int8_mac_share"),
    "unknown field": (None, "Extra inputs are not permitted"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES), ids=list(BAD_VALUES))
def test_artifact_entry_bad_value(bundle, case):
    value, needle = BAD_VALUES[case]
    manifest = manifest_of(bundle)
    target = manifest["artifacts"][7]
    assert target["id"] == "onnx-int8"
    field = case.split()[0]
    if case == "unknown field":
        target["colour"] = "blue"
    elif field == "log":
        target["log"] = value
    else:
        target[field] = value
    write_manifest(bundle, manifest)
    assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "manifest.json", needle)


MANIFEST_EDITS = {
    "output is a string": (lambda m: m.__setitem__("output", "digits"), "field output"),
    "output kind": (lambda m: m["output"].__setitem__("kind", "regress"), "field output.kind"),
    "classify labels": (lambda m: m["output"].__setitem__("labels", ["0", "1"]), "one label per class"),
    "input shape": (lambda m: m["input"].__setitem__("shape", "28x28"), "field input.shape"),
    "input dtype": (lambda m: m["input"].__setitem__("dtype", "int64"), "field input.dtype"),
    "source sha": (lambda m: m["source"].__setitem__("sha256", "0" * 10), "not a SHA-256"),
    "source missing name": (lambda m: m["source"].pop("name"), "field source.name"),
    "reference examples": (lambda m: m["reference"].__setitem__("examples", 0), "field reference.examples"),
    "reference file": (lambda m: m["reference"].__setitem__("file", "../ref.npz"), "field reference.file"),
    "calibration images": (lambda m: m["calibration"].__setitem__("images", "many"), "field calibration.images"),
    "no artifacts": (lambda m: m.__setitem__("artifacts", []), "field artifacts"),
    "artifact twice": (lambda m: m["artifacts"].append(dict(m["artifacts"][0])), "listed twice"),
    "artifact not an object": (lambda m: m["artifacts"].__setitem__(0, "tiny-fp32.tflite"), "field artifacts[0]"),
    "preprocessing range": (lambda m: m["preprocessing"].__setitem__("range", [0.0]), "field preprocessing.range"),
    "versions": (lambda m: m["versions"].__setitem__("numpy", 2), "field versions.numpy"),
    "ok without hash": (lambda m: m["artifacts"][0].pop("sha256"), "records no size or SHA-256"),
    "failed without error": (lambda m: m["artifacts"][0].__setitem__("status", "failed"), "records no error"),
    "extra top-level": (lambda m: m.__setitem__("signature", "trust me"), "Extra inputs are not permitted"),
}


@pytest.mark.parametrize("case", list(MANIFEST_EDITS), ids=list(MANIFEST_EDITS))
def test_malformed_manifest_field(bundle, case):
    edit, needle = MANIFEST_EDITS[case]
    manifest = manifest_of(bundle)
    edit(manifest)
    write_manifest(bundle, manifest)
    assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "manifest.json", needle)


@pytest.mark.parametrize("command", ["bench", "webcam"])
@pytest.mark.parametrize("case", ["output is a string", "artifact twice", "source sha"])
def test_every_reader_validates_the_manifest(bundle, tmp_path, command, case):
    edit, needle = MANIFEST_EDITS[case]
    manifest = manifest_of(bundle)
    edit(manifest)
    write_manifest(bundle, manifest)
    args = ["bench", str(bundle), "--runs", "1", "--out", str(tmp_path / "b")] if command == "bench" else \
        ["webcam", str(bundle), "--source", str(tmp_path / "none.png"), "--out", str(tmp_path / "w")]
    assert_one_line_error(runner.invoke(app, args), EXIT_BAD_INPUT, "manifest.json", needle)


# ----------------------------------------------------------------------------------- the reference set

def _rewrite_reference(bundle: Path, **changes) -> None:
    with np.load(bundle / "reference.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    with open(bundle / "reference.npz", "wb") as f:
        np.savez(f, **arrays)


REFERENCE_FAULTS = {
    "missing": (lambda b: (b / "reference.npz").unlink(), "has no reference.npz"),
    "empty": (lambda b: (b / "reference.npz").write_bytes(b""), "not a readable reference set"),
    "random": (lambda b: (b / "reference.npz").write_bytes(os.urandom(2048)), "not a readable reference set"),
    "truncated": (lambda b: (b / "reference.npz").write_bytes((b / "reference.npz").read_bytes()[:3000]),
                  "not a readable reference set"),
    "no outputs": (lambda b: _rewrite_reference(b, outputs=None), "no 'outputs' array"),
    "no labels": (lambda b: _rewrite_reference(b, labels=None), "no 'labels' array"),
    "labels not digits": (lambda b: _rewrite_reference(b, labels=np.full(300, 12, np.uint8)), "labels are not digits"),
    "outputs nan": (lambda b: _rewrite_reference(b, outputs=np.full((300, 10), np.nan, np.float32)), "not finite"),
    "outputs shape": (lambda b: _rewrite_reference(b, outputs=np.zeros((300, 7), np.float32),
                                                   test_outputs=np.zeros((300, 7), np.float32)), "the manifest says [10]"),
    "test outputs shape": (lambda b: _rewrite_reference(b, test_outputs=np.zeros((300, 3), np.float32)), "differ per example"),
    "fewer rows": (lambda b: _rewrite_reference(b, labels=np.zeros(299, np.uint8)), "one row per example"),
    "float inputs": (lambda b: _rewrite_reference(b, inputs=np.zeros((300, 28, 28), np.float32)), "uint8 expected"),
    "image size": (lambda b: _rewrite_reference(b, inputs=np.zeros((300, 14, 14), np.uint8)), "28x28 images expected"),
    "pickled objects": (lambda b: _rewrite_reference(b, labels=np.array([{"x": 1}] * 300, dtype=object)),
                        "not a readable reference set"),
    "other test set": (lambda b: _rewrite_reference(b, test_sha256=np.array("0" * 64)), "test-set fingerprint"),
    "inputs not the split": (lambda b: _rewrite_reference(b, inputs=np.zeros((300, 28, 28), np.uint8)),
                             "must be the whole test split"),
    "a folder": (lambda b: ((b / "reference.npz").unlink(), (b / "reference.npz").mkdir()), "has no reference.npz"),
}


@pytest.mark.parametrize("case", list(REFERENCE_FAULTS), ids=list(REFERENCE_FAULTS))
def test_bad_reference_set(bundle, case):
    fault, needle = REFERENCE_FAULTS[case]
    fault(bundle)
    before = snapshot(bundle)
    assert_one_line_error(verify_cli(bundle), EXIT_BAD_INPUT, "reference", needle)
    assert snapshot(bundle) == before


# ----------------------------------------------------------------------------------- tampered artifacts

def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


ARTIFACT_FAULTS = {
    "flipped byte tflite": (lambda b: _flip(b / "tiny-fp32.tflite"), "tiny-fp32.tflite does not match the manifest's SHA-256"),
    "flipped byte onnx": (lambda b: _flip(b / "tiny-int8.onnx"), "tiny-int8.onnx does not match the manifest's SHA-256"),
    "truncated": (lambda b: (b / "tiny-fp16.onnx").write_bytes((b / "tiny-fp16.onnx").read_bytes()[:100]), "the manifest records"),
    "emptied": (lambda b: (b / "tiny-dynamic.tflite").write_bytes(b""), "is 0 bytes"),
    "deleted": (lambda b: (b / "tiny-int8.tflite").unlink(), "is missing from the bundle"),
    "swapped": (lambda b: shutil.copyfile(b / "tiny-int8.tflite", b / "tiny-fp32.tflite"), "tiny-fp32.tflite"),
    "a folder": (lambda b: ((b / "tiny-fp32.onnx").unlink(), (b / "tiny-fp32.onnx").mkdir()), "is missing from the bundle"),
}


def _symlink_out(bundle: Path) -> None:
    """The same bytes, but outside the bundle: the hash matches, the place does not."""
    outside = bundle.parent / "outside.tflite"
    shutil.move(bundle / "tiny-fp32.tflite", outside)
    (bundle / "tiny-fp32.tflite").symlink_to(outside)


ARTIFACT_FAULTS["symlink out"] = (_symlink_out, "leads outside the bundle")


@pytest.mark.parametrize("command", ["verify", "bench", "webcam"])
@pytest.mark.parametrize("case", list(ARTIFACT_FAULTS), ids=list(ARTIFACT_FAULTS))
def test_tampered_artifact_is_refused(bundle, tmp_path, command, case):
    fault, needle = ARTIFACT_FAULTS[case]
    fault(bundle)
    before = snapshot(bundle)
    args = {"verify": ["verify", str(bundle)],
            "bench": ["bench", str(bundle), "--runs", "1", "--no-cold-start"],
            "webcam": ["webcam", str(bundle), "--source", str(tmp_path / "none.png"), "--out", str(tmp_path / "w")]}[command]
    assert_one_line_error(runner.invoke(app, args), EXIT_BAD_INPUT, needle)
    assert snapshot(bundle) == before


def test_a_symlink_inside_the_bundle_is_fine(bundle, small_mnist_dir):
    shutil.move(bundle / "tiny-fp32.tflite", bundle / "logs" / "real.tflite")
    (bundle / "tiny-fp32.tflite").symlink_to(Path("logs") / "real.tflite")
    result = verify_cli(bundle, "--json", *LOOSE, data_dir=small_mnist_dir)
    assert result.exit_code == 0, result.output


def test_bench_of_one_tampered_file_is_refused(bundle):
    _flip(bundle / "tiny-fp32.onnx")
    assert_one_line_error(runner.invoke(app, ["bench", str(bundle / "tiny-fp32.onnx"), "--runs", "1"]),
                          EXIT_BAD_INPUT, "does not match the manifest's SHA-256")


@pytest.mark.parametrize("fault", ["changed", "missing"])
def test_keras_source_is_loaded_only_when_its_hash_matches(bundle, tmp_path, fault):
    manifest = manifest_of(bundle)
    source = tmp_path / "source.keras"
    shutil.copyfile(manifest["source"]["model"], source)
    manifest["source"]["model"] = str(source)
    write_manifest(bundle, manifest)
    if fault == "changed":
        with zipfile.ZipFile(source, "a") as z:
            z.writestr("extra.txt", "not the trained model")
        needle = "has changed since the bundle was exported"
    else:
        source.unlink()
        needle = "is not on this machine"
    result = runner.invoke(app, ["bench", str(bundle), "--keras", "--runs", "1", "--out", str(tmp_path / "b")])
    assert_one_line_error(result, EXIT_BAD_INPUT, needle)


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


SOURCES = {
    "empty image": (lambda d: _written(d / "x.png", b""), "is not a readable image"),
    "random image": (lambda d: _written(d / "x.jpg", os.urandom(500)), "is not a readable image"),
    "random video": (lambda d: _written(d / "x.mp4", os.urandom(5000)), "cannot open video"),
    "folder without images": (lambda d: _written(d / "notes.txt", b"x").parent, "has no images"),
    "missing": (lambda d: d / "gone.mp4", "does not exist"),
}


@pytest.mark.parametrize("case", list(SOURCES), ids=list(SOURCES))
def test_bad_webcam_source(bundle, tmp_path, case):
    folder = tmp_path / "source"
    folder.mkdir()
    make, needle = SOURCES[case]
    result = runner.invoke(app, ["webcam", str(bundle), "--source", str(make(folder)), "--headless",
                                 "--out", str(tmp_path / "w")])
    assert_one_line_error(result, EXIT_BAD_INPUT, needle)
    assert not (tmp_path / "w" / "summary.json").exists()


# ----------------------------------------------------------------------------------- model files and cards (export)

def _model_copy(tiny_bundle, tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    return Path(shutil.copyfile(tiny_bundle[0], folder / "tiny.keras"))


CARDS = {
    "empty": ("", "is empty"),
    "random": ("\x00\x01garbage", "not valid JSON"),
    "array": ("[]", "a JSON object was expected"),
    "no schema": ('{"output": {}}', "schema 'edgeseq.card/1' expected"),
    "output string": (None, "field output"),
    "output kind": ({"kind": "detect"}, "field output"),
    "no preprocessing": ("drop preprocessing", "field preprocessing"),
    "input shape": ("bad input", "field input.shape"),
    "spell without vocab": ({"kind": "spell", "shape": [5, 16], "meaning": "x"}, "a spell output needs vocab"),
    "labels count": ({"kind": "classify", "shape": [10], "meaning": "x", "labels": ["a"]}, "one label per class"),
}


def _card_text(case: str) -> str:
    from edgeseq import card as cards

    raw, _ = CARDS[case]
    if isinstance(raw, str) and case not in ("no preprocessing", "input shape"):
        return raw
    card = {"schema": "edgeseq.card/1", "input": {"name": "image", "shape": [None, 28, 28], "dtype": "float32"},
            "output": cards.classify_output(), "preprocessing": cards.PREPROCESSING}
    if case == "output string":
        card["output"] = "digits"
    elif case == "no preprocessing":
        del card["preprocessing"]
    elif case == "input shape":
        card["input"]["shape"] = "28 by 28"
    else:
        card["output"] = raw
    return json.dumps(card)


@pytest.mark.parametrize("case", list(CARDS), ids=list(CARDS))
def test_malformed_card_stops_export_before_anything_is_written(tiny_bundle, tmp_path, small_mnist_dir, case):
    model = _model_copy(tiny_bundle, tmp_path)
    (model.parent / "card.json").write_text(_card_text(case))
    result = runner.invoke(app, ["export", str(model), "--format", "tflite", "--quant", "fp32",
                                 "--data-dir", str(small_mnist_dir), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, EXIT_BAD_INPUT, "card.json", CARDS[case][1])
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_card_whose_output_does_not_fit_the_model(tiny_bundle, tmp_path, small_mnist_dir):
    from edgeseq import card as cards

    model = _model_copy(tiny_bundle, tmp_path)
    (model.parent / "card.json").write_text(json.dumps({
        "schema": "edgeseq.card/1", "input": {"name": "image", "shape": [None, 28, 28], "dtype": "float32"},
        "output": cards.spell_output(), "preprocessing": cards.PREPROCESSING}))
    result = runner.invoke(app, ["export", str(model), "--format", "tflite", "--quant", "fp32",
                                 "--data-dir", str(small_mnist_dir), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, EXIT_BAD_INPUT, "gives outputs of shape [10] per example, its card says [5, 16]")
    assert not (tmp_path / "out").exists()


MODEL_FILES = {
    "empty": (b"", "not a valid .keras file"),
    "random": (os.urandom(1000), "not a valid .keras file"),
    "text": (b"my model", "not a valid .keras file"),
    "truncated": (None, "not a valid .keras file"),
    "empty zip": (b"PK\x05\x06" + b"\x00" * 18, "cannot load"),
}


@pytest.mark.parametrize("case", list(MODEL_FILES), ids=list(MODEL_FILES))
def test_corrupt_model_file(tiny_bundle, tmp_path, small_mnist_dir, case):
    raw, needle = MODEL_FILES[case]
    path = tmp_path / "user.keras"
    path.write_bytes(raw if raw is not None else Path(tiny_bundle[0]).read_bytes()[:-900])
    result = runner.invoke(app, ["export", str(path), "--data-dir", str(small_mnist_dir), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, EXIT_BAD_INPUT, str(path), needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing", "folder without model", "not keras"])
def test_model_path_problems(tmp_path, case):
    path = {"missing": tmp_path / "nope.keras", "folder without model": tmp_path, "not keras": tmp_path / "m.onnx"}[case]
    if case == "not keras":
        path.write_bytes(b"\x08\x07")
    needle = {"missing": "does not exist", "folder without model": "without model.keras", "not keras": "not a Keras model file"}[case]
    assert_one_line_error(runner.invoke(app, ["export", str(path)]), EXIT_BAD_INPUT, needle)


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "truncated images"])
def test_bad_data_dir_for_export(tiny_bundle, tmp_path, small_mnist_dir, case):
    data = tmp_path / "data"
    if case != "missing folder":
        data.mkdir()
    if case == "truncated images":
        for f in small_mnist_dir.iterdir():
            shutil.copyfile(f, data / f.name)
        images = data / "train-images-idx3-ubyte.gz"
        images.write_bytes(images.read_bytes()[:5000])
    model = _model_copy(tiny_bundle, tmp_path)
    result = runner.invoke(app, ["export", str(model), "--data-dir", str(data), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, EXIT_BAD_INPUT, str(data))
    assert not (tmp_path / "out").exists()


def test_calibration_larger_than_the_training_set(tiny_bundle, tmp_path, small_mnist_dir):
    model = _model_copy(tiny_bundle, tmp_path)
    result = runner.invoke(app, ["export", str(model), "--calib", "550", "--data-dir", str(small_mnist_dir),
                                 "--out", str(tmp_path / "out")])
    assert_one_line_error(result, EXIT_USAGE, "calibration takes 550 of the 600 training images", "at least 100")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------- bench reports (--compare)

def _bench_report(bundle: Path, tmp_path: Path) -> Path:
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "3", "--warmup", "0", "--no-cold-start",
                                 "--no-accuracy", "--out", str(tmp_path / "good")])
    assert result.exit_code == 0, result.output
    return tmp_path / "good" / "bench.json"


REPORT_FAULTS = {
    "empty": (lambda r: "", "is empty"),
    "garbage": (lambda r: "garbage{", "not valid JSON"),
    "array": (lambda r: "[]", "a JSON object was expected"),
    "other schema": (lambda r: json.dumps({**r, "schema": "edgeseq.verify/1"}), "schema 'edgeseq.bench/1' expected"),
    "no artifacts": (lambda r: json.dumps({k: v for k, v in r.items() if k != "artifacts"}), "field artifacts"),
    "latency text": (lambda r: json.dumps({**r, "artifacts": [{**r["artifacts"][0], "latency": "fast"}]}),
                     "field artifacts[0].latency"),
    "p50 text": (lambda r: json.dumps({**r, "artifacts": [{**r["artifacts"][0], "latency": [{"batch": 1, "p50_us": "x"}]}]}),
                 "field artifacts[0].latency[0].p50_us"),
    "no cpu": (lambda r: json.dumps({**r, "device": {}}), "device.cpu"),
    "bytes missing": (lambda r: json.dumps({**r, "artifacts": [{k: v for k, v in r["artifacts"][0].items() if k != "bytes"}]}),
                      "field artifacts[0].bytes"),
}


@pytest.mark.parametrize("case", list(REPORT_FAULTS), ids=list(REPORT_FAULTS))
def test_compare_with_a_bad_report(bundle, tmp_path, case):
    good = _bench_report(bundle, tmp_path)
    fault, needle = REPORT_FAULTS[case]
    bad = tmp_path / "bad.json"
    bad.write_text(fault(json.loads(good.read_text())))
    before = good.read_bytes()
    assert_one_line_error(runner.invoke(app, ["bench", "--compare", str(good), str(bad)]), EXIT_BAD_INPUT, "bad.json", needle)
    assert good.read_bytes() == before


def test_compare_reports_that_share_nothing_or_not_everything(bundle, tmp_path):
    good = _bench_report(bundle, tmp_path)
    report = json.loads(good.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**report, "artifacts": [{**r, "id": "x-" + r["id"]} for r in report["artifacts"]]}))
    assert_one_line_error(runner.invoke(app, ["bench", "--compare", str(good), str(other)]), EXIT_BAD_INPUT,
                          "share no artifact")
    fewer = tmp_path / "fewer.json"
    fewer.write_text(json.dumps({**report, "artifacts": report["artifacts"][:3]}))
    result = runner.invoke(app, ["bench", "--compare", str(good), str(fewer)])
    assert result.exit_code == EXIT_FAILED and "Traceback" not in result.output
    assert "only in the before report, not compared: " in result.output
    assert runner.invoke(app, ["bench", "--compare", str(good), str(good)]).exit_code == 0
    for missing in (tmp_path / "nope.json", tmp_path):
        assert_one_line_error(runner.invoke(app, ["bench", "--compare", str(good), str(missing)]), EXIT_BAD_INPUT, str(missing))
    assert_one_line_error(runner.invoke(app, ["bench", "--compare", str(good)]), EXIT_USAGE, "exactly two")


# ----------------------------------------------------------------------------------- invalid option values (exit 2)

INVALID_OPTIONS = {
    "verify agreement nan": ["verify", "{b}", "--min-agreement-int8", "nan"],
    "verify agreement inf": ["verify", "{b}", "--min-agreement-int8", "inf"],
    "verify agreement above 1": ["verify", "{b}", "--min-agreement-int8", "1.5"],
    "verify agreement negative": ["verify", "{b}", "--min-agreement-int8", "-0.1"],
    "verify agreement text": ["verify", "{b}", "--min-agreement-int8", "high"],
    "verify drop nan": ["verify", "{b}", "--max-drop-int8", "nan"],
    "verify macs nan": ["verify", "{b}", "--min-int8-macs", "NaN"],
    "verify reduced inf": ["verify", "{b}", "--min-agreement-reduced", "-inf"],
    "verify max abs nan": ["verify", "{b}", "--max-abs-fp32", "nan"],
    "verify max abs negative": ["verify", "{b}", "--max-abs-fp32", "-1"],
    "verify threads 0": ["verify", "{b}", "--threads", "0"],
    "bench seconds nan": ["bench", "{b}", "--seconds", "nan"],
    "bench seconds inf": ["bench", "{b}", "--seconds", "inf"],
    "bench seconds 0": ["bench", "{b}", "--seconds", "0"],
    "bench seconds negative": ["bench", "{b}", "--seconds", "-2"],
    "bench runs 0": ["bench", "{b}", "--runs", "0"],
    "bench batch 0": ["bench", "{b}", "--batch", "0"],
    "bench warmup negative": ["bench", "{b}", "--warmup", "-1"],
    "bench threads 0": ["bench", "{b}", "--threads", "0"],
    "bench runs text": ["bench", "{b}", "--runs", "many"],
    "export calib 0": ["export", "{m}", "--calib", "0"],
    "export calib text": ["export", "{m}", "--calib", "lots"],
    "export format": ["export", "{m}", "--format", "coreml"],
    "export quant": ["export", "{m}", "--quant", "int4"],
    "export comma list": ["export", "{m}", "--format", "tflite,onnx"],
    "export all": ["export", "{m}", "--quant", "all"],
    "bench provider": ["bench", "{b}", "--provider", "gpu"],
    "train schedule": ["train", "mlp", "--schedule", "linear"],
    "train lr nan": ["train", "mlp", "--lr", "nan"],
    "train lr inf": ["train", "mlp", "--lr", "inf"],
    "train lr 0": ["train", "mlp", "--lr", "0"],
    "train epochs 0": ["train", "mlp", "--epochs", "0"],
    "train unknown model": ["train", "resnet"],
    "webcam max frames 0": ["webcam", "{b}", "--max-frames", "0"],
    "webcam unknown artifact": ["webcam", "{b}", "--only", "tflite-int4", "--source", "x.png", "--out", "{t}/w"],
    "pipeline runs 0": ["pipeline", "mlp", "--runs", "0"],
    "evaluate limit 0": ["evaluate", "{m}", "--limit", "0"],
}


@pytest.mark.parametrize("case", list(INVALID_OPTIONS), ids=list(INVALID_OPTIONS))
def test_invalid_option_value_exits_2(bundle, tiny_bundle, tmp_path, case):
    args = [a.format(b=bundle, m=tiny_bundle[0], t=tmp_path) for a in INVALID_OPTIONS[case]]
    before = snapshot(bundle)
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))
    assert snapshot(bundle) == before


# ----------------------------------------------------------------------------------- output locations

@pytest.mark.parametrize("command", ["verify", "bench", "webcam", "export"])
@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_output_that_cannot_be_a_folder(bundle, tiny_bundle, tmp_path, small_mnist_dir, command, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    out = blocker if where == "a file" else blocker / "reports"
    args = {"verify": ["verify", str(bundle), "--out", str(out)],
            "bench": ["bench", str(bundle), "--runs", "1", "--out", str(out)],
            "webcam": ["webcam", str(bundle), "--source", str(tmp_path / "x.png"), "--out", str(out)],
            "export": ["export", str(_model_copy(tiny_bundle, tmp_path)), "--data-dir", str(small_mnist_dir),
                       "--format", "tflite", "--quant", "fp32", "--out", str(out)]}[command]
    before = snapshot(bundle)
    assert_one_line_error(runner.invoke(app, args), EXIT_BAD_INPUT, str(out))
    assert blocker.read_text() == "keep me" and snapshot(bundle) == before


@pytest.mark.parametrize("command", ["train", "evaluate", "pipeline", "demo-video", "demo-scenes"])
def test_every_other_writing_command_checks_its_output_first(tiny_bundle, tmp_path, small_mnist_dir, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    data = ["--data-dir", str(small_mnist_dir)]
    args = {"train": ["train", "mlp", "--epochs", "1", "--limit", "50", "--out", str(blocker), *data],
            "evaluate": ["evaluate", str(tiny_bundle[0]), "--out", str(blocker / "figures"), *data],
            "pipeline": ["pipeline", "mlp", "--quick", "--out", str(blocker), *data],
            "demo-video": ["demo-video", str(blocker / "demo.mp4"), "--frames", "2", *data],
            "demo-scenes": ["demo-scenes", str(blocker / "scenes"), "--per-condition", "1", *data]}[command]
    started = time.perf_counter()
    assert_one_line_error(runner.invoke(app, args), EXIT_BAD_INPUT, str(blocker))
    assert blocker.read_text() == "keep me"
    assert time.perf_counter() - started < 30  # refused up front, not after a training run


def test_export_refuses_another_models_bundle_unless_forced(tiny_bundle, bundle, tmp_path, small_mnist_dir):
    import keras

    other = tmp_path / "other" / "other.keras"
    other.parent.mkdir()
    keras.saving.load_model(tiny_bundle[0]).save(other)  # same architecture, another file: another model to edgeseq
    assert hashlib.sha256(other.read_bytes()).digest() != hashlib.sha256(Path(tiny_bundle[0]).read_bytes()).digest()
    before = snapshot(bundle)
    args = ["export", str(other), "--format", "tflite", "--quant", "fp32", "--data-dir", str(small_mnist_dir),
            "--out", str(bundle), "--no-verify"]
    assert_one_line_error(runner.invoke(app, args), EXIT_BAD_INPUT, "holds the bundle of another model", "tiny")
    assert snapshot(bundle) == before
    forced = runner.invoke(app, args + ["--force"])
    assert forced.exit_code == 0, forced.output
    assert [a["id"] for a in manifest_of(bundle)["artifacts"]] == ["tflite-fp32"]


def test_export_refuses_a_folder_of_other_files(tiny_bundle, tmp_path, small_mnist_dir):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8 precious")
    args = ["export", str(_model_copy(tiny_bundle, tmp_path)), "--format", "tflite", "--quant", "fp32",
            "--data-dir", str(small_mnist_dir), "--out", str(out)]
    assert_one_line_error(runner.invoke(app, args), EXIT_BAD_INPUT, "holds files that are not an edgeseq bundle")
    assert (out / "holiday.jpg").read_bytes() == b"\xff\xd8 precious" and len(list(out.iterdir())) == 1


def test_export_over_a_corrupt_manifest_is_refused(bundle, tiny_bundle, small_mnist_dir):
    (bundle / "manifest.json").write_text("{")
    args = ["export", str(tiny_bundle[0]), "--format", "tflite", "--quant", "fp32", "--data-dir", str(small_mnist_dir),
            "--out", str(bundle)]
    assert_one_line_error(runner.invoke(app, args), EXIT_BAD_INPUT, "manifest cannot be read")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture()
def read_only_bundle(bundle, tmp_path):
    """The bundle copy seen through a read-only bind mount (needs root, as CI has)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("read-only mounts need root")
    view = tmp_path / "ro-bundle"
    view.mkdir()
    _mount("--bind", str(bundle), str(view))
    try:
        _mount("-o", "remount,bind,ro", str(view))
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=False)


def test_read_only_bundle_reports_go_to_a_stated_fallback(read_only_bundle, tmp_path, small_mnist_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(read_only_bundle)
    result = verify_cli(read_only_bundle, *LOOSE, data_dir=small_mnist_dir)
    assert result.exit_code == 0, result.output
    fallback = tmp_path / "edgeseq-reports" / "ro-bundle"
    assert f"note: {read_only_bundle} is not writable" in result.output and str(fallback) in result.output
    assert "8 of 8 artifacts pass" in result.output  # printed before anything was written
    assert json.loads((fallback / "verify.json").read_text())["passed"] is True
    bench = runner.invoke(app, ["bench", str(read_only_bundle), "--runs", "2", "--warmup", "0", "--no-cold-start",
                                "--no-accuracy"])
    assert bench.exit_code == 0 and "not writable" in bench.output, bench.output
    assert (tmp_path / "edgeseq-reports" / "ro-bundle-bench" / "bench.json").is_file()
    explicit = verify_cli(read_only_bundle, "--out", str(read_only_bundle / "reports"))
    assert_one_line_error(explicit, EXIT_BAD_INPUT, "cannot write reports to", "Read-only file system")
    assert snapshot(read_only_bundle) == before


@pytest.fixture()
def full_disk(tmp_path):
    """A tiny tmpfs filled to the last byte (needs root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full file system needs root to mount")
    disk = tmp_path / "full"
    disk.mkdir()
    _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk))
    try:
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.parametrize("command", ["verify", "bench", "export"])
def test_full_output_location(full_disk, bundle, tiny_bundle, tmp_path, small_mnist_dir, command):
    out = full_disk / "out"
    args = {"verify": ["verify", str(bundle), "--out", str(out)],
            "bench": ["bench", str(bundle), "--runs", "1", "--out", str(out)],
            "export": ["export", str(_model_copy(tiny_bundle, tmp_path)), "--data-dir", str(small_mnist_dir),
                       "--format", "tflite", "--quant", "fp32", "--out", str(out)]}[command]
    assert_one_line_error(runner.invoke(app, args), EXIT_BAD_INPUT, "No space left on device")
    assert not (out / "manifest.json").exists()


# ----------------------------------------------------------------------------------- signals

def _spawn(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "edgeseq", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 240.0) -> list[str]:
    """Read the process's output until a line holding ``text``; fails if it ends or takes too long first."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    process.kill()
    pytest.fail(f"never saw {text!r}: {''.join(seen)[-2000:]}")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig, moment", [(signal.SIGINT, "converted tflite-fp32"), (signal.SIGKILL, "converted tflite-fp32"),
                                         (signal.SIGINT, "exporting"), (signal.SIGKILL, "exporting")],
                         ids=["sigint-mid-conversion", "sigkill-mid-conversion", "sigint-at-start", "sigkill-at-start"])
def test_interrupted_re_export_keeps_the_good_bundle(bundle, tiny_bundle, small_mnist_dir, sig, moment):
    from edgeseq.verify import verify

    before = snapshot(bundle)
    process = _spawn("export", str(tiny_bundle[0]), "--format", "tflite", "--format", "onnx", "--quant", "fp32", "--quant", "int8", "--calib", "100",
                     "--data-dir", str(small_mnist_dir), "--out", str(bundle))
    _wait_for(process, moment)
    workers = _children(process.pid)
    assert workers or moment == "exporting", "no conversion worker was running"
    process.send_signal(sig)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == (EXIT_INTERRUPTED if sig == signal.SIGINT else -signal.SIGKILL), output
    assert "Traceback" not in output, output
    deadline = time.monotonic() + 10
    while any(_running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(w) for w in workers), "a conversion worker outlived its export"
    time.sleep(1.0)  # a worker that outlived its parent would write now
    assert snapshot(bundle) == before
    assert verify(bundle, thresholds=loose_thresholds())["passed"]
    leftovers = list(bundle.parent.glob(".bundle.staging-*"))
    assert (leftovers == []) == (sig == signal.SIGINT)  # a killed export cannot clean up; the next one does
    if leftovers:
        from edgeseq.atomic import remove_stale_staging

        remove_stale_staging(bundle.parent, "bundle")
        assert list(bundle.parent.glob(".bundle.staging-*")) == []


def test_terminated_export_cleans_up_as_ctrl_c_does(bundle, tiny_bundle, small_mnist_dir):
    before = snapshot(bundle)
    process = _spawn("export", str(tiny_bundle[0]), "--format", "onnx", "--quant", "fp32", "--quant", "int8", "--calib", "100",
                     "--data-dir", str(small_mnist_dir), "--out", str(bundle))
    _wait_for(process, "converted onnx-fp32")
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == EXIT_INTERRUPTED and "Traceback" not in output, output
    assert snapshot(bundle) == before and list(bundle.parent.glob(".bundle.staging-*")) == []


def test_interrupted_first_export_leaves_no_half_bundle(tiny_bundle, tmp_path, small_mnist_dir):
    out = tmp_path / "fresh"
    process = _spawn("export", str(tiny_bundle[0]), "--format", "tflite", "--quant", "fp32", "--quant", "int8", "--calib", "100",
                     "--data-dir", str(small_mnist_dir), "--out", str(out))
    _wait_for(process, "converted tflite-fp32")
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == EXIT_INTERRUPTED and output.rstrip().endswith("interrupted"), output
    assert not out.exists() and list(tmp_path.glob(".fresh*")) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_bench_keeps_the_last_complete_report(bundle, tmp_path, sig):
    out = tmp_path / "reports"
    first = runner.invoke(app, ["bench", str(bundle), "--runs", "3", "--warmup", "0", "--no-cold-start", "--no-accuracy",
                                "--out", str(out)])
    assert first.exit_code == 0, first.output
    complete = (out / "bench.json").read_bytes()
    process = _spawn("bench", str(bundle), "--seconds", "3", "--warmup", "0", "--no-cold-start", "--no-accuracy",
                     "--out", str(out))
    _wait_for(process, "bench [3/8]")
    process.send_signal(sig)
    output = process.communicate(timeout=60)[0]
    assert "Traceback" not in output, output
    assert (out / "bench.json").read_bytes() == complete
    assert json.loads(complete)["partial"] is False
    if sig == signal.SIGINT:
        assert process.returncode == EXIT_INTERRUPTED, output
        partial = json.loads((out / "bench.partial.json").read_text())
        assert partial["partial"] is True and partial["interrupted"] is True and 1 <= len(partial["artifacts"]) < 8
        assert "the last complete bench.json is untouched" in output
    else:
        assert process.returncode == -signal.SIGKILL
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_a_complete_bench_replaces_a_partial_one(bundle, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "bench.partial.json").write_text("{}")
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "2", "--warmup", "0", "--no-cold-start",
                                 "--no-accuracy", "--out", str(out)])
    assert result.exit_code == 0 and not (out / "bench.partial.json").exists()


# ----------------------------------------------------------------------------------- measured, but failed (exit 1)

def test_bench_exits_1_when_something_could_not_be_measured(bundle, tmp_path):
    result = runner.invoke(app, ["bench", str(bundle / "tiny-fp32.tflite"), "--runs", "2", "--warmup", "0",
                                 "--no-cold-start", "--batch", "1", "--data-dir", str(tmp_path / "no-mnist"),
                                 "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output  # inside its bundle: agreement comes from the reference set
    lone = tmp_path / "lone.tflite"
    shutil.copyfile(bundle / "tiny-fp32.tflite", lone)
    result = runner.invoke(app, ["bench", str(lone), "--runs", "2", "--warmup", "0", "--no-cold-start",
                                 "--data-dir", str(tmp_path / "no-mnist"), "--out", str(tmp_path / "b2")])
    assert result.exit_code == EXIT_FAILED, result.output
    assert "error: lone.tflite: accuracy: no bundle and no MNIST" in result.output
    assert json.loads((tmp_path / "b2" / "bench.json").read_text())["artifacts"][0]["latency"][0]["p50_us"] > 0
