"""`imp_keras.train.run` with distribution="mirrored" on 2 logical CPU devices and with "none".

Usage: train_mirrored.py WORKDIR. Prints one JSON line per run: its results and the zero pattern
of its final ladder model.
"""

import json
import os
import sys

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

from imp_keras import experiment, keras, rundir, train  # noqa: E402

workdir = sys.argv[1]
for strategy in ("none", "mirrored"):
    config = experiment.base_config()
    config.data.source = "synthetic"
    config.batch_size = 32
    config.pretrain_epochs = 2
    config.cycles = 2
    config.retrain_epochs = 1
    config.retrain_kind = "allr"
    config.deterministic = True
    config.distribution = strategy
    run_dir = os.path.join(workdir, strategy)
    results = train.run(config, run_dir, verbose=0)
    ladder = os.path.join(run_dir, rundir.LADDER)
    model = keras.models.load_model(os.path.join(ladder, sorted(os.listdir(ladder))[-1]))
    zeros = [(layer.kernel.numpy() == 0).astype(int).ravel().tolist() for layer in model.layers if hasattr(layer, "kernel")]
    rows = rundir.read_metrics(os.path.join(run_dir, rundir.METRICS))
    print(json.dumps({"strategy": strategy, "results": results, "zeros": zeros, "allr_d": [r.get("allr_d") for r in rows]}), flush=True)
