"""IMP under tf.distribute: MirroredStrategy on 2 logical CPU devices and MultiWorkerMirroredStrategy
with 2 localhost worker processes (fresh processes: devices and TF_CONFIG are fixed at start-up)."""

import json
import os
import socket
import subprocess
import sys

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


def test_mirrored_two_devices_match_single_device():
    script = os.path.join(SCRIPTS, "mirrored_imp.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    mirrored, single = runs["mirrored"], runs["single"]
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert mirrored["alive"] == single["alive"] == [144, 144, 46, 46, 15, 15]
    assert mirrored["zeros"] and mirrored["replicas_agree"] and single["zeros"]
    assert mirrored["masks"] == single["masks"]
    assert abs(mirrored["eta_star"][0] - single["eta_star"][0]) < 1e-6


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_multi_worker_masks_agree_and_chief_keeps_the_ladder(tmp_path):
    ports = [str(_free_port()), str(_free_port())]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    ladders = [tmp_path / "ladder0", tmp_path / "ladder1"]
    workers = [
        subprocess.Popen(
            [sys.executable, os.path.join(SCRIPTS, "multi_worker_imp.py"), str(i), *ports, os.fspath(ladders[i])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for i in range(2)
    ]
    try:
        results = [worker.communicate(timeout=300) for worker in workers]
    finally:  # a worker left hanging (its peer failed) must not outlive the test
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    outputs = []
    for worker, (out, err) in zip(workers, results):
        assert worker.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    # Plan 50 % in 2 cycles over 48 weights: p = 0.29289, 48 - round(14.06) = 34, 34 - round(9.96) = 24.
    assert outputs[0]["alive"] == outputs[1]["alive"] == [48, 34, 24]
    assert outputs[0]["masks"] == outputs[1]["masks"]
    assert outputs[0]["eta_star"] == outputs[1]["eta_star"]
    assert sorted(os.listdir(ladders[0])) == ["cycle01_sparsity29.17.keras", "cycle02_sparsity50.00.keras"]
    assert not ladders[1].exists(), "only the chief (worker 0) keeps ladder files"
