"""The benchmarks' smoke modes: each runs in seconds on synthetic data and writes a complete report.

The measurements themselves are in BENCHMARKS.md; these only keep the scripts working.
"""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from benchmarks import accuracy, backends, baselines, budgets, common, overhead, selection
from imp_keras import keras, models
from imp_keras.tf_keras import masking

from conftest import without_tensorflow


def finite(value) -> bool:
    """True when every number inside `value` (nested dicts and lists) is finite."""
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def read(directory, name):
    for suffix in (".png", ".md"):
        assert (directory / f"{name}{suffix}").stat().st_size > 0
    assert (directory / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((directory / f"{name}.json").read_text())
    assert finite(report) and report["smoke"] is True
    assert {"cpu", "cores", "tensorflow", "tfmot"} <= set(report["machine"])
    return report


def test_gmp_window_ends_on_a_pruning_step_within_the_budget():
    window = baselines.window(7020, 0.1, 0.5, 100)
    assert (window.begin_step, window.end_step) == (702, 3502)
    assert window.prunes_at(3502) and not window.prunes_at(3503) and not window.prunes_at(701)
    assert baselines.cubic_sparsity(702, 0.9, window) == 0.0 and baselines.cubic_sparsity(3502, 0.9, window) == 0.9
    assert baselines.cubic_sparsity(2102, 0.9, window) == pytest.approx(0.9 * (1 - 0.5**3))
    with pytest.raises(ValueError, match="does not fit"):
        baselines.window(10, 0.5, 1.0, 20)


class SparsityAfterEachStep(keras.callbacks.Callback):
    """The fraction of masked-out kernel weights after every training step."""

    def __init__(self, masks):
        super().__init__()
        self.masks = masks
        self.sparsity = []

    def on_train_batch_end(self, batch, logs=None):
        values = [m.numpy() for m in self.masks(self.model)]
        self.sparsity.append(1 - sum(float(v.sum()) for v in values) / sum(v.size for v in values))


def test_global_gmp_updates_its_masks_at_the_steps_tfmot_does():
    """Steps 1..4 of a window from pruning step 1 to 3: sparsity 0, S (1 - 1/8), S, S for both."""
    window = baselines.Window(1, 3, 1)
    data = tf.data.Dataset.from_tensor_slices(
        (np.random.default_rng(0).normal(size=(64, 28, 28)).astype("float32"), np.zeros(64, "int32"))
    ).batch(16)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=1, end_step=3, frequency=1)
    layerwise = tfmot.sparsity.keras.prune_low_magnitude(models.lenet_300_100(), pruning_schedule=schedule)
    tfmot_masks = SparsityAfterEachStep(lambda m: [v[1] for l in m.layers for v in getattr(l, "pruning_vars", [])])
    layerwise.compile(keras.optimizers.SGD(0.01), loss=loss)
    layerwise.fit(data, epochs=1, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), tfmot_masks])
    global_model = masking.prunable(models.lenet_300_100())
    global_masks = SparsityAfterEachStep(lambda m: [e.mask for e in masking.masked_weights(m)])
    global_model.compile(keras.optimizers.SGD(0.01), loss=loss)
    global_model.fit(data, epochs=1, verbose=0, callbacks=[baselines.global_gmp(0.5, window), global_masks])
    expected = [baselines.cubic_sparsity(step, 0.5, window) for step in (1, 2, 3, 4)]
    assert expected == [0.0, 0.4375, 0.5, 0.5]
    assert tfmot_masks.sparsity == pytest.approx(expected, abs=1e-5)
    assert global_masks.sparsity == pytest.approx(expected, abs=1e-5)


