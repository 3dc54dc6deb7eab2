"""Runs the conformance suite (tests/keras3) on the Keras 3 backends this process cannot switch
to: a Keras backend is fixed when Keras is first imported, so each runs in its own pytest process,
with TF_USE_LEGACY_KERAS (which tf_keras and tfmot set here) removed."""

import os
import subprocess
import sys

import pytest

from conftest import keras3_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_conformance_suite_on(backend):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/keras3"],
        cwd=ROOT, env=keras3_env(backend), capture_output=True, text=True, timeout=1200,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(f"{backend}: {summary}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


NO_TENSORFLOW = """
import sys
import numpy as np
import keras
import imp_keras
model = imp_keras.prunable(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]), verbose=0)
plan = imp_keras.Plan(0.5, cycles=1, pretrain_epochs=1, retrain_epochs=1)
schedule = imp_keras.RetrainSchedule(0.1, plan, steps_per_epoch=2, kind="allr")
model.compile(keras.optimizers.SGD(schedule), loss="mse")
model.fit(np.ones((8, 4)), np.ones((8, 3)), batch_size=4, epochs=2, callbacks=[imp_keras.IMPCallback(plan, schedule, verbose=0)], verbose=0)
print(imp_keras.verify(model, plan, cycle=1).alive, type(schedule).__module__)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_model_optimization")))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras3_training_imports_no_tensorflow(backend):
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW], cwd=ROOT, env=keras3_env(backend), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-2:] == ["6 imp_keras.keras3.schedules", "[]"]
