"""Full seed-recipe training of every zoo model (tens of minutes on a CPU): `pytest -m slow`.

benchmarks/train_zoo.py runs the same and records the figures; this asserts them.
"""

import pytest

from edgeseq.training import zoo


@pytest.mark.slow
@pytest.mark.parametrize("name", [n.value for n in zoo.ZooName])
def test_seed_recipe_reaches_the_seed_result(name, mnist_dir, tmp_path):
    pytest.importorskip("keras")
    from edgeseq.training.train import seed_check, train

    result = train(name, out_dir=tmp_path / name, data_dir=mnist_dir, progress=False)
    metric, achieved, target, met = seed_check(result.card)
    assert met, f"{name}: {metric} {achieved:.4f} below the seed's {target:.3f}"


@pytest.mark.slow
def test_arm64_parity_verifies_a_bundle_on_arm_kernels(tiny_bundle, tmp_path):
    """benchmarks/arm64_parity.py on one small bundle, Pi 5 CPU model: the emulated arm64 userland (built
    and cached on first use; needs root, debootstrap and qemu-user-static) verifies it with no MNIST."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "parity"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "arm64_parity.py"), "--bundles",
                           str(tiny_bundle[1].bundle_dir), "--cpus", "cortex-a76", "--bench-runs", "3", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    report = json.loads(out.with_suffix(".json").read_text())
    (model,) = report["models"]
    assert not model["errors"], model["errors"]
    assert model["evaluated_on"]["cortex-a76"] == "MNIST test set (300 images, carried by the bundle)"
    for artifact in model["artifacts"]:
        arm = artifact["cortex-a76"]
        assert arm["status"] == "ok" and arm["runtime"] in ("ai-edge-litert", "onnxruntime"), artifact
        assert abs(arm["agreement"] - artifact["x86"]["agreement"]) <= 0.02, artifact
    assert model["bench"]["cortex-a76"]["device"] == {"cpu": "ARM Cortex-A76", "board": "Raspberry Pi 5 Model B Rev 1.0",
                                                    "cpu_flags": ["asimd", "asimddp", "asimdhp", "asimdrdm", "fphp"]}
    assert model["bench"]["cortex-a76"]["measured"] == model["bench"]["cortex-a76"]["artifacts"] == 8
