"""A suite that tries to break a trainer run, and the outcome each fault must have.

Every run is tests/scripts/kill_during_run.py's config (LeNet-300-100, 256 synthetic examples,
8 steps an epoch, 2 dense epochs then 2 ALLR cycles of 2 epochs, op determinism on): in a fresh
process where the test says so (SIGKILL, two concurrent runs), in this one otherwise. Every
finished run must match one uninterrupted run: masks and weights of every model file bit for bit,
results.json and every metrics.csv row (timings aside)."""

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import imp_keras
from imp_keras import InvariantError, NonFiniteError, keras, models, rundir, train
from imp_keras.backup import BackupError, saved_epoch
from imp_keras.tf_keras.masking import masked_weights

from conftest import SHARED_DATA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "kill_during_run.py")
ENV = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
TIMINGS = ("train_seconds", "wall_seconds", "epoch_seconds")

_spec = importlib.util.spec_from_file_location("kill_during_run", SCRIPT)
kill_during_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kill_during_run)
config = kill_during_run.config


def script(workdir, *args):
    """Runs the script in a fresh process: the same command every time, faults given as arguments."""
    return subprocess.run(
        [sys.executable, SCRIPT, os.fspath(workdir), *args], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300
    )


def csv_rows(workdir):
    """metrics.csv as written, in file order, timings aside."""
    with open(os.path.join(workdir, rundir.METRICS), newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(f)]


def model_weights(path):
    return [w.numpy() for w in keras.models.load_model(os.fspath(path)).weights]


