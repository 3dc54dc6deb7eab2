"""When to prune during a Keras 3 `model.fit` (TensorFlow, JAX or PyTorch backend): the thin
callback over `imp_keras.core.pruning`, applying its decisions to `MaskHolder` variables."""

import contextlib
import inspect
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from imp_keras.core.plan import Plan
from imp_keras.core.pruning import PHASE_PRETRAIN, PHASE_RETRAIN, PruningRun, callback_settings, rung_name
from imp_keras.core.rules import InvariantError, broken
from imp_keras.core.selection import Criterion
from imp_keras.keras3 import masking
from imp_keras.keras3.schedules import RetrainSchedule
from imp_keras.keras3.verify import verify

__all__ = ["IMPCallback", "PHASE_PRETRAIN", "PHASE_RETRAIN"]


def _export_keywords() -> list[str]:
    from imp_keras.export.keras3 import export  # only when asked: it may need TensorFlow

    return [name for name in inspect.signature(export).parameters if name not in ("model", "out_dir")]


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


class IMPCallback(keras.callbacks.Callback):
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
      block_size, ladder_dir, export_dir, export_options, verbose.
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
    ):
        super().__init__()
        keywords = _export_keywords() if export_options else []
        settings = callback_settings(
            plan, schedule, RetrainSchedule, selection, reset_optimizer, block_size, verbose, ladder_dir, export_dir,
            export_options, keywords,
        )
        vars(self).update(settings)
        self._given_schedule = schedule
        self.export_report = None
        self._finished_plan = False
        self._entries: list[masking.MaskedWeight] = []
        self._run: PruningRun | None = None

    def _check_model(self) -> None:
        if not isinstance(self.model, keras.Model):
            raise TypeError(f"`model` must be a Keras 3 model. Received: model={self.model!r}")
        self._entries = masking.masked_weights(self.model)
        if not self._entries:
            raise ValueError(
                f"Model {self.model.name!r} has no imp_keras mask holders: wrap it with "
                "`imp_keras.prunable(model)` before compiling it."
            )
        optimizer = masking._inner(self.model.optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"`model.optimizer` must be a Keras 3 optimizer. Received: {optimizer!r}")
        used = optimizer._learning_rate
        self.schedule = self._given_schedule
        if self.schedule is None and isinstance(used, RetrainSchedule):
            if used.plan != self.plan:
                raise ValueError(f"The optimizer's RetrainSchedule was built for another plan: {used.plan} != {self.plan}")
            self.schedule = used  # ALLR needs the callback to record its peaks
        if self.schedule is not None and used is not self.schedule:
            raise ValueError(
                "The model's optimizer does not use `schedule` as its learning rate; compile with "
                "e.g. `keras.optimizers.SGD(learning_rate=schedule, ...)`, or pass schedule=None."
            )

    def _is_allr(self) -> bool:
        return self.schedule is not None and self.schedule.kind == "allr"

    def on_train_begin(self, logs=None):
        self._check_model()
        self._run = PruningRun(
            self.plan,
            self.selection,
            [e.name for e in self._entries],
            [tuple(e.mask.shape) for e in self._entries],
            masking.block_sizes(self._entries, self.block_size),
            None if self.schedule is None else self.schedule.steps_per_epoch,
        )
        self._run.check_fit(self.params.get("epochs"), self.params.get("steps"))
        optimizer = self.model.optimizer
        if not optimizer.built:
            # Slots exist before BackupAndRestore restores them, and before any pruning zeroes them.
            optimizer.build(self.model.trainable_variables)
        if self._is_allr():
            count = len(optimizer.variables)
            self.schedule.attach(optimizer)
            if len(optimizer.variables) != count:
                _rebuild_distributed_jax_step(self.model)

    def on_train_end(self, logs=None):
        if self._is_allr():
            self.schedule.detach(self.model.optimizer)
        if self.export_dir and self._finished_plan:
            from imp_keras.export.keras3 import export

            chief = _is_chief()
            options = {"verbose": min(self.verbose, 1) if chief else 0, **self.export_options}
            with _chief_directory(self.export_dir) as directory:
                report = export(masking.strip(self.model), directory, **options)
            self.export_report = report if chief else None

    def on_epoch_begin(self, epoch, logs=None):
        steps = None if self.schedule is None else int(ops.convert_to_numpy(self.model.optimizer.iterations))
        masks = [ops.convert_to_numpy(e.mask) != 0 for e in self._entries]
        cycle = self._run.epoch_begin(epoch, masks, steps)
        if cycle:
            self._prune(epoch, cycle, masks)

    def _prune(self, epoch: int, cycle: int, masks: list[np.ndarray]) -> None:
        norm = None
        if self._is_allr():
            norm = sum(float(np.sum(np.square(ops.convert_to_numpy(v), dtype=np.float64))) for v in self.model.trainable_variables)
        weights = [ops.convert_to_numpy(e.weight) for e in self._entries]
        pruning = self._run.prune(epoch, cycle, weights, masks, norm)
        peak = self.schedule.record_allr(cycle, pruning.d) if self._is_allr() else None
        optimizer = self.model.optimizer
        if cycle == 1 and self.reset_optimizer:
            masking.reset_optimizer(optimizer, self.model.trainable_variables)
        masking.apply_masks(self._entries, pruning.masks, optimizer)
        if self.verbose:
            print(self._run.describe(pruning, epoch, peak))

    def on_epoch_end(self, epoch, logs=None):
        cycle = self.plan.cycle_at(epoch)
        if logs is not None:
            allr = None
            if self._is_allr():
                allr = (ops.convert_to_numpy(self.schedule.allr_d), ops.convert_to_numpy(self.schedule.eta_star))
            rate = masking.last_learning_rate(self.model.optimizer)
            logs.update(self._run.epoch_logs(epoch, rate, allr, learning_rate_key="learning_rate"))
        if self.plan.is_last_epoch_of_cycle(epoch):
            self._verify(epoch, cycle)
            if self.ladder_dir:
                self._save_rung(cycle)
        self._finished_plan = epoch == self.plan.total_epochs - 1

    def _save_rung(self, cycle: int) -> None:
        with _chief_directory(self.ladder_dir) as directory:
            masking.strip(self.model).save(os.path.join(directory, rung_name(cycle, self._run.sparsity)))

    def _verify(self, epoch: int, cycle: int) -> None:
        try:
            report = verify(self.model, self.plan, cycle=cycle, previous_masks=self._run.verified_masks, block_size=self.block_size)
        except InvariantError as e:
            raise broken(e.problems, f" at the end of IMP cycle {cycle} of {self.plan.cycles} (epoch {epoch})") from None
        self._run.verified_masks = report.masks
