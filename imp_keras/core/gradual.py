"""What GMPCallback decides, on ints and NumPy arrays: gradual magnitude pruning (GMP) with the
cubic schedule of Zhu & Gupta (2017), through the same selection and masks as IMP.

The sparsity rises from 0 to the goal S as s(t) = S (1 - (1 - t)^3), t the fraction of the pruning
window passed. A position is a number of optimizer steps taken (0 before the first step). The masks
are updated before the step at every position begin_step + k * frequency below end_step, and at
end_step, where the sparsity is exactly S: each update leaves n - round(s(t) * n) of the n prunable
weights alive, removed from the alive ones only, so masks never grow back. Every decision is a
function of the position, so a run restored from a backup (whose optimizer holds the position)
updates the same masks at the same steps.
"""

from collections.abc import Sequence
import dataclasses
import math
import numbers
import warnings
from typing import Any

import numpy as np

from imp_keras.core.callback import MaskCallback, output_settings
from imp_keras.core.checks import check_int
from imp_keras.core.pruning import check_reachable, prune_to
from imp_keras.core.rules import broken
from imp_keras.core.selection import Criterion, check_min_alive, within_blocks

__all__ = ["CubicSchedule", "GMPCallbackBase", "GradualRun", "UNITS", "Window", "gmp_rung_name"]

UNITS = ("fraction", "epoch", "step")


