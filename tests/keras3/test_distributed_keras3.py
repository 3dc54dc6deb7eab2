"""IMP on Keras 3 over two devices gives the masks of one device: `keras.distribution.DataParallel`
on JAX (2 host CPU devices) and `tf.distribute.MirroredStrategy` on TensorFlow (2 logical CPU
devices), each in a fresh process (tests/keras3/scripts/distributed_imp.py): the device count is
fixed when the backend starts. Also DataParallel over 2 JAX processes, whose ladder only the first
keeps.

Each process runs the same seeded 6-16-3 MLP (144 kernel weights), data (64 examples, batch 16) and
ALLR plan (90 % in 2 cycles of 2 epochs after 2 dense ones) over two devices, then on one, with
a ladder and an export at the end, each written once.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("IMP_KERAS_FLAVOURS") == "keras3",
    reason="starts its own JAX and TensorFlow processes: runs once, from the main test process",
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tests", "keras3", "scripts", "distributed_imp.py")
# p = 1 - 0.1^(1/2) = 0.6838: 144 - round(98.47) = 46, 46 - round(31.45) = 15.
ALIVE = [144, 144, 46, 46, 15, 15]
# Where each kind of variable lives in the two-device run. TensorFlow reads a schedule built
# outside the strategy's scope from its one copy; JAX needs every variable of the step on the mesh,
# so `RetrainSchedule.attach` lays the peaks out there.
COPIES = {
    "jax": {"model": [2], "optimizer": [2], "peaks": [2]},
    "tensorflow": {"model": [2], "optimizer": [2], "peaks": [1]},
}
# Measured: the two-device weights differ from the one-device ones by at most 6e-8 (JAX) and 3e-8
# (TensorFlow), the order of the gradient all-reduce.
WEIGHT_TOLERANCE = 1e-6


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_devices_give_the_masks_of_one(backend, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    two, one = runs["distributed"], runs["single"]
    assert two["copies"] == COPIES[backend]
    assert one["copies"] == {"model": [1], "optimizer": [1], "peaks": [1]}
    for run in (two, one):
        assert run["alive"] == ALIVE
        assert run["zeros"] and run["copies_agree"]
        assert run["ladder"] == ["cycle01_sparsity68.06.keras", "cycle02_sparsity89.58.keras"]
        assert run["last_rung_masks"] == run["masks"]
        assert run["export"] == ["export_report.json", "model.weights.h5"]
        assert run["export_passed"] == [True] and run["export_pruned_zero"] == [144 - 15]
        assert all(peak < 0.1 for peak in run["eta_star"])  # measured, not the initial eta_max
    assert two["masks"] == one["masks"]
    assert two["eta_star"] == pytest.approx(one["eta_star"], rel=1e-6)
    for a, b in zip(two["weights"], one["weights"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=WEIGHT_TOLERANCE)


def test_two_jax_processes_give_the_masks_of_one_and_one_ladder(tmp_path, free_port, run_together):
    """`keras.distribution.initialize` with 2 localhost processes of one CPU device each, DataParallel
    over both (tests/keras3/scripts/multi_process_jax.py), against the same run in one process."""
    script = os.path.join(ROOT, "tests", "keras3", "scripts", "multi_process_jax.py")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "XLA_FLAGS")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")])))
    port = str(free_port())
    commands = [[sys.executable, script, str(i), "2", port, str(tmp_path / "two")] for i in range(2)]
    runs = []
    for returncode, out, err in run_together(commands, [env, env], cwd=ROOT):
        assert returncode == 0, err[-3000:]
        runs.append(json.loads(out.strip().splitlines()[-1]))
    single = subprocess.run([sys.executable, script, "0", "1", "0", str(tmp_path / "one")], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads(single.stdout.strip().splitlines()[-1])
    # Plan 50 % in 2 cycles over 48 weights: p = 0.29289, 48 - round(14.06) = 34, 34 - round(9.96) = 24.
    assert runs[0]["alive"] == runs[1]["alive"] == one["alive"] == [48, 34, 24]
    assert runs[0]["masks"] == runs[1]["masks"] == one["masks"]
    assert runs[0]["eta_star"] == runs[1]["eta_star"] == pytest.approx(one["eta_star"], rel=1e-6)
    for a, b in zip(runs[0]["weights"], one["weights"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=WEIGHT_TOLERANCE)
    rungs = ["cycle01_sparsity29.17.keras", "cycle02_sparsity50.00.keras"]
    assert sorted(os.listdir(tmp_path / "two" / "ladder0")) == sorted(os.listdir(tmp_path / "one" / "ladder0")) == rungs
    assert not (tmp_path / "two" / "ladder1").exists(), "only the chief (process 0) keeps ladder files"
