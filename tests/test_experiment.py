"""Experiment configs: every config file loads in both variants and passes validation, bad fields
are refused naming the field, and the plan and schedule match the epochs the config gives."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import imp_keras
import imp_keras.export.tf_keras
from imp_keras import experiment, keras
from imp_keras.core.gradual import Window
from imp_keras.tf_keras.schedules import RetrainSchedule, learning_rates

from conftest import CONFIGS, load_config

def test_there_is_a_config_per_experiment():
    names = {os.path.basename(path)[:-3] for path in CONFIGS}
    assert {
        "mnist_lenet", "fashion_mnist_conv4", "cifar10_resnet20", "cifar10_resnet56",
        "cifar100_wrn28_10", "cifar10_vgg16", "imagenet_resnet50", "mnist_lenet_gmp", "fashion_mnist_gmp",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p))
def test_config_loads_validates_and_documents_its_command(path):
    config, quick = load_config(path), load_config(path, "quick")
    if config.backend == "tensorflow":
        experiment.validate(config)
        experiment.validate(quick)
    else:  # Keras 3 runs on TensorFlow in this process; only a fresh one can take another backend
        _validate_in_a_fresh_process(path)
    assert quick.name == config.name + "_quick"
    assert quick.pretrain_epochs == 1 and quick.cycles == (3 if config.method == "gmp" else 2)
    with open(path) as f:
        text = f.read()
    relative = "configs/" + os.path.basename(path)
    assert f"python -m imp_keras.train --config={relative} --workdir=" in text
    assert f"--config={relative}:quick" in text
    assert "Expected" in text


VALIDATE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("config", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from imp_keras import experiment
experiment.validate(module.get_config())
experiment.validate(module.get_config("quick"))
print("valid")
"""


def _validate_in_a_fresh_process(path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", VALIDATE, path], capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert result.returncode == 0 and result.stdout.split() == ["valid"], result.stderr[-3000:]


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="'slow'"):
        experiment.variant(experiment.base_config(), "slow")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("goal_sparsity", 1.0, "`goal_sparsity` must be a number in \\(0.0, 1.0\\)"),
        ("cycles", 0, "`cycles` must be an integer >= 1"),
        ("retrain_kind", "warm", "`retrain_kind` must be one of"),
        ("selection", "random", "`selection` must be one of"),
        ("method", "gmp_global", "`method` must be one of"),
        ("gmp_unit", "percent", "`gmp_unit` must be one of \\('fraction', 'epoch', 'step'\\). Received: gmp_unit='percent'"),
        ("gmp_frequency", 0, "`gmp_frequency` must be an integer >= 1. Received: gmp_frequency=0"),
        ("min_alive", -1, r"`min_alive` must be 0 \(no floor\), a number of weights \(a whole number >= 1\) or a fraction of each tensor \(a number in \(0, 1\)\). Received: min_alive=-1.0$"),
        ("min_alive", 2.5, r"Received: min_alive=2.5$"),
        ("gmp_begin", -0.1, "`gmp_begin` must be a number in \\[0.0, inf\\). Received: gmp_begin=-0.1"),
        ("gmp_end", -1.0, "`gmp_end` must be a number in \\[0.0, inf\\). Received: gmp_end=-1.0"),
        ("distribution", "tpu", "`distribution` must be one of"),
        ("batch_size", 0, "`batch_size` must be an integer >= 1"),
        ("data.name", "svhn", "`data.name` must be one of"),
        ("data.validation_split", 1.0, "`data.validation_split`"),
        ("lr.initial", 0.0, "`lr.initial` must be a number in \\(0.0, inf\\)"),
        ("lr.step_at", (0.75, 0.5), "`lr.step_at` must be at least one, increasing fractions"),
        ("optimizer.momentum", 1.5, "`optimizer.momentum`"),
    ],
)
def test_bad_field_is_refused_naming_it(field, value, message):
    config = experiment.base_config()
    config.data.data_dir = "/data"
    parent, _, name = field.rpartition(".")
    setattr(config[parent] if parent else config, name, value)
    with pytest.raises(ValueError, match=message):
        experiment.validate(config)


