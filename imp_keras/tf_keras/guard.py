"""Numerical faults: a NaN or Inf in the loss or the weights stops the run at once, saying where."""

from typing import Any

import numpy as np

from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras
from imp_keras.core.faults import NaNGuardBase, NonFiniteError, describe_epoch

__all__ = ["NaNGuard", "NonFiniteError", "describe_epoch"]


class NaNGuard(NaNGuardBase, keras.callbacks.Callback):
    """Raises `NonFiniteError` as soon as training produces a NaN or Inf.

    Checked: the training loss after every batch; every weight of the model (masks and
    normalisation statistics included) and every optimizer state after the last batch of every
    epoch; the validation loss at the end of every epoch. The first two are raised from a batch
    hook, before any callback's `on_epoch_end`, wherever the guard stands in the callback list: a
    `BackupAndRestore` backup, the ladder and the metrics never record the faulty epoch, so the run
    keeps its last good state. (`keras.callbacks.TerminateOnNaN` only stops training, after the
    faulty epoch has been backed up.) A backup saved every N batches (`save_freq=N`) is not covered:
    the weights are checked once an epoch, so a step that makes them non-finite with a finite loss
    can be saved before the next batch's loss raises.

    Args:
      plan: the run's `Plan`, to name the IMP cycle of the faulty epoch; None for dense training.

    Example:
    ```python
    model.fit(..., callbacks=[imp_keras.NaNGuard(plan), keras.callbacks.BackupAndRestore(dir), imp_keras.IMPCallback(plan, lr)])
    ```
    """

    masking = masking

    def _float_values(self, variable: Any) -> np.ndarray | None:
        return variable.numpy() if variable.dtype.is_floating else None
