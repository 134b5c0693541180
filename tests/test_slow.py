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
