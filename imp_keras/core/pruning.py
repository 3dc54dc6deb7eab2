"""What IMPCallback decides, on ints and NumPy arrays: when to prune, how many, which, ALLR's d,
the checks of a resumed run, and the numbers published into `logs`.

Each flavour's callback reads its model into NumPy (masks, weights), asks a `PruningRun` what to
do, and applies the answer to its own variables; the decisions never see Keras.
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
from imp_keras.core.selection import (
    CRITERIA, Criterion, check_block_size, check_min_alive, get_criterion, max_removable, select, select_blocks,
    within_blocks,
)

__all__ = ["COLLAPSE_THRESHOLD", "PHASE_PRETRAIN", "PHASE_RETRAIN", "Pruning", "PruningRun", "callback_settings", "rung_cycle", "rung_name"]

PHASE_PRETRAIN = 0
PHASE_RETRAIN = 1

COLLAPSE_THRESHOLD = 0.01
"""A cycle that leaves a tensor with fewer alive weights than this fraction of it warns."""
_COLLAPSE_FREE = ("erk", "uniform_plus", "lamp")  # designed to keep layers alive; only a floor guarantees it


def callback_settings(
    plan: Plan,
    schedule: Any,
    schedule_type: type,
    selection: str | Criterion,
    reset_optimizer: bool,
    block_size: tuple[int, int] | None,
    verbose: int,
    ladder_dir: str | os.PathLike | None,
    export_dir: str | os.PathLike | None,
    export_options: Mapping[str, Any] | None,
    export_keywords: Sequence[str],
    min_alive: int | float | None = None,
) -> dict[str, Any]:
    """IMPCallback's arguments, checked, as the attributes both flavours' callbacks keep."""
    if not isinstance(plan, Plan):
        raise TypeError(f"`plan` must be an imp_keras.Plan. Received: plan={plan!r}")
    if schedule is not None:
        if not isinstance(schedule, schedule_type):
            raise TypeError(f"`schedule` must be an imp_keras.RetrainSchedule or None. Received: schedule={schedule!r}")
        if schedule.plan != plan:
            raise ValueError(f"`schedule` was built for another plan: {schedule.plan} != {plan}")
    check_bool("reset_optimizer", reset_optimizer)
    if block_size is not None:
        block_size = check_block_size(block_size)
        if selection != "global" and selection is not CRITERIA["global"]:
            raise ValueError(
                "`block_size` ranks blocks by magnitude over one global threshold, so it needs "
                f"selection='global'. Received: selection={selection!r}, block_size={block_size!r}"
            )
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 0, 1 or 2. Received: verbose={verbose!r}")
    for argument, value in (("ladder_dir", ladder_dir), ("export_dir", export_dir)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"`{argument}` must be a path or None. Received: {argument}={value!r}")
    get_criterion(selection)  # refuses an unknown name now, not at fit
    min_alive = check_min_alive(min_alive)
    if min_alive is not None and (block_size is not None or get_criterion(selection) not in CRITERIA.values()):
        raise ValueError(
            "`min_alive` keeps a floor in every tensor with a built-in selection, weight by weight; it cannot be "
            f"combined with `block_size` or a custom selection. Received: selection={selection!r}, block_size={block_size!r}"
        )
    if export_options is None:
        export_options = {}
    if not isinstance(export_options, Mapping):
        raise ValueError(f"`export_options` must be a dict of `imp_keras.export` arguments. Received: export_options={export_options!r}")
    unknown = sorted(set(export_options) - set(export_keywords))
    if unknown:
        raise ValueError(f"`export_options` has unknown arguments {unknown}; `imp_keras.export` takes {list(export_keywords)}.")
    return {
        "plan": plan,
        "schedule": schedule,
        "selection": selection,
        "reset_optimizer": reset_optimizer,
        "block_size": block_size,
        "verbose": verbose,
        "ladder_dir": None if ladder_dir is None else os.fspath(ladder_dir),
        "export_dir": None if export_dir is None else os.fspath(export_dir),
        "export_options": dict(export_options),
        "min_alive": min_alive,
    }


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
      min_alive: the per-tensor floor of the selection (see `imp_keras.core.selection.select`).
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
        self.criterion = get_criterion(selection)
        self.names = list(names)
        self.block_sizes = list(block_sizes)
        self.steps_per_epoch = steps_per_epoch
        self.n_total = sum(math.prod(shape) for shape in shapes)
        self.tolerance = within_blocks(self.block_sizes)
        self.alive = self.n_total
        self.verified_masks: tuple[np.ndarray, ...] | None = None
        self._check_goal_reachable([tuple(s) for s in shapes])

    def _check_goal_reachable(self, shapes: list[tuple[int, ...]]) -> None:
        removable = max_removable(self.criterion, shapes, self.min_alive)
        needed = self.n_total - self.plan.alive_after(self.plan.cycles, self.n_total)
        if removable is not None and needed > removable:
            keeps = [f"min_alive={self.min_alive!r} keeps a floor in every tensor"] if self.min_alive is not None else []
            if self.criterion is CRITERIA["uniform_plus"]:
                keeps.append("it keeps the first convolution kernel dense and at least 20 % of the last tensor")
            raise ValueError(
                f"goal_sparsity={self.plan.goal_sparsity} needs {needed:,} of the {self.n_total:,} prunable weights "
                f"removed, but selection={self.selection!r} can remove at most {removable:,} "
                f"({removable / self.n_total:.2%} sparsity): {'; '.join(keeps)}. Lower `goal_sparsity`, or choose "
                "another selection."
            )

    def check_fit(self, epochs: int | None, steps: int | None) -> None:
        """Refuses a `fit` longer than the plan, or with other steps per epoch than the schedule."""
        if epochs is not None and epochs > self.plan.total_epochs:
            raise ValueError(f"`epochs`={epochs} passed to fit exceeds plan.total_epochs={self.plan.total_epochs}.")
        if self.steps_per_epoch is not None and steps and steps != self.steps_per_epoch:
            raise ValueError(
                f"fit runs {steps} steps per epoch but the schedule was built with "
                f"steps_per_epoch={self.steps_per_epoch}; they must match."
            )

    def resumed_mid_epoch(self, epoch: int, steps_taken: int) -> bool:
        """True when a mid-epoch backup was restored (the optimizer's step is inside `epoch`);
        raises when the step does not belong to `epoch` at all."""
        if self.steps_per_epoch is None:
            return False
        first = epoch * self.steps_per_epoch
        if not first <= steps_taken < first + self.steps_per_epoch:
            raise ValueError(
                f"At the start of epoch {epoch} the optimizer has taken {steps_taken} steps, but the schedule expects "
                f"epoch * steps_per_epoch = {first}. Make `steps_per_epoch` match the batches fit runs per "
                "epoch, and continue an interrupted run with `initial_epoch` (or BackupAndRestore, listed after "
                "IMPCallback so that the optimizer it restores is the one IMPCallback built)."
            )
        return steps_taken > first

    def epoch_begin(self, epoch: int, masks: Sequence[np.ndarray], steps_taken: int | None) -> int:
        """Checks the masks at the start of `epoch`; returns the cycle to prune now, or 0."""
        if epoch >= self.plan.total_epochs:
            raise ValueError(f"Epoch {epoch} is past the plan's last epoch ({self.plan.total_epochs - 1}).")
        resumed = steps_taken is not None and self.resumed_mid_epoch(epoch, steps_taken)
        alive = sum(int(np.count_nonzero(m)) for m in masks)
        cycle = self.plan.cycle_at(epoch)
        # A cycle prunes before its first step, so a run restored in the middle of that epoch has
        # already pruned (and restored the pruned masks).
        pruning = cycle > 0 and epoch == self.plan.cycle_start_epochs[cycle - 1] and not resumed
        self._check_alive(epoch, cycle - 1 if pruning else cycle, alive)
        self.alive = alive
        if self.verified_masks is None:  # what this fit started from: later masks must stay within it
            self.verified_masks = tuple(np.asarray(m) != 0 for m in masks)
        return cycle if pruning else 0

    def _check_alive(self, epoch: int, cycles_done: int, alive: int) -> None:
        expected = self.plan.alive_after(cycles_done, self.n_total)
        if abs(alive - expected) > self.tolerance:
            within = f" (within {self.tolerance}, half a block)" if self.tolerance else ""
            raise ValueError(
                f"At the start of epoch {epoch}, {alive} of {self.n_total} prunable weights are alive, but after "
                f"{cycles_done} cycle(s) the plan has {expected}{within}. These masks do not come from this plan "
                "(a model restored from another run, or pruned elsewhere?)."
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
        faulty = [name for name, w in zip(self.names, weights) if not np.isfinite(w).all()]
        if faulty:
            raise NonFiniteError(
                f"Cannot prune at {describe_epoch(self.plan, epoch)}: {', '.join(faulty)} hold NaN or Inf weights. "
                "Add imp_keras.NaNGuard to fit's callbacks to stop at the batch where they appear."
            )
        masks = [np.asarray(m) != 0 for m in masks]
        if any(self.block_sizes):
            # Aim at the plan's alive count, not its removal count, so block rounding never accumulates.
            count = max(0, self.alive - self.plan.alive_after(cycle, self.n_total))
            new_masks = select_blocks(weights, masks, count, self.block_sizes)
            count = self.alive - sum(int(np.count_nonzero(m)) for m in new_masks)
        else:
            count = self.plan.removal_count(cycle, self.n_total)
            new_masks = select(self.criterion, weights, masks, count, min_alive=self.min_alive)
        self._warn_collapse(cycle, masks, new_masks)
        d = None
        if squared_norm is not None:
            removed = sum(float(np.sum(np.square(w[o & ~n], dtype=np.float64))) for w, o, n in zip(weights, masks, new_masks))
            d = math.sqrt(removed / squared_norm) if squared_norm > 0 else 0.0
        self.alive -= count
        return Pruning(cycle, new_masks, count, d)

    def _warn_collapse(self, cycle: int, masks: Sequence[np.ndarray], new_masks: Sequence[np.ndarray]) -> None:
        """Warns about the tensors this cycle left under `COLLAPSE_THRESHOLD` alive (layer collapse)."""
        collapsed = []
        for name, old, new in zip(self.names, masks, new_masks):
            alive, size = int(np.count_nonzero(new)), new.size
            if alive < int(np.count_nonzero(old)) and alive < COLLAPSE_THRESHOLD * size:
                passes = " (none: no signal passes)" if alive == 0 else ""
                collapsed.append(f"{name} {alive}/{size} alive ({alive / size:.2%}){passes}")
        if not collapsed:
            return
        others = [repr(n) for n in _COLLAPSE_FREE if CRITERIA[n] is not self.criterion]
        warnings.warn(
            f"IMP cycle {cycle}: selection={self.selection!r} left {len(collapsed)} tensor(s) under "
            f"{COLLAPSE_THRESHOLD:.0%} of their weights alive, which can cut the signal through the layer (layer "
            f"collapse): {'; '.join(collapsed)}. Selections designed against it: {', '.join(others)}; a floor that "
            "guarantees it, with any selection: IMPCallback(min_alive=...), e.g. min_alive=0.01.",
            stacklevel=3,
        )

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