def test_accuracy_smoke(tmp_path):
    methods = ("dense", "tfmot_gmp", "global_gmp", "one_shot", "imp_lrw", "bimp")
    accuracy.run(["mnist_lenet"], methods, smoke=True, out_dir=str(tmp_path))
    report = read(tmp_path, "accuracy_mnist_lenet")
    assert set(report["summary"]) == {*methods, "dense_pretrain"}
    for method in methods[1:]:
        (entry,) = report["summary"][method].values()
        assert entry["budget_epochs"] == [report["budget_epochs"]] == [4]
        assert entry["weights_off_goal"] == 0 and entry["sparsity"]["mean"] == pytest.approx(0.9, abs=1e-5)
        assert 0 <= entry["accuracy"]["mean"] <= 1
    assert [r["own_epochs"] for r in report["runs"] if r["method"] in ("imp_lrw", "one_shot")] == [2, 2]
    assert set(report["schedules"]) == set(methods)
    # A second run finds every run finished and reports the same numbers.
    again = accuracy.run(["mnist_lenet"], methods, smoke=True, out_dir=str(tmp_path))["mnist_lenet"]
    assert [r["accuracy"] for r in again["runs"]] == [r["accuracy"] for r in report["runs"]]


def test_budget_candidates_round_the_dense_epochs_and_keep_the_budget():
    options = budgets.candidates(accuracy.SETUPS["mnist_lenet"], 15)
    assert {m: [c.name for c in cs] for m, cs in options.items()} == {
        "imp_slr": ["imp_slr_T6_J2", "imp_slr_T6_J3", "imp_slr_T9_J2", "imp_slr_T9_J3"],
        "bimp": ["bimp_T6_J3", "bimp_T9_J3"],
        "gmp": ["gmp_w0.1-0.5", "gmp_w0.1-0.75", "gmp_w0.25-0.75"],
    }
    assert {c.setup.budget for cs in options.values() for c in cs} == {15}
    # A budget of 4 rounds 0.4 and 0.6 of it to the same T = 2: one candidate, not two.
    assert [c.name for c in budgets.candidates(accuracy.SETUPS["mnist_lenet"], 4)["bimp"]] == ["bimp_T2_J3"]


def test_budgets_smoke_on_jax_without_tensorflow(tmp_path):
    """Selection on the validation split, the chosen settings on test with 2 seeds, twice (resumed)."""
    reports = []
    for _ in range(2):
        without_tensorflow("benchmarks.budgets", "--smoke", "--setups=mnist_lenet", f"--out_dir={tmp_path}")
        reports.append(json.loads((tmp_path / "budgets_mnist_lenet_b4.json").read_text()))
    report, again = reports
    # The second command found every run finished: the same records, training times included.
    assert again["runs"] == report["runs"] and again["selection"] == report["selection"]
    assert finite(report) and report["smoke"] and report["budget_epochs"] == 4 and report["seeds"] == 2
    assert report["setup"]["keras"] == "keras3" and report["setup"]["backend"] == "jax"
    assert report["candidates"] == {
        "imp_slr": {"imp_slr_T2_J1": "T=2, J=1", "imp_slr_T2_J2": "T=2, J=2"},
        "bimp": {"bimp_T2_J2": "T=2, J=2"},
        "gmp": {"gmp_w0.1-0.5": "window 0.1–0.5", "gmp_w0.25-0.75": "window 0.25–0.75"},
    }
    chosen = {}
    for method, entry in report["selection"]["0.9"].items():
        scores = entry["validation_accuracy"]
        assert list(scores) == list(report["candidates"][method]) and entry["chosen"] == max(scores, key=scores.get)
        # Read on the 43 validation images (1/6 of 256 synthetic training images), not the 64 test images.
        assert all(round(43 * a, 4).is_integer() for a in scores.values())
        chosen[method] = entry["chosen"]
    assert sorted(report["summary"]) == ["bimp", "gmp", "imp_slr"]
    for method, entry in report["summary"].items():
        assert entry["0.9"]["accuracy"]["n"] == 2 and entry["0.9"]["weights_off_goal"] == 0
        assert entry["0.9"]["sparsity"]["mean"] == pytest.approx(0.9, abs=1e-5) and entry["0.9"]["budget_epochs"] == [4]
    assert [(r["method"], r["setting"], r["seed"]) for r in report["runs"]] == [
        (m, chosen[m], seed) for m in ("imp_slr", "bimp", "gmp") for seed in (0, 1)
    ]
    # Reported on the 64 synthetic test images.
    assert all(round(64 * r["accuracy"], 4).is_integer() for r in report["runs"])
    means = {m: e["0.9"]["accuracy"]["mean"] for m, e in report["summary"].items()}
    winner = report["winners"]["0.9"]
    ranked = sorted(means, key=means.get, reverse=True)
    assert [winner["winner"], winner["runner_up"]] == ranked[:2]
    assert winner["margin"] == pytest.approx(means[ranked[0]] - means[ranked[1]])
    first, second = ({r["seed"]: r["accuracy"] for r in report["runs"] if r["method"] == m} for m in ranked[:2])
    assert winner["margin_over_seeds"]["mean"] == pytest.approx(winner["margin"])
    assert winner["margin_over_seeds"]["min"] == pytest.approx(min(first[s] - second[s] for s in (0, 1)))
    table = (tmp_path / "budgets_mnist_lenet_b4.md").read_text()
    assert "budget 4 epochs" in table and f"- 90 %: {budgets.LABELS[winner['winner']]} by" in table


