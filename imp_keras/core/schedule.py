"""The learning rate of an IMP run, in closed form: the dense base schedule, then one restarted
schedule per cycle. Written once against an array namespace (`ops`: NumPy, `keras.ops`, or
TensorFlow), so every flavour's `RetrainSchedule` computes the same values from the same code.

Notation (Zimmer, Spiegel & Pokutta, arXiv 2111.00843): the base schedule eta_o spans the L steps of
the dense training it describes; eta_max is its maximum, eta_min its minimum outside its warm-up.
Cycle j has N = E_j * steps_per_epoch steps, a warm-up of W = floor(0.1 N) steps for SLR, CLR, LLR
and ALLR (none for FT and LRW), R = N - W, k the step within the cycle and tau = k - W. The warm-up
rises as eta* (1 - cos(pi k / W)) / 2 from 0 to the cycle's peak eta*.
"""

from collections.abc import Callable, Sequence
import dataclasses
import math
import numbers
import types
from typing import Any

import numpy as np

from imp_keras.core.checks import check_int, check_learning_rate
from imp_keras.core.plan import Plan

__all__ = [
    "KINDS",
    "NUMPY_OPS",
    "PAPER_WARMUP",
    "PLAN_FIELDS",
    "RetrainShape",
    "TUNABLE",
    "allr_peak",
    "learning_rate",
    "split_plan",
]

KINDS = ("ft", "lrw", "slr", "clr", "llr", "allr", "constant", "linear", "cosine")
TUNABLE = ("constant", "linear", "cosine")
PAPER_WARMUP = 0.1
PLAN_FIELDS = ("goal_sparsity", "cycles", "pretrain_epochs", "retrain_epochs", "exact_goal")
_NEEDS_BASE_SHAPE = ("lrw", "slr")

# The names `learning_rate` uses, as `keras.ops` spells them; NumPy's and TensorFlow's namespaces
# are built to match.
NUMPY_OPS = types.SimpleNamespace(
    convert_to_tensor=lambda x, dtype: np.asarray(x, dtype),
    cast=lambda x, dtype: np.asarray(x).astype(dtype),
    where=np.where,
    take=np.take,
    cos=np.cos,
    clip=np.clip,
    maximum=np.maximum,
    minimum=np.minimum,
    sum=np.sum,
    expand_dims=np.expand_dims,
    floor_divide=np.floor_divide,
)


def allr_peak(d: float, max_learning_rate: float, fraction: float, retrain_epochs: int, base_epochs: int) -> float:
    """ALLR's peak learning rate: clip(eta_max * d / sqrt(p), eta_max * min(E / T, 1), eta_max).

    Args:
      d: relative norm of what the pruning removed, ||theta_before - theta_after|| / ||theta_before||.
      max_learning_rate: eta_max of the base schedule.
      fraction: p, the fraction of alive weights the cycle pruned.
      retrain_epochs: E, the cycle's length in epochs.
      base_epochs: T, the length of the dense training in epochs.
    """
    upper = max_learning_rate
    lower = max_learning_rate * min(retrain_epochs / base_epochs, 1.0)
    if fraction <= 0:
        return upper
    return float(np.clip(max_learning_rate * d / math.sqrt(fraction), lower, upper))


def _check_tunable(kind: str, initial_learning_rate: Any, warmup_fraction: Any) -> None:
    if kind in TUNABLE:
        rate = initial_learning_rate
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 < rate < math.inf:
            raise ValueError(
                f"kind={kind!r} needs a finite `initial_learning_rate` > 0. Received: initial_learning_rate={rate!r}"
            )
    elif initial_learning_rate is not None or warmup_fraction is not None:
        raise ValueError(
            f"`initial_learning_rate` and `warmup_fraction` apply to kinds {TUNABLE} only, "
            f"not kind={kind!r} (its warm-up is fixed by the paper at 10 %)."
        )
    if warmup_fraction is not None and not (
        isinstance(warmup_fraction, numbers.Real) and not isinstance(warmup_fraction, bool) and 0 <= warmup_fraction < 1
    ):
        raise ValueError(f"`warmup_fraction` must be in [0, 1). Received: warmup_fraction={warmup_fraction!r}")


