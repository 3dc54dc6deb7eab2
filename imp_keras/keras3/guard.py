"""Numerical faults on Keras 3: a NaN or Inf in the loss or the weights stops the run at once."""

from typing import Any

import keras
import numpy as np
from keras import ops

from imp_keras.core.faults import NaNGuardBase, NonFiniteError
from imp_keras.keras3 import masking

__all__ = ["NaNGuard", "NonFiniteError"]


class NaNGuard(NaNGuardBase, keras.callbacks.Callback):
    """Raises `NonFiniteError` as soon as training produces a NaN or Inf (see
    `imp_keras.tf_keras.NaNGuard`): the training loss after every batch, every weight and optimizer
    state after the epoch's last batch, the validation loss at the end of every epoch."""

    masking = masking

    def _bad_variables(self) -> list[str]:
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:  # JAX keeps the step's state outside the variables until synced
            sync()
        return super()._bad_variables()

    def _float_values(self, variable: Any) -> np.ndarray | None:
        return ops.convert_to_numpy(variable) if "float" in str(variable.dtype) else None
