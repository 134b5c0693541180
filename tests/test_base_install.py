"""The on-device install, as a user gets it: a fresh venv on the oldest and the newest Python edgeseq
supports, the base wheel and one choice of runtime extra, verifying and benching a bundle exported here.

Python 3.8 is the oldest: JetPack 5 (Jetson Xavier, Orin on JP5) ships it, and there tflite-runtime is the
only TFLite interpreter (LiteRT starts at 3.9). The interpreters come from pyenv (EDGESEQ_PYTHON_3_8 and
EDGESEQ_PYTHON_3_11 name others); the runtimes are downloaded from PyPI, as on a device.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO
from edgeseq.schema import to_json

TFLITE_ONLY = ("3.8", "tflite,webcam")  # the oldest Python, tflite-runtime only (no LiteRT, no ONNX Runtime), OpenCV
BULLSEYE = ("3.9", "cpu")  # Raspberry Pi OS Bullseye's Python: the oldest LiteRT (2.1) and ORT 1.19 wheels
NEWEST = ("3.11", "cpu")  # the newest, with the default CPU runtimes


def interpreter(version: str) -> Path:
    """A working ``python{version}``: $EDGESEQ_PYTHON_3_8 and the like, pyenv's, then PATH's."""
    named = os.environ.get(f"EDGESEQ_PYTHON_{version.replace('.', '_')}")
    candidates = [Path(named)] if named else []
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        candidates += sorted(Path(root, "versions").glob(f"{version}.*/bin/python{version}"), reverse=True)
    except (OSError, subprocess.CalledProcessError):
        pass
    if shutil.which(f"python{version}"):
        candidates.append(Path(shutil.which(f"python{version}")))
    for path in candidates:
        done = subprocess.run([str(path), "-c", "import sys, venv; print(sys.version_info[:2])"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == str(tuple(int(p) for p in version.split("."))):
            return path
    pytest.fail(f"no Python {version} interpreter found (pyenv, PATH or EDGESEQ_PYTHON_{version.replace('.', '_')}): "
                "the base install must be tested on it")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True)
    (built,) = out.glob("edgeseq-*.whl")
    return built


def fresh_venv(version: str, requirement: str, where: Path) -> Path:
    """A new venv with ``pip install requirement`` in it; returns its bin/ folder."""
    subprocess.run([str(interpreter(version)), "-m", "venv", str(where)], check=True, capture_output=True)
    done = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", requirement],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return where / "bin"


@pytest.fixture(scope="module")
def venvs(wheel, tmp_path_factory) -> dict:
    """The three fresh venvs, installed side by side (each install mostly waits on PyPI)."""
    root = tmp_path_factory.mktemp("venvs")
    targets = (TFLITE_ONLY, BULLSEYE, NEWEST)
    with ThreadPoolExecutor(len(targets)) as pool:
        futures = {t: pool.submit(fresh_venv, t[0], f"{wheel}[{t[1]}]", root / f"python{t[0]}") for t in targets}
        return {t: f.result() for t, f in futures.items()}


def installed(bin_dir: Path) -> dict:
    script = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
    return json.loads(subprocess.run([str(bin_dir / "python"), "-c", script], capture_output=True, text=True,
                                     check=True).stdout)


def edgeseq(bin_dir: Path, *args, tmp: Path) -> tuple[int, dict]:
    env = {**os.environ, "EDGESEQ_DATA_DIR": str(tmp / "no-mnist-here"), "COLUMNS": "200"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(bin_dir / "edgeseq"), *map(str, args), "--json", "--quiet"], capture_output=True,
                          text=True, env=env, cwd=tmp)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    envelope = json.loads(done.stdout)
    assert envelope["exit_code"] == done.returncode
    return done.returncode, envelope["result"]


def options(command: list) -> dict:
    """Each command's option names as its --help lists them (Typer reads them off the annotations)."""
    found = {}
    for name in ("train", "evaluate", "export", "verify", "bench", "webcam", "pipeline", "zoo"):
        done = subprocess.run([*command, name, "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        found[name] = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", done.stdout)))
    return found


@pytest.fixture(scope="module")
def host_verify(tiny_bundle, tmp_path_factory) -> dict:
    from edgeseq.verify import verify

    return {r["id"]: r for r in verify(tiny_bundle[1].bundle_dir, data_dir=tmp_path_factory.mktemp("none"))["artifacts"]}


