"""The trainer on Keras 3: the main job's quick variant end to end on JAX with TensorFlow absent,
SIGKILL and resume on JAX to the same end as an uninterrupted run, smoke runs on PyTorch and Keras 3
with TensorFlow, GMP's exact counts on all three backends, the model
zoo's parameter counts on Keras 3, and the NumPy pipeline's determinism. Each Keras 3 run is a fresh
process: a Keras backend is fixed when Keras is first imported."""

import ast
import csv
import io
import json
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from imp_keras import rundir

from conftest import SHARED_DATA
from conftest import keras3_env
from conftest import without_tensorflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "kill_during_run.py")
MNIST = os.path.join(SHARED_DATA, "mnist")
TIMINGS = ("train_seconds", "wall_seconds", "epoch_seconds")


def env(backend="jax"):
    return dict(keras3_env(backend), PYTHONPATH=ROOT)


def run_script(workdir, *args, backend="jax"):
    return subprocess.run(
        [sys.executable, SCRIPT, os.fspath(workdir), "--backend", backend, *args],
        capture_output=True, text=True, env=env(backend), cwd=ROOT, timeout=300,
    )


@pytest.mark.skipif(not os.path.isdir(MNIST), reason="needs ../shared/data/mnist")
def test_main_job_quick_on_jax_without_tensorflow(tmp_path):
    without_tensorflow(
        "imp_keras.train", "--config=configs/mnist_lenet.py:quick", "--config.keras=keras3", "--config.backend=jax", f"--workdir={tmp_path}"
    )
    assert {"config.json", "metrics.csv", "results.json", "dense.keras", "ladder", "export",
            "accuracy_vs_sparsity.png", "lr_schedule.png"} <= set(os.listdir(tmp_path))
    assert "backup" not in os.listdir(tmp_path) and ".lock" not in os.listdir(tmp_path)
    rows = rundir.read_metrics(os.path.join(tmp_path, "metrics.csv"))
    assert [r["phase"] for r in rows] == [0, 1, 1] and [r["cycle"] for r in rows] == [0, 1, 2]
    # As on tf_keras: 266,200 kernel weights, 84,180 alive after cycle 1, then 26,620.
    assert [r["sparsity"] for r in rows] == pytest.approx([0.0, 1 - 84180 / 266200, 0.9])
    assert rows[0]["lr"] == pytest.approx(0.001)  # the last of the 8 dense steps, after both step decays
    results = json.loads((tmp_path / "results.json").read_text())
    # 8 steps an epoch on 1024 images, the LR down to 0.001 after 6 of them: well above chance (0.1), not more.
    assert results["dense_accuracy"] > 0.3 and results["final_accuracy"] > 0.3
    assert results["final_sparsity"] == pytest.approx(0.9) and results["steps_per_epoch"] == 8
    assert results["export"]["formats"] == ["keras"] and results["export"]["passed"] is True
    assert sorted(os.listdir(tmp_path / "ladder")) == ["cycle01_sparsity68.38.keras", "cycle02_sparsity90.00.keras"]
    assert json.loads((tmp_path / "config.json").read_text())["backend"] == "jax"


def csv_rows(workdir):
    with open(os.path.join(workdir, rundir.METRICS), newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(f)]


def keras_file_weights(path):
    """Every array of a `.keras` file's weights, by name (read with h5py: no Keras in this process)."""
    import h5py

    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as store:
        arrays = {}
        store.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
        return arrays


IMP_LADDER = ["cycle01_sparsity50.00.keras", "cycle02_sparsity75.00.keras"]


