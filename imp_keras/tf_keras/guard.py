"""Numerical faults: a NaN or Inf in the loss or the weights stops the run at once, saying where."""

import math

import numpy as np

from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras
from imp_keras.core.faults import NonFiniteError, describe_epoch
from imp_keras.core.plan import Plan

__all__ = ["NaNGuard", "NonFiniteError", "describe_epoch"]


class NaNGuard(keras.callbacks.Callback):
    """Raises `NonFiniteError` as soon as training produces a NaN or Inf.

    Checked: the training loss after every batch; every weight of the model (masks and
    normalisation statistics included) and every optimizer state after the last batch of every
    epoch; the validation loss at the end of every epoch. The first two are raised from a batch
    hook, before any callback's `on_epoch_end`, wherever the guard stands in the callback list: a
    `BackupAndRestore` backup, the ladder and the metrics never record the faulty epoch, so the run
    keeps its last good state. (`keras.callbacks.TerminateOnNaN` only stops training, after the
    faulty epoch has been backed up.)

    Args:
      plan: the run's `Plan`, to name the IMP cycle of the faulty epoch; None for dense training.

    Example:
    ```python
    model.fit(..., callbacks=[imp_keras.NaNGuard(plan), keras.callbacks.BackupAndRestore(dir), imp_keras.IMPCallback(plan, lr)])
    ```
    """

    def __init__(self, plan: Plan | None = None):
        super().__init__()
        if plan is not None and not isinstance(plan, Plan):
            raise TypeError(f"`plan` must be an imp_keras.Plan or None. Received: plan={plan!r}")
        self.plan = plan
        self._epoch = 0

    def _fail(self, what: str, batch: int | None = None) -> None:
        at = f"batch {batch} of " if batch is not None else ""
        raise NonFiniteError(f"{what} at {at}{describe_epoch(self.plan, self._epoch)}.")

    def _check_variables(self, batch: int | None) -> None:
        variables = list(self.model.weights)
        optimizer = self.model.optimizer
        if optimizer is not None:
            variables += [s for v in self.model.trainable_weights for s in masking.optimizer_slots(optimizer, v)]
        bad = [v.name for v in variables if v.dtype.is_floating and not np.isfinite(v.numpy()).all()]
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            self._fail(f"NaN or Inf in {len(bad)} variable(s) ({shown}) after the last step", batch)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"The training loss is {float(loss)}", batch)
        if batch == (self.params.get("steps") or 0) - 1:
            self._check_variables(batch)

    def on_epoch_end(self, epoch, logs=None):
        if not self.params.get("steps"):  # fit did not know the epoch's last batch
            self._check_variables(None)
        loss = (logs or {}).get("val_loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"The validation loss is {float(loss)}")
