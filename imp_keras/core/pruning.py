"""What IMPCallback decides, on ints and NumPy arrays: when to prune, how many, which, ALLR's d,
the checks of a resumed run, and the numbers published into `logs`.

`IMPCallbackBase` is the callback itself, less the flavour: it reads the model into NumPy (masks,
weights) through `MaskCallback`'s hooks, asks a `PruningRun` what to do, and applies the answer;
the decisions never see Keras.
"""

from collections.abc import Mapping, Sequence
import dataclasses
import math
import os
import re
import warnings
from typing import Any

import numpy as np

from imp_keras.core.checks import check_bool

from imp_keras.core.faults import NonFiniteError, describe_epoch
from imp_keras.core.plan import Plan
from imp_keras.core.callback import MaskCallback, output_settings
from imp_keras.core.selection import CRITERIA, Criterion, check_min_alive, get_criterion, max_removable, select, select_blocks, within_blocks

__all__ = [
    "COLLAPSE_THRESHOLD", "IMPCallbackBase", "PHASE_PRETRAIN", "PHASE_RETRAIN", "Pruning", "PruningRun", "check_reachable", "plan_settings", "prune_to", "rung_cycle", "rung_name",
]

PHASE_PRETRAIN = 0
PHASE_RETRAIN = 1

COLLAPSE_THRESHOLD = 0.01
"""A pruning that leaves a tensor with fewer alive weights than this fraction of it warns."""
_COLLAPSE_FREE = ("erk", "uniform_plus", "lamp")  # designed to keep layers alive; only a floor guarantees it


def plan_settings(plan: Plan, schedule: Any, schedule_type: type, reset_optimizer: bool) -> dict[str, Any]:
    """IMPCallback's own arguments (beside `output_settings`'), checked."""
    if not isinstance(plan, Plan):
        raise TypeError(f"`plan` must be an imp_keras.Plan. Received: plan={plan!r}")
    if schedule is not None:
        if not isinstance(schedule, schedule_type):
            wanted = f"{schedule_type.__module__.rsplit('.', 1)[0]}.{schedule_type.__name__}"
            raise TypeError(
                f"`schedule` must be an {wanted} (a schedule of this callback's Keras) or None. Received: schedule={schedule!r}"
            )
        if schedule.plan != plan:
            raise ValueError(f"`schedule` was built for another plan: {schedule.plan} != {plan}")
    check_bool("reset_optimizer", reset_optimizer)
    return {"plan": plan, "schedule": schedule, "reset_optimizer": reset_optimizer}


def check_reachable(
    selection: str | Criterion,
    shapes: Sequence[tuple[int, ...]],
    needed: int,
    goal_sparsity: float,
    min_alive: int | float | None = None,
) -> None:
    """Refuses a goal that needs `needed` of the weights of full tensors of `shapes` removed when
    `selection` (with the floor `min_alive`) cannot remove that many (`uniform_plus` keeps some)."""
    shapes = [tuple(shape) for shape in shapes]
    n_total = sum(math.prod(shape) for shape in shapes)
    removable = max_removable(selection, shapes, min_alive)
    if removable is not None and needed > removable:
        keeps = [f"min_alive={min_alive!r} keeps a floor in every tensor"] if min_alive is not None else []
        if get_criterion(selection) is CRITERIA["uniform_plus"]:
            keeps.append("it keeps the first convolution kernel dense and at least 20 % of the last tensor")
        raise ValueError(
            f"goal_sparsity={goal_sparsity} needs {needed:,} of the {n_total:,} prunable weights "
            f"removed, but selection={selection!r} can remove at most {removable:,} "
            f"({removable / n_total:.2%} sparsity): {'; '.join(keeps)}. Lower `goal_sparsity`, or choose "
            "another selection."
        )