@dataclasses.dataclass(frozen=True)
class Window:
    """Where GMP updates its masks, in positions (optimizer steps taken): every `frequency` steps
    from `begin_step` while below `end_step`, and at `end_step`."""

    begin_step: int
    end_step: int
    frequency: int

    def __post_init__(self):
        begin = check_int("begin_step", self.begin_step, 0)
        if check_int("end_step", self.end_step, 0) <= begin:
            raise ValueError(f"A window needs begin_step < end_step. Received: begin_step={begin}, end_step={self.end_step}")
        check_int("frequency", self.frequency, 1)

    def last_update(self, position: int) -> int | None:
        """The latest update at or before `position`; None before the window."""
        if position < self.begin_step:
            return None
        if position >= self.end_step:
            return self.end_step
        return self.begin_step + (position - self.begin_step) // self.frequency * self.frequency

    def previous_update(self, update: int) -> int | None:
        """The update before the one at `update`; None for the first."""
        return self.last_update(update - 1)

    def progress(self, position: int) -> float:
        """t: the fraction of the window passed at `position`, in [0, 1]."""
        return min(max((position - self.begin_step) / (self.end_step - self.begin_step), 0.0), 1.0)

    @property
    def updates(self) -> int:
        """How many times the masks are updated (the first, at t = 0, removes nothing)."""
        return len(range(self.begin_step, self.end_step, self.frequency)) + 1


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < math.inf:
        raise ValueError(f"`{name}` must be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class CubicSchedule:
    """GMP's sparsity over a run: 0 until the window, s(t) = S (1 - (1 - t)^3) inside it, S after.

    Args:
      goal_sparsity: S, the final fraction of pruned weights, in [0, 1).
      begin, end: the window, in `unit`s.
      unit: `fraction` (of the run's steps: 0 <= begin < end <= 1), `epoch` (may be fractional)
        or `step` (optimizer steps, integers).
      frequency: optimizer steps between mask updates.

    Example:
    >>> window = CubicSchedule(0.9, begin=1, end=3, unit="epoch", frequency=2).window(epochs=4, steps_per_epoch=4)
    >>> window, window.updates
    (Window(begin_step=4, end_step=12, frequency=2), 5)
    >>> CubicSchedule(0.9, 1, 3, "epoch", 2).alive_at(window, 8, n_total=120)   # t = 0.5: s = 0.9 * 7 / 8
    26
    """

    goal_sparsity: float
    begin: float
    end: float
    unit: str = "fraction"
    frequency: int = 100

    def __post_init__(self):
        goal = self.goal_sparsity
        if isinstance(goal, bool) or not isinstance(goal, numbers.Real) or not 0 <= goal < 1:
            raise ValueError(f"`goal_sparsity` must be in [0, 1). Received: goal_sparsity={goal!r}")
        if self.unit not in UNITS:
            raise ValueError(f"`unit` must be one of {UNITS}. Received: unit={self.unit!r}")
        if self.unit == "step":
            begin, end = check_int("begin", self.begin, 0), check_int("end", self.end, 0)
        else:
            begin, end = _check_real("begin", self.begin), _check_real("end", self.end)
        if not begin < end or (self.unit == "fraction" and end > 1):
            bounds = "0 <= begin < end <= 1" if self.unit == "fraction" else "0 <= begin < end"
            raise ValueError(f"The pruning window needs {bounds} (unit={self.unit!r}). Received: begin={self.begin!r}, end={self.end!r}")
        object.__setattr__(self, "goal_sparsity", float(goal))
        object.__setattr__(self, "begin", begin)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "frequency", check_int("frequency", self.frequency, 1))

    def resolvable(self, epochs: int | None, steps_per_epoch: int | None) -> bool:
        """Whether `window` can place the window with these (None: not known yet)."""
        if self.unit == "fraction":
            return epochs is not None and steps_per_epoch is not None
        return self.unit == "step" or steps_per_epoch is not None

    def window(self, epochs: int | None, steps_per_epoch: int | None) -> Window:
        """The window in optimizer steps, for a run of `epochs` epochs of `steps_per_epoch` steps.

        Raises ValueError when the window ends after the run (GMP would never reach the goal), is
        empty once rounded to steps, or cannot be placed without the run's length.
        """
        if not self.resolvable(epochs, steps_per_epoch):
            needed = "`epochs` and `steps_per_epoch`" if self.unit == "fraction" else "`steps_per_epoch`"
            raise ValueError(
                f"A pruning window in unit={self.unit!r} needs the run's {needed}: pass them to GMPCallback "
                "(fit gives neither epochs nor steps for a dataset of unknown length)."
            )
        total = None if epochs is None or steps_per_epoch is None else epochs * steps_per_epoch
        scale = {"fraction": total, "epoch": steps_per_epoch, "step": 1}[self.unit]
        # Half steps round up at both edges (Python's round would send 2.5 to 2 and 3.5 to 4).
        begin_step, end_step = math.floor(self.begin * scale + 0.5), math.floor(self.end * scale + 0.5)
        if begin_step >= end_step:
            raise ValueError(
                f"The pruning window begin={self.begin!r}, end={self.end!r} (unit={self.unit!r}) is empty in optimizer "
                f"steps: it begins and ends at step {begin_step}. Widen it."
            )
        if total is not None and end_step > total:
            raise ValueError(
                f"The pruning window ends at step {end_step} (end={self.end!r}, unit={self.unit!r}), after the run's "
                f"{total} steps ({epochs} epochs of {steps_per_epoch}): GMP would never reach "
                f"goal_sparsity={self.goal_sparsity}. End the window earlier, or train longer."
            )
        return Window(begin_step, end_step, self.frequency)

    def sparsity(self, window: Window, update: int | None) -> float:
        """s(t) at the update at position `update` (0 for None: before the window)."""
        if update is None:
            return 0.0
        return self.goal_sparsity * (1.0 - (1.0 - window.progress(update)) ** 3)

    def alive_at(self, window: Window, update: int | None, n_total: int) -> int:
        """The weights alive after the update at `update`: n - round(s(t) * n); exact at the end."""
        if update == window.end_step:
            return n_total - round(self.goal_sparsity * n_total)
        return n_total - round(self.sparsity(window, update) * n_total)

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "CubicSchedule":
        return cls(**config)


def gmp_rung_name(sparsity: float) -> str:
    """The ladder file of a GMP run's final model, e.g. `gmp_sparsity90.00.keras`."""
    return f"gmp_sparsity{100 * sparsity:05.2f}.keras"


