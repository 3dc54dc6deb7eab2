"""IMP under tf.distribute.MirroredStrategy with 2 logical CPU devices (a fresh process: logical
devices must be set before TensorFlow starts)."""

import json
import os
import subprocess
import sys


def test_mirrored_two_devices_match_single_device():
    script = os.path.join(os.path.dirname(__file__), "scripts", "mirrored_imp.py")
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