def prune_to(
    target: int,
    weights: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    selection: str | Criterion,
    block_sizes: Sequence[tuple[int, int] | None],
    names: Sequence[str],
    *,
    label: str,
    where: str,
    min_alive: int | float | None = None,
    callback: str = "IMPCallback",
) -> list[np.ndarray]:
    """New masks (True = alive) with `target` weights alive, removed from the alive ones by
    `selection` keeping `min_alive` in every tensor, or by whole blocks of `block_sizes` (then as
    close to `target` as blocks allow).

    Aiming at an alive count, not at a number to remove, keeps block rounding from accumulating.
    `where` ("epoch 7 (IMP cycle 2 of 3, ...)") names the moment in the error on NaN or Inf
    weights; `label` ("IMP cycle 2") and `callback` the warning on layer collapse.
    """
    faulty = [name for name, w in zip(names, weights) if not np.isfinite(w).all()]
    if faulty:
        raise NonFiniteError(
            f"Cannot prune at {where}: {', '.join(faulty)} hold NaN or Inf weights. "
            "Add imp_keras.NaNGuard to fit's callbacks to stop at the batch where they appear."
        )
    masks = [np.asarray(m) != 0 for m in masks]
    count = max(0, sum(int(np.count_nonzero(m)) for m in masks) - target)
    if any(block_sizes):
        new_masks = select_blocks(weights, masks, count, block_sizes)
    else:
        new_masks = select(selection, weights, masks, count, min_alive=min_alive)
    _warn_collapse(label, callback, selection, names, masks, new_masks)
    return new_masks


def _warn_collapse(
    label: str,
    callback: str,
    selection: str | Criterion,
    names: Sequence[str],
    masks: Sequence[np.ndarray],
    new_masks: Sequence[np.ndarray],
) -> None:
    """Warns about the tensors this pruning left under `COLLAPSE_THRESHOLD` alive (layer collapse)."""
    collapsed = []
    for name, old, new in zip(names, masks, new_masks):
        alive, size = int(np.count_nonzero(new)), new.size
        if alive < int(np.count_nonzero(old)) and alive < COLLAPSE_THRESHOLD * size:
            passes = " (none: no signal passes)" if alive == 0 else ""
            collapsed.append(f"{name} {alive}/{size} alive ({alive / size:.2%}){passes}")
    if not collapsed:
        return
    criterion = get_criterion(selection)
    others = [repr(n) for n in _COLLAPSE_FREE if CRITERIA[n] is not criterion]
    warnings.warn(
        f"{label}: selection={selection!r} left {len(collapsed)} tensor(s) under "
        f"{COLLAPSE_THRESHOLD:.0%} of their weights alive, which can cut the signal through the layer (layer "
        f"collapse): {'; '.join(collapsed)}. Selections designed against it: {', '.join(others)}; a floor that "
        f"guarantees it, with any selection: {callback}(min_alive=...), e.g. min_alive=0.01.",
        stacklevel=5,
    )


@dataclasses.dataclass(frozen=True)
class Pruning:
    """The outcome of one pruning: new masks (True = alive), how many were removed, and ALLR's d
    (None unless asked for)."""

    cycle: int
    masks: list[np.ndarray]
    removed: int
    d: float | None