class GradualRun:
    """The decisions of one `fit` of GMP over the prunable tensors of a model.

    Args:
      schedule: the run's `CubicSchedule`; window: its window in steps.
      selection: criterion name or callable (see `imp_keras.core.selection`).
      names, shapes: the prunable tensors', in model order.
      block_sizes: per tensor, the (rows, cols) blocks it loses weights in, or None for weight by weight.
    """

    def __init__(
        self,
        schedule: CubicSchedule,
        window: Window,
        selection: str | Criterion,
        names: Sequence[str],
        shapes: Sequence[tuple[int, ...]],
        block_sizes: Sequence[tuple[int, int] | None],
        min_alive: int | float | None = None,
    ):
        self.schedule = schedule
        self.min_alive = check_min_alive(min_alive)
        self.window = window
        self.selection = selection
        self.names = list(names)
        self.block_sizes = list(block_sizes)
        self.n_total = sum(math.prod(shape) for shape in shapes)
        self.tolerance = within_blocks(self.block_sizes)
        needed = self.n_total - self.target(window.end_step)
        check_reachable(selection, shapes, needed, schedule.goal_sparsity, self.min_alive)
        self.alive = self.n_total
        self.updated: int | None = None
        self.verified_masks: tuple[np.ndarray, ...] | None = None

    def target(self, update: int | None) -> int:
        """The weights alive after the update at `update` (all of them for None)."""
        return self.schedule.alive_at(self.window, update, self.n_total)

    def _near(self, alive: int, update: int | None) -> bool:
        return abs(alive - self.target(update)) <= self.tolerance

    def start(self, position: int, masks: Sequence[np.ndarray]) -> bool:
        """Checks the masks at the start of an epoch at `position`; True when the update at
        `position` is still to be made (a backup saved just before it was restored)."""
        alive = sum(int(np.count_nonzero(m)) for m in masks)
        last = self.window.last_update(position)
        previous = None if last is None else self.window.previous_update(last)
        if self._near(alive, last):
            self.updated, due = last, False
        elif last == position and self._near(alive, previous):
            self.updated, due = previous, True
        else:
            within = f" (within {self.tolerance}, half a block)" if self.tolerance else ""
            raise ValueError(
                f"At step {position}, {alive} of {self.n_total} prunable weights are alive, but GMP's schedule has "
                f"{self.target(last)}{within}. These masks do not come from this run (a model restored from another "
                "run, or pruned elsewhere?)."
            )
        self.alive = alive
        if self.verified_masks is None:  # what this fit started from: later masks must stay within it
            self.verified_masks = tuple(np.asarray(m) != 0 for m in masks)
        return due

    def due(self, position: int) -> int | None:
        """The update to make before the step at `position`; None when the masks are up to date."""
        last = self.window.last_update(position)
        if last is None or (self.updated is not None and last <= self.updated):
            return None
        return last

    def update(self, update: int, weights: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The masks after the update at position `update`."""
        sparsity = self.schedule.sparsity(self.window, update)
        new_masks = prune_to(
            self.target(update), weights, masks, self.selection, self.block_sizes, self.names,
            label=f"GMP at step {update}", where=f"step {update} (GMP, sparsity {sparsity:.2%})",
            min_alive=self.min_alive, callback="GMPCallback",
        )
        self.updated = update
        self.alive = sum(int(np.count_nonzero(m)) for m in new_masks)
        return new_masks

    @property
    def sparsity(self) -> float:
        return 1.0 - self.alive / self.n_total

    @property
    def finished(self) -> bool:
        """Whether the last update (to the goal) has been made."""
        return self.updated == self.window.end_step

    def check_alive(self, alive: int, where: str) -> None:
        """Raises `InvariantError` unless `alive` (from `verify`) is the schedule's count now."""
        if not self._near(alive, self.updated):
            within = f" (within {self.tolerance}, half a block)" if self.tolerance else ""
            problem = f"{alive} of {self.n_total} prunable weights are alive, but GMP's schedule has {self.target(self.updated)}{within}"
            raise broken([problem], where)

    def describe(self, epoch: int, updates: int) -> str:
        """The line printed at the end of an epoch whose `updates` mask updates removed weights."""
        reached = ", goal reached" if self.finished else ""
        return (
            f"GMP epoch {epoch}: {updates} mask update(s), the last at step {self.updated}: {self.alive}/{self.n_total} "
            f"alive, sparsity {self.sparsity:.4f}{reached}"
        )

    def epoch_logs(self, learning_rate: float, learning_rate_key: str) -> dict[str, float]:
        return {"sparsity": self.sparsity, learning_rate_key: learning_rate}


class GMPCallbackBase(MaskCallback):
    """Gradual magnitude pruning inside `model.fit`, without Keras: the hooks of `fit` in terms of
    `GradualRun`'s decisions. A flavour's `GMPCallback` adds `MaskCallback`'s hooks.

    The sparsity of the prunable weights rises from 0 to `goal_sparsity` as s(t) = S (1 - (1 - t)^3)
    over the window [begin, end]; every `frequency` optimizer steps inside it (and at its end) the
    masks are updated to exactly n - round(s(t) * n) alive weights, removed by `selection` from the
    alive ones (global magnitude by default: one threshold over all tensors), and the newly pruned
    weights and their optimizer state are zeroed. Masks only shrink. At the window's end the count
    is exactly round(S * n) pruned, and `verify` checks every invariant (binary, monotone masks;
    pruned weights and their optimizer state 0.0; the schedule's alive count), again at the end of
    the run. The position is the optimizer's step count, so a run resumed by
    `keras.callbacks.BackupAndRestore` (listed before or after this callback: a backup saved just
    before an update gets it when restored) or continued by another `fit` updates the same masks at
    the same steps; masks that do not fit the schedule at the start of an
    epoch are refused. A window that ends after the run, or a goal the selection cannot reach, is
    refused before training (at construction when `epochs` and `steps_per_epoch` are given).
    Masked weights that are not trainable when `fit` starts (a layer frozen after `prunable`) are
    left out with a warning: their masks stay as they are and the counts are over the others.

    Published into `logs` at the end of every epoch: `sparsity` and the learning rate of the
    epoch's last step (`lr` on tf_keras, `learning_rate` on Keras 3).

    Args:
      goal_sparsity: S, the final fraction of pruned weights, in [0, 1).
      begin, end: the pruning window in `unit`s. Defaults to 10 % to 50 % of the run, the window
        of BENCHMARKS.md.
      unit: `fraction` (of the run's steps), `epoch` (may be fractional) or `step` (optimizer steps).
      frequency: optimizer steps between mask updates (tfmot's default, 100).
      selection: criterion name (`global`, `uniform`, `uniform_plus`, `erk`, `lamp`) or callable.
      epochs, steps_per_epoch: the run's length; default to `fit`'s. Give `epochs` when the run
        takes several `fit` calls, and `steps_per_epoch` when `fit` cannot count its batches.
      block_size: (rows, cols) blocks of Dense kernels pruned as a whole (see `IMPCallback`); each
        update lands within half a block of the schedule's count. Needs `selection="global"`.
      ladder_dir: if given, the stripped model is saved there when the run ends, as
        `gmp_sparsityXX.XX.keras`.
      export_dir, export_options: as `IMPCallback`'s: the model is exported when the run ends.
      verbose: 1 prints a line at the end of every epoch that updated the masks, 0 is silent.
      min_alive: as `IMPCallback`'s: a floor every tensor keeps at every update.
    """

    def __init__(
        self,
        goal_sparsity: float,
        *,
        begin: float = 0.1,
        end: float = 0.5,
        unit: str = "fraction",
        frequency: int = 100,
        selection: str | Criterion = "global",
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        block_size: tuple[int, int] | None = None,
        ladder_dir: Any = None,
        export_dir: Any = None,
        export_options: Any = None,
        verbose: int = 1,
        min_alive: int | float | None = None,
    ):
        super().__init__()
        self.schedule = CubicSchedule(goal_sparsity, begin, end, unit, frequency)
        self.epochs = None if epochs is None else check_int("epochs", epochs, 1)
        self.steps_per_epoch = None if steps_per_epoch is None else check_int("steps_per_epoch", steps_per_epoch, 1)
        if self.schedule.resolvable(self.epochs, self.steps_per_epoch):
            self.schedule.window(self.epochs, self.steps_per_epoch)  # refuses a window that misses the goal now
        keywords = self._keywords_for(export_options)
        self._init_outputs(
            output_settings(selection, block_size, verbose, ladder_dir, export_dir, export_options, keywords, min_alive)
        )
        self._run: GradualRun | None = None

    def _run_length(self) -> tuple[int | None, int | None]:
        """The run's epochs and steps per epoch: the callback's, else fit's; refuses a fit that disagrees."""
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        if self.epochs is not None and epochs is not None and epochs > self.epochs:
            raise ValueError(f"`epochs`={epochs} passed to fit exceeds GMPCallback's epochs={self.epochs}.")
        if self.steps_per_epoch is not None and steps and steps != self.steps_per_epoch:
            raise ValueError(
                f"fit runs {steps} steps per epoch but GMPCallback was given steps_per_epoch={self.steps_per_epoch}; "
                "they must match."
            )
        return self.epochs or epochs, self.steps_per_epoch or steps

    def on_train_begin(self, logs=None):
        self._find_entries()
        self._learning_rate_setting()  # refuses an optimizer of the other flavour
        epochs, steps = self._run_length()
        window = self.schedule.window(epochs, steps)
        names, shapes = self._names_and_shapes()
        self._run = GradualRun(self.schedule, window, self.selection, names, shapes, self._block_sizes(), self.min_alive)
        self._last_epoch = None if epochs is None else epochs - 1
        self._steps = steps
        self._verified_end = False
        self._build_optimizer()
        self._warn_on_execution_boundaries(window)

    def _warn_on_execution_boundaries(self, window: Window) -> None:
        per_call = self._steps_per_call()
        if per_call > 1 and (window.frequency % per_call or window.begin_step % per_call):
            warnings.warn(
                f"GMPCallback: the model runs steps_per_execution={per_call} steps per call, and masks can only change "
                f"between calls: updates due every {window.frequency} step(s) from step {window.begin_step} are made at "
                "the next call instead, fewer of them (the goal is still reached exactly). Make `frequency` and the "
                "window's start multiples of steps_per_execution, or compile with steps_per_execution=1.",
                stacklevel=2,
            )

    def on_epoch_begin(self, epoch, logs=None):
        # JAX's fit holds the optimizer's step outside its variable inside an epoch: positions
        # within the epoch are counted from here, so batches never read it.
        position = self._steps_taken()
        self._updates = 0
        masks = self._masks()
        due = self._run.start(position, masks)
        self._epoch_start = position
        if self._steps and position % self._steps:  # a mid-epoch backup was restored
            self._epoch_start = self._rerun_restored_epoch(position - position % self._steps, position)
        if due and self._epoch_start == position:  # else made when the rerun epoch reaches it
            self._update(position, masks)

    def on_train_batch_begin(self, batch, logs=None):
        update = self._run.due(self._epoch_start + batch)
        if update is not None:
            self._sync()
            self._update(update, self._masks())

    def _update(self, update: int, masks: list[np.ndarray]) -> None:
        alive = self._run.alive
        self._apply(self._run.update(update, self._weights(), masks))
        self._updates += self._run.alive < alive

    def on_epoch_end(self, epoch, logs=None):
        position = self._steps_taken()
        update = self._run.due(position)  # the window's end may be the run's last step
        if update is None and epoch == self._last_epoch and not self._run.finished:
            update = self._run.window.end_step
            warnings.warn(
                f"GMPCallback: the run ends with the optimizer at step {position}, before GMP's last update (step "
                f"{update}): it skipped steps it did not count (LossScaleOptimizer skips steps with non-finite "
                "gradients). The last update, to the goal, is made now.",
                stacklevel=2,
            )
        if update is not None:
            self._update(update, self._masks())
        if logs is not None:
            logs.update(self._run.epoch_logs(self._learning_rate(), self.learning_rate_key))
        if self.verbose and self._updates:
            print(self._run.describe(epoch, self._updates))
        self._finished_plan = epoch == self._last_epoch
        if self._run.finished and (not self._verified_end or self._finished_plan):
            where = f" at the end of epoch {epoch} (step {position}), after GMP's last update"
            report = self._verify(where, self._run.verified_masks)
            self._run.check_alive(report.alive, where)
            self._run.verified_masks = report.masks
            self._verified_end = True
        if self._finished_plan and self.ladder_dir:
            self._save_rung(gmp_rung_name(self._run.sparsity))

    def on_train_end(self, logs=None):
        self._export_if_finished()