@dataclasses.dataclass(frozen=True)
class RetrainShape:
    """Everything a `RetrainSchedule` computes with, but the base schedule itself: checked numbers.

    Build it with `RetrainShape.create`; `learning_rate` evaluates it at any step.
    """

    kind: str
    plan: Plan
    steps_per_epoch: int
    has_base: bool
    base_epochs: int
    base_warmup_steps: int
    initial_learning_rate: float | None
    warmup_fraction: float
    max_learning_rate: float | None
    min_learning_rate: float | None

    @classmethod
    def create(
        cls,
        kind: str,
        plan: Plan,
        steps_per_epoch: int,
        *,
        base: float | None,
        base_values: Callable[[np.ndarray], np.ndarray] | None,
        base_epochs: int | None = None,
        base_warmup_steps: int | None = None,
        initial_learning_rate: float | None = None,
        warmup_fraction: float | None = None,
        max_learning_rate: float | None = None,
        min_learning_rate: float | None = None,
    ) -> "RetrainShape":
        """Checks a schedule's arguments and derives eta_max and eta_min.

        Args:
          base: the base learning rate when it is a number; None when it is a schedule (then
            `base_values` evaluates it) or when there is no base.
          base_values: the base schedule's learning rate at an array of steps (float64), or None
            when the base is a number or absent.
          Others: as `RetrainSchedule`'s.
        """
        if not isinstance(plan, Plan):
            raise TypeError(f"`plan` must be an imp_keras.Plan. Received: plan={plan!r}")
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
        if base_values is None and base is not None:
            if isinstance(base, bool) or not isinstance(base, numbers.Real):
                raise TypeError(f"`base` must be a learning-rate schedule, a number or None. Received: base={base!r}")
            check_learning_rate("base", base)
            constant = float(base)
            base_values = lambda steps: np.full(np.shape(steps), constant, np.float64)  # noqa: E731
        has_base = base_values is not None
        steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
        _check_tunable(kind, initial_learning_rate, warmup_fraction)
        uses_base = has_base and (plan.pretrain_epochs > 0 or kind not in TUNABLE)
        if not has_base and (plan.pretrain_epochs > 0 or kind in _NEEDS_BASE_SHAPE):
            raise ValueError(
                f"`base` is required for kind={kind!r} with pretrain_epochs={plan.pretrain_epochs}: "
                "it gives the learning rate of the dense training."
            )
        if base_epochs is None:
            if uses_base and plan.pretrain_epochs == 0:
                raise ValueError(
                    "`base_epochs` is required when plan.pretrain_epochs=0: pass the number of epochs the "
                    "dense model was trained for with `base`."
                )
            base_epochs = plan.pretrain_epochs
        base_epochs = check_int("base_epochs", base_epochs, 1 if uses_base else 0)
        base_warmup_steps = check_int("base_warmup_steps", base_warmup_steps or 0, 0)
        max_learning_rate = check_learning_rate("max_learning_rate", max_learning_rate)
        min_learning_rate = check_learning_rate("min_learning_rate", min_learning_rate)
        if (max_learning_rate is None or min_learning_rate is None) and kind not in TUNABLE:
            if not has_base:
                raise ValueError(f"kind={kind!r} without `base` needs `max_learning_rate` and `min_learning_rate`.")
            values = base_values(np.arange(base_epochs * steps_per_epoch))
            if max_learning_rate is None:
                max_learning_rate = float(values.max())
            if min_learning_rate is None:
                outside_warmup = values[base_warmup_steps:]
                min_learning_rate = float(outside_warmup.min() if outside_warmup.size else values.min())
        if max_learning_rate is not None and min_learning_rate is not None and min_learning_rate > max_learning_rate:
            raise ValueError(
                f"`min_learning_rate` must not exceed `max_learning_rate`. Received: "
                f"min_learning_rate={min_learning_rate}, max_learning_rate={max_learning_rate}"
            )
        if kind == "lrw" and max(plan.retrain_epochs) > base_epochs:
            raise ValueError(
                f"kind='lrw' rewinds to the last N steps of the base schedule, but a cycle of "
                f"{max(plan.retrain_epochs)} epochs is longer than the base schedule's {base_epochs} epochs."
            )
        if kind == "allr" and base_epochs == 0:
            raise ValueError("kind='allr' needs `base_epochs` >= 1: its lower bound is eta_max * min(E / T, 1).")
        return cls(
            kind, plan, steps_per_epoch, has_base, base_epochs, base_warmup_steps,
            None if initial_learning_rate is None else float(initial_learning_rate),
            float(warmup_fraction if warmup_fraction is not None else PAPER_WARMUP),
            max_learning_rate, min_learning_rate,
        )

    @property
    def base_steps(self) -> int:
        return self.base_epochs * self.steps_per_epoch

    @property
    def pretrain_steps(self) -> int:
        return self.plan.pretrain_epochs * self.steps_per_epoch

    @property
    def cycle_starts(self) -> np.ndarray:
        return np.array(self.plan.cycle_start_epochs, np.int64) * self.steps_per_epoch

    @property
    def cycle_lengths(self) -> np.ndarray:
        return np.array(self.plan.retrain_epochs, np.int64) * self.steps_per_epoch

    @property
    def cycle_warmups(self) -> np.ndarray:
        warmup = 0.0 if self.kind in ("ft", "lrw") else self.warmup_fraction
        return np.floor(warmup * self.cycle_lengths).astype(np.int64)

    def fixed_peak(self) -> float:
        """The peak of every cycle for the kinds whose peak is not measured (all but ALLR)."""
        return self.initial_learning_rate if self.kind in TUNABLE else self.max_learning_rate

    def allr_peak(self, cycle: int, d: float) -> float:
        """ALLR's peak of `cycle` (1-based) from d measured at its pruning."""
        return allr_peak(d, self.max_learning_rate, self.plan.fraction, self.plan.retrain_epochs[cycle - 1], self.base_epochs)

    def config(self) -> dict[str, Any]:
        """The schedule's arguments, plan fields included (flat), for `get_config`."""
        return {
            "kind": self.kind,
            "steps_per_epoch": self.steps_per_epoch,
            **self.plan.get_config(),
            "base_epochs": self.base_epochs,
            "base_warmup_steps": self.base_warmup_steps,
            "initial_learning_rate": self.initial_learning_rate,
            "warmup_fraction": self.warmup_fraction if self.kind in TUNABLE else None,
            "max_learning_rate": self.max_learning_rate,
            "min_learning_rate": self.min_learning_rate,
        }


