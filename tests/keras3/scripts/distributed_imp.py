"""IMP on Keras 3 over two devices and on one, in one process (KERAS_BACKEND=jax or tensorflow).

JAX: `keras.distribution.DataParallel` over 2 host CPU devices (XLA_FLAGS, set before JAX starts).
TensorFlow: `tf.distribute.MirroredStrategy` over 2 logical CPU devices (set before TensorFlow
starts). The same seeded model, data and plan on one device follow.

Prints one JSON line: for each run, the devices each variable lives on, the alive counts per epoch,
whether every copy of the pruned weights and their optimizer slots is exactly zero, whether the
copies agree, ALLR's peaks, the masks, the weights, the ladder files written, the nonzeros of the
last rung's kernels, and the files the callback exported at the end with their checks.
"""

import json
import os
import sys

BACKEND = os.environ["KERAS_BACKEND"]
if BACKEND == "jax":
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
elif BACKEND == "tensorflow":
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
else:
    sys.exit(f"KERAS_BACKEND must be jax or tensorflow. Received: KERAS_BACKEND={BACKEND!r}")

import contextlib  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import imp_keras  # noqa: E402
from imp_keras.keras3 import masking  # noqa: E402

# 6-16-3 MLP: 96 + 48 = 144 kernel weights; 90 % in 2 cycles, p = 1 - 0.1^(1/2) = 0.6838:
# 144 - round(98.47) = 46, 46 - round(31.45) = 15.
PLAN = imp_keras.Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=2, retrain_epochs=2)


def copies(variable) -> list[np.ndarray]:
    """Every device's copy of `variable`."""
    if BACKEND == "jax":
        return [np.asarray(shard.data) for shard in variable.value.addressable_shards]
    return [v.numpy() for v in getattr(variable.value, "values", [variable.value])]


def run(scope, out_dir) -> dict:
    ladder_dir, export_dir = os.path.join(out_dir, "ladder"), os.path.join(out_dir, "export")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, 6), dtype=np.float32)
    y = np.argmax(x[:, :3] + x[:, 3:], axis=1).astype("int32")
    # Built before the scope, as users often do: `attach` lays its peaks out on the devices.
    schedule = imp_keras.RetrainSchedule(0.1, PLAN, 4, "allr", base_epochs=10)
    with scope:
        model = imp_keras.prunable(keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(16, activation="relu", name="fc"), keras.layers.Dense(3, name="out")]
        ), verbose=0)
        model.compile(keras.optimizers.SGD(schedule, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        callback = imp_keras.IMPCallback(
            PLAN, schedule, verbose=0, ladder_dir=ladder_dir, export_dir=export_dir,
            # Not `keras`: the exporter's check of a reloaded Sequential `.keras` file looks its kernels
            # up by path, and the reloaded ones lose the model's name ("sequential/fc/kernel" becomes
            # "fc/kernel"), on one device as on two.
            export_options={"formats": ["weights_h5"], "verbose": 0},
        )
        history = model.fit(x, y, batch_size=16, epochs=PLAN.total_epochs, shuffle=False, verbose=0, callbacks=[callback])
    last_rung = keras.models.load_model(os.path.join(ladder_dir, sorted(os.listdir(ladder_dir))[-1]))
    zeros, agree = True, True
    for entry in masking.masked_weights(model):
        pruned = keras.ops.convert_to_numpy(entry.mask) == 0
        for variable in [entry.weight, entry.mask, *masking.optimizer_slots(model.optimizer, entry.weight)]:
            values = copies(variable)
            zeros &= all(np.count_nonzero(v[pruned]) == 0 for v in values)
            agree &= all(np.array_equal(values[0], v) for v in values)
    groups = {"model": model.variables, "optimizer": model.optimizer.variables, "peaks": [schedule.eta_star, schedule.allr_d]}
    return {
        "copies": {name: sorted({len(copies(v)) for v in variables}) for name, variables in groups.items()},
        "alive": [round((1 - s) * 144) for s in history.history["sparsity"]],
        "zeros": bool(zeros),
        "copies_agree": bool(agree),
        "eta_star": [float(v) for v in keras.ops.convert_to_numpy(schedule.eta_star)],
        "masks": [(keras.ops.convert_to_numpy(e.mask) != 0).astype(int).ravel().tolist() for e in masking.masked_weights(model)],
        "weights": [keras.ops.convert_to_numpy(v).ravel().tolist() for v in model.trainable_variables],
        "ladder": sorted(os.listdir(ladder_dir)),
        "export": sorted(os.listdir(export_dir)),
        "export_passed": [f.passed for f in callback.export_report.files],
        "export_pruned_zero": [f.pruned_zero for f in callback.export_report.files],
        "last_rung_masks": [
            (keras.ops.convert_to_numpy(v) != 0).astype(int).ravel().tolist() for _, v in masking.plain_kernels(last_rung)
        ],
    }


out_dir = sys.argv[1]
if BACKEND == "jax":
    two = keras.distribution.DataParallel(devices=keras.distribution.list_devices("cpu"))
    distributed = two.scope()
else:
    distributed = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope()
runs = {
    "distributed": run(distributed, os.path.join(out_dir, "distributed")),
    "single": run(contextlib.nullcontext(), os.path.join(out_dir, "single")),
}
print(json.dumps(runs))
