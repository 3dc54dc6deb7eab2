"""When to prune during `model.fit`: the Keras callback that runs an IMP plan."""

import inspect
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from imp_keras import distribution
from imp_keras.core.plan import Plan
from imp_keras.core.pruning import PHASE_PRETRAIN, PHASE_RETRAIN, PruningRun, callback_settings, rung_cycle, rung_name
from imp_keras.core.rules import InvariantError, broken
from imp_keras.core.selection import Criterion
from imp_keras.export import tf_keras as exporter  # the module: the exporter imports this package too
from imp_keras.export.report import ExportReport
from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras, require_tf_keras
from imp_keras.tf_keras.schedules import RetrainSchedule
from imp_keras.tf_keras.verify import verify

__all__ = ["IMPCallback", "PHASE_PRETRAIN", "PHASE_RETRAIN", "rung_cycle", "rung_name"]

def _export_keywords() -> list[str]:
    return [name for name in inspect.signature(exporter.export).parameters if name not in ("model", "out_dir")]


class IMPCallback(keras.callbacks.Callback):
    """Runs Iterative Magnitude Pruning inside `model.fit`.

    At the first epoch of every cycle of `plan` it removes the plan's share of the still-alive
    weights with `selection`, zeroes them and their optimizer state, and (for ALLR) measures the
    cycle's peak learning rate. Every decision is a function of the epoch, so a run resumed by
    `keras.callbacks.BackupAndRestore` repeats it exactly; the masks are checked against the plan
    at the start of every epoch, and at the end of every cycle `imp_keras.tf_keras.verify` checks every
    invariant (binary, monotone masks; pruned weights and their optimizer state exactly 0.0; the
    plan's alive count) and raises `imp_keras.InvariantError` if one is broken. A goal that the
    selection cannot reach (`uniform_plus` keeps some weights) is refused before training.

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
      reset_optimizer: zero the optimizer state at the first pruning, as the paper does.
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

    def __init__(
        self,
        plan: Plan,
        schedule: RetrainSchedule | None = None,
        selection: str | Criterion = "global",
        *,
        reset_optimizer: bool = True,
        block_size: tuple[int, int] | None = None,
        ladder_dir: str | os.PathLike | None = None,
        export_dir: str | os.PathLike | None = None,
        export_options: Mapping[str, Any] | None = None,
        verbose: int = 1,
        min_alive: int | float | None = None,
    ):
        super().__init__()
        settings = callback_settings(
            plan, schedule, RetrainSchedule, selection, reset_optimizer, block_size, verbose, ladder_dir, export_dir,
            export_options, _export_keywords(), min_alive=min_alive,
        )
        vars(self).update(settings)
        self._given_schedule = schedule
        self.export_report: ExportReport | None = None
        self._finished_plan = False
        self.verbose = verbose
        self._entries: list[masking.MaskedWeight] = []
        self._run: PruningRun | None = None

    # -- checks ---------------------------------------------------------------------------------

    def _check_model(self) -> None:
        require_tf_keras(self.model, "model", keras.Model)
        self._entries = masking.masked_weights(self.model)
        if not self._entries:
            raise ValueError(
                f"Model {self.model.name!r} has no imp_keras mask holders: wrap it with "
                "`imp_keras.prunable(model)` before compiling it."
            )
        optimizer = self.model.optimizer
        require_tf_keras(optimizer, "model.optimizer", (keras.optimizers.Optimizer, keras.optimizers.legacy.Optimizer))
        used = masking.learning_rate_setting(self.model.optimizer)
        self.schedule = self._given_schedule
        if self.schedule is None and isinstance(used, RetrainSchedule):
            if used.plan != self.plan:
                raise ValueError(f"The optimizer's RetrainSchedule was built for another plan: {used.plan} != {self.plan}")
            self.schedule = used  # e.g. ALLR needs the callback to record its peaks
        if self.schedule is not None and used is not self.schedule:
            raise ValueError(
                "The model's optimizer does not use `schedule` as its learning rate; compile with "
                "e.g. `keras.optimizers.SGD(learning_rate=schedule, ...)`, or pass schedule=None."
            )

    # -- Keras hooks ----------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._check_model()
        self._run = PruningRun(
            self.plan,
            self.selection,
            [e.name for e in self._entries],
            [tuple(e.mask.shape) for e in self._entries],
            masking.block_sizes(self._entries, self.block_size),
            None if self.schedule is None else self.schedule.steps_per_epoch,
            min_alive=self.min_alive,
        )
        self._run.check_fit(self.params.get("epochs"), self.params.get("steps"))
        with self.model.distribute_strategy.scope():
            masking.build_optimizer(self.model.optimizer, self.model.trainable_weights)

    def on_epoch_begin(self, epoch, logs=None):
        steps = None if self.schedule is None else int(self.model.optimizer.iterations.numpy())
        masks = [e.mask.numpy() != 0 for e in self._entries]
        cycle = self._run.epoch_begin(epoch, masks, steps)
        if cycle:
            self._prune(epoch, cycle, masks)

    def _prune(self, epoch: int, cycle: int, masks: list[np.ndarray]) -> None:
        allr = self.schedule is not None and self.schedule.kind == "allr"
        norm = sum(float(np.sum(np.square(v.numpy(), dtype=np.float64))) for v in self.model.trainable_weights) if allr else None
        pruning = self._run.prune(epoch, cycle, [e.weight.numpy() for e in self._entries], masks, norm)
        peak = self.schedule.record_allr(cycle, pruning.d) if allr else None
        optimizer = self.model.optimizer
        if cycle == 1 and self.reset_optimizer:
            masking.reset_optimizer(optimizer, self.model.trainable_weights)
        masking.apply_masks(self._entries, pruning.masks, optimizer)
        if self.verbose:
            print(self._run.describe(pruning, epoch, peak))

    def on_epoch_end(self, epoch, logs=None):
        cycle = self.plan.cycle_at(epoch)
        if logs is not None:
            allr = None
            if self.schedule is not None and self.schedule.kind == "allr":
                allr = (self.schedule.allr_d.numpy(), self.schedule.eta_star.numpy())
            logs.update(self._run.epoch_logs(epoch, masking.last_learning_rate(self.model.optimizer), allr))
        if self.plan.is_last_epoch_of_cycle(epoch):
            self._verify(epoch, cycle)
            if self.ladder_dir:
                self._save_rung(cycle, self._run.sparsity)
        self._finished_plan = epoch == self.plan.total_epochs - 1

    def on_train_end(self, logs=None):
        if self.export_dir and self._finished_plan:
            strategy = self.model.distribute_strategy
            chief = distribution.is_chief(strategy)
            with distribution.chief_directory(self.export_dir, strategy) as directory:
                options = dict(self.export_options)
                options.setdefault("verbose", min(self.verbose, 1))
                if not chief:
                    options.update(latency_runs=0, verbose=0)
                report = exporter.export(self.model, directory, **options)
            self.export_report = report if chief else None

    def _verify(self, epoch: int, cycle: int) -> None:
        try:
            report = verify(self.model, self.plan, cycle=cycle, previous_masks=self._run.verified_masks, block_size=self.block_size)
        except InvariantError as e:
            raise broken(e.problems, f" at the end of IMP cycle {cycle} of {self.plan.cycles} (epoch {epoch})") from None
        self._run.verified_masks = report.masks

    def _save_rung(self, cycle: int, sparsity: float) -> None:
        name = rung_name(cycle, sparsity)
        with distribution.chief_directory(self.ladder_dir, self.model.distribute_strategy) as directory:
            distribution.save_model(masking.strip(self.model), os.path.join(directory, name))