def split_plan(config: dict[str, Any]) -> tuple[Plan, dict[str, Any]]:
    """The `Plan` of a flat schedule config and the config without its plan fields."""
    config = dict(config)
    return Plan.from_config({field: config.pop(field) for field in PLAN_FIELDS}), config


def learning_rate(ops: Any, shape: RetrainShape, step: Any, base_at: Callable[[Any], Any], peaks: Sequence[float] | Any) -> Any:
    """The learning rate at optimizer `step` (a scalar or an array of steps), as float32.

    Args:
      ops: the array namespace (`NUMPY_OPS`, `keras.ops`, or TensorFlow's equivalent).
      shape: the schedule's numbers.
      step: the optimizer's step count.
      base_at: the base schedule's learning rate at an integer step tensor (float32).
      peaks: the peak eta* of every cycle (ALLR's measured ones; otherwise all equal).
    """
    f32, i64 = "float32", "int64"
    step = ops.cast(step, i64)
    starts = ops.convert_to_tensor(shape.cycle_starts, i64)
    index = ops.maximum(ops.sum(ops.cast(ops.expand_dims(step, -1) >= starts, "int32"), axis=-1) - 1, 0)
    length = ops.take(ops.convert_to_tensor(shape.cycle_lengths, i64), index)
    warmup = ops.take(ops.convert_to_tensor(shape.cycle_warmups, i64), index)
    k = ops.clip(step - ops.take(starts, index), 0, length - 1)
    peak = ops.take(ops.convert_to_tensor(peaks, f32), index)
    rising = peak * (1.0 - ops.cos(math.pi * ops.cast(k, f32) / ops.cast(ops.maximum(warmup, 1), f32))) / 2.0
    after = _after_warmup(ops, shape, k - warmup, length - warmup, peak, k, length, base_at)
    cycle_lr = ops.where(k < warmup, rising, after)
    if shape.pretrain_steps == 0:
        return cycle_lr
    dense = base_at(ops.minimum(step, shape.pretrain_steps))
    return ops.where(step < shape.pretrain_steps, dense, cycle_lr)


def _after_warmup(ops, shape: RetrainShape, tau, rest, peak, k, length, base_at):
    f32 = "float32"
    progress = ops.cast(tau, f32) / ops.cast(rest, f32)
    kind = shape.kind
    if kind == "ft":
        return ops.convert_to_tensor(shape.min_learning_rate, f32)
    if kind == "lrw":
        return base_at(shape.base_steps - length + k)
    if kind == "slr":
        # tau * L // R without forming tau * L, which overflows int32 (JAX) at ImageNet sizes.
        quotient, remainder = shape.base_steps // rest, shape.base_steps % rest
        source = tau * quotient + ops.floor_divide(tau * remainder, rest)
        return ops.where(source < shape.base_warmup_steps, ops.convert_to_tensor(shape.max_learning_rate, f32), base_at(source))
    if kind == "clr":
        eta_min, eta_max = shape.min_learning_rate, shape.max_learning_rate
        return eta_min + (eta_max - eta_min) * (1.0 + ops.cos(math.pi * progress)) / 2.0
    if kind == "constant":
        return peak
    if kind == "cosine":
        return peak * (1.0 + ops.cos(math.pi * progress)) / 2.0
    return peak * (1.0 - progress)  # llr, allr, linear
