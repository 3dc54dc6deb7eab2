"""NaNGuard: a NaN or Inf in the loss, the weights, the optimizer state or the validation loss stops
fit with a message naming the epoch and the IMP cycle, before BackupAndRestore saves the epoch
(even with the guard after it in the callback list). Set-up of test_callback: 4 steps an epoch."""

import numpy as np
import pytest
import tensorflow as tf

from imp_keras import IMPCallback, NaNGuard, NonFiniteError, keras
from imp_keras.backup import saved_epoch
from imp_keras.tf_keras.masking import masked_weights, optimizer_slots

from conftest import PLAN, build, dataset, fit


class Inject(keras.callbacks.Callback):
    """Writes `value` into fc/kernel[0, 0] (or its momentum), or out/kernel[0, 0] (`into="logits"`),
    before batch `batch` of epoch `epoch`."""

    def __init__(self, epoch, batch, value, into="weight"):
        super().__init__()
        self.epoch, self.batch, self.value, self.into = epoch, batch, value, into
        self._current = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self._current, batch) == (self.epoch, self.batch):
            weight = masked_weights(self.model)[1 if self.into == "logits" else 0].weight
            target = optimizer_slots(self.model.optimizer, weight)[0] if self.into == "momentum" else weight
            values = target.numpy()
            values[0, 0] = self.value
            target.assign(values)


def test_nan_loss_stops_inside_the_epoch_before_the_backup(tmp_path):
    model, schedule = build()
    callbacks = [
        IMPCallback(PLAN, schedule, verbose=0), keras.callbacks.BackupAndRestore(tmp_path), NaNGuard(PLAN),
        Inject(3, 2, np.nan, into="logits"),
    ]
    message = r"^The training loss is nan at batch 2 of epoch 3 \(IMP cycle 1 of 2, retraining at 68.38% sparsity\)\.$"
    with pytest.raises(NonFiniteError, match=message):
        fit(model, callbacks)
    assert saved_epoch(str(tmp_path)) == 2


def test_nan_weight_hidden_by_a_relu_is_caught_after_the_last_step():
    """oneDNN's ReLU turns NaN into 0, so a NaN in fc/kernel leaves the loss finite."""
    model, schedule = build()
    message = r"^NaN or Inf in 1 variable\(s\) \(fc/kernel:0\) after the last step at batch 3 of epoch 3 \(IMP cycle 1 of 2"
    with pytest.raises(NonFiniteError, match=message):
        fit(model, [IMPCallback(PLAN, schedule, verbose=0), NaNGuard(PLAN), Inject(3, 2, np.nan)])


def test_inf_weight_after_the_last_step_is_caught_before_the_epoch_ends(tmp_path):
    """Inf momentum before the last step of epoch 1: that step's loss is finite, the kernel it updates is not."""
    model, schedule = build()
    callbacks = [
        keras.callbacks.BackupAndRestore(tmp_path), IMPCallback(PLAN, schedule, verbose=0), NaNGuard(PLAN),
        Inject(1, 3, np.inf, into="momentum"),
    ]
    message = (
        r"^NaN or Inf in 2 variable\(s\) \(fc/kernel:0, \S*m/fc/kernel:0\) after the last step at batch 3 of "
        r"epoch 1 \(dense pretraining, before IMP cycle 1 of 2\)\.$"
    )
    with pytest.raises(NonFiniteError, match=message):
        fit(model, callbacks)
    assert saved_epoch(str(tmp_path)) == 0


def test_nan_validation_loss_is_caught():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])  # no ReLU to hide the NaN inputs
    model.compile(keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = dataset()
    with pytest.raises(NonFiniteError, match=r"^The validation loss is nan at epoch 0\.$"):
        model.fit(x, y, batch_size=16, epochs=1, validation_data=(np.full_like(x, np.nan), y), callbacks=[NaNGuard()], verbose=0)


def test_weights_checked_at_epoch_end_when_fit_does_not_know_the_last_batch():
    """A dataset of unknown length (one batch): the momentum's Inf reaches the kernel in the only step."""
    model, _ = build()
    x, y = dataset()
    data = tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(16).filter(lambda *_: True)
    assert data.cardinality() == tf.data.UNKNOWN_CARDINALITY
    callbacks = [IMPCallback(PLAN, verbose=0), NaNGuard(), Inject(0, 0, np.inf, into="momentum")]  # IMPCallback builds the slots
    with pytest.raises(NonFiniteError, match=r"^NaN or Inf in 2 variable\(s\) .* after the last step at epoch 0\.$"):
        model.fit(data, epochs=1, callbacks=callbacks, verbose=0)


def test_guard_bad_plan():
    with pytest.raises(TypeError, match=r"`plan` must be an imp_keras.Plan or None. Received: plan=3"):
        NaNGuard(3)