def test_overhead_smoke(tmp_path):
    overhead.run(smoke=True, out_dir=str(tmp_path))
    report = read(tmp_path, "overhead")
    assert len(report["step_time"]) == 2
    for entry in report["step_time"].values():
        assert entry["plain_ms"]["median"] > 0 and entry["masked_ms"]["median"] > 0 and entry["ratio"]["median"] > 0
    whole = report["whole_run"]
    assert whole["epochs"] == 2 and whole["wall_ratio"] > 0 and whole["train_ratio"] > 0


def test_selection_smoke(tmp_path):
    selection.run(smoke=True, out_dir=str(tmp_path))
    report = read(tmp_path, "selection")
    assert set(report["cases"]) == {"first", "later"}
    for case in report["cases"].values():
        assert set(case["criteria"]) == {"global", "uniform", "uniform_plus", "erk", "lamp"}
        assert case["count"] > 0 and case["partition"]["median"] > 0


@pytest.mark.skipif(not os.path.isdir(os.path.join(common.SHARED_DATA, "mnist")), reason="needs the MNIST IDX files")
def test_backends_smoke(tmp_path):
    """tf_keras and Keras 3 on TensorFlow, JAX and PyTorch, each in its own process (about 35 s)."""
    backends.run(smoke=True, out_dir=str(tmp_path), cpus=1)
    assert (tmp_path / "backends.md").stat().st_size > 0
    report = json.loads((tmp_path / "backends.json").read_text())
    assert finite(report) and report["smoke"] is True and report["command"].startswith("python -m benchmarks.backends")
    assert len(report["machine"]["load_average"]) == 3
    assert set(report["flavours"]) == {"tf_keras", "keras3_tensorflow", "keras3_jax", "keras3_torch"}
    for flavour, entry in report["flavours"].items():
        summary = entry["summary"]
        numbers = [summary["plain_ms"]["median"], summary["masked_ms"]["median"], summary["ratio"]["median"],
                   *summary["epoch_seconds"].values(), *summary["epoch_ms_per_step"].values()]
        assert all(n > 0 for n in numbers), flavour
        assert entry["masked_fraction"] == pytest.approx(0.9, abs=1e-5) and entry["cpus"] == entry["cpus"][:1]
        assert entry["images"] == backends.SMOKE_IMAGES and entry["steps_per_epoch"] == 8
    assert not report["flavours"]["keras3_jax"]["tensorflow_imported"]
    assert not report["flavours"]["keras3_torch"]["tensorflow_imported"]
    assert report["flavours"]["keras3_jax"]["jit_compile"] and not report["flavours"]["keras3_torch"]["jit_compile"]
