"""Numerical faults on Keras 3: a NaN or Inf in the loss or the weights stops the run at once."""

import math

import keras
import numpy as np
from keras import ops

from imp_keras.core.faults import NonFiniteError, describe_epoch
from imp_keras.core.plan import Plan
from imp_keras.keras3 import masking

__all__ = ["NaNGuard", "NonFiniteError"]


class NaNGuard(keras.callbacks.Callback):
    """Raises `NonFiniteError` as soon as training produces a NaN or Inf (see
    `imp_keras.tf_keras.NaNGuard`): the training loss after every batch, every weight and optimizer
    state after the epoch's last batch, the validation loss at the end of every epoch."""

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
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:  # JAX keeps the step's state outside the variables until synced
            sync()
        variables = list(self.model.weights)
        optimizer = self.model.optimizer
        if optimizer is not None:
            variables += [s for v in self.model.trainable_variables for s in masking.optimizer_slots(optimizer, v)]
        bad = [
            v.path for v in variables
            if "float" in str(v.dtype) and not np.isfinite(ops.convert_to_numpy(v)).all()
        ]
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
        if not self.params.get("steps"):
            self._check_variables(None)
        loss = (logs or {}).get("val_loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"The validation loss is {float(loss)}")