def _config(**fields):
    config = experiment.base_config()
    config.data.data_dir = "/data"
    for key, value in fields.items():
        setattr(config, key, value)
    return config


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"retrain_kind": "lrw", "pretrain_epochs": 2, "retrain_epochs": 3}, "`retrain_epochs` must be at most pretrain_epochs=2"),
        ({"method": "bimp", "total_epochs": 12, "pretrain_epochs": 10, "cycles": 3}, "`total_epochs` must be at least pretrain_epochs \\+ cycles = 13"),
        ({"method": "bimp", "total_epochs": 20, "dense_workdir": "/runs/dense"}, "`dense_workdir` must be empty with method='bimp'"),
        ({"pretrain_epochs": 0}, "`pretrain_epochs` must be an integer >= 1"),
        ({"goal_sparsity": 0.0}, r"`goal_sparsity` must be a number in \(0.0, 1.0\). Received: goal_sparsity=0.0"),
        ({"method": "gmp", "goal_sparsity": 0.0}, r"`goal_sparsity` must be a number in \(0.0, 1.0\)"),
        ({"retrain_kind": "linear"}, "`retrain_lr` must be > 0 for the tunable"),
        ({"total_epochs": 5, "pretrain_epochs": 4, "cycles": 3}, "`total_epochs` must be 0 or at least"),
    ],
)
def test_inconsistent_fields_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        experiment.validate(_config(**fields))


def _gmp(**fields):
    return _config(**{"method": "gmp", **fields})


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"gmp_begin": 0.5, "gmp_end": 0.4}, r"needs 0 <= begin < end <= 1 \(unit='fraction'\). Received: begin=0.5, end=0.4 \(config fields gmp_begin=0.5, gmp_end=0.4"),
        ({"gmp_end": 1.5}, r"Received: begin=0.1, end=1.5 \(config fields gmp_begin=0.1, gmp_end=1.5, gmp_unit='fraction', gmp_frequency=100\)"),
        ({"gmp_unit": "epoch", "gmp_begin": 1, "gmp_end": 12}, r"`gmp_end` must be at most pretrain_epochs=10 with gmp_unit='epoch'.*Received: gmp_end=12"),
        ({"gmp_unit": "step", "gmp_begin": 0.5, "gmp_end": 40}, r"`begin` must be an integer >= 0.*\(config fields gmp_begin=0.5"),
        ({"cycles": 5}, r"`cycles` must be left at its default 3 with method='gmp' \(only IMP and BIMP use it\). Received: cycles=5"),
        ({"retrain_epochs": 1}, "`retrain_epochs` must be left at its default 3 with method='gmp'"),
        ({"retrain_kind": "allr"}, "`retrain_kind` must be left at its default 'slr' with method='gmp'"),
        ({"total_epochs": 15}, "`total_epochs` must be left at its default 0 with method='gmp'"),
        ({"exact_goal": True}, "`exact_goal` must be left at its default False with method='gmp'"),
        ({"retrain_lr": 0.01}, "`retrain_lr` must be left at its default 0.0 with method='gmp'"),
        ({"reset_optimizer": False}, "`reset_optimizer` must be left at its default True with method='gmp'"),
        ({"dense_workdir": "/runs/dense"}, "`dense_workdir` must be empty with method='gmp'"),
    ],
)
def test_gmp_fields_are_checked_naming_them(fields, message):
    with pytest.raises(ValueError, match=message):
        experiment.validate(_gmp(**fields))


@pytest.mark.parametrize("method", ["imp", "gmp", "dense"])
def test_step_decay_fields_are_refused_with_another_decay(method):
    config = _config(method=method)
    config.lr.decay = "cosine"
    experiment.validate(config)
    config.lr.step_factor = 0.5
    with pytest.raises(ValueError, match=r"`lr.step_factor` must be left at its default 0.1 with lr.decay='cosine' \(only the step decay uses it\)"):
        experiment.validate(config)


@pytest.mark.parametrize("method", ["imp", "bimp", "dense"])
def test_gmp_fields_are_refused_by_the_other_methods(method):
    config = _config(method=method, total_epochs=20 if method == "bimp" else 0, gmp_end=0.6)
    with pytest.raises(ValueError, match=f"`gmp_end` must be left at its default 0.5 with method='{method}' \\(only GMP uses it\\). Received: gmp_end=0.6"):
        experiment.validate(config)


