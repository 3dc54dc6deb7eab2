"""IMP under tf.distribute: MirroredStrategy on 2 logical CPU devices and MultiWorkerMirroredStrategy
with 2 localhost worker processes (fresh processes: devices and TF_CONFIG are fixed at start-up)."""

import json
import os
import socket
import subprocess
import sys

import pytest

from imp_keras import keras

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The checkout under test, whichever imp_keras is installed.
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))


def test_mirrored_two_devices_match_single_device():
    script = os.path.join(SCRIPTS, "mirrored_imp.py")
    env = ENV
    result = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    mirrored, single = runs["mirrored"], runs["single"]
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert mirrored["alive"] == single["alive"] == [144, 144, 46, 46, 15, 15]
    assert mirrored["zeros"] and mirrored["replicas_agree"] and single["zeros"]
    assert mirrored["masks"] == single["masks"]
    assert abs(mirrored["eta_star"][0] - single["eta_star"][0]) < 1e-6


def test_multi_worker_masks_agree_and_chief_keeps_the_ladder(tmp_path, free_port, run_together):
    ports = [str(free_port()), str(free_port())]
    ladders = [tmp_path / "ladder0", tmp_path / "ladder1"]
    commands = [
        [sys.executable, os.path.join(SCRIPTS, "multi_worker_imp.py"), str(i), *ports, os.fspath(ladders[i])] for i in range(2)
    ]
    outputs = []
    for returncode, out, err in run_together(commands, [ENV, ENV]):
        assert returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    # Plan 50 % in 2 cycles over 48 weights: p = 0.29289, 48 - round(14.06) = 34, 34 - round(9.96) = 24.
    assert outputs[0]["alive"] == outputs[1]["alive"] == [48, 34, 24]
    assert outputs[0]["masks"] == outputs[1]["masks"]
    assert outputs[0]["eta_star"] == outputs[1]["eta_star"]
    assert sorted(os.listdir(ladders[0])) == ["cycle01_sparsity29.17.keras", "cycle02_sparsity50.00.keras"]
    assert not ladders[1].exists(), "only the chief (worker 0) keeps ladder files"


def _final_zeros(workdir):
    ladder = os.path.join(workdir, "ladder")
    model = keras.models.load_model(os.path.join(ladder, sorted(os.listdir(ladder))[-1]))
    return [(layer.kernel.numpy() == 0).ravel().tolist() for layer in model.layers if hasattr(layer, "kernel")]


def test_trainer_mirrored_gives_the_single_device_masks(tmp_path):
    env = ENV
    result = subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "train_mirrored.py"), os.fspath(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single, mirrored = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert single["results"]["replicas"] == 1 and mirrored["results"]["replicas"] == 2
    assert mirrored["zeros"] == single["zeros"]
    assert [c["sparsity"] for c in mirrored["results"]["cycles"]] == [c["sparsity"] for c in single["results"]["cycles"]]
    assert mirrored["allr_d"][2:] == pytest.approx(single["allr_d"][2:], rel=1e-4)


QUICK_ON_SYNTHETIC = [
    "--config=configs/mnist_lenet.py:quick", "--config.keras=tf_keras", "--config.backend=tensorflow",
    "--config.data.source=synthetic", "--config.batch_size=32",
    "--config.deterministic=True",
]


def _train_on_two_workers(workdir, free_port, run_together):
    """`python -m imp_keras.train` of the quick config on 2 localhost workers: (return code, stdout,
    stderr) of each, worker 0 (the chief) first."""
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    command = [sys.executable, "-m", "imp_keras.train", *QUICK_ON_SYNTHETIC, "--config.distribution=multi_worker", f"--workdir={workdir}"]
    envs = [dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})) for i in range(2)]
    return run_together([command, command], envs, cwd=REPO, timeout=600)


def test_trainer_multi_worker_gives_the_single_device_masks(tmp_path, free_port, run_together):
    outputs = _train_on_two_workers(tmp_path / "multi", free_port, run_together)
    for returncode, _, err in outputs:
        assert returncode == 0, err[-3000:]
    command = [sys.executable, "-m", "imp_keras.train", *QUICK_ON_SYNTHETIC]
    single = subprocess.run([*command, f"--workdir={tmp_path / 'single'}"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]

    multi_results = json.loads((tmp_path / "multi" / "results.json").read_text())
    single_results = json.loads((tmp_path / "single" / "results.json").read_text())
    assert multi_results["replicas"] == 2 and single_results["replicas"] == 1
    assert _final_zeros(tmp_path / "multi") == _final_zeros(tmp_path / "single")
    assert sorted(os.listdir(tmp_path / "multi" / "ladder")) == sorted(os.listdir(tmp_path / "single" / "ladder"))
    assert "Run directory" in outputs[0][1] and "Run directory" not in outputs[1][1], "only the chief reports"


def test_multi_worker_chief_refusing_a_busy_workdir_stops_every_worker(tmp_path, free_port, run_together):
    """The chief refuses a workdir another live run holds; the other worker must stop too, with an
    error saying why, not wait for the chief forever."""
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # this test process: alive
    (chief_code, _, chief_err), (other_code, _, other_err) = _train_on_two_workers(tmp_path, free_port, run_together)
    assert chief_code != 0 and "is in use by another run" in chief_err, chief_err[-3000:]
    assert other_code != 0 and "lost contact with another worker of the cluster" in other_err, other_err[-3000:]
    assert os.listdir(tmp_path) == [".lock"] and json.loads(lock.read_text())["pid"] == os.getpid()