class PruningRun:
    """The decisions of one `fit` of an IMP plan over the prunable tensors of a model.

    Args:
      plan: the run's `Plan`.
      selection: criterion name or callable (see `imp_keras.core.selection`).
      names: the prunable tensors' names, in model order.
      shapes: their shapes.
      block_sizes: per tensor, the (rows, cols) blocks it loses weights in, or None for weight by weight.
      steps_per_epoch: the schedule's, to place a restored optimizer step; None without a schedule.
    """

    def __init__(
        self,
        plan: Plan,
        selection: str | Criterion,
        names: Sequence[str],
        shapes: Sequence[tuple[int, ...]],
        block_sizes: Sequence[tuple[int, int] | None],
        steps_per_epoch: int | None,
        min_alive: int | float | None = None,
    ):
        self.plan = plan
        self.min_alive = check_min_alive(min_alive)
        self.selection = selection
        self.names = list(names)
        self.block_sizes = list(block_sizes)
        self.steps_per_epoch = steps_per_epoch
        self.n_total = sum(math.prod(shape) for shape in shapes)
        self.tolerance = within_blocks(self.block_sizes)
        self.alive = self.n_total
        self.lag = 0  # steps the optimizer did not count (see `resumed_mid_epoch`)
        self.restored_mid_epoch = False  # whether this epoch began from a mid-epoch backup
        self.verified_masks: tuple[np.ndarray, ...] | None = None
        needed = self.n_total - plan.alive_after(plan.cycles, self.n_total)
        check_reachable(selection, shapes, needed, plan.goal_sparsity, self.min_alive)

    def check_fit(self, epochs: int | None, steps: int | None) -> None:
        """Refuses a `fit` longer than the plan, or with other steps per epoch than the schedule."""
        if epochs is not None and epochs > self.plan.total_epochs:
            raise ValueError(f"`epochs`={epochs} passed to fit exceeds plan.total_epochs={self.plan.total_epochs}.")
        if self.steps_per_epoch is not None and steps and steps != self.steps_per_epoch:
            raise ValueError(
                f"fit runs {steps} steps per epoch but the schedule was built with "
                f"steps_per_epoch={self.steps_per_epoch}; they must match."
            )

    def resumed_mid_epoch(self, epoch: int, steps_taken: int, may_lag: bool = False) -> bool:
        """True when a mid-epoch backup was restored (the optimizer's step is inside `epoch`);
        raises when the step does not belong to `epoch` at all, unless `may_lag` allows a step
        count behind the epoch (an optimizer that does not count the steps it skips)."""
        if self.steps_per_epoch is None:
            return False
        first = epoch * self.steps_per_epoch
        if may_lag and steps_taken < first:
            self.lag = first - steps_taken
            return False
        if not first <= steps_taken < first + self.steps_per_epoch:
            raise ValueError(
                f"At the start of epoch {epoch} the optimizer has taken {steps_taken} steps, but the schedule expects "
                f"epoch * steps_per_epoch = {first}. Make `steps_per_epoch` match the batches fit runs per "
                "epoch, and continue an interrupted run with `initial_epoch` (or BackupAndRestore, listed after "
                "IMPCallback so that the optimizer it restores is the one IMPCallback built)."
            )
        return steps_taken > first

    def epoch_begin(self, epoch: int, masks: Sequence[np.ndarray], steps_taken: int | None, may_lag: bool = False) -> int:
        """Checks the masks at the start of `epoch`; returns the cycle to prune now, or 0."""
        if epoch >= self.plan.total_epochs:
            raise ValueError(f"Epoch {epoch} is past the plan's last epoch ({self.plan.total_epochs - 1}).")
        resumed = steps_taken is not None and self.resumed_mid_epoch(epoch, steps_taken, may_lag)
        self.restored_mid_epoch = resumed
        alive = sum(int(np.count_nonzero(m)) for m in masks)
        cycle = self.plan.cycle_at(epoch)
        # A cycle prunes before its first step, so a run restored in the middle of that epoch has
        # already pruned (and restored the pruned masks).
        pruning = cycle > 0 and epoch == self.plan.cycle_start_epochs[cycle - 1] and not resumed
        if pruning and steps_taken is None and self._pruned_already(cycle, alive):
            pruning = False  # without a step count, the masks tell: a backup saved after this pruning
        self._check_alive(epoch, cycle - 1 if pruning else cycle, alive)
        self.alive = alive
        if self.verified_masks is None:  # what this fit started from: later masks must stay within it
            self.verified_masks = tuple(np.asarray(m) != 0 for m in masks)
        return cycle if pruning else 0

    def _pruned_already(self, cycle: int, alive: int) -> bool:
        """Whether `alive` is the count after `cycle`'s pruning, and not the one before it."""
        after, before = (self.plan.alive_after(c, self.n_total) for c in (cycle, cycle - 1))
        return abs(alive - after) <= self.tolerance < abs(alive - before)

    def _check_alive(self, epoch: int, cycles_done: int, alive: int) -> None:
        expected = self.plan.alive_after(cycles_done, self.n_total)
        if abs(alive - expected) > self.tolerance:
            within = f" (within {self.tolerance}, half a block)" if self.tolerance else ""
            raise ValueError(
                f"At the start of epoch {epoch}, {alive} of {self.n_total} prunable weights are alive, but after "
                f"{cycles_done} cycle(s) the plan has {expected}{within}. These masks do not come from this plan "
                "(a model restored from another run, or pruned elsewhere?)"
                + (
                    f", or an earlier `fit` of this run pruned them: continue it with `fit(..., initial_epoch=N)`, N the "
                    "epochs it ran."
                    if alive < expected else "."
                )
            )

    def prune(
        self,
        epoch: int,
        cycle: int,
        weights: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        squared_norm: float | None = None,
    ) -> Pruning:
        """The masks after the pruning of `cycle` at `epoch`.

        Args:
          weights, masks: the prunable tensors and their masks (True = alive), in model order.
          squared_norm: ||theta||^2 over every trainable variable, for ALLR's d; None skips d.
        """
        masks = [np.asarray(m) != 0 for m in masks]
        target = self.plan.alive_after(cycle, self.n_total)
        new_masks = prune_to(
            target, weights, masks, self.selection, self.block_sizes, self.names,
            label=f"IMP cycle {cycle}", where=describe_epoch(self.plan, epoch), min_alive=self.min_alive,
        )
        count = self.alive - sum(int(np.count_nonzero(m)) for m in new_masks)
        d = None
        if squared_norm is not None:
            removed = sum(float(np.sum(np.square(w[o & ~n], dtype=np.float64))) for w, o, n in zip(weights, masks, new_masks))
            d = math.sqrt(removed / squared_norm) if squared_norm > 0 else 0.0
        self.alive -= count
        return Pruning(cycle, new_masks, count, d)

    def describe(self, pruning: Pruning, epoch: int, peak: float | None) -> str:
        """The line printed at a pruning."""
        allr = "" if pruning.d is None else f", ALLR d={pruning.d:.4f} eta*={peak:.5g}"
        return (
            f"IMP cycle {pruning.cycle}/{self.plan.cycles} at epoch {epoch}: removed {pruning.removed} weights, "
            f"{self.alive}/{self.n_total} alive, sparsity {self.sparsity:.4f}{allr}"
        )

    @property
    def sparsity(self) -> float:
        return 1.0 - self.alive / self.n_total

    def epoch_logs(
        self,
        epoch: int,
        learning_rate: float,
        allr: tuple[Sequence[float], Sequence[float]] | None,
        learning_rate_key: str = "lr",
    ) -> dict[str, float]:
        """What the callback publishes into `logs` at the end of `epoch`.

        Args:
          learning_rate: the learning rate of the epoch's last step.
          allr: ALLR's (d, eta*) per cycle, or None for the other kinds.
          learning_rate_key: `lr` (tf_keras' name) or `learning_rate` (Keras 3's).
        """
        cycle = self.plan.cycle_at(epoch)
        logs = {
            "sparsity": self.sparsity,
            "cycle": cycle,
            "phase": PHASE_RETRAIN if cycle else PHASE_PRETRAIN,
            learning_rate_key: learning_rate,
        }
        if allr is not None:
            d, peaks = allr
            logs["allr_d"] = float(d[cycle - 1]) if cycle else float("nan")
            logs["eta_star"] = float(peaks[cycle - 1]) if cycle else float("nan")
        return logs