def test_gmp_method_trains_its_budget_from_scratch_on_the_stretched_schedule():
    for fields in ({}, {"gmp_unit": "epoch", "gmp_begin": 1, "gmp_end": 2.5}, {"gmp_unit": "step", "gmp_begin": 5, "gmp_end": 25}):
        experiment.validate(_gmp(pretrain_epochs=4, **fields))
    method = experiment.method(_gmp(pretrain_epochs=4, gmp_frequency=3), steps_per_epoch=10)
    assert method.plan is None and method.prunes and not method.trains_dense
    assert method.epochs == 4 and method.dense_epochs == 0 and method.steps_per_epoch == 10
    # 10 % to 50 % of 40 steps, every 3 steps: 4, 7, ..., 19 and the end, 20.
    assert method.gradual.window(4, 10) == Window(4, 20, 3) and method.gradual.window(4, 10).updates == 7
    rates = learning_rates(method.schedule, np.arange(40))  # step decay at 50 % and 75 % of the 40 steps
    np.testing.assert_allclose(rates, [0.1] * 20 + [0.01] * 10 + [0.001] * 10, rtol=1e-6)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"gmp_unit": "step", "gmp_begin": 5, "gmp_end": 41}, r"ends at step 41 .* after the run's 40 steps \(4 epochs of 10\).*\(config fields gmp_begin=5.0, gmp_end=41.0, gmp_unit='step', gmp_frequency=100, pretrain_epochs=4\)"),
        ({"gmp_begin": 0.1, "gmp_end": 0.11}, r"is empty in optimizer steps: it begins and ends at step 4.*\(config fields gmp_begin=0.1, gmp_end=0.11"),
    ],
)
def test_gmp_window_that_misses_the_run_in_steps_is_refused_once_steps_are_known(fields, message):
    config = _gmp(pretrain_epochs=4, **fields)
    experiment.validate(config)
    with pytest.raises(ValueError, match=message):
        experiment.method(config, steps_per_epoch=10)


def test_quick_gmp_keeps_its_window_and_imp_fields():
    quick = experiment.variant(_gmp(pretrain_epochs=15), "quick")
    experiment.validate(quick)
    assert quick.pretrain_epochs == 1 and (quick.cycles, quick.retrain_epochs, quick.total_epochs) == (3, 3, 0)
    assert (quick.gmp_begin, quick.gmp_end, quick.gmp_frequency) == (0.1, 0.5, 100)


def test_files_source_needs_a_data_dir():
    config = experiment.base_config()
    with pytest.raises(ValueError, match="`data.data_dir`"):
        experiment.validate(config)


def test_imp_method_epochs_and_steps():
    config = _config(pretrain_epochs=4, cycles=2, retrain_epochs=3, retrain_kind="slr")
    method = experiment.method(config, steps_per_epoch=5)
    assert method.plan.cycle_start_epochs == (4, 7) and method.epochs == 10 and method.dense_epochs == 4
    assert isinstance(method.schedule, RetrainSchedule) and method.schedule.steps_per_epoch == 5
    # Step decay at 50 % and 75 % of the 20 dense steps.
    rates = learning_rates(method.schedule, np.arange(20))
    np.testing.assert_allclose(rates, [0.1] * 10 + [0.01] * 5 + [0.001] * 5, rtol=1e-6)


def test_total_epochs_split_the_retraining_evenly():
    method = experiment.method(_config(pretrain_epochs=4, cycles=3, total_epochs=15), steps_per_epoch=2)
    assert method.plan.retrain_epochs == (3, 3, 5) and method.epochs == 15


def test_bimp_uses_the_budget_and_allr():
    method = experiment.method(_config(method="bimp", pretrain_epochs=4, cycles=2, total_epochs=10), steps_per_epoch=2)
    assert method.plan.retrain_epochs == (3, 3) and method.schedule.kind == "allr"
    np.testing.assert_allclose(learning_rates(method.schedule, [0, 4]), [0.1, 0.05], rtol=1e-6)  # linear to 0 over T0


def test_reused_dense_model_prunes_from_epoch_zero():
    method = experiment.method(_config(pretrain_epochs=4, cycles=2, retrain_epochs=2, dense_workdir="/runs/dense"), steps_per_epoch=3)
    assert method.plan.pretrain_epochs == 0 and method.epochs == 4 and method.dense_epochs == 4
    assert method.schedule.base_epochs == 4


def test_dense_method_has_no_plan():
    method = experiment.method(_config(method="dense", pretrain_epochs=6), steps_per_epoch=2)
    assert method.plan is None and method.epochs == 6


