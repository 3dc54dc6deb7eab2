"""The trainer end to end: the run directory it leaves, finished and interrupted runs, reuse of a
dense run, the workdir lock, and every config's quick variant."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from imp_keras import backup, files, keras, rundir, train

from conftest import CONFIGS, SHARED_DATA, load_config
from synthetic import gmp_config, synthetic_config

MNIST = os.path.join(SHARED_DATA, "mnist")


class StopAtEpoch(keras.callbacks.Callback):
    """Interrupts fit after epoch `epoch` has been backed up, like a crash."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted after epoch {epoch}")


def final_masks_and_weights(workdir):
    rungs = sorted(os.listdir(os.path.join(workdir, rundir.LADDER)))
    model = keras.models.load_model(os.path.join(workdir, rundir.LADDER, rungs[-1]))
    return [w.numpy() for w in model.weights]


@pytest.mark.skipif(not os.path.isdir(MNIST), reason="needs ../shared/data/mnist")
def test_mnist_quick_leaves_the_whole_run_directory(tmp_path, capsys):
    config = load_config(CONFIGS[[os.path.basename(p) for p in CONFIGS].index("mnist_lenet.py")], "quick")
    config.keras, config.backend = "tf_keras", "tensorflow"  # this file's trainer; test_train_keras3 runs it on JAX
    results = train.run(config, tmp_path)
    printed = capsys.readouterr().out

    files = set(os.listdir(tmp_path))
    assert {"config.json", "metrics.csv", "results.json", "dense.keras", "ladder", "tensorboard", "export",
            "accuracy_vs_sparsity.png", "lr_schedule.png"} <= files
    assert "backup" not in files and ".lock" not in files
    assert json.loads((tmp_path / "config.json").read_text())["name"] == "mnist_lenet_quick"

    rows = rundir.read_metrics(os.path.join(tmp_path, "metrics.csv"))
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert [r["phase"] for r in rows] == [0, 1, 1] and [r["cycle"] for r in rows] == [0, 1, 2]
    # 266,200 kernel weights, p = 1 - 0.1 ** 0.5: 266200 - round(0.68377 * 266200) = 84180 alive, then 26620.
    assert [r["sparsity"] for r in rows] == pytest.approx([0.0, 1 - 84180 / 266200, 0.9])
    assert {"lr", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"} <= set(rows[0])

    assert sorted(os.listdir(tmp_path / "ladder")) == ["cycle01_sparsity68.38.keras", "cycle02_sparsity90.00.keras"]
    assert results == json.loads((tmp_path / "results.json").read_text())
    # 8 steps on the first 1024 training images, evaluated on the first 1024 test images.
    assert results["dense_accuracy"] > 0.5 and results["final_accuracy"] > 0.5
    assert [c["sparsity"] for c in results["cycles"]] == pytest.approx([1 - 84180 / 266200, 0.9])
    assert results["final_sparsity"] == pytest.approx(0.9) and results["epochs"] == results["budget_epochs"] == 3
    assert results["eval_split"] == "test" and results["steps_per_epoch"] == 8
    assert results["export"] == {
        "dir": os.fspath(tmp_path / "export"), "passed": True,
        "formats": ["keras", "tflite_float_sparse", "tflite_int8_full"],
    }
    report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    assert report["samples"] == 16
    assert {layer["name"] for layer in results["layers"]} == {"fc1/kernel", "fc2/kernel", "logits/kernel"}

    events = [name for _, _, names in os.walk(tmp_path / "tensorboard" / "sparsity") for name in names]
    assert events and all(name.startswith("events.out.tfevents") for name in events)
    for image in ("accuracy_vs_sparsity.png", "lr_schedule.png"):
        assert (tmp_path / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cycle 2" in printed and "90.00%" in printed and "Run directory" in printed


def test_finished_run_is_a_no_op(tmp_path, capsys):
    config = synthetic_config(pretrain_epochs=1, cycles=1, retrain_epochs=1)
    first = train.run(config, tmp_path, verbose=0)
    stamp = os.path.getmtime(tmp_path / "metrics.csv")
    again = train.run(config, tmp_path)
    assert again == first
    assert os.path.getmtime(tmp_path / "metrics.csv") == stamp
    assert "has finished" in capsys.readouterr().out


def test_another_config_in_the_same_workdir_is_refused(tmp_path):
    config = synthetic_config(pretrain_epochs=1, cycles=1, retrain_epochs=1)
    train.run(config, tmp_path, verbose=0)
    config.goal_sparsity = 0.8
    with pytest.raises(ValueError, match=r"goal_sparsity \(0.75 there, 0.8 here\)"):
        train.run(config, tmp_path, verbose=0)


@pytest.mark.parametrize("stop_after", [0, 2, 4, 5])
def test_interrupted_run_continues_to_the_same_end(tmp_path, stop_after, capsys):
    """Interrupted after the dense training's first epoch, after the first cycle's pruning epoch,
    in the last cycle, and after the last epoch (before the results): the re-run ends as an
    uninterrupted run."""
    whole = train.run(synthetic_config(), tmp_path / "whole", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train.run(synthetic_config(), tmp_path / "cut", callbacks=[StopAtEpoch(stop_after)], verbose=0)
    assert not (tmp_path / "cut" / "results.json").exists()
    assert not (tmp_path / "cut" / ".lock").exists()
    resumed = train.run(synthetic_config(), tmp_path / "cut", verbose=1)
    if stop_after < 5:
        assert f"resuming the run in {tmp_path / 'cut'} at epoch {stop_after + 1}" in capsys.readouterr().out

    drop = ("train_seconds", "wall_seconds")
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}
    rows_whole = rundir.read_metrics(os.path.join(tmp_path, "whole", "metrics.csv"))
    rows_cut = rundir.read_metrics(os.path.join(tmp_path, "cut", "metrics.csv"))
    assert [r["epoch"] for r in rows_cut] == list(range(6))
    for a, b in zip(rows_whole, rows_cut):
        assert {k: v for k, v in a.items() if k != "epoch_seconds"} == {k: v for k, v in b.items() if k != "epoch_seconds"}
    assert sorted(os.listdir(tmp_path / "cut" / "ladder")) == sorted(os.listdir(tmp_path / "whole" / "ladder"))
    for a, b in zip(final_masks_and_weights(tmp_path / "whole"), final_masks_and_weights(tmp_path / "cut")):
        np.testing.assert_array_equal(a, b)


def test_a_run_a_callback_stops_early_is_not_finished_and_continues(tmp_path):
    """EarlyStopping-like: `stop_training` after epoch 2 (the first cycle's pruning epoch) leaves
    no results.json and keeps the backup; the same command then runs the other cycles."""

    class StopTraining(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.model.stop_training = True

    whole = train.run(synthetic_config(), tmp_path / "whole", verbose=0)
    with pytest.raises(RuntimeError, match=r"(?s)A callback stopped `fit` after 3 of the run's 6 epochs .* keeps the backup of epoch 2"):
        train.run(synthetic_config(), tmp_path / "cut", callbacks=[StopTraining()], verbose=0)
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = train.run(synthetic_config(), tmp_path / "cut", verbose=0)
    drop = ("train_seconds", "wall_seconds")
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}


def test_results_list_only_the_exported_files_and_why_the_others_failed(tmp_path, capsys):
    # mixed_float16 kernels make the TFLite converter fail (`tf.MatMul` in float16 is neither a
    # builtin nor a flex op); the .keras file is written and checked.
    config = synthetic_config(pretrain_epochs=1, cycles=1, retrain_epochs=1, mixed_precision=True,
                              export_formats=("keras", "tflite_float_sparse"))
    with pytest.warns(UserWarning):
        results = train.run(config, tmp_path, verbose=1)
    export = results["export"]
    assert export["passed"] is False and export["formats"] == ["keras"] and list(export["failed"]) == ["tflite_float_sparse"]
    assert "ConverterError" in export["failed"]["tflite_float_sparse"]
    assert "export: tflite_float_sparse did not pass: " in capsys.readouterr().out


def test_dense_run_feeds_pruning_runs(tmp_path):
    dense = train.run(synthetic_config(method="dense"), tmp_path / "dense", verbose=0)
    assert dense["cycles"] == [] and dense["epochs"] == 2 and (tmp_path / "dense" / "dense.keras").exists()
    rows = rundir.read_metrics(os.path.join(tmp_path, "dense", "metrics.csv"))
    assert [r["sparsity"] for r in rows] == [0.0, 0.0] and rows[0]["lr"] == pytest.approx(0.1)

    pruned = train.run(synthetic_config(dense_workdir=os.fspath(tmp_path / "dense")), tmp_path / "imp", verbose=0)
    assert pruned["dense_accuracy"] == dense["dense_accuracy"]
    assert pruned["epochs"] == 4 and pruned["budget_epochs"] == 6
    assert pruned["dense_reused_from"] == os.fspath(tmp_path / "dense")
    rows = rundir.read_metrics(os.path.join(tmp_path, "imp", "metrics.csv"))
    assert [r["cycle"] for r in rows] == [1, 1, 2, 2] and rows[-1]["sparsity"] == pytest.approx(0.75)
    assert not (tmp_path / "imp" / "dense.keras").exists()

    with pytest.raises(ValueError, match=r"batch_size \(32 there, 16 here\)"):
        train.run(synthetic_config(batch_size=16, dense_workdir=os.fspath(tmp_path / "dense")), tmp_path / "other", verbose=0)
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        train.run(synthetic_config(dense_workdir=os.fspath(tmp_path / "nowhere")), tmp_path / "third", verbose=0)
    # A tf_keras dense.keras is not a Keras 3 file: refused by name, not by the loader.
    keras3 = synthetic_config(keras="keras3", backend="tensorflow", dense_workdir=os.fspath(tmp_path / "dense"))
    with pytest.raises(ValueError, match=r"keras \('tf_keras' there, 'keras3' here\)"):
        train.run(keras3, tmp_path / "fourth", verbose=0)


def test_second_run_on_a_workdir_refuses_naming_the_lock(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with pytest.raises(RuntimeError, match=f"in use by another run \\(lock file {lock}"):
        train.run(synthetic_config(), tmp_path, verbose=0)
    assert lock.exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    results = train.run(synthetic_config(pretrain_epochs=1, cycles=1, retrain_epochs=1), tmp_path, verbose=1)
    assert results["final_sparsity"] == pytest.approx(0.75)
    assert "taking over the lock" in capsys.readouterr().out
    assert not (tmp_path / ".lock").exists()


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if not p.endswith(("mnist_lenet.py", "_gmp.py"))], ids=lambda p: os.path.basename(p)[:-3]
)
def test_quick_variant_runs_end_to_end(path, tmp_path):
    """Fashion-MNIST on the shared files; the CIFAR and ImageNet configs on synthetic data of their shape."""
    config = load_config(path, "quick")
    if config.data.source == "files" and not os.path.isdir(config.data.data_dir):
        pytest.skip(f"needs {config.data.data_dir}")
    results = train.run(config, tmp_path, verbose=0)
    assert [c["cycle"] for c in results["cycles"]] == [1, 2]
    assert results["final_sparsity"] == pytest.approx(config.goal_sparsity, abs=1e-4)
    assert results["epochs"] == 3 and len(os.listdir(tmp_path / "ladder")) == 2


def test_mixed_precision_and_xla_switches(tmp_path):
    config = synthetic_config(pretrain_epochs=1, cycles=1, retrain_epochs=1, mixed_precision=True, xla=True, deterministic=False)
    results = train.run(config, tmp_path, verbose=0)
    assert results["final_sparsity"] == pytest.approx(0.75)
    assert keras.mixed_precision.global_policy().name == "float32", "the caller's policy is restored"
    model = keras.models.load_model(os.path.join(tmp_path, "dense.keras"))
    assert model.get_layer("fc1").dtype_policy.name == "mixed_float16"
    assert model.layers[-1].dtype_policy.name == "float32"


def test_bimp_run_is_no_dense_source_and_runs_through_the_trainer(tmp_path):
    bimp = train.run(synthetic_config(method="bimp", pretrain_epochs=2, cycles=2, total_epochs=6), tmp_path / "bimp", verbose=0)
    assert [c["epoch"] for c in bimp["cycles"]] == [3, 5] and bimp["retrain_kind"] == "allr"
    rows = rundir.read_metrics(os.path.join(tmp_path, "bimp", "metrics.csv"))
    assert rows[1]["lr"] == pytest.approx(0.1 / 16)  # linear to 0 over T0 = 2 epochs of 8 steps: last step 15
    with pytest.raises(ValueError, match="is a BIMP run"):
        train.run(synthetic_config(dense_workdir=os.fspath(tmp_path / "bimp")), tmp_path / "imp", verbose=0)


def test_reused_dense_model_takes_this_runs_precision_policy(tmp_path):
    train.run(synthetic_config(method="dense", mixed_precision=True, deterministic=False), tmp_path / "dense", verbose=0)
    config = synthetic_config(mixed_precision=True, deterministic=False, dense_workdir=os.fspath(tmp_path / "dense"))
    with pytest.raises(ValueError, match="mixed_precision"):  # a different policy is another experiment
        train.run(synthetic_config(deterministic=False, dense_workdir=os.fspath(tmp_path / "dense")), tmp_path / "fp32", verbose=0)
    results = train.run(config, tmp_path / "mixed", verbose=0)
    assert results["final_sparsity"] == pytest.approx(0.75)


def test_run_leaves_the_callers_process_as_it_found_it(tmp_path):
    from absl import flags
    from tensorflow.python.framework import config as tf_config

    train.run(synthetic_config(pretrain_epochs=1, cycles=1, retrain_epochs=1), tmp_path, verbose=0)
    assert not tf_config.is_op_determinism_enabled()
    assert "workdir" not in flags.FLAGS and "config" not in flags.FLAGS, "importing imp_keras.train defines no flags"


def test_workdir_of_the_version_before_keras3_is_the_same_experiment(tmp_path, capsys):
    """A config.json written before the `keras` and `backend` fields, the export presets and the GMP
    fields: read as tf_keras on TensorFlow with the GMP fields' defaults, its list of formats as the
    preset that resolves to it."""
    config = synthetic_config(pretrain_epochs=1, cycles=1, retrain_epochs=1)
    first = train.run(config, tmp_path, verbose=0)
    recorded = json.loads((tmp_path / "config.json").read_text())
    del recorded["keras"], recorded["backend"], recorded["gmp_begin"], recorded["gmp_end"], recorded["gmp_unit"], recorded["gmp_frequency"]
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    assert train.run(config, tmp_path) == first
    assert "has finished" in capsys.readouterr().out

    light = synthetic_config(export_formats=("light",))
    (tmp_path / "fresh").mkdir()
    old = {**rundir.config_dict(light), "export_formats": ["keras", "tflite_float_sparse", "tflite_int8_full"]}
    del old["keras"], old["backend"]
    (tmp_path / "fresh" / "config.json").write_text(json.dumps(old))
    train._record_config(os.fspath(tmp_path / "fresh"), light, True, 1)
    assert "replacing" not in capsys.readouterr().out


# LeNet-300-100's 266,200 kernel weights under gmp_config's cubic schedule to 75 %, updates at steps 8
# (t = 0), 12, 16 (end of epoch 1: t = 0.5, s = 0.75 * 7 / 8, round(174693.75) = 174694 pruned), 20, 24 (the goal).
GMP_SPARSITIES = [0.0, 174694 / 266200, 0.75, 0.75]


def kernel_alive(path):
    model = keras.models.load_model(path)
    return sum(int(np.count_nonzero(layer.kernel.numpy())) for layer in model.layers if hasattr(layer, "kernel"))


def test_gmp_run_leaves_its_run_directory(tmp_path, capsys):
    results = train.run(gmp_config(), tmp_path)
    printed = capsys.readouterr().out
    assert {"config.json", "metrics.csv", "results.json", "ladder", "tensorboard", "accuracy_vs_sparsity.png",
            "lr_schedule.png"} <= set(os.listdir(tmp_path))
    assert not {"dense.keras", "backup", ".lock"} & set(os.listdir(tmp_path))

    rows = rundir.read_metrics(os.path.join(tmp_path, "metrics.csv"))
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3] and not {"phase", "cycle"} & set(rows[0])
    assert [r["sparsity"] for r in rows] == pytest.approx(GMP_SPARSITIES)
    # The dense schedule stretched over the 4 epochs: step decay at steps 16 and 24; each row has the epoch's last step.
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.1, 0.01, 0.001])

    assert os.listdir(tmp_path / "ladder") == ["gmp_sparsity75.00.keras"]
    assert kernel_alive(tmp_path / "ladder" / "gmp_sparsity75.00.keras") == 266200 - 199650
    assert results["method"] == "gmp" and results["cycles"] == [] and results["dense_accuracy"] is None
    assert results["gmp_window"] == {"begin_step": 8, "end_step": 24, "frequency": 4, "updates": 5}
    assert results["final_sparsity"] == 0.75 and results["final_epoch"] == 3 and results["final_accuracy"] == rows[-1]["val_accuracy"]
    assert results["epochs"] == results["budget_epochs"] == 4 and results["dense_epochs"] == 0
    assert sum(layer["pruned"] for layer in results["layers"]) == 199650
    assert "gmp             3    75.00%" in printed and "5 mask updates" in printed
    for image in ("accuracy_vs_sparsity.png", "lr_schedule.png"):
        assert (tmp_path / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with pytest.raises(ValueError, match="is a GMP run: it pruned while it trained and has no dense model"):
        train.run(synthetic_config(dense_workdir=os.fspath(tmp_path)), tmp_path / "imp", verbose=0)


@pytest.mark.parametrize("stop_after", [0, 1, 3])
def test_interrupted_gmp_run_continues_to_the_same_end(tmp_path, stop_after):
    """Interrupted after the epoch ending with the window's first update, mid-window (the backup's
    optimizer step is GMP's position: the resumed fit must continue the schedule, not restart it),
    and after the last epoch (before the results): the re-run ends as an uninterrupted run."""
    whole = train.run(gmp_config(), tmp_path / "whole", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train.run(gmp_config(), tmp_path / "cut", callbacks=[StopAtEpoch(stop_after)], verbose=0)
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = train.run(gmp_config(), tmp_path / "cut", verbose=0)

    drop = ("train_seconds", "wall_seconds")
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}
    rows_whole = rundir.read_metrics(os.path.join(tmp_path, "whole", "metrics.csv"))
    rows_cut = rundir.read_metrics(os.path.join(tmp_path, "cut", "metrics.csv"))
    assert [r["sparsity"] for r in rows_cut] == pytest.approx(GMP_SPARSITIES)
    for a, b in zip(rows_whole, rows_cut, strict=True):
        assert {k: v for k, v in a.items() if k != "epoch_seconds"} == {k: v for k, v in b.items() if k != "epoch_seconds"}
    assert os.listdir(tmp_path / "cut" / "ladder") == ["gmp_sparsity75.00.keras"]
    for a, b in zip(final_masks_and_weights(tmp_path / "whole"), final_masks_and_weights(tmp_path / "cut"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gmp_ladder_file_shows_the_run_finished(tmp_path):
    """A GMP workdir whose final model is on disk but whose backup is gone is refused, not retrained over."""
    with pytest.raises(KeyboardInterrupt):
        train.run(gmp_config(), tmp_path, callbacks=[StopAtEpoch(3)], verbose=0)
    assert os.listdir(tmp_path / "ladder") == ["gmp_sparsity75.00.keras"]
    files.remove(os.path.join(tmp_path, "backup"))
    os.remove(tmp_path / "metrics.csv")
    with pytest.raises(backup.BackupError, match="shows epoch 3 finished \\(ladder/gmp_sparsity75.00.keras\\)"):
        train.run(gmp_config(), tmp_path, verbose=0)


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.endswith("_gmp.py")], ids=lambda p: os.path.basename(p)[:-3])
def test_gmp_config_quick_variant_runs_on_tf_keras(path, tmp_path):
    """The GMP configs (Keras 3 on JAX; test_train_keras3 runs one there) on tf_keras: one epoch of 8
    steps pruned from step 1 to the goal at step 4."""
    config = load_config(path, "quick")
    if not os.path.isdir(config.data.data_dir):
        pytest.skip(f"needs {config.data.data_dir}")
    config.keras, config.backend = "tf_keras", "tensorflow"
    results = train.run(config, tmp_path, verbose=0)
    assert results["gmp_window"] == {"begin_step": 1, "end_step": 4, "frequency": 100, "updates": 2}
    assert results["final_sparsity"] == pytest.approx(config.goal_sparsity, abs=1e-6) and results["epochs"] == 1
    assert os.listdir(tmp_path / "ladder") == [f"gmp_sparsity{100 * config.goal_sparsity:05.2f}.keras"]
    assert results["export"]["passed"] is True


def test_min_alive_floor_holds_through_the_trainer(tmp_path):
    """One-shot IMP to 75 % (199,650 of 266,200 kernel weights): unfloored, fc1 keeps 50,256 of
    its 235,200 weights; `min_alive=0.22` keeps ceil(0.22 * 235,200) = 51,744 there, and global
    selection takes the other 1,488 from fc2 and the logits."""
    results = train.run(synthetic_config(cycles=1, min_alive=0.22), tmp_path, verbose=0)
    pruned = {layer["name"]: layer["pruned"] for layer in results["layers"]}
    assert pruned["fc1/kernel"] == 235200 - 51744
    assert sum(pruned.values()) == 199650
    assert 30000 - pruned["fc2/kernel"] >= 6600 and 1000 - pruned["logits/kernel"] >= 220
    assert kernel_alive(tmp_path / "ladder" / sorted(os.listdir(tmp_path / "ladder"))[-1]) == 266200 - 199650


def test_min_alive_floor_holds_through_a_gmp_run(tmp_path):
    """GMP to 75 %: unfloored, fc1 ends below the floor (50,347 of its 235,200 weights here);
    `min_alive=0.22` holds it at exactly ceil(0.22 * 235,200) = 51,744 alive at the end."""
    unfloored = train.run(gmp_config(), tmp_path / "unfloored", verbose=0)
    assert next(layer["pruned"] for layer in unfloored["layers"] if layer["name"] == "fc1/kernel") > 235200 - 51744
    results = train.run(gmp_config(min_alive=0.22), tmp_path / "floored", verbose=0)
    pruned = {layer["name"]: layer["pruned"] for layer in results["layers"]}
    assert pruned["fc1/kernel"] == 235200 - 51744 and sum(pruned.values()) == 199650
    assert kernel_alive(tmp_path / "floored" / "ladder" / "gmp_sparsity75.00.keras") == 266200 - 199650
