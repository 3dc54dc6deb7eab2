"""When to prune during `model.fit`: the Keras callback that runs an IMP plan, and the hooks through
which the core's callbacks (`imp_keras.core.callback`) read and write tf_keras variables."""

import inspect
import os
from typing import Any

import numpy as np

from imp_keras import distribution
from imp_keras.core.callback import MaskCallback
from imp_keras.core.pruning import PHASE_PRETRAIN, PHASE_RETRAIN, IMPCallbackBase, rung_cycle, rung_name
from imp_keras.core.rules import VerifyReport
from imp_keras.export import tf_keras as exporter  # the module: the exporter imports this package too
from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras, require_tf_keras
from imp_keras.tf_keras.schedules import RetrainSchedule
from imp_keras.tf_keras.verify import verify

__all__ = ["Hooks", "IMPCallback", "PHASE_PRETRAIN", "PHASE_RETRAIN", "rung_cycle", "rung_name"]


class Hooks(MaskCallback):
    """`MaskCallback`'s hooks on tf_keras variables, under the model's distribution strategy."""

    masking = masking
    learning_rate_key = "lr"

    @staticmethod
    def _export_keywords() -> list[str]:
        return [name for name in inspect.signature(exporter.export).parameters if name not in ("model", "out_dir")]

    def _numpy(self, value: Any) -> np.ndarray:
        return value.numpy()

    def _require_model(self) -> None:
        require_tf_keras(self.model, "model", keras.Model)

    def _learning_rate_setting(self) -> Any:
        optimizer = self.model.optimizer
        require_tf_keras(optimizer, "model.optimizer", (keras.optimizers.Optimizer, keras.optimizers.legacy.Optimizer))
        return masking.learning_rate_setting(optimizer)

    def _build_optimizer(self) -> None:
        with self.model.distribute_strategy.scope():
            masking.build_optimizer(self.model.optimizer, self.model.trainable_weights)

    def _trainable(self) -> list[Any]:
        return self.model.trainable_weights

    def _steps_taken(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def _steps_per_call(self) -> int:
        return int(self.model._steps_per_execution.numpy())

    def _verify_model(self, **kwargs: Any) -> VerifyReport:
        return verify(self.model, **kwargs)

    def _save_model(self, model: Any, name: str) -> None:
        with distribution.chief_directory(self.ladder_dir, self.model.distribute_strategy) as directory:
            distribution.save_model(model, os.path.join(directory, name))

    def _export_model(self, options: dict[str, Any]) -> Any:
        strategy = self.model.distribute_strategy
        chief = distribution.is_chief(strategy)
        with distribution.chief_directory(self.export_dir, strategy) as directory:
            if not chief:
                options.update(latency_runs=0, verbose=0)
            report = exporter.export(self.model, directory, **options)
        return report if chief else None


class IMPCallback(IMPCallbackBase, Hooks, keras.callbacks.Callback):
    """Runs Iterative Magnitude Pruning inside `model.fit`.

    At the first epoch of every cycle of `plan` it removes the plan's share of the still-alive
    weights with `selection`, zeroes them and their optimizer state, and (for ALLR) measures the
    cycle's peak learning rate. Every decision is a function of the epoch, so a run resumed by
    `keras.callbacks.BackupAndRestore` repeats it exactly; the masks are checked against the plan
    at the start of every epoch, and at the end of every cycle `imp_keras.tf_keras.verify` checks every
    invariant (binary, monotone masks; pruned weights and their optimizer state exactly 0.0; the
    plan's alive count) and raises `imp_keras.InvariantError` if one is broken. A goal that the
    selection cannot reach (`uniform_plus` keeps some weights) is refused before training.
    Masked weights that are not trainable when `fit` starts (a layer frozen after `prunable`)
    could not retrain: they are left out with a warning naming them, their masks stay as they
    are, and the plan's counts are over the trainable masked weights.

    With `block_size`, Dense kernels lose whole blocks (see `imp_keras.core.selection.select_blocks`), so
    a runtime with block-sparse kernels can skip them: (4, 1) blocks of a Keras [in, out] kernel are
    the 1x4 blocks of TFLite's sparse fully-connected kernel. Whole blocks cannot always add up to
    the plan's count, so each cycle removes the blocks (and the single weights of other kernels) that
    bring the alive count closest to `plan.alive_after(cycle)`, and the per-epoch check allows the
    alive count to differ from the plan by at most half a block. Without `block_size` the plan's
    counts hold exactly.

    Published into `logs` at the end of every epoch (History, CSVLogger, TensorBoard see them):
    `sparsity`, `cycle` (0 while pretraining), `phase` (0 = pretraining, 1 = retraining), `lr`
    (the learning rate of the epoch's last step) and, for ALLR, `allr_d` and `eta_star`.

    Args:
      plan: the `Plan` of the run; `fit` must not run past `plan.total_epochs`.
      schedule: the `RetrainSchedule` the optimizer was compiled with (needed for ALLR), or None
        when the learning rate comes from elsewhere.
      selection: criterion name (`global`, `uniform`, `uniform_plus`, `erk`, `lamp`) or callable.
      reset_optimizer: restart the optimizer state at the first pruning, as the paper does (momenta
        and moments at 0, Adagrad's accumulators at `initial_accumulator_value`).
      block_size: (rows, cols) blocks of Dense kernels ([in, out]) pruned as a whole, e.g. (4, 1)
        for TFLite's sparse kernel; other kernels stay unstructured. Needs `selection="global"`.
      ladder_dir: if given, the stripped model is saved there at the end of every cycle as
        `cycleNN_sparsityXX.XX.keras`: one run gives a model per sparsity.
      export_dir: if given, when `fit` ends after the plan's last epoch the model is exported there
        with `imp_keras.tf_keras.export`: verified SavedModel, .keras, H5 and TFLite files and
        `export_report.json`; the report is kept as `callback.export_report`.
      export_options: keyword arguments for `imp_keras.tf_keras.export` (`formats`, `representative_data`,
        `sample_inputs`, `latency_runs`, `verbose`).
      verbose: 1 prints a line at every pruning, 0 is silent.
      min_alive: a floor every tensor keeps at every pruning, so no layer collapses: a number of
        weights (an int) or a fraction of the tensor (a float in (0, 1)); any built-in selection.

    Example:
    ```python
    model = imp_keras.prunable(build_model())
    plan = imp_keras.Plan(goal_sparsity=0.9, cycles=3, pretrain_epochs=10, retrain_epochs=3)
    lr = imp_keras.RetrainSchedule(base, plan, steps_per_epoch=469, kind="slr")
    model.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True), loss=..., metrics=["accuracy"])
    model.fit(train, epochs=plan.total_epochs, callbacks=[imp_keras.IMPCallback(plan, lr)])
    ```
    """

    schedule_type = RetrainSchedule
