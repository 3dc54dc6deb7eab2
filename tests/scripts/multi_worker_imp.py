"""One worker of a 2-worker MultiWorkerMirroredStrategy IMP run on localhost.

Usage: multi_worker_imp.py TASK_INDEX PORT0 PORT1 LADDER_DIR. Prints one JSON line with the
worker's alive counts per epoch and the masks it ended with.
"""

import json
import os
import sys

index, port0, port1, ladder_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
os.environ["TF_CONFIG"] = json.dumps(
    {"cluster": {"worker": [f"localhost:{port0}", f"localhost:{port1}"]}, "task": {"type": "worker", "index": index}}
)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import imp_keras  # noqa: E402
from imp_keras import keras  # noqa: E402
from imp_keras.tf_keras.masking import masked_weights  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()
plan = imp_keras.Plan(goal_sparsity=0.5, cycles=2, pretrain_epochs=1, retrain_epochs=1)
keras.utils.set_random_seed(0)
x = np.random.RandomState(0).randn(64, 4).astype("float32")
y = np.random.RandomState(1).randn(64, 2).astype("float32")
with strategy.scope():
    model = imp_keras.prunable(keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, name="d1"), keras.layers.BatchNormalization(), keras.layers.Dense(2, name="d2")]
    ))
    schedule = imp_keras.RetrainSchedule(0.05, plan, 4, "allr")
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "mse")
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
history = model.fit(data, steps_per_epoch=4, epochs=plan.total_epochs, verbose=0,
                    callbacks=[imp_keras.IMPCallback(plan, schedule, ladder_dir=ladder_dir, verbose=0)])
print(json.dumps({
    "alive": [round((1 - s) * 48) for s in history.history["sparsity"]],
    "masks": [(e.mask.numpy() != 0).astype(int).ravel().tolist() for e in masked_weights(model)],
    "eta_star": [float(v) for v in schedule.eta_star.numpy()],
}), flush=True)
