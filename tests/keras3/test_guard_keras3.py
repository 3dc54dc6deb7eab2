"""NaNGuard in every flavour (tests/test_guard.py's guarantees, on the conformance set-up): a NaN or
Inf in the loss, the weights, the optimizer state or the validation loss stops fit with a message
naming the batch, the epoch and the IMP cycle, raised from a batch hook before BackupAndRestore
(listed before the guard) saves the faulty epoch.

Set-up: the 12-8-3 MLP, 64 examples in batches of 16 (4 steps an epoch), PLAN 90 % in 3 cycles
after 1 dense epoch, 1 epoch a cycle: epoch 1 retrains at 1 - 0.1^(1/3) = 53.58 % sparsity,
epoch 3 at 90.00 %.
"""

import json
import os

import numpy as np
import pytest

import imp_keras

from imp_keras import Plan

PLAN = Plan(goal_sparsity=0.9, cycles=3, pretrain_epochs=1, retrain_epochs=1)


def compile_imp(api, model, optimizer=None):
    schedule = api.RetrainSchedule(0.1, PLAN, steps_per_epoch=4, kind="slr")
    model.compile(optimizer or api.keras.optimizers.SGD(schedule, momentum=0.9), loss=api.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return schedule


def inject(api, numpy, epoch, batch, value, into="weight"):
    """A callback writing `value` into fc1/kernel[0, 0] (or its momentum), or logits/kernel[0, 0]
    (`into="logits"`), before batch `batch` of epoch `epoch`."""

    class Inject(api.keras.callbacks.Callback):
        current = -1

        def on_epoch_begin(self, e, logs=None):
            self.current = e

        def on_train_batch_begin(self, b, logs=None):
            if (self.current, b) == (epoch, batch):
                getattr(self.model, "jax_state_sync", lambda: None)()  # JAX: the next step reads the variables again
                weight = api.masked_weights(self.model)[1 if into == "logits" else 0].weight
                target = api.masking.optimizer_slots(self.model.optimizer, weight)[0] if into == "momentum" else weight
                values = numpy(target).copy()
                values[0, 0] = value
                target.assign(values)

    return Inject()


def backed_up_epoch(api, directory) -> int:
    """The last epoch BackupAndRestore saved in `directory`."""
    if api.FLAVOUR == "tf_keras":
        from imp_keras.backup import saved_epoch

        return saved_epoch(str(directory))
    with open(os.path.join(directory, "training_metadata.json")) as f:
        return json.load(f)["epoch"] - 1  # Keras 3 records the next epoch to train


def fit(api, model, data, callbacks, **kwargs):
    return model.fit(*data, batch_size=16, epochs=PLAN.total_epochs, callbacks=callbacks, verbose=0, shuffle=False, **kwargs)


def test_nan_loss_stops_inside_the_epoch_before_the_backup(api, make_mlp, train_data, numpy, tmp_path):
    model = api.prunable(make_mlp(api))
    schedule = compile_imp(api, model)
    callbacks = [
        api.IMPCallback(PLAN, schedule, verbose=0), api.keras.callbacks.BackupAndRestore(str(tmp_path)),
        api.NaNGuard(PLAN), inject(api, numpy, 3, 2, np.nan, into="logits"),
    ]
    message = r"^The training loss is nan at batch 2 of epoch 3 \(IMP cycle 3 of 3, retraining at 90.00% sparsity\)\.$"
    with pytest.raises(api.NonFiniteError, match=message):
        fit(api, model, train_data, callbacks)
    assert backed_up_epoch(api, tmp_path) == 2


def test_inf_weight_after_the_last_step_is_caught_before_the_epoch_ends(api, make_mlp, train_data, numpy, tmp_path):
    """Inf momentum before the last step of epoch 1: that step's loss is finite, the kernel it updates is not."""
    model = api.prunable(make_mlp(api))
    schedule = compile_imp(api, model)
    callbacks = [
        api.keras.callbacks.BackupAndRestore(str(tmp_path)), api.IMPCallback(PLAN, schedule, verbose=0),
        api.NaNGuard(PLAN), inject(api, numpy, 1, 3, np.inf, into="momentum"),
    ]
    message = (
        r"^NaN or Inf in 2 variable\(s\) \(\S*fc1\S*kernel\S*, \S*fc1\S*kernel\S*\) after the last step at batch 3 of "
        r"epoch 1 \(IMP cycle 1 of 3, retraining at 53.58% sparsity\)\.$"
    )
    with pytest.raises(api.NonFiniteError, match=message):
        fit(api, model, train_data, callbacks)
    assert backed_up_epoch(api, tmp_path) == 0


def test_nan_validation_loss_is_caught(api, train_data):
    k = api.keras
    model = k.Sequential([k.Input((12,)), k.layers.Dense(3)])  # no ReLU to hide the NaN inputs
    model.compile(k.optimizers.SGD(0.1), loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = train_data
    with pytest.raises(api.NonFiniteError, match=r"^The validation loss is nan at epoch 0\.$"):
        model.fit(x, y, batch_size=16, epochs=1, validation_data=(np.full_like(x, np.nan), y), callbacks=[api.NaNGuard()], verbose=0)


def test_weights_checked_at_epoch_end_when_fit_does_not_know_the_last_batch(api, make_mlp, train_data, numpy):
    """A generator (fit cannot count its batches) of one batch: the momentum's Inf reaches the kernel in the only step."""
    model = api.prunable(make_mlp(api))
    compile_imp(api, model, api.keras.optimizers.SGD(0.1, momentum=0.9))
    x, y = train_data
    batches = ((x[:16], y[:16]) for _ in range(1))
    callbacks = [api.IMPCallback(PLAN, verbose=0), api.NaNGuard(), inject(api, numpy, 0, 0, np.inf, into="momentum")]  # IMPCallback builds the slots
    with pytest.raises(api.NonFiniteError, match=r"^NaN or Inf in 2 variable\(s\) .* after the last step at epoch 0\.$"):
        model.fit(batches, epochs=1, callbacks=callbacks, verbose=0, shuffle=False)


def test_weights_checked_when_steps_per_execution_does_not_divide_the_epoch(api, make_mlp, train_data, numpy):
    """4 steps an epoch, 3 a call: Keras 3 reports the last call's end as batch 5, past the last
    step. The Inf goes into the momentum before the last step: its loss is finite, its update not."""
    if api.FLAVOUR == "keras3" and api.keras.backend.backend() == "torch":
        pytest.skip("Keras 3 on PyTorch takes steps_per_execution=1 only")
    model = api.prunable(make_mlp(api))
    model.compile(api.keras.optimizers.SGD(0.1, momentum=0.9), loss=api.keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=3)
    callbacks = [api.IMPCallback(PLAN, verbose=0), api.NaNGuard(), inject(api, numpy, 0, 3, np.inf, into="momentum")]
    with pytest.raises(api.NonFiniteError, match=r"^NaN or Inf in 2 variable\(s\) .* after the last step at batch [35] of epoch 0\.$"):
        model.fit(*train_data, batch_size=16, epochs=1, callbacks=callbacks, verbose=0, shuffle=False)


def test_subclassing_the_top_level_class_points_to_the_flavours():
    class Guard(imp_keras.NaNGuard):
        pass

    with pytest.raises(TypeError, match=r"Guard subclasses `imp_keras.NaNGuard`, .* subclass `imp_keras.tf_keras.NaNGuard` or `imp_keras.keras3.NaNGuard`"):
        Guard()


def test_guard_bad_plan(api):
    with pytest.raises(TypeError, match=r"`plan` must be an imp_keras.Plan or None. Received: plan=3"):
        api.NaNGuard(3)