def assert_same_run(workdir, reference):
    """`workdir` finished exactly as the uninterrupted `reference`."""
    files = set(os.listdir(workdir))
    assert rundir.BACKUP not in files and ".lock" not in files
    mine, theirs = (rundir.read_json(os.path.join(w, rundir.RESULTS)) for w in (workdir, reference))
    assert {k: v for k, v in mine.items() if k not in TIMINGS} == {k: v for k, v in theirs.items() if k not in TIMINGS}
    rows = csv_rows(workdir)
    assert [row["epoch"] for row in rows] == [str(e) for e in range(6)]  # none missing, none twice
    assert rows == csv_rows(reference)
    ladder = sorted(os.listdir(os.path.join(workdir, rundir.LADDER)))
    assert ladder == sorted(os.listdir(os.path.join(reference, rundir.LADDER))) == [
        "cycle01_sparsity50.00.keras", "cycle02_sparsity75.00.keras"
    ]
    for name in [rundir.DENSE_MODEL] + [os.path.join(rundir.LADDER, rung) for rung in ladder]:
        for a, b in zip(model_weights(os.path.join(workdir, name)), model_weights(os.path.join(reference, name))):
            np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in a fresh process."""
    workdir = tmp_path_factory.mktemp("reference")
    result = script(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imp_keras from {os.path.join(ROOT, 'imp_keras')}" in result.stdout
    return workdir


# ---------------------------------------------------------------------------------------------------
# 1. SIGKILL at every stage, restarted with the same command

KILLS = [  # (epoch, batch or "end", stage, epoch the next run resumes at)
    ("1", "3", "mid-pretraining", 1),
    ("2", "0", "first batch of cycle 1's pruning epoch, just after its pruning", 2),
    ("3", "5", "mid-retraining", 3),
    ("5", "7", "last batch of the last epoch", 5),
    ("5", "end", "after the last epoch was backed up, before results.json", None),
]


def test_sigkill_at_every_stage_then_the_same_command_ends_as_an_uninterrupted_run(tmp_path, reference):
    workdir = tmp_path / "run"
    resumes_at = None
    for epoch, batch, stage, next_epoch in KILLS:
        killed = script(workdir, "--kill", epoch, batch)
        assert killed.returncode == -signal.SIGKILL, f"{stage}: {killed.stderr[-3000:]}"
        if resumes_at is not None:
            assert f"resuming the run in {workdir} at epoch {resumes_at} of 6" in killed.stdout, stage
        assert f"taking over the lock {workdir / '.lock'}" in killed.stdout or resumes_at is None
        assert not (workdir / rundir.RESULTS).exists()
        done = int(epoch) if batch == "end" else int(epoch) - 1
        assert csv_rows(workdir) == csv_rows(reference)[: done + 1], stage
        resumes_at = next_epoch
    dead = json.loads((workdir / ".lock").read_text())["pid"]
    finished = script(workdir)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"taking over the lock {workdir / '.lock'} left by process {dead}, which is gone" in finished.stdout
    assert "resuming" not in finished.stdout  # the last epoch was backed up: only the summary was left
    assert_same_run(workdir, reference)


# ---------------------------------------------------------------------------------------------------
# 2. Damaged state


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """A run killed after epoch 3 was backed up: backup/chief holds epoch 3, backup/previous epoch 2."""
    workdir = tmp_path_factory.mktemp("cut")
    assert script(workdir, "--kill", "3", "end").returncode == -signal.SIGKILL
    assert saved_epoch(os.fspath(workdir / rundir.BACKUP)) == 3
    return workdir


@pytest.fixture
def damaged(cut, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(cut, workdir)
    return workdir


def latest(workdir, suffix):
    (path,) = [p for p in (workdir / "backup" / "chief").iterdir() if p.name.endswith(suffix) or p.name == suffix]
    return path


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)


DAMAGES = {
    "truncated data file": lambda w: os.truncate(latest(w, ".data-00000-of-00001"), 1000),
    "one byte flipped in the data file": lambda w: flip_byte(latest(w, ".data-00000-of-00001")),
    "index file missing": lambda w: latest(w, ".index").unlink(),
    "checkpoint state file garbage": lambda w: latest(w, "checkpoint").write_text("garbage {{{"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_damaged_latest_backup_falls_back_to_the_previous_epoch(damaged, reference, damage, capsys):
    DAMAGES[damage](damaged)
    train.run(config(), damaged, verbose=1)
    out = capsys.readouterr().out
    assert "the latest backup is damaged" in out and "continuing from the previous one, of epoch 2" in out
    assert f"resuming the run in {damaged} at epoch 3 of 6" in out
    assert_same_run(damaged, reference)


def test_save_killed_halfway_is_ignored(damaged, reference, capsys):
    (damaged / "backup" / "chief" / "ckpt-5_temp").mkdir()
    (damaged / "backup" / "chief" / "ckpt-5_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 10)
    train.run(config(), damaged, verbose=1)
    out = capsys.readouterr().out
    assert f"resuming the run in {damaged} at epoch 4 of 6" in out and "damaged" not in out
    assert_same_run(damaged, reference)


def untouched(workdir):
    """The run's files and their sizes (the lock aside: a refused run takes over the dead one's, then lets go)."""
    return sorted((p.relative_to(workdir), p.stat().st_size) for p in workdir.rglob("*") if p.is_file() and p.name != ".lock")


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda w: (DAMAGES["truncated data file"](w), os.truncate(next((w / "backup" / "previous").glob("*.index")), 10)),
            r"The backup of this run is damaged: .*ckpt-4 cannot be read .*; and so is the previous one: .*ckpt-3 cannot be read",
        ),
        (
            lambda w: (DAMAGES["one byte flipped in the data file"](w), shutil.rmtree(w / "backup" / "previous")),
            r"The backup of this run is damaged: .*Checksum does not match.*; there is no previous backup to fall back to",
        ),
        (
            lambda w: shutil.rmtree(w / "backup"),
            r"shows epoch 3 finished \(metrics.csv\), but it has no backup in .*backup: continuing would silently train epochs 0 to 3 again",
        ),
        (
            lambda w: (shutil.rmtree(w / "backup"), (w / rundir.METRICS).unlink(), (w / rundir.DENSE_MODEL).unlink()),
            r"shows epoch 3 finished \(ladder/cycle01_sparsity50.00.keras\), but it has no backup",
        ),
        (
            lambda w: ((w / "backup" / "chief").rename(w / "backup" / "elsewhere"), shutil.rmtree(w / "backup" / "previous")),
            r"shows epoch 3 finished \(metrics.csv\), but it has no backup",
        ),
    ],
    ids=["latest and previous damaged", "latest damaged, no previous", "no backup, metrics rows", "no backup, a ladder file",
         "backup folder emptied"],
)
def test_damaged_state_beyond_repair_is_refused_before_training(damaged, damage, message):
    damage(damaged)
    before = untouched(damaged)
    with pytest.raises(BackupError, match=message):
        train.run(config(), damaged, verbose=0)
    assert untouched(damaged) == before


@pytest.mark.parametrize(
    "name, content, message",
    [
        (rundir.METRICS, "epoch,loss\n0,0.5\n1,0.4,9\n", r"metrics.csv is damaged: line 3 has more fields than the header. Repair it"),
        (rundir.METRICS, "\x00\x01garbage", r"metrics.csv is damaged: its header .* has no `epoch` column"),
        (rundir.CONFIG, '{"name": "kill", "seed"', r"config.json is damaged: not valid JSON .* which a re-run must match"),
    ],
)
def test_damaged_run_files_give_a_clear_error(damaged, name, content, message):
    (damaged / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        train.run(config(), damaged, verbose=0)


def test_damaged_results_of_a_finished_run_give_a_clear_error(reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    (workdir / rundir.RESULTS).write_text('{"name": ')
    with pytest.raises(ValueError, match=r"results.json is damaged: not valid JSON .* The run had finished"):
        train.run(config(), workdir, verbose=0)


# ---------------------------------------------------------------------------------------------------
# Two runs on one workdir


def test_second_run_while_the_first_runs_refuses_naming_the_lock(tmp_path):
    workdir, hold = tmp_path / "run", tmp_path / "release"
    first = subprocess.Popen(
        [sys.executable, SCRIPT, os.fspath(workdir), "--hold", os.fspath(hold)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "release.started").exists():
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the first run never started training"
            time.sleep(0.1)
        with pytest.raises(RuntimeError, match=rf"in use by another run \(lock file {workdir / '.lock'}: {{'pid': {first.pid}, "):
            train.run(config(), workdir, verbose=0)
    finally:
        first.kill()  # its lock is left behind, as by any crash
        first.communicate()
    assert not (workdir / rundir.METRICS).exists()


def test_lock_left_empty_is_refused_with_instructions(tmp_path):
    tmp_path.joinpath(".lock").write_text("")
    with pytest.raises(RuntimeError, match=r"lock file .*\.lock: unreadable\)\. Wait for it to finish, or remove the lock file"):
        train.run(config(), tmp_path, verbose=0)


# ---------------------------------------------------------------------------------------------------
# 3. Numerical faults and broken invariants during IMP


class Poison(keras.callbacks.Callback):
    """Writes NaN into logits/kernel before batch 3 of epoch 4 (the first epoch of IMP cycle 2)."""

    def __init__(self):
        super().__init__()
        self.epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == (4, 3):
            kernel = masked_weights(self.model)[-1].weight
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def test_nan_during_imp_stops_naming_cycle_and_epoch_and_keeps_the_last_good_state(tmp_path, reference):
    message = (
        r"The training loss is nan at batch 3 of epoch 4 \(IMP cycle 2 of 2, retraining at 75.00% sparsity\)\.\n"
        r"The run in .* stopped; it keeps the backup of epoch 3 \(.*backup\) and the ladder models "
        r"cycle01_sparsity50.00.keras, and no results.json"
    )
    with pytest.raises(NonFiniteError, match=message):
        train.run(config(), tmp_path, callbacks=[Poison()], verbose=0)
    assert saved_epoch(os.fspath(tmp_path / rundir.BACKUP)) == 3
    assert [row["epoch"] for row in csv_rows(tmp_path)] == ["0", "1", "2", "3"]
    assert os.listdir(tmp_path / rundir.LADDER) == ["cycle01_sparsity50.00.keras"]
    assert not (tmp_path / rundir.RESULTS).exists() and not (tmp_path / ".lock").exists()
    train.run(config(), tmp_path, verbose=0)  # the same command, the fault gone: the kept state was good
    assert_same_run(tmp_path, reference)


def test_learning_rate_blowing_up_in_pretraining_is_named(tmp_path):
    blowing_up = config()
    blowing_up.lr.initial = 1e30
    with pytest.raises(NonFiniteError, match=r"at batch \d of epoch 0 \(dense pretraining, before IMP cycle 1 of 2\)\.\n.* keeps no backup"):
        train.run(blowing_up, tmp_path, verbose=0)
    assert not (tmp_path / rundir.METRICS).exists()


class Revive(keras.callbacks.Callback):
    """At the start of epoch 5 (cycle 2), gives a weight pruned in cycle 1 its mask back and
    prunes an alive one instead: the alive count stays right, the masks are not monotone."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 5:
            entry = masked_weights(self.model)[0]
            mask = entry.mask.numpy()
            alive, pruned = np.argwhere(mask != 0)[0], np.argwhere(mask == 0)[0]
            mask[tuple(alive)], mask[tuple(pruned)] = 0, 1
            imp_keras.apply_masks([entry], [mask], self.model.optimizer)