@pytest.mark.parametrize("name, cls, decoupled", [("sgd", "SGD", None), ("adam", "Adam", None), ("adamw", "AdamW", 5e-4)])
def test_optimizer_from_config(name, cls, decoupled):
    config = _config()
    config.optimizer.name = name
    config.optimizer.weight_decay = 5e-4
    optimizer = experiment.make_optimizer(config, 0.1)
    assert type(optimizer).__name__ == cls
    assert optimizer.weight_decay == (pytest.approx(decoupled) if decoupled else None)
    if name == "sgd":
        assert optimizer.nesterov and optimizer.momentum == pytest.approx(0.9)


def test_weight_decay_goes_through_the_gradient_like_pytorch():
    """One SGD step with momentum on a zero data loss: w -= lr * wd * w, and the momentum carries it on."""
    config = _config()
    config.optimizer.weight_decay = 0.1
    config.optimizer.nesterov = False
    model = imp_keras.prunable(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False, name="d")]))
    experiment.add_weight_decay(model, config)
    model.compile(experiment.make_optimizer(config, 0.5), loss=lambda y, p: 0.0 * tf.reduce_sum(p))
    kernel = model.trainable_weights[0]
    kernel.assign([[1.0, 2.0], [0.0, -4.0]])
    imp_keras.apply_masks(imp_keras.masked_weights(model), [np.array([[1, 1], [0, 1]], bool)])
    assert float(model.losses[0]) == pytest.approx(0.05 * (1 + 4 + 16))
    x, y = np.ones((1, 2), "float32"), np.zeros((1, 2), "float32")
    model.train_on_batch(x, y)
    np.testing.assert_allclose(kernel.numpy(), [[0.95, 1.9], [0.0, -3.8]], rtol=1e-6)
    model.train_on_batch(x, y)  # momentum carries the first step's decay: 0.5 * (0.9 * 0.1 w0 + 0.1 w1)
    np.testing.assert_allclose(kernel.numpy(), [[0.8575, 1.715], [0.0, -3.43]], rtol=1e-5)


IMPORT_CONFIG = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("config", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.get_config()
module.get_config("quick")
print(sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "tf_keras", "keras", "jax", "torch"}))
"""


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p))
def test_importing_a_config_imports_no_keras(path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CONFIG, path], capture_output=True, text=True, cwd=root, timeout=120,
        env=dict(os.environ, PYTHONPATH=root),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"keras": "keras2"}, r"`keras` must be one of \('tf_keras', 'keras3'\). Received: keras='keras2'"),
        ({"backend": "mxnet"}, r"`backend` must be one of \('tensorflow', 'jax', 'torch'\). Received: backend='mxnet'"),
        ({"backend": "jax"}, r"`backend` must be 'tensorflow' with keras='tf_keras' .* Received: backend='jax'"),
        ({"distribution": "data_parallel"}, r"`distribution` must be one of \('none', 'mirrored', 'multi_worker'\) with keras='tf_keras'"),
    ],
)
def test_keras_and_backend_fields_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        experiment.validate(_config(**fields))


def test_keras3_on_another_backend_than_the_imported_keras_is_refused():
    import keras as keras3

    other = "jax" if keras3.backend.backend() != "jax" else "torch"
    with pytest.raises(ValueError, match=rf"`backend` must be the backend Keras 3 already runs on in this process, '{keras3.backend.backend()}'.*Received: backend='{other}'"):
        experiment.validate(_config(keras="keras3", backend=other))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"export_formats": ("all", "keras")}, r"`export_formats` must be distinct formats of keras='tf_keras' .* or one of \('all', 'light'\) alone"),
        ({"export_formats": ("onnx",)}, r"`export_formats` must be distinct formats of keras='tf_keras'"),
    ],
)
def test_export_formats_are_the_flavours_or_a_preset(fields, message):
    with pytest.raises(ValueError, match=message):
        experiment.validate(_config(**fields))


def test_export_presets_resolve_per_keras():
    assert experiment.export_formats(_config()) == imp_keras.export.tf_keras.FORMATS
    assert experiment.export_formats(_config(export_formats=("light",))) == ("keras", "tflite_float_sparse", "tflite_int8_full")
    assert experiment.export_formats(_config(export_formats=("h5",))) == ("h5",)


def test_min_alive_is_handed_to_the_callbacks_as_they_take_it():
    config = experiment.base_config()
    assert experiment.min_alive(config) is None
    config.min_alive = 10  # held as 10.0 by the float field
    assert (config.min_alive, experiment.min_alive(config)) == (10.0, 10)
    assert type(experiment.min_alive(config)) is int
    config.min_alive = 0.05
    assert experiment.min_alive(config) == 0.05
