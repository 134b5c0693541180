"""The light part stays light, and the distribution installs only the edgeseq package."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO

HEAVY = ("tensorflow", "keras", "cv2", "tf2onnx", "onnx", "matplotlib")


def test_import_and_help_load_no_heavy_framework():
    script = (
        "import sys\n"
        "import edgeseq, edgeseq.cli, edgeseq.data, edgeseq.metrics, edgeseq.card\n"
        "from typer.testing import CliRunner\n"
        "runner = CliRunner()\n"
        "for args in (['--help'], *([c, '--help'] for c in ('train', 'evaluate', 'zoo', 'export', 'verify', 'bench', "
        "'webcam', 'demo-video'))):\n"
        "    result = runner.invoke(edgeseq.cli.app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"heavy modules imported: {done.stdout.strip()}"


def test_console_script_help_runs():
    done = subprocess.run([sys.executable, "-m", "edgeseq", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "train" in done.stdout and "evaluate" in done.stdout


def test_wheel_holds_only_the_edgeseq_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("edgeseq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"edgeseq", next(t for t in tops if t.endswith(".dist-info"))}, tops
    assert "edgeseq/training/zoo.py" in names and "edgeseq/export/__init__.py" in names
    sources = {f"edgeseq/{p.relative_to(REPO / 'edgeseq').as_posix()}" for p in (REPO / "edgeseq").rglob("*.py")}
    sources |= {f"edgeseq/{d}/{p.relative_to(REPO / d).as_posix()}" for d in ("training", "export") for p in (REPO / d).rglob("*.py")}
    assert sources <= set(names), f"missing from the wheel: {sorted(sources - set(names))}"
    assert not any(n.startswith(("training/", "export/", "tests/", "benchmarks/")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    base = [l for l in metadata.splitlines() if l.startswith("Requires-Dist:") and "extra ==" not in l]
    assert not any("tensorflow" in l or "keras" in l for l in base), base


def test_ci_runs_the_readmes_test_command_verbatim():
    ci_lines = [l for l in (REPO / ".ci" / "run").read_text().splitlines() if "pytest" in l]
    assert len(ci_lines) == 1
    assert ci_lines[0].strip() in (REPO / "README.md").read_text()
