"""IMP under MirroredStrategy on 2 logical CPU devices, and the same run on one device.

Prints one JSON line: alive counts per epoch, whether every replica's pruned kernels and optimizer
slots are exactly zero, whether the replicas agree, ALLR's peaks, and the masks of both runs.
"""

import json

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import numpy as np  # noqa: E402

import imp_keras  # noqa: E402
from imp_keras import keras  # noqa: E402
from imp_keras.tf_keras.masking import masked_weights, optimizer_slots  # noqa: E402

PLAN = imp_keras.Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=2, retrain_epochs=2)


def run(strategy):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, 6), dtype=np.float32)
    y = np.argmax(x[:, :3] + x[:, 3:], axis=1).astype("int32")
    with strategy.scope():
        model = imp_keras.prunable(keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(16, activation="relu", name="fc"), keras.layers.Dense(3, name="out")]
        ))
        schedule = imp_keras.RetrainSchedule(0.1, PLAN, 4, "allr")
        model.compile(keras.optimizers.SGD(schedule, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=16, epochs=PLAN.total_epochs, shuffle=False, verbose=0,
                        callbacks=[imp_keras.IMPCallback(PLAN, schedule, verbose=0)])
    zeros, agree = True, True
    for entry in masked_weights(model):
        variables = [entry.weight] + optimizer_slots(model.optimizer, entry.weight)
        for variable in variables:
            replicas = [v.numpy() for v in getattr(variable, "values", [variable])]
            mask = entry.mask.numpy() == 0
            zeros &= all(np.count_nonzero(r[mask]) == 0 for r in replicas)
            agree &= all(np.array_equal(replicas[0], r) for r in replicas)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "alive": [round((1 - s) * 144) for s in history.history["sparsity"]],
        "zeros": bool(zeros),
        "replicas_agree": bool(agree),
        "eta_star": [float(v) for v in schedule.eta_star.numpy()],
        "masks": [(e.mask.numpy() != 0).astype(int).ravel().tolist() for e in masked_weights(model)],
    }


mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
single = run(tf.distribute.get_strategy())
print(json.dumps({"mirrored": mirrored, "single": single}))