def test_broken_invariant_stops_at_the_end_of_the_cycle(tmp_path):
    message = (
        r"at the end of IMP cycle 2 of 2 \(epoch 5\):\n  - fc1/kernel: 1 weights pruned earlier are alive again.*\n"
        r"The run in .* keeps the backup of epoch 4"
    )
    with pytest.raises(InvariantError, match=message):
        train.run(config(), tmp_path, callbacks=[Revive()], verbose=0)
    assert os.listdir(tmp_path / rundir.LADDER) == ["cycle01_sparsity50.00.keras"]


# ---------------------------------------------------------------------------------------------------
# 4. Bad input that only the data or the model can tell: refused before any training


def test_batch_larger_than_the_training_files_is_refused(tmp_path):
    mnist = os.path.join(SHARED_DATA, "mnist")
    if not os.path.isdir(mnist):
        pytest.skip("needs ../shared/data/mnist")
    too_big = config()
    too_big.data.source, too_big.data.data_dir, too_big.batch_size = "files", mnist, 60_001
    with pytest.raises(ValueError, match=r"`batch_size` must be at most the 60000 training examples. Received: batch_size=60001"):
        train.run(too_big, tmp_path, verbose=0)
    assert sorted(os.listdir(tmp_path)) == [rundir.CONFIG]