def test_python38_with_only_tflite_runtime_verifies_and_reads_a_video(tiny_bundle, venvs, host_verify, tmp_path,
                                                                     small_mnist_dir):
    bin_dir = venvs[TFLITE_ONLY]
    dists = installed(bin_dir)
    assert "tflite-runtime" in dists and "ai-edge-litert" not in dists, dists
    assert not any(d.startswith("onnxruntime") for d in dists) and "tensorflow" not in dists, dists
    # Typer reads options off annotations; before 3.10 it cannot evaluate postponed (string) ones
    assert options([str(bin_dir / "edgeseq")]) == options([sys.executable, "-m", "edgeseq"])
    code, report = edgeseq(bin_dir, "verify", tiny_bundle[1].bundle_dir, "--out", tmp_path / "out", tmp=tmp_path)
    rows = {r["id"]: r for r in report["artifacts"]}
    assert code == 1 and report["host"]["python"].startswith("3.8.")
    assert report["evaluated_on"].startswith("MNIST test set (300 images, carried by the bundle)")
    # an int8 whose float layers run hybrid kernels declares FULLY_CONNECTED v12 (per-channel weights, float
    # input), which 2.14 refuses; declared as the int8 op's version, 2.14 ran it and returned wrong outputs
    int8_recipe = next(a for a in to_json(tiny_bundle[1].manifest)["artifacts"] if a["id"] == "tflite-int8")["recipe"]
    hybrid = "float_layers" in int8_recipe
    for aid in ("tflite-fp32", "tflite-fp16") + (() if hybrid else ("tflite-int8",)):
        assert rows[aid]["status"] == "ok" and rows[aid]["runtime"]["runtime"] == "tflite-runtime", rows[aid]
        assert rows[aid]["passed"] == host_verify[aid]["passed"], (rows[aid]["reasons"], host_verify[aid]["reasons"])
        assert abs(rows[aid]["parity"]["agreement"] - host_verify[aid]["parity"]["agreement"]) <= 1 / 300
    # tflite-runtime 2.14 is the last release: it cannot load ops newer converters write at higher versions
    dynamic = rows["tflite-dynamic"]
    assert dynamic["status"] == "ok" or "opcode" in dynamic["reasons"][0], dynamic
    if hybrid:
        int8 = rows["tflite-int8"]
        assert int8["status"] == "error" and "opcode" in int8["reasons"][0], int8
    for aid in (a for a in rows if a.startswith("onnx-")):
        (reason,) = rows[aid]["reasons"]
        assert rows[aid]["status"] == "error" and "pip install 'edgeseq[onnx]'" in reason and "\n" not in reason
    # a device with one runtime verifies what it can run
    code, only = edgeseq(bin_dir, "verify", tiny_bundle[1].bundle_dir, "--format", "tflite", "--images", 100,
                         "--out", tmp_path / "only", tmp=tmp_path)
    assert [r["id"] for r in only["artifacts"]] == [a for a in rows if a.startswith("tflite-")] and only["examples"] == 100
    assert code == (0 if only["passed"] else 1)
    # bench of the TFLite files, cold start included
    small = "tflite-fp16" if hybrid else "tflite-int8"  # what 2.14 loads besides fp32
    tflite = [tiny_bundle[1].bundle_dir / row["file"] for aid, row in rows.items() if aid in ("tflite-fp32", small)]
    code, bench = edgeseq(bin_dir, "bench", *tflite, "--runs", 5, "--warmup", 1, "--out", tmp_path / "bench", tmp=tmp_path)
    assert code == 0 and bench["device"]["python"].startswith("3.8."), bench
    for row in bench["artifacts"]:
        assert row["runtime"]["runtime"] == "tflite-runtime" and row["latency"][0]["p50_us"] > 0, row
        assert row["cold_start"]["load_and_first_inference_ms"] > 0 and row["accuracy"]["agreement"] > 0.9, row
    # the webcam loop on a demo video, TFLite artifacts side by side
    code, demo = edgeseq(bin_dir, "demo-video", tmp_path / "demo.mp4", "--frames", 8, "--data-dir", small_mnist_dir, tmp=tmp_path)
    assert code == 0, demo
    code, loop = edgeseq(bin_dir, "webcam", tiny_bundle[1].bundle_dir, "--source", tmp_path / "demo.mp4", "--headless",
                         "--only", f"tflite-fp32,{small}", "--out", tmp_path / "loop", tmp=tmp_path)
    assert code == 0 and loop["frames"] == 8 and loop["digits"] == loop["ground_truth"]["digits"] > 0, loop
    assert set(loop["ground_truth"]["accuracy"]) == {"tflite-fp32", small}