def assert_same_run(workdir, reference, epochs=6, ladder=IMP_LADDER, models=(rundir.DENSE_MODEL,)):
    """`workdir` finished with the results, metrics and models (bit for bit) of `reference`: by default
    the IMP run of kill_during_run.py (6 epochs, its dense model and 2 rungs)."""
    assert rundir.BACKUP not in os.listdir(workdir)
    mine, theirs = (rundir.read_json(os.path.join(w, rundir.RESULTS)) for w in (workdir, reference))
    assert {k: v for k, v in mine.items() if k not in TIMINGS} == {k: v for k, v in theirs.items() if k not in TIMINGS}
    assert csv_rows(workdir) == csv_rows(reference) and len(csv_rows(workdir)) == epochs
    assert sorted(os.listdir(os.path.join(workdir, rundir.LADDER))) == ladder
    # The plotted schedule: ALLR's peaks, restored with the optimizer from the backup.
    assert (workdir / "lr_schedule.png").read_bytes() == (reference / "lr_schedule.png").read_bytes()
    for name in list(models) + [os.path.join(rundir.LADDER, rung) for rung in ladder]:
        a, b = keras_file_weights(os.path.join(workdir, name)), keras_file_weights(os.path.join(reference, name))
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")


@pytest.fixture(scope="module")
def jax_reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("jax_reference")
    result = run_script(workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "imported: []" in result.stdout
    return workdir


def test_sigkill_on_jax_then_the_same_command_ends_as_an_uninterrupted_run(tmp_path, jax_reference):
    """Killed at the first batch of cycle 1's pruning epoch, mid-retraining, and after the last
    epoch was backed up (before results.json): each re-run continues where the backup is."""
    workdir = tmp_path / "run"
    for epoch, batch, resumes_at in (("2", "0", None), ("3", "5", 2), ("5", "end", 3)):
        killed = run_script(workdir, "--kill", epoch, batch)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        if resumes_at is not None:
            assert f"resuming the run in {workdir} at epoch {resumes_at} of 6" in killed.stdout
        done = int(epoch) if batch == "end" else int(epoch) - 1
        assert csv_rows(workdir) == csv_rows(jax_reference)[: done + 1]
    assert sorted(os.listdir(workdir / "backup")) == ["chief", "previous"]
    finished = run_script(workdir)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming" not in finished.stdout and "imported: []" in finished.stdout
    assert_same_run(workdir, jax_reference)


def test_damaged_latest_backup_on_jax_falls_back_to_the_previous_epoch(tmp_path, jax_reference):
    workdir = tmp_path / "run"
    assert run_script(workdir, "--kill", "3", "end").returncode == -signal.SIGKILL
    weights = workdir / "backup" / "chief" / "latest.weights.h5"
    os.truncate(weights, os.path.getsize(weights) // 2)
    finished = run_script(workdir)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "the latest backup is damaged" in finished.stdout and "continuing from the previous one, of epoch 2" in finished.stdout
    assert f"resuming the run in {workdir} at epoch 3 of 6" in finished.stdout
    assert_same_run(workdir, jax_reference)


@pytest.fixture(scope="module")
def jax_gmp_reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("jax_gmp_reference")
    result = run_script(workdir, "--gmp")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "imported: []" in result.stdout
    return workdir


def assert_gmp_counts(workdir):
    """As test_train's GMP run on tf_keras: 266,200 kernel weights, 91,506 alive after epoch 1, 66,550 at the end."""
    rows = rundir.read_metrics(os.path.join(workdir, rundir.METRICS))
    assert [r["sparsity"] for r in rows] == pytest.approx([0.0, 174694 / 266200, 0.75, 0.75])
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.1, 0.01, 0.001]) and not {"phase", "cycle"} & set(rows[0])
    results = rundir.read_json(os.path.join(workdir, rundir.RESULTS))
    assert results["gmp_window"] == {"begin_step": 8, "end_step": 24, "frequency": 4, "updates": 5}
    assert results["final_sparsity"] == 0.75 and sum(layer["pruned"] for layer in results["layers"]) == 199650
    weights = keras_file_weights(os.path.join(workdir, rundir.LADDER, "gmp_sparsity75.00.keras"))
    assert sum(int(np.count_nonzero(array)) for name, array in weights.items() if name.endswith("vars/0")) == 66550
    assert rundir.DENSE_MODEL not in os.listdir(workdir)


