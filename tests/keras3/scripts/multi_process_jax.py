"""One process of a multi-process JAX run of IMP on Keras 3 (`keras.distribution.initialize`,
DataParallel over every process's CPU device), or, with NUM_PROCESSES 1, the same run on one device.

Usage: multi_process_jax.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR. Each process is given the ladder
directory OUT_DIR/ladder<PROCESS_ID>. Prints one JSON line: the alive counts per epoch, ALLR's
peaks, the masks and the weights the process ended with.
"""

import json
import os
import sys

index, processes, port, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402

if processes > 1:
    keras.distribution.initialize(job_addresses=f"localhost:{port}", num_processes=processes, process_id=index)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices("cpu")))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402  (a multi-process distribution shards only a tf.data.Dataset)

import imp_keras  # noqa: E402

# 4-8-2 MLP, 48 kernel weights; 50 % in 2 cycles: p = 0.29289, 48 - round(14.06) = 34, 34 - round(9.96) = 24.
PLAN = imp_keras.Plan(goal_sparsity=0.5, cycles=2, pretrain_epochs=1, retrain_epochs=1)
keras.utils.set_random_seed(0)
x = np.random.RandomState(0).randn(64, 4).astype("float32")
y = np.random.RandomState(1).randn(64, 2).astype("float32")
model = imp_keras.prunable(
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="d1"), keras.layers.Dense(2, name="d2")]), verbose=0
)
schedule = imp_keras.RetrainSchedule(0.05, PLAN, 4, "allr", base_epochs=10)
model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "mse")
# No export_dir: the exporter's checks call `model.predict` on NumPy arrays, which Keras refuses under
# a multi-process distribution ("the data must be provided as a `tf.data.Dataset` instance").
callback = imp_keras.IMPCallback(PLAN, schedule, ladder_dir=os.path.join(out_dir, f"ladder{index}"), verbose=0)
history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=PLAN.total_epochs, verbose=0, callbacks=[callback])
print(json.dumps({
    "alive": [round((1 - s) * 48) for s in history.history["sparsity"]],
    "eta_star": [float(v) for v in keras.ops.convert_to_numpy(schedule.eta_star)],
    "masks": [(keras.ops.convert_to_numpy(e.mask) != 0).astype(int).ravel().tolist() for e in imp_keras.masked_weights(model)],
    "weights": [keras.ops.convert_to_numpy(v).ravel().tolist() for v in model.trainable_variables],
}), flush=True)