def test_model_with_nothing_prunable_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(models.MODELS, "no_kernels", lambda input_shape, classes, keras=keras: keras.Sequential(
        [keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Activation("linear")]
    ))
    nothing = config()
    nothing.model.name = "no_kernels"
    with pytest.raises(ValueError, match=r"has no prunable weights: no trainable kernel \(or PrunableLayer\) outside `exclude`"):
        train.run(nothing, tmp_path, verbose=0)
    assert sorted(os.listdir(tmp_path)) == [rundir.CONFIG]


def test_goal_the_selection_cannot_reach_is_refused_before_training(tmp_path, capsys):
    unreachable = config()
    unreachable.selection, unreachable.goal_sparsity = "uniform_plus", 0.9995
    message = (
        r"goal_sparsity=0.9995 needs 266,067 of the 266,200 prunable weights removed, but selection='uniform_plus' "
        r"can remove at most 266,000 \(99.92% sparsity\)"
    )
    with pytest.raises(ValueError, match=message):
        train.run(unreachable, tmp_path, verbose=0)
    assert sorted(p for p in os.listdir(tmp_path) if p != rundir.TENSORBOARD) == [rundir.CONFIG]
    unreachable.goal_sparsity = 0.9999  # a workdir without a trained epoch takes a corrected config
    with pytest.raises(ValueError, match="goal_sparsity=0.9999 needs"):
        train.run(unreachable, tmp_path, verbose=1)
    assert "holds no trained epoch yet; replacing its config.json (goal_sparsity (0.9995 there, 0.9999 here))" in capsys.readouterr().out


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda w: train.run({"name": "x"}, w), TypeError, r"`config` must be an ml_collections.ConfigDict"),
        (lambda w: train.run(config(), None), TypeError, r"`workdir` must be a path. Received: workdir=None"),
        (lambda w: train.run(config(), w, callbacks=keras.callbacks.History()), TypeError, r"`callbacks` must be a list of Keras callbacks"),
        (lambda w: train.run(config(), w, callbacks=["print"]), TypeError, r"`callbacks` must be a tf_keras `Callback`"),
        (lambda w: train.run(config(), w, verbose=3), ValueError, r"`verbose` must be 0, 1 or 2. Received: verbose=3"),
    ],
    ids=["config", "workdir", "callbacks not a list", "callbacks item", "verbose"],
)
def test_run_arguments_are_checked(tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(tmp_path)
    assert os.listdir(tmp_path) == []


def test_keras3_callback_is_refused_with_instructions(tmp_path):
    keras3 = pytest.importorskip("keras")
    with pytest.raises(TypeError, match=r"`callbacks` is a Keras 3 object"):
        train.run(config(), tmp_path, callbacks=[keras3.callbacks.Callback()])


# ---------------------------------------------------------------------------------------------------
# 6. Untrusted files


def test_dense_model_file_with_code_is_not_run(tmp_path):
    """A `.keras` file holding a Lambda layer (code) as the dense model of `dense_workdir`: Keras'
    safe mode refuses it, and the code never runs."""
    dense = tmp_path / "dense"
    dense.mkdir()
    dense_config = config()
    dense_config.method = "dense"
    rundir.write_json(os.fspath(dense / rundir.CONFIG), rundir.config_dict(dense_config))
    marker = tmp_path / "pwned"
    touch = eval(f"lambda x: x + (__import__('pathlib').Path({os.fspath(marker)!r}).touch() or 0.0)")  # no closure: saved whole
    evil = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Lambda(touch), keras.layers.Dense(10)])
    marker.unlink()  # building the model ran it once
    evil.save(os.fspath(dense / rundir.DENSE_MODEL))
    reuse = config()
    reuse.dense_workdir = os.fspath(dense)
    with pytest.raises(ValueError, match=r"`dense_workdir`: .*dense.keras cannot be loaded \(ValueError: .*Lambda.*safe_mode"):
        train.run(reuse, tmp_path / "imp", verbose=0)
    assert not marker.exists()
    keras.models.load_model(os.fspath(dense / rundir.DENSE_MODEL), safe_mode=False)
    assert marker.exists()  # the payload is live: outside safe mode, loading runs it