def test_gmp_run_on_jax_prunes_to_the_exact_counts(jax_gmp_reference):
    assert_gmp_counts(jax_gmp_reference)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_gmp_run_on(backend, tmp_path):
    """The JAX run's exact counts on PyTorch (no TensorFlow imported) and on Keras 3 with TensorFlow."""
    result = run_script(tmp_path, "--gmp", backend=backend)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("imported: []" in result.stdout) == (backend == "torch")
    assert_gmp_counts(tmp_path)


def test_sigkill_of_a_gmp_run_on_jax_then_the_same_command_ends_as_an_uninterrupted_run(tmp_path, jax_gmp_reference):
    """Killed at step 12 (a mask update, inside the window), then after epoch 2's backup (the goal
    reached): the resumed fits take GMP's position from the restored optimizer step."""
    workdir = tmp_path / "run"
    for epoch, batch, resumes_at in (("1", "4", None), ("2", "end", 1)):
        killed = run_script(workdir, "--gmp", "--kill", epoch, batch)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        if resumes_at is not None:
            assert f"resuming the run in {workdir} at epoch {resumes_at} of 4" in killed.stdout
    finished = run_script(workdir, "--gmp")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"resuming the run in {workdir} at epoch 3 of 4" in finished.stdout
    assert_same_run(workdir, jax_gmp_reference, epochs=4, ladder=["gmp_sparsity75.00.keras"], models=())


@pytest.mark.skipif(not os.path.isdir(MNIST), reason="needs ../shared/data/mnist")
def test_gmp_config_quick_on_jax_without_tensorflow(tmp_path):
    without_tensorflow("imp_keras.train", "--config=configs/mnist_lenet_gmp.py:quick", f"--workdir={tmp_path}")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["method"] == "gmp" and results["final_sparsity"] == pytest.approx(0.98)
    assert results["gmp_window"] == {"begin_step": 1, "end_step": 4, "frequency": 100, "updates": 2}
    assert os.listdir(tmp_path / "ladder") == ["gmp_sparsity98.00.keras"] and results["export"]["passed"] is True
    assert {"accuracy_vs_sparsity.png", "lr_schedule.png"} <= set(os.listdir(tmp_path))


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_smoke_run_on(backend, tmp_path):
    """PyTorch (no TensorFlow imported), and Keras 3 on TensorFlow (the tf.data pipeline)."""
    result = run_script(tmp_path, backend=backend)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("imported: []" in result.stdout) == (backend == "torch")
    results = json.loads((tmp_path / "results.json").read_text())
    assert [c["sparsity"] for c in results["cycles"]] == pytest.approx([0.5, 0.75])
    assert results["final_sparsity"] == pytest.approx(0.75) and [r["epoch"] for r in rundir.read_metrics(tmp_path / "metrics.csv")] == list(range(6))


# The tf_keras figures of tests/test_models.py's ARCHITECTURES: count_params() of each builder.
COUNTS = [
    ("lenet_300_100", {}, (28, 28, 1), 10, 266_610),
    ("conv_net", {"depth": 2}, (28, 28, 1), 10, 3_317_450),
    ("conv_net", {"depth": 4}, (28, 28, 1), 10, 1_933_258),
    ("conv_net", {"depth": 6}, (28, 28, 1), 10, 1_802_698),
    ("resnet_cifar", {"depth": 20}, (32, 32, 3), 10, 271_098),
    ("resnet_cifar", {"depth": 56}, (32, 32, 3), 10, 857_082),
    ("vgg16_bn", {}, (32, 32, 3), 10, 14_732_490),
    ("wide_resnet", {}, (32, 32, 3), 100, 36_554_836),
    ("resnet50", {}, (224, 224, 3), 1000, 25_636_712),
]

COUNT_ON_KERAS3 = """
import json, sys
import keras
import numpy as np
import imp_keras.keras3
from imp_keras import models
counts = []
for name, kwargs, shape, classes in json.loads(sys.argv[1]):
    model = models.build(name, tuple(shape), classes, keras=keras, **kwargs)
    if model.count_params() < 2_000_000:  # the small ones also run, pruned
        assert model(np.zeros((1, *shape), "float32")).shape == (1, classes)
        assert imp_keras.keras3.prunable(model, verbose=0)(np.zeros((1, *shape), "float32")).shape == (1, classes)
    counts.append(model.count_params())
print(json.dumps(counts))
"""


