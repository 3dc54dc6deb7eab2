"""When to prune: the epochs of an IMP run and the sparsity each cycle must reach.

A `Plan` is pure arithmetic on epochs and counts, shared by the learning-rate schedule (which turns
epochs into steps) and the callback (which prunes at the first epoch of every cycle). Every
decision is a function of the epoch alone, so a resumed run repeats it exactly.
"""

from collections.abc import Sequence
import dataclasses
import numbers
from typing import Any

from imp_keras.core.checks import check_bool, check_int

__all__ = ["Plan"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """The shape of an IMP run: dense training, then `cycles` prune-retrain cycles.

    Each cycle removes the same fraction p = 1 - (1 - goal_sparsity)^(1/cycles) of the weights still
    alive, k = round(p * n_alive) of them, so after cycle j the sparsity is 1 - (1 - p)^j and after
    the last it is `goal_sparsity` (up to rounding; `exact_goal=True` makes the last cycle remove
    what is left to reach round(goal_sparsity * n), each cycle rounding towards its nominal sparsity).

    Epochs are counted from the start of the run: pretraining takes epochs [0, pretrain_epochs),
    cycle j (1-based) starts at `cycle_start_epochs[j - 1]`, where its pruning happens.

    Args:
      goal_sparsity: final fraction of pruned weights, in [0, 1).
      cycles: number of prune-retrain cycles J (1 = one-shot pruning).
      pretrain_epochs: dense epochs before the first pruning; 0 when starting from a trained model.
      retrain_epochs: epochs per cycle, one integer for all cycles or one per cycle.
      exact_goal: correct the rounding so the last cycle hits `goal_sparsity` exactly.

    Example:
    >>> plan = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=10, retrain_epochs=3)
    >>> plan.total_epochs, plan.cycle_start_epochs
    (16, (10, 13))
    >>> round(plan.sparsity_after(1), 4)
    0.6838
    """

    goal_sparsity: float
    cycles: int
    pretrain_epochs: int
    retrain_epochs: int | tuple[int, ...]
    exact_goal: bool = False

    def __post_init__(self):
        goal = self.goal_sparsity
        if isinstance(goal, bool) or not isinstance(goal, numbers.Real) or not 0 <= goal < 1:
            raise ValueError(f"`goal_sparsity` must be in [0, 1). Received: goal_sparsity={goal!r}")
        object.__setattr__(self, "cycles", check_int("cycles", self.cycles, 1))
        object.__setattr__(self, "pretrain_epochs", check_int("pretrain_epochs", self.pretrain_epochs, 0))
        retrain = self.retrain_epochs
        if isinstance(retrain, Sequence) and not isinstance(retrain, str):
            retrain = tuple(retrain)
            if len(retrain) != self.cycles:
                raise ValueError(
                    f"`retrain_epochs` must give one value per cycle ({self.cycles}). "
                    f"Received: retrain_epochs={self.retrain_epochs!r}"
                )
        else:
            retrain = (retrain,) * self.cycles
        retrain = tuple(check_int("retrain_epochs", value, 1) for value in retrain)
        check_bool("exact_goal", self.exact_goal)
        object.__setattr__(self, "goal_sparsity", float(goal))
        object.__setattr__(self, "retrain_epochs", retrain)

    @classmethod
    def budgeted(
        cls, goal_sparsity: float, total_epochs: int, pretrain_epochs: int, cycles: int, exact_goal: bool = False
    ) -> "Plan":
        """BIMP: one budget of `total_epochs`; `pretrain_epochs` (T0) dense, the rest split evenly
        over `cycles`, the remainder going to the last cycle.

        Pair it with `RetrainSchedule.budgeted`, which trains the T0 dense epochs with a linear-to-zero
        schedule and retrains with ALLR.

        >>> Plan.budgeted(0.9, total_epochs=20, pretrain_epochs=10, cycles=3).retrain_epochs
        (3, 3, 4)
        """
        check_int("total_epochs", total_epochs, 1)
        check_int("pretrain_epochs", pretrain_epochs, 0)
        check_int("cycles", cycles, 1)
        remaining = total_epochs - pretrain_epochs
        if remaining < cycles:
            raise ValueError(
                f"`total_epochs` - `pretrain_epochs` must leave at least one epoch per cycle ({cycles}). "
                f"Received: total_epochs={total_epochs}, pretrain_epochs={pretrain_epochs}"
            )
        share, extra = divmod(remaining, cycles)
        retrain = (share,) * (cycles - 1) + (share + extra,)
        return cls(goal_sparsity, cycles, pretrain_epochs, retrain, exact_goal)

    @property
    def fraction(self) -> float:
        """Fraction p of the alive weights that each cycle removes."""
        return 1.0 - (1.0 - self.goal_sparsity) ** (1.0 / self.cycles)

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + sum(self.retrain_epochs)

    @property
    def cycle_start_epochs(self) -> tuple[int, ...]:
        starts, epoch = [], self.pretrain_epochs
        for length in self.retrain_epochs:
            starts.append(epoch)
            epoch += length
        return tuple(starts)

    def cycle_at(self, epoch: int) -> int:
        """The cycle (1-based) that `epoch` belongs to; 0 during pretraining."""
        return sum(1 for start in self.cycle_start_epochs if start <= epoch)

    def is_last_epoch_of_cycle(self, epoch: int) -> bool:
        cycle = self.cycle_at(epoch)
        return cycle > 0 and epoch == self.last_epoch_of_cycle(cycle)

    def last_epoch_of_cycle(self, cycle: int) -> int:
        """The 0-based epoch that ends cycle `cycle` (1-based)."""
        return self.cycle_start_epochs[cycle - 1] + self.retrain_epochs[cycle - 1] - 1

    def sparsity_after(self, cycle: int) -> float:
        """Nominal sparsity after `cycle` cycles: 1 - (1 - p)^cycle."""
        return 1.0 - (1.0 - self.fraction) ** cycle

    def alive_after(self, cycle: int, n_total: int) -> int:
        """Exact number of weights alive after `cycle` cycles, out of `n_total` prunable weights.

        Each cycle removes round(p * alive). With `exact_goal`, each cycle instead ends at
        round(n_total * sparsity_after(cycle)) pruned, the last at round(n_total * goal_sparsity):
        monotone, and exact at the end.
        """
        check_int("cycle", cycle, 0)
        check_int("n_total", n_total, 0)
        if cycle > self.cycles:
            raise ValueError(f"`cycle` must be at most cycles={self.cycles}. Received: cycle={cycle}")
        if self.exact_goal:
            sparsity = self.goal_sparsity if cycle == self.cycles else self.sparsity_after(cycle)
            return n_total - round(n_total * sparsity)
        alive = n_total
        for _ in range(cycle):
            alive -= round(self.fraction * alive)
        return alive

    def removal_count(self, cycle: int, n_total: int) -> int:
        """Number of weights that the pruning of `cycle` (1-based) removes."""
        check_int("cycle", cycle, 1)
        return self.alive_after(cycle - 1, n_total) - self.alive_after(cycle, n_total)

    def get_config(self) -> dict[str, Any]:
        config = dataclasses.asdict(self)
        config["retrain_epochs"] = list(self.retrain_epochs)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Plan":
        return cls(**config)
