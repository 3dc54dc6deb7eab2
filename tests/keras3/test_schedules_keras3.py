"""The Keras 3 `RetrainSchedule`: the same learning rates as the tf_keras one and as the NumPy
closed form at every step, its config and saved forms, its ALLR peaks in `fit`'s compiled step on JAX.

Runs under any KERAS_BACKEND; what needs a given backend runs in a subprocess.

Common set-up: 5 steps per epoch, a base of 10 epochs (50 steps) stepping 0.1 (step <= 20),
0.01 (<= 35), 0.001 after; two cycles of 2 and 3 epochs, after 10 dense epochs or from a trained model.
"""

import functools
import json
import os
import pathlib
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tf_keras

import imp_keras.tf_keras
from imp_keras.core.plan import Plan
from imp_keras.core.schedule import KINDS, NUMPY_OPS, TUNABLE, allr_peak, learning_rate
from imp_keras.keras3.schedules import RetrainSchedule, learning_rates

REPO = str(pathlib.Path(__file__).resolve().parents[2])
SCRIPTS = pathlib.Path(__file__).parent / "scripts"
STEPS_PER_EPOCH = 5
PRETRAINED = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=10, retrain_epochs=(2, 3))
FROM_TRAINED = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=0, retrain_epochs=(2, 3))
BOUNDARIES, VALUES = [20, 35], [0.1, 0.01, 0.001]
ALLR_D = (0.05, 0.5)  # cycle 1's peak clips at the lower bound 0.1 * 2 / 10, cycle 2's does not


def numpy_base(steps):
    steps = np.asarray(steps)
    return np.where(steps <= 20, 0.1, np.where(steps <= 35, 0.01, 0.001)).astype(np.float32)


def make(flavour, plan, kind):
    """The schedule of `kind` in `flavour` (`keras` or `tf_keras`), ALLR's peaks recorded."""
    base = flavour.optimizers.schedules.PiecewiseConstantDecay(BOUNDARIES, VALUES)
    cls = RetrainSchedule if flavour is keras else imp_keras.tf_keras.RetrainSchedule
    kwargs = dict(initial_learning_rate=0.05, warmup_fraction=0.2) if kind in TUNABLE else {}
    schedule = cls(base, plan, STEPS_PER_EPOCH, kind, base_epochs=10, **kwargs)
    if kind == "allr":
        for cycle, d in enumerate(ALLR_D, 1):
            schedule.record_allr(cycle, d)
    return schedule


def subprocess_env(backend):
    # Importing tfmot (the tf_keras tests) sets TF_USE_LEGACY_KERAS in this process; a Keras 3
    # child must not inherit it.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    path = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path)
    return env


def run_python(backend, *args):
    env = subprocess_env(backend)
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("plan", [PRETRAINED, FROM_TRAINED], ids=["pretrained", "from_trained"])
@pytest.mark.parametrize("kind", KINDS)
def test_same_learning_rate_as_tf_keras_and_numpy_at_every_step(kind, plan):
    k3, tf2 = make(keras, plan, kind), make(tf_keras, plan, kind)
    assert k3.shape == tf2.shape  # same checked numbers, eta_max and eta_min derived alike
    steps = np.arange((plan.total_epochs + 2) * STEPS_PER_EPOCH)
    values = np.array([float(k3(int(step))) for step in steps])
    if kind == "allr":
        peaks = np.array([k3.shape.allr_peak(cycle, d) for cycle, d in enumerate(ALLR_D, 1)], np.float32)
    else:
        peaks = np.full(plan.cycles, k3.shape.fixed_peak(), np.float32)
    reference = learning_rate(NUMPY_OPS, k3.shape, steps, numpy_base, peaks)
    np.testing.assert_allclose(values, imp_keras.tf_keras.schedules.learning_rates(tf2, steps), rtol=1e-6)
    np.testing.assert_allclose(values, reference, rtol=1e-6)
    np.testing.assert_allclose(learning_rates(k3, steps), values, rtol=1e-6)


