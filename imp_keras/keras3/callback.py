"""When to prune during a Keras 3 `model.fit` (TensorFlow, JAX or PyTorch backend): the thin
callback over `imp_keras.core.pruning`, and the hooks through which the core's callbacks
(`imp_keras.core.callback`) read and write `MaskHolder` variables."""

import inspect
import os
from typing import Any

import keras
import numpy as np
from keras import ops

from imp_keras.core.callback import MaskCallback
from imp_keras.core.pruning import PHASE_PRETRAIN, PHASE_RETRAIN, IMPCallbackBase
from imp_keras.core.rules import VerifyReport
from imp_keras.keras3 import masking
from imp_keras.keras3.schedules import RetrainSchedule
from imp_keras.keras3.verify import verify

__all__ = ["Hooks", "IMPCallback", "PHASE_PRETRAIN", "PHASE_RETRAIN"]


class Hooks(MaskCallback):
    """`MaskCallback`'s hooks on Keras 3 variables, on any backend."""

    masking = masking
    learning_rate_key = "learning_rate"

    @staticmethod
    def _export_keywords() -> list[str]:
        from imp_keras.export.keras3 import export  # only when asked: it may need TensorFlow

        return [name for name in inspect.signature(export).parameters if name not in ("model", "out_dir")]

    def _numpy(self, value: Any) -> np.ndarray:
        return ops.convert_to_numpy(value)

    def _require_model(self) -> None:
        if not isinstance(self.model, keras.Model):
            raise TypeError(f"`model` must be a Keras 3 model. Received: model={self.model!r}")

    def _learning_rate_setting(self) -> Any:
        optimizer = masking._inner(self.model.optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"`model.optimizer` must be a Keras 3 optimizer. Received: {optimizer!r}")
        return optimizer._learning_rate

    def _build_optimizer(self) -> None:
        optimizer = self.model.optimizer
        if not optimizer.built:
            # Slots exist before BackupAndRestore restores them, and before any pruning zeroes them.
            optimizer.build(self.model.trainable_variables)

    def _trainable(self) -> list[Any]:
        return self.model.trainable_variables

    def _steps_taken(self) -> int:
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _sync(self) -> None:
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:  # JAX's fit keeps the step's state outside the variables until synced
            sync()

    def _verify_model(self, **kwargs: Any) -> VerifyReport:
        return verify(self.model, **kwargs)

    def _save_model(self, model: Any, name: str) -> None:
        os.makedirs(self.ladder_dir, exist_ok=True)
        model.save(os.path.join(self.ladder_dir, name))

    def _export_model(self, options: dict[str, Any]) -> Any:
        from imp_keras.export.keras3 import export

        return export(masking.strip(self.model), self.export_dir, **options)


class IMPCallback(IMPCallbackBase, Hooks, keras.callbacks.Callback):
    """Runs Iterative Magnitude Pruning inside a Keras 3 `model.fit`, on any backend.

    At the first epoch of every cycle of `plan` it removes the plan's share of the still-alive
    weights with `selection`, zeroes them and their optimizer state, and (for ALLR) measures the
    cycle's peak learning rate. Every decision is a function of the epoch, so a run resumed by
    `keras.callbacks.BackupAndRestore` (listed after this callback) repeats it exactly; at the end
    of every cycle `imp_keras.verify` checks every invariant and raises `imp_keras.InvariantError`.

    Published into `logs` at the end of every epoch: `sparsity`, `cycle` (0 while pretraining),
    `phase` (0 = pretraining, 1 = retraining), `learning_rate` (of the epoch's last step) and, for
    ALLR, `allr_d` and `eta_star`.

    Args: as `imp_keras.tf_keras.IMPCallback`: plan, schedule, selection, reset_optimizer,
      block_size, ladder_dir, export_dir, export_options, verbose, min_alive.
    """

    schedule_type = RetrainSchedule

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._is_allr():
            self.schedule.attach(self.model.optimizer)

    def on_train_end(self, logs=None):
        if self._is_allr():
            self.schedule.detach(self.model.optimizer)
        super().on_train_end(logs)
