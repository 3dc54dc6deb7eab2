"""When to prune during a Keras 3 `model.fit` (TensorFlow, JAX or PyTorch backend): the thin
callback over `imp_keras.core.pruning`, and the hooks through which the core's callbacks
(`imp_keras.core.callback`) read and write `MaskHolder` variables."""

import contextlib
import inspect
import os
import tempfile
from collections.abc import Iterator
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


def _rebuild_distributed_jax_step(model: keras.Model) -> None:
    """Builds `fit`'s step again after the optimizer gained variables, under a `keras.distribution` on JAX.

    There `fit` fixes the shardings of its step's outputs from the optimizer's variables before
    `on_train_begin`, and a step built then has no place for ALLR's attached peaks: its first call
    fails with "pjit out_shardings ... a subtree of type list of length 5, but the full pytree has a
    subtree of the same type but of length 7" (measured with DataParallel on 2 CPU devices). `fit`
    reads `model.train_function` at every step, so the new one is used from the first.
    """
    if keras.backend.backend() == "jax" and keras.distribution.distribution() is not None:
        model.make_train_function(force=True)


def _is_chief() -> bool:
    """False on every process of a multi-process JAX run (`keras.distribution.initialize`) but the first."""
    if keras.backend.backend() != "jax":
        return True
    import jax

    return jax.process_index() == 0


@contextlib.contextmanager
def _chief_directory(directory: str | os.PathLike) -> Iterator[str]:
    """`directory` on the chief, a scratch directory removed afterwards on every other process.

    In a multi-process JAX run, assigning a variable (`strip` applies the masks) and saving a model
    are collective: a process that skips them makes the others fail ("passed to device_put is not
    the same on each process", measured on 2 CPU processes). So every process writes; only the
    chief's files are kept, and no two processes write the same file.
    """
    if _is_chief():
        os.makedirs(directory, exist_ok=True)
        yield os.fspath(directory)
    else:
        with tempfile.TemporaryDirectory(prefix="imp_keras_process_") as scratch:
            yield scratch


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

    def _steps_per_call(self) -> int:
        return int(self.model.steps_per_execution or 1)

    def _may_skip_steps(self) -> bool:
        return isinstance(self.model.optimizer, keras.optimizers.LossScaleOptimizer)

    def _rerun_restored_epoch(self, first_step: int, restored_step: int) -> int:
        self.model.optimizer.iterations.assign(first_step)
        return first_step

    def _sync(self) -> None:
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:  # JAX's fit keeps the step's state outside the variables until synced
            sync()

    def _verify_model(self, **kwargs: Any) -> VerifyReport:
        return verify(self.model, **kwargs)

    def _save_model(self, model: Any, name: str) -> None:
        with _chief_directory(self.ladder_dir) as directory:
            model.save(os.path.join(directory, name))

    def _export_model(self, options: dict[str, Any]) -> Any:
        from imp_keras.export.keras3 import export

        chief = _is_chief()
        if not chief:
            options["verbose"] = 0
        with _chief_directory(self.export_dir) as directory:
            report = export(self.model, directory, **options)
        return report if chief else None


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
            optimizer = self.model.optimizer
            count = len(optimizer.variables)
            self.schedule.attach(optimizer)
            if len(optimizer.variables) != count:
                _rebuild_distributed_jax_step(self.model)

    def on_train_end(self, logs=None):
        if self._is_allr():
            self.schedule.detach(self.model.optimizer)
        super().on_train_end(logs)