def test_slr_at_imagenet_size_maps_each_step_exactly_past_int32_products():
    """ResNet-50's 5005 steps an epoch, a 90-epoch base stepping at epochs 30, 60 and 80, one SLR
    cycle of 15 epochs: its step tau after the warm-up reads the base at tau * L // R (L = 450,450
    base steps, R = 67,568 steps after the warm-up), where tau * (L mod R) passes 2^31 (int32 on JAX)."""
    spe, plan = 5005, Plan(goal_sparsity=0.9, cycles=1, pretrain_epochs=90, retrain_epochs=15)
    boundaries, values = [30 * spe, 60 * spe, 80 * spe], [0.1, 0.01, 0.001, 0.0001]
    schedules = [
        RetrainSchedule(keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values), plan, spe, "slr"),
        imp_keras.tf_keras.RetrainSchedule(tf_keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values), plan, spe, "slr"),
    ]
    start, warmup, base_steps = 90 * spe, int(0.1 * 15 * spe), 90 * spe
    rest = 15 * spe - warmup
    taus = [1000, 30000, 47000, 50000, 60000, 67000, rest - 1]
    expected = [values[sum(tau * base_steps // rest > b for b in boundaries)] for tau in taus]
    assert expected == [0.1, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001]
    for schedule in schedules:
        assert [float(schedule(start + warmup + tau)) for tau in taus] == pytest.approx(expected, rel=1e-6)


def test_learning_rates_of_a_base_that_takes_one_step_at_a_time():
    base = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=8, warmup_target=0.1, warmup_steps=4)
    expected = [0.0, 0.025, 0.05, 0.075] + [0.1 * (1 + np.cos(np.pi * k / 8)) / 2 for k in range(8)] + [0.0]
    np.testing.assert_allclose(learning_rates(base, np.arange(13)), expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(learning_rates(0.25, np.arange(3)), [0.25, 0.25, 0.25])


class OneStepOnly(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        return 0.5 if int(step) < 2 else 0.25  # Python control flow: fails on an array and in a map


class Constant(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        return 0.5  # one value whatever the steps


def test_learning_rates_of_schedules_written_for_one_step():
    np.testing.assert_array_equal(learning_rates(OneStepOnly(), np.arange(4)), [0.5, 0.5, 0.25, 0.25])
    np.testing.assert_array_equal(learning_rates(Constant(), np.arange(3)), [0.5, 0.5, 0.5])


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trips_and_matches_the_tf_keras_config(kind):
    schedule = make(keras, PRETRAINED, kind)
    config = schedule.get_config()
    tf_config = make(tf_keras, PRETRAINED, kind).get_config()
    assert {k: v for k, v in config.items() if k != "base"} == {k: v for k, v in tf_config.items() if k != "base"}
    assert [k for k, v in config.items() if isinstance(v, dict)] == ["base"]
    restored = RetrainSchedule.from_config(config)
    serialized = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    steps = np.arange(80)
    for copy in (restored, serialized):
        assert type(copy) is RetrainSchedule and copy.get_config() == config
        np.testing.assert_array_equal(learning_rates(copy, steps), learning_rates(schedule, steps))


def test_allr_config_holds_peaks_and_unmeasured_d_as_none():
    schedule = RetrainSchedule(0.1, PRETRAINED, STEPS_PER_EPOCH, "allr")
    peak = schedule.record_allr(2, 0.5)
    config = schedule.get_config()
    assert config["eta_star"] == [float(np.float32(0.1)), float(np.float32(peak))]
    assert config["allr_d"] == [None, 0.5]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert restored.get_config()["eta_star"] == config["eta_star"] and restored.get_config()["allr_d"] == [None, 0.5]


def small_model(schedule):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def load_counting_skips(path):
    """The loaded model and whether Keras skipped its optimizer's variables (count mismatch)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(path)
    return loaded, any("Skipping variable loading" in str(w.message) for w in caught)


def test_keras_file_keeps_schedule_and_peaks(tmp_path):
    schedule = make(keras, PRETRAINED, "allr")
    model = small_model(schedule)
    schedule.attach(model.optimizer)
    model.save(tmp_path / "attached.keras")
    assert load_counting_skips(tmp_path / "attached.keras")[1]  # why the callback detaches at train end
    schedule.detach(model.optimizer)
    model.save(tmp_path / "model.keras")
    loaded, skipped = load_counting_skips(tmp_path / "model.keras")
    assert not skipped
    assert loaded.optimizer.get_config()["learning_rate"] == model.optimizer.get_config()["learning_rate"]
    step = 70  # cycle 2 (steps 60 to 74), after its warm-up of 1 step: ALLR's recorded peak
    loaded.optimizer.iterations.assign(step)
    assert float(loaded.optimizer.learning_rate) == float(schedule(step)) != float(make(keras, PRETRAINED, "llr")(step))


def test_attach_once_saves_peaks_with_the_optimizer_and_detach_restores_it(tmp_path):
    schedule = make(keras, PRETRAINED, "allr")
    model = small_model(schedule)
    optimizer = model.optimizer
    fresh = [id(v) for v in optimizer.variables]
    schedule.attach(optimizer)
    schedule.attach(optimizer)
    assert [id(v) for v in optimizer.variables] == fresh + [id(schedule.eta_star), id(schedule.allr_d)]
    model.save_weights(tmp_path / "run.weights.h5")

    base = keras.optimizers.schedules.PiecewiseConstantDecay(BOUNDARIES, VALUES)
    restored = RetrainSchedule(base, PRETRAINED, STEPS_PER_EPOCH, "allr", base_epochs=10)  # no peaks recorded
    other = small_model(restored)
    restored.attach(other.optimizer)
    other.load_weights(tmp_path / "run.weights.h5")
    assert restored.get_config() == schedule.get_config()

    schedule.detach(optimizer)
    schedule.detach(optimizer)
    assert [id(v) for v in optimizer.variables] == fresh


def test_attach_is_nothing_for_kinds_without_measured_peaks():
    schedule = make(keras, PRETRAINED, "slr")
    optimizer = keras.optimizers.SGD(schedule)  # not built: nothing to order
    schedule.attach(optimizer)
    schedule.detach(optimizer)
    assert len(optimizer.variables) == 1  # its iteration count


@functools.cache
def backend_checks(backend):
    if os.environ.get("IMP_KERAS_FLAVOURS") == "keras3":
        pytest.skip("starts its own process per backend: runs once, from the main test process")
    return json.loads(run_python(backend, str(SCRIPTS / "backend_checks.py")))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_importing_and_calling_it_imports_no_tensorflow(backend):
    out = backend_checks(backend)
    assert out["backend"] == backend and out["tensorflow_imported"] is False
    # Step 59: cycle 1 (steps 50 to 59, warm-up 1, R = 9) at tau = 8 maps to base step 8 * 50 // 9 = 44: 0.001.
    assert out["slr_59"] == float(np.float32(0.001))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_allr_peak_recorded_between_epochs_reaches_the_step(backend):
    out = backend_checks(backend)
    f32 = np.float32
    peak2 = allr_peak(0.2, 0.1, Plan(0.5, 2, 0, 1).fraction, retrain_epochs=1, base_epochs=10)
    attached, detached = out["attached"], out["detached"]
    for run in (attached, detached):
        assert run["eta_star"] == [float(f32(0.1)), float(f32(peak2))]
        assert run["lr_step_1"] == float(f32(peak2))
        assert run["kernels"][:2] == [0.0, float(-f32(0.1))]  # cycle 1 applied its peak 0.1
    w1 = f32(attached["kernels"][1])
    assert attached["kernels"][2] == float(w1 - f32(peak2))
    # JAX's compiled step applies, without `attach`, the value the peak had when it was traced;
    # PyTorch runs eagerly.
    stale = {"jax": f32(0.1), "torch": f32(peak2)}[backend]
    assert detached["kernels"][2] == float(w1 - stale)


def exact(message):
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(kind="sgdr"), ValueError, f"`kind` must be one of {KINDS}. Received: kind='sgdr'"),
        (dict(steps_per_epoch=0), ValueError, "`steps_per_epoch` must be an integer >= 1. Received: steps_per_epoch=0"),
        (dict(base="x"), TypeError, "`base` must be a learning-rate schedule, a number or None. Received: base='x'"),
        (
            dict(plan=Plan(0.9, 2, 0, 2)),
            ValueError,
            "`base_epochs` is required when plan.pretrain_epochs=0: pass the number of epochs the dense "
            "model was trained for with `base`.",
        ),
        (
            dict(name="my schedule"),
            ValueError,
            "`name` must be a Python identifier (letters, digits, underscores). Received: name='my schedule'",
        ),
        (dict(max_learning_rate=-1), ValueError, "`max_learning_rate` must be a finite number >= 0. Received: max_learning_rate=-1"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    base = keras.optimizers.schedules.PiecewiseConstantDecay(BOUNDARIES, VALUES)
    args = dict(base=base, plan=PRETRAINED, steps_per_epoch=5, kind="slr")
    with pytest.raises(error, match=exact(message)):
        RetrainSchedule(**{**args, **kwargs})


def test_tf_keras_base_refused():
    base = tf_keras.optimizers.schedules.PiecewiseConstantDecay(BOUNDARIES, VALUES)
    cls = type(base)
    message = (
        f"`base` is a tf_keras (Keras 2) object ({cls.__module__}.{cls.__qualname__}), but "
        "imp_keras.keras3.RetrainSchedule needs a Keras 3 `LearningRateSchedule`, a number or None. "
        "Build it with `import keras` (Keras 3), e.g. `keras.optimizers.schedules.PiecewiseConstantDecay(...)`, "
        "or use imp_keras.tf_keras.RetrainSchedule for a tf_keras model."
    )
    with pytest.raises(TypeError, match=exact(message)):
        RetrainSchedule(base, PRETRAINED, 5, "slr")


def test_bad_record_and_attach():
    schedule = make(keras, PRETRAINED, "allr")
    with pytest.raises(ValueError, match=exact("`cycle` must be an integer in [1, 2]. Received: cycle=0")):
        schedule.record_allr(0, 0.5)
    with pytest.raises(ValueError, match=exact("`d` must be a finite number >= 0. Received: d=nan")):
        schedule.record_allr(1, float("nan"))
    with pytest.raises(ValueError, match=exact("record_allr applies to kind='allr' only, not kind='llr'.")):
        make(keras, PRETRAINED, "llr").record_allr(1, 0.5)
    with pytest.raises(ValueError, match="^`optimizer` must be built before `attach`"):
        schedule.attach(keras.optimizers.SGD(schedule))
    with pytest.raises(TypeError, match="^`optimizer` must be a Keras 3 optimizer. Received: optimizer=<tf_keras"):
        schedule.attach(tf_keras.optimizers.SGD(0.1))