def test_models_on_keras3_have_the_tf_keras_parameter_counts():
    specs = [(name, kwargs, shape, classes) for name, kwargs, shape, classes, _ in COUNTS]
    result = subprocess.run(
        [sys.executable, "-c", COUNT_ON_KERAS3, json.dumps(specs)], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == [count for *_, count in COUNTS]


def test_gpu_accuracy_benchmark_smoke_on_jax_without_tensorflow(tmp_path):
    """The GPU setup of benchmarks.accuracy at its smoke size (synthetic data, 8-step epochs) on CPU."""
    without_tensorflow(
        "benchmarks.accuracy", "--smoke", "--setups=fashion_resnet20", "--methods=dense,imp_allr,bimp,gmp", f"--out_dir={tmp_path}"
    )
    report = json.loads((tmp_path / "accuracy_fashion_resnet20.json").read_text())
    assert report["setup"]["keras"] == "keras3" and report["setup"]["backend"] == "jax" and report["smoke"]
    assert sorted(report["summary"]) == ["bimp", "dense", "dense_pretrain", "gmp", "imp_allr"]
    for method in ("bimp", "imp_allr", "gmp"):
        assert report["summary"][method]["0.9"]["sparsity"]["mean"] == pytest.approx(0.9, abs=1e-4)
        assert report["summary"][method]["0.9"]["budget_epochs"] == [4]
    assert (tmp_path / "accuracy_fashion_resnet20.md").read_text().strip()


DATA_PARALLEL = """
import sys
sys.path.insert(0, "tests")
from synthetic import synthetic_config
from imp_keras import train
for distribution, workdir in (("data_parallel", sys.argv[1]), ("none", sys.argv[2])):
    results = train.run(synthetic_config(keras="keras3", backend="jax", distribution=distribution), workdir, verbose=0)
    print(distribution, results["replicas"])
uneven = synthetic_config(keras="keras3", backend="jax", distribution="data_parallel")
uneven.data.synthetic_examples = 260  # 65 evaluation examples: a last batch of 1
try:
    train.run(uneven, sys.argv[1] + "_uneven", verbose=0)
except ValueError as e:
    print(e)
"""


def test_data_parallel_on_two_jax_devices_gives_the_masks_of_one(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL, os.fspath(tmp_path / "two"), os.fspath(tmp_path / "one")],
        capture_output=True, text=True, env=dict(env(), XLA_FLAGS="--xla_force_host_platform_device_count=2"), cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.splitlines()[-3:] == [
        "data_parallel 2", "none 1",
        "`batch_size` must split evenly over the 2 devices of distribution='data_parallel', and so must the last "
        "evaluation batch (65 examples in batches of 32 leave 1). Received: batch_size=32",
    ]
    ladder = sorted(os.listdir(tmp_path / "one" / rundir.LADDER))
    assert ladder == sorted(os.listdir(tmp_path / "two" / rundir.LADDER)) == ["cycle01_sparsity50.00.keras", "cycle02_sparsity75.00.keras"]
    for name in ladder:
        one, two = (keras_file_weights(tmp_path / run / rundir.LADDER / name) for run in ("one", "two"))
        assert one.keys() == two.keys()
        for key in one:  # the same pruned weights; the others equal up to the order of the gradient sums
            np.testing.assert_array_equal(one[key] == 0, two[key] == 0, err_msg=f"{name}: {key}")
            np.testing.assert_allclose(one[key], two[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {key}")


WEIGHT_DECAY = """
import keras
import numpy as np
import imp_keras
from imp_keras import experiment
config = experiment.base_config()
config.keras, config.backend = "keras3", "jax"
config.optimizer.weight_decay, config.optimizer.nesterov = 0.1, False
model = imp_keras.prunable(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False, name="d")]), verbose=0)
experiment.add_weight_decay(model, config)
model.compile(experiment.make_optimizer(config, 0.5), loss=lambda y, p: 0.0 * keras.ops.sum(p))
kernel = imp_keras.masked_weights(model)[0].weight
kernel.assign([[1.0, 2.0], [0.0, -4.0]])
imp_keras.apply_masks(imp_keras.masked_weights(model), [np.array([[1, 1], [0, 1]], bool)])
print(float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)))
x, y = np.ones((1, 2), "float32"), np.zeros((1, 2), "float32")
for _ in range(2):
    model.train_on_batch(x, y)
    print(keras.ops.convert_to_numpy(kernel).tolist())
"""


def test_keras3_weight_decay_goes_through_the_gradient_like_pytorch():
    """tests/test_experiment.py's figures on Keras 3 (JAX): the L2 term weight_decay / 2 * ||w||^2 as
    a regularizer of every trainable variable, evaluated inside JAX's compiled step."""
    result = subprocess.run([sys.executable, "-c", WEIGHT_DECAY], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loss, first, second = result.stdout.splitlines()[-3:]
    assert float(loss) == pytest.approx(0.05 * (1 + 4 + 16))
    np.testing.assert_allclose(json.loads(first), [[0.95, 1.9], [0.0, -3.8]], rtol=1e-6)
    np.testing.assert_allclose(json.loads(second), [[0.8575, 1.715], [0.0, -3.43]], rtol=1e-5)  # momentum carries it on


def test_all_preset_on_jax_writes_what_needs_no_tensorflow_and_says_what_it_leaves_out():
    code = """
import sys
from imp_keras import experiment, train_keras3
config = experiment.base_config()
config.keras, config.backend = "keras3", "jax"
formats = experiment.export_formats(config)
print(formats)
print([note.split(" (")[0] for note in train_keras3._left_out(config, formats)])
print(train_keras3._left_out(config, formats)[0])
print("tensorflow" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()[-4:]
    formats, left_out, first, tensorflow = ast.literal_eval(lines[0]), ast.literal_eval(lines[1]), lines[2], lines[3]
    assert formats[:2] == ("keras", "weights_h5") and tensorflow == "False"
    assert left_out[:2] == ["tf_saved_model", "litert"]
    assert ("onnx" in formats) != ("onnx" in left_out)  # written with jax2onnx installed, else left out
    assert first == "tf_saved_model (it imports TensorFlow: name it in export_formats to write it)"


def test_restoring_the_last_backup_restores_allr_peaks_with_the_optimizer(tmp_path):
    """A run killed after its last epoch's backup is finished from the backup alone: ALLR's peaks
    must be among the optimizer's variables there, or Keras skips loading the optimizer (and the
    plot shows the initial peaks). In this process, on Keras 3 with TensorFlow."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the main test process runs Keras 3 on TensorFlow")
    import imp_keras.keras3 as k3
    from imp_keras import Plan, backup, train_keras3

    plan = Plan(0.9, 2, 1, 1)

    def compiled():
        keras.utils.set_random_seed(0)
        model = k3.prunable(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
        schedule = k3.RetrainSchedule(0.1, plan, steps_per_epoch=2, kind="allr", base_epochs=10)
        model.compile(keras.optimizers.SGD(schedule, momentum=0.9), loss="mse")
        model.optimizer.build(model.trainable_variables)
        return model, schedule

    model, schedule = compiled()
    schedule.attach(model.optimizer)
    schedule.eta_star.assign(np.array([0.03, 0.07], "float32"))
    model.optimizer.iterations.assign(5)
    os.makedirs(tmp_path / backup.LATEST)
    model.save_weights(os.fspath(tmp_path / backup.LATEST / backup.KERAS3_WEIGHTS))

    fresh, fresh_schedule = compiled()
    train_keras3.restore_last(fresh, os.fspath(tmp_path))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh_schedule.eta_star), np.array([0.03, 0.07], "float32"))
    assert int(keras.ops.convert_to_numpy(fresh.optimizer.iterations)) == 5