def rung_name(cycle: int, sparsity: float) -> str:
    """The ladder file of the model after `cycle`, e.g. `cycle02_sparsity78.46.keras`."""
    return f"cycle{cycle:02d}_sparsity{100 * sparsity:05.2f}.keras"


def rung_cycle(name: str) -> int | None:
    """The cycle of a ladder file named by `rung_name`; None for any other name."""
    match = re.fullmatch(r"cycle(\d+)_sparsity[\d.]+\.keras", name)
    return int(match[1]) if match else None


class IMPCallbackBase(MaskCallback):
    """IMPCallback without Keras: the hooks of `fit` in terms of `PruningRun`'s decisions.

    A flavour's `IMPCallback` adds `schedule_type` (its `RetrainSchedule`) and `MaskCallback`'s hooks.
    """

    schedule_type: type

    def __init__(
        self,
        plan: Plan,
        schedule: Any = None,
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
        settings = plan_settings(plan, schedule, self.schedule_type, reset_optimizer)
        keywords = self._keywords_for(export_options)
        outputs = output_settings(selection, block_size, verbose, ladder_dir, export_dir, export_options, keywords, min_alive)
        self._init_outputs({**settings, **outputs})
        self._given_schedule = schedule
        self._run: PruningRun | None = None

    def _check_model(self) -> None:
        self._find_entries()
        used = self._learning_rate_setting()
        self.schedule = self._given_schedule
        if self.schedule is None and isinstance(used, self.schedule_type):
            if used.plan != self.plan:
                raise ValueError(f"The optimizer's RetrainSchedule was built for another plan: {used.plan} != {self.plan}")
            self.schedule = used  # e.g. ALLR needs the callback to record its peaks
        if self.schedule is not None and used is not self.schedule:
            raise ValueError(
                "The model's optimizer does not use `schedule` as its learning rate; compile with "
                "e.g. `keras.optimizers.SGD(learning_rate=schedule, ...)`, or pass schedule=None."
            )

    def _is_allr(self) -> bool:
        return self.schedule is not None and self.schedule.kind == "allr"

    def on_train_begin(self, logs=None):
        self._check_model()
        names, shapes = self._names_and_shapes()
        self._run = PruningRun(
            self.plan, self.selection, names, shapes, self._block_sizes(),
            None if self.schedule is None else self.schedule.steps_per_epoch, self.min_alive,
        )
        self._run.check_fit(self.params.get("epochs"), self.params.get("steps"))
        self._build_optimizer()

    def on_epoch_begin(self, epoch, logs=None):
        steps = None if self.schedule is None else self._steps_taken()
        masks = self._masks()
        lag = self._run.lag
        cycle = self._run.epoch_begin(epoch, masks, steps, self._may_skip_steps())
        if self._run.restored_mid_epoch:
            self._rerun_restored_epoch(epoch * self.schedule.steps_per_epoch, steps)
        if self._run.lag and not lag:  # once a fit: the count only grows from here
            warnings.warn(
                f"IMPCallback: at the start of epoch {epoch} the optimizer has counted {self._run.lag} step(s) fewer "
                "than fit ran (steps with non-finite gradients that LossScaleOptimizer skipped), so a learning-rate "
                "schedule runs that many steps behind the epochs, and more as it skips more. Pruning follows the epochs.",
                stacklevel=2,
            )
        if cycle:
            self._prune(epoch, cycle, masks)

    def _prune(self, epoch: int, cycle: int, masks: list[np.ndarray]) -> None:
        norm = None
        if self._is_allr():
            norm = sum(float(np.sum(np.square(self._numpy(v), dtype=np.float64))) for v in self._trainable())
        pruning = self._run.prune(epoch, cycle, self._weights(), masks, norm)
        peak = self.schedule.record_allr(cycle, pruning.d) if self._is_allr() else None
        if cycle == 1 and self.reset_optimizer:
            self.masking.reset_optimizer(self.model.optimizer, self._trainable())
        self._apply(pruning.masks)
        if self.verbose:
            print(self._run.describe(pruning, epoch, peak))

    def on_epoch_end(self, epoch, logs=None):
        cycle = self.plan.cycle_at(epoch)
        if logs is not None:
            allr = None
            if self._is_allr():
                allr = (self._numpy(self.schedule.allr_d), self._numpy(self.schedule.eta_star))
            logs.update(self._run.epoch_logs(epoch, self._learning_rate(), allr, self.learning_rate_key))
        if self.plan.is_last_epoch_of_cycle(epoch):
            where = f" at the end of IMP cycle {cycle} of {self.plan.cycles} (epoch {epoch})"
            report = self._verify(where, self._run.verified_masks, plan=self.plan, cycle=cycle)
            self._run.verified_masks = report.masks
            if self.ladder_dir:
                self._save_rung(rung_name(cycle, self._run.sparsity))
        self._finished_plan = epoch == self.plan.total_epochs - 1

    def on_train_end(self, logs=None):
        self._export_if_finished()