@pytest.mark.parametrize("target", [BULLSEYE, NEWEST], ids=lambda t: f"python{t[0]}-{t[1]}")
def test_the_cpu_runtimes_verify_like_the_host(target, tiny_bundle, venvs, host_verify, tmp_path):
    bin_dir = venvs[target]
    dists = installed(bin_dir)
    assert {"onnxruntime", "ai-edge-litert"} <= set(dists) and "tensorflow" not in dists, dists
    assert "tflite-runtime" not in dists
    code, report = edgeseq(bin_dir, "verify", tiny_bundle[1].bundle_dir, "--out", tmp_path / "out", tmp=tmp_path)
    rows = {r["id"]: r for r in report["artifacts"]}
    assert set(rows) == set(host_verify)
    for aid, row in rows.items():
        assert row["status"] == "ok" and row["passed"] == host_verify[aid]["passed"], (aid, row["reasons"])
        assert row["parity"]["agreement"] == pytest.approx(host_verify[aid]["parity"]["agreement"], abs=1 / 300)
    assert code == (0 if all(r["passed"] for r in rows.values()) else 1)
    if target is NEWEST:
        bench_like_the_host(bin_dir, tiny_bundle, host_verify, tmp_path)


def bench_like_the_host(bin_dir: Path, tiny_bundle, host_verify: dict, tmp_path: Path) -> None:
    code, bench = edgeseq(bin_dir, "bench", tiny_bundle[1].bundle_dir, "--runs", 10, "--warmup", 1,
                          "--out", tmp_path / "bench", tmp=tmp_path)
    assert code == 0, bench
    assert bench["device"]["cpu_flags"] and bench["device"]["machine"] == platform.machine()
    rows = {r["id"]: r for r in bench["artifacts"]}
    for aid in ("tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8"):
        assert rows[aid]["latency"][0]["p50_us"] > 0 and rows[aid]["cold_start"]["load_and_first_inference_ms"] > 0
        assert rows[aid]["accuracy"]["agreement"] == pytest.approx(host_verify[aid]["parity"]["agreement"], abs=1 / 300)
    # no matplotlib in the base install: the figures come as SVG
    assert not (tmp_path / "bench" / "latency.png").exists()
    for name in ("latency.svg", "accuracy_latency.svg"):
        svg = (tmp_path / "bench" / name).read_text()
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "tflite-int8" in svg


# target -> (Python, CPU, glibc, extra, what pip must pick, what it must not) (README, "What to install where")
TARGETS = {
    "JetPack 5 (Ubuntu 20.04)": ("3.8", "aarch64", 31, "tflite", {"tflite-runtime": "2.13.0"},
                                 ("onnxruntime", "ai-edge-litert")),
    "Raspberry Pi OS Bullseye 64-bit": ("3.9", "aarch64", 31, "cpu", {"onnxruntime": "1.19.2", "ai-edge-litert": "2.1.0"},
                                        ("tflite-runtime",)),
    "JetPack 6 (Ubuntu 22.04)": ("3.10", "aarch64", 35, "tflite", {"ai-edge-litert": None}, ("onnxruntime", "tflite-runtime")),
    "Raspberry Pi OS Bookworm 64-bit": ("3.11", "aarch64", 36, "cpu", {"onnxruntime": None, "ai-edge-litert": None},
                                        ("tflite-runtime",)),
    "x86 CUDA machine": ("3.11", "x86_64", 35, "gpu", {"onnxruntime-gpu": None, "ai-edge-litert": None}, ("onnxruntime",)),
}


def resolve(target: str, wheel: Path, where: Path) -> dict:
    """What pip picks for ``target``'s CPU, glibc and Python, run by that Python so the extras' markers see
    it; nothing is installed."""
    version, cpu, glibc, extra, _, _ = TARGETS[target]
    tags = [f"--platform=manylinux_2_{v}_{cpu}" for v in range(17, glibc + 1)] + [f"--platform=manylinux2014_{cpu}"]
    where.mkdir(parents=True)
    done = subprocess.run([str(interpreter(version)), "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                           "--only-binary=:all:", *tags, "--target", str(where / "never"), "--report",
                           str(where / "report.json"), f"{wheel}[{extra}]"], capture_output=True, text=True)
    assert done.returncode == 0, (target, done.stderr[-1500:])
    return {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
            for i in json.loads((where / "report.json").read_text())["install"]}


@pytest.fixture(scope="module")
def resolutions(wheel, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resolve")
    with ThreadPoolExecutor(len(TARGETS)) as pool:
        futures = {t: pool.submit(resolve, t, wheel, root / f"t{i}") for i, t in enumerate(TARGETS)}
        return {t: f.result() for t, f in futures.items()}


@pytest.mark.parametrize("target", list(TARGETS))
def test_each_targets_install_line_resolves_to_its_runtimes(target, resolutions):
    """JetPack lines never pull PyPI's onnxruntime: NVIDIA's onnxruntime-gpu (the same import name) stays
    the one that runs."""
    *_, wanted, absent = TARGETS[target]
    picked = resolutions[target]
    for name, pinned in wanted.items():
        assert name in picked and (pinned is None or picked[name] == pinned), (name, picked)
    assert not any(name in picked for name in absent) and "tensorflow" not in picked, picked
