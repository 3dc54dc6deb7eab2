"""Run with KERAS_BACKEND set; prints, as JSON, whether the schedule alone imported TensorFlow, and
what plain SGD applied in `fit`'s step after `record_allr` changed a peak between epochs, with the
schedule attached to the optimizer and without."""

import json
import sys

import keras
import numpy as np

from imp_keras.core.plan import Plan
from imp_keras.keras3.schedules import RetrainSchedule


def slr_at_step_59() -> float:
    base = keras.optimizers.schedules.PiecewiseConstantDecay([20, 35], [0.1, 0.01, 0.001])
    return float(RetrainSchedule(base, Plan(0.9, 2, 10, 2), 5, "slr")(59))


def allr_in_fit(attach: bool) -> dict:
    # Cycle 1 is epoch 0, cycle 2 epoch 1, one step each without warm-up: each step applies its cycle's peak.
    plan = Plan(goal_sparsity=0.5, cycles=2, pretrain_epochs=0, retrain_epochs=1)
    schedule = RetrainSchedule(None, plan, 1, "allr", base_epochs=10, max_learning_rate=0.1, min_learning_rate=0.0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    # Loss w * 1: gradient 1, so each step sets w to w - learning rate.
    model.compile(keras.optimizers.SGD(schedule), loss=lambda y, p: keras.ops.mean(p))
    kernels = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            kernels.append(float(self.model.layers[0].kernel.numpy()[0, 0]))
            if epoch == 1:
                schedule.record_allr(2, 0.2)

    if attach:
        model.optimizer.build(model.trainable_variables)
        schedule.attach(model.optimizer)
    model.fit(np.ones((1, 1)), np.zeros((1, 1)), epochs=2, batch_size=1, verbose=0, callbacks=[Probe()])
    kernels.append(float(model.layers[0].kernel.numpy()[0, 0]))
    return {"kernels": kernels, "lr_step_1": float(schedule(1)), "eta_star": [float(v) for v in schedule.eta_star.numpy()]}


out = {"backend": keras.backend.backend(), "slr_59": slr_at_step_59()}
out["tensorflow_imported"] = "tensorflow" in sys.modules  # before `fit`, whose data adapters may import it
out.update(attached=allr_in_fit(True), detached=allr_in_fit(False))
print(json.dumps(out))
